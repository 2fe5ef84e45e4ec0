"""The Ray actor that runs jobs: one per GPU (or per group of CPUs), VGG19 loaded once.

Imported only by `impasto.server.cluster`, so the embedded daemon never imports Ray.
The actor is threaded (max_concurrency > 1): `cancel` and `info` are served while
`run` streams a job, so a cancel lands within one evaluation.
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
        self._cancel: dict[str, threading.Event] = {}
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
            flag = self._cancel.get(job)
        if flag is None:
            return False
        flag.set()
        return True

    @ray.method(num_returns="streaming")  # type: ignore[misc]
    def run(self, spec: JobSpec):  # noqa: ANN201 - a generator of protocol messages
        """Yields Progress messages as the engine evaluates, then a Result or an Error
        (never raises for a job's own failure: only a dead worker ends it otherwise)."""
        from impasto.engine.transfer import StyleInput

        flag = threading.Event()
        with self._lock:
            self._cancel[spec.job] = flag
        events: list[Message] = []
        cond = threading.Condition()
        final: list[Message] = []
        last_sent = [0.0]

        def on_step(step: Any) -> None:
            now = time.monotonic()
            if now - last_sent[0] < PROGRESS_EVERY_S and step.step < step.total:
                return
            last_sent[0] = now
            with cond:
                events.append(Progress(
                    job=spec.job, stage=Stage.OPTIMIZE, scale=step.scale, scales=step.scales,
                    size=step.size, step=step.step, total=step.total, losses=step.losses,
                    elapsed_s=round(step.elapsed_s, 4)))
                cond.notify()

        def work() -> None:
            try:
                outcome = self.engine.run(
                    spec.content, [StyleInput(img, w) for img, w in spec.styles], spec.options,
                    on_step=on_step, should_stop=flag.is_set, cache=self.cache)
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
            with cond:
                final.append(msg)
                cond.notify()

        # The engine runs in its own thread so that this generator can yield each event
        # as it happens (the engine's callback cannot yield).
        runner = threading.Thread(target=work, name=f"job-{spec.job}", daemon=True)
        runner.start()
        try:
            while True:
                with cond:
                    while not events and not final:
                        cond.wait()
                    batch, events[:] = list(events), []
                    done = list(final)
                # Ray drives the generator with send(), which `yield from` a list refuses.
                for event in batch:  # noqa: UP028
                    yield event
                if done:
                    yield done[0]
                    return
        finally:
            flag.set()  # a generator closed early (caller gone) stops the engine too
            runner.join()
            with self._lock:
                self._cancel.pop(spec.job, None)
