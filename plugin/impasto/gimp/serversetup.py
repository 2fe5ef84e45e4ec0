"""Setting up impasto's server on an artist's machine: which torch fits, where it goes,
and the steps that install it. Standard library only: the GIMP plug-in runs this from its
own folder before impasto exists anywhere (the archive carries a copy beside the plug-in
file), and `impasto setup` runs the same code from the installed package.

The choice of torch is one pure function, `torch_source(system, machine, backend)`, so
every platform's answer is tested here, on Linux. Detection (`detect_backend`) only
gathers facts (which programs and devices exist) and hands them to a pure rule.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

BACKENDS = ("cuda", "rocm", "xpu", "mps", "cpu")
SYSTEMS = ("Linux", "Windows", "Darwin")
# The torch release the daemon is tested with, and the torchvision that pairs with it.
TORCH, TORCHVISION = "2.14.1", "0.29.1"
# macOS on Intel: PyTorch's last release for it (later ones ship arm64 only).
TORCH_INTEL_MAC, TORCHVISION_INTEL_MAC = "2.2.2", "0.17.2"
PYTORCH_INDEX = "https://download.pytorch.org/whl"
# PyTorch's wheel index per back end, for the release above (PyTorch's install matrix).
INDEX_TAG = {"cuda": "cu130", "rocm": "rocm7.1", "xpu": "xpu", "cpu": "cpu"}
# Approximate download sizes (MB) of torch + torchvision + their libraries, and of
# impasto's other packages: what the set-up dialog announces before it starts.
DOWNLOAD_MB = {"cuda": 3300, "rocm": 4600, "xpu": 2600, "mps": 90, "cpu": 220}
OTHER_MB = 60


class SetupError(Exception):
    """A set-up that cannot work as asked; the message says what to do instead."""


@dataclass(frozen=True)
class TorchSource:
    backend: str
    requirements: tuple[str, ...]
    index_url: str | None  # None: the package index's default (PyPI)
    download_mb: int
    note: str = ""

    def pip_args(self) -> list[str]:
        # The back end's index is the only source of torch and its dependencies (PyTorch's
        # indexes carry them): with PyPI beside it, pip could take PyPI's default (CUDA on
        # Linux) build. impasto's other packages come from PyPI in the next step.
        return ["--index-url", self.index_url] if self.index_url else []


def torch_source(system: str, machine: str, backend: str) -> TorchSource:
    """Where torch comes from for this platform and GPU back end, or SetupError saying
    why that pair does not exist. Pure: tested for every system and back end."""
    machine = machine.lower()
    arm = machine in ("arm64", "aarch64")
    if system not in SYSTEMS:
        raise SetupError(f"unsupported system {system!r}; impasto runs on {', '.join(SYSTEMS)}")
    if backend not in BACKENDS:
        raise SetupError(f"unknown back end {backend!r}; one of {', '.join(BACKENDS)}")
    pins = (f"torch=={TORCH}", f"torchvision=={TORCHVISION}")
    if system == "Darwin":
        if backend not in ("mps", "cpu"):
            raise SetupError(f"{backend} does not exist on macOS: use mps (Apple GPU) or cpu")
        if not arm:
            if backend == "mps":
                raise SetupError("mps needs an Apple Silicon Mac; on an Intel Mac use cpu")
            return TorchSource("cpu", (f"torch=={TORCH_INTEL_MAC}",
                                       f"torchvision=={TORCHVISION_INTEL_MAC}"), None,
                               DOWNLOAD_MB["mps"],
                               "Intel Macs get PyTorch 2.2.2, its last release for them")
        # PyPI's macOS wheels carry both the CPU and the Apple GPU (MPS) code.
        return TorchSource(backend, pins, None, DOWNLOAD_MB["mps"])
    if backend == "mps":
        raise SetupError("mps is Apple's GPU back end, for macOS only; use cuda, rocm, xpu or cpu")
    if backend == "rocm" and system == "Windows":
        raise SetupError("PyTorch publishes ROCm (AMD GPU) builds for Linux only; on Windows "
                         "use cpu")
    if arm and backend != "cpu":
        raise SetupError(f"PyTorch has no {backend} build for {system} on ARM; use cpu")
    if arm:
        # PyPI's aarch64 Linux and ARM Windows wheels are CPU builds already.
        return TorchSource("cpu", pins, None, DOWNLOAD_MB["cpu"])
    return TorchSource(backend, pins, f"{PYTORCH_INDEX}/{INDEX_TAG[backend]}",
                       DOWNLOAD_MB[backend])


@dataclass(frozen=True)
class Facts:
    """What detection looks at: the system, and which GPU tools and devices exist."""
    system: str
    machine: str
    programs: frozenset[str] = frozenset()  # of nvidia-smi, rocminfo, xpu-smi, sycl-ls


def choose_backend(f: Facts) -> tuple[str, str]:
    """The back end to offer first, and why. Pure."""
    if f.system == "Darwin":
        if f.machine.lower() in ("arm64", "aarch64"):
            return "mps", "Apple Silicon: the Apple GPU through MPS"
        return "cpu", "Intel Mac: no supported GPU back end"
    if "nvidia-smi" in f.programs:
        return "cuda", "an NVIDIA driver is installed (nvidia-smi)"
    if "rocminfo" in f.programs and f.system == "Linux":
        return "rocm", "AMD ROCm is installed (rocminfo)"
    # An Intel GPU counts only with its compute runtime's tools: integrated Intel
    # graphics without them are slower than the CPU for this work.
    if "xpu-smi" in f.programs or "sycl-ls" in f.programs:
        return "xpu", "an Intel GPU with its runtime was found"
    return "cpu", "no supported GPU was found"


def gather_facts() -> Facts:
    system, machine = platform.system(), platform.machine()
    programs = frozenset(p for p in ("nvidia-smi", "rocminfo", "xpu-smi", "sycl-ls")
                         if shutil.which(p))
    return Facts(system, machine, programs)


def detect_backend() -> tuple[str, str]:
    return choose_backend(gather_facts())


# --- where things go ------------------------------------------------------------------
def data_home(system: str | None = None, env: dict[str, str] | None = None) -> Path:
    """The user's data folder for impasto's server (its Python environment)."""
    system = system or platform.system()
    env = dict(os.environ) if env is None else env
    if env.get("IMPASTO_DATA_DIR"):  # as impasto.paths.data_dir()
        return Path(env["IMPASTO_DATA_DIR"])
    home = Path(env.get("HOME") or env.get("USERPROFILE") or Path.home())
    if system == "Windows":
        return Path(env.get("LOCALAPPDATA") or home / "AppData" / "Local") / "impasto"
    if system == "Darwin":
        return home / "Library" / "Application Support" / "impasto"
    return Path(env.get("XDG_DATA_HOME") or home / ".local" / "share") / "impasto"


def venv_python(venv: Path, system: str | None = None) -> Path:
    if (system or platform.system()) == "Windows":
        return venv / "Scripts" / "python.exe"
    return venv / "bin" / "python"


def python_candidates(named: str | None, system: str) -> list[list[str]]:
    """Pythons to try for the server's environment, best first. Pure."""
    if named:
        return [[named]]
    out: list[list[str]] = []
    if system == "Windows":
        out += [["py", "-3.12"], ["py", "-3.11"], ["py", "-3"]]
    out += [["python3.12"], ["python3.11"], ["python3"], ["python"]]
    return out


