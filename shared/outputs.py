"""Writing result images safely: temporary name, then rename; never a half file."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from PIL import Image

from shared.errors import BAD_OPTIONS, STORAGE, ImpastoError

FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP", ".tif": "TIFF",
           ".tiff": "TIFF", ".bmp": "BMP"}


def format_for(path: Path) -> str:
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ImpastoError(BAD_OPTIONS, f"cannot write {path.suffix or 'files without an extension'}"
                           f"; use one of {', '.join(sorted(FORMATS))}")
    return fmt


def save_image(img: Image.Image, path: Path) -> Path:
    path = Path(path)
    fmt = format_for(path)
    if fmt in ("JPEG", "BMP") and img.mode == "RGBA":
        img = img.convert("RGB")
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as f:
            img.save(f, format=fmt, **({"quality": 95} if fmt in ("JPEG", "WEBP") else {}))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise ImpastoError(STORAGE, f"cannot write {path}: {e.strerror or e}") from None
    return path


def check_writable(path: Path) -> None:
    """Fail before a long job, not after it, when the output cannot be written."""
    path = Path(path)
    format_for(path)
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK):
        raise ImpastoError(STORAGE, f"cannot write {path}: {parent} is not a writable folder")
