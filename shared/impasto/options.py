"""Engine options: one dataclass whose field metadata is the single source of truth.

Each field carries its help text, range and choices. From them come: validation (once,
when an `EngineOptions` is made), the CLI's flags (impasto.cli.optionflags), the GIMP
dialog's fields (those with `gimp=`: impasto.gimp.dialogfields writes them beside the
plug-in when it is installed or packaged), the watch folders' TOML keys (the field names) and docs/protocol.md's option table
(`python -m impasto.options`, checked by a test).
"""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass, field
from typing import Any

from impasto.errors import BAD_OPTIONS, ImpastoError

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
STYLE_LOSSES = ("gram", "wasserstein")
# The engine's arithmetic on GPUs: a daemon setting, not a job's.
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
MAX_EVALUATIONS = 100_000
MAX_SCALES = 8
MAX_STYLE_SIDE = 4096  # the style image after style_scale: at most an input image's size


@dataclass(frozen=True)
class DialogField:
    """How the GIMP dialog offers an option, in an artist's words. The field's range,
    choices and default come from the option itself; `impasto gimp install` and the
    plug-in archive turn these into the dialog's fields (impasto.gimp.dialogfields).

    label/help: what the dialog shows (help is the tooltip; `{draft}`, `{normal}` and
    `{best}` stand for those presets' sizes). scale: the dialog's value is the option's
    times this (strength in percent). unset: the dialog's value that means "not given"
    (the option's None). most: the dialog's own upper end where it is lower than the
    option's. labels: the words for each choice, the unset one included. more: shown
    under "More settings" rather than with the common case."""

    label: str
    help: str
    scale: float = 1.0
    unset: Any = None
    most: float | None = None
    labels: tuple[tuple[str, str], ...] = ()
    more: bool = False


