"""Setting up impasto's server on an artist's machine: which torch fits, where it goes,
and the steps that install it. Standard library only: the GIMP plug-in runs this from its
own folder before impasto exists anywhere (the archive carries a copy beside the plug-in
file), and `impasto setup` runs the same code from the installed package.

The choice of torch is one pure function, `torch_source(system, machine, backend)`, so
every platform's answer is tested here, on Linux. Detection (`detect_backend`) only
gathers facts (which programs and devices exist, what nvidia-smi and rocminfo say) and
hands them to pure rules (here and in gpus.py). Which Python the environment is built
on is pythons.py's: a trusted one found here, else uv's standalone Python. Every child
runs without a console window (spawn.py) and with the host application's Python and
loader variables taken away (pythons.clean_env).
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
from pathlib import Path, PureWindowsPath

if __package__:  # impasto.gimp.serversetup (`impasto setup`)
    from impasto.gimp import gpus, pythons
    from impasto.portable import spawn
else:  # impasto_serversetup.py beside the GIMP plug-in, with its companions
    import impasto_gpus as gpus
    import impasto_pythons as pythons
    import impasto_spawn as spawn

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
OTHER_MB = 60 + 70  # impasto's other packages, and its video extra (OpenCV, PyAV)
UV_MB = 20 + 30  # uv itself and the standalone Python it installs
# impasto's extras the set-up installs: every feature the plug-in offers works in every
# install ("Stylize as animation" needs the video extra). impasto's own dependencies
# (the weights' package among them) come with it through pip's resolution.
EXTRAS = ("video",)


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


def torch_source(system: str, machine: str, backend: str,
                 cuda: gpus.CudaBuild | None = None) -> TorchSource:
    """Where torch comes from for this platform and GPU back end, or SetupError saying
    why that pair does not exist; `cuda` is the CUDA build that fits the card (default:
    the newest). Pure: tested for every system and back end."""
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
    if backend == "cuda" and cuda is not None:
        return TorchSource(backend, (f"torch=={cuda.torch}", f"torchvision=={cuda.torchvision}"),
                           f"{PYTORCH_INDEX}/{cuda.tag}", DOWNLOAD_MB[backend],
                           "" if cuda.tag == INDEX_TAG["cuda"] else
                           f"{cuda.tag}: the newest CUDA build for this card and driver")
    return TorchSource(backend, pins, f"{PYTORCH_INDEX}/{INDEX_TAG[backend]}",
                       DOWNLOAD_MB[backend])


@dataclass(frozen=True)
class Facts:
    """What detection looks at: the system, which GPU tools and devices exist, and what
    they said (recorded outputs of real cards make the tests)."""
    system: str
    machine: str
    programs: frozenset[str] = frozenset()  # of nvidia-smi, rocminfo, xpu-smi, sycl-ls
    nvidia: tuple[gpus.NvidiaCard, ...] = ()  # nvidia-smi's cards (or /proc's driver)
    rocm: tuple[str, ...] = ()  # AMD GPU targets (rocminfo, or KFD's topology)
    devices: frozenset[str] = frozenset()  # inside a Flatpak: nvidia, amd (from /dev)


def choose_backend(f: Facts) -> tuple[str, str]:
    """The back end to offer first, and why. Pure."""
    if f.system == "Darwin":
        if f.machine.lower() in ("arm64", "aarch64"):
            return "mps", "Apple Silicon: the Apple GPU through MPS"
        return "cpu", "Intel Mac: no supported GPU back end"
    if f.machine.lower() in ("arm64", "aarch64"):
        # torch_source has only CPU builds there: offering the card would be refused.
        return "cpu", f"{f.system} on ARM: the set-up installs PyTorch's CPU build there"
    if f.nvidia:
        build, why = gpus.cuda_build(gpus.primary(f.nvidia), f.system)
        return ("cuda" if build else "cpu"), why
    if "nvidia-smi" in f.programs or "nvidia" in f.devices:
        return "cuda", "an NVIDIA driver is installed (nvidia-smi)"
    if f.rocm and f.system == "Linux":
        fits, why = gpus.rocm_choice(list(f.rocm))
        return ("rocm" if fits else "cpu"), why
    if ("rocminfo" in f.programs or "amd" in f.devices) and f.system == "Linux":
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
    # GIMP's Flatpak has none of these programs: its /dev shows what it was allowed.
    devices = gpus.flatpak_devices() if Path("/.flatpak-info").exists() else frozenset()
    nvidia = tuple(gpus.query_nvidia()) if system != "Darwin" else ()
    rocm = tuple(gpus.query_rocm()) if system == "Linux" and (
        "rocminfo" in programs or "amd" in devices) else ()
    return Facts(system, machine, programs, nvidia, rocm, devices)


def cuda_for(facts: Facts) -> gpus.CudaBuild | None:
    """The CUDA build for the card torch computes on (gpus.primary; None: unknown, the
    newest)."""
    return gpus.cuda_build(gpus.primary(facts.nvidia), facts.system)[0] if facts.nvidia else None


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


def default_venv(system: str | None = None, env: dict[str, str] | None = None) -> Path:
    """Where the environment goes by default. On Windows a short name (`s`): torch's
    wheel holds licence files some 190 characters below site-packages, and Windows
    refuses paths over 260 characters unless long paths are turned on."""
    system = system or platform.system()
    return data_home(system, env) / ("s" if system == "Windows" else "server")


# The deepest file below site-packages in torch's Windows wheels: its licence tree
# (torch-*.dist-info/licenses/third_party/kineto/.../duktape-1.5.2/..., pytorch/TensorRT
# #4288 met WinError 206 there), with room for a longer version tag.
TORCH_DEEPEST = 190
WINDOWS_MAX_PATH = 260
# A folder needs this many parts to be given (/ and C:\ count as one): never a drive's or
# the file system's root, nor a folder right below it (C:\Users, /home).
MIN_PARTS = 3
# The short folder path_problem suggests where long paths are off: deep enough for
# check_target, short enough for torch's files.
SHORT_WINDOWS_VENV = r"C:\impasto\s"


def path_problem(venv: Path, system: str, long_paths: bool) -> str | None:
    """Why installing torch into `venv` would fail on Windows' path limit, or None. Pure."""
    if system != "Windows" or long_paths:
        return None
    site = PureWindowsPath(str(venv.absolute()) if venv.is_absolute() else str(venv),
                           "Lib", "site-packages")
    longest = len(str(site)) + 1 + TORCH_DEEPEST
    if longest < WINDOWS_MAX_PATH:
        return None
    return (f"PyTorch's files would lie up to {longest} characters deep in {venv}, over "
            f"Windows' limit of {WINDOWS_MAX_PATH}: turn on long paths (as an administrator: "
            "reg add HKLM\\SYSTEM\\CurrentControlSet\\Control\\FileSystem /v LongPathsEnabled "
            "/t REG_DWORD /d 1 /f, or Group Policy 'Enable Win32 long paths') and run the "
            f"set-up again, or install into a shorter folder (about "
            f"{WINDOWS_MAX_PATH - TORCH_DEEPEST - 20} characters at most, e.g. "
            f"{SHORT_WINDOWS_VENV})")


