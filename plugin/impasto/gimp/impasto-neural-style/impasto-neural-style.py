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
"""

import contextlib
import json
import math
import os
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

import gi

gi.require_version("Gimp", "3.0")
gi.require_version("Gegl", "0.4")
gi.require_version("Babl", "0.1")
from gi.repository import Babl, Gegl, Gimp, GLib, GObject  # noqa: E402

# impasto's event module (impasto.events), copied beside this file by `impasto gimp
# install`: GIMP's Python cannot import impasto, and the bridge's lines are that typed
# stream. Imported from this folder only, under a name nothing else uses.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
# With it: pipes read on threads (Windows' select refuses pipes); children without consoles.
try:
    import impasto_events as events  # noqa: E402
    import impasto_pipes as pipes  # noqa: E402
    import impasto_pixels as pixels  # noqa: E402
    import impasto_spawn as spawn  # noqa: E402
except ImportError:
    events = pipes = pixels = spawn = None  # reported when the plug-in runs: install again

PROC = "plug-in-impasto-neural-style"
SETUP_PROC = "plug-in-impasto-setup"
HERE = os.path.dirname(os.path.abspath(__file__))
CONFIG = os.path.join(HERE, "impasto-bridge.json")
FMT = "R'G'B'A u8"  # 8-bit sRGB-encoded values, as stored; "RGBA u8" would be linear
TMP_PREFIX = "impasto-gimp-"
# Context the network needs around a selection, in pixels at the working size: a
# stylized pixel depends on its neighbourhood (VGG's deep layers see far), so the box
# sent is the selection's plus this much on every side, where the layer has it.
CONTEXT_PX = 32
# Live preview: its long side and the least time between two updates (redrawing a large
# layer costs GIMP time; about one a second keeps it responsive).
PREVIEW = {"max_side": 384, "interval_s": 1.0}
# Labels for the choices impasto offers; the choices themselves, the ranges, defaults and
# help texts come from impasto's option metadata, written into the bridge config by
# `impasto gimp install` (dialog_spec below). These are only the words a person sees.
LABELS = {"draft": "Draft (fast)", "normal": "Normal", "best": "Best (slow)"}
# The dialog's labels and help texts (GIMP shows the help as the field's tooltip).
TEXT = {
    "style": ("Style from the library",
              "The name of a style in impasto's style library, or the path of a picture file: "
              "its look is painted onto the layer"),
    "style-file": ("Style picture",
                   "A picture file whose look (brushwork, texture, colours) is painted onto the "
                   "layer"),
    "style-layer": ("Style layer",
                    "Another layer of this image whose look is painted onto the layer; used "
                    "instead of a library style or a picture file when both are given (a "
                    "message then says so)"),
    "preset": ("Quality",
               "Draft is quick, for trying ideas; Best takes longest and paints the finest "
               "detail; Normal is in between"),
    "strength": ("Style strength (%)",
                 "How strongly the style shows: 100% is the usual amount, 50% half as much, "
                 "200% twice as much"),
    "size": ("Working size (px, 0 = automatic)", ""),  # help: size_blurb()
    "preserve-colors": ("Colours",
                        "Take the style's colours, or keep this layer's own colours and take "
                        "only the style's brushwork and texture"),
    "seed": ("Variation",
             "Each number gives a different variation of the same look, and the same number "
             "the same picture again; -1 picks one at random (the new layer's name says which)"),
    "region": ("Where",
               "Where this style paints: everywhere (or wherever no other style has an area), "
               "inside the selection, or inside a channel or a layer mask you painted; soft "
               "edges blend the styles"),
    "region-channel": ("Area channel", "The channel (Channels dialog) that marks where this "
                       "style paints: white paints, black does not, grey in between"),
    "region-layer": ("Area from this layer's mask", "A layer whose layer mask marks where this "
                     "style paints"),
    "animation": ("Stylize as animation",
                  "For an image whose layers are the frames of an animation: paint every frame, "
                  "one after the other, so that the look flows from frame to frame instead of "
                  "flickering. The result is a new layer group with one painted layer per "
                  "frame, in the same order, each with its frame's name and timing"),
    "stop-after": ("Stop after (seconds)",
                   "For scripts: stop after this many seconds and keep the picture as it is "
                   "then (0 = let it finish)"),
}


def size_blurb(caps):
    """Working size's help, with what 0 means spelled out in pixels."""
    small = caps.get("normal", caps.get("draft", 512))
    best = caps.get("best", 768)
    return ("How large the picture is painted, in pixels along its longer side: larger shows "
            "finer brushwork but takes longer; the result always has the layer's own size. "
            f"0 = the layer's own size, but at most {small} px for Draft and Normal and "
            f"{best} px for Best.")


# Used when the config is missing (the plug-in then reports that when run).
FALLBACK = {"preset": {"choices": ["draft", "normal", "best"], "default": "normal",
                       "help": "Speed or quality"},
            "strength": {"min": 0.0, "max": 100.0, "default": 1.0,
                         "help": "How strongly the style shows"},
            "size": {"min": 64, "max": 8192, "default": 512,
                     "help": "Long side in pixels while stylizing"},
            "preset_sizes": {"draft": 512, "normal": 512, "best": 768},
            "preserve_colors": {"choices": ["luminance", "histogram"], "default": None,
                                "help": "Keep the layer's colours"},
            "seed": {"min": 0, "max": 2**31 - 1, "default": None, "help": "Random seed"}}
# Style rows: the first is the style above; more rows each take a style and an area, so
# an artist paints "sky in this style, water in that one" with GIMP's own tools.
ROWS = 4
REGIONS = (("everywhere", "Everywhere else"),
           ("selection", "Inside the selection"),
           ("channel", "Inside a channel"),
           ("layer-mask", "Inside a layer mask"))
COLORS = (("none", "Take the style's colours"),
          ("luminance", "Keep this layer's colours (style's light and shade)"),
          ("histogram", "Recolour the style with this layer's colours"))


class PluginError(Exception):
    pass


class Cancelled(Exception):
    """The user cancelled: nothing is left in the image."""


def trace(**event):
    """With IMPASTO_GIMP_TRACE set to a file, one JSON line per preview and result: what
    a script or test can check of a run that happens inside GIMP."""
    path = os.environ.get("IMPASTO_GIMP_TRACE")
    if path:
        with open(path, "a") as f:
            f.write(json.dumps(event) + "\n")


def load_config():
    try:
        with open(CONFIG) as f:
            return json.load(f)
    except FileNotFoundError:
        raise PluginError("impasto has no server yet: choose Filters > Artistic > Neural Style: "
                          f"Set Up Server... (procedure {SETUP_PROC}), or run `impasto gimp "
                          f"install` where impasto is installed ({CONFIG} is missing).") from None
    except ValueError as e:
        raise PluginError(f"{CONFIG} is damaged ({e}); run `impasto gimp install` again.") from None


def dialog_spec():
    """The dialog's option metadata from the bridge config (impasto's EngineOptions)."""
    try:
        spec = load_config().get("options") or {}
    except PluginError:
        spec = {}
    out = {}
    for name, fallback in FALLBACK.items():
        given = spec.get(name) or {}
        out[name] = {**fallback, **given} if isinstance(given, dict) else fallback
    return out


# --- pixels ---------------------------------------------------------------------------
def read_rgba(drawable):
    """8-bit sRGB RGBA: for style layers, where 8 bits carry all the network uses."""
    w, h = drawable.get_width(), drawable.get_height()
    rect = Gegl.Rectangle.new(0, 0, w, h)
    data = bytes(drawable.get_buffer().get(rect, 1.0, FMT, Gegl.AbyssPolicy.CLAMP))
    if len(data) != w * h * 4:
        raise PluginError(f"GIMP returned {len(data)} bytes for a {w}x{h} layer")
    return data, w, h


