"""The set-up's choices as pure functions over recorded facts: the install root and the
path limit on Windows, the Python it builds on (fake candidate lists), uv's wheel (a
recorded PyPI answer), the torch build for a card (recorded nvidia-smi and rocminfo
outputs of real cards), and the extras every install gets. One real uv fetch, marked
slow, where the package index answers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path, PureWindowsPath

import pytest

from impasto.gimp import gpus, pythons
from impasto.gimp import serversetup as ss
from tests.helpers import REPO

DATA = Path(__file__).parent / "data"
LINUX = pythons.Facts("Linux")

# Also run with impasto's modules held to Windows' standard library (scripts/test).
pytestmark = pytest.mark.windows_library


# --- item: a short install root, and the path limit checked before downloading ---------
def test_windows_gets_a_short_root_and_a_long_path_check_before_any_download(
        tmp_path: Path) -> None:
    env = {"LOCALAPPDATA": r"C:\Users\alexandra.kowalczyk\AppData\Local"}
    assert ss.default_venv("Windows", env).name == "s"
    assert ss.default_venv("Linux", {"HOME": "/home/a"}).name == "server"
    deep = Path(r"C:\Users\alexandra.kowalczyk\AppData\Local\impasto\server")
    problem = ss.path_problem(deep, "Windows", long_paths=False)
    assert problem and "260" in problem and "LongPathsEnabled" in problem, problem
    assert ss.path_problem(deep, "Windows", long_paths=True) is None
    assert ss.path_problem(ss.default_venv("Windows", {"LOCALAPPDATA": r"C:\Users\al\AppData\Local"}),
                           "Windows", long_paths=False) is None
    assert ss.path_problem(Path("/home/" + "x" * 200), "Linux", long_paths=False) is None
    # No such limit off Windows; in the Windows-library mode there is no registry to read,
    # and the check then errs on the safe side.
    assert ss.long_paths_enabled() is (ss.sys.platform != "win32")
    # The check comes before the first step (before any download): run_plan runs it first.
    plan = ss.make_plan(tmp_path / ("d" * 120) / "server", "cpu", str(REPO), [sys.executable],
                        system="Windows", machine="AMD64")
    with pytest.raises(ss.SetupError, match="260"):
        ss.check_plan(plan, long_paths=False, system="Windows")
    ss.check_plan(plan, long_paths=True, system="Windows")
    # The shorter folder it suggests is one the set-up takes (C:\\impasto, two parts, was
    # refused as "not a place for the server's environment") and fits the limit.
    suggested = problem.rsplit("e.g. ", 1)[1].rstrip(")")
    assert len(PureWindowsPath(suggested).parts) >= ss.MIN_PARTS, suggested
    assert ss.path_problem(Path(suggested), "Windows", long_paths=False) is None


# --- item: a Python the set-up can trust ---------------------------------------------------
def info(version: tuple[int, ...] = (3, 12, 4), base: str = "/usr", ensurepip: bool = True,
         venv: bool = True, executable: str = "") -> dict:
    return {"version": list(version), "executable": executable or f"{base}/bin/python3",
            "base_prefix": base, "prefix": base, "venv": venv, "ensurepip": ensurepip}


def cand(path: str, **kw: object) -> pythons.Candidate:
    probe = kw.pop("probe", True)
    return pythons.Candidate((path,), path, info(**kw) if probe else None)  # type: ignore[arg-type]


@pytest.mark.parametrize(("candidate", "facts", "reason"), [
    (cand(r"C:\Users\a\AppData\Local\Microsoft\WindowsApps\python.exe", probe=False),
     pythons.Facts("Windows"), "Microsoft Store"),
    (cand("/Applications/GIMP.app/Contents/MacOS/python3",
          base="/Applications/GIMP.app/Contents/Resources"),
     pythons.Facts("Darwin"), "application bundle"),
    # A python3 outside the bundle whose prefix is GIMP's (a wrapper, a symlink).
    (cand("/usr/local/bin/python3", base="/Applications/GIMP.app/Contents/Resources"),
     pythons.Facts("Darwin"), "application bundle"),
    (cand("/usr/bin/python3", ensurepip=False), LINUX, "ensurepip"),
    (cand("/usr/bin/python3"), pythons.Facts("Linux", flatpak=True), "Flatpak"),
    (cand("/app/bin/python3", base="/app"), pythons.Facts("Linux", flatpak=True), "Flatpak"),
    (cand("/usr/bin/python3", version=(3, 10, 12)), LINUX, "older than 3.11"),
    (cand("/usr/bin/python3", venv=False), LINUX, "venv"),
    (pythons.Candidate(("python3",), ""), LINUX, "not found"),
])
def test_pythons_that_cannot_be_trusted_are_passed_over_with_the_reason(
        candidate: pythons.Candidate, facts: pythons.Facts, reason: str) -> None:
    problem = pythons.judge(candidate, facts)
    assert problem is not None and reason in problem, problem


def test_the_store_s_real_python_behind_the_py_launcher_is_passed_over() -> None:
    """`py -3.12` finds the Store's Python too (it registers itself); its writes to
    %LOCALAPPDATA% land in its package's private copy, so the environment it makes in
    impasto\\s is not there for GIMP or for the set-up's next step."""
    store = pythons.Candidate(("py", "-3.12"), r"C:\Windows\py.exe", info(
        (3, 12, 10), base=r"C:\Program Files\WindowsApps\PythonSoftwareFoundation.Python."
        r"3.12_3.12.2800.0_x64__qbz5n2kfra8p0",
        executable=r"C:\Users\a\AppData\Local\Microsoft\WindowsApps\PythonSoftwareFoundation."
        r"Python.3.12_qbz5n2kfra8p0\python.exe"))
    problem = pythons.judge(store, pythons.Facts("Windows"))
    assert problem is not None and "Microsoft Store" in problem, problem
    org = pythons.Candidate(("py", "-3.12"), r"C:\Windows\py.exe", info(
        (3, 12, 10), base=r"C:\Users\a\AppData\Local\Programs\Python\Python312",
        executable=r"C:\Users\a\AppData\Local\Programs\Python\Python312\python.exe"))
    assert pythons.judge(org, pythons.Facts("Windows")) is None


