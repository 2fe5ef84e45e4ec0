"""CurveZMQ key files: the daemon's pair, client pairs, and the clients it accepts.

Every connection to a daemon is CurveZMQ, loopback included: the local user's keyring
(made on first use, by whichever impasto program runs first) lives in a folder only that
user can read, so another local user can neither talk to the daemon nor pose as it.

Layout under the keys folder (default ~/.config/impasto/keys, mode 0700):
  server.key, server.key_secret     the daemon's pair (ZeroMQ's certificate format)
  client.key, client.key_secret     this user's client pair
  authorized/NAME.key               public keys of clients the daemon accepts
Secret files are 0600; the daemon refuses to start with keys others can read.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path

import zmq.auth

from impasto.errors import ServeError


@dataclass
class ClientKeys:
    public: bytes
    secret: bytes
    server_public: bytes


def load_client_keys(keys_dir: Path) -> ClientKeys | None:
    """This machine's client pair plus the server's public key, if all are there."""
    try:
        server_public, _ = zmq.auth.load_certificate(keys_dir / "server.key")
        public, secret = zmq.auth.load_certificate(keys_dir / "client.key_secret")
    except (OSError, ValueError):
        return None
    if secret is None:
        return None
    return ClientKeys(public, secret, server_public)


def ensure_local_keys(keys_dir: Path) -> ClientKeys | None:
    """The local keyring, made if it is missing: a server pair, a client pair, and that
    client authorised. None where it cannot be made (a read-only home, say)."""
    try:
        keys_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(keys_dir, 0o700)
        with open(keys_dir / ".lock", "a") as lock:  # two first starts at once make one keyring
            fcntl.flock(lock, fcntl.LOCK_EX)
            for name in ("server", "client"):
                if not (keys_dir / f"{name}.key_secret").exists():
                    _create_pair(keys_dir, name)
            authorized = keys_dir / "authorized"
            authorized.mkdir(exist_ok=True, mode=0o700)
            if not (authorized / "client.key").exists():
                shutil.copyfile(keys_dir / "client.key", authorized / "client.key")
    except OSError:
        return None
    return load_client_keys(keys_dir)


def _create_pair(folder: Path, name: str) -> tuple[Path, Path]:
    """A key pair whose secret file is private from its first byte."""
    old = os.umask(0o077)
    try:
        public, secret = zmq.auth.create_certificates(folder, name)
    finally:
        os.umask(old)
    os.chmod(secret, 0o600)
    return Path(public), Path(secret)


def create_pair(folder: Path, name: str) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    return _create_pair(folder, name)


def check_private(keys_dir: Path) -> None:
    """Refuse secret keys that other users could read (or replace)."""
    for path in (keys_dir, keys_dir / "server.key_secret", keys_dir / "authorized"):
        with contextlib.suppress(FileNotFoundError):
            st = path.stat()
            if st.st_uid != os.getuid() or st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
                want = "700" if path.is_dir() else "600"
                raise ServeError(f"{path} can be read or changed by other users; "
                                 f"run `chmod {want} {path}` (and check its owner)")
