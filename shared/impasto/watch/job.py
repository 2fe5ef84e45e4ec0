"""What a kind's handler gets and gives back: one claimed file (a Job) in, one Outcome out.

folder.py keeps the scheduling (claims, retries, back-off, the journal's steps) and
files the original by the outcome; a handler (still.py, video.py) only turns the
claimed file into its result in out/, through the folder's Bench. A storage fault
(OSError) is not an outcome: the handler lets it rise and the folder retries the step.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from impasto.client import Client
from impasto.errors import BAD_OPTIONS, QUEUE_FULL, SHUTDOWN, ImpastoError
from impasto.watch.confine import Parts
from impasto.watch.journal import Entry, Journal

log = logging.getLogger(__name__)

# Worth retrying: the daemon is away or busy, not the file's fault.
TRANSIENT = {SHUTDOWN, QUEUE_FULL}
# Test hook: seconds to wait inside the output write window (temporary file written,
# not yet renamed), so a test can kill the process exactly there.
HOLD_ENV = "IMPASTO_WATCH_HOLD_WRITE"
# Results whose write met a storage fault are kept for the retry, so that a full disk
# does not cost a stylization per back-off; past this many bytes (for each kind) they
# are recomputed.
KEEP_RESULTS_BYTES = 256 * 2**20

# One piece of a result: (index, bytes, seed); a still's result is the one piece 0.
Piece = tuple[int, bytes, int | None]


class Held:
    """Results that came back while the disk refused them, kept for the retry: entry id
    -> its pieces, in order. Each kind keeps at most KEEP_RESULTS_BYTES."""

    def __init__(self) -> None:
        self._pieces: dict[str, tuple[str, list[Piece]]] = {}
        self._lock = threading.Lock()

    def add(self, kind: str, entry_id: str, piece: Piece) -> bool:
        """Keep one more piece for the entry; False (not kept) past the kind's budget."""
        with self._lock:
            total = sum(len(p[1]) for k, pieces in self._pieces.values() if k == kind
                        for p in pieces)
            if total + len(piece[1]) > KEEP_RESULTS_BYTES:
                return False
            self._pieces.setdefault(entry_id, (kind, []))[1].append(piece)
            return True

    def take(self, entry_id: str) -> list[Piece]:
        """The entry's pieces, no longer held."""
        with self._lock:
            return self._pieces.pop(entry_id, ("", []))[1]

    def pieces(self, entry_id: str) -> list[Piece]:
        """The entry's pieces, still held: the caller pops each one it has kept, so
        that those left stay held if keeping one fails."""
        with self._lock:
            return self._pieces.get(entry_id, ("", []))[1]

    def drop(self, entry_id: str) -> None:
        with self._lock:
            self._pieces.pop(entry_id, None)


@dataclass
class Bench:
    """What every kind's handler works with: the folder's journal (its only way into the
    folder), the lock that makes choosing a free name and taking it one step, and the
    results held for a retry."""

    journal: Journal
    root: Path
    stop: threading.Event
    names: threading.Lock = field(default_factory=threading.Lock)  # output, done/failed names
    held: Held = field(default_factory=Held)
    hold: float = 0.0  # seconds to wait inside each output write (HOLD_ENV)
    reserved: set[Parts] = field(default_factory=set)  # outputs written outside `names`

    @property
    def client_name(self) -> str:
        return f"watch:{self.root.name}"

    def stopping(self) -> bool:
        return self.stop.is_set()

    def before_rename(self) -> None:
        """The write hook: the test's hold inside the write window."""
        if self.hold > 0:
            log.warning("holding inside the output write for %.1f s (%s)", self.hold, HOLD_ENV)
            time.sleep(self.hold)


@dataclass
class Job:
    """One claimed file for its kind's handler: the entry (its journal state), the style
    and settings from the folder's impasto.toml, and the sender's client."""

    kind: str  # detect.kind_of: the handler's key in folder.KINDS
    entry: Entry
    style: str
    settings: dict[str, Any]
    client: Client
    bench: Bench


@dataclass(frozen=True)
class Written:
    """The result is in out/ (entry.output): the original goes to done/."""

    note: str = ""  # added to the log line


@dataclass(frozen=True)
class Failed:
    """The file's fault: the original goes to failed/ with the reason."""

    reason: str


@dataclass(frozen=True)
class Retry:
    """The daemon's or the world's trouble, not the file's: the step is tried again."""

    why: str


@dataclass(frozen=True)
class Gone:
    """The claimed data vanished (by hand, from the private journal): the entry goes."""


Outcome = Written | Failed | Retry | Gone
Handler = Callable[[Job], Outcome]


def verdict(ex: ImpastoError, stopping: bool) -> Failed | Retry:
    """What the daemon's refusal means for the file."""
    if ex.code in TRANSIENT or (ex.code == "cancelled" and stopping):
        return Retry(ex.message)
    return Failed(ex.message if ex.code != BAD_OPTIONS else f"bad settings: {ex.message}")
