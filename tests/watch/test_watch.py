"""Watch folders with real files, real watchdog events and a real daemon subprocess."""

from __future__ import annotations

import os
import shutil
import signal
import time
from pathlib import Path

import pytest
from PIL import Image

from impasto.client import Client
from impasto.portable.process import stop_signals
from impasto.protocol import StylesList
from tests.helpers import EXIT_S, DaemonProcess, run_cli, stop_signal, stripes_image
from tests.watch.common import (
    SETTINGS,
    add_style,
    check_ledger,
    expect_status,
    files,
    settled,
    wait_until,
    watch_status,
    watched,
)

# Run again with the portable fallbacks forced (scripts/test): the paths other systems take.
pytestmark = pytest.mark.portable


def test_cp_mv_rsync_and_layout(tmp_path: Path, folder: Path, src: Path) -> None:
    d = watched(tmp_path, folder)
    try:
        inbox = folder / "in"
        (inbox / "stripes").mkdir()
        shutil.copy(src, inbox / "copied.png")                      # cp into in/ (default style)
        outside = tmp_path / "moved.png"
        shutil.copy(src, outside)
        os.rename(outside, inbox / "stripes" / "moved.png")         # mv into a style folder
        tmp = inbox / ".synced.png.Xa81bc"                          # rsync: temp, then rename
        shutil.copy(src, tmp)
        time.sleep(3)  # longer than the settle time: the dot-file must still be ignored
        assert tmp.exists()
        os.rename(tmp, inbox / "synced.png")
        wait_until(lambda: settled(folder, 3), what="3 files")
        assert files(folder / "done") == ["copied.png", "stripes/moved.png", "synced.png"]
        assert files(folder / "out") == ["stripes/copied.png", "stripes/moved.png",
                                         "stripes/synced.png"]
        assert files(folder / "failed") == []
        assert files(inbox) == ["impasto.toml"]
        assert Image.open(folder / "out" / "stripes" / "copied.png").size == (64, 46)
        w = expect_status(d, 0, 0, 3, 0)
        assert w == {"folder": str(folder.resolve()), "pending": 0, "working": 0, "done": 3,
                     "failed": 0}
        r = run_cli(["status", "--address", d.address], d.env)
        assert "pending 0, working 0, done 3, failed 0" in r.stdout
    finally:
        d.stop()


