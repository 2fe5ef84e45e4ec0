"""Watch folders under real faults: slow writers, full and read-only disks, kill -9 at
the worst moments. Each ends with the exactly-once ledger (common.check_ledger)."""

from __future__ import annotations

import contextlib
import errno
import os
import random
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from impasto.client import Client
from impasto.fsio import is_temp_name
from impasto.portable import fallbacks_forced
from tests.helpers import make_env
from tests.watch.common import (
    SETTINGS,
    check_ledger,
    files,
    settled,
    wait_until,
    watch_status,
    watched,
)

# Run again with the portable fallbacks forced (scripts/test): the paths other systems take.
pytestmark = pytest.mark.portable


def chunks_of(data: bytes, n: int) -> list[bytes]:
    size = len(data) // n + 1
    return [data[i:i + size] for i in range(0, len(data), size)]


@pytest.mark.parametrize("mode", ["events", pytest.param("poll", marks=pytest.mark.skipif(
    fallbacks_forced(), reason="polling without /proc cannot see a writer that pauses longer "
    "than the settle time with its file open (docs/portability.md, open writers)"))])
def test_slow_writers_are_taken_once_and_whole(tmp_path: Path, folder: Path, src: Path,
                                               mode: str) -> None:
    """One writer holds its file open with pauses longer than the settle time; another
    appends in open-append-close rounds with pauses shorter than it."""
    settle = 3.0
    extra = ["--settle", str(settle)] + (["--poll"] if mode == "poll" else [])
    d = watched(tmp_path, folder, *extra)
    try:
        data = src.read_bytes()
        held, rounds = folder / "in" / "held.png", folder / "in" / "rounds.png"
        seen_early: list[str] = []

        def hold_open() -> None:
            with open(held, "wb") as f:
                for chunk in chunks_of(data, 4):
                    f.write(chunk)
                    f.flush()
                    time.sleep(settle + 1.5)  # longer than the settle time, file open
                    if not held.exists():
                        seen_early.append("held")

        def append_rounds() -> None:
            for chunk in chunks_of(data, 5):
                with open(rounds, "ab") as f:
                    f.write(chunk)
                time.sleep(settle - 1.5)  # shorter than the settle time, file closed
                if not rounds.exists():
                    seen_early.append("rounds")

        writers = [threading.Thread(target=hold_open), threading.Thread(target=append_rounds)]
        for t in writers:
            t.start()
        for t in writers:
            t.join()
        assert seen_early == [], f"taken while still being written: {seen_early}"
        wait_until(lambda: settled(folder, 2), what="both files")
        time.sleep(1)
        check_ledger(folder, {"held.png": data, "rounds.png": data}, daemon=d)
    finally:
        d.stop()


@contextlib.contextmanager
def tmpfs(where: Path, size: str):
    where.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def fill(fs_dir: Path) -> Path:
    """Fill the file system of fs_dir to the last byte; returns the filler file."""
    filler = fs_dir / ".filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for size in (1 << 16, 1 << 12, 1 << 9, 1):
            try:
                while True:
                    os.write(fd, b"\0" * size)
            except OSError as e:
                assert e.errno == errno.ENOSPC
    finally:
        os.close(fd)
    return filler


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to mount a small file system")
def test_full_disks_keep_files_claimed_until_space_returns(tmp_path: Path, src: Path) -> None:
    """The whole folder on a full disk (claims fail), then out/ on a full disk (outputs
    fail after stylization): nothing goes to failed/, status names the fault, and once
    space returns every file completes, without a restart, with exactly one output."""
    box = tmp_path / "box"
    data = src.read_bytes()
    with tmpfs(box, "4m"):
        (box / "in").mkdir()
        (box / "in" / "impasto.toml").write_text(SETTINGS)
        with tmpfs(box / "out", "512k"):
            d = watched(tmp_path, box)
            try:
                staging = box / "staging"
                staging.mkdir()
                first = [f"a{i}.png" for i in range(5)]
                for n in first:
                    (staging / n).write_bytes(data)
                filler = fill(box)
                for n in first:
                    os.rename(staging / n, box / "in" / n)
                wait_until(lambda: "No space left" in (watch_status(d).get("problem") or ""),
                           what="status to name the full disk")
                time.sleep(3)  # several retries' worth
                assert sorted(files(box / "in")) == sorted(first + ["impasto.toml"])
                assert files(box / "failed") == [] and watch_status(d)["pending"] == 5
                filler.unlink()
                wait_until(lambda: settled(box, 5), what="claims after space returned")

                out_filler = fill(box / "out")
                second = [f"b{i}.png" for i in range(5)]
                for n in second:
                    shutil.copy(src, box / "in" / n)
                wait_until(lambda: "storage" in (watch_status(d).get("problem") or ""),
                           what="status to name the full out/")
                time.sleep(3)
                assert files(box / "failed") == []
                assert len(files(box / "done")) == 5
                out_filler.unlink()
                wait_until(lambda: settled(box, 10), what="outputs after space returned")
                time.sleep(1)
                check_ledger(box, {n: data for n in first + second}, daemon=d)
                assert "problem" not in watch_status(d)
                with Client(d.address) as c:  # results kept across the retries
                    assert c.status().jobs_done == 10
                log = d.output()
                assert "Exception in thread" not in log and "internal error" not in log
            finally:
                d.stop()


