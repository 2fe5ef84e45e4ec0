"""Loss values against small cases computed by hand."""

from __future__ import annotations

import pytest
import torch

from impasto.engine import color
from impasto.engine.losses import (
    ContentLoss,
    MeanCovLoss,
    StyleLoss,
    TVLoss,
    gram,
    positions,
    trace_sqrtm,
)


def test_gram_by_hand() -> None:
    # C=2, H=1, W=2: F = [[1, 2], [3, 4]]; F F^T = [[5, 11], [11, 25]]; / (C*H*W = 4)
    f = torch.tensor([[[[1.0, 2.0]], [[3.0, 4.0]]]])
    expected = torch.tensor([[[5.0, 11.0], [11.0, 25.0]]]) / 4
    assert torch.allclose(gram(f), expected)


@pytest.mark.parametrize("fmt", [torch.contiguous_format, torch.channels_last])
def test_the_gram_s_own_backward_is_autograd_s(fmt: torch.memory_format) -> None:
    """The one-product backward equals autograd's two-product one (float64, exactly up
    to rounding), in either memory format, for an upstream gradient that is not
    symmetric; and channels-last features are read without a copy."""
    g = torch.Generator().manual_seed(0)
    f = torch.randn(1, 5, 4, 3, generator=g, dtype=torch.float64).contiguous(memory_format=fmt)
    r = torch.randn(5, 5, generator=g, dtype=torch.float64)  # not symmetric
    x1 = f.detach().clone(memory_format=torch.preserve_format).requires_grad_(True)
    x2 = f.detach().clone(memory_format=torch.preserve_format).requires_grad_(True)
    (gram(x1)[0] * r).sum().backward()
    plain = x2.reshape(5, -1)
    ((plain @ plain.T / 60) * r).sum().backward()
    assert torch.allclose(gram(f), (plain @ plain.T / 60).unsqueeze(0), rtol=1e-12, atol=0)
    assert torch.allclose(x1.grad, x2.grad, rtol=1e-12, atol=1e-14)
    assert torch.autograd.gradcheck(lambda x: gram(x), (x1.detach().requires_grad_(True),))
    if fmt == torch.channels_last:
        assert positions(f).data_ptr() == f.data_ptr()  # a view


def test_style_loss_by_hand() -> None:
    f = torch.tensor([[[[1.0, 2.0]], [[3.0, 4.0]]]])
    target = torch.zeros(1, 2, 2)
    # mean of squares of [[1.25, 2.75], [2.75, 6.25]] = (1.5625 + 2*7.5625 + 39.0625) / 4;
    # a zero target has no magnitude, so the term is the plain mean square
    loss = StyleLoss(target, weight=2.0)(f)
    assert loss.item() == pytest.approx(2.0 * (1.5625 + 2 * 7.5625 + 39.0625) / 4)
    # relative to the target's magnitude: target [[1, 0], [0, 1]] has mean square 0.5;
    # differences [[0.25, 2.75], [2.75, 5.25]] -> mean square (0.0625 + 2*7.5625 + 27.5625) / 4
    loss = StyleLoss(torch.eye(2).unsqueeze(0), weight=2.0)(f)
    assert loss.item() == pytest.approx(2.0 * (0.0625 + 2 * 7.5625 + 27.5625) / 4 / 0.5)


def test_content_loss_by_hand() -> None:
    f = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    target = torch.tensor([[[[1.0, 0.0], [3.0, 0.0]]]])
    # squared errors 0, 4, 0, 16 -> mean 5, times weight 3, over the target's mean
    # square (1 + 9) / 4 = 2.5
    assert ContentLoss(target, 3.0)(f).item() == pytest.approx(15.0 / 2.5)


