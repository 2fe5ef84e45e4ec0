"""Which files in in/ are complete: watchdog events plus a settle-time fallback.

A file is taken when it was closed after writing or moved in (inotify's events) and has
not changed for `quiet` seconds since, or, where such events don't exist (polling,
network shares, other systems), when its size and mtime have been stable for `settle`
seconds.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path

from watchdog.events import (
    FileClosedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer
from watchdog.observers.polling import PollingObserver

from impasto.watch.layout import Layout


@dataclass
class _Seen:
    size: int
    mtime: int
    since: float  # when (size, mtime) was last seen to change
    signalled: bool  # closed-after-write or moved-in seen


class Detector(FileSystemEventHandler):
    def __init__(self, layout: Layout, poll: bool = False, settle: float = 2.0,
                 quiet: float = 0.3) -> None:
        self.layout = layout
        self.poll = poll
        self.settle = settle
        self.quiet = quiet
        self._seen: dict[Path, _Seen] = {}
        self._lock = threading.Lock()
        self._observer = (PollingObserver(timeout=0.5) if poll else Observer())

    def start(self) -> None:
        self._observer.schedule(self, str(self.layout.inbox), recursive=True)
        self._observer.start()
        self.scan()  # files dropped while nobody was watching

    def stop(self) -> None:
        self._observer.stop()
        self._observer.join(5)

    def scan(self) -> None:
        for p in self.layout.inbox.rglob("*"):
            self._note(p, signalled=False)

    # watchdog callbacks (observer thread)
    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.is_directory:
            if event.event_type in ("created", "moved"):
                # A folder moved in brings files without events of their own.
                root = Path(str(getattr(event, "dest_path", "") or event.src_path))
                for p in root.rglob("*"):
                    self._note(p, signalled=False)
            return
        if isinstance(event, FileMovedEvent):
            self._forget(Path(str(event.src_path)))
            self._note(Path(str(event.dest_path)), signalled=True)
        elif isinstance(event, FileClosedEvent):
            self._note(Path(str(event.src_path)), signalled=True)
        elif event.event_type == "deleted":
            self._forget(Path(str(event.src_path)))
        elif event.event_type in ("created", "modified"):
            self._note(Path(str(event.src_path)), signalled=False)

    def _note(self, path: Path, signalled: bool) -> None:
        if not self.layout.is_candidate(path):
            return
        try:
            st = path.stat()
        except OSError:
            return
        now = time.monotonic()
        with self._lock:
            old = self._seen.get(path)
            if old is None or (old.size, old.mtime) != (st.st_size, st.st_mtime_ns):
                self._seen[path] = _Seen(st.st_size, st.st_mtime_ns, now,
                                         signalled or (old.signalled if old else False))
            elif signalled:
                old.signalled = True

    def _forget(self, path: Path) -> None:
        with self._lock:
            self._seen.pop(path, None)

    def ready(self) -> list[Path]:
        """Files complete by now, oldest first; they are forgotten once returned."""
        now = time.monotonic()
        out = []
        with self._lock:
            items = list(self._seen.items())
        for path, seen in items:
            try:
                st = path.stat()
            except OSError:
                self._forget(path)
                continue
            if (st.st_size, st.st_mtime_ns) != (seen.size, seen.mtime):
                self._note(path, signalled=False)  # still growing
                continue
            wait = self.quiet if seen.signalled and not self.poll else self.settle
            # A file untouched for longer than the settle time (a start-up scan) is ready.
            age = time.time() - st.st_mtime_ns / 1e9
            if now - seen.since >= wait or age >= self.settle + 1:
                out.append((seen.since, path))
        out.sort()
        paths = [p for _, p in out]
        with self._lock:
            for p in paths:
                self._seen.pop(p, None)
        return paths

    def pending(self) -> int:
        with self._lock:
            return len(self._seen)
