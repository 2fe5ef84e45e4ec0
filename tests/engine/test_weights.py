"""Loading VGG19 weights from files in the real formats, written here with random values."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from impasto.engine import weights as W
from impasto.errors import WeightsUnavailable


def test_torchvision_file_loads_with_its_values(weights_files: dict[str, Path], tmp_path: Path) -> None:
    w = W.load(str(weights_files["torchvision"]), cache=tmp_path / "c")
    assert w.flavour == "torchvision"  # known published file name
    state = torch.load(weights_files["torchvision"], weights_only=True)
    assert torch.equal(w.features[0].weight, state["features.0.weight"])
    assert torch.equal(w.features[34].bias, state["features.34.bias"])


def test_caffe_file_by_name_and_by_prefix(weights_files: dict[str, Path], tmp_path: Path) -> None:
    by_name = W.load(str(weights_files["caffe"]), cache=tmp_path / "c")
    assert by_name.flavour == "caffe"
    renamed = tmp_path / "my-vgg.pth"
    renamed.write_bytes(weights_files["caffe"].read_bytes())
    assert W.load(f"caffe:{renamed}", cache=tmp_path / "c").flavour == "caffe"
    # An unknown name without a prefix is taken as torchvision, with a warning.
    assert W.load(str(renamed), cache=tmp_path / "c2").flavour == "torchvision"


def test_compact_cache_written_and_used(weights_files: dict[str, Path], tmp_path: Path) -> None:
    cache = tmp_path / "c"
    first = W.load(str(weights_files["torchvision"]), cache=cache)
    compact = list(cache.glob("vgg19-features-*.pt"))
    assert len(compact) == 1
    # features only: far smaller than the 548 MB whole model
    assert compact[0].stat().st_size < weights_files["torchvision"].stat().st_size / 4
    again = W.load(str(weights_files["torchvision"]), cache=cache)
    assert torch.equal(first.features[2].weight, again.features[2].weight)
    # "auto" finds the compact cache with no other source
    auto = W.load("auto", cache=cache)
    assert auto.flavour == "torchvision"
    assert torch.equal(auto.features[2].weight, first.features[2].weight)


def test_torch_hub_cache_file_is_used_by_torchvision_spec(weights_files: dict[str, Path],
                                                          tmp_path: Path) -> None:
    hub = W.hub_checkpoint_dir()
    hub.mkdir(parents=True, exist_ok=True)
    (hub / "vgg19-dcbb9e9d.pth").symlink_to(weights_files["torchvision"])
    w = W.load("torchvision", cache=tmp_path / "c")
    assert w.flavour == "torchvision" and "vgg19-dcbb9e9d.pth" in w.source


def test_no_weights_no_network_says_how_to_get_them(tmp_path: Path) -> None:
    with pytest.raises(WeightsUnavailable) as e:
        W.load("auto", cache=tmp_path / "empty")
    text = str(e.value)
    assert "impasto weights fetch" in text and "caffe:" in text and "--weights random" in text


def test_never_random_unless_asked(tmp_path: Path) -> None:
    with pytest.raises(WeightsUnavailable):
        W.load("torchvision", cache=tmp_path / "empty")
    assert W.load("random").flavour == "random"
    a, b = W.load("random:3"), W.load("random:3")
    assert torch.equal(a.features[0].weight, b.features[0].weight)
    assert not torch.equal(a.features[0].weight, W.load("random:4").features[0].weight)


def test_missing_and_corrupt_files(tmp_path: Path) -> None:
    with pytest.raises(WeightsUnavailable, match="does not exist"):
        W.load(str(tmp_path / "nope.pth"), cache=tmp_path / "c")
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsUnavailable, match="cannot read"):
        W.load(str(bad), cache=tmp_path / "c")
    wrong = tmp_path / "wrong.pth"
    torch.save({"features.0.weight": torch.zeros(3)}, wrong)
    with pytest.raises(WeightsUnavailable, match="does not match"):
        W.load(str(wrong), cache=tmp_path / "c")
