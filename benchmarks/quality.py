"""How stylized is a result? Measured apart from the engine's own objective.

The measure uses torchvision's own VGG19 module (not impasto's VGGFeatures), loads the
weights file itself, does its own preprocessing per flavour and computes Gram matrices
in float64 numpy. It reports distances relative to the target, as Frobenius norms
(the engine minimises squared, mean-normalised terms):

  style distance   mean over relu1_1..relu5_1 of ||G(x) - G(style)|| / ||G(style)||
  content distance ||F(x) - F(y)|| / ||F(content image)|| at relu4_2

A result is "clearly stylized" when its style distance is at most 30% of the content
image's own, while at relu4_2 it is still nearer the content image than the style
image (resized to the content's size).

    python -m benchmarks.quality [--size 128] [--json]

runs the engine at default settings on three weight files written with seeded random
values in the real formats (torchvision, Caffe-converted, and impasto's random init)
and prints the ratios.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

# torchvision's `features` indices of the layers the measure reads.
LAYERS = {"relu1_1": 1, "relu2_1": 6, "relu3_1": 11, "relu4_1": 20, "relu4_2": 22, "relu5_1": 29}
STYLE = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
CONTENT = "relu4_2"


class IndependentVGG:
    def __init__(self, weights_file: Path, flavour: str) -> None:
        from torchvision.models import vgg19

        model = vgg19(weights=None)
        state = torch.load(weights_file, map_location="cpu", weights_only=True)
        model.load_state_dict(state, strict=False)
        self.features = model.features[: max(LAYERS.values()) + 1].eval().double()
        self.flavour = flavour

    def _input(self, img: Image.Image) -> torch.Tensor:
        a = np.asarray(img.convert("RGB"), dtype=np.float64) / 255.0
        if self.flavour == "caffe":
            a = a[..., ::-1] * 255.0 - np.array([103.939, 116.779, 123.68])
        else:
            a = (a - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
        return torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1)))[None]

    def activations(self, img: Image.Image) -> dict[str, np.ndarray]:
        return collect(self.features, self._input(img), LAYERS)


def collect(features: torch.nn.Sequential, x: torch.Tensor,
            layers: dict[str, int]) -> dict[str, np.ndarray]:
    """The named layers' activations (channels x pixels) of one image through `features`."""
    out: dict[str, np.ndarray] = {}
    wanted = {i: n for n, i in layers.items()}
    with torch.no_grad():
        for i, layer in enumerate(features):
            x = layer(x)
            if i in wanted:
                out[wanted[i]] = x[0].reshape(x.shape[1], -1).numpy()
    return out


def gram(f: np.ndarray) -> np.ndarray:
    return f @ f.T / f.size


def style_distance(a: dict[str, np.ndarray], s: dict[str, np.ndarray]) -> float:
    return float(np.mean([np.linalg.norm(gram(a[n]) - gram(s[n])) / np.linalg.norm(gram(s[n]))
                          for n in STYLE]))


def content_distance(a: dict[str, np.ndarray], b: dict[str, np.ndarray],
                     unit: dict[str, np.ndarray]) -> float:
    """||F(a) - F(b)|| at relu4_2, in units of ||F(unit)|| (one unit for every comparison)."""
    return float(np.linalg.norm(a[CONTENT] - b[CONTENT]) / np.linalg.norm(unit[CONTENT]))


@dataclass
class Verdict:
    style_ratio: float  # style distance of the output / of the content image
    content_to_content: float  # relu4_2 distance, output to content image
    content_to_style: float  # relu4_2 distance, output to the style image (same unit)

    @property
    def stylized(self) -> bool:
        return self.style_ratio <= 0.3 and self.content_to_content < self.content_to_style


def judge(vgg: IndependentVGG, output: Image.Image, content: Image.Image,
          style: Image.Image) -> Verdict:
    """Compares at the output's size: content and style images are resized to it (the
    style image keeping its aspect, long side equal), as the engine sees them."""
    size = output.size
    c = vgg.activations(content.convert("RGB").resize(size, Image.Resampling.LANCZOS))
    scale = max(size) / max(style.size)
    s_img = style.convert("RGB").resize((max(1, round(style.width * scale)),
                                         max(1, round(style.height * scale))),
                                        Image.Resampling.LANCZOS)
    s = vgg.activations(s_img)
    s_as_content = vgg.activations(style.convert("RGB").resize(size, Image.Resampling.LANCZOS))
    o = vgg.activations(output)
    return Verdict(style_distance(o, s) / style_distance(c, s), content_distance(o, c, c),
                   content_distance(o, s_as_content, c))


