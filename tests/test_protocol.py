"""Encoding, decoding and validation of wire messages (no daemon needed)."""

from __future__ import annotations

import json

import pytest

from impasto import errors, imagecodec
from impasto.errors import ImpastoError
from impasto.options import EngineOptions
from impasto.protocol import (
    MAX_PIXELS,
    PROTOCOL_VERSION,
    Cancel,
    Error,
    ImageRef,
    Progress,
    Result,
    StyleRef,
    Stylize,
    decode,
    encode,
)
from tests.helpers import EXIT_S, gradient_image


def test_round_trip_stylize_with_blobs() -> None:
    png = imagecodec.encode_png(gradient_image(8, 6))
    msg = Stylize(content=ImageRef(png, "png"),
                  styles=[StyleRef(name="mosaic", weight=0.7),
                          StyleRef(image=ImageRef(b"\x01" * 16, "rgba8", 2, 2), weight=0.3)],
                  options={"size": 128}, priority="batch", output="rgba8", client="t")
    frames = encode(msg, req="r1")
    assert len(frames) == 3
    header = json.loads(frames[0])
    assert header["v"] == PROTOCOL_VERSION and header["type"] == "stylize" and header["req"] == "r1"
    assert header["content"] == {"blob": 0, "format": "png"}
    back, req = decode(frames)
    assert req == "r1" and back == msg


@pytest.mark.parametrize("msg", [
    Progress(job="j1", scale=1, scales=3, size=256, step=5, total=9, losses={"total": 1.5}),
    Result(job="j1", image=ImageRef(b"x", "png"), losses={"style": 2.0}, seed=3),
    Error(code="unknown_style", message="nope", job="j2"),
    Cancel(job="j9"),
])
def test_round_trip_other_messages(msg) -> None:
    back, _ = decode(encode(msg))
    assert back == msg


@pytest.mark.parametrize(("frames", "code"), [
    ([], errors.BAD_MESSAGE),
    ([b"\xff\xfe"], errors.BAD_MESSAGE),
    ([b"[1,2]"], errors.BAD_MESSAGE),
    ([b'{"type":"ping"}'], errors.BAD_VERSION),
    ([b'{"v":99,"type":"ping"}'], errors.BAD_VERSION),
    ([b'{"v":1,"type":"launch"}'], errors.UNKNOWN_TYPE),
    ([b'{"v":1,"type":"ping","req":5}'], errors.BAD_MESSAGE),
    ([b'{"v":1,"type":"ping","extra":1}'], errors.BAD_MESSAGE),
    ([b'{"v":1,"type":"cancel","job":7}'], errors.BAD_MESSAGE),
    ([b'{"v":1,"type":"stylize","content":{"blob":3}}'], errors.BAD_MESSAGE),
    ([b'{"v":1,"type":"stylize","content":{"blob":0,"format":"gif"}}', b"x"], errors.BAD_IMAGE),
    ([b'{"v":1,"type":"stylize","content":{"blob":0,"format":"rgba8","width":2,"height":2}}',
      b"123"], errors.BAD_IMAGE),
    ([b'{"v":1,"type":"stylize","content":{"blob":0,"format":"rgba8","width":5000,"height":5000}}',
      b"x"], errors.IMAGE_TOO_LARGE),
    ([b'{"v":1,"type":"stylize","styles":[{"name":"a","image":{"blob":0}}]}', b"x"],
     errors.BAD_MESSAGE),
    ([b'{"v":1,"type":"stylize","styles":[{"weight":1}]}'], errors.BAD_MESSAGE),
    ([b'{"v":1,"type":"stylize","styles":[{"name":"a","weight":-1}]}'], errors.BAD_OPTIONS),
    ([b'{"v":1,"type":"stylize","styles":[{"name":"a","weight":0},{"name":"b","weight":0}]}'],
     errors.BAD_OPTIONS),
    ([b'{"v":1,"type":"stylize","styles":[{"name":"a","weight":1e308},{"name":"b","weight":1e308}]}'],
     errors.BAD_OPTIONS),
    ([b'{"v":1,"type":"stylize","styles":[]}'], errors.BAD_OPTIONS),
    ([b'{"v":true,"type":"ping"}'], errors.BAD_VERSION),
    ([b'{"v":"1","type":"ping"}'], errors.BAD_VERSION),
    ([b'{"v":1,"type":"stylize","content":{"blob":0,"colour":"red"},"styles":[{"name":"a"}]}', b"x"],
     errors.BAD_MESSAGE),
    ([b'{"v":1,"type":"stylize","content":{"blob":0,"format":7},"styles":[{"name":"a"}]}', b"x"],
     errors.BAD_MESSAGE),
    ([b'{"v":1,"type":"cancel"}'], errors.BAD_MESSAGE),
    ([b'{"v":1,"type":"cancel","job":""}'], errors.BAD_MESSAGE),
    ([b'[' * 100_000 + b']' * 100_000], errors.BAD_MESSAGE),
    ([b'{"v":1,"type":"ping","x":' + b'[' * 100_000 + b']' * 100_000 + b'}'], errors.BAD_MESSAGE),
    ([b'{"v":1,"type":"stylize","styles":[{"name":"a"}],"priority":"urgent"}'], errors.BAD_OPTIONS),
    ([b'{"v":1,"type":"stylize","styles":[{"name":"a"}],"options":{"style_weights":[1,2]}}'],
     errors.BAD_OPTIONS),
    ([b'{"v":1,"type":"stylize","content":{"blob":0},"styles":[{"image":{"blob":0}}]}', b"x"],
     errors.BAD_MESSAGE),
])
def test_malformed_messages_get_codes(frames: list[bytes], code: str) -> None:
    with pytest.raises(ImpastoError) as e:
        decode(frames)
    assert e.value.code == code


