"""The wire protocol: typed messages, multipart framing, version and limits.

A message is one ZeroMQ multipart message: frame 0 is a UTF-8 JSON object (the
header), frames 1..N are binary attachments ("blobs") that the header refers to by
index. docs/protocol.md is the normative description; keep the two in step.
"""

from __future__ import annotations

import dataclasses
import json
import math
import typing
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar

from impasto.errors import (
    BAD_IMAGE,
    BAD_MESSAGE,
    BAD_OPTIONS,
    BAD_VERSION,
    IMAGE_TOO_LARGE,
    MESSAGE_TOO_LARGE,
    UNKNOWN_TYPE,
    ImpastoError,
)

PROTOCOL_VERSION = 1
DEFAULT_PORT = 5767
DEFAULT_ADDRESS = f"tcp://127.0.0.1:{DEFAULT_PORT}"

MAX_MESSAGE_BYTES = 256 * 1024 * 1024  # whole multipart message, all frames
# A frame bigger than this is dropped by the daemon's socket, connection and all, unread
# and unanswered (ZeroMQ's MAXMSGSIZE): so the reference client refuses to send any message
# over MAX_MESSAGE_BYTES itself; between the two, the daemon answers message_too_large.
MAX_FRAME_DROP_BYTES = 1024 * 1024 * 1024
MAX_HEADER_BYTES = 1024 * 1024
MAX_PIXELS = 4096 * 4096  # per input image
MAX_REQUEST_PIXELS = 2 * MAX_PIXELS  # all images of one request, decoded
MAX_STYLES = 16
# Frames of one clip request. Longer clips go as several requests, each continuing the
# last (`previous_frame`, `previous_result`); the pixel budget usually binds first.
MAX_CLIP_FRAMES = 1000
MAX_SIDE = 16384

# "encoded": PNG, JPEG, WebP, TIFF or BMP; "rgba8": raw 8-bit sRGB RGBA; "rgb32f": raw
# little-endian float32 RGB without alpha (editors working at 16/32 bits keep their
# precision and their alpha: the alpha never travels, so it cannot change).
IMAGE_FORMATS = ("png", "jpeg", "encoded", "rgba8", "rgb32f")
RAW_FORMATS = {"rgba8": 4, "rgb32f": 12}  # bytes per pixel

# Live previews a client may ask for (`Stylize.preview`): the longest side of each
# preview image and the least time between two of them.
PREVIEW_SIDE = (16, 1024, 256)  # min, max, default
PREVIEW_INTERVAL_S = (0.1, 3600.0, 1.0)


class Priority(StrEnum):
    """Interactive jobs (editors, CLI) go first; batch jobs (watch folders) are never starved."""

    INTERACTIVE = "interactive"
    BATCH = "batch"


class Stage(StrEnum):
    PREPARE = "prepare"  # style targets, model
    OPTIMIZE = "optimize"


class DaemonState(StrEnum):
    LOADING = "loading"  # the model
    READY = "ready"
    STOPPING = "stopping"


class WorkerState(StrEnum):
    """A worker's state in `status.workers`."""

    STARTING = "starting"  # its model still loads
    IDLE = "idle"
    BUSY = "busy"


class CancelledFrom(StrEnum):
    """`cancelled.was`: where the cancel found the job."""

    QUEUED = "queued"
    RUNNING = "running"


class OutputFormat(StrEnum):
    PNG = "png"
    RGBA8 = "rgba8"
    RGB32F = "rgb32f"  # float32 RGB, not clipped to the 8-bit grid; no alpha


PRIORITIES = tuple(Priority)


# --- building blocks -----------------------------------------------------------------
@dataclass
class ImageRef:
    """An image carried in a blob: encoded bytes (PNG, JPEG, ...), raw 8-bit RGBA or raw
    float32 RGB."""

    data: bytes
    format: str = "png"
    width: int | None = None  # required for the raw formats
    height: int | None = None

    def check(self) -> None:
        if self.format not in IMAGE_FORMATS:
            raise ImpastoError(BAD_IMAGE, f"unknown image format {self.format!r}")
        if not self.data:
            raise ImpastoError(BAD_IMAGE, "image is empty")
        if self.format in RAW_FORMATS:
            w, h, bpp = self.width, self.height, RAW_FORMATS[self.format]
            if (isinstance(w, bool) or isinstance(h, bool) or not isinstance(w, int)
                    or not isinstance(h, int) or w <= 0 or h <= 0):
                raise ImpastoError(BAD_IMAGE, f"{self.format} image needs positive width and height")
            check_pixels(w, h)
            if len(self.data) != w * h * bpp:
                raise ImpastoError(
                    BAD_IMAGE, f"{self.format} image of {w}x{h} needs {w * h * bpp} bytes, "
                    f"got {len(self.data)}")


