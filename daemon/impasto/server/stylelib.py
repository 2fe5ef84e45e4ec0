"""The style library: a folder of images, one per style, named by file stem."""

from __future__ import annotations

import hashlib
import logging
import re
import threading
from pathlib import Path
from typing import Any

from PIL import Image

from impasto import imagecodec
from impasto.errors import BAD_OPTIONS, STORAGE, UNKNOWN_STYLE, ImpastoError
from impasto.fsio import write_atomic

log = logging.getLogger(__name__)
EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
# Matched whole (fullmatch): "$" alone would also accept a name ending in a newline.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9 _.-]{0,63}")


class StyleLibrary:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._lock = threading.Lock()
        self._decoded: dict[Path, tuple[int, Image.Image]] = {}

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

    def list(self) -> list[dict[str, Any]]:
        out = []
        for name, p in self._files().items():
            entry: dict[str, Any] = {"name": name, "file": p.name, "bytes": p.stat().st_size}
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

    def add(self, name: str, img: Image.Image) -> dict[str, Any]:
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise ImpastoError(BAD_OPTIONS, "style names are 1-64 letters, digits, space, _ . -,"
                               f" starting with a letter or digit; got {name!r}")
        data = imagecodec.encode_png(img.convert("RGB"), compress_level=6)
        target = self.root / f"{name}.png"
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            for other in self._files().values():  # one file per name, whatever its type
                if other.stem == name and other != target:
                    other.unlink()
            write_atomic(target, data)
        except OSError as e:
            log.error("cannot save style %r in %s: %s", name, self.root, e)
            # No server path in what a (possibly remote) client reads; the log has it.
            raise ImpastoError(STORAGE, f"cannot save style {name!r} in the library: "
                               f"{e.strerror or e}") from None
        return {"name": name, "sha256": hashlib.sha256(data).hexdigest()}

    def remove(self, name: str) -> None:
        path = self._files().get(name)
        if path is None:
            raise ImpastoError(UNKNOWN_STYLE, f"unknown style {name!r}")
        try:
            path.unlink()
        except OSError as e:
            log.error("cannot remove %s: %s", path, e)
            raise ImpastoError(STORAGE, f"cannot remove style {name!r}: {e.strerror or e}") from None
