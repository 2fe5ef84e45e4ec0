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
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import zmq.auth

from impasto.errors import ServeError
from impasto.portable import locks, privacy

# A certificate file is a few hundred bytes; anything much larger is not one, and is not
# read whole (a 200 MiB file in authorized/ would cost its size at every change).
KEY_FILE_MAX = 64 * 1024
# This machine's own client key in authorized/: the local user, who may see server paths
# and manage every style.
LOCAL_KEY_FILE = "client.key"


def read_key_bytes(path: Path) -> bytes:
    """A key file's bytes, only from a regular file of at most KEY_FILE_MAX bytes: a
    FIFO, a device (/dev/zero) or a folder is refused at once, without blocking on it or
    reading it. ValueError says why; OSError where it cannot be opened."""
    if sys.platform == "win32":
        # No FIFOs or devices in a Windows folder to block on: the type is checked on
        # the open file below.
        fd = os.open(path, os.O_RDONLY | os.O_BINARY)
    else:
        # Non-blocking: opening a FIFO with no writer would otherwise wait for one.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ValueError(f"not a regular file ({_kind(st.st_mode)})")
    except BaseException:
        os.close(fd)
        raise
    with os.fdopen(fd, "rb") as f:
        data = f.read(KEY_FILE_MAX + 1)
    if len(data) > KEY_FILE_MAX:
        raise ValueError(f"over {KEY_FILE_MAX // 1024} KiB; a key file is a few hundred bytes")
    return data


def parse_key_bytes(data: bytes) -> tuple[bytes, bytes | None]:
    """(public, secret or None) from a ZeroMQ certificate's text, read as
    zmq.auth.load_certificate reads it; ValueError without a public key."""
    public = secret = None
    for line in data.splitlines():
        line = line.strip()
        if line.startswith(b"#"):
            continue
        if line.startswith(b"public-key") and b"=" in line:
            public = line.split(b"=", 1)[1].strip(b" \t'\"")
        if line.startswith(b"secret-key") and b"=" in line:
            secret = line.split(b"=", 1)[1].strip(b" \t'\"")
    if not public:
        raise ValueError("no public key in it")
    return public, secret or None


def read_key_file(path: Path) -> tuple[bytes, bytes | None]:
    """(public, secret or None) from a key file, read as read_key_bytes reads it."""
    return parse_key_bytes(read_key_bytes(path))


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a plain file"


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
                made = False
                for name in ("server", "client"):
                    if not (keys_dir / f"{name}.key_secret").exists():
                        _create_pair(keys_dir, name)
                        made = made or name == "client"
                authorized = keys_dir / "authorized"
                authorized.mkdir(exist_ok=True, mode=0o700)
                # A new client pair replaces the old one's authorisation: the old key's
                # secret is gone, and the new key would otherwise be locked out.
                if made or not (authorized / LOCAL_KEY_FILE).exists():
                    shutil.copyfile(keys_dir / "client.key", authorized / LOCAL_KEY_FILE)
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


def other_clients(keys_dir: Path) -> list[str]:
    """The keys in authorized/ other than this machine's own client (by key, not only by
    name): the ones made on purpose for other machines (`impasto keys add-client NAME`,
    `impasto keys authorize FILE`), sorted by file name."""
    folder = keys_dir / "authorized"
    try:
        own: bytes | None = read_key_file(folder / LOCAL_KEY_FILE)[0]
    except (OSError, ValueError):
        own = None
    try:
        names = sorted(p.name for p in folder.iterdir())
    except OSError:
        return []
    out = []
    for name in names:
        if not name.endswith(".key"):
            continue
        try:
            public, _ = read_key_file(folder / name)
        except (OSError, ValueError):
            continue
        if public != own:
            out.append(name)
    return out


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
    removed key working. Here the folder's listing (name, type, inode, size, times of
    each entry: a few stat calls, beside the handshake's own cryptography) is compared
    at each handshake, the keys are read again when it differs, and an entry that does
    not load (not NAME.key, not a regular file, too large, no key in it) is skipped and
    logged, once per change. So a change counts from the next connection on, with no
    timer and no watcher thread; the daemon's loop closes connections whose key went.
    """

    def __init__(self, folder: Path, log: logging.Logger) -> None:
        self.folder = folder
        self._log = log
        self._lock = threading.Lock()
        self._listing: list[tuple[str, int, int, int, int, int]] | None = None
        self._keys: frozenset[bytes] = frozenset()
        self._named: dict[str, bytes] = {}

    def _list(self) -> list[tuple[str, int, int, int, int, int]]:
        out = []
        with os.scandir(self.folder) as entries:
            for e in entries:
                try:
                    st = e.stat()
                except OSError:  # gone meanwhile, or a dangling link
                    continue
                out.append((e.name, stat.S_IFMT(st.st_mode), st.st_ino, st.st_size,
                            st.st_mtime_ns, st.st_ctime_ns))
        return sorted(out)

    def _read(self, listing: list[tuple[str, int, int, int, int, int]]) -> dict[str, bytes]:
        named = {}
        for name, kind, _, size, *_ in listing:
            path = self.folder / name
            if not name.endswith(".key"):  # ZeroMQ's convention: NAME.key files
                why = "not named NAME.key"
            elif not stat.S_ISREG(kind):  # a FIFO would block the handshake thread
                why = f"not a regular file ({_kind(kind)})"
            elif size > KEY_FILE_MAX:
                why = f"{size:,} bytes; a key file is a few hundred"
            else:
                try:
                    named[name], _ = read_key_file(path)
                    continue
                except Exception as e:  # noqa: BLE001 - any malformed file; an
                    # exception here would end ZeroMQ's authenticator thread
                    why = f"not a CurveZMQ public key file ({e})"
            self._log.warning("ignoring %s: %s", path, why)
        return named

    def _refresh(self) -> None:
        try:
            listing = self._list()
        except OSError as e:
            self._log.error("cannot read the authorised keys in %s: %s", self.folder, e)
            self._listing, self._keys, self._named = None, frozenset(), {}
            return
        if listing != self._listing:
            named = self._read(listing)
            # Listed before reading: a file written meanwhile changes the listing
            # again, so the next handshake reads it once more.
            self._listing, self._keys, self._named = listing, frozenset(named.values()), named
            self._log.info("%d client keys authorised in %s", len(self._keys), self.folder)

    def keys(self) -> frozenset[bytes]:
        """The Z85 public keys authorised now (empty, so nobody gets in, where the
        folder cannot be read)."""
        with self._lock:
            self._refresh()
            return self._keys

    def named(self, name: str) -> str:
        """The key authorised as authorized/NAME now (Z85), or "" if none."""
        with self._lock:
            self._refresh()
            return self._named.get(name, b"").decode()

    def callback(self, domain: str, key: bytes) -> bool:
        """ZeroMQ's credentials hook: `key` is the client's public key in Z85."""
        return key in self.keys()