def rgb_float_format(layer):
    """Float R'G'B' in the layer's own colour space (its image's profile): Babl names a
    format with a space, and GEGL takes that name. Colours outside sRGB then arrive as
    they are, not clipped; grey images are read as sRGB-encoded RGB."""
    fmt = layer.get_format()
    space = Babl.format_get_space(fmt)
    if Babl.space_is_gray(space) or Babl.space_is_cmyk(space):
        return "R'G'B' float"
    return Babl.get_name(Babl.format_with_space("R'G'B' float", fmt))


def read_rgb_float(layer, box):
    x, y, w, h = box
    data = bytes(layer.get_buffer().get(Gegl.Rectangle.new(x, y, w, h), 1.0,
                                        rgb_float_format(layer), Gegl.AbyssPolicy.CLAMP))
    if len(data) != w * h * 12:
        raise PluginError(f"GIMP returned {len(data)} bytes for a {w}x{h} area")
    return data


def write_result(layer, new, box, rgb):
    """Writes float RGB into `new` (a copy of `layer`) inside box, then puts the source's
    alpha back byte for byte in the layer's own encoding, so that it is exact at every
    precision (a float round trip is not, at 32-bit integer)."""
    x, y, w, h = box
    rect = Gegl.Rectangle.new(x, y, w, h)
    buf = new.get_buffer()
    buf.set(rect, rgb_float_format(layer), rgb)
    if layer.has_alpha():
        fmt = layer.get_format()
        native = Babl.get_name(fmt)
        bpp = Babl.format_get_bytes_per_pixel(fmt)
        comps = Babl.format_get_n_components(fmt)
        size = bpp // comps
        src = bytes(layer.get_buffer().get(rect, 1.0, native, Gegl.AbyssPolicy.CLAMP))
        out = bytearray(buf.get(rect, 1.0, native, Gegl.AbyssPolicy.CLAMP))
        first = (comps - 1) * size  # alpha is the last component
        for b in range(first, first + size):
            out[b::bpp] = src[b::bpp]
        buf.set(rect, native, bytes(out))
    buf.flush()
    new.update(x, y, w, h)


# --- what to stylize ------------------------------------------------------------------
def check_sources(image, drawables):
    if not drawables:
        raise PluginError("No layer is selected. Select the layer to stylize in the Layers dialog.")
    if image.get_base_type() == Gimp.ImageBaseType.INDEXED:
        raise PluginError("Indexed images cannot hold the stylized colours. Convert the image "
                          "first: Image > Mode > RGB.")
    layers = []
    for d in drawables:
        if not isinstance(d, Gimp.Layer) or isinstance(d, Gimp.LayerMask):
            raise PluginError("Select a layer (not a mask or channel) to stylize.")
        if d.is_group():
            raise PluginError(f"'{d.get_name()}' is a layer group. Select a layer inside it, or "
                              "merge the group first (Layer > Merge Layer Group).")
        layers.append(d)
    return layers


def work_box(image, layer, long_side, selection_is_area=False):
    """What to send for one layer: (box in layer pixels, working long side of the box,
    whether a selection applies). With a selection, the selection's bounding box on
    the layer plus the context the network needs; else the whole layer. The box is
    stylized at the scale the whole layer would be, so a small selection costs little.
    When a style row's area is the selection, the selection marks that style's area
    and the whole layer is stylized."""
    w, h = layer.get_width(), layer.get_height()
    scale = min(1.0, long_side / max(w, h))
    if selection_is_area:
        if Gimp.Selection.is_empty(image):
            raise PluginError("A style's area is 'Inside the selection', but nothing is "
                              "selected. Select where that style goes first.")
        return (0, 0, w, h), max(1, round(max(w, h) * scale)), False
    if Gimp.Selection.is_empty(image):
        return (0, 0, w, h), max(1, round(max(w, h) * scale)), False
    _, _, x1, y1, x2, y2 = Gimp.Selection.bounds(image)
    _, ox, oy = layer.get_offsets()
    x1, x2 = max(x1 - ox, 0), min(x2 - ox, w)
    y1, y2 = max(y1 - oy, 0), min(y2 - oy, h)
    if x1 >= x2 or y1 >= y2:
        raise PluginError(f"The selection does not touch layer '{layer.get_name()}'. Select an "
                          "area on it, or choose Select > None to stylize the whole layer.")
    margin = math.ceil(CONTEXT_PX / scale)
    x1, y1 = max(0, x1 - margin), max(0, y1 - margin)
    x2, y2 = min(w, x2 + margin), min(h, y2 + margin)
    bw, bh = x2 - x1, y2 - y1
    return (x1, y1, bw, bh), max(1, round(max(bw, bh) * scale)), True


# --- the live preview -----------------------------------------------------------------
class Preview:
    """A temporary layer above the source that shows the image as it is optimised. Undo
    is frozen while it exists, so the undo history never holds it; close() removes it,
    on every path, before the result (or nothing) goes in."""

    def __init__(self, image, layer, box):
        self.image, self.layer, self.box = image, layer, box
        self.shown = None
        self.frozen = False
        self.count = 0
        self.started = time.monotonic()

    def show(self, path, pw, ph, step):
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError:
            return
        if len(data) != pw * ph * 4:
            return
        if not self.frozen:
            self.image.undo_freeze()
            self.frozen = True
        if self.shown is not None:
            self.image.remove_layer(self.shown)
            self.shown = None
        gray = self.image.get_base_type() == Gimp.ImageBaseType.GRAY
        lay = Gimp.Layer.new(self.image, f"{self.layer.get_name()} (impasto preview)", pw, ph,
                             Gimp.ImageType.GRAYA_IMAGE if gray else Gimp.ImageType.RGBA_IMAGE,
                             self.layer.get_opacity(), self.layer.get_mode())
        self.image.insert_layer(lay, self.layer.get_parent(), self.image.get_item_position(self.layer))
        buf = lay.get_buffer()
        buf.set(Gegl.Rectangle.new(0, 0, pw, ph), FMT, data)
        buf.flush()
        x, y, w, h = self.box
        if (pw, ph) != (w, h):
            lay.scale(w, h, False)
        _, ox, oy = self.layer.get_offsets()
        lay.set_offsets(ox + x, oy + y)
        self.shown = lay
        self.count += 1
        Gimp.displays_flush()
        if os.environ.get("IMPASTO_GIMP_TRACE"):
            shown = bytes(lay.get_buffer().get(Gegl.Rectangle.new(0, 0, w, h), 1.0, FMT,
                                               Gegl.AbyssPolicy.CLAMP))
            trace(event="preview", layer=self.layer.get_name(), step=step, width=pw, height=ph,
                  t=round(time.monotonic() - self.started, 3),
                  shown=[lay.get_width(), lay.get_height()], crc=zlib.crc32(shown),
                  layers=len(self.image.get_layers()))

    def close(self):
        if self.shown is not None:
            self.image.remove_layer(self.shown)
            self.shown = None
        if self.frozen:
            self.image.undo_thaw()
            self.frozen = False
        Gimp.displays_flush()


class StopControls:
    """In the interactive dialog's place while a run goes on: Stop (keep the image as it
    stands) and Cancel (keep nothing). Without a display (scripts, batch mode) it is
    absent and a run is stopped by its `stop-after` time."""

    def __init__(self, interactive, title):
        self.stop = self.cancel = False
        self.dialog = None
        if not interactive:
            return
        try:
            gi.require_version("Gtk", "3.0")
            from gi.repository import Gtk
        except (ImportError, ValueError):
            return
        self.gtk = Gtk
        d = Gtk.Dialog(title=title)
        d.add_button("_Cancel", 2)
        d.add_button("_Stop and keep", 1)
        label = Gtk.Label(label="Stylizing: the new layer updates as it goes.\n"
                          "Stop and keep: keep the image as it is now.\nCancel: keep nothing.")
        d.get_content_area().pack_start(label, True, True, 8)
        d.connect("response", self._response)
        with contextlib.suppress(ImportError, ValueError, AttributeError):
            gi.require_version("GimpUi", "3.0")
            from gi.repository import GimpUi

            GimpUi.window_set_transient(d)  # above GIMP's window, never behind it
        d.show_all()
        self.dialog = d

    def _response(self, _dialog, response):
        if response == 1:
            self.stop = True
        else:
            self.cancel = True

    def pump(self):
        if self.dialog is not None:
            while self.gtk.events_pending():
                self.gtk.main_iteration()

    def close(self):
        if self.dialog is not None:
            self.dialog.destroy()
            self.pump()
            self.dialog = None


