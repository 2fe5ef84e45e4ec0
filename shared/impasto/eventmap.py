"""The daemon's messages (impasto.protocol) as event lines (impasto.events): each kind
mapped once, here, for the GIMP bridge and the CLI alike.

  protocol Accepted                 -> events.Accepted
  protocol Progress (or an engine   -> events.Progress, with a clip's frame numbered in
    Step, in-process)                  the whole clip
  protocol Progress with a preview  -> events.Preview (the caller writes the picture)
  protocol Frame                    -> events.FrameDone
  protocol Result                   -> events.Done (a still)
  clipsend.ClipOutcome              -> events.Done (a clip: all its requests)

What only a caller knows (where it wrote a file, the size it decoded, a note for the
person) comes in as arguments; nothing here writes or prints. No Pillow, no torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from impasto import events, protocol
from impasto.clipsend import ClipOutcome


class Evaluation(Protocol):
    """What a progress report carries: a protocol Progress, or the engine's Step when
    the CLI runs a job in its own process."""

    @property
    def scale(self) -> int: ...
    @property
    def scales(self) -> int: ...
    @property
    def size(self) -> int: ...
    @property
    def step(self) -> int: ...
    @property
    def total(self) -> int: ...
    @property
    def losses(self) -> dict[str, float]: ...
    @property
    def elapsed_s(self) -> float: ...


def accepted(a: protocol.Accepted) -> events.Accepted:
    return events.Accepted(job=a.job, position=a.position)


def progress(p: Evaluation, *, frame: int | None = None,
             frames: int | None = None) -> events.Progress:
    """One optimisation step. In a clip sent as several requests, `frame` is the clip
    index of the frame being worked on and `frames` the clip's length, where known; with
    no `frame`, both are the message's own (in its request)."""
    job = stage = None
    if isinstance(p, protocol.Progress):
        job, stage = p.job or None, str(p.stage)
        if frame is None:  # numbered in its request
            frame, frames = p.frame, p.frames
    return events.Progress(step=p.step, total=p.total, scale=p.scale, scales=p.scales, job=job,
                           stage=stage, size=p.size, losses=dict(p.losses),
                           elapsed_s=round(p.elapsed_s, 4), frame=frame, frames=frames)


def preview(p: protocol.Progress, path: Path | str | None) -> events.Preview | None:
    """The live preview `p` carries, as written at `path`; None when it carries none or
    there is nowhere to say it is."""
    if p.preview is None or path is None or p.preview.width is None or p.preview.height is None:
        return None
    return events.Preview(path=str(path), width=p.preview.width, height=p.preview.height,
                          step=p.step)


def frame_done(f: protocol.Frame, *, index: int | None = None, frames: int | None = None,
               path: Path | str | None = None, elapsed_s: float | None = None) -> events.FrameDone:
    """A clip's frame is done: `index` in the whole clip and `frames` its length, where
    known; with no `index`, both are the message's own (in its request). path: where the
    caller wrote it (raw, at the frame's size, which the line then gives); elapsed_s: the
    frame's own time unless the caller counts another (the CLI: since the clip began)."""
    image = f.image if path is not None else None
    if index is None:  # numbered in its request
        index, frames = f.index, f.frames
    return events.FrameDone(frame=index, frames=frames,
                            elapsed_s=f.elapsed_s if elapsed_s is None else elapsed_s,
                            path=None if path is None else str(path),
                            width=None if image is None else image.width,
                            height=None if image is None else image.height)


def done(r: protocol.Result, *, output: Path | str, size: tuple[int, int] | None = None,
         raw: bool = False, stopped: bool | None = None,
         message: str | None = None) -> events.Done:
    """A still's result, written to `output`. size: the picture's, where its image does
    not say (an encoded one); raw: the output is the result's raw pixels, in the format
    the line names."""
    image = r.image
    assert image is not None
    width, height = size if size is not None else (image.width, image.height)
    assert width is not None and height is not None, "an encoded result's size is the caller's"
    return events.Done(width=width, height=height, seed=r.seed, weights=r.weights,
                       output=str(output), format=image.format if raw else None,
                       stopped=stopped, message=message, job=r.job or None,
                       losses=dict(r.losses), elapsed_s=r.elapsed_s,
                       schedule=list(r.schedule))


def clip_done(o: ClipOutcome, *, output: Path | str, size: tuple[int, int],
              format: str | None = None, message: str | None = None,
              **more: Any) -> events.Done:
    """A clip's end: the frames its requests did (all, or those before a stop), at
    `size` (the stylized frames'), one seed; `more`: what only the caller measured
    (elapsed_s from its own clock, seconds_per_frame, independent, stability)."""
    return events.Done(width=size[0], height=size[1], seed=o.seed, weights=o.weights,
                       output=str(output), format=format, stopped=o.stopped, message=message,
                       frames=o.frames, **more)
