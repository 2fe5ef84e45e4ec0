"""What a careless client found in the GIMP plug-in's bridge, install and dialog fields."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from impasto import events
from impasto.gimp.dialogfields import dialog_fields
from impasto.options import EngineOptions
from tests.helpers import free_port, run_cli

BRIDGE = [sys.executable, "-I", "-m", "impasto.gimp.bridge"]


def _request(tmp: Path) -> dict:
    (tmp / "c.rgbf").write_bytes(b"\0" * 8 * 6 * 12)
    (tmp / "s.rgba").write_bytes(b"\0" * 4 * 4 * 4)
    (tmp / "a.grey").write_bytes(b"\xff" * 8 * 6)
    return {"address": f"tcp://127.0.0.1:{free_port()}", "timeout": 2,
            "content": {"path": str(tmp / "c.rgbf"), "width": 8, "height": 6, "format": "rgb32f"},
            "styles": [{"raw": str(tmp / "s.rgba"), "width": 4, "height": 4,
                        "mask": {"raw": str(tmp / "a.grey"), "width": 8, "height": 6}}],
            "options": {"size": 64}, "output": str(tmp / "out.rgbf")}


def _run(req_path: Path, env: dict[str, str]) -> tuple[int, list]:
    # stdin stays open, as the plug-in keeps it (its closing means "cancel").
    p = subprocess.Popen(BRIDGE + ["run", str(req_path)], env=env, stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = p.communicate(timeout=60)  # a hang is the defect
    finally:
        p.kill()
    assert "Traceback" not in err, err
    return p.returncode, [events.parse(x) for x in out.splitlines()]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes are POSIX's")
@pytest.mark.parametrize("where", ["request", "content", "style", "area", "picture", "frame"])
@pytest.mark.parametrize("what", ["pipe", "device", "folder"])
def test_a_path_to_a_pipe_a_device_or_a_folder_is_one_error_not_a_hang(
        where: str, what: str, tmp_path: Path, env: dict[str, str]) -> None:
    """A named pipe used to hang the bridge for ever (reading waits for a writer) and
    /dev/zero to fill the memory; a folder gave an IsADirectoryError. Each is now one
    bad_options line that names the file, before the daemon is reached."""
    bad = {"pipe": tmp_path / "fifo", "device": Path(os.devnull).with_name("zero"),
           "folder": tmp_path / "dir"}[what]
    if what == "pipe":
        os.mkfifo(bad)
    elif what == "folder":
        bad.mkdir()
    elif not bad.exists():
        pytest.skip("no /dev/zero")
    req = _request(tmp_path)
    req_path = tmp_path / "req.json"
    if where == "request":
        req_path = bad
    elif where == "content":
        req["content"]["path"] = str(bad)
    elif where == "style":
        req["styles"][0]["raw"] = str(bad)
    elif where == "area":
        req["styles"][0]["mask"]["raw"] = str(bad)
    elif where == "picture":
        req["styles"] = [{"path": str(bad)}]
    else:
        del req["content"], req["output"]
        req["clip"] = {"frames": [str(tmp_path / "c.rgbf"), str(bad)], "width": 8, "height": 6,
                       "output_dir": str(tmp_path / "frames")}
    if where != "request":
        req_path.write_text(json.dumps(req))
    rc, evs = _run(req_path, env)
    assert rc == 1 and len(evs) == 1 and isinstance(evs[0], events.Error), evs
    assert evs[0].code == "bad_options" and str(bad) in evs[0].message, evs[0]
    assert ("a folder" if what == "folder" else "a pipe or a device") in evs[0].message


def test_every_working_size_the_dialog_offers_is_one_the_daemon_takes() -> None:
    """The dialog offered Working size up to 8192 (the option's range), but at the default
    style scale the daemon refuses more than 4096 ("style_scale 1 at size 5000 would make
    the style image 5000 px long"): a 5000 px layer at Working size 5000 always failed,
    in engine words. The plug-in sends min(layer, asked), at least 64."""
    (size,) = [f for f in dialog_fields() if f["option"] == "size"]
    for asked in range(size["min"], size["max"] + 1, 97):
        for layer in (1, 500, 4096, 5000, 20000):
            EngineOptions.from_dict({"size": max(64, min(layer, asked or 512))})
    EngineOptions.from_dict({"size": size["max"]})


def test_doctor_s_fix_reinstalls_into_the_folder_it_checked(tmp_path: Path,
                                                            env: dict[str, str]) -> None:
    """`gimp doctor --plugin-dir X` used to advise a bare `impasto gimp install`, which
    fills the default profile's folder and leaves X broken."""
    box = tmp_path / "elsewhere" / "impasto-neural-style"
    r = run_cli(["gimp", "install", "--plugin-dir", str(box), "--no-autostart"], env)
    assert r.returncode == 0, r.stderr
    (box / "impasto_still.py").unlink()
    r = run_cli(["gimp", "doctor", "--plugin-dir", str(box)], env, timeout=120)
    assert r.returncode == 1 and "impasto_still.py" in r.stdout, r.stdout
    assert f"run `impasto gimp install --plugin-dir {box}` again" in r.stdout, r.stdout
    assert "run `impasto gimp install` again" not in r.stdout, r.stdout


def test_install_over_a_file_in_the_way_is_one_line(tmp_path: Path, env: dict[str, str]) -> None:
    """A file where the plug-in's folder (or one of its parts) goes was a traceback."""
    box = tmp_path / "impasto-neural-style"
    box.write_text("not a folder")
    r = run_cli(["gimp", "install", "--plugin-dir", str(box), "--no-autostart"], env)
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    assert f"impasto: error: gimp install: {box}: " in r.stderr, r.stderr


@pytest.mark.parametrize("wait", ["NaN", '"300"', "0", "true"])
def test_a_daemon_start_with_no_bound_on_its_wait_is_refused_before_it_starts(
        wait: str, tmp_path: Path, env: dict[str, str]) -> None:
    """autostart's wait_s as NaN never compared greater than the time waited: a daemon
    that never answered was waited for as long as it lived. Refused, before anything is
    started; a string was a bare ValueError."""
    req = _request(tmp_path)
    marker = tmp_path / "started"
    req["autostart"] = {"command": [sys.executable, "-c", f"open({str(marker)!r}, 'w')"],
                        "wait_s": 1.5, "log": str(tmp_path / "d.log")}
    req_path = tmp_path / "req.json"
    req_path.write_text(json.dumps(req).replace('"wait_s": 1.5', f'"wait_s": {wait}'))
    rc, evs = _run(req_path, env)
    assert rc == 1 and isinstance(evs[-1], events.Error), evs
    assert evs[-1].code == "bad_options" and "wait_s" in evs[-1].message, evs[-1]
    assert not marker.exists()


def test_a_layer_too_large_to_send_is_said_in_gimp_s_words(tmp_path: Path,
                                                          env: dict[str, str]) -> None:
    """A 24-megapixel photo used to fail after the bridge had read all 288 MB, with "the
    message is 288,001,369 bytes; the protocol allows at most 268,435,456". It is now
    refused from the request's numbers (and the file's size), before the file is read or
    any daemon asked, with what to do in GIMP."""
    req = _request(tmp_path)
    req["content"].update(width=6000, height=4000)
    # A sparse file of the right size: its numbers are checked, its bytes never read.
    with open(req["content"]["path"], "wb") as f:
        f.truncate(6000 * 4000 * 12)
    (tmp_path / "req.json").write_text(json.dumps(req))
    rc, evs = _run(tmp_path / "req.json", env)
    assert rc == 1 and len(evs) == 1 and isinstance(evs[0], events.Error), evs
    assert evs[0].code == "image_too_large", evs[0]
    assert "6000x4000 (24.0 megapixels)" in evs[0].message, evs[0]
    assert "Image > Scale Image" in evs[0].message and "selection" in evs[0].message


def test_uninstall_works_when_the_plugin_file_itself_is_already_gone(
        tmp_path: Path, env: dict[str, str]) -> None:
    box = tmp_path / "impasto-neural-style"
    assert run_cli(["gimp", "install", "--plugin-dir", str(box), "--no-autostart"],
                   env).returncode == 0
    (box / "impasto-neural-style.py").unlink()
    (box / "mine.txt").write_text("the artist's own note")
    r = run_cli(["gimp", "uninstall", "--plugin-dir", str(box)], env)
    assert r.returncode == 0, r.stderr
    assert [p.name for p in box.iterdir()] == ["mine.txt"]


@pytest.mark.parametrize(("key", "value", "said"), [
    ("command", 5, "autostart command must be a list of words"),
    ("command", [sys.executable, 3], "autostart command must be a list of words"),
    ("idle_exit_s", "soon", "idle_exit_s must be a number of seconds"),
    ("log", ["x"], "autostart log must be a file path"),
])
def test_an_autostart_of_the_wrong_shape_is_one_clear_line(
        key: str, value: object, said: str, tmp_path: Path, env: dict[str, str]) -> None:
    """A command of 5 was "the request is malformed (TypeError ...)"; each field of a
    hand-edited config's autostart is now checked by name, before anything is started."""
    req = _request(tmp_path)
    req["autostart"] = {"command": [sys.executable, "-c", "pass"], "wait_s": 5}
    req["autostart"][key] = value
    (tmp_path / "req.json").write_text(json.dumps(req))
    rc, evs = _run(tmp_path / "req.json", env)
    assert rc == 1 and isinstance(evs[-1], events.Error), evs
    assert evs[-1].code == "bad_options" and said in evs[-1].message, evs[-1]


@pytest.mark.parametrize("where", ["preview", "output", "clip_preview", "clip_output"])
@pytest.mark.parametrize("what", ["folder", "under_a_file", "too_long", "proc", "slash"])
def test_a_result_or_preview_with_nowhere_to_go_is_refused_before_the_job(
        where: str, what: str, tmp_path: Path, env: dict[str, str]) -> None:
    """A preview path that is a folder failed at the first preview, and a result path
    that is one only once the daemon had painted it; a name too long, or a clip's
    frames' folder under a file, was a raw OSError under the code `bridge`. Each is one
    bad_options line before the daemon is reached (none listens here: reaching it
    would be another error), and nothing is made."""
    (tmp_path / "dir").mkdir()
    (tmp_path / "afile").write_text("in the way")
    bad: Path | str = {"folder": tmp_path / "dir", "under_a_file": tmp_path / "afile" / "x",
                       "too_long": tmp_path / ("n" * 300), "slash": f"{tmp_path / 'new'}/",
                       "proc": Path("/proc/impasto-x")}[what]
    if what == "proc" and not Path("/proc/self").is_dir():
        pytest.skip("a /proc to write under (root's os.access says yes there)")
    if where == "clip_output" and what in ("folder", "slash"):
        bad = tmp_path / "afile"  # a folder is what a clip's frames want: a file is not
    req = _request(tmp_path)
    if where == "output":
        req["output"] = str(bad)
    elif where != "clip_output":
        req["preview"] = {"path": str(bad)}
    if where.startswith("clip"):
        del req["content"], req["output"]
        req["clip"] = {"frames": [str(tmp_path / "c.rgbf")], "width": 8, "height": 6,
                       "output_dir": str(bad if where == "clip_output" else tmp_path / "frames")}
    (tmp_path / "req.json").write_text(json.dumps(req))
    rc, evs = _run(tmp_path / "req.json", env)
    assert rc == 1 and len(evs) == 1 and isinstance(evs[0], events.Error), evs
    assert evs[0].code == "bad_options", evs[0]
    assert str(bad) in evs[0].message, evs[0]
    assert not (tmp_path / "frames").exists() and not (tmp_path / "new").exists()
