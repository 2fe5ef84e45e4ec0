"""Shared test helpers: images, free ports, a daemon subprocess."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
IMPASTO = [sys.executable, "-m", "impasto.cli.main"]

# Seconds a process gets to start, answer or exit. Far above what an idle machine needs
# (a few seconds): tests run on 2-core machines that may be busy with other work, and a
# timeout here only says "hung", never "slow".
EXIT_S = 180


def test_device() -> str:
    """Where engine and daemon tests compute: cpu unless IMPASTO_TEST_DEVICE says
    otherwise (benchmarks/gpu.sh runs them on CUDA)."""
    return os.environ.get("IMPASTO_TEST_DEVICE", "cpu")


test_device.__test__ = False  # a helper, not a test


def mean_difference(a: Image.Image, b: Image.Image) -> float:
    """Mean absolute difference of two same-size images, in 8-bit levels."""
    return float(np.abs(np.asarray(a, dtype=np.float32) - np.asarray(b, dtype=np.float32)).mean())


def same_result(a: Image.Image, b: Image.Image) -> bool:
    """Equal images from two runs: bit for bit on the CPU. cuDNN's backward passes sum
    in a varying order, so on a GPU two runs differ by rounding, which L-BFGS carries
    into the odd pixel level; there, a mean difference under 0.1 of a level counts."""
    if a.size != b.size:
        return False
    if test_device() == "cpu":
        return a.tobytes() == b.tobytes()
    return mean_difference(a, b) < 0.1


def gradient_image(w: int = 80, h: int = 60, alpha: bool = False) -> Image.Image:
    yy, xx = np.mgrid[0:h, 0:w]
    r = xx * 255 // max(1, w - 1)
    g = yy * 255 // max(1, h - 1)
    b = ((xx // 8 + yy // 8) % 2) * 200 + 20  # a checker, so there are edges to keep
    arr = np.stack([r, g, b], -1).astype(np.uint8)
    img = Image.fromarray(arr, "RGB")
    if alpha:
        a = np.where(xx < w // 2, 255, 90).astype(np.uint8)
        img.putalpha(Image.fromarray(a, "L"))
    return img


def stripes_image(w: int = 64, h: int = 64, period: float = 3.0) -> Image.Image:
    yy, xx = np.mgrid[0:h, 0:w]
    arr = np.stack([
        np.sin(xx / period) * 127 + 128,
        np.sin(yy / (period + 2)) * 127 + 128,
        np.sin((xx + yy) / (period + 1)) * 127 + 128,
    ], -1).astype(np.uint8)
    return Image.fromarray(arr, "RGB")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_env(tmp: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update({
        "IMPASTO_CACHE_DIR": str(tmp / "cache"),
        "IMPASTO_DATA_DIR": str(tmp / "data"),
        "IMPASTO_CONFIG_DIR": str(tmp / "config"),
        "TORCH_HOME": str(tmp / "torch"),
        # Any download attempt fails fast instead of fetching 548 MB where there is a network.
        "https_proxy": "http://127.0.0.1:9", "http_proxy": "http://127.0.0.1:9",
        "PYTHONUNBUFFERED": "1",
    })
    env.pop("IMPASTO_ADDRESS", None)
    return env


def run_cli(args: list[str], env: dict[str, str], timeout: float = 300, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(IMPASTO + args, env=env, cwd=REPO, capture_output=True, text=True,
                          timeout=timeout, **kw)


def stop_signal() -> int:
    """The signal a service manager stops a process with here: SIGTERM; with the portable
    fallbacks forced, SIGINT (what a Windows console's Ctrl-C delivers)."""
    from impasto.portable.process import stop_signals

    return stop_signals()[-1]


class DaemonProcess:
    """`impasto serve` as a real subprocess on a loopback port."""

    def __init__(self, tmp: Path, extra: list[str] | None = None, port: int | None = None,
                 env: dict[str, str] | None = None, umask: int = -1) -> None:
        """umask: the daemon's (-1: this process's)."""
        self.port = port or free_port()
        self.address = f"tcp://127.0.0.1:{self.port}"
        self.env = env or make_env(tmp)
        self.log = tmp / f"daemon-{self.port}-{time.time_ns()}.log"
        args = ["serve", "--weights", "random", "--device", test_device(),
                "--bind", self.address] + (extra or [])
        self._logf = open(self.log, "w")  # noqa: SIM115 - lives as long as the process
        self.proc = subprocess.Popen(IMPASTO + args, env=self.env, cwd=REPO,
                                     stdout=self._logf, stderr=subprocess.STDOUT, umask=umask)

    def wait_ready(self, timeout: float = 4 * EXIT_S) -> DaemonProcess:
        from impasto.client import Client, DaemonUnavailable

        deadline = time.monotonic() + timeout
        keys = Path(self.env["IMPASTO_CONFIG_DIR"]) / "keys"  # the daemon's own keyring
        with Client(self.address, timeout=1.0, keys_dir=keys) as c:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"daemon exited {self.proc.returncode}:\n{self.output()}")
                try:
                    if c.status().state == "ready":
                        return self
                except DaemonUnavailable:
                    pass
                time.sleep(0.1)
        raise RuntimeError(f"daemon not ready after {timeout} s:\n{self.output()}")

    def output(self) -> str:
        if not self._logf.closed:
            self._logf.flush()
        return self.log.read_text()

    def stop(self, sig: int | None = None, timeout: float = EXIT_S) -> int:
        """Stop it the way this system's service managers do (SIGTERM; with the portable
        fallbacks forced, SIGINT as a Windows console's Ctrl-C)."""
        sig = stop_signal() if sig is None else sig
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._logf.close()
        return self.proc.returncode
