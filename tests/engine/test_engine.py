"""The engine on real torch computation at small sizes, with seeded random weights."""

from __future__ import annotations

import pytest
import torch

from impasto.engine import color
from impasto.engine.tensors import to_tensor
from impasto.engine.transfer import Engine, StyleInput
from impasto.engine.vgg import VGGFeatures
from impasto.engine.weights import random_weights
from impasto.errors import ImpastoError, JobCancelled
from impasto.options import EngineOptions
from impasto.server.targetcache import GramCache
from tests.helpers import (
    gradient_image,
    mean_difference,
    same_result,
    stripes_image,
    test_device,
)


@pytest.fixture(scope="module")
def engine() -> Engine:
    return Engine(random_weights(0), test_device())


def small(**kw) -> EngineOptions:
    base = {"size": 64, "scales": 1, "iterations": 15, "seed": 1, "tolerance": 0.0}
    base.update(kw)
    return EngineOptions(**base)


CONTENT = gradient_image(80, 60)
STYLE = stripes_image()


def test_total_loss_falls(engine: Engine) -> None:
    steps = []
    out = engine.run(CONTENT, [StyleInput(STYLE)], small(iterations=20, init="noise"),
                     on_step=steps.append)
    assert len(steps) == 20 == out.evaluations
    assert [s.step for s in steps] == list(range(1, 21))
    assert steps[-1].losses["total"] < 0.5 * steps[0].losses["total"]
    assert steps[-1].losses["style"] < steps[0].losses["style"]
    assert all(s.losses.keys() >= {"content", "style", "tv", "total"} for s in steps)


def test_noise_init_loss_falls_by_orders_of_magnitude(engine: Engine) -> None:
    out = engine.run(CONTENT, [StyleInput(STYLE)],
                     small(init="noise", iterations=40, style_weight=0.0, tv_weight=0.0))
    assert out.history[-1] < out.history[0] / 20


def test_output_objective_below_content_image(engine: Engine) -> None:
    opts = small(iterations=25)
    out = engine.run(CONTENT, [StyleInput(STYLE)], opts)
    of_output = engine.evaluate(out.image, CONTENT, [StyleInput(STYLE)], opts)
    of_content = engine.evaluate(CONTENT, CONTENT, [StyleInput(STYLE)], opts)
    assert of_output["total"] < of_content["total"]


def test_adam_also_lowers_the_objective(engine: Engine) -> None:
    opts = small(optimizer="adam", iterations=20, init="noise", style_weight=0.0)
    out = engine.run(CONTENT, [StyleInput(STYLE)], opts)
    assert out.history[-1] < out.history[0]


def test_same_seed_same_output_different_seed_differs(engine: Engine) -> None:
    opts = small(init="noise", iterations=5)
    a = engine.run(CONTENT, [StyleInput(STYLE)], opts).image
    b = engine.run(CONTENT, [StyleInput(STYLE)], opts).image
    c = engine.run(CONTENT, [StyleInput(STYLE)], small(init="noise", iterations=5, seed=2)).image
    assert same_result(a, b)
    # Another seed changes far more than a rerun's rounding does.
    assert mean_difference(a, c) > max(0.5, 10 * mean_difference(a, b))


def test_multiscale_output_has_requested_size(engine: Engine) -> None:
    steps = []
    opts = EngineOptions(size=128, scales=2, iterations=3, seed=0, preset="draft", tolerance=0.0)
    assert opts.schedule() == [(64, 20), (128, 3)]
    out = engine.run(gradient_image(160, 120), [StyleInput(STYLE)], opts, on_step=steps.append)
    assert out.image.size == (128, 96)
    assert {s.size for s in steps} == {size for size, _ in opts.schedule()}
    assert steps[-1].step == steps[-1].total == opts.total_evaluations()


def test_explicit_evaluations_per_scale() -> None:
    opts = EngineOptions(size=256, evaluations=[5, 3, 2])
    assert opts.schedule() == [(64, 5), (128, 3), (256, 2)]
    assert opts.total_evaluations() == 10
    with pytest.raises(Exception, match="evaluations"):
        EngineOptions.from_dict({"evaluations": [1, 0]})


def test_an_image_too_small_for_coarse_scales_still_gets_its_style_laid_down() -> None:
    """Under 128 px no coarse scale fits; the one scale runs the preset's second-finest
    count, not only its finest (8 for draft left real photos barely stylized:
    tests/engine/test_real_art.py measures it). Sizes that fit two scales keep theirs."""
    assert EngineOptions(preset="draft", size=112).schedule() == [(112, 20)]
    assert EngineOptions(preset="normal", size=100).schedule() == [(100, 100)]
    assert EngineOptions(preset="draft", size=128).schedule() == [(64, 20), (128, 8)]
    # What was asked explicitly is run as asked.
    assert EngineOptions(preset="draft", size=112, iterations=5).schedule() == [(112, 5)]
    assert EngineOptions(preset="draft", size=112, scales=1).schedule() == [(112, 8)]
    assert EngineOptions(preset="draft", size=112, evaluations=[3]).schedule() == [(112, 3)]


