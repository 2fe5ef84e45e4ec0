"""The back-end interface between the socket loop and whatever runs the jobs.

The loop only queues jobs, cancels them, asks for status and stops; a back end takes
jobs off the shared `JobQueue` itself and pushes each job's events (progress, then its
result or error) to the loop through the inproc events socket. Two back ends exist:
`EmbeddedBackend` (one in-process worker thread: the default, no Ray) and
`impasto.server.cluster.RayBackend` (Ray actors, imported only for `--cluster`).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import zmq

from impasto.engine.transfer import Engine
from impasto.protocol import WorkerState
from impasto.server.jobqueue import Job, JobQueue
from impasto.server.targetcache import GramCache
from impasto.server.worker import Worker

log = logging.getLogger(__name__)


class Backend(Protocol):
    load_error: BaseException | None
    done: int
    failed: int

    def start(self) -> None:
        """Load the model(s) and start taking jobs off the queue; returns at once."""

    def ready(self) -> bool:
        """True once jobs can run (the model is loaded somewhere)."""

    def cancel_running(self, job_id: str | None = None, owner: str | None = None,
                       keep: bool = False) -> Job | None:
        """Ask a running job (all of them for job_id None) to stop; its Error follows
        as an event (with keep: its Result, the image as it stands). Returns the job,
        or None when no such job runs."""

    def running(self) -> list[Job]:
        """Jobs taken off the queue and not finished, oldest first."""

    def info(self, viewer: str, local: bool) -> dict[str, Any]:
        """For status: device, weights (label when local, else flavour), cache_hits,
        cache_misses, memory_bytes (GPU memory allocated, or the process's resident
        memory: process_memory_bytes()) and workers (one dict
        each: worker, node, device, state, job; the job id only for its owner)."""

    def stop(self) -> None:
        """Cancel what runs (the loop has closed the queue); events keep flowing."""

    def busy(self) -> bool:
        """True while a stopped back end still has events to send."""

    def close(self) -> None:
        """Release what start() took (threads end on their own)."""


def process_memory_bytes() -> int:
    """This process's resident memory (status's memory_bytes where no GPU is used)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def embedded_factory(engine_factory: Callable[[], Engine],
                     cache_bytes: int = 512 * 1024 * 1024) -> Callable[[JobQueue, zmq.Context], EmbeddedBackend]:
    """The loop's back-end factory for the embedded daemon: the loop itself never sees
    the engine (nor torch), only the back-end interface."""
    return lambda queue, ctx: EmbeddedBackend(queue, GramCache(cache_bytes), ctx, engine_factory)


def job_label(job: Job | None, viewer: str) -> str:
    """A worker's job as status shows it: its id to its owner, "*" to anyone else."""
    if job is None:
        return ""
    return job.id if viewer == job.owner else "*"


class EmbeddedBackend:
    """Today's daemon: the engine loaded in this process, one worker thread."""

    def __init__(self, queue: JobQueue, cache: GramCache, ctx: zmq.Context,
                 engine_factory: Callable[[], Engine]) -> None:
        self.queue = queue
        self.cache = cache
        self.ctx = ctx
        self.engine_factory = engine_factory
        self.engine: Engine | None = None
        self.worker: Worker | None = None
        self.load_error: BaseException | None = None
        self._stopped = False
        self._lock = threading.Lock()
        self._loader: threading.Thread | None = None

    @property
    def done(self) -> int:
        return self.worker.done if self.worker else 0

    @property
    def failed(self) -> int:
        return self.worker.failed if self.worker else 0

    def start(self) -> None:
        def load_then_work() -> None:
            try:
                self.engine = self.engine_factory()
            except BaseException as e:  # reported by the main loop, which then stops
                self.load_error = e
                return
            # A stop that came while the model loaded has closed the queue and may
            # terminate the ZeroMQ context: no worker may start after it.
            with self._lock:
                if self._stopped:
                    return
                worker = Worker(self.engine, self.queue, self.cache, self.ctx)
                self.worker = worker
                worker.start()

        self._loader = threading.Thread(target=load_then_work, name="impasto-loader",
                                        daemon=True)
        self._loader.start()

    def ready(self) -> bool:
        return self.engine is not None

    def cancel_running(self, job_id: str | None = None, owner: str | None = None,
                       keep: bool = False) -> Job | None:
        return self.worker.cancel_running(job_id, owner, keep) if self.worker else None

    def running(self) -> list[Job]:
        job = self.worker.current if self.worker else None
        return [job] if job is not None else []

    def info(self, viewer: str, local: bool) -> dict[str, Any]:
        engine = self.engine
        job = self.worker.current if self.worker else None
        workers = [] if engine is None else [{
            "worker": "embedded", "node": "local", "device": str(engine.device),
            "detail": engine.dev.describe(),
            "state": WorkerState.BUSY if job else WorkerState.IDLE, "job": job_label(job, viewer)}]
        return {"device": str(engine.device) if engine else "",
                "device_detail": engine.dev.describe() if engine else "",
                "weights": (engine.weights.label if local else engine.weights.flavour)
                if engine else "",
                "cache_hits": self.cache.hits, "cache_misses": self.cache.misses,
                "memory_bytes": engine.device_info()["memory_bytes"] if engine
                else process_memory_bytes(),
                "workers": workers}

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
        if self._loader is not None and self._loader.is_alive():
            # Exiting while a thread is inside torch's C++ (building the model) aborts
            # the process ("terminate called without an active exception").
            log.info("waiting for the model load to finish before stopping")
            self._loader.join(300)
        if self.worker is not None:
            self.worker.stopping.set()
            self.worker.cancel_running()

    def busy(self) -> bool:
        return self.worker is not None and self.worker.is_alive()

    def close(self) -> None:
        pass