# --- setting up the server -----------------------------------------------------------
# The archive carries impasto_serversetup.py (impasto.gimp.serversetup, standard library
# only) and impasto's wheel beside this file: the set-up makes a Python environment with
# the torch that fits this machine, installs the wheel into it, then has that environment
# write the bridge config (`impasto gimp install --plugin-dir` this folder).
SETUP_TEXT = {
    "action": ("Action", "Set up impasto's server (again, to repair it), or remove it"),
    "backend": ("Graphics", "Which processor paints: Automatic picks the graphics card this "
                "computer has; CPU works everywhere, only slower"),
    "folder": ("Install into", "Folder for the server (a private Python with PyTorch, 0.3 to "
               "5 GB); empty = your user data folder"),
    "python": ("Python", "A Python 3.11 or newer to build the server with; empty = found "
               "automatically"),
    "wheels": ("Offline packages", "For computers without internet: a folder holding every "
               "package file the server needs; empty = download them"),
    "weights": ("Model", "auto: ImageNet VGG19, from the package the set-up installs (no "
                "download); or the path of a VGG19 weights file you have; random makes test "
                "patterns, not art"),
}
SETUP_ACTIONS = (("install", "Set up or repair"), ("uninstall", "Remove"))
BACKENDS = (("auto", "Automatic"), ("cuda", "NVIDIA graphics (CUDA)"),
            ("rocm", "AMD graphics (ROCm, Linux)"), ("xpu", "Intel graphics (XPU)"),
            ("mps", "Apple graphics (Apple Silicon)"), ("cpu", "CPU only"))


def setup_module():
    try:
        import impasto_serversetup as ss
    except ImportError:
        raise PluginError("impasto_serversetup.py is missing beside the plug-in: unzip the "
                          "impasto-gimp archive into GIMP's plug-ins folder again.") from None
    return ss


def setup_plan(config, survey=None, wait=True):
    """What the set-up would do with these settings: (module, plan or None, words). The
    slow questions (graphics card, Pythons: probes of up to a minute) go to `survey`,
    asked once each on a thread; without `wait`, words say it is still looking."""
    ss = setup_module()
    survey = survey or ss.pythons.Survey()
    venv = Path(config.get_property("folder") or ss.default_venv())
    if config.get_property("action") == "uninstall":
        return ss, None, f"Removes the server in {venv}."
    python = config.get_property("python") or None
    wheels = config.get_property("wheels") or None
    facts = survey.ask("facts", ss.gather_facts, wait)
    found = survey.ask(("python", python, bool(wheels)),
                       lambda: ss.choose_python(python, bool(wheels)), wait)
    if facts is None or found is None:
        return ss, None, "Looking at this computer: its graphics card and its Python..."
    for ok, answer in (facts, found):
        if not ok:
            raise PluginError(str(answer))
    backend, why = config.get_property("backend"), ""
    if backend == "auto":
        backend, why = ss.choose_backend(facts[1])
        why = f" ({why})"
    try:
        plan = ss.make_plan(venv, backend, ss.default_package(Path(ss.__file__)), found[1],
                            Path(wheels) if wheels else None, cuda=ss.cuda_for(facts[1]))
        ss.check_plan(plan)
    except ss.SetupError as e:
        raise PluginError(str(e)) from None
    size = (f"downloads about {plan.download_mb} MB" if plan.download_mb
            else f"installs from {wheels} only")
    base = " with its own Python (none here can be trusted)" if plan.uv else ""
    return ss, plan, (f"{backend.upper()}{why}: {size} into {venv}{base}. "
                      f"The log is {venv.parent / 'setup.log'}.")


def server_setup(config, survey=None):
    """Runs the set-up (or removal) the settings say, with GIMP's progress bar."""
    ss, plan, words = setup_plan(config, survey)
    if plan is None:
        venv = Path(config.get_property("folder") or ss.default_venv())
        gone = ss.uninstall(venv)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(CONFIG)  # without it, the plug-in offers the set-up again
        tell(f"impasto: removed the server in {venv}." if gone else
             f"impasto: no server to remove in {venv}; the plug-in is disconnected.")
        return
    log = plan.venv.parent / "setup.log"
    Gimp.progress_init(f"Setting up impasto: {words}")

    def progress(i, n, what):
        Gimp.progress_update(i / n)
        Gimp.progress_set_text(f"impasto set-up, {min(i + 1, n)} of {n}: {what}")
        trace(event="setup", step=i, total=n, text=what)

    try:
        exe = ss.run_plan(plan, log, progress, pulse=Gimp.progress_pulse)
        ss.connect_plugin(exe, Path(HERE), config.get_property("weights") or "auto", log)
    except ss.SetupError as e:
        raise PluginError(str(e)) from None
    except OSError as e:  # a folder it cannot make, a full disk: the reason, not a traceback
        raise PluginError(f"the set-up stopped: {e}. Log: {log}") from None
    finally:
        Gimp.progress_end()
    tell(f"impasto is set up ({plan.source.backend}): Filters > Artistic > Neural Style... "
         f"now paints with it. Log: {log}")


def run_setup(procedure, run_mode, image, drawables, config, data):
    if run_mode == Gimp.RunMode.INTERACTIVE:
        gi.require_version("GimpUi", "3.0")
        from gi.repository import GimpUi

        GimpUi.init(SETUP_PROC)
        dialog = GimpUi.ProcedureDialog.new(procedure, config, "Set up impasto")
        dialog.fill(["action", "backend", "folder", "python", "wheels", "weights"])
        gi.require_version("Gtk", "3.0")
        from gi.repository import Gtk

        note = Gtk.Label(label="", xalign=0.0)
        note.set_line_wrap(True)
        note.set_max_width_chars(60)
        dialog.get_content_area().pack_end(note, False, False, 4)

        def explain(*_args):
            try:
                note.set_text(setup_plan(config, survey, wait=False)[2])
            except PluginError as e:
                note.set_text(str(e))
            return False  # as an idle callback: once

        # The Python search and GPU detection run once each, on a thread; the answer
        # comes back to GTK's loop through GLib.idle_add.
        try:
            survey = setup_module().pythons.Survey(lambda: GLib.idle_add(explain))
        except PluginError as e:
            return procedure.new_return_values(Gimp.PDBStatusType.EXECUTION_ERROR,
                                               GLib.Error(f"impasto: {e}"))
        config.connect("notify", explain)
        explain()
        note.show()
        ok = dialog.run()
        dialog.destroy()
        if not ok:
            return procedure.new_return_values(Gimp.PDBStatusType.CANCEL, GLib.Error())
    else:
        survey = None
    try:
        server_setup(config, survey)
    except PluginError as e:
        return procedure.new_return_values(Gimp.PDBStatusType.EXECUTION_ERROR,
                                           GLib.Error(f"impasto: {e}"))
    return procedure.new_return_values(Gimp.PDBStatusType.SUCCESS, None)


def server_problem():
    """Why the configured server cannot start (its base Python is gone), or None."""
    try:
        return setup_module().server_problem(str((load_config().get("bridge") or [""])[0]))
    except (PluginError, OSError, TypeError, AttributeError):
        return None


