"""The batch bridge: GIMP's plug-in runs this program to reach the daemon.

GIMP's Python has no pyzmq, so the plug-in hands the job to this program: pixels in a
raw file (8-bit RGBA, or float32 RGB for full precision), the job in a JSON file; this
program talks to the daemon (starting one if allowed) and reports on stdout, one event
per line in the typed stream of `impasto.events` (status, accepted, progress, preview,
done; error with exit status 1), which the plug-in reads with the same module.

An animation (the request's `clip`: its frames' raw files, all of one size) goes as a
clip, in requests that each continue the one before (as `impasto.clipjobs.send_clip`
sends them; that module needs Pillow, which the bridge must do without); each frame's
result is written to its own file as it is done and announced by a `frame` event.

On stdin the plug-in may write `stop` (end the job and keep the image as it stands) or
`cancel`; if the plug-in goes away (stdin closes), the job is cancelled. Runs as
`python -I -m impasto.gimp.bridge` (isolated: nothing in GIMP's current folder or
environment can stand in for impasto's modules).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from impasto import events
from impasto.client import Client
from impasto.errors import BAD_OPTIONS, UNAVAILABLE, DaemonUnavailable, ImpastoError
from impasto.fsio import write_atomic
from impasto.portable.pipes import PipeReader
from impasto.portable.process import detached, windowless
from impasto.protocol import (
    MAX_CLIP_FRAMES,
    MAX_MESSAGE_BYTES,
    MAX_REQUEST_PIXELS,
    DaemonState,
    Frame,
    ImageRef,
    OutputFormat,
    Priority,
    Progress,
    Stage,
    StyleRef,
    Styles,
    StylesList,
    Stylize,
)


def emit(event: events.Event) -> None:
    sys.stdout.write(event.to_line() + "\n")
    sys.stdout.flush()


class Commands:
    """What the plug-in says on stdin: `stop`, `cancel`, or nothing; a closed stdin
    (the plug-in went away) is a cancel.

    A `stop` that comes before the first optimisation step is held until that step:
    before it there is nothing of the style to keep, and the daemon would hand back the
    unchanged start image or nothing (a silent cancel). So "Stop and keep" always keeps
    a picture with one step of style, and the done event says so."""

    def __init__(self, unit: str = "step", stdin: PipeReader | None = None) -> None:
        self.stdin = stdin if stdin is not None else _stdin()
        self.stop = False
        self.cancel = False
        self.stepped = False  # the daemon has reported an optimisation step (a frame)
        self.stop_early = False  # stop asked for before the first step
        # A clip keeps whole frames only (the one in progress is dropped): a stop waits
        # for its first frame, as a still's waits for its first step.
        self.unit = unit

    def poll(self) -> None:
        # A thread reads stdin (impasto.portable.pipes): Windows' select refuses pipes.
        while not self.cancel and self.stdin is not None:
            data = self.stdin.read()
            if data is None:
                return
            if not data or b"cancel" in data:
                self.cancel = True
            elif b"stop" in data:
                self.stop = True

    def should_cancel(self) -> bool:
        self.poll()
        return self.cancel

    def should_finish(self) -> bool:
        self.poll()
        if self.stop and not self.stepped and not self.stop_early:
            self.stop_early = True
            emit(events.Status(f"stopping after the first {self.unit}: before it there is "
                               "nothing to keep"))
        return self.stop and self.stepped


_STDIN: list[PipeReader | None] = []


def _stdin() -> PipeReader | None:
    """The one reader of this process's stdin (None without one: pythonw, a closed fd)."""
    if not _STDIN:
        try:
            fd = sys.stdin.fileno() if sys.stdin is not None else -1
        except (OSError, ValueError):
            fd = -1
        _STDIN.append(PipeReader(fd, chunk=256, name="impasto-bridge-stdin") if fd >= 0
                      else None)
    return _STDIN[0]