def find_python(named: str | None = None, system: str | None = None,
                run: Callable[..., subprocess.CompletedProcess] = subprocess.run) -> list[str]:
    """The first candidate that runs and is Python 3.11 or newer (what impasto needs)."""
    system = system or platform.system()
    tried = []
    for cmd in python_candidates(named, system):
        if not (shutil.which(cmd[0]) or Path(cmd[0]).is_file()):
            tried.append(f"{' '.join(cmd)} (not found)")
            continue
        try:
            r = run(cmd + ["-c", "import sys, venv; print(sys.version_info[:2] >= (3, 11))"],
                    capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired) as e:
            tried.append(f"{' '.join(cmd)} ({e})")
            continue
        if r.returncode == 0 and r.stdout.strip() == "True":
            return cmd
        tried.append(f"{' '.join(cmd)} (older than 3.11 or without venv)")
    raise SetupError("no Python 3.11 or newer was found; install one (python.org, or "
                     "`uv python install 3.12`) and name it with --python. Tried: "
                     + "; ".join(tried))


# --- where the environment may go ----------------------------------------------------------
# Written into every environment the set-up makes: `run` again (repair) and `uninstall`
# touch only a folder that holds it, never one a user named by mistake.
MARKER = "impasto-server.json"


def is_ours(venv: Path) -> bool:
    return (not venv.is_symlink() and (venv / MARKER).is_file()
            and (venv / "pyvenv.cfg").is_file())


