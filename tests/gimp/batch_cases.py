# Executed by GIMP's python-fu-eval inside gimp-console (batch mode). Runs the cases
# named in IMPASTO_CASES against the installed plug-in and writes IMPASTO_IO/report.json.
import json
import os
import time
import traceback

from gi.repository import Gegl, Gimp, Gio

IO = os.environ["IMPASTO_IO"]
PROC = "plug-in-impasto-neural-style"
FMT = "R'G'B'A u8"
report = {}


def load(name):
    return Gimp.file_load(Gimp.RunMode.NONINTERACTIVE, Gio.File.new_for_path(os.path.join(IO, name)))


def add_layer_from(image, name, x, y):
    layer = Gimp.file_load_layer(Gimp.RunMode.NONINTERACTIVE, image,
                                 Gio.File.new_for_path(os.path.join(IO, name)))
    image.insert_layer(layer, None, 0)
    layer.set_offsets(x, y)
    return layer


def dump(drawable, name, fmt=FMT):
    w, h = drawable.get_width(), drawable.get_height()
    data = bytes(drawable.get_buffer().get(Gegl.Rectangle.new(0, 0, w, h), 1.0, fmt,
                                            Gegl.AbyssPolicy.CLAMP))
    with open(os.path.join(IO, name), "wb") as f:
        f.write(data)
    return {"file": name, "width": w, "height": h}


def run_proc(image, drawables, **props):
    proc = Gimp.get_pdb().lookup_procedure(PROC)
    config = proc.create_config()
    config.set_property("run-mode", Gimp.RunMode.NONINTERACTIVE)
    config.set_property("image", image)
    config.set_core_object_array("drawables", drawables)
    for k, v in props.items():
        config.set_property(k.replace("_", "-"), v)
    result = proc.run(config)
    status = result.index(0)
    if status != Gimp.PDBStatusType.SUCCESS:
        msg = result.index(1) if result.length() > 1 else ""
        return None, f"{status.value_nick}: {msg}"
    return result.index(1), None


def layer_info(image):
    return [{"name": layer.get_name(), "offsets": list(layer.get_offsets()[1:]),
             "size": [layer.get_width(), layer.get_height()], "id": layer.get_id()}
            for layer in image.get_layers()]


STYLE = dict(style="stripes", preset="draft", size=64, seed=3, strength=100.0)


def case_registered():
    proc = Gimp.get_pdb().lookup_procedure(PROC)
    return {"found": proc is not None,
            "menu": list(proc.get_menu_paths()) if proc else [],
            "label": proc.get_menu_label() if proc else "",
            # The menu works with one layer selected and with several (each stylized).
            "sensitivity": int(proc.get_sensitivity_mask()) if proc else 0,
            "drawable_bits": [int(Gimp.ProcedureSensitivityMask.DRAWABLE),
                              int(Gimp.ProcedureSensitivityMask.DRAWABLES)]}


def case_new_layer():
    image = load("background.png")
    src = add_layer_from(image, "source.png", 10, 20)
    new, err = run_proc(image, [src], **STYLE)
    if err:
        return {"error": err}
    return {"layers": layer_info(image), "new_id": new.get_id(), "src_id": src.get_id(),
            "new": dump(new, "new.rgba"), "src": dump(src, "src.rgba"),
            "has_mask": new.get_mask() is not None}


def case_selection_mask():
    image = load("background.png")
    src = add_layer_from(image, "source.png", 10, 20)
    image.select_rectangle(Gimp.ChannelOps.REPLACE, 20, 30, 20, 10)
    new, err = run_proc(image, [src], **STYLE)
    if err:
        return {"error": err}
    mask = new.get_mask()
    return {"has_mask": mask is not None, "mask": dump(mask, "mask.gray", "Y u8") if mask else None}


def case_style_layer():
    image = load("background.png")
    src = add_layer_from(image, "source.png", 10, 20)
    style = add_layer_from(image, "style.png", 0, 0)
    new, err = run_proc(image, [src], style="", style_layer=style, preset="draft", size=64, seed=1)
    return {"error": err} if err else {"name": new.get_name(), "size": [new.get_width(), new.get_height()]}


