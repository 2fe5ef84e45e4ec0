"""The batch bridge: GIMP's plug-in runs this program to reach the daemon.

GIMP's Python has no pyzmq, so the plug-in hands the job to this program: pixels in a
raw file (8-bit RGBA, or float32 RGB for full precision), the job in a JSON file (the
typed request of `impasto.bridgerequest`, which the plug-in writes with its copy of that
module); this program talks to the daemon (starting one if allowed) and reports on
stdout, one event per line in the typed stream of `impasto.events` (status, accepted,
progress, preview, done; error with exit status 1), which the plug-in reads with the
same module. The daemon's messages become those lines in `impasto.eventmap`, as the
CLI's do.

An animation (the request's `clip`: its frames' raw files, all of one size) goes as a
clip, in requests that each continue the one before (`impasto.clipsend`, which the CLI
and the watch folders use through `impasto.clipjobs`; the bridge sends its raw frames
as they are, without Pillow or numpy, which would only slow its start); each frame's
result is written to its own file as it is done and announced by a `frame` event.

On stdin the plug-in may write `stop` (end the job and keep the image as it stands) or
`cancel`; if the plug-in goes away (stdin closes), the job is cancelled. Runs as
`python -I -m impasto.gimp.bridge` (isolated: nothing in GIMP's current folder or
environment can stand in for impasto's modules).
"""

from __future__ import annotations

