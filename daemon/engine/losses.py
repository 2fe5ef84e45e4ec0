"""The three losses of Gatys et al., each a small module holding its target.

Normalisation follows jcjohnson/neural-style (and neural-style-pt), whose default
weights (content 5, style 100) users know: content is the mean squared error of the
activations; style is the mean squared error of Gram matrices divided by C*H*W. The
paper's 1/(4 N^2 M^2) constant differs from this only by a per-layer factor; dividing
by the number of elements keeps every layer's contribution comparable at any image size,
which is what makes one set of weights work across coarse-to-fine scales.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def gram(features: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) -> (N, C, C) Gram matrix divided by C*H*W."""
    n, c, h, w = features.shape
    f = features.reshape(n, c, h * w)
    return torch.bmm(f, f.transpose(1, 2)) / (c * h * w)


class ContentLoss(nn.Module):
    def __init__(self, target: torch.Tensor, weight: float) -> None:
        super().__init__()
        self.register_buffer("target", target.detach())
        self.weight = weight

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.weight * F.mse_loss(features, self.target)


class StyleLoss(nn.Module):
    """target: a Gram matrix, already blended over style images by their weights."""

    def __init__(self, target: torch.Tensor, weight: float) -> None:
        super().__init__()
        self.register_buffer("target", target.detach())
        self.weight = weight

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.weight * F.mse_loss(gram(features), self.target)


class TVLoss(nn.Module):
    """Squared total variation (beta = 2, Mahendran & Vedaldi), mean over pixels.

    neural-style sums absolute differences on a 0-255 image; the mean of squares on a
    [0, 1] image does not grow with image size, so one weight fits every scale.
    """

    def __init__(self, weight: float) -> None:
        super().__init__()
        self.weight = weight

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        dx = image[..., :, 1:] - image[..., :, :-1]
        dy = image[..., 1:, :] - image[..., :-1, :]
        return self.weight * (dx.pow(2).mean() + dy.pow(2).mean())
