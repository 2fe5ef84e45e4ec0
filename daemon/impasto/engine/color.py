"""Colour preservation, the two methods of Gatys et al. 2016 ("Preserving Color in
Neural Artistic Style Transfer"). Images are (3, H, W) float tensors in [0, 1]."""

from __future__ import annotations

import torch

# NTSC YIQ, as in the paper's luminance-only transfer.
_RGB2YIQ = torch.tensor([[0.299, 0.587, 0.114],
                         [0.595716, -0.274453, -0.321263],
                         [0.211456, -0.522591, 0.311135]])
_YIQ2RGB = torch.linalg.inv(_RGB2YIQ)


def rgb_to_yiq(img: torch.Tensor) -> torch.Tensor:
    return torch.einsum("ij,jhw->ihw", _RGB2YIQ.to(img), img)


def yiq_to_rgb(img: torch.Tensor) -> torch.Tensor:
    return torch.einsum("ij,jhw->ihw", _YIQ2RGB.to(img), img)


def luminance(img: torch.Tensor) -> torch.Tensor:
    """Grey (3, H, W) image of the luminance; VGG still wants three channels."""
    y = rgb_to_yiq(img)[:1]
    return y.expand(3, -1, -1).contiguous()


def match_luminance(style: torch.Tensor, content: torch.Tensor) -> torch.Tensor:
    """Style luminance shifted and scaled to the content's mean and deviation (eq. 1)."""
    ys, yc = rgb_to_yiq(style)[0], rgb_to_yiq(content)[0]
    y = (ys - ys.mean()) * (yc.std() / ys.std().clamp_min(1e-6)) + yc.mean()
    return y.expand(3, -1, -1).contiguous()


def recombine(stylized_luma: torch.Tensor, content: torch.Tensor) -> torch.Tensor:
    """Output luminance with the content's I and Q channels; sizes must match."""
    yiq = rgb_to_yiq(content)
    yiq = torch.cat([stylized_luma.mean(0, keepdim=True), yiq[1:]], 0)
    return yiq_to_rgb(yiq).clamp(0, 1)


def _sqrtm(cov: torch.Tensor, inverse: bool = False) -> torch.Tensor:
    vals, vecs = torch.linalg.eigh(cov)
    vals = vals.clamp_min(1e-8)
    vals = vals.rsqrt() if inverse else vals.sqrt()
    return vecs @ torch.diag(vals) @ vecs.T


def match_histogram(style: torch.Tensor, content: torch.Tensor) -> torch.Tensor:
    """Linear colour transfer of the style image to the content's mean and covariance.

    The paper's "image analogies" variant: A = Sigma_c^1/2 Sigma_s^-1/2 (symmetric square
    roots), which the authors preferred over Cholesky for fewer colour shifts.
    """
    s = style.reshape(3, -1).double()
    c = content.reshape(3, -1).double()
    mu_s, mu_c = s.mean(1, keepdim=True), c.mean(1, keepdim=True)
    eye = torch.eye(3, dtype=s.dtype) * 1e-5
    cov_s = torch.cov(s) + eye
    cov_c = torch.cov(c) + eye
    a = _sqrtm(cov_c) @ _sqrtm(cov_s, inverse=True)
    out = a @ (s - mu_s) + mu_c
    return out.reshape(style.shape).to(style.dtype).clamp(0, 1)
