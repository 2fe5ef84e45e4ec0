"""Where impasto keeps things on disk (XDG on Linux, the platform's places elsewhere)."""

from __future__ import annotations

import os
import sys
from pathlib import Path


def _base(env: str, linux_default: str, mac: str, win_env: str) -> Path:
    if os.environ.get(env):
        return Path(os.environ[env])
    home = Path.home()
    if sys.platform == "darwin":
        return home / mac
    if sys.platform == "win32":
        return Path(os.environ.get(win_env) or home / "AppData" / "Local")
    return home / linux_default


def config_dir() -> Path:
    if os.environ.get("IMPASTO_CONFIG_DIR"):
        return Path(os.environ["IMPASTO_CONFIG_DIR"])
    return _base("XDG_CONFIG_HOME", ".config", "Library/Application Support", "APPDATA") / "impasto"


def data_dir() -> Path:
    if os.environ.get("IMPASTO_DATA_DIR"):
        return Path(os.environ["IMPASTO_DATA_DIR"])
    return _base("XDG_DATA_HOME", ".local/share", "Library/Application Support", "LOCALAPPDATA") / "impasto"


def cache_dir() -> Path:
    if os.environ.get("IMPASTO_CACHE_DIR"):
        return Path(os.environ["IMPASTO_CACHE_DIR"])
    return _base("XDG_CACHE_HOME", ".cache", "Library/Caches", "LOCALAPPDATA") / "impasto"


def styles_dir() -> Path:
    return data_dir() / "styles"


def keys_dir() -> Path:
    return config_dir() / "keys"


def default_address() -> str:
    from impasto.protocol import DEFAULT_ADDRESS

    return os.environ.get("IMPASTO_ADDRESS", DEFAULT_ADDRESS)
