"""Pillow images <-> float tensors, and resizing by long side."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from impasto.imagecodec import FloatImage, long_side_size

__all__ = ["long_side_size"]  # kept here for the engine; it lives with the codecs


def resize_long(img: Image.Image, long_side: int) -> Image.Image:  # or a FloatImage
    size = long_side_size(img.width, img.height, long_side)
    if size == img.size:
        return img
    return img.resize(size, Image.Resampling.LANCZOS)


def to_tensor(img: Image.Image | FloatImage) -> torch.Tensor:
    """RGB image -> (3, H, W) float32 in [0, 1]. Float pixels are clipped to [0, 1], the
    range the network and the optimiser work in, and otherwise kept as they are."""
    if isinstance(img, FloatImage):
        arr = np.clip(img.pixels, 0.0, 1.0)
        return torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1).contiguous()
    arr = np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(arr).permute(2, 0, 1).contiguous()


def to_image(t: torch.Tensor) -> Image.Image:
    arr = (t.detach().clamp(0, 1).cpu().permute(1, 2, 0).numpy() * 255.0).round().astype(np.uint8)
    return Image.fromarray(arr, "RGB")


def upscale(x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    """One scale's result as the start of the next: (N, 3, h, w) -> (N, 3, *hw), bicubic,
    clamped (bicubic overshoots at edges)."""
    return F.interpolate(x, size=hw, mode="bicubic", align_corners=False).clamp(0, 1)


@dataclass(frozen=True)
class Crop:
    """Where the image sits inside its padded version: rows y0:y1, columns x0:x1."""

    y0: int
    y1: int
    x0: int
    x1: int

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return x[..., self.y0:self.y1, self.x0:self.x1]


def pad_to(x: torch.Tensor, min_side: int) -> tuple[torch.Tensor, Crop]:
    """Pad (N, C, H, W) with its edge pixels until both sides are at least min_side.

    VGG19's pooling halves the feature maps at each block; an image thinner than
    2^(blocks) pixels leaves a deep layer with no pixels at all (a 300x30 banner, a 1 px
    line). Padding by replication, optimising, and cropping back keeps the image at its
    own scale, where upscaling would change what the style sees.
    """
    h, w = x.shape[-2:]
    ph, pw = max(0, min_side - h), max(0, min_side - w)
    crop = Crop(ph // 2, ph // 2 + h, pw // 2, pw // 2 + w)
    if not ph and not pw:
        return x, crop
    return F.pad(x, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2), mode="replicate"), crop
