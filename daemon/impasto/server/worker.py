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
from impasto.errors import CANCELLED, INTERNAL, SHUTDOWN
from impasto.protocol import Error, Message, Progress, Result, Stage, encode
from impasto.server.execute import run_job, spec_of
from impasto.server.jobqueue import Job, JobQueue
from impasto.server.targetcache import GramCache

log = logging.getLogger(__name__)

EVENTS_ENDPOINT = "inproc://impasto-events"
WAKE_ENDPOINT = "inproc://impasto-wake"  # the intake thread's "a request is ready"


def emit(sock: zmq.Socket, job: Job, msg: Message) -> None:
    """Send one of a job's events to its client, through the loop's events socket."""
    try:
        frames = encode(msg, job.req)
    except ValueError as e:  # a non-finite number: never on the wire
        log.error("job %s: cannot send %s: %s", job.id, msg.TYPE, e)
        frames = encode(Error(INTERNAL, f"internal error: {msg.TYPE} held a non-finite "
                              "number", job.id), job.req)
    sock.send_multipart([job.peer] + frames, copy=False)


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
        emit(sock, job, msg)

    def _run_job(self, job: Job, sock: zmq.Socket) -> Result | Error:
        """Runs one job, sending its progress; returns the message that ends it."""
        job.started = time.time()
        opts = job.options
        self._emit(sock, job, Progress(job=job.id, stage=Stage.PREPARE, scales=len(opts.schedule()),
                                       total=opts.total_evaluations()))
        final = run_job(self.engine, self.cache, spec_of(job),
                        lambda msg: self._emit(sock, job, msg),
                        should_stop=job.cancel.is_set, should_finish=job.finish.is_set)
        if isinstance(final, Error) and final.code == CANCELLED and self.stopping.is_set():
            return Error(SHUTDOWN, "the daemon is shutting down; job stopped", job.id)
        return final
