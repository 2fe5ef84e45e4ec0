"""Which files in in/ are complete: taken only once their writer is done.

A file is taken when
  - nobody holds it open: inotify's open/close events while we watch, and /proc for
    writers we cannot have seen open it (they started before us; polling mode), and
  - it has not changed for `settle` seconds, so a writer that appends in rounds
    (open, append, close, pause) with pauses up to the settle time yields one whole
    file, not several pieces;
  - except a file renamed into place (rsync, `mv`, a download manager): it is complete
    by construction, so `quiet` seconds suffice.
Where inotify does not exist (polling, network shares) only the settle time and /proc
apply; there a writer should write elsewhere and rename into place.
"""

from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from watchdog.events import (
    FileClosedEvent,
    FileClosedNoWriteEvent,
    FileMovedEvent,
    FileOpenedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer
from watchdog.observers.polling import PollingObserver

from impasto.portable.openwriters import written_files
from impasto.watch.journal import is_video_name
from impasto.watch.layout import IN, Layout


def kind_of(rel: str) -> str:
    """What a file dropped into in/ is, by its name: "video" (a container a watch folder
    stylizes as a clip, GIFs included), else "image" (whether it really is one, the
    daemon decides). folder.KINDS has a handler for each."""
    return "video" if is_video_name(rel) else "image"


@dataclass
class _Seen:
    size: int
    mtime: int
    since: float  # when (size, mtime) was last seen to change, or a retry is due
    renamed: bool  # moved into place and unchanged since


class Detector(FileSystemEventHandler):
    def __init__(self, layout: Layout, poll: bool = False, settle: float = 2.0,
                 quiet: float = 0.3) -> None:
        self.layout = layout
        self.poll = poll
        self.settle = settle
        self.quiet = quiet
        self._seen: dict[Path, _Seen] = {}
        self._open: dict[Path, int] = {}  # opens minus closes seen by inotify
        self._lock = threading.Lock()
        self._observer = (PollingObserver(timeout=0.5) if poll else Observer())

    def start(self) -> None:
        self._observer.schedule(self, str(self.layout.inbox), recursive=True)
        self._observer.start()
        self.scan()  # files dropped while nobody was watching

    def stop(self, wait: float = 5.0) -> None:
        self._observer.stop()
        self._observer.join(wait)

    def scan(self, below: tuple[str, ...] = ()) -> None:
        assert self.layout.tree is not None
        for parts, _ in self.layout.tree.files(IN + below):
            self._note(self.layout.inbox.joinpath(*parts[1:]))

    # watchdog callbacks (observer thread)
    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.is_directory:
            if event.event_type in ("created", "moved"):
                # A folder moved in brings files without events of their own.
                root = Path(str(getattr(event, "dest_path", "") or event.src_path))
                with contextlib.suppress(ValueError, OSError):
                    self.scan(self.layout.relative(root))
            return
        src = Path(str(event.src_path))
        if isinstance(event, FileMovedEvent):
            dest = Path(str(event.dest_path))
            with self._lock:
                self._seen.pop(src, None)
                opened = self._open.pop(src, 0)
                if opened:
                    self._open[dest] = opened
            self._note(dest, renamed=True)
        elif isinstance(event, FileOpenedEvent):
            with self._lock:
                self._open[src] = self._open.get(src, 0) + 1
            self._note(src)
        elif isinstance(event, (FileClosedEvent, FileClosedNoWriteEvent)):
            with self._lock:
                n = self._open.pop(src, 0) - 1
                if n > 0:
                    self._open[src] = n
            self._note(src)
        elif event.event_type == "deleted":
            self._forget(src)
        elif event.event_type in ("created", "modified"):
            self._note(src)

    def _note(self, path: Path, renamed: bool = False, due: float | None = None) -> None:
        rel = self.layout.candidate(path)
        st = self.layout.tree.lstat(IN + rel) if rel and self.layout.tree else None
        if st is None:
            return
        now = time.monotonic()
        with self._lock:
            old = self._seen.get(path)
            if due is not None:
                self._seen[path] = _Seen(st.st_size, st.st_mtime_ns, due, False)
            elif old is None or (old.size, old.mtime) != (st.st_size, st.st_mtime_ns):
                self._seen[path] = _Seen(st.st_size, st.st_mtime_ns, now, renamed)
            elif renamed:
                old.renamed = True

    def _forget(self, path: Path) -> None:
        with self._lock:
            self._seen.pop(path, None)
            self._open.pop(path, None)

    def taken(self, path: Path) -> None:
        """`path` was claimed (or is gone): stop tracking it."""
        with self._lock:
            self._seen.pop(path, None)

    def again(self, path: Path, delay: float) -> None:
        """Look at `path` again in `delay` seconds (a claim that met a storage fault)."""
        self._note(path, due=time.monotonic() + delay)

    def ready(self) -> list[Path]:
        """Files complete by now, oldest first. They stay pending until the caller
        says `taken` (or `again`), so that status counts never miss them."""
        assert self.layout.tree is not None
        now = time.monotonic()
        out = []
        with self._lock:
            items = list(self._seen.items())
            opened = {p for p, n in self._open.items() if n > 0}
        for path, seen in items:
            rel = self.layout.candidate(path)
            st = self.layout.tree.lstat(IN + rel) if rel else None
            if st is None:
                self._forget(path)
                continue
            if (st.st_size, st.st_mtime_ns) != (seen.size, seen.mtime):
                self._note(path)  # still growing
                continue
            if path in opened or now < seen.since:
                continue
            wait = self.quiet if seen.renamed else self.settle
            # A file untouched for longer than the settle time (a start-up scan) is ready.
            age = time.time() - st.st_mtime_ns / 1e9
            if now - seen.since >= wait or age >= self.settle + 1:
                out.append((seen.since, path, (st.st_dev, st.st_ino)))
        if out:
            # Writers that opened the file before we watched (or in polling mode).
            busy = written_files()
            if busy is not None:  # None: this system cannot tell; the settle time decides
                out = [o for o in out if o[2] not in busy]
        out.sort()
        return [p for _, p, _ in out]

    def pending(self) -> int:
        with self._lock:
            return len(self._seen)
