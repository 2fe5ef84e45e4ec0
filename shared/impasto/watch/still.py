"""The still path: a dropped image goes to the daemon as one batch Stylize, and its
result is written atomically to out/<style>/ as a PNG."""

from __future__ import annotations

from impasto.client import DaemonUnavailable
from impasto.errors import ImpastoError
from impasto.protocol import MAX_MESSAGE_BYTES, ImageRef, Priority, StyleRef, Stylize
from impasto.watch.job import Failed, Gone, Job, Outcome, Retry, Written, verdict
from impasto.watch.journal import State, output_for

INPUT_LIMIT = MAX_MESSAGE_BYTES - 1024 * 1024  # room for the request around the image


def handle(job: Job) -> Outcome:
    e, bench = job.entry, job.bench
    try:
        data = bench.journal.read_data(e, INPUT_LIMIT)
    except FileNotFoundError:
        return Gone()
    except ValueError as ex:
        return Failed(str(ex))
    held = bench.held.take(e.id)
    if held:
        image = held[0][1]
    else:
        stylized = _stylize(job, data)
        if not isinstance(stylized, bytes):
            return stylized
        image = stylized
    try:
        out = output_for(e.rel_parts, job.style)
    except ValueError:
        return Failed(f"the style name {job.style!r} cannot be a folder name")
    # Choosing a free name and taking it must be one step: two senders finishing
    # a.png and a.jpg of one style would otherwise both pick out/<style>/a.png.
    with bench.names:
        out = bench.journal.unique(out)
        e.state, e.output = State.WRITING, "/".join(out)
        try:
            bench.journal.save(e)
            bench.journal.write(out, image, before_rename=bench.before_rename)
        except OSError:
            e.state, e.output = State.CLAIMED, None  # nothing written
            bench.held.add(job.kind, e.id, (0, image, None))
            raise
    return Written()


def _stylize(job: Job, data: bytes) -> bytes | Failed | Retry:
    """The result's bytes, or why there is none."""
    request = Stylize(content=ImageRef(data, "encoded"), styles=[StyleRef(name=job.style)],
                      options=job.settings, priority=Priority.BATCH,
                      client=job.bench.client_name)
    try:
        result = job.client.stylize(request, should_cancel=job.bench.stopping)
    except DaemonUnavailable as ex:
        return Retry(str(ex))
    except ImpastoError as ex:
        return verdict(ex, job.bench.stopping())
    assert result.image is not None
    return result.image.data
