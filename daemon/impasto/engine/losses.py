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

The objective is a list of terms (`Term`): small modules, each reading one layer's
features (or the image) and reporting under a group name ("content", "style", "tv",
...). Each kind declares how it adds up over tiles (tiled.py), so a new term needs no
tiled twin:
  - `PixelTerm`: a sum over positions (content): tiles add their windows' sums;
  - `StatTerm`: a function of its layer's moments (Gram, mean and covariance), optionally
    guided by a region mask: tiles add their moments, and tiled.py differentiates the
    function of the moments once to get every position's gradient;
  - `ImageTerm`: reads the image (TV): evaluated on the whole image, tiled or not.

Regions (Gatys et al. 2017, "Controlling Perceptual Factors in Neural Style Transfer",
spatial control): a guide T, the region's mask brought to the layer's resolution, weighs
the features, F o T, and the guided Gram is (F o T)(F o T)^T. Deviation, and why: the
paper's code divides by the layer's position count; impasto divides by sum(T^2), the
region's own (soft) area, so the guided Gram is the region's mean statistic, directly
comparable with the style's, and each region's term is about 1 whatever its area: a
region of 10% gets its share of the gradient beside one of 90% (neural-style-pt's
masks, normalised by the whole image, starve a small region: its issue #46).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# A layer's positions in the whole image's feature map (rows, columns): what a tile's
# core covers. None: the whole map.
Window = tuple[slice, slice] | None


class _SecondMoment(torch.autograd.Function):
    """phi phi^T with a one-product backward, (G + G^T) phi: autograd's own backward of a
    product of a matrix with its transpose takes two products (one per operand), and
    these products are about a sixth of an evaluation on a CPU (benchmarks/peers.py)."""

    @staticmethod
    def forward(ctx, phi: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(phi)
        return phi @ phi.T

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        (phi,) = ctx.saved_tensors
        s = grad + grad.T
        if phi.stride(0) == 1 and phi.shape[0] > 1:
            # phi is a transposed view (channels-last features): the gradient in its
            # layout, (phi^T s)^T = s phi as s is symmetric, so the convolutions'
            # backward gets channels-last without a conversion.
            return (phi.T @ s).T
        return s @ phi


def second_moment(phi: torch.Tensor) -> torch.Tensor:
    """(C, n) -> sum over positions of f f^T, (C, C)."""
    return _SecondMoment.apply(phi)


def positions(features: torch.Tensor) -> torch.Tensor:
    """(1, C, H, W) features as (C, H*W), positions in row-major order. Channels-last
    features (the CPU's bf16 path) are viewed, not copied: their channels are innermost,
    so (H*W, C) is their own layout and its transpose a free view."""
    c = features.shape[1]
    if features.dim() == 4 and features.stride(1) == 1 and c > 1:
        return features.permute(0, 2, 3, 1).reshape(-1, c).T
    return features.reshape(c, -1)


def gram(features: torch.Tensor) -> torch.Tensor:
    """(1, C, H, W) -> (1, C, C) Gram matrix divided by C*H*W."""
    _, c, h, w = features.shape
    return (second_moment(positions(features)) / (c * h * w)).unsqueeze(0)


def relative(target: torch.Tensor) -> float:
    """1 / mean(target^2): what makes a term relative to its target's magnitude."""
    m = float(target.detach().double().pow(2).mean())
    return 1.0 / m if m > 0 else 1.0


def mean_key(layer: str) -> str:
    """Where a style's targets keep a layer's mean feature, beside its Gram."""
    return f"{layer}#mean"


def style_targets(features: dict[str, torch.Tensor], layers: list[str]) -> dict[str, torch.Tensor]:
    """A style image's statistics: each layer's Gram (what the Gram loss compares) and
    mean feature (what the mean-and-covariance loss needs besides: its second moment is
    C times the Gram)."""
    out = {}
    for n in layers:
        out[n] = gram(features[n])
        out[mean_key(n)] = features[n].mean((0, 2, 3))
    return out


def in_window(t: torch.Tensor, window: Window) -> torch.Tensor:
    return t if window is None else t[..., window[0], window[1]]


class Term(nn.Module):
    """One part of the objective. group: the name its value is reported under; layer:
    the VGG19 layer it reads (None: the image)."""

    group = ""

    def __init__(self, layer: str | None) -> None:
        super().__init__()
        self.layer = layer


class ImageTerm(Term):
    def __init__(self) -> None:
        super().__init__(None)


class PixelTerm(Term):
    """A sum over its layer's positions: the value over a window is its share."""

    def partial(self, features: torch.Tensor, window: Window) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.partial(features, None)


Moments = tuple["torch.Tensor | float", "torch.Tensor | None", torch.Tensor]


class StatTerm(Term):
    """A function of its layer's moments s0 = sum w, s1 = sum w f, s2 = sum w f f^T over
    positions, with w = T^2 for a guide T (1 without: s0 is then the plain count)."""

    uses_mean = False  # whether value() needs s1

    def __init__(self, layer: str, guide: torch.Tensor | None = None) -> None:
        super().__init__(layer)
        self.register_buffer("guide", None if guide is None else guide.detach())

    def guided(self, features: torch.Tensor, window: Window) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(C, n) features of the window, times the guide; and the guide, (n,)."""
        fl = positions(features)
        if self.guide is None:
            return fl, None
        t = in_window(self.guide, window).reshape(-1).to(fl.dtype)
        return fl * t, t

    def moments(self, features: torch.Tensor, window: Window = None) -> Moments:
        phi, t = self.guided(features, window)
        s2 = second_moment(phi)
        s0 = float(phi.shape[1]) if t is None else (t * t).sum()
        s1 = None
        if self.uses_mean:
            s1 = phi.sum(1) if t is None else phi @ t
        return s0, s1, s2

    def value(self, s0: torch.Tensor | float, s1: torch.Tensor | None,
              s2: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.value(*self.moments(features))


class ContentLoss(PixelTerm):
    group = "content"

    def __init__(self, target: torch.Tensor, weight: float, layer: str = "") -> None:
        super().__init__(layer)
        self.register_buffer("target", target.detach())
        self.weight = weight * relative(target)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.weight * F.mse_loss(features, self.target)

    def partial(self, features: torch.Tensor, window: Window) -> torch.Tensor:
        diff = features - in_window(self.target, window)
        return diff.pow(2).sum() * (self.weight / self.target.numel())


class StyleLoss(StatTerm):
    """Gatys et al.'s Gram loss. target: a Gram matrix (C, C), already blended over
    style images by their weights; guided by the region's guide when it has one."""

    group = "style"

    def __init__(self, target: torch.Tensor, weight: float, layer: str = "",
                 guide: torch.Tensor | None = None) -> None:
        super().__init__(layer, guide)
        c = target.shape[-1]
        self.register_buffer("target", target.detach().reshape(c, c))
        self.weight = weight * relative(target)

    def value(self, s0, s1, s2):
        c = s2.shape[0]
        return self.weight * F.mse_loss(s2 / (c * s0), self.target)


class _TraceSqrtm(torch.autograd.Function):
    """trace(sqrtm(M)) of a symmetric positive semi-definite M, whose gradient is
    M^(-1/2) / 2: one eigendecomposition, no matrix square root to differentiate."""

    @staticmethod
    def forward(ctx, m: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        vals, vecs = torch.linalg.eigh(m)
        # Rounding leaves tiny negative eigenvalues; a floor keeps 1/sqrt finite.
        vals = vals.clamp_min(torch.finfo(m.dtype).eps * vals.abs().max().clamp_min(1e-30))
        ctx.save_for_backward(vals, vecs)
        return vals.sqrt().sum()

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        vals, vecs = ctx.saved_tensors
        return grad * (vecs * (0.5 * vals.rsqrt())) @ vecs.T


def trace_sqrtm(m: torch.Tensor) -> torch.Tensor:
    return _TraceSqrtm.apply(m)


class MeanCovLoss(StatTerm):
    """The Wasserstein-2 distance between Gaussians fitted to the features and to the
    style's (crowsonkb's style-transfer-pytorch, StyleLossW2):

        |m - m_s|^2 + tr(S) + tr(S_s) - 2 tr((S_s^1/2 S S_s^1/2)^1/2)

    Deviation, and why: divided by the style's second moment tr(E[f f^T]), so it is
    relative like every term here (invariant to the activations' scale), and its
    regularising eps is relative to that too (crowsonkb adds an absolute 1e-4 I)."""

    group = "style"
    uses_mean = True
    EPS = 1e-4

    def __init__(self, mean: torch.Tensor, srm: torch.Tensor, weight: float, layer: str = "",
                 guide: torch.Tensor | None = None) -> None:
        super().__init__(layer, guide)
        c, dtype = srm.shape[-1], srm.dtype
        # The target's square root once, in float64: eigenvalues near zero are common
        # (deep layers of a plain style image) and float32 would lose them.
        mean, srm = mean.detach().reshape(c).double(), srm.detach().reshape(c, c).double()
        scale = float(torch.diagonal(srm).sum())
        scale = scale if scale > 0 else 1.0
        self.eps = self.EPS * scale / c
        cov = srm - torch.outer(mean, mean) + self.eps * torch.eye(c, dtype=srm.dtype, device=srm.device)
        vals, vecs = torch.linalg.eigh(cov)
        root = (vecs * vals.clamp_min(0).sqrt()) @ vecs.T
        self.register_buffer("mean", mean.to(dtype))
        self.register_buffer("root", root.to(dtype))
        self.register_buffer("cov_trace", torch.diagonal(cov).sum().to(dtype))
        self.weight = weight / scale

    def value(self, s0, s1, s2):
        c = s2.shape[0]
        m = s1 / s0
        cov = s2 / s0 - torch.outer(m, m) + self.eps * torch.eye(c, dtype=s2.dtype, device=s2.device)
        cross = trace_sqrtm(self.root @ cov @ self.root)
        w2 = (m - self.mean).pow(2).sum() + torch.diagonal(cov).sum() + self.cov_trace - 2 * cross
        return self.weight * w2


class TVLoss(ImageTerm):
    """Squared total variation (beta = 2, Mahendran & Vedaldi), mean over pixels.

    neural-style sums absolute differences on a 0-255 image; the mean of squares on a
    [0, 1] image does not grow with image size, so one weight fits every scale. It sees
    only pixels, so no weight file changes it.
    """

    group = "tv"

    def __init__(self, weight: float) -> None:
        super().__init__()
        self.weight = weight

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        dx = image[..., :, 1:] - image[..., :, :-1]
        dy = image[..., 1:, :] - image[..., :-1, :]
        return self.weight * (dx.pow(2).mean() + dy.pow(2).mean())
