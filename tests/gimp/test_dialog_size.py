"""The plug-in's dialogs fit a 1366x768 screen, the smallest common laptop screen, with
nothing to scroll: opened by the real plug-in in a real GIMP 3 on a virtual screen of that
size (tests/gimp/screens.py, which also saves their screenshots)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.gimp.runner import gimp_root
from tests.gimp.screens import DIALOGS, SCREEN, shoot, xvfb_command

ROOT = gimp_root()
pytestmark = [pytest.mark.gimp, pytest.mark.skipif(
    ROOT is None, reason="no GIMP 3: run tests/gimp/setup_gimp.sh (scripts/test does)")]


@pytest.fixture(scope="module")
def dialogs(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, dict], Path]:
    assert ROOT is not None
    if xvfb_command(ROOT) is None:
        pytest.skip("no Xvfb where GIMP runs: run tests/gimp/setup_gimp.sh (it installs xvfb)")
    out = tmp_path_factory.mktemp("screens")
    return shoot(out, root=ROOT), out


@pytest.mark.parametrize("name", list(DIALOGS))
def test_dialog_fits_a_1366x768_screen_without_scrolling(dialogs, name: str, capsys) -> None:
    """As it opens, and at its largest: every expander in it opened."""
    results, out = dialogs
    info = results[name]
    assert "error" not in info, info["error"]
    for state, m in (("as it opens", info), ("with every expander open", info["expanded"])):
        if m is None:
            continue
        with capsys.disabled():
            print(f"\n[gimp] {name} dialog {state}: {m['width']}x{m['height']} (natural "
                  f"{m['natural_width']}x{m['natural_height']}) on {m['screen_width']}x"
                  f"{m['screen_height']}; screenshot {out / str(m['png'])}")
        assert (m["screen_width"], m["screen_height"]) == SCREEN
        assert m["stable"], f"the {name} dialog's size did not settle ({state}): {m}"
        assert m["png"] and (out / m["png"]).is_file()
        assert m["width"] <= SCREEN[0] and m["height"] <= SCREEN[1], (
            f"the {name} dialog {state} is {m['width']}x{m['height']}, larger than a "
            f"{SCREEN[0]}x{SCREEN[1]} screen (screenshot: {out / m['png']})")
        assert not m["needs_scrolling"], (
            f"the {name} dialog's content {state} needs scrolling: least size "
            f"{m['min_width']}x{m['min_height']}, scrolled windows {m['scrolled_windows']}")
