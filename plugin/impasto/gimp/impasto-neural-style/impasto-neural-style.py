#!/usr/bin/env python3
"""impasto for GIMP 3: Filters > Artistic > Neural Style...

Sends the selected layers (each in turn) and a style to the impasto daemon and puts each
result back as a new layer directly above its source, with the source's mode, opacity,
mask and alpha, at the image's own precision. A live preview shows the image as it is
being optimised. Runs inside GIMP's own Python, which has no pyzmq, numpy or torch: it
imports only the standard library and gi, and reaches the daemon through impasto's
batch bridge, a program named in impasto-bridge.json beside this file (written by
`impasto gimp install`).

Stylize as animation: an image whose layers are the frames of an animation (GIMP's
convention: one top-level layer a frame, played from the bottom layer up, its timing in
its name, "Frame 1 (100ms)") is sent as one clip, each frame holding to the one before;
the result is a layer group on top with one stylized layer per frame, in the frames'
order, each named as its frame and at its frame's size and offsets.

This file registers the procedures and runs them; its parts sit beside it, each with one
job (impasto.gimp.PARTS): the dialog, the style rows, one layer, an animation, pixels in
and out of GIMP, the bridge, the set-up. impasto_fields.py, the dialog's option fields, is
generated from impasto's option metadata when the plug-in is installed or packaged.
"""

import os
import sys
import tempfile

import gi

gi.require_version("Gimp", "3.0")
from gi.repository import Gimp, GLib, GObject  # noqa: E402

# The parts and impasto's modules, copied beside this file by `impasto gimp install` (or
# unzipped with it): GIMP's Python cannot import impasto. Imported from this folder only,
# under names nothing else uses. A folder without them fails here, at GIMP's start, with
# the missing name in GIMP's error console: install or unzip again.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import impasto_dialogshot as dialogshot  # noqa: E402
import impasto_fields as fields  # noqa: E402
import impasto_setupdialog as setupdialog  # noqa: E402
import impasto_spawn as spawn  # noqa: E402
import impasto_stylerows as stylerows  # noqa: E402
from impasto_animation import stylize_animation  # noqa: E402
from impasto_bridgecall import StopControls  # noqa: E402
from impasto_common import (  # noqa: E402
    CONFIG,
    PROC,
    SETUP_PROC,
    TMP_PREFIX,
    Cancelled,
    PluginError,
    choice,
    load_config,
)
from impasto_layerio import check_sources  # noqa: E402
from impasto_still import stylize_layer  # noqa: E402


def failed(procedure, text):
    return procedure.new_return_values(Gimp.PDBStatusType.EXECUTION_ERROR,
                                       GLib.Error(f"impasto: {text}"))


def cancelled(procedure):
    return procedure.new_return_values(Gimp.PDBStatusType.CANCEL, GLib.Error())


def stylize(image, drawables, config, interactive=False, no_style=None):
    rows, note = stylerows.choose_styles(config, interactive, no_style)  # before any work
    if config.get_property("animation"):
        return stylize_animation(image, config, rows, note, interactive)
    layers = check_sources(image, drawables)
    cfg = load_config()
    spawn.remove_stale(tempfile.gettempdir(), TMP_PREFIX)
    controls = StopControls(interactive, "Neural Style")
    made = []
    try:
        for i, layer in enumerate(layers):
            label = f" ({i + 1} of {len(layers)})" if len(layers) > 1 else ""
            made.append(stylize_layer(image, layer, config, cfg, label, controls, rows,
                                      note if i == 0 else None))
            if controls.stop:
                break  # "stop and keep" ends the whole run, keeping what is done
    finally:
        controls.close()
        Gimp.progress_end()
    if made:
        image.set_selected_layers(made)
    Gimp.displays_flush()
    return made


