"""A watched folder is untrusted input: planted journals, swapped folders, odd trees.
Each test attacks a running daemon through the file system and checks that nothing
outside the folder changed."""

from __future__ import annotations

import json
import os
import shutil
import stat
import time
from pathlib import Path

import pytest

from impasto.client import Client
from tests.helpers import run_cli
from tests.watch.common import (
    add_style,
    check_ledger,
    files,
    settled,
    wait_until,
    watch_status,
    watched,
)


def plant(journal: Path, name: str, entry: dict, data: bytes | None = b"PLANTED") -> None:
    journal.mkdir(mode=0o700, exist_ok=True)
    (journal / f"{name}.json").write_text(json.dumps(entry))
    if data is not None:
        suffix = Path(entry.get("rel", "x")).suffix
        (journal / f"{entry.get('id', name)}.data{suffix}").write_bytes(data)


def test_planted_journal_entries_change_nothing_outside(tmp_path: Path, folder: Path,
                                                        src: Path) -> None:
    outside = tmp_path / "victim"
    outside.mkdir()
    precious = outside / "precious.txt"
    precious.write_text("precious")
    journal = folder / ".impasto"
    attacks = {
        # finishing: "move the data to final" would overwrite a file outside
        "aaaaaaaaaaa1": {"rel": "x.png", "state": "finishing", "final": "../victim/precious.txt"},
        # failing: would write NAME.error.txt with chosen text at a chosen place
        "aaaaaaaaaaa2": {"rel": "y.png", "state": "failing", "final": f"{outside}/report",
                         "reason": "chosen text"},
        # writing: the output path escapes through out/..
        "aaaaaaaaaaa3": {"rel": "z.png", "state": "writing",
                         "output": "out/../../victim/precious.txt"},
        # the input's own name climbs out
        "aaaaaaaaaaa4": {"rel": "../../victim/precious.txt", "state": "failing",
                         "final": "failed/../../victim/precious.txt", "reason": "x"},
        # a style folder that is not the rel's
        "aaaaaaaaaaa5": {"rel": "stripes/../../w.png", "state": "claimed", "style": "stripes"},
        # a done/ entry for a failed state (and the reverse): confined, but not its place
        "aaaaaaaaaaa6": {"rel": "v.png", "state": "failing", "final": "out/v.png", "reason": "r"},
        # unknown fields
        "aaaaaaaaaaa7": {"rel": "u.png", "state": "claimed", "command": "rm -rf /"},
    }
    for name, fields in attacks.items():
        plant(journal, name, {"id": name, **fields})
    plant(journal, "evil", {"id": "evil", "rel": "e.png", "state": "claimed"})  # not an id
    (journal / "aaaaaaaaaaa8.json").write_bytes(b"\xff{not json")
    # one honest entry from a crash: it must still be processed
    legit = src.read_bytes()
    plant(journal, "bbbbbbbbbbb1", {"id": "bbbbbbbbbbb1", "rel": "legit.png", "state": "claimed"},
          data=legit)
    add_style(tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())

    d = watched(tmp_path, folder)
    try:
        wait_until(lambda: settled(folder, 1), what="the honest entry")
        assert precious.read_text() == "precious" and files(outside) == ["precious.txt"]
        assert not (tmp_path / "w.png").exists() and not (outside / "report").exists()
        new = set(p.name for p in tmp_path.iterdir()) - set(before)
        # only the daemon's own log and folders
        assert all(n.startswith("daemon-") or n in ("config", "cache", "torch") for n in new), new
        rejected = sorted(p.name for p in journal.glob("*.rejected"))
        assert rejected == sorted([f"{n}.json.rejected" for n in attacks]
                                  + ["aaaaaaaaaaa8.json.rejected", "evil.json.rejected"])
        assert files(folder / "done") == ["legit.png"] and files(folder / "failed") == []
        assert files(folder / "out") == ["stripes/legit.png"]
        # The counts follow the files within moments (common.expect_status).
        wait_until(lambda: (lambda w: (w["set_aside"], w["done"]))(watch_status(d)) == (9, 1),
                   timeout=30, what="status: 9 set aside, 1 done")
        r = run_cli(["status", "--address", d.address], d.env)
        assert "9 journal entries set aside" in r.stdout
        assert "set aside as aaaaaaaaaaa1.json.rejected" in d.output()
        assert stat.S_IMODE(journal.stat().st_mode) == 0o700
    finally:
        d.stop()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give the journal to another user")
def test_a_journal_folder_someone_else_made_is_not_read(tmp_path: Path, folder: Path,
                                                        src: Path) -> None:
    journal = folder / ".impasto"
    # Paths all inside the folder: only its owner makes it untrusted.
    plant(journal, "ccccccccccc1", {"id": "ccccccccccc1", "rel": "x.png", "state": "finishing",
                                    "final": "done/x.png"}, data=src.read_bytes())
    os.chmod(journal, 0o777)
    for p in [journal, *journal.iterdir()]:
        os.chown(p, 65534, 65534)
    d = watched(tmp_path, folder)
    try:
        shutil.copy(src, folder / "in" / "fresh.png")
        wait_until(lambda: settled(folder, 1), what="a file after the journal was replaced")
        time.sleep(1)
        assert files(folder / "done") == ["fresh.png"]  # not x.png from the planted entry
        aside = [p for p in folder.iterdir() if p.name.startswith(".impasto-untrusted-")]
        assert len(aside) == 1 and (aside[0] / "ccccccccccc1.json").exists()
        st = journal.stat()
        assert st.st_uid == os.geteuid() and stat.S_IMODE(st.st_mode) == 0o700
        assert "not a folder owned by this user" in d.output()
    finally:
        d.stop()


