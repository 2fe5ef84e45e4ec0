"""GPU checks and timings, for one short call on a machine with CUDA.

  bash benchmarks/gpu.sh      # or: python -m benchmarks.gpu [--quick] [--device cpu]

Each section prints one JSON line (and appends it to $OUT/gpu.jsonl when OUT is set);
a failing section prints its error and the rest still run. Sections, most important
first:
  env          device, matmul peaks (fp32, tf32, bf16)
  accuracy     objective and gradient at 256 px for fp32 / tf32 / bf16 / CUDA graph,
               against a float64 CPU reference
  objective    seconds per objective evaluation (value + gradient, CUDA events) by
               variant and size, and batch 2 against two batch-1 evaluations
  optimizer    whole-engine seconds per evaluation with torch.optim.LBFGS against
               daemon/impasto/engine/lbfgs.py, graphs on and off
  run500       512 px, 500 evaluations: impasto and the tutorial-style baseline
  to_target    512 px time to the baseline's objective (coarse-to-fine vs single scale)
  presets      draft / normal / best at 512 px
  large        a 4096 x 4096 output, tiled and untiled, peak GPU memory
  oom          a job too big for a capped memory pool fails with out_of_memory and
               the next job runs
  compile      torch.compile of the network, forward + backward, against eager
`--device cpu --quick` runs the same code at toy sizes (a dry run on a CPU machine).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import os
import statistics
import time
import traceback
import warnings
from collections.abc import Callable

import torch

from benchmarks.common import photo_like, texture
from benchmarks.engine import TUTORIAL_CW, TUTORIAL_SW, baseline_run, time_to_target
from impasto.engine.lbfgs import LBFGS
from impasto.engine.objective import Objective, graphed
from impasto.engine.transfer import Engine, StyleInput
from impasto.engine.weights import random_weights
from impasto.errors import ImpastoError
from impasto.options import EngineOptions

ARGS = argparse.Namespace(quick=False, device="cuda")
WEIGHTS = random_weights(0)
CONTENT, STYLE = photo_like(640, 480), texture(512, 512)


def emit(section: str, **fields: object) -> None:
    line = json.dumps({"section": section, **fields})
    print(line, flush=True)
    if os.environ.get("OUT"):
        with open(os.path.join(os.environ["OUT"], "gpu.jsonl"), "a") as f:
            f.write(line + "\n")


def sync() -> None:
    if ARGS.device == "cuda":
        torch.cuda.synchronize()


def S(size: int) -> int:  # noqa: N802 - toy sizes for the CPU dry run
    return max(32, size // 8) if ARGS.quick else size


def fresh_weights():  # noqa: ANN201
    """Engine moves the network in place (nn.Module.to), so each engine here gets a copy."""
    return dataclasses.replace(WEIGHTS, features=copy.deepcopy(WEIGHTS.features))


def engine(precision: str = "auto", graphs: bool = True, channels_last: bool | None = None,
           cls: type[Engine] = Engine) -> Engine:
    return cls(fresh_weights(), ARGS.device, precision=precision, cuda_graphs=graphs,
               channels_last=channels_last)


def variants(*names: str) -> list[str]:
    # bf16 convolutions on a CPU are 10-30x slower: the dry run leaves them out.
    return [n for n in names if ARGS.device == "cuda" or "bf16" not in n]


def timed(fn: Callable[[], object], repeats: int = 20, warmup: int = 3) -> float:
    """Median seconds of fn, synchronised (CUDA events would time the same span)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        sync()
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def objective_at(eng: Engine, size: int, opts: EngineOptions | None = None
                 ) -> tuple[Objective, torch.Tensor]:
    opts = opts or EngineOptions(size=size, scales=1, seed=0)
    net = eng._network(opts)
    obj, c, _, _, _ = eng._scale_objective(net, CONTENT, [StyleInput(STYLE)], opts, size, None)
    torch.manual_seed(0)
    x = (c + 0.1 * torch.randn_like(c)).clamp(0, 1)
    return obj, x


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.double().cpu() - b.double().cpu()).norm() / b.double().cpu().norm()).item()


