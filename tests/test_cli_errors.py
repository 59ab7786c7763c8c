"""The command line's errors, interrupts, exit codes and start-up (docs/troubleshooting.md).

Every expected failure reaches the user as one line on stderr with its fix and exit status 1 (2 for
bad arguments, 130 for Ctrl-C); ``--debug`` adds the traceback. Each is provoked for real in a
subprocess running the ``trainlab`` entry point: a full disk (/dev/full), a file where a folder is
needed, a store file of garbage, a hidden optional package, a closed pipe, SIGINT.
"""
import errno
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = Path(sys.executable).with_name("trainlab")
COMMAND = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "trainlab"]


def _env(tmp_path, **extra):
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1",
            "TRAINLAB_STORE": str(tmp_path / "store" / "trainlab.sqlite"), **extra}


def _popen(tmp_path, *args, **kwargs):
    """The ``cli`` fixture's command and environment, as a process the test can signal."""
    return subprocess.Popen(COMMAND + [str(a) for a in args], cwd=tmp_path, env=_env(tmp_path),
                            text=True, **kwargs)


def _one_line(stderr: str) -> str:
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]


# ---------------------------------------------------------------------------------------------
# start-up: lazy imports, --help, --version


def test_import_trainlab_does_not_import_torch_yet_every_attribute_works():
    code = """
import sys
import trainlab
assert 'torch' not in sys.modules, 'import trainlab imported torch'
assert trainlab.__version__
for name in ('data', 'diagnostics', 'experiments', 'init', 'losses', 'nn', 'optim', 'schedules', 'train'):
    assert getattr(trainlab, name).__name__ == 'trainlab.' + name
import torch
assert issubclass(trainlab.optim.Adam, torch.optim.Optimizer)
assert callable(trainlab.fit) and callable(trainlab.evaluate) and callable(trainlab.nn.MLP)
assert trainlab.History and trainlab.Callback and issubclass(trainlab.NonFiniteLossError, FloatingPointError)
from trainlab import fit, optim, History
assert fit is trainlab.fit and optim is trainlab.optim
assert {'fit', 'optim', 'nn', 'data'} <= set(dir(trainlab))
try:
    trainlab.no_such_thing
except AttributeError as err:
    assert 'no_such_thing' in str(err)
else:
    raise AssertionError('unknown attribute did not raise')
"""
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr


@pytest.mark.parametrize("argv", [["--help"], ["--version"], ["run", "--help"], ["study", "--help"]])
def test_help_and_version_do_not_import_torch(argv):
    code = f"""
import sys
from trainlab.cli import main
try:
    main({argv!r})
except SystemExit:
    pass
assert 'torch' not in sys.modules
"""
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr


def test_version_prints_the_package_version(cli):
    import tomllib

    import trainlab

    res = cli("--version")
    assert res.returncode == 0
    assert res.stdout.strip() == f"trainlab {trainlab.__version__}"
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    # the version is declared once, in trainlab/__init__.py, and pyproject reads it from there
    assert "version" in project.get("dynamic", [])


# ---------------------------------------------------------------------------------------------
# expected failures: one line with the fix; --debug shows the traceback


def _store_with_a_run(path: Path) -> Path:
    """A results store holding one finished run (written directly: no training needed)."""
    from trainlab.experiments.store import Store

    with Store(path) as store:
        store.add_run("r1", {"name": "r1"}, status="running")
        store.finish_run("r1", history=[{"epoch": 1, "loss": 0.5, "val_loss": 0.6}], wall_time=1.0,
                         final={"train_loss": 0.5, "val_loss": 0.6, "val_accuracy": 0.75})
    return path


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (a device that is always full)")
def test_disk_full_is_one_line_and_debug_shows_the_traceback(tmp_path):
    store = _store_with_a_run(tmp_path / "s.sqlite")
    with open("/dev/full", "w") as full:
        res = subprocess.run(COMMAND + ["runs", "--store", store], cwd=tmp_path, env=_env(tmp_path),
                             stdout=full, stderr=subprocess.PIPE, text=True, timeout=60)
    assert res.returncode == 1
    line = _one_line(res.stderr)
    assert line.startswith("trainlab runs: no space left on the disk") and "free some space" in line

    with open("/dev/full", "w") as full:
        res = subprocess.run(COMMAND + ["runs", "--store", store, "--debug"], cwd=tmp_path, env=_env(tmp_path),
                             stdout=full, stderr=subprocess.PIPE, text=True, timeout=60)
    assert res.returncode == 1
    assert "Traceback" in res.stderr and "OSError: [Errno 28]" in res.stderr
    assert res.stderr.rstrip().splitlines()[-1] == line


