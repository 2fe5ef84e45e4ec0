"""One watched folder: detect complete files, claim them, hand each to the handler of
its kind, and file the originals by the outcome, durably at every step (journal.py).

What a file is (detect.kind_of) picks its handler in KINDS: still.py sends an image as
one batch job, video.py a video as a clip. A handler gets one Job and gives back one
Outcome (job.py); this module keeps the scheduling, the retries and the moves of
originals to done/ and failed/. A new kind of input is one module and one entry in KINDS.

Two kinds of trouble, kept apart:
  - the file's fault (not an image, unknown style, bad settings): a verdict; the file
    goes to failed/ with the reason;
  - the world's fault (daemon away, disk full, read-only, permissions, I/O errors): not
    a verdict; the file stays claimed and its step is retried with back-off until the
    fault clears, and `status` says what is wrong meanwhile.
"""

from __future__ import annotations

import errno
import heapq
import itertools
import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from impasto.client import Client
from impasto.errors import ImpastoError
from impasto.keys import ClientKeys
from impasto.watch import still, video
from impasto.watch.confine import Parts
from impasto.watch.detect import Detector, kind_of
from impasto.watch.job import (
    HOLD_ENV,
    Bench,
    Failed,
    Gone,
    Handler,
    Job,
    Outcome,
    Retry,
    Written,
)
from impasto.watch.journal import Entry, Journal, State, report_for
from impasto.watch.layout import DONE, FAILED, JOURNAL, MAX_DEPTH, OUT, Layout

log = logging.getLogger(__name__)

# The handler of each kind of input, by what detect.kind_of says the file is.
KINDS: dict[str, Handler] = {"image": still.handle, "video": video.handle}
# Seconds all folders together get to stop: a daemon asked to stop exits within a few
# seconds (a service manager's SIGKILL comes after its own timeout, often 10 s).
STOP_S = 3.0
# Sender threads when the daemon says how many files it can take at once (in_flight):
# the most files one folder ever has in flight, whatever the cluster's size.
MAX_SENDERS = 32


def backoff(attempt: int, cap: float) -> float:
    return min(cap, 0.5 * 2 ** min(attempt, 8))


