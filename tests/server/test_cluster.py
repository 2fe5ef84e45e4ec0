"""The Ray back end (`serve --cluster local`): a real private Ray instance on this
machine with two CPU workers, driven over real ZeroMQ like any daemon.

One cluster daemon serves the whole module (starting Ray and its workers takes seconds);
the tests leave it with two idle workers for the next one. Workers run torch with one
thread (Ray gives each one CPU); the embedded daemon they are compared with is started
with OMP_NUM_THREADS=1, so both sum in the same order and CPU results are equal bit for
bit.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from impasto import imagecodec
from impasto.client import Client
from impasto.errors import CANCELLED, WORKER_LOST, ImpastoError
from impasto.protocol import Progress, Result, StyleRef, Stylize
from tests.helpers import (
    DaemonProcess,
    gradient_image,
    make_env,
    same_result,
    stripes_image,
    test_device,
)

pytest.importorskip("ray", reason="the cluster extra is not installed (pip install -e '.[dev]')")
pytestmark = pytest.mark.skipif(test_device() != "cpu", reason="cluster tests run CPU workers")

FAST = {"size": 64, "scales": 1, "iterations": 3, "seed": 1}
# How long a test waits for a job to end: a cap for a heavily loaded machine, never the
# expected time (a 400-evaluation job killed and rerun took 776 s with both cores busy).
JOIN_S = 900.0
# Long enough to be caught running (it is killed once it has computed a step), short
# enough to finish twice on a loaded machine.
LONG = {"size": 64, "scales": 1, "iterations": 120, "seed": 5, "tolerance": 0.0}
ENDLESS = {"size": 64, "scales": 1, "iterations": 100000, "seed": 1, "tolerance": 0.0}
WATCH_SETTINGS = 'style = "stripes"\nsize = 64\nscales = 1\niterations = 40\nseed = 2\n'
FILES = 20


def request(options: dict, **kw) -> Stylize:
    return Stylize(content=imagecodec.to_ref(gradient_image(64, 48)),
                   styles=[StyleRef(image=imagecodec.to_ref(stripes_image(32, 32)))],
                   options=dict(options), **kw)


class Cluster:
    """The daemon, its own keyring, and a watch folder it serves."""

    def __init__(self, root: Path) -> None:
        self.root = root
        env = make_env(root)
        # Ray's session folder (its sockets too) under a short path of the test's own.
        env["TMPDIR"] = str(root / "t")
        (root / "t").mkdir()
        library = Path(env["IMPASTO_DATA_DIR"]) / "styles"
        library.mkdir(parents=True)
        stripes_image(32, 32).save(library / "stripes.png")
        self.folder = root / "box"
        (self.folder / "in").mkdir(parents=True)
        (self.folder / "in" / "impasto.toml").write_text(WATCH_SETTINGS)
        self.daemon = DaemonProcess(root, env=env, extra=[
            "--cluster", "local", "--workers", "2", "--watch", str(self.folder)])
        self.keys = Path(env["IMPASTO_CONFIG_DIR"]) / "keys"

    def client(self, timeout: float = 10.0) -> Client:
        return Client(self.daemon.address, timeout=timeout, keys_dir=self.keys)

    def workers(self) -> list[dict]:
        with self.client() as c:
            return c.status().workers

    def wait_idle(self, n: int = 2, timeout: float = 180.0) -> list[dict]:
        """Until n workers are up and idle (a killed one has been replaced)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ws = self.workers()
            if len(ws) == n and all(w["state"] == "idle" for w in ws):
                return ws
            time.sleep(0.2)
        raise AssertionError(f"workers not idle: {self.workers()}\n{self.daemon.output()[-3000:]}")


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    # A short path: Ray's unix sockets live under it and have a length limit.
    root = Path(tempfile.mkdtemp(prefix="ic", dir="/tmp"))
    import psutil

    c = Cluster(root)
    ours: dict = {}

    def note() -> None:  # Ray's agents leave the daemon's tree before it stops
        with contextlib.suppress(psutil.Error):
            for p in psutil.Process(c.daemon.proc.pid).children(recursive=True):
                ours.setdefault(p.pid, p)

    try:
        c.daemon.wait_ready()
        c.wait_idle()
        note()
        yield c
    finally:
        note()
        code = c.daemon.stop()
        log = c.daemon.output()
        _, alive = psutil.wait_procs(list(ours.values()), timeout=20)
        left = [(p.pid, p.name()) for p in alive if p.is_running()]
        for p in alive:  # not to burden the tests that follow
            with contextlib.suppress(psutil.Error):
                p.kill()
        leftover_temp = list((root / "t").glob("impasto-ray-*"))
        shutil.rmtree(root, ignore_errors=True)
        assert code == 0, log[-3000:]
        # The private Ray instance goes with the daemon: every process it started (Ray's
        # agents outlive ray.shutdown() by a minute unless ended) and its folder.
        assert not left, left
        assert not leftover_temp, leftover_temp


