"""A clip through the daemon: its frames sent as a run of stylize requests ("chunks"),
each continuing the one before (previous_frame, previous_result), so that a clip of any
length fits the protocol's per-request budgets and comes out as it would from one
request. Every client with a clip uses this: the CLI, the watch folder (which resumes a
clip at its first frame not done) and the GIMP bridge. No torch.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from PIL import Image

from impasto import imagecodec
from impasto.client import Client
from impasto.protocol import (
    MAX_CLIP_FRAMES,
    MAX_MESSAGE_BYTES,
    MAX_REQUEST_PIXELS,
    Accepted,
    Frame,
    Progress,
    Result,
    StyleRef,
    Stylize,
)

log = logging.getLogger(__name__)

# Frames per request. Frames stream back as they are done whatever the chunk's length;
# a chunk bounds what a client holds and encodes ahead (and what a cancel throws away).
DEFAULT_CHUNK = 32


@dataclass
class ClipFrame:
    """One finished frame: its index in the whole clip and its stylized image."""

    index: int
    image: Image.Image
    event: Frame


@dataclass
class ClipOutcome:
    frames: int  # frames done by these requests (fewer than asked after a stop and keep)
    seed: int
    weights: str
    elapsed_s: float
    stopped: bool = False  # ended early by should_finish
    jobs: list[str] = field(default_factory=list)


def _style_pixels(styles: list[StyleRef]) -> int:
    refs = [r.image for r in styles if r.image is not None] + [
        r.mask for r in styles if r.mask is not None]
    return sum(imagecodec.pixels(r) for r in refs)


def chunk_length(frame_size: tuple[int, int], styles: list[StyleRef], limit: int) -> int:
    """How many frames of this size one request can carry beside its styles, within
    the request's pixel and byte budgets (the continuation images are outside the
    pixel budget, not outside the bytes)."""
    px = frame_size[0] * frame_size[1]
    room = MAX_REQUEST_PIXELS - _style_pixels(styles)
    # PNG is at worst a little over 4 bytes a pixel (RGBA, incompressible); half the
    # message budget leaves room for the styles' and the continuation's bytes.
    by_bytes = (MAX_MESSAGE_BYTES // 2) // max(1, px * 5)
    return max(1, min(limit, MAX_CLIP_FRAMES, room // max(1, px), by_bytes))


def send_clip(client: Client, frames: Iterable[Image.Image], styles: list[StyleRef],
              options: dict[str, Any], on_frame: Callable[[ClipFrame], None], *,
              start: int = 0, previous: tuple[Image.Image, Image.Image] | None = None,
              chunk: int = DEFAULT_CHUNK, priority: str = "interactive",
              client_name: str = "", output: str = "png",
              on_accepted: Callable[[Accepted], None] | None = None,
              on_progress: Callable[[int, Progress], None] | None = None,
              should_cancel: Callable[[], bool] | None = None,
              should_finish: Callable[[], bool] | None = None) -> ClipOutcome:
    """Stylize `frames` (an iterable, read a chunk at a time) and hand each result to
    on_frame in order, numbered from `start`. previous: the frame before the first and
    its stylized result, to continue a clip. on_progress gets the clip index of the
    frame being worked on. The first request's seed is used for every later request
    (the options' seed when given), so a clip is one seed from end to end.

    Raises ImpastoError for a failed or cancelled request; the frames handed out before
    stay handed out (a caller that keeps them can resume from them)."""
    it = iter(frames)
    opts = dict(options)
    index = start
    outcome = ClipOutcome(frames=0, seed=int(opts.get("seed") or 0), weights="", elapsed_s=0.0)
    first = next(it, None)
    if first is None:
        return outcome
    per_request = chunk_length(first.size, styles, chunk)
    it = itertools.chain([first], it)
    while batch := list(itertools.islice(it, per_request)):
        base = index
        last_result: list[Image.Image | None] = [None]

        def frame_done(ev: Frame, base: int = base,
                       last_result: list[Image.Image | None] = last_result) -> None:
            assert ev.image is not None
            img = imagecodec.decode_pil(ev.image, f"frame {base + ev.index + 1}")
            last_result[0] = img
            on_frame(ClipFrame(base + ev.index, img, ev))

        def progress(p: Progress, base: int = base) -> None:
            if on_progress is not None:
                on_progress(base + (p.frame or 0), p)

        request = Stylize(frames=[imagecodec.to_ref(f, "png") for f in batch],
                          styles=styles, options=opts, priority=priority, output=output,
                          client=client_name,
                          previous_frame=None if previous is None else imagecodec.to_ref(previous[0]),
                          previous_result=None if previous is None else imagecodec.to_ref(previous[1]))
        result: Result = client.stylize(request, on_accepted=on_accepted, on_progress=progress,
                                        should_cancel=should_cancel, should_finish=should_finish,
                                        on_frame=frame_done)
        done = result.frames or 0
        outcome = replace(outcome, frames=outcome.frames + done, seed=result.seed,
                          weights=result.weights, elapsed_s=outcome.elapsed_s + result.elapsed_s,
                          jobs=outcome.jobs + [result.job])
        opts["seed"] = result.seed
        index += done
        if done < len(batch):
            outcome.stopped = True
            return outcome
        assert last_result[0] is not None
        previous = (batch[-1], last_result[0])
    return outcome


# --- one clip over several workers --------------------------------------------------------
# Frames that two neighbouring parts both stylize, cross-faded from the earlier part's to
# the later one's. benchmarks/video.py --split (128 px, 24 frames, 2 parts): the largest
# frame-to-frame change along the true motion at the join was 16.9x the one-run clip's
# largest for a hard cut, 5.6x with 2 frames of overlap, 3.1x with 4, 1.75x with 8 (two
# parts' frames differ by about 47 levels; the fade spreads that over overlap + 1 steps).
DEFAULT_OVERLAP = 8


def part_ranges(n: int, parts: int, overlap: int) -> list[tuple[int, int, int]]:
    """(first frame run, first frame owned, end) of each part: a part after the first
    starts `overlap` frames before the frames it owns, so it has settled by then."""
    parts = max(1, min(parts, n))
    bounds = [round(i * n / parts) for i in range(parts + 1)]
    return [(max(0, b - overlap) if i else 0, b, bounds[i + 1]) for i, b in enumerate(bounds[:-1])]


def crossfade(earlier: Image.Image, later: Image.Image, k: int, overlap: int) -> Image.Image:
    """Frame k (0-based) of an overlap of `overlap` frames: the later part's weight
    rises (k + 1) / (overlap + 1), so neither part's frame arrives at once."""
    return Image.blend(earlier.convert("RGB"), later.convert("RGB"), (k + 1) / (overlap + 1))


def send_clip_parts(connect: Callable[[], Client], frames: list[Image.Image],
                    styles: list[StyleRef], options: dict[str, Any],
                    on_frame: Callable[[ClipFrame], None], *, parts: int,
                    overlap: int = DEFAULT_OVERLAP, **kw: Any) -> ClipOutcome:
    """A clip split into `parts` runs side by side (each its own connection, so a
    cluster gives each its own worker), joined by cross-fading `overlap` frames that
    both neighbours stylize. Frames reach on_frame in order, as soon as they and what
    they are blended from are done. One seed for all parts. Faster by up to `parts`x on
    a cluster; the price is the join (docs/engine.md: Video), which one run has not."""
    import secrets
    import threading

    n = len(frames)
    parts = max(1, min(parts, n))
    # A part shorter than the overlap would spend its frames settling for nothing.
    overlap = max(0, min(overlap, n // parts - 1))
    ranges = part_ranges(n, parts, overlap)
    opts = dict(options)
    if opts.get("seed") is None:
        opts["seed"] = secrets.randbelow(2**31)
    done: list[dict[int, Image.Image]] = [{} for _ in ranges]
    failures: list[BaseException] = []
    outcomes: list[ClipOutcome | None] = [None] * len(ranges)
    cond = threading.Condition()
    stop = threading.Event()
    user_cancel = kw.pop("should_cancel", None)
    cancel = lambda: stop.is_set() or (user_cancel is not None and user_cancel())  # noqa: E731

    def run(j: int) -> None:
        first, _, end = ranges[j]

        def got(f: ClipFrame) -> None:
            with cond:
                done[j][f.index] = f.image
                cond.notify_all()
        try:
            with connect() as client:
                outcomes[j] = send_clip(client, frames[first:end], styles, opts, got,
                                        start=first, should_cancel=cancel, **kw)
        except BaseException as e:  # noqa: BLE001 - handed to the caller below
            with cond:
                failures.append(e)
                cond.notify_all()
        finally:
            with cond:
                outcomes[j] = outcomes[j] or ClipOutcome(0, 0, "", 0.0, stopped=True)
                cond.notify_all()

    threads = [threading.Thread(target=run, args=(j,), daemon=True) for j in range(len(ranges))]
    for t in threads:
        t.start()
    sent = 0
    try:
        for i in range(n):
            j = max(k for k, (_, own, _) in enumerate(ranges) if own <= i)
            # Overlap frames of part j + 1 that fall in part j's own range, too.
            nxt = j + 1 if j + 1 < len(ranges) and ranges[j + 1][0] <= i else None
            with cond:
                while not failures and not (i in done[j] and (nxt is None or i in done[nxt])):
                    if outcomes[j] is not None and i not in done[j]:
                        break  # part j ended (stopped) before frame i
                    if nxt is not None and outcomes[nxt] is not None and i not in done[nxt]:
                        break
                    cond.wait(0.5)
                if failures:
                    raise failures[0]
                if i not in done[j] or (nxt is not None and i not in done[nxt]):
                    break  # a stop and keep: the frames so far are the clip
                img = done[j].pop(i)
                if nxt is not None:
                    k = i - ranges[nxt][0]
                    img = crossfade(img, done[nxt].pop(i), k, ranges[nxt][1] - ranges[nxt][0])
            on_frame(ClipFrame(i, img, Frame(index=i, frames=n, seed=opts["seed"])))
            sent += 1
    finally:
        stop.set()
        for t in threads:
            t.join()
    finished = [o for o in outcomes if o is not None]
    return ClipOutcome(frames=sent, seed=int(opts["seed"]),
                       weights=next((o.weights for o in finished if o.weights), ""),
                       elapsed_s=max((o.elapsed_s for o in finished), default=0.0),
                       stopped=sent < n, jobs=[j for o in finished for j in o.jobs])
