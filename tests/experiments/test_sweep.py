import math
import os
import signal
import subprocess
import sys

import pytest
import torch
import yaml
from scipy import stats

from trainlab.cli import main
from trainlab.experiments.executor import LocalExecutor
from trainlab.experiments.store import Store
from trainlab.experiments.sweep import SweepError, SweepInterrupted, expand_sweep, run_sweep


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


BASE = {"name": "t", "data": {"name": "moons", "n_samples": 200, "noise": 0.2, "split": [0.7, 0.3]},
        "model": {"kind": "mlp", "hidden": [8, 8]}, "optimizer": {"name": "sgd", "lr": 0.1},
        "train": {"epochs": 2, "batch_size": 32}, "diagnostics": None}


def sweep(**changes):
    data = {k: (dict(v) if isinstance(v, dict) else v) for k, v in BASE.items()}
    for key, value in changes.items():
        data[key] = value
    return data


# ---- expansion ---------------------------------------------------------------------------------

def test_grid_crosses_every_list_and_repeats_seeds():
    plan = expand_sweep(sweep(optimizer={"name": "sgd", "momentum": 0.9, "lr": [0.001, 0.01, 0.05, 0.1]},
                              **{"train.batch_size": [16, 32]}, sweep={"seeds": [0, 1]}))
    assert len(plan.points) == 4 * 2 * 2
    assert plan.fields == ["optimizer.lr", "train.batch_size", "seed"]
    combos = {(p.config.optimizer.kwargs["lr"], p.config.train.batch_size, p.config.seed) for p in plan.points}
    assert combos == {(lr, b, s) for lr in (0.001, 0.01, 0.05, 0.1) for b in (16, 32) for s in (0, 1)}
    first = plan.points[0]
    assert first.values == {"optimizer.lr": 0.001, "train.batch_size": 16, "seed": 0}
    assert first.config.model.kwargs["hidden"] == [8, 8] and first.config.data.split == [0.7, 0.3]
    assert first.config.optimizer.kwargs["momentum"] == 0.9
    assert len({p.hash for p in plan.points}) == 16 and len({p.config.name for p in plan.points}) == 16


def test_fields_that_hold_lists_sweep_only_with_lists_of_lists():
    # (two hidden layers each: a per-layer activation list must match the depth, checked at config time)
    plan = expand_sweep(sweep(model={"hidden": [[8, 8], [16, 8], [32, 16]], "activation": [["relu", "tanh"]]},
                              data={"name": "moons", "split": [[0.7, 0.3], [0.8, 0.2]]}))
    assert len(plan.points) == 6
    assert {tuple(p.config.model.kwargs["hidden"]) for p in plan.points} == {(8, 8), (16, 8), (32, 16)}
    assert all(p.config.model.kwargs["activation"] == ["relu", "tanh"] for p in plan.points)  # one per layer
    plan = expand_sweep(sweep(model={"hidden": [8], "activation": ["relu", "tanh"]},
                              optimizer={"name": "adam", "betas": [0.8, 0.9]}))
    assert [p.config.model.kwargs["activation"] for p in plan.points] == ["relu", "tanh"]
    assert all(p.config.optimizer.kwargs["betas"] == [0.8, 0.9] for p in plan.points)
    plan = expand_sweep(sweep(optimizer={"name": "adam", "betas": {"grid": [[0.8, 0.9], [0.9, 0.999]]}}))
    assert [p.config.optimizer.kwargs["betas"] for p in plan.points] == [[0.8, 0.9], [0.9, 0.999]]


def test_dotted_keys_overrides_and_conditional_sweeps():
    plan = expand_sweep(sweep(optimizer=[{"name": "sgd", "lr": [0.01, 0.1], "momentum": 0.9},
                                         {"name": "adam", "lr": 0.001}]),
                        overrides=["train.epochs=[1,3]"])
    assert len(plan.points) == 6
    names = [(p.config.optimizer.name, p.config.optimizer.kwargs.get("lr"), p.config.train.epochs) for p in plan.points]
    assert ("sgd", 0.1, 3) in names and ("adam", 0.001, 1) in names
    # a swept section is shown without the keys that are swept on their own
    assert plan.points[0].label() == "optimizer={name: sgd, momentum: 0.9}, train.epochs=1, optimizer.lr=0.01"
    assert plan.points[-1].label() == "optimizer={name: adam, lr: 0.001}, train.epochs=3"
    assert plan.fields == ["optimizer", "train.epochs", "optimizer.lr"]