def test_swapped_and_linked_folders_move_nothing_from_outside(tmp_path: Path, folder: Path,
                                                              src: Path) -> None:
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    secret = outside / "x.png"
    shutil.copy(src, secret)
    (outside / "y.png").write_bytes(src.read_bytes())
    secret_bytes = secret.read_bytes()
    inbox = folder / "in"
    os.symlink(outside, inbox / "linked")            # a style folder that is a symlink
    d = watched(tmp_path, folder, "--settle", "5")
    try:
        style = inbox / "stripes"
        style.mkdir()
        shutil.copy(src, style / "x.png")
        time.sleep(1.0)  # seen, but not taken before 5 s unchanged
        os.rename(style, tmp_path / "moved-away")    # the swap: same path, now a symlink
        os.symlink(outside, style)
        time.sleep(5 + 4)
        assert sorted(p.name for p in outside.iterdir()) == ["x.png", "y.png"]
        assert secret.read_bytes() == secret_bytes
        assert files(folder / "done") == [] and files(folder / "failed") == []
        assert files(folder / ".impasto") == ["lock"]
        # the folder still works once the folder is real again
        os.unlink(style)
        style.mkdir()
        shutil.copy(src, style / "ok.png")
        wait_until(lambda: settled(folder, 1), what="a file in a real folder")
        assert files(folder / "done") == ["stripes/ok.png"]
    finally:
        d.stop()


def test_nested_folders_and_oversized_files(tmp_path: Path, folder: Path, src: Path) -> None:
    d = watched(tmp_path, folder)
    try:
        inbox = folder / "in"
        data = src.read_bytes()
        (inbox / "stripes" / "trip" / "day1").mkdir(parents=True)
        (inbox / "stripes" / "trip" / "day1" / "beach.png").write_bytes(data)
        deep = inbox.joinpath("stripes", *"abcdefghi")
        deep.mkdir(parents=True)
        (deep / "deep.png").write_bytes(data)
        huge = inbox / "huge.png"
        with open(huge, "wb") as f:  # sparse: 600 MB that costs no disk
            f.truncate(600 * 2**20)
        wait_until(lambda: settled(folder, 3), what="3 files")
        deep_rel = "stripes/" + "/".join("abcdefghi") + "/deep.png"
        check_ledger(folder, {"stripes/trip/day1/beach.png": data, deep_rel: data,
                              "huge.png": b""}, failed={deep_rel, "huge.png"}, daemon=d)
    finally:
        d.stop()
    reasons = {p.name: p.read_text() for p in (folder / "failed").rglob("*.error.txt")}
    assert "10 folders deep below in/; the limit is 8" in reasons["deep.png.error.txt"]
    assert "file is 600.0 MiB; the limit is" in reasons["huge.png.error.txt"]


def test_names_at_the_length_limit_are_filed_once(tmp_path: Path, folder: Path,
                                                  src: Path) -> None:
    """A name legal in in/ stays legal everywhere impasto files it: its temporary file,
    its result (a new suffix), its error report, a -1 for a taken name."""
    data = src.read_bytes()
    names = ["a" * 251 + ".png", "\u00e9" * 125 + ".png", "q" * 255]
    bad = "n" * 251 + ".png"
    (folder / "out" / "stripes").mkdir(parents=True)
    (folder / "out" / "stripes" / ("a" * 251 + ".png")).write_bytes(b"taken")
    d = watched(tmp_path, folder)
    try:
        for n in names:
            (folder / "in" / n).write_bytes(data)
        (folder / "in" / bad).write_bytes(b"not an image")
        wait_until(lambda: settled(folder, 4), what="4 files")
        time.sleep(2)
        (folder / "out" / "stripes" / ("a" * 251 + ".png")).unlink()
        outs = files(folder / "out" / "stripes")
        assert len(outs) == 3 and all(len(o.encode()) <= 255 for o in outs), outs
        assert "a" * 249 + "-1.png" in outs
        (folder / "out" / "stripes" / ("a" * 249 + "-1.png")).rename(
            folder / "out" / "stripes" / ("a" * 251 + ".png"))
        check_ledger(folder, {n: data for n in names} | {bad: b""}, failed={bad}, daemon=d)
        with Client(d.address) as c:
            assert c.status().jobs_done == 3  # each stylized once: nothing retried
        assert "problem" not in watch_status(d)
    finally:
        d.stop()


def test_sigterm_while_the_model_loads_is_clean(tmp_path: Path) -> None:
    from tests.helpers import DaemonProcess

    d = DaemonProcess(tmp_path)
    try:
        wait_until(lambda: "listening on" in d.output() or d.proc.poll() is not None,
                   what="the daemon to listen")
    finally:
        rc = d.stop()
    out = d.output()
    assert rc == 0 and "Traceback" not in out and "ZMQError" not in out, out


def test_jobs_refused_at_acceptance_count_as_failed(tmp_path: Path) -> None:
    from impasto.errors import ImpastoError
    from impasto.protocol import ImageRef, StyleRef, Stylize
    from tests.helpers import DaemonProcess

    d = DaemonProcess(tmp_path).wait_ready()
    try:
        with Client(d.address) as c:
            for content in (b"not an image", b"\x89PNG\r\n\x1a\n broken"):
                with pytest.raises(ImpastoError):
                    c.stylize(Stylize(content=ImageRef(content, "encoded"),
                                      styles=[StyleRef(name="nosuch")]))
            assert c.status().jobs_failed == 2
    finally:
        d.stop()