def case_style_file():
    image = load("background.png")
    src = add_layer_from(image, "source.png", 10, 20)
    new, err = run_proc(image, [src], style="", style_file=Gio.File.new_for_path(os.path.join(IO, "style.png")),
                        preset="draft", size=64, seed=1)
    return {"error": err} if err else {"name": new.get_name()}


def case_wide_gamut():
    """A colour outside sRGB (Adobe RGB's pure green) goes through unclipped: with
    strength 0 on a flat layer nothing moves, so the result must be that green."""
    import struct

    import gi
    gi.require_version("Babl", "0.1")
    from gi.repository import Babl

    image = Gimp.Image.new_with_precision(64, 48, Gimp.ImageBaseType.RGB, Gimp.Precision.FLOAT_NON_LINEAR)
    image.set_color_profile(Gimp.ColorProfile.new_rgb_adobe())
    layer = Gimp.Layer.new(image, "green", 64, 48, Gimp.ImageType.RGBA_IMAGE, 100.0, Gimp.LayerMode.NORMAL)
    image.insert_layer(layer, None, 0)
    fmt = Babl.get_name(Babl.format_with_space("R'G'B'A float", layer.get_format()))
    rect = Gegl.Rectangle.new(0, 0, 64, 48)
    buf = layer.get_buffer()
    buf.set(rect, fmt, struct.pack("<4f", 0.0, 1.0, 0.0, 1.0) * (64 * 48))
    buf.flush()
    srgb = struct.unpack("<4f", bytes(layer.get_buffer().get(Gegl.Rectangle.new(0, 0, 1, 1), 1.0,
                                                             "R'G'B'A float", Gegl.AbyssPolicy.CLAMP)))
    new, err = run_proc(image, [layer], style="stripes", preset="draft", size=64, seed=1, strength=0.0)
    if err:
        return {"error": err}
    data = bytes(new.get_buffer().get(rect, 1.0, fmt, Gegl.AbyssPolicy.CLAMP))
    vals = struct.unpack(f"<{64 * 48 * 4}f", data)
    worst = max(abs(v - t) for i, v in enumerate(vals) for t in ((0.0, 1.0, 0.0, 1.0)[i % 4],))
    return {"format": fmt, "srgb": list(srgb), "worst": worst}


def case_grayscale():
    image = load("background.png")
    image.convert_grayscale()
    layer = image.get_layers()[0]
    new, err = run_proc(image, [layer], **STYLE)
    return {"error": err} if err else {"gray": new.is_gray(), "size": [new.get_width(), new.get_height()]}


def case_errors():
    out = {}
    image = load("background.png")
    layer = image.get_layers()[0]
    _, out["unknown_style"] = run_proc(image, [layer], **dict(STYLE, style="no-such-style"))
    _, out["no_layer"] = run_proc(image, [], **STYLE)
    group = Gimp.GroupLayer.new(image, "group")
    image.insert_layer(group, None, 0)
    _, out["group"] = run_proc(image, [group], **STYLE)
    indexed = load("background.png")
    indexed.convert_indexed(Gimp.ConvertDitherType.NONE, Gimp.ConvertPaletteType.GENERATE, 16,
                            False, False, "")
    _, out["indexed"] = run_proc(indexed, [indexed.get_layers()[0]], **STYLE)
    return out


def case_daemon_down():
    image = load("background.png")
    _, err = run_proc(image, [image.get_layers()[0]], **STYLE)
    return {"error": err}


def trace_lines():
    path = os.environ.get("IMPASTO_GIMP_TRACE")
    if not path or not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(x) for x in f if x.strip()]


def reset_trace():
    path = os.environ.get("IMPASTO_GIMP_TRACE")
    if path and os.path.exists(path):
        os.remove(path)


def case_preview():
    reset_trace()
    image = load("large.png")
    src = image.get_layers()[0]
    before = len(image.get_layers())
    t0 = time.monotonic()
    # draft at 512 px, stopped after 15 s: long enough for many previews
    new, err = run_proc(image, [src], style="stripes", preset="draft", size=512, seed=5,
                        stop_after=15.0)
    if err:
        return {"error": err}
    return {"trace": trace_lines(), "layers_before": before, "layers_after": len(image.get_layers()),
            "names": [x.get_name() for x in image.get_layers()], "elapsed": time.monotonic() - t0}