def test_failures_have_reasons_and_watcher_keeps_going(tmp_path: Path, folder: Path,
                                                        src: Path) -> None:
    d = watched(tmp_path, folder)
    try:
        inbox = folder / "in"
        data = src.read_bytes()
        (inbox / "corrupt.png").write_bytes(data[: len(data) // 3])
        (inbox / "notes.txt").write_text("not an image")
        (inbox / "nosuchstyle").mkdir()
        shutil.copy(src, inbox / "nosuchstyle" / "x.png")
        big = tmp_path / "big.png"
        Image.new("RGB", (4200, 4200)).save(big)
        shutil.copy(big, inbox / "huge.png")
        os.symlink(src, inbox / "link.png")           # symlinks are not taken
        shutil.copy(src, inbox / "fine.png")
        wait_until(lambda: settled(folder, 5), what="5 files")
        failed = folder / "failed"
        reasons = {p.name: p.read_text() for p in failed.rglob("*.error.txt")}
        assert set(reasons) == {"corrupt.png.error.txt", "notes.txt.error.txt", "x.png.error.txt",
                                "huge.png.error.txt"}
        assert "cannot be decoded" in reasons["corrupt.png.error.txt"]
        assert "not an image" in reasons["notes.txt.error.txt"]
        assert "unknown style 'nosuchstyle'" in reasons["x.png.error.txt"]
        assert "limit" in reasons["huge.png.error.txt"]
        assert (failed / "corrupt.png").read_bytes() == data[: len(data) // 3]  # original kept
        assert files(folder / "done") == ["fine.png"]
        assert (inbox / "link.png").is_symlink()
    finally:
        d.stop()


def test_slow_writer_is_taken_only_when_complete(tmp_path: Path, folder: Path, src: Path) -> None:
    d = watched(tmp_path, folder)
    try:
        data = src.read_bytes()
        target = folder / "in" / "slow.png"
        chunks = [data[i:i + len(data) // 6 + 1] for i in range(0, len(data), len(data) // 6 + 1)]
        with open(target, "wb") as f:
            for chunk in chunks:
                f.write(chunk)
                f.flush()
                time.sleep(0.6)
                assert target.exists()  # never claimed half-written
        wait_until(lambda: settled(folder, 1), what="slow file")
        assert files(folder / "done") == ["slow.png"] and files(folder / "failed") == []
        assert (folder / "done" / "slow.png").read_bytes() == data
    finally:
        d.stop()


def test_fifty_files_at_once_and_no_overwrite(tmp_path: Path, folder: Path, src: Path) -> None:
    (folder / "out" / "stripes").mkdir(parents=True)
    (folder / "out" / "stripes" / "p00.png").write_bytes(b"keep me")
    d = watched(tmp_path, folder)
    try:
        staging = tmp_path / "staging"
        staging.mkdir()
        for i in range(50):
            shutil.copy(src, staging / f"p{i:02}.png")
        for i in range(50):
            os.rename(staging / f"p{i:02}.png", folder / "in" / f"p{i:02}.png")
        # same stem, another format: both results must survive
        Image.open(src).convert("RGB").save(folder / "in" / "p01.jpg", quality=95)
        wait_until(lambda: settled(folder, 51), timeout=240, what="51 files")
        assert len(files(folder / "done")) == 51 and files(folder / "failed") == []
        outs = files(folder / "out" / "stripes")
        assert len(outs) == 52 and "p00-1.png" in outs and "p01-1.png" in outs
        assert (folder / "out" / "stripes" / "p00.png").read_bytes() == b"keep me"
    finally:
        d.stop()


def test_startup_scan_and_polling_mode_counts_match_the_disk(tmp_path: Path, folder: Path,
                                                              src: Path) -> None:
    early = [f"early{i:02}.png" for i in range(12)]
    for n in early:
        shutil.copy(src, folder / "in" / n)   # dropped while nothing watched
    d = watched(tmp_path, folder, "--poll")
    try:
        samples = []
        while not settled(folder, 12):
            w = watch_status(d)
            samples.append(w)
            # every file is somewhere in the counts at every moment, polling or not
            assert w["pending"] + w["working"] + w["done"] + w["failed"] == 12, samples
            time.sleep(0.1)
        assert samples and samples[0]["pending"] + samples[0]["working"] > 0, samples[:3]
        shutil.copy(src, folder / "in" / "polled.png")
        wait_until(lambda: settled(folder, 13), what="polled file")
        time.sleep(0.5)
        check_ledger(folder, {n: src.read_bytes() for n in early + ["polled.png"]}, daemon=d)
    finally:
        d.stop()


def test_refuses_output_inside_input(tmp_path: Path, env: dict[str, str]) -> None:
    root = tmp_path / "bad"
    (root / "in").mkdir(parents=True)
    (root / "out").symlink_to(root / "in")
    r = run_cli(["serve", "--weights", "random", "--bind", "tcp://127.0.0.1:1", "--watch",
                 str(root)], env, timeout=EXIT_S)
    assert r.returncode == 2 and "out/ is a symbolic link" in r.stderr


# Each signal that stops a process cleanly on this system (SIGINT, SIGTERM; with the
# portable fallbacks forced, Windows' set as it exists here).
@pytest.mark.parametrize("sig", stop_signals(), ids=lambda s: signal.Signals(s).name)
def test_watch_command_against_running_daemon(tmp_path: Path, folder: Path, src: Path,
                                              sig: int) -> None:
    """`impasto watch` files a dropped image and stops cleanly on each stop signal, even
    when started as a non-interactive shell's background job starts it: with SIGINT
    inherited as ignored (the suite hung here for 180 s when run in the background)."""
    add_style(tmp_path)
    d = DaemonProcess(tmp_path).wait_ready()
    import subprocess

    from tests.helpers import IMPASTO, REPO

    def as_background_job() -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)

    w = subprocess.Popen(IMPASTO + ["watch", str(folder), "--address", d.address], env=d.env,
                         cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         preexec_fn=as_background_job)
    try:
        wait_until(lambda: (folder / "out").is_dir(), what="layout")
        shutil.copy(src, folder / "in" / "w.png")
        wait_until(lambda: settled(folder, 1), what="file via impasto watch")
        assert files(folder / "out") == ["stripes/w.png"]
    finally:
        w.send_signal(sig)
        try:
            out = w.communicate(timeout=EXIT_S)[0]
        except subprocess.TimeoutExpired:
            w.kill()
            out = w.communicate()[0]
            pytest.fail(f"impasto watch ignored signal {sig}:\n{out}")
        finally:
            d.stop()
    assert "watching" in out and w.returncode == 0, out


def test_serve_config_file(tmp_path: Path, folder: Path, src: Path, env: dict[str, str]) -> None:
    from tests.helpers import free_port

    styles = tmp_path / "my-styles"
    styles.mkdir()
    stripes_image(32, 32).save(styles / "stripes.png")
    port = free_port()
    cfg = tmp_path / "impasto.toml"
    cfg.write_text(f'bind = "tcp://127.0.0.1:{port}"\nweights = "random"\nprecision = "fp32"\n'
                   f'styles = "{styles}"\nwatch = ["{folder}"]\n')
    import subprocess

    from tests.helpers import IMPASTO, REPO

    p = subprocess.Popen(IMPASTO + ["serve", "--config", str(cfg)], env=env, cwd=REPO,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        shutil.copy(src, folder / "in" / "c.png")
        wait_until(lambda: settled(folder, 1), what="file via config-file watch")
        assert files(folder / "out") == ["stripes/c.png"]
        with Client(f"tcp://127.0.0.1:{port}") as c:
            assert [s["name"] for s in c.call(StylesList()).styles] == ["stripes"]
    finally:
        p.send_signal(stop_signal())
        assert p.wait(EXIT_S) == 0
    bad = tmp_path / "bad.toml"
    bad.write_text("bogus = 1\n")
    r = run_cli(["serve", "--config", str(bad)], env)
    assert r.returncode == 2 and "unknown key(s) bogus" in r.stderr
    bad.write_text('precision = "fp8"\n')
    r = run_cli(["serve", "--config", str(bad)], env)
    assert r.returncode == 2 and "precision must be one of" in r.stderr


def test_sigterm_mid_batch_exits_within_five_seconds_and_loses_nothing(
        tmp_path: Path, folder: Path) -> None:
    """SIGTERM while a batch runs: the daemon exits within 5 s (a service manager's own
    timeout then never has to SIGKILL it), and a restart files every image exactly once.
    The watchers are told to stop as the daemon's shutdown begins, so they cancel their
    jobs while the socket still answers; told after it closed, each sender waited out
    its client timeout on a dead socket (11 s measured, 12.9 s in the review)."""
    (folder / "in" / "impasto.toml").write_text(
        'style = "stripes"\nsize = 128\nscales = 1\niterations = 500\n')
    inputs = {}
    for i in range(12):
        stripes_image(48 + i, 40).save(folder / "in" / f"f{i:02}.png")
        inputs[f"f{i:02}.png"] = (folder / "in" / f"f{i:02}.png").read_bytes()
    d = watched(tmp_path, folder, "--settle", "0.2")
    wait_until(lambda: watch_status(d)["working"] >= 1, what="a file in flight")
    t0 = time.monotonic()
    d.proc.send_signal(stop_signal())
    try:
        d.proc.wait(30)
    finally:
        d.stop()
    took = time.monotonic() - t0
    assert d.proc.returncode == 0, d.output()[-3000:]
    assert took < 5.0, f"exit took {took:.1f} s:\n{d.output()[-3000:]}"
    assert "threads still busy" not in d.output()
    assert files(folder / "done") == []  # the batch really was cut short
    (folder / "in" / "impasto.toml").write_text(SETTINGS)
    d = watched(tmp_path, folder, "--settle", "0.2")
    try:
        wait_until(lambda: settled(folder, len(inputs)), timeout=300, what="the rest of the batch")
        check_ledger(folder, inputs, daemon=d)
    finally:
        assert d.stop() == 0
