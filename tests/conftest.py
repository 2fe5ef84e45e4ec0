from __future__ import annotations

import os
import sys
import sysconfig
from pathlib import Path

import pytest

# The Windows-library mode (tests/winlib/impasto_winlib.py, docs/portability.md): its .pth
# line goes into the test venv on every run, inert unless IMPASTO_WINDOWS_LIBRARY=1 is
# set, so any child process a test starts with the variable runs in the mode; with the
# variable set for pytest itself, this process is put in it before any impasto import.
sys.path.insert(0, str(Path(__file__).parent / "winlib"))
import impasto_winlib  # noqa: E402

impasto_winlib.install_pth(Path(sysconfig.get_paths()["purelib"]))
if os.environ.get(impasto_winlib.ENV) == "1":
    impasto_winlib.apply()

from tests.helpers import (  # noqa: E402 - after the mode, which must come first
    DaemonProcess,
    gradient_image,
    make_env,
    stripes_image,
)


@pytest.fixture(autouse=True)
def isolated_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test reads or writes the real user's config, data, caches or torch cache."""
    for k, v in make_env(tmp_path).items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("IMPASTO_ADDRESS", raising=False)


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return make_env(tmp_path)


@pytest.fixture
def content_png(tmp_path: Path) -> Path:
    p = tmp_path / "content.png"
    gradient_image(80, 60).save(p)
    return p


@pytest.fixture
def style_png(tmp_path: Path) -> Path:
    p = tmp_path / "style.png"
    stripes_image().save(p)
    return p


@pytest.fixture(scope="session")
def weights_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """VGG19 weights in the real published formats, with seeded random values:
    torchvision's state dict (whole model, as VGG19_Weights writes it) and the
    Caffe-converted file of neural-style-pt (same keys, Caffe preprocessing)."""
    import torch
    from torchvision.models import vgg19

    root = tmp_path_factory.mktemp("weights")
    out = {}
    for name, seed in (("vgg19-dcbb9e9d.pth", 1), ("vgg19-d01eb7cb.pth", 2)):
        torch.manual_seed(seed)
        torch.save(vgg19(weights=None).state_dict(), root / name)
        out["torchvision" if seed == 1 else "caffe"] = root / name
    return out


@pytest.fixture
def daemon(tmp_path: Path):
    d = DaemonProcess(tmp_path).wait_ready()
    yield d
    d.stop()