def option(default: Any = None, help: str = "", *, lo: float | None = None,  # noqa: A002
           hi: float | None = None, choices: tuple[str, ...] | None = None,
           max_len: int | None = None, expert: bool = False,
           gimp: DialogField | None = None) -> Any:
    """A field with the metadata everything else is generated from.

    lo/hi: inclusive range (of each element, for lists); choices: allowed strings (of
    each element, for lists); expert: kept out of short help lists; gimp: how the GIMP
    dialog offers it (absent: not in the dialog).
    """
    meta = {"help": help, "lo": lo, "hi": hi, "choices": choices, "max_len": max_len,
            "expert": expert, "gimp": gimp}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class EngineOptions:
    """Everything that shapes one stylization. Always valid: checked when made.

    None means "from the preset" (size, iterations, scales, tolerance) or "none"
    (seed: random; preserve_colors: off; style_layer_weights: equal).
    """

    preset: str = option("normal", "size, scales and iterations in one word", choices=tuple(PRESETS),
                         gimp=DialogField(
                             "Quality", "Draft is quick, for trying ideas; Best takes longest "
                             "and paints the finest detail; Normal is in between",
                             labels=(("draft", "Draft (fast)"), ("normal", "Normal"),
                                     ("best", "Best (slow)"))))
    size: int | None = option(None, "long side of the output in pixels (default: the preset's)",
                              lo=MIN_SCALE_SIZE, hi=MAX_SIZE, gimp=DialogField(
                                  "Working size (px, 0 = automatic)",
                                  "How large the picture is painted, in pixels along its "
                                  "longer side: larger shows finer brushwork but takes longer; "
                                  "the result always has the layer's own size. 0 = the "
                                  "layer's own size, but at most {normal} px for Draft and "
                                  "Normal and {best} px for Best.", unset=0, more=True,
                                  # Larger needs a style_scale under 1, which the dialog
                                  # does not offer (MAX_STYLE_SIDE).
                                  most=MAX_STYLE_SIDE))
    iterations: int | None = option(None, "evaluations at the final scale (default: the preset's)",
                                    lo=1, hi=MAX_EVALUATIONS)
    scales: int | None = option(None, "coarse-to-fine scales, each half the size of the next "
                                "(1 = single scale; default: the preset's)", lo=1, hi=MAX_SCALES)
    evaluations: list[int] | None = option(
        None, "evaluations per scale, coarsest first (sets scales and iterations at once), "
        "e.g. 60,30,10", lo=1, hi=MAX_EVALUATIONS, max_len=MAX_SCALES, expert=True)
    strength: float = option(1.0, "how strongly the style shows: 1 is impasto's default, 2 twice "
                             "that, 0.5 half; the same on every weights file", lo=0.0, hi=100.0,
                             # The dialog stops at 1000%, far past where results saturate.
                             gimp=DialogField("Style strength (%)",
                                              "How strongly the style shows: 100% is the usual "
                                              "amount, 50% half as much, 200% twice as much",
                                              scale=100.0, most=1000.0))
    content_weight: float = option(1.0, "weight of the content loss (each loss is relative to "
                                   "its target, docs/engine.md)", lo=0.0, hi=1e12, expert=True)
    style_weight: float = option(1.0, "weight of each style layer's loss, before strength "
                                 "multiplies it", lo=0.0, hi=1e12, expert=True)
    tv_weight: float = option(1e-3, "weight of the total-variation smoothing loss",
                              lo=0.0, hi=1e12, expert=True)
    optimizer: str = option("lbfgs", "L-BFGS (history 100) or Adam", choices=OPTIMIZERS,
                            expert=True)
    learning_rate: float = option(0.02, "Adam's step size (pixels are in [0, 1])",
                                  lo=1e-6, hi=10.0, expert=True)
    init: str = option("content", "starting image: the content, noise, or the style's colours",
                       choices=INITS, expert=True)
    seed: int | None = option(None, "random seed; the same seed gives the same result on a CPU "
                              "(default: random, reported with the result)", lo=0, hi=2**63 - 1,
                              # GIMP's whole-number arguments are 32-bit.
                              gimp=DialogField(
                                  "Variation", "Each number gives a different variation of the "
                                  "same look, and the same number the same picture again; -1 "
                                  "picks one at random (the new layer's name says which)",
                                  unset=-1, most=2**31 - 1, more=True))
    preserve_colors: str | None = option(None, "keep the content's colours: luminance-only "
                                         "transfer or histogram matching (Gatys et al. 2016)",
                                         choices=COLOR_MODES, gimp=DialogField(
                                             "Colours", "Take the style's colours, or keep this "
                                             "layer's own colours and take only the style's "
                                             "brushwork and texture", unset="none",
                                             labels=(("none", "Take the style's colours"),
                                                     ("luminance", "Keep this layer's colours "
                                                      "(style's light and shade)"),
                                                     ("histogram", "Recolour the style with "
                                                      "this layer's colours"))))
    style_scale: float = option(1.0, "style image size relative to the output", lo=0.05, hi=8.0)
    content_layers: list[str] = option(["relu4_2"], "VGG19 layers for the content loss",
                                       choices=VGG19_LAYERS, max_len=len(VGG19_LAYERS),
                                       expert=True)
    style_layers: list[str] = option(["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"],
                                     "VGG19 layers for the style loss", choices=VGG19_LAYERS,
                                     max_len=len(VGG19_LAYERS), expert=True)
    style_layer_weights: list[float] | None = option(
        None, "weight of each style layer, in --style-layers order (default: equal)",
        lo=0.0, hi=1e12, max_len=len(VGG19_LAYERS), expert=True)
    stability: float = option(1.0, "video: how firmly each frame holds to the previous one "
                              "where the scene holds still: 1 is impasto's default, 2 twice "
                              "that, 0 frames on their own", lo=0.0, hi=100.0, expert=True)
    style_loss: str = option("gram", "how style is compared: Gram matrices (Gatys et al.) or "
                             "the features' mean and covariance (Wasserstein-2, as crowsonkb's "
                             "style-transfer-pytorch)", choices=STYLE_LOSSES, expert=True)
    pooling: str = option("max", "VGG19's pooling: max (neural-style) or avg (the paper)",
                          choices=POOLINGS, expert=True)
    tolerance: float | None = option(None, "stop a scale once the loss changes by less than "
                                     "this fraction per evaluation (0 = never; default: the "
                                     "preset's)", lo=0.0, hi=1.0, expert=True)
    match_content_size: bool = option(False, "resize the result to the content image's size",
                                      expert=True)

    def __post_init__(self) -> None:
        hints = type_hints()
        for f in dataclasses.fields(self):
            _check_field(f, hints[f.name], getattr(self, f.name))
        if self.style_layer_weights is not None and (
                len(self.style_layer_weights) != len(self.style_layers)):
            raise _bad(f"style_layer_weights has {len(self.style_layer_weights)} entries for "
                       f"{len(self.style_layers)} style_layers")
        self._check_schedule()
        if self.resolved_size() * self.style_scale > MAX_STYLE_SIDE:
            raise _bad(f"style_scale {self.style_scale:g} at size {self.resolved_size()} would make "
                       f"the style image {self.resolved_size() * self.style_scale:.0f} px long; at "
                       f"most {MAX_STYLE_SIDE}")

    def _check_schedule(self) -> None:
        """Refuse a schedule that cannot run as asked, rather than change it silently."""
        size, possible = self.resolved_size(), self.max_scales()
        why = (f"each scale halves the long side and the coarsest must be at least "
               f"{MIN_SCALE_SIZE} px, so size {size} allows at most {possible}")
        if self.scales is not None and self.scales > possible:
            raise _bad(f"scales {self.scales} cannot run: {why}")
        if self.evaluations is not None:
            n = len(self.evaluations)
            if n > possible:
                raise _bad(f"evaluations for {n} scales cannot run: {why}")
            if self.scales is not None and self.scales != n:
                raise _bad(f"scales {self.scales} and {n} evaluations disagree; give one of them")
            if self.iterations is not None and self.iterations != self.evaluations[-1]:
                raise _bad(f"iterations {self.iterations} and evaluations (last {self.evaluations[-1]})"
                           " disagree; give one of them")

    def max_scales(self) -> int:
        """How many coarse-to-fine scales the output size allows."""
        n, s = 1, self.resolved_size()
        while s // 2 >= MIN_SCALE_SIZE:
            n, s = n + 1, s // 2
        return n

    # --- derived -------------------------------------------------------------------
    def resolved_size(self) -> int:
        return self.size if self.size is not None else PRESETS[self.preset].size

    def resolved_tolerance(self) -> float:
        return self.tolerance if self.tolerance is not None else PRESETS[self.preset].tolerance

    def schedule(self) -> list[tuple[int, int]]:
        """(long side, evaluations) per scale, coarsest first. What was asked, always:
        an explicit `scales` or `evaluations` that cannot run is refused when the options
        are made; only the preset's own number of scales shrinks to fit a small size."""
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
        if self.scales is None and len(preset.iterations) > 1 and len(sizes) == 1:
            # Too small for any coarse scale (under 128 px): the one scale runs what the
            # preset's second-finest scale does. Its finest count alone only refines a
            # style laid down before it: a 112 px draft ran 8 evaluations and came out
            # barely stylized on real ImageNet features (style ratio 0.43-0.82, where 1 is
            # the photo); with 20, 0.21-0.26, keeping more of the photo's structure than
            # 50 (docs/engine.md, "Quality on real features").
            iters[0] = max(iters[0], preset.iterations[-2])
        if len(iters) < len(sizes):  # more scales than the preset names: repeat its first
            iters = [preset.iterations[0]] * (len(sizes) - len(iters)) + iters
        if self.iterations is not None:
            iters[-1] = self.iterations
        return list(zip(sizes, iters))

    def total_evaluations(self) -> int:
        return sum(n for _, n in self.schedule())

    def replace(self, **changes: Any) -> EngineOptions:
        return dataclasses.replace(self, **changes)

    # --- wire ----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def changed(self) -> dict[str, Any]:
        """Only the fields that differ from the defaults: what a client needs to send."""
        default = EngineOptions()
        return {k: v for k, v in self.to_dict().items() if getattr(default, k) != v}

    @classmethod
    def from_dict(cls, data: Any) -> EngineOptions:
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise _bad("options must be a JSON object")
        unknown = sorted(set(data) - set(FIELDS))
        if unknown:
            hint = ""
            if "style_weights" in unknown:
                hint = " (blend weights go with each style: its \"weight\")"
            raise _bad(f"unknown option(s): {', '.join(map(str, unknown))}{hint}")
        return cls(**data)


