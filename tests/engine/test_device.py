"""device.py: what it detects here, and its choices for every kind of device. Kinds this
machine lacks (CUDA, ROCm, XPU, MPS, CPUs with other vector units) are built through the
capability override (DeviceCaps.fake, IMPASTO_FAKE_CPU_FLAGS), which every description
names as such."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from impasto.engine.device import FAKE_CPU_FLAGS_ENV, Device, DeviceCaps, cpu_units, detect
from impasto.engine.transfer import Engine, StyleInput
from impasto.engine.weights import random_weights
from impasto.errors import ImpastoError
from impasto.options import EngineOptions
from tests.helpers import gradient_image, run_cli, same_result, stripes_image


def _flags() -> set[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


HAS_BF16 = bool(_flags() & {"avx512_bf16", "amx_bf16"})
GiB = 2**30


def test_detects_this_cpu_and_names_its_units() -> None:
    caps = detect("cpu")
    assert caps.kind == "cpu" and not caps.override and caps.cores >= 1
    flags = _flags()
    if flags:
        assert caps.units == cpu_units(flags) | (caps.units & {"neon_bf16"})
    d = Device(caps)
    text = d.describe()
    assert text.startswith("cpu (") and "auto chose" in text
    for unit in caps.units:
        assert unit in text
    total, used = d.memory()
    assert total and total > used > 0  # host memory and this process's resident set


def test_fake_cpu_flags_without_bf16_keep_auto_fp32(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(FAKE_CPU_FLAGS_ENV, "sse4_2,avx2,avx512f")
    d = Device.select("cpu")
    assert d.caps.override and d.caps.units == {"avx2", "avx512"}
    assert d.precision == "fp32" and not d.channels_last
    assert "capability override" in d.describe() and "no bf16 units" in d.reason
    # bf16 stays selectable, and says it is emulated
    assert "emulated" in Device.select("cpu", "bf16").reason


@pytest.mark.parametrize("flags", ["avx512f,avx512_bf16", "amx_bf16,amx_tile"])
def test_fake_cpu_with_bf16_units_picks_bf16(flags: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(FAKE_CPU_FLAGS_ENV, flags)
    d = Device.select("cpu")
    assert d.precision == "bf16" and d.channels_last and d.conv_dtype is torch.bfloat16
    assert "native bf16" in d.reason
    with pytest.raises(ImpastoError, match="tf32 is not available on cpu"):
        Device.select("cpu", "tf32")


def test_arm_cpu_units() -> None:
    assert cpu_units({"fp", "asimd"}) == {"neon"}
    assert Device(DeviceCaps.fake("cpu", units=frozenset({"neon"}))).precision == "fp32"


@pytest.mark.parametrize(("caps", "auto", "graphs", "choices"), [
    (DeviceCaps.fake("cuda", index=0, capability=(9, 0), memory_total=80 * GiB), "tf32", True,
     ("fp32", "tf32", "bf16")),
    (DeviceCaps.fake("cuda", index=0, capability=(7, 5), memory_total=16 * GiB), "fp32", True,
     ("fp32", "tf32", "bf16")),
    (DeviceCaps.fake("cuda", index=0, backend="rocm", name="AMD Radeon RX 7900 XTX",
                     memory_total=24 * GiB), "fp32", True, ("fp32", "tf32", "bf16")),
    (DeviceCaps.fake("xpu", index=0, name="Intel Arc A770", memory_total=16 * GiB), "fp32",
     False, ("fp32", "bf16")),
    (DeviceCaps.fake("mps", name="Apple M2", memory_total=16 * GiB), "fp32", False,
     ("fp32", "bf16")),
])
def test_choices_for_each_gpu_kind(caps: DeviceCaps, auto: str, graphs: bool,
                                   choices: tuple[str, ...]) -> None:
    d = Device(caps)
    assert d.precision == auto and d.cuda_graphs is graphs and d.precisions == choices
    assert d.channels_last is (caps.kind == "cuda")
    text = d.describe()
    assert "capability override" in text and caps.name in text
    if caps.backend == "rocm":
        assert "ROCm" in text
    # the tile threshold follows the memory: 80% of it, less 2 GiB, at 2.5 GiB per MP
    expect = int((0.8 * caps.memory_total - 2 * GiB) / (2.5 * GiB) * 1e6)
    assert d.tile_threshold() == max(512 * 512, expect)
    for p in choices:
        assert Device(caps, p).precision == p
    if "tf32" not in choices:
        with pytest.raises(ImpastoError, match="not available"):
            Device(caps, "tf32")


def test_cpu_tile_threshold_and_threads() -> None:
    d = Device(DeviceCaps.fake("cpu", cores=3, memory_total=24 * GiB))
    assert d.tile_threshold() == 1536 * 1536 and d.threads() == 3


def test_out_of_memory_is_recognised_on_every_kind() -> None:
    assert Device.is_oom(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate"))
    assert Device.is_oom(MemoryError())
    assert Device.is_oom(RuntimeError("MPS backend out of memory (MPS allocated: 1 GB)"))
    assert Device.is_oom(RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: "
                                      "can't allocate memory: you tried to allocate 1 bytes"))
    assert Device.is_oom(RuntimeError("XPU out of memory. Tried to allocate 2.00 GiB"))
    assert not Device.is_oom(RuntimeError("shape mismatch"))
    assert not Device.is_oom(ValueError("out of memory"))


@pytest.mark.parametrize("name", ["gpu", "cuda:x", "cpu:1", "tpu"])
def test_unknown_devices_are_refused(name: str) -> None:
    with pytest.raises(ImpastoError):
        detect(name)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
@pytest.mark.parametrize("name", ["cuda", "cuda:1", "xpu"])
def test_absent_devices_are_refused(name: str) -> None:
    if name == "xpu" and getattr(torch, "xpu", None) and torch.xpu.is_available():
        pytest.skip("this machine has an XPU")
    with pytest.raises(ImpastoError, match="not available on this machine"):
        detect(name)


def _small_run(engine: Engine, seed: int = 3):
    return engine.run(gradient_image(64, 48), [StyleInput(stripes_image())],
                      EngineOptions(size=64, scales=1, iterations=6, seed=seed, init="noise"))


def test_engine_on_a_cpu_without_bf16_runs_fp32(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(FAKE_CPU_FLAGS_ENV, "avx2")
    engine = Engine(random_weights(0), "cpu")
    assert engine.precision == "fp32" and not engine.channels_last
    info = engine.device_info()
    assert info["precision"] == "fp32" and info["override"]
    out = _small_run(engine)
    assert out.evaluations == 6


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_cpu_runs_with_the_same_seed_are_identical(precision: str) -> None:
    engine = Engine(random_weights(0), "cpu", precision=precision)
    a, b = _small_run(engine), _small_run(engine)
    assert same_result(a.image, b.image) and a.history == b.history
    assert engine.precision == precision


@pytest.mark.skipif(not HAS_BF16, reason="this CPU has no bf16 units")
def test_this_cpu_picks_bf16_and_the_cli_says_so(content_png: Path, style_png: Path,
                                                 tmp_path: Path, env: dict[str, str]) -> None:
    engine = Engine(random_weights(0), "cpu")
    assert engine.precision == "bf16" and engine.channels_last
    assert "auto chose bf16" in engine.device_info()["description"]
    r = run_cli(["stylize", str(content_png), "--style", str(style_png), "-o",
                 str(tmp_path / "o.png"), "--weights", "random", "--local", "--json",
                 "--size", "64", "--scales", "1", "--iterations", "3"], env)
    assert r.returncode == 0, r.stderr
    final = json.loads(r.stdout.splitlines()[-1])
    assert final["precision"] == "bf16"
    assert "auto chose bf16 because the CPU has native bf16" in final["device_detail"]


def test_the_cli_on_a_cpu_without_bf16_says_fp32(content_png: Path, style_png: Path,
                                                 tmp_path: Path, env: dict[str, str]) -> None:
    r = run_cli(["stylize", str(content_png), "--style", str(style_png), "-o",
                 str(tmp_path / "o.png"), "--weights", "random", "--local", "--json",
                 "--size", "64", "--scales", "1", "--iterations", "3"],
                {**env, FAKE_CPU_FLAGS_ENV: "avx2,fma"})
    assert r.returncode == 0, r.stderr
    final = json.loads(r.stdout.splitlines()[-1])
    assert final["precision"] == "fp32"
    assert final["device"] == "cpu"
    assert "capability override" in final["device_detail"] and "auto chose fp32" in final["device_detail"]