def case_selection_speed():
    out = {}
    image = load("large.png")
    src = image.get_layers()[0]
    t0 = time.monotonic()
    new, err = run_proc(image, [src], style="stripes", preset="draft", size=256, seed=5)
    out["whole_s"] = time.monotonic() - t0
    if err:
        return {"error": err}
    image.remove_layer(new)
    image.select_rectangle(Gimp.ChannelOps.REPLACE, 400, 300, 100, 80)
    t0 = time.monotonic()
    new, err = run_proc(image, [src], style="stripes", preset="draft", size=256, seed=5)
    out["selection_s"] = time.monotonic() - t0
    if err:
        return {"error": err}
    out["new"] = dump(new, "sel_new.f32", "R'G'B'A float")
    out["src"] = dump(src, "sel_src.f32", "R'G'B'A float")
    out["trace"] = trace_lines()
    return out


def case_selection_misses():
    image = load("background.png")
    src = add_layer_from(image, "source.png", 10, 20)
    image.select_rectangle(Gimp.ChannelOps.REPLACE, 80, 0, 10, 10)  # right of the layer
    _, err = run_proc(image, [src], **STYLE)
    return {"error": err, "layers": len(image.get_layers())}


def case_precision():
    out = {}
    for name, precision, fmt in (("u16", Gimp.Precision.U16_NON_LINEAR, "R'G'B'A u16"),
                                 ("float", Gimp.Precision.FLOAT_LINEAR, "R'G'B'A float"),
                                 ("u32", Gimp.Precision.U32_NON_LINEAR, "R'G'B'A u32")):
        image = load("background.png")
        src = add_layer_from(image, "source.png", 10, 20)
        image.convert_precision(precision)
        new, err = run_proc(image, [src], **STYLE)
        if err:
            out[name] = {"error": err}
            continue
        out[name] = {"new": dump(new, f"prec_{name}_new.bin", fmt),
                     "src": dump(src, f"prec_{name}_src.bin", fmt),
                     "native": [Gimp.Image.get_precision(image).value_nick]}
    # Adobe RGB: a saturated green outside sRGB survives the trip where it is not
    # stylized (outside the selection's box) and arrives unclipped inside it.
    image = load("background.png")
    image.convert_precision(Gimp.Precision.FLOAT_NON_LINEAR)
    image.convert_color_profile(Gimp.ColorProfile.new_rgb_adobe(), Gimp.ColorRenderingIntent.RELATIVE_COLORIMETRIC, False)
    layer = image.get_layers()[0]
    new, err = run_proc(image, [layer], **STYLE)
    out["adobe"] = {"error": err} if err else {"ok": True}
    return out


def case_looks():
    out = {}
    image = load("background.png")
    src = add_layer_from(image, "source.png", 10, 20)
    src.set_mode(Gimp.LayerMode.MULTIPLY)
    src.set_opacity(40.0)
    mask = src.create_mask(Gimp.AddMaskType.BLACK)
    src.add_mask(mask)
    # the mask shows the layer's left half (layer x < 30)
    image.select_rectangle(Gimp.ChannelOps.REPLACE, 10, 20, 30, 40)
    mask.edit_fill(Gimp.FillType.WHITE)
    Gimp.Selection.none(image)
    new, err = run_proc(image, [src], **STYLE)
    if err:
        return {"error": err}
    out["plain"] = {"mode": new.get_mode().value_nick, "opacity": new.get_opacity(),
                    "mask": dump(new.get_mask(), "looks_mask.gray", "Y u8") if new.get_mask() else None,
                    "src_mask": dump(mask, "looks_src_mask.gray", "Y u8")}
    image.remove_layer(new)
    # selection: image rows 30..50, columns 20..60 = layer rows 10..30, columns 10..50
    image.select_rectangle(Gimp.ChannelOps.REPLACE, 20, 30, 40, 20)
    new, err = run_proc(image, [src], **STYLE)
    if err:
        return {"error": err}
    out["selected"] = {"mode": new.get_mode().value_nick, "opacity": new.get_opacity(),
                       "mask": dump(new.get_mask(), "looks_sel_mask.gray", "Y u8") if new.get_mask() else None,
                       "selection_kept": not Gimp.Selection.is_empty(image),
                       "channels": len(image.get_channels())}
    return out


