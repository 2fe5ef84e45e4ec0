"""The GIMP plug-in's two dialogs, Neural Style and Set Up Server, opened by the real
plug-in in a real GIMP 3 on a virtual X screen of 1366x768 (Xvfb): each one's size and a
screenshot.

    python -m tests.gimp.screens --out docs/images

writes docs/images/neural-style.png and setup.png (the part of each dialog on the
screen), with neural-style.json and setup.json beside them (the window's size, the
screen's, and whether anything in the dialog needs scrolling), and NAME-expanded.png for a
dialog with expanders (all of them opened: its largest; "expanded" in the JSON). tests/gimp/test_dialog_size.py
runs it and fails on a dialog that does not fit the screen.

shoot(..., scenes=...) opens a dialog once per Scene instead: an image with the layers and
channels it names, the config set as an earlier run would have left it, and, with
`actions`, things a person does in the dialog (Clear, Reset); each scene's JSON holds
what the dialog showed ("state": expanders, tabs, lists, pictures, the config's values)
as it opened and after each action. tests/gimp/test_dialog_behaviour.py runs it.

How: GIMP runs in batch mode (gimp-console-3.0, as the other GIMP tests run it) with
DISPLAY naming the Xvfb server, and its batch code runs each procedure with run-mode
INTERACTIVE. The plug-in is a process of its own: GimpUi.init connects it to that
display, and it builds its real dialog. With IMPASTO_DIALOG_SHOT set, the plug-in hands
the dialog to impasto.gimp.dialogshot.capture (its copy impasto_dialogshot.py beside it)
before dialog.run(): shown, laid out, measured, saved, then treated as cancelled, so the
batch goes on to the next dialog. The plug-in is installed with `impasto gimp install`
from this checkout, as for tests/gimp/test_gimp.py (no daemon: the style list is empty).
Xvfb and GIMP run where tests/gimp/setup_gimp.sh put them (the Debian 13 chroot, or the
system on Debian 13); the chroot shares the host's abstract X sockets, so Xvfb picks a
free display number itself (-displayfd).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tests.gimp.runner import GimpRunner, gimp_root
from tests.helpers import IMPASTO, REPO, free_port

SCREEN = (1366, 768)
# name -> the procedure whose interactive run opens that dialog; the name is the one the
# plug-in passes to dialogshot.capture.
DIALOGS = {"neural-style": "plug-in-impasto-neural-style", "setup": "plug-in-impasto-setup"}
# Seconds a dialog may take to appear and be captured, from its procedure's start (the
# Neural Style dialog first asks the daemon for its style list: 3 s without one; each
# dialog took 5 s or less on a busy 2-core machine).
DIALOG_TIMEOUT = 60.0

# Run by GIMP's python-fu-eval in the batch process: each scene (IMPASTO_SCREENS, a JSON
# list; see Scene) on an image of its own, its procedure run INTERACTIVE with the scene's
# config values; what the plug-in captured under the dialog's name is renamed to the
# scene's.
BATCH = r"""
import json
import os
import struct
import traceback
import zlib

from gi.repository import Gegl, Gimp, Gio

IO = os.environ["IMPASTO_IO"]
SHOTS = os.environ["IMPASTO_DIALOG_SHOT"]
SIZE = (320, 240)


def picture(path):
    # A small PNG (8x8, red) where a scene names a picture file that is not there.
    if os.path.exists(path):
        return
    raw = b"".join(b"\x00" + bytes([200, 40, 40]) * 8 for _ in range(8))

    def chunk(tag, data):
        return (struct.pack(">I", len(data)) + tag + data
                + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF))

    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 8, 8, 8, 2, 0, 0, 0))
                + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def value(v, layers, channels):
    if isinstance(v, dict) and "layer" in v:
        return layers[v["layer"]]
    if isinstance(v, dict) and "channel" in v:
        return channels[v["channel"]]
    if isinstance(v, dict) and "file" in v:
        path = v["file"] if os.path.isabs(v["file"]) else os.path.join(IO, v["file"])
        picture(path)
        return Gio.File.new_for_path(path)
    return v