def test_schedule_spends_most_evaluations_on_small_scales() -> None:
    sched = EngineOptions(preset="draft").schedule()
    assert [s for s, _ in sched] == [128, 256, 512]
    pixels = [s * s * n for s, n in sched]
    assert sched[0][1] > sched[-1][1] and pixels[-1] < sum(pixels)


def test_match_content_size_and_alpha_kept(engine: Engine) -> None:
    content = gradient_image(90, 50, alpha=True)
    out = engine.run(content, [StyleInput(STYLE)], small(iterations=3, match_content_size=True))
    assert out.image.size == (90, 50) and out.image.mode == "RGBA"
    assert out.image.getchannel("A").tobytes() == content.getchannel("A").tobytes()


def test_luminance_transfer_keeps_content_chroma(engine: Engine) -> None:
    content = gradient_image(64, 48)
    out = engine.run(content, [StyleInput(STYLE)],
                     small(iterations=15, preserve_colors="luminance"))
    iq_out = color.rgb_to_yiq(to_tensor(out.image))[1:]
    iq_in = color.rgb_to_yiq(to_tensor(content))[1:]
    assert out.image.size == content.size
    # Exact up to 8-bit rounding and clipping of out-of-gamut pixels.
    assert (iq_out - iq_in).abs().mean().item() < 0.01
    # ...while luminance did change.
    y_out = color.rgb_to_yiq(to_tensor(out.image))[0]
    y_in = color.rgb_to_yiq(to_tensor(content))[0]
    assert (y_out - y_in).abs().mean().item() > 1e-3


def test_histogram_mode_runs_and_differs_from_plain(engine: Engine) -> None:
    plain = engine.run(CONTENT, [StyleInput(STYLE)], small(iterations=5)).image
    hist = engine.run(CONTENT, [StyleInput(STYLE)], small(iterations=5, preserve_colors="histogram")).image
    assert plain.size == hist.size and plain.tobytes() != hist.tobytes()


def test_blend_weight_zero_equals_single_style(engine: Engine) -> None:
    other = gradient_image(64, 64)
    single = engine.run(CONTENT, [StyleInput(STYLE)], small(iterations=5)).image
    blended = engine.run(CONTENT, [StyleInput(STYLE, 1.0), StyleInput(other, 0.0)],
                         small(iterations=5)).image
    half = engine.run(CONTENT, [StyleInput(STYLE, 1.0), StyleInput(other, 1.0)],
                      small(iterations=5)).image
    assert same_result(single, blended)
    assert mean_difference(single, half) > 10 * mean_difference(single, blended)
    assert mean_difference(single, half) > 0


def test_style_scale_changes_the_result(engine: Engine) -> None:
    a = engine.run(CONTENT, [StyleInput(STYLE)], small(iterations=5)).image
    b = engine.run(CONTENT, [StyleInput(STYLE)], small(iterations=5, style_scale=0.5)).image
    assert a.tobytes() != b.tobytes()


def test_cancel_between_evaluations(engine: Engine) -> None:
    seen = []
    with pytest.raises(JobCancelled):
        engine.run(CONTENT, [StyleInput(STYLE)], small(iterations=50),
                   on_step=seen.append, should_stop=lambda: len(seen) >= 3)
    assert len(seen) == 3


def test_style_target_cache_hits_on_second_run(engine: Engine) -> None:
    cache = GramCache()
    a = engine.run(CONTENT, [StyleInput(STYLE)], small(iterations=3), cache=cache).image
    assert (cache.hits, cache.misses) == (0, 1)
    b = engine.run(CONTENT, [StyleInput(STYLE)], small(iterations=3), cache=cache).image
    assert (cache.hits, cache.misses) == (1, 1)
    assert same_result(a, b)


def test_tolerance_stops_a_stalled_scale_early(engine: Engine) -> None:
    out = engine.run(CONTENT, [StyleInput(STYLE)], small(iterations=200, tolerance=0.5))
    assert out.evaluations < 200


def test_avg_pooling_and_other_layers(engine: Engine) -> None:
    out = engine.run(CONTENT, [StyleInput(STYLE)],
                     small(iterations=3, pooling="avg", content_layers=["conv3_1"],
                           style_layers=["relu1_1", "relu2_1"], style_layer_weights=[1.0, 0.5]))
    assert out.image.size == (64, 48)


