"""The style library: a folder of images, one per style, named by file stem.

The folder is private (0700, its files 0600): styles are the user's pictures. Each style
added over the wire records the client key that added it in `.NAME.owner` (the key's
Z85 text); any client may list a style and stylize with it, but only its owner, or the
daemon machine's own client key (the local user), may replace or remove it. A style
with no valid record (added before owners were kept, put in the folder by hand, or a
record edited into nonsense) belongs to the local key.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import stat
import sys
import threading
from pathlib import Path
from typing import Any

from PIL import Image

from impasto import imagecodec
from impasto.errors import BAD_OPTIONS, NOT_OWNER, STORAGE, UNKNOWN_STYLE, ImpastoError
from impasto.fsio import write_atomic
from impasto.portable import privacy

log = logging.getLogger(__name__)
EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
# Matched whole (fullmatch): "$" alone would also accept a name ending in a newline.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9 _.-]{0,63}")
# A CurveZMQ public key as ZeroMQ's ZAP User-Id gives it: 40 characters of Z85.
_KEY = re.compile(r"[0-9A-Za-z.:+=^!/*?&<>()\[\]{}@%$#-]{40}")


def _open_record(path: Path) -> int:
    """An owner record, opened for reading. POSIX: no link followed (ELOOP) and no wait
    on a FIFO. Windows has neither flag (nor FIFOs in a folder): a binary open, and
    anything but a regular file (a link's target included) is refused on the handle."""
    if sys.platform == "win32":
        fd = os.open(path, os.O_RDONLY | os.O_BINARY)
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise OSError(f"{path} is not a regular file")
        return fd
    return os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)