def write_weight_files(root: Path) -> dict[str, tuple[Path, str, str]]:
    """flavour -> (file, engine weights spec, preprocessing), seeded random values."""
    from torchvision.models import vgg19

    from impasto.engine.weights import random_weights

    out = {}
    for name, seed in (("vgg19-dcbb9e9d.pth", 1), ("vgg19-d01eb7cb.pth", 2)):
        torch.manual_seed(seed)
        torch.save(vgg19(weights=None).state_dict(), root / name)
    out["torchvision"] = (root / "vgg19-dcbb9e9d.pth", str(root / "vgg19-dcbb9e9d.pth"),
                          "torchvision")
    out["caffe"] = (root / "vgg19-d01eb7cb.pth", "caffe:" + str(root / "vgg19-d01eb7cb.pth"),
                    "caffe")
    rnd = root / "random-0.pth"
    torch.save({f"features.{k}": v for k, v in random_weights(0).features.state_dict().items()},
               rnd)
    out["random"] = (rnd, "random", "torchvision")
    return out


def sample_images(size: int = 128) -> tuple[Image.Image, Image.Image]:
    """A content picture with shapes at several scales; a style of coloured strokes."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:size, 0:size] / size
    content = np.stack([0.3 + 0.5 * xx, 0.4 + 0.3 * yy, 0.6 - 0.3 * xx * yy], -1)
    content[(xx - 0.3) ** 2 + (yy - 0.3) ** 2 < 0.03] = [0.9, 0.75, 0.2]  # a sun
    hills = yy > 0.6 + 0.1 * np.sin(xx * 9)
    content[hills] = [0.2, 0.45, 0.2]
    for i in range(4):  # houses with windows
        x0, x1 = 0.1 + i * 0.22, 0.25 + i * 0.22
        house = (xx > x0) & (xx < x1) & (yy > 0.55) & (yy < 0.85)
        content[house] = [0.7, 0.3 + 0.1 * i, 0.25]
        windows = house & ((xx * size // 4) % 2 == 0) & ((yy * size // 4) % 3 == 0)
        content[windows] = [0.95, 0.95, 0.7]
    style = 0.5 + 0.25 * rng.standard_normal((size, size, 3)).clip(-1, 1)
    for _ in range(150):
        x0, y0 = rng.integers(0, size, 2)
        color = rng.random(3)
        length, width = rng.integers(size // 8, size // 3), rng.integers(2, 5)
        angle = rng.random() * np.pi
        t = np.linspace(0, 1, length)
        px = (x0 + np.cos(angle) * t * length).astype(int) % size
        py = (y0 + np.sin(angle) * t * length).astype(int) % size
        for d in range(width):
            style[(py + d) % size, px] = color
    to = lambda a: Image.fromarray((np.clip(a, 0, 1) * 255).astype(np.uint8))  # noqa: E731
    return to(content), to(style)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--style-loss", default="gram", choices=("gram", "wasserstein"))
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    from impasto.engine.transfer import Engine, StyleInput
    from impasto.engine.weights import load
    from impasto.options import EngineOptions

    content, style = sample_images(args.size)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for flavour, (file, spec, prep) in write_weight_files(Path(tmp)).items():
            engine = Engine(load(spec, cache=Path(tmp) / "cache"), "cpu")
            out = engine.run(content, [StyleInput(style)],
                             EngineOptions(size=args.size, seed=0, style_loss=args.style_loss))
            v = judge(IndependentVGG(file, prep), out.image, content, style)
            rows.append({"flavour": flavour, "style_ratio": round(v.style_ratio, 3),
                         "content_to_content": round(v.content_to_content, 3),
                         "content_to_style": round(v.content_to_style, 3),
                         "stylized": v.stylized, "seconds": round(out.elapsed_s, 1)})
    if args.json:
        print(json.dumps(rows))
    else:
        print(f"{'flavour':12} {'style/content-image':>20} {'relu4_2 to content':>19} "
              f"{'relu4_2 to style':>17}  stylized")
        for r in rows:
            print(f"{r['flavour']:12} {r['style_ratio']:20.3f} {r['content_to_content']:19.3f} "
                  f"{r['content_to_style']:17.3f}  {r['stylized']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