def offer_setup(image):
    """Interactive runs with no server: open the set-up dialog; True once one is set up."""
    proc = Gimp.get_pdb().lookup_procedure(SETUP_PROC)
    cfg = proc.create_config()
    cfg.set_property("run-mode", Gimp.RunMode.INTERACTIVE)
    cfg.set_property("image", image)
    result = proc.run(cfg)
    return result.index(0) == Gimp.PDBStatusType.SUCCESS and os.path.exists(CONFIG)


# --- the bridge -----------------------------------------------------------------------
def run_bridge(cfg, request, tmpdir, label, preview=None, controls=None, stop_after=0.0,
               on_frame=None):
    """Runs the bridge; feeds GIMP's progress bar and the preview; returns its final
    event. An animation's frames are handed to on_frame as they are done. Raises
    Cancelled when the user cancels."""
    req_path = os.path.join(tmpdir, "request.json")
    with open(req_path, "w") as f:
        json.dump(request, f)
    command = list(cfg.get("bridge") or [])
    if not command:
        raise PluginError(f"{CONFIG} names no bridge program; run `impasto gimp install`.")
    env = dict(os.environ)
    env.update(cfg.get("env") or {})
    err_path = os.path.join(tmpdir, "bridge.err")
    try:
        with open(err_path, "wb") as err_file:
            proc = subprocess.Popen(command + ["run", req_path], stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE, stderr=err_file, env=env,
                                    **spawn.hidden())
    except OSError as e:
        raise PluginError(f"Cannot run impasto's bridge {command[0]}: {e.strerror}. Is impasto still "
                          "installed there? Run `impasto gimp install` again.") from None
    final = None
    # A thread reads the bridge's stdout: Windows' select refuses pipes (WinError 10038).
    reader = pipes.LineReader(proc.stdout.fileno(), name="impasto-bridge-stdout")
    started = time.monotonic()
    said = None
    try:
        while True:
            if controls is not None:
                controls.pump()
                if controls.cancel and said != "cancel":
                    said = "cancel"
                    _tell(proc, b"cancel\n")
                elif controls.stop and said is None:
                    said = "stop"
                    _tell(proc, b"stop\n")
            if stop_after > 0 and said is None and time.monotonic() - started > stop_after:
                said = "stop"
                _tell(proc, b"stop\n")
            lines = reader.lines(timeout=0.1)
            if not lines and reader.eof:
                break
            latest_preview = None
            for line in lines:
                if not line.strip():
                    continue
                try:
                    ev = events.parse(line)
                except events.EventError as e:
                    # A bridge of another impasto version, or a broken one: say so and
                    # stop, rather than guess at what a line meant.
                    raise PluginError(f"impasto's bridge said something this plug-in does not "
                                      f"understand ({e}). Run `impasto gimp install` again so "
                                      "that plug-in and bridge match.") from None
                if isinstance(ev, events.Status):  # loading: the bar moves with it
                    Gimp.progress_set_text(f"Neural style{label}: {ev.text}")
                    Gimp.progress_pulse()
                elif isinstance(ev, events.Accepted) and ev.position:
                    Gimp.progress_set_text(f"Neural style{label}: waiting, {ev.position} job(s) ahead")
                elif isinstance(ev, events.Progress) and ev.frames:
                    total, frame = max(1, ev.total), ev.frame or 0
                    Gimp.progress_set_text(f"Neural style{label}: frame {frame + 1} of "
                                           f"{ev.frames}, step {ev.step} of {total}")
                    Gimp.progress_update(min(1.0, (frame + min(1.0, ev.step / total)) / ev.frames))
                elif isinstance(ev, events.Progress):
                    total = max(1, ev.total)
                    Gimp.progress_set_text(f"Neural style{label}: step {ev.step} of {total} (pass "
                                           f"{ev.scale + 1} of {ev.scales})")
                    Gimp.progress_update(min(1.0, ev.step / total))
                elif isinstance(ev, events.FrameDone):
                    if ev.frames:
                        Gimp.progress_set_text(f"Neural style{label}: frame {ev.frame + 1} of "
                                               f"{ev.frames} done")
                        Gimp.progress_update(min(1.0, (ev.frame + 1) / ev.frames))
                    if on_frame is not None:
                        on_frame(ev)
                elif isinstance(ev, events.Preview):
                    latest_preview = ev  # only the newest of a burst is drawn
                elif isinstance(ev, (events.Done, events.Error)):
                    final = ev
            if latest_preview is not None and preview is not None and final is None:
                preview.show(latest_preview.path, latest_preview.width, latest_preview.height,
                             latest_preview.step)
    finally:
        if proc.poll() is None and final is None:
            _tell(proc, b"cancel\n")
        with contextlib.suppress(OSError):
            proc.stdin.close()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if final is None:
        try:
            with open(err_path, errors="replace") as f:
                err = f.read()
        except OSError:
            err = ""
        raise PluginError("impasto's bridge stopped without an answer "
                          f"(exit {proc.returncode}): {err.strip()[-500:] or 'no output'}")
    if isinstance(final, events.Error):
        if final.code == "cancelled":
            raise Cancelled()
        raise PluginError(explain(final, cfg))
    return final


def _tell(proc, line):
    try:
        proc.stdin.write(line)
        proc.stdin.flush()
    except OSError:
        pass  # the bridge is gone; its output says why


def explain(final, cfg):
    """The bridge's error in GIMP's words: what to do, from where the user is."""
    message = final.message or final.code or "unknown error"
    if final.code == "unavailable" and not cfg.get("autostart"):
        address = cfg.get("address") or "the configured address"
        return (f"No impasto daemon answered at {address}. Start one in a terminal with "
                f"`impasto serve --bind {address}`, or let GIMP start it: run `impasto gimp "
                f"install --address {address}` again without --no-autostart.")
    if final.code == "out_of_memory":
        return message + " Lower the Working size in the dialog, or pick the Draft preset."
    return message


# --- one layer ------------------------------------------------------------------------
NO_STYLE_DIALOG = ("Choose a style first: a style from the library, a style picture, or a "
                   "style layer of this image.")
NO_STYLE_SCRIPT = ("No style given: set the procedure's 'style' argument (a library name or a "
                   "picture file's path), 'style-file' or 'style-layer'.")


def row_keys(k):
    """The procedure's argument names of style row k (1 = the first style's)."""
    if k == 1:
        return {"style": "style", "style-file": "style-file", "style-layer": "style-layer",
                "region": "region", "region-channel": "region-channel",
                "region-layer": "region-layer"}
    return {key: key.replace("style", f"style-{k}", 1) if key.startswith("style")
            else key.replace("region", f"region-{k}", 1) for key in row_keys(1)}


def choose_styles(config, interactive=False):
    """Every style row that has a style: ([((kind, value, label), region)], note). The
    first row must have one; a row with an area but no style is an error, as is an area
    that is missing what it needs (an empty selection, no channel, a layer without a
    mask). region: None (everywhere else) or (kind, drawable)."""
    first, note = choose_style(config, interactive)
    rows = [(first, choose_region(config, 1))]
    for k in range(2, ROWS + 1):
        keys = row_keys(k)
        try:
            chosen, extra = choose_style(config, interactive, keys)
        except PluginError:
            if config.get_property(keys["region"]) != "everywhere":
                raise PluginError(f"Style {k} has an area but no style: choose its style, or "
                                  "set its area back to 'Everywhere else'.") from None
            continue
        rows.append((chosen, choose_region(config, k)))
        note = note or extra
    return rows, note


