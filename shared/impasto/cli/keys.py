"""`impasto keys`: CurveZMQ key pairs, for using a daemon from another machine."""

from __future__ import annotations

import argparse
import re
import shutil
from pathlib import Path

from impasto import paths
from impasto.errors import BAD_OPTIONS, ImpastoError
from impasto.keys import create_pair, ensure_local_keys, parse_key_bytes, read_key_bytes

_CLIENT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def _held(path: Path) -> bytes | None:
    """What an authorised key file holds now (None: not a key file one can read)."""
    try:
        return read_key_bytes(path)
    except (OSError, ValueError):
        return None


def cmd_keys(args: argparse.Namespace) -> int:
    root: Path = args.dir or paths.keys_dir()
    if ensure_local_keys(root) is None:
        raise ImpastoError(BAD_OPTIONS, f"cannot create the keys folder {root}")
    authorized = root / "authorized"
    if args.keys_command == "init":
        print(f"server keys in {root}; this machine's client is authorised.")
        print("For another machine: `impasto keys add-client NAME`, then copy the files it names.")
    elif args.keys_command == "add-client":
        if not _CLIENT_NAME.fullmatch(args.name):
            raise ImpastoError(BAD_OPTIONS, "client names are 1-64 letters, digits, _ . -")
        public, secret = create_pair(root / "clients" / args.name, "client")
        shutil.copyfile(public, authorized / f"{args.name}.key")
        print(f"authorised {args.name}. On that machine, put these in its keys folder "
              f"(`impasto keys` there shows where), keeping client.key_secret private "
              f"(chmod 600):\n  {secret}\n  {public}\n  {root / 'server.key'} (the server's "
              "public key)")
    else:
        src: Path = args.public_key
        # Read once, within a key file's size, from a regular file only (a FIFO would
        # block, /dev/zero would never end); what was checked is what is written.
        try:
            data = read_key_bytes(src)
            _, secret = parse_key_bytes(data)
        except (OSError, ValueError) as e:
            why = e.strerror if isinstance(e, OSError) and e.strerror else e
            raise ImpastoError(BAD_OPTIONS, f"{src} is not a CurveZMQ public key file: {why}") from None
        if secret is not None:
            raise ImpastoError(BAD_OPTIONS, "refusing: that file holds a secret key; authorise "
                               "the public .key file")
        dest = authorized / src.name
        if dest.exists() and _held(dest) != data:
            # Keys count at once: replacing one (client.key is this user's own) would
            # lock its holder out without a word.
            raise ImpastoError(BAD_OPTIONS, f"refusing: another key is already authorised as "
                               f"{src.name}; rename the file (the name is only a label)")
        dest.write_bytes(data)
        print(f"authorised {src.name}")
    return 0
