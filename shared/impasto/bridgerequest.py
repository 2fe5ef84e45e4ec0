"""The typed request the GIMP plug-in hands the bridge: one JSON object in a file.

Standard library only, and no import of the rest of impasto: `impasto gimp install`
copies this file beside the plug-in (as `impasto_request.py`), whose Python (GIMP's) has
nothing else; the plug-in builds a request with these classes and writes `to_line()`,
and the bridge (`impasto.gimp.bridge`) reads it back with `parse()`.

Two kinds, told apart by `clip`:

  still      content {path, width, height, format}, output, styles, ...
  animation  clip {frames, width, height, format, output_dir, chunk}, styles, ...

and both: address, timeout, autostart, client, options, preview. A style is one of a
layer's raw pixels {raw, width, height}, an image file {path} or a library name {name},
with a blend weight and an optional area {raw, width, height} (8-bit grey over the
content). Pixels travel in files, raw: rgb32f (float32 RGB, the plug-in's) or rgba8.

`parse()` refuses, with a RequestError (a ValueError) that says which field and why: a
line that is not a JSON object, an unknown field, a missing or mistyped one, a number
that is not finite or out of its range (sizes are positive whole numbers; the seed
0..2**63-1; a weight 0..1e6; the timeout 0.1..3600 s). Files are not read here: the
bridge checks their sizes against what the request says. A null field is a missing one.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any


class RequestError(ValueError):
    """A request the bridge refuses, said for the person who made it."""


# Raw pixels the bridge takes, each a protocol image format (impasto.protocol.RAW_FORMATS
# holds their bytes a pixel; a test keeps this list within it).
FORMATS = ("rgb32f", "rgba8")
SEED_MAX = 2**63 - 1
WEIGHT_MAX = 1e6
TIMEOUT_S = (0.1, 3600.0)
# A preview's long side and least time between two: the daemon's own limits
# (impasto.protocol.PREVIEW_SIDE, PREVIEW_INTERVAL_S; a test keeps them equal), so that a
# request it would refuse is refused here, before a daemon is started or asked.
SIDE = (16, 1024)
INTERVAL_S = (0.1, 3600.0)
NO_STYLE = "no style given: a library name, an image file or a layer"


# --- the checks, one per kind of value ------------------------------------------------------
def _whole(v: Any, what: str) -> int:
    """A positive whole number (JSON also gives floats, strings, booleans, null)."""
    if (isinstance(v, bool) or not isinstance(v, (int, float))
            or (isinstance(v, float) and not v.is_integer()) or v < 1):
        raise RequestError(f"{what} must be a positive whole number, not {v!r}"[:300])
    return int(v)


def _number(v: Any, what: str, low: float, high: float) -> float:
    """A finite number in [low, high] (NaN and the infinities are outside any range)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not low <= v <= high:
        raise RequestError(f"{what} must be a number from {low:g} to {high:g}, not {v!r}"[:300])
    return float(v)


def _path(v: Any, what: str) -> str:
    if not isinstance(v, str) or not v:
        raise RequestError(f"{what} must be a file path, not {v!r}"[:300])
    return v


def _object(v: Any, what: str) -> dict[str, Any]:
    if not isinstance(v, dict):
        raise RequestError(f"{what} must be an object, not {v!r}"[:300])
    return v


def _known(body: dict[str, Any], names: set[str], what: str) -> dict[str, Any]:
    """The body without its null fields (a null field is a missing one), refused when it
    has a field not in `names`."""
    extra = set(body) - names
    if extra:
        raise RequestError(f"{what} has unknown field(s) {', '.join(sorted(map(str, extra)))}"[:300])
    return {k: v for k, v in body.items() if v is not None}


def _format(v: Any, what: str) -> str:
    if v not in FORMATS:
        raise RequestError(f"{what} in {v!r}; the bridge takes {' or '.join(FORMATS)}"[:300])
    return v


def _finite(v: Any, what: str) -> None:
    """Options go to the daemon as JSON, which has no NaN or infinity."""
    if isinstance(v, float) and not math.isfinite(v):
        raise RequestError(f"{what} is not finite")
    for k, x in (v.items() if isinstance(v, dict) else enumerate(v) if isinstance(v, list) else ()):
        _finite(x, f"{what}[{k!r}]")