def test_mean_cov_loss_is_the_gaussians_w2_distance() -> None:
    """Diagonal covariances commute, so the Wasserstein-2 distance between the Gaussians
    is |m - m_s|^2 + sum (sqrt(a) - sqrt(b))^2: computed by hand here, independently of
    the eigendecomposition the loss uses."""
    torch.manual_seed(0)
    n = 4096
    f = torch.randn(1, 3, 64, 64, dtype=torch.float64)
    f = (f - f.mean((2, 3), keepdim=True)) / f.std((2, 3), correction=0, keepdim=True)
    scales, shift = torch.tensor([0.5, 1.0, 2.0], dtype=torch.float64), torch.tensor(
        [0.1, -0.2, 0.3], dtype=torch.float64)
    f = f * scales.view(1, 3, 1, 1) + shift.view(1, 3, 1, 1)
    # Features decorrelated exactly are rare; take the covariance the sample really has.
    fl = f.reshape(3, n)
    mean, srm = fl.mean(1), fl @ fl.T / n
    target_mean = torch.tensor([0.0, 0.5, 0.0], dtype=torch.float64)
    target_var = torch.tensor([1.0, 4.0, 0.25], dtype=torch.float64)
    target_srm = torch.diag(target_var) + torch.outer(target_mean, target_mean)
    loss = MeanCovLoss(target_mean, target_srm, weight=1.0)
    loss.eps = 0.0
    with torch.no_grad():  # the loss's own eps, taken out of the comparison
        cov_t = torch.diag(target_var)
        loss.root.copy_(cov_t.sqrt())
        loss.cov_trace.copy_(cov_t.trace())
    cov = srm - torch.outer(mean, mean)
    assert torch.allclose(cov, torch.diag(torch.diagonal(cov)), atol=0.05)
    # the formula for the sample's own covariance, in numpy: the loss must equal it
    import numpy as np

    def sqrtm(a):
        vals, vecs = np.linalg.eigh(a)
        return (vecs * np.sqrt(np.clip(vals, 0, None))) @ vecs.T

    ct, cs = cov_t.numpy(), cov.numpy()
    rt = sqrtm(ct)
    w2 = (np.sum((mean.numpy() - target_mean.numpy()) ** 2) + np.trace(cs) + np.trace(ct)
          - 2 * np.trace(sqrtm(rt @ cs @ rt)))
    by_hand = float(((shift - target_mean) ** 2).sum()
                    + ((scales - target_var.sqrt()) ** 2).sum())
    assert w2 == pytest.approx(by_hand, abs=0.05)
    assert loss(f).item() * float(target_srm.trace()) == pytest.approx(w2, rel=1e-9)


def test_trace_sqrtm_gradient() -> None:
    torch.manual_seed(0)
    a = torch.randn(5, 5, dtype=torch.float64)
    m = (a @ a.T + 0.5 * torch.eye(5, dtype=torch.float64)).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x: trace_sqrtm((x + x.T) / 2), (m,))


def test_tv_loss_by_hand() -> None:
    x = torch.tensor([[[[0.0, 1.0], [1.0, 3.0]]]])
    # dx: (1-0), (3-1) -> squares 1, 4 -> mean 2.5; dy: (1-0), (3-1) -> mean 2.5
    assert TVLoss(0.5)(x).item() == pytest.approx(0.5 * (2.5 + 2.5))


def test_gram_is_size_invariant_for_repeated_texture() -> None:
    tile = torch.rand(1, 4, 3, 3)
    big = tile.repeat(1, 1, 2, 2)
    assert torch.allclose(gram(tile), gram(big), atol=1e-6)


def test_yiq_round_trip_and_luminance() -> None:
    img = torch.rand(3, 5, 7)
    assert torch.allclose(color.yiq_to_rgb(color.rgb_to_yiq(img)), img, atol=1e-5)
    grey = torch.full((3, 2, 2), 0.5)
    assert torch.allclose(color.luminance(grey), grey, atol=1e-6)


def test_histogram_matching_takes_content_statistics() -> None:
    torch.manual_seed(0)
    style = torch.rand(3, 32, 32) * torch.tensor([0.3, 0.6, 0.2]).view(3, 1, 1)
    content = (torch.rand(3, 32, 32) * 0.4 + 0.3).clamp(0, 1)
    content[1] = content[0] * 0.5 + 0.2  # correlated channels
    out = color.match_histogram(style, content)
    assert torch.allclose(out.reshape(3, -1).mean(1), content.reshape(3, -1).mean(1), atol=0.02)
    assert torch.allclose(torch.cov(out.reshape(3, -1)), torch.cov(content.reshape(3, -1)),
                          atol=0.01)


def test_match_luminance_statistics() -> None:
    torch.manual_seed(0)
    style, content = torch.rand(3, 16, 16), torch.rand(3, 16, 16) * 0.3 + 0.5
    y = color.match_luminance(style, content)[0]
    yc = color.rgb_to_yiq(content)[0]
    assert y.mean().item() == pytest.approx(yc.mean().item(), abs=1e-4)
    assert y.std().item() == pytest.approx(yc.std().item(), abs=1e-4)
