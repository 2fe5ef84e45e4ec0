"""One watched folder: detect complete files, claim them, send them to the daemon as
batch jobs, and file the results, durably at every step (journal.py)."""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from impasto.client import Client, DaemonUnavailable
from impasto.errors import BAD_OPTIONS, QUEUE_FULL, SHUTDOWN, ImpastoError
from impasto.fsio import move, write_atomic
from impasto.keys import ClientKeys
from impasto.protocol import MAX_MESSAGE_BYTES, ImageRef, Priority, StyleRef, Stylize
from impasto.watch.detect import Detector
from impasto.watch.journal import Entry, Journal, State
from impasto.watch.layout import Layout, unique_path

log = logging.getLogger(__name__)

# Worth retrying: the daemon is away or busy, not the file's fault.
TRANSIENT = {SHUTDOWN, QUEUE_FULL}
# Sender threads when the daemon says how many files it can take at once (in_flight):
# the most files one folder ever has in flight, whatever the cluster's size.
MAX_SENDERS = 32


class FolderWatcher:
    def __init__(self, root: Path, address: str, poll: bool = False, settle: float = 2.0,
                 senders: int = 2, keys: ClientKeys | None = None, timeout: float = 5.0,
                 in_flight: Callable[[], int] | None = None) -> None:
        self.layout = Layout(Path(root).resolve())
        self.address = address
        self.journal = Journal(self.layout)
        self.detector = Detector(self.layout, poll=poll, settle=settle)
        self.keys = keys
        self.timeout = timeout
        self.work: queue.Queue[Entry] = queue.Queue()
        # With in_flight (how many jobs the daemon's workers can run now), the folder
        # keeps that many files in flight, up to MAX_SENDERS; without it, `senders`.
        self.in_flight = in_flight
        self.senders = MAX_SENDERS if in_flight is not None else senders
        self._admitted = 0
        self.working = 0
        self._lock = threading.Lock()
        self._names = threading.Lock()  # output and done/failed names
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    # --- life cycle ----------------------------------------------------------------------
    def start(self) -> FolderWatcher:
        self.layout.create()
        self.recover()
        self.detector.start()
        self._spawn(self._dispatch, "watch-dispatch")
        for i in range(self.senders):
            self._spawn(self._send_loop, f"watch-send-{i}")
        log.info("watching %s (%s)", self.layout.inbox, "polling" if self.detector.poll else "events")
        return self

    def _spawn(self, fn, name: str) -> None:  # noqa: ANN001
        t = threading.Thread(target=fn, name=name, daemon=True)
        t.start()
        self._threads.append(t)

    def stop(self) -> None:
        self._stop.set()
        self.detector.stop()
        for t in self._threads:
            t.join(10)

    def counts(self) -> dict[str, Any]:
        def files(d: Path, skip: str = "") -> int:
            return sum(1 for p in d.rglob("*") if p.is_file() and not p.name.startswith(".")
                       and not (skip and p.name.endswith(skip)))

        return {"folder": str(self.layout.root),
                "pending": self.detector.pending() + self.work.qsize(),
                "working": self.working,
                "done": files(self.layout.done),
                "failed": files(self.layout.failed, ".error.txt")}

    # --- recovery --------------------------------------------------------------------------
    def recover(self) -> None:
        """Replay each journal entry from the step it reached before a crash."""
        for e in self.journal.entries():
            data = self.journal.data_path(e)
            if e.state == State.QUEUED:
                if data.exists():  # the claim's move happened; its journal update did not
                    e.state = State.CLAIMED
                    self.journal.save(e)
                    self.work.put(e)
                else:  # still in in/: the scan picks it up again
                    self.journal.remove(e)
            elif e.state == State.CLAIMED:
                self._requeue_or_drop(e, data)
            elif e.state == State.WRITING:
                if e.output and (self.layout.root / e.output).exists():
                    self._finish(e, data)
                else:
                    self._requeue_or_drop(e, data)
            elif e.state in (State.FINISHING, State.FAILING):
                self._complete_move(e, data)
            log.info("recovered %s (%s)", e.rel, e.state)

    def _requeue_or_drop(self, e: Entry, data: Path) -> None:
        if data.exists():
            e.state = State.CLAIMED
            self.journal.save(e)
            self.work.put(e)
        else:
            log.warning("journal entry %s for %s has no data; dropping it", e.id, e.rel)
            self.journal.remove(e)

    # --- detection -> claim ------------------------------------------------------------------
    def _dispatch(self) -> None:
        while not self._stop.is_set():
            for path in self.detector.ready():
                try:
                    self._claim(path)
                except Exception:  # one file must never stop the folder
                    log.exception("cannot claim %s", path)
            self._stop.wait(0.2)

    def _claim(self, path: Path) -> None:
        rel = self.layout.relative(path)
        e = self.journal.new(rel, self.layout.style_of(rel))
        self.journal.save(e)
        try:
            move(path, self.journal.data_path(e))
        except FileNotFoundError:
            self.journal.remove(e)
            return
        e.state = State.CLAIMED
        self.journal.save(e)
        self.work.put(e)

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
                    self._release()
                    continue
                with self._lock:
                    self.working += 1
                try:
                    self._process(client, e)
                except Exception as ex:  # noqa: BLE001 - keep the folder alive
                    log.exception("unexpected failure on %s", e.rel)
                    self._fail(e, f"internal error: {type(ex).__name__}: {ex}")
                finally:
                    with self._lock:
                        self.working -= 1
                    self._release()
        finally:
            client.close()

    def _admit(self) -> bool:
        """A sender may take a file while fewer than in_flight() are in flight."""
        if self.in_flight is None:
            return True
        try:
            limit = max(1, self.in_flight())
        except Exception:  # noqa: BLE001 - a broken count must not stop the folder
            limit = 1
        with self._lock:
            if self._admitted >= limit:
                return False
            self._admitted += 1
            return True

    def _release(self) -> None:
        if self.in_flight is not None:
            with self._lock:
                self._admitted -= 1

    def _process(self, client: Client, e: Entry) -> None:
        data_path = self.journal.data_path(e)
        try:
            settings = self.layout.settings(e.style)
        except ImpastoError as ex:
            self._fail(e, ex.message)
            return
        style = settings.pop("style", None)
        if not style:
            self._fail(e, f"no style for {e.rel}: drop files into in/<style>/ (a style of the "
                       "library), or set style = \"NAME\" in in/impasto.toml")
            return
        data = data_path.read_bytes()
        if len(data) > MAX_MESSAGE_BYTES - 1024 * 1024:
            self._fail(e, f"file is {len(data) / 2**20:.0f} MiB; the limit is "
                       f"{MAX_MESSAGE_BYTES / 2**20 - 1:.0f} MiB")
            return
        request = Stylize(content=ImageRef(data, "encoded"), styles=[StyleRef(name=str(style))],
                          options=settings, priority=Priority.BATCH, client=f"watch:{self.layout.root.name}")
        try:
            result = client.stylize(request, should_cancel=self._stop.is_set)
        except DaemonUnavailable as ex:
            self._retry(e, str(ex))
            return
        except ImpastoError as ex:
            if ex.code in TRANSIENT or (ex.code == "cancelled" and self._stop.is_set()):
                self._retry(e, ex.message)
            else:
                reason = ex.message if ex.code != BAD_OPTIONS else f"bad settings: {ex.message}"
                self._fail(e, reason)
            return
        assert result.image is not None
        stem = Path(e.rel).stem
        # Choosing a free name and taking it must be one step: two senders finishing
        # a.png and a.jpg of one style would otherwise both pick out/<style>/a.png.
        with self._names:
            out = unique_path(self.layout.out / (style or "default") / f"{stem}.png")
            e.state, e.output = State.WRITING, str(out.relative_to(self.layout.root))
            self.journal.save(e)
            write_atomic(out, result.image.data)
        self._finish(e, data_path)
        log.info("%s -> %s", e.rel, e.output)

    def _retry(self, e: Entry, why: str) -> None:
        if self._stop.is_set():
            return  # stays claimed in the journal; the next start resumes it
        e.attempts += 1
        self.journal.save(e)
        log.warning("%s: %s; retrying", e.rel, why)
        self._stop.wait(min(30.0, 0.5 * 2 ** min(e.attempts, 6)))
        self.work.put(e)

    def _finish(self, e: Entry, data: Path) -> None:
        with self._names:
            e.state = State.FINISHING
            e.final = str(unique_path(self.layout.done / e.rel).relative_to(self.layout.root))
            self.journal.save(e)
            self._complete_move(e, data)

    def _fail(self, e: Entry, reason: str) -> None:
        with self._names:
            e.state, e.reason = State.FAILING, reason
            e.final = str(unique_path(self.layout.failed / e.rel).relative_to(self.layout.root))
            self.journal.save(e)
            self._complete_move(e, self.journal.data_path(e))
        log.warning("%s failed: %s", e.rel, reason)

    def _complete_move(self, e: Entry, data: Path) -> None:
        assert e.final is not None
        final = self.layout.root / e.final
        if e.state == State.FAILING:
            report = final.with_name(final.name + ".error.txt")
            if not report.exists():
                write_atomic(report, f"{e.rel}: {e.reason}\n".encode())
        if data.exists():
            move(data, final)
        with contextlib.suppress(OSError):
            self.journal.remove(e)


def start_watchers(folders: list[Path], address: str, poll: bool = False,
                   keys: ClientKeys | None = None, settle: float = 2.0,
                   in_flight: Callable[[], int] | None = None) -> list[FolderWatcher]:
    return [FolderWatcher(f, address, poll=poll, keys=keys, settle=settle,
                          in_flight=in_flight).start() for f in folders]


def wait_forever(watchers: list[FolderWatcher], report_every: float = 30.0) -> None:
    last = 0.0
    try:
        while True:
            time.sleep(1)
            if time.monotonic() - last > report_every:
                last = time.monotonic()
                for w in watchers:
                    c = w.counts()
                    log.info("%s: pending %d, working %d, done %d, failed %d", c["folder"],
                             c["pending"], c["working"], c["done"], c["failed"])
    except KeyboardInterrupt:
        pass
    finally:
        for w in watchers:
            w.stop()
