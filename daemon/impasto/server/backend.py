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
from typing import Any

import zmq

from impasto.engine.transfer import Engine
from impasto.protocol import WorkerState
from impasto.server.interface import job_label, process_memory_bytes
from impasto.server.jobqueue import Job, JobQueue
from impasto.server.targetcache import GramCache
from impasto.server.worker import Worker

log = logging.getLogger(__name__)


def embedded_factory(engine_factory: Callable[[], Engine],
                     cache_bytes: int = 512 * 1024 * 1024) -> Callable[[JobQueue, zmq.Context], EmbeddedBackend]:
    """The loop's back-end factory for the embedded daemon: the loop itself never sees
    the engine (nor torch), only the back-end interface."""
    return lambda queue, ctx: EmbeddedBackend(queue, GramCache(cache_bytes), ctx, engine_factory)


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

    @property
    def cancelled(self) -> int:
        return self.worker.cancelled if self.worker else 0

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
        if workers and local:
            workers[0]["pid"] = os.getpid()  # as a cluster's local client sees its workers'
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

