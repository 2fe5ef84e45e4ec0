"""Durable per-file state, so a crash at any moment loses nothing and repeats nothing.

Each file being worked on has an entry DIR/.impasto/<id>.json, rewritten atomically at
every step, and its bytes at DIR/.impasto/<id>.data while it is in flight:

  queued    entry written; the original is still in in/ (a crash here: entry dropped)
  claimed   original moved to <id>.data; it will be (re)submitted until it ends
  writing   output path chosen and recorded; the output appears there atomically
  finishing output exists; the original goes to done/ (or failed/) next
  -> entry removed

On start-up `recover` replays each entry from the step it reached.
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from impasto.fsio import fsync_dir, write_atomic
from impasto.watch.layout import Layout


class State(StrEnum):
    QUEUED = "queued"
    CLAIMED = "claimed"
    WRITING = "writing"
    FINISHING = "finishing"
    FAILING = "failing"


@dataclass
class Entry:
    id: str
    rel: str  # path relative to in/
    state: State = State.QUEUED
    style: str | None = None
    attempts: int = 0
    output: str | None = None  # chosen output path (relative to DIR)
    final: str | None = None  # where the original goes (relative to DIR)
    reason: str | None = None  # for failures
    extra: dict[str, Any] = field(default_factory=dict)


class Journal:
    def __init__(self, layout: Layout) -> None:
        self.layout = layout
        self.dir = layout.journal

    def new(self, rel: Path, style: str | None) -> Entry:
        return Entry(id=uuid.uuid4().hex[:12], rel=str(rel), style=style)

    def data_path(self, e: Entry) -> Path:
        suffix = Path(e.rel).suffix
        return self.dir / f"{e.id}.data{suffix}"

    def save(self, e: Entry) -> None:
        write_atomic(self.dir / f"{e.id}.json", json.dumps(asdict(e)).encode())

    def remove(self, e: Entry) -> None:
        (self.dir / f"{e.id}.json").unlink(missing_ok=True)
        fsync_dir(self.dir)

    def entries(self) -> list[Entry]:
        out = []
        for p in sorted(self.dir.glob("*.json")):
            try:
                e = Entry(**json.loads(p.read_text()))
                e.state = State(e.state)
                out.append(e)
            except (OSError, ValueError, TypeError):
                # A torn write cannot happen (atomic rename), but a hand-edited one can.
                os.replace(p, p.with_suffix(".corrupt"))
        return out
