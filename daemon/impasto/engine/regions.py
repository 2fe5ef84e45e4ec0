"""Region guides: where each masked style applies, at each scale and each layer.

Gatys et al. 2017 (spatial control) give each region a guidance channel T_r, brought to
each style layer's resolution; the region's Gram is taken over F o T_r (losses.py).
Here the guides come from the artist's masks (greyscale, soft edges allowed):
  - masks that overlap are shared out: where they sum above 1, each is divided by the
    sum, so no pixel counts more than once;
  - pixels no mask covers fully belong, by what is left (1 - the sum), to the unmasked
    styles' blend, or to content and TV alone when every style has a mask;
  - a guide goes to a layer's resolution by area averaging (the paper's "simple"
    method; its eroded variant, only neurons whose receptive field lies inside the
    region, would leave thin regions nothing at deep layers).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from impasto.engine.tensors import pad_to

# A guide whose sum at a layer is below this holds no pixels there: its term
# is left out rather than divided by zero (a region thinner than the layer's stride).
EMPTY = 1e-6


def scale_guides(masks: list[Image.Image], w: int, h: int, min_side: int,
                 rest: bool) -> tuple[list[torch.Tensor], torch.Tensor | None]:
    """Each mask as a (1, 1, H, W) guide at a scale's size (padded as the content is),
    and the guide of what they leave (None unless `rest`)."""
    guides = [pad_to(_grey(m, w, h), min_side)[0] for m in masks]
    total = torch.stack(guides).sum(0)
    over = total.clamp_min(1.0)
    guides = [g / over for g in guides]
    left = (1.0 - total).clamp(0.0, 1.0) if rest else None
    return guides, left


def _grey(mask: Image.Image, w: int, h: int) -> torch.Tensor:
    """The mask at w x h as (1, 1, h, w) float64 in [0, 1]: 8 and 16 bit alike."""
    if mask.mode.startswith("I"):
        arr = np.asarray(mask, dtype=np.float32) / 65535.0
    elif mask.mode == "F":
        arr = np.asarray(mask, dtype=np.float32)
    else:
        arr = np.asarray(mask.convert("L"), dtype=np.float32) / 255.0
    img = Image.fromarray(np.clip(arr, 0.0, 1.0).astype(np.float32), "F")
    if img.size != (w, h):
        img = img.resize((w, h), Image.Resampling.BILINEAR)
    out = np.clip(np.asarray(img, dtype=np.float64), 0.0, 1.0)
    return torch.from_numpy(out.copy()).view(1, 1, h, w)


def layer_guide(guide: torch.Tensor, size: tuple[int, int], like: torch.Tensor) -> torch.Tensor | None:
    """The guide at a layer's resolution, or None where it holds no pixels there."""
    g = guide if tuple(guide.shape[-2:]) == size else F.interpolate(guide, size=size, mode="area")
    if float(g.sum()) < EMPTY:
        return None
    # The square root: losses.py weighs positions by T^2 (the paper's F o T), so this
    # weighs them by the mask value itself. Deviation, and why: where soft edges meet,
    # two masks of 0.5 then give a pixel a full share (0.5 + 0.5), where T^2 would give
    # it half (0.25 + 0.25), leave it half stylized, and show the edge as a band.
    return g.sqrt().to(like.device, like.dtype)
