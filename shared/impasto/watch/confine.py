"""File operations confined to one folder whose contents are untrusted.

Anyone who can write a watched folder can swap a sub-folder for a symlink between two
of our steps, or plant names with `..` in them. So nothing here resolves a path string:
every operation walks from a handle on the root, one name at a time, opening each
folder with O_NOFOLLOW, and acts relative to the last folder's handle (openat, renameat,
unlinkat). A symlink anywhere on the way is an error (ELOOP/ENOTDIR), never followed.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import sys
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath
from typing import BinaryIO, NoReturn

from impasto.fsio import fit_name, is_temp_name, write_atomic_at

Parts = tuple[str, ...]

# The calls every operation here makes relative to a folder handle. Windows' Python has
# none of them (docs/portability.md): there the watch folder refuses to start, and this
# module must still import (the refusal is its message), so no flag is read at import.
_NEEDS_DIR_FD = (os.open, os.stat, os.rename, os.unlink, os.mkdir)

UNSUPPORTED = ("watch folders are not supported here: they need file calls relative to "
               "folder handles (openat and friends), which this system's Python lacks "
               "(Windows); the daemon, CLI and GIMP plug-in work without them "
               "(docs/portability.md)")


def unsupported() -> str | None:
    """Why watch folders cannot run on this system, or None."""
    if sys.platform == "win32":
        return UNSUPPORTED
    if all(f in os.supports_dir_fd for f in _NEEDS_DIR_FD):
        return None
    return UNSUPPORTED


def refuse_on_windows() -> NoReturn:
    """What every folder-handle operation does on Windows (callers check unsupported()
    first; this keeps the POSIX-only calls below it out of Windows' reach)."""
    raise OSError(errno.ENOTSUP, UNSUPPORTED)


def _dir_flags() -> int:
    if sys.platform == "win32":
        refuse_on_windows()
    return os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def check_name(name: str) -> str:
    if name in ("", ".", "..") or "/" in name or "\0" in name:
        raise ValueError(f"not a plain file name: {name!r}")
    return name


def parts_of(rel: str | PurePosixPath) -> Parts:
    """The components of a relative path from outside (a journal, a client); ValueError
    for absolute paths, `..`, empty or odd components."""
    if not isinstance(rel, (str, PurePosixPath)):
        raise ValueError(f"not a path: {rel!r}")
    text = str(rel)
    if text.startswith("/") or "\0" in text or not text:
        raise ValueError(f"not a relative path: {text!r}")
    parts = tuple(text.split("/"))
    for p in parts:
        check_name(p)
    return parts


class Tree:
    """A handle on a folder; every path below it is given as a tuple of names."""

    def __init__(self, root: Path) -> None:
        if sys.platform == "win32":
            refuse_on_windows()
        self.root = root
        self.fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.fd)

    def path(self, parts: Parts) -> Path:
        """For messages only: never opened."""
        return self.root.joinpath(*parts)

    @contextlib.contextmanager
    def folder(self, parts: Parts, create: bool = False, mode: int = 0o777) -> Iterator[int]:
        fd = os.dup(self.fd)
        try:
            for name in parts:
                check_name(name)
                try:
                    nfd = os.open(name, _dir_flags(), dir_fd=fd)
                except FileNotFoundError:
                    if not create:
                        raise
                    with contextlib.suppress(FileExistsError):
                        os.mkdir(name, mode, dir_fd=fd)
                    nfd = os.open(name, _dir_flags(), dir_fd=fd)
                os.close(fd)
                fd = nfd
            yield fd
        finally:
            os.close(fd)

    def lstat(self, parts: Parts) -> os.stat_result | None:
        """The entry itself (a symlink is reported as one); None if it or a folder on the
        way is missing or not a real folder."""
        try:
            with self.folder(parts[:-1]) as d:
                return os.stat(check_name(parts[-1]), dir_fd=d, follow_symlinks=False)
        except (OSError, ValueError):
            return None

    def rename(self, src: Parts, dst: Parts, create: bool = True) -> None:
        """Atomic within one file system; the destination's folders are made as needed.
        Durable: both folders are synced."""
        with self.folder(src[:-1]) as s, self.folder(dst[:-1], create=create) as d:
            os.rename(check_name(src[-1]), check_name(dst[-1]), src_dir_fd=s, dst_dir_fd=d)
            os.fsync(d)
            os.fsync(s)

    def unlink(self, parts: Parts) -> None:
        with self.folder(parts[:-1]) as d:
            os.unlink(check_name(parts[-1]), dir_fd=d)
            os.fsync(d)

    def _open_file(self, parts: Parts) -> tuple[int, os.stat_result]:
        """A regular file, opened for reading without following links, and its stat.
        Raises OSError, or ValueError (with a reason for people) for a non-file."""
        if sys.platform == "win32":
            refuse_on_windows()
        with self.folder(parts[:-1]) as d:
            try:
                fd = os.open(check_name(parts[-1]),
                             os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=d)
            except OSError as e:
                if e.errno == errno.ELOOP:
                    raise ValueError("a symbolic link, not a file") from None
                raise
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise ValueError("not a regular file")
        except BaseException:
            os.close(fd)
            raise
        return fd, st

    def open_read(self, parts: Parts) -> BinaryIO:
        """A regular file open for reading (streamed by the caller, as a video is)."""
        fd, _ = self._open_file(parts)
        return os.fdopen(fd, "rb")

    def read(self, parts: Parts, limit: int) -> bytes:
        """A regular file's bytes; its size is checked before anything is read.
        Raises OSError, or ValueError (with a reason for people) for a non-file or a
        file over `limit`."""
        fd, st = self._open_file(parts)
        try:
            if st.st_size > limit:
                raise ValueError(f"file is {st.st_size / 2**20:.1f} MiB; the limit is "
                                 f"{limit / 2**20:.1f} MiB")
        except BaseException:
            os.close(fd)
            raise
        with os.fdopen(fd, "rb") as f:
            data = f.read(limit + 1)
        if len(data) > limit:  # grew after the check
            raise ValueError(f"file is over the limit of {limit / 2**20:.1f} MiB")
        return data

    def write_atomic(self, parts: Parts, data: bytes | Callable[[BinaryIO], object],
                     mode: int = 0o666,
                     before_rename: Callable[[], None] | None = None) -> None:
        with self.folder(parts[:-1], create=True) as d:
            write_atomic_at(d, check_name(parts[-1]), data, mode, before_rename=before_rename)

    def unique(self, parts: Parts) -> Parts:
        """parts, or with -1, -2, ... before the suffix: never an existing entry."""
        if self.lstat(parts) is None:
            return parts
        p = PurePosixPath(parts[-1])
        for i in range(1, 100_000):
            cand = parts[:-1] + (fit_name(p.stem, f"-{i}{p.suffix}"),)
            if self.lstat(cand) is None:
                return cand
        raise OSError(errno.EEXIST, f"too many files named like {self.path(parts)}")

    def files(self, parts: Parts) -> Iterator[tuple[Parts, os.stat_result]]:
        """Every entry that is not a folder below `parts` (symlinks included, never
        followed), with its lstat."""
        if sys.platform == "win32":
            refuse_on_windows()
        try:
            with self.folder(parts) as d:
                for dirpath, dirnames, filenames, dfd in os.fwalk(dir_fd=d, follow_symlinks=False):
                    base = parts + PurePosixPath(dirpath).parts
                    for n in filenames + [n for n in dirnames if _is_link(n, dfd)]:
                        with contextlib.suppress(OSError):
                            yield base + (n,), os.stat(n, dir_fd=dfd, follow_symlinks=False)
        except FileNotFoundError:
            return

    def remove_temps(self, parts: Parts) -> list[Parts]:
        """Delete impasto's own temporary files (fsio.temp_name) below `parts`: what a
        crash inside a write leaves behind."""
        gone = []
        for p, _ in list(self.files(parts)):
            if is_temp_name(p[-1]):
                with contextlib.suppress(OSError):
                    self.unlink(p)
                    gone.append(p)
        return gone


def _is_link(name: str, dfd: int) -> bool:
    try:
        return stat.S_ISLNK(os.stat(name, dir_fd=dfd, follow_symlinks=False).st_mode)
    except OSError:
        return False