def test_the_first_trusted_python_is_chosen_and_none_means_uv() -> None:
    gimp = cand("/Applications/GIMP.app/Contents/MacOS/python3",
                base="/Applications/GIMP.app/Contents/Resources")
    brew = cand("/opt/homebrew/bin/python3.12", base="/opt/homebrew/Cellar/python@3.12/3.12.4")
    chosen, passed = pythons.choose([gimp, brew], pythons.Facts("Darwin"))
    assert chosen is brew and len(passed) == 1 and "GIMP.app" in passed[0]
    chosen, passed = pythons.choose([gimp], pythons.Facts("Darwin"))
    assert chosen is None and passed
    stub = cand(r"C:\Users\a\AppData\Local\Microsoft\WindowsApps\python3.exe", probe=False)
    assert pythons.choose([stub], pythons.Facts("Windows"))[0] is None
    flatpak = cand("/usr/bin/python3", ensurepip=False)
    assert pythons.choose([flatpak], pythons.Facts("Linux", flatpak=True))[0] is None


def test_candidates_per_system_look_where_each_installs_python() -> None:
    mac = [c[0] for c in pythons.candidate_commands(None, "Darwin", {})]
    assert "/opt/homebrew/bin/python3.12" in mac and "/usr/local/bin/python3.12" in mac
    assert "/Library/Frameworks/Python.framework/Versions/3.12/bin/python3" in mac
    win = pythons.candidate_commands(None, "Windows", {"LOCALAPPDATA": r"C:\Users\a\AppData\Local"})
    assert win[0] == ["py", "-3.13"]
    assert [r"C:\Users\a\AppData\Local\Programs\Python\Python312\python.exe"] in win
    assert pythons.candidate_commands("/opt/py/bin/python3", "Linux") == [["/opt/py/bin/python3"]]


