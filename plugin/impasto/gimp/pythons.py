"""A Python the set-up can trust, and uv when there is none.

Standard library only (the GIMP plug-in's set-up runs it from a copy beside the plug-in,
`impasto_pythons.py`). What can go wrong with "the first python3 on PATH":
- Windows: no Python at all, or the Microsoft Store's stubs in `WindowsApps` (running
  one opens the Store; the Store's real Python lives in a sandbox of its own).
- macOS: GIMP puts `GIMP.app/Contents/MacOS` first on PATH, so `python3` is GIMP's own
  Python (the next GIMP update replaces it under the environment); Homebrew's and
  python.org's are not on a GUI program's PATH at all.
- Flatpak: the runtime's Python has no `ensurepip`, so `python -m venv` fails, and a
  runtime update replaces it under the environment; an AppImage's own `usr/bin` comes
  first on PATH.
- Everywhere: the host application's PYTHONPATH, PYTHONHOME, LD_PRELOAD and cache
  variables leak into every child.

So candidates are judged by pure rules (`judge`, `choose`, tested on fake candidate
lists), probes and installs run with `clean_env`, and when nothing passes the set-up
fetches `uv` from its wheel on the package index (`pick_uv_wheel` chooses the wheel for
this platform from PyPI's JSON) and has it install a standalone Python.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import stat
import subprocess
import sys
import threading
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePath, PurePosixPath, PureWindowsPath

if __package__:  # impasto.gimp.pythons
    from impasto.portable import spawn
else:  # impasto_pythons.py beside the GIMP plug-in
    import impasto_spawn as spawn

MIN_VERSION = (3, 11)
UV_PYTHON = "3.12"  # what uv installs when no Python here can be trusted
PYPI_JSON = "https://pypi.org/pypi/uv/json"

# Variables a host application (GIMP.app, an AppImage, a Flatpak) sets for its own Python
# and libraries, never meant for ours.
UNSAFE_PREFIXES = ("PYTHON", "DYLD_")
UNSAFE_NAMES = frozenset({"LD_PRELOAD", "LD_LIBRARY_PATH", "__PYVENV_LAUNCHER__",
                          "VIRTUAL_ENV", "CONDA_PREFIX", "XDG_CACHE_HOME", "PIP_TARGET",
                          "PIP_PREFIX", "PIP_USER"})


def clean_env(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """`env` (default os.environ) without the host application's Python and loader
    variables, and PATH without the application's own folders (an AppImage's mount, an
    app bundle's Contents): probes and installs see the user's system, not GIMP's."""
    env = dict(os.environ if env is None else env)
    out = {k: v for k, v in env.items()
           if k not in UNSAFE_NAMES and not k.upper().startswith(UNSAFE_PREFIXES)}
    appdir = env.get("APPDIR")  # set by AppImages: their files are mounted there
    keep = [p for p in env.get("PATH", "").split(os.pathsep)
            if p and not in_bundle(p) and not (appdir and p.startswith(appdir))]
    out["PATH"] = os.pathsep.join(keep)
    return out


def _pure(path: str) -> PurePath:
    return PureWindowsPath(path) if ("\\" in path or path[1:3] == ":\\") else PurePosixPath(path)


def in_bundle(path: str) -> bool:
    """Whether `path` lies inside a macOS application bundle (X.app/Contents/...)."""
    parts = _pure(path).parts
    return any(a.lower().endswith(".app") and b == "Contents" for a, b in zip(parts, parts[1:]))


def store_stub(path: str) -> bool:
    """The Microsoft Store's Python aliases (WindowsApps): never run, never chosen."""
    return any(p.lower() == "windowsapps" for p in _pure(path).parts)


@dataclass(frozen=True)
class Candidate:
    """A Python that was looked at: the command, where it resolved to, and what a probe
    found (None when it was not run)."""
    command: tuple[str, ...]
    path: str  # the program found (shutil.which), "" if none
    info: Mapping[str, object] | None = None  # the probe's answer (PROBE below)
    error: str = ""  # why the probe gave none


@dataclass(frozen=True)
class Facts:
    system: str  # platform.system()'s names
    flatpak: bool = False  # /.flatpak-info exists: GIMP's Flatpak sandbox


