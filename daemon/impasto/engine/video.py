"""A clip, frame by frame: the first as a still, each later one from the one before
(temporal.py), or each on its own (`independent`, the baseline)."""

from __future__ import annotations

import dataclasses
import secrets
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import numpy as np
from PIL import Image

from impasto.engine.temporal import Guide
from impasto.engine.transfer import Engine, Outcome, Step, StyleInput
from impasto.options import EngineOptions


@dataclass
class FrameStep:
    """Progress within a clip: which frame, and the engine's step within it."""

    frame: int  # 0-based
    frames: int | None  # None: not known (a stream)
    step: Step


def later_options(opts: EngineOptions) -> EngineOptions:
    """Frames after the first: one scale at the output size (they start from a frame
    stylized at that size) for as many evaluations as the preset's last scale, stopping
    on its tolerance; cheaper than a still, whose coarse scales come first."""
    n = opts.schedule()[-1][1]
    return dataclasses.replace(opts, evaluations=[n], scales=None, iterations=None)


def stylize_frames(engine: Engine, frames: Iterable[Image.Image], styles: list[StyleInput],
                   opts: EngineOptions, independent: bool = False, count: int | None = None,
                   on_step: Callable[[FrameStep], None] | None = None,
                   should_stop: Callable[[], bool] | None = None,
                   cache=None,  # noqa: ANN001 - transfer.TargetCache
                   start: tuple[Image.Image, np.ndarray] | None = None) -> Iterator[Outcome]:
    """Yields each frame's outcome in order. Every frame uses the same seed (drawn once
    when opts has none), so the independent baseline differs from frame to frame only
    where the picture does. start: the frame before the first and its stylized result
    (float RGB), for a clip continued from an earlier run: the first frame then holds to
    it as it would have in one run. start's result is as delivered: 8 bits a channel."""
    if opts.seed is None:
        opts = dataclasses.replace(opts, seed=secrets.randbelow(2**31))
    later = later_options(opts)
    prev_frame: Image.Image | None = None if start is None else start[0]
    prev_pixels: np.ndarray | None = None if start is None else start[1]
    for i, frame in enumerate(frames):
        def report(s: Step, i: int = i) -> None:
            if on_step is not None:
                on_step(FrameStep(i, count, s))

        if prev_pixels is None or independent or opts.stability <= 0:
            out = engine.run(frame, styles, opts, on_step=report, should_stop=should_stop,
                             cache=cache)
        else:
            assert prev_frame is not None
            size = (prev_pixels.shape[1], prev_pixels.shape[0])
            guide = Guide.between(prev_frame.convert("RGB").resize(size, Image.Resampling.LANCZOS),
                                  frame.convert("RGB").resize(size, Image.Resampling.LANCZOS),
                                  prev_pixels)
            out = engine.run(frame, styles, later, on_step=report, should_stop=should_stop,
                             cache=cache, temporal=guide)
        # The next frame holds to this one as delivered (8 bits), not to its float
        # pixels: a clip continued from a delivered frame (the next request of a long
        # clip, a resumed one) then comes out exactly as it would have in one run.
        prev_frame, prev_pixels = frame, np.asarray(out.image.convert("RGB"), np.float32) / 255.0
        yield out
