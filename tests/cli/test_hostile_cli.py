"""Found by a hostile review of the CLI, end to end: each test is one defect seen with the
real command, kept so that it stays fixed."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from impasto import events
from tests.helpers import free_port, gradient_image, run_cli

RUN = ["--weights", "random", "--size", "64", "--preset", "draft", "--precision", "fp32",
       "--init", "noise", "--json"]


def test_an_in_process_clip_reports_the_seed_it_ran_with(tmp_path: Path, style_png: Path,
                                                         env: dict[str, str]) -> None:
    """`stylize FRAMES/ --json` with no --seed draws one for the clip; its done line
    said "seed": 0 whatever was drawn, so rerunning with --seed 0 (or the number from
    the line) gave another clip. The seed on the line must give the same frames."""
    shots = tmp_path / "shots"
    shots.mkdir()
    for i in range(2):
        gradient_image(64, 48).rotate(4 * i).save(shots / f"s{i}.png")

    def run(out: Path, *seed: str) -> dict:
        r = run_cli(["stylize", str(shots), "--style", str(style_png), "-o", str(out), *RUN,
                     *seed], env)
        assert r.returncode == 0, r.stderr
        done = json.loads(r.stdout.splitlines()[-1])
        assert done["event"] == "done" and done["frames"] == 2
        return done

    first = run(tmp_path / "a")
    again = run(tmp_path / "b", "--seed", str(first["seed"]))
    assert again["seed"] == first["seed"]
    for i in range(2):
        a = np.asarray(Image.open(tmp_path / "a" / f"s{i}.png"))
        b = np.asarray(Image.open(tmp_path / "b" / f"s{i}.png"))
        assert np.array_equal(a, b), f"frame {i}: the reported seed {first['seed']} gave another frame"


def test_a_video_written_over_itself_is_refused(tmp_path: Path, style_png: Path,
                                                env: dict[str, str]) -> None:
    """`stylize clip.mp4 -o clip.mp4`: the output was opened over the source while the
    source was still read (frames of a later request, the audio at the end), so the
    original was gone and the result had no sound (0 of 177152 samples), exit 0. It is
    refused before anything is written, the source left as it was; through a symlink
    too."""
    from tests.cli.test_cli_video import make_clip

    clip = tmp_path / "clip.mp4"
    make_clip(clip, frames=3)
    before = clip.read_bytes()
    link = tmp_path / "same.mp4"
    link.symlink_to(clip)
    for out in (clip, link):
        r = run_cli(["stylize", str(clip), "--style", str(style_png), "-o", str(out),
                     *RUN], env)
        assert r.returncode == 2, r.stderr
        line = json.loads(r.stdout.splitlines()[-1])
        assert line["event"] == "error" and "being read" in line["message"], line
        assert clip.read_bytes() == before


def test_a_clip_cut_short_leaves_no_video_that_looks_finished(tmp_path: Path, style_png: Path,
                                                              env: dict[str, str]) -> None:
    """Ctrl-C after the first frame left a valid, shorter video at -o, unmarked (exit 130);
    a still leaves nothing. The video is written beside its name and renamed into place
    only once whole: cut short, neither it nor its partial file is left."""
    import signal
    import subprocess

    from tests.cli.test_cli_video import make_clip
    from tests.helpers import EXIT_S, IMPASTO, REPO

    work = tmp_path / "w"
    work.mkdir()
    clip = work / "clip.mp4"
    make_clip(clip, frames=40)
    out = work / "out.mp4"
    p = subprocess.Popen(IMPASTO + ["stylize", str(clip), "--style", str(style_png), "-o",
                                    str(out), *RUN], env=env, cwd=REPO, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        assert p.stdout is not None
        for line in p.stdout:  # the first frame is written: the video file exists now
            if json.loads(line)["event"] == "frame":
                break
        else:
            raise AssertionError(f"no frame line: {p.stderr.read() if p.stderr else ''}")
        p.send_signal(signal.SIGINT)
        assert p.wait(EXIT_S) == 130
    finally:
        p.kill()
    assert not out.exists()
    assert sorted(x.name for x in work.iterdir()) == ["clip.mp4"], list(work.iterdir())


def test_a_finished_clip_takes_its_name_and_leaves_no_partial_file(
        tmp_path: Path, style_png: Path, env: dict[str, str]) -> None:
    from tests.cli.test_cli_video import make_clip

    work = tmp_path / "w"
    work.mkdir()
    clip = work / "clip.mp4"
    make_clip(clip, frames=2)
    r = run_cli(["stylize", str(clip), "--style", str(style_png), "-o",
                 str(work / "out.mp4"), *RUN], env)
    assert r.returncode == 0, r.stderr
    assert sorted(x.name for x in work.iterdir()) == ["clip.mp4", "out.mp4"]


def test_a_preview_path_that_is_a_folder_is_refused_before_the_engine_loads(
        tmp_path: Path, style_png: Path, env: dict[str, str]) -> None:
    """`stylize --local --preview DIR` loaded VGG19 and failed at the first preview; -o
    was checked up front and --preview only in the daemon's path. Now both paths ask
    before any work."""
    content = tmp_path / "c.png"
    gradient_image(64, 48).save(content)
    (tmp_path / "p.png").mkdir()
    r = run_cli(["stylize", str(content), "--style", str(style_png), "-o", str(tmp_path / "o.png"),
                 "--preview", str(tmp_path / "p.png"), "--local", *RUN], env)
    assert r.returncode in (1, 2), (r.returncode, r.stderr)
    assert f"cannot write {tmp_path / 'p.png'}: it is a folder" in r.stderr, r.stderr
    assert "VGG19 ready" not in r.stderr and not (tmp_path / "o.png").exists()


def test_frames_written_into_their_own_folder_are_refused(tmp_path: Path, style_png: Path,
                                                          env: dict[str, str]) -> None:
    """`stylize shots -o shots` (or a glob of them) exited 0 having replaced every source
    frame with its stylized copy: the frames keep their names. Refused before any
    work, the frames as they were; and frames with -o x.mp4 made a folder named x.mp4."""
    shots = tmp_path / "shots"
    shots.mkdir()
    for i in range(2):
        gradient_image(64, 48).rotate(4 * i).save(shots / f"s{i}.png")
    before = {p.name: p.read_bytes() for p in shots.iterdir()}
    for src in (str(shots), str(shots / "*.png")):
        r = run_cli(["stylize", src, "--style", str(style_png), "-o", str(shots), "--local",
                     *RUN], env)
        assert r.returncode in (1, 2) and "Traceback" not in r.stderr, r.stderr
        assert "is the folder of the frames being read" in r.stderr, r.stderr
    assert {p.name: p.read_bytes() for p in shots.iterdir()} == before
    r = run_cli(["stylize", str(shots), "--style", str(style_png), "-o",
                 str(tmp_path / "x.mp4"), "--local", *RUN], env)
    assert r.returncode in (1, 2) and "names a video; name a folder" in r.stderr, r.stderr
    assert not (tmp_path / "x.mp4").exists()


def test_a_preview_over_the_content_or_a_name_too_long_is_one_clear_line(
        tmp_path: Path, style_png: Path, env: dict[str, str]) -> None:
    """--preview naming the content replaced the picture at the first step; a name
    over 255 bytes in -o or --preview was a traceback and, with --json, no error line."""
    content = tmp_path / "c.png"
    gradient_image(64, 48).save(content)
    kept = content.read_bytes()
    base = ["stylize", str(content), "--style", str(style_png), "--local", "--json", *RUN]
    r = run_cli([*base, "-o", str(tmp_path / "o.png"), "--preview", str(content)], env)
    assert r.returncode in (1, 2), r.stderr
    assert "is the image being stylized" in r.stderr and content.read_bytes() == kept
    long = str(tmp_path / ("n" * 300 + ".png"))
    for flags in (["-o", long], ["-o", str(tmp_path / "o.png"), "--preview", long]):
        r = run_cli([*base, *flags], env)
        assert r.returncode in (1, 2) and "Traceback" not in r.stderr, r.stderr
        err = json.loads(r.stdout.splitlines()[-1])
        assert err["event"] == "error" and "name too long" in err["message"].lower(), err
    frames = tmp_path / "shots"
    frames.mkdir()
    gradient_image(64, 48).save(frames / "s0.png")
    r = run_cli(["stylize", str(frames), "--style", str(style_png), "-o",
                 str(tmp_path / ("d" * 300)), "--local", "--json", *RUN], env)
    assert r.returncode in (1, 2) and "Traceback" not in r.stderr, r.stderr
    assert json.loads(r.stdout.splitlines()[-1])["event"] == "error"


def test_an_address_that_does_not_answer_is_said_before_running_here(
        tmp_path: Path, style_png: Path, env: dict[str, str]) -> None:
    """With no daemon at --address, stylize runs in this process (as documented), and a
    script learnt it only from the done line's weights. The first line now says so."""
    content = tmp_path / "c.png"
    gradient_image(64, 48).save(content)
    address = f"tcp://127.0.0.1:{free_port()}"
    r = run_cli(["stylize", str(content), "--style", str(style_png), "-o", str(tmp_path / "o.png"),
                 "--size", "64", "--preset", "draft", "--json", "--address", address], env)
    assert r.returncode == 0, r.stderr
    first = events.parse(r.stdout.splitlines()[0])
    assert isinstance(first, events.Status), first
    assert first.text == f"no daemon answered at {address}: stylizing in this process"
    assert isinstance(events.parse(r.stdout.splitlines()[-1]), events.Done)
    r = run_cli(["stylize", str(content), "--style", str(style_png), "-o", str(tmp_path / "p.png"),
                 "--size", "64", "--preset", "draft", "--address", address], env)
    assert r.returncode == 0 and f"no daemon answered at {address}" in r.stderr, r.stderr


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="a /proc to write under")
def test_a_folder_no_one_can_write_is_refused_before_work_even_for_root(
        tmp_path: Path, style_png: Path, env: dict[str, str]) -> None:
    """os.access says yes to root under /proc, so -o /proc/x.png (or --preview) was
    refused only after the picture was painted. Writing is now tried before."""
    content = tmp_path / "c.png"
    gradient_image(64, 48).save(content)
    for flags in (["-o", "/proc/impasto-x.png"],
                  ["-o", str(tmp_path / "o.png"), "--preview", "/proc/impasto-p.png"]):
        r = run_cli(["stylize", str(content), "--style", str(style_png), "--local", *RUN,
                     *flags], env)
        assert r.returncode == 1, (r.returncode, r.stderr)
        assert "/proc is not a writable folder" in r.stderr, r.stderr
        assert "VGG19 ready" not in r.stderr and not (tmp_path / "o.png").exists()
