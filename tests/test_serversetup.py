"""The server set-up's choices (every system and back end, through the pure functions)
and the artefacts: wheel and GIMP plug-in archive."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from impasto.gimp import companion_files
from impasto.gimp import serversetup as ss
from tests.helpers import IMPASTO, REPO

# What PyTorch publishes, by (system, back end): the index tag, or None for PyPI's
# default, or "refused". Written out by hand from PyTorch's install matrix, so a change
# in torch_source shows up here as a difference, not as a copy of the same table.
EXPECTED = {
    ("Linux", "x86_64"): {"cuda": "cu130", "rocm": "rocm7.1", "xpu": "xpu", "mps": "refused",
                          "cpu": "cpu"},
    ("Windows", "AMD64"): {"cuda": "cu130", "rocm": "refused", "xpu": "xpu", "mps": "refused",
                           "cpu": "cpu"},
    ("Darwin", "arm64"): {"cuda": "refused", "rocm": "refused", "xpu": "refused", "mps": None,
                          "cpu": None},
    ("Darwin", "x86_64"): {"cuda": "refused", "rocm": "refused", "xpu": "refused",
                           "mps": "refused", "cpu": None},
    ("Linux", "aarch64"): {"cuda": "refused", "rocm": "refused", "xpu": "refused",
                           "mps": "refused", "cpu": None},
}


@pytest.mark.parametrize("where", sorted(EXPECTED), ids=lambda w: "-".join(w))
@pytest.mark.parametrize("backend", ss.BACKENDS)
def test_torch_source_for_every_system_and_backend(where: tuple[str, str], backend: str) -> None:
    want = EXPECTED[where][backend]
    if want == "refused":
        with pytest.raises(ss.SetupError) as e:
            ss.torch_source(*where, backend)
        assert "use " in str(e.value)  # says what to do instead
        return
    src = ss.torch_source(*where, backend)
    if want is None:
        assert src.index_url is None and src.pip_args() == []
    else:
        assert src.index_url == f"https://download.pytorch.org/whl/{want}"
        assert src.pip_args()[:2] == ["--index-url", src.index_url]
    assert src.requirements[0].startswith("torch==") and src.download_mb > 0
    if where == ("Darwin", "x86_64"):
        assert src.requirements == ("torch==2.2.2", "torchvision==0.17.2")
    else:
        assert src.requirements == (f"torch=={ss.TORCH}", f"torchvision=={ss.TORCHVISION}")


def test_pins_match_what_the_package_accepts() -> None:
    import tomllib

    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    torch_dep = next(d for d in deps if d.startswith("torch>="))
    hi = torch_dep.split("<")[1]
    assert tuple(map(int, ss.TORCH.split("."))) < tuple(map(int, hi.split(".")))


@pytest.mark.parametrize(("facts", "backend"), [
    (ss.Facts("Linux", "x86_64", frozenset({"nvidia-smi"})), "cuda"),
    (ss.Facts("Windows", "AMD64", frozenset({"nvidia-smi", "xpu-smi"})), "cuda"),
    (ss.Facts("Linux", "x86_64", frozenset({"rocminfo"})), "rocm"),
    (ss.Facts("Windows", "AMD64", frozenset({"rocminfo"})), "cpu"),
    (ss.Facts("Linux", "x86_64", frozenset({"sycl-ls"})), "xpu"),
    (ss.Facts("Darwin", "arm64"), "mps"),
    (ss.Facts("Darwin", "x86_64"), "cpu"),
    (ss.Facts("Linux", "x86_64"), "cpu"),
])
def test_detected_backend_is_one_torch_has(facts: ss.Facts, backend: str) -> None:
    got, why = ss.choose_backend(facts)
    assert got == backend and why
    ss.torch_source(facts.system, facts.machine, got)  # never offers a refused pair


def test_python_candidates_and_data_folders() -> None:
    assert ss.python_candidates(None, "Windows")[0][0] == "py"
    assert ["python3"] in ss.python_candidates(None, "Linux")
    assert ss.python_candidates("/opt/py/bin/python3", "Linux") == [["/opt/py/bin/python3"]]
    env = {"HOME": "/home/a", "LOCALAPPDATA": r"C:\Users\a\AppData\Local"}
    assert ss.data_home("Windows", env).name == "impasto"
    assert str(ss.data_home("Windows", env)).startswith(r"C:\Users\a\AppData\Local")
    assert ss.data_home("Darwin", env) == Path("/home/a/Library/Application Support/impasto")
    assert ss.data_home("Linux", env) == Path("/home/a/.local/share/impasto")
    assert ss.venv_python(Path("v"), "Windows") == Path("v/Scripts/python.exe")


def test_find_python_takes_a_named_interpreter_and_refuses_a_bad_one(tmp_path: Path) -> None:
    assert ss.find_python(sys.executable) == [sys.executable]
    fake = tmp_path / "python"
    fake.write_text("#!/bin/sh\necho False\n")
    fake.chmod(0o755)
    with pytest.raises(ss.SetupError, match="3.11 or newer"):
        ss.find_python(str(fake))


def test_offline_plan_uses_only_the_wheel_folder(tmp_path: Path) -> None:
    r = subprocess.run(IMPASTO + ["setup", "plan", "--backend", "cpu", "--dir", str(tmp_path / "v"),
                                  "--wheels", str(tmp_path), "--json"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    plan = json.loads(r.stdout)
    assert plan["download_mb"] == 0
    for step in plan["steps"][1:]:
        assert "--no-index" in step and str(tmp_path) in step
        assert not any("pytorch.org" in a or "pypi.org" in a for a in step)


def test_setup_refuses_an_impossible_pair_with_advice(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "impasto", "setup", "plan", "--backend", "mps",
                        "--dir", str(tmp_path / "v")], capture_output=True, text=True, timeout=120)
    if sys.platform == "darwin":
        pytest.skip("mps exists here")
    assert r.returncode == 1 and "macOS only" in r.stdout


def test_uninstall_removes_only_an_environment_the_setup_made(tmp_path: Path) -> None:
    not_env = tmp_path / "precious"
    not_env.mkdir()
    (not_env / "photo.png").write_bytes(b"x")
    (not_env / "pyvenv.cfg").write_text("home = /usr\n")  # looks like a venv, is not ours
    assert ss.uninstall(not_env) is False and (not_env / "photo.png").exists()
    env = tmp_path / "server"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env)], check=True,
                   timeout=300)
    assert ss.uninstall(env) is False and env.exists()  # a venv, but not the set-up's
    (env / ss.MARKER).write_text("{}")
    link = tmp_path / "link"
    link.symlink_to(env)
    assert ss.uninstall(link) is False and env.exists()
    assert ss.uninstall(env) is True and not env.exists()


def test_run_refuses_to_empty_a_folder_it_did_not_make(tmp_path: Path) -> None:
    """`python -m venv --clear` empties its folder: the set-up refuses, before any step,
    a folder with someone's files in it, the home folder, the current folder and /."""
    victim = tmp_path / "victim"
    (victim / "photos").mkdir(parents=True)
    (victim / "photos" / "a.jpg").write_bytes(b"precious")
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    for where in (str(victim), "/", str(Path.home()), ".", ""):
        for action in ("plan", "run"):
            r = subprocess.run(IMPASTO + ["setup", action, "--backend", "cpu", "--dir", where,
                                          "--wheels", str(wheels), "--python", sys.executable,
                                          "--json"],
                               capture_output=True, text=True, timeout=120, cwd=tmp_path)
            assert r.returncode == 1, (where, action, r.stdout, r.stderr)
            last = json.loads(r.stdout.splitlines()[-1])
            assert last["event"] == "error" and "folder" in last["message"], last
    assert (victim / "photos" / "a.jpg").read_bytes() == b"precious"
    # Missing wheel folder and an unwritable log: one JSON error line each, no traceback.
    for extra in (["--wheels", str(tmp_path / "nowhere")],
                  ["--wheels", str(wheels), "--log", str(tmp_path)]):
        r = subprocess.run(IMPASTO + ["setup", "run", "--backend", "cpu", "--dir",
                                      str(tmp_path / "new"), "--python", sys.executable,
                                      "--json", *extra],
                           capture_output=True, text=True, timeout=300, cwd=tmp_path)
        assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
        assert json.loads(r.stdout.splitlines()[-1])["event"] == "error"