def check_pixels(width: int, height: int) -> None:
    if width * height > MAX_PIXELS or max(width, height) > MAX_SIDE:
        raise ImpastoError(
            IMAGE_TOO_LARGE,
            f"image is {width}x{height} ({width * height / 1e6:.1f} MP); the limit is "
            f"{MAX_PIXELS / 1e6:.1f} MP and {MAX_SIDE} px a side. Scale it down first.",
        )


_CONTROL = {c: f"\\x{c:02x}" for c in [*range(0x20), *range(0x7F, 0xA0)]}


_CONTROL_KEEP_LINES = {k: v for k, v in _CONTROL.items() if chr(k) not in "\n\t"}


def printable(text: object, limit: int = 500, lines: bool = False) -> str:
    """Text from outside, safe to log or print: control characters (newlines that forge
    log lines, terminal escape sequences) shown as \\xNN, and at most `limit` characters.
    lines=True keeps newlines and tabs (a message printed on a terminal, not a log)."""
    s = str(text)
    if len(s) > limit:
        s = s[:limit] + "..."
    return s.translate(_CONTROL_KEEP_LINES if lines else _CONTROL)


def check_blend(weights: list[float]) -> None:
    """Blend weights: finite, none negative, a positive sum (they are normalised by it)."""
    for w in weights:
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w) or w < 0:
            raise ImpastoError(BAD_OPTIONS, f"style weights must be finite and not negative; got {w!r}")
    total = sum(float(w) for w in weights)
    if not total > 0 or not math.isfinite(total):
        raise ImpastoError(BAD_OPTIONS, "style weights must have a positive, finite sum "
                           f"(got {', '.join(f'{w:g}' for w in weights)})")


# A masked style's weight scales its region's strength, so it is capped as strength is.
MAX_REGION_WEIGHT = 100.0


def check_region_weights(weights: list[float], masked: list[bool]) -> None:
    for i, (w, m) in enumerate(zip(weights, masked)):
        # The refused value as sent (repr: every digit that tells it from the limit;
        # `:g` printed 100.0001 as "100").
        if m and w > MAX_REGION_WEIGHT:
            raise ImpastoError(BAD_OPTIONS, f"style {i + 1} has a mask, so its weight scales its "
                               f"region's strength: at most {MAX_REGION_WEIGHT:g}, not {w!r}")


def check_preview(spec: object) -> dict[str, Any]:
    """A stylize request's `preview` field, checked and completed with defaults."""
    if not isinstance(spec, dict):
        raise ImpastoError(BAD_MESSAGE, "preview must be an object {max_side, interval_s, format}")
    unknown = set(spec) - {"max_side", "interval_s", "format"}
    if unknown:
        raise ImpastoError(BAD_MESSAGE, f"preview: unknown field(s) {', '.join(sorted(map(str, unknown)))}")
    lo, hi, default = PREVIEW_SIDE
    side = spec.get("max_side", default)
    if isinstance(side, bool) or not isinstance(side, int) or not lo <= side <= hi:
        raise ImpastoError(BAD_OPTIONS, f"preview.max_side must be an integer {lo}..{hi}; got {side!r}")
    lo_s, hi_s, default_s = PREVIEW_INTERVAL_S
    every = spec.get("interval_s", default_s)
    if (isinstance(every, bool) or not isinstance(every, (int, float)) or not math.isfinite(every)
            or not lo_s <= every <= hi_s):
        raise ImpastoError(BAD_OPTIONS, f"preview.interval_s must be a number {lo_s:g}..{hi_s:g}; "
                           f"got {every!r}")
    fmt = spec.get("format", "png")
    if fmt not in ("png", "rgba8"):
        raise ImpastoError(BAD_OPTIONS, f"preview.format must be png or rgba8; got {fmt!r}")
    return {"max_side": side, "interval_s": float(every), "format": fmt}


