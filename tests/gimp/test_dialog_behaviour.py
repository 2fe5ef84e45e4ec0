"""The Neural Style dialog's values behave (issue 37), in the real plug-in's dialog in a
real GIMP 3 on a virtual screen (tests/gimp/screens.py): each scene opens the dialog on
an image with layers "dots" (with a layer mask) and "Background" and a channel "sky",
its config set as an earlier run would have left it; impasto.gimp.dialogshot reports
what the dialog's widgets show and what the config holds, as it opens and after a person
clicks Clear, Reset > Reset to Initial Values and Reset > Reset to Factory Defaults
(through GIMP's own Reset button and its menu).

  - a style row from an earlier run is seen before OK: "More styles and areas" is open
    and its tab is marked " •"; with nothing in rows 2-4 and style 1 everywhere it stays
    closed and nothing is marked;
  - Reset to Factory Defaults empties what the dialog shows (the library entries, the
    pictures, the layer and area lists) and the config alike; Reset to Initial Values
    brings the earlier run's back;
  - Clear (sensitive only with a picture) removes the picture from the config and the
    chooser, and nothing else;
  - the layer, channel and layer-mask lists name the image's layers and channels.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.gimp.runner import gimp_root
from tests.gimp.screens import Scene, shoot, xvfb_command

ROOT = gimp_root()
pytestmark = [pytest.mark.gimp, pytest.mark.skipif(
    ROOT is None, reason="no GIMP 3: run tests/gimp/setup_gimp.sh (scripts/test does)")]

MARK = " \u2022"  # what a used style's tab label gets
STYLES = "More styles and areas"
SETTINGS = "More settings"
PICTURE = "stripes.png"  # made by the batch in its folder
LAYERS = ("dots", "Background")  # top first, as the Layers dialog and the lists show them
IMAGE = {"layers": LAYERS, "masks": ("dots",), "channels": ("sky",)}
FULL = {"style": "stripes", "style-file": {"file": PICTURE}, "style-layer": {"layer": "dots"},
        "style-2-layer": {"layer": "Background"}, "region-2": "channel",
        "region-2-channel": {"channel": "sky"}, "style-3": "waves", "region-3": "layer-mask",
        "region-3-layer": {"layer": "dots"}}
SCENES = {
    "fresh": Scene(**IMAGE),
    "style-1-only": Scene(**IMAGE, config={"style": "stripes", "style-file": {"file": PICTURE},
                                           "style-layer": {"layer": "dots"}}),
    "settings": Scene(**IMAGE, config={"style": "stripes", "seed": 7}),
    "style-2-name": Scene(**IMAGE, config={"style-2": "stripes"}),
    "style-2-layer": Scene(**IMAGE, config={"style-2-layer": {"layer": "dots"}}),
    "style-1-area": Scene(**IMAGE, config={"style": "stripes", "region": "channel",
                                           "region-channel": {"channel": "sky"}}),
    "full": Scene(**IMAGE, config=FULL),
}
# The Set Up Server dialog, as it opens (no actions): its four pickers are, in order,
# Install into, Python, Offline packages and Model file.
SETUP_SCENES = {
    "setup-default": Scene(dialog="setup"),
    "setup-remove": Scene(dialog="setup", config={"action": "uninstall"}),
    "setup-model-file": Scene(dialog="setup", config={"weights": "file"}),
}
ACTIONS = ["clear-picture", "initial-reset", "factory-reset"]
ROWS = ("Style", f"{STYLES} / Style 2", f"{STYLES} / Style 3", f"{STYLES} / Style 4")


@pytest.fixture(scope="module")
def scenes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    assert ROOT is not None
    if xvfb_command(ROOT) is None:
        pytest.skip("no Xvfb where GIMP runs: run tests/gimp/setup_gimp.sh (it installs xvfb)")
    out: Path = tmp_path_factory.mktemp("behaviour")
    # Nothing here is measured: a short settle is enough for the widgets to show values.
    results = shoot(out, root=ROOT, scenes=SCENES, actions=ACTIONS, settle=0.5)
    for name, info in results.items():
        assert "error" not in info, f"{name}: {info['error']}"
        assert "error" not in info["state"], f"{name}: {info['state']}"
    return results


def widget(state: dict, kind: str, place: str) -> dict:
    """The one widget of `kind` at `place` (tab marks left out of the place)."""
    found = [w for w in state[kind] if w["place"].replace(MARK, "") == place]
    assert len(found) == 1, (f"{len(found)} {kind} at {place!r}; there are: "
                             f"{[w['place'] for w in state[kind]]}")
    return found[0]


def expanded(state: dict, label: str) -> bool:
    found = [e for e in state["expanders"] if e["label"] == label]
    assert len(found) == 1, state["expanders"]
    return found[0]["expanded"]


def tabs(state: dict) -> list[str]:
    assert len(state["notebooks"]) == 1, state["notebooks"]
    return state["notebooks"][0]["tabs"]


def action(info: dict, name: str) -> dict:
    done = {a["action"]: a for a in info["actions"]}[name]
    assert "error" not in done, done
    assert done["done"], f"{name} was not done: {done}"
    return done


def item(value) -> str | None:
    """A config value's layer or channel name (None for none)."""
    return None if value is None else value["item"]