# --- sections ---------------------------------------------------------------------------
def env() -> None:
    info: dict[str, object] = {"torch": torch.__version__, "device": ARGS.device}
    if ARGS.device == "cuda":
        info["name"] = torch.cuda.get_device_name()
        n = 8192
        for label, dtype, tf32 in (("fp32", torch.float32, False), ("tf32", torch.float32, True),
                                   ("bf16", torch.bfloat16, False)):
            torch.backends.cuda.matmul.allow_tf32 = tf32
            a = torch.randn(n, n, device="cuda", dtype=dtype)
            b = torch.randn(n, n, device="cuda", dtype=dtype)
            t = timed(lambda a=a, b=b: a @ b, repeats=10)
            info[f"matmul_{label}_tflops"] = round(2 * n**3 / t / 1e12, 1)
        info["memory_gib"] = round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1)
    emit("env", **info)


def accuracy() -> None:
    """Objective value and gradient of each variant against float64 on the CPU."""
    size = S(256)
    cpu = Engine(fresh_weights(), "cpu", precision="fp32", cuda_graphs=False)
    ref_obj, x = objective_at(cpu, size)
    ref_obj.net.double()
    for m in ref_obj.terms:
        m.double()
    x64 = x.double().requires_grad_(True)
    value = ref_obj.parts(x64)[-1]
    (grad64,) = torch.autograd.grad(value, x64)
    ref_value = value.item()
    for variant in variants("fp32", "tf32", "bf16", "tf32+graph", "bf16+graph"):
        precision, _, graph = variant.partition("+")
        eng = engine(precision, graphs=bool(graph))
        obj, xd = objective_at(eng, size)
        xd = x.to(eng.device)
        o = graphed(obj, xd) if graph and ARGS.device == "cuda" else obj
        v, g = o.value_and_grad(xd)
        v2, g2 = o.value_and_grad(xd)  # a replay gives the same answer again
        emit("accuracy", variant=variant, size=size, value_rel_err=abs(v.item() - ref_value) / ref_value,
             grad_rel_err=rel(g, grad64), repeat_rel_diff=rel(g2, g),
             graphed=type(o).__name__)


def objective_speed() -> None:
    for size in (S(256), S(512), S(1024)):
        rows = {}
        for variant in variants("fp32", "tf32", "bf16", "tf32+cl", "tf32+graph", "bf16+graph",
                                "tf32+cl+graph"):
            parts = variant.split("+")
            eng = engine(parts[0], graphs="graph" in parts, channels_last="cl" in parts)
            obj, x = objective_at(eng, size)
            o = graphed(obj, x) if "graph" in parts and ARGS.device == "cuda" else obj
            rows[variant] = timed(lambda o=o, x=x: o.value_and_grad(x))
            del o, obj
        # Daemon batching: two same-size images in one pass against two passes.
        eng = engine("tf32", graphs=False)
        obj, x = objective_at(eng, size)
        x2 = torch.cat([x, x.flip(-1)])
        rows["tf32_batch2"] = timed(lambda o=obj, x2=x2: o.value_and_grad(x2))
        obj_g = graphed(obj, x2) if ARGS.device == "cuda" else obj
        rows["tf32+graph_batch2"] = timed(lambda o=obj_g, x2=x2: o.value_and_grad(x2))
        emit("objective", size=size, ms={k: round(v * 1e3, 3) for k, v in rows.items()},
             batch2_gain=round(2 * rows["tf32"] / rows["tf32_batch2"], 3),
             batch2_gain_graph=round(2 * rows["tf32+graph"] / rows["tf32+graph_batch2"], 3),
             peak_mem_mib=round(torch.cuda.max_memory_allocated() / 2**20)
             if ARGS.device == "cuda" else None)


class TorchLBFGSEngine(Engine):
    """The engine with torch.optim.LBFGS (what it used before daemon/impasto/engine/lbfgs.py)."""

    @staticmethod
    def _optimizer(opts, x, history_size):  # noqa: ANN001, ANN205
        return torch.optim.LBFGS([x], lr=1.0, max_iter=1, history_size=history_size,
                                 tolerance_grad=-1.0, tolerance_change=-1.0)


