"""Live previews, stop-and-keep and float32 images, over real sockets to a real daemon."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

from impasto import imagecodec
from impasto.client import Client
from impasto.errors import ImpastoError
from impasto.protocol import ImageRef, Progress, StyleRef, Stylize, decode, encode
from tests.helpers import DaemonProcess, gradient_image, run_cli, stripes_image

STYLE = [StyleRef(image=imagecodec.to_ref(stripes_image(32, 32)))]


def test_previews_arrive_downscaled_and_change(daemon: DaemonProcess) -> None:
    content = imagecodec.to_ref(gradient_image(144, 96))
    req = Stylize(content=content, styles=STYLE,
                  options={"size": 128, "scales": 2, "evaluations": [6, 40], "seed": 2,
                           "tolerance": 0.0},
                  preview={"max_side": 48, "interval_s": 0.1})
    previews: list[tuple[int, np.ndarray]] = []

    def on_progress(p: Progress) -> None:
        if p.preview is not None:
            img = Image.open(io.BytesIO(p.preview.data))
            previews.append((p.step, np.asarray(img.convert("RGB"), dtype=np.int16)))

    with Client(daemon.address, timeout=30) as c:
        result = c.stylize(req, on_progress=on_progress)
    assert result.image is not None
    assert len(previews) >= 2
    assert previews[0][0] == 1  # the first evaluation brings the first preview
    for _, arr in previews:
        assert max(arr.shape[:2]) <= 48
    # Among the previews of the last scale, the image changes as it is optimised.
    last = [a for _, a in previews if a.shape == previews[-1][1].shape]
    assert len(last) >= 2 and np.abs(last[0] - last[-1]).mean() > 0.5


def test_without_preview_no_preview(daemon: DaemonProcess) -> None:
    req = Stylize(content=imagecodec.to_ref(gradient_image(48, 32)), styles=STYLE,
                  options={"size": 64, "scales": 1, "iterations": 4, "seed": 1})
    seen: list[Progress] = []
    with Client(daemon.address, timeout=30) as c:
        c.stylize(req, on_progress=seen.append)
    assert seen and all(p.preview is None for p in seen)


@pytest.mark.parametrize("preview, why", [
    ({"max_side": 8}, "max_side"), ({"max_side": 2.5}, "max_side"), ({"max_side": True}, "max_side"),
    ({"interval_s": 0}, "interval_s"), ({"interval_s": "1"}, "interval_s"),
    ({"every": 1}, "unknown field"), ([256], "object"), ({"format": "jpeg"}, "format"),
])
def test_bad_preview_fields_are_refused(preview, why) -> None:
    req = Stylize(content=imagecodec.to_ref(gradient_image(8, 8)), styles=STYLE)
    frames = encode(req)
    header = json.loads(frames[0])
    header["preview"] = preview
    with pytest.raises(ImpastoError, match=why):
        decode([json.dumps(header).encode()] + frames[1:])


def test_stop_and_keep_returns_the_image_as_it_stands(daemon: DaemonProcess) -> None:
    req = Stylize(content=imagecodec.to_ref(gradient_image(144, 96)), styles=STYLE,
                  options={"size": 128, "scales": 2, "evaluations": [100000, 100000], "seed": 1,
                           "tolerance": 0.0, "match_content_size": True})
    steps: list[int] = []
    with Client(daemon.address, timeout=30) as c:
        result = c.stylize(req, on_progress=lambda p: steps.append(p.step),
                           should_finish=lambda: len(steps) >= 5)
    assert result.image is not None
    img = imagecodec.decode(result.image)
    assert img.size == (144, 96)  # stopped in the coarse scale, brought to the output size
    assert result.schedule and len(result.schedule) == 1  # the fine scale never ran


def test_float_content_and_result_keep_precision(daemon: DaemonProcess) -> None:
    rng = np.random.default_rng(0)
    arr = rng.random((40, 56, 3), dtype=np.float32)
    ref = ImageRef(arr.astype("<f4").tobytes(), "rgb32f", 56, 40)
    req = Stylize(content=ref, styles=STYLE, output="rgb32f",
                  options={"size": 64, "scales": 1, "iterations": 4, "seed": 1,
                           "match_content_size": True})
    with Client(daemon.address, timeout=30) as c:
        result = c.stylize(req)
    assert result.image is not None and result.image.format == "rgb32f"
    out = np.frombuffer(result.image.data, "<f4").reshape(40, 56, 3)
    assert np.isfinite(out).all() and out.min() >= 0 and out.max() <= 1
    # Off the 8-bit grid: most values are not multiples of 1/255.
    off = np.abs(out * 255 - np.round(out * 255)) > 0.01
    assert off.mean() > 0.5


@pytest.mark.parametrize("data, w, h, why", [
    (b"\0" * 12 * 4, 2, 3, "needs 72 bytes"),
    (np.full(12, np.nan, "<f4").tobytes(), 2, 2, "NaN"),
    (b"\0" * 12, 0, 1, "positive"),
])
def test_bad_float_images_are_refused(data: bytes, w: int, h: int, why: str) -> None:
    with pytest.raises(ImpastoError, match=why):
        imagecodec.decode(ImageRef(data, "rgb32f", w, h))


def test_send_and_stylize_write_previews(daemon: DaemonProcess, content_png, style_png, tmp_path) -> None:
    for cmd in ("send", "stylize"):
        out, prev = tmp_path / f"{cmd}.png", tmp_path / f"{cmd}-preview.jpg"
        r = run_cli([cmd, str(content_png), "--style", str(style_png), "-o", str(out),
                     "--preview", str(prev), "--preview-every", "0.1", "--size", "64",
                     "--iterations", "6", "--scales", "1", "--address", daemon.address],
                    daemon.env)
        assert r.returncode == 0, r.stderr
        assert out.exists() and prev.exists()
        with Image.open(prev) as img:
            assert img.format == "JPEG" and max(img.size) <= 512
        assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporaries


def test_local_stylize_writes_previews(content_png, style_png, tmp_path, env) -> None:
    out, prev = tmp_path / "local.png", tmp_path / "local-preview.png"
    r = run_cli(["stylize", "--local", "--weights", "random", str(content_png), "--style",
                 str(style_png), "-o", str(out), "--preview", str(prev), "--size", "64",
                 "--iterations", "4", "--scales", "1"], env)
    assert r.returncode == 0, r.stderr
    with Image.open(prev) as img:
        assert img.size == (64, 48)


def test_requests_without_the_new_fields_look_as_before() -> None:
    """A request that asks for no preview (a cancel without keep) carries no such field,
    so it still reaches a daemon that predates them (daemons refuse unknown fields)."""
    req = Stylize(content=imagecodec.to_ref(gradient_image(8, 8)), styles=STYLE)
    assert "preview" not in json.loads(encode(req)[0])
    from impasto.protocol import Cancel

    assert json.loads(encode(Cancel(job="j1"))[0]) == {"v": 1, "type": "cancel", "job": "j1"}
    assert json.loads(encode(Cancel(job="j1", keep=True))[0])["keep"] is True


def test_extreme_float_content_gets_an_answer_and_the_daemon_keeps_serving(
        daemon: DaemonProcess) -> None:
    """Finite but absurd values (1e30, -5): a result or a clear error, never a crash."""
    arr = np.zeros((24, 24, 3), dtype="<f4")
    arr[..., 0], arr[..., 1] = 1e30, -5.0
    req = Stylize(content=ImageRef(arr.tobytes(), "rgb32f", 24, 24), styles=STYLE,
                  output="rgb32f", options={"size": 32, "scales": 1, "iterations": 2})
    with Client(daemon.address, timeout=30) as c:
        try:
            result = c.stylize(req)
            out = np.frombuffer(result.image.data, "<f4")
            assert np.isfinite(out).all()
        except ImpastoError as e:
            assert e.code in ("bad_image", "bad_options") and e.message
        assert c.status().state == "ready"
