"""impasto.bridgerequest: the typed request the GIMP plug-in writes and the bridge reads.
Every kind round-trips; the plug-in's own JSON is read as it is; each mistake is refused
with a reason; the module stands alone beside the plug-in."""

from __future__ import annotations

import ast
import copy
import json
import sys
from typing import Any

import pytest

from impasto import bridgerequest as br
from impasto import protocol
from impasto.bridgerequest import (
    Area,
    Clip,
    ClipRequest,
    Preview,
    RawImage,
    RequestError,
    StillRequest,
    Style,
)

STILL = StillRequest(
    address="tcp://127.0.0.1:5767", timeout=5.0, autostart={"command": ["python", "-m", "x"]},
    content=RawImage("/t/content.rgbf", 50, 40, "rgb32f"),
    styles=[Style.layer("/t/style1.rgba", 32, 24, mask=Area("/t/area1.grey", 50, 40)),
            Style.file("/t/painting.jpg", weight=2.5), Style.library("zebra")],
    options={"preset": "normal", "strength": 1.0, "match_content_size": True, "size": 64,
             "seed": 2**63 - 1},
    output="/t/result.rgbf", preview=Preview("/t/preview.rgba", 384, 0.5))
CLIP = ClipRequest(
    clip=Clip(["/t/frame-0001.rgbf", "/t/frame-0002.rgbf"], 64, 48, "/t/out", chunk=2),
    styles=[Style.library("zebra")], options={"size": 64})
SAMPLES = [STILL, CLIP,
           StillRequest(content=RawImage("/c", 1, 1), styles=[Style(name="a")], output="/o"),
           ClipRequest(clip=Clip(["/f"], 1, 1, "/o", format="rgba8"), styles=[Style(path="/s")])]


@pytest.mark.parametrize("request_", SAMPLES, ids=lambda r: type(r).__name__)
def test_every_kind_round_trips(request_: br.Request) -> None:
    line = request_.to_line()
    assert "\n" not in line
    assert br.parse(line) == request_
    assert br.parse(line.encode()) == request_
    assert br.from_json(json.loads(line)) == request_


# What the plug-in writes today (stylize_layer, stylize_animation, style_spec,
# read_region): a config without an address or autostart gives nulls.
PLUGIN_STILL = {
    "address": None, "timeout": 5.0, "autostart": None, "client": "gimp",
    "content": {"path": "/t/content.rgbf", "width": 50, "height": 40, "format": "rgb32f"},
    "styles": [{"raw": "/t/style1.rgba", "width": 32, "height": 24,
                "mask": {"raw": "/t/area1.grey", "width": 50, "height": 40}},
               {"path": "/pictures/painting.jpg"}, {"name": "zebra"}],
    "options": {"preset": "normal", "strength": 1.0, "match_content_size": True, "size": 512,
                "iterations": 3, "preserve_colors": "luminance", "seed": 7},
    "output": "/t/result.rgbf",
    "preview": {"path": "/t/preview.rgba", "max_side": 384, "interval_s": 1.0}}
PLUGIN_CLIP = {
    "address": "tcp://127.0.0.1:5767", "timeout": 5, "autostart": {"command": ["p"], "wait_s": 300},
    "client": "gimp",
    "clip": {"frames": ["/t/frame-0001.rgbf", "/t/frame-0002.rgbf"], "width": 64, "height": 48,
             "format": "rgb32f", "output_dir": "/t/out"},
    "styles": [{"name": "zebra", "mask": {"raw": "/t/area1.grey", "width": 64, "height": 48}}],
    "options": {"preset": "draft", "strength": 0.5, "match_content_size": True, "size": 64}}


@pytest.mark.parametrize("body", [PLUGIN_STILL, PLUGIN_CLIP], ids=["still", "clip"])
def test_the_plugins_json_is_read_as_it_is_and_written_back_the_same(body: dict) -> None:
    r = br.parse(json.dumps(body))
    assert isinstance(r, StillRequest if "content" in body else ClipRequest)
    # The same object back, less its nulls (a null field is a missing one).
    assert r.to_json() == {k: v for k, v in body.items() if v is not None}
    assert br.parse(r.to_line()) == r


