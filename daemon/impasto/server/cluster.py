"""The Ray back end: the daemon's jobs run on a pool of Ray actors (`--cluster`).

One manager thread connects to Ray, hands the weights to the workers, keeps the pool
as large as the cluster allows (one worker per GPU, else per `worker_cpus` CPUs) and
dispatches queued jobs to free workers, preferring one that already holds the job's
style targets. Each running job has a runner thread that follows the actor's stream of
events and pushes them to the loop. A job whose worker dies (process killed, node lost)
runs again on another worker, at most `retries` times. Nothing here runs on the ZeroMQ
loop's thread except reads of state held in memory, so the front never waits on Ray.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import itertools
import logging
import os
import shutil
import socket
import tempfile
import threading
import time
import warnings
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import ray
import ray.exceptions
import zmq

from impasto import imagecodec
from impasto.errors import CANCELLED, INTERNAL, SHUTDOWN, WORKER_LOST, ServeError
from impasto.protocol import Error, Frame, Message, Progress, Result, Stage, WorkerState
from impasto.server.clusteraddr import cluster_host_port
from impasto.server.events import EVENTS_ENDPOINT, emit
from impasto.server.execute import JobEnder, JobSpec, spec_of
from impasto.server.interface import job_label, process_memory_bytes
from impasto.server.jobqueue import Job, JobQueue
from impasto.server.rayworker import StyleWorker

log = logging.getLogger(__name__)

# Failures that mean "the worker is gone", not "the job is wrong": the job runs again.
LOST = (ray.exceptions.RayActorError, ray.exceptions.ObjectLostError,
        ray.exceptions.OwnerDiedError, ray.exceptions.WorkerCrashedError,
        ray.exceptions.NodeDiedError, ray.exceptions.RaySystemError,
        ray.exceptions.GetTimeoutError)

_names = itertools.count(1)
# Stop-and-keep on a job whose worker died: what it had computed died with the worker;
# running it again only to hand back the starting image would waste a worker.
_LOST_KEEP = ("job {job} was stopped, but its worker was lost with the image: there is "
              "nothing to keep")
# A poll waits this long on the worker for the next event: events arrive as they happen,
# and an idle job costs two small calls a second.
POLL_WAIT_S = 0.5
# Handing a job to a worker only starts its thread; a worker this slow to answer is lost.
START_TIMEOUT_S = 60.0
JOIN_ATTEMPTS = 3  # joining through Ray Client, when the head fails to start a client server


@dataclass
class ClusterSettings:
    address: str = "local"  # "local": a private Ray instance here; else ray://HOST:PORT
    workers: int | None = None  # at most this many; local CPU-only: exactly this many (1)
    worker_cpus: int = 1  # CPUs per CPU worker (its torch threads)
    weights: str = "auto"
    precision: str = "auto"
    tile_pixels: int | None = None
    tile_size: int = 512
    cache_bytes: int = 512 * 1024 * 1024
    retries: int = 2  # reruns of a job whose worker died
    temp_dir: Path | None = None  # Ray's session folder (local instance only)
    health_every_s: float = 1.0
    stop_grace_s: float = 20.0


@dataclass
class Slot:
    """One worker: a Ray actor and what the front knows about it."""

    actor: Any
    gpu: bool
    name: str = field(default_factory=lambda: f"w{next(_names)}")
    state: WorkerState = WorkerState.STARTING
    info: dict[str, Any] = field(default_factory=dict)
    job: Job | None = None
    ready_ref: Any = None
    health_ref: Any = None
    health_sent: float = 0.0
    styles: OrderedDict[str, None] = field(default_factory=OrderedDict)  # LRU of style keys
    idle_since: float = field(default_factory=time.monotonic)


class RayBackend:
    def __init__(self, queue: JobQueue, ctx: zmq.Context, settings: ClusterSettings) -> None:
        self.queue = queue
        self.ctx = ctx
        self.settings = settings
        self.load_error: BaseException | None = None
        self._slots: list[Slot] = []
        self._retry: deque[Job] = deque()  # jobs whose worker died, to run first
        self._attempts: dict[str, int] = {}
        self._lock = threading.Lock()  # slots, retry deque, counters
        self._stopping = threading.Event()
        self._stop_time = 0.0
        self._ender = JobEnder(queue, ctx, self._stopping)
        self._runners: set[threading.Thread] = set()
        self._manager: threading.Thread | None = None
        self._weights_ref: Any = None
        self._sha256 = ""
        self._label = self._flavour = ""
        self._capacity = 0
        self._gpu = False
        self._own_temp: Path | None = None
        self._processes: dict[int, psutil.Process] = {}

    @property
    def done(self) -> int:
        return self._ender.done

    @property
    def failed(self) -> int:
        return self._ender.failed

    @property
    def cancelled(self) -> int:
        return self._ender.cancelled

    # --- life cycle --------------------------------------------------------------------------
    def start(self) -> None:
        self._manager = threading.Thread(target=self._manage, name="impasto-cluster", daemon=True)
        self._manager.start()

    def ready(self) -> bool:
        with self._lock:
            return any(s.state in (WorkerState.IDLE, WorkerState.BUSY) for s in self._slots)

    def stop(self) -> None:
        self._stop_time = time.monotonic()
        self._stopping.set()
        self.cancel_running()
        with self._lock:
            retry, self._retry = list(self._retry), deque()
        for job in retry:
            self._finish(job, Error(SHUTDOWN, f"the daemon is shutting down; job {job.id} was "
                                    "not run", job.id), None)

    def busy(self) -> bool:
        return any(t.is_alive() for t in list(self._runners)) or (
            self._manager is not None and self._manager.is_alive())

    def close(self) -> None:
        with self._lock:
            slots, self._slots = list(self._slots), []
        if not ray.is_initialized():
            return
        for s in slots:  # on a shared cluster, free the GPUs now, not when Ray notices
            try:
                ray.kill(s.actor)
            except Exception as e:  # noqa: BLE001 - best effort on the way out
                log.debug("kill %s: %s", s.name, e)
        # Some of the private instance's processes (Ray's agents) outlive ray.shutdown()
        # by a minute or more, and are no longer our descendants by then: they were
        # when the manager last looked (psutil.Process knows a reused pid from them).
        self._note_processes()
        ours = list(self._processes.values())
        ray.shutdown()
        if ours:
            _, alive = psutil.wait_procs(ours, timeout=5)
            for p in alive:
                with contextlib.suppress(psutil.Error):
                    p.kill()
            psutil.wait_procs(alive, timeout=5)
        if self._own_temp is not None:
            shutil.rmtree(self._own_temp, ignore_errors=True)

    # --- the loop's calls (memory only, never Ray) -----------------------------------------
    def cancel_running(self, job_id: str | None = None, owner: str | None = None,
                       keep: bool = False) -> Job | None:
        found = None
        with self._lock:
            jobs = [s.job for s in self._slots if s.job is not None] + list(self._retry)
        for job in jobs:
            if (job_id is None or job.id == job_id) and owner in (None, job.owner):
                # The runner tells the actor. A retried job waiting for a worker ends
                # unrun: its image was lost with its worker, so there is none to keep.
                (job.finish if keep else job.cancel).set()
                found = job
        return found

    def running(self) -> list[Job]:
        with self._lock:
            jobs = [s.job for s in self._slots if s.job is not None]
        return sorted(jobs, key=lambda j: j.started or 0.0)

    def info(self, viewer: str, local: bool) -> dict[str, Any]:
        with self._lock:
            slots = list(self._slots)
        workers = []
        for s in slots:
            w = {"worker": s.name, "node": s.info.get("node", ""),
                 "device": s.info.get("device", "gpu" if s.gpu else "cpu"),
                 "state": s.state, "job": job_label(s.job, viewer)}
            if "detail" in s.info:
                w["detail"] = s.info["detail"]
            if local and "pid" in s.info:
                w["pid"] = s.info["pid"]
            workers.append(w)
        devices = sorted({str(s.info["device"]).split(" ")[0] for s in slots if "device" in s.info})
        return {"device": ",".join(devices), "weights": self._label if local else self._flavour,
                "cache_hits": sum(s.info.get("cache_hits", 0) for s in slots),
                "cache_misses": sum(s.info.get("cache_misses", 0) for s in slots),
                "memory_bytes": process_memory_bytes(), "workers": workers}

    def in_flight(self) -> int:
        """Workers that are up: how many jobs a client may usefully have running."""
        with self._lock:
            return sum(1 for s in self._slots if s.state in (WorkerState.IDLE, WorkerState.BUSY))

    # --- the manager thread -------------------------------------------------------------------
    def _manage(self) -> None:
        try:
            self._connect()
            self._load_weights()
        except BaseException as e:  # reported by the main loop, which then stops
            if self._stopping.is_set():  # asked to stop meanwhile: not a failure
                log.info("cluster start abandoned: the daemon is stopping (%s)", e)
                return
            log.error("cluster start failed: %s", e)
            self.load_error = e
            return
        last_health = 0.0
        while not self._stopping.is_set():
            try:
                now = time.monotonic()
                if now - last_health >= self.settings.health_every_s:
                    last_health = now
                    self._reconcile()
                    self._check_health()
                self._poll_starting()
                self._drop_cancelled_retries()
                self._dispatch()
            except Exception:  # noqa: BLE001 - the pool must outlive one bad turn
                log.exception("cluster manager")
                self._stopping.wait(1.0)

    def _connect(self) -> None:
        s = self.settings
        if s.address == "local":
            gpus = _local_gpus()
            workers = s.workers if s.workers is not None else (gpus or 1)
            cpus = max(workers, 1) * s.worker_cpus if not gpus else (os.cpu_count() or 1)
            if s.temp_dir is None:  # made here, so removed when the daemon stops
                self._own_temp = Path(tempfile.mkdtemp(prefix="impasto-ray-"))
            # Ray makes its folder (sockets, logs, session files) world-writable; inside
            # one of ours that only this user may enter (mkdtemp's 0700), nobody else
            # can plant, move or read anything in it.
            temp = s.temp_dir or self._own_temp / "r"
            log.info("starting a private Ray instance: %d CPUs, %d GPUs, in %s", cpus, gpus, temp)
            if cpus > (os.cpu_count() or 1):
                log.warning("%d workers x %d CPUs is more than this machine's %d CPUs: the "
                            "workers will share cores and each will run slower", workers,
                            s.worker_cpus, os.cpu_count() or 1)
            ray.init(num_cpus=cpus, num_gpus=gpus, include_dashboard=False,
                     _temp_dir=str(temp), namespace="impasto", logging_level=logging.WARNING)
        else:
            where = cluster_host_port(s.address)
            if where is not None:
                # Ray's own connect waits 30 s for Ray Client and forever for a GCS
                # address; nothing listening there is known in one round trip.
                try:
                    socket.create_connection(where, timeout=10).close()
                except OSError as e:
                    raise ServeError(f"cannot join the Ray cluster at {s.address}: nothing "
                                     f"answers at {where[0]}:{where[1]} "
                                     f"({e.strerror or e})") from None
            log.info("joining the Ray cluster at %s", s.address)
            for attempt in range(1, JOIN_ATTEMPTS + 1):
                try:
                    with warnings.catch_warnings():  # Ray Client's warning repeats the error
                        warnings.simplefilter("ignore")
                        ray.init(address=s.address, namespace="impasto",
                                 logging_level=logging.WARNING)
                    break
                except Exception as e:
                    # The head's proxier starts one Ray Client server per client and gives
                    # up when that start is slow (a loaded head): transient, so retried.
                    if attempt < JOIN_ATTEMPTS and "client server failed" in str(e):
                        log.warning("joining %s: the head could not start a client server "
                                    "(attempt %d of %d); trying again", s.address, attempt,
                                    JOIN_ATTEMPTS)
                        with contextlib.suppress(Exception):
                            ray.shutdown()
                        time.sleep(2.0 * attempt)
                        continue
                    raise ServeError(f"cannot join the Ray cluster at {s.address}: {e}") from None

    def _load_weights(self) -> None:
        """Load the daemon's weights once, here, and put them in Ray's object store: every
        worker, on any node, builds its network from these bytes and checks their hash."""
        from impasto.engine import weights as weights_mod

        w = weights_mod.load(self.settings.weights)
        blob, self._sha256 = weights_mod.pack(w)
        self._label, self._flavour = w.label, w.flavour
        self._weights_ref = ray.put(blob)
        log.info("weights %s (sha256 %s...) ready for the workers", w.label, self._sha256[:16])
        if w.flavour == "random":
            log.warning("random weights: outputs are for tests and demos, not art")

    # --- pool size follows the cluster ------------------------------------------------------
    def _target(self) -> tuple[int, bool]:
        """How many workers the cluster has room for now, and whether they are GPU ones."""
        res = ray.cluster_resources()
        gpus = int(res.get("GPU", 0))
        capacity = gpus if gpus else int(res.get("CPU", 0)) // max(1, self.settings.worker_cpus)
        cap = self.settings.workers
        return (min(capacity, cap) if cap is not None else capacity), bool(gpus)

    def _note_processes(self) -> None:
        """Remember the private instance's processes (our descendants), to end them all."""
        if self._own_temp is None:
            return
        with contextlib.suppress(psutil.Error):
            for p in psutil.Process().children(recursive=True):
                self._processes.setdefault(p.pid, p)

    def _reconcile(self) -> None:
        self._note_processes()
        target, gpu = self._target()
        if (target, gpu) != (self._capacity, self._gpu):
            log.info("cluster has room for %d %s workers", target, "GPU" if gpu else "CPU")
            self._capacity, self._gpu = target, gpu
        with self._lock:
            slots = list(self._slots)
        # Fewer: give up workers not yet placed (their node is gone), then idle ones.
        excess = len(slots) - target
        for s in sorted(slots, key=lambda s: {WorkerState.STARTING: 0, WorkerState.IDLE: 1, WorkerState.BUSY: 2}[s.state]):
            if excess <= 0 or s.state == WorkerState.BUSY:
                break
            self._remove(s, kill=True, why="the cluster shrank")
            excess -= 1
        for _ in range(target - len(slots)):
            self._add(gpu)

    def _add(self, gpu: bool) -> None:
        s = self.settings
        opts: dict[str, Any] = {"num_cpus": 1 if gpu else s.worker_cpus,
                                "num_gpus": 1 if gpu else 0,
                                "max_concurrency": 4, "max_restarts": 0}
        actor = ray.remote(StyleWorker).options(**opts).remote(
            self._weights_ref, self._sha256, "auto" if gpu else "cpu", s.precision,
            s.tile_pixels, s.tile_size, s.cache_bytes, None if gpu else s.worker_cpus)
        slot = Slot(actor=actor, gpu=gpu)
        slot.ready_ref = actor.info.remote()
        with self._lock:
            self._slots.append(slot)
        log.info("worker %s starting", slot.name)

    def _remove(self, slot: Slot, kill: bool, why: str) -> None:
        with self._lock:
            if slot in self._slots:
                self._slots.remove(slot)
        log.warning("worker %s (%s) removed: %s", slot.name, slot.info.get("node", "?"), why)
        if kill:
            try:
                ray.kill(slot.actor)
            except Exception as e:  # noqa: BLE001 - already gone
                log.debug("kill %s: %s", slot.name, e)

    def _poll_starting(self) -> None:
        with self._lock:
            starting = [s for s in self._slots if s.state == WorkerState.STARTING]
        if not starting:
            return
        ready, _ = ray.wait([s.ready_ref for s in starting], num_returns=len(starting), timeout=0)
        for s in starting:
            if s.ready_ref not in ready:
                continue
            try:
                s.info = ray.get(s.ready_ref)
            except LOST as e:
                self._remove(s, kill=True, why=f"failed to start: {e}")
                continue
            except ray.exceptions.RayTaskError as e:  # its constructor raised
                self._remove(s, kill=True, why=f"failed to start: {e}")
                continue
            with self._lock:
                s.state, s.idle_since = WorkerState.IDLE, time.monotonic()
            log.info("worker %s ready on %s (%s, pid %s)", s.name, s.info.get("node"),
                     s.info.get("device"), s.info.get("pid"))

    def _check_health(self) -> None:
        """Ask each worker where it is; one that cannot answer (its process or node is
        gone) leaves the pool, and the reconcile adds a replacement where there is room.
        A busy worker's own death is seen first by its runner."""
        with self._lock:
            slots = [s for s in self._slots if s.state in (WorkerState.IDLE, WorkerState.BUSY)]
        pending = [s.health_ref for s in slots if s.health_ref is not None]
        ready = set(ray.wait(pending, num_returns=len(pending), timeout=0)[0]) if pending else set()
        for s in slots:
            if s.health_ref is None:
                s.health_ref, s.health_sent = s.actor.info.remote(), time.monotonic()
                continue
            if s.health_ref not in ready:
                continue
            try:
                s.info = ray.get(s.health_ref)
            except (*LOST, ray.exceptions.RayTaskError) as e:
                if s.state == WorkerState.IDLE:
                    self._remove(s, kill=True, why=f"it stopped answering: {type(e).__name__}")
                continue
            s.health_ref, s.health_sent = s.actor.info.remote(), time.monotonic()

    # --- dispatch -------------------------------------------------------------------------------
    def _drop_cancelled_retries(self) -> None:
        with self._lock:
            cancelled = [j for j in self._retry if j.cancel.is_set() or j.finish.is_set()]
            for j in cancelled:
                self._retry.remove(j)
        for j in cancelled:
            why = (f"job {j.id} was cancelled" if j.cancel.is_set()
                   else _LOST_KEEP.format(job=j.id))
            self._finish(j, Error(CANCELLED, why, j.id), None)

    def _dispatch(self) -> None:
        with self._lock:
            free = [s for s in self._slots if s.state == WorkerState.IDLE]
        if not free:
            self._stopping.wait(0.05)
            return
        with self._lock:
            job = self._retry.popleft() if self._retry else None
        if job is None:
            job = self.queue.take(timeout=0.2)
            if job is None:
                return
        # Free workers again, as they are now: the list above may be up to a take()'s wait
        # old, and a worker freed meanwhile (the one that holds this job's style, as a
        # client's next job follows its last one at once) must be among the choices.
        with self._lock:
            free = [s for s in self._slots if s.state == WorkerState.IDLE]
            if not free:  # the only free one was removed meanwhile
                self._retry.appendleft(job)
                return
        keys = style_keys(job)
        # A worker that holds the job's style targets skips computing them; among equals,
        # the one idle longest, so work spreads over the pool.
        slot = max(free, key=lambda s: (sum(k in s.styles for k in keys), -s.idle_since))
        held = sum(k in slot.styles for k in keys)
        log.info("job %s goes to worker %s%s", job.id, slot.name,
                 f" (holds {held} of its {len(keys)} style targets)" if held else "")
        for k in keys:
            slot.styles[k] = None
            slot.styles.move_to_end(k)
            while len(slot.styles) > 32:
                slot.styles.popitem(last=False)
        with self._lock:
            slot.state, slot.job = WorkerState.BUSY, job
        attempt = self._attempts.get(job.id, 0) + 1
        self._attempts[job.id] = attempt
        t = threading.Thread(target=self._run, args=(slot, job, attempt),
                             name=f"impasto-run-{job.id}", daemon=True)
        self._runners.add(t)
        t.start()

    # --- one job on one worker ----------------------------------------------------------------
    def _run(self, slot: Slot, job: Job, attempt: int) -> None:
        sock = self.ctx.socket(zmq.PUSH)
        sock.connect(EVENTS_ENDPOINT)
        try:
            final = self._follow(slot, job, attempt, sock)
            if final is not None:
                self._finish(job, final, sock)
        except Exception:  # noqa: BLE001 - a runner must always end its job
            log.exception("job %s: runner failed", job.id)
            self._finish(job, Error(INTERNAL, "internal error in the cluster back end; the "
                                    "daemon's log has the details", job.id), sock)
        finally:
            sock.close(linger=2000)
            self._runners.discard(threading.current_thread())

    def _follow(self, slot: Slot, job: Job, attempt: int, sock: zmq.Socket) -> Message | None:
        """Stream the job's events from its worker; returns its final message, or None
        when the job went back for another worker."""
        if job.started is None:
            job.started = time.time()
        opts = job.options
        offset = job.frames_sent  # a clip run again resumes after the frames sent
        emit(sock, job, Progress(job=job.id, stage=Stage.PREPARE, scales=len(opts.schedule()),
                                 total=opts.total_evaluations(),
                                 frame=offset if job.frames else None,
                                 frames=len(job.frames) or None))
        spec = resume_spec(job)
        told = told_finish = False
        after = 0
        try:
            ray.get(slot.actor.start.remote(spec), timeout=START_TIMEOUT_S)
            pending = slot.actor.poll.remote(job.id, after, POLL_WAIT_S)
            while True:
                if job.cancel.is_set() and not told:
                    slot.actor.cancel.remote(job.id)
                    told = True
                if job.finish.is_set() and not told_finish:
                    slot.actor.cancel.remote(job.id, keep=True)
                    told_finish = True
                if (self._stopping.is_set() and
                        time.monotonic() - self._stop_time > self.settings.stop_grace_s):
                    self._free(slot)
                    return Error(SHUTDOWN, "the daemon is shutting down; its worker did not "
                                 "stop in time", job.id)
                ready, _ = ray.wait([pending], timeout=0.2)
                if not ready:
                    continue
                events, final = ray.get(pending)
                for msg in events:
                    emit(sock, job, in_clip(job, msg, offset))
                after += len(events)
                if final is not None:
                    self._free(slot)
                    # a cancel caused by stopping: the ender says shutdown
                    return in_clip(job, final, offset)
                pending = slot.actor.poll.remote(job.id, after, POLL_WAIT_S)
        except LOST as e:
            return self._lost(slot, job, attempt, e)

    def _lost(self, slot: Slot, job: Job, attempt: int, e: BaseException) -> Message | None:
        where = f"worker {slot.name} on {slot.info.get('node', '?')}"
        self._remove(slot, kill=True, why=f"it died running job {job.id} ({type(e).__name__})")
        with self._lock:
            slot.job = None
        if job.cancel.is_set():
            return Error(CANCELLED, f"job {job.id} was cancelled", job.id)
        if job.finish.is_set():
            return Error(CANCELLED, _LOST_KEEP.format(job=job.id), job.id)
        if self._stopping.is_set():
            return Error(SHUTDOWN, "the daemon is shutting down; job stopped", job.id)
        if attempt > self.settings.retries:
            return Error(WORKER_LOST, f"job {job.id} was lost with its worker {attempt} times "
                         f"(last: {where}, {type(e).__name__}); not trying again", job.id)
        log.warning("job %s lost with %s (%s); running it again (retry %d of %d)", job.id,
                    where, type(e).__name__, attempt, self.settings.retries)
        with self._lock:
            self._retry.appendleft(job)
        return None

    def _free(self, slot: Slot) -> None:
        with self._lock:
            slot.job, slot.state, slot.idle_since = None, WorkerState.IDLE, time.monotonic()

    def _finish(self, job: Job, final: Message, sock: zmq.Socket | None) -> None:
        with self._lock:
            self._attempts.pop(job.id, None)
        self._ender.end(job, final, sock)