report = {}
for scene in json.loads(os.environ["IMPASTO_SCREENS"]):
    name, capture = scene["name"], scene["capture"]
    with open(os.path.join(IO, name + ".started"), "w") as f:
        f.write("")
    try:
        image = Gimp.Image.new(SIZE[0], SIZE[1], Gimp.ImageBaseType.RGB)
        layers, channels = {}, {}
        for lname in reversed(scene["layers"]):  # listed top first, as GIMP lists them
            layer = Gimp.Layer.new(image, lname, SIZE[0], SIZE[1], Gimp.ImageType.RGB_IMAGE,
                                   100.0, Gimp.LayerMode.NORMAL)
            image.insert_layer(layer, None, 0)
            layers[lname] = layer
        for lname in scene["masks"]:
            layers[lname].add_mask(layers[lname].create_mask(Gimp.AddMaskType.WHITE))
        for cname in reversed(scene["channels"]):
            channel = Gimp.Channel.new(image, cname, SIZE[0], SIZE[1], 50.0,
                                       Gegl.Color.new("red"))
            image.insert_channel(channel, None, 0)
            channels[cname] = channel
        proc = Gimp.get_pdb().lookup_procedure(scene["proc"])
        config = proc.create_config()
        config.set_property("run-mode", Gimp.RunMode.INTERACTIVE)
        config.set_property("image", image)
        config.set_core_object_array("drawables", [layers[scene["layers"][-1]]])
        for key, v in scene["config"].items():
            config.set_property(key, value(v, layers, channels))
        result = proc.run(config)
        report[name] = {"status": result.index(0).value_nick}
    except Exception:
        report[name] = {"exception": traceback.format_exc()}
    if capture != name:
        for suffix in (".json", ".png", "-expanded.png"):
            if os.path.exists(os.path.join(SHOTS, capture + suffix)):
                os.replace(os.path.join(SHOTS, capture + suffix),
                           os.path.join(SHOTS, name + suffix))
with open(os.path.join(IO, "screens-report.json"), "w") as f:
    json.dump(report, f)
