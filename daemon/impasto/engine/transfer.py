"""The Gatys et al. engine: optimise the image itself against VGG19 feature losses.

Coarse to fine: each scale's result, upsampled, starts the next scale, so most
evaluations happen at small sizes, where they are cheap.
"""

from __future__ import annotations

import copy
import hashlib
import logging
import math
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from impasto.engine import color
from impasto.engine.device import Device, detect
from impasto.engine.lbfgs import LBFGS
from impasto.engine.losses import (
    ContentLoss,
    MeanCovLoss,
    StyleLoss,
    Term,
    TVLoss,
    mean_key,
    style_targets,
)
from impasto.engine.objective import Objective, graphed
from impasto.engine.regions import layer_guide, scale_guides
from impasto.engine.temporal import STABILITY, Guide, TemporalLoss
from impasto.engine.tensors import (
    Crop,
    long_side_size,
    pad_to,
    resize_long,
    to_image,
    to_tensor,
    upscale,
)
from impasto.engine.tiled import TiledObjective, assemble, feature_sizes, tiled_targets
from impasto.engine.vgg import VGGFeatures
from impasto.engine.weights import Weights
from impasto.errors import BAD_OPTIONS, OUT_OF_MEMORY, ImpastoError, JobCancelled
from impasto.options import PRECISIONS, EngineOptions

log = logging.getLogger(__name__)


@dataclass
class Step:
    """One evaluation of the objective; the progress callback gets one per evaluation."""

    scale: int  # 0-based
    scales: int
    size: int  # long side at this scale
    step: int  # evaluations done, over all scales
    total: int
    losses: dict[str, float]
    elapsed_s: float
    # The image as it stands, (3, H, W) in [0, 1] on the CPU, long side at most the
    # argument (None: this scale's size); with luminance colour preservation, in the
    # content's colours. Costs a copy and a resize: call it only when a preview is due.
    snapshot: Callable[[int | None], torch.Tensor] | None = None


class _Finish(Exception):
    """Raised inside an evaluation when the caller asked to stop and keep the image."""


@dataclass
class ScaleRun:
    """One scale as it ran: its size, and evaluations done (fewer than planned when the
    loss settled first, under the preset's tolerance)."""

    size: int  # long side
    width: int
    height: int
    evaluations: int
    tiled: bool = False


@dataclass
class Outcome:
    image: Image.Image
    losses: dict[str, float]
    seed: int
    evaluations: int
    elapsed_s: float
    history: list[float] = field(default_factory=list)  # total loss per evaluation
    tiled_scales: list[int] = field(default_factory=list)  # scales evaluated in tiles
    schedule: list[ScaleRun] = field(default_factory=list)  # what ran, scale by scale
    # The result's RGB as float32 (H, W, 3) in [0, 1], before rounding to 8 bits: what
    # an editor working at 16 or 32 bits gets back.
    pixels: np.ndarray | None = None
    finished_early: bool = False  # stopped on request, keeping the image as it stood


class TargetCache(Protocol):
    def get(self, key: str) -> dict[str, torch.Tensor] | None: ...
    def put(self, key: str, value: dict[str, torch.Tensor]) -> None: ...


@dataclass
class StyleInput:
    """A style image and its blend weight; with a mask (greyscale over the content,
    white where the style goes), the style paints only its region, and its weight
    scales that region's strength (1: as an unmasked style)."""

    image: Image.Image
    weight: float = 1.0
    mask: Image.Image | None = None


def pick_device(name: str = "auto") -> torch.device:
    """The device named (checked: it must exist here), or the best one for "auto"."""
    return detect(name).torch_device


