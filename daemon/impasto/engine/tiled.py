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

from impasto.engine.losses import ImageTerm, PixelTerm, StatTerm, Term, Window, mean_key
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


def tile_cores(net: VGGFeatures, image: torch.Tensor, layers: list[str], core: int,
               check: Callable[[], None] = _never) -> Iterator[tuple[str, torch.Tensor, Window]]:
    """Each tile's core features of each layer, with where they lie in the whole image's
    feature map, computed without grad for an image too large for one pass. `check` runs
    before each tile (it raises to cancel)."""
    h, w = image.shape[-2:]
    margin = math.ceil(receptive_radius(net) / ALIGN) * ALIGN
    layer_strides = strides(net)
    with torch.no_grad():
        for t in tiles(h, w, max(ALIGN, core // ALIGN * ALIGN), margin):
            check()
            feats = net(image[..., t.y0:t.y1, t.x0:t.x1])
            for name in layers:
                f, window = _core(feats[name], t, layer_strides[name], h, w)
                yield name, f, window


def tiled_targets(net: VGGFeatures, image: torch.Tensor, layers: list[str],
                  core: int, check: Callable[[], None] = _never) -> dict[str, torch.Tensor]:
    """style_targets() of an image too large for one pass."""
    sums: dict[str, torch.Tensor] = {}
    firsts: dict[str, torch.Tensor] = {}
    counts = dict.fromkeys(layers, 0)
    for name, f, _ in tile_cores(net, image, layers, core, check):
        fl = f[0].reshape(f.shape[1], -1)
        sums[name] = sums.get(name, 0) + fl @ fl.T
        firsts[name] = firsts.get(name, 0) + fl.sum(1)
        counts[name] += fl.shape[1]
    out = {}
    for n in layers:
        out[n] = (sums[n] / (sums[n].shape[0] * counts[n])).unsqueeze(0)
        out[mean_key(n)] = firsts[n] / counts[n]
    return out


def feature_sizes(net: VGGFeatures, h: int, w: int) -> dict[str, tuple[int, int]]:
    """Each wanted layer's feature map size for an h x w image (pooling rounds down)."""
    return {name: (h // s, w // s) for name, s in strides(net).items()}


def assemble(net: VGGFeatures, image: torch.Tensor, layers: list[str], core: int,
             check: Callable[[], None] = _never) -> dict[str, torch.Tensor]:
    """Full-image feature maps of `layers` for an image too large for one pass, built
    from tile cores (the content targets of a tiled scale)."""
    h, w = image.shape[-2:]
    sizes = feature_sizes(net, h, w)
    out: dict[str, torch.Tensor] = {}
    for name, f, window in tile_cores(net, image, layers, core, check):
        if name not in out:
            out[name] = f.new_zeros(f.shape[0], f.shape[1], *sizes[name])
        out[name][..., window[0], window[1]] = f
    return out


def _core(f: torch.Tensor, t: Tile, stride: int, h: int, w: int) -> tuple[torch.Tensor, Window]:
    """A tile's core features and where they lie in the whole image's feature map."""
    ys, xs = t.core(stride, f.shape[-2], f.shape[-1], h, w)
    f = f[..., ys, xs]
    oy, ox = t.cy0 // stride, t.cx0 // stride
    return f, (slice(oy, oy + f.shape[-2]), slice(ox, ox + f.shape[-1]))


class TiledObjective(Recorder):
    """The objective of a list of terms (losses.py) over a whole image, evaluated in
    tiles, for any term that says how it adds up over them: pixel terms by their
    windows' sums, statistics terms by their moments, image terms on the whole image."""

    def __init__(self, net: VGGFeatures, terms: list[Term], h: int, w: int, core: int = 512,
                 check: Callable[[], None] = _never) -> None:
        super().__init__(terms)
        for term in terms:
            if not isinstance(term, (StatTerm, PixelTerm, ImageTerm)):
                raise TypeError(f"{type(term).__name__} does not say how it adds up over tiles")
        self.net = net
        self.h, self.w = h, w
        self.core = max(ALIGN, core // ALIGN * ALIGN)
        self.margin = math.ceil(receptive_radius(net) / ALIGN) * ALIGN
        self.strides = strides(net)
        self.check = check  # before each tile: a cancel takes effect within one tile
        self.stat_terms = [t for t in terms if isinstance(t, StatTerm)]
        self.pixel_terms = [t for t in terms if isinstance(t, PixelTerm)]
        self.image_terms = [t for t in terms if isinstance(t, ImageTerm)]

    def _tiles(self) -> list[Tile]:
        return list(tiles(self.h, self.w, self.core, self.margin))

    def _core(self, feats: dict[str, torch.Tensor], t: Tile, layer: str) -> tuple[torch.Tensor, Window]:
        return _core(feats[layer], t, self.strides[layer], self.h, self.w)

    def _moments(self, x: torch.Tensor, all_tiles: list[Tile]) -> list[list]:
        """Pass 1, no grad: each statistics term's moments over the whole image."""
        acc: list[list] = [[0.0, None, 0.0] for _ in self.stat_terms]
        if not self.stat_terms:
            return acc
        with torch.no_grad():
            for t in all_tiles:
                self.check()
                feats = self.net(x[..., t.y0:t.y1, t.x0:t.x1])
                for term, a in zip(self.stat_terms, acc):
                    s0, s1, s2 = term.moments(*self._core(feats, t, term.layer))
                    a[0] = a[0] + s0
                    a[1] = s1 if a[1] is None else a[1] + s1
                    a[2] = a[2] + s2
        return acc

    def value_and_grad(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Objective at x (1, 3, H, W) and its gradient."""
        all_tiles = self._tiles()
        by_group: dict[str, torch.Tensor] = {}

        def add(group: str, v: torch.Tensor) -> None:
            by_group[group] = by_group[group] + v if group in by_group else v

        # Each statistics term's value, and its gradient with respect to the moments,
        # which gives every position's: d/df_p = w_p ((G + G^T) f_p + g1) for
        # G = dL/ds2, g1 = dL/ds1 (s2 = sum w f f^T, s1 = sum w f, w = T^2).
        coefs = []
        for term, (s0, s1, s2) in zip(self.stat_terms, self._moments(x, all_tiles)):
            leaves = [s2.detach().requires_grad_(True)]
            if s1 is not None:
                leaves.append(s1.detach().requires_grad_(True))
            with torch.enable_grad():
                v = term.value(s0, leaves[1] if s1 is not None else None, leaves[0])
                grads = torch.autograd.grad(v, leaves)
            add(term.group, v.detach())
            coefs.append((grads[0] + grads[0].T, grads[1] if s1 is not None else None))

        # Pass 2: exact gradients through each tile.
        grad = torch.zeros_like(x)
        if self.stat_terms or self.pixel_terms:
            for t in all_tiles:
                self.check()
                xt = x[..., t.y0:t.y1, t.x0:t.x1].detach().requires_grad_(True)
                feats = self.net(xt)
                surrogate = xt.new_zeros(())
                for term, (m2, g1) in zip(self.stat_terms, coefs):
                    phi, guide = term.guided(*self._core(feats, t, term.layer))
                    surrogate = surrogate + (phi * (m2 @ phi.detach())).sum()
                    if g1 is not None:
                        s1 = phi.sum(1) if guide is None else phi @ guide
                        surrogate = surrogate + (g1 * s1).sum()
                for term in self.pixel_terms:
                    v = term.partial(*self._core(feats, t, term.layer))
                    add(term.group, v.detach())
                    surrogate = surrogate + v
                surrogate.backward()
                assert xt.grad is not None
                grad[..., t.y0:t.y1, t.x0:t.x1] += xt.grad
                del feats, surrogate, xt
        if self.image_terms:
            xg = x.detach().requires_grad_(True)
            for term in self.image_terms:
                v = term(xg)
                v.backward()
                add(term.group, v.detach())
            assert xg.grad is not None
            grad += xg.grad
        parts = self.stack(by_group, x)
        self.record(parts)
        return parts[-1], grad