def picture_of(config_value) -> str | None:
    return None if config_value is None else Path(config_value["file"]).name


@pytest.mark.parametrize("name", ["style-2-name", "style-2-layer", "full"])
def test_a_style_row_from_an_earlier_run_is_open_and_marked_before_ok(scenes, name) -> None:
    state = scenes[name]["state"]  # as the dialog first appears
    assert expanded(state, STYLES), f"{STYLES!r} is closed though style 2 is set ({name})"
    labels = tabs(state)
    assert labels[0] == "Style 1" and labels[1] == f"Style 2{MARK}", labels
    assert labels[3] == "Style 4", labels
    assert labels[2] == ("Style 3" + (MARK if name == "full" else "")), labels
    if name == "style-2-name":
        assert widget(state, "entries", f"{STYLES} / Style 2 / From the library")["text"] \
            == "stripes"
    if name == "style-2-layer":
        assert widget(state, "combos", f"{STYLES} / Style 2 / Or a layer")["active"] == "dots"


@pytest.mark.parametrize("name", ["fresh", "style-1-only", "settings"])
def test_nothing_in_rows_2_to_4_leaves_the_styles_closed(scenes, name) -> None:
    state = scenes[name]["state"]
    assert not expanded(state, STYLES), f"{STYLES!r} opened with nothing in it ({name})"
    assert tabs(state) == ["Style 1", "Style 2", "Style 3", "Style 4"]
    # More settings opens for what an earlier run left there, and only then.
    assert expanded(state, SETTINGS) == (name == "settings")
    if name == "style-1-only":  # style 1 is shown at the top, where it was left
        assert widget(state, "entries", "Style / From the library")["text"] == "stripes"
        assert widget(state, "combos", "Style / Or a layer")["active"] == "dots"
        assert widget(state, "pictures", "Style / Or a picture")["file"].endswith(PICTURE)


def test_an_area_for_style_1_opens_the_styles_with_its_channel_shown(scenes) -> None:
    state = scenes["style-1-area"]["state"]
    assert expanded(state, STYLES)
    assert tabs(state)[1:] == ["Style 2", "Style 3", "Style 4"]
    where = widget(state, "combos", f"{STYLES} / Style 1 / Where")
    channel = widget(state, "combos", f"{STYLES} / Style 1 / Channel")
    mask = widget(state, "combos", f"{STYLES} / Style 1 / Layer mask of")
    assert where["active"] == "Inside a channel"
    assert channel["visible"] and channel["active"] == "sky"
    assert not mask["visible"]


def test_pickers_name_the_layers_and_channels(scenes) -> None:
    state = scenes["full"]["state"]
    for row in ROWS:  # every style's layer list: the image's layers by name, top first
        assert widget(state, "combos", f"{row} / Or a layer")["entries"] == ["(none)", *LAYERS]
    for k in range(1, 5):
        page = f"{STYLES} / Style {k}"
        assert widget(state, "combos", f"{page} / Channel")["entries"] == ["(none)", "sky"]
        # Only a layer with a layer mask can give an area.
        assert widget(state, "combos", f"{page} / Layer mask of")["entries"] == ["(none)", "dots"]
    # What the earlier run chose is shown by name, and an area's list only where chosen.
    assert widget(state, "combos", "Style / Or a layer")["active"] == "dots"
    assert widget(state, "combos", f"{STYLES} / Style 2 / Or a layer")["active"] == "Background"
    channel2 = widget(state, "combos", f"{STYLES} / Style 2 / Channel")
    assert channel2["visible"] and channel2["active"] == "sky"
    assert not widget(state, "combos", f"{STYLES} / Style 2 / Layer mask of")["visible"]
    mask3 = widget(state, "combos", f"{STYLES} / Style 3 / Layer mask of")
    assert mask3["visible"] and mask3["active"] == "dots"
    assert not widget(state, "combos", f"{STYLES} / Style 3 / Channel")["visible"]
    assert widget(state, "combos", f"{STYLES} / Style 3 / Where")["active"] \
        == "Inside a layer mask"


