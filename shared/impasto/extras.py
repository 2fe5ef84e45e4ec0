"""impasto's optional packages (its extras): which import each needs, and a check made
before any work starts, naming what is missing and the command that adds it.

Without it a wheel-only install ran `impasto stylize clip.mp4`, stylized the first
frame, then failed with a traceback (`No module named 'cv2'`) after minutes of work.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import re
import shlex
import sys

from impasto.errors import ImpastoError

MISSING_PACKAGE = "missing_package"

# extra -> (import name, distribution) for each package it adds; the requirement lines
# themselves (with their version bounds) come from impasto's own metadata when installed.
EXTRAS: dict[str, tuple[tuple[str, str], ...]] = {
    "video": (("cv2", "opencv-python-headless"), ("av", "av")),
}


def missing(extra: str, modules: tuple[str, ...] | None = None) -> list[str]:
    """The distributions of `extra` (those for `modules`, default all) that do not import.
    An import, not a search of the path: a package that is there but broken (a missing
    shared library) counts as missing too."""
    out = []
    for module, dist in EXTRAS[extra]:
        if modules is not None and module not in modules:
            continue
        try:
            importlib.import_module(module)
        except ImportError:
            out.append(dist)
    return out


def requirements(extra: str, dists: list[str]) -> list[str]:
    """The requirement lines for `dists` of `extra` from impasto's metadata (with their
    version bounds), else the bare names."""
    try:
        declared = importlib.metadata.requires("impasto") or []
    except importlib.metadata.PackageNotFoundError:
        declared = []
    out = []
    for dist in dists:
        line = next((r.split(";")[0].strip() for r in declared
                     if re.match(rf"{re.escape(dist)}\b", r) and f"extra == '{extra}'" in r
                     .replace('"', "'")), dist)
        out.append(line)
    return out


def install_command(extra: str, dists: list[str]) -> str:
    """The command that adds them to the Python running impasto (impasto itself is not on
    the package index, so not `pip install impasto[extra]`)."""
    return shlex.join([sys.executable, "-m", "pip", "install", *requirements(extra, dists)])


def require(extra: str, what: str, modules: tuple[str, ...] | None = None) -> None:
    """ImpastoError naming the missing packages and the command that adds them, unless
    `extra`'s packages (those for `modules`) import."""
    gone = missing(extra, modules)
    if gone:
        raise ImpastoError(MISSING_PACKAGE, (
            f"{what} needs impasto's {extra!r} extra, and {', '.join(gone)} "
            f"{'is' if len(gone) == 1 else 'are'} not installed. Add "
            f"{'it' if len(gone) == 1 else 'them'} with: {install_command(extra, gone)}"))