def check_target(venv: Path) -> None:
    """SetupError unless `venv` is a new or empty folder, or an environment this set-up
    made: `python -m venv --clear` empties the folder it is given."""
    where = venv.expanduser().absolute()
    resolved = where.resolve()
    special = {Path.home().resolve(), Path.cwd().resolve()}
    if len(resolved.parts) < 3 or resolved in special or str(venv).strip() in ("", "."):
        raise SetupError(f"{where} is not a place for the server's environment (the set-up "
                         "empties the folder it is given): name a new folder, e.g. "
                         f"{data_home() / 'server'}")
    if where.is_symlink():
        raise SetupError(f"{where} is a symbolic link; name the folder itself")
    if not where.exists():
        return
    if not where.is_dir():
        raise SetupError(f"{where} is a file, not a folder")
    if is_ours(where) or not any(where.iterdir()):
        return
    raise SetupError(f"{where} is not empty and not an environment impasto's set-up made; "
                     "its contents would be deleted. Name a new or empty folder.")


# --- the plan ---------------------------------------------------------------------------
@dataclass
class Plan:
    venv: Path
    python: list[str]
    source: TorchSource
    package: str  # the impasto wheel (a path) or requirement
    wheels: Path | None = None  # install from this folder only (offline)
    steps: list[list[str]] = field(default_factory=list)

    @property
    def download_mb(self) -> int:
        return 0 if self.wheels else self.source.download_mb + OTHER_MB

    def describe(self) -> dict:
        d = asdict(self)
        d.update(venv=str(self.venv), wheels=str(self.wheels) if self.wheels else None,
                 download_mb=self.download_mb, impasto=str(venv_python(self.venv)))
        return d


def default_package(here: Path | None = None) -> str:
    """impasto itself, from what came with this program: the wheel beside it (the
    plug-in archive), else the source checkout it sits in. Never the bare name: no
    `impasto` is published on PyPI, and whoever registered one would be installed."""
    here = (here or Path(__file__)).resolve()
    wheels = sorted(here.parent.glob("impasto-*.whl"))
    if wheels:
        return str(wheels[-1])
    for root in here.parents:
        toml = root / "pyproject.toml"
        if toml.is_file() and 'name = "impasto"' in toml.read_text(errors="replace"):
            return str(root)
    raise SetupError("no impasto package found beside this program: give --package with "
                     "impasto's wheel file (from the plug-in archive) or a source folder")


def make_plan(venv: Path, backend: str, package: str, python: list[str],
              wheels: Path | None = None, system: str | None = None,
              machine: str | None = None) -> Plan:
    system, machine = system or platform.system(), machine or platform.machine()
    source = torch_source(system, machine, backend)
    py = str(venv_python(venv, system))
    pip = [py, "-m", "pip", "install", "--disable-pip-version-check", "--progress-bar", "off"]
    where = ["--no-index", "--find-links", str(wheels)] if wheels else source.pip_args()
    plan = Plan(venv, python, source, package, wheels)
    plan.steps = [
        python + ["-m", "venv", "--clear", str(venv)],
        pip + where + list(source.requirements),
        # impasto itself after torch, so its torch requirement is already met by the
        # build chosen above and pip takes nothing from PyPI's default build.
        pip + (["--no-index", "--find-links", str(wheels)] if wheels else []) + [package],
    ]
    return plan