def test_an_output_folder_that_cannot_be_created_is_one_line(cli, tmp_path):
    (tmp_path / "taken").write_text("a file where the run folder's parent should be")
    res = cli("run", "--epochs", "1", "--set", "data.n_samples=100", "--out", "taken/run", "-q")
    assert res.returncode == 1
    line = _one_line(res.stderr)
    assert "taken" in line and "not a folder" in line and "--out DIR" in line


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0,
                    reason="root writes into read-only folders (the messages are checked in-process below)")
def test_a_read_only_output_folder_is_one_line(cli, tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        res = cli("run", "--epochs", "1", "--set", "data.n_samples=100", "--out", "ro/run", "-q", "--no-store")
    finally:
        ro.chmod(0o755)
    assert res.returncode == 1
    line = _one_line(res.stderr)
    assert "cannot write" in line and "ro/run" in line and "permission" in line


@pytest.mark.parametrize("code, words", [
    (errno.EROFS, ["cannot write /data/runs/x", "read-only", "remount", "--out DIR"]),
    (errno.EACCES, ["cannot write /data/runs/x", "permission denied", "change its permissions"]),
    (errno.ENOSPC, ["no space left on the disk (writing /data/runs/x)", "free some space"]),
    (errno.EDQUOT, ["quota", "free some space"]),
])
def test_os_errors_name_the_path_and_the_fix(monkeypatch, capsys, code, words):
    from trainlab import cli as cli_module

    def fails(args):
        raise OSError(code, os.strerror(code), "/data/runs/x")
    monkeypatch.setattr(cli_module, "cmd_run", fails)
    assert cli_module.main(["run"]) == 1
    line = _one_line(capsys.readouterr().err)
    assert line.startswith("trainlab run: ")
    for w in words:
        assert w in line, line


def test_a_corrupt_results_store_is_one_line_naming_the_file(cli, tmp_path):
    store = tmp_path / "garbage.sqlite"
    store.write_bytes(os.urandom(4096))
    for command in (["runs"], ["compare", "some-run"]):
        res = cli(*command, env={"TRAINLAB_STORE": str(store)})
        assert res.returncode == 1, res.stderr
        line = _one_line(res.stderr)
        assert str(store) in line and "cannot be read" in line and "--store FILE" in line
    res = cli("runs", "--debug", env={"TRAINLAB_STORE": str(store)})
    assert res.returncode == 1
    assert "Traceback" in res.stderr and "sqlite3.DatabaseError" in res.stderr


def test_a_missing_optional_package_is_one_line_with_the_install_command(cli, tmp_path):
    hidden = tmp_path / "hide"
    hidden.mkdir()
    # shadows an installed tensorboard, so the test means the same whether or not it is installed
    (hidden / "tensorboard.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'tensorboard'\", name='tensorboard')\n")
    config = tmp_path / "tb.yaml"
    config.write_text(yaml.safe_dump({"data": {"name": "moons", "n_samples": 100}, "train": {"epochs": 1},
                                      "callbacks": [{"name": "tensorboard"}]}))
    env = {"PYTHONPATH": os.pathsep.join([str(hidden), os.environ.get("PYTHONPATH", "")])}
    res = cli("run", config, "-q", "--no-store", env=env)
    assert res.returncode == 1, res.stderr  # this machine lacks a package; the config itself is fine
    line = _one_line(res.stderr)
    assert "tensorboard" in line and "pip install" in line
    assert not (tmp_path / "runs").exists()  # found when the config is checked, before anything exists


def test_a_closed_output_pipe_ends_quietly_with_141(tmp_path):
    sweep = tmp_path / "grid.yaml"
    sweep.write_text(yaml.safe_dump({
        "name": "pipe", "data": {"name": "moons", "n_samples": 100}, "train": {"epochs": 1},
        "optimizer": {"name": "sgd", "lr": [0.001, 0.01, 0.1, 0.2]}, "sweep": {"method": "grid", "seeds": [0, 1]}}))
    # the reader is gone before the first line is written, as `| head -0` would be; `| head -2`
    # fails the same way at the first write after head has left
    proc = _popen(tmp_path, "sweep", sweep, "--dry-run", stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()
    err = proc.stderr.read()
    assert proc.wait(timeout=60) == 141
    assert err == ""  # no traceback, no "Exception ignored ... BrokenPipeError" at exit


@pytest.mark.parametrize("bug", [
    ZeroDivisionError("a bug"),
    ImportError("cannot import name 'nothing' from 'trainlab.nn'", name="trainlab.nn"),
    ModuleNotFoundError("No module named 'trainlab.nothing'", name="trainlab.nothing"),
])
def test_a_bug_keeps_its_traceback(monkeypatch, bug):
    from trainlab import cli as cli_module

    def buggy(args):
        raise bug
    monkeypatch.setattr(cli_module, "cmd_list", buggy)
    with pytest.raises(type(bug)):
        cli_module.main(["list"])


def test_another_missing_package_says_what_to_install(monkeypatch, capsys):
    from trainlab import cli as cli_module

    def needs(args):
        raise ModuleNotFoundError("No module named 'onnx'", name="onnx")
    monkeypatch.setattr(cli_module, "cmd_list", needs)
    assert cli_module.main(["list"]) == 1
    assert _one_line(capsys.readouterr().err) == (
        "trainlab list: No module named 'onnx': install the package that provides it (pip install onnx)")


def test_debug_is_accepted_before_and_after_the_command():
    from trainlab.cli import build_parser

    parser = build_parser()
    for argv in (["--debug", "list", "datasets"], ["list", "datasets", "--debug"], ["run", "--debug"],
                 ["--debug", "sweep", "x.yaml"]):
        assert parser.parse_args(argv).debug is True
    assert parser.parse_args(["list"]).debug is False


# ---------------------------------------------------------------------------------------------
# Ctrl-C


def test_ctrl_c_anywhere_exits_130_with_one_line(monkeypatch, capsys):
    from trainlab import cli as cli_module

    def interrupted(args):
        raise KeyboardInterrupt
    monkeypatch.setattr(cli_module, "cmd_list", interrupted)
    assert cli_module.main(["list"]) == 130
    assert _one_line(capsys.readouterr().err) == "trainlab list: interrupted"


def test_an_error_that_ctrl_c_caused_is_an_interrupt_not_a_traceback(monkeypatch, capsys):
    # Ctrl-C inside an import (torch's, at start-up) leaves a half-imported module, and the import
    # that follows fails with an AttributeError whose context is the KeyboardInterrupt
    from trainlab import cli as cli_module

    def interrupted_import(args):
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt:
            raise AttributeError("module 'sympy' has no attribute 'printing'") from None
    monkeypatch.setattr(cli_module, "cmd_list", interrupted_import)
    assert cli_module.main(["list"]) == 130
    assert _one_line(capsys.readouterr().err) == "trainlab list: interrupted"

    def chained(args):
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt:
            raise AttributeError("partially initialized module 'torch._inductor'")
    monkeypatch.setattr(cli_module, "cmd_list", chained)
    assert cli_module.main(["list"]) == 130
    capsys.readouterr()
    monkeypatch.setattr(cli_module, "cmd_run", chained)
    assert cli_module.main(["run", "--resume", "runs/a b"]) == 130
    assert _one_line(capsys.readouterr().err) == \
        "trainlab run: interrupted; resume with: trainlab run --resume 'runs/a b'"


def _interrupt_after(proc, ready, timeout=120):
    """Send SIGINT once ``ready()`` is true (polled), then return (status, stderr)."""
    deadline = time.monotonic() + timeout
    while not ready():
        assert proc.poll() is None, "the run ended before it could be interrupted"
        assert time.monotonic() < deadline, "the run never got ready"
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    return proc.returncode, err


def test_ctrl_c_during_run_exits_130_and_the_printed_command_resumes(tmp_path, cli):
    args = ["run", "--epochs", "60", "--set", "data.n_samples=300", "--set", "diagnostics=null", "--out", "runs/long"]
    proc = _popen(tmp_path, *args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    lines = []

    def second_epoch_logged():
        lines.append(proc.stderr.readline())
        return lines[-1].split()[:2] == ["epoch", "2/60"]
    status, err = _interrupt_after(proc, second_epoch_logged)
    assert status == 130, err
    line = _one_line(err)
    assert line == "trainlab run: interrupted; resume with: trainlab run --resume runs/long"

    resume = shlex.split(line.split("resume with: ", 1)[1])
    assert resume[0] == "trainlab"
    res = cli(*resume[1:], "-q")
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "runs/long"
    history = yaml.safe_load((tmp_path / "runs" / "long" / "metrics.json").read_text())
    assert len(history["history"]) == 60


def test_ctrl_c_before_the_first_checkpoint_says_to_start_again(tmp_path):
    # batch size 1 on 20,000 points: the first epoch takes seconds, so SIGINT lands inside it
    args = ["run", "--epochs", "1", "--batch-size", "1", "--set", "data.n_samples=20000", "--no-store"]
    proc = _popen(tmp_path, *args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    status, err = _interrupt_after(proc, lambda: any((tmp_path / "runs").glob("*/config.yaml")))
    assert status == 130, err
    line = _one_line(err)
    assert "no checkpoint to resume from" in line
    assert line.endswith("start again with: trainlab " + shlex.join(args))


# ---------------------------------------------------------------------------------------------
# threads


def test_default_threads_one_for_toy_data_torch_default_otherwise(monkeypatch):
    from trainlab.cli import QUICKSTART, default_threads
    from trainlab.experiments.config import parse_config

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert default_threads(parse_config(QUICKSTART)) == 1
    mnist = {**QUICKSTART, "data": {"name": "mnist"}, "model": {"kind": "cnn"}}
    assert default_threads(parse_config(mnist)) is None
    monkeypatch.setenv("OMP_NUM_THREADS", "2")  # the user's own setting wins
    assert default_threads(parse_config(QUICKSTART)) is None


def test_threads_flag_sets_torch_threads_and_refuses_zero(cli, tmp_path):
    code = ("import torch, trainlab.cli as c\n"
            "c.main(['run', '--threads', '2', '--epochs', '1', '--set', 'data.n_samples=60', '--set', 'diagnostics=null', '--no-store', '-q'])\n"
            "print('threads', torch.get_num_threads())")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         cwd=tmp_path, env=_env(tmp_path))
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip().splitlines()[-1] == "threads 2"
    for command in ("run", "study", "sweep"):
        res = cli(command, "--threads", "0")
        assert res.returncode == 2
        assert "--threads: must be at least 1, got 0" in res.stderr


# ---------------------------------------------------------------------------------------------
# runs --sort, study --list


def test_runs_sort_refuses_an_unknown_column(cli, tmp_path):
    store = str(_store_with_a_run(tmp_path / "s.sqlite"))
    res = cli("runs", "--store", store, "--sort", "val_acc")
    assert res.returncode == 2
    line = _one_line(res.stderr)
    assert line == (f"trainlab runs: --sort 'val_acc' is not a final number of the runs in {store}; "
                    "allowed: train_loss, val_accuracy, val_loss")
    res = cli("runs", "--store", store, "--sort", "val_accuracy")
    assert res.returncode == 0, res.stderr
    # a filter that matches nothing does not turn a real column into an error
    assert cli("runs", "--store", store, "--sort", "val_accuracy", "--status", "failed").returncode == 0


def _docs_runtimes() -> dict[str, tuple[str, str]]:
    """study -> (quick, full) from the table in docs/studies.md."""
    out = {}
    for row in (ROOT / "docs" / "studies.md").read_text().splitlines():
        cells = [c.strip() for c in row.strip().strip("|").split("|")]
        if len(cells) == 5 and cells[0].startswith("`") and cells[0].endswith("`"):
            out[cells[0].strip("`")] = (cells[3], cells[4])
    return out


def test_study_list_shows_the_runtimes_the_study_files_state(cli):
    from trainlab.experiments.studies import list_studies, load_study

    res = cli("study", "--list")
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0].split() == ["study", "quick", "full", "title"]
    studies = [load_study(p) for p in list_studies().values()]
    assert studies
    for study in studies:
        line = next(ln for ln in lines if ln.startswith(study.name + " "))
        quick, full = study.runtime["quick"], study.runtime["full"]
        assert f" {quick} " in line and f" {full} " in line and line.endswith(study.title)


def test_study_files_and_docs_state_the_same_runtimes():
    from trainlab.experiments.studies import list_studies, load_study

    docs = _docs_runtimes()
    files = {s.name: (s.runtime.get("quick"), s.runtime.get("full"))
             for s in (load_study(p) for p in list_studies().values())}
    assert set(docs) == set(files)
    assert docs == files