def ensure_daemon(client: Client, autostart: dict[str, Any] | None) -> None:
    """Ping; if nobody answers and autostart is configured, start a daemon and wait."""
    emit(events.Status(f"connecting to {client.address}"))
    try:
        client.ping(timeout=min(client.timeout, 3.0))
        return
    except DaemonUnavailable:
        if not autostart or not autostart.get("command"):
            raise
    command = [str(c) for c in autostart["command"]]
    # No console window for it, none to close under it (Windows: pythonw.exe).
    command[0] = windowless(command[0])
    idle = autostart.get("idle_exit_s")
    if idle and "--idle-exit" not in command:  # configs written before the flag existed
        command += ["--idle-exit", f"{float(idle):g}"]
    log_path = Path(autostart.get("log") or os.devnull)
    if log_path != Path(os.devnull):
        log_path.parent.mkdir(parents=True, exist_ok=True)
    emit(events.Status("starting the impasto daemon (loading model)"
         + (f"; it stops by itself after {float(idle):g} s without work" if idle else "")))
    start = max(0, _size(log_path))  # earlier runs' lines are no news of this one
    with open(log_path, "ab") as log:
        try:
            proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                    **detached())  # outlives GIMP's plug-in
        except OSError as e:
            raise ImpastoError(UNAVAILABLE, f"could not start the daemon with {' '.join(command)}:"
                               f" {e.strerror or e}") from None
    # The first start may download VGG19's weights (548 MB) or a torch kernel cache:
    # minutes on a slow line. So the wait follows the daemon's progress (its log grows
    # as the download's progress bar moves; the bar's latest state is shown) and gives up
    # only after `wait_s` seconds with no progress at all, not after a fixed total.
    stall_s = float(autostart.get("wait_s", 300))
    last_size, last_change, said = -1, time.monotonic(), ""
    while True:
        if proc.poll() is not None:
            tail = _tail(log_path)
            raise ImpastoError(UNAVAILABLE, f"the daemon started with {' '.join(command)} exited "
                               f"({proc.returncode}){': ' + tail if tail else ''}")
        try:
            st = client.status()
            if st.state == DaemonState.READY:
                emit(events.Status("model loaded"))
                return
        except DaemonUnavailable:
            pass
        size = _size(log_path)
        if size != last_size:
            last_size, last_change = size, time.monotonic()
        note = _loading_note(log_path, start)
        text = "loading model" + (f": {note}" if note else "")
        if text != said:
            emit(events.Status(text))
            said = text
        if time.monotonic() - last_change > stall_s:
            raise ImpastoError(UNAVAILABLE, f"the daemon showed no progress for {stall_s:g} s "
                               f"while loading the model; see {log_path}")
        time.sleep(0.5)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return -1


def _loading_note(path: Path, start: int = 0) -> str:
    """The newest line of the daemon's log while it loads: a download's progress bar
    redraws itself with carriage returns, so its latest state is the last piece."""
    try:
        with open(path, "rb") as f:
            f.seek(max(start, f.seek(0, os.SEEK_END) - 4096))
            tail = f.read().decode("utf-8", "replace")
    except OSError:
        return ""
    pieces = [p.strip() for p in tail.replace("\r", "\n").split("\n") if p.strip()]
    return pieces[-1][-160:] if pieces else ""


def _tail(path: Path, lines: int = 12) -> str:
    """The end of the daemon's log: enough lines that the fix it names (`impasto weights
    fetch`, say) comes through whole."""
    try:
        return " | ".join(path.read_text(errors="replace").strip().splitlines()[-lines:])[-1500:]
    except OSError:
        return ""


def whole(v: Any, what: str) -> int:
    """A positive whole number from the request (JSON also gives floats, strings, null)."""
    if (isinstance(v, bool) or not isinstance(v, (int, float))
            or (isinstance(v, float) and not v.is_integer()) or v < 1):
        raise ImpastoError(BAD_OPTIONS, f"{what} must be a positive whole number, not {v!r}")
    return int(v)