def resume_spec(job: Job) -> JobSpec:
    """The job's spec; for a clip some of whose frames were sent before its worker was
    lost, the rest of the clip, continuing from the last frame sent (exactly: the engine
    holds to the delivered frame, docs/engine.md) with the clip's seed."""
    spec = spec_of(job)
    k = job.frames_sent
    if not job.frames or k == 0:
        return spec
    last = imagecodec.decode(job.last_frame, "the last frame sent")
    last = last.to_pil() if isinstance(last, imagecodec.FloatImage) else last
    pixels = np.asarray(last.convert("RGB"), dtype=np.float32) / 255.0
    return dataclasses.replace(spec, frames=job.frames[k:], previous=(job.frames[k - 1], pixels),
                               options=dataclasses.replace(job.options, seed=job.clip_seed))


def in_clip(job: Job, msg: Message, offset: int) -> Message:
    """A worker's event of a resumed clip, numbered in the whole clip, and the frames
    sent booked on the job."""
    if not job.frames:
        return msg
    n = len(job.frames)
    if isinstance(msg, Frame):
        msg = dataclasses.replace(msg, index=msg.index + offset, frames=n)
        job.frames_sent, job.last_frame, job.clip_seed = msg.index + 1, msg.image, msg.seed
    elif isinstance(msg, Progress) and msg.frame is not None:
        msg = dataclasses.replace(msg, frame=msg.frame + offset, frames=n)
    elif isinstance(msg, Result):
        msg = dataclasses.replace(msg, frames=job.frames_sent)
    return msg


def style_keys(job: Job) -> list[str]:
    """What identifies a job's styles, for sending it where their targets are cached."""
    return [hashlib.blake2b(s.image.tobytes(), digest_size=8,
                            person=f"{s.image.width}x{s.image.height}"[:16].encode()).hexdigest()
            for s in job.styles]


def _local_gpus() -> int:
    """GPUs of any kind (CUDA, ROCm, XPU, MPS): one worker each."""
    from impasto.engine.device import gpu_count

    return gpu_count()