@dataclass
class StyleRef:
    """One style of a stylize request: a library name or an image, with a blend weight,
    and optionally a mask: a greyscale image of the content's size, white where this
    style goes (its region; docs/protocol.md, regions)."""

    name: str | None = None
    image: ImageRef | None = None
    weight: float = 1.0
    mask: ImageRef | None = None


# --- messages --------------------------------------------------------------------------
@dataclass
class Message:
    TYPE: ClassVar[str] = ""
    # Fields added within protocol 1: left out of the header while they hold their
    # default, so a request that does not use them still reaches an older daemon (which
    # refuses unknown fields).
    OMIT_DEFAULT: ClassVar[frozenset[str]] = frozenset()


@dataclass
class Ping(Message):
    TYPE: ClassVar[str] = "ping"


@dataclass
class Pong(Message):
    TYPE: ClassVar[str] = "pong"
    version: str = ""
    protocol: int = PROTOCOL_VERSION


@dataclass
class StatusRequest(Message):
    TYPE: ClassVar[str] = "status"


@dataclass
class Status(Message):
    TYPE: ClassVar[str] = "status.reply"
    state: DaemonState = DaemonState.READY
    version: str = ""
    protocol: int = PROTOCOL_VERSION
    device: str = ""
    # One line for people: what runs on the device and why (precision, units).
    device_detail: str = ""
    weights: str = ""
    memory_bytes: int = 0
    uptime_s: float = 0.0
    jobs_done: int = 0
    jobs_failed: int = 0
    jobs_cancelled: int = 0
    cache_hits: int = 0
    cache_misses: int = 0
    running: dict[str, Any] | None = None
    queue: list[dict[str, Any]] = field(default_factory=list)
    watch: list[dict[str, Any]] = field(default_factory=list)
    workers: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Stylize(Message):
    TYPE: ClassVar[str] = "stylize"
    content: ImageRef | None = None
    styles: list[StyleRef] = field(default_factory=list)
    options: dict[str, Any] = field(default_factory=dict)
    priority: Priority = Priority.INTERACTIVE
    output: OutputFormat = OutputFormat.PNG
    client: str = ""  # free text shown in status, e.g. "gimp"
    # Live previews: {"max_side": int, "interval_s": number, "format": "png" | "rgba8"},
    # each optional; null: none.
    preview: dict[str, Any] | None = None
    # A clip: its frames in order, in place of `content`. Each frame after the first
    # holds to the one before where the scene holds still (option `stability`); one
    # `frame` event carries each stylized frame as it is done.
    frames: list[ImageRef] = field(default_factory=list)
    # A clip continued from an earlier request (the next chunk of a long clip, or a clip
    # resumed after a restart): the frame before frames[0] and its stylized result, so
    # the first frame holds to it as it would have in one request.
    previous_frame: ImageRef | None = None
    previous_result: ImageRef | None = None
    OMIT_DEFAULT: ClassVar[frozenset[str]] = frozenset(
        {"preview", "frames", "previous_frame", "previous_result"})

    def validate(self) -> None:
        """Checks of the request as a whole, made when it is decoded."""
        self.client = printable(self.client, 64)  # shown in logs and in status
        if self.content is not None and self.frames:
            raise ImpastoError(BAD_MESSAGE, "stylize takes a content image or a clip's frames, not both")
        if len(self.frames) > MAX_CLIP_FRAMES:
            raise ImpastoError(BAD_OPTIONS, f"{len(self.frames)} frames; at most {MAX_CLIP_FRAMES} "
                               "in one request (send a longer clip as several, each continuing "
                               "the last)")
        if (self.previous_frame is None) != (self.previous_result is None):
            raise ImpastoError(BAD_MESSAGE, "previous_frame and previous_result go together")
        if self.previous_frame is not None and not self.frames:
            raise ImpastoError(BAD_MESSAGE, "previous_frame continues a clip: it needs frames")
        if self.preview is not None:
            self.preview = check_preview(self.preview)
        if not self.styles:
            raise ImpastoError(BAD_OPTIONS, "stylize needs at least one style")
        if len(self.styles) > MAX_STYLES:
            raise ImpastoError(BAD_OPTIONS, f"{len(self.styles)} styles; at most {MAX_STYLES}")
        legacy = self.options.pop("style_weights", None) if isinstance(self.options, dict) else None
        if legacy is not None:
            # Protocol 1 first carried blend weights as options.style_weights; they now
            # travel only as each style's "weight". The old form is still read, so old
            # clients keep working, and folded into the styles here.
            if not isinstance(legacy, list) or len(legacy) != len(self.styles):
                raise ImpastoError(BAD_OPTIONS, "options.style_weights needs one number per style")
            check_blend(legacy)
            for ref, w in zip(self.styles, legacy):
                ref.weight = float(w)
        check_blend([s.weight for s in self.styles])
        check_region_weights([s.weight for s in self.styles], [s.mask is not None for s in self.styles])