def test_the_plugins_still_reads_as_typed() -> None:
    r = br.parse(json.dumps(PLUGIN_STILL))
    assert isinstance(r, StillRequest)
    assert r.address is None and r.autostart is None and r.client == "gimp"
    assert r.content == RawImage("/t/content.rgbf", 50, 40, "rgb32f")
    assert r.styles[0] == Style(raw="/t/style1.rgba", width=32, height=24,
                                mask=Area("/t/area1.grey", 50, 40))
    assert r.styles[1].path == "/pictures/painting.jpg" and r.styles[1].weight == 1.0
    assert r.styles[2].name == "zebra" and r.styles[2].mask is None
    assert r.preview == Preview("/t/preview.rgba", 384, 1.0)
    assert r.options["seed"] == 7


def test_defaults_where_the_request_says_nothing() -> None:
    r = br.from_json({"content": {"path": "/c", "width": 2, "height": 3}, "styles": [{"name": "a"}],
                      "output": "/o", "preview": {"path": "/p"}})
    assert isinstance(r, StillRequest)
    assert (r.address, r.timeout, r.autostart, r.client, r.options) == (None, 5.0, None, "gimp", {})
    assert r.content.format == "rgba8"  # older plug-ins sent 8-bit RGBA
    assert r.preview == Preview("/p", 256, 1.0)
    c = br.from_json({"clip": {"frames": ["/f"], "width": 2, "height": 3, "output_dir": "/o"},
                      "styles": [{"name": "a"}]})
    assert isinstance(c, ClipRequest) and c.clip.format == "rgb32f" and c.clip.chunk is None
    # The daemon's own preview defaults are the request's.
    assert Preview("/p").max_side == protocol.PREVIEW_SIDE[2]
    assert Preview("/p").interval_s == protocol.PREVIEW_INTERVAL_S[2]
    # Its ranges are the daemon's: what the daemon refuses is refused before it is asked.
    assert protocol.PREVIEW_SIDE[:2] == br.SIDE
    assert protocol.PREVIEW_INTERVAL_S[:2] == br.INTERVAL_S


def test_a_still_s_fields_beside_a_clip_are_ignored_as_they_always_were() -> None:
    body = {**PLUGIN_STILL, "clip": PLUGIN_CLIP["clip"]}
    r = br.from_json(body)
    assert isinstance(r, ClipRequest) and r.clip.width == 64
    assert "content" not in r.to_json() and "output" not in r.to_json()


def _with(path: str, value: Any, base: dict | None = None) -> dict:
    """PLUGIN_STILL (or base) with the field at a dotted path set (or removed: ...)."""
    body = copy.deepcopy(base or PLUGIN_STILL)
    *parents, last = path.split(".")
    node: Any = body
    for p in parents:
        node = node[int(p)] if isinstance(node, list) else node[p]
    if value is ...:
        del node[last]
    elif isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return body