def has_display():
    """Whether a dialog can open: always on Windows and macOS; on X11 or Wayland only
    with a display named (batch mode and scripts have none)."""
    if sys.platform in ("win32", "darwin"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def ask(procedure, config, image):
    """The dialog, until OK with a style or Cancel; True for OK."""
    gi.require_version("GimpUi", "3.0")
    import impasto_dialog as dialogs
    from gi.repository import GimpUi

    GimpUi.init(PROC)
    dialog, warning = dialogs.build(procedure, config, image)
    if dialogshot.capture(dialog, "neural-style"):
        dialog.destroy()
        return False
    # OK without a style keeps the dialog open and says what is missing, rather than
    # closing it and failing afterwards.
    while True:
        if not dialog.run():
            dialog.destroy()
            return False
        try:
            stylerows.choose_styles(config, interactive=True)
            break
        except PluginError as e:
            warning.set_markup(f"<b>{GLib.markup_escape_text(str(e))}</b>")
            warning.show()
    dialog.destroy()
    return True


def run(procedure, run_mode, image, drawables, config, data):
    interactive = run_mode == Gimp.RunMode.INTERACTIVE
    no_style = None
    if run_mode == Gimp.RunMode.WITH_LAST_VALS:
        # Filters > Repeat with nothing saved: the dialog where one can open, else an
        # artist's words for what is missing.
        try:
            stylerows.choose_styles(config)
        except PluginError:
            interactive = has_display()
            no_style = stylerows.NO_STYLE_REPEAT
    # A server whose base Python is gone (updated, removed) cannot start: said, and
    # interactively the set-up is offered to repair it.
    broken = os.path.exists(CONFIG) and setupdialog.server_problem()
    if broken and not interactive:
        return failed(procedure, broken)
    if interactive and (broken or not os.path.exists(CONFIG)):
        Gimp.message(f"impasto: {broken}." if broken else "impasto has no server on this "
                     "computer yet. The set-up installs one (a private Python with PyTorch); "
                     "it runs once and takes a few minutes.")
        if not setupdialog.offer_setup(image):
            return cancelled(procedure)
    if interactive and not ask(procedure, config, image):
        return cancelled(procedure)
    # Nothing is marked changed when nothing changed (a cancel, a failure): the live
    # preview's layer comes and goes with undo frozen, but it still dirties the image.
    was_dirty = image.is_dirty()
    made = []
    try:
        made = stylize(image, drawables, config, interactive, no_style)
    except Cancelled:
        return cancelled(procedure)
    except PluginError as e:
        return failed(procedure, e)
    finally:
        if not made and not was_dirty:
            image.clean_all()
    if not made:
        return cancelled(procedure)
    return Gimp.ValueArray.new_from_values([
        GObject.Value(Gimp.PDBStatusType, Gimp.PDBStatusType.SUCCESS),
        GObject.Value(Gimp.Layer, made[0]),
    ])


def add_option_arguments(p, flags):
    """The dialog's option fields, as impasto_fields (from impasto.options) says."""
    for f in fields.FIELDS:
        name, label, help_ = f["argument"], f["label"], f["help"]
        if f["kind"] == "choice":
            p.add_choice_argument(name, label, help_, choice(f["choices"]), f["default"], flags)
        elif f["kind"] == "double":
            p.add_double_argument(name, label, help_, f["min"], f["max"], f["default"], flags)
        elif f["kind"] == "int":
            p.add_int_argument(name, label, help_, f["min"], f["max"], f["default"], flags)
        else:
            p.add_boolean_argument(name, label, help_, f["default"], flags)


class NeuralStyle(Gimp.PlugIn):
    def do_set_i18n(self, name):
        return False

    def do_query_procedures(self):
        return [PROC, SETUP_PROC]

    def do_create_procedure(self, name):
        if name == SETUP_PROC:
            return self.create_setup(name)
        p = Gimp.ImageProcedure.new(self, name, Gimp.PDBProcType.PLUGIN, run, None)
        p.set_image_types("RGB*, GRAY*")
        # DRAWABLES too: with several layers selected the menu stays (each is stylized).
        p.set_sensitivity_mask(Gimp.ProcedureSensitivityMask.DRAWABLE
                               | Gimp.ProcedureSensitivityMask.DRAWABLES)
        p.set_menu_label("_Neural Style...")
        p.add_menu_path("<Image>/Filters/Artistic")
        p.set_documentation(
            "Paint the layer in the look of another picture",
            "Paints each selected layer (or the selected area of it) in the look of a style "
            "picture: its brushwork, texture and colours. The result is a new layer above "
            "the source, with the source's mode, opacity, mask and alpha. The style: one from "
            "impasto's style library, a picture file, or another layer of this image. Stylize "
            "as animation paints every layer of the image as the frames of one animation, "
            "into a new layer group.",
            name)
        p.set_attribution("impasto", "impasto", "2026")
        flags = GObject.ParamFlags.READWRITE
        # Every label and help text in an artist's words (what it does to the picture),
        # none in the engine's: a test keeps a list of words that must not appear here.
        for k in range(1, stylerows.ROWS + 1):
            stylerows.add_row_arguments(p, k, flags)
        add_option_arguments(p, flags)
        text = stylerows.TEXT
        p.add_boolean_argument("animation", text["animation"][0], text["animation"][1], False,
                               flags)
        p.add_double_argument("stop-after", text["stop-after"][0], text["stop-after"][1],
                              0.0, 86400.0, 0.0, flags)
        p.add_layer_return_value("new-layer", "New layer", "The first stylized layer", False, flags)
        return p

    def create_setup(self, name):
        # An image procedure that needs no image: GIMP's menus hold it with or without one.
        p = Gimp.ImageProcedure.new(self, name, Gimp.PDBProcType.PLUGIN, setupdialog.run_setup,
                                    None)
        p.set_sensitivity_mask(Gimp.ProcedureSensitivityMask.ALWAYS)
        p.set_menu_label("Neural Style: _Set Up Server...")
        p.add_menu_path("<Image>/Filters/Artistic")
        p.set_documentation(
            "Install (or repair, or remove) the server that paints for Neural Style",
            "Makes a private Python environment with PyTorch for this computer's graphics "
            "card and impasto in it, from the impasto package beside this plug-in, then "
            "connects the plug-in to it. Runs once; the log file is named on the progress "
            "bar and in the message at the end.", name)
        p.set_attribution("impasto", "impasto", "2026")
        setupdialog.add_arguments(p)
        return p


Gimp.main(NeuralStyle.__gtype__, sys.argv)
