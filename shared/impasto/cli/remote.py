"""Commands that talk to a running daemon: send, status, cancel, styles. No torch."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
from pathlib import Path

from impasto import eventmap, imagecodec
from impasto.cli.clip import is_clip, print_clip_summary, send_clip
from impasto.cli.jobargs import CLI_PREVIEW_SIDE, client_for, style_refs
from impasto.cli.optionflags import engine_options
from impasto.cli.output import check_outputs, print_summary, save_image
from impasto.cli.progress import ProgressBar, emit_event, emit_json, format_losses
from impasto.client import Client
from impasto.errors import BAD_OPTIONS, ImpastoError
from impasto.events import Done
from impasto.protocol import (
    Accepted,
    OutputFormat,
    Priority,
    Progress,
    Result,
    Stage,
    StylesAdd,
    StylesList,
    StylesRemove,
    Stylize,
    printable,
)


def follow_job(client: Client, request: Stylize, output: Path, as_json: bool,
               preview: Path | None = None) -> Done:
    """Run a stylize request on the daemon, show progress, write the result (and each
    preview the request asked for to `preview`)."""
    bar = ProgressBar()

    def accepted(a: Accepted) -> None:
        if as_json:
            emit_event(eventmap.accepted(a))
        elif a.position:
            bar.message(f"job {a.job} queued at position {a.position}")

    def progress(p: Progress) -> None:
        if p.preview is not None and preview is not None:
            save_image(imagecodec.decode_pil(p.preview, "the preview"), preview)
        if as_json:
            emit_event(eventmap.progress(p))
        elif p.stage == Stage.PREPARE:
            bar.update(0, p.total, "preparing")
        else:
            bar.update(p.step, p.total, f"scale {p.scale + 1}/{p.scales} {p.size}px",
                       format_losses(p.losses))

    job: list[str] = []
    try:
        result: Result = client.stylize(
            request, on_accepted=lambda a: (job.append(a.job), accepted(a)),
            on_progress=progress)
    except KeyboardInterrupt:
        bar.close()
        if job:
            with contextlib.suppress(Exception):  # best effort; we are exiting anyway
                client.cancel(job[0])
        raise
    finally:
        bar.close()
    assert result.image is not None
    img = imagecodec.decode_pil(result.image)
    save_image(img, output)
    return eventmap.done(result, output=output, size=img.size)


def cmd_send(args: argparse.Namespace) -> int:
    if is_clip(args.content):
        print_clip_summary(send_clip(args, engine_options(args)), args.json)
        return 0
    options = engine_options(args)
    if not args.content.is_file():
        raise ImpastoError(BAD_OPTIONS, f"content image {args.content} does not exist")
    preview_path = getattr(args, "preview", None)
    check_outputs(args.output, preview_path, args.content)
    request = Stylize(content=imagecodec.file_ref(args.content),
                      styles=style_refs(args.style, args.style_weights, args.style_masks),
                      options=options.changed(), priority=Priority(getattr(args, "priority", "interactive")),
                      output=OutputFormat.PNG, client="cli",
                      preview=None if preview_path is None else
                      {"max_side": CLI_PREVIEW_SIDE, "interval_s": float(args.preview_every)})
    with client_for(args) as client:
        client.ping()
        print_summary(follow_job(client, request, args.output, args.json, preview_path), args.json)
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    with client_for(args) as client:
        st = client.status()
    data = {f.name: getattr(st, f.name) for f in dataclasses.fields(st)}
    if args.json:
        emit_json(data)
        return 0
    print(f"impasto {st.version} (protocol {st.protocol}) at {client.address}: {st.state}")
    print(f"  device {st.device or '-'}, weights {st.weights or '-'}, "
          f"memory {st.memory_bytes / 2**20:.0f} MiB, up {st.uptime_s:.0f} s")
    if st.device_detail:
        print(printable(f"  {st.device_detail}"))
    print(f"  jobs done {st.jobs_done}, failed {st.jobs_failed}, cancelled "
          f"{st.jobs_cancelled}; style cache hits "
          f"{st.cache_hits}, misses {st.cache_misses}")
    if st.running:
        r = st.running
        print(printable(f"  running: {r.get('job')} ({r.get('client') or '?'}, {r.get('priority')}, "
                        f"{', '.join(map(str, r.get('styles') or []))})"))
    for w in st.workers:
        print(printable(f"  worker {w.get('worker')} on {w.get('node') or '?'} "
                        f"({w.get('device') or '?'}): {w.get('state')}"
                        + (f" {w['job']}" if w.get("job") else "")
                        + (f", pid {w['pid']}" if w.get("pid") else "")))
    for i, j in enumerate(st.queue, 1):
        print(printable(f"  queued {i}: {j.get('job')} ({j.get('client') or '?'}, {j.get('priority')})"))
    for w in st.watch:
        print(printable(f"  watch {w['folder']}: pending {w['pending']}, working {w['working']}, "
                        f"done {w['done']}, failed {w['failed']}"))
        if w.get("set_aside"):
            print(printable(f"    {w['set_aside']} journal entries set aside (see the daemon's log)"))
        if w.get("problem"):
            print(printable(f"    problem: {w['problem']}"))
    return 0


def cmd_cancel(args: argparse.Namespace) -> int:
    with client_for(args) as client:
        r = client.cancel(args.job)
    print(f"cancelled {r.job} ({r.was})")
    return 0


def cmd_styles(args: argparse.Namespace) -> int:
    with client_for(args) as client:
        if args.styles_command == "list":
            reply = client.call(StylesList())
            styles = reply.styles  # type: ignore[attr-defined]
            if args.json:
                emit_json({"styles": styles})
                return 0
            if not styles:
                print("the style library is empty; add one with `impasto styles add NAME IMAGE`")
            for s in styles:
                print(printable(f"{s['name']:24} {s.get('width', '?')}x{s.get('height', '?')}  "
                                f"{s['file']}"))
        elif args.styles_command == "add":
            img = imagecodec.read_file(args.image)
            reply = client.call(StylesAdd(name=args.name, image=imagecodec.to_ref(img)),
                                timeout=max(client.timeout, 30))
            info = json.loads(reply.detail)  # type: ignore[attr-defined]
            print(f"added style {info['name']}")
        else:
            client.call(StylesRemove(name=args.name))
            print(f"removed style {args.name}")
    return 0