@pytest.mark.parametrize(("body", "says"), [
    ([PLUGIN_STILL], "the request must be a JSON object"),
    (_with("colour", "red"), "the request has unknown field(s) colour"),
    (_with("address", 5767), "the request's 'address' must be a string"),
    (_with("autostart", "yes"), "the request's 'autostart' must be an object"),
    (_with("client", 3), "the request's 'client' must be a string"),
    (_with("timeout", float("inf")), "the request's timeout must be a number from 0.1 to 3600, not inf"),
    (_with("timeout", float("nan")), "the request's timeout must be a number from 0.1 to 3600, not nan"),
    (_with("timeout", 0.05), "the request's timeout must be a number from 0.1 to 3600, not 0.05"),
    (_with("timeout", True), "the request's timeout must be a number"),
    (_with("options", "fast"), "the request's 'options' must be an object"),
    (_with("options.seed", -3), "the seed must be a whole number from 0, not -3"),
    (_with("options.seed", 2**63), f"the seed must be a whole number from 0, not {2**63}"),
    (_with("options.seed", 1.5), "the seed must be a whole number from 0, not 1.5"),
    (_with("options.seed", True), "the seed must be a whole number from 0, not True"),
    (_with("options.strength", float("nan")), "the request's option 'strength' is not finite"),
    (_with("content", "c.rgbf"), "the request's 'content' must be an object"),
    (_with("content", ...), "the request's 'content' must be an object, not None"),
    (_with("content.depth", 8), "the request's 'content' has unknown field(s) depth"),
    (_with("content.path", ...), "the content's 'path' must be a file path, not None"),
    (_with("content.width", -50), "the content's width must be a positive whole number, not -50"),
    (_with("content.width", 50.5), "the content's width must be a positive whole number, not 50.5"),
    (_with("content.height", "40"), "the content's height must be a positive whole number, not '40'"),
    (_with("content.height", 0), "the content's height must be a positive whole number, not 0"),
    (_with("content.format", "rgb16"), "content in 'rgb16'; the bridge takes rgb32f or rgba8"),
    (_with("output", ...), "the request's 'output' must be a file path"),
    (_with("output", ""), "the request's 'output' must be a file path"),
    (_with("styles", "s.png"), "the request's 'styles' must be a list of objects"),
    (_with("styles", ["s.png"]), "the request's 'styles' must be a list of objects"),
    (_with("styles", []), br.NO_STYLE),
    (_with("styles", [{}]), br.NO_STYLE),
    (_with("styles", [{"weight": 2}]), br.NO_STYLE),
    (_with("styles.1.name", "zebra"), "style 2 gives path and name: a style is one of"),
    (_with("styles.1.colour", 1), "style 2 has unknown field(s) colour"),
    (_with("styles.1.weight", {"a": 1}), "a style's weight must be a number from 0 to 1e+06, not {'a': 1}"),
    (_with("styles.1.weight", -1), "a style's weight must be a number from 0 to 1e+06, not -1"),
    (_with("styles.1.weight", 2e6), "a style's weight must be a number from 0 to 1e+06"),
    (_with("styles.1.weight", float("inf")), "a style's weight must be a number from 0 to 1e+06, not inf"),
    (_with("styles.1.width", 3), "style 2's width and height go with raw pixels, not with path"),
    (_with("styles.2.name", ""), "style 3's name must be a library style's name, not ''"),
    (_with("styles.1.path", 7), "style 2's 'path' must be a file path, not 7"),
    (_with("styles.0.width", ...), "the style's width must be a positive whole number, not None"),
    (_with("styles.0.mask.width", 0), "the area's width must be a positive whole number, not 0"),
    (_with("styles.0.mask.raw", ...), "style 1's area's 'raw' must be a file path"),
    (_with("styles.0.mask", "a.grey"), "style 1's area must be an object"),
    (_with("styles.0.mask.depth", 8), "style 1's area has unknown field(s) depth"),
    (_with("preview", {"max_side": 128}), "the request's 'preview' must be an object with a path"),
    (_with("preview", "p.rgba"), "the request's 'preview' must be an object with a path"),
    (_with("preview.max_side", float("inf")), "the preview's max_side must be a positive whole number, not inf"),
    (_with("preview.max_side", 0), "the preview's max_side must be a positive whole number, not 0"),
    (_with("preview.interval_s", -1), "the preview's interval_s must be a number from 0.1 to 3600, not -1"),
    (_with("preview.format", "png"), "the request's 'preview' has unknown field(s) format"),
    (_with("clip", {}, PLUGIN_CLIP), "an animation needs a list of at least one frame file"),
    (_with("clip", "frames", PLUGIN_CLIP), "the request's 'clip' must be an object"),
    (_with("clip.frames", [], PLUGIN_CLIP), "an animation needs a list of at least one frame file"),
    (_with("clip.frames", ["/a", 3], PLUGIN_CLIP), "frame 2 must be a file path, not 3"),
    (_with("clip.width", 0, PLUGIN_CLIP), "the frames' width must be a positive whole number, not 0"),
    (_with("clip.format", "png", PLUGIN_CLIP), "frames in 'png'; the bridge takes rgb32f or rgba8"),
    (_with("clip.output_dir", ..., PLUGIN_CLIP), "the clip's 'output_dir' must be a file path"),
    (_with("clip.chunk", 0, PLUGIN_CLIP), "the clip's chunk must be a positive whole number, not 0"),
    (_with("clip.fps", 24, PLUGIN_CLIP), "the request's 'clip' has unknown field(s) fps"),
    (_with("styles", [], PLUGIN_CLIP), br.NO_STYLE),
    (_with("options.seed", float("inf"), PLUGIN_CLIP), "the seed must be a whole number from 0, not inf"),
])
def test_each_mistake_is_refused_with_its_reason(body: Any, says: str) -> None:
    with pytest.raises(RequestError) as e:
        br.parse(json.dumps(body))
    assert says in str(e.value)
    assert isinstance(e.value, ValueError)


