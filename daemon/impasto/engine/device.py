"""The one place that knows the device: what it is, and what the engine does on it.

`detect(name)` names the device (CUDA, including ROCm/HIP builds of torch; Intel XPU;
Apple MPS; the CPU with its vector units) as `DeviceCaps`; `Device(caps)` holds the
policy for that kind: precision choices and the `auto` rule (with its reason), memory
format, CUDA graphs, process-wide cuDNN/TF32 switches, memory total and in use,
out-of-memory detection and recovery, the tile threshold, and the thread count.

Kinds absent from a machine are tested through an explicit override: build a
`DeviceCaps` by hand (`DeviceCaps.fake(...)`) and pass it to `Device`; or, for the CPU
only, set IMPASTO_FAKE_CPU_FLAGS (tests only: a comma-separated flag list that replaces
what /proc/cpuinfo says). Either way the description says "(capability override)".
"""

from __future__ import annotations

import os
import platform
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from impasto.errors import BAD_OPTIONS, ImpastoError
from impasto.portable import memory as portable_memory

KINDS = ("cpu", "cuda", "xpu", "mps")
FAKE_CPU_FLAGS_ENV = "IMPASTO_FAKE_CPU_FLAGS"  # tests only: see the module docstring
# The vector units that matter here, in the order a description names them.
CPU_UNITS = ("neon", "avx2", "avx512", "avx512_bf16", "amx_bf16")


@dataclass(frozen=True)
class DeviceCaps:
    """What the device is; nothing about what to do on it (that is Device)."""

    kind: str  # cpu, cuda, xpu, mps
    index: int | None = None
    name: str = ""  # "NVIDIA H100 80GB HBM3", "Intel(R) Xeon(R) Processor", ...
    backend: str = ""  # cuda, rocm (HIP build of torch), xpu, mps, cpu
    units: frozenset[str] = field(default_factory=frozenset)  # CPU vector units (CPU_UNITS)
    capability: tuple[int, int] | None = None  # CUDA compute capability
    memory_total: int | None = None  # bytes (GPU memory; on a CPU the host's)
    cores: int = 1  # physical cores (CPU); what torch's intra-op threads should use
    override: bool = False  # built by a test, not detected

    @classmethod
    def fake(cls, kind: str, **kw: Any) -> DeviceCaps:
        """A capability override, for tests of kinds this machine lacks."""
        kw.setdefault("backend", kind)
        kw.setdefault("name", f"fake {kind}")
        return cls(kind=kind, override=True, **kw)

    @property
    def torch_device(self) -> torch.device:
        return torch.device(self.kind if self.index is None else f"{self.kind}:{self.index}")

    @property
    def native_bf16(self) -> bool:
        """bf16 arithmetic in hardware (CPU: AVX512-BF16 or AMX; CUDA: Ampere and later)."""
        if self.kind == "cpu":
            return bool(self.units & {"avx512_bf16", "amx_bf16"})
        if self.kind == "cuda":
            return self.backend == "rocm" or (self.capability or (0, 0)) >= (8, 0)
        return self.kind in ("xpu", "mps")

    @property
    def tf32(self) -> bool:
        """TF32 matrix units (NVIDIA Ampere and later; not ROCm builds)."""
        return self.kind == "cuda" and self.backend == "cuda" and (self.capability or (0, 0)) >= (8, 0)


# --- detection -------------------------------------------------------------------------
def cpu_units(flags: set[str] | frozenset[str], machine: str = "") -> frozenset[str]:
    """Vector units from /proc/cpuinfo-style flags (Linux names)."""
    units = set()
    if "avx2" in flags:
        units.add("avx2")
    if "avx512f" in flags:
        units.add("avx512")
    if "avx512_bf16" in flags:
        units.add("avx512_bf16")
    if "amx_bf16" in flags:
        units.add("amx_bf16")
    if "neon" in flags or "asimd" in flags or machine in ("arm64", "aarch64"):
        units.add("neon")
    return frozenset(units)