def number(v: Any, what: str, low: float, high: float) -> float:
    """A finite number in [low, high] from the request."""
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not low <= v <= high:
        raise ImpastoError(BAD_OPTIONS, f"{what} must be a number from {low:g} to {high:g}, "
                           f"not {v!r}"[:300])
    return float(v)


def section(request: dict[str, Any], key: str) -> dict[str, Any]:
    v = request.get(key)
    if not isinstance(v, dict):
        raise ImpastoError(BAD_OPTIONS, f"the request's {key!r} must be an object, not {v!r}"[:300])
    return v


def mask_ref(spec: dict[str, Any] | None) -> ImageRef | None:
    """A style's area from the plug-in: raw 8-bit grey (GIMP's channel, selection or layer
    mask over the content box), sent as rgba8 with the grey in R, G and B: the protocol's
    raw images are RGB(A), and the bridge has no image library to encode a PNG."""
    if not spec:
        return None
    w, h = whole(spec.get("width"), "the area's width"), whole(spec.get("height"), "the area's height")
    data = Path(spec["raw"]).read_bytes()
    if len(data) != w * h:
        raise ImpastoError(BAD_OPTIONS, f"the area file holds {len(data)} bytes for {w}x{h}")
    rgba = bytearray(4 * w * h)
    for c in range(3):
        rgba[c::4] = data
    rgba[3::4] = b"\xff" * (w * h)
    return ImageRef(bytes(rgba), "rgba8", w, h)


NO_STYLE = "no style given: a library name, an image file or a layer"


def style_ref(spec: dict[str, Any]) -> StyleRef:
    weight = number(spec.get("weight", 1.0), "a style's weight", 0.0, 1e6)
    mask = mask_ref(spec.get("mask"))
    if spec.get("raw"):
        data = Path(spec["raw"]).read_bytes()
        return StyleRef(image=ImageRef(data, "rgba8", whole(spec.get("width"), "the style's width"),
                                       whole(spec.get("height"), "the style's height")),
                        weight=weight, mask=mask)
    if spec.get("path"):
        p = Path(spec["path"]).expanduser()
        try:
            return StyleRef(image=ImageRef(p.read_bytes(), "encoded"), weight=weight, mask=mask)
        except OSError as e:
            raise ImpastoError(BAD_OPTIONS, f"cannot read style image {p}: {e.strerror}") from None
    if spec.get("name"):
        return StyleRef(name=str(spec["name"]), weight=weight, mask=mask)
    raise ImpastoError(BAD_OPTIONS, NO_STYLE)


def styles_of(request: dict[str, Any]) -> list[StyleRef]:
    specs = request.get("styles")
    if not isinstance(specs, list) or not all(isinstance(x, dict) for x in specs):
        raise ImpastoError(BAD_OPTIONS, "the request's 'styles' must be a list of objects")
    if not specs:
        raise ImpastoError(BAD_OPTIONS, NO_STYLE)
    return [style_ref(x) for x in specs]


@dataclass
class Common:
    """What a still and an animation request share, checked before anything is sent."""

    address: str | None
    timeout: float
    options: dict[str, Any]
    preview: dict[str, Any] | None  # the daemon's preview request
    preview_path: Path | None


def common(request: dict[str, Any]) -> Common:
    address = request.get("address")
    if address is not None and not isinstance(address, str):
        raise ImpastoError(BAD_OPTIONS, "the request's 'address' must be a string")
    if request.get("autostart") is not None and not isinstance(request["autostart"], dict):
        raise ImpastoError(BAD_OPTIONS, "the request's 'autostart' must be an object")
    timeout = number(request.get("timeout", 5.0), "the request's timeout", 0.1, 3600.0)
    options = request.get("options", {})
    if not isinstance(options, dict):
        raise ImpastoError(BAD_OPTIONS, "the request's 'options' must be an object")
    seed = options.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)
                             or not 0 <= seed < 2**63):
        raise ImpastoError(BAD_OPTIONS, f"the seed must be a whole number from 0, not {seed!r}"[:300])
    spec = request.get("preview")
    if spec is None:
        return Common(address, timeout, dict(options), None, None)
    if not isinstance(spec, dict) or not isinstance(spec.get("path"), str) or not spec["path"]:
        raise ImpastoError(BAD_OPTIONS, "the request's 'preview' must be an object with a path")
    preview = {"max_side": whole(spec.get("max_side", 256), "the preview's max_side"),
               "interval_s": number(spec.get("interval_s", 1.0), "the preview's interval_s",
                                    0.0, 3600.0),
               "format": "rgba8"}
    return Common(address, timeout, dict(options), preview, Path(spec["path"]))


