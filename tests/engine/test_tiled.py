"""Tiled evaluation equals the untiled objective and gradient, so tiles leave no seams."""

from __future__ import annotations

import copy

import pytest
import torch

from impasto.engine.losses import (
    ContentLoss,
    MeanCovLoss,
    StyleLoss,
    TVLoss,
    mean_key,
    style_targets,
)
from impasto.engine.objective import Objective
from impasto.engine.tensors import to_tensor
from impasto.engine.tiled import TiledObjective, feature_sizes, receptive_radius, tiles
from impasto.engine.transfer import Engine, StyleInput
from impasto.engine.weights import random_weights
from impasto.errors import ImpastoError
from impasto.options import EngineOptions
from tests.helpers import gradient_image, stripes_image, test_device


@pytest.fixture(scope="module")
def engine() -> Engine:
    # fp32: on a GPU, TF32's 10-bit mantissa alone moves the gradient by about 7%
    # (benchmarks/gpu.py, accuracy), which would hide what this file checks.
    return Engine(random_weights(0), test_device(), precision="fp32")


SHALLOW = {"content_layers": ["relu3_1"], "style_layers": ["relu1_1", "relu2_1", "relu3_1"]}


def objectives_in_float64(engine: Engine, opts: EngineOptions, w: int, h: int, core: int,
                          kind: str = "gram", guided: bool = False):
    """The plain and the tiled objective of one problem, computed in float64.

    Why float64: a ReLU whose input lies within float32 rounding of zero switches on in
    one computation and off in the other when tiles change the summation order (and
    CPUs differ in that order too), which moves a 5x5 patch of the gradient. In float64
    the two computations agree to about 1e-15, so an element-wise comparison holds on
    any machine, and any real tiling error (a missing margin, a misaligned tile) shows
    as a difference of order one.

    kind: the style loss; guided: two regions, a left and a right one with a soft edge,
    each with its own guide at every layer."""
    net = copy.deepcopy(engine._network(opts)).double()  # the engine keeps its float32 net
    c = to_tensor(gradient_image(w, h)).unsqueeze(0).double().to(engine.device)
    s = to_tensor(stripes_image()).unsqueeze(0).double().to(engine.device)
    with torch.no_grad():
        cf, st = net(c), style_targets(net(s), opts.style_layers)
    sizes = feature_sizes(net, h, w)
    ramp = torch.linspace(-3, 3, w, dtype=torch.float64).sigmoid().view(1, 1, 1, w).expand(1, 1, h, w)
    guides = [ramp, 1 - ramp] if guided else [None]

    def style_term(n, g):
        lg = None if g is None else torch.nn.functional.interpolate(g, size=sizes[n], mode="area")
        if kind == "wasserstein":
            return MeanCovLoss(st[mean_key(n)], st[n] * st[n].shape[-1], opts.style_weight, n, lg)
        return StyleLoss(st[n], opts.style_weight, n, lg)

    def terms():
        return ([ContentLoss(cf[n], opts.content_weight, n) for n in opts.content_layers]
                + [style_term(n, g) for g in guides for n in opts.style_layers]
                + [TVLoss(opts.tv_weight)])

    return Objective(net, terms()), TiledObjective(net, terms(), h, w, core=core), c


@pytest.mark.parametrize(("size", "core", "layers", "pooling", "kind", "guided"), [
    ((200, 136), 48, SHALLOW, "max", "gram", False),   # many tiles, ragged edges
    ((200, 136), 48, SHALLOW, "avg", "gram", False),
    ((160, 96), 80, {}, "max", "gram", False),         # the default layers, down to relu5_1
    ((200, 136), 48, SHALLOW, "max", "gram", True),    # regions: guided Grams
    ((200, 136), 48, SHALLOW, "max", "wasserstein", False),
    ((200, 136), 48, SHALLOW, "max", "wasserstein", True),
])
def test_tiled_value_and_gradient_equal_untiled(engine: Engine, size: tuple[int, int], core: int,
                                                layers: dict, pooling: str, kind: str,
                                                guided: bool) -> None:
    w, h = size
    opts = EngineOptions(size=max(w, h), scales=1, seed=0, pooling=pooling, **layers)
    plain, tiled, c = objectives_in_float64(engine, opts, w, h, core, kind, guided)
    assert len(list(tiles(h, w, tiled.core, tiled.margin))) >= 4  # really tiled
    torch.manual_seed(0)
    x = (c + torch.randn_like(c) * 0.1).clamp(0, 1)
    xr = x.clone().requires_grad_(True)
    ref = plain(xr)
    ref.backward()
    value, grad = tiled.value_and_grad(x)
    assert grad.dtype == torch.float64
    assert value.item() == pytest.approx(ref.item(), rel=1e-9)
    assert list(tiled.last) == list(plain.last) == ["content", "style", "tv", "total"]
    for k in ("content", "style", "tv"):
        assert tiled.last[k] == pytest.approx(plain.last[k], rel=1e-9, abs=1e-15)
    # cuDNN's float64 kernels are exact to the same order; the bound leaves 1e4 of room.
    assert (grad - xr.grad).abs().max().item() <= 1e-10 * xr.grad.abs().max().item()


def test_margin_covers_receptive_field(engine: Engine) -> None:
    opts = EngineOptions()
    assert receptive_radius(engine._network(opts)) == 78  # relu5_1: 156 px field


def test_tiled_run_has_no_seams(engine: Engine) -> None:
    """A run that switches to tiles for its last scale: the output's gradient
    statistics at tile borders are those of everywhere else."""
    content = gradient_image(192, 192)
    tiling = Engine(engine.weights, engine.device, precision="fp32", tile_pixels=100 * 100,
                    tile_size=64)
    opts = EngineOptions(size=192, evaluations=[4, 6], seed=0, **SHALLOW)
    out = tiling.run(content, [StyleInput(stripes_image())], opts)
    assert out.image.size == (192, 192)
    import numpy as np

    a = np.asarray(out.image, dtype=np.float32)
    dx = np.abs(np.diff(a, axis=1)).mean(axis=(0, 2))  # column steps, 191 of them
    border = dx[[63, 127]]  # between columns 63|64 and 127|128
    inner = np.delete(dx, [63, 127])
    assert border.max() < np.percentile(inner, 95) * 1.5
    assert out.tiled_scales == [1]


def test_large_scales_bound_their_memory(engine: Engine) -> None:
    from impasto.engine.transfer import lbfgs_history

    auto = engine.tile_threshold()
    if test_device() == "cpu":
        assert auto == 1536 * 1536  # 7.5 GB untiled at 3.2 GB per megapixel
    else:
        assert auto >= 512 * 512  # from the device's free memory
    assert Engine(engine.weights, "cpu", tile_pixels=5000).tile_threshold() == 5000
    with pytest.raises(ImpastoError, match="multiple of 16"):
        Engine(engine.weights, "cpu", tile_size=100)
    image = torch.empty  # shapes only: no memory is touched
    assert lbfgs_history(image(1, 3, 512, 512)) == 100
    assert lbfgs_history(image(1, 3, 1024, 1024)) == 85
    assert lbfgs_history(image(1, 3, 2048, 2048)) == 21
    assert lbfgs_history(image(1, 3, 4096, 4096)) == 5
