"""VGG19 feature extractor, truncated after the deepest layer in use."""

from __future__ import annotations

import torch
from torch import nn

from impasto.options import VGG19_LAYERS

# torchvision's configuration "E"; module indices match torchvision's `features`, so a
# torchvision or Caffe-converted state dict loads with its own keys.
_CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M",
        512, 512, 512, 512, "M", 512, 512, 512, 512, "M")

# Each weight flavour expects its own input convention (the flavour decides it).
_TORCHVISION_MEAN = (0.485, 0.456, 0.406)
_TORCHVISION_STD = (0.229, 0.224, 0.225)
_CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)


def make_features() -> nn.Sequential:
    layers: list[nn.Module] = []
    in_ch = 3
    for v in _CFG:
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(in_ch, int(v), 3, padding=1), nn.ReLU(inplace=False)]
            in_ch = int(v)
    return nn.Sequential(*layers)


class Preprocess(nn.Module):
    """[0, 1] RGB in, whatever the weights were trained on out."""

    def __init__(self, flavour: str) -> None:
        super().__init__()
        if flavour == "caffe":
            # Caffe VGG: BGR, 0-255, mean-subtracted, no std scaling.
            self.bgr = True
            self.register_buffer("scale", torch.full((1, 3, 1, 1), 255.0))
            self.register_buffer("mean", torch.tensor(_CAFFE_MEAN_BGR).view(1, 3, 1, 1))
        else:  # torchvision and random weights
            self.bgr = False
            self.register_buffer("scale", 1.0 / torch.tensor(_TORCHVISION_STD).view(1, 3, 1, 1))
            mean = torch.tensor(_TORCHVISION_MEAN) / torch.tensor(_TORCHVISION_STD)
            self.register_buffer("mean", mean.view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.bgr:
            x = x.flip(1)
        return x * self.scale - self.mean


class VGGFeatures(nn.Module):
    """Runs VGG19 up to the deepest requested layer and returns those activations."""

    def __init__(self, features: nn.Sequential, flavour: str, layers: list[str],
                 pooling: str = "max", conv_dtype: torch.dtype | None = None,
                 channels_last: bool = False) -> None:
        super().__init__()
        # conv_dtype: the dtype the layers hold their weights in and run in (bf16), when
        # it is not the image's; the returned activations are then float32, so that
        # Grams and losses keep full precision. This is what bf16 autocast computes (the
        # same kernels on the same rounded weights and inputs), without autocast's cast
        # of every weight at every call: it caches no cast of a tensor that needs no
        # gradient, and those casts were a fixed cost in each evaluation (docs/engine.md).
        self.conv_dtype = conv_dtype
        self.channels_last = channels_last
        self.indices = {name: VGG19_LAYERS.index(name) for name in layers}
        last = max(self.indices.values())
        mods: list[nn.Module] = []
        for m in list(features)[: last + 1]:
            if pooling == "avg" and isinstance(m, nn.MaxPool2d):
                # Gatys et al. found average pooling gives smoother gradients/results.
                m = nn.AvgPool2d(2, 2)
            mods.append(m)
        self.layers = nn.Sequential(*mods)
        # The smallest side an input may have so that the deepest layer in use still has
        # a pixel: each 2x2 pooling before it halves the map (rounding down).
        self.min_side = 2 ** sum(isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)) for m in mods)
        self.preprocess = Preprocess(flavour)
        self.wanted = {i: name for name, i in self.indices.items()}
        self.requires_grad_(False)
        self.eval()

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = {}
        x = self.preprocess(x)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        if self.conv_dtype is not None:
            x = x.to(self.conv_dtype)
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i in self.wanted:
                out[self.wanted[i]] = x
        if self.conv_dtype is not None:
            out = {k: v.float() for k, v in out.items()}
        return out
