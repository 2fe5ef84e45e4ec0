"""The Neural Style dialog's option fields come from impasto.options alone: what
impasto.gimp.dialogfields generates beside the plug-in matches the options' ranges,
choices and defaults, runs on the standard library, and turns the dialog's values into
options the daemon accepts."""

from __future__ import annotations

import ast
import dataclasses
import sys

import pytest

from impasto.gimp import GENERATED, PARTS, PLUGIN_FILE, companion_texts, part_files
from impasto.gimp.dialogfields import dialog_fields, render
from impasto.options import FIELDS, EngineOptions

pytestmark = pytest.mark.windows_library


def generated() -> dict:
    ns: dict = {}
    exec(compile(render(), "impasto_fields.py", "exec"), ns)  # noqa: S102 - our own text
    return ns


def test_every_option_with_dialog_words_is_a_field_with_its_range_and_default() -> None:
    offered = {name for name, f in FIELDS.items() if f.metadata.get("gimp")}
    fields = {f["option"]: f for f in dialog_fields()}
    assert set(fields) == offered and {"preset", "strength", "seed"} <= offered
    strength = fields["strength"]
    assert strength["kind"] == "double" and strength["default"] == 100.0  # percent
    assert strength["max"] == 1000.0 and strength["min"] == 0.0
    seed = fields["seed"]
    assert seed["min"] == -1 and seed["default"] == -1 and seed["max"] == 2**31 - 1
    preset = fields["preset"]
    assert [c[0] for c in preset["choices"]] == list(FIELDS["preset"].metadata["choices"])
    assert preset["default"] == FIELDS["preset"].default
    colours = [c[0] for c in fields["preserve_colors"]["choices"]]
    assert colours == ["none", *FIELDS["preserve_colors"].metadata["choices"]]
    assert "512 px" in fields["size"]["help"] and "768 px" in fields["size"]["help"]


def test_the_generated_module_is_standard_library_and_its_values_are_accepted() -> None:
    text = render()
    tree = ast.parse(text)
    imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert imported <= set(sys.stdlib_module_names), imported
    ns = generated()
    defaults = {f["argument"]: f["default"] for f in ns["FIELDS"]}
    asked = ns["options_from"](defaults.get)
    # The dialog's defaults ask for the engine's defaults, and nothing unset is sent.
    assert EngineOptions.from_dict(asked) == EngineOptions()
    assert "seed" not in asked and "preserve_colors" not in asked and "size" not in asked
    # Every end of every range and every choice is something the daemon takes (size is
    # the plug-in's: 0 means automatic, and it sends at least 64).
    for f in ns["FIELDS"]:
        if f["option"] == "size":
            continue
        values = ([c[0] for c in f["choices"]] if f["kind"] == "choice"
                  else [f["min"], f["max"], f["default"]] if f["kind"] != "boolean"
                  else [True, False])
        for v in values:
            got = ns["options_from"](lambda a, f=f, v=v: v if a == f["argument"] else defaults[a])
            EngineOptions.from_dict(got)  # raises on anything the daemon refuses
    assert ns["options_from"](lambda a: {"strength": 250.0}.get(a, defaults[a]))["strength"] == 2.5


def test_the_plugin_names_no_option_field_itself() -> None:
    """A new option is an entry in options.py: no part of the plug-in spells out an option
    field (only Working size, whose 0 the plug-in turns into the layer's size, is read by
    name)."""
    names = {f["argument"] for f in dialog_fields()} - {"size", "preset"}
    for path in [PLUGIN_FILE, *part_files().values()]:
        strings = {n.value for n in ast.walk(ast.parse(path.read_text()))
                   if isinstance(n, ast.Constant) and isinstance(n.value, str)}
        assert not names & strings, (path.name, names & strings)
    assert set(GENERATED) | set(PARTS) <= set(companion_texts())


def test_a_new_option_with_dialog_words_becomes_a_field(monkeypatch: pytest.MonkeyPatch) -> None:
    """What a new option in options.py gets: its field, with no other edit."""
    from impasto import options

    extra = dataclasses.field(default=1.0, metadata={
        "help": "", "lo": 0.0, "hi": 4.0, "choices": None, "max_len": None, "expert": False,
        "gimp": options.DialogField("Brush scale (%)", "How large the brushwork is",
                                    scale=100.0, more=True)})
    extra.name = "style_scale"
    monkeypatch.setitem(options.FIELDS, "style_scale", extra)
    (field,) = [f for f in dialog_fields() if f["option"] == "style_scale"]
    assert field == {"argument": "style-scale", "option": "style_scale", "kind": "double",
                     "label": "Brush scale (%)", "help": "How large the brushwork is",
                     "unset": None, "more": True, "min": 0.0, "max": 400.0, "scale": 100.0,
                     "default": 100.0}