def _checked(obj: StillRequest | ClipRequest) -> None:
    """to_line() writes nothing that parse() would refuse."""
    type(obj).from_json(obj.to_json())


def _drop_none(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if v is not None}


# --- the parts ------------------------------------------------------------------------------
@dataclass(frozen=True)
class RawImage:
    """Raw pixels in a file, row by row: `rgb32f` (float32 RGB, little-endian: the
    plug-in's content and frames) or `rgba8` (8-bit RGBA)."""

    path: str
    width: int
    height: int
    format: str = "rgba8"

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "width": self.width, "height": self.height,
                "format": self.format}

    @classmethod
    def from_json(cls, body: Any) -> RawImage:
        """The request's `content` (rgba8 when it names no format: older plug-ins')."""
        b = _known(_object(body, "the request's 'content'"), {"path", "width", "height", "format"},
                   "the request's 'content'")
        return cls(path=_path(b.get("path"), "the content's 'path'"),
                   width=_whole(b.get("width"), "the content's width"),
                   height=_whole(b.get("height"), "the content's height"),
                   format=_format(b.get("format", "rgba8"), "content"))


@dataclass(frozen=True)
class Area:
    """Where a style paints: raw 8-bit grey (one byte a pixel, white: the style paints
    there) over the content's box, from a channel, the selection or a layer mask."""

    raw: str
    width: int
    height: int

    def to_json(self) -> dict[str, Any]:
        return {"raw": self.raw, "width": self.width, "height": self.height}

    @classmethod
    def from_json(cls, body: Any, what: str = "style 1's area") -> Area:
        b = _known(_object(body, what), {"raw", "width", "height"}, what)
        return cls(raw=_path(b.get("raw"), f"{what}'s 'raw'"),
                   width=_whole(b.get("width"), "the area's width"),
                   height=_whole(b.get("height"), "the area's height"))


STYLE_KINDS = ("raw", "path", "name")


@dataclass(frozen=True)
class Style:
    """One style: exactly one of `raw` (a layer's pixels, 8-bit RGBA, with width and
    height), `path` (an image file) or `name` (a style in the daemon's library); its
    blend weight; optionally its area."""

    raw: str | None = None
    width: int | None = None
    height: int | None = None
    path: str | None = None
    name: str | None = None
    weight: float = 1.0
    mask: Area | None = None

    @classmethod
    def layer(cls, raw: str, width: int, height: int, **kw: Any) -> Style:
        return cls(raw=raw, width=width, height=height, **kw)

    @classmethod
    def file(cls, path: str, **kw: Any) -> Style:
        return cls(path=path, **kw)

    @classmethod
    def library(cls, name: str, **kw: Any) -> Style:
        return cls(name=name, **kw)

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = _drop_none({"raw": self.raw, "width": self.width,
                                           "height": self.height, "path": self.path,
                                           "name": self.name})
        if self.weight != 1.0:  # left out at its default, as the plug-in always has
            body["weight"] = self.weight
        if self.mask is not None:
            body["mask"] = self.mask.to_json()
        return body

    @classmethod
    def from_json(cls, body: Any, what: str = "style 1") -> Style:
        b = _known(_object(body, what), {*STYLE_KINDS, "width", "height", "weight", "mask"}, what)
        given = [k for k in STYLE_KINDS if k in b]
        if not given:
            raise RequestError(NO_STYLE)
        if len(given) > 1:
            raise RequestError(f"{what} gives {' and '.join(given)}: a style is one of raw (a "
                               "layer's pixels), path (an image file) or name (a library style)")
        weight = _number(b.get("weight", 1.0), "a style's weight", 0.0, WEIGHT_MAX)
        mask = Area.from_json(b["mask"], f"{what}'s area") if "mask" in b else None
        if "raw" in b:
            return cls(raw=_path(b["raw"], f"{what}'s 'raw'"),
                       width=_whole(b.get("width"), "the style's width"),
                       height=_whole(b.get("height"), "the style's height"),
                       weight=weight, mask=mask)
        if "width" in b or "height" in b:
            raise RequestError(f"{what}'s width and height go with raw pixels, not with "
                               f"{given[0]}")
        if "path" in b:
            return cls(path=_path(b["path"], f"{what}'s 'path'"), weight=weight, mask=mask)
        name = b["name"]
        if not isinstance(name, str) or not name:
            raise RequestError(f"{what}'s name must be a library style's name, not {name!r}"[:300])
        return cls(name=name, weight=weight, mask=mask)


