"""What the commands that run a job read from their arguments alike: the daemon's client
(--address, --timeout) and the styles (--style, --style-weights, --style-masks), for a
daemon (StyleRefs) or for this process (files and library names)."""

from __future__ import annotations

import argparse
from pathlib import Path

from impasto import imagecodec, videoio
from impasto.client import Client
from impasto.errors import BAD_OPTIONS, ImpastoError
from impasto.protocol import StyleRef, check_blend

CLI_PREVIEW_SIDE = 512  # long side of --preview images


def client_for(args: argparse.Namespace) -> Client:
    return Client(getattr(args, "address", None), timeout=getattr(args, "timeout", 5.0))


def blend_weights(styles: list[str], weights: list[float] | None) -> list[float]:
    """One blend weight per --style (default equal), checked as the daemon checks them."""
    if weights is None:
        return [1.0] * len(styles)
    if len(weights) != len(styles):
        raise ImpastoError(BAD_OPTIONS, f"--style-weights has {len(weights)} values for "
                           f"{len(styles)} --style arguments")
    check_blend(weights)
    return weights


def mask_paths(styles: list[str], masks: list[Path | None] | None) -> list[Path | None]:
    """One --style-masks entry per --style (None: unmasked), each an existing file."""
    if masks is None:
        return [None] * len(styles)
    if len(masks) != len(styles):
        raise ImpastoError(BAD_OPTIONS, f"--style-masks has {len(masks)} entries for "
                           f"{len(styles)} --style arguments (leave an entry empty for an "
                           "unmasked style: a.png,,c.png)")
    for m in masks:
        if m is not None and not m.is_file():
            raise ImpastoError(BAD_OPTIONS, f"mask {m} is not a regular file" if m.exists()
                               or m.is_symlink() else f"mask {m} does not exist")
    return masks


def style_source(style: str) -> Path | str:
    """A --style: the image file at that path when one exists, else a library name; a
    name that looks like a path to a missing file is refused, not looked up."""
    p = Path(style).expanduser()
    if p.is_file():
        return p
    if looks_like_path(style):
        raise ImpastoError(BAD_OPTIONS, f"style image {style} does not exist")
    return style


def style_refs(styles: list[str], weights: list[float] | None,
               masks: list[Path | None] | None = None) -> list[StyleRef]:
    """The --style arguments as a daemon request's styles."""
    refs = []
    for s, w, m in zip(styles, blend_weights(styles, weights), mask_paths(styles, masks)):
        source = style_source(s)
        mask = None if m is None else imagecodec.file_ref(m)
        refs.append(StyleRef(image=imagecodec.file_ref(source), weight=w, mask=mask)
                    if isinstance(source, Path) else StyleRef(name=source, weight=w, mask=mask))
    return refs


def looks_like_path(s: str) -> bool:
    """A folder in it, or a picture's suffix (a frame's, or an animated GIF's)."""
    return "/" in s or "\\" in s or Path(s).suffix.lower() in (*videoio.FRAME_SUFFIXES, ".gif")
