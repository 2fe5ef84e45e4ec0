"""The GIMP 3 plug-in inside a real GIMP in batch mode, against a real daemon."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.gimp.runner import GimpRunner, gimp_root
from tests.helpers import DaemonProcess, gradient_image, make_env, run_cli, stripes_image

ROOT = gimp_root()
pytestmark = [pytest.mark.gimp, pytest.mark.skipif(
    ROOT is None, reason="no GIMP 3: run tests/gimp/setup_gimp.sh (scripts/test does)")]
BATCH = Path(__file__).parent / "batch_cases.py"


@pytest.fixture(scope="module")
def gimp(tmp_path_factory: pytest.TempPathFactory):
    """A daemon with a `stripes` style, and a GIMP profile where `impasto gimp install`
    put the plug-in (no autostart: the daemon is ours)."""
    tmp = tmp_path_factory.mktemp("gimp")
    env = make_env(tmp)
    daemon = DaemonProcess(tmp, env=env).wait_ready()
    style = tmp / "stripes.png"
    stripes_image(40, 40).save(style)
    assert run_cli(["styles", "add", "stripes", str(style), "--address", daemon.address],
                   env).returncode == 0
    runner = GimpRunner(ROOT, tmp)
    r = run_cli(["gimp", "install", "--gimp-dir", str(runner.profile), "--address", daemon.address,
                 "--no-autostart", "--bridge", runner.bridge_command(sys.executable)], env)
    assert r.returncode == 0, r.stderr
    runner.share_keys(tmp / "config", runner.profile / "plug-ins" / "impasto-neural-style" /
                      "impasto-bridge.json")
    gradient_image(96, 72).save(runner.io / "background.png")
    gradient_image(60, 40, alpha=True).save(runner.io / "source.png")
    stripes_image(48, 48).save(runner.io / "style.png")
    yield runner, daemon, env
    daemon.stop()


def batch(runner: GimpRunner, *cases: str) -> dict:
    (runner.io / "report.json").unlink(missing_ok=True)
    p = runner.run_batch(BATCH, {"IMPASTO_CASES": ",".join(cases)})
    assert "IMPASTO-BATCH-DONE" in p.stdout, p.stdout + p.stderr
    # GIMP only warns about out-of-range arguments and then uses the default. (The
    # no-layer case passes an empty drawables array on purpose, which GIMP also flags.)
    bad = [line for line in p.stderr.lower().splitlines()
           if "out of range" in line and "'drawables'" not in line]
    assert not bad, p.stderr
    report = json.loads((runner.io / "report.json").read_text())
    for name, r in report.items():
        assert "exception" not in r, f"{name}: {r['exception']}"
    return report


def rgba(runner: GimpRunner, info: dict) -> np.ndarray:
    data = (runner.io / info["file"]).read_bytes()
    return np.frombuffer(data, np.uint8).reshape(info["height"], info["width"], -1)


def test_install_files(gimp) -> None:
    runner, _, _ = gimp
    plugin = runner.profile / "plug-ins" / "impasto-neural-style" / "impasto-neural-style.py"
    assert plugin.is_file() and plugin.stat().st_mode & 0o111
    cfg = json.loads((plugin.parent / "impasto-bridge.json").read_text())
    assert cfg["autostart"] is None and cfg["bridge"]
    # the plug-in imports only the standard library and gi
    imports = {line.split()[1].split(".")[0] for line in plugin.read_text().splitlines()
               if line.startswith(("import ", "from "))}
    assert imports <= {"json", "os", "subprocess", "sys", "tempfile", "gi"}, imports


def test_new_layer_above_source(gimp) -> None:
    runner, _, _ = gimp
    rep = batch(runner, "registered", "new_layer", "selection_mask", "style_layer", "grayscale")
    reg = rep["registered"]
    assert reg["found"] and "<Image>/Filters/Artistic" in reg["menu"]
    r = rep["new_layer"]
    assert "error" not in r, r
    layers = r["layers"]
    ids = [x["id"] for x in layers]
    assert ids.index(r["new_id"]) + 1 == ids.index(r["src_id"]), layers  # directly above
    new = next(x for x in layers if x["id"] == r["new_id"])
    src = next(x for x in layers if x["id"] == r["src_id"])
    assert new["size"] == src["size"] == [60, 40] and new["offsets"] == src["offsets"] == [10, 20]
    assert new["name"].startswith("stripes")
    assert not r["has_mask"]
    a, b = rgba(runner, r["new"]), rgba(runner, r["src"])
    assert np.array_equal(a[..., 3], b[..., 3])  # alpha kept exactly
    assert np.abs(a[..., :3].astype(int) - b[..., :3].astype(int)).mean() > 1  # stylized

    m = rep["selection_mask"]
    assert m["has_mask"], m
    mask = np.frombuffer((runner.io / "mask.gray").read_bytes(), np.uint8).reshape(40, 60)
    # selection (20,30)-(40,40) in image space = (10,10)-(30,20) in the layer
    assert mask[12:18, 12:28].min() == 255 and mask[0:8, :].max() == 0 and mask[:, 35:].max() == 0

    s = rep["style_layer"]
    assert "error" not in s and s["size"] == [60, 40] and s["name"].startswith("style")
    g = rep["grayscale"]
    assert "error" not in g and g["gray"] and g["size"] == [96, 72]


def test_errors_the_user_can_read(gimp) -> None:
    runner, _, _ = gimp
    e = batch(runner, "errors")["errors"]
    assert "unknown style 'no-such-style'" in e["unknown_style"] and "stripes" in e["unknown_style"]
    assert "No layer is selected" in e["no_layer"]
    assert "layer group" in e["group"]
    assert "Image > Mode > RGB" in e["indexed"]


def test_daemon_down_without_autostart(gimp) -> None:
    runner, daemon, env = gimp
    daemon.stop()
    try:
        err = batch(runner, "daemon_down")["daemon_down"]["error"]
        assert "execution-error" in err and "no impasto daemon answered" in err, err
        assert "impasto serve" in err
    finally:
        gimp_restart = DaemonProcess(Path(daemon.log).parent, env=env, port=daemon.port)
        gimp_restart.wait_ready()
        gimp_restart.stop()
