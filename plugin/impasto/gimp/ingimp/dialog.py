"""The Neural Style dialog, laid out for one screen (1366 x 768): the common case first
(a style: from the library, a picture or a layer; quality, strength, colours; OK), then
"More styles and areas" (a style's area, styles 2 to 4) and "More settings" (working
size, variation, animation), both closed unless an earlier run left something in them,
so that nothing saved is mixed in unseen.

The style rows are widgets of this module bound both ways to the procedure's config:
each shows the library's list, names its layers and channels, and follows Reset and
Factory defaults. The option fields are GIMP's own widgets for impasto_fields."""

import gi

gi.require_version("Gimp", "3.0")
gi.require_version("Gtk", "3.0")
import impasto_fields as fields  # noqa: E402
from gi.repository import Gimp, GLib, Gtk  # noqa: E402
from impasto_bridgecall import library_names  # noqa: E402
from impasto_stylerows import FIRST_EVERYWHERE, REGIONS, ROWS, TEXT, row_keys  # noqa: E402

NONE = "(none)"


def all_layers(image):
    """Every layer of the image, groups opened, top first."""
    out = []

    def walk(layers):
        for layer in layers:
            out.append(layer)
            if layer.is_group():
                walk(layer.get_children())

    walk(image.get_layers())
    return out


class Binding:
    """Widgets bound both ways to config properties: a change in a widget sets the
    property; a change of the property (Reset, Factory defaults) updates the widgets."""

    def __init__(self, config):
        self.config = config
        self.updating = False
        self.views = {}  # property -> [function showing its value]
        config.connect("notify", self._notified)

    def show(self, prop, view):
        self.views.setdefault(prop, []).append(view)
        view(self.config.get_property(prop))

    def set(self, prop, value):
        if not self.updating:
            self.config.set_property(prop, value)

    def _notified(self, _config, pspec):
        views = self.views.get(pspec.name, [])
        if not views:
            return
        self.updating = True
        try:
            for view in views:
                view(self.config.get_property(pspec.name))
        finally:
            self.updating = False


def item_combo(binding, prop, items):
    """A list naming each item (layer, channel) by its name, with "(none)"."""
    combo = Gtk.ComboBoxText()
    combo.append("", NONE)
    for item in items:
        combo.append(str(item.get_id()), item.get_name())
    combo.connect("changed", lambda c: binding.set(
        prop, Gimp.Item.get_by_id(int(c.get_active_id())) if c.get_active_id() else None))
    binding.show(prop, lambda v: combo.set_active_id(str(v.get_id()) if v is not None else ""))
    return combo


def style_grid(binding, image, names, k, with_style=True, with_area=True):
    """Style row k: the library's list, a picture (with Clear), a layer; and where it
    paints (its channel or layer mask shown only when that is chosen)."""
    keys = row_keys(k)
    grid = Gtk.Grid(row_spacing=4, column_spacing=8)
    row = [0]

    def add(label, widget, tip, extra=None):
        lab = Gtk.Label(label=label, xalign=0.0)
        widget.set_tooltip_text(tip)
        widget.set_hexpand(True)
        grid.attach(lab, 0, row[0], 1, 1)
        grid.attach(widget, 1, row[0], 1 if extra else 2, 1)
        if extra:
            grid.attach(extra, 2, row[0], 1, 1)
        row[0] += 1
        return lab

    if with_style:
        add_style_fields(binding, image, names, keys, add)
    if not with_area:
        return grid
    where = Gtk.ComboBoxText()
    for nick, words in ((("everywhere", FIRST_EVERYWHERE),) + REGIONS[1:]) if k == 1 else REGIONS:
        where.append(nick, words)
    where.connect("changed", lambda c: binding.set(keys["region"], c.get_active_id()))
    binding.show(keys["region"], lambda v: where.set_active_id(v or "everywhere"))
    add("Where", where, TEXT["region"][1])
    channel = item_combo(binding, keys["region-channel"], image.get_channels())
    masked = [la for la in all_layers(image) if la.get_mask() is not None]
    mask = item_combo(binding, keys["region-layer"], masked)
    shown = [add("Channel", channel, TEXT["region-channel"][1]),
             add("Layer mask of", mask, TEXT["region-layer"][1])]
    for widget in (channel, mask, *shown):
        widget.set_no_show_all(True)

    def show_area(v):
        for widget, kind in ((channel, "channel"), (mask, "layer-mask"),
                             (shown[0], "channel"), (shown[1], "layer-mask")):
            widget.set_visible(v == kind)

    binding.show(keys["region"], show_area)
    return grid