# What a probe prints: enough to judge a Python without trusting its PATH or prefix.
PROBE = ("import json, sys, importlib.util as u; print(json.dumps({"
         "'version': list(sys.version_info[:3]), 'executable': sys.executable, "
         "'base_prefix': sys.base_prefix, 'prefix': sys.prefix, "
         "'venv': u.find_spec('venv') is not None, "
         "'ensurepip': u.find_spec('ensurepip') is not None}))")


def judge(c: Candidate, facts: Facts) -> str | None:
    """Why candidate `c` cannot be trusted with the server's environment, or None. Pure."""
    if not c.path:
        return "not found"
    if store_stub(c.path):
        return "the Microsoft Store's alias (WindowsApps), not a Python to build on"
    if in_bundle(c.path):
        return "inside an application bundle (an application's own Python, e.g. GIMP.app's)"
    if c.info is None:
        return c.error or "did not run"
    base = str(c.info.get("base_prefix", ""))
    if in_bundle(base) or in_bundle(str(c.info.get("executable", ""))):
        return "inside an application bundle (an application's own Python, e.g. GIMP.app's)"
    if store_stub(base) or store_stub(str(c.info.get("executable", ""))):
        # Reached through the `py` launcher: the Store's real Python. Its writes to
        # %LOCALAPPDATA% go to a private copy in its package folder, so the environment
        # it would make there is invisible to GIMP and to the set-up's later steps.
        return ("the Microsoft Store's Python (WindowsApps): its files in AppData are "
                "redirected into its own package folder")
    version = tuple(c.info.get("version") or ())  # type: ignore[arg-type]
    if version < MIN_VERSION:
        return f"Python {'.'.join(map(str, version)) or '?'} is older than 3.11"
    if facts.flatpak and (base.startswith(("/usr", "/app")) or base == "/"):
        return ("the Flatpak's own Python: a runtime update would replace it under the "
                "server's environment")
    if not c.info.get("venv"):
        return "has no venv module"
    if not c.info.get("ensurepip"):
        return "has no ensurepip (a venv made with it would have no pip)"
    return None


def choose(candidates: list[Candidate], facts: Facts) -> tuple[Candidate | None, list[str]]:
    """The first trustworthy candidate (they come best first), and one line per
    candidate passed over, saying why. Pure."""
    why = []
    for c in candidates:
        problem = judge(c, facts)
        if problem is None:
            return c, why
        why.append(f"{' '.join(c.command)}: {problem}")
    return None, why


def candidate_commands(named: str | None, system: str,
                       env: Mapping[str, str] | None = None) -> list[list[str]]:
    """Pythons to try, best first. Pure given its arguments."""
    if named:
        return [[named]]
    env = os.environ if env is None else env
    out: list[list[str]] = []
    minors = ("3.13", "3.12", "3.11")
    if system == "Windows":
        out += [["py", f"-{m}"] for m in minors]
        local = env.get("LOCALAPPDATA")
        if local:  # python.org's per-user installs
            out += [[str(PureWindowsPath(local, "Programs", "Python",
                                         f"Python{m.replace('.', '')}", "python.exe"))]
                    for m in minors]
        return out + [["python3"], ["python"]]
    if system == "Darwin":
        # Not on a GUI program's PATH: Homebrew (Apple Silicon, Intel), python.org.
        for m in minors:
            out += [[f"/opt/homebrew/bin/python{m}"], [f"/usr/local/bin/python{m}"],
                    [f"/Library/Frameworks/Python.framework/Versions/{m}/bin/python3"]]
    out += [[f"python{m}"] for m in minors]
    return out + [["python3"], ["python"]]


def probe(command: list[str], env: Mapping[str, str], facts: Facts) -> Candidate:
    """Run the probe with a cleaned environment, no console window, and a time limit;
    a candidate judged unsafe by its path alone is never run."""
    path = shutil.which(command[0], path=env.get("PATH")) or (
        command[0] if Path(command[0]).is_file() else "")
    c = Candidate(tuple(command), path)
    if judge(c, facts) in ("not found",) or store_stub(path) or in_bundle(path):
        return c
    if system_of(facts) == "Darwin" and path == "/usr/bin/python3":
        # Apple's stub: without the developer tools it opens an installer dialog.
        return Candidate(tuple(command), path, None, "Apple's stub (/usr/bin/python3)")
    try:
        r = subprocess.run([path, *command[1:], "-I", "-c", PROBE], capture_output=True,
                           text=True, timeout=30, env=dict(env), stdin=subprocess.DEVNULL,
                           **spawn.hidden())
        info = json.loads(r.stdout.strip().splitlines()[-1]) if r.returncode == 0 else None
        return Candidate(tuple(command), path, info,
                         "" if info else f"exit {r.returncode}: {r.stderr.strip()[-200:]}")
    except (OSError, subprocess.TimeoutExpired, ValueError, IndexError) as e:
        return Candidate(tuple(command), path, None, str(e)[:200])


