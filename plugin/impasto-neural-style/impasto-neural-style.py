#!/usr/bin/env python3
"""impasto for GIMP 3: Filters > Artistic > Neural Style...

Sends the selected layer and a style to the impasto daemon and puts the result back as
a new layer directly above the source. Runs inside GIMP's own Python, which has no
pyzmq, numpy or torch: it imports only the standard library and gi, and reaches the
daemon through impasto's batch bridge, a program named in impasto-bridge.json beside
this file (written by `impasto gimp install`).
"""

import json
import os
import subprocess
import sys
import tempfile

import gi

gi.require_version("Gimp", "3.0")
gi.require_version("Gegl", "0.4")
from gi.repository import Gegl, Gimp, GLib, GObject  # noqa: E402

PROC = "plug-in-impasto-neural-style"
CONFIG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "impasto-bridge.json")
FMT = "R'G'B'A u8"  # 8-bit sRGB-encoded values, as stored; "RGBA u8" would be linear
# Labels for the choices impasto offers; the choices themselves, the ranges, defaults and
# help texts come from impasto's option metadata, written into the bridge config by
# `impasto gimp install` (dialog_spec below). These are only the words a person sees.
LABELS = {"draft": "Draft (fast)", "normal": "Normal", "best": "Best (slow)",
          "luminance": "Keep colours: luminance only", "histogram": "Keep colours: match histogram"}
# Used when the config is missing (the plug-in then reports that when run).
FALLBACK = {"preset": {"choices": ["draft", "normal", "best"], "default": "normal",
                       "help": "Speed or quality"},
            "strength": {"min": 0.0, "max": 100.0, "default": 1.0,
                         "help": "How strongly the style shows"},
            "size": {"min": 64, "max": 8192, "default": 512,
                     "help": "Long side in pixels while stylizing"},
            "preserve_colors": {"choices": ["luminance", "histogram"], "default": None,
                                "help": "Keep the layer's colours"},
            "seed": {"min": 0, "max": 2**31 - 1, "default": None, "help": "Random seed"}}
COLORS = (("none", "Use the style's colours"), ("luminance", "Keep colours: luminance only"),
          ("histogram", "Keep colours: match histogram"))


class PluginError(Exception):
    pass


def load_config():
    try:
        with open(CONFIG) as f:
            return json.load(f)
    except FileNotFoundError:
        raise PluginError(f"impasto is not set up for this GIMP: {CONFIG} is missing. Run "
                          "`impasto gimp install` (or `impasto gimp doctor`).") from None
    except ValueError as e:
        raise PluginError(f"{CONFIG} is damaged ({e}); run `impasto gimp install` again.") from None


def dialog_spec():
    """The dialog's option metadata from the bridge config (impasto's EngineOptions)."""
    try:
        spec = load_config().get("options") or {}
    except PluginError:
        spec = {}
    return {name: {**fallback, **(spec.get(name) or {})} for name, fallback in FALLBACK.items()}


def read_rgba(drawable):
    w, h = drawable.get_width(), drawable.get_height()
    rect = Gegl.Rectangle.new(0, 0, w, h)
    data = bytes(drawable.get_buffer().get(rect, 1.0, FMT, Gegl.AbyssPolicy.CLAMP))
    if len(data) != w * h * 4:
        raise PluginError(f"GIMP returned {len(data)} bytes for a {w}x{h} layer")
    return data, w, h


def check_source(image, drawables):
    if not drawables:
        raise PluginError("No layer is selected. Select the layer to stylize in the Layers dialog.")
    if len(drawables) > 1:
        raise PluginError(f"{len(drawables)} layers are selected; select exactly one.")
    layer = drawables[0]
    if not isinstance(layer, Gimp.Layer) or isinstance(layer, Gimp.LayerMask):
        raise PluginError("Select a layer (not a mask or channel) to stylize.")
    if layer.is_group():
        raise PluginError("A layer group is selected. Select a single layer, or merge the "
                          "group first (Layer > Merge Down).")
    if image.get_base_type() == Gimp.ImageBaseType.INDEXED:
        raise PluginError("Indexed images cannot hold the stylized colours. Convert the image "
                          "first: Image > Mode > RGB.")
    return layer


