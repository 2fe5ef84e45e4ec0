"""Helpers shared by the benchmarks: test images, timing, the machine's matmul peak."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import numpy as np
import torch
from PIL import Image


def photo_like(w: int, h: int, seed: int = 0) -> Image.Image:
    """A smooth image with edges: gradients, discs and a little noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / max(w, h)
    img = np.stack([xx, yy, 1 - xx * yy], -1)
    for _ in range(6):
        cx, cy, r = rng.random(3) * [1, h / w, 0.25]
        disc = (xx - cx) ** 2 + (yy - cy) ** 2 < r**2
        img[disc] = rng.random(3)
    img += rng.normal(0, 0.02, img.shape)
    return Image.fromarray((img.clip(0, 1) * 255).astype(np.uint8))


def texture(w: int, h: int, seed: int = 1) -> Image.Image:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.zeros((h, w, 3), np.float32)
    for c in range(3):
        for _ in range(4):
            fx, fy, ph = rng.random(3) * [0.3, 0.3, 6.28]
            img[..., c] += np.sin(xx * fx + yy * fy + ph)
    img = (img - img.min()) / (img.max() - img.min())
    return Image.fromarray((img * 255).astype(np.uint8))


def timings(fn: Callable[[], object], repeats: int = 3) -> list[float]:
    """Seconds of each of `repeats` calls."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def median_time(fn: Callable[[], object], repeats: int = 3) -> float:
    return statistics.median(timings(fn, repeats))


def matmul_gflops(n: int = 2048, repeats: int = 10) -> float:
    """fp32 matmul throughput of this machine, measured now (the ceiling for convs).

    The best of several runs after a warm-up: the first runs pay for page faults and
    clock ramp-up, and a peak is what a fraction-of-peak figure needs."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(3):
        a @ b
    best = min(median_time(lambda: a @ b, 1) for _ in range(repeats))
    return 2 * n**3 / best / 1e9


def vgg_gflop(h: int, w: int, last_index: int) -> float:
    """FLOPs of one forward + input-gradient backward through VGG19 up to last_index.

    Convolution forward is 2*Cin*Cout*9*H*W; the backward pass needs only the input
    gradient (the weights are frozen), about the same again.
    """
    from impasto.engine.vgg import make_features

    total, hh, ww = 0.0, h, w
    for i, m in enumerate(make_features()):
        if i > last_index:
            break
        if isinstance(m, torch.nn.Conv2d):
            total += 2 * m.in_channels * m.out_channels * 9 * hh * ww
        elif isinstance(m, torch.nn.MaxPool2d):
            hh, ww = hh // 2, ww // 2
    return 2 * total / 1e9
