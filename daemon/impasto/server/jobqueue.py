"""The job queue: interactive work first, batch work never starved."""

from __future__ import annotations

import itertools
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from impasto.errors import QUEUE_FULL, SHUTDOWN, ImpastoError
from impasto.options import EngineOptions
from impasto.protocol import Priority

_job_ids = itertools.count(1)


@dataclass
class JobStyle:
    """One style of a job, decoded: its image (RGB), blend weight and label (the library
    name, or imageN for an image sent with the request: what `status` shows), with its
    region when it has one (a greyscale mask of the content's size; None: everywhere)."""

    image: Image.Image
    weight: float
    label: str
    mask: Image.Image | None = None

    @property
    def pixels(self) -> int:
        """Its decoded images' pixels, mask included."""
        mask = 0 if self.mask is None else self.mask.width * self.mask.height
        return self.image.width * self.image.height + mask


@dataclass
class Job:
    content: Image.Image | None  # or an impasto.imagecodec.FloatImage (rgb32f); None: a clip
    styles: list[JobStyle]
    options: EngineOptions
    priority: Priority
    peer: bytes  # ZeroMQ routing id of the client
    req: str | None
    output: str = "png"
    client: str = ""
    owner: str = ""  # the submitter's CurveZMQ public key (z85)
    id: str = field(default_factory=lambda: f"j{next(_job_ids)}")
    created: float = field(default_factory=time.time)
    cancel: threading.Event = field(default_factory=threading.Event)
    finish: threading.Event = field(default_factory=threading.Event)  # stop, keep the image
    started: float | None = None
    preview: dict[str, Any] | None = None  # Stylize.preview, checked
    # A clip (in place of content): its frames, and the frame before them with its
    # stylized result (float RGB) when it continues an earlier request.
    frames: list[Image.Image] = field(default_factory=list)
    previous: tuple[Image.Image, Any] | None = None
    # A clip's frames sent to the client so far, the last one as sent, and the clip's
    # seed: a clip run again (a cluster worker lost) resumes after them, never twice.
    frames_sent: int = 0
    last_frame: Any = None  # protocol.ImageRef
    clip_seed: int | None = None

    @property
    def pixels(self) -> int:
        own = ([self.content] if self.content is not None else []) + self.frames + (
            [self.previous[0]] if self.previous is not None else [])
        extra = 0 if self.previous is None else int(self.previous[1].shape[0] * self.previous[1].shape[1])
        return extra + sum(img.width * img.height for img in own) + sum(
            style.pixels for style in self.styles)

    def summary(self, viewer: str) -> dict[str, Any]:
        """For `status`: everything to the job's owner; to anyone else only that a job of
        this priority and size is there (no id, client name or styles)."""
        common = {"priority": self.priority, "size": self.options.resolved_size(),
                  "waited_s": round((self.started or time.time()) - self.created, 3)}
        if self.frames:
            common["frames"] = len(self.frames)
        if viewer != self.owner:
            return {"job": "", "mine": False, **common}
        return {"job": self.id, "mine": True, "client": self.client,
                "preset": self.options.preset, "styles": [style.label for style in self.styles],
                **common}