def test_options_validation() -> None:
    assert EngineOptions.from_dict({}).resolved_size() == 512
    for bad in ({"size": 10}, {"optimizer": "sgd"}, {"seed": -1}, {"tv_weight": float("nan")},
                {"style_layers": []}, {"style_layers": ["relu1_1"], "style_layer_weights": [1, 2]},
                {"bogus": 1}, {"preserve_colors": "yes"}, {"iterations": True}):
        with pytest.raises(ImpastoError) as e:
            EngineOptions.from_dict(bad)
        assert e.value.code == errors.BAD_OPTIONS


def test_decode_corrupt_and_huge_images() -> None:
    with pytest.raises(ImpastoError) as e:
        imagecodec.decode(ImageRef(b"\x89PNG\r\n\x1a\nbroken", "png"))
    assert e.value.code == errors.BAD_IMAGE
    side = int(MAX_PIXELS ** 0.5) + 64
    big = imagecodec.encode_png(gradient_image(8, 8).resize((side, side)), compress_level=9)
    with pytest.raises(ImpastoError) as e:
        imagecodec.decode(ImageRef(big, "png"))
    assert e.value.code == errors.IMAGE_TOO_LARGE


def test_printable_defuses_control_characters() -> None:
    from impasto.protocol import printable

    assert printable("gimp\n2026-11-28 INFO forged\x1b[2J") == "gimp\\x0a2026-11-28 INFO forged\\x1b[2J"
    assert len(printable("x" * 10_000, 64)) == 67
    msg, _ = decode([b'{"v":1,"type":"stylize","styles":[{"name":"a"}],"client":"a\\nb\\u001b"}'])
    assert msg.client == "a\\x0ab\\x1b"


def test_legacy_blend_weights_fold_into_the_styles() -> None:
    """Protocol 1's first form, options.style_weights, still works: one form after decoding."""
    msg, _ = decode([b'{"v":1,"type":"stylize","styles":[{"name":"a"},{"name":"b"}],'
                     b'"options":{"style_weights":[0.25,0.75],"size":64}}'])
    assert [s.weight for s in msg.styles] == [0.25, 0.75]
    assert msg.options == {"size": 64}


def test_cli_never_imports_torch() -> None:
    import subprocess
    import sys

    code = ("import sys, impasto.client, impasto.cli.remote, impasto.protocol, impasto.imagecodec, "
            "impasto.options, impasto.cli.main, impasto.cli.dispatch; "
            "from impasto.cli.main import main; "
            "rc = main(['status', '--address', 'tcp://127.0.0.1:9', '--timeout', '0.2']); "
            "assert rc == 3, rc; "
            "bad = [m for m in sys.modules if m == 'torch' or m.startswith('torch.')]; "
            "assert not bad, bad")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=EXIT_S)
    assert r.returncode == 0, r.stderr
    assert "no impasto daemon answered at tcp://127.0.0.1:9" in r.stderr


def test_a_refused_number_is_printed_with_every_digit() -> None:
    """100.0001 was refused as "at most 100, not 100": `:g` kept six digits."""
    from impasto.protocol import check_region_weights

    with pytest.raises(ImpastoError) as e:
        check_region_weights([1.0, 100.0001], [False, True])
    assert e.value.code == errors.BAD_OPTIONS
    assert e.value.message.endswith("at most 100, not 100.0001"), e.value.message
    check_region_weights([100.0], [True])  # the limit itself is allowed
    with pytest.raises(ImpastoError) as e:
        EngineOptions(strength=100.0000001)
    assert e.value.message == "strength must be between 0 and 100, got 100.0000001"