def run_engine(eng: Engine, opts: EngineOptions) -> tuple[float, dict[str, float]]:
    sync()
    t0 = time.perf_counter()
    out = eng.run(CONTENT, [StyleInput(STYLE)], opts)
    sync()
    return time.perf_counter() - t0, out.losses


def optimizer() -> None:
    size = S(512)
    for n in (100,):
        for label, cls, graphs in (("torch_lbfgs", TorchLBFGSEngine, False),
                                   ("torch_lbfgs+graph", TorchLBFGSEngine, True),
                                   ("impasto_lbfgs", Engine, False),
                                   ("impasto_lbfgs+graph", Engine, True)):
            eng = engine(graphs=graphs, cls=cls)
            opts = EngineOptions(size=size, evaluations=[n], seed=0, tolerance=0.0)
            run_engine(eng, EngineOptions(size=size, evaluations=[5], seed=0))
            t, losses = run_engine(eng, opts)
            emit("optimizer", variant=label, size=size, evals=n, ms_per_eval=round(t / n * 1e3, 3),
                 objective=losses["total"])
    assert isinstance(Engine._optimizer(EngineOptions(), torch.zeros(2, requires_grad=True), 5),
                      LBFGS)


def quality() -> None:
    """What each precision does to the result: 200 evaluations at 512 px, each output
    scored by the same fp32 objective."""
    size, n = S(512), 20 if ARGS.quick else 200
    judge = engine("fp32", graphs=False)
    score_opts = EngineOptions(size=size, scales=1, seed=0)
    for precision in variants("fp32", "tf32", "bf16"):
        eng = engine(precision)
        t0 = time.perf_counter()
        out = eng.run(CONTENT, [StyleInput(STYLE)],
                      EngineOptions(size=size, evaluations=[n], seed=0, tolerance=0.0))
        sync()
        t = time.perf_counter() - t0
        if ARGS.device == "cuda":  # the judge runs in fp32 whatever the last engine set
            torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
        score = judge.evaluate(out.image, CONTENT, [StyleInput(STYLE)], score_opts)["total"]
        emit("quality", precision=precision, size=size, evals=n, seconds=round(t, 3),
             own_objective=out.losses["total"], fp32_objective=score)


def run500() -> None:
    size, n = S(512), 50 if ARGS.quick else 500
    eng = engine()
    run_engine(eng, EngineOptions(size=size, evaluations=[5], seed=0))
    torch.cuda.reset_peak_memory_stats() if ARGS.device == "cuda" else None
    t, losses = run_engine(eng, EngineOptions(size=size, evaluations=[n], seed=0, tolerance=0.0,
                                              content_weight=TUTORIAL_CW, style_weight=TUTORIAL_SW))
    peak = torch.cuda.max_memory_allocated() / 2**20 if ARGS.device == "cuda" else None
    features = eng.features
    baseline_run(features, CONTENT, STYLE, size, 5, exact=True, device=str(eng.device))
    sync()
    t0 = time.perf_counter()
    baseline_run(features, CONTENT, STYLE, size, n, exact=True, device=str(eng.device),
                 cw=TUTORIAL_CW, sw=TUTORIAL_SW)
    sync()
    tb = time.perf_counter() - t0
    emit("run500", size=size, evals=n, impasto_s=round(t, 3), baseline_s=round(tb, 3),
         speedup=round(tb / t, 2), impasto_objective=losses["total"], peak_mem_mib=peak)


def to_target() -> None:
    """Time to the single-scale baseline's objective after N evaluations, for several
    coarse schedules (none: impasto single-scale, which should track the baseline)."""
    eng = engine()
    baseline = None
    for clamp in (True, False):
        eng.clamp = clamp
        for coarse in ((), (20, 10), (50, 20), (100, 50), (200, 100), (100, 50, 20)):
            r = time_to_target(eng, CONTENT, STYLE, S(512), eng.features,
                               50 if ARGS.quick else 500, sync=sync, coarse=coarse,
                               baseline=baseline)
            baseline = r.pop("baseline")
            emit("to_target", clamp=clamp, **r)


def presets() -> None:
    eng = engine()
    for preset in ("draft", "normal", "best"):
        opts = EngineOptions(preset=preset, seed=0, size=S(512))
        t, losses = run_engine(eng, opts)
        emit("presets", preset=preset, size=S(512), evals=opts.total_evaluations(),
             seconds=round(t, 2), objective=losses["total"])