@pytest.mark.parametrize(("text", "says"), [
    ("", "not JSON"), ("{not json", "not JSON"), (b"\xff{}", "not UTF-8"), ("[1, 2]", "a JSON object"),
    ("null", "a JSON object")])
def test_a_file_that_is_no_request_is_refused(text: str | bytes, says: str) -> None:
    with pytest.raises(RequestError, match=says):
        br.parse(text)


@pytest.mark.parametrize(("request_", "says"), [
    (StillRequest(content=RawImage("/c", 0, 1), styles=[Style(name="a")], output="/o"),
     "the content's width"),
    (StillRequest(content=RawImage("/c", 1, 1), styles=[Style(raw="/r", path="/p")], output="/o"),
     "gives raw and path"),
    (StillRequest(content=RawImage("/c", 1, 1), styles=[], output="/o"), br.NO_STYLE),
    (StillRequest(content=RawImage("/c", 1, 1), styles=[Style(name="a", weight=float("nan"))],
                  output="/o"), "weight"),
    (ClipRequest(clip=Clip([], 1, 1, "/o"), styles=[Style(name="a")]), "at least one frame"),
    (ClipRequest(clip=Clip(["/f"], 1, 1, "/o"), styles=[Style(name="a")], timeout=0),
     "timeout"),
])
def test_to_line_writes_nothing_parse_would_refuse(request_: br.Request, says: str) -> None:
    with pytest.raises(RequestError, match=says):
        request_.to_line()


def test_it_stands_alone_beside_the_plugin() -> None:
    """Copied beside the plug-in (GIMP's Python has no impasto): the standard library
    only, under the name impasto.gimp.COMPANIONS gives it."""
    from impasto.gimp import COMPANIONS, companion_files

    assert COMPANIONS["impasto_request.py"] == "impasto.bridgerequest"
    tree = ast.parse(companion_files()["impasto_request.py"].read_text())
    names = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import)
             for a in n.names}
    names |= {n.module.split(".")[0] for n in ast.walk(tree)
              if isinstance(n, ast.ImportFrom) and n.module}
    assert names <= set(sys.stdlib_module_names) | {"__future__"}, names


def test_its_formats_are_the_protocol_s_raw_ones() -> None:
    """The bridge sends a request's raw pixels as they are: each format the request takes
    is a protocol raw format, whose bytes a pixel the bridge reads from the protocol."""
    assert set(br.FORMATS) <= set(protocol.RAW_FORMATS)
    import impasto.gimp.bridge as bridge

    assert not hasattr(bridge, "RAW_BYTES")
