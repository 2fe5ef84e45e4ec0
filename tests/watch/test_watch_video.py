"""Watch folders take videos: a clip dropped into in/<style>/ comes out as a video of
the same container, frame count and rate; kill -9 mid-clip and the restart resumes at
the first frame not kept, so every frame is stylized once."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from impasto.fsio import is_temp_name
from impasto.portable import fallbacks_forced
from tests.helpers import make_env
from tests.watch.common import (
    SETTINGS,
    expect_status,
    files,
    settled,
    wait_until,
    watch_status,
    watched,
)

av = pytest.importorskip("av")

RATE = Fraction(12)
# fp32: bf16 on a CPU is not bit-for-bit equal between two processes (the same
# request came out 0.16 levels a pixel apart on an AMD EPYC), and the clip continued
# after the kill runs in a second process.
EXACT = ("--precision", "fp32")
KEPT = re.compile(r"stripes/(\w+)\.(?:mp4|gif): frame (\d+) of \d+ kept")


def frame_image(i: int, w: int = 48, h: int = 32) -> Image.Image:
    """A bright square moving right over a gradient: frames that differ."""
    x = np.linspace(0, 255, w, dtype=np.float32)[None, :, None]
    y = np.linspace(0, 255, h, dtype=np.float32)[:, None, None]
    a = np.concatenate([np.broadcast_to(x, (h, w, 1)), np.broadcast_to(y, (h, w, 1)),
                        np.full((h, w, 1), 90, np.float32)], axis=2).copy()
    a[8:20, 4 + 3 * i:16 + 3 * i] = (250, 240, 40)
    return Image.fromarray(a.astype(np.uint8))


def make_video(path: Path, n: int, codec: str = "libx264", audio_s: float = 0.0) -> None:
    gif = codec == "gif"
    with av.open(str(path), "w") as out:
        s = out.add_stream(codec, rate=RATE)
        s.width, s.height = 48, 32
        s.pix_fmt = "rgb8" if gif else "yuv420p"
        a = out.add_stream("aac", rate=44100) if audio_s else None
        for i in range(n):
            f = av.VideoFrame.from_image(frame_image(i))
            f.pts = i
            for p in s.encode(f):
                out.mux(p)
        for p in s.encode():
            out.mux(p)
        if a is not None:
            k = int(44100 * audio_s)
            tone = (np.sin(np.arange(k) * 2 * np.pi * 440 / 44100) * 0.3).astype(np.float32)
            af = av.AudioFrame.from_ndarray(tone[None, :], format="fltp", layout="mono")
            af.sample_rate, af.pts = 44100, 0
            for p in [*a.encode(af), *a.encode()]:
                out.mux(p)


def decoded(path: Path) -> tuple[list[np.ndarray], Fraction | None]:
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        frames = [np.asarray(f.to_image().convert("RGB"), dtype=np.int16) for f in c.decode(v)]
        return frames, v.average_rate


def audio_samples(path: Path) -> int:
    with av.open(str(path)) as c:
        return sum(f.samples for f in c.decode(c.streams.audio[0])) if c.streams.audio else 0


def journal_clean(folder: Path) -> None:
    left = [f for f in files(folder / ".impasto")
            if f != "lock" and not (fallbacks_forced() and f == "lock.owner")]
    assert left == [], left
    assert [str(p) for p in folder.rglob("*") if is_temp_name(p.name)] == []


def test_videos_come_out_as_videos(tmp_path: Path, folder: Path) -> None:
    """An mp4 comes out an mp4 with every frame at the source's rate and its audio, a
    webm a webm, a GIF a GIF (one of one frame too), and a file that is no video fails
    with a reason."""
    staging = tmp_path / "staging"
    staging.mkdir()
    make_video(staging / "clip.mp4", 6, audio_s=0.5)
    make_video(staging / "web.webm", 3, codec="libvpx-vp9")
    make_video(staging / "anim.gif", 3, codec="gif")
    frame_image(0).save(staging / "still.gif")
    (staging / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(2000))
    # Frames a crash left after their entry was removed: cleared at start.
    (folder / ".impasto" / "abcdefabcdef.frames").mkdir(parents=True)
    frame_image(0).save(folder / ".impasto" / "abcdefabcdef.frames" / "000000.png")
    d = watched(tmp_path, folder)
    try:
        (folder / "in" / "stripes").mkdir()
        audio = audio_samples(staging / "clip.mp4")
        for n in ("clip.mp4", "web.webm", "anim.gif", "still.gif", "broken.mp4"):
            os.rename(staging / n, folder / "in" / "stripes" / n)
        wait_until(lambda: settled(folder, 5), timeout=300, what="the videos")
        videos = ["stripes/anim.gif", "stripes/clip.mp4", "stripes/still.gif", "stripes/web.webm"]
        assert files(folder / "out") == videos
        assert files(folder / "done") == videos
        assert files(folder / "failed") == ["stripes/broken.mp4", "stripes/broken.mp4.error.txt"]
        reason = (folder / "failed" / "stripes" / "broken.mp4.error.txt").read_text()
        assert "not a video impasto can read" in reason, reason
        assert not re.search(r"Errno|: \d+'?$", reason.strip()), reason  # no fd numbers
        frames, rate = decoded(folder / "out" / "stripes" / "clip.mp4")
        assert len(frames) == 6 and rate == RATE
        assert frames[0].shape[1] == 64  # the settings' size, not the source's
        assert audio_samples(folder / "out" / "stripes" / "clip.mp4") == audio > 0  # copied
        assert len(decoded(folder / "out" / "stripes" / "web.webm")[0]) == 3
        gif, _ = decoded(folder / "out" / "stripes" / "anim.gif")
        assert len(gif) == 3
        assert len(decoded(folder / "out" / "stripes" / "still.gif")[0]) == 1
        assert files(folder / "in") == ["impasto.toml"]
        journal_clean(folder)
        expect_status(d, 0, 0, 4, 1)
    finally:
        d.stop()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to mount a small file system")
def test_a_video_whose_frames_would_not_fit_the_disk_is_refused(tmp_path: Path) -> None:
    """Its kept frames would fill the disk: refused at once with the reason, before any
    frame is stylized, and the folder goes on with other work."""
    box = tmp_path / "box"
    box.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(box)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    try:
        (box / "in" / "big").mkdir(parents=True)
        (box / "in" / "impasto.toml").write_text(SETTINGS)
        # 6 frames of 2048x1365 kept as PNG: far over 2 MB.
        (box / "in" / "big" / "impasto.toml").write_text('style = "stripes"\nsize = 2048\n')
        make_video(tmp_path / "big.mp4", 6)
        make_video(tmp_path / "small.mp4", 2)
        d = watched(tmp_path, box)
        try:
            shutil.copy(tmp_path / "big.mp4", box / "in" / "big" / "big.mp4")
            shutil.copy(tmp_path / "small.mp4", box / "in" / "small.mp4")
            wait_until(lambda: settled(box, 2), timeout=300, what="both videos")
            reason = (box / "failed" / "big" / "big.mp4.error.txt").read_text()
            assert "MiB while it runs" in reason and "free" in reason, reason
            assert files(box / "out") == ["stripes/small.mp4"]
            assert "big.mp4: frame" not in d.output()
            journal_clean(box)
        finally:
            d.stop()
    finally:
        subprocess.run(["umount", "-l", str(box)], check=False)


def frames_done(folder: Path) -> int:
    """The most frames any journal entry has kept."""
    best = 0
    for p in (folder / ".impasto").glob("*.json"):
        with contextlib.suppress(OSError, ValueError):  # being replaced right now
            best = max(best, int(json.loads(p.read_text()).get("frames_done") or 0))
    return best


def kept(log: str, name: str) -> list[int]:
    return [int(m.group(2)) for m in KEPT.finditer(log) if m.group(1) == name]


@pytest.mark.portable  # run again with the portable fallbacks forced (scripts/test)
def test_kill_9_mid_clip_resumes_and_stylizes_every_frame_once(tmp_path: Path,
                                                               folder: Path) -> None:
    n = 8
    (folder / "in" / "impasto.toml").write_text(SETTINGS + "seed = 5\n")
    staging = tmp_path / "staging"
    staging.mkdir()
    # A GIF, whose writer is deterministic, so that the resumed clip can be held to one
    # run bit for bit. x264 (core 165, in PyAV 18.1's wheel) is not: its macroblock
    # tree gave 3 to 6 different streams in 80 encodes of the same 8 small frames, up
    # to 2.2 levels a pixel apart once decoded, which failed this test one run in four
    # while the frames handed to it were equal. The resume itself is the same code for
    # every container; mp4 in and out is test_videos_come_out_as_videos.
    make_video(staging / "a.gif", n, codec="gif")
    shutil.copy(staging / "a.gif", staging / "b.gif")
    _, rate = decoded(staging / "b.gif")
    # Each kept frame waits a second: the kill lands mid-clip on any machine.
    env = {**make_env(tmp_path), "IMPASTO_WATCH_HOLD_FRAME": "1.0"}
    d = watched(tmp_path, folder, *EXACT, env=env)
    port = d.port
    (folder / "in" / "stripes").mkdir()
    try:
        os.rename(staging / "a.gif", folder / "in" / "stripes" / "a.gif")
        wait_until(lambda: frames_done(folder) >= 3, timeout=300, what="three frames kept")
    finally:
        d.stop(signal.SIGKILL)
    first = kept(d.output(), "a")
    # The frames on disk are the truth: one may have been kept in the instant before
    # the kill with its count not yet journalled (the restart does not redo it).
    at_kill = len(list((folder / ".impasto").glob("*.frames/*.png")))
    assert frames_done(folder) in (at_kill, at_kill - 1)
    assert 3 <= at_kill < n, at_kill
    assert files(folder / "out") == [] and files(folder / "done") == []

    d2 = watched(tmp_path, folder, *EXACT, port=port)
    try:
        wait_until(lambda: files(folder / "done") == ["stripes/a.gif"], timeout=300,
                   what="the clip after the restart")
        second = kept(d2.output(), "a")
        # Every frame kept once over the two runs: the restart began where the journal
        # said (a frame kept in the instant before the kill, not yet logged, is in
        # neither list and was not redone).
        assert first == list(range(1, len(first) + 1)), first
        assert second == list(range(at_kill + 1, n + 1)), (first, at_kill, second)
        assert f"stripes/a.gif: resuming at frame {at_kill + 1} of {n}" in d2.output()
        resumed, resumed_rate = decoded(folder / "out" / "stripes" / "a.gif")
        assert len(resumed) == n and resumed_rate == rate

        # The same clip in one run: the resumed one is the same video, frame for frame
        # (the frame after the kill holds to the kept one as it would have in one run).
        os.rename(staging / "b.gif", folder / "in" / "stripes" / "b.gif")
        wait_until(lambda: len(files(folder / "done")) == 2, timeout=300, what="the reference")
        whole, _ = decoded(folder / "out" / "stripes" / "b.gif")
        assert kept(d2.output(), "b") == list(range(1, n + 1))
        assert len(whole) == n
        differ = [i + 1 for i, (a, b) in enumerate(zip(resumed, whole)) if not np.array_equal(a, b)]
        assert differ == [], f"frames {differ} of the resumed clip differ from one run"
        assert files(folder / "out") == ["stripes/a.gif", "stripes/b.gif"]
        journal_clean(folder)
        expect_status(d2, 0, 0, 2, 0)
    finally:
        d2.stop()


@pytest.mark.parametrize("fields", [
    {"frames_done": -1}, {"frames_done": "3"}, {"frames_done": True}, {"frames_done": 10**9},
    {"frames_done": 2, "clip_frames": None}, {"clip_frames": -4}, {"clip_frames": 2.5},
    {"clip_seed": -5}, {"clip_seed": "7"}, {"clip_seed": 2**70},
    {"clip_size": [0, 5]}, {"clip_size": "64x48"}, {"clip_size": [64]}, {"clip_size": [64.0, 48]},
    {"output": "out/stripes/a.sh", "state": "writing"},
    {"rel": "stripes/a.png", "frames_done": 2},
])
def test_planted_video_fields_are_set_aside(tmp_path: Path, fields: dict) -> None:
    """The journal is untrusted: a video entry with bad counts or seed is set aside as
    .rejected at load, never acted on (and never a crash)."""
    from impasto.watch.confine import Tree
    from impasto.watch.journal import Journal

    root = tmp_path / "box"
    (root / ".impasto").mkdir(parents=True)
    good = {"id": "0123456789ab", "rel": "stripes/a.mp4", "state": "claimed", "style": "stripes",
            "clip_frames": 8, "frames_done": 3, "clip_seed": 5, "clip_size": [64, 48]}
    (root / ".impasto" / "0123456789ab.json").write_text(json.dumps(good))
    (root / ".impasto" / "0123456789ac.json").write_text(json.dumps(
        {**good, "id": "0123456789ac", **fields}))
    tree = Tree(root)
    try:
        entries, rejected = Journal(tree).load()
    finally:
        tree.close()
    assert [e.id for e in entries] == ["0123456789ab"]
    assert entries[0].frames_done == 3 and entries[0].clip_seed == 5
    assert [name for name, _ in rejected] == ["0123456789ac.json"]
    assert (root / ".impasto" / "0123456789ac.json.rejected").exists()


@pytest.mark.portable
def test_kill_9_inside_the_video_write_redoes_only_the_write(tmp_path: Path,
                                                            folder: Path) -> None:
    """Killed with every frame kept and the video in its temporary file: the restart
    removes the temporary file and writes the video from the kept frames, stylizing
    nothing again."""
    make_video(tmp_path / "w.mp4", 4)
    env = {**make_env(tmp_path), "IMPASTO_WATCH_HOLD_WRITE": "120"}
    d = watched(tmp_path, folder, env=env)
    port = d.port
    (folder / "in" / "stripes").mkdir()
    try:
        shutil.copy(tmp_path / "w.mp4", folder / "in" / "stripes" / "w.mp4")
        wait_until(lambda: any(is_temp_name(p.name) for p in (folder / "out").rglob("*")),
                   timeout=300, what="the video's temporary file")
    finally:
        d.stop(signal.SIGKILL)
    assert kept(d.output(), "w") == [1, 2, 3, 4]
    d2 = watched(tmp_path, folder, port=port)
    try:
        wait_until(lambda: files(folder / "done") == ["stripes/w.mp4"], timeout=300,
                   what="the video after the restart")
        assert kept(d2.output(), "w") == []
        assert "left by a crash inside a write" in d2.output()
        assert files(folder / "out") == ["stripes/w.mp4"]
        assert len(decoded(folder / "out" / "stripes" / "w.mp4")[0]) == 4
        journal_clean(folder)
    finally:
        d2.stop()


def fill(fs_dir: Path) -> Path:
    """Fill the file system of fs_dir to the last byte; returns the filler file."""
    filler = fs_dir / ".filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for size in (1 << 16, 1 << 12, 1 << 9, 1):
            with contextlib.suppress(OSError):
                while True:
                    os.write(fd, b"\0" * size)
    finally:
        os.close(fd)
    return filler


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to mount a small file system")
def test_a_full_disk_mid_clip_holds_the_clip_until_space_returns(tmp_path: Path) -> None:
    """The disk fills up mid-clip: the video is not failed, status names the fault, the
    frames that came back meanwhile are held (not stylized again at each retry), and
    once space returns the clip ends with every frame kept once."""
    n = 8
    box = tmp_path / "box"
    box.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(box)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    try:
        (box / "in" / "stripes").mkdir(parents=True)
        (box / "in" / "impasto.toml").write_text(SETTINGS)
        make_video(tmp_path / "f.mp4", n)
        env = {**make_env(tmp_path), "IMPASTO_WATCH_HOLD_FRAME": "1.0"}
        d = watched(tmp_path, box, env=env)
        try:
            shutil.copy(tmp_path / "f.mp4", box / "in" / "stripes" / "f.mp4")
            wait_until(lambda: frames_done(box) >= 2, timeout=300, what="two frames kept")
            filler = fill(box)
            wait_until(lambda: "No space left" in (watch_status(d).get("problem") or ""),
                       timeout=120, what="status to name the full disk")
            time.sleep(4)  # several retries' worth
            assert files(box / "failed") == [] and files(box / "out") == []
            assert d.output().count("resuming at frame") == 0  # nothing sent again yet
            filler.unlink()
            wait_until(lambda: files(box / "done") == ["stripes/f.mp4"], timeout=300,
                       what="the clip after space returned")
            assert kept(d.output(), "f") == list(range(1, n + 1))
            assert d.output().count("resuming at frame") == 1
            assert len(decoded(box / "out" / "stripes" / "f.mp4")[0]) == n
            journal_clean(box)
            assert "problem" not in watch_status(d)
        finally:
            d.stop()
    finally:
        subprocess.run(["umount", "-l", str(box)], check=False)


@pytest.mark.parametrize("damage", ["missing", "garbage", "truncated-last", "folder",
                                    "wrong-size-first", "wrong-size-last"])
def test_a_lost_or_damaged_kept_frame_is_stylized_again(tmp_path: Path, folder: Path,
                                                         damage: str) -> None:
    """A kept frame gone from the journal folder between two runs, or damaged (by hand, a
    damaged disk): the clip is stylized again from that frame, not retried for ever.
    Damage is found where the frame is read: as the resumed clip's previous frame
    (truncated-last) or when the video is written (garbage)."""
    n = 6
    make_video(tmp_path / "l.mp4", n)
    env = {**make_env(tmp_path), "IMPASTO_WATCH_HOLD_FRAME": "1.0"}
    d = watched(tmp_path, folder, env=env)
    port = d.port
    (folder / "in" / "stripes").mkdir()
    try:
        shutil.copy(tmp_path / "l.mp4", folder / "in" / "stripes" / "l.mp4")
        wait_until(lambda: frames_done(folder) >= 3, timeout=300, what="three frames kept")
    finally:
        d.stop(signal.SIGKILL)
    frames = next((folder / ".impasto").glob("*.frames"))
    victim = {"wrong-size-first": 0, "truncated-last": frames_done(folder) - 1,
              "wrong-size-last": frames_done(folder) - 1}.get(damage, 1)
    png = frames / f"{victim:06d}.png"
    if damage == "missing":
        png.unlink()
    elif damage == "garbage":
        png.write_bytes(b"not a png at all" * 8)
    elif damage == "folder":  # a folder, with something in it, where the frame was
        png.unlink()
        (png / "inner").mkdir(parents=True)
        (png / "inner" / "x.png").write_bytes(b"x")
    elif damage.startswith("wrong-size"):  # a good PNG, of another size
        Image.new("RGB", (8, 8), (255, 0, 0)).save(png)
    else:
        png.write_bytes(png.read_bytes()[: png.stat().st_size // 2])
    d2 = watched(tmp_path, folder, port=port)
    try:
        wait_until(lambda: files(folder / "done") == ["stripes/l.mp4"], timeout=300,
                   what="the clip after the restart: " + d2.output()[-3000:])
        why = "is missing" if damage == "missing" else "cannot be read"
        assert f"kept frame {victim + 1} {why}; stylizing again from it" in d2.output()
        redone = kept(d2.output(), "l")
        assert redone[-(n - victim):] == list(range(victim + 1, n + 1)), redone
        assert files(folder / "failed") == []
        out_frames = decoded(folder / "out" / "stripes" / "l.mp4")[0]
        assert len(out_frames) == n
        assert {f.shape for f in out_frames} == {(44, 64, 3)}  # the clip's size, not 8x8
        journal_clean(folder)
    finally:
        d2.stop()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to mount a small file system")
def test_a_full_out_folder_retries_only_the_write(tmp_path: Path) -> None:
    """Every frame is kept, then the video's write fails (out/ is full): each retry
    writes again from the kept frames, decoding and sending no frame (it used to decode
    the whole source again: "resuming at frame 5 of 4")."""
    n = 4
    box = tmp_path / "box"
    (box / "in" / "stripes").mkdir(parents=True)
    (box / "in" / "impasto.toml").write_text(SETTINGS)
    (box / "out").mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(box / "out")],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    try:
        filler = fill(box / "out")
        make_video(tmp_path / "f.mp4", n)
        d = watched(tmp_path, box)
        try:
            shutil.copy(tmp_path / "f.mp4", box / "in" / "stripes" / "f.mp4")
            wait_until(lambda: frames_done(box) == n and "No space left" in (
                watch_status(d).get("problem") or ""), timeout=300, what="the write to fail")
            wait_until(lambda: d.output().count("No space left") >= 3, timeout=120,
                       what="two retries of the write")
            assert d.output().count("resuming at frame") == 0
            filler.unlink()
            wait_until(lambda: files(box / "done") == ["stripes/f.mp4"], timeout=300,
                       what="the video once out/ has room")
            assert kept(d.output(), "f") == list(range(1, n + 1))  # each frame once
            assert d.output().count("resuming at frame") == 0
            assert len(decoded(box / "out" / "stripes" / "f.mp4")[0]) == n
            journal_clean(box)
        finally:
            d.stop()
    finally:
        subprocess.run(["umount", "-l", str(box / "out")], check=False)


def test_a_video_cut_short_is_refused_before_any_frame(tmp_path: Path, folder: Path) -> None:
    """An AVI whose header declares 12 frames, cut off after the first few (a partial
    download): failed at once with both numbers, not stylized into a short clip with no
    word of it."""
    from tests.cli.test_cli_video import cut_short_avi

    cut_short_avi(tmp_path / "cut.avi")
    d = watched(tmp_path, folder)
    try:
        (folder / "in" / "stripes").mkdir()
        os.rename(tmp_path / "cut.avi", folder / "in" / "stripes" / "cut.avi")
        wait_until(lambda: settled(folder, 1), timeout=300, what="the cut video")
        assert files(folder / "failed") == ["stripes/cut.avi", "stripes/cut.avi.error.txt"]
        reason = (folder / "failed" / "stripes" / "cut.avi.error.txt").read_text()
        assert "cut short or damaged: its header declares 12 frames" in reason, reason
        assert "cut.avi: frame" not in d.output() and files(folder / "out") == []
    finally:
        d.stop()