class Engine:
    """Holds the network on its device; `run` is one stylization.

    device: a name ("auto", "cpu", "cuda:1", "xpu", "mps") or a Device (device.py,
    which owns every per-device choice below).
    precision: fp32; tf32 (fp32 storage, TF32 matrix units on Ampere and later GPUs);
    bf16 (convolutions in bf16 as autocast runs them, Grams and losses in fp32). "auto" is
    device.py's rule: tf32 on CUDA, bf16 on CPUs with bf16 units, else fp32.
    cuda_graphs: replay each scale's evaluation as one CUDA graph.
    clamp: keep pixels in [0, 1] before each evaluation (projected L-BFGS, as the
    PyTorch tutorial does; neural-style clamps only the output). Unclamped, L-BFGS
    spends its steps on values the saved image cannot hold: at 128 px the clamped
    output of 100 evaluations scored 25% worse than its own last objective; clamped,
    the two agree to 0.4% (benchmarks/engine.py, time to target).
    """

    def __init__(self, weights: Weights, device: str | torch.device | Device = "auto",
                 precision: str = "auto", channels_last: bool | None = None,
                 cuda_graphs: bool = True, clamp: bool = True, tile_pixels: int | None = None,
                 tile_size: int = 512, dtype: torch.dtype = torch.float32) -> None:
        if precision not in PRECISIONS:
            raise ImpastoError(BAD_OPTIONS, f"precision must be one of {', '.join(PRECISIONS)}")
        if isinstance(device, Device):
            self.dev = device
        else:
            if precision == "auto" and dtype != torch.float32:
                precision = "fp32"  # float64 test runs compare exactly: no autocast
            self.dev = Device.select(device, precision)
        self.device = self.dev.torch
        self.weights = weights
        self.precision = self.dev.precision
        self.channels_last = self.dev.channels_last if channels_last is None else channels_last
        self.cuda_graphs = cuda_graphs and self.dev.cuda_graphs
        self.clamp = clamp
        # Daemon settings, not job options: they trade the host's memory for speed.
        # tile_pixels None: decided from the device's memory (tile_threshold).
        if tile_size < 32 or tile_size % 16:
            raise ImpastoError(BAD_OPTIONS, f"tile size must be a multiple of 16 from 32, not {tile_size}")
        if tile_pixels is not None and tile_pixels < 64 * 64:
            raise ImpastoError(BAD_OPTIONS, f"tile pixels must be at least {64 * 64}, not {tile_pixels}")
        self.tile_pixels = tile_pixels
        self._should_stop: Callable[[], bool] | None = None
        self.tile_size = tile_size
        fmt = torch.channels_last if self.channels_last else torch.contiguous_format
        # float64 is for tests that compare runs exactly (no user-facing option): float32
        # rounding, carried forward by L-BFGS, would hide what they compare.
        self.dtype = dtype
        self.features = weights.features.to(self.device, dtype, memory_format=fmt).eval()
        self.features.requires_grad_(False)
        # bf16: the layers the objective runs, converted once here rather than by
        # autocast at every evaluation (vgg.py says why). A copy: `features` stays the
        # weights as loaded, for the float32 baselines the benchmarks run beside it.
        conv = self.dev.conv_dtype
        self.conv_features = (copy.deepcopy(self.features).to(conv) if conv is not None
                              else self.features)
        self.dev.configure()

    def device_info(self) -> dict[str, Any]:
        """The device, what runs on it and why, and its memory (for status)."""
        return self.dev.info()

    def run(
        self,
        content: Image.Image,
        styles: list[StyleInput],
        opts: EngineOptions,
        on_step: Callable[[Step], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
        cache: TargetCache | None = None,
        should_finish: Callable[[], bool] | None = None,
        temporal: Guide | None = None,
    ) -> Outcome:
        """should_stop: cancel (JobCancelled); should_finish: stop and keep the image as
        it stands, brought to the output size. temporal: a video frame's guide from the
        previous frame (temporal.py): the run starts from it and holds to it."""
        try:
            return self._run(content, styles, opts, on_step, should_stop, cache, should_finish,
                             temporal)
        except (torch.OutOfMemoryError, RuntimeError, MemoryError) as e:
            if self.dev.is_oom(e):
                self.dev.recover()
                raise ImpastoError(
                    OUT_OF_MEMORY,
                    f"out of memory on {self.device} at {opts.resolved_size()} px; "
                    "use a smaller --size or the draft preset",
                ) from None
            raise
        finally:
            self._should_stop = None  # a later evaluate() must not see this job's stop

    def _check_stop(self) -> None:
        """Raise JobCancelled if the running job was asked to stop. Called between every
        piece of work that can take long: evaluations, style targets, tiles, scales."""
        if self._should_stop is not None and self._should_stop():
            raise JobCancelled()

    def _run(self, content, styles, opts, on_step, should_stop, cache, should_finish=None,
             temporal=None) -> Outcome:
        self._should_stop = should_stop
        t0 = time.perf_counter()
        seed = opts.seed if opts.seed is not None else secrets.randbelow(2**31)
        gen = torch.Generator().manual_seed(seed)
        alpha = content.getchannel("A") if content.mode == "RGBA" else None
        content_rgb = content.convert("RGB")
        schedule = opts.schedule()
        net = self._network(opts)

        image: torch.Tensor | None = None
        finished_early = False
        done = total = 0
        history: list[float] = []
        losses: dict[str, float] = {}
        tiled_scales: list[int] = []
        ran: list[ScaleRun] = []
        for k, (size, n_evals) in enumerate(schedule):
            self._check_stop()
            w, h = long_side_size(content_rgb.width, content_rgb.height, size)
            tiled = w * h > self.tile_threshold()
            if tiled:
                tiled_scales.append(k)
            objective, c, style_ts, blend, crop = self._scale_objective(
                net, content_rgb, styles, opts, size, cache, tiled, temporal)
            if image is None and temporal is not None:
                x = self._temporal_inputs(temporal, w, h, net.min_side, opts)[0]
            elif image is None:
                x = self._init(opts.init, c, style_ts, blend, gen)
            else:
                x, _ = pad_to(upscale(image, (h, w)), net.min_side)
            x = x.contiguous().requires_grad_(True)
            # step counts evaluations that ran; total is that plus what is still planned,
            # so a scale that settles early shortens the total instead of skipping steps.
            total = done + sum(n for _, n in schedule[k:])

            snap = self._snapshotter(x, crop, content_rgb, opts)

            def report(losses_now: dict[str, float], evals: int, k: int = k, size: int = size,
                       base: int = done, total: int = total,
                       snap: Callable[[int | None], torch.Tensor] = snap) -> None:
                history.append(losses_now["total"])
                if on_step is not None:
                    on_step(Step(k, len(schedule), size, base + evals, total,
                                 dict(losses_now), time.perf_counter() - t0, snap))

            losses, finished = self._optimize(x, objective, opts, n_evals, report, should_stop,
                                              should_finish)
            ran.append(ScaleRun(size, w, h, objective.evals, tiled))
            done += objective.evals
            image = crop(x.detach())
            if finished:
                finished_early = True
                if k < len(schedule) - 1:  # bring it to the output scale's size
                    fw, fh = long_side_size(content_rgb.width, content_rgb.height, schedule[-1][0])
                    image = upscale(image, (fh, fw))
                break
        total = done if finished_early else total
        if on_step is not None and done < total:  # the last scale settled early: say so
            on_step(Step(len(schedule) - 1, len(schedule), schedule[-1][0], done, done,
                         dict(losses), time.perf_counter() - t0))

        assert image is not None
        out = image[0].clamp(0, 1).cpu()
        if opts.preserve_colors == "luminance":
            size_now = (out.shape[2], out.shape[1])
            out = color.recombine(out, to_tensor(content_rgb.resize(size_now,
                                                                    Image.Resampling.LANCZOS)))
        result = to_image(out)
        if opts.match_content_size and result.size != content.size:
            result = result.resize(content.size, Image.Resampling.LANCZOS)
            # The float result resized alike (bicubic with antialiasing: Lanczos is not
            # in torch), clipped as the 8-bit one is.
            out = F.interpolate(out.unsqueeze(0), size=(content.height, content.width),
                                mode="bicubic", align_corners=False,
                                antialias=True)[0].clamp(0, 1)
        pixels = out.permute(1, 2, 0).contiguous().numpy().astype(np.float32)
        if alpha is not None:
            result = result.convert("RGBA")
            result.putalpha(alpha if alpha.size == result.size else alpha.resize(result.size))
        return Outcome(result, losses, seed, len(history), time.perf_counter() - t0, history,
                       tiled_scales, ran, pixels, finished_early)

    def _snapshotter(self, x: torch.Tensor, crop: Crop, content_rgb: Image.Image,
                     opts: EngineOptions) -> Callable[[int | None], torch.Tensor]:
        """What Step.snapshot calls: a small copy of the image being optimised."""
        colours: dict[tuple[int, int], torch.Tensor] = {}

        def snapshot(max_side: int | None = None) -> torch.Tensor:
            with torch.no_grad():
                img = crop(x.detach()).float().clamp(0, 1)
                h, w = img.shape[-2:]
                if max_side is not None and max(h, w) > max_side:
                    nw, nh = long_side_size(w, h, max_side)
                    img = F.interpolate(img, size=(nh, nw), mode="bilinear", align_corners=False,
                                        antialias=True).clamp(0, 1)
                img = img[0].cpu()
                if opts.preserve_colors == "luminance":
                    key = (img.shape[2], img.shape[1])
                    if key not in colours:
                        colours.clear()
                        colours[key] = to_tensor(content_rgb.resize(key, Image.Resampling.BILINEAR))
                    img = color.recombine(img, colours[key])
                return img

        return snapshot

    def tile_threshold(self) -> int:
        """Pixels above which a scale is evaluated in tiles: the engine's setting, else
        what the device's memory allows (Device.tile_threshold says how)."""
        if self.tile_pixels is not None:
            return self.tile_pixels
        return self.dev.tile_threshold()

    def evaluate(self, image: Image.Image, content: Image.Image, styles: list[StyleInput],
                 opts: EngineOptions) -> dict[str, float]:
        """The objective of `image` at the output scale (benchmarks and tests compare
        results by it). The image is resized to the output size first."""
        net = self._network(opts)
        size = opts.resolved_size()
        objective, _, _, _, crop = self._scale_objective(net, content.convert("RGB"), styles,
                                                         opts, size, None)
        x = to_tensor(image.convert("RGB").resize((crop.x1 - crop.x0, crop.y1 - crop.y0),
                                                  Image.Resampling.LANCZOS))
        if opts.preserve_colors == "luminance":
            x = color.luminance(x)
        x, _ = pad_to(x.to(self.device, self.dtype).unsqueeze(0), net.min_side)
        with torch.no_grad():
            objective(x)
        return objective.last

    def _network(self, opts: EngineOptions) -> VGGFeatures:
        layers = list(dict.fromkeys(opts.content_layers + opts.style_layers))
        net = VGGFeatures(self.conv_features, self.weights.flavour, layers, opts.pooling,
                          self.dev.conv_dtype, self.channels_last)
        # Only the preprocessing's constants follow the image's dtype: the layers are
        # already where and as they run.
        net.preprocess.to(self.device, self.dtype)
        return net

    def _scale_objective(self, net: VGGFeatures, content_rgb: Image.Image,
                         styles: list[StyleInput], opts: EngineOptions, size: int,
                         cache: TargetCache | None, tiled: bool = False,
                         temporal: Guide | None = None,
                         ) -> tuple[Objective | TiledObjective, torch.Tensor, list[torch.Tensor],
                                    list[float], Crop]:
        """Targets at one scale: content features, blended style Grams, TV. The content
        is padded to the network's minimum side where it is thinner (Crop undoes it)."""
        if not styles:
            raise ImpastoError(BAD_OPTIONS, "at least one style image is needed")
        blend = [s.weight for s in styles]
        w, h = long_side_size(content_rgb.width, content_rgb.height, size)
        c = to_tensor(content_rgb.resize((w, h), Image.Resampling.LANCZOS))
        style_ts = [self._style_tensor(s.image, size, opts, c) for s in styles]
        if opts.preserve_colors == "luminance":
            c = color.luminance(c)
        c, crop = pad_to(c.to(self.device, self.dtype).unsqueeze(0), net.min_side)
        targets = [self._style_targets(net, st, opts, cache) for st in style_ts]
        sizes = feature_sizes(net, c.shape[-2], c.shape[-1])
        if tiled:
            c_feats = assemble(net, c, opts.content_layers, self.tile_size, self._check_stop)
        else:
            with torch.no_grad():
                c_feats = net(c)
        terms: list[Term] = [ContentLoss(c_feats[n], opts.content_weight, n)
                             for n in opts.content_layers]
        terms += self._style_terms(targets, styles, opts, sizes, c, w, h, net.min_side)
        terms.append(TVLoss(opts.tv_weight))
        if temporal is not None and opts.stability > 0:
            terms.append(TemporalLoss(*self._temporal_inputs(temporal, w, h, net.min_side, opts),
                                      opts.stability * STABILITY))
        if tiled:
            objective: Objective | TiledObjective = TiledObjective(
                net, terms, c.shape[-2], c.shape[-1], core=self.tile_size, check=self._check_stop)
        else:
            objective = Objective(net, terms)
        return objective, c, style_ts, blend, crop

    def _temporal_inputs(self, temporal: Guide, w: int, h: int, min_side: int,
                         opts: EngineOptions) -> tuple[torch.Tensor, torch.Tensor]:
        """The warped previous frame and its mask at a scale, padded as the content is
        (in luminance when the run works in luminance, as the content then is)."""
        warped, mask = temporal.at(w, h)
        if opts.preserve_colors == "luminance":
            warped = color.luminance(warped[0]).unsqueeze(0)
        warped, _ = pad_to(warped.to(self.device, self.dtype), min_side)
        mask, _ = pad_to(mask.to(self.device, self.dtype), min_side)
        return warped, mask

    def _style_terms(self, targets: list[dict[str, torch.Tensor]], styles: list[StyleInput],
                     opts: EngineOptions, sizes: dict[str, tuple[int, int]], like: torch.Tensor,
                     w: int, h: int, min_side: int) -> list[Term]:
        """One style term per layer and region: the unmasked styles' blend over what the
        masks leave (everywhere, when no style has a mask), and each masked style over
        its own region (regions.py)."""
        layer_weights = opts.style_layer_weights or [1.0] * len(opts.style_layers)
        weights = {n: opts.style_weight * opts.strength * lw
                   for n, lw in zip(opts.style_layers, layer_weights)}
        masked = [i for i, s in enumerate(styles) if s.mask is not None]
        plain = [i for i, s in enumerate(styles) if s.mask is None]
        # (guide at this scale or None, [(share, targets)], strength) per region.
        regions: list[tuple[torch.Tensor | None, list[tuple[float, dict]], float]] = []
        guides, left = scale_guides([styles[i].mask for i in masked], w, h, min_side,
                                    rest=bool(plain)) if masked else ([], None)
        # Unmasked styles all of weight 0 (allowed beside a masked one): nothing to blend,
        # so what the masks leave goes to content and TV, as with no unmasked style.
        plain = [i for i in plain if styles[i].weight > 0] if masked else plain
        if plain:
            # neural-style's blend: the target Gram is the weighted mean of the styles'.
            # The weights are normalised in float64 first: 1e200 or 1e-320 as a float32
            # factor would overflow or vanish, though any positive weight of a single
            # style means "this style".
            total_weight = math.fsum(styles[i].weight for i in plain)
            regions.append((left, [(styles[i].weight / total_weight, targets[i]) for i in plain],
                            1.0 if left is None else float(left.max())))
        for i, g in zip(masked, guides):
            # A region's loss is measured over its own area, so a faint mask (all 1/255)
            # would paint at full strength; its brightest value scales it instead: a
            # mask that reaches white paints fully, a near-black one hardly at all.
            regions.append((g, [(1.0, targets[i])], styles[i].weight * float(g.max())))
        terms: list[Term] = []
        for guide, mix, strength in regions:
            if strength <= 0:
                continue
            for n in opts.style_layers:
                lg = None if guide is None else layer_guide(guide, sizes[n], like)
                if guide is not None and lg is None:
                    continue  # the region holds no pixels at this layer
                # A blend of tensors (sum() of tensors is typed int | Tensor).
                g = cast(torch.Tensor, sum(share * t[n] for share, t in mix))
                if opts.style_loss == "wasserstein":
                    mean = sum(share * t[mean_key(n)] for share, t in mix)
                    terms.append(MeanCovLoss(mean, g * g.shape[-1], weights[n] * strength, n, lg))
                else:
                    terms.append(StyleLoss(g, weights[n] * strength, n, lg))
        return terms

    # --- pieces ------------------------------------------------------------------------
    def _optimize(self, x: torch.Tensor, objective: Objective | TiledObjective, opts: EngineOptions,
                  n_evals: int, report: Callable[[dict[str, float], int], None],
                  should_stop: Callable[[], bool] | None,
                  should_finish: Callable[[], bool] | None = None) -> tuple[dict[str, float], bool]:
        """Runs one scale; returns its last losses and whether should_finish ended it."""
        history_size = lbfgs_history(x)
        # A graph pays where kernel launches, not arithmetic, take the time (4x at
        # 256 px, 1.5x at 512, nothing at 1024 on an H100), and its capture costs about
        # four evaluations.
        if (self.cuda_graphs and isinstance(objective, Objective) and n_evals >= 12
                and x.shape[-1] * x.shape[-2] <= 800 * 800):
            objective = graphed(objective, x.detach())
        opt = self._optimizer(opts, x, history_size)
        scale_history: list[float] = []
        # The optimiser sees the objective divided by its value at the scale's start.
        # L-BFGS skips curvature pairs with y.s <= 1e-10 (torch's absolute threshold,
        # kept by lbfgs.py), so with small-valued objectives (torchvision weights,
        # large images) it would never build a history and crawl like gradient
        # descent: the tutorial-style baseline stalls so at 512 px (docs/performance.md).
        # The minimiser is the same; reported losses stay unscaled.
        norm: list[float] = []

        def closure() -> torch.Tensor:
            if should_stop is not None and should_stop():
                raise JobCancelled()
            if should_finish is not None and should_finish():
                raise _Finish()
            if self.clamp:
                with torch.no_grad():
                    x.clamp_(0, 1)
            loss, grad = objective.value_and_grad(x.detach())
            if not math.isfinite(objective.last["total"]):
                raise ImpastoError(BAD_OPTIONS, "the loss overflowed (it is "
                                   f"{objective.last['total']}); use smaller loss weights")
            if not norm:
                norm.append(1.0 / max(abs(objective.last["total"]), 1e-30))
            x.grad = grad * norm[0]
            scaled = loss * norm[0]
            scale_history.append(objective.last["total"])
            report(objective.last, objective.evals)
            return scaled

        tol = opts.resolved_tolerance()
        while objective.evals < n_evals:
            before = objective.evals
            try:
                opt.step(closure)
            except _Finish:
                with torch.no_grad():
                    x.clamp_(0, 1)
                return objective.last, True
            if opts.optimizer == "adam":
                with torch.no_grad():
                    x.clamp_(0, 1)
            if objective.evals == before or getattr(opt, "stalled", False):
                break  # the optimiser found nothing left to do
            if tol > 0 and objective.evals >= 10 and _converged(scale_history, tol):
                log.debug("converged after %d evaluations", objective.evals)
                break
        return objective.last, False

    def _style_tensor(self, img: Image.Image, size: int, opts: EngineOptions,
                      content: torch.Tensor) -> torch.Tensor:
        s = to_tensor(resize_long(img.convert("RGB"), max(16, round(size * opts.style_scale))))
        if opts.preserve_colors == "histogram":
            s = color.match_histogram(s, content)
        elif opts.preserve_colors == "luminance":
            s = color.match_luminance(s, content)
        return s

    def _style_targets(self, net: VGGFeatures, style: torch.Tensor, opts: EngineOptions,
                       cache: TargetCache | None) -> dict[str, torch.Tensor]:
        self._check_stop()
        key = None
        if cache is not None:
            h = hashlib.sha256(style.numpy().tobytes())
            # "moments": Grams and means (older entries held Grams alone).
            h.update(repr(("moments", tuple(style.shape), opts.style_layers, opts.pooling,
                           self.weights.label)).encode())
            key = h.hexdigest()
            hit = cache.get(key)
            if hit is not None:
                return {k: v.to(self.device) for k, v in hit.items()}
        st, _ = pad_to(style.to(self.device, self.dtype).unsqueeze(0), net.min_side)
        if st.shape[-1] * st.shape[-2] > self.tile_threshold():
            targets = tiled_targets(net, st, opts.style_layers, self.tile_size, self._check_stop)
        else:
            with torch.no_grad():
                targets = style_targets(net(st), opts.style_layers)
        if cache is not None and key is not None:
            cache.put(key, targets)
        return targets

    def _init(self, how: str, content: torch.Tensor, styles: list[torch.Tensor],
              blend: list[float], gen: torch.Generator) -> torch.Tensor:
        if how == "content":
            return content.clone()
        if how == "noise":
            return torch.rand(content.shape, generator=gen).to(self.device, self.dtype)
        # "style": the blended mean colour of the styles, lightly noised so that
        # neighbouring pixels get different gradients.
        total = math.fsum(blend)
        mean = cast(torch.Tensor, sum((b / total) * s.mean((1, 2)) for b, s in zip(blend, styles)))
        noise = (torch.rand(content.shape, generator=gen) - 0.5) * 0.1
        return (mean.view(1, 3, 1, 1) + noise.to(mean.dtype)).clamp(0, 1).to(self.device, self.dtype)

    @staticmethod
    def _optimizer(opts: EngineOptions, x: torch.Tensor,
                   history_size: int) -> torch.optim.Optimizer | LBFGS:
        if opts.optimizer == "adam":
            return torch.optim.Adam([x], lr=opts.learning_rate)
        # One L-BFGS iteration per step() so that we can report and cancel between
        # evaluations; the curvature history persists. Same iterates as
        # torch.optim.LBFGS(max_iter=1), far fewer kernels (daemon/impasto/engine/lbfgs.py).
        return LBFGS(x, history_size)


def lbfgs_history(x: torch.Tensor, budget: int = 2**31) -> int:
    """100 pairs as neural-style, within about 2 GB: each pair holds two image-sized
    vectors, 400 MB at 16 MP (a 2048 px square keeps 21 pairs, 1024 px 85)."""
    pair = 2 * x.numel() * x.element_size()
    return int(max(5, min(100, budget // pair)))


def _converged(history: list[float], tol: float, window: int = 5) -> bool:
    if len(history) <= window:
        return False
    old, new = history[-window - 1], history[-1]
    return abs(old - new) <= tol * abs(old) * window

