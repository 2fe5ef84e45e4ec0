"""What the watch-folder tests share: a folder, a daemon watching it, and the ledger."""

from __future__ import annotations

import time
from pathlib import Path

from impasto.client import Client
from impasto.fsio import fit_name, is_temp_name
from impasto.portable import fallbacks_forced
from tests.helpers import DaemonProcess, make_env, stripes_image

SETTINGS = 'style = "stripes"\nsize = 64\nscales = 1\niterations = 2\n'


def add_style(tmp: Path, name: str = "stripes") -> None:
    """Put a style into the library folder before the daemon (and its watcher) starts,
    so that files found by the start-up scan already have their style."""
    library = Path(make_env(tmp)["IMPASTO_DATA_DIR"]) / "styles"
    library.mkdir(parents=True, exist_ok=True)
    stripes_image(32, 32).save(library / f"{name}.png")


def watched(tmp_path: Path, folder: Path, *extra: str, env: dict[str, str] | None = None,
            port: int | None = None) -> DaemonProcess:
    add_style(tmp_path)
    return DaemonProcess(tmp_path, extra=["--watch", str(folder), *extra], env=env,
                         port=port).wait_ready()


def files(d: Path) -> list[str]:
    """Every non-folder below d (symlinks included), relative, sorted."""
    if not d.exists():
        return []
    return sorted(str(p.relative_to(d)) for p in d.rglob("*") if p.is_file() or p.is_symlink())


def wait_until(pred, timeout: float = 90.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def settled(folder: Path, n: int) -> bool:
    done = files(folder / "done")
    failed = [f for f in files(folder / "failed") if not f.endswith(".error.txt")]
    return len(done) + len(failed) >= n


def watch_status(d: DaemonProcess) -> dict:
    with Client(d.address) as c:
        return c.status().watch[0]


def report(rel: str) -> str:
    p = Path(rel)
    return str(p.with_name(fit_name(p.name, ".error.txt")))


def check_ledger(folder: Path, inputs: dict[str, bytes], failed: set[str] = frozenset(),
                 style: str = "stripes", daemon: DaemonProcess | None = None) -> None:
    """The exactly-once ledger: every input once in done/ (same bytes) with exactly one
    output, or once in failed/ with its reason; nothing else anywhere; status counts
    equal the disk."""
    done_files = files(folder / "done")
    failed_files = files(folder / "failed")
    want_done = sorted(r for r in inputs if r not in failed)
    assert done_files == want_done, f"done/: {done_files} != {want_done}"
    for r in want_done:
        assert (folder / "done" / r).read_bytes() == inputs[r], f"{r} changed on its way"
    want_failed = sorted([r for r in failed] + [report(r) for r in failed])
    assert failed_files == want_failed, f"failed/: {failed_files} != {want_failed}"
    for r in failed:
        assert (folder / "failed" / report(r)).read_text().strip()
    outs = files(folder / "out")

    def out_name(r: str) -> str:
        p = Path(r)
        below = p.parts[1:-1] if len(p.parts) > 1 else ()
        return str(Path(style if len(p.parts) == 1 else p.parts[0], *below,
                        fit_name(p.stem, ".png")))

    assert outs == sorted(out_name(r) for r in want_done), f"out/: {outs}"
    assert [f for f in files(folder / "in") if not f.endswith("impasto.toml")] == []
    # With the portable fallbacks forced, the lock's owner file stays beside it while a
    # watcher holds the folder or after one was killed (docs/portability.md).
    journal = [f for f in files(folder / ".impasto") if not (fallbacks_forced() and f == "lock.owner")]
    assert journal == ["lock"], files(folder / ".impasto")
    strays = [str(p) for p in folder.rglob("*") if is_temp_name(p.name)]
    assert strays == [], strays
    if daemon is not None:
        expect_status(daemon, 0, 0, len(want_done), len(failed))


def expect_status(daemon: DaemonProcess, pending: int, working: int, done: int,
                  failed: int) -> dict:
    """The folder's counts in status, waited for: the watcher books a file after filing
    it, so a client that sees the files can ask a moment before the counts follow (seen
    under load as working 1, done 2 beside three filed originals)."""
    want = (pending, working, done, failed)
    seen: list[dict] = []

    def agrees() -> bool:
        seen[:] = [watch_status(daemon)]
        return tuple(seen[0][k] for k in ("pending", "working", "done", "failed")) == want

    wait_until(agrees, timeout=30, what=f"status counts {want}")
    return seen[0]