def run(request: dict[str, Any]) -> int:
    if not isinstance(request, dict):
        raise ImpastoError(BAD_OPTIONS, "the request must be a JSON object")
    if request.get("clip") is not None:  # an empty clip is a mistake, not a still
        return run_clip(request)
    content = section(request, "content")
    c = common(request)
    if not isinstance(request.get("output"), str) or not request["output"]:
        raise ImpastoError(BAD_OPTIONS, "the request's 'output' must be a file path")
    out = Path(request["output"])
    # rgb32f: float RGB in the image's own colour space, no alpha (the plug-in keeps the
    # layer's alpha and writes it back unchanged); rgba8 for older plug-ins.
    fmt = str(content.get("format", "rgba8"))
    if fmt not in RAW_BYTES:
        raise ImpastoError(BAD_OPTIONS, f"content in {fmt!r}; the bridge takes rgb32f or rgba8")
    w = whole(content.get("width"), "the content's width")
    h = whole(content.get("height"), "the content's height")
    data = Path(str(content.get("path"))).read_bytes()
    if len(data) != w * h * RAW_BYTES[fmt]:
        raise ImpastoError(BAD_OPTIONS, f"the content file holds {len(data)} bytes for {w}x{h} {fmt}")
    ref = ImageRef(data, fmt, w, h)
    output = OutputFormat.RGB32F if fmt == "rgb32f" else OutputFormat.RGBA8
    preview_path = c.preview_path
    job = Stylize(content=ref, styles=styles_of(request),
                  options=c.options, priority=Priority.INTERACTIVE, output=output,
                  client=str(request.get("client", "gimp")), preview=c.preview)
    commands = Commands()
    with Client(c.address, timeout=c.timeout) as client:
        ensure_daemon(client, request.get("autostart"))

        def progress(p: Progress) -> None:
            if p.stage == Stage.PREPARE:
                emit(events.Status("preparing style"))
                return
            commands.stepped = commands.stepped or p.step > 0
            emit(events.Progress(step=p.step, total=p.total, scale=p.scale, scales=p.scales))
            if p.preview is not None and preview_path is not None:
                write_atomic(preview_path, p.preview.data, sync=False)
                emit(events.Preview(path=str(preview_path), width=p.preview.width,
                                    height=p.preview.height, step=p.step))

        result = client.stylize(
            job, on_accepted=lambda a: emit(events.Accepted(job=a.job, position=a.position)),
            on_progress=progress, should_cancel=commands.should_cancel,
            should_finish=commands.should_finish)
    assert result.image is not None
    write_atomic(out, result.image.data, sync=False)
    notes = []
    if commands.stop and commands.stop_early:
        notes.append("Stopped after the first step, the earliest point with something to "
                     "keep: the picture has only a trace of the style.")
    notes += weights_note(result.weights)
    emit(events.Done(output=str(out), format=result.image.format, width=result.image.width,
                     height=result.image.height, seed=result.seed, weights=result.weights,
                     stopped=commands.stop, message=" ".join(notes) or None))
    return 0


def weights_note(weights: str) -> list[str]:
    if str(weights).startswith("random"):
        return ["The daemon runs RANDOM weights (--weights random): this is a test "
                "pattern, not art. Give it real weights: `impasto weights fetch`, or "
                "`impasto gimp install --weights FILE`."]
    return []


RAW_BYTES = {"rgb32f": 12, "rgba8": 4}


