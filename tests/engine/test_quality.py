"""Default settings stylize clearly, with every kind of weights file.

Judged by benchmarks/quality.py's independent measure (torchvision's own VGG19 module,
its own preprocessing, float64 Grams in numpy), not by the engine's objective: the
output's style distance is at most 30% of the content image's, and at relu4_2 the output
is still nearer the content image than the style image.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.quality import IndependentVGG, judge, sample_images, write_weight_files
from impasto.engine.transfer import Engine, StyleInput
from impasto.engine.weights import load
from impasto.options import EngineOptions
from tests.helpers import test_device


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return write_weight_files(tmp_path_factory.mktemp("quality-weights"))


@pytest.mark.slow
@pytest.mark.parametrize("flavour", ["torchvision", "caffe", "random"])
def test_default_settings_stylize_clearly(files: dict, flavour: str, tmp_path: Path) -> None:
    file, spec, preprocessing = files[flavour]
    content, style = sample_images(128)
    engine = Engine(load(spec, cache=tmp_path / "cache"), test_device())
    out = engine.run(content, [StyleInput(style)], EngineOptions(size=128, seed=0))
    v = judge(IndependentVGG(file, preprocessing), out.image, content, style)
    assert v.style_ratio <= 0.3, v
    assert v.content_to_content < v.content_to_style, v


def test_the_measure_tells_stylized_from_not(files: dict) -> None:
    """The content image itself scores 1 (not stylized); the style image scores 0 but
    is nearer the style than the content at relu4_2: neither passes."""
    file, _, prep = files["torchvision"]
    vgg = IndependentVGG(file, prep)
    content, style = sample_images(64)
    same = judge(vgg, content, content, style)
    assert same.style_ratio == pytest.approx(1.0) and not same.stylized
    copy = judge(vgg, style, content, style)
    assert copy.style_ratio < 0.05 and not copy.stylized


def test_time_to_quality_holds_impasto_to_each_of_the_peer_s_checkpoints() -> None:
    """benchmarks/peers.py's two rules on a peer that ends on a poor iterate (as
    neural-style-pt did at 512 px): reaching its last iterate is quick, being at least
    as good as each of its checkpoints, on both distances at once, is not."""
    from benchmarks.peers import time_to, time_to_every

    # [seconds, evaluations, style, content]
    curve = [[10.0, 10, 0.9, 0.70], [20.0, 20, 0.5, 0.60], [30.0, 30, 0.4, 0.55]]
    peer = {"100": [400.0, 1.2, 0.56], "900": [3000.0, 1.0, 1.2], "1000": [3500.0, 4.4, 2.8]}
    assert time_to(curve, 4.4, 2.8) == 10.0
    assert time_to(curve, 0.45, 0.58) == 30.0  # style alone reached at 20 s is not enough
    assert time_to(curve, 0.3, 0.9) is None
    assert time_to_every(curve, peer) == 30.0  # content 0.56 first met at 30 s
    assert time_to_every(curve, {**peer, "50": [200.0, 0.3, 0.9]}) is None
