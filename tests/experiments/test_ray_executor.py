"""Sweeps on Ray, against real Ray instances started here on 127.0.0.1 (and always stopped here).

Default suite: a local Ray instance trains a tiny moons sweep (results equal to the local
executor's, a diverged run recorded once as failed, run folders written by the driver), and the
checks that need no Ray instance. Slow (run by ``.ci/run``): Ctrl-C, an unreachable address, and a
two-node cluster (``ray start --head`` plus a second ``ray start --address``, one CPU each) runs a
16-run sweep while the second node is killed; every run is recorded exactly once, with the local
executor's numbers.
"""
import os
import secrets
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from trainlab.cli import main
from trainlab.experiments.executor import LocalExecutor, RunOutcome
from trainlab.experiments.store import Store
from trainlab.experiments.sweep import SweepError, SweepInterrupted, expand_sweep, run_sweep

ray = pytest.importorskip("ray")

from trainlab.experiments.executors.ray import RayExecutor, address_problem, write_files  # noqa: E402

SRC = str(Path(__file__).resolve().parents[2] / "src")
BASE = {"name": "r", "data": {"name": "moons", "n_samples": 200, "noise": 0.2, "split": [0.7, 0.3]},
        "model": {"kind": "mlp", "hidden": [8]}, "optimizer": {"name": "sgd", "lr": 0.1},
        "train": {"epochs": 2, "batch_size": 32}, "diagnostics": None}


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def sweep(**changes):
    data = {k: (dict(v) if isinstance(v, dict) else v) for k, v in BASE.items()}
    data.update(changes)
    return data


def numbers(store: Store, sweep_id: str) -> dict:
    """``{point index: (status, final numbers, history without the epoch times)}`` of a sweep."""
    info = store.sweep(sweep_id)
    out = {}
    for p in info["points"]:
        rec = store.get_runs([p["run_id"]])[0]
        history = [{k: v for k, v in r.items() if k != "time"} for r in store.history(rec.id)]
        out[p["idx"]] = (rec.status, rec.final, history)
    return out


@pytest.fixture
def local_ray(monkeypatch):
    """A local Ray instance for one test (two CPUs, its own short temporary folder), always shut down."""
    temp = Path(f"/tmp/rt-{secrets.token_hex(4)}")  # Ray's socket paths must stay under 107 characters
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([SRC, os.environ.get("PYTHONPATH", "")]))
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    try:
        yield {"_temp_dir": str(temp)}
    finally:
        if ray.is_initialized():
            ray.shutdown()
        import shutil
        shutil.rmtree(temp, ignore_errors=True)


def test_a_local_ray_instance_gives_the_local_executors_results(tmp_path, local_ray):
    # two architectures: two batched tasks; a diverging learning rate: a failure inside a task
    plan = expand_sweep(sweep(model={"kind": "mlp", "hidden": [[8], [8, 8]]},
                              optimizer={"name": "sgd", "lr": [0.3, 1e9]}, sweep={"write_runs": True}))
    with Store(tmp_path / "local.sqlite") as st:
        run_sweep(plan, store=st, out_dir=tmp_path / "local", executor=LocalExecutor(0), verbose=False, report=False)
        expected = numbers(st, plan.id)
    seen: list[RunOutcome] = []
    executor = RayExecutor(num_cpus=1, init=local_ray)
    with Store(tmp_path / "ray.sqlite") as st:
        result = run_sweep(plan, store=st, out_dir=tmp_path / "ray", executor=executor, verbose=False,
                           report=False, on_outcome=seen.append)
        got = numbers(st, plan.id)
        assert (result.ran, result.failed) == (4, 2)
        assert not ray.is_initialized()  # the instance it started is stopped
        assert got == expected  # same tasks, same code, one thread: the same numbers to the last bit
        assert sorted(o.run_id for o in seen) == sorted(result.run_ids)  # each run recorded once
        failed = [r for r in st.runs(sweep=plan.id) if r.status == "failed"]
        assert len(failed) == 2 and all("NonFiniteLossError" in r.error for r in failed)
        assert all(r.info.get("ray_node") for r in st.runs(sweep=plan.id, status="finished"))
        # the run folders: written by the driver from the bytes the workers returned
        for r in st.runs(sweep=plan.id, status="finished"):
            assert Path(r.run_dir).parent == tmp_path / "ray" / "runs"
            mine, theirs = Path(r.run_dir), tmp_path / "local" / "runs" / Path(r.run_dir).name
            assert sorted(p.name for p in mine.iterdir()) == sorted(p.name for p in theirs.iterdir())
            assert (mine / "config.yaml").read_text() == (theirs / "config.yaml").read_text()
            assert (mine / "weights.safetensors").read_bytes() == (theirs / "weights.safetensors").read_bytes()

        # resuming: everything is in the store (the failed runs count as done), nothing is trained
        again = run_sweep(plan, store=st, executor=RayExecutor(num_cpus=1, init=local_ray), verbose=False,
                          report=False)
        assert (again.ran, again.skipped) == (0, 4)


