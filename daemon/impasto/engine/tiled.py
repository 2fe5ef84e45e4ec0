"""The full-image objective and its exact gradient, computed tile by tile.

For outputs too large for one pass through VGG19 (a 4096 px image needs tens of GB of
activations), each evaluation walks the image in tiles twice:

  1. no grad: every tile's features give its share of the global Gram matrices and
     of the content loss, so the style statistics are those of the whole image;
  2. with grad: each tile backpropagates a surrogate whose gradient with respect to
     its features equals the true full-image one (dL/dF, computed in closed form from
     the global Grams), and the pixel gradients are summed into one image gradient.

Each tile carries a margin wider than the receptive field radius of the deepest layer
used, and only its core's features count; tile origins are multiples of 16, so the
pooling grids line up with the full image's. The value and gradient are therefore the
untiled ones up to floating-point rounding: no seams by construction
(tests/test_tiled.py checks this against the untiled objective).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import nn

from impasto.engine.losses import TVLoss, relative
from impasto.engine.objective import Recorder
from impasto.engine.vgg import VGGFeatures

ALIGN = 16  # four 2x2 poolings before conv5_x


def receptive_radius(net: VGGFeatures) -> int:
    """Receptive field radius, in pixels, of the deepest layer the network computes."""
    rf, stride = 1, 1
    for m in net.layers:
        if isinstance(m, nn.Conv2d):
            rf += 2 * stride
        elif isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)):
            rf += stride
            stride *= 2
    return (rf + 1) // 2


def strides(net: VGGFeatures) -> dict[str, int]:
    out, stride = {}, 1
    for i, m in enumerate(net.layers):
        if isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)):
            stride *= 2
        if i in net.wanted:
            out[net.wanted[i]] = stride
    return out


@dataclass
class Tile:
    y0: int  # the tile, with margin, in image pixels
    y1: int
    x0: int
    x1: int
    cy0: int  # its core
    cy1: int
    cx0: int
    cx1: int

    def core(self, stride: int, fh: int, fw: int, full_h: int, full_w: int) -> tuple[slice, slice]:
        """The core in this tile's feature map of the given stride (fh x fw)."""
        ys = slice((self.cy0 - self.y0) // stride,
                   fh if self.cy1 >= full_h else (self.cy1 - self.y0) // stride)
        xs = slice((self.cx0 - self.x0) // stride,
                   fw if self.cx1 >= full_w else (self.cx1 - self.x0) // stride)
        return ys, xs


def tiles(h: int, w: int, core: int, margin: int) -> Iterator[Tile]:
    assert core % ALIGN == 0 and margin % ALIGN == 0
    for cy0 in range(0, h, core):
        for cx0 in range(0, w, core):
            cy1, cx1 = min(h, cy0 + core), min(w, cx0 + core)
            yield Tile(max(0, cy0 - margin), min(h, cy1 + margin),
                       max(0, cx0 - margin), min(w, cx1 + margin), cy0, cy1, cx0, cx1)


def _never() -> None:
    pass


def tiled_grams(net: VGGFeatures, image: torch.Tensor, layers: list[str],
                core: int, check: Callable[[], None] = _never) -> dict[str, torch.Tensor]:
    """gram() of each layer's features over a whole image too large for one pass.
    `check` runs before each tile (it raises to cancel)."""
    h, w = image.shape[-2:]
    margin = math.ceil(receptive_radius(net) / ALIGN) * ALIGN
    layer_strides = strides(net)
    sums: dict[str, torch.Tensor] = {}
    counts = dict.fromkeys(layers, 0)
    with torch.no_grad():
        for t in tiles(h, w, max(ALIGN, core // ALIGN * ALIGN), margin):
            check()
            feats = net(image[..., t.y0:t.y1, t.x0:t.x1])
            for name in layers:
                f = feats[name]
                ys, xs = t.core(layer_strides[name], f.shape[-2], f.shape[-1], h, w)
                fl = f[0, :, ys, xs].reshape(f.shape[1], -1)
                sums[name] = sums.get(name, 0) + fl @ fl.T
                counts[name] += fl.shape[1]
    return {n: (sums[n] / (sums[n].shape[0] * counts[n])).unsqueeze(0) for n in layers}


class TiledObjective(Recorder):
    """Content + style + TV of a whole image, evaluated in tiles. Same weights and
    normalisation as the untiled losses (losses.py)."""

    def __init__(self, net: VGGFeatures, content: torch.Tensor, style_targets: dict[str, torch.Tensor],
                 content_layers: list[str], style_weights: dict[str, float], content_weight: float,
                 tv_weight: float, core: int = 512, check: Callable[[], None] = _never) -> None:
        super().__init__()
        self.net = net
        self.h, self.w = content.shape[-2:]
        self.core = max(ALIGN, core // ALIGN * ALIGN)
        self.margin = math.ceil(receptive_radius(net) / ALIGN) * ALIGN
        self.strides = strides(net)
        self.style_targets = style_targets
        self.content_layers = content_layers
        self.tv = TVLoss(tv_weight)
        self.check = check  # before each tile: a cancel takes effect within one tile
        self.content_targets = self._assemble(content, content_layers)
        # Each term relative to its target's magnitude, as losses.py does.
        self.style_weights = {n: w * relative(style_targets[n]) for n, w in style_weights.items()}
        self.content_weights = {n: content_weight * relative(self.content_targets[n])
                                for n in content_layers}

    def _tiles(self) -> list[Tile]:
        return list(tiles(self.h, self.w, self.core, self.margin))

    def _core_features(self, feats: dict[str, torch.Tensor], t: Tile, name: str) -> torch.Tensor:
        f = feats[name]
        s = self.strides[name]
        ys, xs = t.core(s, f.shape[-2], f.shape[-1], self.h, self.w)
        return f[..., ys, xs]

    def _offset(self, t: Tile, name: str) -> tuple[int, int]:
        s = self.strides[name]
        return t.cy0 // s, t.cx0 // s

    def _assemble(self, image: torch.Tensor, layers: list[str]) -> dict[str, torch.Tensor]:
        """Full-image feature maps of `layers`, built from tile cores."""
        out: dict[str, torch.Tensor] = {}
        with torch.no_grad():
            for t in self._tiles():
                self.check()
                feats = self.net(image[..., t.y0:t.y1, t.x0:t.x1])
                for name in layers:
                    f = self._core_features(feats, t, name)
                    if name not in out:
                        s = self.strides[name]
                        out[name] = f.new_zeros(f.shape[0], f.shape[1], self.h // s, self.w // s)
                    oy, ox = self._offset(t, name)
                    out[name][..., oy:oy + f.shape[-2], ox:ox + f.shape[-1]] = f
        return out

    def value_and_grad(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Objective at x (1, 3, H, W) and its gradient."""
        all_tiles = self._tiles()
        # Pass 1: global Grams and the content loss.
        sums = {n: 0.0 for n in self.style_targets}
        counts = dict.fromkeys(self.style_targets, 0)
        content_loss = x.new_zeros(())
        with torch.no_grad():
            for t in all_tiles:
                self.check()
                feats = self.net(x[..., t.y0:t.y1, t.x0:t.x1])
                for name in self.style_targets:
                    f = self._core_features(feats, t, name)
                    fl = f.reshape(f.shape[1], -1)
                    sums[name] = sums[name] + fl @ fl.T
                    counts[name] += fl.shape[1]
                for name in self.content_layers:
                    f = self._core_features(feats, t, name)
                    oy, ox = self._offset(t, name)
                    p = self.content_targets[name][..., oy:oy + f.shape[-2], ox:ox + f.shape[-1]]
                    content_loss += ((f - p) ** 2).sum() * (
                        self.content_weights[name] / self.content_targets[name].numel())
        grams, style_loss, coefs = {}, x.new_zeros(()), {}
        for name, target in self.style_targets.items():
            c = target.shape[-1]
            g = sums[name] / (c * counts[name])
            grams[name] = g
            diff = g - target.reshape(c, c)
            style_loss = style_loss + self.style_weights[name] * diff.pow(2).mean()
            # d/dF of w * mean((F F^T / (C N) - A)^2) = 4 w (G - A) F / (C^3 N)
            coefs[name] = diff * (4 * self.style_weights[name] / (c**3 * counts[name]))

        # Pass 2: exact gradients through each tile.
        grad = torch.zeros_like(x)
        for t in all_tiles:
            self.check()
            xt = x[..., t.y0:t.y1, t.x0:t.x1].detach().requires_grad_(True)
            feats = self.net(xt)
            surrogate = xt.new_zeros(())
            for name, coef in coefs.items():
                f = self._core_features(feats, t, name)
                fl = f.reshape(f.shape[1], -1)
                surrogate = surrogate + (fl * (coef @ fl.detach())).sum()
            for name in self.content_layers:
                f = self._core_features(feats, t, name)
                oy, ox = self._offset(t, name)
                p = self.content_targets[name][..., oy:oy + f.shape[-2], ox:ox + f.shape[-1]]
                scale = 2 * self.content_weights[name] / self.content_targets[name].numel()
                surrogate = surrogate + (f * ((f.detach() - p) * scale)).sum()
            surrogate.backward()
            assert xt.grad is not None
            grad[..., t.y0:t.y1, t.x0:t.x1] += xt.grad
            del feats, surrogate, xt
        xg = x.detach().requires_grad_(True)
        tv = self.tv(xg)
        tv.backward()
        assert xg.grad is not None
        grad += xg.grad
        total = content_loss + style_loss + tv.detach()
        self.record(torch.stack([content_loss, style_loss, tv.detach(), total]))
        return total, grad
