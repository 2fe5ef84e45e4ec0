"""CurveZMQ key files: the daemon's pair, client pairs, and the clients it accepts.

Every connection to a daemon is CurveZMQ, loopback included: the local user's keyring
(made on first use, by whichever impasto program runs first) lives in a folder only that
user can read, so another local user can neither talk to the daemon nor pose as it.

Layout under the keys folder (default ~/.config/impasto/keys, mode 0700):
  server.key, server.key_secret     the daemon's pair (ZeroMQ's certificate format)
  client.key, client.key_secret     this user's client pair
  authorized/NAME.key               public keys of clients the daemon accepts
Secret files are 0600; the daemon refuses to start with keys others can read.
Keys added to or removed from authorized/ count from the next connection on, without a
restart (AuthorizedKeys).
"""

from __future__ import annotations

import logging
import os
import shutil
import stat
import threading
from dataclasses import dataclass
from pathlib import Path

import zmq.auth

from impasto.errors import ServeError
from impasto.portable import locks, privacy


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
        privacy.private_dir(keys_dir)
        with open(keys_dir / ".lock", "a") as lock:  # two first starts at once make one keyring
            held = locks.lock(lock.fileno(), str(keys_dir / ".lock"))
            try:
                for name in ("server", "client"):
                    if not (keys_dir / f"{name}.key_secret").exists():
                        _create_pair(keys_dir, name)
                authorized = keys_dir / "authorized"
                authorized.mkdir(exist_ok=True, mode=0o700)
                if not (authorized / "client.key").exists():
                    shutil.copyfile(keys_dir / "client.key", authorized / "client.key")
            finally:
                held.release()
    except OSError:
        return None
    return load_client_keys(keys_dir)


def _create_pair(folder: Path, name: str) -> tuple[Path, Path]:
    """A key pair whose secret file is private from its first byte."""
    with privacy.private_umask():
        public, secret = zmq.auth.create_certificates(folder, name)
    privacy.make_private(Path(secret))
    return Path(public), Path(secret)


def create_pair(folder: Path, name: str) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    return _create_pair(folder, name)


def check_private(keys_dir: Path) -> None:
    """Refuse secret keys that other users could read (or replace)."""
    for path in (keys_dir, keys_dir / "server.key_secret", keys_dir / "authorized"):
        why = privacy.problem(path)
        if why:
            raise ServeError(why)


class AuthorizedKeys:
    """The client keys a daemon accepts: the public keys in its authorized/ folder, as the
    folder is now. ZeroMQ's authenticator calls `callback` at each CurveZMQ handshake.

    Why not ZeroMQ's own `configure_curve(location=...)`: it reads the folder once, so a
    key added with `impasto keys add-client` waited for a restart, and a removed one kept
    working. And re-running it when the folder changes is not enough: where one file fails
    to load, it keeps the whole old set, so a stray file in the folder would keep a
    removed key working. Here the folder's listing (name, inode, size, times of each
    file: a few stat calls, beside the handshake's own cryptography) is compared at
    each handshake, the keys are read again when it differs, and a file that does not
    load is skipped and logged. So a change counts from the next connection on, with no
    timer and no watcher thread; connections already open keep their key.
    """

    def __init__(self, folder: Path, log: logging.Logger) -> None:
        self.folder = folder
        self._log = log
        self._lock = threading.Lock()
        self._listing: list[tuple[str, int, int, int, int]] | None = None
        self._keys: frozenset[bytes] = frozenset()

    def _list(self) -> list[tuple[str, int, int, int, int]]:
        out = []
        with os.scandir(self.folder) as entries:
            for e in entries:
                if not e.name.endswith(".key"):  # ZeroMQ's convention: NAME.key files
                    continue
                try:
                    st = e.stat()
                except OSError:  # gone meanwhile, or a dangling link
                    continue
                if not stat.S_ISREG(st.st_mode):  # a FIFO would block the handshake thread
                    continue
                out.append((e.name, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns))
        return sorted(out)

    def keys(self) -> frozenset[bytes]:
        """The Z85 public keys authorised now (empty, so nobody gets in, where the
        folder cannot be read)."""
        with self._lock:
            try:
                listing = self._list()
            except OSError as e:
                self._log.error("cannot read the authorised keys in %s: %s", self.folder, e)
                self._listing, self._keys = None, frozenset()
                return self._keys
            if listing != self._listing:
                keys = set()
                for name, *_ in listing:
                    try:
                        public, _ = zmq.auth.load_certificate(self.folder / name)
                    except Exception as e:  # noqa: BLE001 - any malformed file; an
                        # exception here would end ZeroMQ's authenticator thread
                        self._log.warning("ignoring %s: not a CurveZMQ public key file (%s)",
                                          self.folder / name, e)
                        continue
                    keys.add(public)
                # Listed before reading: a file written meanwhile changes the listing
                # again, so the next handshake reads it once more.
                self._listing, self._keys = listing, frozenset(keys)
                self._log.info("%d client keys authorised in %s", len(keys), self.folder)
            return self._keys

    def callback(self, domain: str, key: bytes) -> bool:
        """ZeroMQ's credentials hook: `key` is the client's public key in Z85."""
        return key in self.keys()
