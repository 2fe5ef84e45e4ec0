"""The GIMP 3 plug-in inside a real GIMP in batch mode, against a real daemon."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from benchmarks.regions import region_styles
from tests.gimp.runner import GimpRunner, gimp_root
from tests.helpers import DaemonProcess, gradient_image, make_env, run_cli, stripes_image

ROOT = gimp_root()
pytestmark = [pytest.mark.gimp, pytest.mark.skipif(
    ROOT is None, reason="no GIMP 3: run tests/gimp/setup_gimp.sh (scripts/test does)")]
BATCH = Path(__file__).parent / "batch_cases.py"


@pytest.fixture(scope="module")
def gimp(tmp_path_factory: pytest.TempPathFactory):
    """A daemon with a `stripes` style, and a GIMP profile where `impasto gimp install`
    put the plug-in (no autostart: the daemon is ours)."""
    tmp = tmp_path_factory.mktemp("gimp")
    env = make_env(tmp)
    daemon = DaemonProcess(tmp, env=env).wait_ready()
    style = tmp / "stripes.png"
    stripes_image(40, 40).save(style)
    assert run_cli(["styles", "add", "stripes", str(style), "--address", daemon.address],
                   env).returncode == 0
    runner = GimpRunner(ROOT, tmp)
    r = run_cli(["gimp", "install", "--gimp-dir", str(runner.profile), "--address", daemon.address,
                 "--no-autostart", "--bridge", runner.bridge_command(sys.executable)], env)
    assert r.returncode == 0, r.stderr
    cfg_path = runner.profile / "plug-ins" / "impasto-neural-style" / "impasto-bridge.json"
    runner.share_keys(tmp / "config", cfg_path)
    # Previews often and small, so that short test runs see several.
    cfg = json.loads(cfg_path.read_text())
    cfg["preview"] = {"interval_s": 0.2, "max_side": 96}
    cfg_path.write_text(json.dumps(cfg))
    gradient_image(96, 72).save(runner.io / "background.png")
    gradient_image(1024, 768).save(runner.io / "large.png")
    gradient_image(60, 40, alpha=True).save(runner.io / "source.png")
    stripes_image(48, 48).save(runner.io / "style.png")
    region_styles(48)[1].save(runner.io / "dots.png")
    yield runner, daemon, env
    daemon.stop()


def batch(runner: GimpRunner, *cases: str) -> dict:
    (runner.io / "report.json").unlink(missing_ok=True)
    p = runner.run_batch(BATCH, {"IMPASTO_CASES": ",".join(cases),
                                 "IMPASTO_GIMP_TRACE": str(runner.inner(runner.io / "trace.jsonl"))})
    assert "IMPASTO-BATCH-DONE" in p.stdout, p.stdout + p.stderr
    # GIMP only warns about out-of-range arguments and then uses the default. (The
    # no-layer case passes an empty drawables array on purpose, which GIMP also flags.)
    bad = [line for line in p.stderr.lower().splitlines()
           if "out of range" in line and "'drawables'" not in line]
    assert not bad, p.stderr
    report = json.loads((runner.io / "report.json").read_text())
    for name, r in report.items():
        assert "exception" not in r, f"{name}: {r['exception']}"
    return report


def rgba(runner: GimpRunner, info: dict) -> np.ndarray:
    data = (runner.io / info["file"]).read_bytes()
    return np.frombuffer(data, np.uint8).reshape(info["height"], info["width"], -1)


def test_install_files(gimp) -> None:
    runner, _, _ = gimp
    plugin = runner.profile / "plug-ins" / "impasto-neural-style" / "impasto-neural-style.py"
    assert plugin.is_file() and plugin.stat().st_mode & 0o111
    cfg = json.loads((plugin.parent / "impasto-bridge.json").read_text())
    assert cfg["autostart"] is None and cfg["bridge"]
    # The plug-in imports only the standard library, gi and impasto's event module, which
    # `impasto gimp install` copies beside it (the same file as impasto.events); that
    # module imports only the standard library.
    from impasto import events

    copied = plugin.parent / "impasto_events.py"
    assert copied.read_bytes() == Path(events.__file__).read_bytes()

    def imports(path: Path) -> set[str]:
        return {line.split()[1].split(".")[0] for line in path.read_text().splitlines()
                if line.strip().startswith(("import ", "from "))}

    stdlib = set(sys.stdlib_module_names) | {"__future__"}
    # Beside the plug-in: impasto's modules it and its set-up import (impasto.gimp.COMPANIONS),
    # standard library only (tests/test_serversetup.py checks them at any depth).
    # Its parts (impasto.gimp.PARTS) import the standard library, gi and one another.
    from impasto.gimp import PARTS, beside_names, companion_texts

    beside = beside_names()
    assert imports(plugin) <= stdlib | {"gi"} | beside, imports(plugin)
    assert {"impasto_fields", "impasto_stylerows", "impasto_spawn"} <= imports(plugin)
    for name in PARTS:
        assert imports(plugin.parent / name) <= stdlib | {"gi"} | beside, name
    assert imports(copied) <= stdlib, imports(copied)
    for name, text in companion_texts().items():
        assert (plugin.parent / name).read_bytes() == text, name


def test_new_layer_above_source(gimp) -> None:
    runner, _, _ = gimp
    rep = batch(runner, "registered", "new_layer", "selection_mask", "style_layer", "grayscale",
                "style_file")
    f = rep["style_file"]
    assert "error" not in f and f["name"].startswith("style (impasto"), f
    reg = rep["registered"]
    assert reg["found"] and "<Image>/Filters/Artistic" in reg["menu"]
    one, several = reg["drawable_bits"]
    assert reg["sensitivity"] & one and reg["sensitivity"] & several, reg
    r = rep["new_layer"]
    assert "error" not in r, r
    layers = r["layers"]
    ids = [x["id"] for x in layers]
    assert ids.index(r["new_id"]) + 1 == ids.index(r["src_id"]), layers  # directly above
    new = next(x for x in layers if x["id"] == r["new_id"])
    src = next(x for x in layers if x["id"] == r["src_id"])
    assert new["size"] == src["size"] == [60, 40] and new["offsets"] == src["offsets"] == [10, 20]
    assert new["name"].startswith("stripes")
    assert not r["has_mask"]
    a, b = rgba(runner, r["new"]), rgba(runner, r["src"])
    assert np.array_equal(a[..., 3], b[..., 3])  # alpha kept exactly
    assert np.abs(a[..., :3].astype(int) - b[..., :3].astype(int)).mean() > 1  # stylized

    m = rep["selection_mask"]
    assert m["has_mask"], m
    mask = np.frombuffer((runner.io / "mask.gray").read_bytes(), np.uint8).reshape(40, 60)
    # selection (20,30)-(40,40) in image space = (10,10)-(30,20) in the layer
    assert mask[12:18, 12:28].min() == 255 and mask[0:8, :].max() == 0 and mask[:, 35:].max() == 0

    s = rep["style_layer"]
    assert "error" not in s and s["size"] == [60, 40] and s["name"].startswith("style")
    g = rep["grayscale"]
    assert "error" not in g and g["gray"] and g["size"] == [96, 72]


def test_errors_the_user_can_read(gimp) -> None:
    runner, _, _ = gimp
    e = batch(runner, "errors")["errors"]
    assert "unknown style 'no-such-style'" in e["unknown_style"] and "stripes" in e["unknown_style"]
    assert "No layer is selected" in e["no_layer"]
    assert "layer group" in e["group"] and "Layer > Merge Layer Group" in e["group"]
    assert "Image > Mode > RGB" in e["indexed"]


def floats(runner: GimpRunner, info: dict, dtype: str = "<f4") -> np.ndarray:
    data = (runner.io / info["file"]).read_bytes()
    return np.frombuffer(data, dtype).reshape(info["height"], info["width"], -1)


def test_live_preview_updates_a_layer_then_leaves_one_result(gimp, capsys) -> None:
    runner, _, _ = gimp
    r = batch(runner, "preview")["preview"]
    assert "error" not in r, r
    previews = [t for t in r["trace"] if t["event"] == "preview"]
    assert len(previews) >= 2, r["trace"]
    with capsys.disabled():
        print(f"\n[gimp] draft, 512 px, 1024x768 layer: first preview shown after "
              f"{previews[0]['t']:.2f} s (bridge start and upload included), "
              f"{len(previews)} previews")
    # While it runs, the preview is one extra layer, at the layer's size, and it changes.
    assert all(p["layers"] == r["layers_before"] + 1 for p in previews)
    assert all(p["shown"] == [1024, 768] for p in previews)
    assert len({p["crc"] for p in previews}) >= 2
    steps = [p["step"] for p in previews]
    assert steps == sorted(steps)
    # Afterwards: exactly one new layer, no preview left.
    assert r["layers_after"] == r["layers_before"] + 1
    assert not any("preview" in n for n in r["names"])
    result = [t for t in r["trace"] if t["event"] == "result"]
    assert result and result[-1]["previews"] == len(previews)


def test_small_selection_costs_a_fraction_and_leaves_the_rest(gimp, capsys) -> None:
    runner, _, _ = gimp
    r = batch(runner, "selection_speed")["selection_speed"]
    assert "error" not in r, r
    with capsys.disabled():
        print(f"\n[gimp] 1024x768 layer at 256 px: whole {r['whole_s']:.1f} s, "
              f"100x80 selection {r['selection_s']:.1f} s")
    assert r["selection_s"] < 0.75 * r["whole_s"]
    box = [t for t in r["trace"] if t["event"] == "result"][-1]["box"]
    x, y, w, h = box
    # The box: the selection (400,300 100x80) plus context, inside the layer.
    assert x <= 400 and y <= 300 and x + w >= 500 and y + h >= 380 and w < 1024
    new, src = floats(runner, r["new"]), floats(runner, r["src"])
    outside = np.ones(new.shape[:2], bool)
    outside[y:y + h, x:x + w] = False
    assert np.array_equal(new[outside], src[outside])  # untouched, bit for bit
    assert not np.array_equal(new[~outside], src[~outside])


def test_selection_that_misses_the_layer_says_so(gimp) -> None:
    runner, _, _ = gimp
    r = batch(runner, "selection_misses")["selection_misses"]
    assert r["error"] and "does not touch layer" in r["error"] and "Select > None" in r["error"]


def test_full_precision_and_exact_alpha(gimp) -> None:
    runner, _, _ = gimp
    r = batch(runner, "precision")["precision"]
    for name, dtype, grid in (("u16", "<u2", lambda v: v % 257 != 0),
                              ("float", "<f4", lambda v: np.abs(v * 255 - np.round(v * 255)) > 1e-3),
                              ("u32", "<u4", lambda v: v % 16843009 != 0)):
        assert "error" not in r[name], r[name]
        new, src = floats(runner, r[name]["new"], dtype), floats(runner, r[name]["src"], dtype)
        assert np.array_equal(new[..., 3], src[..., 3]), name  # alpha, bit for bit
        rgb = new[..., :3][src[..., 3] > 0]
        assert grid(rgb).mean() > 0.5, name  # most values off the 8-bit grid
        assert not np.array_equal(new[..., :3], src[..., :3])
    assert r["adobe"].get("ok"), r["adobe"]


def test_colours_outside_srgb_are_not_clipped(gimp) -> None:
    runner, _, _ = gimp
    r = batch(runner, "wide_gamut")["wide_gamut"]
    assert "error" not in r, r
    assert r["format"].startswith("R'G'B'A float-space"), r["format"]  # Adobe's own space
    assert r["srgb"][0] < -0.05  # the green lies outside sRGB: sRGB's red would be negative
    assert r["worst"] < 0.01, r  # and it came back as it went


def test_mode_opacity_and_mask_carried_over(gimp) -> None:
    runner, _, _ = gimp
    r = batch(runner, "looks")["looks"]
    assert "error" not in r, r
    p = r["plain"]
    assert p["mode"] == "multiply" and abs(p["opacity"] - 40.0) < 1e-6
    assert p["mask"] is not None
    mask = rgba(runner, p["mask"])[..., 0]
    src_mask = rgba(runner, p["src_mask"])[..., 0]
    assert np.array_equal(mask, src_mask) and mask[:, :30].min() == 255 and mask[:, 30:].max() == 0
    s = r["selected"]
    assert s["mode"] == "multiply" and abs(s["opacity"] - 40.0) < 1e-6
    m = rgba(runner, s["mask"])[..., 0]
    # selection: layer rows 10..30, columns 10..50; source mask: columns < 30
    assert m[12:28, 12:28].min() == 255  # both
    assert m[12:28, 32:48].max() == 0  # selected, but the source's mask hides it
    assert m[:8, :].max() == 0 and m[32:, :].max() == 0  # outside the selection
    assert s["selection_kept"] and s["channels"] == 0  # the user's selection is as it was


def test_several_layers_each_get_a_result(gimp) -> None:
    runner, _, _ = gimp
    r = batch(runner, "several")["several"]
    assert "error" not in r, r
    ids = [x["id"] for x in r["layers"]]
    assert len(ids) == 5  # background, two sources, two results
    for src in (r["a"], r["b"]):
        above = r["layers"][ids.index(src) - 1]
        assert above["name"].startswith("stripes") and above["size"] == [60, 40]
    assert len(r["selected"]) == 2


def test_stop_and_keep_leaves_one_layer(gimp) -> None:
    runner, _, _ = gimp
    r = batch(runner, "stop_keep")["stop_keep"]
    assert "error" not in r, r
    assert len(r["names"]) == 2 and not any("preview" in n for n in r["names"])
    result = [t for t in r["trace"] if t["event"] == "result"][-1]
    assert result["stopped"]
    assert r["size"] == [1024, 768]
    a, b = rgba(runner, r["new"]), rgba(runner, r["src"])
    assert np.abs(a[..., :3].astype(int) - b[..., :3].astype(int)).mean() > 0.5


def test_tiny_layer_is_quick(gimp, capsys) -> None:
    runner, _, _ = gimp
    r = batch(runner, "tiny", "new_layer")
    assert "error" not in r["tiny"], r["tiny"]
    with capsys.disabled():
        print(f"\n[gimp] 1x1 layer, normal preset: {r['tiny']['elapsed']:.1f} s")



def test_temporary_files_removed_on_every_path(gimp) -> None:
    runner, _, _ = gimp
    r = batch(runner, "temp_files")["temp_files"]
    assert r["error"] is None and "unknown style" in r["error2"]
    assert not r["stale_exists"]  # a killed run's folder is cleaned at the next start
    assert r["left"] == [], r["left"]  # nothing left by a finished or failed run


# Last: it stops the module's daemon.
# Engine words an artist does not use; none may appear in the dialog's labels and help.
JARGON = ("gatys", "iteration", "evaluation", "scale", "optimi", "gram", "vgg", "l-bfgs", "lbfgs",
          "loss", "tensor", "weights", "network", "preset", "luminance", "histogram",
          "1 is the default", "engine", "et al", "tv ", "size, scales")


def test_dialog_texts_speak_the_artist_s_language(gimp) -> None:
    runner, _, _ = gimp
    t = batch(runner, "texts")["texts"]
    args = {a["name"]: a for a in t["args"]}
    fields = ["style", "style-file", "style-layer", "preset", "strength", "size",
              "preserve-colors", "seed", "stop-after", "animation"]
    texts = [args[f]["nick"] + " | " + args[f]["blurb"] for f in fields] + t["doc"]
    for text in texts:
        bad = [w for w in JARGON if w in text.lower()]
        assert not bad, f"{text!r} says {bad}"
    # Working size 0 is explained, in pixels, for each quality
    size = args["size"]["blurb"]
    assert "0 = the layer's own size" in size and "512 px" in size and "768 px" in size, size
    assert "%" in args["strength"]["nick"] and "100%" in args["strength"]["blurb"]


def test_no_style_is_a_clear_error_before_any_work(gimp) -> None:
    """The non-interactive path. The interactive dialog (OK refused until a style is
    chosen) needs a display and cannot be driven in batch mode."""
    runner, _, _ = gimp
    r = batch(runner, "no_style")["no_style"]
    assert r["layers_added"] == 0
    assert "No style given" in r["error"] and "'style-layer'" in r["error"], r


def test_two_styles_say_which_one_is_used(gimp) -> None:
    runner, _, _ = gimp
    (runner.io / "trace.jsonl").unlink(missing_ok=True)
    r = batch(runner, "two_styles")["two_styles"]
    assert "error" not in r, r
    assert r["name"].startswith("zigzag (impasto, from the style layer"), r
    said = [json.loads(x) for x in (runner.io / "trace.jsonl").read_text().splitlines()]
    messages = [x["text"] for x in said if x["event"] == "message"]
    assert any("the style layer 'zigzag' is used" in m and "library style 'stripes' is not" in m
               for m in messages), messages


def test_two_styles_guided_by_two_channels(gimp) -> None:
    """Style 1 (the library's colourful stripes) inside one channel, style 2 (a layer of
    cyan dots on a dark ground) inside the other; then the channels swapped. The half
    each style paints takes its colours: the content is the same, so only the areas
    can move them."""
    runner, _, _ = gimp
    r = batch(runner, "regions")["regions"]
    assert "error" not in r, r
    assert r["a"]["name"].startswith("stripes + dots (impasto"), r

    def halves(info: dict) -> tuple[float, float]:
        a = rgba(runner, info)[..., :3].astype(float)
        w = a.shape[1]
        return a[:, : w // 2 - 8].mean(), a[:, w // 2 + 8:].mean()  # brightness, edge left out

    # Each half against itself in the other run (the content's own brightness differs
    # between halves): stripes there make it brighter than the dark dots do.
    (al, ar), (bl, br) = halves(r["a"]["new"]), halves(r["b"]["new"])
    assert al > bl + 10 and br > ar + 10, (al, ar, bl, br)
    lm = r["layer_mask"]
    assert "error" not in lm, lm
    assert np.array_equal(rgba(runner, lm["new"]), rgba(runner, r["a"]["new"]))
    assert "has no layer mask" in r["no_layer_mask"], r
    sel, lim = r["selection_area"], r["selection_limits"]
    assert "error" not in sel and not sel["has_mask"], sel  # the selection was an area
    sl, sr = halves(sel["new"])
    assert sl > bl + 10, (sl, bl)  # stripes inside the selection, as with the channel
    assert "error" not in lim and lim["has_mask"], lim  # the selection limited the result
    assert "no channel is chosen" in r["no_channel"], r
    assert "Style 2 has an area but no style" in r["area_without_style"], r
    assert "nothing is selected" in r["empty_selection"], r


def test_random_weights_are_named_on_the_layer_and_said(gimp) -> None:
    runner, _, _ = gimp  # the tests' daemon runs --weights random
    (runner.io / "trace.jsonl").unlink(missing_ok=True)
    r = batch(runner, "new_layer")["new_layer"]
    assert "error" not in r, r
    new = next(x for x in r["layers"] if x["id"] == r["new_id"])
    assert "RANDOM weights" in new["name"], new
    said = [json.loads(x) for x in (runner.io / "trace.jsonl").read_text().splitlines()]
    assert any(x["event"] == "message" and "RANDOM weights" in x["text"] for x in said), said


def test_hdr_float_values_above_1_survive(gimp) -> None:
    runner, _, _ = gimp
    r = batch(runner, "hdr")["hdr"]
    assert "error" not in r, r
    assert r["src_max"] > 3.9
    assert r["new_max"] > 1.5 and r["above_1"] > r["count"] // 20, r


def test_animation_becomes_a_group_of_stylized_frames(gimp) -> None:
    """Stylize as animation on a 3-frame animation: a layer group on top with one
    stylized layer per frame, in order, each named as its frame (timing tags kept), at
    its frame's size and offsets, with its frame's alpha; the frames stay as they were."""
    runner, _, _ = gimp
    r = batch(runner, "animation", "animation_one_layer")
    a = r["animation"]
    assert "error" not in a, a
    assert a["is_group"] and a["new_id"] == a["top_id"] and a["top_level"] == a["before"] + 1, a
    assert a["name"].startswith("stripes (impasto animation") and "seed 3" in a["name"], a
    kids, srcs = a["children"], a["sources"]
    assert len(kids) == len(srcs) == 3
    for kid, src in zip(kids, srcs):
        # GIMP keeps layer names unique: the copy's name is its frame's, plus " #1" at most
        assert kid["name"] == src["name"] or kid["name"].startswith(src["name"] + " #"), (kid, src)
        assert kid["offsets"] == src["offsets"] and kid["size"] == src["size"], (kid, src)
        k, s = rgba(runner, kid["pixels"]), rgba(runner, src["pixels"])
        assert np.array_equal(k[..., 3], s[..., 3])  # alpha kept exactly
        assert np.abs(k[..., :3].astype(int) - s[..., :3].astype(int)).mean() > 1  # stylized
    assert srcs[0]["size"] == [60, 40] and srcs[0]["offsets"] == [10, 20]
    assert "(200ms) (replace)" in kids[1]["name"]
    done = [t for t in a["trace"] if t["event"] == "animation"][-1]
    assert done["frames"] == done["done"] == 3 and not done["stopped"], done
    assert done["box"] == [0, 0, 96, 72], done
    one = r["animation_one_layer"]
    assert done["previews"] >= 1  # the frame being painted showed as it went
    assert one["added"] == 0 and "1 layer(s) to paint" in one["error"], one


def test_animation_of_combined_frames_is_sent_as_it_plays(gimp) -> None:
    """An optimised GIF's "(combine)" frames hold only what changed: each is sent whole
    (GIMP's Unoptimize, on a copy), and its result cut back to the frame's own pixels,
    so the group plays as the frames did; nothing of the copy is left open."""
    runner, _, _ = gimp
    r = batch(runner, "animation_combine")["animation_combine"]
    assert "error" not in r, r
    done = [t for t in r["trace"] if t["event"] == "animation"][-1]
    assert done["combined"] and done["done"] == 3 and done["box"] == [0, 0, 100, 72], done
    assert r["images"] == 1, r  # the copies made for Unoptimize are gone
    for kid, src in zip(r["children"], r["sources"], strict=True):
        assert kid["name"].startswith(src["name"]), (kid, src)
        assert kid["offsets"] == src["offsets"] and kid["size"] == src["size"], (kid, src)
        k, s = rgba(runner, kid["pixels"]), rgba(runner, src["pixels"])
        assert np.array_equal(k[..., 3], s[..., 3])
        assert np.abs(k[..., :3].astype(int) - s[..., :3].astype(int)).mean() > 1


def test_animation_stop_keeps_the_frames_done(gimp) -> None:
    runner, _, _ = gimp
    r = batch(runner, "animation_stop")["animation_stop"]
    assert "error" not in r, r
    kids = r["children"]
    assert 1 <= len(kids) < 3 and kids[0].startswith("Frame 3 (100ms)"), r
    assert f"{len(kids)} of 3 frames" in r["name"], r
    said = [t["text"] for t in r["trace"] if t["event"] == "message"]
    assert any("of 3 frames are done and kept" in m for m in said), said


def test_the_result_keeps_the_source_where_no_style_paints(gimp) -> None:
    runner, _, _ = gimp
    r = batch(runner, "keeps_source")["keeps_source"]
    one = r["one_area"]
    assert "error" not in one and one["has_mask"], r
    mask = np.frombuffer((runner.io / one["mask"]["file"]).read_bytes(), np.uint8).reshape(
        one["mask"]["height"], one["mask"]["width"])
    w = mask.shape[1]
    # Outside the area the mask is black, so the source below shows exactly as it was.
    assert (mask[:, : w // 2] == 255).all() and (mask[:, w // 2:] == 0).all(), mask
    assert r["hidden"] == {"visible": True, "source_visible": False}, r
    assert "error" not in r["only_style_2"], r
    failed = r["failed"]
    assert "no-such-style" in failed["error"], failed
    assert failed["clean_before"] and failed["clean_after"], failed
    # Repeat with nothing saved and no display: not a script's words, what to do.
    # (Scripts' runs save no values to repeat: only the dialog's OK does.)
    repeat = r["repeat"]
    assert "no earlier settings to repeat" in repeat["error"], repeat
    assert "argument" not in repeat["error"], repeat


# Last in this file: it stops the module's daemon, which every test above uses.
def test_daemon_down_without_autostart(gimp) -> None:
    runner, daemon, env = gimp
    daemon.stop()
    try:
        err = batch(runner, "daemon_down")["daemon_down"]["error"]
        assert "execution-error" in err and "No impasto daemon answered" in err, err
        assert "impasto serve" in err and "impasto gimp install" in err
        assert "IMPASTO_ADDRESS" not in err  # the plug-in does not read it
    finally:
        gimp_restart = DaemonProcess(Path(daemon.log).parent, env=env, port=daemon.port)
        gimp_restart.wait_ready()
        gimp_restart.stop()