def clip_chunk(width: int, height: int, fmt: str, styles: list[StyleRef], limit: int) -> int:
    """Frames one request carries, within the request's pixel and byte budgets. Raw
    frames have a known size; a style picture's pixels are unknown without decoding it
    (the bridge has no image library), so half the pixel budget is left to the styles."""
    px = width * height
    raw = sum(r.image.width * r.image.height for r in styles
              if r.image is not None and r.image.width) + sum(
        r.mask.width * r.mask.height for r in styles if r.mask is not None and r.mask.width)
    room = max(px, MAX_REQUEST_PIXELS // 2 - raw)
    by_bytes = (MAX_MESSAGE_BYTES // 2) // max(1, px * RAW_BYTES.get(fmt, 12))
    return max(1, min(limit, MAX_CLIP_FRAMES, room // max(1, px), by_bytes))


def run_clip(request: dict[str, Any]) -> int:
    """An animation: `clip` {frames: [raw file, ...], width, height, format, output_dir,
    chunk}. Frames go in order, in requests of `chunk` frames at most, each continuing
    the one before (its last source frame and stylized frame) with the first request's
    seed; each stylized frame is written to output_dir as it comes (frame-0001.rgbf, ...)
    and announced by a `frame` event. Stop and keep ends the clip with the frames done;
    done's `frames` says how many."""
    clip = section(request, "clip")
    frames = clip.get("frames")
    if not isinstance(frames, list) or not frames:
        raise ImpastoError(BAD_OPTIONS, "an animation needs a list of at least one frame file")
    w, h = whole(clip.get("width"), "the frames' width"), whole(clip.get("height"), "the frames' height")
    fmt = str(clip.get("format", "rgb32f"))
    if fmt not in RAW_BYTES:
        raise ImpastoError(BAD_OPTIONS, f"frames in {fmt!r}; the bridge takes rgb32f or rgba8")
    paths = [Path(str(p)) for p in frames]
    # Every frame checked before the first is sent: a bad last frame found only after
    # the others were stylized would cost all of that work.
    for i, p in enumerate(paths, 1):
        size = p.stat().st_size
        if size != w * h * RAW_BYTES[fmt]:
            raise ImpastoError(BAD_OPTIONS, f"frame {i} ({p.name}) holds {size} bytes for "
                               f"{w}x{h} {fmt}")
    out_dir = Path(clip["output_dir"])
    out_dir.mkdir(parents=True, exist_ok=True)
    output = OutputFormat.RGB32F if fmt == "rgb32f" else OutputFormat.RGBA8
    styles = styles_of(request)
    c = common(request)
    options = c.options
    # As many frames a request as the budgets allow: a continuation holds to the float
    # frame sent back, which after a resize to the frames' size is within a few levels of
    # the 8-bit one the daemon holds to within a request (exact when no resize).
    per_request = clip_chunk(w, h, fmt, styles, whole(clip.get("chunk", MAX_CLIP_FRAMES),
                                                      "the clip's chunk"))
    preview_path = c.preview_path
    n = len(paths)
    commands = Commands(unit="frame")
    done, seed, weights, stopped = 0, int(options.get("seed") or 0), "", False
    previous: tuple[ImageRef, ImageRef] | None = None
    size = [w, h]  # the results' (the daemon may give another size than the frames')

    def frame_ref(path: Path) -> ImageRef:
        data = path.read_bytes()
        if len(data) != w * h * RAW_BYTES[fmt]:
            raise ImpastoError(BAD_OPTIONS, f"frame file {path.name} holds {len(data)} bytes "
                               f"for {w}x{h} {fmt}")
        return ImageRef(data, fmt, w, h)

    with Client(c.address, timeout=c.timeout) as client:
        ensure_daemon(client, request.get("autostart"))
        while done < n:
            base = done
            refs = [frame_ref(p) for p in paths[base:base + per_request]]
            last: list[tuple[ImageRef, ImageRef] | None] = [None]

            def progress(p: Progress, base: int = base) -> None:
                if p.stage == Stage.PREPARE:
                    emit(events.Status("preparing style"))
                    return
                emit(events.Progress(step=p.step, total=p.total, scale=p.scale, scales=p.scales,
                                     frame=base + (p.frame or 0), frames=n))
                if p.preview is not None and preview_path is not None:
                    write_atomic(preview_path, p.preview.data, sync=False)
                    emit(events.Preview(path=str(preview_path), width=p.preview.width,
                                        height=p.preview.height, step=p.step))

            def frame_done(ev: Frame, base: int = base, refs: list[ImageRef] = refs,
                           last: list[tuple[ImageRef, ImageRef] | None] = last) -> None:
                assert ev.image is not None
                i = base + ev.index
                path = out_dir / f"frame-{i + 1:04d}.{'rgbf' if fmt == 'rgb32f' else 'rgba'}"
                write_atomic(path, ev.image.data, sync=False)
                commands.stepped = True
                last[0] = (refs[ev.index], ev.image)
                size[:] = [ev.image.width, ev.image.height]
                emit(events.FrameDone(frame=i, frames=n, elapsed_s=ev.elapsed_s, path=str(path),
                                      width=ev.image.width, height=ev.image.height))

            job = Stylize(frames=refs, styles=styles, options=options,
                          priority=Priority.INTERACTIVE, output=output,
                          client=str(request.get("client", "gimp")), preview=c.preview,
                          previous_frame=previous[0] if previous else None,
                          previous_result=previous[1] if previous else None)
            result = client.stylize(
                job, on_accepted=lambda a: emit(events.Accepted(job=a.job, position=a.position)),
                on_progress=progress, should_cancel=commands.should_cancel,
                should_finish=commands.should_finish, on_frame=frame_done)
            got = result.frames or 0
            done += got
            seed, weights = result.seed, result.weights
            options["seed"] = seed  # one seed from the first frame to the last
            if got < len(refs) or (done < n and commands.should_finish()):
                stopped = True
                break
            previous = last[0]
    notes = []
    if stopped:
        notes.append(f"Stopped: {done} of {n} frames are done and kept."
                     + (" (A stop waits for the first frame: before it there is nothing to "
                        "keep.)" if commands.stop_early else ""))
    notes += weights_note(weights)
    emit(events.Done(output=str(out_dir), format=output.value, width=size[0], height=size[1], seed=seed,
                     weights=weights, stopped=stopped, frames=done,
                     message=" ".join(notes) or None))
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        if len(argv) == 2 and argv[0] == "run":
            return run(json.loads(Path(argv[1]).read_text()))
        if argv and argv[0] == "styles":  # the library's names, for the dialog's list
            with Client(argv[1] if len(argv) > 1 and argv[1] else None, timeout=3.0) as c:
                reply = c.call(StylesList())
            assert isinstance(reply, Styles)
            emit(events.StyleNames([str(s.get("name", "")) for s in reply.styles]))
            return 0
        if argv and argv[0] == "ping":
            with Client(argv[1] if len(argv) > 1 else None, timeout=3.0) as c:
                pong = c.ping()
            emit(events.Pong(version=pong.version, protocol=pong.protocol, address=c.address))
            return 0
        emit(events.Error("usage", "usage: bridge run REQUEST.json | bridge ping [ADDRESS] | bridge styles [ADDRESS]"))
        return 2
    except DaemonUnavailable as e:
        emit(events.Error("unavailable", str(e)))
    except ImpastoError as e:
        emit(events.Error(e.code, e.message))
    except (OSError, ValueError, KeyError) as e:
        emit(events.Error("bridge", f"{type(e).__name__}: {e}"))
    except (TypeError, AttributeError) as e:  # a field of the wrong type: one line, no trace
        emit(events.Error("bridge", f"the request is malformed ({type(e).__name__}: {e})"))
    except Exception as e:  # noqa: BLE001 - the plug-in reads one error line, whatever it is
        emit(events.Error("bridge", f"internal error: {type(e).__name__}: {e}"[:2000]))
    return 1


if __name__ == "__main__":
    sys.exit(main())