def system_of(facts: Facts) -> str:
    return facts.system


def gather_facts() -> Facts:
    return Facts(platform.system(), Path("/.flatpak-info").exists())


def find(named: str | None = None, facts: Facts | None = None,
         env: Mapping[str, str] | None = None) -> tuple[Candidate | None, list[str]]:
    """The Python to build on (None: use uv), and why each other was passed over."""
    facts = facts or gather_facts()
    env = clean_env(env)
    seen, candidates = set(), []
    for command in candidate_commands(named, facts.system, env):
        c = probe(command, env, facts)
        key = (c.info or {}).get("executable") or c.path or " ".join(command)
        if key in seen and c.info is not None:
            continue
        seen.add(key)
        candidates.append(c)
        if judge(c, facts) is None:
            break  # best first: no need to run the rest
    return choose(candidates, facts)


# --- uv ---------------------------------------------------------------------------------
def platform_tags(system: str, machine: str, libc: str = "glibc") -> tuple[str, ...]:
    """Wheel platform-tag patterns uv's wheels use for this platform, best first. Pure."""
    m = machine.lower()
    arch = {"amd64": "x86_64", "x64": "x86_64", "arm64": "aarch64"}.get(m, m)
    if system == "Windows":
        return {"x86_64": ("win_amd64",), "aarch64": ("win_arm64",),
                "x86": ("win32",), "i686": ("win32",)}.get(arch, ())
    if system == "Darwin":
        return ("macosx_*_arm64",) if arch == "aarch64" else ("macosx_*_x86_64",)
    if system == "Linux":
        kind = "manylinux" if libc == "glibc" else "musllinux"
        return (f"{kind}_*_{arch}", f"{kind}2014_{arch}")
    return ()


def pick_uv_wheel(files: list[Mapping[str, object]], system: str, machine: str,
                  libc: str = "glibc") -> Mapping[str, object] | None:
    """From PyPI's JSON `urls` for uv's latest release: the wheel for this platform. Pure."""
    import fnmatch

    patterns = platform_tags(system, machine, libc)
    for pattern in patterns:
        for f in files:
            if not isinstance(f, Mapping):  # a broken or hostile index answer
                continue
            name = str(f.get("filename", ""))
            if f.get("packagetype") != "bdist_wheel" or not name.endswith(".whl"):
                continue
            plat = name[:-4].split("-")[-1]
            if any(fnmatch.fnmatchcase(tag, pattern) for tag in plat.split(".")):
                return f
    return None


def uv_path(root: Path, system: str | None = None) -> Path:
    return root / ("uv.exe" if (system or platform.system()) == "Windows" else "uv")


