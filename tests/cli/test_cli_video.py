"""`impasto stylize` on clips: a real video file (PyAV writes it, FFmpeg inside), frames
in folders, and what a person gets wrong; a real subprocess each."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from impasto import events
from tests.helpers import gradient_image, run_cli

SMALL = ["--weights", "random", "--size", "64", "--preset", "draft", "--seed", "1"]


def make_clip(path: Path, frames: int = 5, rate: int = 12, audio_s: float = 0.5,
              rotation: int = 0) -> None:
    """rotation: a display matrix, as a phone writes for a clip shot in portrait."""
    import av

    with av.open(str(path), "w") as out:
        v = out.add_stream("libx264", rate=rate)
        v.width, v.height, v.pix_fmt = 64, 48, "yuv420p"
        if rotation:
            v.set_display_rotation(rotation)
        a = out.add_stream("aac", rate=44100)
        for i in range(frames):
            arr = np.asarray(gradient_image(64 + 3 * frames, 48))[:, 3 * i:3 * i + 64].copy()
            f = av.VideoFrame.from_ndarray(arr, format="rgb24")
            f.pts = i
            for p in v.encode(f):
                out.mux(p)
        for p in v.encode():
            out.mux(p)
        n = int(44100 * audio_s)
        tone = (np.sin(np.arange(n) * 2 * np.pi * 440 / 44100) * 0.3).astype(np.float32)
        af = av.AudioFrame.from_ndarray(tone[None, :], format="fltp", layout="mono")
        af.sample_rate, af.pts = 44100, 0
        for p in a.encode(af):
            out.mux(p)
        for p in a.encode():
            out.mux(p)


def clip_facts(path: Path) -> dict:
    import av

    with av.open(str(path)) as c:
        v = c.streams.video[0]
        facts = {"rate": v.average_rate, "size": (v.codec_context.width, v.codec_context.height),
                 "duration": c.duration, "frames": sum(1 for _ in c.decode(v))}
    with av.open(str(path)) as c:
        a = c.streams.audio[0] if c.streams.audio else None
        facts["audio_samples"] = sum(f.samples for f in c.decode(a)) if a is not None else 0
    return facts


def test_video_in_video_out_keeps_frames_rate_and_audio(tmp_path: Path, style_png: Path,
                                                        env: dict[str, str]) -> None:
    clip, out = tmp_path / "clip.mp4", tmp_path / "out.mp4"
    make_clip(clip)
    r = run_cli(["stylize", str(clip), "--style", str(style_png), "-o", str(out), "--json",
                 *SMALL], env)
    assert r.returncode == 0, r.stderr
    lines = [json.loads(x) for x in r.stdout.splitlines()]
    assert [x["frame"] for x in lines if x["event"] == "frame"] == [0, 1, 2, 3, 4]
    assert lines[-1]["event"] == "done" and lines[-1]["frames"] == 5
    # Progress for scripts too, each step numbered in the clip, every line a typed event.
    steps = [(x["frame"], x["frames"]) for x in lines if x["event"] == "progress"]
    assert sorted(set(steps)) == [(i, 5) for i in range(5)], steps
    assert all(events.parse(x) for x in r.stdout.splitlines())
    src, got = clip_facts(clip), clip_facts(out)
    assert got["frames"] == src["frames"] == 5
    assert got["rate"] == src["rate"] and got["size"] == (64, 48)
    assert got["audio_samples"] == src["audio_samples"] > 0  # copied, not re-encoded
    assert abs(got["duration"] - src["duration"]) <= 0.05 * src["duration"]


@pytest.mark.parametrize(("rotation", "flip", "corner"), [
    # (row, column) the marker ends up at: turned counterclockwise, then mirrored
    # (PyAV's set_display_rotation: "hflip / vflip mirror after it")
    (-90, "", (0, -1)), (90, "", (-1, 0)), (180, "", (-1, -1)),
    (0, "h", (0, -1)), (0, "v", (-1, 0)), (90, "h", (-1, -1)), (-90, "h", (0, 0)),
    (90, "v", (0, 0)), (180, "h", (-1, 0)),
])
def test_frames_are_read_as_a_player_shows_them(tmp_path: Path, rotation: int, flip: str,
                                                corner: tuple[int, int]) -> None:
    """A display matrix (a phone's portrait clip, a mirrored selfie) turns the frames as
    players do: a marker stored at the top-left corner is where a viewer sees it."""
    import av

    from impasto import videoio

    clip = tmp_path / "turned.mp4"
    with av.open(str(clip), "w") as out:
        v = out.add_stream("libx264", rate=12)
        v.width, v.height, v.pix_fmt = 64, 48, "yuv420p"
        v.set_display_rotation(rotation, hflip=flip == "h", vflip=flip == "v")
        arr = np.zeros((48, 64, 3), np.uint8)
        arr[:12, :12] = 255
        f = av.VideoFrame.from_ndarray(arr, format="rgb24")
        f.pts = 0
        for pk in [*v.encode(f), *v.encode()]:
            out.mux(pk)
    (img, _, _), = list(videoio.read_frames(clip))
    a = np.asarray(img.convert("L"), dtype=np.int16)
    assert a.shape == ((48, 64) if rotation in (0, 180) else (64, 48))
    at = {(0, 0): a[2, 2], (0, -1): a[2, -3], (-1, 0): a[-3, 2], (-1, -1): a[-3, -3]}
    assert {k for k, v in at.items() if v > 200} == {corner}, at
    assert all(v < 60 for k, v in at.items() if k != corner), at


def test_a_stream_that_changes_size_midway_is_read_at_its_first_size(tmp_path: Path) -> None:
    """Two recordings spliced into one stream (MPEG-TS joins by concatenation): the
    frames after the change are scaled to the first frames' size, not refused."""
    import av

    from impasto import videoio

    def part(w: int, h: int, level: int) -> bytes:
        path = tmp_path / f"{w}.ts"
        with av.open(str(path), "w", format="mpegts") as out:
            s = out.add_stream("libx264", rate=12)
            s.width, s.height, s.pix_fmt = w, h, "yuv420p"
            for i in range(3):
                f = av.VideoFrame.from_ndarray(np.full((h, w, 3), level, np.uint8), format="rgb24")
                f.pts = i
                for pk in s.encode(f):
                    out.mux(pk)
            for pk in s.encode():
                out.mux(pk)
        return path.read_bytes()

    clip = tmp_path / "spliced.ts"
    clip.write_bytes(part(48, 32, 60) + part(64, 48, 200))
    frames = [img for img, _, _ in videoio.read_frames(clip)]
    assert [f.size for f in frames] == [(48, 32)] * 6
    levels = [int(np.asarray(f.convert("L")).mean()) for f in frames]
    assert all(abs(v - 60) < 8 for v in levels[:3]) and all(abs(v - 200) < 8 for v in levels[3:])


def test_a_portrait_phone_clip_comes_out_upright(tmp_path: Path, style_png: Path,
                                                 env: dict[str, str]) -> None:
    """Stored landscape with a quarter-turn display matrix: the result is the portrait
    clip a viewer saw, written upright (no matrix left to turn it a second time)."""
    import av

    clip, out = tmp_path / "phone.mp4", tmp_path / "out.mp4"
    make_clip(clip, frames=3, audio_s=0.2, rotation=-90)
    r = run_cli(["stylize", str(clip), "--style", str(style_png), "-o", str(out), *SMALL], env)
    assert r.returncode == 0, r.stderr
    assert clip_facts(out)["size"] == (48, 64)
    with av.open(str(out)) as c:
        assert [f.rotation for f in c.decode(c.streams.video[0])] == [0, 0, 0]


def test_frames_folder_and_glob_in_folder_out(tmp_path: Path, style_png: Path,
                                              env: dict[str, str]) -> None:
    shots = tmp_path / "shots"
    shots.mkdir()
    for i in (1, 2, 10):  # natural order: 1, 2, 10
        gradient_image(64, 48).rotate(i).save(shots / f"f{i}.png")
    (shots / "notes.txt").write_text("not a frame")
    r = run_cli(["stylize", str(shots), "--style", str(style_png), "-o", str(tmp_path / "out"),
                 *SMALL], env)
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["f1.png", "f10.png", "f2.png"]
    assert "3 frames" in r.stdout
    r = run_cli(["stylize", str(shots / "f1*.png"), "--style", str(style_png), "-o",
                 str(tmp_path / "glob"), "--independent", *SMALL], env)
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in (tmp_path / "glob").iterdir()) == ["f1.png", "f10.png"]
    assert Image.open(tmp_path / "glob" / "f1.png").size == (64, 48)


