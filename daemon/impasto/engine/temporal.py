"""Frames that hold still where the scene holds still (Ruder, Dosovitskiy & Brox 2016,
"Artistic style transfer for videos").

Each frame after the first starts from the stylized previous frame warped along the
optical flow, and a temporal term pulls it towards that warped frame wherever the flow
can be trusted:

    temporal = w * sum(c * (x - warped)^2) / D

with c = 0 where the forward and backward flows disagree (a disocclusion:
|w~ + w^|^2 > 0.01 (|w~|^2 + |w^|^2) + 0.5) or at motion boundaries
(|grad u^|^2 + |grad v^|^2 > 0.01 |w^|^2 + 0.002), 1 elsewhere; D is the pixel count.

Departures, and why:
  - flow: OpenCV's DIS (Kroeger et al. 2016), not DeepFlow/EpicFlow: no trained
    weights, milliseconds per frame on a CPU;
  - the temporal term is a mean over pixels and channels of [0, 1] values, like the TV
    term, so one weight fits every size; its weight is the artist's `stability` times
    STABILITY, measured below;
  - later frames run one scale at the output size (they start from a frame already
    stylized at that size) for a few evaluations, stopping on the preset's tolerance.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from impasto.engine.losses import ImageTerm

# The temporal weight at stability 1. First chosen on seeded random features
# (benchmarks/video.py, 96 px, 6 frames, draft: raw weights 32 / 200 / 1000 gave temporal
# error 0.27x / 0.17x / 0.11x the independent frames'). On real ImageNet features the
# network is far more sensitive to pixels, and 1000 held nothing still: a real photo
# panned 3 px a frame (tests/engine/test_real_art.py) gave 1.08x the independent
# frames' error at 112 px. 4000 gave 0.19x there (style ratio 0.22-0.35) and 0.06x at
# 192 px; 8000 and 16000 were no stiller at 192 px and unstable at 112 (0.53x, 1.21x,
# the last frames' style lost). With `normal` (50 evaluations a later frame) 4000 leaves
# speckle at 192 px where 1000 did not, while 1000 held nothing at 144 px `normal`: no one
# weight fits every size and preset yet (docs/engine.md, "Quality on real features").
# Ruder et al. used 1e3 against absolute losses.
STABILITY = 4000.0


def _grey(img: Image.Image) -> np.ndarray:
    return np.asarray(img.convert("L"), dtype=np.uint8)


def optical_flow(a: Image.Image, b: Image.Image) -> np.ndarray:
    """Dense flow from frame a to frame b, (H, W, 2) float32 in pixels: a pixel at p in a
    is at p + flow[p] in b."""
    import cv2  # the video extra; imported here so stills never need it

    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    return dis.calc(_grey(a), _grey(b), None)


def sample(image: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """image (H, W, C) sampled at p + flow[p] for each pixel p (bilinear, edges clamped)."""
    import cv2

    h, w = flow.shape[:2]
    xs, ys = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    return cv2.remap(image, xs + flow[..., 0], ys + flow[..., 1], cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_REPLICATE)


def consistency(forward: np.ndarray, backward: np.ndarray) -> np.ndarray:
    """Ruder's mask for frame t, (H, W) in {0, 1}: forward is the flow t-1 -> t, backward
    t -> t-1; 0 at disocclusions and motion boundaries."""
    fw = sample(forward, backward)  # the forward flow, brought to frame t's pixels
    lhs = ((fw + backward) ** 2).sum(-1)
    rhs = 0.01 * ((fw ** 2).sum(-1) + (backward ** 2).sum(-1)) + 0.5
    du = np.gradient(backward[..., 0])
    dv = np.gradient(backward[..., 1])
    grad = du[0] ** 2 + du[1] ** 2 + dv[0] ** 2 + dv[1] ** 2
    boundary = grad > 0.01 * (backward ** 2).sum(-1) + 0.002
    return ((lhs <= rhs) & ~boundary).astype(np.float32)


@dataclass
class Guide:
    """What frame t takes from frame t-1: the stylized previous frame warped to frame t
    (H, W, 3) in [0, 1], and where to trust it (H, W) in {0, 1}; at frame t's size."""

    warped: np.ndarray
    mask: np.ndarray

    @staticmethod
    def between(prev_frame: Image.Image, frame: Image.Image, prev_result: np.ndarray) -> Guide:
        """prev_result: the stylized previous frame, float (H, W, 3) at the frames' size."""
        backward = optical_flow(frame, prev_frame)
        forward = optical_flow(prev_frame, frame)
        warped = sample(np.ascontiguousarray(prev_result, dtype=np.float32), backward)
        return Guide(np.clip(warped, 0.0, 1.0), consistency(forward, backward))

    def at(self, w: int, h: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(1, 3, h, w) warped frame and (1, 1, h, w) mask at a working size."""
        warped = Image.fromarray((self.warped * 255).round().astype(np.uint8))
        if warped.size != (w, h):
            warped = warped.resize((w, h), Image.Resampling.LANCZOS)
        mask = Image.fromarray(self.mask, "F")
        if mask.size != (w, h):
            mask = mask.resize((w, h), Image.Resampling.BILINEAR)
        x = torch.from_numpy(np.asarray(warped, dtype=np.float32) / 255.0).permute(2, 0, 1)
        m = torch.from_numpy(np.asarray(mask, dtype=np.float32).copy())
        return x.unsqueeze(0), m.view(1, 1, h, w)


class TemporalLoss(ImageTerm):
    """w * mean over pixels and channels of c * (x - warped)^2 (see the module's text)."""

    group = "temporal"

    def __init__(self, warped: torch.Tensor, mask: torch.Tensor, weight: float) -> None:
        super().__init__()
        self.register_buffer("warped", warped.detach())
        self.register_buffer("mask", mask.detach())
        self.weight = weight

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.weight * (self.mask * (image - self.warped).pow(2)).mean()
