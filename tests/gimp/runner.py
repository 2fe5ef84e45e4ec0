"""Runs a real GIMP 3 in batch mode: in the Debian 13 chroot that tests/gimp/setup_gimp.sh
builds on Debian 12, or the system's GIMP on Debian 13."""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import unquote, urlparse

from tests.helpers import REPO

GIMP = "gimp-console-3.0"


class GimpRunner:
    def __init__(self, root: str, work: Path, folder: str = "impasto-test") -> None:
        """folder: its own in the chroot (runs beside each other keep theirs apart)."""
        self.chroot = None if root == "host" else Path(root)
        # Paths as GIMP sees them (inside the chroot) and as the host sees them.
        if self.chroot is not None:
            self.inner_base = Path("/") / folder
            self.host_base = self.chroot / folder
        else:
            self.host_base = self.inner_base = work / "gimp"
        if self.host_base.exists():
            shutil.rmtree(self.host_base)
        (self.host_base / "io").mkdir(parents=True)
        (self.host_base / "home").mkdir(parents=True)

    @property
    def profile(self) -> Path:
        return self.host_base / "home" / ".config" / "GIMP" / "3.0"

    def host(self, inner: Path | str) -> Path:
        """Host path of a path that GIMP sees."""
        rel = Path(inner).relative_to(self.inner_base)
        return self.host_base / rel

    def inner(self, host: Path) -> Path:
        return self.inner_base / host.relative_to(self.host_base)

    @property
    def io(self) -> Path:
        return self.host_base / "io"

    def bridge_command(self, venv_python: str) -> str:
        """The bridge as GIMP's side runs it: in the chroot, the chroot's Python (with
        Debian's python3-zmq) and a copy of the torch-free part of the impasto package:
        shared/impasto and plugin/impasto, merged as they are in the wheel."""
        if self.chroot is None:
            return f"{venv_python} -I -m impasto.gimp.bridge"
        lib = self.host_base / "opt" / "impasto-lib"
        skip = shutil.ignore_patterns("__pycache__", "impasto-neural-style")
        for root in ("shared", "plugin"):
            shutil.copytree(REPO / root / "impasto", lib / "impasto", ignore=skip,
                            dirs_exist_ok=True)
        launch = (f"import sys; sys.path.insert(0, {str(self.inner(lib))!r}); "
                  "from impasto.gimp.bridge import main; sys.exit(main())")
        return f"/usr/bin/python3 -I -c {shlex.quote(launch)}"

    def share_keys(self, config_dir: Path, bridge_config: Path) -> None:
        """In the chroot, the bridge cannot see the host's config folder: copy the keys
        in and point the bridge config at the copy."""
        if self.chroot is None:
            return
        dest = self.host_base / "impasto-config"
        shutil.copytree(config_dir / "keys", dest / "keys", dirs_exist_ok=True)
        cfg = json.loads(bridge_config.read_text())
        cfg["env"]["IMPASTO_CONFIG_DIR"] = str(self.inner(dest))
        bridge_config.write_text(json.dumps(cfg))

    def run_batch(self, script: Path, env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess:
        batch = self.io / script.name
        shutil.copyfile(script, batch)
        code = f"exec(open({str(self.inner(batch))!r}).read())"
        genv = {"PATH": "/usr/bin:/bin", "HOME": str(self.inner_base / "home"), "LANG": "C.UTF-8",
                "PYTHONUNBUFFERED": "1", "IMPASTO_IO": str(self.inner(self.io)), **env}
        args = [GIMP, "-i", "--batch-interpreter=python-fu-eval", "-b", code, "--quit"]
        if self.chroot is not None:
            cmd = ["chroot", str(self.chroot), "/usr/bin/env", "-i"] + [f"{k}={v}" for k, v in genv.items()] + args
            run_env = None
        else:
            cmd, run_env = args, {**os.environ, **genv}
        t0 = time.monotonic()
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=run_env)
        p.elapsed = time.monotonic() - t0  # type: ignore[attr-defined]
        return p


    def provide_python(self) -> str:
        """A Python that runs where GIMP runs, of the version the test's wheels are built
        for: the host's own, copied into the chroot at the same path (once; it stays for
        later runs). The set-up under test builds its environment with it."""
        base = Path(sys.base_prefix)
        exe = base / "bin" / f"python{sys.version_info.major}.{sys.version_info.minor}"
        if self.chroot is None:
            return str(exe)
        dest = self.chroot / base.relative_to("/")
        mark = dest / ".impasto-copy-ok"
        if not mark.exists():
            if dest.exists():
                shutil.rmtree(dest)
            # The standard library only: neither the host's installed packages nor its tests.
            skip = shutil.ignore_patterns("site-packages", "test", "__pycache__", "idlelib",
                                          "tkinter", "turtledemo")
            shutil.copytree(base, dest, symlinks=True, ignore=skip)
            (dest / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}"
             / "site-packages").mkdir(exist_ok=True)
            mark.touch()
        return str(exe)

    def wheel_folder(self, *requirements: str) -> Path:
        """A folder of every wheel `requirements` need, as the set-up's offline source,
        where GIMP sees it. pip resolves them here as it would install them; the files are
        hard-linked from the package index's local copy (no second copy of torch's
        gigabytes), or downloaded where the index is remote."""
        host = (self.chroot / "opt" / "impasto-wheels") if self.chroot else self.host_base / "wheels"
        host.mkdir(parents=True, exist_ok=True)
        report = self.host_base / "resolve.json"
        # The suite points downloads at a dead proxy (no test fetches weights); the package
        # index is the one place this may reach, for what its local copy lacks.
        env = {k: v for k, v in os.environ.items() if k.lower() not in ("http_proxy", "https_proxy")}
        r = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--quiet",
                            "--ignore-installed", "--report", str(report), *requirements],
                           capture_output=True, text=True, timeout=900, env=env)
        if r.returncode != 0:
            raise RuntimeError(f"pip could not resolve {requirements}:\n{r.stderr[-4000:]}")
        for item in json.loads(report.read_text())["install"]:
            url = item["download_info"]["url"]
            name = unquote(url.rsplit("/", 1)[-1])
            if (host / name).exists() or not name.endswith(".whl"):
                continue
            if url.startswith("file://"):
                src = Path(unquote(urlparse(url).path))
                if src.resolve() in {Path(r).resolve() for r in requirements if Path(r).exists()}:
                    continue  # impasto's own wheel: the archive carries it
                try:
                    os.link(src, host / name)
                except OSError:
                    shutil.copyfile(src, host / name)
            else:
                meta = item["metadata"]
                subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
                                "--dest", str(host), f"{meta['name']}=={meta['version']}"],
                               check=True, timeout=1800, env=env)
        return host

    def stop_processes(self, marker: str) -> list[int]:
        """End what runs with `marker` in its command line (an autostarted daemon living
        on after GIMP quit): SIGTERM, then SIGKILL after 20 s."""
        found = []
        root = str(self.chroot or "/")  # this runner's processes, not another chroot's
        for d in Path("/proc").iterdir():
            if d.name.isdigit():
                try:
                    if (marker.encode() in (d / "cmdline").read_bytes()
                            and os.readlink(d / "root") == root):
                        found.append(int(d.name))
                except OSError:
                    pass
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for pid in found:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and any(Path(f"/proc/{p}").exists() for p in found):
                time.sleep(0.2)
        return found


def gimp_root() -> str | None:
    """Where a GIMP 3 is: $IMPASTO_GIMP_ROOT (set by scripts/test), or the system's."""
    root = os.environ.get("IMPASTO_GIMP_ROOT")
    if root == "host" or (root and Path(root, "usr/bin", GIMP).exists()):
        return root
    if shutil.which(GIMP):
        return "host"
    default = Path("/var/tmp/impasto-gimp/root")
    if (default / "usr/bin" / GIMP).exists():
        return str(default)
    return None
