"""The torch build that fits this machine's graphics card.

Standard library only (a copy beside the GIMP plug-in, `impasto_gpus.py`). Detection
only gathers text (nvidia-smi's and rocminfo's answers, what /dev and sysfs hold inside
a Flatpak); the choices are pure functions of that text, tested on recorded outputs of
real cards.

CUDA: each PyTorch CUDA build runs on a range of compute capabilities and needs a driver
at least as new as its CUDA release. cu130 dropped Maxwell, Pascal and Volta (compute
capability below 7.5): a GTX 1080 owner given cu130 downloads 3.3 GB and cannot use the
card, so such cards get cu126 (then cu118 for older drivers), pinned to torch releases
that were published with those builds. Blackwell (10.x, 12.x) needs cu130 and its driver.

ROCm: PyTorch's ROCm wheels carry kernels for a fixed list of GPU targets (gfx names);
another target fails at the first kernel, so only those listed get ROCm.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

if __package__:  # impasto.gimp.gpus
    from impasto.portable import spawn
else:  # impasto_gpus.py beside the GIMP plug-in
    import impasto_spawn as spawn


@dataclass(frozen=True)
class CudaBuild:
    tag: str  # PyTorch's index, e.g. cu130
    torch: str
    torchvision: str
    min_cc: float
    max_cc: float
    min_driver: dict[str, tuple[int, ...]]  # per system (Linux, Windows)


# Newest first. Driver minimums: NVIDIA's CUDA toolkit release notes (table 3, minor
# version compatibility). torch pins: the newest release known to publish that build
# (PyTorch's install matrices: 2.9 had cu126, 2.7 the last with cu118).
CUDA_BUILDS = (
    CudaBuild("cu130", "2.14.1", "0.29.1", 7.5, 12.9,
              {"Linux": (580, 65, 6), "Windows": (580, 88)}),
    CudaBuild("cu126", "2.9.1", "0.24.1", 5.0, 9.0,
              {"Linux": (525, 60, 13), "Windows": (528, 33)}),
    CudaBuild("cu118", "2.7.1", "0.22.1", 3.7, 9.0,
              {"Linux": (450, 80, 2), "Windows": (452, 39)}),
)


@dataclass(frozen=True)
class NvidiaCard:
    compute_cap: float | None  # None: unknown (no nvidia-smi inside a Flatpak)
    driver: tuple[int, ...]


def parse_version(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", text)[:3])


def parse_nvidia_smi(text: str) -> list[NvidiaCard]:
    """`nvidia-smi --query-gpu=compute_cap,driver_version --format=csv,noheader`: one
    line a card, e.g. "8.9, 560.35.03". Unparseable lines are skipped. Pure."""
    cards = []
    for line in text.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) != 2:
            continue
        # "[N/A]" (a card that does not say), or garbage ("nan" included): unknown.
        cc = float(parts[0]) if re.fullmatch(r"\d+(\.\d+)?", parts[0]) else None
        driver = parse_version(parts[1])
        if driver:
            cards.append(NvidiaCard(cc, driver))
    return cards


def parse_nvidia_drivers(text: str) -> list[NvidiaCard]:
    """`nvidia-smi --query-gpu=driver_version --format=csv,noheader`, asked when the
    compute_cap query fails: drivers before R510 (470 and older, still common on Windows)
    refuse that field ('Field "compute_cap" is not a valid field to query.', exit 2).
    One card a line, its capability unknown. Pure."""
    return [NvidiaCard(None, parse_version(line)) for line in text.splitlines()
            if re.fullmatch(r"\s*\d+(\.\d+)*\s*", line)]


def primary(cards: list[NvidiaCard] | tuple[NvidiaCard, ...]) -> NvidiaCard:
    """The card torch computes on: CUDA numbers devices fastest first (CUDA_DEVICE_ORDER's
    default), not in nvidia-smi's bus order, so device 0 is the card of the highest compute
    capability (the first of those; unknown ones last). Pure."""
    return max(cards, key=lambda c: -1.0 if c.compute_cap is None else c.compute_cap)


def cuda_build(card: NvidiaCard, system: str) -> tuple[CudaBuild | None, str]:
    """The newest CUDA build that runs on `card` with its driver, or None (CPU), and why.
    A card whose capability is unknown gets cu126's range (Maxwell to Hopper). Pure."""
    key = "Windows" if system == "Windows" else "Linux"
    cc = card.compute_cap
    newest_for_card = None
    for b in CUDA_BUILDS:
        if cc is not None and not b.min_cc <= cc <= b.max_cc:
            continue
        if cc is None and b.tag == "cu130":
            continue  # might be a Pascal card: cu130 would not run on it
        newest_for_card = newest_for_card or b
        if card.driver >= b.min_driver[key]:
            what = f"compute capability {cc}" if cc is not None else "capability unknown"
            note = ""
            if b is not newest_for_card:
                need = ".".join(map(str, newest_for_card.min_driver[key]))
                note = (f"; a driver {need} or newer would allow the newer "
                        f"{newest_for_card.tag} build")
            return b, f"NVIDIA, {what}, driver {'.'.join(map(str, card.driver))}: " \
                      f"{b.tag}{note}"
    if newest_for_card is None:
        return None, (f"this NVIDIA card (compute capability {cc}) is older than any CUDA "
                      "build of PyTorch supports: the CPU paints instead")
    need = ".".join(map(str, newest_for_card.min_driver[key]))
    return None, (f"the NVIDIA driver {'.'.join(map(str, card.driver))} is too old for "
                  f"PyTorch's CUDA builds: update it to {need} or newer for the graphics "
                  "card; until then the CPU paints")