@dataclass
class Accepted(Message):
    TYPE: ClassVar[str] = "accepted"
    job: str = ""
    position: int = 0  # 0 = runs now


@dataclass
class Progress(Message):
    TYPE: ClassVar[str] = "progress"
    job: str = ""
    stage: Stage = Stage.OPTIMIZE
    scale: int = 0
    scales: int = 1
    size: int = 0
    step: int = 0  # evaluations done over all scales
    total: int = 0
    losses: dict[str, float] = field(default_factory=dict)
    elapsed_s: float = 0.0
    # The image as it stands (PNG or rgba8, long side at most the request's preview.max_side),
    # on events the request asked previews for; left out of the others (not null).
    preview: ImageRef | None = None
    # In a clip: the frame being stylized (0-based, in the request's frames) and their
    # count; step and total are then that frame's.
    frame: int | None = None
    frames: int | None = None
    OMIT_DEFAULT: ClassVar[frozenset[str]] = frozenset({"preview", "frame", "frames"})


@dataclass
class Frame(Message):
    """One stylized frame of a clip, sent as soon as it is done, in order."""

    TYPE: ClassVar[str] = "frame"
    job: str = ""
    index: int = 0  # in the request's frames, 0-based
    frames: int = 0
    image: ImageRef | None = None
    losses: dict[str, float] = field(default_factory=dict)
    seed: int = 0
    elapsed_s: float = 0.0  # this frame's
    schedule: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Result(Message):
    TYPE: ClassVar[str] = "result"
    job: str = ""
    image: ImageRef | None = None
    losses: dict[str, float] = field(default_factory=dict)
    seed: int = 0
    elapsed_s: float = 0.0
    weights: str = ""
    # The scales as they ran, coarsest first: {size, width, height, evaluations}.
    schedule: list[dict[str, Any]] = field(default_factory=list)
    # A clip's result: how many frames were done (all of them, or fewer after a stop and
    # keep); the frames went out as `frame` events, so `image` is null.
    frames: int | None = None
    OMIT_DEFAULT: ClassVar[frozenset[str]] = frozenset({"frames"})


@dataclass
class Error(Message):
    TYPE: ClassVar[str] = "error"
    code: str = ""
    message: str = ""
    job: str | None = None


@dataclass
class Cancel(Message):
    TYPE: ClassVar[str] = "cancel"
    job: str = ""
    # Stop a running job and keep what it has: the job ends with a `result` holding the
    # image as it stands (resized to the planned output), not with a `cancelled` error.
    keep: bool = False
    OMIT_DEFAULT: ClassVar[frozenset[str]] = frozenset({"keep"})

    def validate(self) -> None:
        if not self.job:
            raise ImpastoError(BAD_MESSAGE, "cancel needs the job's id in `job`")


@dataclass
class Cancelled(Message):
    TYPE: ClassVar[str] = "cancelled"
    job: str = ""
    was: str = ""  # a CancelledFrom (plain str here, so any later value still decodes)


@dataclass
class StylesList(Message):
    TYPE: ClassVar[str] = "styles.list"


@dataclass
class Styles(Message):
    TYPE: ClassVar[str] = "styles.reply"
    styles: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class StylesAdd(Message):
    TYPE: ClassVar[str] = "styles.add"
    name: str = ""
    image: ImageRef | None = None


@dataclass
class StylesRemove(Message):
    TYPE: ClassVar[str] = "styles.remove"
    name: str = ""


