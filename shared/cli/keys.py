"""`impasto keys`: CurveZMQ key pairs for using a daemon from another machine."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import zmq.auth

from impasto import paths


def cmd_keys(args: argparse.Namespace) -> int:
    root: Path = args.dir or paths.keys_dir()
    authorized = root / "authorized"
    authorized.mkdir(parents=True, exist_ok=True)
    root.chmod(0o700)
    if args.keys_command == "init":
        if not (root / "server.key_secret").exists():
            zmq.auth.create_certificates(root, "server")
        if not (root / "client.key_secret").exists():
            zmq.auth.create_certificates(root, "client")
        shutil.copy(root / "client.key", authorized / "client.key")
        print(f"server keys in {root}; this machine's client is authorised.")
        print("For another machine: `impasto keys add-client NAME`, then copy the files it names.")
    elif args.keys_command == "add-client":
        out = root / "clients" / args.name
        out.mkdir(parents=True, exist_ok=True)
        public, secret = zmq.auth.create_certificates(out, "client")
        shutil.copy(public, authorized / f"{args.name}.key")
        print(f"authorised {args.name}. On that machine, put these in its keys folder:\n"
              f"  {secret}\n  {public}\n  {root / 'server.key'} (the server's public key)")
    else:
        src: Path = args.public_key
        _, secret = zmq.auth.load_certificate(src)
        if secret is not None:
            print("refusing: that file holds a secret key; authorise the public .key file")
            return 2
        shutil.copy(src, authorized / src.name)
        print(f"authorised {src.name}")
    return 0
