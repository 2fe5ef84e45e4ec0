"""Durable file writes and moves: a reader sees the old file or the new one, never half.

The one place impasto writes a file that someone else may read (results, the style
library, the weights cache, watch-folder journals, the GIMP bridge's config and output).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

TEMP_MARK = ".impasto-tmp-"  # temporary names start with "." and contain this


NAME_MAX = 255  # bytes in one file name, on every file system impasto writes to


def fit_name(stem: str, tail: str = "", limit: int = NAME_MAX) -> str:
    """stem + tail, the stem cut (at a character boundary) so that the whole fits
    `limit` bytes: a name that is legal where it came from must not become one that
    cannot be written once impasto adds a suffix to it."""
    room = limit - len(tail.encode("utf-8", "surrogateescape"))
    # A name's bytes that are no UTF-8 (a Latin-1 name from an old archive) come from
    # os as surrogates (surrogateescape) and count as the bytes they stand for.
    raw = stem.encode("utf-8", "surrogateescape")
    if len(raw) > room:
        cut = max(room, 1)
        for _ in range(3):  # not inside a character: back to its first byte
            if cut < len(raw) and raw[cut] & 0xC0 == 0x80:
                cut -= 1
        stem = raw[:cut].decode("utf-8", "surrogateescape") or "x"
    return stem + tail


def temp_name(path: Path) -> Path:
    """A hidden name beside `path` that no other writer picks (pid and random part)."""
    tail = f"{TEMP_MARK}{os.getpid()}-{secrets.token_hex(4)}"
    return path.with_name(fit_name("." + path.name, tail))


def is_temp_name(name: str) -> bool:
    return name.startswith(".") and TEMP_MARK in name


def unwritable(path: Path, folder: bool = False) -> str | None:
    """Why a file (or with `folder`, a folder to write into) cannot be at `path`, or
    None: asked before a long job, so that its end is not lost to the answer."""
    try:
        if folder and path.exists() and not path.is_dir():
            return f"cannot write into {path}: it is not a folder"
        if not folder and path.is_dir():
            return f"cannot write {path}: it is a folder"
        parent = path if folder else path.parent
        while not parent.exists() and parent != parent.parent:
            parent = parent.parent  # folders still to be made: the nearest one that exists
        if not parent.is_dir() or not os.access(parent, os.W_OK):
            return f"cannot write {path}: {parent} is not a writable folder"
    except OSError as e:  # a name too long, a loop of links
        return f"cannot write {path}: {e.strerror or e}"
    try:  # os.access says yes to root everywhere, /proc and read-only mounts included
        tempfile.TemporaryFile(dir=parent).close()
    except OSError as e:
        return f"cannot write {path}: {parent} is not a writable folder ({e.strerror or e})"
    return None


def write_atomic(path: Path, data: bytes | Callable[[BinaryIO], object], mode: int | None = None,
                 sync: bool = True) -> Path:
    """Write `data` (bytes, or a function that writes to a binary file) to `path`.

    The bytes go to a temporary file in the same folder, which is flushed, fsynced and
    renamed over `path`; then the folder is synced, so the rename survives a crash.
    `mode` sets the permission bits before any byte is written (secret files).
    Raises OSError; the temporary file is gone either way.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if sys.platform == "win32":
        _write_atomic_by_path(path, data, mode, sync)
        return path
    d = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        write_atomic_at(d, path.name, data, mode, sync)
    finally:
        os.close(d)
    return path


def _write(fd: int, data: bytes | Callable[[BinaryIO], object], sync: bool) -> None:
    with os.fdopen(fd, "wb") as f:
        if isinstance(data, (bytes, bytearray, memoryview)):
            f.write(data)
        else:
            data(f)
        f.flush()
        if sync:
            os.fsync(f.fileno())


def _write_atomic_by_path(path: Path, data: bytes | Callable[[BinaryIO], object],
                          mode: int | None, sync: bool) -> None:
    """Windows: its Python opens no folder handles (no O_DIRECTORY, no dir_fd), so the
    temporary file is named by path. O_EXCL creates it new (a name already there, a
    link included, is an error, never followed); O_BINARY, or the C runtime would write
    b"\r\n" for every b"\n". os.replace is MoveFileEx(MOVEFILE_REPLACE_EXISTING); NTFS
    journals the rename itself, and there is no folder to fsync."""
    if sys.platform != "win32":
        raise NotImplementedError("the path-based write is Windows' (write_atomic)")
    tmp = temp_name(path)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_BINARY | os.O_NOINHERIT
    fd = os.open(tmp, flags, 0o666 if mode is None else mode)
    try:
        _write(fd, data, sync)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_atomic_at(dir_fd: int, name: str, data: bytes | Callable[[BinaryIO], object],
                    mode: int | None = None, sync: bool = True,
                    before_rename: Callable[[], None] | None = None) -> None:
    """write_atomic for `name` in the folder open as `dir_fd` (confined callers, which
    must not resolve paths: see impasto.watch.confine). Nothing is followed: the
    temporary file is created with O_EXCL|O_NOFOLLOW. POSIX only: Windows' Python has
    no folder handles, and the watch folder, the only caller, refuses to start there."""
    if sys.platform == "win32":
        raise NotImplementedError("file calls relative to a folder handle: not on Windows")
    tmp = temp_name(Path(name)).name
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(tmp, flags, 0o666 if mode is None else mode, dir_fd=dir_fd)  # umask applies
    try:
        _write(fd, data, sync)
        if before_rename is not None:
            before_rename()
        os.replace(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp, dir_fd=dir_fd)
        raise
    if sync:
        with contextlib.suppress(OSError):
            os.fsync(dir_fd)


def fsync_dir(path: Path) -> None:
    # A rename is durable only once its folder is synced (POSIX). Windows opens no
    # folder with os.open and needs none: NTFS journals the rename.
    if sys.platform == "win32":
        return
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def move(src: Path, dst: Path) -> None:
    """Atomic rename within one file system, made durable in both folders."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    os.replace(src, dst)
    fsync_dir(dst.parent)
    fsync_dir(src.parent)