@dataclass
class Done(Message):
    """Plain acknowledgement of a request that has nothing else to say."""

    TYPE: ClassVar[str] = "ok"
    detail: str = ""


MESSAGE_TYPES: dict[str, type[Message]] = {
    cls.TYPE: cls
    for cls in (Ping, Pong, StatusRequest, Status, Stylize, Accepted, Progress, Frame, Result, Error,
                Cancel, Cancelled, StylesList, Styles, StylesAdd, StylesRemove, Done)
}


REQUESTS: frozenset[type[Message]] = frozenset(
    {Ping, StatusRequest, Stylize, Cancel, StylesList, StylesAdd, StylesRemove})


# --- encoding --------------------------------------------------------------------------
def encode(msg: Message, req: str | None = None) -> list[bytes]:
    blobs: list[bytes] = []

    def lower(value: Any) -> Any:
        if isinstance(value, ImageRef):
            blobs.append(bytes(value.data))
            out: dict[str, Any] = {"blob": len(blobs) - 1, "format": value.format}
            if value.width is not None:
                out["width"], out["height"] = value.width, value.height
            return out
        if isinstance(value, StyleRef):
            out = {"weight": value.weight}
            if value.name is not None:
                out["name"] = value.name
            if value.image is not None:
                out["image"] = lower(value.image)
            if value.mask is not None:  # left out when absent: older daemons refuse it
                out["mask"] = lower(value.mask)
            return out
        if isinstance(value, list):
            return [lower(v) for v in value]
        return value

    header: dict[str, Any] = {"v": PROTOCOL_VERSION, "type": msg.TYPE}
    if req is not None:
        header["req"] = req
    for f in dataclasses.fields(msg):
        value = getattr(msg, f.name)
        if f.name in msg.OMIT_DEFAULT and value == f.default:
            continue
        header[f.name] = lower(value)
    # allow_nan=False: NaN and Infinity are not JSON; strict parsers reject them. A
    # message holding one is a bug on this side, raised here rather than sent.
    return [json.dumps(header, separators=(",", ":"), allow_nan=False).encode()] + blobs


def decode(frames: list[bytes]) -> tuple[Message, str | None]:
    """Parse a multipart message. Raises ImpastoError with a code a caller can act on."""
    if not frames:
        raise ImpastoError(BAD_MESSAGE, "empty message")
    total = sum(len(f) for f in frames)
    if total > MAX_MESSAGE_BYTES:
        raise ImpastoError(MESSAGE_TOO_LARGE, f"message of {total} bytes exceeds {MAX_MESSAGE_BYTES}")
    if len(frames[0]) > MAX_HEADER_BYTES:
        raise ImpastoError(MESSAGE_TOO_LARGE, "header frame exceeds 1 MiB")
    try:
        header = json.loads(bytes(frames[0]).decode("utf-8"))
    except RecursionError:
        raise ImpastoError(BAD_MESSAGE, "header frame is nested too deeply") from None
    except (UnicodeDecodeError, ValueError) as e:
        raise ImpastoError(BAD_MESSAGE, f"header frame is not UTF-8 JSON: {e}") from None
    if not isinstance(header, dict):
        raise ImpastoError(BAD_MESSAGE, "header must be a JSON object")
    req = header.get("req")
    if req is not None and not isinstance(req, str):
        raise ImpastoError(BAD_MESSAGE, "req must be a string")
    version = header.get("v")
    # `True == 1` in Python: a boolean is not a version number.
    if type(version) is not int or version != PROTOCOL_VERSION:
        raise ImpastoError(
            BAD_VERSION,
            f"protocol version {version!r} is not supported; this side speaks {PROTOCOL_VERSION}",
        )
    mtype = header.get("type")
    cls = MESSAGE_TYPES.get(mtype) if isinstance(mtype, str) else None
    if cls is None:
        raise ImpastoError(UNKNOWN_TYPE, f"unknown message type {mtype!r}")
    blobs = frames[1:]
    used: set[int] = set()
    kwargs: dict[str, Any] = {}
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name in header:
            kwargs[f.name] = _convert(header[f.name], hints[f.name], f.name, blobs, used)
    extra = set(header) - {f.name for f in dataclasses.fields(cls)} - {"v", "type", "req"}
    # Requests are checked strictly: an unknown field there is a client's mistake. Replies
    # and events may grow fields within a protocol version; a client ignores those.
    if extra and cls in REQUESTS:
        raise ImpastoError(BAD_MESSAGE, f"{mtype}: unknown field(s) {', '.join(sorted(extra))}")
    msg = cls(**kwargs)
    validate = getattr(msg, "validate", None)
    if validate is not None:
        validate()
    return msg, req