def test_random_search_draws_reproducibly_from_its_distributions():
    data = sweep(optimizer={"name": {"grid": ["sgd", "adam"]}, "lr": {"loguniform": [1e-4, 1e-1]}},
                 model={"hidden": [8], "activation": ["relu", "tanh", "elu"]},
                 train={"epochs": {"int": [1, 3]}, "batch_size": 32},
                 sweep={"method": "random", "samples": 150, "sample_seed": 7})
    plan = expand_sweep(data)
    assert len(plan.points) == 300  # {grid:} values are crossed with the samples
    assert sum(p.config.optimizer.name == "sgd" for p in plan.points) == 150
    lrs = [p.config.optimizer.kwargs["lr"] for p in plan.points]
    assert all(1e-4 <= lr <= 1e-1 for lr in lrs)
    # log-uniform: log10(lr) is uniform on [-4, -1]
    assert stats.kstest([(math.log10(lr) + 4) / 3 for lr in lrs], "uniform").pvalue > 1e-3
    assert stats.kstest([(lr - 1e-4) / (1e-1 - 1e-4) for lr in lrs], "uniform").pvalue < 1e-6
    epochs = [p.config.train.epochs for p in plan.points]
    assert set(epochs) == {1, 2, 3}
    acts = [p.config.model.kwargs["activation"] for p in plan.points]
    assert stats.chisquare([acts.count(a) for a in ("relu", "tanh", "elu")]).pvalue > 1e-3
    again = expand_sweep(data)
    assert [p.hash for p in again.points] == [p.hash for p in plan.points] and again.id == plan.id
    other = expand_sweep({**data, "sweep": {**data["sweep"], "sample_seed": 8}})
    assert [p.hash for p in other.points] != [p.hash for p in plan.points] and other.id != plan.id


def test_every_point_is_validated_and_errors_name_the_field():
    with pytest.raises(SweepError, match=r"(?s)sweep point 1 of 2 \(optimizer.lrr=0.1\).*optimizer.lrr: not an argument"):
        expand_sweep(sweep(optimizer={"name": "sgd", "lr": 0.1, "lrr": [0.1, 0.2]}))
    with pytest.raises(SweepError, match=r"optimizer.lr: \{uniform: ...\} is a distribution; set sweep.method: random"):
        expand_sweep(sweep(optimizer={"name": "sgd", "lr": {"uniform": [0.01, 0.1]}}))
    with pytest.raises(SweepError, match=r"optimizer.lr: \{loguniform: \[0, 1\]\} needs low > 0"):
        expand_sweep(sweep(optimizer={"name": "sgd", "lr": {"loguniform": [0, 1]}}, sweep={"method": "random",
                                                                                            "samples": 2}))
    with pytest.raises(SweepError, match="sweep.samples"):
        expand_sweep(sweep(sweep={"samples": 3}))
    with pytest.raises(SweepError, match="sweep.metod: unknown field; did you mean 'method'"):
        expand_sweep(sweep(sweep={"metod": "grid"}))
    with pytest.raises(SweepError, match="seeds .* or repeats"):
        expand_sweep(sweep(sweep={"seeds": [0], "repeats": 2}))
    with pytest.raises(SweepError, match="train.batch_size: an empty list"):
        expand_sweep(sweep(**{"train.batch_size": []}))
    with pytest.raises(SweepError, match="max_runs"):
        expand_sweep(sweep(seed=list(range(30)), sweep={"max_runs": 20}))


def test_duplicates_merge_and_the_sweep_id_ignores_execution_settings():
    plan = expand_sweep(sweep(optimizer={"name": "sgd", "lr": [0.1, 0.1, 0.2]}))
    assert len(plan.points) == 2 and plan.duplicates == 1
    a = expand_sweep(sweep(optimizer={"name": "sgd", "lr": [0.1, 0.2]}, sweep={"workers": 0}))
    b = expand_sweep(sweep(optimizer={"name": "sgd", "lr": [0.1, 0.2]}, sweep={"workers": 2, "batched": False}))
    assert a.id == b.id and a.id.startswith("t-")
    plan = expand_sweep(sweep(seed=3, sweep={"repeats": 3}))
    assert [p.config.seed for p in plan.points] == [3, 4, 5]


# ---- running, resuming, reporting ----------------------------------------------------------------

