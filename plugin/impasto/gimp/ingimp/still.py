"""One layer stylized: its pixels (or the selection's box) sent with the style rows,
the live preview shown, and the result put back as a new layer above the source."""

import os
import tempfile

import gi

gi.require_version("Gimp", "3.0")
import impasto_fields as fields  # noqa: E402
import impasto_pixels as pixels  # noqa: E402
import impasto_request as request  # noqa: E402
from gi.repository import Gimp  # noqa: E402
from impasto_bridgecall import bridge_settings, run_bridge  # noqa: E402
from impasto_common import PREVIEW, TMP_PREFIX, PluginError, tell, trace  # noqa: E402
from impasto_layerio import (  # noqa: E402
    Preview,
    apply_selection,
    keep_outside_areas,
    read_region,
    read_rgb_float,
    work_box,
    write_result,
)
from impasto_stylerows import style_spec  # noqa: E402


def working_side(config, extent):
    """The dialog's Working size for something `extent` pixels long: 0 means its own size,
    capped by the quality's."""
    asked = int(config.get_property("size"))
    cap = int(fields.PRESET_SIZES.get(config.get_property("preset"), 512))
    return min(extent, asked if asked > 0 else cap)


def request_options(config, side, extent):
    """The engine options of a still or an animation: every dialog field's (impasto_fields),
    then the size: side is the working long side, extent the largest side of what is
    stylized."""
    options = fields.options_from(config.get_property)
    # Never upscale a small layer just to shrink the result again; the network's
    # smallest working size is 64.
    options.update(size=max(64, side), match_content_size=True)
    if extent < 64:
        # A tiny layer is worked at 64 px (the network's least) and shrunk back: a few
        # evaluations give it all the style it can hold, in about a second.
        options["iterations"] = max(3, min(20, extent // 3))
    return options


def preview_request(cfg, tmp):
    """The daemon's preview settings for this run, or None when the config turns it off."""
    preview_cfg = {**PREVIEW, **(cfg.get("preview") or {})}
    if not preview_cfg.get("enabled", True):
        return None
    return request.Preview(path=os.path.join(tmp, "preview.rgba"),
                           max_side=int(preview_cfg["max_side"]),
                           interval_s=float(preview_cfg["interval_s"]))


def styles_of(rows, layer, box, tmp):
    """The request's styles (each with its area over `box` of `layer`) and their label."""
    styles, labels = [], []
    for k, (chosen, region) in enumerate(rows, 1):
        mask = None if region is None else read_region(
            layer, box, region, os.path.join(tmp, f"area{k}.grey"))
        style, style_label = style_spec(chosen, tmp, k, mask)
        styles.append(style)
        labels.append(style_label)
    return styles, " + ".join(labels)


def stylize_layer(image, layer, config, cfg, label, controls, rows, note):
    long_side = working_side(config, max(layer.get_width(), layer.get_height()))
    box, box_side, selected = work_box(image, layer, long_side, any(
        r is not None and r[0] == "selection" for _, r in rows))
    _, _, bw, bh = box
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
        styles, style_label = styles_of(rows, layer, box, tmp)
        chosen = rows[0][0]
        options = request_options(config, box_side, max(bw, bh))
        preview_spec = preview_request(cfg, tmp)
        job = request.StillRequest(
            **bridge_settings(cfg), styles=styles, options=options, preview=preview_spec,
            content=request.RawImage(path=content_path, width=bw, height=bh, format="rgb32f"),
            output=os.path.join(tmp, "result.rgbf"))
        preview = Preview(image, layer, box)
        try:
            done = run_bridge(cfg, job, tmp, label, preview if preview_spec else None,
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
        # A hidden source still gives a result the artist sees.
        new.set_visible(True)
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
        # Styles that all have areas leave the rest of the layer as it was: the result
        # shows only inside their areas (a layer mask), the source below everywhere else.
        areas = [region for _, region in rows]
        if all(a is not None for a in areas):
            keep_outside_areas(image, layer, new, areas)
        image.set_selected_layers([new])
    finally:
        image.undo_group_end()
    trace(event="result", layer=layer.get_name(), box=list(box), size=options["size"],
          stopped=bool(done.stopped), previews=preview.count, name=new.get_name(), peak=peak,
          masked=new.get_mask() is not None)
    return new
