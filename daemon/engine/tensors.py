"""Pillow images <-> float tensors, and resizing by long side."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image


def long_side_size(w: int, h: int, long_side: int) -> tuple[int, int]:
    scale = long_side / max(w, h)
    return max(1, round(w * scale)), max(1, round(h * scale))


def resize_long(img: Image.Image, long_side: int) -> Image.Image:
    size = long_side_size(img.width, img.height, long_side)
    if size == img.size:
        return img
    return img.resize(size, Image.Resampling.LANCZOS)


def to_tensor(img: Image.Image) -> torch.Tensor:
    """RGB image -> (3, H, W) float32 in [0, 1]."""
    arr = np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(arr).permute(2, 0, 1).contiguous()


def to_image(t: torch.Tensor) -> Image.Image:
    arr = (t.detach().clamp(0, 1).cpu().permute(1, 2, 0).numpy() * 255.0).round().astype(np.uint8)
    return Image.fromarray(arr, "RGB")


def upscale(x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    """One scale's result as the start of the next: (N, 3, h, w) -> (N, 3, *hw), bicubic,
    clamped (bicubic overshoots at edges)."""
    return F.interpolate(x, size=hw, mode="bicubic", align_corners=False).clamp(0, 1)
