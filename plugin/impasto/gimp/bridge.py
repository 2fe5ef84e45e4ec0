"""The batch bridge: GIMP's plug-in runs this program to reach the daemon.

GIMP's Python has no pyzmq, so the plug-in hands the job to this program: pixels in a
raw file (8-bit RGBA, or float32 RGB for full precision), the job in a JSON file; this
program talks to the daemon (starting one if allowed) and reports on stdout, one JSON
object per line:

  {"event": "status", "text": "..."}            what is happening (connecting, loading model)
  {"event": "accepted", "job": "j3", "position": 0}
  {"event": "progress", "step": 5, "total": 100, "scale": 0, "scales": 3}
  {"event": "preview", "path": "...", "width": w, "height": h, "step": 5}   raw 8-bit RGBA,
                                                 rewritten atomically (when asked for)
  {"event": "done", "output": "...", "format": "rgb32f", "width": w, "height": h, "seed": n,
   "weights": "...", "stopped": false}
  {"event": "error", "code": "...", "message": "..."}   (exit status 1)

On stdin the plug-in may write `stop` (end the job and keep the image as it stands) or
`cancel`; if the plug-in goes away (stdin closes), the job is cancelled. Runs as
`python -I -m impasto.gimp.bridge` (isolated: nothing in GIMP's current folder or
environment can stand in for impasto's modules).
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from impasto.client import Client
from impasto.errors import BAD_OPTIONS, UNAVAILABLE, DaemonUnavailable, ImpastoError
from impasto.fsio import write_atomic
from impasto.protocol import (
    DaemonState,
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


def emit(**event: Any) -> None:
    sys.stdout.write(json.dumps(event, allow_nan=False) + "\n")
    sys.stdout.flush()


class Commands:
    """What the plug-in says on stdin: `stop`, `cancel`, or nothing; a closed stdin
    (the plug-in went away) is a cancel."""

    def __init__(self) -> None:
        self.stop = False
        self.cancel = False

    def poll(self) -> None:
        try:
            while not self.cancel:
                ready, _, _ = select.select([sys.stdin], [], [], 0)
                if not ready:
                    return
                data = sys.stdin.buffer.read1(256)
                if not data or b"cancel" in data:
                    self.cancel = True
                elif b"stop" in data:
                    self.stop = True
        except (OSError, ValueError):
            return

    def should_cancel(self) -> bool:
        self.poll()
        return self.cancel

    def should_finish(self) -> bool:
        self.poll()
        return self.stop


def ensure_daemon(client: Client, autostart: dict[str, Any] | None) -> None:
    """Ping; if nobody answers and autostart is configured, start a daemon and wait."""
    emit(event="status", text=f"connecting to {client.address}")
    try:
        client.ping(timeout=min(client.timeout, 3.0))
        return
    except DaemonUnavailable:
        if not autostart or not autostart.get("command"):
            raise
    command = [str(c) for c in autostart["command"]]
    idle = autostart.get("idle_exit_s")
    if idle and "--idle-exit" not in command:  # configs written before the flag existed
        command += ["--idle-exit", f"{float(idle):g}"]
    log_path = Path(autostart.get("log") or os.devnull)
    if log_path != Path(os.devnull):
        log_path.parent.mkdir(parents=True, exist_ok=True)
    emit(event="status", text="starting the impasto daemon (loading model)"
         + (f"; it stops by itself after {float(idle):g} s without work" if idle else ""))
    with open(log_path, "ab") as log:
        try:
            proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                    start_new_session=True)  # outlives GIMP's plug-in
        except OSError as e:
            raise ImpastoError(UNAVAILABLE, f"could not start the daemon with {' '.join(command)}:"
                               f" {e.strerror or e}") from None
    deadline = time.monotonic() + float(autostart.get("wait_s", 300))
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = _tail(log_path)
            raise ImpastoError(UNAVAILABLE, f"the daemon started with {' '.join(command)} exited "
                               f"({proc.returncode}){': ' + tail if tail else ''}")
        try:
            st = client.status()
            if st.state == DaemonState.READY:
                emit(event="status", text="model loaded")
                return
            emit(event="status", text="loading model")
        except DaemonUnavailable:
            pass
        time.sleep(0.5)
    raise ImpastoError(UNAVAILABLE, f"the daemon did not get ready within {autostart.get('wait_s', 300)} s;"
                       f" see {log_path}")


def _tail(path: Path, lines: int = 12) -> str:
    """The end of the daemon's log: enough lines that the fix it names (`impasto weights
    fetch`, say) comes through whole."""
    try:
        return " | ".join(path.read_text(errors="replace").strip().splitlines()[-lines:])[-1500:]
    except OSError:
        return ""


def style_ref(spec: dict[str, Any]) -> StyleRef:
    weight = float(spec.get("weight", 1.0))
    if spec.get("raw"):
        data = Path(spec["raw"]).read_bytes()
        return StyleRef(image=ImageRef(data, "rgba8", int(spec["width"]), int(spec["height"])),
                        weight=weight)
    if spec.get("path"):
        p = Path(spec["path"]).expanduser()
        try:
            return StyleRef(image=ImageRef(p.read_bytes(), "encoded"), weight=weight)
        except OSError as e:
            raise ImpastoError(BAD_OPTIONS, f"cannot read style image {p}: {e.strerror}") from None
    if spec.get("name"):
        return StyleRef(name=str(spec["name"]), weight=weight)
    raise ImpastoError(BAD_OPTIONS, "no style given: a library name, an image file or a layer")


def run(request: dict[str, Any]) -> int:
    content = request["content"]
    data = Path(content["path"]).read_bytes()
    # rgb32f: float RGB in the image's own colour space, no alpha (the plug-in keeps the
    # layer's alpha and writes it back unchanged); rgba8 for older plug-ins.
    fmt = str(content.get("format", "rgba8"))
    ref = ImageRef(data, fmt, int(content["width"]), int(content["height"]))
    output = OutputFormat.RGB32F if fmt == "rgb32f" else OutputFormat.RGBA8
    preview = request.get("preview")
    preview_path = Path(preview["path"]) if preview else None
    job = Stylize(content=ref, styles=[style_ref(s) for s in request["styles"]],
                  options=request.get("options", {}), priority=Priority.INTERACTIVE, output=output,
                  client=request.get("client", "gimp"),
                  preview={"max_side": int(preview.get("max_side", 256)),
                           "interval_s": float(preview.get("interval_s", 1.0)),
                           "format": "rgba8"} if preview else None)
    commands = Commands()
    with Client(request.get("address"), timeout=float(request.get("timeout", 5.0))) as client:
        ensure_daemon(client, request.get("autostart"))

        def progress(p: Progress) -> None:
            if p.stage == Stage.PREPARE:
                emit(event="status", text="preparing style")
                return
            emit(event="progress", step=p.step, total=p.total, scale=p.scale, scales=p.scales)
            if p.preview is not None and preview_path is not None:
                write_atomic(preview_path, p.preview.data, sync=False)
                emit(event="preview", path=str(preview_path), width=p.preview.width,
                     height=p.preview.height, step=p.step)

        result = client.stylize(
            job, on_accepted=lambda a: emit(event="accepted", job=a.job, position=a.position),
            on_progress=progress, should_cancel=commands.should_cancel,
            should_finish=commands.should_finish)
    assert result.image is not None
    out = Path(request["output"])
    write_atomic(out, result.image.data, sync=False)
    emit(event="done", output=str(out), format=result.image.format, width=result.image.width,
         height=result.image.height, seed=result.seed, weights=result.weights,
         stopped=commands.stop)
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
            emit(event="styles", names=[str(s.get("name", "")) for s in reply.styles])
            return 0
        if argv and argv[0] == "ping":
            with Client(argv[1] if len(argv) > 1 else None, timeout=3.0) as c:
                pong = c.ping()
            emit(event="pong", version=pong.version, protocol=pong.protocol, address=c.address)
            return 0
        emit(event="error", code="usage", message="usage: bridge run REQUEST.json | bridge ping [ADDRESS] | bridge styles [ADDRESS]")
        return 2
    except DaemonUnavailable as e:
        emit(event="error", code="unavailable", message=str(e))
    except ImpastoError as e:
        emit(event="error", code=e.code, message=e.message)
    except (OSError, ValueError, KeyError) as e:
        emit(event="error", code="bridge", message=f"{type(e).__name__}: {e}")
    return 1


if __name__ == "__main__":
    sys.exit(main())