class FolderWatcher:
    def __init__(self, root: Path, address: str, poll: bool = False, settle: float = 2.0,
                 senders: int = 2, keys: ClientKeys | None = None, timeout: float = 5.0,
                 in_flight: Callable[[], int] | None = None) -> None:
        self.layout = Layout(Path(root).resolve())
        self.address = address
        self.detector = Detector(self.layout, poll=poll, settle=settle)
        self.keys = keys
        self.timeout = timeout
        self.work: queue.Queue[Entry] = queue.Queue()
        # With in_flight (how many jobs the daemon's workers can run now), the folder
        # keeps that many files at the daemon, up to MAX_SENDERS; without it, `senders`.
        self.capacity = in_flight
        self.senders = MAX_SENDERS if in_flight is not None else senders
        self._admitted = 0
        # Counts for status, kept as the work happens, under _lock: a file is pending
        # in the detector until claimed, then in flight until filed; working ones are
        # in flight too.
        self.working = self.inflight = 0
        self.done = self.failed = 0
        self.set_aside: list[str] = []
        self.fault: str | None = None  # the storage or daemon trouble being retried (_lock)
        self._later: list[tuple[float, int, Entry]] = []  # retries, by due time
        self._tick = itertools.count()
        self._claim_faults = 0
        self._lock = threading.Lock()
        self._names = threading.Lock()  # output and done/failed names
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    # --- life cycle ----------------------------------------------------------------------
    def start(self) -> FolderWatcher:
        tree = self.layout.create()
        self.journal = Journal(tree)
        # What the handlers work with; results held for a retry live there too.
        self.bench = Bench(self.journal, self.layout.root, self._stop, names=self._names,
                           hold=float(os.environ.get(HOLD_ENV, "0") or 0))
        for top in (OUT, DONE, FAILED, JOURNAL):
            for p in self.journal.remove_temps(top):
                log.info("removed %s, left by a crash inside a write", "/".join(p))
        self.done = self._count(DONE)
        self.failed = self._count(FAILED)
        self.recover()
        self.detector.start()
        self._spawn(self._dispatch, "watch-dispatch")
        for i in range(self.senders):
            self._spawn(self._send_loop, f"watch-send-{i}")
        log.info("watching %s (%s)", self.layout.inbox, "polling" if self.detector.poll else "events")
        return self

    def _spawn(self, fn: Callable[[], None], name: str) -> None:
        def guarded() -> None:
            # A watcher thread must not die: a bug in one step is logged, shown in
            # status, and the loop goes on.
            while not self._stop.is_set():
                try:
                    fn()
                except Exception as ex:  # noqa: BLE001
                    log.exception("%s: watcher thread %s failed; restarting it", self.layout.root, name)
                    self._set_fault(f"thread {name} failed: {type(ex).__name__}: {ex}")
                    self._stop.wait(1.0)

        t = threading.Thread(target=guarded, name=name, daemon=True)
        t.start()
        self._threads.append(t)

    def request_stop(self) -> None:
        """Stop taking files and cancel what is in flight, without waiting: the daemon
        calls this as its shutdown begins, while its socket still answers the cancels
        (asked later, each sender would wait out its client timeout on a closed socket)."""
        self._stop.set()

    def stop(self, deadline: float | None = None) -> None:
        """Stop and join the threads by `deadline` (time.monotonic()), one budget shared
        by every thread and folder rather than a wait per thread."""
        self._stop.set()
        deadline = time.monotonic() + STOP_S if deadline is None else deadline
        self.detector.stop(max(0.0, deadline - time.monotonic()))
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
        late = [t.name for t in self._threads if t.is_alive()]
        if late:
            # Daemon threads: the process may exit; what they held stays claimed in the
            # journal and the next start resumes it.
            log.warning("%s: threads still busy at shutdown: %s", self.layout.root, ", ".join(late))
        self.layout.close()

    def _set_fault(self, problem: str | None) -> None:
        """The trouble being retried, for status; threads report it, so under the lock."""
        with self._lock:
            self.fault = problem

    def _count(self, top: Parts) -> int:
        """Files in done/ or failed/ at start; kept up to date as work happens after."""
        return self.journal.count(top)

    def counts(self) -> dict[str, Any]:
        with self._lock:
            pending = self.detector.pending() + self.inflight - self.working
            working, done, failed = self.working, self.done, self.failed
            problem = self.fault
        dead = [t.name for t in self._threads if not t.is_alive() and not self._stop.is_set()]
        if dead:
            problem = f"watcher threads stopped: {', '.join(dead)}"
        c: dict[str, Any] = {"folder": str(self.layout.root),
                             "pending": pending, "working": working, "done": done,
                             "failed": failed}
        if problem:
            c["problem"] = problem
        if self.set_aside:
            c["set_aside"] = len(self.set_aside)
        return c

    # --- recovery --------------------------------------------------------------------------
    def recover(self) -> None:
        """Replay each journal entry from the step it reached before a crash."""
        entries, rejected = self.journal.load()
        for name, why in rejected:
            log.error("%s: journal entry %s set aside as %s.rejected, not acted on: %s",
                      self.layout.root, name, name, why)
            self.set_aside.append(name)
        # Frames of a video whose entry is gone (or set aside): nothing will use them.
        for stray in self.journal.stray_frames({e.id for e in entries}):
            try:
                self.journal.remove_frames(stray)
            except OSError as ex:  # left for the next start; nothing reads them
                log.warning("%s: cannot remove the kept frames %s.frames: %s", self.layout.root,
                            stray, ex)
        for e in entries:
            has_data = self.journal.has_data(e)
            if e.state == State.QUEUED and not has_data:
                self.journal.remove(e)  # still in in/: the scan picks it up again
                continue
            if not has_data:
                if e.state not in (State.FINISHING, State.FAILING):
                    log.warning("journal entry %s for %s has no data; dropping it", e.id, e.rel)
                self.journal.remove(e)  # else the move was done; only the entry was left
                continue
            if e.state == State.QUEUED:
                e.state = State.CLAIMED  # the claim's move happened; its journal update did not
                self.journal.save(e)
            if (e.state == State.WRITING and e.output
                    and not self.journal.exists(e.output_parts)):
                # Its write never reached the rename. Claimed again now, before any
                # sender runs: else another file given that free name meanwhile would
                # be taken for this one's result (_step's check of `writing`).
                e.state, e.output = State.CLAIMED, None
                self.journal.save(e)
            log.info("recovered %s (%s)", e.rel, e.state)
            self.inflight += 1
            self.work.put(e)

    # --- detection -> claim ------------------------------------------------------------------
    def _dispatch(self) -> None:
        while not self._stop.is_set():
            for path in self.detector.ready():
                try:
                    self._claim(path)
                    self._claim_faults = 0
                except OSError as ex:
                    self._claim_faults += 1
                    delay = backoff(self._claim_faults, 10.0)
                    self._set_fault(f"cannot claim files: {ex} (retrying)")
                    log.warning("%s: cannot claim %s: %s; again in %.1f s", self.layout.root,
                                path.name, ex, delay)
                    self.detector.again(path, delay)
            self._release_due()
            self._stop.wait(0.2)

    def _claim(self, path: Path) -> None:
        rel = self.layout.candidate(path)
        if rel is None:
            self.detector.taken(path)
            return
        e = self.journal.new(rel, self.layout.style_of(rel))
        self.journal.save(e)
        try:
            self.journal.claim(rel, e)
        except OSError as ex:
            self.journal.remove(e)
            if isinstance(ex, (FileNotFoundError, NotADirectoryError)) or ex.errno == errno.ELOOP:
                # Gone, or a folder on the way swapped for a symlink (ELOOP): not ours.
                log.warning("%s: %s vanished or moved before it could be taken", self.layout.root,
                            "/".join(rel))
                self.detector.taken(path)
                return
            raise
        with self._lock:
            self.detector.taken(path)
            self.inflight += 1
        e.state = State.CLAIMED
        try:
            self.journal.save(e)
        except OSError:
            # The data is in the journal folder: recovery treats a queued entry with
            # data as claimed, and the next step saves the entry again.
            log.warning("%s: could not record the claim of %s yet", self.layout.root, e.rel)
        self._set_fault(None)
        self.work.put(e)

    def _later_put(self, e: Entry, delay: float) -> None:
        with self._lock:
            heapq.heappush(self._later, (time.monotonic() + delay, next(self._tick), e))

    def _release_due(self) -> None:
        now = time.monotonic()
        with self._lock:
            while self._later and self._later[0][0] <= now:
                self.work.put(heapq.heappop(self._later)[2])

    # --- claimed -> daemon -> filed ------------------------------------------------------------
    def _send_loop(self) -> None:
        client = Client(self.address, timeout=self.timeout, keys=self.keys)
        try:
            while not self._stop.is_set():
                if not self._admit():
                    self._stop.wait(0.2)
                    continue
                try:
                    e = self.work.get(timeout=0.2)
                except queue.Empty:
                    self._unadmit()
                    continue
                with self._lock:
                    self.working += 1
                try:
                    self._step(client, e)
                except OSError as ex:
                    if ex.errno == errno.ENAMETOOLONG:  # the name's fault, not the disk's
                        self._fail_or_retry(e, f"the name is too long to file: {ex.strerror}")
                    else:
                        self._storage_fault(e, ex)
                except Exception as ex:  # noqa: BLE001 - keep the folder alive
                    log.exception("unexpected failure on %s", e.rel)
                    self._fail_or_retry(e, f"internal error: {type(ex).__name__}: {ex}")
                finally:
                    with self._lock:
                        self.working -= 1
                    self._unadmit()
        finally:
            client.close()

    def _admit(self) -> bool:
        """A sender may take a file while fewer than in_flight() are being worked on."""
        if self.capacity is None:
            return True
        try:
            limit = max(1, self.capacity())
        except Exception:  # noqa: BLE001 - a broken count must not stop the folder
            limit = 1
        with self._lock:
            if self._admitted >= limit:
                return False
            self._admitted += 1
            return True

    def _unadmit(self) -> None:
        if self.capacity is not None:
            with self._lock:
                self._admitted -= 1

    def _fail_or_retry(self, e: Entry, reason: str) -> None:
        try:
            self._fail(e, reason)
        except OSError as ex:
            self._storage_fault(e, ex)

    def _step(self, client: Client, e: Entry) -> None:
        """Take an entry on from the step it reached (first try, retry or recovery)."""
        if e.state in (State.FINISHING, State.FAILING):
            self._complete_move(e)
        elif (e.state == State.WRITING and e.output
              and self.journal.exists(e.output_parts)):
            self._finish(e)
        else:
            self._process(client, e)

    def _storage_fault(self, e: Entry, ex: OSError) -> None:
        if self._stop.is_set():
            return  # stays claimed in the journal; the next start resumes it
        e.attempts += 1
        delay = backoff(e.attempts, 10.0)
        self._set_fault(f"storage: {ex} (retrying)")
        log.warning("%s: %s: %s; retrying in %.1f s", self.layout.root, e.rel, ex, delay)
        self._later_put(e, delay)

    def _process(self, client: Client, e: Entry) -> None:
        rel = e.rel_parts
        if len(rel) > MAX_DEPTH + 1:
            self._fail(e, f"{len(rel) - 1} folders deep below in/; the limit is {MAX_DEPTH}")
            return
        try:
            settings = self.layout.settings(e.style)
        except ImpastoError as ex:
            self._fail(e, ex.message)
            return
        style = settings.pop("style", None)
        if not style or not isinstance(style, str):
            self._fail(e, f"no style for {e.rel}: drop files into in/<style>/ (a style of the "
                       "library), or set style = \"NAME\" in in/impasto.toml")
            return
        kind = kind_of(e.rel)
        self._file(e, KINDS[kind](Job(kind, e, style, settings, client, self.bench)))

    def _file(self, e: Entry, outcome: Outcome) -> None:
        """Take the entry on by what its handler made of it."""
        match outcome:
            case Written(note):
                self._finish(e)
                log.info("%s -> %s%s", e.rel, e.output, note)
            case Failed(reason):
                self._fail(e, reason)
            case Retry(why):
                self._retry(e, why)
            case Gone():
                self._gone(e)

    def _gone(self, e: Entry) -> None:
        """The claimed data vanished (by hand, from the private journal)."""
        log.warning("%s: the claimed data of %s is gone; dropping its entry", self.layout.root, e.rel)
        self.bench.held.drop(e.id)
        self.journal.remove_frames(e)  # a video's kept frames, if any
        self.journal.remove(e)
        with self._lock:
            self.inflight -= 1

    def _retry(self, e: Entry, why: str) -> None:
        if self._stop.is_set():
            return  # stays claimed in the journal; the next start resumes it
        e.attempts += 1
        log.warning("%s: %s; retrying", e.rel, why)
        self._later_put(e, backoff(e.attempts, 30.0))

    def _finish(self, e: Entry) -> None:
        with self._names:
            e.state = State.FINISHING
            e.final = "/".join(self.journal.unique(DONE + e.rel_parts))
            self.journal.save(e)
        self._complete_move(e)

    def _fail(self, e: Entry, reason: str) -> None:
        with self._names:
            e.state, e.reason = State.FAILING, reason
            e.final = "/".join(self.journal.unique(FAILED + e.rel_parts))
            self.journal.save(e)
        self._complete_move(e)
        log.warning("%s failed: %s", e.rel, reason)

    def _complete_move(self, e: Entry) -> None:
        final = e.final_parts
        if e.state == State.FAILING:
            report = report_for(final)
            if not self.journal.exists(report):
                # A name's bytes that are no UTF-8 are written back as they were.
                text = f"{e.rel}: {e.reason}\n".encode("utf-8", "surrogateescape")
                self.journal.write(report, text)
        moved = False
        if self.journal.has_data(e):
            with self._names:
                if self.journal.exists(final):  # someone put a file there meanwhile
                    final = self.journal.unique(final)
                    e.final = "/".join(final)
                    self.journal.save(e)
                self.journal.move_data(e, final)
            moved = True
        else:  # a retry after the move itself succeeded (its folder sync did not)
            moved = self.journal.exists(final)
        self.journal.remove_frames(e)  # a video's kept frames, if any
        self.bench.held.drop(e.id)
        self.journal.remove(e)
        with self._lock:
            self.inflight -= 1
            if moved and e.state == State.FAILING:
                self.failed += 1
            elif moved:
                self.done += 1
            self.fault = None


