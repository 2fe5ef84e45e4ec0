"""The worker thread: takes jobs off the queue and runs them through the engine.

It never touches the ROUTER socket (ZeroMQ sockets are not thread-safe); it hands each
event to the server's loop through an inproc PUSH socket.
"""

from __future__ import annotations

import logging
import threading
import time

import zmq

from impasto.engine.transfer import Engine
from impasto.protocol import Progress, Stage
from impasto.server.events import EVENTS_ENDPOINT, emit
from impasto.server.execute import JobEnder, run_job, spec_of
from impasto.server.jobqueue import Job, JobQueue
from impasto.server.targetcache import GramCache

log = logging.getLogger(__name__)


class Worker(threading.Thread):
    def __init__(self, engine: Engine, queue: JobQueue, cache: GramCache, ctx: zmq.Context) -> None:
        super().__init__(name="impasto-worker", daemon=True)
        self.engine = engine
        self.queue = queue
        self.cache = cache
        self.ctx = ctx
        self.current: Job | None = None
        self.stopping = threading.Event()
        self.ender = JobEnder(queue, ctx, self.stopping)

    @property
    def done(self) -> int:
        return self.ender.done

    @property
    def failed(self) -> int:
        return self.ender.failed

    @property
    def cancelled(self) -> int:
        return self.ender.cancelled

    def run(self) -> None:
        sock = self.ctx.socket(zmq.PUSH)
        sock.connect(EVENTS_ENDPOINT)
        try:
            while True:
                job = self.queue.take()
                if job is None:  # queue closed and empty
                    break
                self.current = job
                job.started = time.time()
                opts = job.options
                emit(sock, job, Progress(job=job.id, stage=Stage.PREPARE,
                                         scales=len(opts.schedule()),
                                         total=opts.total_evaluations(),
                                         frame=0 if job.frames else None,
                                         frames=len(job.frames) or None))
                final = run_job(self.engine, self.cache, spec_of(job),
                                lambda msg, job=job: emit(sock, job, msg),
                                should_stop=job.cancel.is_set, should_finish=job.finish.is_set)
                self.current = None
                self.ender.end(job, final, sock)
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
