"""The Windows-library mode itself (tests/winlib/impasto_winlib.py): what it takes from
impasto's modules, in a child started as GIMP starts the bridge (`python -I`), and what
it leaves to everything else."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

PROBE = r"""
import os, sys
import impasto.portable as p
from impasto import fsio
print(p.sys.platform, p.system(), fsio.os.name)
print(hasattr(fsio.os, "O_NOFOLLOW"), hasattr(fsio.os, "O_BINARY"), sorted(fsio.os.supports_dir_fd))
print(hasattr(os, "O_NOFOLLOW"), sys.platform)  # this script: Linux's library
for mod in ("fcntl", "resource", "pwd"):
    try:
        exec(f"import {mod}", vars(fsio))
        print(mod, "imported")
    except ImportError:
        print(mod, "refused")
try:
    fsio.os.stat(".", dir_fd=3)
except NotImplementedError as e:
    print(e)
r, w = os.pipe()
try:
    exec("import select; select.select([r], [], [], 0)", {**vars(fsio), "r": r})
except OSError as e:
    print(e.errno)
"""


def test_the_mode_holds_impasto_modules_to_windows_library_and_nothing_else(
        tmp_path: Path, env: dict[str, str]) -> None:
    env = {**env, "IMPASTO_WINDOWS_LIBRARY": "1"}
    r = subprocess.run([sys.executable, "-I", "-c", PROBE], env=env, cwd=tmp_path,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "win32 Windows nt"
    assert lines[1] == "False True []"
    assert lines[2] == "True linux"
    assert lines[3:6] == ["fcntl refused", "resource refused", "pwd refused"]
    assert lines[6] == "stat: dir_fd unavailable on this platform"
    assert lines[7] == "10038"


def test_without_the_variable_the_line_does_nothing(tmp_path: Path, env: dict[str, str]) -> None:
    env = {k: v for k, v in env.items() if k != "IMPASTO_WINDOWS_LIBRARY"}
    r = subprocess.run([sys.executable, "-I", "-c", "import impasto.portable as p, sys; "
                        "print(p.sys is sys, 'impasto_winlib' in sys.modules)"],
                       env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert r.stdout.split() == ["True", "False"], r.stderr
