"""The artefacts handed to users, built by one command:

    python -m impasto.gimp.package [--out dist]

- dist/impasto-VERSION-py3-none-any.whl: impasto itself (`pipx install`, `uv tool
  install`, or a server's venv);
- dist/impasto-gimp-VERSION.zip: one top folder, `impasto-neural-style/`, that unzips
  into any GIMP 3 plug-ins folder and holds everything the plug-in needs to set up its
  server: the plug-in file, the stand-alone set-up module and the standard-library
  modules it and the plug-in use (impasto.gimp.COMPANIONS), and the wheel.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import zipfile
from pathlib import Path

from impasto.gimp import PLUGIN_FILE, PLUGIN_NAME, companion_texts
from impasto.version import __version__

REPO = Path(__file__).resolve().parents[3]


def build_wheel(out: Path, source: Path = REPO) -> Path:
    """impasto's wheel from a checkout (needs the build backend, hatchling)."""
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob(f"impasto-{__version__}-*.whl"):
        old.unlink()
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w",
                        str(out), str(source)], capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"building the wheel failed:\n{r.stderr}")
    (wheel,) = out.glob(f"impasto-{__version__}-*.whl")
    return wheel


def build_archive(wheel: Path, out: Path) -> Path:
    """The GIMP plug-in archive around `wheel`."""
    archive = out / f"impasto-gimp-{__version__}.zip"
    top = PLUGIN_NAME
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as z:
        # GIMP runs plug-ins/NAME/NAME.py only if it is executable (unzip keeps the mode
        # where the file system has one).
        info = zipfile.ZipInfo.from_file(PLUGIN_FILE, f"{top}/{PLUGIN_FILE.name}")
        info.external_attr = (0o100755 << 16)
        z.writestr(info, PLUGIN_FILE.read_bytes(), zipfile.ZIP_DEFLATED)
        # The stand-alone set-up program, the plug-in's parts and every module they
        # import, by the names they import them by from the plug-in's folder
        # (impasto.gimp.COMPANIONS, PARTS), and its generated option fields.
        for name, text in companion_texts().items():
            part = zipfile.ZipInfo(f"{top}/{name}")
            part.external_attr = 0o100644 << 16  # writestr's default is 0600
            z.writestr(part, text, zipfile.ZIP_DEFLATED)
        z.write(wheel, f"{top}/{wheel.name}")
        readme = zipfile.ZipInfo(f"{top}/README.txt")
        readme.external_attr = 0o100644 << 16  # writestr's default is 0600
        z.writestr(readme, README.format(version=__version__, wheel=wheel.name),
                   zipfile.ZIP_DEFLATED)
    return archive


README = """impasto {version}: neural style transfer for GIMP 3

Unzip this folder (impasto-neural-style) into GIMP 3's plug-ins folder:
  Windows: %APPDATA%\\GIMP\\3.0\\plug-ins
  macOS:   ~/Library/Application Support/GIMP/3.0/plug-ins
  Linux:   ~/.config/GIMP/3.0/plug-ins (Flatpak: ~/.var/app/org.gimp.GIMP/config/GIMP/3.0/plug-ins)
then restart GIMP and choose Filters > Artistic > Neural Style... The first time, the
plug-in offers to set up its server (a Python environment with PyTorch for your
graphics card, and impasto from {wheel} in this folder; it needs Python 3.11 or newer).
Filters > Artistic > Neural Style: Set Up Server... repairs or removes it later.
"""


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m impasto.gimp.package",
                                description="Build impasto's wheel and GIMP plug-in archive.")
    p.add_argument("--out", type=Path, default=Path("dist"), help="output folder (default dist)")
    p.add_argument("--wheel", type=Path, help="use this wheel instead of building one")
    a = p.parse_args(argv)
    wheel = a.wheel or build_wheel(a.out)
    archive = build_archive(wheel, a.out)
    print(f"{wheel}\n{archive} ({archive.stat().st_size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