def start_watchers(folders: list[Path], address: str, poll: bool = False,
                   keys: ClientKeys | None = None, settle: float = 2.0,
                   in_flight: Callable[[], int] | None = None) -> list[FolderWatcher]:
    return [FolderWatcher(f, address, poll=poll, keys=keys, settle=settle,
                          in_flight=in_flight).start() for f in folders]


def wait_forever(watchers: list[FolderWatcher], report_every: float = 30.0,
                 stop: threading.Event | None = None) -> None:
    """Log each folder's counts now and then until `stop` is set (or Ctrl-C), then stop
    the watchers."""
    stop = stop or threading.Event()
    last = 0.0
    try:
        while not stop.wait(1.0):
            if time.monotonic() - last > report_every:
                last = time.monotonic()
                for w in watchers:
                    c = w.counts()
                    log.info("%s: pending %d, working %d, done %d, failed %d%s", c["folder"],
                             c["pending"], c["working"], c["done"], c["failed"],
                             f"; {c['problem']}" if c.get("problem") else "")
    except KeyboardInterrupt:
        pass
    finally:
        stop_watchers(watchers)


def stop_watchers(watchers: list[FolderWatcher], budget: float = STOP_S) -> None:
    """Stop every folder within one shared budget: all are told first, then joined."""
    for w in watchers:
        w.request_stop()
    deadline = time.monotonic() + budget
    for w in watchers:
        w.stop(deadline)
