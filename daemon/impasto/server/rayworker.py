"""The Ray actor that runs jobs: one per GPU (or per group of CPUs), VGG19 loaded once.

Imported only by `impasto.server.cluster`, so the embedded daemon never imports Ray.
The actor is threaded (max_concurrency > 1): `poll`, `cancel` and `info` are served
while a job computes in its own thread, so a cancel lands within one evaluation.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

import ray

from impasto.errors import INTERNAL
from impasto.protocol import Error, Message
from impasto.server.execute import JobSpec, run_job
from impasto.server.targetcache import GramCache

log = logging.getLogger(__name__)


class StyleWorker:
    """Holds one Engine and its style-target cache for its whole life."""

    def __init__(self, weights_blob: bytes, sha256: str, device: str, precision: str,
                 tile_pixels: int | None, tile_size: int, cache_bytes: int,
                 threads: int | None = None) -> None:
        import torch

        from impasto.engine.runtime import tune_allocator
        from impasto.engine.transfer import Engine
        from impasto.engine.weights import unpack

        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
        tune_allocator()
        if threads is not None:  # the CPUs Ray gave this worker, whatever OMP_NUM_THREADS says
            torch.set_num_threads(threads)
        self.weights = unpack(weights_blob, sha256)
        self.engine = Engine(self.weights, device, precision=precision,
                             tile_pixels=tile_pixels, tile_size=tile_size)
        self.cache = GramCache(cache_bytes)
        self._runs: dict[str, _Run] = {}
        self._lock = threading.Lock()
        self.node_id = ray.get_runtime_context().get_node_id()
        # The address the node joined the cluster with (what `ray status` shows), not
        # this host's default-route address, which get_node_ip_address() may give.
        self.node = next((n["NodeManagerAddress"] for n in ray.nodes()
                          if n.get("NodeID") == self.node_id), ray.util.get_node_ip_address())

    def info(self) -> dict[str, Any]:
        """Where this worker runs; also its health check (answers while a job runs)."""
        return {"node": self.node, "node_id": self.node_id,
                "pid": os.getpid(), "device": str(self.engine.device),
                "detail": self.engine.dev.describe(), "weights": self.weights.label,
                "flavour": self.weights.flavour,
                "cache_hits": self.cache.hits, "cache_misses": self.cache.misses}

    def cancel(self, job: str, keep: bool = False) -> bool:
        """Stop a job; keep: end it with the image as it stands (its Result)."""
        with self._lock:
            run = self._runs.get(job)
        if run is None:
            return False
        (run.finish if keep else run.stop).set()
        return True

    def start(self, spec: JobSpec) -> None:
        """Start a job in its own thread and return at once; `poll` collects its events.

        Not a streaming generator: Ray Client (ray://) cannot call those, and a poll
        that waits up to `wait_s` delivers each event as soon as it happens anyway."""
        run = _Run(spec.job)
        with self._lock:
            self._runs[spec.job] = run
        threading.Thread(target=self._work, args=(spec, run), name=f"job-{spec.job}",
                         daemon=True).start()

    def poll(self, job: str, after: int, wait_s: float = 0.5) -> tuple[list[Message],
                                                                      Message | None]:
        """The job's events from number `after` on (waiting up to wait_s for one), and
        its final Result or Error once there is one. Events before `after` have been
        received and are dropped; after the final message the job is forgotten."""
        with self._lock:
            run = self._runs.get(job)
        if run is None:
            return [], Error(INTERNAL, f"job {job} is not on this worker", job)
        with run.cond:
            del run.events[:max(0, after - run.base)]
            run.base = max(run.base, after)
            if not run.events and run.final is None:
                run.cond.wait(wait_s)
            events, final = list(run.events), run.final
        if final is not None:
            with self._lock:
                self._runs.pop(job, None)
        return events, final

    def _work(self, spec: JobSpec, run: _Run) -> None:
        msg = run_job(self.engine, self.cache, spec, run.add, should_stop=run.stop.is_set,
                      should_finish=run.finish.is_set, where="the cluster worker's log")
        with run.cond:
            run.final = msg
            run.cond.notify_all()


class _Run:
    """One job on a worker: its stop flag and the events not yet collected."""

    def __init__(self, job: str) -> None:
        self.job = job
        self.stop = threading.Event()
        self.finish = threading.Event()
        self.cond = threading.Condition()
        self.events: list[Message] = []
        self.base = 0  # the number of events[0]
        self.final: Message | None = None

    def add(self, event: Message) -> None:
        with self.cond:
            self.events.append(event)
            self.cond.notify_all()