def _convert(value: Any, hint: Any, name: str, blobs: list[bytes], used: set[int]) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _convert(value, inner[0], name, blobs, used)
    if hint is ImageRef:
        return _image_ref(value, name, blobs, used)
    if isinstance(hint, type) and issubclass(hint, StrEnum):
        if not isinstance(value, str):
            raise ImpastoError(BAD_MESSAGE, f"{name} must be a string")
        if value not in hint._value2member_map_:
            raise ImpastoError(BAD_OPTIONS, f"{name} must be one of "
                               f"{', '.join(m.value for m in hint)}; got {value!r}")
        return hint(value)
    if hint is StyleRef:
        if not isinstance(value, dict):
            raise ImpastoError(BAD_MESSAGE, f"{name}: a style must be an object")
        unknown = set(value) - {"name", "image", "weight", "mask"}
        if unknown:
            raise ImpastoError(BAD_MESSAGE, f"{name}: unknown style field(s) {sorted(unknown)}")
        ref = StyleRef(
            name=_convert(value.get("name"), str | None, f"{name}.name", blobs, used),
            image=_convert(value.get("image"), ImageRef | None, f"{name}.image", blobs, used),
            weight=_convert(value.get("weight", 1.0), float, f"{name}.weight", blobs, used),
            mask=_convert(value.get("mask"), ImageRef | None, f"{name}.mask", blobs, used),
        )
        if (ref.name is None) == (ref.image is None):
            raise ImpastoError(BAD_MESSAGE, f"{name}: give exactly one of name and image")
        return ref
    if origin is list:
        if not isinstance(value, list):
            raise ImpastoError(BAD_MESSAGE, f"{name} must be a list")
        return [_convert(v, args[0], f"{name}[{i}]", blobs, used) for i, v in enumerate(value)]
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            raise ImpastoError(BAD_MESSAGE, f"{name} must be an object")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ImpastoError(BAD_MESSAGE, f"{name} must be a number")
        return float(value)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ImpastoError(BAD_MESSAGE, f"{name} must be an integer")
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise ImpastoError(BAD_MESSAGE, f"{name} must be true or false")
        return value
    if hint is str:
        if not isinstance(value, str):
            raise ImpastoError(BAD_MESSAGE, f"{name} must be a string")
        return value
    return value


def _image_ref(value: Any, name: str, blobs: list[bytes], used: set[int]) -> ImageRef:
    if not isinstance(value, dict):
        raise ImpastoError(BAD_MESSAGE, f"{name} must be an image object")
    idx = value.get("blob")
    if isinstance(idx, bool) or not isinstance(idx, int) or not 0 <= idx < len(blobs):
        raise ImpastoError(BAD_MESSAGE, f"{name}.blob must index one of the {len(blobs)} attachments")
    if idx in used:
        raise ImpastoError(BAD_MESSAGE, f"{name}.blob {idx} is used twice")
    used.add(idx)
    unknown = set(value) - {"blob", "format", "width", "height"}
    if unknown:
        raise ImpastoError(BAD_MESSAGE, f"{name}: unknown field(s) {', '.join(sorted(map(str, unknown)))}")
    fmt = value.get("format", "png")
    if not isinstance(fmt, str):
        raise ImpastoError(BAD_MESSAGE, f"{name}.format must be a string")
    w, h = value.get("width"), value.get("height")
    for k, v in (("width", w), ("height", h)):
        if v is not None and (isinstance(v, bool) or not isinstance(v, int)):
            raise ImpastoError(BAD_MESSAGE, f"{name}.{k} must be an integer")
    ref = ImageRef(data=bytes(blobs[idx]), format=fmt, width=w, height=h)
    try:
        ref.check()
    except ImpastoError as e:
        raise ImpastoError(e.code, f"{name}: {e.message}") from None  # which of many images
    return ref
