"""A clip through the daemon, frame images as they travel (ImageRefs): its frames sent as
a run of stylize requests ("chunks"), each continuing the one before (previous_frame,
previous_result), so that a clip of any length fits the protocol's per-request budgets
and comes out as it would from one request.

No Pillow, no torch: the GIMP bridge sends its raw frames with this as they are, and
`impasto.clipjobs` wraps it for Pillow images (the CLI, the watch folders), encoding
the frames and decoding the results outside it.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from impasto.client import Client
from impasto.protocol import (
    MAX_CLIP_FRAMES,
    MAX_MESSAGE_BYTES,
    MAX_REQUEST_PIXELS,
    RAW_FORMATS,
    Accepted,
    Frame,
    ImageRef,
    OutputFormat,
    Priority,
    Progress,
    Result,
    StyleRef,
    Stylize,
)

# Frames per request. Frames stream back as they are done whatever the chunk's length;
# a chunk bounds what a client holds and encodes ahead (and what a cancel throws away).
DEFAULT_CHUNK = 32
# PNG is at worst a little over 4 bytes a pixel (RGBA, incompressible).
ENCODED_BYTES_PER_PIXEL = 5

# How many pixels an image holds; None where that is unknown without decoding it.
Measure = Callable[[ImageRef], int | None]


def raw_pixels(ref: ImageRef) -> int | None:
    """A raw image's pixels, from its width and height; None for an encoded one (its
    header says, and reading it takes an image library)."""
    if ref.format in RAW_FORMATS and ref.width and ref.height:
        return ref.width * ref.height
    return None


@dataclass
class ClipOutcome:
    frames: int  # frames done by these requests (fewer than asked after a stop and keep)
    seed: int
    weights: str
    elapsed_s: float
    stopped: bool = False  # ended early by should_finish
    jobs: list[str] = field(default_factory=list)


def chunk_length(frame_pixels: int, styles: list[StyleRef], limit: int, *,
                 bytes_per_pixel: int = ENCODED_BYTES_PER_PIXEL,
                 measure: Measure = raw_pixels) -> int:
    """How many frames of this many pixels one request can carry beside its styles,
    within the request's pixel and byte budgets (the continuation images are outside
    the pixel budget, not outside the bytes). Where a style image's size is unknown
    (`measure` gives None: an encoded picture, and no image library to read its
    header), half the pixel budget is left to the styles."""
    px = max(1, frame_pixels)
    sizes = [measure(r) for r in [s.image for s in styles if s.image is not None]
             + [s.mask for s in styles if s.mask is not None]]
    known = sum(n for n in sizes if n is not None)
    room = (MAX_REQUEST_PIXELS - known if None not in sizes
            else max(px, MAX_REQUEST_PIXELS // 2 - known))
    # Half the message budget leaves room for the styles' and the continuation's bytes.
    by_bytes = (MAX_MESSAGE_BYTES // 2) // (px * bytes_per_pixel)
    return max(1, min(limit, MAX_CLIP_FRAMES, room // px, by_bytes))


def send_clip(client: Client, frames: Iterable[ImageRef], styles: list[StyleRef],
              options: dict[str, Any], on_frame: Callable[[int, Frame], None], *,
              start: int = 0, previous: tuple[ImageRef, ImageRef] | None = None,
              chunk: int = DEFAULT_CHUNK, priority: str = "interactive",
              client_name: str = "", output: str = "png",
              preview: dict[str, Any] | None = None, measure: Measure = raw_pixels,
              on_accepted: Callable[[Accepted], None] | None = None,
              on_progress: Callable[[int, Progress], None] | None = None,
              should_cancel: Callable[[], bool] | None = None,
              should_finish: Callable[[], bool] | None = None) -> ClipOutcome:
    """Stylize `frames` (an iterable of frames of one size, read a chunk at a time) and
    hand each result to on_frame in order, with its index in the clip (numbered from
    `start`). previous: the frame before the first and its stylized result, to continue
    a clip. on_progress gets the clip index of the frame being worked on. The first
    request's seed is used for every later request (the options' seed when given), so a
    clip is one seed from end to end. A stop (should_finish) ends the clip with the
    frames done: within a request, or between two.

    Raises ImpastoError for a failed or cancelled request; the frames handed out before
    stay handed out (a caller that keeps them can resume from them)."""
    it = iter(frames)
    opts = dict(options)
    index = start
    outcome = ClipOutcome(frames=0, seed=int(opts.get("seed") or 0), weights="", elapsed_s=0.0)
    first = next(it, None)
    if first is None:
        return outcome
    px = measure(first)
    per_request = 1 if px is None else chunk_length(
        px, styles, chunk, measure=measure,
        bytes_per_pixel=RAW_FORMATS.get(first.format, ENCODED_BYTES_PER_PIXEL))
    it = itertools.chain([first], it)
    while batch := list(itertools.islice(it, per_request)):
        if outcome.jobs and should_finish is not None and should_finish():
            outcome.stopped = True  # between two requests: the frames done are the clip
            return outcome
        base = index
        last: list[Frame | None] = [None]

        def frame_done(ev: Frame, base: int = base, last: list[Frame | None] = last) -> None:
            assert ev.image is not None
            last[0] = ev
            on_frame(base + ev.index, ev)

        def progress(p: Progress, base: int = base) -> None:
            if on_progress is not None:
                on_progress(base + (p.frame or 0), p)

        request = Stylize(frames=batch, styles=styles, options=opts, priority=Priority(priority),
                          output=OutputFormat(output), client=client_name, preview=preview,
                          previous_frame=None if previous is None else previous[0],
                          previous_result=None if previous is None else previous[1])
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
        kept = last[0]
        assert kept is not None and kept.image is not None
        previous = (batch[-1], kept.image)
    return outcome
