"""Found by a hostile review of the watch folder, end to end: each test is one defect seen
with a real daemon and a real folder, kept so that it stays fixed."""

from __future__ import annotations

import os
from pathlib import Path

from tests.helpers import gradient_image
from tests.watch.common import files, settled, wait_until, watched
from tests.watch.test_untrusted import plant


def test_a_write_cut_by_a_crash_is_not_finished_with_another_files_result(
        tmp_path: Path, folder: Path, src: Path) -> None:
    """A crash inside a result's write (entry `writing`, the result not yet renamed into
    out/) while more files of the same name were claimed: after the restart those may
    take out/stripes/a.png first (entries run in the order of their random ids, two at a
    time). The cut write must then be done again under a free name, not taken as done
    because a file of its name is there: seen as three originals in done/ and two
    results in out/, one photo's result missing for good."""
    journal = folder / ".impasto"
    others = []
    for i, name in enumerate(("aaaaaaaaaaa1", "aaaaaaaaaaa2")):  # claimed, run first
        buf = tmp_path / f"other{i}.png"
        gradient_image(70 + 4 * i, 50).save(buf)
        others.append(buf.read_bytes())
        plant(journal, name, {"id": name, "rel": "a.png", "state": "claimed"},
              data=others[-1])
    # The one whose write the crash cut: its temporary file is removed at the start.
    plant(journal, "fffffffffff1", {"id": "fffffffffff1", "rel": "a.png", "state": "writing",
                                    "output": "out/stripes/a.png"}, data=src.read_bytes())
    d = watched(tmp_path, folder)
    try:
        wait_until(lambda: settled(folder, 3), what="the three entries")
        wait_until(lambda: not list(journal.glob("*.json")), timeout=30, what="an empty journal")
        assert files(folder / "done") == ["a-1.png", "a-2.png", "a.png"]
        assert sorted((folder / "done" / n).read_bytes() for n in ("a.png", "a-1.png", "a-2.png")) \
            == sorted(others + [src.read_bytes()])
        # One result for each original.
        assert files(folder / "out") == ["stripes/a-1.png", "stripes/a-2.png", "stripes/a.png"], \
            d.output()
    finally:
        d.stop()


def test_names_that_are_no_utf8_are_filed_as_they_came(tmp_path: Path, folder: Path,
                                                        src: Path) -> None:
    """A Latin-1 name (café.png from an old archive: b"caf\\xe9.png") reaches Python as
    surrogates. Naming its result (fsio.fit_name) and its error report raised
    UnicodeEncodeError: the photo, already stylized, was failed as "the style name
    cannot be a folder name", the failure itself raised again, and the entry stayed in
    the journal for good (each restart met the same error)."""
    inbox = os.fsencode(folder / "in")
    good, bad = b"caf\xe9.png", b"\xe9" * 251 + b".png"  # 255 bytes: its report is cut
    with open(os.path.join(inbox, good), "wb") as f:
        f.write(src.read_bytes())
    with open(os.path.join(inbox, bad), "wb") as f:
        f.write(b"not an image")
    d = watched(tmp_path, folder)
    try:
        wait_until(lambda: settled(folder, 2), what="both files filed")
        assert files(folder / "done") == [os.fsdecode(good)]
        assert files(folder / "out") == ["stripes/" + os.fsdecode(good)], d.output()
        assert (folder / "done" / os.fsdecode(good)).read_bytes() == src.read_bytes()
        failed = os.listdir(os.fsencode(folder / "failed"))
        reports = [n for n in failed if n.endswith(b".error.txt")]
        assert sorted(set(failed) - set(reports)) == [bad] and len(reports) == 1, failed
        assert len(reports[0]) <= 255 and reports[0].startswith(b"\xe9" * 200)
        report = (folder / "failed" / os.fsdecode(reports[0])).read_bytes()
        assert report.startswith(bad + b": ") and b"not an image" in report, report
        assert [p.name for p in (folder / ".impasto").iterdir()] == ["lock"]
        assert "Traceback" not in d.output()
    finally:
        d.stop()