def run_bridge(cfg, request, tmpdir):
    """Runs the bridge; feeds GIMP's progress bar; returns its final event."""
    req_path = os.path.join(tmpdir, "request.json")
    with open(req_path, "w") as f:
        json.dump(request, f)
    command = list(cfg.get("bridge") or [])
    if not command:
        raise PluginError(f"{CONFIG} names no bridge program; run `impasto gimp install`.")
    env = dict(os.environ)
    env.update(cfg.get("env") or {})
    try:
        proc = subprocess.Popen(command + ["run", req_path], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                                universal_newlines=True)
    except OSError as e:
        raise PluginError(f"Cannot run impasto's bridge {command[0]}: {e.strerror}. Is impasto still installed "
                          "there? Run `impasto gimp install` again.") from None
    final = None
    for line in proc.stdout:
        try:
            ev = json.loads(line)
        except ValueError:
            continue
        kind = ev.get("event")
        if kind == "status":
            Gimp.progress_set_text(f"Neural style: {ev.get('text', '')}")
        elif kind == "accepted" and ev.get("position"):
            Gimp.progress_set_text(f"Neural style: waiting, {ev['position']} job(s) ahead")
        elif kind == "progress":
            total = max(1, int(ev.get("total", 1)))
            step = int(ev.get("step", 0))
            Gimp.progress_set_text(f"Neural style: step {step} of {total} (scale "
                f"{int(ev.get('scale', 0)) + 1} of {int(ev.get('scales', 1))})")
            Gimp.progress_update(min(1.0, step / total))
        elif kind in ("done", "error"):
            final = ev
    err = proc.stderr.read()
    proc.wait()
    if final is None:
        raise PluginError("impasto's bridge stopped without an answer "
                          f"(exit {proc.returncode}): {(err or '').strip()[-500:] or 'no output'}")
    if final["event"] == "error":
        raise PluginError(final.get("message") or final.get("code") or "unknown error")
    return final


def stylize(procedure, image, drawables, config):
    layer = check_source(image, drawables)
    cfg = load_config()
    style = (config.get_property("style") or "").strip()
    style_layer = config.get_property("style-layer")
    preset = config.get_property("preset")
    colors = config.get_property("preserve-colors")
    size = int(config.get_property("size"))
    seed = int(config.get_property("seed"))
    strength = float(config.get_property("strength"))

    Gimp.progress_init("Neural style: reading the layer")
    src, w, h = read_rgba(layer)
    with tempfile.TemporaryDirectory(prefix="impasto-gimp-") as tmp:
        content_path = os.path.join(tmp, "content.rgba")
        with open(content_path, "wb") as f:
            f.write(src)
        if style_layer is not None:
            sdata, sw, sh = read_rgba(style_layer)
            spath = os.path.join(tmp, "style.rgba")
            with open(spath, "wb") as f:
                f.write(sdata)
            style_spec = {"raw": spath, "width": sw, "height": sh}
            style_label = style_layer.get_name()
        elif style and (os.sep in style or os.path.isfile(style)):
            style_spec = {"path": style}
            style_label = os.path.splitext(os.path.basename(style))[0]
        elif style:
            style_spec = {"name": style}
            style_label = style
        else:
            raise PluginError("Choose a style: a name from impasto's style library, an image "
                              "file, or another layer.")
        options = {"preset": preset, "strength": strength / 100.0, "match_content_size": True,
                   # never upscale a small layer just to shrink the result again
                   "size": max(64, min(size, max(w, h)))}
        if colors != "none":
            options["preserve_colors"] = colors
        if seed >= 0:
            options["seed"] = seed
        request = {"address": cfg.get("address"), "timeout": cfg.get("timeout", 5.0),
                   "autostart": cfg.get("autostart"), "client": "gimp",
                   "content": {"path": content_path, "width": w, "height": h},
                   "styles": [style_spec], "options": options,
                   "output": os.path.join(tmp, "result.rgba")}
        done = run_bridge(cfg, request, tmp)
        if (done["width"], done["height"]) != (w, h):
            raise PluginError(f"the result is {done['width']}x{done['height']}, expected {w}x{h}")
        with open(done["output"], "rb") as f:
            out = bytearray(f.read())
    out[3::4] = src[3::4]  # the source's alpha, exactly

    image.undo_group_start()
    try:
        gray = image.get_base_type() == Gimp.ImageBaseType.GRAY
        new = Gimp.Layer.new(image, f"{style_label} (impasto, seed {done.get('seed')})",
                             w, h, Gimp.ImageType.GRAYA_IMAGE if gray else Gimp.ImageType.RGBA_IMAGE,
                             100.0, Gimp.LayerMode.NORMAL)
        # Same parent, same index: directly above the source.
        image.insert_layer(new, layer.get_parent(), image.get_item_position(layer))
        _, ox, oy = layer.get_offsets()
        new.set_offsets(ox, oy)
        buf = new.get_buffer()
        buf.set(Gegl.Rectangle.new(0, 0, w, h), FMT, bytes(out))
        buf.flush()
        new.update(0, 0, w, h)
        if not Gimp.Selection.is_empty(image):
            new.add_mask(new.create_mask(Gimp.AddMaskType.SELECTION))
        image.set_selected_layers([new])
    finally:
        image.undo_group_end()
    Gimp.progress_update(1.0)
    Gimp.progress_end()
    Gimp.displays_flush()
    return new


