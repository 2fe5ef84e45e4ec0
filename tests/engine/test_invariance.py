"""One strength means the same with every weights file: the objective is invariant to
the scale of the network's activations, exactly.

Scaling the first convolution's weights and every convolution's bias by k scales every
activation by k (ReLU and pooling are positively homogeneous). Caffe's 0-255 input does
much the same to torchvision's normalised one, at about k = 57. With losses relative to
their targets (losses.py), L-BFGS then sees the same objective and takes the same steps.
"""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import pytest
import torch
from torch import nn

from impasto.engine.transfer import Engine, StyleInput
from impasto.engine.weights import Weights, random_weights
from impasto.options import EngineOptions
from tests.helpers import gradient_image, stripes_image, test_device


def base_weights() -> Weights:
    w = random_weights(3)
    gen = torch.Generator().manual_seed(4)
    with torch.no_grad():
        for m in w.features.modules():
            if isinstance(m, nn.Conv2d):  # random init has zero biases; give them some
                m.bias.copy_(torch.randn(m.bias.shape, generator=gen) * 0.05)
    return w


def scaled(w: Weights, k: float) -> Weights:
    features = copy.deepcopy(w.features)
    convs = [m for m in features.modules() if isinstance(m, nn.Conv2d)]
    with torch.no_grad():
        convs[0].weight.mul_(k)
        for m in convs:
            m.bias.mul_(k)
    return Weights(features, w.flavour, f"{w.source} x{k:g}")


def run(weights: Weights, opts: EngineOptions, dtype: torch.dtype = torch.float64):
    # float64: what differs between k = 57 and k = 1 is only rounding, about 1e-16 here,
    # which L-BFGS's dozen steps cannot grow into anything an 8-bit image shows.
    engine = Engine(weights, test_device(), precision="fp32", dtype=dtype)
    return engine.run(gradient_image(64, 48), [StyleInput(stripes_image(40, 40))], opts)


OPTS = EngineOptions(size=64, evaluations=[12], seed=0)


def test_activations_really_scale() -> None:
    w = base_weights()
    engine, big = Engine(w, "cpu", precision="fp32"), Engine(scaled(w, 57.0), "cpu", precision="fp32")
    x = torch.rand(1, 3, 32, 32)
    a = engine._network(OPTS)(x)
    b = big._network(OPTS)(x)
    for name in a:
        assert torch.allclose(b[name], 57.0 * a[name], rtol=1e-4, atol=1e-4 * b[name].abs().max())


def test_power_of_two_scale_gives_bit_identical_runs() -> None:
    """k = 64 is exact in floating point, so every rounding is the same: equal bits, in
    the float32 the daemon computes in."""
    if test_device() != "cpu":
        pytest.skip("bit equality is a CPU property (cuDNN reorders sums between runs)")
    w = base_weights()
    a, b = run(w, OPTS, torch.float32), run(scaled(w, 64.0), OPTS, torch.float32)
    assert a.history == b.history
    assert a.image.tobytes() == b.image.tobytes()


@pytest.mark.parametrize(("k", "style_loss"), [(1.0, "gram"), (57.0, "gram"), (1 / 57, "gram"),
                                               (57.0, "wasserstein")])
def test_same_steps_and_output_for_any_scale(k: float, style_loss: str) -> None:
    w = base_weights()
    opts = dataclasses.replace(OPTS, style_loss=style_loss)
    a, b = run(w, opts), run(scaled(w, k), opts)
    assert len(a.history) == len(b.history) == 12
    np.testing.assert_allclose(b.history, a.history, rtol=1e-8)
    assert a.history[-1] < 0.75 * a.history[0]  # the run did move
    diff = np.abs(np.asarray(a.image, dtype=np.int16) - np.asarray(b.image, dtype=np.int16))
    assert diff.max() <= 1, diff.max()  # a value on an 8-bit rounding edge may flip


def test_absolute_losses_would_not_be_invariant() -> None:
    """The witness: with neural-style's absolute terms the same k changes the balance
    of style against content by k^2, so the runs part ways."""
    import impasto.engine.losses as losses

    w = base_weights()
    keep = losses.relative
    losses.relative = lambda target: 1.0
    try:
        a, b = run(w, OPTS), run(scaled(w, 57.0), OPTS)
    finally:
        losses.relative = keep
    assert abs(b.history[-1] / b.history[0] - a.history[-1] / a.history[0]) > 0.01
    diff = np.abs(np.asarray(a.image, dtype=np.int16) - np.asarray(b.image, dtype=np.int16))
    assert diff.max() > 10