@dataclass(frozen=True)
class Preview:
    """Live previews: each written as raw 8-bit RGBA at `path` (atomically), its long
    side at most `max_side`, at most one every `interval_s` seconds."""

    path: str
    max_side: int = 256
    interval_s: float = 1.0

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "max_side": self.max_side, "interval_s": self.interval_s}

    @classmethod
    def from_json(cls, body: Any) -> Preview:
        if not isinstance(body, dict) or not isinstance(body.get("path"), str) or not body["path"]:
            raise RequestError("the request's 'preview' must be an object with a path")
        b = _known(body, {"path", "max_side", "interval_s"}, "the request's 'preview'")
        return cls(path=b["path"],
                   max_side=int(_number(_whole(b.get("max_side", 256), "the preview's max_side"),
                                        "the preview's max_side", *SIDE)),
                   interval_s=_number(b.get("interval_s", 1.0), "the preview's interval_s",
                                      *INTERVAL_S))


@dataclass(frozen=True)
class Clip:
    """An animation's frames, in order: raw files all of one size and format. Each
    stylized frame is written to `output_dir` as it is done. `chunk`: the most frames one
    request to the daemon carries (None: as many as its budgets allow)."""

    frames: list[str]
    width: int
    height: int
    output_dir: str
    format: str = "rgb32f"
    chunk: int | None = None

    def to_json(self) -> dict[str, Any]:
        return _drop_none({"frames": list(self.frames), "width": self.width,
                           "height": self.height, "format": self.format,
                           "output_dir": self.output_dir, "chunk": self.chunk})

    @classmethod
    def from_json(cls, body: Any) -> Clip:
        b = _known(_object(body, "the request's 'clip'"),
                   {"frames", "width", "height", "format", "output_dir", "chunk"},
                   "the request's 'clip'")
        frames = b.get("frames")
        if not isinstance(frames, list) or not frames:
            raise RequestError("an animation needs a list of at least one frame file")
        for i, f in enumerate(frames, 1):
            _path(f, f"frame {i}")
        return cls(frames=list(frames),
                   width=_whole(b.get("width"), "the frames' width"),
                   height=_whole(b.get("height"), "the frames' height"),
                   output_dir=_path(b.get("output_dir"), "the clip's 'output_dir'"),
                   format=_format(b.get("format", "rgb32f"), "frames"),
                   chunk=None if "chunk" not in b else _whole(b["chunk"], "the clip's chunk"))


# --- the requests ---------------------------------------------------------------------------
_COMMON = {"address", "timeout", "autostart", "client", "styles", "options", "preview"}


def _common(b: dict[str, Any]) -> dict[str, Any]:
    """The fields a still and an animation share, checked."""
    address = b.get("address")
    if address is not None and not isinstance(address, str):
        raise RequestError(f"the request's 'address' must be a string, not {address!r}"[:300])
    autostart = b.get("autostart")
    if autostart is not None and not isinstance(autostart, dict):
        raise RequestError(f"the request's 'autostart' must be an object, not {autostart!r}"[:300])
    client = b.get("client", "gimp")
    if not isinstance(client, str):
        raise RequestError(f"the request's 'client' must be a string, not {client!r}"[:300])
    options = _object(b.get("options", {}), "the request's 'options'")
    seed = options.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)
                             or not 0 <= seed <= SEED_MAX):
        raise RequestError(f"the seed must be a whole number from 0, not {seed!r}"[:300])
    for k, v in options.items():
        _finite(v, f"the request's option {k!r}")
    specs = b.get("styles")
    if not isinstance(specs, list) or not all(isinstance(x, dict) for x in specs):
        raise RequestError("the request's 'styles' must be a list of objects")
    if not specs:
        raise RequestError(NO_STYLE)
    return {"address": address,
            "timeout": _number(b.get("timeout", 5.0), "the request's timeout", *TIMEOUT_S),
            "autostart": autostart, "client": client,
            "styles": [Style.from_json(s, f"style {i}") for i, s in enumerate(specs, 1)],
            "options": dict(options),
            "preview": None if b.get("preview") is None else Preview.from_json(b["preview"])}


