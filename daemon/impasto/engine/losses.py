"""The three losses of Gatys et al., each a small module holding its target.

Deviation from the papers' constants, and why: every content and style term is measured
relative to its target's magnitude,

    content_l = mean((F_l(x) - P_l)^2) / mean(P_l^2)
    style_l   = mean((G_l(x) - A_l)^2) / mean(A_l^2),   G = F F^T / (C H W)

The paper's 1/2 sum and 1/(4 N^2 M^2), and neural-style's means, leave each term
proportional to the feature magnitudes: the 2nd power of them for content, the 4th for
style. Those magnitudes differ by weight file (Caffe's 0-255 input makes activations
about 57 times torchvision's), so published loss weights that work differ by orders of
magnitude between files (neural-style: 5 / 100 on Caffe; PyTorch's tutorial: 1 / 1e6
on torchvision), and one "strength" meant different things. Relative terms are
invariant to any scaling of the activations (tests/engine/test_invariance.py proves it
exactly), so one set of weights means the same with every file, at every image size
and at every layer; each layer's term is about 1 for an unrelated image and 0 at the
target. A target that is exactly zero (a black image through bias-free random weights)
has no magnitude to compare with; its term is then the plain mean square.
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


def relative(target: torch.Tensor) -> float:
    """1 / mean(target^2): what makes a term relative to its target's magnitude."""
    m = float(target.detach().double().pow(2).mean())
    return 1.0 / m if m > 0 else 1.0


class _RelativeLoss(nn.Module):
    """Holds a target and a weight already divided by the target's magnitude."""

    def __init__(self, target: torch.Tensor, weight: float) -> None:
        super().__init__()
        self.register_buffer("target", target.detach())
        self.weight = weight * relative(target)


class ContentLoss(_RelativeLoss):
    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.weight * F.mse_loss(features, self.target)


class StyleLoss(_RelativeLoss):
    """target: a Gram matrix, already blended over style images by their weights."""

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.weight * F.mse_loss(gram(features), self.target)


class TVLoss(nn.Module):
    """Squared total variation (beta = 2, Mahendran & Vedaldi), mean over pixels.

    neural-style sums absolute differences on a 0-255 image; the mean of squares on a
    [0, 1] image does not grow with image size, so one weight fits every scale. It sees
    only pixels, so no weight file changes it.
    """

    def __init__(self, weight: float) -> None:
        super().__init__()
        self.weight = weight

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        dx = image[..., :, 1:] - image[..., :, :-1]
        dy = image[..., 1:, :] - image[..., :-1, :]
        return self.weight * (dx.pow(2).mean() + dy.pow(2).mean())
