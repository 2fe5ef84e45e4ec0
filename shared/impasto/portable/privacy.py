"""Files and folders only their user may read: secret keys, the style library, journals.

- Linux and macOS: POSIX modes (0700 folders, 0600 files, made so from the first byte
  with a umask) and a check of owner and mode before a secret is trusted.
- Windows (and the forced fallback): modes mean little there; the files live in the
  user's own profile folders (%APPDATA%, %LOCALAPPDATA%), which Windows makes private
  to that user by their inherited access lists. impasto sets no ACLs of its own and
  cannot check them: a key file moved to a shared folder is not refused
  (docs/portability.md).
"""

from __future__ import annotations

import contextlib
import os
import stat
import sys
from collections.abc import Iterator
from pathlib import Path

from impasto.portable import fallbacks_forced


def posix_modes() -> bool:
    """Whether owner-only modes are made and checked here."""
    if sys.platform == "win32":
        return False
    return not fallbacks_forced()


def private_dir(path: Path) -> None:
    """Make `path` (and its parents) and keep it to this user."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    if posix_modes():
        os.chmod(path, 0o700)


@contextlib.contextmanager
def private_umask() -> Iterator[None]:
    """Files made inside are private from their first byte (POSIX)."""
    if not posix_modes():
        yield
        return
    old = os.umask(0o077)
    try:
        yield
    finally:
        os.umask(old)


def make_private(path: Path) -> None:
    if posix_modes():
        os.chmod(path, 0o600 if path.is_file() else 0o700)


def problem(path: Path) -> str | None:
    """Why `path` is not private to this user (a sentence with the fix), or None. A path
    that does not exist has no problem."""
    if sys.platform == "win32":
        return None  # the profile folder's access lists; no owner ids to compare
    if not posix_modes():
        return None
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    if st.st_uid != os.getuid() or st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        want = "700" if stat.S_ISDIR(st.st_mode) else "600"
        return (f"{path} can be read or changed by other users; run `chmod {want} {path}` "
                "(and check its owner)")
    return None
