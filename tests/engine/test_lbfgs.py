"""daemon/impasto/engine/lbfgs.py takes the same steps as torch.optim.LBFGS called once per evaluation."""

from __future__ import annotations

import pytest
import torch

from impasto.engine.lbfgs import LBFGS
from impasto.engine.transfer import Engine, StyleInput
from impasto.engine.weights import random_weights
from impasto.options import EngineOptions
from tests.helpers import gradient_image, stripes_image, test_device


def run(objective, x0: torch.Tensor, impl: str, steps: int, history: int) -> torch.Tensor:
    x = x0.clone().requires_grad_(True)
    if impl == "torch":
        opt = torch.optim.LBFGS([x], lr=1, max_iter=1, history_size=history,
                                tolerance_grad=-1, tolerance_change=-1)
    else:
        opt = LBFGS(x, history_size=history)

    def closure() -> torch.Tensor:
        x.grad = None
        loss = objective(x)
        loss.backward()
        return loss

    for _ in range(steps):
        opt.step(closure)
    return x.detach()


def quartic(n: int, dtype: torch.dtype):
    g = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=g, dtype=dtype)
    a = a @ a.T / n + 0.1 * torch.eye(n, dtype=dtype)
    b = torch.randn(n, generator=g, dtype=dtype)
    return lambda x: 0.5 * x @ a @ x - b @ x + 0.1 * (x**4).sum()


def test_same_iterates_as_torch_in_float64_past_a_full_history() -> None:
    f = quartic(300, torch.float64)
    x0 = torch.zeros(300, dtype=torch.float64)
    ref = run(f, x0, "torch", 60, history=10)  # 60 steps: the history wraps 5 times
    ours = run(f, x0, "ours", 60, history=10)
    assert ((ours - ref).norm() / ref.norm()).item() < 1e-12
    assert f(ours).item() < f(x0).item() - 1.0


def test_skips_pairs_without_curvature_as_torch_does() -> None:
    # Linear: y = 0 on every step, so no pair is ever stored and both keep the
    # first step's scaled gradient descent.
    f = lambda x: (x * torch.arange(1.0, 6.0, dtype=torch.float64)).sum()  # noqa: E731
    x0 = torch.zeros(5, dtype=torch.float64)
    ref, ours = run(f, x0, "torch", 4, 5), run(f, x0, "ours", 4, 5)
    assert torch.allclose(ours, ref, rtol=1e-12, atol=1e-14)


def test_history_memory_grows_with_use() -> None:
    f = quartic(50, torch.float64)
    x = torch.zeros(50, dtype=torch.float64, requires_grad=True)
    opt = LBFGS(x, history_size=100)

    def closure() -> torch.Tensor:
        x.grad = None
        loss = f(x)
        loss.backward()
        return loss

    for _ in range(5):
        opt.step(closure)
    assert opt.S.shape[0] == 8 and len(opt.order) == 4  # not 100 rows for 4 pairs


def test_engine_objective_matches_torch_lbfgs() -> None:
    """On the real VGG objective, computed in float64: in float32, L-BFGS carries the
    two implementations' different rounding forward until it shows, which depends on
    the CPU; in float64 they take the same steps to about 1e-9."""
    engine = Engine(random_weights(0), test_device(), precision="fp32", cuda_graphs=False,
                    dtype=torch.float64)
    opts = EngineOptions(size=64, scales=1, seed=0)
    net = engine._network(opts)
    objective, c, _, _, _ = engine._scale_objective(net, gradient_image(64, 48),
                                                    [StyleInput(stripes_image())], opts, 64, None)
    scale = 1.0 / objective(c).item()
    f = lambda x: objective(x) * scale  # noqa: E731
    ref, ours = run(f, c, "torch", 12, 100), run(f, c, "ours", 12, 100)
    travelled = (ref - c).norm()
    assert ((ours - ref).norm() / travelled).item() < 1e-6
    assert f(ours).item() == pytest.approx(f(ref).item(), rel=1e-9)
    assert f(ours).item() < 0.95