def fetch_uv(root: Path, index_json: str = PYPI_JSON, timeout: float = 60.0) -> Path:
    """uv's binary from its wheel on the package index, into `root` (hash-checked), with
    the standard library only. Raises OSError or ValueError with the reason."""
    exe = uv_path(root)
    if exe.is_file():
        return exe
    with urllib.request.urlopen(index_json, timeout=timeout) as r:
        meta = json.load(r)
    files = meta.get("urls") if isinstance(meta, dict) else None
    if not isinstance(files, list):
        raise ValueError(f"the package index's answer for uv ({index_json}) lists no files")
    libc = platform.libc_ver()[0] or ("glibc" if platform.system() != "Linux" else "musl")
    wheel = pick_uv_wheel(files, platform.system(), platform.machine(), libc)
    if wheel is None:
        raise ValueError(f"uv publishes no wheel for {platform.system()} {platform.machine()}")
    digests = wheel.get("digests")
    want = str(digests.get("sha256") or "") if isinstance(digests, dict) else ""
    url = urllib.parse.urljoin(index_json, str(wheel.get("url") or ""))  # a mirror's may be relative
    if not want or urllib.parse.urlsplit(url).scheme not in ("https", "http"):
        raise ValueError(f"the package index gives no sha256 or no web address for uv's "
                         f"wheel {wheel.get('filename')}")
    root.mkdir(parents=True, exist_ok=True)
    part = root / "uv.whl.part"  # not the index's file name: it could hold ../
    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r, open(part, "wb") as f:
            while chunk := r.read(1 << 20):
                digest.update(chunk)
                f.write(chunk)
        if digest.hexdigest() != want:
            raise ValueError(f"uv's wheel {wheel['filename']} does not match the index's hash")
        with zipfile.ZipFile(part) as z:
            member = next((n for n in z.namelist()
                           if n.endswith(("/scripts/uv", "/scripts/uv.exe"))), None)
            if member is None:
                raise ValueError(f"no uv program in {wheel['filename']}")
            tmp = exe.with_name(exe.name + ".new")
            tmp.write_bytes(z.read(member))
    except zipfile.BadZipFile as e:
        raise ValueError(f"uv's wheel {wheel['filename']} is not a wheel: {e}") from None
    finally:
        part.unlink(missing_ok=True)
    tmp.chmod(tmp.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    os.replace(tmp, exe)
    return exe


def uv_steps(uv: Path, venv: Path, pythons: Path) -> list[list[str]]:
    """uv installs a standalone Python into `pythons` and makes the environment with it
    (with pip in it: the later steps are pip's, as with a found Python)."""
    return [[str(uv), "python", "install", UV_PYTHON, "--install-dir", str(pythons)],
            [str(uv), "venv", "--clear", "--seed", "--managed-python", "--python", UV_PYTHON,
             str(venv)]]


def uv_env(env: Mapping[str, str], pythons: Path, cache: Path) -> dict[str, str]:
    """uv's environment: its Pythons in our folder, its cache beside them, no telemetry
    of the host's Python settings."""
    return {**env, "UV_PYTHON_INSTALL_DIR": str(pythons), "UV_CACHE_DIR": str(cache),
            "UV_NO_CONFIG": "1"}


def base_of(venv: Path) -> str:
    """The base Python a venv was made from (pyvenv.cfg's `home`, plus its program)."""
    try:
        # UTF-8, as venv and uv write it: not the locale's code page (cp1252 on Windows
        # read C:\Users\Zoë's home as ZoÃ«, a Python "gone" on every start).
        text = (venv / "pyvenv.cfg").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    for line in text.splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "home":
            return value.strip()
    return ""


def base_missing(venv: Path, recorded: Mapping[str, object] | None) -> str | None:
    """What is gone of the Python the environment was built on, or None."""
    exe = str((recorded or {}).get("executable") or "")
    home = base_of(venv)
    for what in (exe, home):
        if what and not Path(what).exists():
            return what
    return None


class Survey:
    """The set-up dialog's questions about this machine (its graphics, its Pythons), each
    asked once and answered on a thread of its own, never on GTK's main loop: a probe
    may take a minute. `on_answer` is called from that thread when an answer arrives (the
    plug-in hands it to GLib.idle_add, so the dialog redraws in GTK's own thread)."""

    def __init__(self, on_answer: Callable[[], object] | None = None) -> None:
        self._on_answer = on_answer
        self._lock = threading.Lock()
        self._answers: dict[object, tuple[bool, object]] = {}  # key -> (ok, value or error)
        self._asked: dict[object, threading.Event] = {}

    def ask(self, key: object, question: Callable[[], object],
            wait: bool = False) -> tuple[bool, object] | None:
        """(True, value) or (False, the exception) once answered; None while the answer
        is being worked out (`wait`: block until it is)."""
        with self._lock:
            if key in self._answers:
                return self._answers[key]
            done = self._asked.get(key)
            if done is None:
                done = self._asked[key] = threading.Event()
                threading.Thread(target=self._work, args=(key, question, done), daemon=True,
                                 name="impasto-survey").start()
        if wait:
            done.wait()
            return self._answers[key]
        return None

    def _work(self, key: object, question: Callable[[], object], done: threading.Event) -> None:
        try:
            answer: tuple[bool, object] = (True, question())
        except Exception as e:  # noqa: BLE001 - handed to the asker, who words it
            answer = (False, e)
        with self._lock:
            self._answers[key] = answer
        done.set()
        if self._on_answer is not None:
            self._on_answer()


if __name__ == "__main__":  # a quick look: which Python this machine would give
    found, passed = find()
    print(json.dumps({"python": list(found.command) if found else None, "passed": passed}))
    sys.exit(0)
