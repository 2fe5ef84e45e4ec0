# Executed by GIMP's python-fu-eval inside gimp-console (batch mode). Runs the cases
# named in IMPASTO_CASES against the installed plug-in and writes IMPASTO_IO/report.json.
import json
import os
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
            "label": proc.get_menu_label() if proc else ""}


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


for name in os.environ.get("IMPASTO_CASES", "registered").split(","):
    try:
        report[name] = globals()["case_" + name]()
    except Exception:
        report[name] = {"exception": traceback.format_exc()}
with open(os.path.join(IO, "report.json"), "w") as f:
    json.dump(report, f)
print("IMPASTO-BATCH-DONE")