def run(procedure, run_mode, image, drawables, config, data):
    if run_mode == Gimp.RunMode.INTERACTIVE:
        gi.require_version("GimpUi", "3.0")
        from gi.repository import GimpUi

        GimpUi.init(PROC)
        dialog = GimpUi.ProcedureDialog.new(procedure, config, "Neural Style")
        dialog.fill(None)
        if not dialog.run():
            dialog.destroy()
            return procedure.new_return_values(Gimp.PDBStatusType.CANCEL, GLib.Error())
        dialog.destroy()
    try:
        new = stylize(procedure, image, drawables, config)
    except PluginError as e:
        Gimp.progress_end()
        return procedure.new_return_values(Gimp.PDBStatusType.EXECUTION_ERROR,
                                           GLib.Error(f"impasto: {e}"))
    return Gimp.ValueArray.new_from_values([
        GObject.Value(Gimp.PDBStatusType, Gimp.PDBStatusType.SUCCESS),
        GObject.Value(Gimp.Layer, new),
    ])


def choice(pairs):
    c = Gimp.Choice.new()
    for i, (nick, label) in enumerate(pairs):
        c.add(nick, i, label, "")
    return c


class NeuralStyle(Gimp.PlugIn):
    def do_set_i18n(self, name):
        return False

    def do_query_procedures(self):
        return [PROC]

    def do_create_procedure(self, name):
        p = Gimp.ImageProcedure.new(self, name, Gimp.PDBProcType.PLUGIN, run, None)
        p.set_image_types("RGB*, GRAY*")
        p.set_sensitivity_mask(Gimp.ProcedureSensitivityMask.DRAWABLE)
        p.set_menu_label("_Neural Style...")
        p.add_menu_path("<Image>/Filters/Artistic")
        p.set_documentation(
            "Paint the layer in the style of another image (Gatys et al.)",
            "Sends the layer to the impasto daemon and adds the stylized result as a new "
            "layer above it. Style: a name from impasto's library, an image file, or a layer.",
            name)
        p.set_attribution("impasto", "impasto", "2026")
        flags = GObject.ParamFlags.READWRITE
        p.add_string_argument("style", "Style", "Library style name or image file", "", flags)
        p.add_layer_argument("style-layer", "Style layer", "Use this layer as the style instead",
                             True, flags)
        spec = dialog_spec()
        pre, st, size, col, seed = (spec[k] for k in ("preset", "strength", "size",
                                                      "preserve_colors", "seed"))
        p.add_choice_argument("preset", "Quality", pre["help"],
                              choice([(c, LABELS.get(c, c)) for c in pre["choices"]]),
                              pre["default"], flags)
        # A percentage for people: 100% is impasto's default strength, whatever the
        # weights file; the dialog stops at 1000%, far past where results saturate.
        p.add_double_argument("strength", "Strength (%)", st["help"], 100.0 * float(st["min"]),
                              min(1000.0, 100.0 * float(st["max"])),
                              100.0 * float(st["default"]), flags)
        p.add_int_argument("size", "Working size", size["help"], int(size["min"]),
                           int(size["max"]), int(size["default"]), flags)
        p.add_choice_argument("preserve-colors", "Colours", col["help"],
                              choice([COLORS[0]] + [(c, LABELS.get(c, c)) for c in col["choices"]]),
                              "none", flags)
        p.add_int_argument("seed", "Seed", seed["help"] + " (-1: random)", -1,
                           min(int(seed["max"]), 2**31 - 1), -1, flags)
        p.add_layer_return_value("new-layer", "New layer", "The stylized layer", False, flags)
        return p


Gimp.main(NeuralStyle.__gtype__, sys.argv)
