"""Tiled evaluation equals the untiled objective and gradient, so tiles leave no seams."""

from __future__ import annotations

import pytest
import torch

from daemon.engine import Engine, StyleInput
from daemon.tiled import TiledObjective, receptive_radius, tiles
from daemon.weights import random_weights
from shared.options import EngineOptions
from tests.helpers import gradient_image, stripes_image, test_device


@pytest.fixture(scope="module")
def engine() -> Engine:
    # fp32: on a GPU, TF32's 10-bit mantissa alone moves the gradient by about 7%
    # (benchmarks/gpu.py, accuracy), which would hide what this file checks.
    return Engine(random_weights(0), test_device(), precision="fp32")


def tiled_from(objective, content: torch.Tensor, core: int) -> TiledObjective:
    return TiledObjective(
        objective.net, content, {n: m.target for n, m in objective.style.items()},
        list(objective.content), {n: m.weight for n, m in objective.style.items()},
        next(iter(objective.content.values())).weight, objective.tv.weight, core=core)


SHALLOW = {"content_layers": ["relu3_1"], "style_layers": ["relu1_1", "relu2_1", "relu3_1"]}


@pytest.mark.parametrize(("size", "core", "layers"), [
    ((200, 136), 48, SHALLOW),   # many tiles, ragged edges
    ((160, 96), 80, {}),         # the default layers, down to relu5_1
])
def test_tiled_value_and_gradient_equal_untiled(engine: Engine, size: tuple[int, int], core: int,
                                                layers: dict) -> None:
    w, h = size
    opts = EngineOptions(size=max(w, h), scales=1, seed=0, **layers)
    net = engine._network(opts)
    objective, c, _, _ = engine._scale_objective(net, gradient_image(w, h), [StyleInput(stripes_image())],
                                                 opts, max(w, h), None)
    tiled = tiled_from(objective, c, core=core)
    assert len(list(tiles(h, w, tiled.core, tiled.margin))) >= 4  # really tiled
    torch.manual_seed(0)
    x = (c + torch.randn_like(c) * 0.1).clamp(0, 1)
    xr = x.clone().requires_grad_(True)
    ref = objective(xr)
    ref.backward()
    value, grad = tiled.value_and_grad(x)
    assert value.item() == pytest.approx(ref.item(), rel=1e-4)
    for k in ("content", "style", "tv"):
        assert tiled.last[k] == pytest.approx(objective.last[k], rel=1e-4, abs=1e-12)
    # Equal up to float rounding; a rare max-pool tie can route one pixel's share
    # differently, so compare the whole gradient rather than each element.
    assert ((grad - xr.grad).norm() / xr.grad.norm()).item() < 1e-3
    # cuDNN's convolution algorithms round differently per tile shape: on a GPU,
    # element-wise agreement is to 1%, the whole gradient's still to 0.1%.
    rtol = 1e-3 if test_device() == "cpu" else 1e-2
    close = torch.isclose(grad, xr.grad, rtol=rtol, atol=1e-4 * xr.grad.abs().max().item())
    assert close.float().mean().item() > 0.999


def test_margin_covers_receptive_field(engine: Engine) -> None:
    opts = EngineOptions()
    assert receptive_radius(engine._network(opts)) == 78  # relu5_1: 156 px field


def test_tiled_run_has_no_seams(engine: Engine) -> None:
    """A run that switches to tiles for its last scale: the output's gradient
    statistics at tile borders are those of everywhere else."""
    content = gradient_image(192, 192)
    opts = EngineOptions(size=192, evaluations=[4, 6], seed=0, tile_pixels=100 * 100, tile_size=64,
                         **SHALLOW)
    out = engine.run(content, [StyleInput(stripes_image())], opts)
    assert out.image.size == (192, 192)
    import numpy as np

    a = np.asarray(out.image, dtype=np.float32)
    dx = np.abs(np.diff(a, axis=1)).mean(axis=(0, 2))  # column steps, 191 of them
    border = dx[[63, 127]]  # between columns 63|64 and 127|128
    inner = np.delete(dx, [63, 127])
    assert border.max() < np.percentile(inner, 95) * 1.5
    assert out.tiled_scales == [1]


def test_large_scales_bound_their_memory(engine: Engine) -> None:
    from daemon.engine import lbfgs_history

    auto = engine.tile_threshold(EngineOptions())
    if test_device() == "cpu":
        assert auto == 1536 * 1536  # 7.5 GB untiled at 3.2 GB per megapixel
    else:
        assert auto >= 512 * 512  # from the device's free memory
    assert engine.tile_threshold(EngineOptions(tile_pixels=5000)) == 5000
    image = torch.empty  # shapes only: no memory is touched
    assert lbfgs_history(image(1, 3, 512, 512)) == 100
    assert lbfgs_history(image(1, 3, 1024, 1024)) == 85
    assert lbfgs_history(image(1, 3, 2048, 2048)) == 21
    assert lbfgs_history(image(1, 3, 4096, 4096)) == 5