@pytest.mark.slow
def test_ctrl_c_cancels_what_ray_holds_and_the_rerun_trains_only_the_rest(tmp_path, local_ray):
    plan = expand_sweep(sweep(optimizer={"name": "sgd", "lr": [0.05, 0.1, 0.2, 0.3]}, sweep={"batched": False}))
    seen = []

    def stop_after_one(outcome):
        seen.append(outcome.run_id)
        raise KeyboardInterrupt  # as Ctrl-C in the driver would

    with Store(tmp_path / "s.sqlite") as st:
        with pytest.raises(SweepInterrupted, match="1 of 4 runs done"):
            run_sweep(plan, store=st, executor=RayExecutor(batched=False, num_cpus=1, init=local_ray),
                      verbose=False, report=False, on_outcome=stop_after_one)
        assert not ray.is_initialized()
        assert [r.id for r in st.runs(sweep=plan.id, status="finished")] == seen
        assert len(st.runs(sweep=plan.id, status="interrupted")) == 3  # the tasks Ray still held
        trained = []
        result = run_sweep(plan, store=st, executor=RayExecutor(num_cpus=1, init=local_ray), verbose=False,
                           report=False, on_outcome=lambda o: trained.append(o.run_id))
        assert (result.skipped, result.ran) == (1, 3) and not set(trained) & set(seen)
        assert len(st.runs(sweep=plan.id, status="finished")) == 4


@pytest.mark.parametrize("bad", ["../up.txt", "/etc/x", "a/../../b", "", "a\\..\\b"])
def test_files_from_a_worker_stay_inside_the_run_folder(tmp_path, bad):
    with pytest.raises(ValueError, match="inside the run folder"):
        write_files(tmp_path / "run", {bad: b"x"})
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "run").mkdir(exist_ok=True)
    (tmp_path / "run" / "link").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(ValueError, match="outside the run folder"):
        write_files(tmp_path / "run", {"link/f.txt": b"x"})
    write_files(tmp_path / "run", {"a/b.txt": b"ok"})
    assert (tmp_path / "run" / "a" / "b.txt").read_bytes() == b"ok"
    assert list((tmp_path / "elsewhere").iterdir()) == []


def test_the_sweep_section_and_the_command_line_check_executor_and_address(tmp_path, capsys):
    assert address_problem("auto") is None and address_problem("10.0.0.5:6379") is None
    assert address_problem("ray://head:10001") is None
    for bad in ("localhost", "head:0", "head:99999", "", "http://x"):
        assert address_problem(bad) is not None, bad
    with pytest.raises(SweepError, match=r"sweep\.address: 'head:6379' applies to executor: ray"):
        expand_sweep(sweep(sweep={"address": "head:6379"}))
    with pytest.raises(SweepError, match=r"sweep\.address: 'nowhere' is not a Ray address"):
        expand_sweep(sweep(sweep={"executor": "ray", "address": "nowhere"}))
    with pytest.raises(SweepError, match=r"sweep\.executor"):
        expand_sweep(sweep(sweep={"executor": "dask"}))
    # the executor settings do not change what a sweep computes: same id
    assert expand_sweep(sweep(sweep={"executor": "ray", "address": "auto"})).id == expand_sweep(sweep()).id
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(sweep()))
    assert main(["sweep", str(path), "--executor", "local", "--address", "auto"]) == 2
    assert "--address auto: applies to --executor ray" in capsys.readouterr().err
    assert main(["sweep", str(path), "--address", "nowhere"]) == 2
    assert "is not a Ray address" in capsys.readouterr().err
    assert not (tmp_path / "store").exists()


