"""The worker thread: takes jobs off the queue and runs them through the engine.

It never touches the ROUTER socket (ZeroMQ sockets are not thread-safe); it hands each
event to the server's loop through an inproc PUSH socket.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from typing import Any

import zmq

from impasto import imagecodec
from impasto.engine.tensors import to_image
from impasto.engine.transfer import Engine, StyleInput
from impasto.errors import CANCELLED, INTERNAL, SHUTDOWN, ImpastoError, JobCancelled
from impasto.protocol import Error, Message, Progress, Result, Stage, encode
from impasto.server.jobqueue import Job, JobQueue
from impasto.server.targetcache import GramCache

log = logging.getLogger(__name__)

EVENTS_ENDPOINT = "inproc://impasto-events"
WAKE_ENDPOINT = "inproc://impasto-wake"  # the intake thread's "a request is ready"


class Worker(threading.Thread):
    def __init__(self, engine: Engine, queue: JobQueue, cache: GramCache, ctx: zmq.Context) -> None:
        super().__init__(name="impasto-worker", daemon=True)
        self.engine = engine
        self.queue = queue
        self.cache = cache
        self.ctx = ctx
        self.current: Job | None = None
        self.stopping = threading.Event()
        self.done = 0
        self.failed = 0

    def run(self) -> None:
        sock = self.ctx.socket(zmq.PUSH)
        sock.connect(EVENTS_ENDPOINT)
        try:
            while True:
                job = self.queue.take()
                if job is None:  # queue closed and empty
                    break
                self.current = job
                final = self._run_job(job, sock)
                # Book the job before its caller hears the outcome: a client that has its
                # result and asks for status at once must see it counted, not still running.
                if isinstance(final, Result):
                    self.done += 1
                else:
                    self.failed += 1
                self.current = None
                self.queue.finished(job)
                self._emit(sock, job, final)
        finally:
            sock.close(linger=2000)

    def cancel_running(self, job_id: str | None = None, owner: str | None = None,
                       keep: bool = False) -> Job | None:
        """keep: stop the job and send what it has as its result, instead of cancelling."""
        job = self.current
        if job is not None and (job_id is None or job.id == job_id) and (
                owner is None or owner == job.owner):
            (job.finish if keep else job.cancel).set()
            return job
        return None

    def _emit(self, sock: zmq.Socket, job: Job, msg: Message) -> None:
        try:
            frames = encode(msg, job.req)
        except ValueError as e:  # a non-finite number: never on the wire
            log.error("job %s: cannot send %s: %s", job.id, msg.TYPE, e)
            frames = encode(Error(INTERNAL, f"internal error: {msg.TYPE} held a non-finite "
                                  "number", job.id), job.req)
        sock.send_multipart([job.peer] + frames, copy=False)

    def _run_job(self, job: Job, sock: zmq.Socket) -> Result | Error:
        """Runs one job, sending its progress; returns the message that ends it."""
        job.started = time.time()
        opts = job.options
        total = opts.total_evaluations()
        self._emit(sock, job, Progress(job=job.id, stage=Stage.PREPARE, scales=len(opts.schedule()),
                                       total=total))
        last_sent = [0.0]
        last_preview: list[float | None] = [None]  # None: no preview sent yet

        def on_step(step: Any) -> None:
            now = time.monotonic()
            preview = None
            # The first preview goes out with the first evaluation (something to look at
            # at once), then one per interval. It is a copy of the image downscaled in
            # torch and PNG-encoded at level 1: a few ms at 256 px, once a second, next to
            # evaluations that take tens to hundreds of ms.
            if job.preview is not None and step.snapshot is not None and (
                    last_preview[0] is None or now - last_preview[0] >= job.preview["interval_s"]):
                last_preview[0] = now
                preview = imagecodec.to_ref(to_image(step.snapshot(job.preview["max_side"])),
                                           job.preview["format"])
            # At tiny sizes evaluations come every few ms; 20 events/s is plenty for a bar.
            elif now - last_sent[0] < 0.05 and step.step < step.total:
                return
            last_sent[0] = now
            self._emit(sock, job, Progress(
                job=job.id, stage=Stage.OPTIMIZE, scale=step.scale, scales=step.scales,
                size=step.size, step=step.step, total=step.total, losses=step.losses,
                elapsed_s=round(step.elapsed_s, 4), preview=preview))

        try:
            outcome = self.engine.run(
                job.content, [StyleInput(img, w) for img, w, _ in job.styles], opts,
                on_step=on_step, should_stop=job.cancel.is_set, cache=self.cache,
                should_finish=job.finish.is_set)
            if job.output == "rgb32f" and outcome.pixels is not None:
                ref = imagecodec.to_ref(imagecodec.FloatImage(outcome.pixels), "rgb32f")
            else:
                ref = imagecodec.to_ref(outcome.image, job.output)
            log.info("job %s done in %.1f s", job.id, outcome.elapsed_s)
            return Result(job=job.id, image=ref, losses=outcome.losses, seed=outcome.seed,
                          elapsed_s=round(outcome.elapsed_s, 3), weights=self.engine.weights.label,
                          schedule=[dataclasses.asdict(s) for s in outcome.schedule])
        except JobCancelled:
            log.info("job %s cancelled", job.id)
            if self.stopping.is_set():
                return Error(SHUTDOWN, "the daemon is shutting down; job stopped", job.id)
            return Error(CANCELLED, f"job {job.id} was cancelled", job.id)
        except ImpastoError as e:
            log.warning("job %s failed: %s", job.id, e)
            return Error(e.code, e.message, job.id)
        except Exception as e:  # the worker must survive anything a job does
            log.exception("job %s crashed", job.id)
            return Error(INTERNAL, f"internal error ({type(e).__name__}); the daemon's log has the details", job.id)