STEP_NAMES = ("making the Python environment", "installing torch (the large part)",
              "installing impasto")


def run_plan(plan: Plan, log: Path, progress: Callable[[int, int, str], None],
             pulse: Callable[[], None] | None = None) -> Path:
    """Run each step, appending its output to `log`; the environment's Python on success.
    `pulse` is called about twice a second while a step runs (GIMP's progress bar moves
    during the minutes torch takes)."""
    check_target(plan.venv)
    if plan.wheels is not None and not plan.wheels.is_dir():
        raise SetupError(f"the offline package folder {plan.wheels} does not exist")
    try:
        log.parent.mkdir(parents=True, exist_ok=True)
        out = open(log, "a", encoding="utf-8")  # noqa: SIM115 - closed below
    except OSError as e:
        raise SetupError(f"cannot write the log {log}: {e.strerror or e}") from None
    env = dict(os.environ)
    if plan.wheels is not None:
        # Offline means this folder only: no pip configuration adds other places.
        env["PIP_CONFIG_FILE"] = os.devnull
    with out:
        for i, (cmd, name) in enumerate(zip(plan.steps, STEP_NAMES)):
            progress(i, len(plan.steps), name)
            out.write(f"\n$ {' '.join(cmd)}\n")
            out.flush()
            try:
                proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, env=env)
            except OSError as e:
                raise SetupError(f"{name} failed: {e}; the log is {log}") from None
            while True:
                try:
                    code = proc.wait(timeout=0.5)
                    break
                except subprocess.TimeoutExpired:
                    if pulse is not None:
                        pulse()
            if code != 0:
                raise SetupError(f"{name} failed (exit {code}); the log is {log}")
            if i == 0:  # the environment exists: mark it as the set-up's own
                plan.venv.mkdir(parents=True, exist_ok=True)
                (plan.venv / MARKER).write_text(json.dumps(
                    {"made_by": "impasto setup", "backend": plan.source.backend}) + "\n")
        progress(len(plan.steps), len(plan.steps), "done")
    return venv_python(plan.venv)


def connect_plugin(python: Path, plugin_dir: Path, weights: str, log: Path) -> None:
    """Point the GIMP plug-in in `plugin_dir` at the server environment: its bridge config
    names this environment's bridge and the daemon it autostarts (`impasto gimp install`,
    run by the environment's own Python, so the paths it writes are that Python's)."""
    cmd = [str(python), "-I", "-m", "impasto.cli.main", "gimp", "install", "--plugin-dir",
           str(plugin_dir), "--weights", weights]
    with open(log, "a", encoding="utf-8") as out:
        out.write(f"\n$ {' '.join(cmd)}\n")
        out.flush()
        r = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                           timeout=300)
    if r.returncode != 0:
        raise SetupError(f"connecting the GIMP plug-in failed (exit {r.returncode}); the log "
                         f"is {log}")


def uninstall(venv: Path) -> bool:
    """Remove the server's environment; True if there was one. Only an environment this
    set-up made (its marker file and pyvenv.cfg, not a symbolic link) is removed, never
    anything else a user named."""
    if not is_ours(venv):
        return False
    shutil.rmtree(venv)
    return True


