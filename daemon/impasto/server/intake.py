"""A stylize request on its way to a job, in two steps:

- `admit`, on the socket loop: what the message and its images' headers must be before
  any pixel is decoded (content or frames, options, the work asked for within the
  daemon's limit, the images' pixels within the request's budget);
- `decode_job`, on the loop's intake thread (off the socket loop): its images decoded
  (content or a clip's frames and the frame and result it continues from, each style
  with its mask) into a `Job`, each style one `JobStyle`.

`IntakeThread` is that thread: the loop hands it work that takes seconds (decoding,
writing files) and finishes each request when it is done.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import zmq
from PIL import Image

from impasto import imagecodec
from impasto.errors import (
    BAD_MESSAGE,
    BAD_OPTIONS,
    CANCELLED,
    IMAGE_TOO_LARGE,
    INTERNAL,
    ImpastoError,
)
from impasto.options import EngineOptions
from impasto.protocol import MAX_CLIP_FRAMES, MAX_REQUEST_PIXELS, ImageRef, Message, Stylize
from impasto.server.events import WAKE_ENDPOINT
from impasto.server.jobqueue import Job, JobStyle
from impasto.server.stylelib import StyleLibrary

log = logging.getLogger(__name__)

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


def admit(msg: Stylize) -> EngineOptions:
    """Check a stylize request before its images are decoded; returns its options.
    Raises ImpastoError (the reply) for a request that asks for nothing, for more work
    than the daemon takes, or for images too large together."""
    if msg.content is None and not msg.frames:
        empty = " (frames is empty)" if msg.frames == [] else ""
        raise ImpastoError(BAD_MESSAGE, "stylize needs a content image, or a clip of 1 to "
                           f"{MAX_CLIP_FRAMES} frames{empty}")
    opts = EngineOptions.from_dict(msg.options)
    check_work(opts, len(msg.frames) or 1)
    # A budget checked from the images' headers, before any pixel is decoded.
    # A clip's continuation (previous_frame, previous_result: two images of at most
    # a frame's size, each within the per-image limit) is outside the total, so that
    # a clip of the largest frames still goes one frame a request.
    own = [msg.content] if msg.content is not None else list(msg.frames)
    images = own + [ref.image for ref in msg.styles if ref.image is not None] + [
        ref.mask for ref in msg.styles if ref.mask is not None]
    total = sum(imagecodec.pixels(ref) for ref in images)
    if total > MAX_REQUEST_PIXELS:
        # In pixels: rounded megapixels made a 33.55 MP request "over 34 MP".
        raise ImpastoError(IMAGE_TOO_LARGE, f"the request's images hold {total:,} pixels; "
                           f"at most {MAX_REQUEST_PIXELS:,} in one request")
    return opts


def decode_job(msg: Stylize, opts: EngineOptions, library: StyleLibrary, *, peer: bytes,
               req: str | None, owner: str, gone: threading.Event) -> Job:
    """The admitted request's job, its images decoded. `gone` is set when the client
    disconnects: decoding then stops at the next image (the intake is one thread, and
    the requests behind this one wait for it)."""

    def check() -> None:
        if gone.is_set():
            raise ImpastoError(CANCELLED, "the client disconnected")

    content, frames, previous = None, [], None
    check()
    if msg.content is not None:
        content = imagecodec.decode(msg.content, "the content image")
    else:
        frames, previous = decode_clip(msg, opts, check)
    size = content.size if content is not None else frames[0].size
    # Every style's image before any mask: a request naming an unknown style fails
    # before its masks (each the content's size) are decoded.
    images = []
    for i, ref in enumerate(msg.styles):
        check()
        if ref.name is not None:
            images.append((library.load(ref.name), ref.name))
        else:
            assert ref.image is not None
            images.append((imagecodec.decode_pil(ref.image, f"style image {i + 1}")
                           .convert("RGB"), f"image{i}"))
    styles = [JobStyle(image, ref.weight, label,
                       None if ref.mask is None else region_mask(ref.mask, size, i))
              for i, (ref, (image, label)) in enumerate(zip(msg.styles, images))]
    return Job(content=content, styles=styles, options=opts, priority=msg.priority,
               peer=peer, req=req, output=msg.output, client=msg.client, owner=owner,
               preview=msg.preview, frames=frames, previous=previous)


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


# A request the intake thread is done with: the client's routing id, its req id, what
# the loop runs to finish it (returns the reply; an ImpastoError raised is the reply),
# and a stylize request's mark of its client gone (Connections.intake), else None.
Finished = tuple[bytes, str | None, Callable[[], Message], threading.Event | None]


class IntakeThread:
    """One thread, off the socket loop: images are decoded one request at a time, so a
    burst of large requests costs one request's memory at a time, not all of theirs.
    Each request done is queued for the loop, and the loop woken (WAKE_ENDPOINT)."""

    def __init__(self, ctx: zmq.Context) -> None:
        self._ctx = ctx
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="impasto-intake")
        self._done: queue.SimpleQueue[Finished] = queue.SimpleQueue()

    def submit(self, peer: bytes, req: str | None, work: Callable[[], Callable[[], Message]],
               gone: threading.Event | None = None) -> None:
        """Run `work` (decoding images, writing files: seconds for large images) on the
        thread. `work` returns a function that the loop then runs to finish the request
        (queueing a job must happen there, so that `accepted` goes out before the job's
        first progress event); an ImpastoError from either is the reply.
        gone: a stylize request's mark, set when its client disconnects meanwhile."""

        def run() -> None:
            try:
                finish = work()
            except ImpastoError as e:
                finish = _raiser(e)
            except Exception as e:  # noqa: BLE001 - reported to the client as internal
                log.exception("request failed")
                finish = _raiser(ImpastoError(INTERNAL, f"internal error ({type(e).__name__}); the daemon's log has the details"))
            self._done.put((peer, req, finish, gone))
            sock = self._ctx.socket(zmq.PUSH)
            sock.connect(WAKE_ENDPOINT)
            sock.send(b"", copy=False)
            sock.close(linger=1000)

        self._pool.submit(run)

    def finished(self) -> Iterator[Finished]:
        """The requests done and not yet finished by the loop, each taken once."""
        while True:
            try:
                yield self._done.get_nowait()
            except queue.Empty:
                return

    def has_finished(self) -> bool:
        return not self._done.empty()

    def shutdown(self) -> None:
        """Run nothing more, and wait for the request running to be done."""
        self._pool.shutdown(wait=True, cancel_futures=True)


def _raiser(e: ImpastoError) -> Callable[[], Message]:
    def fail() -> Message:
        raise e

    return fail
