"""What the plug-in's dialog and run loop rely on, outside GIMP: the set-up dialog's
survey (each slow question asked once, on a thread), the float pixel helpers, and the
parts of the plug-in file a batch-mode GIMP cannot show (menu sensitivity, the Stop
window's parent, no probe on GTK's loop)."""

from __future__ import annotations

import array
import ast
import threading
import time

import pytest

from impasto.gimp import PLUGIN_FILE, part_files, pixels
from impasto.gimp.pythons import Survey

# Also run with impasto's modules held to Windows' standard library (scripts/test).
pytestmark = pytest.mark.windows_library


def test_survey_asks_each_question_once_off_the_calling_thread() -> None:
    calls: list[str] = []
    answered = threading.Event()
    release = threading.Event()
    main = threading.get_ident()

    def slow() -> str:
        assert threading.get_ident() != main  # never on the caller's (GTK's) thread
        calls.append("probe")
        release.wait(30)
        return "python3.12"

    survey = Survey(on_answer=answered.set)
    t0 = time.monotonic()
    assert survey.ask("python", slow) is None  # still looking: the dialog says so
    assert survey.ask("python", slow) is None  # a field changed: no second probe
    assert time.monotonic() - t0 < 5  # the caller never waited on the probe
    release.set()
    assert answered.wait(30)
    assert survey.ask("python", slow) == (True, "python3.12")
    assert calls == ["probe"]

    def broken() -> str:
        raise ValueError("no Python 3.11 or newer")

    ok, err = survey.ask("other", broken, wait=True)  # type: ignore[misc]
    assert not ok and isinstance(err, ValueError)


def test_hdr_scaling_and_cropping() -> None:
    rgb = array.array("f", [0.5, 2.0, 4.0, 1.0, 0.0, 0.25]).tobytes()
    unit, peak = pixels.to_unit_range(rgb)
    assert peak == 4.0 and max(array.array("f", unit)) == 1.0
    assert pixels.from_unit_range(unit, peak) == rgb
    plain = array.array("f", [0.5, 0.25, 1.0]).tobytes()
    assert pixels.to_unit_range(plain) == (plain, 1.0)
    assert pixels.peak_of(rgb) == 4.0
    assert pixels.crop_rgb(rgb, 2, (1, 0, 1, 1)) == rgb[12:24]
    assert pixels.scale_rgb(plain, 2.0) == array.array("f", [1.0, 0.5, 2.0]).tobytes()


def calls_in(tree: ast.AST, name: str) -> list[ast.Call]:
    return [n for n in ast.walk(tree) if isinstance(n, ast.Call)
            and (getattr(n.func, "attr", None) == name or getattr(n.func, "id", None) == name)]


def part(name: str) -> ast.AST:
    return ast.parse(part_files()[name].read_text())


def test_plugin_menu_works_with_several_layers_and_the_stop_window_has_a_parent() -> None:
    tree = ast.parse(PLUGIN_FILE.read_text())
    masks = [ast.unparse(c) for c in calls_in(tree, "set_sensitivity_mask")]
    assert any("DRAWABLES" in m and ".DRAWABLE " in m + " " for m in masks), masks
    stop = next(n for n in ast.walk(part("impasto_bridgecall.py")) if isinstance(n, ast.ClassDef)
                and n.name == "StopControls")
    assert calls_in(stop, "window_set_transient")  # GimpUi: above GIMP's window


def test_the_setup_dialog_never_probes_on_gtk_s_loop() -> None:
    """The dialog's `explain` runs on every field change in GTK's thread: it may only read
    the survey's answers (wait=False), never run the Python search or GPU detection."""
    tree = part("impasto_setupdialog.py")
    explain = next(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)
                   and n.name == "explain" and calls_in(n, "setup_plan"))
    (call,) = calls_in(explain, "setup_plan")
    assert any(k.arg == "wait" and getattr(k.value, "value", None) is False
               for k in call.keywords), ast.unparse(call)
    for forbidden in ("find_python", "choose_python", "detect_backend", "gather_facts"):
        assert not calls_in(explain, forbidden), forbidden
    assert calls_in(tree, "idle_add")  # answers come back through GTK's loop
