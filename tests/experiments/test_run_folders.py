"""Run folders, paths and the results store under concurrency, interrupts and hostile names."""
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from trainlab.experiments import runner as runner_module
from trainlab.experiments import store as store_module
from trainlab.experiments.store import Store

TINY = ("data: {name: moons, n_samples: 200}\nmodel: {hidden: [8]}\noptimizer: {name: sgd, lr: 0.1}\n"
        "train: {epochs: 2, batch_size: 32}\ndiagnostics: null\n")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie nobody reaped has stopped running
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0] != "Z"
    except OSError:
        return False


def _children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[-1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


@pytest.fixture
def popen(tmp_path):
    """Start the real ``trainlab`` entry point like the ``cli`` fixture does, without waiting."""
    script = Path(sys.executable).with_name("trainlab")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "trainlab"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1",
           "TRAINLAB_STORE": str(tmp_path / "store" / "trainlab.sqlite")}
    procs = []

    def start(*args):
        proc = subprocess.Popen(command + [str(a) for a in args], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _rows(path) -> list:
    with Store(path) as st:
        return st.runs(newest_first=False)


# ---- names and paths ---------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["../../etc", "/abs/olute", "</script>", "a/b/c", ".."])
def test_a_hostile_run_name_gives_one_folder_inside_runs(tmp_path, cli, name):
    (tmp_path / "exp.yaml").write_text(f"name: {json.dumps(name)}\n" + TINY)
    res = cli("run", "exp.yaml", "-q")
    assert res.returncode == 0, res.stderr
    folder = Path(res.stdout.strip().splitlines()[-1])
    folder = folder if folder.is_absolute() else tmp_path / folder
    assert folder.resolve().parent == (tmp_path / "runs").resolve()
    assert (folder / "report.html").is_file()
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == [folder.name]


def test_slug():
    slug = runner_module.slug
    assert slug("../../etc") == "etc" and slug("</script>") == "script" and slug("/a/b") == "a-b"
    assert slug("lr 0.01, sgd") == "lr-0.01-sgd" and slug("...") == "run" and slug("") == "run"


@pytest.mark.parametrize("path", ["/tmp/elsewhere.csv", "../outside.csv", "logs/../../x.csv"])
def test_a_callback_path_outside_the_run_folder_is_refused_before_anything_exists(tmp_path, cli, path):
    victim = tmp_path / "outside.csv"
    victim.write_text("keep me\n")
    (tmp_path / "exp.yaml").write_text(TINY + f"callbacks: [{{name: csv_logger, filename: {json.dumps(path)}}}]\n")
    res = cli("run", "exp.yaml", "-q")
    assert res.returncode == 2, res.stderr
    assert "callbacks.0.filename" in res.stderr and path in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "runs").exists() and victim.read_text() == "keep me\n"
    assert not (tmp_path / "store" / "trainlab.sqlite").exists() or _rows(tmp_path / "store" / "trainlab.sqlite") == []


def test_a_callback_path_inside_the_run_folder_is_fine(tmp_path, cli):
    (tmp_path / "exp.yaml").write_text(TINY + "callbacks: [{name: csv_logger, filename: logs/./epochs.csv}]\n")
    res = cli("run", "exp.yaml", "--out", "r", "-q")
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "r" / "logs" / "epochs.csv").read_text().count("\n") == 3


def test_file_writing_callbacks_with_their_default_paths_are_fine(tmp_path, cli):
    (tmp_path / "exp.yaml").write_text(TINY + "callbacks: [{name: csv_logger}, {name: model_checkpoint}]\n")
    res = cli("run", "exp.yaml", "--out", "r", "-q")
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "r" / "log.csv").read_text().count("\n") == 3
    assert (tmp_path / "r" / "checkpoints" / "last.safetensors").is_file()


@pytest.mark.parametrize("bad", ["optimizer: {name: sgd, lr: -0.1}",
                                 "callbacks: [{name: model_checkpoint, every_n_epochs: -1}]",
                                 "data: {name: moons, n_samples: 200, split: [0.999, 0.001]}"])
def test_a_config_that_fails_to_build_leaves_no_folder_and_no_store_row(tmp_path, cli, bad):
    (tmp_path / "exp.yaml").write_text(TINY + bad + "\n")
    res = cli("run", "exp.yaml", "-q")
    assert res.returncode != 0
    assert not (tmp_path / "runs").exists()
    db = tmp_path / "store" / "trainlab.sqlite"
    assert not db.exists() or _rows(db) == []
    res = cli("run", "exp.yaml", "--out", "mine", "-q")
    assert res.returncode != 0 and not (tmp_path / "mine").exists()


