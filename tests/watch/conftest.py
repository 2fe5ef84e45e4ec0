"""Fixtures of the watch-folder tests: a folder with its settings, and a photo to drop."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import gradient_image
from tests.watch.common import SETTINGS


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "box"
    (root / "in").mkdir(parents=True)
    (root / "in" / "impasto.toml").write_text(SETTINGS)
    return root


@pytest.fixture
def src(tmp_path: Path) -> Path:
    p = tmp_path / "photo.png"
    gradient_image(70, 50).save(p)
    return p