def _proc_cpuinfo() -> tuple[str, set[str], int]:
    """(model name, flags, physical cores) from /proc/cpuinfo; empty where absent."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "", set(), 0
    name, flags, cores = "", set(), set()
    phys = core = None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if key in ("model name", "Model", "Hardware") and not name:
            name = value
        elif key in ("flags", "Features") and not flags:
            flags = set(value.split())
        elif key == "physical id":
            phys = value
        elif key == "core id":
            core = value
        elif not line.strip() and core is not None:
            cores.add((phys, core))
            phys = core = None
    if core is not None:
        cores.add((phys, core))
    return name, flags, len(cores)


def _sysctl(key: str) -> str:
    try:
        return subprocess.run(["sysctl", "-n", key], capture_output=True, text=True,
                              timeout=2).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def detect_cpu() -> DeviceCaps:
    """The CPU, its vector units and physical cores. IMPASTO_FAKE_CPU_FLAGS (tests only)
    replaces the flags read from the system."""
    machine = platform.machine().lower()
    name, flags, cores = _proc_cpuinfo()
    if sys.platform == "darwin":
        name = name or _sysctl("machdep.cpu.brand_string")
        cores = cores or int(_sysctl("hw.physicalcpu") or 0)
        if _sysctl("hw.optional.arm.FEAT_BF16") == "1":
            flags.add("avx512_bf16" if machine == "x86_64" else "bf16")
    if not flags:  # no /proc/cpuinfo: what torch's dispatcher found
        cap = getattr(torch.backends.cpu, "get_cpu_capability", lambda: "")().lower()
        flags = {"avx2"} if cap == "avx2" else {"avx2", "avx512f"} if cap == "avx512" else set()
    override = False
    fake = os.environ.get(FAKE_CPU_FLAGS_ENV)
    if fake is not None:
        flags, override = {f.strip() for f in fake.split(",") if f.strip()}, True
    units = set(cpu_units(flags, machine))
    if "bf16" in flags and machine in ("arm64", "aarch64"):  # Armv8.6 BF16 (Apple M2+, Graviton 3)
        units.add("neon_bf16")
    return DeviceCaps("cpu", None, name or platform.processor() or machine, "cpu",
                      frozenset(units), None, portable_memory.physical_bytes(),
                      max(1, cores or (os.cpu_count() or 1)), override)


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps and mps.is_available())


def _xpu_available() -> bool:
    xpu = getattr(torch, "xpu", None)
    return bool(xpu and xpu.is_available())


def _gpu_caps(kind: str, index: int) -> DeviceCaps:
    cpu = detect_cpu()
    if kind == "cuda":
        p = torch.cuda.get_device_properties(index)
        backend = "rocm" if getattr(torch.version, "hip", None) else "cuda"
        return DeviceCaps("cuda", index, p.name, backend, cpu.units, (p.major, p.minor),
                          p.total_memory, cpu.cores)
    if kind == "xpu":
        p = torch.xpu.get_device_properties(index)
        return DeviceCaps("xpu", index, p.name, "xpu", cpu.units, None,
                          getattr(p, "total_memory", None), cpu.cores)
    # MPS shares the host's memory; torch tells the recommended working set.
    total = getattr(torch.mps, "recommended_max_memory", lambda: None)()
    return DeviceCaps("mps", None, _sysctl("machdep.cpu.brand_string") or "Apple GPU", "mps",
                      cpu.units, None, total or cpu.memory_total, cpu.cores)


def gpu_count() -> int:
    """GPUs of any kind here (CUDA/ROCm, XPU, MPS counts as one): one Ray worker each."""
    if torch.cuda.is_available():
        return torch.cuda.device_count()
    if _xpu_available():
        return torch.xpu.device_count()
    return 1 if _mps_available() else 0


def detect(name: str = "auto") -> DeviceCaps:
    """The device named (it must exist here), or the best one for "auto": a CUDA or ROCm
    GPU, else an Intel XPU, else Apple's MPS, else the CPU."""
    if name == "auto":
        for kind, ok in (("cuda", torch.cuda.is_available), ("xpu", _xpu_available),
                         ("mps", _mps_available)):
            if ok():
                return _gpu_caps(kind, 0)
        return detect_cpu()
    m = re.fullmatch(r"(cpu|cuda|xpu|mps)(?::(\d+))?", name.strip().lower())
    if not m:
        raise ImpastoError(BAD_OPTIONS, f"unknown device {name!r}; use auto, cpu, cuda, cuda:N "
                           "(NVIDIA or AMD ROCm), xpu, xpu:N (Intel) or mps (Apple)")
    kind, index = m.group(1), int(m.group(2)) if m.group(2) else 0
    count = {"cpu": lambda: 1,
             "cuda": lambda: torch.cuda.device_count() if torch.cuda.is_available() else 0,
             "xpu": lambda: torch.xpu.device_count() if _xpu_available() else 0,
             "mps": lambda: 1 if _mps_available() else 0}[kind]()
    if index >= count or (kind in ("cpu", "mps") and m.group(2) and index):
        raise ImpastoError(BAD_OPTIONS, f"device {name} is not available on this machine; "
                           "use auto (the best one here) or cpu")
    return detect_cpu() if kind == "cpu" else _gpu_caps(kind, index)