@pytest.mark.parametrize(("case", "why"), [
    ("png_out", "a video in makes a video out"),
    ("masks", "clips take no regions yet"),
    ("preview", "--preview is for stills"),
    ("corrupt", "is not a video impasto can read"),
    ("empty_folder", "no frames in"),
    ("cut_short", "is cut short or damaged: its header declares 12 frames"),
])
def test_clip_mistakes_one_clear_line(case: str, why: str, tmp_path: Path, style_png: Path,
                                      env: dict[str, str]) -> None:
    clip = tmp_path / "clip.mp4"
    make_clip(clip, frames=2)
    args = {"png_out": [str(clip), "-o", str(tmp_path / "o.png")],
            "masks": [str(clip), "-o", str(tmp_path / "o.mp4"), "--style-masks", str(style_png)],
            "preview": [str(clip), "-o", str(tmp_path / "o.mp4"), "--preview", str(tmp_path / "p.png")],
            "corrupt": [str(tmp_path / "bad.mp4"), "-o", str(tmp_path / "o.mp4")],
            "empty_folder": [str(tmp_path / "none"), "-o", str(tmp_path / "o")],
            "cut_short": [str(tmp_path / "cut.avi"), "-o", str(tmp_path / "o.avi")]}[case]
    if case == "cut_short":
        cut_short_avi(tmp_path / "cut.avi")
    (tmp_path / "bad.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"junk" * 100)
    (tmp_path / "none").mkdir()
    r = run_cli(["stylize", *args, "--style", str(style_png), *SMALL], env)
    assert r.returncode == 2 and why in r.stderr, (r.returncode, r.stderr)
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize("where", ["under_a_file", "under_proc", "a_folder"])
def test_a_clip_s_output_that_cannot_be_written_is_refused_before_the_first_frame(
        where: str, tmp_path: Path, style_png: Path, env: dict[str, str]) -> None:
    """PyAV opens the output at the first packet: without a check up front, the whole
    clip would be stylized before the error (a hostile review found a traceback there)."""
    clip = tmp_path / "clip.mp4"
    make_clip(clip, frames=2)
    (tmp_path / "afile").write_text("in the way")
    (tmp_path / "adir.mp4").mkdir()
    out = {"under_a_file": tmp_path / "afile" / "o.mp4", "under_proc": Path("/proc/nope/o.mp4"),
           "a_folder": tmp_path / "adir.mp4"}[where]
    r = run_cli(["stylize", str(clip), "-o", str(out), "--style", str(style_png), "--json",
                 *SMALL], env)
    assert r.returncode in (1, 2), (r.returncode, r.stderr)
    assert "Traceback" not in r.stderr
    assert ("is not a writable folder" if where != "a_folder" else "is a folder") in r.stderr
    assert '"frame"' not in r.stdout  # refused before any frame was stylized


def test_a_clip_on_the_daemon_keeps_frames_rate_and_audio(tmp_path: Path, style_png: Path,
                                                          daemon) -> None:  # noqa: ANN001
    """`impasto send clip.mp4` runs the clip as daemon jobs (clipjobs: requests of a few
    frames, each continuing the last); `impasto stylize` finds the daemon and does the
    same; --independent is stability 0 there."""
    clip, out = tmp_path / "clip.mp4", tmp_path / "out.mp4"
    make_clip(clip, frames=6)
    fast = ["--size", "64", "--preset", "draft", "--seed", "1", "--address", daemon.address]
    r = run_cli(["send", str(clip), "--style", str(style_png), "-o", str(out), "--json", *fast],
                daemon.env)
    assert r.returncode == 0, r.stderr
    lines = [json.loads(x) for x in r.stdout.splitlines()]
    assert [x["frame"] for x in lines if x["event"] == "frame"] == list(range(6))
    assert lines[-1]["event"] == "done" and lines[-1]["frames"] == 6 and lines[-1]["seed"] == 1
    assert lines[0]["event"] == "accepted" and lines[0]["job"]
    steps = [(x["frame"], x["frames"]) for x in lines if x["event"] == "progress"]
    assert steps and {f for f, _ in steps} <= set(range(6)) and {n for _, n in steps} == {6}, steps
    assert all(events.parse(x) for x in r.stdout.splitlines())
    src, got = clip_facts(clip), clip_facts(out)
    assert got["frames"] == 6 and got["rate"] == src["rate"]
    assert got["audio_samples"] == src["audio_samples"] > 0
    shots = tmp_path / "shots"
    shots.mkdir()
    for i in range(3):
        gradient_image(64, 48).rotate(5 * i).save(shots / f"s{i}.png")
    r = run_cli(["stylize", str(shots), "--style", str(style_png), "-o", str(tmp_path / "o"),
                 "--independent", *fast], daemon.env)
    assert r.returncode == 0, r.stderr
    assert "using the daemon" in r.stderr and "each on its own" in r.stdout
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["s0.png", "s1.png", "s2.png"]
    split = tmp_path / "split.mp4"
    r = run_cli(["send", str(clip), "--style", str(style_png), "-o", str(split), "--split", "2",
                 *fast], daemon.env)
    assert r.returncode == 0, r.stderr
    assert clip_facts(split)["frames"] == 6 and clip_facts(split)["audio_samples"] > 0
    r = run_cli(["send", str(clip), "--style", str(style_png), "-o", str(split), "--split", "0",
                 *fast], daemon.env)
    assert r.returncode == 2 and "1 to 64 parts" in r.stderr
    status = run_cli(["status", "--json", "--address", daemon.address], daemon.env)
    assert json.loads(status.stdout.splitlines()[-1])["jobs_done"] >= 4


def cut_short_avi(path: Path, frames: int = 12) -> None:
    """An AVI of `frames` frames cut off before its end, as a partial download is: its
    header still declares them all, the file holds only the first few."""
    import av

    whole = path.with_name("whole.avi")
    with av.open(str(whole), "w") as out:
        v = out.add_stream("mpeg4", rate=12)
        v.width, v.height, v.pix_fmt = 64, 48, "yuv420p"
        for i in range(frames):
            f = av.VideoFrame.from_ndarray(np.asarray(gradient_image(64, 48)), format="rgb24")
            f.pts = i
            for p in v.encode(f):
                out.mux(p)
        for p in v.encode():
            out.mux(p)
    data = whole.read_bytes()
    path.write_bytes(data[: len(data) * 9 // 10])



def test_a_clip_sent_in_parts_reports_each_part_to_scripts(tmp_path: Path, style_png: Path,
                                                           daemon) -> None:  # noqa: ANN001
    """`send --split 2 --json`: the parts run side by side, each its own request; each
    has its accepted line and its progress lines (numbered in the whole clip), and the
    lines from the parts' threads stay whole lines."""
    shots = tmp_path / "shots"
    shots.mkdir()
    for i in range(4):
        gradient_image(64, 48).rotate(5 * i).save(shots / f"s{i}.png")
    r = run_cli(["send", str(shots), "--style", str(style_png), "-o", str(tmp_path / "o"),
                 "--split", "2", "--json", "--size", "64", "--preset", "draft", "--seed", "1",
                 "--address", daemon.address], daemon.env)
    assert r.returncode == 0, r.stderr
    lines = [events.parse(x) for x in r.stdout.splitlines()]
    assert len({e.job for e in lines if isinstance(e, events.Accepted)}) == 2, r.stdout
    assert {e.frames for e in lines if isinstance(e, events.Progress)} == {4}, r.stdout
    assert [e.frame for e in lines if isinstance(e, events.FrameDone)] == [0, 1, 2, 3]
    assert isinstance(lines[-1], events.Done) and lines[-1].frames == 4
