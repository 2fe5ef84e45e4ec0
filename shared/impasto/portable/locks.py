"""An exclusive lock on an open file: one process at a time.

- Linux and macOS: flock(2). Released by the kernel when the holder dies, however.
- Windows: msvcrt.locking on the file's first byte (LockFile in the C runtime), also
  released when the holder's handle closes or it dies.
- Fallback (forced, or a system with neither): an owner file beside the lock, created
  with O_EXCL and holding the owner's process id; one whose process is gone is taken
  over, by one taker at a time (_take_over). Keeps mutual exclusion; a crashed owner's
  lock is freed only once its process id is not in use again (ids are reused in time:
  docs/portability.md).
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import sys
import time
from dataclasses import dataclass

from impasto.portable import fallbacks_forced
from impasto.portable.process import pid_alive

if sys.platform == "win32":
    import msvcrt

    # A file that must not exist yet (owner and breaker): O_EXCL fails on any name there,
    # a link included, so nothing is followed. Binary: no newline translation.
    _NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_BINARY
    # An owner file, read: Windows has no FIFOs in a folder to block on.
    _READ_OWNER = os.O_RDONLY | os.O_BINARY
else:
    import fcntl

    # A file that must not exist yet, never reached through a symlink (owner and breaker).
    _NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
    # An owner file, read: no link followed, no wait on a FIFO put in its place.
    _READ_OWNER = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK


class Busy(OSError):
    """Another process holds the lock."""


@dataclass
class Held:
    fd: int
    owner: str | None = None  # the fallback's owner file
    dir_fd: int | None = None

    def release(self) -> None:
        if self.owner is not None:
            with contextlib.suppress(OSError):
                os.unlink(self.owner, dir_fd=self.dir_fd)
            self.owner = None
        elif sys.platform == "win32":
            # flock's lock goes with the file's close; LockFile's is undone here.
            with contextlib.suppress(OSError):
                os.lseek(self.fd, 0, os.SEEK_SET)
                msvcrt.locking(self.fd, msvcrt.LK_UNLCK, 1)


def kind() -> str:
    if fallbacks_forced():
        return "owner-file"
    return "msvcrt" if sys.platform == "win32" else "flock"


def _native(fd: int, wait: bool) -> None:
    """This system's own lock on `fd`: raises BlockingIOError or PermissionError (msvcrt:
    EACCES) while another process holds it."""
    if sys.platform == "win32":
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)  # waiting is lock()'s loop
    else:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))


def lock(fd: int, name: str, dir_fd: int | None = None, wait: bool = True,
         poll_s: float = 0.05) -> Held:
    """Lock the open file `fd` (named `name`, relative to `dir_fd` when given) for this
    process; waits, or raises Busy at once with wait=False."""
    how = kind()
    while True:
        try:
            if how != "owner-file":
                _native(fd, wait)
                return Held(fd)
            return _owner_file(fd, name + ".owner", dir_fd)
        except (BlockingIOError, PermissionError, Busy) as e:
            if not wait:
                raise Busy(errno.EWOULDBLOCK, f"{name} is locked by another process") from e
            time.sleep(poll_s)
        except OSError as e:  # msvcrt raises EDEADLOCK/EACCES when busy
            if how != "msvcrt":
                raise
            if not wait:
                raise Busy(errno.EWOULDBLOCK, f"{name} is locked by another process") from e
            time.sleep(poll_s)


def _owner_file(fd: int, owner: str, dir_fd: int | None) -> Held:
    for _ in range(3):
        try:
            return _create_owner(fd, owner, dir_fd)
        except FileExistsError:
            if _owner_alive(owner, dir_fd):
                raise Busy(errno.EWOULDBLOCK, "locked") from None
            held = _take_over(fd, owner, dir_fd)
            if held is not None:
                return held
    raise Busy(errno.EWOULDBLOCK, "locked")


def _create_owner(fd: int, owner: str, dir_fd: int | None) -> Held:
    ofd = os.open(owner, _NEW_FILE, 0o600, dir_fd=dir_fd)
    with os.fdopen(ofd, "w") as f:
        f.write(f"{os.getpid()}\n")
    return Held(fd, owner, dir_fd)


def _take_over(fd: int, owner: str, dir_fd: int | None) -> Held | None:
    """Replace a stale owner file with ours; None to try again. Only the holder of a
    breaker file (O_EXCL) removes an owner file, after looking at it again while holding
    the breaker, and creates its own before letting go: so the file it removes is the
    stale one it looked at, never a fresh one another taker just made. A breaker left by
    a taker that died is stale after BREAKER_S (a take-over takes microseconds)."""
    breaker = owner + ".break"
    try:
        os.close(os.open(breaker, _NEW_FILE, 0o600, dir_fd=dir_fd))
    except FileExistsError:
        with contextlib.suppress(OSError):
            st = os.stat(breaker, dir_fd=dir_fd, follow_symlinks=False)
            if time.time() - st.st_mtime > BREAKER_S:
                os.unlink(breaker, dir_fd=dir_fd)
        return None  # another taker is at it
    try:
        try:
            os.stat(owner, dir_fd=dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            return None  # gone meanwhile: create it the plain way
        if _owner_alive(owner, dir_fd):
            raise Busy(errno.EWOULDBLOCK, "locked")
        try:
            os.unlink(owner, dir_fd=dir_fd)
        except IsADirectoryError:
            raise OSError(errno.EISDIR, f"{owner} is a folder; remove it by hand: the lock's "
                          "owner file belongs there") from None
        try:
            return _create_owner(fd, owner, dir_fd)
        except FileExistsError:
            return None  # a plain creator was quicker: it holds the lock now
    finally:
        with contextlib.suppress(OSError):
            os.unlink(breaker, dir_fd=dir_fd)


BREAKER_S = 30.0


def _owner_alive(owner: str, dir_fd: int | None) -> bool:
    """Whether the owner file names a live process. Anything else there (a symlink, a
    FIFO, a folder, garbage) is stale: taken over, never followed or waited on."""
    try:
        fd = os.open(owner, _READ_OWNER, dir_fd=dir_fd)
    except FileNotFoundError:
        return False
    except OSError as e:
        return e.errno not in (errno.ELOOP, errno.EISDIR, errno.ENXIO)  # not a file: stale
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return False
        text = os.read(fd, 32).decode("ascii", "replace").strip()
        age = time.time() - st.st_mtime
    finally:
        os.close(fd)
    if not text:
        return abs(age) < 10  # its owner is between creating and writing it
    try:
        pid = int(text)
    except ValueError:
        return False  # not ours: no process id
    return 0 < pid < 2**31 and pid_alive(pid)  # beyond that no system has processes
