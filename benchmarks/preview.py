"""Time from request to first live preview: what an artist waits before there is
something to look at. Draft preset, 512 px output, through a warm daemon on 127.0.0.1.

  python -m benchmarks.preview [--size 512] [--content 1536x1024] [--repeats 3] [--whole]

The daemon runs as a subprocess with seeded random weights (the network's cost does not
depend on the weights' values). Each run is cancelled once its first preview arrives.
"cold style" runs use a style image the daemon has not seen (its targets are computed
first); "cached style" runs reuse one. --whole also runs the request to its end once.
Timings are medians.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import photo_like, texture
from impasto import imagecodec
from impasto.client import Client
from impasto.errors import CANCELLED, ImpastoError
from impasto.protocol import Progress, StyleRef, Stylize

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.helpers import DaemonProcess, make_env  # noqa: E402


def first_preview(c: Client, req: Stylize) -> tuple[float, float]:
    """Seconds to the first progress event and to the first preview."""
    marks: dict[str, float] = {}
    t0 = time.perf_counter()

    def on_progress(p: Progress) -> None:
        marks.setdefault("progress", time.perf_counter())
        if p.preview is not None:
            marks.setdefault("preview", time.perf_counter())

    try:
        c.stylize(req, on_progress=on_progress, should_cancel=lambda: "preview" in marks)
    except ImpastoError as e:
        if e.code != CANCELLED:
            raise
    return marks["progress"] - t0, marks["preview"] - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--content", default="1536x1024")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--whole", action="store_true", help="also run one request to its end")
    args = ap.parse_args()
    w, h = (int(v) for v in args.content.split("x"))
    content = imagecodec.to_ref(photo_like(w, h))
    options = {"preset": "draft", "size": args.size, "seed": 0}
    preview = {"max_side": 256, "interval_s": 1.0}

    with tempfile.TemporaryDirectory() as tmp:
        # This process is the daemon's client: it uses the daemon's keyring.
        os.environ.update(make_env(Path(tmp)))
        d = DaemonProcess(Path(tmp)).wait_ready()
        try:
            with Client(d.address, timeout=60) as c:
                def request(style_seed: int) -> Stylize:
                    return Stylize(content=content, options=options, preview=preview,
                                   styles=[StyleRef(image=imagecodec.to_ref(texture(256, 256, style_seed)))])

                first_preview(c, request(100))  # warm-up: first run of the process
                cold = [first_preview(c, request(200 + i)) for i in range(args.repeats)]
                cached = [first_preview(c, request(100)) for _ in range(args.repeats)]
                whole = None
                if args.whole:
                    t0 = time.perf_counter()
                    c.stylize(request(100))
                    whole = time.perf_counter() - t0
        except Exception:
            print(d.output()[-3000:], file=sys.stderr)
            raise
        finally:
            d.stop()
    print(f"draft, {args.size} px output from a {w}x{h} photo, previews of 256 px:")
    for label, runs in (("cold style", cold), ("cached style", cached)):
        firsts = [y for _, y in runs]
        print(f"  {label + ':':14s}first progress {statistics.median(x for x, _ in runs):.2f} s, "
              f"first preview median {statistics.median(firsts):.2f} s "
              f"(min {min(firsts):.2f}, max {max(firsts):.2f}; {len(firsts)} runs)")
    if whole is not None:
        print(f"  whole run (cached style): {whole:.1f} s")


if __name__ == "__main__":
    main()
