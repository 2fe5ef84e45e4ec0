"""Where impasto keeps things on disk (XDG on Linux, the platform's places elsewhere)."""

from __future__ import annotations

import os
import sys
from pathlib import Path


def _base(env: str, linux_default: str, mac: str, win_env: str,
          platform: str | None = None, environ: dict[str, str] | None = None,
          home: Path | None = None) -> Path:
    """The base folder for one kind of file on `platform` (sys.platform's names; default
    this one): pure given its arguments, so every system's answer is tested here."""
    environ = os.environ if environ is None else environ
    platform = platform or sys.platform
    home = home or Path.home()
    if environ.get(env):
        return Path(environ[env])
    if platform == "darwin":
        return home / mac
    if platform == "win32":
        return Path(environ.get(win_env) or home / "AppData" / ("Roaming" if win_env == "APPDATA" else "Local"))
    return home / linux_default


# (XDG variable, Linux default, macOS folder, Windows variable) per kind of file.
KINDS = {"config": ("XDG_CONFIG_HOME", ".config", "Library/Application Support", "APPDATA"),
         "data": ("XDG_DATA_HOME", ".local/share", "Library/Application Support", "LOCALAPPDATA"),
         "cache": ("XDG_CACHE_HOME", ".cache", "Library/Caches", "LOCALAPPDATA")}


def folder_for(kind: str, platform: str | None = None, environ: dict[str, str] | None = None,
               home: Path | None = None) -> Path:
    """impasto's folder of `kind` (config, data, cache) on `platform`, without the
    IMPASTO_*_DIR overrides."""
    return _base(*KINDS[kind], platform=platform, environ=environ, home=home) / "impasto"


def config_dir() -> Path:
    if os.environ.get("IMPASTO_CONFIG_DIR"):
        return Path(os.environ["IMPASTO_CONFIG_DIR"])
    return folder_for("config")


def data_dir() -> Path:
    if os.environ.get("IMPASTO_DATA_DIR"):
        return Path(os.environ["IMPASTO_DATA_DIR"])
    return folder_for("data")


def cache_dir() -> Path:
    if os.environ.get("IMPASTO_CACHE_DIR"):
        return Path(os.environ["IMPASTO_CACHE_DIR"])
    return folder_for("cache")


def styles_dir() -> Path:
    return data_dir() / "styles"


def keys_dir() -> Path:
    return config_dir() / "keys"


def default_address() -> str:
    from impasto.protocol import DEFAULT_ADDRESS

    return os.environ.get("IMPASTO_ADDRESS", DEFAULT_ADDRESS)
