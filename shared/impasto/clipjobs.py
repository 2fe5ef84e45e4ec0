"""A clip of Pillow images through the daemon: `impasto.clipsend` (which sends frames as
they travel, in requests that each continue the one before) with the frames encoded as
PNG going out and the stylized frames decoded coming back. The CLI and the watch folder
(which resumes a clip at its first frame not done) use this; the GIMP bridge, which has
raw frames and no Pillow, uses clipsend itself. Also: one clip over several workers,
joined by cross-fades. No torch.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from PIL import Image

from impasto import clipsend, imagecodec
from impasto.client import Client
from impasto.clipsend import DEFAULT_CHUNK, ClipOutcome
from impasto.protocol import Accepted, Frame, Progress, StyleRef

log = logging.getLogger(__name__)

@dataclass
class ClipFrame:
    """One finished frame: its index in the whole clip and its stylized image."""

    index: int
    image: Image.Image
    event: Frame


def chunk_length(frame_size: tuple[int, int], styles: list[StyleRef], limit: int) -> int:
    """How many frames of this size (encoded as PNG) one request can carry beside its
    styles (clipsend.chunk_length; the styles' sizes read from their headers)."""
    return clipsend.chunk_length(frame_size[0] * frame_size[1], styles, limit,
                                 measure=imagecodec.pixels)


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
    on_frame in order, numbered from `start`, decoded. previous: the frame before the
    first and its stylized result, to continue a clip. The rest is clipsend.send_clip's.

    Raises ImpastoError for a failed or cancelled request; the frames handed out before
    stay handed out (a caller that keeps them can resume from them)."""

    def got(index: int, ev: Frame) -> None:
        assert ev.image is not None
        on_frame(ClipFrame(index, imagecodec.decode_pil(ev.image, f"frame {index + 1}"), ev))

    return clipsend.send_clip(
        client, (imagecodec.to_ref(f, "png") for f in frames), styles, options, got,
        start=start, chunk=chunk, priority=priority, client_name=client_name, output=output,
        previous=None if previous is None else (imagecodec.to_ref(previous[0]),
                                                imagecodec.to_ref(previous[1])),
        measure=imagecodec.pixels, on_accepted=on_accepted, on_progress=on_progress,
        should_cancel=should_cancel, should_finish=should_finish)


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