class JobQueue:
    """Two FIFOs. After `batch_every` interactive jobs have been taken while batch work
    waited, the oldest batch job goes next, so a busy editor cannot starve a folder."""

    def __init__(self, batch_every: int = 3, max_jobs: int = 1000, per_owner: int = 64,
                 max_pixels: int = 16 * 4096 * 4096, owner_pixels: int | None = None) -> None:
        self._lanes: dict[Priority, deque[Job]] = {p: deque() for p in Priority}
        self._owned: Counter[str] = Counter()  # queued jobs per submitter key
        self._owned_pixels: Counter[str] = Counter()  # their decoded images, in pixels
        self._cond = threading.Condition()
        self._skipped = 0  # interactive picks in a row while batch waited
        self.batch_every = batch_every
        self.max_jobs = max_jobs
        # One client's share of the queue, so a greedy or runaway client cannot fill it
        # for everyone else.
        self.per_owner = per_owner
        # Decoded images waiting in the queue, in pixels (about 3 bytes each): a budget,
        # so a burst of large requests is refused instead of filling the memory.
        self.max_pixels = max_pixels
        # One key's share of that budget: once its queued jobs hold a quarter of it, the
        # key queues no more until some have run. A threshold, not a cap on the sum, so
        # that a key's next job is never refused for its own size (the largest request,
        # a clip's 33.5 MP with its continuation, would not fit beside another): one key
        # holds at most a quarter plus one job, and the others keep at least half.
        self.owner_pixels = max_pixels // 4 if owner_pixels is None else owner_pixels
        self.pixels = 0
        self._closed = False
        # Taken and not yet finished: one job with the embedded worker, one per busy
        # worker with a cluster.
        self.running: set[str] = set()

    def __len__(self) -> int:
        with self._cond:
            return sum(len(q) for q in self._lanes.values())

    def put(self, job: Job) -> int:
        """Queue a job; returns how many jobs will run before it (0: it runs now), as
        things stand (a later interactive job can still overtake a batch job).
        Raises ImpastoError(QUEUE_FULL) at the queue's limit or the owner's share.
        Constant time: the position is computed, not found by simulating the order."""
        with self._cond:
            if self._closed:
                raise ImpastoError(SHUTDOWN, "the daemon is shutting down")
            if sum(len(q) for q in self._lanes.values()) >= self.max_jobs:
                raise ImpastoError(QUEUE_FULL, f"the queue holds {self.max_jobs} jobs; try later")
            if self._owned[job.owner] >= self.per_owner:
                raise ImpastoError(QUEUE_FULL, f"you have {self.per_owner} jobs queued, the most "
                                   "one client may; send more as these finish")
            if self.pixels + job.pixels > self.max_pixels:
                raise ImpastoError(QUEUE_FULL, f"the queue holds {self.pixels / 1e6:.0f} MP of "
                                   "images, all it may; try again when some jobs have run")
            mine = self._owned_pixels[job.owner]
            if mine >= self.owner_pixels:
                raise ImpastoError(QUEUE_FULL, f"your queued jobs hold {mine:,} pixels of images, "
                                   f"one client's share of the queue ({self.owner_pixels:,}); "
                                   "send more as these run")
            inter, batch = self._lanes[Priority.INTERACTIVE], self._lanes[Priority.BATCH]
            e, s = self.batch_every, self._skipped
            if job.priority == Priority.INTERACTIVE:
                i = len(inter)  # interactive jobs before it; batch jobs slip in every e picks
                position = i + min(len(batch), (i + s) // e) if batch else i
            else:
                j = len(batch)  # batch jobs before it; each waits for e interactive picks
                position = j + min(len(inter), max(0, (j + 1) * e - s))
            self._lanes[job.priority].append(job)
            self._owned[job.owner] += 1
            self._owned_pixels[job.owner] += job.pixels
            self.pixels += job.pixels
            self._cond.notify()
            return position + len(self.running)

    def finished(self, job: Job) -> None:
        with self._cond:
            self.running.discard(job.id)

    def full(self) -> bool:
        return len(self) >= self.max_jobs

    def take(self, timeout: float | None = None) -> Job | None:
        with self._cond:
            deadline = None if timeout is None else time.monotonic() + timeout
            while not self._closed and not any(self._lanes.values()):
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return None
                self._cond.wait(left)
            if self._closed and not any(self._lanes.values()):
                return None
            inter, batch = self._lanes[Priority.INTERACTIVE], self._lanes[Priority.BATCH]
            if batch and (not inter or self._skipped >= self.batch_every):
                self._skipped = 0
                job = batch.popleft()
            else:
                if batch:
                    self._skipped += 1
                job = inter.popleft()
            self._forget(job)
            self.running.add(job.id)
            return job

    def remove(self, job_id: str, owner: str | None = None) -> Job | None:
        """Take a queued job out; with `owner`, only a job of that owner."""
        with self._cond:
            for q in self._lanes.values():
                for job in q:
                    if job.id == job_id and owner in (None, job.owner):
                        q.remove(job)
                        self._forget(job)
                        return job
        return None

    def _forget(self, job: Job) -> None:
        """A job leaves the queue (taken or removed): its owner's counts go down."""
        self._owned[job.owner] -= 1
        self._owned_pixels[job.owner] -= job.pixels
        if not self._owned[job.owner]:  # no empty keys left behind, one per client ever
            del self._owned[job.owner]
            del self._owned_pixels[job.owner]
        self.pixels -= job.pixels

    def snapshot(self) -> list[Job]:
        with self._cond:
            return self._order()

    def close(self) -> list[Job]:
        """Stop taking work; returns the jobs still queued, in order."""
        with self._cond:
            self._closed = True
            jobs = self._order()
            for q in self._lanes.values():
                q.clear()
            self._owned.clear()
            self._owned_pixels.clear()
            self.pixels = 0
            self._cond.notify_all()
            return jobs

    def _order(self) -> list[Job]:
        """The order in which jobs would be taken now (simulates `take`)."""
        inter, batch = list(self._lanes[Priority.INTERACTIVE]), list(self._lanes[Priority.BATCH])
        skipped, out = self._skipped, []
        while inter or batch:
            if batch and (not inter or skipped >= self.batch_every):
                skipped = 0
                out.append(batch.pop(0))
            else:
                if batch:
                    skipped += 1
                out.append(inter.pop(0))
        return out
