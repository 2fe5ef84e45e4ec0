"""impasto from its built wheel alone, as `pipx install` / `uv tool install` or the GIMP
set-up leave it: no checkout on the path, no bash, the console script `impasto`. The
daemon serves, `impasto send` returns a picture, and a watch folder files a dropped one."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from tests.helpers import REPO, free_port, gradient_image, make_env, stripes_image
from tests.watch.common import SETTINGS, files, settled, wait_until

pytestmark = pytest.mark.slow


def wheel_venv(tmp: Path) -> Path:
    """A new venv holding impasto's wheel and nothing of the checkout. Its other packages
    (torch's gigabytes) are not installed a second time: a path file lists this test
    run's site-packages, whose impasto is only an editable pointer that a path file
    cannot follow (Python reads .pth files in site folders only, not in folders a .pth
    file adds), so every `impasto` module comes from the wheel."""
    out = tmp / "dist"
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                        "-q", "-w", str(out), str(REPO)], capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stderr
    (wheel,) = out.glob("impasto-*.whl")
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True,
                   timeout=300)
    py = venv / "bin" / "python"
    site = Path(subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()"
                                "['purelib'])"], capture_output=True, text=True,
                               check=True).stdout.strip())
    (site / "deps-from-the-test-run.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    r = subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps",
                        "-q", str(wheel)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    return venv


def test_the_wheel_alone_serves_sends_and_watches(tmp_path: Path) -> None:
    venv = wheel_venv(tmp_path)
    impasto = venv / "bin" / "impasto"
    assert impasto.is_file()  # the console script
    work = tmp_path / "elsewhere"  # not the checkout: nothing is found by being beside it
    work.mkdir()
    env = make_env(tmp_path)
    env.pop("PYTHONPATH", None)
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}/usr/bin:/bin"
    where = subprocess.run([str(venv / "bin" / "python"), "-c",
                            "import impasto.version, impasto.engine, impasto.gimp, sys; "
                            "print(impasto.version.__file__); print(impasto.engine.__file__); "
                            "print(impasto.gimp.__file__); print('\\n'.join(sys.path))"],
                           env=env, cwd=work, capture_output=True, text=True, timeout=120)
    assert where.returncode == 0, where.stderr
    lines = where.stdout.splitlines()
    for module in lines[:3]:
        assert module.startswith(str(venv)), lines
    # The checkout's source folders are not on the path (the test run's own venv may sit
    # inside the checkout: only its site-packages is listed, for the dependencies).
    sources = {str(REPO), *(str(REPO / d) for d in ("shared", "daemon", "plugin"))}
    assert not sources & {p.rstrip("/") for p in lines[3:]}, lines

    library = Path(env["IMPASTO_DATA_DIR"]) / "styles"
    library.mkdir(parents=True)
    stripes_image(32, 32).save(library / "stripes.png")
    box = tmp_path / "box"
    (box / "in").mkdir(parents=True)
    (box / "in" / "impasto.toml").write_text(SETTINGS)
    address = f"tcp://127.0.0.1:{free_port()}"
    log = tmp_path / "serve.log"
    with open(log, "w") as out:
        daemon = subprocess.Popen([str(impasto), "serve", "--weights", "random", "--device", "cpu",
                                   "--bind", address, "--watch", str(box)],
                                  env=env, cwd=work, stdout=out, stderr=subprocess.STDOUT)
    try:
        def ready() -> bool:
            assert daemon.poll() is None, log.read_text()
            r = subprocess.run([str(impasto), "status", "--json", "--address", address],
                               env=env, cwd=work, capture_output=True, text=True, timeout=120)
            return r.returncode == 0 and '"ready"' in r.stdout

        wait_until(ready, timeout=300, what="the daemon from the wheel")
        photo, style = work / "photo.png", work / "style.png"
        gradient_image(48, 36).save(photo)
        stripes_image(32, 32).save(style)
        r = subprocess.run([str(impasto), "send", str(photo), "--style", str(style), "-o",
                            str(work / "out.png"), "--size", "64", "--iterations", "2",
                            "--address", address, "--timeout", "60"],
                           env=env, cwd=work, capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, r.stdout + r.stderr + log.read_text()
        assert (work / "out.png").stat().st_size > 0
        shutil.copy(photo, box / "in" / "dropped.png")
        wait_until(lambda: settled(box, 1), timeout=300, what="the watch folder")
        assert files(box / "out") == ["stripes/dropped.png"], log.read_text()
    finally:
        daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(120)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait()
    assert daemon.returncode == 0, log.read_text()