def large() -> None:
    """4096 x 4096: the engine's own choice (auto: untiled where it fits), then tiles,
    then tiles with cuDNN's algorithm search, which the engine leaves off (its trial
    workspaces count in the peak, and it runs again for each new shape)."""
    size = S(4096)
    content = photo_like(size, size)
    eng = engine()
    evals = [6, 3, 1]
    for label, tile_pixels, bench in (("auto", None, False), ("tiled", 1536 * 1536, False),
                                      ("tiled, cudnn search", 1536 * 1536, True)):
        if ARGS.device == "cuda":
            torch.backends.cudnn.benchmark = bench
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        opts = EngineOptions(size=size, evaluations=evals, seed=0, tolerance=0.0,
                             tile_pixels=tile_pixels, tile_size=1024)
        sync()
        t0 = time.perf_counter()
        try:
            out = eng.run(content, [StyleInput(STYLE)], opts)
            status = f"ok, tiled scales {out.tiled_scales}"
        except ImpastoError as e:
            status = f"{e.code}: {e}"
        sync()
        emit("large", variant=label, size=size, schedule=opts.schedule(),
             tile_threshold=eng.tile_threshold(opts),
             seconds=round(time.perf_counter() - t0, 2), status=status,
             peak_gib=round(torch.cuda.max_memory_allocated() / 2**30, 2)
             if ARGS.device == "cuda" else None)
    if ARGS.device == "cuda":
        torch.backends.cudnn.benchmark = False  # the engine's setting


def oom() -> None:
    if ARGS.device != "cuda":
        emit("oom", skipped="needs CUDA")
        return
    eng = engine()
    torch.cuda.empty_cache()
    torch.cuda.set_per_process_memory_fraction(2 * 2**30 / torch.cuda.get_device_properties(0).total_memory)
    try:
        eng.run(photo_like(3000, 3000), [StyleInput(STYLE)],
                EngineOptions(size=3000, evaluations=[2], seed=0, tile_pixels=3000 * 3000))
        result = "no error (did not run out of memory)"
    except ImpastoError as e:
        result = f"{e.code}: {e}"
    torch.cuda.set_per_process_memory_fraction(1.0)
    t, losses = run_engine(eng, EngineOptions(size=256, evaluations=[5], seed=0))
    emit("oom", big_job=result, next_job_s=round(t, 2), next_job_objective=losses["total"])


def compile_net() -> None:
    size = S(512)
    eng = engine("tf32", graphs=False)
    obj, x = objective_at(eng, size)
    eager = timed(lambda: obj.value_and_grad(x))
    t0 = time.perf_counter()
    obj.net = torch.compile(obj.net)
    obj.value_and_grad(x)
    sync()
    compile_s = time.perf_counter() - t0
    compiled = timed(lambda: obj.value_and_grad(x))
    emit("compile", size=size, eager_ms=round(eager * 1e3, 3), compiled_ms=round(compiled * 1e3, 3),
         compile_s=round(compile_s, 1), gain=round(eager / compiled, 3))


SECTIONS = {"env": env, "accuracy": accuracy, "objective": objective_speed,
            "optimizer": optimizer, "quality": quality, "run500": run500, "to_target": to_target,
            "presets": presets, "large": large, "oom": oom, "compile": compile_net}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--quick", action="store_true", help="toy sizes: a dry run of the code")
    ap.add_argument("--only", nargs="*", choices=list(SECTIONS), help="these sections only")
    ap.parse_args(namespace=ARGS)
    warnings.filterwarnings("ignore", message="Using a target size")  # batch-2 timing
    if ARGS.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA device")
    for name in ARGS.only or SECTIONS:
        t0 = time.perf_counter()
        try:
            SECTIONS[name]()
        except Exception as e:  # noqa: BLE001 - report and go on to the next section
            emit(name, error=f"{type(e).__name__}: {e}", trace=traceback.format_exc()[-1500:])
        print(f"# {name}: {time.perf_counter() - t0:.1f} s", flush=True)


if __name__ == "__main__":
    main()