def choose_region(config, k):
    keys = row_keys(k)
    kind = config.get_property(keys["region"])
    if kind == "everywhere":
        return None
    if kind == "selection":
        return ("selection", None)
    if kind == "channel":
        channel = config.get_property(keys["region-channel"])
        if channel is None:
            raise PluginError(f"Style {k}'s area is 'Inside a channel', but no channel is "
                              "chosen. Pick one under 'Area channel' (make one in the "
                              "Channels dialog: paint it white where the style goes).")
        return ("channel", channel)
    layer = config.get_property(keys["region-layer"])
    if layer is None or layer.get_mask() is None:
        raise PluginError(f"Style {k}'s area is 'Inside a layer mask', but "
                          + ("no layer is chosen." if layer is None else
                             f"layer '{layer.get_name()}' has no layer mask.")
                          + " Choose a layer with a mask under 'Area from this layer's mask'.")
    return ("layer-mask", layer.get_mask())


def choose_style(config, interactive=False, keys=None):
    """Which style the run uses, decided before any work: ((kind, value, label), note).
    A style layer wins over a picture file, which wins over a library name; when more
    than one is given, `note` says which one is used, for a message and the result
    layer's name. No style at all is an error (before anything is read or sent)."""
    keys = keys or row_keys(1)
    style_layer = config.get_property(keys["style-layer"])
    style_file = config.get_property(keys["style-file"])
    style = (config.get_property(keys["style"]) or "").strip()
    given = []
    if style_layer is not None:
        given.append(("layer", style_layer, style_layer.get_name(),
                      f"the style layer '{style_layer.get_name()}'"))
    if style_file is not None and style_file.get_path():
        path = style_file.get_path()
        given.append(("path", path, os.path.splitext(os.path.basename(path))[0],
                      f"the style picture '{os.path.basename(path)}'"))
    if style and (os.sep in style or os.path.isfile(style)):
        given.append(("path", style, os.path.splitext(os.path.basename(style))[0],
                      f"the picture file '{os.path.basename(style)}'"))
    elif style:
        given.append(("name", style, style, f"the library style '{style}'"))
    if not given:
        raise PluginError(NO_STYLE_DIALOG if interactive else NO_STYLE_SCRIPT)
    kind, value, label, said = given[0]
    note = None
    if len(given) > 1:
        ignored = " and ".join(g[3] for g in given[1:])
        note = (f"Two styles were given: {said} is used, {ignored} is not. Clear the one you "
                "do not want to avoid this message.")
    return (kind, value, label), note


def read_region(layer, box, region, path):
    """The area of a style row over the box sent, as 8-bit grey (white: the style paints
    there), written to `path`. Channels and the selection cover the image, a layer mask
    its layer: each is read where the box lies on the image; outside it, nothing."""
    kind, item = region
    x, y, w, h = box
    _, lx, ly = layer.get_offsets()
    if kind == "selection":
        item = layer.get_image().get_selection()
    _, ox, oy = item.get_offsets()
    rect = Gegl.Rectangle.new(lx + x - ox, ly + y - oy, w, h)
    data = bytes(item.get_buffer().get(rect, 1.0, "Y u8", Gegl.AbyssPolicy.NONE))
    if len(data) != w * h:
        raise PluginError(f"GIMP returned {len(data)} bytes for a {w}x{h} area")
    with open(path, "wb") as f:
        f.write(data)
    return {"raw": path, "width": w, "height": h}


def style_spec(chosen, tmp, k=1):
    """The request's style entry for the chosen style, and its label."""
    kind, value, label = chosen
    if kind == "layer":
        sdata, sw, sh = read_rgba(value)
        spath = os.path.join(tmp, f"style{k}.rgba")
        with open(spath, "wb") as f:
            f.write(sdata)
        return {"raw": spath, "width": sw, "height": sh}, label
    if kind == "path":
        return {"path": value}, label
    return {"name": value}, label


def tell(text):
    """A message for the person (GIMP's message, the error console in batch mode), also
    traced so that scripts and tests can see what was said."""
    Gimp.message(text)
    trace(event="message", text=text)


def working_side(config, layer, spec):
    """The dialog's Working size: 0 means the layer's own size, capped by the preset's."""
    asked = int(config.get_property("size"))
    preset = config.get_property("preset")
    cap = int((spec.get("preset_sizes") or {}).get(preset, 512))
    side = max(layer.get_width(), layer.get_height())
    return min(side, asked if asked > 0 else cap)