def long_paths_enabled() -> bool:
    """Whether Windows lets programs use paths over 260 characters (the registry's
    LongPathsEnabled); True elsewhere."""
    if sys.platform == "win32":
        try:
            import winreg

            with winreg.OpenKey(winreg.HKEY_LOCAL_MACHINE,
                                r"SYSTEM\CurrentControlSet\Control\FileSystem") as key:
                value, _ = winreg.QueryValueEx(key, "LongPathsEnabled")
            return int(value) == 1
        except (ImportError, OSError, ValueError, TypeError):
            return False  # unreadable: the path check applies, which errs on the safe side
    return True


def venv_python(venv: Path, system: str | None = None) -> Path:
    if (system or platform.system()) == "Windows":
        return venv / "Scripts" / "python.exe"
    return venv / "bin" / "python"


def python_candidates(named: str | None, system: str) -> list[list[str]]:
    """Pythons to try for the server's environment, best first. Pure."""
    return pythons.candidate_commands(named, system, {})


def find_python(named: str | None = None, system: str | None = None) -> list[str]:
    """The first Python 3.11 or newer the set-up can trust (pythons.judge), or SetupError
    saying why each was passed over. `choose_python` is what the set-up itself uses: it
    falls back to uv instead of failing."""
    found, passed = pythons.find(named, pythons.Facts(system or platform.system(),
                                                      Path("/.flatpak-info").exists()))
    if found is None:
        raise SetupError("no Python 3.11 or newer that the set-up can trust was found. Tried: "
                         + "; ".join(passed))
    return [found.path, *found.command[1:]]


