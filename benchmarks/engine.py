"""Engine speed against a straightforward tutorial-style implementation, same run.

  python -m benchmarks.engine            # 256 and 512 px (several minutes on 2 cores)
  python -m benchmarks.engine --quick    # 256 px only

Reports (all measured in this process, so machine noise cancels in the ratios):
  * seconds per evaluation (forward + backward) at each size, impasto vs baseline;
  * achieved GFLOP/s against an fp32 matmul measured alongside;
  * time to reach the baseline's final objective: the baseline runs single-scale L-BFGS
    at full size; impasto runs its coarse-to-fine schedule. Both images are scored
    with the same objective at full size (Engine.evaluate).

Pretrained weights cannot be downloaded here, so both sides use the same seeded random
VGG19: the arithmetic, and so the timings, are the same as with real weights; the
objective's landscape is not, so treat the time-to-target ratio as indicative.
"""

from __future__ import annotations

import argparse
import json
import time

import torch
import torch.nn.functional as F
from torch import nn

from benchmarks.common import matmul_gflops, median_time, photo_like, texture, vgg_gflop
from impasto.engine.runtime import tune_allocator
from impasto.engine.tensors import resize_long, to_image, to_tensor
from impasto.engine.transfer import Engine, StyleInput
from impasto.engine.weights import load as load_weights
from impasto.errors import JobCancelled
from impasto.options import VGG19_LAYERS, EngineOptions

# Both sides minimise the same objective: impasto's losses (each relative to its target's
# magnitude, daemon/impasto/engine/losses.py) at impasto's default weights. The baseline keeps
# the tutorial's structure (loss modules inserted into a copied Sequential, torch's
# L-BFGS) but computes those losses, so time to a given objective compares like with like.
TUTORIAL_CW, TUTORIAL_SW = 1.0, 1.0
STYLE_LAYERS = ["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"]
CONTENT_LAYER = "relu4_2"


# --- the baseline: PyTorch-tutorial structure, same losses ---------------------------------
class _Content(nn.Module):
    """Target set after building: until then it passes through and remembers its input."""

    def __init__(self) -> None:
        super().__init__()
        self.target: torch.Tensor | None = None
        self.seen = self.loss = torch.zeros(())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.target is None:
            self.seen = x.detach()
        else:
            self.loss = F.mse_loss(x, self.target) / self.target.pow(2).mean()
        return x


def _gram(x: torch.Tensor) -> torch.Tensor:
    a, b, c, d = x.size()
    f = x.view(a * b, c * d)
    return torch.mm(f, f.t()).div(a * b * c * d)


class _Style(_Content):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.target is None:
            self.seen = _gram(x).detach()
        else:
            self.loss = F.mse_loss(_gram(x), self.target) / self.target.pow(2).mean()
        return x


