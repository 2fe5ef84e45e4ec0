"""What a stylize request must be before it becomes a job: the work it asks for within
the daemon's limit, and its images decoded (masks, a clip's frames and the frame and
result it continues from). Run on the loop's intake thread, off the socket loop."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from PIL import Image

from impasto import imagecodec
from impasto.errors import BAD_OPTIONS, ImpastoError
from impasto.options import EngineOptions
from impasto.protocol import ImageRef, Stylize

# The most work one request may ask for, in pixel-evaluations: each scale's long side
# squared times its evaluations, summed over the scales and a clip's frames. A running
# job holds its worker until it ends, so one request may not hold it for days: 2**37
# (1.4e11) is 100,000 evaluations at 1024 px, about 40 minutes of an H100 (4.7 ms an
# evaluation at 512 px, docs/performance.md: 5.6e7 pixel-evaluations a second) and
# ten times over what the `best` preset costs at the largest size (8192 px: 1.0e10).
# On a CPU it is weeks either way; the cap bounds the request, not the machine. Larger
# work goes as several requests (a clip in shorter ones), or in-process
# (`impasto stylize --local`).
MAX_JOB_WORK = 2**37


def job_work(opts: EngineOptions, frames: int = 1) -> int:
    """The work a request asks for, counted as MAX_JOB_WORK counts it (the long side
    squared: an upper bound for any shape). A clip's frames after the first run one
    scale at the output size, with the last scale's evaluations (engine/video.py)."""
    schedule = opts.schedule()
    first = sum(side * side * n for side, n in schedule)
    side, n = schedule[-1]
    return first + max(0, frames - 1) * side * side * n


def check_work(opts: EngineOptions, frames: int = 1) -> None:
    work = job_work(opts, frames)
    if work > MAX_JOB_WORK:
        raise ImpastoError(BAD_OPTIONS, (
            f"this request asks for {work:,} pixel-evaluations (each scale's long side "
            f"squared times its evaluations{', over its frames' if frames > 1 else ''}); "
            f"the daemon takes at most {MAX_JOB_WORK:,} a request (100,000 evaluations at "
            "1024 px): ask for fewer evaluations or a smaller size, send a clip in shorter "
            "requests, or run it in-process (impasto stylize --local)"))


def region_mask(ref: ImageRef, size: tuple[int, int], i: int) -> Image.Image:
    return imagecodec.as_mask(imagecodec.decode_mask(ref, f"the mask of style {i + 1}"), size, i)


def decode_clip(msg: Stylize, opts: EngineOptions, check: Callable[[], None] = lambda: None,
                ) -> tuple[list[Image.Image], tuple[Image.Image, np.ndarray] | None]:
    """A clip's frames, all of one size, and the frame and result it continues from. The
    previous result may come at any size of the frames' shape (a client may have scaled
    it); it is brought to the size this request's frames come out at. `check` runs
    before each frame (it raises to stop)."""
    frames = []
    for i, ref in enumerate(msg.frames):
        check()
        frames.append(imagecodec.decode_pil(ref, f"frame {i + 1}"))
    size = frames[0].size
    for i, f in enumerate(frames):
        if f.size != size:
            raise ImpastoError(BAD_OPTIONS, f"frame {i + 1} is {f.width}x{f.height}; a clip's "
                               f"frames are all one size (frame 1 is {size[0]}x{size[1]})")
    if msg.previous_frame is None or msg.previous_result is None:
        return frames, None
    before = imagecodec.decode_pil(msg.previous_frame, "previous_frame")
    if before.size != size:
        raise ImpastoError(BAD_OPTIONS, f"previous_frame is {before.width}x{before.height}; "
                           f"the clip's frames are {size[0]}x{size[1]}")
    result = imagecodec.decode(msg.previous_result, "previous_result")
    rw, rh = result.size if isinstance(result, Image.Image) else (result.width, result.height)
    # Its shape must be the frames' (within a pixel of rounding at its size).
    if rw < 16 or rh < 16 or abs(rw * size[1] - rh * size[0]) > max(size):
        raise ImpastoError(BAD_OPTIONS, f"previous_result is {rw}x{rh}; it must have the shape "
                           f"of the frames ({size[0]}x{size[1]}) and be at least 16 px a side")
    # The size this request's frames come out at, which is the size the frame before
    # held to within one request: the frames' own with match_content_size.
    out = size if opts.match_content_size else imagecodec.long_side_size(
        size[0], size[1], opts.resolved_size())
    pil = (result.to_pil() if isinstance(result, imagecodec.FloatImage) else result).convert("RGB")
    if pil.size != out:
        pil = pil.resize(out, Image.Resampling.LANCZOS)
    pixels = np.asarray(pil, dtype=np.float32) / 255.0
    return frames, (before, np.ascontiguousarray(pixels, dtype=np.float32))
