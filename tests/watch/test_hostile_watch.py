"""Found by a hostile review of the watch folder, end to end: each test is one defect seen
with a real daemon and a real folder, kept so that it stays fixed."""

from __future__ import annotations

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
