"""The layer's pixels in and out of GIMP: what to send (the layer, the selection's box,
a style's area) and how the result goes back (float RGB at the image's precision, the
source's alpha byte for byte, the selection as a mask), and the live preview layer."""

import math
import os
import time
import zlib

import gi

gi.require_version("Gimp", "3.0")
gi.require_version("Gegl", "0.4")
gi.require_version("Babl", "0.1")
import impasto_request as request  # noqa: E402
from gi.repository import Babl, Gegl, Gimp  # noqa: E402
from impasto_common import PluginError, trace  # noqa: E402

FMT = "R'G'B'A u8"  # 8-bit sRGB-encoded values, as stored; "RGBA u8" would be linear
# Context the network needs around a selection, in pixels at the working size: a
# stylized pixel depends on its neighbourhood (VGG's deep layers see far), so the box
# sent is the selection's plus this much on every side, where the layer has it.
CONTEXT_PX = 32

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
    return request.Area(raw=path, width=w, height=h)


def apply_selection(image, layer, new):
    """The new layer (a copy of `layer`, its mask included) shows only where the
    selection is, and where the source's own mask lets it (GIMP's intersect)."""
    keep_outside_areas(image, layer, new, [("selection", None)])


def keep_outside_areas(image, layer, new, areas):
    """`new` shows only inside the union of the areas (each (kind, item): the selection,
    a channel or a layer mask), and where its own mask lets it: outside every area the
    source below is what shows, exactly."""
    saved = Gimp.Selection.save(image)
    try:
        Gimp.Selection.none(image)
        for kind, item in areas:
            image.select_item(Gimp.ChannelOps.ADD, saved if kind == "selection" else item)
        own = new.get_mask()
        if own is not None:
            image.select_item(Gimp.ChannelOps.INTERSECT, own)
            new.remove_mask(Gimp.MaskApplyMode.DISCARD)
        new.add_mask(new.create_mask(Gimp.AddMaskType.SELECTION))
    finally:
        image.select_item(Gimp.ChannelOps.REPLACE, saved)
        image.remove_channel(saved)
