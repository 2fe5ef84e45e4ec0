"""The folder layout, what counts as an input, settings files, and safe file moves.

  DIR/in/            drop images here (the default style, from DIR/in/impasto.toml)
  DIR/in/<style>/    ... or here, for a style of the library by folder name
  DIR/out/<style>/   results, <name>.png (never overwritten: <name>-1.png, ...)
  DIR/done/          originals after success, under their path relative to in/
  DIR/failed/        originals that failed, with <name>.error.txt giving the reason
  DIR/.impasto/      the journal of files being worked on (see journal.py)
"""

from __future__ import annotations

import stat
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from impasto.errors import BAD_OPTIONS, STORAGE, ImpastoError

SETTINGS_NAME = "impasto.toml"
# Names that are still being written by common tools, whatever their extension.
TEMP_SUFFIXES = (".tmp", ".part", ".partial", ".crdownload", ".download", ".swp", "~", ".!sync")


@dataclass(frozen=True)
class Layout:
    root: Path

    @property
    def inbox(self) -> Path:
        return self.root / "in"

    @property
    def out(self) -> Path:
        return self.root / "out"

    @property
    def done(self) -> Path:
        return self.root / "done"

    @property
    def failed(self) -> Path:
        return self.root / "failed"

    @property
    def journal(self) -> Path:
        return self.root / ".impasto"

    def create(self) -> None:
        for d in (self.inbox, self.out, self.done, self.failed, self.journal):
            d.mkdir(parents=True, exist_ok=True)
        inbox = self.inbox.resolve()
        for d in (self.out, self.done, self.failed, self.journal):
            r = d.resolve()
            if r == inbox or inbox in r.parents:
                raise ImpastoError(BAD_OPTIONS, f"refusing to watch {self.root}: {d} lies inside "
                                   f"the input folder {self.inbox}, so results would be re-read")

    def relative(self, path: Path) -> Path:
        return path.relative_to(self.inbox)

    def style_of(self, rel: Path) -> str | None:
        """The style folder a file sits in; None for files directly in in/."""
        return rel.parts[0] if len(rel.parts) > 1 else None

    def is_candidate(self, path: Path) -> bool:
        """Could this path be an input? (It may still be incomplete.)"""
        try:
            rel = self.relative(path)
        except ValueError:
            return False
        if any(p.startswith(".") for p in rel.parts):
            return False  # dot-files and rsync's .name.XXXXXX temporaries
        name = path.name.lower()
        if name == SETTINGS_NAME or name.endswith(TEMP_SUFFIXES):
            return False
        if len(rel.parts) > 2:
            return False  # only in/ and in/<style>/
        try:
            st = path.lstat()
        except OSError:
            return False
        return stat.S_ISREG(st.st_mode)  # not symlinks, fifos, sockets, folders

    def settings(self, style: str | None) -> dict[str, Any]:
        """Engine options and style for a file: in/impasto.toml, then in/<style>/impasto.toml."""
        merged: dict[str, Any] = {}
        files = [self.inbox / SETTINGS_NAME]
        if style is not None:
            files.append(self.inbox / style / SETTINGS_NAME)
        for f in files:
            if f.is_file():
                try:
                    merged.update(tomllib.loads(f.read_text()))
                except (OSError, tomllib.TOMLDecodeError) as e:
                    raise ImpastoError(BAD_OPTIONS, f"settings file {f} is unreadable: {e}") from None
        if style is not None:
            merged["style"] = style
        return merged


def unique_path(path: Path) -> Path:
    """path, or path with -1, -2, ... before the suffix: never an existing file."""
    if not path.exists():
        return path
    for i in range(1, 100_000):
        p = path.with_name(f"{path.stem}-{i}{path.suffix}")
        if not p.exists():
            return p
    raise ImpastoError(STORAGE, f"too many files named like {path}")


