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
