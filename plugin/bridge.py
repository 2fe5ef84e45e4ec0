"""The batch bridge: GIMP's plug-in runs this program to reach the daemon.

GIMP's Python has no pyzmq, so the plug-in hands the job to this program: pixels in a
raw RGBA file, the job in a JSON file; this program talks to the daemon (starting one
if allowed) and reports on stdout, one JSON object per line:

  {"event": "status", "text": "..."}            what is happening (connecting, loading model)
  {"event": "accepted", "job": "j3", "position": 0}
  {"event": "progress", "step": 5, "total": 100, "scale": 0, "scales": 3}
  {"event": "done", "output": "...", "width": w, "height": h, "seed": n, "weights": "..."}
  {"event": "error", "code": "...", "message": "..."}   (exit status 1)

If the plug-in goes away (stdin closes), the job is cancelled. Runs as
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
    Stylize,
)


def emit(**event: Any) -> None:
    sys.stdout.write(json.dumps(event, allow_nan=False) + "\n")
    sys.stdout.flush()


def _stdin_closed() -> bool:
    try:
        ready, _, _ = select.select([sys.stdin], [], [], 0)
        return bool(ready) and sys.stdin.buffer.read1(1) == b""
    except (OSError, ValueError):
        return False


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
    log_path = Path(autostart.get("log") or os.devnull)
    if log_path != Path(os.devnull):
        log_path.parent.mkdir(parents=True, exist_ok=True)
    emit(event="status", text="starting the impasto daemon (loading model)")
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


def _tail(path: Path, lines: int = 3) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").strip().splitlines()[-lines:])
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
    ref = ImageRef(data, "rgba8", int(content["width"]), int(content["height"]))
    job = Stylize(content=ref, styles=[style_ref(s) for s in request["styles"]],
                  options=request.get("options", {}), priority=Priority.INTERACTIVE, output=OutputFormat.RGBA8,
                  client=request.get("client", "gimp"))
    with Client(request.get("address"), timeout=float(request.get("timeout", 5.0))) as client:
        ensure_daemon(client, request.get("autostart"))

        def progress(p: Progress) -> None:
            if p.stage == Stage.PREPARE:
                emit(event="status", text="preparing style")
            else:
                emit(event="progress", step=p.step, total=p.total, scale=p.scale, scales=p.scales)

        result = client.stylize(
            job, on_accepted=lambda a: emit(event="accepted", job=a.job, position=a.position),
            on_progress=progress, should_cancel=_stdin_closed)
    assert result.image is not None
    out = Path(request["output"])
    write_atomic(out, result.image.data, sync=False)
    emit(event="done", output=str(out), width=result.image.width, height=result.image.height,
         seed=result.seed, weights=result.weights)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        if len(argv) == 2 and argv[0] == "run":
            return run(json.loads(Path(argv[1]).read_text()))
        if argv and argv[0] == "ping":
            with Client(argv[1] if len(argv) > 1 else None, timeout=3.0) as c:
                pong = c.ping()
            emit(event="pong", version=pong.version, protocol=pong.protocol, address=c.address)
            return 0
        emit(event="error", code="usage", message="usage: bridge run REQUEST.json | bridge ping [ADDRESS]")
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