@pytest.fixture(scope="module")
def embedded() -> Iterator[DaemonProcess]:
    root = Path(tempfile.mkdtemp(prefix="ie", dir="/tmp"))
    env = make_env(root)
    env["OMP_NUM_THREADS"] = "1"  # as each Ray worker computes: one CPU, one thread
    d = DaemonProcess(root, env=env).wait_ready()
    yield d
    d.stop()
    shutil.rmtree(root, ignore_errors=True)


def busy_worker(cluster: Cluster, job: str, not_pid: int | None = None,
                timeout: float = JOIN_S) -> dict:
    """The worker running `job` (after it has computed a step), other than `not_pid`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for w in cluster.workers():
            if w["job"] == job and w.get("pid") and w["pid"] != not_pid:
                return w
        time.sleep(0.05)
    raise AssertionError(f"job {job} not running: {cluster.workers()}")


class Follower(threading.Thread):
    """Sends one request and collects every event until its result or error."""

    def __init__(self, cluster: Cluster, options: dict) -> None:
        super().__init__(daemon=True)
        self.cluster, self.options = cluster, options
        self.job: str | None = None
        self.started = threading.Event()  # first optimisation step seen
        self.events: list = []
        self.outcome: Result | ImpastoError | None = None

    def run(self) -> None:
        def progress(p: Progress) -> None:
            self.events.append(p)
            if p.stage == "optimize":
                self.started.set()

        with self.cluster.client(timeout=30) as c:
            try:
                self.outcome = c.stylize(
                    request(self.options, output="rgba8"), on_progress=progress,
                    on_accepted=lambda a: setattr(self, "job", a.job))
            except ImpastoError as e:
                self.outcome = e
        self.started.set()

    def wait_started(self, timeout: float = JOIN_S) -> str:
        assert self.started.wait(timeout), "no progress"
        assert self.job is not None, self.outcome
        return self.job


def test_status_lists_workers(cluster: Cluster) -> None:
    with cluster.client() as c:
        st = c.status()
    assert st.state == "ready" and st.device == "cpu" and st.weights.startswith("random")
    assert len(st.workers) == 2
    for w in st.workers:
        assert w["state"] == "idle" and w["device"] == "cpu" and w["node"] and w["pid"] > 0
        assert w["job"] == ""
    assert len({w["pid"] for w in st.workers}) == 2  # two processes, one model each


def test_private_ray_folder_is_this_users_alone(cluster: Cluster) -> None:
    """Ray makes its session folder (sockets, logs) world-writable; it sits inside one
    that only the daemon's user may enter, so no other user can plant or move a socket
    there (which stalls the pool) or read the logs."""
    [folder] = (cluster.root / "t").glob("impasto-ray-*")
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert any((folder / "r").glob("session_*"))


@pytest.mark.parametrize("scheme", ["", "ray://"])
def test_nothing_at_the_cluster_address_fails_at_once(tmp_path: Path, scheme: str) -> None:
    """A cluster address where nothing listens is an error (one line, exit 1), not a
    daemon that waits forever (Ray's own connect to a GCS address never gives up)."""
    from tests.helpers import free_port, run_cli

    where = f"127.0.0.1:{free_port()}"
    r = run_cli(["serve", "--weights", "random", "--cluster", scheme + where],
                make_env(tmp_path), timeout=120)
    assert r.returncode == 1, r.stderr
    assert f"nothing answers at {where}" in r.stderr.strip().splitlines()[-1]
    assert "Traceback" not in r.stderr


def test_result_matches_embedded_backend(cluster: Cluster, embedded: DaemonProcess) -> None:
    with cluster.client(timeout=30) as c:
        events: list = []
        got = c.stylize(request(FAST, output="rgba8"), on_progress=events.append)
    with Client(embedded.address, timeout=30,
                keys_dir=Path(embedded.env["IMPASTO_CONFIG_DIR"]) / "keys") as c:
        want = c.stylize(request(FAST, output="rgba8"))
    assert [e.stage for e in events][0] == "prepare"
    steps = [e.step for e in events if e.stage == "optimize"]
    assert steps == sorted(steps) and steps[-1] == 3
    assert got.seed == want.seed == 1 and got.weights == want.weights
    assert got.losses == want.losses
    assert same_result(imagecodec.decode(got.image), imagecodec.decode(want.image))


def test_jobs_sharing_a_style_go_where_its_targets_are(cluster: Cluster) -> None:
    """With both workers free, a job whose style one of them already holds goes there
    (a cache hit), although the other worker has been idle longer, which is whom the
    job would go to otherwise (a cache miss). The second job is sent the moment the
    first one's result is in: the dispatcher once chose from a list of free workers
    taken before the first finished (this failed, under load, as a cache miss). Read
    from the dispatcher's log line for each job, not from the cache counters, which
    workers report seconds late on a loaded machine."""
    cluster.wait_idle()
    req = Stylize(content=imagecodec.to_ref(gradient_image(64, 48)),
                  styles=[StyleRef(image=imagecodec.to_ref(stripes_image(40, 40, 5.0)))],
                  options=dict(FAST))  # a style no worker has seen yet

    def worker_of(job: str) -> str:
        found = re.findall(rf"job {job} goes to worker (\S+)(.*)", cluster.daemon.output())
        assert len(found) == 1, found
        return found[0][0] + found[0][1]

    with cluster.client(timeout=30) as c:
        first = c.stylize(req).job
    cluster.wait_idle()  # the other worker has now been idle longer than this one
    with cluster.client(timeout=30) as c:
        second = c.stylize(req).job
    a, b = worker_of(first), worker_of(second)
    assert "holds" not in a, a
    assert b.startswith(a.split()[0] + " ") and "holds 1 of its 1 style targets" in b, (a, b)


def test_two_jobs_at_once_and_cancel(cluster: Cluster) -> None:
    a, b = Follower(cluster, ENDLESS), Follower(cluster, ENDLESS)
    a.start()
    b.start()
    ja, jb = a.wait_started(), b.wait_started()
    ws = cluster.workers()  # both run now, each on its own worker
    assert sorted(w["job"] for w in ws) == sorted([ja, jb])
    assert all(w["state"] == "busy" for w in ws)
    with cluster.client() as c:
        for job in (ja, jb):
            assert c.cancel(job).was == "running"
    for f in (a, b):
        f.join(JOIN_S)
        assert isinstance(f.outcome, ImpastoError) and f.outcome.code == CANCELLED, f.outcome
    cluster.wait_idle()


def test_previews_stop_and_keep_and_float_output_on_a_worker(cluster: Cluster) -> None:
    """What the GIMP plug-in asks of a job (live previews, stop and keep the image, full
    precision) works the same on a cluster worker as on the embedded one."""
    req = request(ENDLESS, output="rgb32f", preview={"max_side": 32, "interval_s": 0.1})
    previews: list[Image.Image] = []
    steps: list[int] = []

    def progress(p: Progress) -> None:
        steps.append(p.step)
        if p.preview is not None:
            previews.append(Image.open(io.BytesIO(p.preview.data)))

    with cluster.client(timeout=30) as c:
        result = c.stylize(req, on_progress=progress, should_finish=lambda: len(previews) >= 2)
    assert result.image is not None and result.image.format == "rgb32f"
    out = np.frombuffer(result.image.data, "<f4").reshape(result.image.height, result.image.width, 3)
    assert (result.image.width, result.image.height) == (64, 48)
    assert np.isfinite(out).all() and out.min() >= 0 and out.max() <= 1
    assert len(previews) >= 2 and all(max(p.size) <= 32 for p in previews)
    assert max(steps) < 100000  # it stopped when asked, keeping what it had
    cluster.wait_idle()


def test_cancel_lands_within_an_evaluation(cluster: Cluster) -> None:
    f = Follower(cluster, {**ENDLESS, "size": 128})
    f.start()
    job = f.wait_started()
    with cluster.client() as c:
        assert c.cancel(job).was == "running"
    f.join(JOIN_S)
    assert isinstance(f.outcome, ImpastoError) and f.outcome.code == CANCELLED
    steps = [e.step for e in f.events if e.stage == "optimize"]
    # Not a timing assertion: the job stopped long before its 100000 evaluations.
    assert steps[-1] < 100000
    cluster.wait_idle()


def test_worker_killed_mid_job_finishes_elsewhere(cluster: Cluster,
                                                  embedded: DaemonProcess) -> None:
    with cluster.client() as c:
        failed_before = c.status().jobs_failed
    f = Follower(cluster, LONG)
    f.start()
    job = f.wait_started()
    victim = busy_worker(cluster, job)
    os.kill(victim["pid"], signal.SIGKILL)  # the worker process itself, by pid
    f.join(JOIN_S)
    assert isinstance(f.outcome, Result), f.outcome
    # Two runs, each announced (prepare); the second one ran all its evaluations.
    assert [e.stage for e in f.events].count("prepare") == 2
    assert f.events[-1].step == LONG["iterations"]
    # ... and computed what an uninterrupted run computes.
    with Client(embedded.address, timeout=60,
                keys_dir=Path(embedded.env["IMPASTO_CONFIG_DIR"]) / "keys") as c:
        want = c.stylize(request(LONG, output="rgba8"))
    assert same_result(imagecodec.decode(f.outcome.image), imagecodec.decode(want.image))
    ws = cluster.wait_idle()  # the pool is whole again, with a new process
    assert victim["pid"] not in {w["pid"] for w in ws}
    with cluster.client() as c:
        assert c.status().jobs_failed == failed_before
    assert f"job {job} lost with worker {victim['worker']}" in cluster.daemon.output()


def test_stop_and_keep_with_a_lost_worker_keeps_nothing_and_runs_nothing(
        cluster: Cluster) -> None:
    """Stop-and-keep reaches a job whose worker then dies: the image died with it, so
    the job ends `cancelled` ("nothing to keep") instead of running again only to hand
    back its starting image. The worker is frozen (SIGSTOP) before the request, so it
    cannot finish first; then killed."""
    f = Follower(cluster, ENDLESS)
    f.start()
    job = f.wait_started()
    victim = busy_worker(cluster, job)
    os.kill(victim["pid"], signal.SIGSTOP)
    try:
        with cluster.client() as c:
            assert c.cancel(job, keep=True).was == "running"
    finally:
        os.kill(victim["pid"], signal.SIGKILL)
    f.join(JOIN_S)
    assert isinstance(f.outcome, ImpastoError) and f.outcome.code == CANCELLED, f.outcome
    assert "nothing to keep" in f.outcome.message
    assert [e.stage for e in f.events].count("prepare") == 1  # not run again
    cluster.wait_idle()


def test_job_lost_three_times_fails_clearly(cluster: Cluster) -> None:
    f = Follower(cluster, ENDLESS)
    f.start()
    job = f.wait_started()
    pid = None
    for _ in range(3):  # the first run and both reruns
        pid = busy_worker(cluster, job, not_pid=pid)["pid"]
        os.kill(pid, signal.SIGKILL)
    f.join(JOIN_S)
    assert isinstance(f.outcome, ImpastoError) and f.outcome.code == WORKER_LOST, f.outcome
    assert "lost with its worker 3 times" in f.outcome.message
    cluster.wait_idle()


def test_watch_folder_keeps_both_workers_busy(cluster: Cluster) -> None:
    tmp = cluster.root / "src"
    tmp.mkdir()
    for i in range(FILES):
        p = tmp / f"f{i:02}.png"
        gradient_image(64 + i, 48).save(p)
        os.replace(p, cluster.folder / "in" / p.name)  # a move-in: complete when seen
    both_busy = False
    deadline = time.monotonic() + 600
    done: list[Path] = []
    while time.monotonic() < deadline:
        ws = cluster.workers()
        both_busy |= sum(w["state"] == "busy" for w in ws) == 2
        done = [p for p in (cluster.folder / "done").rglob("*") if p.is_file()]
        failed = [p for p in (cluster.folder / "failed").rglob("*") if p.is_file()]
        assert not failed, [p.read_text() for p in failed if p.name.endswith(".txt")]
        if len(done) == FILES:
            break
        time.sleep(0.05)
    assert len(done) == FILES
    outs = sorted(p.name for p in (cluster.folder / "out" / "stripes").iterdir())
    assert outs == [f"f{i:02}.png" for i in range(FILES)]  # each file exactly once
    assert both_busy, "the folder never had both workers busy at once"
    assert not any((cluster.folder / "in").glob("*.png"))


INTRUDER = """
import sys, ray
try:
    ray.init(address=sys.argv[1], logging_level="ERROR")
    print("IN", ray.cluster_resources().get("CPU"))
except Exception as e:
    print("REFUSED", type(e).__name__, e)
"""


def test_private_ray_instance_refuses_who_lacks_its_token(cluster: Cluster) -> None:
    """Ray listens on every interface; the daemon's private instance must not run code
    for another process (another local user, another machine) that finds its port,
    not without a token, not with the one Ray keeps in ~/.ray, and only with its own."""
    import psutil  # Ray's own dependency

    [port_file] = (cluster.root / "t").glob("impasto-ray-*/r/session_latest/gcs_server_port_*")
    node = cluster.workers()[0]["node"]
    address = f"{node}:{port_file.read_text().strip()}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    tries = {"no token": {**env, "RAY_AUTH_MODE": "disabled"},
             "~/.ray's token": {**env, "RAY_AUTH_MODE": "token"},
             "a guessed token": {**env, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": "0" * 64}}
    procs = {why: subprocess.Popen([sys.executable, "-c", INTRUDER, address], env=e,
                                   stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
             for why, e in tries.items()}
    for why, p in procs.items():
        out = p.communicate(timeout=180)[0]
        assert out.startswith("REFUSED"), (why, out)
    # The same attempt with the instance's token gets in: the address was right, and
    # what kept the others out was the token alone.
    daemon = psutil.Process(cluster.daemon.proc.pid)
    token = next(p.environ()["RAY_AUTH_TOKEN"] for p in daemon.children(recursive=True)
                 if "RAY_AUTH_TOKEN" in p.environ())
    r = subprocess.run([sys.executable, "-c", INTRUDER, address], capture_output=True,
                       text=True, timeout=180,
                       env={**env, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token})
    assert r.stdout.startswith("IN 2.0"), r.stdout + r.stderr[-2000:]


def test_daemon_without_ray_says_how_to_get_it(tmp_path: Path) -> None:
    """Asking for a cluster where Ray is not importable names the extra to install."""
    from tests.helpers import run_cli

    env = make_env(tmp_path)
    blocker = tmp_path / "noray"
    (blocker / "ray").mkdir(parents=True)
    (blocker / "ray" / "__init__.py").write_text("raise ImportError('no ray here')\n")
    env["PYTHONPATH"] = str(blocker)
    r = run_cli(["serve", "--weights", "random", "--cluster", "local"], env)
    assert r.returncode != 0
    assert "impasto[cluster]" in r.stderr and "Traceback" not in r.stderr


# --- clips on the cluster -------------------------------------------------------------------
CLIP_FRAMES = 6
CLIP = {"size": 64, "scales": 1, "iterations": 30, "seed": 4, "tolerance": 0.0}


def clip_request() -> Stylize:
    from benchmarks.video import clip

    frames, _ = clip(64, CLIP_FRAMES)
    return Stylize(frames=[imagecodec.to_ref(f) for f in frames],
                   styles=[StyleRef(image=imagecodec.to_ref(stripes_image(32, 32)))],
                   options=dict(CLIP), output="rgba8")


def test_clip_lost_with_its_worker_resumes_after_the_frames_sent(
        cluster: Cluster, embedded: DaemonProcess) -> None:
    """A worker killed mid-clip: the clip goes to another worker and resumes after the
    last frame sent, from that frame (exact continuation), so every frame arrives once,
    in order, and the clip is the one an uninterrupted run makes, pixel for pixel."""
    cluster.wait_idle()
    frames: list = []
    progress: list = []
    job: list[str] = []
    outcome: list = []

    def run() -> None:
        with cluster.client(timeout=30) as c:
            outcome.append(c.stylize(clip_request(), on_frame=frames.append,
                                     on_progress=progress.append,
                                     on_accepted=lambda a: job.append(a.job)))

    t = threading.Thread(target=run, daemon=True)
    t.start()
    deadline = time.monotonic() + JOIN_S
    while len(frames) < 2 and time.monotonic() < deadline and t.is_alive():
        time.sleep(0.05)
    assert len(frames) >= 2 and job, (frames, outcome)
    victim = busy_worker(cluster, job[0])
    os.kill(victim["pid"], signal.SIGKILL)
    t.join(JOIN_S)
    assert outcome and isinstance(outcome[0], Result), outcome
    assert outcome[0].frames == CLIP_FRAMES
    assert [f.index for f in frames] == list(range(CLIP_FRAMES))  # each once, in order
    assert [p.stage for p in progress].count("prepare") == 2
    resumed_at = [p.frame for p in progress if p.stage == "prepare"][1]
    assert 2 <= resumed_at < CLIP_FRAMES
    with Client(embedded.address, timeout=60,
                keys_dir=Path(embedded.env["IMPASTO_CONFIG_DIR"]) / "keys") as c:
        want: list = []
        c.stylize(clip_request(), on_frame=want.append)
    for got, ref in zip(frames, want):
        assert same_result(imagecodec.decode(got.image), imagecodec.decode(ref.image)), got.index
    assert f"job {job[0]} lost with worker {victim['worker']}" in cluster.daemon.output()
    cluster.wait_idle()


def test_two_clips_use_both_workers(cluster: Cluster) -> None:
    """Clips are jobs: two at once run on the two workers side by side."""
    cluster.wait_idle()
    seen_busy: list[int] = []
    done: list = []

    def run() -> None:
        with cluster.client(timeout=30) as c:
            done.append(c.stylize(clip_request()))

    threads = [threading.Thread(target=run, daemon=True) for _ in range(2)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + JOIN_S
    while any(t.is_alive() for t in threads) and time.monotonic() < deadline:
        seen_busy.append(sum(w["state"] == "busy" for w in cluster.workers()))
        time.sleep(0.1)
    assert len(done) == 2 and all(r.frames == CLIP_FRAMES for r in done)
    assert max(seen_busy) == 2