def test_setup_module_is_stand_alone() -> None:
    """The plug-in runs it before impasto exists: standard library only, at any depth,
    besides its companions (impasto.gimp.COMPANIONS), which it imports from the package
    inside impasto and by their copies' names beside the plug-in."""
    from impasto.gimp import COMPANIONS

    copies = {name.removesuffix(".py") for name in COMPANIONS}
    for path in companion_files().values():
        tree = ast.parse(path.read_text())
        names = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import)
                 for a in n.names}
        names |= {n.module.split(".")[0] for n in ast.walk(tree)
                  if isinstance(n, ast.ImportFrom) and n.module and n.level == 0}
        assert names <= set(sys.stdlib_module_names) | {"__future__", "impasto"} | copies, \
            (path, names)


def test_companions_run_beside_the_plugin_with_the_standard_library_only(
        tmp_path: Path) -> None:
    """What `impasto gimp install` (and the archive) put beside the plug-in runs on a
    Python that has nothing but its standard library (-S: no site-packages, so no
    impasto): every companion imports, and the set-up program answers."""
    from impasto.gimp import COMPANIONS, PLUGIN_FILE

    box = tmp_path / "impasto-neural-style"
    r = subprocess.run(IMPASTO + ["gimp", "install", "--plugin-dir", str(box),
                                  "--no-autostart"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    for name, source in companion_files().items():
        assert (box / name).read_bytes() == source.read_bytes(), name
    stems = [n.removesuffix(".py") for n in COMPANIONS]
    code = (f"import sys; sys.path.insert(0, {str(box)!r}); "
            f"import {', '.join(stems)}; "
            "assert not [m for m in sys.modules if m.split('.')[0] == 'impasto'], sys.modules; "
            "sys.exit(impasto_serversetup.main(['detect', '--json']))")
    r = subprocess.run([sys.executable, "-I", "-S", "-c", code], capture_output=True, text=True,
                       timeout=120, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout.splitlines()[-1])["event"] == "detect"
    # The plug-in file and its parts import the standard library, gi, these copies and
    # one another only.
    from impasto.gimp import beside_names, part_files

    for path in [PLUGIN_FILE, *part_files().values()]:
        tree = ast.parse(path.read_text())
        names = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import)
                 for a in n.names}
        names |= {n.module.split(".")[0] for n in ast.walk(tree)
                  if isinstance(n, ast.ImportFrom) and n.module and n.level == 0}
        assert names <= set(sys.stdlib_module_names) | {"gi", "__future__"} | beside_names(), \
            (path.name, names)