class _Norm(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(-1, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(-1, 1, 1))

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        return (img - self.mean) / self.std


def baseline_model(features: nn.Sequential, style: torch.Tensor, content: torch.Tensor):
    """Copies layers into a new Sequential, inserting loss modules (as the tutorial)."""
    model = nn.Sequential(_Norm())
    contents, styles = [], []
    last = max(VGG19_LAYERS.index(n) for n in STYLE_LAYERS + [CONTENT_LAYER])
    for i, layer in enumerate(features):
        if i > last:
            break
        if isinstance(layer, nn.ReLU):
            layer = nn.ReLU(inplace=False)
        model.add_module(VGG19_LAYERS[i], layer)
        name = VGG19_LAYERS[i]
        if name == CONTENT_LAYER:
            contents.append(_Content())
            model.add_module("content_" + name, contents[-1])
        if name in STYLE_LAYERS:
            styles.append(_Style())
            model.add_module("style_" + name, styles[-1])
    model.requires_grad_(False)
    model.to(content.device)
    with torch.no_grad():
        model(content)
        content_targets = [m.seen for m in contents]
        model(style)
    for m, t in zip(contents, content_targets):
        m.target = t
    for m in styles:
        m.target = m.seen
    return model, contents, styles


def baseline_run(features, content_img, style_img, size: int, evals: int, cw=1.0, sw=1.0,
                 tvw=1e-3, exact: bool = False, device: str = "cpu",
                 trace: list[tuple[float, float]] | None = None):
    """trace, when given, gets (seconds since start, objective) per evaluation."""
    t0 = time.perf_counter()
    content = to_tensor(resize_long(content_img, size)).unsqueeze(0).to(device)
    style = to_tensor(resize_long(style_img, size)).unsqueeze(0).to(device)
    model, contents, styles = baseline_model(features, style, content)
    img = content.clone().requires_grad_(True)
    # The tutorial's L-BFGS (history 100), asked for exactly `evals` evaluations; its
    # default tolerances may stop it earlier, as they would the tutorial.
    tol = {"tolerance_grad": -1.0, "tolerance_change": -1.0} if exact else {}
    opt = torch.optim.LBFGS([img], max_iter=evals, max_eval=evals, **tol)
    count = [0]

    def closure():
        with torch.no_grad():
            img.clamp_(0, 1)
        opt.zero_grad()
        model(img)
        tv = (img[..., :, 1:] - img[..., :, :-1]).pow(2).mean() + (
            img[..., 1:, :] - img[..., :-1, :]).pow(2).mean()
        loss = cw * sum(c.loss for c in contents) + sw * sum(s.loss for s in styles) + tvw * tv
        loss.backward()
        count[0] += 1
        if trace is not None:
            trace.append((time.perf_counter() - t0, loss.item()))
        return loss

    opt.step(closure)
    with torch.no_grad():
        img.clamp_(0, 1)
    return img.detach()[0], count[0]


# --- measurements ---------------------------------------------------------------------------
def per_eval(engine: Engine, content, style, size: int, features, n: int = 8) -> dict:
    """Marginal cost of an evaluation: (time of 2n evaluations - time of n) / n, so
    the one-off setup (targets, resizing) of either implementation does not count."""

    def imp(k: int) -> float:
        opts = EngineOptions(size=size, evaluations=[k], seed=0, tolerance=0.0,
                             content_weight=TUTORIAL_CW, style_weight=TUTORIAL_SW)
        return median_time(lambda: engine.run(content, [StyleInput(style)], opts), 3)

    def base(k: int) -> float:
        return median_time(lambda: baseline_run(features, content, style, size, k, exact=True,
                                                cw=TUTORIAL_CW, sw=TUTORIAL_SW), 3)

    imp(2), base(2)  # warm-up: allocator, oneDNN primitives
    t_imp = (imp(2 * n) - imp(n)) / n
    t_base = (base(2 * n) - base(n)) / n
    h = round(size * content.height / content.width)
    gflop = vgg_gflop(h, size, VGG19_LAYERS.index("relu5_1"))
    return {"size": size, "impasto_s_per_eval": t_imp, "baseline_s_per_eval": t_base,
            "speed_ratio": t_base / t_imp, "gflop_per_eval": gflop,
            "impasto_gflops": gflop / t_imp, "baseline_gflops": gflop / t_base}


def time_to_target(engine: Engine, content, style, size: int, features, base_evals: int,
                   style_weight: float = TUTORIAL_SW, sync=lambda: None,  # noqa: ANN001
                   coarse: tuple[int, ...] = (50, 20),
                   checkpoints: tuple[int, ...] = (25, 50, 100, 200, 300, 500),
                   baseline: tuple[torch.Tensor, list[tuple[float, float]]] | None = None,
                   content_weight: float = TUTORIAL_CW) -> dict:
    """How much sooner impasto reaches the objective the baseline has after N evaluations.

    One baseline run (single scale, L-BFGS) records (time, objective) at every
    evaluation; one impasto run (coarse scales with `coarse` evaluations, then the
    output scale) does the same. For each N, the baseline's objective after N
    evaluations is the target, and impasto's time is that of its first output-scale
    evaluation at or below it. Both sides' objectives are the same function
    (benchmarks check this at the end points with Engine.evaluate). `baseline`: the
    (output, trace) of an earlier baseline run with the same arguments, to reuse.
    """
    if baseline is None:
        trace: list[tuple[float, float]] = []
        out, _ = baseline_run(features, content, style, size, base_evals, cw=content_weight,
                              sw=style_weight, exact=True, device=str(engine.device), trace=trace)
    else:
        out, trace = baseline
    steps: list[tuple[int, float, float]] = []
    opts = EngineOptions(size=size, seed=0, tolerance=0.0, style_weight=style_weight,
                         content_weight=content_weight, evaluations=[*coarse, base_evals])
    deepest = min(v for _, v in trace)

    def stop() -> bool:  # every target reached: the rest would measure nothing
        return bool(steps) and steps[-1][0] == len(coarse) and steps[-1][2] <= deepest

    try:
        result = engine.run(content, [StyleInput(style)], opts, should_stop=stop,
                            on_step=lambda s: steps.append((s.scale, s.elapsed_s,
                                                            s.losses["total"])))
    except JobCancelled:
        result = None
    sync()
    final = [(t, v) for k, t, v in steps if k == len(coarse)]
    score_opts = EngineOptions(size=size, scales=1, seed=0, style_weight=style_weight,
                               content_weight=content_weight)
    rows = []
    for cp in (c for c in checkpoints if c <= len(trace)):
        t_base, target = trace[cp - 1]
        hit = next(((i + 1, t) for i, (t, v) in enumerate(final) if v <= target), None)
        rows.append({"baseline_evals": cp, "target": target, "baseline_s": round(t_base, 3),
                     "impasto_final_evals": hit[0] if hit else None,
                     "impasto_s": round(hit[1], 3) if hit else None,
                     "time_ratio": round(t_base / hit[1], 2) if hit else None})
    return {"size": size, "baseline": (out, trace),
            "coarse": [s for s, _ in opts.schedule()[:-1]], "coarse_evals": list(coarse),
            "rows": rows,
            # end points scored the same way (uint8 images through Engine.evaluate):
            "baseline_final_scored": engine.evaluate(to_image(out), content, [StyleInput(style)],
                                                     score_opts)["total"],
            "baseline_final_traced": trace[-1][1],
            "impasto_final_scored": engine.evaluate(result.image, content, [StyleInput(style)],
                                                    score_opts)["total"] if result else None,
            "impasto_final_traced": final[-1][1]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="256 px only")
    ap.add_argument("--baseline-evals", type=int, default=300,
                    help="the baseline's budget (the PyTorch tutorial runs 300)")
    ap.add_argument("--coarse", nargs="+", default=["50,20", "200,100"],
                    help="impasto's coarse-scale evaluations, one schedule per argument "
                    "(the draft and normal presets' by default)")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--style-weight", type=float, default=TUTORIAL_SW,
                    help="time to target: style weight of both sides (the tutorial's)")
    ap.add_argument("--per-eval-n", type=int, default=8)
    ap.add_argument("--weights", default="random",
                    help="as `impasto serve --weights`; random (seed 0) where no real ones are "
                    "at hand. The time-to-objective results depend on them, the timings do not")
    args = ap.parse_args()
    tune_allocator()
    torch.manual_seed(0)
    weights = load_weights(args.weights)
    engine = Engine(weights, "cpu")
    features = weights.features
    content, style = photo_like(640, 480), texture(512, 512)
    peak = matmul_gflops()
    sizes = [256] if args.quick else [256, 512]
    report = {"threads": torch.get_num_threads(), "matmul_gflops": peak, "per_eval": [],
              "time_to_target": []}
    for s in sizes:
        r = per_eval(engine, content, style, s, features, args.per_eval_n)
        r["impasto_fraction_of_matmul"] = r["impasto_gflops"] / peak
        report["per_eval"].append(r)
        print(f"{s}px: impasto {r['impasto_s_per_eval']:.3f} s/eval, baseline "
              f"{r['baseline_s_per_eval']:.3f} s/eval (baseline/impasto {r['speed_ratio']:.2f}x); "
              f"{r['impasto_gflops']:.1f} GFLOP/s = {r['impasto_fraction_of_matmul']:.0%} of "
              f"matmul {peak:.1f}", flush=True)
    size = sizes[-1]
    baseline = None
    for coarse in args.coarse:
        r = time_to_target(engine, content, style, size, features, args.baseline_evals,
                           args.style_weight, coarse=tuple(int(c) for c in coarse.split(",") if c),
                           baseline=baseline)
        baseline = r.pop("baseline")
        report["time_to_target"].append(r)
        print(f"{size}px, impasto coarse scales {r['coarse']} px with {r['coarse_evals']} evaluations:")
        for row in r["rows"]:
            if row["impasto_s"] is None:
                print(f"  baseline {row['baseline_evals']:4d} evals {row['baseline_s']:8.1f} s "
                      f"objective {row['target']:.4g}: impasto did not reach it")
                continue
            print(f"  baseline {row['baseline_evals']:4d} evals {row['baseline_s']:8.1f} s "
                  f"objective {row['target']:.4g}: impasto {row['impasto_s']:7.1f} s "
                  f"({row['impasto_final_evals']} at {size} px) -> {row['time_ratio']:.1f}x")
        scored = r["impasto_final_scored"]
        print(f"  end points scored from uint8 images: baseline {r['baseline_final_scored']:.4g} "
              f"(traced {r['baseline_final_traced']:.4g}), impasto "
              f"{'stopped early' if scored is None else f'{scored:.4g}'} "
              f"(traced {r['impasto_final_traced']:.4g})", flush=True)
    if args.json:
        print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
