"""Durable per-file state, so a crash at any moment loses nothing and repeats nothing.

Each file being worked on has an entry DIR/.impasto/<id>.json, rewritten atomically at
every step, and its bytes at DIR/.impasto/<id>.data while it is in flight:

  queued    entry written; the original is still in in/ (a crash here: entry dropped)
  claimed   original moved to <id>.data; it will be (re)submitted until it ends;
            a video's frames are kept one by one in <id>.frames/ as they come back,
            frames_done counting them, so a restart resumes at the first frame not done
  writing   output path chosen and recorded; the output appears there atomically
  finishing output exists; the original goes to done/ (or failed/) next
  -> entry removed

On start-up the watcher replays each entry from the step it reached. An entry is data
from disk like any other: `load` checks that every path in it stays where its state
says it must (in/, out/, done/, failed/ of this folder) before anything acts on it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from enum import StrEnum
from pathlib import PurePosixPath
from typing import Any, BinaryIO

from impasto.fsio import fit_name
from impasto.watch.confine import Parts, Tree, parts_of, refuse_on_windows
from impasto.watch.layout import DONE, FAILED, IN, JOURNAL, MAX_DEPTH, OUT

ENTRY_LIMIT = 64 * 1024
# A watch-folder video's frames: each is kept on disk until the video is written, so a
# budget of disk as well as time (about 7 minutes at 25 fps).
MAX_VIDEO_FRAMES = 10_000
# Output containers: the input's own, but for .m4v and .avi, which come out as .mp4.
VIDEO_OUTPUTS = {".mp4": ".mp4", ".m4v": ".mp4", ".mov": ".mov", ".mkv": ".mkv",
                 ".webm": ".webm", ".avi": ".mp4", ".gif": ".gif"}
_OUTPUT_SUFFIXES = {".png", *VIDEO_OUTPUTS.values()}
FRAME_LIMIT = 256 * 2**20  # bytes of one kept frame (PNG) read back
_ID = re.compile(r"[0-9a-f]{12}")
_SUFFIX = re.compile(r"\.[A-Za-z0-9]{1,10}")


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
    # Videos: frames the source has (counted at the claim; exact once all are done),
    # frames done and kept in <id>.frames/, the clip's seed and its results' size (both
    # from its first frame: a kept frame of another size is damaged), and whether every
    # frame is kept (the decoder ran out): then only the video's write is left, and a
    # retry of it decodes no frame to look for more.
    clip_frames: int | None = None
    frames_done: int = 0
    clip_seed: int | None = None
    clip_size: list[int] | None = None
    frames_complete: bool = False

    @property
    def rel_parts(self) -> Parts:
        return parts_of(self.rel)

    @property
    def output_parts(self) -> Parts:
        assert self.output is not None
        return parts_of(self.output)

    @property
    def final_parts(self) -> Parts:
        assert self.final is not None
        return parts_of(self.final)


def output_for(rel: Parts, style: str) -> Parts:
    """out/<style>/<folders below the style folder>/<stem>.png"""
    below = rel[1:-1] if len(rel) > 1 else ()
    return OUT + (style,) + below + (fit_name(PurePosixPath(rel[-1]).stem, ".png"),)


def is_video_name(rel: str) -> bool:
    return PurePosixPath(rel).suffix.lower() in VIDEO_OUTPUTS


def video_output_for(rel: Parts, style: str) -> Parts:
    """out/<style>/<folders below the style folder>/<stem>.<container>"""
    suffix = VIDEO_OUTPUTS[PurePosixPath(rel[-1]).suffix.lower()]
    return output_for(rel, style)[:-1] + (fit_name(PurePosixPath(rel[-1]).stem, suffix),)


def _count(value: object, low: int, high: int) -> bool:
    return type(value) is int and low <= value <= high


def report_for(final: Parts) -> Parts:
    """failed/.../<name>.error.txt beside the failed original"""
    return final[:-1] + (fit_name(final[-1], ".error.txt"),)


def check(e: Entry) -> None:
    """ValueError unless every path in the entry stays inside the folder, where its
    state puts it."""
    if not isinstance(e.id, str) or not _ID.fullmatch(e.id):
        raise ValueError("bad id")
    e.state = State(e.state)
    rel = parts_of(e.rel)
    if any(p.startswith(".") for p in rel) or len(rel) > MAX_DEPTH + 1:
        raise ValueError(f"rel {e.rel!r} is not an input name")
    if e.style != (rel[0] if len(rel) > 1 else None):
        raise ValueError("style does not match the input's folder")
    if not isinstance(e.attempts, int) or not 0 <= e.attempts < 10**6:
        raise ValueError("bad attempts")
    if e.output is not None:
        out = parts_of(e.output)
        if (out[:1] != OUT or len(out) < 3 or out[2:-1] != rel[1:-1]
                or PurePosixPath(out[-1]).suffix not in _OUTPUT_SUFFIXES):
            raise ValueError(f"output {e.output!r} is not a result name for {e.rel!r}")
    elif e.state == State.WRITING:
        raise ValueError("writing without an output")
    if e.final is not None:
        final = parts_of(e.final)
        top = FAILED if e.state == State.FAILING else DONE
        if final[:1] != top or final[1:-1] != rel[:-1]:
            raise ValueError(f"final {e.final!r} is not where {e.rel!r} goes in state {e.state}")
    elif e.state in (State.FINISHING, State.FAILING):
        raise ValueError(f"{e.state} without a final place")
    if e.state == State.FAILING and not (isinstance(e.reason, str) and len(e.reason) <= 8192):
        raise ValueError("failing without a reason")
    if not isinstance(e.extra, dict):
        raise ValueError("bad extra")
    if e.clip_frames is not None and not _count(e.clip_frames, 0, MAX_VIDEO_FRAMES):
        raise ValueError("bad clip_frames")
    if not _count(e.frames_done, 0, MAX_VIDEO_FRAMES):
        raise ValueError("bad frames_done")
    if e.frames_done and (e.clip_frames is None or not is_video_name(e.rel)):
        raise ValueError("frames_done without a video")
    if e.frames_complete is not False and not (
            e.frames_complete is True and e.clip_frames == e.frames_done > 0):
        raise ValueError("bad frames_complete")
    if e.clip_seed is not None and not _count(e.clip_seed, 0, 2**63 - 1):
        raise ValueError("bad clip_seed")
    if e.clip_size is not None and not (
            isinstance(e.clip_size, list) and len(e.clip_size) == 2
            and all(_count(v, 1, 1 << 16) for v in e.clip_size)):
        raise ValueError("bad clip_size")


def _remove_any(d: int, name: str, depth: int = 0) -> None:
    """Delete `name` in the folder open as d: a file or link, or a folder with all it
    holds (no link followed; a person may have put one where a kept frame was)."""
    if sys.platform == "win32":
        refuse_on_windows()
    try:
        os.unlink(name, dir_fd=d)
        return
    except IsADirectoryError:
        if depth > 32:
            raise
    sub = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=d)
    try:
        for f in os.listdir(sub):
            _remove_any(sub, f, depth + 1)
    finally:
        os.close(sub)
    os.rmdir(name, dir_fd=d)


class Journal:
    """The entries in .impasto/, and every act on the watched folder that moves a file
    along its way: the journal alone holds the confined tree, so no step can reach the
    folder except through a method here (each one confined by confine.Tree)."""

    def __init__(self, tree: Tree) -> None:
        self._tree = tree

    # --- the files an entry is about ---------------------------------------------------
    def claim(self, rel: Parts, e: Entry) -> None:
        """Move in/REL into the journal folder as e's data (one rename, no following)."""
        self._tree.rename(IN + rel, self.data_parts(e), create=False)

    def has_data(self, e: Entry) -> bool:
        return self._tree.lstat(self.data_parts(e)) is not None

    def read_data(self, e: Entry, limit: int) -> bytes:
        return self._tree.read(self.data_parts(e), limit)

    def move_data(self, e: Entry, final: Parts) -> None:
        self._tree.rename(self.data_parts(e), final)

    def exists(self, parts: Parts) -> bool:
        return self._tree.lstat(parts) is not None

    def unique(self, parts: Parts) -> Parts:
        return self._tree.unique(parts)

    def write(self, parts: Parts, data: bytes | Callable[[BinaryIO], object],
              before_rename: Callable[[], None] | None = None) -> None:
        self._tree.write_atomic(parts, data, before_rename=before_rename)

    def open_data(self, e: Entry) -> BinaryIO:
        """e's data, open for reading (videos are read as streams, never whole)."""
        return self._tree.open_read(self.data_parts(e))

    # --- a video's frames, kept as they come back ------------------------------------------
    def frame_parts(self, e: Entry, index: int) -> Parts:
        return JOURNAL + (f"{e.id}.frames", f"{index:06d}.png")

    def has_frame(self, e: Entry, index: int) -> bool:
        return self._tree.lstat(self.frame_parts(e, index)) is not None

    def write_frame(self, e: Entry, index: int, data: bytes) -> None:
        self._tree.write_atomic(self.frame_parts(e, index), data, mode=0o600)

    def read_frame(self, e: Entry, index: int) -> bytes:
        return self._tree.read(self.frame_parts(e, index), FRAME_LIMIT)

    def remove_frames_from(self, e: Entry, index: int) -> None:
        """Delete e's kept frames from `index` on (each continues the one before it, so
        none after a lost frame can stay), whatever stands in their place."""
        with (contextlib.suppress(FileNotFoundError, NotADirectoryError),
              self._tree.folder(JOURNAL + (f"{e.id}.frames",)) as d):
            for f in os.listdir(d):
                stem, _, suffix = f.partition(".")
                if suffix == "png" and stem.isdigit() and int(stem) >= index:
                    _remove_any(d, f)
            os.fsync(d)

    def remove_frames(self, e: Entry | str) -> None:
        """Delete a video's kept frames (by entry, or by the id of one gone)."""
        name = f"{e.id if isinstance(e, Entry) else e}.frames"
        with contextlib.suppress(FileNotFoundError, NotADirectoryError):
            with self._tree.folder(JOURNAL + (name,)) as d:
                for f in os.listdir(d):
                    with contextlib.suppress(OSError):
                        _remove_any(d, f)
            with self._tree.folder(JOURNAL) as j:
                os.rmdir(name, dir_fd=j)
                os.fsync(j)

    def free_bytes(self) -> int:
        """Space left where the frames are kept (the journal's file system)."""
        if sys.platform == "win32":
            refuse_on_windows()
        with self._tree.folder(JOURNAL) as d:
            st = os.fstatvfs(d)
        return st.f_bavail * st.f_frsize

    def stray_frames(self, ids: set[str]) -> list[str]:
        """Ids of frame folders whose entry is gone (a crash after the entry's removal)."""
        return [n[:-7] for n in self.names()
                if n.endswith(".frames") and _ID.fullmatch(n[:-7]) and n[:-7] not in ids]

    def count(self, top: Parts) -> int:
        """Files below top that are inputs (no dot-files, no failure reports)."""
        return sum(1 for p, _ in self._tree.files(top)
                   if not p[-1].startswith(".") and not p[-1].endswith(".error.txt"))

    def remove_temps(self, top: Parts) -> list[Parts]:
        return self._tree.remove_temps(top)

    # --- the entries themselves ----------------------------------------------------------

    def new(self, rel: Parts, style: str | None) -> Entry:
        return Entry(id=uuid.uuid4().hex[:12], rel="/".join(rel), style=style)

    def data_parts(self, e: Entry) -> Parts:
        suffix = PurePosixPath(e.rel).suffix
        return JOURNAL + (f"{e.id}.data{suffix if _SUFFIX.fullmatch(suffix) else ''}",)

    def save(self, e: Entry) -> None:
        self._tree.write_atomic(JOURNAL + (f"{e.id}.json",), json.dumps(asdict(e)).encode(),
                               mode=0o600)

    def remove(self, e: Entry) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._tree.unlink(JOURNAL + (f"{e.id}.json",))

    def names(self) -> list[str]:
        with self._tree.folder(JOURNAL) as d:
            return sorted(os.listdir(d))

    def load(self) -> tuple[list[Entry], list[tuple[str, str]]]:
        """The entries, and (name, reason) for each one set aside (renamed to
        NAME.rejected, never acted on)."""
        good: list[Entry] = []
        bad: list[tuple[str, str]] = []
        for name in self.names():
            if not name.endswith(".json"):
                continue
            try:
                if not _ID.fullmatch(name[:-5]):
                    raise ValueError("not a journal entry name")
                raw = json.loads(self._tree.read(JOURNAL + (name,), ENTRY_LIMIT))
                if not isinstance(raw, dict) or set(raw) - {f.name for f in fields(Entry)}:
                    raise ValueError("unknown fields")
                e = Entry(**raw)
                check(e)
                if e.id != name[:-5]:
                    raise ValueError("id does not match the file name")
                good.append(e)
            except (OSError, ValueError, TypeError) as ex:
                bad.append((name, str(ex)[:200]))
                with contextlib.suppress(OSError):
                    self._tree.rename(JOURNAL + (name,), JOURNAL + (name + ".rejected",))
        return good, bad
