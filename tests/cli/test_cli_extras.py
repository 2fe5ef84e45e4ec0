"""A missing optional package is named, with the command that adds it, before any work
starts: one test per extra and per package of it (the video extra: OpenCV for the flow
between frames, PyAV for video files). Each package is made unimportable for a real
`impasto stylize` run by a stand-in on PYTHONPATH that fails to import, as a wheel-only
install without the extra does."""

from __future__ import annotations

from pathlib import Path

import pytest

from impasto import extras
from tests.cli.test_cli_video import SMALL, make_clip
from tests.helpers import run_cli, stripes_image

CASES = [(extra, module, dist) for extra, pkgs in extras.EXTRAS.items() for module, dist in pkgs]

# Also run with impasto's modules held to Windows' standard library (scripts/test).
pytestmark = pytest.mark.windows_library


@pytest.mark.parametrize(("extra", "module", "dist"), CASES, ids=[c[1] for c in CASES])
def test_a_missing_package_of_an_extra_is_named_before_any_work(
        tmp_path: Path, env: dict[str, str], extra: str, module: str, dist: str) -> None:
    shadow = tmp_path / "shadow" / module
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text(f"raise ModuleNotFoundError(\"No module named '{module}'\")\n")
    clip, out = tmp_path / "clip.mp4", tmp_path / "out.mp4"
    make_clip(clip, frames=3)
    stripes_image(32, 32).save(tmp_path / "s.png")
    r = run_cli(["stylize", str(clip), "--style", str(tmp_path / "s.png"), "-o", str(out),
                 "--local", *SMALL], {**env, "PYTHONPATH": str(tmp_path / "shadow")})
    assert r.returncode == 1, r.stdout + r.stderr
    assert "Traceback" not in r.stderr, r.stderr
    assert f"'{extra}' extra" in r.stderr and dist in r.stderr, r.stderr
    assert "-m pip install" in r.stderr, r.stderr
    # Before any work: no model loaded, no frame stylized, nothing written.
    assert "VGG19" not in r.stderr and "frame" not in r.stdout and not out.exists(), r.stderr


def test_with_every_extra_installed_nothing_is_missing() -> None:
    for extra in extras.EXTRAS:
        assert extras.missing(extra) == []  # the dev environment has every extra
        line = extras.requirements(extra, [d for _, d in extras.EXTRAS[extra]])
        assert all(">=" in x for x in line), line  # bounds from impasto's own metadata