def choose_python(named: str | None, offline: bool) -> list[str]:
    """The Python to build on; [] means uv's own (fetched by the set-up), which is what a
    machine with no trustworthy Python gets. A Python the user named must pass."""
    try:
        return find_python(named)
    except SetupError:
        if named:
            raise
        if offline:
            raise SetupError("no Python 3.11 or newer that the set-up can trust was found, "
                             "and with offline packages it cannot download one: install "
                             "Python 3.12 (python.org) and run the set-up again, naming it "
                             "under Python (--python)") from None
        return []


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
    if len(resolved.parts) < MIN_PARTS or resolved in special or str(venv).strip() in ("", "."):
        raise SetupError(f"{where} is not a place for the server's environment (the set-up "
                         "empties the folder it is given): name a new folder, e.g. "
                         f"{default_venv()}")
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
    python: list[str]  # [] : uv's standalone Python, fetched by the set-up
    source: TorchSource
    package: str  # the impasto wheel (a path) or requirement
    wheels: Path | None = None  # install from this folder only (offline)
    steps: list[list[str]] = field(default_factory=list)
    names: list[str] = field(default_factory=list)  # one per step, for the progress bar
    uv: Path | None = None  # uv's program, fetched before the first step
    tools: Path | None = None  # uv's folder: its program, Pythons and cache

    @property
    def download_mb(self) -> int:
        return 0 if self.wheels else self.source.download_mb + OTHER_MB + (
            UV_MB if self.uv else 0)

    def describe(self) -> dict:
        d = asdict(self)
        d.update(venv=str(self.venv), wheels=str(self.wheels) if self.wheels else None,
                 uv=str(self.uv) if self.uv else None,
                 tools=str(self.tools) if self.tools else None,
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


def package_requirement(package: str, extras: tuple[str, ...] = EXTRAS) -> str:
    """impasto with its extras, as pip takes it: a wheel file or source folder as a
    direct reference (`impasto[video] @ file:///...`), else the requirement given."""
    if not extras:
        return package
    path = Path(package).expanduser()
    if path.exists():
        return f"impasto[{','.join(extras)}] @ {path.resolve().as_uri()}"
    return package if "[" in package else f"{package}[{','.join(extras)}]"


def make_plan(venv: Path, backend: str, package: str, python: list[str],
              wheels: Path | None = None, system: str | None = None,
              machine: str | None = None, cuda: gpus.CudaBuild | None = None,
              tools: Path | None = None) -> Plan:
    """The steps. `python` [] builds on uv's standalone Python, installed into `tools`
    (default: the data folder's `uv`)."""
    system, machine = system or platform.system(), machine or platform.machine()
    source = torch_source(system, machine, backend, cuda)
    py = str(venv_python(venv, system))
    pip = [py, "-m", "pip", "install", "--disable-pip-version-check", "--progress-bar", "off"]
    where = ["--no-index", "--find-links", str(wheels)] if wheels else source.pip_args()
    plan = Plan(venv, python, source, package, wheels)
    if python:
        plan.steps = [python + ["-m", "venv", "--clear", str(venv)]]
        plan.names = [STEP_NAMES[0]]
    else:
        tools = tools or data_home(system) / "uv"
        plan.tools, plan.uv = tools, pythons.uv_path(tools, system)
        plan.steps = pythons.uv_steps(plan.uv, venv, tools / "python")
        plan.names = [f"installing Python {pythons.UV_PYTHON} (uv)", STEP_NAMES[0]]
    plan.steps += [
        pip + where + list(source.requirements),
        # impasto itself after torch, so its torch requirement is already met by the
        # build chosen above and pip takes nothing from PyPI's default build.
        pip + (["--no-index", "--find-links", str(wheels)] if wheels else [])
        + [package_requirement(package)],
    ]
    plan.names += list(STEP_NAMES[1:])
    return plan


STEP_NAMES = ("making the Python environment", "installing torch (the large part)",
              "installing impasto")


def check_plan(plan: Plan, long_paths: bool | None = None, system: str | None = None) -> None:
    """SetupError for what would make the run fail, before anything is downloaded
    (`long_paths` and `system` default to this machine's; given, for tests)."""
    check_target(plan.venv)
    if plan.wheels is not None and not plan.wheels.is_dir():
        raise SetupError(f"the offline package folder {plan.wheels} does not exist")
    problem = path_problem(plan.venv, system or platform.system(),
                           long_paths_enabled() if long_paths is None else long_paths)
    if problem:
        raise SetupError(problem)


def record(plan: Plan) -> dict:
    """What impasto-server.json says: who made the environment, for which back end, and
    the base Python it was built on (a start that finds that Python gone says so)."""
    return {"made_by": "impasto setup", "backend": plan.source.backend,
            "torch_index": plan.source.index_url,
            "python": {"via": "uv" if plan.uv else " ".join(plan.python),
                       "home": pythons.base_of(plan.venv)}}


def run_plan(plan: Plan, log: Path, progress: Callable[[int, int, str], None],
             pulse: Callable[[], None] | None = None) -> Path:
    """Run each step, appending its output to `log`; the environment's Python on success.
    `pulse` is called about twice a second while a step runs (GIMP's progress bar moves
    during the minutes torch takes)."""
    check_plan(plan)
    try:
        log.parent.mkdir(parents=True, exist_ok=True)
        out = open(log, "a", encoding="utf-8")  # noqa: SIM115 - closed below
    except OSError as e:
        raise SetupError(f"cannot write the log {log}: {e.strerror or e}") from None
    # GIMP's PYTHONPATH, PYTHONHOME, LD_PRELOAD, ... never reach the Pythons and pip.
    env = pythons.clean_env()
    if plan.wheels is not None:
        # Offline means this folder only: no pip configuration adds other places.
        env["PIP_CONFIG_FILE"] = os.devnull
    if plan.tools is not None:
        env = pythons.uv_env(env, plan.tools / "python", plan.tools / "cache")
    names = plan.names or list(STEP_NAMES)
    made = len(plan.steps) - 3  # the step that makes the environment
    with out:
        if plan.uv is not None and plan.tools is not None:
            progress(0, len(plan.steps), "fetching uv (it installs a Python)")
            out.write(f"\n# fetching uv into {plan.tools}\n")
            try:
                pythons.fetch_uv(plan.tools)
            except (OSError, ValueError) as e:
                raise SetupError(f"fetching uv from the package index failed ({e}); install "
                                 "Python 3.12 from python.org and run the set-up again") from None
        for i, (cmd, name) in enumerate(zip(plan.steps, names)):
            progress(i, len(plan.steps), name)
            out.write(f"\n$ {' '.join(cmd)}\n")
            out.flush()
            try:
                proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, env=env, **spawn.hidden())
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
            if i == made:  # the environment exists: mark it as the set-up's own
                plan.venv.mkdir(parents=True, exist_ok=True)
                (plan.venv / MARKER).write_text(json.dumps(record(plan)) + "\n")
        progress(len(plan.steps), len(plan.steps), "done")
    return venv_python(plan.venv)


