"""What the socket loop knows of a back end: its interface, and the little status
helpers both back ends share. No torch and no engine here, so that importing the loop
(the daemon's socket front) loads neither; `backend.py` (embedded) and `cluster.py`
(Ray) are the torch side.
"""

from __future__ import annotations

from typing import Any, Protocol

from impasto.portable import memory
from impasto.server.jobqueue import Job


class Backend(Protocol):
    load_error: BaseException | None
    # Jobs ended by the back end: with a result, with an error, or cancelled (shutdown
    # included) while running.
    done: int
    failed: int
    cancelled: int

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
    """This process's resident memory (status's memory_bytes where no GPU is used); 0
    where the system will not say. One reader for every system: portable.memory."""
    return memory.resident_bytes() or 0


def job_label(job: Job | None, viewer: str) -> str:
    """A worker's job as status shows it: its id to its owner, "*" to anyone else."""
    if job is None:
        return ""
    return job.id if viewer == job.owner else "*"