def test_an_interrupted_sweep_resumes_without_rerunning_finished_runs(tmp_path):
    plan = expand_sweep(sweep(optimizer={"name": "sgd", "lr": [0.05, 0.1, 0.2]}, sweep={"seeds": [0, 1]}))
    seen = []

    def stop_after_two(outcome):
        seen.append(outcome.run_id)
        if len(seen) == 2:
            raise KeyboardInterrupt  # as Ctrl-C would, between two runs

    with Store(tmp_path / "s.sqlite") as st:
        with pytest.raises(SweepInterrupted, match="2 of 6 runs done"):
            run_sweep(plan, store=st, executor=LocalExecutor(0, batched=False), verbose=False,
                      on_outcome=stop_after_two)
        finished = {r.id: r.ended for r in st.runs(sweep=plan.id, status="finished")}
        assert set(finished) == set(seen)
        # stopped between two runs: none was in flight, the four never started stay queued
        assert len(st.runs(sweep=plan.id, status="queued")) == 4
        assert st.runs(sweep=plan.id, status=("interrupted", "running")) == []

        trained = []
        result = run_sweep(plan, store=st, executor=LocalExecutor(0), verbose=False,
                           on_outcome=lambda o: trained.append(o.run_id), report=False)
        assert (result.skipped, result.ran, result.failed) == (2, 4, 0)
        assert not set(trained) & set(seen)  # the finished runs were not trained again
        assert {r.id: r.ended for r in st.runs(sweep=plan.id, status="finished") if r.id in finished} == finished
        assert len(st.runs(sweep=plan.id, status="finished")) == 6

        again = run_sweep(plan, store=st, executor=LocalExecutor(0), verbose=False, report=False)
        assert (again.skipped, again.ran) == (6, 0)
        # the same configs under another sweep name are found by their hash too
        renamed = expand_sweep({**sweep(optimizer={"name": "sgd", "lr": [0.05, 0.1]}), "name": "other"})
        assert run_sweep(renamed, store=st, executor=LocalExecutor(0), verbose=False, report=False).ran == 0