class StyleLibrary:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._lock = threading.Lock()
        self._decoded: dict[Path, tuple[int, Image.Image]] = {}
        # Held from the owner check to the change it allows: adds run on the intake
        # thread, removes on the loop's.
        self._writing = threading.Lock()
        self._warned: set[Path] = set()  # bad owner records, logged once each

    def make_private(self) -> None:
        """Make the folder 0700 and its files 0600, whatever umask made them: under the
        usual 022 every local user could read the styles. Logged where they were open;
        never fatal (a read-only library is still read)."""
        if not privacy.posix_modes():
            self.root.mkdir(parents=True, exist_ok=True)  # the profile's own access lists
            return
        try:
            self._make_root()
            for p in self.root.iterdir():
                st = p.lstat()
                if stat.S_ISREG(st.st_mode) and st.st_mode & 0o077:
                    os.chmod(p, 0o600)
                    log.warning("style file %s was readable by others (mode %03o); made it 0600",
                                p, st.st_mode & 0o777)
        except OSError as e:
            log.warning("cannot make the style library %s private: %s", self.root, e)

    def _make_root(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        mode = self.root.stat().st_mode & 0o777
        if mode != 0o700:  # made under another umask, or by hand: mkdir leaves it so
            os.chmod(self.root, 0o700)
            log.warning("style library %s had mode %03o; made it 0700 so that other users "
                        "cannot read it", self.root, mode)

    def _owner_file(self, name: str) -> Path:
        return self.root / f".{name}.owner"

    def owner(self, name: str, local: str) -> str:
        """The key that added style `name`; `local` where none is recorded or the record
        is not a key. The record is untrusted: it is read with no link followed and no
        wait (a FIFO there reads as empty), at most 256 bytes."""
        path = self._owner_file(name)
        try:
            fd = _open_record(path)
            try:
                raw = os.read(fd, 256)
            finally:
                os.close(fd)
        except FileNotFoundError:
            return local  # added before owners were recorded, or put there by hand
        except OSError as e:  # a link, a folder, unreadable: not a record impasto wrote
            raw, why = b"", str(e)
        else:
            why = "it holds no client key"
        text = raw.decode("ascii", "replace").strip()
        if _KEY.fullmatch(text):
            return text
        if path not in self._warned:
            self._warned.add(path)
            log.warning("ignoring %s (%s): style %r counts as the local user's", path, why, name)
        return local

    def _check_owner(self, name: str, user: str, local: str, verb: str) -> None:
        if user != local and user != self.owner(name, local):
            raise ImpastoError(NOT_OWNER, f"style {name!r} was added by another client key; only "
                               f"that client or the daemon machine's own user may {verb} it")

    def _files(self) -> dict[str, Path]:
        if not self.root.is_dir():
            return {}
        out: dict[str, Path] = {}
        for p in sorted(self.root.iterdir()):
            if p.suffix.lower() in EXTENSIONS and p.is_file() and not p.name.startswith("."):
                out.setdefault(p.stem, p)
        return out

    def names(self) -> list[str]:
        return list(self._files())

    def list(self, user: str = "", local: str = "") -> list[dict[str, Any]]:
        """Every style, each with `mine`: whether `user` may replace or remove it."""
        out = []
        for name, p in self._files().items():
            entry: dict[str, Any] = {"name": name, "file": p.name, "bytes": p.stat().st_size,
                                     "mine": user in (local, self.owner(name, local))}
            try:
                with Image.open(p) as img:
                    entry["width"], entry["height"] = img.size
            except Exception as e:
                entry["error"] = f"unreadable: {e}"
            out.append(entry)
        return out

    def load(self, name: str) -> Image.Image:
        path = self._files().get(name)
        if path is None:
            known = ", ".join(self.names()) or "none"
            raise ImpastoError(UNKNOWN_STYLE, f"unknown style {name!r}; the library has: {known}")
        mtime = path.stat().st_mtime_ns
        with self._lock:
            hit = self._decoded.get(path)
            if hit and hit[0] == mtime:
                return hit[1]
        img = imagecodec.read_file(path).convert("RGB")
        with self._lock:
            self._decoded[path] = (mtime, img)
        return img

    def add(self, name: str, img: Image.Image, user: str = "", local: str = "") -> dict[str, Any]:
        """Add or replace style `name` for client key `user` (`local`: the daemon
        machine's own key, which may replace anyone's). In-process callers pass no keys."""
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise ImpastoError(BAD_OPTIONS, "style names are 1-64 letters, digits, space, _ . -,"
                               f" starting with a letter or digit; got {name!r}")
        data = imagecodec.encode_png(img.convert("RGB"), compress_level=6)
        target = self.root / f"{name}.png"
        with self._writing:
            if name in self._files():
                self._check_owner(name, user, local, "replace")
            self._write(name, target, data, user)
        return {"name": name, "sha256": hashlib.sha256(data).hexdigest()}

    def _write(self, name: str, target: Path, data: bytes, user: str) -> None:
        try:
            self._make_root()
            # The record first: a crash before the image leaves a record with no style,
            # which counts for nothing (a name with no style is anyone's to add).
            if user:
                write_atomic(self._owner_file(name), user.encode(), mode=0o600)
            else:
                self._owner_file(name).unlink(missing_ok=True)
            for other in self._files().values():  # one file per name, whatever its type
                if other.stem == name and other != target:
                    other.unlink()
            write_atomic(target, data, mode=0o600)
        except OSError as e:
            log.error("cannot save style %r in %s: %s", name, self.root, e)
            # No server path in what a (possibly remote) client reads; the log has it.
            raise ImpastoError(STORAGE, f"cannot save style {name!r} in the library: "
                               f"{e.strerror or e}") from None

    def remove(self, name: str, user: str = "", local: str = "") -> None:
        with self._writing:
            path = self._files().get(name)
            if path is None:
                raise ImpastoError(UNKNOWN_STYLE, f"unknown style {name!r}")
            self._check_owner(name, user, local, "remove")
            try:
                path.unlink()
            except OSError as e:
                log.error("cannot remove %s: %s", path, e)
                raise ImpastoError(STORAGE, f"cannot remove style {name!r}: {e.strerror or e}") from None
            with contextlib.suppress(OSError):
                self._owner_file(name).unlink()