def test_without_ray_installed_the_command_says_so_in_one_line(tmp_path, capsys, monkeypatch):
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(sweep()))
    monkeypatch.setitem(sys.modules, "ray", None)  # 'import ray' fails as where Ray is not installed
    monkeypatch.setenv("TRAINLAB_STORE", str(tmp_path / "store" / "s.sqlite"))
    assert main(["sweep", str(tmp_path / "s.yaml"), "--executor", "ray"]) == 1
    assert capsys.readouterr().err.strip().splitlines() == [
        "trainlab sweep: import of ray halted; None in sys.modules: install the package that provides it "
        "(pip install ray)"]
    assert not (tmp_path / "store").exists()  # refused before the results store was created


def test_an_unreachable_cluster_is_one_line(tmp_path, capsys, monkeypatch):
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(sweep()))
    monkeypatch.setenv("TRAINLAB_STORE", str(tmp_path / "store" / "s.sqlite"))
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert main(["sweep", str(tmp_path / "s.yaml"), "--address", f"127.0.0.1:{port}", "-q"]) == 1
    assert not ray.is_initialized()
    assert capsys.readouterr().err.strip().splitlines() == [
        f"trainlab sweep: cannot connect to the Ray cluster at 127.0.0.1:{port} (Connection refused); check that its "
        "head node runs ('ray status' there) and that this machine reaches the address, or drop --address to start "
        "a local Ray instance"]


# ---- a two-node cluster ------------------------------------------------------------------------


def _free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _processes_under(temp: Path) -> list[int]:
    """Pids of the processes whose command line names ``temp`` (this node's Ray processes)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if str(temp) in cmd:
            pids.append(int(entry.name))
    return pids


def _started_tasks(temp: Path) -> set[str]:
    """The run ids a node's workers started training (``trainlab: training ID ...`` in their logs)."""
    out = set()
    for log in temp.glob("session_*/logs/worker-*"):
        for line in log.read_text(errors="replace").splitlines():
            if line.startswith("trainlab: training "):
                out |= set(line.removeprefix("trainlab: training ").split())
    return out