def server_problem(bridge_python: str) -> str | None:
    """Why the server whose Python is `bridge_python` (the bridge config's program)
    cannot start, in an artist's words, or None: its base Python is gone (updated or
    removed: a python.org uninstall, a Homebrew upgrade, a Flatpak runtime update)."""
    exe = Path(bridge_python)
    venv = exe.parent.parent
    if not is_ours(venv):
        return None  # not the set-up's (a checkout's venv): nothing recorded to check
    try:
        recorded = json.loads((venv / MARKER).read_text()).get("python") or {}
    except (OSError, ValueError, AttributeError):
        recorded = {}
    gone = pythons.base_missing(venv, recorded)
    if gone is None and exe.exists():
        return None
    return (f"the Python impasto's server was built on ({gone or exe}) is gone, updated or "
            "removed; the server cannot start. Choose Filters > Artistic > Neural Style: "
            "Set Up Server... and 'Set up or repair' to rebuild it")


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
                           timeout=300, env=pythons.clean_env(), **spawn.hidden())
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
                   "data folder, impasto/server; on Windows impasto\\s, short for its path limit)")
    p.add_argument("--backend", choices=BACKENDS, help="GPU back end (default: detected)")
    p.add_argument("--python", help="the Python to build the environment with (default: the "
                   "newest Python 3.11+ found that the set-up can trust, else a standalone "
                   "Python that uv, fetched from the package index, installs)")
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
    venv = a.dir or default_venv()

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
        facts = gather_facts()
        detected, why = choose_backend(facts)
        backend = a.backend or detected
        # plan checks what run would, so that a plan that passes is a run that can start.
        check_target(venv)
        if a.wheels is not None and not a.wheels.is_dir():
            raise SetupError(f"the offline package folder {a.wheels} does not exist")
        python = (choose_python(a.python, a.wheels is not None)
                  if (a.action == "run" or a.python) else [sys.executable])
        plan = make_plan(venv, backend, a.package or default_package(), python, a.wheels,
                         cuda=cuda_for(facts))
        check_plan(plan)
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