def request_options(preset, strength, side, extent, colors, seed):
    """The engine options of a still or an animation: strength in percent, side the
    working long side, extent the largest side of what is stylized."""
    # Never upscale a small layer just to shrink the result again; the network's
    # smallest working size is 64.
    options = {"preset": preset, "strength": strength / 100.0, "match_content_size": True,
               "size": max(64, side)}
    if extent < 64:
        # A tiny layer is worked at 64 px (the network's least) and shrunk back: a few
        # evaluations give it all the style it can hold, in about a second.
        options["iterations"] = max(3, min(20, extent // 3))
    if colors != "none":
        options["preserve_colors"] = colors
    if seed >= 0:
        options["seed"] = seed
    return options


def stylize_layer(image, layer, config, cfg, spec, label, controls, rows, note):
    long_side = working_side(config, layer, spec)
    box, box_side, selected = work_box(image, layer, long_side, any(
        r is not None and r[0] == "selection" for _, r in rows))
    x, y, bw, bh = box
    preset = config.get_property("preset")
    colors = config.get_property("preserve-colors")
    seed = int(config.get_property("seed"))
    strength = float(config.get_property("strength"))
    Gimp.progress_init(f"Neural style{label}: reading the layer")
    rgb = read_rgb_float(layer, box)
    # HDR: the engine paints in [0, 1] and clips above. A float layer brighter than 1 is
    # sent divided by its brightest value and the result multiplied back, so the whole
    # picture is stylized and keeps its range (values up to 4.0 come back up to about 4.0).
    rgb, peak = pixels.to_unit_range(rgb)
    with tempfile.TemporaryDirectory(prefix=f"{TMP_PREFIX}{os.getpid()}-") as tmp:
        content_path = os.path.join(tmp, "content.rgbf")
        with open(content_path, "wb") as f:
            f.write(rgb)
        del rgb
        styles, labels = [], []
        for k, (chosen, region) in enumerate(rows, 1):
            style, style_label = style_spec(chosen, tmp, k)
            if region is not None:
                style["mask"] = read_region(layer, box, region, os.path.join(tmp, f"area{k}.grey"))
            styles.append(style)
            labels.append(style_label)
        style_label = " + ".join(labels)
        chosen = rows[0][0]
        options = request_options(preset, strength, box_side, max(bw, bh), colors, seed)
        preview_cfg = {**PREVIEW, **(cfg.get("preview") or {})}
        want_preview = bool(preview_cfg.get("enabled", True))
        request = {"address": cfg.get("address"), "timeout": cfg.get("timeout", 5.0),
                   "autostart": cfg.get("autostart"), "client": "gimp",
                   "content": {"path": content_path, "width": bw, "height": bh, "format": "rgb32f"},
                   "styles": styles, "options": options,
                   "output": os.path.join(tmp, "result.rgbf")}
        if want_preview:
            request["preview"] = {"path": os.path.join(tmp, "preview.rgba"),
                                  "max_side": int(preview_cfg["max_side"]),
                                  "interval_s": float(preview_cfg["interval_s"])}
        preview = Preview(image, layer, box)
        try:
            done = run_bridge(cfg, request, tmp, label, preview if want_preview else None,
                              controls, float(config.get_property("stop-after")))
        finally:
            preview.close()
        if (done.width, done.height) != (bw, bh) or done.format != "rgb32f" or not done.output:
            raise PluginError(f"the result is {done.width}x{done.height} "
                              f"{done.format}, expected {bw}x{bh} rgb32f")
        with open(done.output, "rb") as f:
            out = f.read()
        if len(out) != bw * bh * 12:
            raise PluginError("the result file is incomplete; try again")
        out = pixels.from_unit_range(out, peak)
    if done.message:
        tell(f"Neural style{label}: {done.message}")
    if note:
        tell(f"Neural style{label}: {note}")

    image.undo_group_start()
    try:
        # A copy of the source: same mode, opacity, blend and composite settings, layer
        # mask, alpha and precision; outside the box its pixels stay the source's.
        new = layer.copy()
        # The name says what a person must know of this layer at a glance: the style,
        # where it came from when two were given, the model (random weights said so), the seed.
        source = {"layer": "style layer", "path": "style picture", "name": "library style"}
        parts = ["impasto"] + ([f"from the {source[chosen[0]]}"] if note else [])
        parts.append(done.model)
        new.set_name(f"{style_label} ({', '.join(parts)}, seed {done.seed})")
        image.insert_layer(new, layer.get_parent(), image.get_item_position(layer))
        write_result(layer, new, box, out)
        if selected:
            apply_selection(image, layer, new)
        image.set_selected_layers([new])
    finally:
        image.undo_group_end()
    trace(event="result", layer=layer.get_name(), box=list(box), size=options["size"],
          stopped=bool(done.stopped), previews=preview.count, name=new.get_name(), peak=peak)
    return new


# --- an animation ---------------------------------------------------------------------
def animation_frames(image, rows):
    """The frames: the image's top-level layers, top first as GIMP lists them (it plays
    them from the bottom layer up), less layer groups (an earlier result) and the layers
    this run uses as a style or a style's area. Returns (frames, skipped names)."""
    used = {chosen[1].get_id() for chosen, _ in rows if chosen[0] == "layer"}
    masks = {region[1].get_id() for _, region in rows if region and region[0] == "layer-mask"}
    frames, skipped = [], []
    for layer in image.get_layers():
        mask = layer.get_mask()
        if layer.is_group() or layer.get_id() in used or (mask is not None
                                                          and mask.get_id() in masks):
            skipped.append(layer.get_name())
            continue
        frames.append(layer)
    return frames, skipped


def frames_box(frames):
    """The box, in image pixels, that holds every frame: each frame is sent at this size
    (a clip's frames are all one size), its own pixels where it lies and its edge pixels
    carried outward around it; its result is cut back to the frame's own bounds."""
    x1 = min(f.get_offsets()[1] for f in frames)
    y1 = min(f.get_offsets()[2] for f in frames)
    x2 = max(f.get_offsets()[1] + f.get_width() for f in frames)
    y2 = max(f.get_offsets()[2] + f.get_height() for f in frames)
    return x1, y1, x2 - x1, y2 - y1


def shown_frames(image, frames):
    """What each frame shows when played: for an optimised GIF, whose frames after the
    first are tagged "(combine)" and hold only what changed (drawn over the frames
    before), GIMP's Filters > Animation > Unoptimize makes every frame whole. Run on a
    copy of the image that holds the frames only; returns (that image, its layers in the
    frames' order) to read the frames from, or None when no frame combines (each frame
    is then sent as it is)."""
    if not any("(combine)" in f.get_name().lower() for f in frames):
        return None
    proc = Gimp.get_pdb().lookup_procedure("plug-in-animationunoptimize")
    if proc is None:
        return None
    copy = image.duplicate()
    try:
        keep = {image.get_item_position(f) for f in frames}
        for i, layer in reversed(list(enumerate(copy.get_layers()))):
            if i not in keep:
                copy.remove_layer(layer)
        cfg = proc.create_config()
        cfg.set_property("run-mode", Gimp.RunMode.NONINTERACTIVE)
        cfg.set_property("image", copy)
        result = proc.run(cfg)
        if result.index(0) != Gimp.PDBStatusType.SUCCESS:
            return None
        whole = result.index(1)
    finally:
        copy.delete()
    layers = list(whole.get_layers())
    if len(layers) != len(frames):
        whole.delete()
        return None
    return whole, layers


def stylize_animation(image, config, rows, note, interactive):
    """Every frame of the image, as one clip: a new layer group on top with one stylized
    layer per frame, in the frames' order, each named as its frame (its "(100ms)" timing
    and "(replace)"/"(combine)" tags with it) at its frame's size and offsets. Stop and
    keep keeps the frames done: the group then holds fewer layers, and a message says so."""
    if image.get_base_type() == Gimp.ImageBaseType.INDEXED:
        raise PluginError("Indexed images cannot hold the stylized colours. Convert the image "
                          "first: Image > Mode > RGB.")
    if events is None:
        raise PluginError("impasto's modules (impasto_events.py, impasto_pipes.py, "
                          "impasto_spawn.py) are missing beside the plug-in. Run `impasto "
                          "gimp install` again, or unzip the archive again.")
    frames, skipped = animation_frames(image, rows)
    if len(frames) < 2:
        raise PluginError("Stylize as animation paints the frames of an animation: the image's "
                          f"layers, one a frame. This image has {len(frames)} layer(s) to paint"
                          + (f" (not counting {', '.join(repr(n) for n in skipped)})" if skipped
                             else "") + "; open an animation (a GIF, or one frame a layer), or "
                          "turn Stylize as animation off to paint the selected layers.")
    if any(r is not None and r[0] == "selection" for _, r in rows):
        raise PluginError("An animation cannot take a style's area from the selection: use a "
                          "channel (Select > Save to Channel) instead.")
    cfg = load_config()
    spec = dialog_spec()
    spawn.remove_stale(tempfile.gettempdir(), TMP_PREFIX)
    if not Gimp.Selection.is_empty(image):
        tell("Neural style: the selection does not limit an animation; every frame is "
             "painted whole.")
    n = len(frames)
    label = f" (animation of {n} frames)"
    ux, uy, uw, uh = frames_box(frames)
    asked = int(config.get_property("size"))
    preset = config.get_property("preset")
    cap = int((spec.get("preset_sizes") or {}).get(preset, 512))
    long_side = min(max(uw, uh), asked if asked > 0 else cap)
    seed = int(config.get_property("seed"))
    colors = config.get_property("preserve-colors")
    controls = StopControls(interactive, "Neural Style")
    made = []
    try:
        Gimp.progress_init(f"Neural style{label}: reading the frames")
        # Frames that only add to the ones before ("(combine)") are sent as they show,
        # whole; each result is then cut back to its frame's own pixels, so the group
        # plays as the frames did.
        shown = shown_frames(image, frames)
        with tempfile.TemporaryDirectory(prefix=f"{TMP_PREFIX}{os.getpid()}-") as tmp:
            # One brightness scale for all frames (HDR, as for a still): a scale of each
            # frame's own would make the clip flicker.
            paths, peak = [], 1.0
            try:
                for i, frame in enumerate(frames):
                    source = frame if shown is None else shown[1][i]
                    _, ox, oy = source.get_offsets()
                    rgb = read_rgb_float(source, (ux - ox, uy - oy, uw, uh))
                    peak = max(peak, pixels.peak_of(rgb))
                    paths.append(os.path.join(tmp, f"frame-{i + 1:04d}.rgbf"))
                    with open(paths[-1], "wb") as f:
                        f.write(rgb)
                    del rgb
            finally:
                if shown is not None:
                    shown[0].delete()
            if peak > 1.0:
                for path in paths:
                    with open(path, "rb") as f:
                        rgb = pixels.scale_rgb(f.read(), 1.0 / peak)
                    with open(path, "wb") as f:
                        f.write(rgb)
            first = frames[0]
            _, fx, fy = first.get_offsets()
            box_on_first = (ux - fx, uy - fy, uw, uh)
            styles, labels = [], []
            for k, (chosen, region) in enumerate(rows, 1):
                style, style_label = style_spec(chosen, tmp, k)
                if region is not None:
                    style["mask"] = read_region(first, box_on_first, region,
                                                os.path.join(tmp, f"area{k}.grey"))
                styles.append(style)
                labels.append(style_label)
            style_label = " + ".join(labels)
            options = request_options(preset, float(config.get_property("strength")), long_side,
                                      max(uw, uh), colors, seed)
            preview_cfg = {**PREVIEW, **(cfg.get("preview") or {})}
            want_preview = bool(preview_cfg.get("enabled", True))
            request = {"address": cfg.get("address"), "timeout": cfg.get("timeout", 5.0),
                       "autostart": cfg.get("autostart"), "client": "gimp",
                       "clip": {"frames": paths, "width": uw, "height": uh, "format": "rgb32f",
                                "output_dir": os.path.join(tmp, "out")},
                       "styles": styles, "options": options}
            if want_preview:
                request["preview"] = {"path": os.path.join(tmp, "preview.rgba"),
                                      "max_side": int(preview_cfg["max_side"]),
                                      "interval_s": float(preview_cfg["interval_s"])}
            # The preview shows the frame being painted, over all the frames.
            preview = Preview(image, first, box_on_first)
            got = []
            try:
                done = run_bridge(cfg, request, tmp, label, preview if want_preview else None,
                                  controls, float(config.get_property("stop-after")),
                                  on_frame=got.append)
            finally:
                preview.close()
            if not got:
                raise PluginError("no frame was finished; nothing to keep")
            for ev in got:  # all checked before anything goes into the image
                if ((ev.width, ev.height) != (uw, uh) or not ev.path
                        or os.path.getsize(ev.path) != uw * uh * 12):
                    raise PluginError(f"frame {ev.frame + 1}'s result is not the "
                                      f"{uw}x{uh} picture expected; try again")
            if done.message:
                tell(f"Neural style{label}: {done.message}")
            if note:
                tell(f"Neural style{label}: {note}")
            if skipped:
                tell(f"Neural style{label}: not frames, so left out: "
                     + ", ".join(repr(name) for name in skipped) + ".")
            parts = ["impasto animation", done.model]
            if len(got) < n:
                parts.append(f"{len(got)} of {n} frames")
            image.undo_group_start()
            try:
                group = Gimp.GroupLayer.new(image, f"{style_label} ({', '.join(parts)}, "
                                            f"seed {done.seed})")
                image.insert_layer(group, None, image.get_item_position(first))
                for i, ev in enumerate(got):  # read one at a time: a long clip is large
                    frame = frames[i]
                    _, ox, oy = frame.get_offsets()
                    w, h = frame.get_width(), frame.get_height()
                    with open(ev.path, "rb") as f:
                        out = f.read()
                    rgb = pixels.from_unit_range(pixels.crop_rgb(out, uw, (ox - ux, oy - uy, w, h)), peak)
                    del out
                    new = frame.copy()
                    image.insert_layer(new, group, i)
                    # GIMP keeps names unique: where it must, it adds " #1", after the
                    # tags its animation playback and GIF export read.
                    new.set_name(frame.get_name())
                    new.set_offsets(ox, oy)
                    write_result(frame, new, (0, 0, w, h), rgb)
                made.append(group)
                image.set_selected_layers([group])
            finally:
                image.undo_group_end()
        trace(event="animation", frames=n, done=len(got), box=[ux, uy, uw, uh],
              combined=shown is not None,
              size=options["size"], stopped=bool(done.stopped), previews=preview.count,
              name=group.get_name(), peak=peak)
    finally:
        controls.close()
        Gimp.progress_end()
    Gimp.displays_flush()
    return made


def apply_selection(image, layer, new):
    """The new layer shows only where the selection is, and where the source's own mask
    lets it: with a mask, the mask becomes selection x mask (GIMP's intersect)."""
    src_mask = layer.get_mask()
    if src_mask is None:
        new.add_mask(new.create_mask(Gimp.AddMaskType.SELECTION))
        return
    saved = Gimp.Selection.save(image)
    try:
        image.select_item(Gimp.ChannelOps.INTERSECT, src_mask)
        new.remove_mask(Gimp.MaskApplyMode.DISCARD)
        new.add_mask(new.create_mask(Gimp.AddMaskType.SELECTION))
    finally:
        image.select_item(Gimp.ChannelOps.REPLACE, saved)
        image.remove_channel(saved)


def stylize(procedure, image, drawables, config, interactive=False):
    rows, note = choose_styles(config, interactive)  # before any work
    if config.get_property("animation"):
        return stylize_animation(image, config, rows, note, interactive)
    layers = check_sources(image, drawables)
    if events is None:
        raise PluginError("impasto's modules (impasto_events.py, impasto_pipes.py, "
                          "impasto_spawn.py) are missing beside the plug-in. Run `impasto "
                          "gimp install` again, or unzip the archive again.")
    cfg = load_config()
    spec = dialog_spec()
    spawn.remove_stale(tempfile.gettempdir(), TMP_PREFIX)
    controls = StopControls(interactive, "Neural Style")
    made = []
    try:
        for i, layer in enumerate(layers):
            label = f" ({i + 1} of {len(layers)})" if len(layers) > 1 else ""
            made.append(stylize_layer(image, layer, config, cfg, spec, label, controls,
                                      rows, note if i == 0 else None))
            if controls.stop:
                break  # "stop and keep" ends the whole run, keeping what is done
    finally:
        controls.close()
        Gimp.progress_end()
    if made:
        image.set_selected_layers(made)
    Gimp.displays_flush()
    return made


def run(procedure, run_mode, image, drawables, config, data):
    interactive = run_mode == Gimp.RunMode.INTERACTIVE
    # A server whose base Python is gone (updated, removed) cannot start: said, and
    # interactively the set-up is offered to repair it.
    broken = os.path.exists(CONFIG) and server_problem()
    if broken and not interactive:
        return procedure.new_return_values(Gimp.PDBStatusType.EXECUTION_ERROR,
                                           GLib.Error(f"impasto: {broken}"))
    if interactive and (broken or not os.path.exists(CONFIG)):
        Gimp.message(f"impasto: {broken}." if broken else "impasto has no server on this "
                     "computer yet. The set-up installs one (a private Python with PyTorch); "
                     "it runs once and takes a few minutes.")
        if not offer_setup(image):
            return procedure.new_return_values(Gimp.PDBStatusType.CANCEL, GLib.Error())
    if interactive:
        gi.require_version("GimpUi", "3.0")
        from gi.repository import GimpUi

        GimpUi.init(PROC)
        dialog = GimpUi.ProcedureDialog.new(procedure, config, "Neural Style")
        add_library_choice(dialog, config)
        fill_dialog(dialog)
        warning = add_notes(dialog)
        # OK without a style keeps the dialog open and says what is missing, rather than
        # closing it and failing afterwards. (Not drivable in batch mode: there is no
        # display; the non-interactive path's error is what the tests check.)
        while True:
            if not dialog.run():
                dialog.destroy()
                return procedure.new_return_values(Gimp.PDBStatusType.CANCEL, GLib.Error())
            try:
                choose_styles(config, interactive=True)
                break
            except PluginError as e:
                warning.set_markup(f"<b>{GLib.markup_escape_text(str(e))}</b>")
                warning.show()
        dialog.destroy()
    try:
        made = stylize(procedure, image, drawables, config, interactive)
    except Cancelled:
        return procedure.new_return_values(Gimp.PDBStatusType.CANCEL, GLib.Error())
    except PluginError as e:
        return procedure.new_return_values(Gimp.PDBStatusType.EXECUTION_ERROR,
                                           GLib.Error(f"impasto: {e}"))
    if not made:
        return procedure.new_return_values(Gimp.PDBStatusType.CANCEL, GLib.Error())
    return Gimp.ValueArray.new_from_values([
        GObject.Value(Gimp.PDBStatusType, Gimp.PDBStatusType.SUCCESS),
        GObject.Value(Gimp.Layer, made[0]),
    ])


def library_names():
    """The daemon's style library, for the dialog's list (empty when no daemon answers:
    the name can still be typed)."""
    try:
        cfg = load_config()
        command = list(cfg.get("bridge") or [])
        env = {**os.environ, **(cfg.get("env") or {})}
        r = subprocess.run(command + ["styles", cfg.get("address") or ""], capture_output=True,
                           timeout=10, env=env, **spawn.hidden())
        for line in r.stdout.decode(errors="replace").splitlines():
            ev = events.parse(line)
            if isinstance(ev, events.StyleNames):
                return list(ev.names)
    except (OSError, ValueError, AttributeError, PluginError, subprocess.TimeoutExpired):
        pass
    return []


def add_library_choice(dialog, config):
    """A list of the library's styles, with room to type a name, above the other fields."""
    gi.require_version("Gtk", "3.0")
    from gi.repository import Gtk

    names = library_names()
    box = Gtk.Box(orientation=Gtk.Orientation.HORIZONTAL, spacing=6)
    box.pack_start(Gtk.Label(label="Style from the library:"), False, False, 0)
    combo = Gtk.ComboBoxText.new_with_entry()
    for n in names:
        combo.append_text(n)
    combo.get_child().set_text(config.get_property("style") or "")
    combo.get_child().set_placeholder_text("none in the library" if not names else "pick or type a name")
    combo.connect("changed", lambda c: config.set_property("style", c.get_active_text() or ""))
    box.pack_start(combo, True, True, 0)
    hint = Gtk.Label(label="or an image file, or a layer of this image, below")
    outer = Gtk.Box(orientation=Gtk.Orientation.VERTICAL, spacing=4)
    outer.pack_start(box, False, False, 0)
    outer.pack_start(hint, False, False, 0)
    outer.show_all()
    dialog.get_content_area().pack_start(outer, False, False, 6)


def add_notes(dialog):
    """Below the fields: what Working size 0 means, on screen (not only in a tooltip),
    and a place for the no-style warning. Returns the warning label."""
    gi.require_version("Gtk", "3.0")
    from gi.repository import Gtk

    caps = dialog_spec().get("preset_sizes") or {}
    note = Gtk.Label(label="Working size 0: " + size_blurb(caps).split("0 = ", 1)[1])
    note.set_line_wrap(True)
    note.set_xalign(0.0)
    warning = Gtk.Label()
    warning.set_line_wrap(True)
    warning.set_xalign(0.0)
    area = dialog.get_content_area()
    area.pack_end(warning, False, False, 4)
    area.pack_end(note, False, False, 4)
    note.show()
    return warning


def add_region_arguments(p, k, flags):
    keys = row_keys(k)
    nth = "" if k == 1 else f" {k}"
    p.add_choice_argument(keys["region"], TEXT["region"][0] + nth, TEXT["region"][1],
                          choice(REGIONS), "everywhere", flags)
    p.add_channel_argument(keys["region-channel"], TEXT["region-channel"][0] + nth,
                           TEXT["region-channel"][1], True, flags)
    p.add_layer_argument(keys["region-layer"], TEXT["region-layer"][0] + nth,
                         TEXT["region-layer"][1], True, flags)


def add_row_arguments(p, k, flags):
    """Style row k (2 and up): a style (library name or picture path, picture file, or
    layer) and its area."""
    keys = row_keys(k)
    p.add_string_argument(keys["style"], f"Style {k} from the library",
                          f"Style {k}: " + TEXT["style"][1], "", flags)
    p.add_file_argument(keys["style-file"], f"Style {k} picture", f"Style {k}: "
                        + TEXT["style-file"][1], Gimp.FileChooserAction.OPEN, True, None, flags)
    p.add_layer_argument(keys["style-layer"], f"Style {k} layer", f"Style {k}: "
                         + TEXT["style-layer"][1], True, flags)
    add_region_arguments(p, k, flags)


def fill_dialog(dialog):
    """The first style and its area, then a frame for each further style row."""
    first = ["style-file", "style-layer", "region", "region-channel", "region-layer"]
    rest = ["preset", "strength", "size", "preserve-colors", "seed", "animation"]
    try:
        rows = framed_rows(dialog)
    except (TypeError, AttributeError) as e:  # a GIMP whose dialog API differs: flat
        trace(event="dialog", text=f"style rows unframed: {e}")
        rows = [row_keys(k)[n] for k in range(2, ROWS + 1) for n in row_keys(1)]
    dialog.fill(first + rows + rest)


def framed_rows(dialog):
    rows = []
    for k in range(2, ROWS + 1):
        keys = row_keys(k)
        box = f"row-{k}-box"
        dialog.fill_box(box, [keys[n] for n in ("style", "style-file", "style-layer", "region",
                                                "region-channel", "region-layer")])
        dialog.get_label(f"row-{k}-title", f"Style {k} (optional)", False, False)
        dialog.fill_frame(f"row-{k}", f"row-{k}-title", False, box)
        rows.append(f"row-{k}")
    return rows


def choice(pairs):
    c = Gimp.Choice.new()
    for i, (nick, label) in enumerate(pairs):
        c.add(nick, i, label, "")
    return c


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
        spec = dialog_spec()
        pre, st, size, seed = (spec[k] for k in ("preset", "strength", "size", "seed"))
        caps = spec.get("preset_sizes") or {}
        # Every label and help text in an artist's words (what it does to the picture),
        # none in the engine's: a test keeps a list of words that must not appear here.
        p.add_string_argument("style", TEXT["style"][0], TEXT["style"][1], "", flags)
        p.add_file_argument("style-file", TEXT["style-file"][0], TEXT["style-file"][1],
                            Gimp.FileChooserAction.OPEN, True, None, flags)
        p.add_layer_argument("style-layer", TEXT["style-layer"][0], TEXT["style-layer"][1],
                             True, flags)
        add_region_arguments(p, 1, flags)
        for k in range(2, ROWS + 1):
            add_row_arguments(p, k, flags)
        p.add_choice_argument("preset", TEXT["preset"][0], TEXT["preset"][1],
                              choice([(c, LABELS.get(c, c)) for c in pre["choices"]]),
                              pre["default"], flags)
        # A percentage for people: 100% is impasto's usual strength, whatever the weights
        # file; the dialog stops at 1000%, far past where results saturate.
        p.add_double_argument("strength", TEXT["strength"][0], TEXT["strength"][1],
                              100.0 * float(st["min"]), min(1000.0, 100.0 * float(st["max"])),
                              100.0 * float(st["default"]), flags)
        p.add_int_argument("size", TEXT["size"][0], size_blurb(caps), 0, int(size["max"]), 0, flags)
        p.add_choice_argument("preserve-colors", TEXT["preserve-colors"][0],
                              TEXT["preserve-colors"][1], choice(COLORS), "none", flags)
        p.add_int_argument("seed", TEXT["seed"][0], TEXT["seed"][1], -1,
                           min(int(seed["max"]), 2**31 - 1), -1, flags)
        p.add_boolean_argument("animation", TEXT["animation"][0], TEXT["animation"][1], False,
                               flags)
        p.add_double_argument("stop-after", TEXT["stop-after"][0], TEXT["stop-after"][1],
                              0.0, 86400.0, 0.0, flags)
        p.add_layer_return_value("new-layer", "New layer", "The first stylized layer", False, flags)
        return p

    def create_setup(self, name):
        # An image procedure that needs no image: GIMP's menus hold it with or without one.
        p = Gimp.ImageProcedure.new(self, name, Gimp.PDBProcType.PLUGIN, run_setup, None)
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
        flags = GObject.ParamFlags.READWRITE
        t = SETUP_TEXT
        p.add_choice_argument("action", t["action"][0], t["action"][1], choice(SETUP_ACTIONS),
                              "install", flags)
        p.add_choice_argument("backend", t["backend"][0], t["backend"][1], choice(BACKENDS),
                              "auto", flags)
        for key in ("folder", "python", "wheels"):
            p.add_string_argument(key, t[key][0], t[key][1], "", flags)
        p.add_string_argument("weights", t["weights"][0], t["weights"][1], "auto", flags)
        return p


Gimp.main(NeuralStyle.__gtype__, sys.argv)
