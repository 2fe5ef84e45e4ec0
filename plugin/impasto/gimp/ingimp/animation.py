"""Stylize as animation: the image's layers are the frames of one clip, sent together so
that each frame holds to the one before, and the result is a layer group of stylized
frames on top, each named and placed as its frame."""

import os
import tempfile

import gi

gi.require_version("Gimp", "3.0")
import impasto_pixels as pixels  # noqa: E402
import impasto_request as request  # noqa: E402
import impasto_spawn as spawn  # noqa: E402
from gi.repository import Gimp  # noqa: E402
from impasto_bridgecall import StopControls, bridge_settings, run_bridge  # noqa: E402
from impasto_common import TMP_PREFIX, PluginError, load_config, tell, trace  # noqa: E402
from impasto_layerio import Preview, read_rgb_float, write_result  # noqa: E402
from impasto_still import preview_request, request_options, styles_of, working_side  # noqa: E402


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
    spawn.remove_stale(tempfile.gettempdir(), TMP_PREFIX)
    if not Gimp.Selection.is_empty(image):
        tell("Neural style: the selection does not limit an animation; every frame is "
             "painted whole.")
    n = len(frames)
    label = f" (animation of {n} frames)"
    ux, uy, uw, uh = frames_box(frames)
    long_side = working_side(config, max(uw, uh))
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
            styles, style_label = styles_of(rows, first, box_on_first, tmp)
            options = request_options(config, long_side, max(uw, uh))
            preview_spec = preview_request(cfg, tmp)
            job = request.ClipRequest(
                **bridge_settings(cfg), styles=styles, options=options, preview=preview_spec,
                clip=request.Clip(frames=paths, width=uw, height=uh, format="rgb32f",
                                  output_dir=os.path.join(tmp, "out")))
            # The preview shows the frame being painted, over all the frames.
            preview = Preview(image, first, box_on_first)
            got = []
            try:
                done = run_bridge(cfg, job, tmp, label, preview if preview_spec else None,
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