# GPU targets PyTorch's ROCm wheels are built for (its ROCm build's PYTORCH_ROCM_ARCH).
ROCM_TARGETS = frozenset({"gfx900", "gfx906", "gfx908", "gfx90a", "gfx942", "gfx950",
                          "gfx1030", "gfx1100", "gfx1101", "gfx1102", "gfx1151", "gfx1200",
                          "gfx1201"})


def parse_rocminfo(text: str) -> list[str]:
    """The GPU agents' target names in rocminfo's output (CPU agents have other names)."""
    return sorted(set(re.findall(r"^\s*Name:\s+(gfx[0-9a-f]+)\s*$", text, re.MULTILINE)))


def kfd_targets(root: Path = Path("/sys/class/kfd/kfd/topology/nodes")) -> list[str]:
    """Target names from the kernel's KFD topology (readable inside a Flatpak, where
    rocminfo is not): gfx_target_version is major*10000 + minor*100 + stepping."""
    out = set()
    for props in sorted(root.glob("*/properties")):
        try:
            text = props.read_text()
        except OSError:
            continue
        m = re.search(r"^gfx_target_version\s+(\d+)", text, re.MULTILINE)
        if m and int(m.group(1)):
            v = int(m.group(1))
            out.add(f"gfx{v // 10000}{(v // 100) % 100:x}{v % 100:x}")
    return sorted(out)


def rocm_choice(targets: list[str]) -> tuple[bool, str]:
    """Whether PyTorch's ROCm build runs on one of these GPUs, and why. Pure."""
    fit = [t for t in targets if t in ROCM_TARGETS]
    if fit:
        return True, f"AMD {fit[0]}: a target PyTorch's ROCm build supports"
    if targets:
        return False, (f"AMD {', '.join(targets)}: not a target PyTorch's ROCm build is made "
                       "for; the CPU paints instead")
    return False, "no AMD GPU target was reported"


def flatpak_devices(dev: Path = Path("/dev")) -> frozenset[str]:
    """Inside GIMP's Flatpak there is no nvidia-smi or rocminfo: the devices the sandbox
    was given tell. `nvidia` (/dev/nvidia0), `amd` (/dev/kfd). Without `--device=all`
    neither is there."""
    found = set()
    if (dev / "nvidia0").exists():
        found.add("nvidia")
    if (dev / "kfd").exists():
        found.add("amd")
    return frozenset(found)


def nvidia_driver_from_proc(path: Path = Path("/proc/driver/nvidia/version")) -> tuple[int, ...]:
    try:
        m = re.search(r"Kernel Module\s+(?:for \S+\s+)?([\d.]+)", path.read_text())
    except OSError:
        return ()
    return parse_version(m.group(1)) if m else ()


def query_nvidia() -> list[NvidiaCard]:
    """This machine's NVIDIA cards: nvidia-smi, else (a Flatpak) the kernel module's
    version with the capability unknown."""
    smi = shutil.which("nvidia-smi")
    # An old driver refuses the compute_cap field: then its version alone, so that the
    # choice still knows the driver (Windows has no /proc to read it from).
    for query, parse in (("compute_cap,driver_version", parse_nvidia_smi),
                         ("driver_version", parse_nvidia_drivers)):
        if not smi:
            break
        try:
            r = subprocess.run([smi, f"--query-gpu={query}", "--format=csv,noheader"],
                               capture_output=True, text=True, timeout=30,
                               stdin=subprocess.DEVNULL, **spawn.hidden())
            cards = parse(r.stdout) if r.returncode == 0 else []
            if cards:
                return cards
        except (OSError, subprocess.TimeoutExpired):
            break
    driver = nvidia_driver_from_proc()
    return [NvidiaCard(None, driver)] if driver else []


def query_rocm() -> list[str]:
    tool = shutil.which("rocminfo")
    if tool:
        try:
            r = subprocess.run([tool], capture_output=True, text=True, timeout=30,
                               stdin=subprocess.DEVNULL, **spawn.hidden())
            targets = parse_rocminfo(r.stdout)
            if targets:
                return targets
        except (OSError, subprocess.TimeoutExpired):
            pass
    return kfd_targets()