def test_probes_and_installs_run_without_the_host_application_s_variables(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """GIMP.app sets PYTHONHOME and PYTHONPATH for its own Python, an AppImage exports
    LD_PRELOAD and puts its usr/bin first on PATH: none of it reaches the set-up's steps
    (a PYTHONHOME pointing elsewhere stops every other Python from starting)."""
    host = {"PYTHONHOME": "/Applications/GIMP.app/Contents/Resources",
            "PYTHONPATH": "/Applications/GIMP.app/Contents/Resources/lib/python3.11",
            "PYTHONSTARTUP": "/tmp/x.py", "LD_PRELOAD": "/tmp/.mount_gimp/usr/lib/libx.so",
            "LD_LIBRARY_PATH": "/tmp/.mount_gimp/usr/lib", "XDG_CACHE_HOME": "/tmp/gimpcache",
            "DYLD_LIBRARY_PATH": "/x", "__PYVENV_LAUNCHER__": "/x", "APPDIR": "/tmp/.mount_gimp"}
    for k, v in host.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("PATH", os.pathsep.join(["/tmp/.mount_gimp/usr/bin",
                                                "/Applications/GIMP.app/Contents/MacOS",
                                                os.environ["PATH"]]))
    clean = pythons.clean_env()
    assert not set(host) - {"APPDIR"} & set(clean)
    assert clean["PATH"] == os.environ["PATH"].split(os.pathsep, 2)[2]
    assert clean["HOME"] == os.environ["HOME"]
    # Through a real run of the set-up's steps: each sees the cleaned environment.
    plan = ss.make_plan(tmp_path / "v", "cpu", str(REPO), [sys.executable], wheels=tmp_path,
                        system="Linux", machine="x86_64")
    show = "import os, json; print('ENV', json.dumps(sorted(os.environ)))"
    plan.steps = [[sys.executable, "-c", show]] * 3
    log = tmp_path / "setup.log"
    ss.run_plan(plan, log, lambda *a: None)
    seen = json.loads(log.read_text().split("ENV ", 1)[1].splitlines()[0])
    assert not {"PYTHONHOME", "PYTHONPATH", "LD_PRELOAD", "LD_LIBRARY_PATH"} & set(seen)
    # And a probe finds this Python even with GIMP's PYTHONHOME set.
    found, passed = pythons.find(sys.executable, LINUX)
    assert found is not None and found.path == sys.executable, passed


def test_uv_s_wheel_is_chosen_for_each_platform_from_pypi_s_answer() -> None:
    meta = json.loads((DATA / "uv-pypi-0.13.9.json").read_text())
    files = meta["urls"]

    def pick(*where: str) -> str:
        f = pythons.pick_uv_wheel(files, *where)
        return str(f["filename"]).split("-", 3)[-1] if f else ""

    assert pick("Windows", "AMD64") == "none-win_amd64.whl"
    assert pick("Windows", "ARM64") == "none-win_arm64.whl"
    assert pick("Darwin", "arm64") == "none-macosx_11_0_arm64.whl"
    assert pick("Darwin", "x86_64") == "none-macosx_10_12_x86_64.whl"
    assert pick("Linux", "x86_64", "glibc") == \
        "none-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"
    assert pick("Linux", "x86_64", "musl") == "none-musllinux_1_1_x86_64.whl"
    assert "aarch64" in pick("Linux", "aarch64", "glibc")
    assert pick("Linux", "sparc64") == ""  # none published: the set-up says so


def test_no_trusted_python_plans_uv_and_records_the_base(tmp_path: Path) -> None:
    plan = ss.make_plan(tmp_path / "v", "cpu", str(REPO), [], system="Linux",
                        machine="x86_64", tools=tmp_path / "uv")
    assert plan.uv == tmp_path / "uv" / "uv"
    assert plan.steps[0][1:3] == ["python", "install"] and plan.steps[1][1] == "venv"
    assert len(plan.names) == len(plan.steps) == 4
    # A Python the user named must pass: no silent switch to uv.
    with pytest.raises(ss.SetupError, match="not found"):
        ss.choose_python("/nonexistent/python3", offline=False)


def test_a_server_whose_base_python_is_gone_says_so_and_offers_repair(tmp_path: Path) -> None:
    venv = tmp_path / "server"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").symlink_to(tmp_path / "base" / "bin" / "python3")
    (venv / "pyvenv.cfg").write_text(f"home = {tmp_path / 'base' / 'bin'}\n")
    (venv / ss.MARKER).write_text(json.dumps({"python": {"home": str(tmp_path / "base" / "bin")}}))
    problem = ss.server_problem(str(venv / "bin" / "python"))
    assert problem and "is gone" in problem and "Set Up Server" in problem
    (tmp_path / "base" / "bin").mkdir(parents=True)
    (tmp_path / "base" / "bin" / "python3").symlink_to(sys.executable)
    assert ss.server_problem(str(venv / "bin" / "python")) is None
    assert ss.server_problem(sys.executable) is None  # not the set-up's: nothing to check


def test_a_base_python_in_a_folder_with_accents_is_not_taken_for_gone(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """pyvenv.cfg is UTF-8 (venv and uv write it so). Read in the encoding Python picks
    when none is named, the locale's (cp1252 on Windows, stood in for here), the home of
    C:\\Users\\Zoë's Python read as ZoÃ«: missing, and the plug-in offered on every start a
    repair that could never help."""
    import io

    monkeypatch.setattr(io, "text_encoding",
                        lambda encoding, stacklevel=2: encoding or "cp1252")
    home = tmp_path / "Zoë" / "bin"
    home.mkdir(parents=True)
    venv = tmp_path / "server"
    venv.mkdir()
    (venv / "pyvenv.cfg").write_bytes(f"home = {home}\nversion = 3.12.4\n".encode())
    assert pythons.base_of(venv) == str(home)
    assert pythons.base_missing(venv, {}) is None


@pytest.mark.parametrize("answer", ["a list", "files not objects", "digests not an object",
                                    "hash right, not a wheel", "tampered", "a local file"])
def test_a_broken_or_hostile_index_answer_is_refused_with_a_reason(
        answer: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """fetch_uv raises OSError or ValueError, which the set-up words for the artist; a
    JSON list, a non-zip with its own hash (AttributeError, BadZipFile) escaped as a
    traceback. Nothing is left behind, and the index's file name is not a path."""
    import hashlib
    import http.server
    import io
    import threading
    import zipfile

    for k in ("https_proxy", "http_proxy", "HTTPS_PROXY", "HTTP_PROXY"):
        monkeypatch.delenv(k, raising=False)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("uv-9.data/scripts/uv", b"#!/bin/sh\n")
    wheel = buf.getvalue()
    # One wheel whose tags fit whichever machine runs this.
    tag = ("manylinux_2_17_x86_64.manylinux_2_17_aarch64.musllinux_1_1_x86_64.win_amd64."
           "win_arm64.macosx_11_0_arm64.macosx_10_12_x86_64")
    body = b"not a zip" if answer == "hash right, not a wheel" else wheel
    entry: dict = {"filename": f"../../uv-9-py3-none-{tag}.whl", "packagetype": "bdist_wheel",
                   "url": "/w", "digests": {"sha256": hashlib.sha256(body).hexdigest()}}
    meta: object = {"urls": [entry]}
    if answer == "a list":
        meta = [entry]
    elif answer == "files not objects":
        meta = {"urls": ["uv.whl"]}
    elif answer == "digests not an object":
        entry["digests"] = [entry["digests"]["sha256"]]
    elif answer == "tampered":
        body = wheel + b"x"
    elif answer == "a local file":
        entry["url"] = "file:///etc/hostname"
    served = {"/json": json.dumps(meta).encode(), "/w": body}

    class Index(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802
            self.send_response(200 if self.path in served else 404)
            self.end_headers()
            self.wfile.write(served.get(self.path, b""))

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Index)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with pytest.raises((OSError, ValueError)):
            pythons.fetch_uv(tmp_path / "t" / "uv", f"http://127.0.0.1:{server.server_port}/json",
                             timeout=10)
    finally:
        server.shutdown()
        server.server_close()
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == []


@pytest.mark.slow
def test_uv_is_fetched_from_the_package_index_and_runs(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """The real thing, where PyPI answers: the wheel for this platform, hash-checked,
    unpacked with zipfile, and `uv --version` runs."""
    for k in ("https_proxy", "http_proxy", "HTTPS_PROXY", "HTTP_PROXY"):
        monkeypatch.delenv(k, raising=False)  # the suite's dead proxy
    try:
        exe = pythons.fetch_uv(tmp_path / "uv", timeout=20)
    except OSError as e:
        pytest.skip(f"the package index does not answer here: {e}")
    r = subprocess.run([str(exe), "--version"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and r.stdout.startswith("uv "), r.stdout + r.stderr
    # The set-up's uv steps use flags this uv has (their Python download itself needs
    # GitHub, which this machine cannot reach).
    for step in pythons.uv_steps(exe, tmp_path / "v", tmp_path / "py"):
        sub = step[1:3] if step[1] == "python" else step[1:2]
        helptext = subprocess.run([str(exe), *sub, "--help"], capture_output=True, text=True,
                                  timeout=30).stdout
        for flag in (a for a in step if a.startswith("--")):
            assert flag in helptext, (sub, flag)


# --- item: the torch build that fits the card ----------------------------------------------
# nvidia-smi --query-gpu=compute_cap,driver_version --format=csv,noheader, as real cards
# answer it (drivers of their time and of now).
CARDS = [
    ("GTX 1080, Windows", "6.1, 566.36\n", "Windows", "cu126"),
    ("GTX 1080, old Linux driver", "6.1, 470.256.02\n", "Linux", "cu118"),
    ("V100", "7.0, 535.230.02\n", "Linux", "cu126"),
    ("RTX 2080, new driver", "7.5, 581.57\n", "Windows", "cu130"),
    ("RTX 2080, driver 550", "7.5, 550.144.03\n", "Linux", "cu126"),
    ("RTX 4090", "8.9, 580.95.05\n", "Linux", "cu130"),
    ("H100 on a 570 driver", "9.0, 570.133.20\n", "Linux", "cu126"),
    ("H100", "9.0, 580.82.07\n", "Linux", "cu130"),
    ("two cards, the first decides", "8.9, 580.95.05\n6.1, 580.95.05\n", "Linux", "cu130"),
    # CUDA's device 0 is the fastest card, not nvidia-smi's first (bus order): cu126
    # would have no kernels for the RTX 5090 that torch computes on.
    ("GTX 1080 first, RTX 5090 beside it", "6.1, 580.95.05\n12.0, 580.95.05\n", "Linux",
     "cu130"),
    ("Kepler K80", "3.7, 470.256.02\n", "Linux", "cu118"),
    ("Kepler GTX 780", "3.5, 470.256.02\n", "Linux", None),
    ("RTX 5090 on a 570 driver", "12.0, 572.83\n", "Windows", None),
    ("GTX 1080, driver 418", "6.1, 418.226.00\n", "Linux", None),
]


@pytest.mark.parametrize(("card", "smi", "system", "tag"), CARDS, ids=[c[0] for c in CARDS])
def test_cuda_build_by_compute_capability_and_driver(card: str, smi: str, system: str,
                                                     tag: str | None) -> None:
    cards = gpus.parse_nvidia_smi(smi)
    build, why = gpus.cuda_build(gpus.primary(cards), system)
    assert (build.tag if build else None) == tag, why
    facts = ss.Facts(system, "AMD64" if system == "Windows" else "x86_64",
                     frozenset({"nvidia-smi"}), tuple(cards))
    backend, reason = ss.choose_backend(facts)
    assert backend == ("cuda" if tag else "cpu") and reason == why
    if build is None:
        assert "CPU" in why and ("update" in why or "older" in why), why
        return
    src = ss.torch_source(facts.system, facts.machine, "cuda", ss.cuda_for(facts))
    assert src.index_url == f"https://download.pytorch.org/whl/{tag}"
    assert src.requirements == (f"torch=={build.torch}", f"torchvision=={build.torchvision}")
    if card.startswith("RTX 2080, driver 550"):
        assert "580" in why  # a newer driver would allow cu130: said


def test_a_driver_too_old_for_the_compute_cap_field_still_decides(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Drivers before R510 (a Windows 47x driver) refuse nvidia-smi's compute_cap field
    with exit 2; Windows has no /proc to read the driver from. The driver is asked for
    alone then, and a GTX 1080 on 472.12 gets cu118, not cu130 (driver 580, no Pascal)."""
    smi = tmp_path / "nvidia-smi"
    smi.write_text('#!/bin/sh\ncase "$1" in\n*compute_cap*) echo \'Field "compute_cap" is '
                   'not a valid field to query.\'; exit 2;;\n*) echo 472.12;;\nesac\n')
    smi.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    cards = gpus.query_nvidia()
    assert cards == [gpus.NvidiaCard(None, (472, 12))]
    facts = ss.Facts("Windows", "AMD64", frozenset({"nvidia-smi"}), tuple(cards))
    assert ss.choose_backend(facts)[0] == "cuda"
    build = ss.cuda_for(facts)
    assert build is not None and build.tag == "cu118", build
    assert gpus.parse_nvidia_drivers('Field "compute_cap" is not a valid field to query.\n') == []
    assert gpus.parse_nvidia_smi("nan, 580.95.05\n") == [gpus.NvidiaCard(None, (580, 95, 5))]


def test_an_arm_machine_with_an_nvidia_card_is_offered_what_the_set_up_installs() -> None:
    """PyTorch's ARM builds here are CPU ones (torch_source): detection must not offer
    CUDA, which the plan then refuses (a Jetson, a DGX Spark)."""
    card = gpus.parse_nvidia_smi("8.7, 580.95.05\n")
    facts = ss.Facts("Linux", "aarch64", frozenset({"nvidia-smi"}), tuple(card))
    backend, why = ss.choose_backend(facts)
    assert backend == "cpu" and "ARM" in why
    ss.torch_source(facts.system, facts.machine, backend, ss.cuda_for(facts))


def test_every_cuda_pin_is_one_impasto_accepts() -> None:
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    lo, hi = next(d for d in deps if d.startswith("torch>=")).removeprefix("torch>=").split(",<")
    for b in gpus.CUDA_BUILDS:
        v = tuple(map(int, b.torch.split(".")))
        assert tuple(map(int, lo.split("."))) <= v < tuple(map(int, hi.split("."))), b
    assert gpus.CUDA_BUILDS[0].torch == ss.TORCH and gpus.CUDA_BUILDS[0].tag == ss.INDEX_TAG["cuda"]


ROCMINFO = """*******
Agent 1
*******
  Name:                    AMD Ryzen 9 7950X 16-Core Processor
  Marketing Name:          AMD Ryzen 9 7950X 16-Core Processor
  Device Type:             CPU
*******
Agent 2
*******
  Name:                    {gfx}
  Uuid:                    GPU-5a8e2d0b1b7c3a1f
  Marketing Name:          {name}
  Device Type:             GPU
"""


@pytest.mark.parametrize(("gfx", "name", "fits"), [
    ("gfx1100", "Radeon RX 7900 XTX", True), ("gfx90a", "AMD Instinct MI210", True),
    ("gfx1030", "AMD Radeon RX 6800 XT", True), ("gfx1032", "AMD Radeon RX 6600", False),
    ("gfx803", "Radeon RX 580", False)])
def test_rocm_by_gpu_target(gfx: str, name: str, fits: bool) -> None:
    targets = gpus.parse_rocminfo(ROCMINFO.format(gfx=gfx, name=name))
    assert targets == [gfx]
    facts = ss.Facts("Linux", "x86_64", frozenset({"rocminfo"}), rocm=tuple(targets))
    backend, why = ss.choose_backend(facts)
    assert backend == ("rocm" if fits else "cpu") and gfx in why


def test_inside_a_flatpak_devices_are_read_from_dev_and_sysfs(tmp_path: Path) -> None:
    dev = tmp_path / "dev"
    dev.mkdir()
    assert gpus.flatpak_devices(dev) == frozenset()  # GIMP's default: --device=dri only
    (dev / "nvidia0").touch()
    (dev / "kfd").touch()
    assert gpus.flatpak_devices(dev) == {"nvidia", "amd"}
    nodes = tmp_path / "nodes"
    for i, version in enumerate((0, 110000, 90010)):  # a CPU node, a 7900 XTX, an MI210
        (nodes / str(i)).mkdir(parents=True)
        (nodes / str(i) / "properties").write_text(f"cpu_cores_count 0\ngfx_target_version {version}\n")
    assert gpus.kfd_targets(nodes) == ["gfx1100", "gfx90a"]
    proc = tmp_path / "version"
    proc.write_text("NVRM version: NVIDIA UNIX x86_64 Kernel Module  580.95.05  Thu Sep 25 2025\n")
    driver = gpus.nvidia_driver_from_proc(proc)
    assert driver == (580, 95, 5)
    # The capability is unknown there: a build that also runs on older cards.
    build, _ = gpus.cuda_build(gpus.NvidiaCard(None, driver), "Linux")
    assert build is not None and build.tag == "cu126"
    facts = ss.Facts("Linux", "x86_64", devices=frozenset({"nvidia"}))
    assert ss.choose_backend(facts)[0] == "cuda"


# --- item: every feature in every install ----------------------------------------------------
@pytest.mark.parametrize("extra", ss.EXTRAS)
def test_the_setup_installs_impasto_with_each_extra(extra: str, tmp_path: Path) -> None:
    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert extra in declared["optional-dependencies"]
    wheel = tmp_path / "impasto-0.1.0-py3-none-any.whl"
    wheel.write_bytes(b"")
    for package in (str(wheel), str(REPO)):
        plan = ss.make_plan(tmp_path / "v", "cpu", package, [sys.executable], wheels=tmp_path,
                            system="Linux", machine="x86_64")
        last = plan.steps[-1][-1]
        assert last.startswith("impasto[") and extra in last.split("]")[0], last
        assert last.endswith(Path(package).resolve().as_uri())
