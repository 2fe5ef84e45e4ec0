"""Turning command-line style arguments into protocol objects (no torch)."""

from __future__ import annotations

from pathlib import Path

from shared import imagecodec
from shared.errors import BAD_OPTIONS, ImpastoError
from shared.protocol import StyleRef


def style_refs(styles: list[str], weights: list[float] | None) -> list[StyleRef]:
    """Each --style is a file when one exists at that path, else a library name."""
    if weights is not None and len(weights) != len(styles):
        raise ImpastoError(BAD_OPTIONS, f"--style-weights has {len(weights)} values for "
                           f"{len(styles)} --style arguments")
    refs = []
    for i, s in enumerate(styles):
        w = 1.0 if weights is None else weights[i]
        p = Path(s).expanduser()
        if p.is_file():
            refs.append(StyleRef(image=imagecodec.file_ref(p), weight=w))
        elif looks_like_path(s):
            raise ImpastoError(BAD_OPTIONS, f"style image {s} does not exist")
        else:
            refs.append(StyleRef(name=s, weight=w))
    return refs


def looks_like_path(s: str) -> bool:
    return "/" in s or "\\" in s or Path(s).suffix.lower() in (
        ".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif")
