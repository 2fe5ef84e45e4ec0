"""The embedded back end stays what it was: Ray is never imported without --cluster."""

from __future__ import annotations

import subprocess
import sys

from tests.helpers import REPO


def test_embedded_daemon_never_imports_ray() -> None:
    code = ("import sys; import impasto.server.serve, impasto.server.loop, "
            "impasto.server.backend, impasto.cli.main, impasto.watch.folder; "
            "sys.exit(1 if 'ray' in sys.modules else 0)")
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr or "ray was imported"