def test_the_quickstart_name_follows_the_data(tmp_path, cli):
    res = cli("run", "--dataset", "line", "--epochs", "1", "-q")
    assert res.returncode == 0, res.stderr
    assert Path(res.stdout.strip().splitlines()[-1]).name.startswith("quickstart-line-")


def test_a_name_with_tex_is_drawn_as_plain_text(tmp_path, cli):
    (tmp_path / "exp.yaml").write_text('name: "$\\\\frac$ and $x^$"\n' + TINY)
    res = cli("run", "exp.yaml", "--out", "r", "-q")
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "r" / "curves.png").stat().st_size > 0 and (tmp_path / "r" / "report.html").is_file()


# ---- --out and --overwrite ---------------------------------------------------------------------

def test_out_onto_an_existing_folder_needs_overwrite(tmp_path, cli):
    (tmp_path / "exp.yaml").write_text(TINY)
    assert cli("run", "exp.yaml", "--out", "r", "-q").returncode == 0
    (tmp_path / "r" / "old-notes.txt").write_text("from before")
    res = cli("run", "exp.yaml", "--out", "r", "-q")
    assert res.returncode == 2 and "--overwrite" in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert (tmp_path / "r" / "old-notes.txt").exists()
    res = cli("run", "exp.yaml", "--out", "r", "-q", "--overwrite")
    assert res.returncode == 0, res.stderr
    assert not (tmp_path / "r" / "old-notes.txt").exists() and (tmp_path / "r" / "report.html").is_file()
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "thesis.tex").write_text("precious")
    res = cli("run", "exp.yaml", "--out", "notes", "-q", "--overwrite")
    assert res.returncode == 2 and "not a run folder" in res.stderr
    assert (tmp_path / "notes" / "thesis.tex").read_text() == "precious"
    (tmp_path / "empty").mkdir()
    assert cli("run", "exp.yaml", "--out", "empty", "-q").returncode == 0
    res = cli("run", "exp.yaml", "--overwrite", "-q")
    assert res.returncode == 2 and "--out" in res.stderr and not (tmp_path / "runs").exists()


def test_overwrite_replaces_the_old_runs_store_row_too(tmp_path, cli):
    (tmp_path / "exp.yaml").write_text(TINY)
    assert cli("run", "exp.yaml", "--out", "r", "-q").returncode == 0
    res = cli("run", "exp.yaml", "--out", "r", "-q", "--overwrite", "--epochs", "3")
    assert res.returncode == 0, res.stderr
    # the old row described files that are gone: one row for the folder, the new run's
    (row,) = _rows(tmp_path / "store" / "trainlab.sqlite")
    assert row.id == "r" and row.status == "finished"
    with Store(tmp_path / "store" / "trainlab.sqlite") as st:
        assert len(st.history(row.id)) == 3


def test_run_files_honour_the_umask(tmp_path, cli):
    (tmp_path / "exp.yaml").write_text(TINY)
    old = os.umask(0o022)
    try:
        res = cli("run", "exp.yaml", "--out", "r", "-q")
    finally:
        os.umask(old)
    assert res.returncode == 0, res.stderr
    for name in ("config.yaml", "metrics.csv", "metrics.json", "weights.safetensors", "report.html", "curves.png",
                 "checkpoints/last.safetensors"):
        assert (tmp_path / "r" / name).stat().st_mode & 0o777 == 0o644, name


# ---- concurrency -------------------------------------------------------------------------------

FOLDERS = textwrap.dedent("""
    import sys, time
    from trainlab.experiments.runner import fresh_dir
    while time.time() < float(sys.argv[2]):
        time.sleep(0.002)
    print(fresh_dir("same-name", sys.argv[1]))
""")


def test_runs_started_in_the_same_second_get_their_own_folders(tmp_path):
    start = time.time() + 1.5
    procs = [subprocess.Popen([sys.executable, "-c", FOLDERS, str(tmp_path / "runs"), str(start)],
                              stdout=subprocess.PIPE, text=True) for _ in range(8)]
    paths = [p.communicate(timeout=120)[0].strip() for p in procs]
    assert len(set(paths)) == 8 and len(list((tmp_path / "runs").iterdir())) == 8


RECORDER = textwrap.dedent("""
    import importlib.util, sys, time
    spec = importlib.util.spec_from_file_location("store_only", sys.argv[1])
    mod = sys.modules["store_only"] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    n = int(sys.argv[3])
    while time.time() < float(sys.argv[4]):
        time.sleep(0.002)

    class Result:
        history = type("H", (), {"records": staticmethod(lambda: [{"epoch": 0, "loss": 1.0}])})()
        final, wall_time, run_dir = {"val_accuracy": 0.5}, 0.1, None

    for i in range(n):
        with mod.RunRecording(sys.argv[2], {"name": "same", "seed": i}, "runs/same-20260101-000000") as rec:
            rec.finish(Result())
""")