def test_clear_removes_the_picture_and_only_it(scenes) -> None:
    info = scenes["full"]
    before = info["state"]
    clear = widget(before, "buttons", "Style / Or a picture")
    assert clear["label"] == "Clear" and clear["sensitive"]
    assert picture_of(before["config"]["style-file"]) == PICTURE
    assert widget(before, "pictures", "Style / Or a picture")["file"].endswith(PICTURE)

    done = action(info, "clear-picture")
    assert done["place"] == "Style / Or a picture"
    after = done["state"]
    assert after["config"]["style-file"] is None
    chooser = widget(after, "pictures", "Style / Or a picture")
    assert chooser["file"] is None and chooser["shows"] == "(None)", chooser
    assert not widget(after, "buttons", "Style / Or a picture")["sensitive"]
    # The library name and the layer stay, in the config and on the screen.
    assert after["config"]["style"] == "stripes"
    assert item(after["config"]["style-layer"]) == "dots"
    assert widget(after, "entries", "Style / From the library")["text"] == "stripes"
    assert widget(after, "combos", "Style / Or a layer")["active"] == "dots"


def test_clear_is_not_sensitive_without_a_picture(scenes) -> None:
    state = scenes["fresh"]["state"]
    for row in ROWS:
        assert not widget(state, "buttons", f"{row} / Or a picture")["sensitive"], row
    assert scenes["fresh"]["actions"][0]["done"] is False  # nothing to click


def test_reset_to_initial_values_brings_the_earlier_run_back(scenes) -> None:
    after = action(scenes["full"], "initial-reset")["state"]
    assert picture_of(after["config"]["style-file"]) == PICTURE
    chooser = widget(after, "pictures", "Style / Or a picture")
    assert chooser["file"].endswith(PICTURE) and chooser["shows"] == PICTURE, chooser
    assert widget(after, "buttons", "Style / Or a picture")["sensitive"]
    assert tabs(after)[1:3] == [f"Style 2{MARK}", f"Style 3{MARK}"]


def test_factory_reset_clears_what_the_dialog_shows_and_the_config(scenes) -> None:
    info = scenes["full"]
    before = action(info, "initial-reset")["state"]  # everything the earlier run left
    assert before["config"]["style"] == "stripes"
    assert item(before["config"]["style-2-layer"]) == "Background"
    after = action(info, "factory-reset")["state"]
    config = after["config"]
    for k in range(1, 5):
        p = "" if k == 1 else f"-{k}"
        assert config[f"style{p}"] == "", k
        assert config[f"style{p}-file"] is None, k
        assert config[f"style{p}-layer"] is None, k
        assert config[f"region{p}"] == "everywhere", k
        assert config[f"region{p}-channel"] is None, k
        assert config[f"region{p}-layer"] is None, k
    assert config["seed"] == -1
    for row in ROWS:
        assert widget(after, "entries", f"{row} / From the library")["text"] == "", row
        chooser = widget(after, "pictures", f"{row} / Or a picture")
        assert chooser["file"] is None and chooser["shows"] == "(None)", (row, chooser)
        assert not widget(after, "buttons", f"{row} / Or a picture")["sensitive"], row
        assert widget(after, "combos", f"{row} / Or a layer")["active"] == "(none)", row
    for k in range(1, 5):
        page = f"{STYLES} / Style {k}"
        where = widget(after, "combos", f"{page} / Where")["active"]
        assert where == ("Everywhere" if k == 1 else "Everywhere else"), (k, where)
        for area in ("Channel", "Layer mask of"):
            shown = widget(after, "combos", f"{page} / {area}")
            assert shown["active"] == "(none)" and not shown["visible"], (k, area, shown)
    assert tabs(after) == ["Style 1", "Style 2", "Style 3", "Style 4"]


def test_set_up_greys_out_what_remove_and_the_model_do_not_use(
        tmp_path_factory: pytest.TempPathFactory) -> None:
    """Remove needs only the folder; the Model file picker only when Model asks for a
    file. The pickers are pickers (folders and files), the defaults said in the note."""
    assert ROOT is not None
    if xvfb_command(ROOT) is None:
        pytest.skip("no Xvfb where GIMP runs: run tests/gimp/setup_gimp.sh (it installs xvfb)")
    shots = shoot(tmp_path_factory.mktemp("setup"), root=ROOT, scenes=SETUP_SCENES,
                  settle=0.5)

    def sensitive(name: str) -> list[bool]:
        assert "error" not in shots[name], shots[name]
        pictures = shots[name]["state"]["pictures"]
        assert len(pictures) == 4, pictures
        return [p["sensitive"] for p in pictures]

    assert sensitive("setup-default") == [True, True, True, False]
    assert sensitive("setup-remove") == [True, False, False, False]
    assert sensitive("setup-model-file") == [True, True, True, True]