def add_style_fields(binding, image, names, keys, add):
    library = Gtk.ComboBoxText.new_with_entry()
    for n in names:
        library.append_text(n)
    entry = library.get_child()
    entry.set_placeholder_text("pick or type a name" if names else "none in the library yet")
    library.connect("changed", lambda c: binding.set(keys["style"], c.get_active_text() or ""))
    binding.show(keys["style"], lambda v: entry.set_text(v or ""))
    add("From the library", library, TEXT["style"][1])

    picture = Gtk.FileChooserButton(title="Style picture", action=Gtk.FileChooserAction.OPEN)
    picture.connect("file-set", lambda b: binding.set(keys["style-file"], b.get_file()))
    clear = Gtk.Button(label="Clear")
    clear.set_tooltip_text("Use no style picture")
    clear.connect("clicked", lambda _b: binding.config.set_property(keys["style-file"], None))

    def show_picture(f):
        if f is not None and f.get_path():
            picture.set_file(f)
        else:
            picture.unselect_all()
        clear.set_sensitive(f is not None)

    binding.show(keys["style-file"], show_picture)
    add("Or a picture", picture, TEXT["style-file"][1], clear)
    add("Or a layer", item_combo(binding, keys["style-layer"], all_layers(image)),
        TEXT["style-layer"][1])


def in_use(config, k):
    keys = row_keys(k)
    f = config.get_property(keys["style-file"])
    return bool((config.get_property(keys["style"]) or "").strip()
                or (f is not None and f.get_path())
                or config.get_property(keys["style-layer"]) is not None
                or config.get_property(keys["region"]) != "everywhere")


def build(procedure, config, image):
    """The dialog, filled; returns (dialog, warning label)."""
    from gi.repository import GimpUi

    dialog = GimpUi.ProcedureDialog.new(procedure, config, "Neural Style")
    binding = Binding(config)
    names = library_names()
    area = dialog.get_content_area()

    first = Gtk.Frame(label="Style")
    first.add(style_grid(binding, image, names, 1, with_area=False))
    first.set_margin_bottom(6)
    area.pack_start(first, False, False, 0)

    common = [f["argument"] for f in fields.FIELDS if not f["more"]]
    more = [f["argument"] for f in fields.FIELDS if f["more"]] + ["animation"]
    dialog.fill_box("more-box", more)
    dialog.get_label("more-title", "More settings", False, False)
    dialog.fill_expander("more", "more-title", False, "more-box")
    dialog.fill(common + ["more"])

    # Styles 2 to 4 and every style's area: a page each, behind one expander.
    pages = Gtk.Notebook()
    titles = {}
    for k in range(1, ROWS + 1):
        # Style 1's own style fields are at the top of the dialog; here only its area.
        page = style_grid(binding, image, names, k, with_style=k > 1)
        page.set_border_width(6)
        titles[k] = Gtk.Label(label=f"Style {k}")
        pages.append_page(page, titles[k])
    styles = Gtk.Expander(label="More styles and areas")
    styles.set_tooltip_text("Paint parts of the layer in other styles: each style's area is "
                            "the selection, a channel or a layer mask you painted")
    styles.add(pages)
    warning = Gtk.Label(xalign=0.0)
    warning.set_line_wrap(True)
    warning.set_max_width_chars(60)
    area.pack_end(warning, False, False, 4)
    area.pack_end(styles, False, False, 4)

    def mark(*_args):
        used = [k for k in range(1, ROWS + 1) if in_use(config, k)]
        for k, title in titles.items():
            title.set_text(f"Style {k}" + (" \u2022" if k in used and k > 1 else ""))
        if any(k > 1 or config.get_property("region") != "everywhere" for k in used):
            styles.set_expanded(True)  # what an earlier run left is seen before OK
        return False

    config.connect("notify", lambda *_a: GLib.idle_add(mark))
    mark()
    more_open = any(config.get_property(a) != fields.field(a)["default"]
                    for a in more if a != "animation") or config.get_property("animation")
    if more_open:
        with_more = find_expander(area, "More settings")
        if with_more is not None:
            with_more.set_expanded(True)
    area.show_all()
    return dialog, warning


def find_expander(widget, label):
    if isinstance(widget, Gtk.Expander) and widget.get_label() == label:
        return widget
    if isinstance(widget, Gtk.Container):
        for child in widget.get_children():
            found = find_expander(child, label)
            if found is not None:
                return found
    return None