import math
import os
import stat
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from impasto import bridgerequest, clipsend, eventmap, events
from impasto.bridgerequest import Area, ClipRequest, Request, RequestError, Style
from impasto.client import Client
from impasto.errors import (
    BAD_OPTIONS,
    IMAGE_TOO_LARGE,
    UNAVAILABLE,
    DaemonUnavailable,
    ImpastoError,
)
from impasto.fsio import unwritable, write_atomic
from impasto.portable.pipes import PipeReader
from impasto.portable.process import detached, windowless
from impasto.protocol import (
    MAX_CLIP_FRAMES,
    MAX_MESSAGE_BYTES,
    MAX_PIXELS,
    RAW_FORMATS,
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
    # Seconds without progress before giving up: NaN would never compare greater, a
    # wait for ever on a daemon that never answers.
    stall_s = autostart.get("wait_s", 300)
    if isinstance(stall_s, bool) or not isinstance(stall_s, (int, float)) or not 0 < stall_s < math.inf:
        raise ImpastoError(BAD_OPTIONS, f"the bridge config's autostart wait_s must be a number "
                           f"of seconds, not {stall_s!r}")
    command = autostart["command"]
    if not isinstance(command, list) or not all(isinstance(c, str) and c for c in command):
        raise ImpastoError(BAD_OPTIONS, f"the bridge config's autostart command must be a list "
                           f"of words, not {command!r}"[:300])
    idle = autostart.get("idle_exit_s")
    if idle is not None and (isinstance(idle, bool) or not isinstance(idle, (int, float))
                             or not 0 <= idle < math.inf):
        raise ImpastoError(BAD_OPTIONS, f"the bridge config's autostart idle_exit_s must be a "
                           f"number of seconds, not {idle!r}"[:300])
    if not isinstance(autostart.get("log") or "", str):
        raise ImpastoError(BAD_OPTIONS, "the bridge config's autostart log must be a file path")
    # No console window for it, none to close under it (Windows: pythonw.exe).
    command = [windowless(command[0]), *command[1:]]
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


def read_request(path: Path) -> Request:
    """The plug-in's request file, typed (impasto.bridgerequest: the plug-in writes it
    with its copy of that module); a malformed one is one bad_options error."""
    file_size(path, "the request file")
    try:
        return bridgerequest.parse(path.read_bytes())
    except RequestError as e:
        raise ImpastoError(BAD_OPTIONS, str(e)) from None


def file_size(path: str | Path, what: str) -> int:
    """The size of a file the request names, before it is read: only a regular file is
    read (a pipe would wait for a writer for ever, a device such as /dev/zero never end,
    a folder fails), and a missing one is named."""
    p = Path(path)
    try:
        st = p.stat()
    except OSError as e:
        raise ImpastoError(BAD_OPTIONS, f"cannot read {what} {p}: {e.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        kind = "a folder" if stat.S_ISDIR(st.st_mode) else "a pipe or a device"
        raise ImpastoError(BAD_OPTIONS, f"{what} {p} is {kind}, not a file")
    return st.st_size


def check_sendable(width: int, height: int, fmt: str) -> None:
    """A layer the daemon could never take, said in GIMP's words before it is read: the
    protocol's per-image pixels, and its message size (half of it, leaving the rest to
    the styles), at the format the plug-in sends."""
    most = min(MAX_PIXELS, (MAX_MESSAGE_BYTES // 2) // RAW_FORMATS[fmt])
    if width * height > most:
        raise ImpastoError(IMAGE_TOO_LARGE, (
            f"the layer is {width}x{height} ({width * height / 1e6:.1f} megapixels); impasto "
            f"takes at most {most / 1e6:.1f} megapixels at a time. Select a part of it (only "
            "the selection is sent), or scale the image down (Image > Scale Image)."))


def raw_ref(path: str | Path, fmt: str, width: int, height: int, what: str,
            whole_layer: bool = False) -> ImageRef:
    """A raw image file, its size checked against what the request says it holds (and,
    for the layer, against what the daemon takes) before it is read."""
    size = file_size(path, what)
    if size != width * height * RAW_FORMATS[fmt]:
        raise ImpastoError(BAD_OPTIONS, f"{what} holds {size} bytes for {width}x{height} {fmt}")
    if whole_layer:
        check_sendable(width, height, fmt)
    data = Path(path).read_bytes()
    if len(data) != width * height * RAW_FORMATS[fmt]:
        raise ImpastoError(BAD_OPTIONS, f"{what} holds {len(data)} bytes for {width}x{height} {fmt}")
    return ImageRef(data, fmt, width, height)


def mask_ref(area: Area | None) -> ImageRef | None:
    """A style's area from the plug-in: raw 8-bit grey (GIMP's channel, selection or layer
    mask over the content box), sent as rgba8 with the grey in R, G and B: the protocol's
    raw images are RGB(A), and the bridge has no image library to encode a PNG."""
    if area is None:
        return None
    w, h = area.width, area.height
    size = file_size(area.raw, "the area file")
    if size != w * h:
        raise ImpastoError(BAD_OPTIONS, f"the area file holds {size} bytes for {w}x{h}")
    data = Path(area.raw).read_bytes()
    if len(data) != w * h:
        raise ImpastoError(BAD_OPTIONS, f"the area file holds {len(data)} bytes for {w}x{h}")
    rgba = bytearray(4 * w * h)
    for c in range(3):
        rgba[c::4] = data
    rgba[3::4] = b"\xff" * (w * h)
    return ImageRef(bytes(rgba), "rgba8", w, h)


def style_ref(style: Style) -> StyleRef:
    mask = mask_ref(style.mask)
    if style.raw is not None:
        assert style.width is not None and style.height is not None
        return StyleRef(image=raw_ref(style.raw, "rgba8", style.width, style.height,
                                      "the style layer's file"), weight=style.weight, mask=mask)
    if style.path is not None:
        p = Path(style.path).expanduser()
        if file_size(p, "style image") > MAX_MESSAGE_BYTES:
            raise ImpastoError(BAD_OPTIONS, f"style image {p} is larger than a request may be "
                               f"({MAX_MESSAGE_BYTES // 2**20} MB)")
        try:
            return StyleRef(image=ImageRef(p.read_bytes(), "encoded"), weight=style.weight,
                            mask=mask)
        except OSError as e:
            raise ImpastoError(BAD_OPTIONS, f"cannot read style image {p}: {e.strerror}") from None
    return StyleRef(name=style.name, weight=style.weight, mask=mask)


def daemon_preview(request: Request) -> dict[str, Any] | None:
    """The daemon's preview request: raw 8-bit RGBA, which the plug-in draws as it is."""
    p = request.preview
    return None if p is None else {"max_side": p.max_side, "interval_s": p.interval_s,
                                   "format": "rgba8"}


def reporter(commands: Commands, preview_path: str | None, frames: int | None = None
             ) -> Callable[[int | None, Progress], None]:
    """What the bridge says of each progress message: `preparing style` while the
    daemon prepares, then progress lines (in a clip of `frames`, the frame worked on
    numbered in the whole clip) and each preview, written raw where the plug-in reads it."""

    def report(frame: int | None, p: Progress) -> None:
        if p.stage == Stage.PREPARE:
            emit(events.Status("preparing style"))
            return
        if commands.unit == "step":  # a clip's unit is a whole frame (frame_done)
            commands.stepped = commands.stepped or p.step > 0
        emit(eventmap.progress(p, frame=frame, frames=frames))
        shown = eventmap.preview(p, preview_path)
        if shown is not None:
            assert p.preview is not None
            write_atomic(Path(shown.path), p.preview.data, sync=False)
            emit(shown)

    return report


def writable(path: str, what: str, folder: bool = False) -> None:
    """Refused before the job is sent: a result or preview with nowhere to go would
    otherwise fail only once the daemon had done the work."""
    if not folder and path.endswith(("/", os.sep)):  # Path() would drop the mark
        raise ImpastoError(BAD_OPTIONS, f"{what}: cannot write {path}: it names a folder")
    why = unwritable(Path(path), folder)
    if why is not None:
        raise ImpastoError(BAD_OPTIONS, f"{what}: {why}")


def run(request: Request) -> int:
    if request.preview is not None:
        writable(request.preview.path, "the preview file")
    if isinstance(request, ClipRequest):
        writable(request.clip.output_dir, "the frames' folder", folder=True)
        return run_clip(request)
    writable(request.output, "the result file")
    c = request.content
    # rgb32f: float RGB in the image's own colour space, no alpha (the plug-in keeps the
    # layer's alpha and writes it back unchanged); rgba8 for older plug-ins.
    ref = raw_ref(c.path, c.format, c.width, c.height, "the content file", whole_layer=True)
    out = Path(request.output)
    job = Stylize(content=ref, styles=[style_ref(s) for s in request.styles],
                  options=dict(request.options), priority=Priority.INTERACTIVE,
                  output=OutputFormat(c.format), client=request.client,
                  preview=daemon_preview(request))
    commands = Commands()
    report = reporter(commands, None if request.preview is None else request.preview.path)
    with Client(request.address, timeout=request.timeout) as client:
        ensure_daemon(client, request.autostart)
        result = client.stylize(
            job, on_accepted=lambda a: emit(eventmap.accepted(a)),
            on_progress=lambda p: report(None, p), should_cancel=commands.should_cancel,
            should_finish=commands.should_finish)
    assert result.image is not None
    write_atomic(out, result.image.data, sync=False)
    notes = []
    if commands.stop and commands.stop_early:
        notes.append("Stopped after the first step, the earliest point with something to "
                     "keep: the picture has only a trace of the style.")
    notes += weights_note(result.weights)
    emit(eventmap.done(result, output=out, raw=True, stopped=commands.stop,
                       message=" ".join(notes) or None))
    return 0


def weights_note(weights: str) -> list[str]:
    if events.random_weights(weights):
        return ["The daemon runs RANDOM weights (--weights random): this is a test "
                "pattern, not art. Give it real weights: `impasto weights fetch`, or "
                "`impasto gimp install --weights FILE`."]
    return []


def run_clip(request: ClipRequest) -> int:
    """An animation: its frames go in order (clipsend), in requests of `chunk` frames at
    most, each continuing the one before (its last source frame and stylized frame) with
    the first request's seed; each stylized frame is written to output_dir as it comes
    (frame-0001.rgbf, ...) and announced by a `frame` event. Stop and keep ends the clip
    with the frames done; done's `frames` says how many."""
    clip = request.clip
    w, h, fmt = clip.width, clip.height, clip.format
    paths = [Path(p) for p in clip.frames]
    # Every frame checked before the first is sent: a bad last frame found only after
    # the others were stylized would cost all of that work.
    for i, p in enumerate(paths, 1):
        size = file_size(p, f"frame {i}")
        if size != w * h * RAW_FORMATS[fmt]:
            raise ImpastoError(BAD_OPTIONS, f"frame {i} ({p.name}) holds {size} bytes for "
                               f"{w}x{h} {fmt}")
    out_dir = Path(clip.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    styles = [style_ref(s) for s in request.styles]
    n = len(paths)
    commands = Commands(unit="frame")
    report = reporter(commands, None if request.preview is None else request.preview.path, n)
    size = (w, h)  # the results' (the daemon may give another size than the frames')

    def frame_done(i: int, ev: Frame) -> None:
        nonlocal size
        assert ev.image is not None
        path = out_dir / f"frame-{i + 1:04d}.{'rgbf' if fmt == 'rgb32f' else 'rgba'}"
        write_atomic(path, ev.image.data, sync=False)
        commands.stepped = True
        size = (ev.image.width or w, ev.image.height or h)
        emit(eventmap.frame_done(ev, index=i, frames=n, path=path))

    # As many frames a request as the budgets allow: a continuation holds to the float
    # frame sent back, which after a resize to the frames' size is within a few levels of
    # the 8-bit one the daemon holds to within a request (exact when no resize).
    with Client(request.address, timeout=request.timeout) as client:
        ensure_daemon(client, request.autostart)
        outcome = clipsend.send_clip(
            client, (raw_ref(p, fmt, w, h, f"frame file {p.name}") for p in paths), styles,
            request.options, frame_done, chunk=clip.chunk or MAX_CLIP_FRAMES,
            priority=Priority.INTERACTIVE, client_name=request.client, output=fmt,
            preview=daemon_preview(request), on_accepted=lambda a: emit(eventmap.accepted(a)),
            on_progress=report, should_cancel=commands.should_cancel,
            should_finish=commands.should_finish)
    notes = []
    if outcome.stopped:
        notes.append(f"Stopped: {outcome.frames} of {n} frames are done and kept."
                     + (" (A stop waits for the first frame: before it there is nothing to "
                        "keep.)" if commands.stop_early else ""))
    notes += weights_note(outcome.weights)
    emit(eventmap.clip_done(outcome, output=out_dir, size=size, format=fmt,
                            message=" ".join(notes) or None))
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        if len(argv) == 2 and argv[0] == "run":
            return run(read_request(Path(argv[1])))
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
