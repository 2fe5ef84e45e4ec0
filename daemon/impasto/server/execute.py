"""One job through the engine: progress (with previews), then its Result or Error.

The one place a job is run, so that the embedded worker thread and a cluster worker
(a Ray actor) send the same events and the same result for the same job.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import zmq
from PIL import Image

from impasto import imagecodec
from impasto.engine.tensors import to_image
from impasto.engine.transfer import Engine, Outcome, StyleInput
from impasto.engine.video import FrameStep, stylize_frames
from impasto.errors import CANCELLED, INTERNAL, SHUTDOWN, ImpastoError, JobCancelled
from impasto.options import EngineOptions
from impasto.protocol import Error, Frame, ImageRef, Message, Progress, Result, Stage
from impasto.server.events import EVENTS_ENDPOINT, emit
from impasto.server.jobqueue import Job, JobQueue
from impasto.server.targetcache import GramCache

log = logging.getLogger(__name__)

# At tiny sizes evaluations come every few ms; 20 events/s is plenty for a bar, and
# every event is one message through the front's socket (and one object through Ray).
PROGRESS_EVERY_S = 0.05


@dataclasses.dataclass
class JobSpec:
    """What running a job needs: images and options, nothing of the client."""

    job: str
    content: Image.Image | None
    styles: list[StyleInput]  # each with its weight and region, as the engine takes them
    options: EngineOptions
    output: str = "png"
    preview: dict[str, Any] | None = None  # Stylize.preview, checked
    frames: list[Image.Image] = dataclasses.field(default_factory=list)  # a clip, for content
    previous: tuple[Image.Image, Any] | None = None  # the frame before, and its result


def run_job(engine: Engine, cache: GramCache, spec: JobSpec, send: Callable[[Message], None],
            should_stop: Callable[[], bool], should_finish: Callable[[], bool],
            where: str = "the daemon's log") -> Result | Error:
    """Run `spec`, sending its progress (and a clip's frames); returns the message that
    ends it (an Error with CANCELLED when should_stop said so). `where`: whose log has a
    crash's details."""
    last_sent = [0.0]
    last_preview: list[float | None] = [None]  # None: no preview sent yet
    preview_opts = spec.preview
    frame_of: list[tuple[int, int] | None] = [None]  # (frame, frames) in a clip

    def on_step(step: Any) -> None:
        now = time.monotonic()
        preview = None
        # The first preview goes out with the first evaluation (something to look at at
        # once), then one per interval. It is a copy of the image downscaled in torch and
        # PNG-encoded at level 1: a few ms at 256 px, once a second, next to evaluations
        # that take tens to hundreds of ms.
        if preview_opts is not None and step.snapshot is not None and (
                last_preview[0] is None or now - last_preview[0] >= preview_opts["interval_s"]):
            last_preview[0] = now
            preview = imagecodec.to_ref(to_image(step.snapshot(preview_opts["max_side"])),
                                       preview_opts["format"])
        elif now - last_sent[0] < PROGRESS_EVERY_S and step.step < step.total:
            return
        last_sent[0] = now
        at = frame_of[0]
        send(Progress(job=spec.job, stage=Stage.OPTIMIZE, scale=step.scale, scales=step.scales,
                      size=step.size, step=step.step, total=step.total, losses=step.losses,
                      elapsed_s=round(step.elapsed_s, 4), preview=preview,
                      frame=None if at is None else at[0], frames=None if at is None else at[1]))

    try:
        if spec.frames:
            return _run_clip(engine, cache, spec, send, on_step, frame_of,
                             should_stop, should_finish)
        outcome = engine.run(spec.content, spec.styles,
                             spec.options, on_step=on_step, should_stop=should_stop,
                             cache=cache, should_finish=should_finish)
        ref = _encode(outcome, spec.output)
        log.info("job %s done in %.1f s", spec.job, outcome.elapsed_s)
        return Result(job=spec.job, image=ref, losses=outcome.losses, seed=outcome.seed,
                      elapsed_s=round(outcome.elapsed_s, 3), weights=engine.weights.label,
                      schedule=[dataclasses.asdict(s) for s in outcome.schedule])
    except JobCancelled:
        log.info("job %s cancelled", spec.job)
        return Error(CANCELLED, f"job {spec.job} was cancelled", spec.job)
    except ImpastoError as e:
        log.warning("job %s failed: %s", spec.job, e)
        return Error(e.code, e.message, spec.job)
    except Exception as e:  # the worker must survive anything a job does
        log.exception("job %s crashed", spec.job)
        return Error(INTERNAL, f"internal error ({type(e).__name__}); {where} has the "
                     "details", spec.job)


def _encode(outcome: Outcome, output: str) -> ImageRef:
    if output == "rgb32f" and outcome.pixels is not None:
        return imagecodec.to_ref(imagecodec.FloatImage(outcome.pixels), "rgb32f")
    return imagecodec.to_ref(outcome.image, output)


def _run_clip(engine: Engine, cache: GramCache, spec: JobSpec,
              send: Callable[[Message], None], on_step: Callable[[Any], None],
              frame_of: list[tuple[int, int] | None], should_stop: Callable[[], bool],
              should_finish: Callable[[], bool]) -> Result:
    """A clip, frame by frame (engine/video.py), each frame sent as it is done. A stop
    and keep ends the clip at once and keeps the frames done: a half-optimised frame
    would jump out of the clip, so the one in progress is dropped."""
    n = len(spec.frames)
    t0 = time.perf_counter()
    done = 0
    last: Outcome | None = None

    def step(fs: FrameStep) -> None:
        frame_of[0] = (fs.frame, n)
        on_step(fs.step)

    stop = lambda: should_stop() or should_finish()  # noqa: E731
    try:
        for i, outcome in enumerate(stylize_frames(engine, spec.frames, spec.styles, spec.options,
                                                   count=n, on_step=step, should_stop=stop,
                                                   cache=cache, start=spec.previous)):
            send(Frame(job=spec.job, index=i, frames=n, image=_encode(outcome, spec.output),
                       losses=outcome.losses, seed=outcome.seed,
                       elapsed_s=round(outcome.elapsed_s, 3),
                       schedule=[dataclasses.asdict(s) for s in outcome.schedule]))
            done, last = i + 1, outcome
    except JobCancelled:
        if should_stop() or not should_finish():
            raise
        log.info("job %s stopped after %d of %d frames, keeping them", spec.job, done, n)
    elapsed = time.perf_counter() - t0
    log.info("job %s: %d frames in %.1f s", spec.job, done, elapsed)
    return Result(job=spec.job, image=None, losses=last.losses if last else {},
                  seed=last.seed if last else (spec.options.seed or 0),
                  elapsed_s=round(elapsed, 3), weights=engine.weights.label,
                  schedule=[], frames=done)


def spec_of(job: Job) -> JobSpec:
    """What a worker needs of a queued job: each style as the engine takes it (its label,
    like the client's routing id and key, stays with the job)."""
    styles = [StyleInput(style.image, style.weight, style.mask) for style in job.styles]
    return JobSpec(job=job.id, content=job.content, styles=styles, options=job.options,
                   output=job.output, preview=job.preview, frames=job.frames,
                   previous=job.previous)


class JobEnder:
    """Ends jobs for a back end (the embedded worker and every cluster runner alike):
    turns a cancel caused by the daemon stopping into `shutdown`, books the job as
    done, cancelled (by its owner, its client's disconnect, a watch folder's storage
    fault, the daemon stopping: nothing failed) or failed, tells the queue, then sends
    the job's one terminal event."""

    def __init__(self, queue: JobQueue, ctx: zmq.Context, stopping: threading.Event) -> None:
        self.queue = queue
        self.ctx = ctx
        self.stopping = stopping
        self.done = 0
        self.failed = 0
        self.cancelled = 0
        self._lock = threading.Lock()

    def end(self, job: Job, final: Message, sock: zmq.Socket | None = None) -> Message:
        if isinstance(final, Error) and final.code == CANCELLED and self.stopping.is_set():
            final = Error(SHUTDOWN, "the daemon is shutting down; job stopped", job.id)
        # Booked before the client hears the outcome: a client that has its result and
        # asks for status at once must see it counted, not still running.
        with self._lock:
            if isinstance(final, Result):
                self.done += 1
            elif isinstance(final, Error) and final.code in (CANCELLED, SHUTDOWN):
                self.cancelled += 1
            else:
                self.failed += 1
        self.queue.finished(job)
        if sock is not None:
            emit(sock, job, final)
        else:  # a thread with no events socket of its own (a cluster's manager)
            own = self.ctx.socket(zmq.PUSH)
            own.connect(EVENTS_ENDPOINT)
            emit(own, job, final)
            own.close(linger=2000)
        return final