def test_concurrent_recordings_lose_no_row(tmp_path):
    path = tmp_path / "s.sqlite"
    Store(path).close()
    start = time.time() + 1.5
    procs = [subprocess.Popen([sys.executable, "-c", RECORDER, store_module.__file__, str(path), "30", str(start)],
                              stderr=subprocess.PIPE, text=True) for _ in range(4)]
    errors = [p.communicate(timeout=240)[1] for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, errors
    rows = _rows(path)
    assert len(rows) == 120 and len({r.id for r in rows}) == 120
    assert all(r.status == "finished" for r in rows)
    assert sorted(r.config["seed"] for r in rows) == sorted(list(range(30)) * 4)


def test_new_run_never_overwrites(tmp_path):
    with Store(tmp_path / "s.sqlite") as st:
        ids = [st.new_run("r", {"name": "r", "seed": i}) for i in range(3)]
        assert ids == ["r", "r-2", "r-3"] and [st.get_run(i).config["seed"] for i in ids] == [0, 1, 2]


# ---- stale rows ----------------------------------------------------------------------------------

def test_opening_the_store_marks_rows_of_dead_processes_interrupted(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    path = tmp_path / "s.sqlite"
    with Store(path) as st:
        for rid in ("dead", "alive", "far-old", "far-fresh", "done"):
            st.add_run(rid, {"name": rid}, status="running")
        st.finish_run("done", history=[], final={}, wall_time=1.0)
        c = st._conn
        c.execute("UPDATE runs SET pid=? WHERE id='dead'", (dead.pid,))
        c.execute("UPDATE runs SET host='elsewhere', heartbeat=? WHERE id='far-old'", (time.time() - 2 * 86400,))
        c.execute("UPDATE runs SET host='elsewhere', heartbeat=? WHERE id='far-fresh'", (time.time() - 60,))
    with Store(path) as st:  # this process is alive: its own rows stay running
        status = {r.id: r.status for r in st.runs()}
    assert status == {"dead": "interrupted", "alive": "running", "far-old": "interrupted",
                      "far-fresh": "running", "done": "finished"}


def test_a_killed_run_is_interrupted_when_the_store_is_next_opened(tmp_path, popen):
    (tmp_path / "exp.yaml").write_text(TINY.replace("epochs: 2", "epochs: 5000"))
    db = tmp_path / "store" / "trainlab.sqlite"
    proc = popen("run", "exp.yaml", "--out", "r", "-q")
    deadline = time.time() + 120
    beat = None
    while time.time() < deadline and proc.poll() is None:
        if db.exists():
            with Store(db) as st:
                rows = st.runs()
                if rows and rows[0].status == "running":
                    beat = st._conn.execute("SELECT heartbeat, started FROM runs").fetchone()
                    if beat["heartbeat"] > beat["started"]:  # an epoch has ended: heartbeats work
                        break
        time.sleep(0.2)
    assert beat is not None and beat["heartbeat"] > beat["started"], proc.stderr.read() if proc.poll() else ""
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    (row,) = _rows(db)
    assert row.status == "interrupted" and "stopped" in row.error


# ---- interrupts ------------------------------------------------------------------------------------

SWEEP = ("name: stop\ndata: {name: moons, n_samples: 400}\nmodel: {hidden: [[8], [9], [10], [11], [12], [13]]}\n"
         "optimizer: {name: sgd, lr: 0.1}\ntrain: {epochs: 60, batch_size: 16}\ndiagnostics: null\n")


def _wait_for(proc, pattern: str, timeout: float = 180) -> str:
    """Read stderr lines until one contains ``pattern``; returns what was read."""
    seen = []
    deadline = time.time() + timeout
    while time.time() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        seen.append(line)
        if pattern in line:
            return "".join(seen)
    raise AssertionError(f"never saw {pattern!r}:\n{''.join(seen)}")


def test_ctrl_c_in_a_sweep_with_workers_stops_them_and_resumes(tmp_path, popen, cli):
    (tmp_path / "sweep.yaml").write_text(SWEEP)
    db = tmp_path / "store" / "trainlab.sqlite"
    proc = popen("sweep", "sweep.yaml", "--workers", "2", "--threads", "1", "--no-batch")
    _wait_for(proc, "[1/6]")
    workers = _children(proc.pid)
    assert workers
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "resume with: trainlab sweep sweep.yaml" in err
    time.sleep(0.5)
    assert [pid for pid in workers if _alive(pid)] == []
    before = {r.id: r for r in _rows(db)}
    statuses = sorted(r.status for r in before.values())
    assert len(before) == 6 and "running" not in statuses and statuses.count("finished") >= 1
    assert statuses.count("interrupted") >= 1  # the ones in flight; any never started stay queued
    assert set(statuses) <= {"finished", "interrupted", "queued"}
    command = err.split("resume with: ", 1)[1].split(" (finished")[0].split()
    assert command[:2] == ["trainlab", "sweep"]
    res = cli(*command[1:], timeout=400)
    assert res.returncode == 0, res.stderr
    finished = [rid for rid, r in before.items() if r.status == "finished"]
    assert f"{6 - len(finished)} run(s) trained (0 failed), {len(finished)} already in the store" in res.stdout
    after = {r.id: r for r in _rows(db)}
    assert all(r.status == "finished" for r in after.values())
    assert all(after[rid].ended == before[rid].ended for rid in finished)  # not trained again


def test_a_second_ctrl_c_exits_at_once(tmp_path, popen):
    (tmp_path / "sweep.yaml").write_text(SWEEP)
    proc = popen("sweep", "sweep.yaml", "--workers", "2", "--threads", "1", "--no-batch")
    _wait_for(proc, "sweep stop-")
    deadline = time.time() + 120
    while len(_children(proc.pid)) < 2 and time.time() < deadline:
        time.sleep(0.1)
    time.sleep(1.0)
    workers = _children(proc.pid)
    proc.send_signal(signal.SIGINT)
    time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    t0 = time.time()
    _, err = proc.communicate(timeout=30)
    # -SIGINT: the second press landed while the interpreter was already exiting (signal handlers
    # reset); a shell shows that as 130 too
    assert time.time() - t0 < 10 and proc.returncode in (130, -signal.SIGINT), err
    assert "Traceback" not in err
    time.sleep(0.5)
    assert [pid for pid in workers if _alive(pid)] == []


# ---- resume reaches the store ------------------------------------------------------------------------

def test_a_resumed_run_reaches_the_store_and_may_be_extended(tmp_path, popen, cli):
    # epochs of ~0.1 s: long enough to be interrupted after the first one
    (tmp_path / "exp.yaml").write_text(TINY.replace("epochs: 2, batch_size: 32", "epochs: 40, batch_size: 4")
                                       .replace("n_samples: 200", "n_samples: 1000"))
    db = tmp_path / "store" / "trainlab.sqlite"
    proc = popen("run", "exp.yaml", "--out", "r", "-q")
    deadline = time.time() + 120
    while not (tmp_path / "r" / "checkpoints" / "last.safetensors").exists() and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "trainlab run --resume r" in err and "Traceback" not in err
    (row,) = _rows(db)
    assert row.status == "interrupted"
    # the resumed run is the same row, ends finished with the whole history
    res = cli("run", "--resume", "r", "--epochs", "40", "-q", timeout=400)
    assert res.returncode == 0, res.stderr
    (row,) = _rows(db)
    assert row.status == "finished"
    with Store(db) as st:
        assert len(st.history(row.id)) == 40
    res = cli("compare", row.id)
    assert res.returncode == 0 and any(line.split()[:2] == ["epochs", "40"] for line in res.stdout.splitlines())
    # more epochs extend the run, and the difference is said
    res = cli("run", "--resume", "r", "--epochs", "42", "-q")
    assert res.returncode == 0, res.stderr
    assert "train.epochs: 40 → 42" in res.stderr
    (row,) = _rows(db)
    with Store(db) as st:
        assert row.status == "finished" and len(st.history(row.id)) == 42 and row.config["train"]["epochs"] == 42
    assert len(json.loads((tmp_path / "r" / "metrics.json").read_text())["history"]) == 42
    res = cli("run", "--resume", "r", "--epochs", "10", "-q")
    assert res.returncode == 2 and "train.epochs: 42 → 10" in res.stderr


def test_ctrl_c_right_after_the_config_is_written_names_the_folder(tmp_path, monkeypatch):
    """A SIGINT between the folder's config.yaml and the start of training (once a race of the
    CLI's Ctrl-C test) still reports the folder, as not resumable."""
    from trainlab.experiments.config import parse_config

    written = runner_module.atomic_write_bytes

    def write_then_interrupt(path, data):
        written(path, data)
        if Path(path).name == "config.yaml":
            raise KeyboardInterrupt

    monkeypatch.setattr(runner_module, "atomic_write_bytes", write_then_interrupt)
    cfg = parse_config({"name": "ctrl-c", "data": {"name": "moons", "n_samples": 100}, "train": {"epochs": 1}})
    with pytest.raises(runner_module.RunInterrupted) as caught:
        runner_module.run_experiment(cfg, run_dir=tmp_path / "run", verbose=False, store=False)
    assert caught.value.run_dir == tmp_path / "run" and caught.value.resumable is False
    assert (tmp_path / "run" / "config.yaml").is_file()
