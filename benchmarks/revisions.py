"""This tree against another revision: same run, same machine, interleaved.

For refactors that must not change behaviour or speed (the composable objective):
each round runs one stylization in a fresh process per tree (the other revision checked
out in a temporary git worktree), alternating, and reports the best time of each and
their ratio, and how far the loss histories differ (0 means the same steps).

    python -m benchmarks.revisions --base f0fb0ce [--size 256] [--evals 30] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, sys, time
sys.path[:0] = [sys.argv[1] + "/daemon", sys.argv[1] + "/shared", sys.argv[1] + "/plugin", sys.argv[1]]
import torch
from impasto.engine.transfer import Engine, StyleInput
from impasto.engine.weights import random_weights
from impasto.options import EngineOptions
from benchmarks.quality import sample_images
size, evals, precision, tiles = int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5] == "1"
content, style = sample_images(size)
engine = Engine(random_weights(0), "cpu", precision=precision,
                tile_pixels=(size * size) // 3 if tiles else None, tile_size=128)
opts = EngineOptions(size=size, scales=1, iterations=evals, seed=0, tolerance=0.0)
engine.run(content, [StyleInput(style)], EngineOptions(size=64, scales=1, iterations=2, seed=0))
t0 = time.perf_counter()
out = engine.run(content, [StyleInput(style)], opts)
print(json.dumps({"s": time.perf_counter() - t0, "history": out.history,
                  "engine": engine.precision}))
"""


def run(tree: Path, size: int, evals: int, precision: str, tiles: bool) -> dict:
    r = subprocess.run([sys.executable, "-c", CHILD, str(tree), str(size), str(evals), precision,
                        "1" if tiles else "0"], capture_output=True, text=True, check=False)
    if r.returncode != 0:
        raise SystemExit(r.stderr[-2000:])
    return json.loads(r.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", required=True, help="the git revision to compare with")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--evals", type=int, default=30)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--precision", default="fp32")
    ap.add_argument("--tiles", action="store_true", help="evaluate in tiles (about 3 of them)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "base"
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(base),
                        args.base], check=True, capture_output=True)
        try:
            times: dict[str, list[float]] = {"base": [], "this": []}
            hist: dict[str, list[float]] = {}
            for _ in range(args.rounds):
                for name, tree in (("base", base), ("this", REPO)):
                    r = run(tree, args.size, args.evals, args.precision, args.tiles)
                    times[name].append(r["s"])
                    hist[name] = r["history"]
        finally:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(base)],
                           check=False, capture_output=True)
    a, b = hist["base"], hist["this"]
    diff = max(abs(x - y) / max(abs(x), 1e-30) for x, y in zip(a, b)) if len(a) == len(b) else None
    row = {"base": args.base, "size": args.size, "evals": args.evals, "precision": args.precision,
           "tiles": args.tiles, "base_s": round(min(times["base"]), 3),
           "this_s": round(min(times["this"]), 3),
           "ratio": round(min(times["this"]) / min(times["base"]), 3),
           "evaluations": [len(a), len(b)], "history_max_rel_diff": diff}
    if args.json:
        print(json.dumps(row))
    else:
        print(f"{args.size} px, {args.evals} evaluations, {args.precision}"
              f"{', tiled' if args.tiles else ''}: base {row['base_s']} s, this {row['this_s']} s "
              f"(ratio {row['ratio']}); loss histories differ by at most {diff:.2e} (relative)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
