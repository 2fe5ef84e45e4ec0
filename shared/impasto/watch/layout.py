"""The folder layout, what counts as an input, and settings files.

  DIR/in/            drop images here (the default style, from DIR/in/impasto.toml)
  DIR/in/<style>/    ... or here, for a style of the library by folder name; deeper
                     folders keep their structure in out/, done/ and failed/
  DIR/out/<style>/   results, <name>.png (never overwritten: <name>-1.png, ...); a
                     video's in its own container (<name>.mp4, .webm, .gif, ...)
  DIR/done/          originals after success, under their path relative to in/
  DIR/failed/        originals that failed, with <name>.error.txt giving the reason
  DIR/.impasto/      the journal of files being worked on (journal.py); private (0700)

Everything below DIR is untrusted (other users may write it): all access goes through
confine.Tree, and DIR's five folders must be real folders, not symlinks.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
import sys
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from impasto.errors import BAD_OPTIONS, ImpastoError
from impasto.portable import locks, privacy
from impasto.watch.confine import Parts, Tree, refuse_on_windows, unsupported

log = logging.getLogger(__name__)

SETTINGS_NAME = "impasto.toml"
SETTINGS_LIMIT = 64 * 1024
# Names that are still being written by common tools, whatever their extension.
TEMP_SUFFIXES = (".tmp", ".part", ".partial", ".crdownload", ".download", ".swp", "~", ".!sync")
MAX_DEPTH = 8  # folders below in/; deeper files fail with a reason

IN, OUT, DONE, FAILED, JOURNAL = ("in",), ("out",), ("done",), ("failed",), (".impasto",)


@dataclass
class Layout:
    root: Path
    tree: Tree | None = field(default=None, repr=False)
    _lock_fd: int | None = field(default=None, repr=False)
    _lock_dir: int | None = field(default=None, repr=False)
    _held: locks.Held | None = field(default=None, repr=False)

    @property
    def inbox(self) -> Path:
        return self.root / "in"

    @property
    def journal(self) -> Path:
        return self.root / ".impasto"

    def create(self) -> Tree:
        """Make the folders, check them, make the journal private and take the folder's
        lock (one watcher per folder: two would act on one journal)."""
        self.root.mkdir(parents=True, exist_ok=True)
        why = unsupported()
        if why:
            raise ImpastoError(BAD_OPTIONS, why)
        tree = Tree(self.root)
        for parts in (IN, OUT, DONE, FAILED):
            st = tree.lstat(parts)
            if st is not None and not stat.S_ISDIR(st.st_mode):
                what = "a symbolic link" if stat.S_ISLNK(st.st_mode) else "not a folder"
                raise ImpastoError(BAD_OPTIONS, f"refusing to watch {self.root}: {parts[0]}/ is "
                                   f"{what}; in/ out/ done/ failed/ must be real folders inside it")
            with tree.folder(parts, create=True):
                pass
        inbox = os.stat(self.root / "in")
        for parts in (OUT, DONE, FAILED):
            st = os.stat(self.root / parts[0])
            if (st.st_dev, st.st_ino) == (inbox.st_dev, inbox.st_ino):
                raise ImpastoError(BAD_OPTIONS, f"refusing to watch {self.root}: {parts[0]}/ is "
                                   f"the input folder {self.inbox}, so results would be re-read")
        self._private_journal(tree)
        self._lock(tree)
        self.tree = tree
        return tree

    def _private_journal(self, tree: Tree) -> None:
        """The journal says where files go: only the daemon's user may write it. One
        that someone else made (or a symlink) is set aside, never read."""
        if sys.platform == "win32":
            refuse_on_windows()
        st = tree.lstat(JOURNAL)
        # Owners exist where POSIX modes do (privacy.posix_modes); elsewhere a folder
        # that is not a folder is still set aside.
        foreign = privacy.posix_modes() and st is not None and st.st_uid != os.geteuid()
        if st is not None and (not stat.S_ISDIR(st.st_mode) or foreign):
            aside = (f".impasto-untrusted-{int(time.time())}",)
            tree.rename(JOURNAL, aside)
            log.error("%s: %s was not a folder owned by this user; set aside as %s, not read",
                      self.root, self.journal, aside[0])
        with tree.folder(JOURNAL, create=True, mode=0o700) as d:
            if privacy.posix_modes():
                os.fchmod(d, 0o700)

    def _lock(self, tree: Tree) -> None:
        if sys.platform == "win32":
            refuse_on_windows()
        with tree.folder(JOURNAL) as d:
            fd = os.open("lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                         dir_fd=d)
            # The fallback lock's owner file lives beside it: keep the folder's handle.
            self._lock_dir = os.dup(d)
        try:
            self._held = locks.lock(fd, "lock", dir_fd=self._lock_dir, wait=False)
        except OSError:
            os.close(fd)
            os.close(self._lock_dir)
            self._lock_dir = None
            raise ImpastoError(BAD_OPTIONS, f"{self.root} is already watched by another impasto "
                               "process") from None
        self._lock_fd = fd

    def close(self) -> None:
        if self._lock_fd is not None:
            if self._held is not None:
                self._held.release()
                self._held = None
            with contextlib.suppress(OSError):
                os.close(self._lock_fd)
            self._lock_fd = None
        if self._lock_dir is not None:
            with contextlib.suppress(OSError):
                os.close(self._lock_dir)
            self._lock_dir = None
        if self.tree is not None:
            self.tree.close()

    def relative(self, path: Path) -> Parts:
        """A path below in/ (as watchdog reports it) as names; ValueError if outside."""
        return Path(path).relative_to(self.inbox).parts

    @staticmethod
    def style_of(rel: Parts) -> str | None:
        """The style folder a file sits in; None for files directly in in/."""
        return rel[0] if len(rel) > 1 else None

    def candidate(self, path: Path) -> Parts | None:
        """The names of a path below in/ that could be an input (it may still be
        incomplete): a regular file, reached without symlinks, not hidden, not a
        settings or temporary file."""
        try:
            rel = self.relative(path)
        except ValueError:
            return None
        if not rel or any(p.startswith(".") for p in rel):
            return None  # dot-files and rsync's .name.XXXXXX temporaries
        name = rel[-1].lower()
        if name == SETTINGS_NAME or name.endswith(TEMP_SUFFIXES):
            return None
        st = self.tree.lstat(IN + rel) if self.tree else None
        if st is None or not stat.S_ISREG(st.st_mode):
            return None  # not symlinks, fifos, sockets, folders; nor below a symlink
        return rel

    def settings(self, style: str | None) -> dict[str, Any]:
        """Engine options and style for a file: in/impasto.toml, then in/<style>/impasto.toml."""
        assert self.tree is not None
        merged: dict[str, Any] = {}
        files = [IN + (SETTINGS_NAME,)]
        if style is not None:
            files.append(IN + (style, SETTINGS_NAME))
        for parts in files:
            try:
                text = self.tree.read(parts, SETTINGS_LIMIT)
            except FileNotFoundError:
                continue
            except (OSError, ValueError) as e:
                raise ImpastoError(BAD_OPTIONS, f"settings file {'/'.join(parts)} is unreadable: "
                                   f"{e}") from None
            try:
                merged.update(tomllib.loads(text.decode("utf-8", "replace")))
            except tomllib.TOMLDecodeError as e:
                raise ImpastoError(BAD_OPTIONS, f"settings file {'/'.join(parts)} is unreadable: "
                                   f"{e}") from None
        if style is not None:
            merged["style"] = style
        return merged