def test_caffe_preprocessing_by_hand() -> None:
    from impasto.engine.vgg import Preprocess

    x = torch.tensor([0.2, 0.4, 0.6]).view(1, 3, 1, 1)
    got = Preprocess("caffe")(x).flatten().tolist()
    # BGR order, 0-255, minus Caffe's BGR means
    assert got == pytest.approx([0.6 * 255 - 103.939, 0.4 * 255 - 116.779, 0.2 * 255 - 123.68],
                                rel=1e-5)
    got = Preprocess("torchvision")(x).flatten().tolist()
    assert got == pytest.approx([(0.2 - 0.485) / 0.229, (0.4 - 0.456) / 0.224,
                                 (0.6 - 0.406) / 0.225], rel=1e-5)


def test_output_pixels_stay_in_range_while_optimising(engine: Engine) -> None:
    """Projected L-BFGS: the objective reported for the last evaluation is that of an
    image the output can hold, so the saved result scores no worse than the run
    reported (its last step even improves on it)."""
    opts = small(iterations=12, style_weight=1e5)
    out = engine.run(CONTENT, [StyleInput(STYLE)], opts)
    scored = engine.evaluate(out.image, CONTENT, [StyleInput(STYLE)], opts)["total"]
    assert scored < out.losses["total"] * 1.02


def test_tf32_is_refused_on_a_cpu() -> None:
    """tf32 is NVIDIA arithmetic; on a CPU the engine says so rather than run something
    other than what was asked. bf16 runs on any CPU; auto follows device.py's rule
    (tests/engine/test_device.py)."""
    with pytest.raises(ImpastoError, match="tf32 is not available on cpu") as e:
        Engine(random_weights(0), "cpu", precision="tf32")
    assert e.value.code == "bad_options"
    assert Engine(random_weights(0), "cpu", precision="bf16").precision == "bf16"
    assert Engine(random_weights(0), "cpu", precision="auto").precision in ("fp32", "bf16")


def test_bf16_precision_runs_and_lands_near_fp32() -> None:
    weights = random_weights(0)
    fp32 = Engine(weights, test_device(), precision="fp32")
    a = fp32.run(CONTENT, [StyleInput(STYLE)], small(iterations=4, style_weight=1e5))
    bf16 = Engine(random_weights(0), test_device(), precision="bf16")
    assert bf16._network(small()).conv_dtype == torch.bfloat16
    b = bf16.run(CONTENT, [StyleInput(STYLE)], small(iterations=4, style_weight=1e5))
    opts = small(style_weight=1e5)
    score_a = fp32.evaluate(a.image, CONTENT, [StyleInput(STYLE)], opts)["total"]
    score_b = fp32.evaluate(b.image, CONTENT, [StyleInput(STYLE)], opts)["total"]
    start = fp32.evaluate(CONTENT, CONTENT, [StyleInput(STYLE)], opts)["total"]
    assert score_b < 0.9 * start  # it optimised
    assert score_b == pytest.approx(score_a, rel=0.2)


def test_bf16_layers_compute_bit_for_bit_what_autocast_computes() -> None:
    """The bf16 path holds the layers in bf16, converted once, where bf16 autocast would
    cast every weight at every evaluation (it caches no cast of a tensor that needs no
    gradient). Its features and the image's gradient are autocast's to the bit; the
    weights as loaded stay float32, for the engines and baselines that share them."""
    weights = random_weights(0)
    eng = Engine(weights, "cpu", precision="bf16")
    opts = small()
    net = eng._network(opts)
    assert {m.weight.dtype for m in net.layers if isinstance(m, torch.nn.Conv2d)} == {
        torch.bfloat16}
    assert weights.features[0].weight.dtype == eng.features[0].weight.dtype == torch.float32
    ref = VGGFeatures(eng.features, weights.flavour, list(net.indices), opts.pooling,
                      None, eng.channels_last)
    assert ref.layers[0].weight.dtype == torch.float32

    x = torch.rand(1, 3, 48, 64, generator=torch.Generator().manual_seed(5))
    mix = {k: torch.randn(v.shape, generator=torch.Generator().manual_seed(i))
           for i, (k, v) in enumerate(net(x).items())}

    def features_and_grad(run) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        xg = x.clone().requires_grad_(True)
        feats = run(xg)
        (grad,) = torch.autograd.grad(sum((feats[k] * mix[k]).sum() for k in mix), xg)
        return feats, grad

    def autocast(xg: torch.Tensor) -> dict[str, torch.Tensor]:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = ref(xg)
        return {k: v.float() for k, v in out.items()}

    got, grad = features_and_grad(net)
    want, want_grad = features_and_grad(autocast)
    assert got.keys() == want.keys() and len(got) == 6  # relu4_2 and 5 style layers
    for k in want:
        assert got[k].dtype == torch.float32
        assert torch.equal(got[k], want[k]), k
    assert torch.equal(grad, want_grad)
    # The conversion is real: float32 layers give other values.
    assert not torch.equal(ref(x)["relu5_1"], got["relu5_1"])


def test_unknown_precision_is_refused() -> None:
    with pytest.raises(ImpastoError, match="precision"):
        Engine(random_weights(0), "cpu", precision="fp8")