FIELDS: dict[str, dataclasses.Field] = {f.name: f for f in dataclasses.fields(EngineOptions)}


def type_hints() -> dict[str, Any]:
    global _HINTS
    if _HINTS is None:
        _HINTS = typing.get_type_hints(EngineOptions)
    return _HINTS


_HINTS: dict[str, Any] | None = None


def _bad(message: str) -> ImpastoError:
    return ImpastoError(BAD_OPTIONS, message)


def base_type(hint: Any) -> tuple[Any, bool, bool]:
    """(element type, is a list, may be None) of a field's type hint."""
    optional = False
    args = typing.get_args(hint)
    if type(None) in args:
        optional = True
        hint = next(a for a in args if a is not type(None))
    if typing.get_origin(hint) is list:
        return typing.get_args(hint)[0], True, optional
    return hint, False, optional


def _check_field(f: dataclasses.Field, hint: Any, value: Any) -> None:
    kind, is_list, optional = base_type(hint)
    if value is None:
        if optional:
            return
        raise _bad(f"{f.name} must be given")
    if is_list:
        if not isinstance(value, list) or not value:
            raise _bad(f"{f.name} must be a non-empty list")
        if f.metadata["max_len"] is not None and len(value) > f.metadata["max_len"]:
            raise _bad(f"{f.name} has {len(value)} entries; at most {f.metadata['max_len']}")
        for i, v in enumerate(value):
            _check_value(f, kind, v, f"{f.name}[{i}]")
        if kind is str and len(set(value)) != len(value):
            raise _bad(f"{f.name} names a layer twice")
        if kind is float and sum(value) <= 0:
            raise _bad(f"{f.name} must have a positive sum")
        return
    _check_value(f, kind, value, f.name)