print("IMPASTO-SCREENS-DONE")
"""


@dataclass(frozen=True)
class Scene:
    """One opening of a dialog (a DIALOGS name), on an image of 320x240 with these layers
    (named top first, as GIMP's Layers dialog lists them; the procedure runs on the last,
    the bottom one), these layers given a white layer mask, and these channels; the
    procedure's config set to `config` first: as an earlier run would have left it.

    A config value is a string, number or boolean as it is, {"layer": NAME} or
    {"channel": NAME} for that layer or channel of the image, {"file": PATH} for a file (a
    relative PATH: a small PNG made for the scene in the batch's folder).

    GIMP gives an interactive run the values it is called with where it has no last values
    saved for the procedure (a fresh profile, as here: a cancelled dialog saves none)."""

    dialog: str = "neural-style"
    layers: tuple[str, ...] = ("background",)
    masks: tuple[str, ...] = ()
    channels: tuple[str, ...] = ()
    config: dict[str, object] = field(default_factory=dict)


class ScreensRunner(GimpRunner):
    """GimpRunner in a folder of its own (impasto-screens-PID in the chroot), so that it
    neither removes nor is removed by a test_gimp run going on beside it."""

    def __init__(self, root: str, work: Path) -> None:
        super().__init__(root, work, folder=f"impasto-screens-{os.getpid()}")


def xvfb_command(root: str) -> list[str] | None:
    """How to run Xvfb where GIMP runs, or None where setup_gimp.sh has not put one."""
    if root == "host":
        found = shutil.which("Xvfb")
        return [found] if found else None
    if not Path(root, "usr/bin/Xvfb").exists():
        return None
    return ["chroot", root, "/usr/bin/env", "-i", "PATH=/usr/bin:/bin", "/usr/bin/Xvfb"]


@contextlib.contextmanager
def virtual_screen(root: str, size: tuple[int, int] = SCREEN) -> Iterator[str]:
    """An Xvfb screen of `size` (24-bit) for as long as the block runs: its DISPLAY."""
    command = xvfb_command(root)
    if command is None:
        raise RuntimeError("no Xvfb: run tests/gimp/setup_gimp.sh (it installs xvfb)")
    read, write = os.pipe()
    proc = subprocess.Popen(command + ["-displayfd", str(write), "-screen", "0",
                                       f"{size[0]}x{size[1]}x24", "-nolisten", "tcp",
                                       "-noreset"],
                            pass_fds=[write], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    os.close(write)
    try:
        number = b""
        deadline = time.monotonic() + 30
        with os.fdopen(read, "rb") as f:  # Xvfb writes "N\n" once it accepts clients
            while not number.endswith(b"\n") and time.monotonic() < deadline:
                chunk = f.read(1)
                if not chunk:
                    break
                number += chunk
        if not number.strip().isdigit():
            proc.kill()
            raise RuntimeError(f"Xvfb did not start: {proc.communicate()[1].decode()[-2000:]}")
        yield f":{int(number)}"
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def install(runner: GimpRunner, work: Path, plugin_file: Path | None) -> None:
    """`impasto gimp install` into the runner's GIMP profile, no daemon (a dead address:
    the dialog's style list stays empty); `plugin_file` replaces the checkout's plug-in."""
    env = {**os.environ, "IMPASTO_CACHE_DIR": str(work / "cache"),
           "IMPASTO_DATA_DIR": str(work / "data"), "IMPASTO_CONFIG_DIR": str(work / "config"),
           "PYTHONUNBUFFERED": "1"}
    env.pop("IMPASTO_ADDRESS", None)
    r = subprocess.run(IMPASTO + ["gimp", "install", "--gimp-dir", str(runner.profile),
                                  "--address", f"tcp://127.0.0.1:{free_port()}", "--no-autostart",
                                  "--bridge", runner.bridge_command(sys.executable)],
                       env=env, cwd=REPO, capture_output=True, text=True, timeout=300)
    if r.returncode != 0:
        raise RuntimeError(f"impasto gimp install failed:\n{r.stdout}{r.stderr}")
    if plugin_file is not None:
        dest = runner.profile / "plug-ins" / "impasto-neural-style" / "impasto-neural-style.py"
        shutil.copyfile(plugin_file, dest)  # a fresh mtime: GIMP queries it again
        dest.chmod(0o755)


def watch(runner: GimpRunner, names: list[str], shots: Path, done: threading.Event,
          stuck: list[str]) -> None:
    """Ends this run's GIMP (and its plug-ins) when a dialog's procedure has run for
    DIALOG_TIMEOUT without a capture: a plug-in that does not call dialogshot.capture
    waits in dialog.run() for a click that never comes."""
    while not done.wait(1.0):
        for name in names:
            started = runner.io / f"{name}.started"
            if (started.exists() and not (shots / f"{name}.json").exists()
                    and time.time() - started.stat().st_mtime > DIALOG_TIMEOUT):
                stuck.append(name)
                runner.stop_processes(str(runner.inner_base))
                return


def shoot(out: Path, plugin_file: Path | None = None, root: str | None = None,
          names: list[str] | None = None, timeout: float = 600,
          scenes: dict[str, Scene] | None = None, actions: list[str] | None = None,
          settle: float | None = None) -> dict[str, dict]:
    """Every dialog in `names` (default: all), measured, its PNG and JSON written to
    `out`: name -> the JSON's content, or {"error": why} where none came.

    With `scenes` (name -> Scene), each scene instead, under its name (NAME.json: what the
    dialog showed as it opened, "state", and after each of `actions`; see
    impasto.gimp.dialogshot). `settle`: seconds the dialog's size must stay the same
    (dialogshot's default where None)."""
    root = root or gimp_root()
    if root is None:
        raise RuntimeError("no GIMP 3: run tests/gimp/setup_gimp.sh")
    extra = {}
    if scenes is None:  # the screenshots: NAME.json as it always was, no state
        scenes = {n: Scene(dialog=n) for n in (names or list(DIALOGS))}
    else:
        extra["IMPASTO_DIALOG_SHOT_STATE"] = "1"
        # Each capture writes DIALOG.json, then it is renamed to the scene's: a scene named
        # as a dialog would be overwritten by the next scene of that dialog.
        clash = sorted(set(scenes) & set(DIALOGS))
        if clash:
            raise ValueError(f"scene names {clash} are dialog names; name the scenes apart")
    names = list(scenes)
    plan = [{"name": n, "capture": sc.dialog, "proc": DIALOGS[sc.dialog],
             "layers": list(sc.layers), "masks": list(sc.masks),
             "channels": list(sc.channels), "config": sc.config} for n, sc in scenes.items()]
    if actions:
        extra["IMPASTO_DIALOG_SHOT_ACTIONS"] = ",".join(actions)
    if settle is not None:
        extra["IMPASTO_DIALOG_SHOT_SETTLE"] = str(settle)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="impasto-screens-") as tmp:
        work = Path(tmp)
        runner = ScreensRunner(root, work)
        try:
            install(runner, work, plugin_file)
            shots = runner.host_base / "shots"
            shots.mkdir()
            batch = work / "screens_batch.py"
            batch.write_text(BATCH)
            done, stuck = threading.Event(), []
            with virtual_screen(root) as display:
                watcher = threading.Thread(target=watch, args=(runner, names, shots, done, stuck),
                                           daemon=True)
                watcher.start()
                try:
                    p = runner.run_batch(batch, {
                        "DISPLAY": display, "NO_AT_BRIDGE": "1",
                        "IMPASTO_DIALOG_SHOT": str(runner.inner(shots)),
                        "IMPASTO_SCREENS": json.dumps(plan), **extra},
                        timeout=timeout)
                    log = p.stdout[-1500:] + p.stderr[-1500:]
                except subprocess.TimeoutExpired as e:
                    log = f"GIMP ran past {timeout:g} s: {e}"
                finally:
                    done.set()
                    watcher.join()
                    # Plug-ins left behind by a GIMP that was ended (none normally).
                    runner.stop_processes(str(runner.inner_base))
            results: dict[str, dict] = {}
            for name in names:
                info_file = shots / f"{name}.json"
                if not info_file.exists():
                    why = ("its procedure ran for more than " f"{DIALOG_TIMEOUT:g} s"
                           if name in stuck else "GIMP ended")
                    capture = scenes[name].dialog
                    results[name] = {"error": (
                        f"no {name}.json: {why} without the dialog being captured. Does the "
                        f"plug-in call dialogshot.capture(dialog, {capture!r}) before "
                        f"dialog.run()?\nGIMP's output, its end:\n{log}")}
                    continue
                info = json.loads(info_file.read_text())
                for suffix in (".json", ".png", "-expanded.png"):
                    if (shots / f"{name}{suffix}").exists():
                        shutil.copyfile(shots / f"{name}{suffix}", out / f"{name}{suffix}")
                results[name] = info
            return results
        finally:
            shutil.rmtree(runner.host_base, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "images",
                    help="folder for NAME.png and NAME.json (default docs/images)")
    ap.add_argument("--plugin-file", type=Path,
                    help="a plug-in file to use instead of the checkout's (experiments)")
    ap.add_argument("--only", action="append", choices=list(DIALOGS),
                    help="this dialog only (repeatable; default both)")
    args = ap.parse_args(argv)
    results = shoot(args.out, args.plugin_file, names=args.only)
    bad = 0
    for name, info in results.items():
        if "error" in info:
            bad += 1
            print(f"{name}: {info['error']}", file=sys.stderr)
            continue
        for label, m in ((name, info), (f"{name}, every expander open", info["expanded"])):
            if m is None:
                continue
            fits = m["width"] <= m["screen_width"] and m["height"] <= m["screen_height"]
            bad += not fits or m["needs_scrolling"]
            print(f"{label}: {m['width']}x{m['height']} on a {m['screen_width']}x"
                  f"{m['screen_height']} screen ({'fits' if fits else 'DOES NOT FIT'}"
                  f"{'; needs scrolling' if m['needs_scrolling'] else ''}); "
                  f"natural {m['natural_width']}x{m['natural_height']}, "
                  f"least {m['min_width']}x{m['min_height']} -> {args.out / str(m['png'])}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
