"""The style rows: each a style (a library name, a picture file, or a layer of the image)
and the area it paints (everywhere, the selection, a channel or a layer mask), as the
procedure's arguments, read back and checked before any work."""

import os

import gi

gi.require_version("Gimp", "3.0")
import impasto_request as request  # noqa: E402
from gi.repository import Gimp  # noqa: E402
from impasto_common import PluginError, choice  # noqa: E402
from impasto_layerio import read_rgba  # noqa: E402

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


ROWS = 4
# Row 1's "everywhere" is the whole layer; a later row's is where no other style paints.
FIRST_EVERYWHERE = "Everywhere"
REGIONS = (("everywhere", "Everywhere else"),
           ("selection", "Inside the selection"),
           ("channel", "Inside a channel"),
           ("layer-mask", "Inside a layer mask"))

NO_STYLE_DIALOG = ("Choose a style first: a style from the library, a style picture, or a "
                   "style layer of this image.")
NO_STYLE_SCRIPT = ("No style given: set the procedure's 'style' argument (a library name or a "
                   "picture file's path), 'style-file' or 'style-layer'.")
# Filters > Repeat with nothing saved: no script is involved, so no script's words.
NO_STYLE_REPEAT = ("Neural Style has no earlier settings to repeat: choose Filters > Artistic > "
                   "Neural Style... and pick a style.")


def row_keys(k):
    """The procedure's argument names of style row k (1 = the first style's)."""
    if k == 1:
        return {"style": "style", "style-file": "style-file", "style-layer": "style-layer",
                "region": "region", "region-channel": "region-channel",
                "region-layer": "region-layer"}
    return {key: key.replace("style", f"style-{k}", 1) if key.startswith("style")
            else key.replace("region", f"region-{k}", 1) for key in row_keys(1)}


def choose_styles(config, interactive=False, no_style=None):
    """Every style row that has a style: ([((kind, value, label), region)], note). At
    least one row must have one, whichever (rows are all alike: filling only the second
    is no mistake); a row with an area but no style is an error, as is an area that is
    missing what it needs (an empty selection, no channel, a layer without a mask).
    region: None (everywhere) or (kind, drawable)."""
    rows, note = [], None
    for k in range(1, ROWS + 1):
        keys = row_keys(k)
        try:
            chosen, extra = choose_style(config, interactive, keys)
        except PluginError:
            if config.get_property(keys["region"]) != "everywhere":
                raise PluginError(f"Style {k} has an area but no style: choose its style, or "
                                  "set its area back to 'Everywhere'.") from None
            continue
        rows.append((chosen, choose_region(config, k)))
        note = note or extra
    if not rows:
        raise PluginError(no_style or (NO_STYLE_DIALOG if interactive else NO_STYLE_SCRIPT))
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


def style_spec(chosen, tmp, k=1, mask=None):
    """The request's style for the chosen style (with its area, if any), and its label."""
    kind, value, label = chosen
    if kind == "layer":
        sdata, sw, sh = read_rgba(value)
        spath = os.path.join(tmp, f"style{k}.rgba")
        with open(spath, "wb") as f:
            f.write(sdata)
        return request.Style.layer(spath, sw, sh, mask=mask), label
    if kind == "path":
        return request.Style.file(value, mask=mask), label
    return request.Style.library(value, mask=mask), label


def add_region_arguments(p, k, flags):
    keys = row_keys(k)
    nth = "" if k == 1 else f" {k}"
    regions = ((("everywhere", FIRST_EVERYWHERE),) + REGIONS[1:]) if k == 1 else REGIONS
    p.add_choice_argument(keys["region"], TEXT["region"][0] + nth, TEXT["region"][1],
                          choice(regions), "everywhere", flags)
    p.add_channel_argument(keys["region-channel"], TEXT["region-channel"][0] + nth,
                           TEXT["region-channel"][1], True, flags)
    p.add_layer_argument(keys["region-layer"], TEXT["region-layer"][0] + nth,
                         TEXT["region-layer"][1], True, flags)


def add_row_arguments(p, k, flags):
    """Style row k: a style (library name or picture path, picture file, or layer) and
    its area. Row 1's arguments keep their first names (style, region, ...)."""
    keys = row_keys(k)
    names = {"style": "from the library", "style-file": "picture", "style-layer": "layer"}
    text = {key: (TEXT[key][0], TEXT[key][1]) if k == 1 else
            (f"Style {k} {names[key]}", f"Style {k}: {TEXT[key][1]}") for key in names}
    p.add_string_argument(keys["style"], *text["style"], "", flags)
    p.add_file_argument(keys["style-file"], *text["style-file"], Gimp.FileChooserAction.OPEN,
                        True, None, flags)
    p.add_layer_argument(keys["style-layer"], *text["style-layer"], True, flags)
    add_region_arguments(p, k, flags)