class _Node:
    """One ``ray start --block`` in a session of its own: its processes share its process group."""

    def __init__(self, args: list[str], temp: Path, env: dict, log: Path):
        self.temp, self.log = temp, log
        ray_cli = str(Path(sys.executable).with_name("ray"))
        self.proc = subprocess.Popen([ray_cli, "start", "--block", "--temp-dir", str(temp), *args], env=env,
                                     stdout=open(log, "wb"), stderr=subprocess.STDOUT, start_new_session=True)

    def wait_started(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if "will now block" in self.log.read_text(errors="replace"):
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.3)
        raise RuntimeError(f"ray start did not start:\n{self.log.read_text(errors='replace')[-3000:]}")

    def kill(self) -> None:
        """SIGKILL the whole node at once, as a machine that dies would (nothing shuts down cleanly)."""
        for sig_target in [lambda: os.killpg(self.proc.pid, signal.SIGKILL)] + \
                          [lambda p=p: os.kill(p, signal.SIGKILL) for p in _processes_under(self.temp)]:
            try:
                sig_target()
            except (ProcessLookupError, PermissionError):
                pass
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)  # ray start --block stops its processes
                self.proc.wait(timeout=20)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
        for _ in range(2):  # whatever is left of this node (never another Ray instance)
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            for pid in _processes_under(self.temp):
                try:
                    os.kill(pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
            time.sleep(0.5)
        if self.proc.poll() is None:
            self.proc.wait(timeout=10)


@pytest.fixture
def two_nodes(tmp_path):
    """A head and a worker node on 127.0.0.1, one CPU each, on free ports; both stopped at the end."""
    tag = secrets.token_hex(3)
    temps = [Path(f"/tmp/rt-{tag}-h"), Path(f"/tmp/rt-{tag}-w")]
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([SRC, os.environ.get("PYTHONPATH", "")]),
           "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    env.pop("RAY_ADDRESS", None)
    ports = _free_ports(24)
    common = ["--node-ip-address", "127.0.0.1", "--num-cpus", "1", "--object-store-memory", str(100 * 1024 ** 2),
              "--disable-usage-stats"]

    def own_ports(p):  # every port a node opens, so nothing collides with another Ray on this machine
        return ["--node-manager-port", str(p[0]), "--object-manager-port", str(p[1]),
                "--dashboard-agent-listen-port", str(p[2]), "--dashboard-agent-grpc-port", str(p[3]),
                "--runtime-env-agent-port", str(p[4]), "--metrics-export-port", str(p[5]),
                "--worker-port-list", ",".join(map(str, p[6:11]))]

    gcs = ports[0]
    nodes = []
    try:
        head = _Node(["--head", "--port", str(gcs), "--ray-client-server-port", str(ports[1]),
                      "--dashboard-port", str(ports[2]), "--include-dashboard=false", *common, *own_ports(ports[3:14])],
                     temps[0], env, tmp_path / "head.log")
        nodes.append(head)
        head.wait_started()
        worker = _Node(["--address", f"127.0.0.1:{gcs}", *common, *own_ports(ports[13:24])], temps[1], env,
                       tmp_path / "worker.log")
        nodes.append(worker)
        worker.wait_started()
        yield {"address": f"127.0.0.1:{gcs}", "env": env, "head": head, "worker": worker}
    finally:
        for node in reversed(nodes):
            node.stop()
        import shutil
        for t in temps:
            shutil.rmtree(t, ignore_errors=True)


@pytest.mark.slow
def test_a_two_node_cluster_survives_losing_a_node_mid_sweep(tmp_path, two_nodes):
    # 16 runs alone (16 tasks over two one-CPU nodes), each long enough to be caught mid-training
    data = sweep(optimizer={"name": "sgd", "lr": [0.02, 0.05, 0.1, 0.2]}, sweep={"seeds": [0, 1, 2, 3]},
                 data={"name": "moons", "n_samples": 600, "noise": 0.2, "split": [0.7, 0.3]},
                 train={"epochs": 300, "batch_size": 8})  # ~1 s each on an idle core: the kill lands mid-run
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(data))
    plan = expand_sweep(data)
    assert len(plan.points) == 16
    store = tmp_path / "ray.sqlite"
    env = {**two_nodes["env"], "PYTHONPATH": SRC}
    ray_cli = [sys.executable, "-m", "trainlab", "sweep", "s.yaml", "--no-batch", "--store", str(store),
               "--address", two_nodes["address"], "-q"]
    driver = subprocess.Popen(ray_cli, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)
    try:
        deadline, done, rows, seen = time.monotonic() + 300, 0, [], None
        while time.monotonic() < deadline and driver.poll() is None:  # kill the worker node after a few runs
            if store.exists():
                try:
                    with sqlite3.connect(f"file:{store}?mode=ro", uri=True, timeout=5) as c:
                        rows = c.execute("SELECT info FROM runs WHERE status='finished'").fetchall()
                    done = len(rows)
                except sqlite3.Error:
                    rows, done = [], 0
                # both nodes have trained runs, and the worker node has just started another (a new
                # name in its log since the last look, a fraction of a run's time ago): it is killed
                # while training that one
                started = _started_tasks(two_nodes["worker"].temp)
                if (done >= 3 and len({yaml.safe_load(r[0]).get("ray_node") for r in rows}) == 2
                        and seen is not None and started - seen):
                    break
                seen = started
            time.sleep(0.2)
        assert driver.poll() is None and 3 <= done < 16, f"the sweep was not mid-way ({done} done)"
        two_nodes["worker"].kill()
        out, err = driver.communicate(timeout=600)
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait()
    assert driver.returncode == 0, err
    with Store(store) as st:
        runs = st.runs(sweep=plan.id)
        assert len(runs) == 16 and len({r.id for r in runs}) == 16
        assert all(r.status == "finished" for r in runs), [(r.id, r.status, r.error) for r in runs]
        with sqlite3.connect(store) as c:  # every point has exactly one row
            assert c.execute("SELECT COUNT(*), COUNT(DISTINCT config_hash) FROM runs").fetchone() == (16, 16)
        got = numbers(st, plan.id)
        by_node: dict = {}
        for r in runs:
            by_node.setdefault(r.info.get("ray_node"), set()).add(r.id)
        assert len(by_node) == 2
    # a run started on both nodes: the worker node died training it and Ray ran it again on the head
    # (each task's first line in its worker's log names its runs); it is still one row
    on_worker, on_head = _started_tasks(two_nodes["worker"].temp), _started_tasks(two_nodes["head"].temp)
    assert on_worker and on_worker & on_head, (on_worker, on_head)
    assert on_worker | on_head == {r.id for r in runs}
    with Store(tmp_path / "local.sqlite") as st:
        run_sweep(plan, store=st, executor=LocalExecutor(0, batched=False), verbose=False, report=False)
        assert got == numbers(st, plan.id)
