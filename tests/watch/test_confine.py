"""confine.Tree and journal.check on a real file system: every way out is tried."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from impasto.fsio import temp_name
from impasto.watch.confine import Tree, parts_of
from impasto.watch.journal import Entry, State, check


@pytest.fixture
def tree(tmp_path: Path):
    root = tmp_path / "box"
    (root / "in" / "s").mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.png").write_bytes(b"secret")
    t = Tree(root)
    yield t
    t.close()


@pytest.mark.parametrize("bad", ["", "/etc/passwd", "a/../../b", "..", "a//b", "a/./b", "a\0b"])
def test_parts_of_refuses_what_could_leave(bad: str) -> None:
    with pytest.raises(ValueError):
        parts_of(bad)


def test_no_operation_follows_a_symlinked_folder(tree: Tree, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    os.symlink(outside, tree.root / "in" / "link")
    for op in (lambda: tree.rename(("in", "link", "secret.png"), ("done", "secret.png")),
               lambda: tree.read(("in", "link", "secret.png"), 100),
               lambda: tree.write_atomic(("in", "link", "new.png"), b"x"),
               lambda: tree.unlink(("in", "link", "secret.png"))):
        with pytest.raises(OSError) as e:
            op()
        assert e.value.errno in (errno.ELOOP, errno.ENOTDIR)
    assert tree.lstat(("in", "link", "secret.png")) is None
    assert sorted(p.name for p in outside.iterdir()) == ["secret.png"]
    assert (outside / "secret.png").read_bytes() == b"secret"
    assert list(tree.files(("in",))) == [(("in", "link"), os.lstat(tree.root / "in" / "link"))]


def test_read_refuses_links_fifos_and_oversized_files_before_reading(tree: Tree,
                                                                     tmp_path: Path) -> None:
    os.symlink(tmp_path / "outside" / "secret.png", tree.root / "in" / "s" / "l.png")
    os.mkfifo(tree.root / "in" / "s" / "f.png")  # opening it must not block
    with open(tree.root / "in" / "s" / "big.png", "wb") as f:
        f.truncate(10 * 2**20)
    with pytest.raises(ValueError, match="symbolic link"):
        tree.read(("in", "s", "l.png"), 100)
    with pytest.raises(ValueError, match="not a regular file"):
        tree.read(("in", "s", "f.png"), 100)
    (tree.root / "in" / "s" / "impasto.toml").mkdir()
    with pytest.raises(ValueError, match="not a regular file"):
        tree.read(("in", "s", "impasto.toml"), 100)
    with pytest.raises(ValueError, match="file is 10.0 MiB; the limit is"):
        tree.read(("in", "s", "big.png"), 2**20)


def test_a_rename_does_not_replace_through_a_symlinked_destination(tree: Tree,
                                                                   tmp_path: Path) -> None:
    (tree.root / "in" / "s" / "a.png").write_bytes(b"a")
    os.symlink(tmp_path / "outside", tree.root / "done")
    with pytest.raises(OSError):
        tree.rename(("in", "s", "a.png"), ("done", "secret.png"))
    assert (tmp_path / "outside" / "secret.png").read_bytes() == b"secret"
    assert (tree.root / "in" / "s" / "a.png").exists()


def test_remove_temps_takes_only_impasto_temporaries(tree: Tree) -> None:
    out = tree.root / "out" / "s"
    out.mkdir(parents=True)
    keep = out / "a.png"
    keep.write_bytes(b"a")
    (out / ".rsync.a.png.Xa81bc").write_bytes(b"b")
    tmp = temp_name(out / "b.png")
    tmp.write_bytes(b"half")
    assert tree.remove_temps(("out",)) == [("out", "s", tmp.name)]
    assert sorted(p.name for p in out.iterdir()) == [".rsync.a.png.Xa81bc", "a.png"]


GOOD = [
    Entry(id="0123456789ab", rel="a.png", state=State.CLAIMED),
    Entry(id="0123456789ab", rel="s/t/a.png", style="s", state=State.WRITING,
          output="out/s/t/a.png"),
    Entry(id="0123456789ab", rel="s/a.png", style="s", state=State.FINISHING,
          output="out/s/a.png", final="done/s/a-1.png"),
    Entry(id="0123456789ab", rel="a.png", state=State.FAILING, final="failed/a.png", reason="r"),
]
BAD = [
    dict(id="../x", rel="a.png"),
    dict(id="0123456789ab", rel="../a.png"),
    dict(id="0123456789ab", rel=".hidden/a.png", style=".hidden"),
    dict(id="0123456789ab", rel="s/a.png", style="t"),
    dict(id="0123456789ab", rel="a.png", state="writing"),
    dict(id="0123456789ab", rel="a.png", state="writing", output="out/../../a.png"),
    dict(id="0123456789ab", rel="a.png", state="writing", output="done/x/a.png"),
    dict(id="0123456789ab", rel="a.png", state="finishing", final="failed/a.png"),
    dict(id="0123456789ab", rel="a.png", state="failing", final="done/a.png", reason="r"),
    dict(id="0123456789ab", rel="a.png", state="failing", final="failed/a.png"),
    dict(id="0123456789ab", rel="s/a.png", style="s", state="finishing", final="done/a.png"),
    dict(id="0123456789ab", rel="a.png", state="finishing", final="/tmp/a.png"),
    dict(id="0123456789ab", rel="a.png", state="exploding"),
    dict(id="0123456789ab", rel="a.png", attempts=-1),
    dict(id="0123456789ab", rel=["a.png"]),
]


@pytest.mark.parametrize("entry", GOOD)
def test_journal_check_accepts_real_entries(entry: Entry) -> None:
    check(entry)


@pytest.mark.parametrize("fields", BAD)
def test_journal_check_refuses_entries_that_leave_their_place(fields: dict) -> None:
    with pytest.raises(ValueError):
        check(Entry(**fields))
