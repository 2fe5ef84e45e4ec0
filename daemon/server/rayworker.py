"""The Ray actor that runs jobs: one per GPU (or per group of CPUs), VGG19 loaded once.

Imported only by `impasto.server.cluster`, so the embedded daemon never imports Ray.
The actor is threaded (max_concurrency > 1): `poll`, `cancel` and `info` are served
while a job computes in its own thread, so a cancel lands within one evaluation.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time
from typing import Any

import ray
from PIL import Image

from impasto import imagecodec
from impasto.errors import CANCELLED, INTERNAL, ImpastoError, JobCancelled
from impasto.options import EngineOptions
from impasto.protocol import Error, Message, Progress, Result, Stage
from impasto.server.targetcache import GramCache

log = logging.getLogger(__name__)

# How often a running job's progress is sent at most: a progress bar needs no more, and
# every event is one object through Ray and one message through the front's socket.
PROGRESS_EVERY_S = 0.05


@dataclasses.dataclass
class JobSpec:
    """What a worker needs of a job: images and options, nothing of the client."""

    job: str
    content: Image.Image
    styles: list[tuple[Image.Image, float]]
    options: EngineOptions
    output: str = "png"


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

    def info(self) -> dict[str, Any]:
        """Where this worker runs; also its health check (answers while a job runs)."""
        device = str(self.engine.device)
        if self.engine.device.type == "cuda":
            import torch

            device += f" ({torch.cuda.get_device_name(self.engine.device)})"
        ctx = ray.get_runtime_context()
        return {"node": ray.util.get_node_ip_address(), "node_id": ctx.get_node_id(),
                "pid": os.getpid(), "device": device, "weights": self.weights.label,
                "flavour": self.weights.flavour,
                "cache_hits": self.cache.hits, "cache_misses": self.cache.misses}

    def cancel(self, job: str) -> bool:
        with self._lock:
            run = self._runs.get(job)
        if run is None:
            return False
        run.stop.set()
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
        from impasto.engine.transfer import StyleInput

        last_sent = [0.0]

        def on_step(step: Any) -> None:
            now = time.monotonic()
            if now - last_sent[0] < PROGRESS_EVERY_S and step.step < step.total:
                return
            last_sent[0] = now
            run.add(Progress(
                job=spec.job, stage=Stage.OPTIMIZE, scale=step.scale, scales=step.scales,
                size=step.size, step=step.step, total=step.total, losses=step.losses,
                elapsed_s=round(step.elapsed_s, 4)))

        try:
            outcome = self.engine.run(
                spec.content, [StyleInput(img, w) for img, w in spec.styles], spec.options,
                on_step=on_step, should_stop=run.stop.is_set, cache=self.cache)
            msg: Message = Result(
                job=spec.job, image=imagecodec.to_ref(outcome.image, spec.output),
                losses=outcome.losses, seed=outcome.seed,
                elapsed_s=round(outcome.elapsed_s, 3), weights=self.weights.label,
                schedule=[dataclasses.asdict(s) for s in outcome.schedule])
        except JobCancelled:
            msg = Error(CANCELLED, f"job {spec.job} was cancelled", spec.job)
        except ImpastoError as e:
            msg = Error(e.code, e.message, spec.job)
        except Exception as e:  # the worker must survive anything a job does
            log.exception("job %s crashed", spec.job)
            msg = Error(INTERNAL, f"internal error ({type(e).__name__}) on a cluster "
                        "worker; its log has the details", spec.job)
        with run.cond:
            run.final = msg
            run.cond.notify_all()


class _Run:
    """One job on a worker: its stop flag and the events not yet collected."""

    def __init__(self, job: str) -> None:
        self.job = job
        self.stop = threading.Event()
        self.cond = threading.Condition()
        self.events: list[Message] = []
        self.base = 0  # the number of events[0]
        self.final: Message | None = None

    def add(self, event: Message) -> None:
        with self.cond:
            self.events.append(event)
            self.cond.notify_all()