@pytest.mark.slow
def test_archive_has_one_top_folder_with_plugin_setup_and_wheel(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "impasto.gimp.package", "--out", str(tmp_path)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    (archive,) = tmp_path.glob("impasto-gimp-*.zip")
    with zipfile.ZipFile(archive) as z:
        names = z.namelist()
        tops = {n.split("/")[0] for n in names}
        assert tops == {"impasto-neural-style"}
        plugin = z.getinfo("impasto-neural-style/impasto-neural-style.py")
        assert (plugin.external_attr >> 16) & 0o111
        (wheel,) = [n for n in names if n.endswith(".whl")]
        # The set-up program and every module it and the plug-in import beside it.
        from impasto.gimp import COMPANIONS

        for name, source in companion_files().items():
            assert z.read(f"impasto-neural-style/{name}") == source.read_bytes(), name
        assert {"impasto_serversetup.py", "impasto_events.py", "impasto_pipes.py"} <= set(COMPANIONS)
        readme = z.getinfo("impasto-neural-style/README.txt")
        assert (readme.external_attr >> 16) & 0o444 == 0o444  # readable by all
        z.extract(wheel, tmp_path / "x")
    with zipfile.ZipFile(tmp_path / "x" / wheel) as w:
        assert "impasto/gimp/serversetup.py" in w.namelist()


def test_the_default_package_is_what_came_with_the_program_never_a_bare_name(
        tmp_path: Path) -> None:
    """No `impasto` is published on PyPI: a plan for the bare name would install whoever
    registered it. The archive's wheel wins; then the checkout; else a clear refusal."""
    from impasto.gimp.serversetup import SetupError, default_package

    here = Path(ss.__file__)
    assert Path(default_package(here)) == REPO  # this checkout
    box = tmp_path / "impasto-neural-style"
    box.mkdir()
    (box / "impasto_serversetup.py").write_text("")
    (box / "impasto-0.1.0-py3-none-any.whl").write_bytes(b"")
    assert default_package(box / "impasto_serversetup.py") == str(box / "impasto-0.1.0-py3-none-any.whl")
    (box / "impasto-0.1.0-py3-none-any.whl").unlink()
    with pytest.raises(SetupError, match="--package"):
        default_package(box / "impasto_serversetup.py")


def test_data_folder_follows_impasto_data_dir_as_the_package_does() -> None:
    env = {"HOME": "/home/a", "IMPASTO_DATA_DIR": "/srv/impasto-data"}
    for system in ss.SYSTEMS:
        assert ss.data_home(system, env) == Path("/srv/impasto-data")


def test_run_plan_moves_the_bar_logs_each_step_and_names_the_log_on_failure(
        tmp_path: Path) -> None:
    plan = ss.make_plan(tmp_path / "v", "cpu", str(REPO), [sys.executable],
                        wheels=tmp_path, system="Linux", machine="x86_64")
    py = sys.executable
    plan.steps = [[py, "-c", "import time; print('step one'); time.sleep(1.5)"],
                  [py, "-c", "import sys; print('torch step fails'); sys.exit(3)"],
                  [py, "-c", "print('never')"]]
    seen: list[tuple[int, int, str]] = []
    pulses: list[int] = []
    log = tmp_path / "logs" / "setup.log"
    with pytest.raises(ss.SetupError, match=r"installing torch .*exit 3.*setup\.log"):
        ss.run_plan(plan, log, lambda i, n, w: seen.append((i, n, w)),
                    pulse=lambda: pulses.append(1))
    assert [s[0] for s in seen] == [0, 1]  # the third step never started
    assert pulses  # the bar moved while the slow step ran
    text = log.read_text()
    assert "step one" in text and "torch step fails" in text and "never" not in text


def test_connect_plugin_points_the_plugin_at_the_environment(tmp_path: Path) -> None:
    """After the set-up, the environment's own impasto writes the plug-in's bridge config
    (here this test run's Python stands in for the new environment's)."""
    box = tmp_path / "plug-ins" / "impasto-neural-style"
    box.mkdir(parents=True)
    from impasto.gimp import PLUGIN_FILE

    (box / "impasto-neural-style.py").write_bytes(PLUGIN_FILE.read_bytes())
    log = tmp_path / "setup.log"
    ss.connect_plugin(Path(sys.executable), box, "random", log)
    cfg = json.loads((box / "impasto-bridge.json").read_text())
    assert cfg["bridge"][0] == sys.executable
    assert cfg["autostart"]["command"][0] == sys.executable
    assert cfg["autostart"]["weights"] == "random"
    assert (box / "impasto_events.py").is_file()
    assert "gimp install --plugin-dir" in log.read_text()
    # `setup uninstall --plugin-dir` disconnects the plug-in (it offers the set-up again)
    # and removes the environment only if there is one; here there is none.
    r = subprocess.run(IMPASTO + ["setup", "uninstall", "--dir", str(tmp_path / "none"),
                                  "--plugin-dir", str(box), "--json"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["removed"] is False
    assert not (box / "impasto-bridge.json").exists()
    assert (box / "impasto-neural-style.py").is_file()


def test_connect_plugin_failure_names_the_log(tmp_path: Path) -> None:
    fake = tmp_path / "python"
    fake.write_text("#!/bin/sh\necho no impasto here; exit 1\n")
    fake.chmod(0o755)
    with pytest.raises(ss.SetupError, match="connecting the GIMP plug-in failed.*setup.log"):
        ss.connect_plugin(fake, tmp_path, "auto", tmp_path / "setup.log")
    assert "no impasto here" in (tmp_path / "setup.log").read_text()


def test_gimp_uninstall_removes_only_impasto_s_files_and_doctor_reads_bad_configs(tmp_path: Path) -> None:
    precious = tmp_path / "my-pictures"
    precious.mkdir()
    (precious / "photo.png").write_bytes(b"x")
    r = subprocess.run(IMPASTO + ["gimp", "uninstall", "--plugin-dir", str(precious)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "must name the plug-in's own folder" in r.stderr
    assert (precious / "photo.png").exists()
    # A folder of the right name: impasto's files go, an artist's own stay with it.
    box = tmp_path / "impasto-neural-style"
    r = subprocess.run(IMPASTO + ["gimp", "install", "--plugin-dir", str(box), "--no-autostart"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    (box / "my-weights.pth").write_bytes(b"x")
    r = subprocess.run(IMPASTO + ["gimp", "uninstall", "--plugin-dir", str(box)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "kept" in r.stdout, r.stdout + r.stderr
    assert sorted(p.name for p in box.iterdir()) == ["my-weights.pth"]
    # A damaged config is diagnosed by the doctor, not a traceback.
    r = subprocess.run(IMPASTO + ["gimp", "install", "--plugin-dir", str(box), "--no-autostart"],
                       capture_output=True, text=True, timeout=120)
    for bad in ("[1, 2]", '{"bridge": "echo"}', '{"env": [1]}', '{"autostart": "yes"}'):
        (box / "impasto-bridge.json").write_text(bad)
        r = subprocess.run(IMPASTO + ["gimp", "doctor", "--plugin-dir", str(box)],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
        assert "bridge config" in r.stdout, r.stdout