def case_several():
    image = load("background.png")
    a = add_layer_from(image, "source.png", 10, 20)
    b = add_layer_from(image, "source.png", 0, 0)
    new, err = run_proc(image, [a, b], **STYLE)
    if err:
        return {"error": err}
    return {"layers": layer_info(image), "a": a.get_id(), "b": b.get_id(),
            "selected": [x.get_id() for x in image.get_selected_layers()]}


def case_stop_keep():
    reset_trace()
    image = load("large.png")
    src = image.get_layers()[0]
    t0 = time.monotonic()
    new, err = run_proc(image, [src], style="stripes", preset="best", size=512, seed=5,
                        stop_after=4.0)
    if err:
        return {"error": err}
    return {"elapsed": time.monotonic() - t0, "names": [x.get_name() for x in image.get_layers()],
            "trace": trace_lines(), "size": [new.get_width(), new.get_height()],
            "new": dump(new, "stop_new.rgba"), "src": dump(src, "stop_src.rgba")}


def case_tiny():
    image = Gimp.Image.new(1, 1, Gimp.ImageBaseType.RGB)
    layer = Gimp.Layer.new(image, "dot", 1, 1, Gimp.ImageType.RGBA_IMAGE, 100.0, Gimp.LayerMode.NORMAL)
    image.insert_layer(layer, None, 0)
    t0 = time.monotonic()
    new, err = run_proc(image, [layer], style="stripes", preset="normal", seed=1)
    return {"error": err} if err else {"elapsed": time.monotonic() - t0}



def case_temp_files():
    import tempfile
    base = tempfile.gettempdir()
    stale = os.path.join(base, "impasto-gimp-4194303-left")  # a pid no process has
    os.makedirs(stale, exist_ok=True)
    with open(os.path.join(stale, "content.rgbf"), "wb") as f:
        f.write(b"\0" * 1000)
    image = load("background.png")
    src = add_layer_from(image, "source.png", 10, 20)
    _, err = run_proc(image, [src], **STYLE)
    _, err2 = run_proc(image, [src], **dict(STYLE, style="no-such-style"))  # an error path
    left = [n for n in os.listdir(base) if n.startswith("impasto-gimp-")]
    return {"error": err, "error2": err2, "stale_exists": os.path.exists(stale), "left": left}


def case_texts():
    """The registered procedure's arguments as GIMP's PDB holds them: name, label (nick)
    and help (blurb), and the procedure's own documentation."""
    proc = Gimp.get_pdb().lookup_procedure(PROC)
    return {"args": [{"name": a.get_name(), "nick": a.get_nick(), "blurb": a.get_blurb()}
                     for a in proc.get_arguments()],
            "doc": [proc.get_blurb(), proc.get_help()]}


def case_no_style():
    image = load("background.png")
    layer = image.get_layers()[0]
    before = len(image.get_layers())
    _, err = run_proc(image, [layer], **dict(STYLE, style=""))
    return {"error": err, "layers_added": len(image.get_layers()) - before}


def case_two_styles():
    image = load("background.png")
    src = image.get_layers()[0]
    sl = add_layer_from(image, "style.png", 0, 0)
    sl.set_name("zigzag")
    new, err = run_proc(image, [src], **dict(STYLE, style_layer=sl))
    return {"error": err} if err else {"name": new.get_name()}


