"""Which files some process holds open for writing.

A writer that pauses longer than the settle time with its file still open must not have
the file taken from under it. inotify tells us about opens that happen while we watch;
this catches the rest (writers that opened before the watcher started, polling mode).

- Linux: /proc/PID/fd and fdinfo of the processes whose entries we may read (our own
  user's, or all as root).
- macOS and Windows (and the forced fallback): no such table without extra privileges
  or tools, so None: "cannot tell", and a file counts as written while its size or time
  still changes within the settle time (docs/portability.md: a writer that pauses longer
  than that with the file open can have it taken).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from impasto.portable import fallbacks_forced

PROC = Path("/proc")


def written_files() -> set[tuple[int, int]] | None:
    """(st_dev, st_ino) of every file open for writing in a process we can inspect; None
    where this system has no way to tell."""
    if sys.platform != "linux":
        return None  # macOS and Windows: no table of other processes' open files
    if fallbacks_forced() or not (PROC / "self" / "fdinfo").is_dir():
        return None
    out: set[tuple[int, int]] = set()
    try:
        pids = [p for p in os.listdir(PROC) if p.isdigit()]
    except OSError:
        return out
    me = str(os.getpid())
    for pid in pids:
        if pid == me:
            continue
        fd_dir = PROC / pid / "fd"
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            continue  # gone, or another user's
        for fd in fds:
            try:
                flags = _flags(PROC / pid / "fdinfo" / fd)
                if flags & os.O_ACCMODE not in (os.O_WRONLY, os.O_RDWR):
                    continue
                st = os.stat(fd_dir / fd)
            except (OSError, ValueError):
                continue
            out.add((st.st_dev, st.st_ino))
    return out


def _flags(fdinfo: Path) -> int:
    with open(fdinfo) as f:
        for line in f:
            if line.startswith("flags:"):
                return int(line.split()[1], 8)
    raise ValueError("no flags")