def _check_value(f: dataclasses.Field, kind: Any, v: Any, name: str) -> None:
    m = f.metadata
    if kind is bool:
        if not isinstance(v, bool):
            raise _bad(f"{name} must be true or false, got {v!r}")
        return
    if kind is str:
        if not isinstance(v, str) or (m["choices"] and v not in m["choices"]):
            if m["choices"] is VGG19_LAYERS:
                raise _bad(f"{name}: unknown layer {v!r} (VGG19 layer names: relu4_2, conv3_1, ...)")
            raise _bad(f"{name} must be one of {', '.join(m['choices'])}; got {v!r}")
        return
    if kind is int and (isinstance(v, bool) or not isinstance(v, int)):
        raise _bad(f"{name} must be an integer, got {v!r}")
    if kind is float and (isinstance(v, bool) or not isinstance(v, (int, float))
                          or not math.isfinite(v)):
        raise _bad(f"{name} must be a number, got {v!r}")
    lo, hi = m["lo"], m["hi"]
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        if kind is int:
            raise _bad(f"{name} must be between {int(lo)} and {int(hi)}, got {v}")
        raise _bad(f"{name} must be between {lo:g} and {hi:g}, got {v!r}")  # every digit


# --- documentation ---------------------------------------------------------------------
def describe_range(f: dataclasses.Field) -> str:
    kind, is_list, _ = base_type(type_hints()[f.name])
    m = f.metadata
    if m["choices"] and len(m["choices"]) <= 8:
        what = " \\| ".join(m["choices"])
    elif m["choices"]:
        what = "VGG19 layer names"
    elif kind is bool:
        what = "true \\| false"
    elif m["lo"] is not None and kind is int:
        what = f"int {int(m['lo'])}..{int(m['hi'])}"
    elif m["lo"] is not None:
        what = f"number {m['lo']:g}..{m['hi']:g}"
    else:
        what = kind.__name__
    return f"list of {what}" if is_list else what


def markdown_table() -> str:
    """docs/protocol.md's option table, generated from the fields."""
    rows = ["| option | values | default | meaning |", "|---|---|---|---|"]
    for name, f in FIELDS.items():
        default = f.default if f.default_factory is dataclasses.MISSING else f.default_factory()
        shown = "preset" if default is None and name in ("size", "iterations", "scales",
                                                         "tolerance") else default
        shown = ",".join(map(str, shown)) if isinstance(shown, list) else (
            "null" if shown is None else str(shown).lower() if isinstance(shown, bool) else shown)
        rows.append(f"| `{name}` | {describe_range(f)} | {shown} | {f.metadata['help']} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(markdown_table())