def test_kill_9_inside_the_output_write(tmp_path: Path, folder: Path, src: Path) -> None:
    """Killed with the result written to its temporary file but not yet renamed: the
    restart removes the temporary file and writes the result exactly once."""
    data = src.read_bytes()
    env = {**make_env(tmp_path), "IMPASTO_WATCH_HOLD_WRITE": "120"}
    d = watched(tmp_path, folder, env=env)
    shutil.copy(src, folder / "in" / "w.png")

    def temps() -> list[Path]:
        return [p for p in folder.rglob("*") if is_temp_name(p.name)]

    try:  # the journal's own temporary files come and go in between: wait for out/'s
        wait_until(lambda: any(p.parent.name == "stripes" for p in temps()),
                   what="the output's temporary file")
    finally:
        d.stop(signal.SIGKILL)
    leftover = temps()
    assert len(leftover) == 1 and leftover[0].parent == folder / "out" / "stripes"
    assert files(folder / "out") == [str(leftover[0].relative_to(folder / "out"))]
    d2 = watched(tmp_path, folder, port=d.port)
    try:
        wait_until(lambda: settled(folder, 1), what="the file after the restart")
        time.sleep(1)
        check_ledger(folder, {"w.png": data}, daemon=d2)
        assert "left by a crash inside a write" in d2.output()
    finally:
        d2.stop()


def test_ten_kills_during_a_sixty_file_batch(tmp_path: Path, folder: Path, src: Path) -> None:
    (folder / "in" / "impasto.toml").write_text(SETTINGS.replace("iterations = 2",
                                                                 "iterations = 6"))
    data = src.read_bytes()
    names = [f"f{i:02}.png" for i in range(60)]
    staging = tmp_path / "staging"
    staging.mkdir()
    for n in names:
        (staging / n).write_bytes(data)
    rng = random.Random(13)
    d = watched(tmp_path, folder)
    port = d.port
    for n in names:
        os.rename(staging / n, folder / "in" / n)
    # Each kill waits for the batch to move (one more file done) and then a random moment
    # inside the next file: paced by the daemon, not by a guess at its speed, so a fast
    # machine cannot finish the batch between two kills (it did with fixed sleeps: the
    # last two kills of a CI run found all 60 done) and a slow one still sees 10 kills.
    progress: list[int] = []
    for _ in range(10):
        before = len(files(folder / "done"))
        wait_until(lambda b=before: len(files(folder / "done")) > b, timeout=600,
                   what="one more file done before the next kill")
        time.sleep(rng.uniform(0.0, 0.4))
        d.stop(signal.SIGKILL)
        progress.append(len(files(folder / "done")))
        d = watched(tmp_path, folder, port=port)
    try:
        wait_until(lambda: settled(folder, 60), timeout=600, what="all 60 files")
        time.sleep(1)
        print(f"done at each kill: {progress}")
        assert progress[-1] < 60, f"the kills came too late to test anything: {progress}"
        check_ledger(folder, {n: data for n in names}, daemon=d)
    finally:
        d.stop()