def test_sweep_report_files(tmp_path):
    data = sweep(optimizer={"name": "sgd", "momentum": 0.9, "lr": [0.05, 0.2, 1e6]},
                 model={"hidden": [8, 8], "activation": "relu"}, **{"train.batch_size": [32, 64]},
                 sweep={"seeds": [0, 1]})
    plan = expand_sweep(data)
    with Store(tmp_path / "s.sqlite") as st:
        result = run_sweep(plan, store=st, out_dir=tmp_path / "sweep", executor=LocalExecutor(0), verbose=False)
        statuses = [r.status for r in st.runs(sweep=plan.id)]
    assert result.ran == 12 and result.failed == statuses.count("failed") >= 2  # lr 1e6 diverges
    out = tmp_path / "sweep"
    assert result.report == out / "report.html"
    names = {p.name for p in out.iterdir()}
    assert {"report.html", "curves.png", "bars.png", "heatmap-optimizer.lr-train.batch_size.png"} <= names
    for png in out.glob("*.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    html = result.report.read_text()
    assert html.count("data:image/png;base64,") == 3 and "src=\"http" not in html  # self-contained
    for text in ("Summary", "Failed runs", "NonFiniteLossError", "val_accuracy mean", "optimizer.lr",
                 "Sweep file", plan.points[0].hash[:10]):
        assert text in html, text


def test_random_search_report_scatters_the_metric_against_each_continuous_field(tmp_path):
    data = sweep(optimizer={"name": "sgd", "lr": {"loguniform": [0.01, 1e7]}},
                 model={"hidden": [8, 8], "activation": "relu",
                        "dropout": {"uniform": [0.0, 0.3]}},
                 sweep={"method": "random", "samples": 6, "sample_seed": 1})
    plan = expand_sweep(data)
    with Store(tmp_path / "s.sqlite") as st:
        result = run_sweep(plan, store=st, out_dir=tmp_path / "sweep", executor=LocalExecutor(0), verbose=False)
    names = {p.name for p in (tmp_path / "sweep").iterdir()}
    assert {"scatter-optimizer.lr.png", "scatter-model.dropout.png"} <= names  # 6 draws, not a heatmap of 6×6
    assert not any(n.startswith("heatmap") for n in names)
    html = result.report.read_text()
    assert "val_accuracy against optimizer.lr, one dot per run" in html
    if result.failed:  # lr up to 1e7 diverges: those runs are marked, not dropped silently
        assert "a red cross per diverged run" in html


def test_write_runs_writes_a_run_folder_per_run(tmp_path):
    plan = expand_sweep(sweep(optimizer={"name": "sgd", "lr": [0.05, 0.1]}, sweep={"write_runs": True}))
    result = run_sweep(plan, store=tmp_path / "s.sqlite", out_dir=tmp_path / "sw", executor=LocalExecutor(0),
                       verbose=False, report=False)
    folders = sorted((tmp_path / "sw" / "runs").iterdir())
    assert [f.name for f in folders] == sorted(result.run_ids)
    for f in folders:
        assert {"config.yaml", "metrics.json", "report.html", "weights.safetensors"} <= {p.name for p in f.iterdir()}


# ---- the command line ------------------------------------------------------------------------------

def test_cli_sweep_dry_run_then_run_then_resume(tmp_path, capsys):
    path = tmp_path / "lr.yaml"
    path.write_text(yaml.safe_dump(sweep(optimizer={"name": "sgd", "lr": [0.05, 0.1]})))
    store = tmp_path / "s.sqlite"
    assert main(["sweep", str(path), "--dry-run", "--set", "train.batch_size=[16,32]"]) == 0
    out = capsys.readouterr().out
    assert "4 runs" in out and "optimizer.lr=0.05, train.batch_size=16" in out and "batched model(s) of 2, 2" in out
    assert not store.exists()
    args = ["sweep", str(path), "--store", str(store), "--workers", "0", "--threads", "1", "--out", str(tmp_path / "o")]
    assert main(args) == 0
    captured = capsys.readouterr()
    assert "2 run(s) trained (0 failed), 0 already in the store" in captured.out
    assert "[2/2]" in captured.err and "batched x2" in captured.err
    assert main(args + ["-q"]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "o" / "report.html")
    with Store(store) as st:
        assert len(st.runs()) == 2 and len(st.sweeps()) == 1
    bad = tmp_path / "bad.yaml"
    bad.write_text("optimizer: {name: sgd, lr: {uniform: [0, 1]}}\n")
    assert main(["sweep", str(bad), "--store", str(store)]) == 2
    assert "set sweep.method: random" in capsys.readouterr().err


def test_ctrl_c_stops_the_sweep_command_and_the_next_run_resumes(tmp_path):
    path = tmp_path / "slow.yaml"
    data = sweep(optimizer={"name": "sgd", "lr": [0.01, 0.02, 0.03, 0.04, 0.05, 0.06]},
                 data={"name": "moons", "n_samples": 1000}, train={"epochs": 8, "batch_size": 8})
    path.write_text(yaml.safe_dump(data))
    store = tmp_path / "s.sqlite"
    cmd = [sys.executable, "-m", "trainlab.cli", "sweep", str(path), "--store", str(store), "--workers", "0",
           "--threads", "1", "--no-batch"]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    lines = []
    for line in proc.stderr:  # wait for the first finished run, then press Ctrl-C
        lines.append(line)
        if line.startswith("[1/6]"):
            proc.send_signal(signal.SIGINT)
            break
    rest = proc.communicate(timeout=300)[1]
    assert proc.returncode == 130, "".join(lines) + rest
    assert "interrupted" in rest and f"resume with: trainlab sweep {path} --store {store}" in rest
    with Store(store) as st:
        done = {r.id for r in st.runs(status="finished")}
        # the run in flight (if it had started) is interrupted, the ones never started stay queued
        cut, queued = len(st.runs(status="interrupted")), len(st.runs(status="queued"))
        assert 1 <= len(done) < 6 and cut <= 1 and cut + queued == 6 - len(done)
    plan = expand_sweep(data)
    with Store(store) as st:  # resume in this process: only what is missing runs
        result = run_sweep(plan, store=st, executor=LocalExecutor(0), verbose=False, report=False,
                           on_outcome=lambda o: done.isdisjoint({o.run_id}) or pytest.fail("reran " + o.run_id))
        assert result.skipped == len(done) and result.ran == 6 - len(done)


@pytest.mark.parametrize("name", ["../../evil", ".hidden", "x" * 300])
def test_a_hostile_sweep_name_gives_a_plain_visible_folder_name(cli, tmp_path, name):
    (tmp_path / "s.yaml").write_text("data: {name: moons, n_samples: 100}\noptimizer: {name: adam, lr: [0.01, 0.1]}\n"
                                     "train: {epochs: 1}\n")
    res = cli("sweep", "s.yaml", "--set", f"name={name}", "--dry-run")
    assert res.returncode == 0, res.stderr
    sweep_id = res.stdout.split()[1].rstrip(":")
    assert not sweep_id.startswith(".") and "/" not in sweep_id and len(sweep_id) <= 90
