"""Engine options: one dataclass, validated the same way on both sides of the wire."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from shared.errors import BAD_OPTIONS, ImpastoError

# VGG19's feature layers in order, named as in the papers (block_index).
VGG19_LAYERS: tuple[str, ...] = (
    "conv1_1", "relu1_1", "conv1_2", "relu1_2", "pool1",
    "conv2_1", "relu2_1", "conv2_2", "relu2_2", "pool2",
    "conv3_1", "relu3_1", "conv3_2", "relu3_2", "conv3_3", "relu3_3", "conv3_4", "relu3_4", "pool3",
    "conv4_1", "relu4_1", "conv4_2", "relu4_2", "conv4_3", "relu4_3", "conv4_4", "relu4_4", "pool4",
    "conv5_1", "relu5_1", "conv5_2", "relu5_2", "conv5_3", "relu5_3", "conv5_4", "relu5_4", "pool5",
)

OPTIMIZERS = ("lbfgs", "adam")
INITS = ("content", "noise", "style")
COLOR_MODES = ("luminance", "histogram")
POOLINGS = ("max", "avg")
# The engine's arithmetic on GPUs, an engine (daemon) setting rather than a job's.
PRECISIONS = ("auto", "fp32", "tf32", "bf16")


@dataclass(frozen=True)
class Preset:
    size: int
    # Evaluations per scale, coarsest first; the last entry is the output size. Most
    # evaluations go to small scales, where they are cheap (cost grows with pixels).
    iterations: tuple[int, ...]
    tolerance: float


# draft: 512 px in under a minute on a 2-core CPU (benchmarks/engine.py measures it).
PRESETS: dict[str, Preset] = {
    "draft": Preset(size=512, iterations=(50, 20, 8), tolerance=1e-4),
    "normal": Preset(size=512, iterations=(200, 100, 50), tolerance=1e-5),
    "best": Preset(size=768, iterations=(300, 200, 150, 100), tolerance=0.0),
}

MIN_SCALE_SIZE = 64
MAX_SIZE = 8192


@dataclass
class EngineOptions:
    """Everything that shapes a stylization. None means "take it from the preset"."""

    preset: str = "normal"
    size: int | None = None  # long side of the output, pixels
    iterations: int | None = None  # evaluations at the final scale
    scales: int | None = None  # number of coarse-to-fine scales (1 = single scale)
    # Evaluations per scale, coarsest first; sets scales and iterations at once.
    evaluations: list[int] | None = None
    content_weight: float = 5.0
    style_weight: float = 100.0
    tv_weight: float = 1e-3
    optimizer: str = "lbfgs"
    learning_rate: float = 0.02  # Adam only; pixels are in [0, 1]
    init: str = "content"
    seed: int | None = None
    preserve_colors: str | None = None
    style_scale: float = 1.0
    style_weights: list[float] | None = None  # blend weights, one per style image
    content_layers: list[str] = field(default_factory=lambda: ["relu4_2"])
    style_layers: list[str] = field(
        default_factory=lambda: ["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"]
    )
    style_layer_weights: list[float] | None = None
    pooling: str = "max"
    tolerance: float | None = None  # stop a scale when relative loss change falls below
    match_content_size: bool = False  # resize the result to the content image's size
    # Scales with more pixels than this are evaluated in tiles (daemon/tiled.py): same
    # objective and gradient, a fraction of the memory. None: the engine decides from
    # the device's memory (Engine.tile_threshold).
    tile_pixels: int | None = None
    tile_size: int = 512  # tile core, pixels (a multiple of 16)

    # --- derived -------------------------------------------------------------------
    def resolved_size(self) -> int:
        return self.size if self.size is not None else PRESETS[self.preset].size

    def resolved_tolerance(self) -> float:
        return self.tolerance if self.tolerance is not None else PRESETS[self.preset].tolerance

    def schedule(self) -> list[tuple[int, int]]:
        """(long side, evaluations) per scale, coarsest first."""
        preset = PRESETS[self.preset]
        size = self.resolved_size()
        if self.evaluations is not None:
            sizes = [size]
            while len(sizes) < len(self.evaluations):
                sizes.insert(0, sizes[0] // 2)
            return list(zip(sizes, self.evaluations))
        n = self.scales if self.scales is not None else len(preset.iterations)
        sizes = [size]
        while len(sizes) < n and sizes[0] // 2 >= MIN_SCALE_SIZE:
            sizes.insert(0, sizes[0] // 2)
        iters = list(preset.iterations[-len(sizes):])
        if len(iters) < len(sizes):  # more scales than the preset names: repeat its first
            iters = [preset.iterations[0]] * (len(sizes) - len(iters)) + iters
        if self.iterations is not None:
            iters[-1] = self.iterations
        return list(zip(sizes, iters))

    def total_evaluations(self) -> int:
        return sum(n for _, n in self.schedule())

    # --- wire ----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> EngineOptions:
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise ImpastoError(BAD_OPTIONS, "options must be a JSON object")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ImpastoError(BAD_OPTIONS, f"unknown option(s): {', '.join(unknown)}")
        opts = cls(**data)
        opts.validate()
        return opts

    def validate(self) -> None:  # noqa: C901 - a flat list of checks reads best
        def bad(msg: str) -> ImpastoError:
            return ImpastoError(BAD_OPTIONS, msg)

        def number(name: str, lo: float, hi: float) -> None:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise bad(f"{name} must be a number, got {v!r}")
            if not lo <= v <= hi:
                raise bad(f"{name} must be between {lo:g} and {hi:g}, got {v:g}")

        def integer(name: str, lo: int, hi: int, optional: bool = True) -> None:
            v = getattr(self, name)
            if v is None and optional:
                return
            if isinstance(v, bool) or not isinstance(v, int):
                raise bad(f"{name} must be an integer, got {v!r}")
            if not lo <= v <= hi:
                raise bad(f"{name} must be between {lo} and {hi}, got {v}")

        def choice(name: str, allowed: tuple[str, ...], optional: bool = False) -> None:
            v = getattr(self, name)
            if v is None and optional:
                return
            if v not in allowed:
                raise bad(f"{name} must be one of {', '.join(allowed)}; got {v!r}")

        def layers(name: str) -> None:
            v = getattr(self, name)
            if not isinstance(v, list) or not v or not all(isinstance(x, str) for x in v):
                raise bad(f"{name} must be a non-empty list of VGG19 layer names")
            for layer in v:
                if layer not in VGG19_LAYERS:
                    raise bad(f"{name}: unknown layer {layer!r} (e.g. relu4_2, conv3_1)")

        def weights(name: str, n: int | None) -> None:
            v = getattr(self, name)
            if v is None:
                return
            if not isinstance(v, list) or not all(
                isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)
                and x >= 0 for x in v
            ):
                raise bad(f"{name} must be a list of non-negative numbers")
            if not v or sum(v) <= 0:
                raise bad(f"{name} must have a positive sum")
            if n is not None and len(v) != n:
                raise bad(f"{name} has {len(v)} entries but {n} are needed")

        choice("preset", tuple(PRESETS))
        integer("size", MIN_SCALE_SIZE, MAX_SIZE)
        integer("iterations", 1, 100_000)
        integer("scales", 1, 8)
        if self.evaluations is not None:
            v = self.evaluations
            if (not isinstance(v, list) or not 1 <= len(v) <= 8 or not all(
                    isinstance(x, int) and not isinstance(x, bool) and 1 <= x <= 100_000 for x in v)):
                raise bad("evaluations must be a list of 1 to 8 counts from 1 to 100000")
            if self.resolved_size() >> (len(v) - 1) < 16:
                raise bad(f"{len(v)} scales below {self.resolved_size()} px would go under 16 px")
        integer("seed", 0, 2**63 - 1)
        number("content_weight", 0.0, 1e12)
        number("style_weight", 0.0, 1e12)
        number("tv_weight", 0.0, 1e12)
        number("learning_rate", 1e-6, 10.0)
        number("style_scale", 0.05, 8.0)
        if self.tolerance is not None:
            number("tolerance", 0.0, 1.0)
        choice("optimizer", OPTIMIZERS)
        choice("init", INITS)
        choice("preserve_colors", COLOR_MODES, optional=True)
        choice("pooling", POOLINGS)
        layers("content_layers")
        layers("style_layers")
        weights("style_layer_weights", len(self.style_layers))
        weights("style_weights", None)
        integer("tile_pixels", 64 * 64, 1 << 40)
        integer("tile_size", 32, 4096, optional=False)
        if self.tile_size % 16:
            raise bad(f"tile_size must be a multiple of 16, got {self.tile_size}")
        if not isinstance(self.match_content_size, bool):
            raise bad("match_content_size must be true or false")
