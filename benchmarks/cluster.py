"""The Ray back end against the embedded one, measured in the same run:

- throughput (jobs per minute) of a batch of small jobs, sent at once, on the embedded
  daemon, on `--cluster local --workers 1` and on `--cluster local --workers 2`;
- the overhead Ray adds to one job on an idle daemon: send to first optimisation
  progress, and total (medians).

  python -m benchmarks.cluster [--jobs 12] [--size 128] [--evals 20] [--repeats 3]

Every worker computes with `--threads` torch threads (default 1: what Ray gives a
worker of one CPU), the embedded daemon too (OMP_NUM_THREADS), so the comparison is of
the back ends, not of thread counts. Seeded random weights, daemons on 127.0.0.1.
On a machine with fewer free cores than workers, the 2-worker figure measures the
cores, not the pool: say how many cores were idle when quoting it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from benchmarks.common import photo_like, texture
from impasto import imagecodec
from impasto.client import Client
from impasto.protocol import Priority, Progress, StyleRef, Stylize

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.helpers import DaemonProcess, make_env  # noqa: E402


def start(root: Path, threads: int, extra: list[str]) -> DaemonProcess:
    env = make_env(root)
    env["OMP_NUM_THREADS"] = str(threads)
    env["TMPDIR"] = str(root)  # Ray's session folder, short and removed with root
    d = DaemonProcess(root, env=env, extra=extra).wait_ready()
    want = int(extra[extra.index("--workers") + 1]) if "--workers" in extra else 1
    with client(d) as c:  # a cluster is ready with its first worker; wait for all
        while sum(w["state"] == "idle" for w in c.status().workers) < want:
            time.sleep(0.2)
    return d


def client(d: DaemonProcess, timeout: float = 60) -> Client:
    return Client(d.address, timeout=timeout, keys_dir=Path(d.env["IMPASTO_CONFIG_DIR"]) / "keys")


def batch(d: DaemonProcess, req: Stylize, jobs: int) -> float:
    """Seconds for `jobs` jobs sent at once (one client each, as watch folders do)."""
    errors: list[BaseException] = []

    def one() -> None:
        try:
            with client(d) as c:
                c.stylize(req)
        except BaseException as e:  # noqa: BLE001 - reported after the batch
            errors.append(e)

    threads = [threading.Thread(target=one) for _ in range(jobs)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return time.perf_counter() - t0


def single(d: DaemonProcess, req: Stylize, repeats: int) -> tuple[float, float]:
    """Median send-to-first-optimize-progress and total seconds of one job at a time."""
    first, total = [], []
    with client(d) as c:
        for _ in range(repeats):
            marks: dict[str, float] = {}

            def on_progress(p: Progress, marks: dict[str, float] = marks) -> None:
                if p.stage == "optimize":
                    marks.setdefault("first", time.perf_counter())

            t0 = time.perf_counter()
            c.stylize(req, on_progress=on_progress)
            total.append(time.perf_counter() - t0)
            first.append(marks["first"] - t0)
    return statistics.median(first), statistics.median(total)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=12)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--evals", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    options = {"size": args.size, "evaluations": [args.evals], "seed": 0, "tolerance": 0.0}
    req = Stylize(content=imagecodec.to_ref(photo_like(320, 240)),
                  styles=[StyleRef(image=imagecodec.to_ref(texture(256, 256)))],
                  options=options, priority=Priority.BATCH)
    cpus = os.cpu_count() or 1
    load = os.getloadavg()[0]
    print(f"{cpus} CPUs, load {load:.1f}; {args.jobs} jobs of {args.size} px x {args.evals} "
          f"evaluations; {args.threads} torch thread(s) per worker")
    backends = {"embedded": [], "ray-1": ["--cluster", "local", "--workers", "1",
                                          "--worker-cpus", str(args.threads)],
                "ray-2": ["--cluster", "local", "--workers", "2",
                          "--worker-cpus", str(args.threads)]}
    out: dict[str, dict[str, float]] = {}
    for name, extra in backends.items():
        root = Path(tempfile.mkdtemp(prefix="bc", dir="/tmp"))
        try:
            d = start(root, args.threads, extra)
            try:
                with client(d) as c:
                    c.stylize(req)  # warm-up: style targets cached, code paths loaded
                first, total = single(d, req, args.repeats)
                seconds = batch(d, req, args.jobs)
            finally:
                d.stop()
        finally:
            shutil.rmtree(root, ignore_errors=True)
        out[name] = {"jobs_per_min": round(args.jobs / seconds * 60, 1),
                     "first_progress_s": round(first, 3), "total_s": round(total, 3)}
        print(f"{name:9} {out[name]['jobs_per_min']:7.1f} jobs/min; one job: first progress "
              f"{first * 1000:6.0f} ms, total {total * 1000:6.0f} ms", flush=True)
    e, r1, r2 = out["embedded"], out["ray-1"], out["ray-2"]
    ratios = {
        "ray2_vs_ray1_throughput": round(r2["jobs_per_min"] / r1["jobs_per_min"], 2),
        "ray1_vs_embedded_throughput": round(r1["jobs_per_min"] / e["jobs_per_min"], 2),
        "ray2_vs_embedded_throughput": round(r2["jobs_per_min"] / e["jobs_per_min"], 2),
        "ray_first_progress_overhead_ms": round((r1["first_progress_s"]
                                                 - e["first_progress_s"]) * 1000),
        "ray_total_overhead_ms": round((r1["total_s"] - e["total_s"]) * 1000),
    }
    print(json.dumps({"results": out, "ratios": ratios}, indent=1))


if __name__ == "__main__":
    main()