def _common_json(r: StillRequest | ClipRequest, what: dict[str, Any]) -> dict[str, Any]:
    """The request's JSON: the fields both kinds share around `what` (content and output,
    or clip)."""
    body = _drop_none({"address": r.address, "timeout": r.timeout, "autostart": r.autostart,
                       "client": r.client})
    body |= what
    body |= {"styles": [s.to_json() for s in r.styles], "options": dict(r.options)}
    if r.preview is not None:
        body["preview"] = r.preview.to_json()
    return body


def _line(r: StillRequest | ClipRequest) -> str:
    """One JSON line (no newline), checked as parse() checks it."""
    _checked(r)
    return json.dumps(r.to_json(), separators=(",", ":"), allow_nan=False)


@dataclass(frozen=True, kw_only=True)
class StillRequest:
    """Stylize one picture: `content`'s pixels, the result written raw to `output` in
    the content's format."""

    address: str | None = None  # the daemon's; None: the default
    timeout: float = 5.0  # seconds the daemon may stay silent
    autostart: dict[str, Any] | None = None  # how to start a daemon (passed through)
    client: str = "gimp"  # shown in the daemon's status
    content: RawImage
    styles: list[Style]
    options: dict[str, Any] = field(default_factory=dict)  # EngineOptions fields
    output: str
    preview: Preview | None = None

    def to_json(self) -> dict[str, Any]:
        return _common_json(self, {"content": self.content.to_json(), "output": self.output})

    def to_line(self) -> str:
        return _line(self)

    @classmethod
    def from_json(cls, body: Any) -> StillRequest:
        b = _known(_object(body, "the request"), _COMMON | {"content", "output", "clip"},
                   "the request")
        if "clip" in b:
            raise RequestError("a still has content, not a clip (parse() reads an animation)")
        common = _common(b)
        content = RawImage.from_json(b.get("content"))
        output = b.get("output")
        if not isinstance(output, str) or not output:
            raise RequestError("the request's 'output' must be a file path")
        return cls(content=content, output=output, **common)


@dataclass(frozen=True, kw_only=True)
class ClipRequest:
    """Stylize an animation: `clip`'s frames, in order, as one clip."""

    address: str | None = None
    timeout: float = 5.0
    autostart: dict[str, Any] | None = None
    client: str = "gimp"
    clip: Clip
    styles: list[Style]
    options: dict[str, Any] = field(default_factory=dict)
    preview: Preview | None = None

    def to_json(self) -> dict[str, Any]:
        return _common_json(self, {"clip": self.clip.to_json()})

    def to_line(self) -> str:
        return _line(self)

    @classmethod
    def from_json(cls, body: Any) -> ClipRequest:
        # A still's content and output beside a clip are ignored, as the bridge always
        # has: an animation is whatever its clip says.
        b = _known(_object(body, "the request"), _COMMON | {"clip", "content", "output"},
                   "the request")
        clip = Clip.from_json(b.get("clip"))
        return cls(clip=clip, **_common(b))


Request = StillRequest | ClipRequest


def from_json(body: Any) -> Request:
    """A decoded request (a dict) into its class: an animation when it has a clip."""
    if not isinstance(body, dict):
        raise RequestError("the request must be a JSON object")
    if body.get("clip") is not None:  # an empty clip is a mistake, not a still
        return ClipRequest.from_json(body)
    return StillRequest.from_json(body)


def parse(text: str | bytes) -> Request:
    """A request file's text back into its class; RequestError says what is wrong."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as e:
            raise RequestError(f"the request is not UTF-8: {e}") from None
    try:
        body = json.loads(text)
    except ValueError as e:
        raise RequestError(f"the request is not JSON: {e}") from None
    return from_json(body)