def disconnect_plugin(plugin_dir: Path) -> bool:
    """Remove the plug-in's bridge config (it then offers the set-up again); only in the
    plug-in's own folder. True if there was one."""
    config = plugin_dir / "impasto-bridge.json"
    if not (plugin_dir / "impasto-neural-style.py").is_file() or not config.is_file():
        return False
    config.unlink()
    return True


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="impasto setup",
                                description="Set up (or repair, or remove) impasto's server: a "
                                "Python environment with torch for this machine's GPU.")
    p.add_argument("action", choices=["plan", "run", "uninstall", "detect"],
                   help="plan: say what would be installed and how much it downloads; run: do "
                   "it (again, to repair); uninstall: remove the environment; detect: the GPU "
                   "back end this machine would get")
    p.add_argument("--dir", type=Path, help="where the environment goes (default: the user's "
                   "data folder, impasto/server)")
    p.add_argument("--backend", choices=BACKENDS, help="GPU back end (default: detected)")
    p.add_argument("--python", help="the Python to build the environment with (default: the "
                   "newest Python 3.11+ found)")
    p.add_argument("--package", help="impasto's wheel file or source folder (default: the "
                   "wheel beside this program in the plug-in archive, else this source "
                   "checkout); impasto is not on PyPI, so never a bare name")
    p.add_argument("--wheels", type=Path, help="install only from this folder of wheels "
                   "(offline machines)")
    p.add_argument("--log", type=Path, help="log file (default: setup.log beside the "
                   "environment)")
    p.add_argument("--plugin-dir", type=Path, help="after `run`, point the GIMP plug-in in "
                   "this folder at the new environment; after `uninstall`, disconnect it")
    p.add_argument("--weights", default="auto", help="with --plugin-dir: the weights a daemon "
                   "GIMP starts loads (default auto; random is a test pattern, not art)")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    a = p.parse_args(argv)
    venv = a.dir or data_home() / "server"

    def say(obj: dict) -> None:
        if a.json:
            print(json.dumps(obj), flush=True)
        else:
            print(obj.get("text") or obj, flush=True)

    try:
        if a.action == "detect":
            backend, why = detect_backend()
            say({"event": "detect", "backend": backend, "why": why,
                 "text": f"{backend}: {why}"})
            return 0
        if a.action == "uninstall":
            gone = uninstall(venv)
            unplugged = disconnect_plugin(a.plugin_dir) if a.plugin_dir is not None else False
            text = (f"removed {venv}" if gone else
                    f"nothing to remove at {venv} (no environment impasto's set-up made)")
            if unplugged:
                text += f"; the plug-in in {a.plugin_dir} is disconnected"
            say({"event": "uninstall", "removed": gone, "dir": str(venv),
                 "plugin_disconnected": unplugged, "text": text})
            return 0
        detected, why = detect_backend()
        backend = a.backend or detected
        # plan checks what run would, so that a plan that passes is a run that can start.
        check_target(venv)
        if a.wheels is not None and not a.wheels.is_dir():
            raise SetupError(f"the offline package folder {a.wheels} does not exist")
        python = find_python(a.python) if (a.action == "run" or a.python) else [sys.executable]
        plan = make_plan(venv, backend, a.package or default_package(), python, a.wheels)
        note = ("" if backend in (detected, "cpu") else
                f" (note: this machine shows no sign of {backend}; detected {detected}: {why})")
        if a.action == "plan":
            d = plan.describe()
            d["event"] = "plan"
            d["note"] = note.strip(" ()")
            d["text"] = (f"{backend} back end into {venv}: downloads about "
                         f"{plan.download_mb} MB" if plan.download_mb else
                         f"{backend} back end into {venv}, from {a.wheels} only") + note
            say(d)
            return 0
        if note:
            say({"event": "status", "text": note.strip(" ()")})
        log = a.log or venv.parent / "setup.log"

        def progress(i: int, n: int, what: str) -> None:
            say({"event": "progress", "step": i, "total": n, "text": f"[{i}/{n}] {what}"})

        exe = run_plan(plan, log, progress)
        if a.plugin_dir is not None:
            connect_plugin(exe, a.plugin_dir, a.weights, log)
        say({"event": "done", "python": str(exe), "log": str(log),
             "text": f"set up: {exe} (log: {log})"})
        return 0
    except (SetupError, OSError) as e:
        msg = str(e) if isinstance(e, SetupError) else f"{e.strerror or e}: {e.filename or ''}"
        say({"event": "error", "message": msg, "text": f"impasto setup: {msg}"})
        return 1


def run_setup(args: argparse.Namespace) -> int:
    """`impasto setup ...` from the installed package: the same code as the plug-in's."""
    return main(args.setup_args)


if __name__ == "__main__":
    sys.exit(main())