# --- policy ----------------------------------------------------------------------------
PRECISIONS_BY_KIND = {
    "cpu": ("fp32", "bf16"),
    "cuda": ("fp32", "tf32", "bf16"),
    "xpu": ("fp32", "bf16"),
    "mps": ("fp32", "bf16"),
}


class Device:
    """What the engine does on one device. Build with `Device.select(name)` (detects)
    or `Device(caps)` (a detected or overridden DeviceCaps)."""

    def __init__(self, caps: DeviceCaps, precision: str = "auto") -> None:
        self.caps = caps
        self.torch = caps.torch_device
        self.kind = caps.kind
        self.precision, self.reason = self._choose(precision)

    @classmethod
    def select(cls, name: str | torch.device = "auto", precision: str = "auto") -> Device:
        if isinstance(name, torch.device):
            name = str(name)
        return cls(detect(name), precision)

    # precision --------------------------------------------------------------------------
    @property
    def precisions(self) -> tuple[str, ...]:
        return PRECISIONS_BY_KIND[self.kind]

    def _choose(self, requested: str) -> tuple[str, str]:
        c = self.caps
        if requested == "auto":
            if c.kind == "cuda" and c.tf32:
                return "tf32", ("auto chose tf32: TF32 tensor cores, 2.5x fp32 at 512 px on an "
                                "H100 for a 0.4% higher objective")
            if c.kind == "cpu" and c.native_bf16:
                have = "amx_bf16" if "amx_bf16" in c.units else "avx512_bf16"
                return "bf16", f"auto chose bf16 because the CPU has native bf16 ({have})"
            if c.kind == "cpu":
                return "fp32", ("auto chose fp32: the CPU has no bf16 units (AVX512-BF16 or "
                                "AMX), where bf16 runs emulated and slower")
            return "fp32", f"auto chose fp32 (reduced precision not measured on {c.backend})"
        if requested not in self.precisions:
            raise ImpastoError(BAD_OPTIONS, f"precision {requested} is not available on "
                               f"{c.kind}; use {', '.join(('auto',) + self.precisions)}")
        why = f"{requested} as asked"
        if requested == "bf16" and c.kind == "cpu" and not c.native_bf16:
            why += " (no bf16 units on this CPU: emulated, slower than fp32)"
        return requested, why

    @property
    def conv_dtype(self) -> torch.dtype | None:
        """The dtype the convolutions run in (as bf16 autocast would run them); None: the
        image's dtype."""
        return torch.bfloat16 if self.precision == "bf16" else None

    # layout, graphs, switches -------------------------------------------------------------
    @property
    def channels_last(self) -> bool:
        """Channels-last: 15% faster GPU evaluations at 256-512 px (H100); on CPUs it
        pays with bf16 (oneDNN's blocked bf16 kernels: 0.84 -> 0.67 s for a 512x384
        pass) and changed fp32 by under 10% either way (issue 6)."""
        if self.kind == "cuda":
            return True
        return self.kind == "cpu" and self.precision == "bf16"

    @property
    def cuda_graphs(self) -> bool:
        """Graph capture applies on CUDA (ROCm builds included: HIP graphs)."""
        return self.kind == "cuda"

    def configure(self) -> None:
        """Process-wide switches (the daemon runs one engine)."""
        if self.kind == "cuda":
            tf32 = self.precision == "tf32"
            torch.backends.cuda.matmul.allow_tf32 = tf32
            torch.backends.cudnn.allow_tf32 = tf32
            # No cuDNN algorithm search: it runs again for every new tensor shape, and a
            # daemon sees new shapes with nearly every job (each scale of each aspect
            # ratio, each tile shape). On an H100 it made a first draft job 8.2 s
            # instead of 0.4 s, and a tiled 4096 px job 17.6 s and 66.8 GiB (trial
            # workspaces) instead of 3.7 s and 4.2 GiB (docs/performance.md).
            torch.backends.cudnn.benchmark = False

    def threads(self) -> int:
        """Intra-op threads: the physical cores (hyperthreads only contend for the same
        vector units)."""
        return self.caps.cores

    def set_threads(self, threads: int | None = None) -> int:
        """torch's intra-op threads: `threads`, else OMP_NUM_THREADS when set, else the
        physical cores. Returns what was set."""
        if threads is None:
            env = os.environ.get("OMP_NUM_THREADS", "")
            threads = int(env) if env.isdigit() and int(env) > 0 else self.threads()
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
        return threads

    # memory -------------------------------------------------------------------------------
    def memory(self) -> tuple[int | None, int]:
        """(total, in use) in bytes: the device's memory and what torch holds of it; on
        the CPU, the host's memory and this process's resident set."""
        if self.caps.override:
            return self.caps.memory_total, 0
        if self.kind == "cuda":
            return self.caps.memory_total, int(torch.cuda.memory_allocated(self.torch))
        if self.kind == "xpu":
            return self.caps.memory_total, int(torch.xpu.memory_allocated(self.torch))
        if self.kind == "mps":
            return self.caps.memory_total, int(torch.mps.current_allocated_memory())
        return self.caps.memory_total, _rss_bytes()

    def free_memory(self) -> int | None:
        if self.caps.override:
            return self.caps.memory_total
        if self.kind == "cuda":
            return int(torch.cuda.mem_get_info(self.torch)[0])
        if self.kind == "xpu" and hasattr(torch.xpu, "mem_get_info"):
            return int(torch.xpu.mem_get_info(self.torch)[0])
        total, used = self.memory()
        return None if total is None else max(0, total - used)

    @staticmethod
    def is_oom(e: BaseException) -> bool:
        """Out of memory on any kind: torch's OutOfMemoryError (CUDA, ROCm, XPU), MPS's
        and the CPU allocator's RuntimeErrors, and Python's MemoryError."""
        if isinstance(e, (torch.OutOfMemoryError, MemoryError)):
            return True
        text = str(e).lower()
        return isinstance(e, RuntimeError) and (
            "out of memory" in text or "can't allocate memory" in text
            or "not enough memory" in text or "mps backend out of memory" in text)

    def recover(self) -> None:
        """Give cached blocks back after an out-of-memory error, so the next job starts
        with the device's memory free."""
        if self.caps.override:
            return
        if self.kind == "cuda":
            torch.cuda.empty_cache()
        elif self.kind == "xpu":
            torch.xpu.empty_cache()
        elif self.kind == "mps":
            torch.mps.empty_cache()

    def tile_threshold(self) -> int:
        """Pixels above which a scale is evaluated in tiles.

        An untiled evaluation needs about 3.2 GB per megapixel on a CPU
        (benchmarks/large.py), so 2.4 MP there (7.5 GB of a 24 GB machine). On a GPU,
        2.3 GiB per megapixel measured (4096 px untiled on an H100 peaked at 39 GiB),
        counted as 2.5 for headroom: whatever fits in 80% of the free memory, less
        2 GiB for the L-BFGS history. Tiles are 2x slower there, and an H100 holds
        16 MP untiled. MPS shares the host's memory: its recommended working set.
        """
        if self.kind == "cpu":
            return 1536 * 1536
        free = self.free_memory()
        if free is None:
            return 1536 * 1536
        return max(512 * 512, int((0.8 * free - 2 * 2**30) / (2.5 * 2**30) * 1e6))

    # naming -------------------------------------------------------------------------------
    def describe(self) -> str:
        """One line: the device, what runs on it, and why, e.g. "cpu (Intel Xeon,
        avx512_bf16, amx_bf16): bf16 convolutions, channels-last; auto chose bf16 because
        the CPU has native bf16 (amx_bf16)"."""
        c = self.caps
        what = [c.name] if c.name else []
        if c.kind == "cpu":
            what += [u for u in CPU_UNITS if u in c.units] or ["no vector units named"]
            what.append(f"{c.cores} core{'s' if c.cores != 1 else ''}")
        elif c.backend == "rocm":
            what.append("ROCm")
        if c.override:
            what.append("capability override")
        arith = {"fp32": "fp32", "tf32": "tf32 tensor cores",
                 "bf16": "bf16 convolutions (Grams, losses, optimiser fp32)"}[self.precision]
        parts = [arith] + (["channels-last"] if self.channels_last else []) + (
            ["CUDA graphs"] if self.cuda_graphs else [])
        return f"{self.torch} ({', '.join(what)}): {', '.join(parts)}; {self.reason}"

    def info(self) -> dict[str, Any]:
        """What status reports about the device."""
        total, used = self.memory()
        return {"device": str(self.torch), "kind": self.kind, "backend": self.caps.backend,
                "name": self.caps.name, "units": sorted(self.caps.units),
                "precision": self.precision, "reason": self.reason,
                "channels_last": self.channels_last, "cuda_graphs": self.cuda_graphs,
                "memory_total": total, "memory_bytes": used,
                "threads": torch.get_num_threads() if self.kind == "cpu" else None,
                "description": self.describe(), "override": self.caps.override}


def _rss_bytes() -> int:
    return portable_memory.resident_bytes() or 0