def half_channel(image, name, left):
    """A channel white on one half of the image (left or right), black on the other."""
    w, h = image.get_width(), image.get_height()
    ch = Gimp.Channel.new(image, name, w, h, 50.0, Gegl.Color.new("red"))
    image.insert_channel(ch, None, 0)
    row = bytes([255 if (x < w // 2) == left else 0 for x in range(w)])
    ch.get_buffer().set(Gegl.Rectangle.new(0, 0, w, h), "Y u8", row * h)
    ch.get_buffer().flush()
    return ch


def case_regions():
    """Two styles, each guided by a channel (left and right halves), then the same with
    the channels swapped; and the errors an incomplete row gives."""
    out = {}
    for label, swap in (("a", False), ("b", True)):
        image = load("background.png")
        src = image.get_layers()[0]
        dots = add_layer_from(image, "dots.png", 0, 0)
        dots.set_name("dots")
        left, right = half_channel(image, "sky", True), half_channel(image, "sea", False)
        first, second = (right, left) if swap else (left, right)
        new, err = run_proc(image, [src], **dict(STYLE, size=96), region="channel",
                            region_channel=first, style_2_layer=dots, region_2="channel",
                            region_2_channel=second)
        if err:
            return {"error": err}
        out[label] = {"name": new.get_name(), "new": dump(new, f"regions-{label}.rgba")}
    # Style 1's area from a layer's mask (white on the left half, as the channel was):
    # the same request as run a, so the same pixels.
    image = load("background.png")
    src = image.get_layers()[0]
    dots = add_layer_from(image, "dots.png", 0, 0)
    right = half_channel(image, "sea", False)
    holder = add_layer_from(image, "background.png", 0, 0)
    holder.add_mask(holder.create_mask(Gimp.AddMaskType.BLACK))
    w, h = image.get_width(), image.get_height()
    row = bytes([255 if x < w // 2 else 0 for x in range(w)])
    holder.get_mask().get_buffer().set(Gegl.Rectangle.new(0, 0, w, h), "Y u8", row * h)
    holder.get_mask().get_buffer().flush()
    new, err = run_proc(image, [src], **dict(STYLE, size=96), region="layer-mask",
                        region_layer=holder, style_2_layer=dots, region_2="channel",
                        region_2_channel=right)
    out["layer_mask"] = {"error": err} if err else {"new": dump(new, "regions-lm.rgba")}
    _, out["no_layer_mask"] = run_proc(image, [src], **STYLE, region="layer-mask",
                                       region_layer=dots)
    # The selection as style 1's area: the whole layer is stylized, no layer mask.
    image = load("background.png")
    src = image.get_layers()[0]
    dots = add_layer_from(image, "dots.png", 0, 0)
    image.select_rectangle(Gimp.ChannelOps.REPLACE, 0, 0, image.get_width() // 2,
                           image.get_height())
    new, err = run_proc(image, [src], **dict(STYLE, size=96), region="selection",
                        style_2_layer=dots)
    out["selection_area"] = {"error": err} if err else {
        "has_mask": new.get_mask() is not None, "new": dump(new, "regions-sel.rgba")}
    # A selection that limits where the result shows, with areas from channels inside it.
    image = load("background.png")
    src = image.get_layers()[0]
    dots = add_layer_from(image, "dots.png", 0, 0)
    left, right = half_channel(image, "sky", True), half_channel(image, "sea", False)
    image.select_rectangle(Gimp.ChannelOps.REPLACE, 20, 10, 50, 40)
    new, err = run_proc(image, [src], **dict(STYLE, size=96), region="channel",
                        region_channel=left, style_2_layer=dots, region_2="channel",
                        region_2_channel=right)
    out["selection_limits"] = {"error": err} if err else {"has_mask": new.get_mask() is not None}
    image = load("background.png")
    src = image.get_layers()[0]
    _, out["no_channel"] = run_proc(image, [src], **STYLE, region="channel")
    _, out["area_without_style"] = run_proc(image, [src], **STYLE, region_2="selection")
    _, out["empty_selection"] = run_proc(image, [src], **STYLE, region="selection")
    return out


def case_keeps_source():
    """What the result keeps of its source: one style inside one channel and none
    elsewhere (the result gets a mask of that area), a hidden source (a visible result),
    only style 2 filled in (enough), a failed run (the image stays clean), and Filters >
    Repeat with nothing to repeat (no display here: said in an artist's words)."""
    out = {}
    image = load("background.png")
    src = image.get_layers()[0]
    left = half_channel(image, "sky", True)
    new, err = run_proc(image, [src], **dict(STYLE, size=96), region="channel",
                        region_channel=left)
    mask = new.get_mask() if new is not None else None
    out["one_area"] = {"error": err} if err else {
        "has_mask": mask is not None,
        "mask": dump(mask, "keep-mask.grey", "Y u8") if mask is not None else None}
    image = load("background.png")
    src = image.get_layers()[0]
    src.set_visible(False)
    new, err = run_proc(image, [src], **STYLE)
    out["hidden"] = {"error": err} if err else {"visible": new.get_visible(),
                                                "source_visible": src.get_visible()}
    image = load("background.png")
    src = image.get_layers()[0]
    dots = add_layer_from(image, "dots.png", 0, 0)
    new, err = run_proc(image, [src], **dict(STYLE, style=""), style_2_layer=dots)
    out["only_style_2"] = {"error": err} if err else {"name": new.get_name()}
    image = load("background.png")
    src = image.get_layers()[0]
    image.clean_all()  # as a saved file opens
    clean_before = not image.is_dirty()
    _, err = run_proc(image, [src], **dict(STYLE, style="no-such-style"))
    out["failed"] = {"error": err, "clean_before": clean_before,
                     "clean_after": not image.is_dirty()}
    image = load("background.png")
    proc = Gimp.get_pdb().lookup_procedure(PROC)
    config = proc.create_config()
    config.set_property("run-mode", Gimp.RunMode.WITH_LAST_VALS)
    config.set_property("image", image)
    config.set_core_object_array("drawables", [image.get_layers()[0]])
    result = proc.run(config)
    out["repeat"] = {"status": result.index(0).value_nick,
                     "error": result.index(1) if result.length() > 1 else ""}
    return out


def case_hdr():
    """A 32-bit float layer holding values up to 4.0 (linear light, as HDR work is)."""
    image = load("background.png")
    image.convert_precision(Gimp.Precision.FLOAT_LINEAR)
    layer = image.get_layers()[0]
    w, h = layer.get_width(), layer.get_height()
    rect = Gegl.Rectangle.new(0, 0, w, h)
    fmt = "RGB float" if not layer.has_alpha() else "RGBA float"
    import array
    px = array.array("f", bytes(layer.get_buffer().get(rect, 1.0, fmt, Gegl.AbyssPolicy.CLAMP)))
    comps = 4 if layer.has_alpha() else 3
    for i in range(len(px)):
        if comps == 3 or i % 4 != 3:
            px[i] = px[i] * 4.0
    buf = layer.get_buffer()
    buf.set(rect, fmt, px.tobytes())
    buf.flush()
    src_max = max(v for i, v in enumerate(px) if comps == 3 or i % 4 != 3)
    new, err = run_proc(image, [layer], **STYLE)
    if err:
        return {"error": err}
    out = array.array("f", bytes(new.get_buffer().get(rect, 1.0, fmt, Gegl.AbyssPolicy.CLAMP)))
    vals = [v for i, v in enumerate(out) if comps == 3 or i % 4 != 3]
    return {"src_max": src_max, "new_max": max(vals), "above_1": sum(v > 1.0 for v in vals),
            "count": len(vals)}


def animation():
    """A 3-frame animation as GIMP holds one: one top-level layer a frame, the first
    frame at the bottom, timings in the names; distinct pictures, the top frame smaller
    and offset."""
    image = load("background.png")
    first = image.get_layers()[0]
    first.set_name("Frame 1 (100ms)")
    second = add_layer_from(image, "background.png", 0, 0)
    second.invert(False)
    second.set_name("Frame 2 (200ms) (replace)")
    third = add_layer_from(image, "source.png", 10, 20)
    third.set_name("Frame 3 (100ms)")
    return image, [third, second, first]  # as GIMP lists them: top first


def group_info(group, prefix):
    children = group.get_children()
    return [{"name": c.get_name(), "offsets": list(c.get_offsets()[1:]),
             "size": [c.get_width(), c.get_height()],
             "pixels": dump(c, f"{prefix}-{i}.rgba")} for i, c in enumerate(children)]


def case_animation():
    reset_trace()
    image, frames = animation()
    before = [x.get_id() for x in image.get_layers()]
    new, err = run_proc(image, [frames[0]], **STYLE, animation=True)
    if err:
        return {"error": err}
    top = image.get_layers()
    return {"is_group": new.is_group(), "name": new.get_name(), "top_id": top[0].get_id(),
            "new_id": new.get_id(), "top_level": len(top), "before": len(before),
            "children": group_info(new, "anim"),
            "sources": [{"name": f.get_name(), "offsets": list(f.get_offsets()[1:]),
                         "size": [f.get_width(), f.get_height()],
                         "pixels": dump(f, f"anim-src-{i}.rgba")} for i, f in enumerate(frames)],
            "trace": trace_lines()}


def case_animation_combine():
    """An optimised GIF as GIMP opens one: frames after the first hold only what
    changed and are drawn over the ones before ("(combine)"); one reaches past the
    canvas."""
    reset_trace()
    image = load("background.png")
    first = image.get_layers()[0]
    first.set_name("Frame 1 (100ms)")
    patch = Gimp.Layer.new(image, "Frame 2 (100ms) (combine)", 30, 20, Gimp.ImageType.RGBA_IMAGE,
                           100.0, Gimp.LayerMode.NORMAL)
    image.insert_layer(patch, None, 0)
    patch.set_offsets(10, 10)
    patch.fill(Gimp.FillType.WHITE)
    third = add_layer_from(image, "source.png", 40, 30)
    third.set_name("Frame 3 (100ms) (combine)")
    frames = [third, patch, first]
    new, err = run_proc(image, [first], **STYLE, animation=True)
    if err:
        return {"error": err}
    return {"children": group_info(new, "comb"), "images": len(Gimp.get_images()),
            "sources": [{"name": f.get_name(), "offsets": list(f.get_offsets()[1:]),
                         "size": [f.get_width(), f.get_height()],
                         "pixels": dump(f, f"comb-src-{i}.rgba")} for i, f in enumerate(frames)],
            "trace": trace_lines()}


def case_animation_stop():
    reset_trace()
    image, frames = animation()
    new, err = run_proc(image, [frames[0]], **dict(STYLE, preset="best"), animation=True,
                        stop_after=0.1)
    if err:
        return {"error": err}
    return {"name": new.get_name(), "children": [c.get_name() for c in new.get_children()],
            "trace": trace_lines()}


def case_animation_one_layer():
    image = load("background.png")
    before = len(image.get_layers())
    _, err = run_proc(image, [image.get_layers()[0]], **STYLE, animation=True)
    return {"error": err, "added": len(image.get_layers()) - before}


def case_setup():
    """The set-up procedure without a dialog, as a script runs it: settings from the
    environment (IMPASTO_SETUP_*)."""
    proc = Gimp.get_pdb().lookup_procedure("plug-in-impasto-setup")
    if proc is None:
        return {"error": "plug-in-impasto-setup is not registered"}
    config = proc.create_config()
    config.set_property("run-mode", Gimp.RunMode.NONINTERACTIVE)
    for key in ("action", "backend", "python", "wheels", "weights", "folder"):
        value = os.environ.get("IMPASTO_SETUP_" + key.upper())
        if value is not None:  # folders and files are picked, as GFiles
            config.set_property(key, Gio.File.new_for_path(value)
                                if key in ("python", "wheels", "folder") else value)
    t0 = time.monotonic()
    result = proc.run(config)
    status = result.index(0)
    out = {"seconds": round(time.monotonic() - t0, 1), "status": status.value_nick}
    if status != Gimp.PDBStatusType.SUCCESS:
        out["error"] = result.index(1) if result.length() > 1 else ""
    return out


def case_first_stylize():
    """A layer stylized with a style picture, right after the set-up: the daemon is
    autostarted from the new environment."""
    image = load("background.png")
    src = image.get_layers()[0]
    t0 = time.monotonic()
    new, err = run_proc(image, [src], style="",
                        style_file=Gio.File.new_for_path(os.path.join(IO, "style.png")),
                        preset="draft", size=64, seed=1)
    if err:
        return {"error": err}
    return {"seconds": round(time.monotonic() - t0, 1), "name": new.get_name(),
            "new": dump(new, "new.rgba"), "src": dump(src, "src.rgba")}


for name in os.environ.get("IMPASTO_CASES", "registered").split(","):
    try:
        report[name] = globals()["case_" + name]()
    except Exception:
        report[name] = {"exception": traceback.format_exc()}
with open(os.path.join(IO, "report.json"), "w") as f:
    json.dump(report, f)
print("IMPASTO-BATCH-DONE")
