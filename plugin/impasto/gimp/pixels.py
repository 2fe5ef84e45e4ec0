"""Float RGB pixel arithmetic of the GIMP plug-in: HDR layers scaled into the engine's
0-1 range and back, an area cut out of a frame. Standard library only (array): the
plug-in imports its copy beside it, `impasto_pixels.py`."""

from __future__ import annotations

import array


def to_unit_range(rgb: bytes) -> tuple[bytes, float]:
    """(pixels, peak): float RGB bytes divided by their brightest value when that is above
    1 (HDR), else as they are with peak 1.0."""
    values = array.array("f", rgb)
    peak = max(values, default=0.0)
    if not peak > 1.0:  # also for NaN: GEGL gives none, and the daemon refuses them
        return rgb, 1.0
    k = 1.0 / peak
    return array.array("f", [v * k for v in values]).tobytes(), float(peak)


def from_unit_range(rgb: bytes, peak: float) -> bytes:
    if peak == 1.0:
        return rgb
    values = array.array("f", rgb)
    return array.array("f", [v * peak for v in values]).tobytes()


def crop_rgb(rgb: bytes, width: int, box: tuple[int, int, int, int]) -> bytes:
    """Float RGB bytes of the area `box` (x, y, w, h) of an image `width` pixels wide."""
    x, y, w, h = box
    row, start = width * 12, x * 12
    return b"".join(rgb[(y + r) * row + start:(y + r) * row + start + w * 12] for r in range(h))


def peak_of(rgb: bytes) -> float:
    values = array.array("f", rgb)
    return max(values, default=0.0)


def scale_rgb(rgb: bytes, k: float) -> bytes:
    return array.array("f", [v * k for v in array.array("f", rgb)]).tobytes()
