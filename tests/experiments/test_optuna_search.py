"""Optuna searches (``sweep: {method: optuna}``): space, ask-and-tell through executors, pruning, resume."""
import math
import os
import statistics

import pytest
import torch
import yaml

optuna = pytest.importorskip("optuna")

from trainlab.cli import main  # noqa: E402
from trainlab.experiments.executor import Executor, LocalExecutor, RunOutcome  # noqa: E402
from trainlab.experiments.search import JOURNAL, load_study, search_space, suggest_config  # noqa: E402
from trainlab.experiments.store import Store  # noqa: E402
from trainlab.experiments.sweep import SweepError, SweepInterrupted, expand_sweep, run_sweep  # noqa: E402


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


BASE = {"name": "s", "data": {"name": "moons", "n_samples": 200, "noise": 0.2, "split": [0.7, 0.3]},
        "model": {"kind": "mlp", "hidden": [8, 8]}, "optimizer": {"name": "sgd", "lr": {"loguniform": [1e-4, 1.0]}},
        "train": {"epochs": 3, "batch_size": 32}, "diagnostics": None}


@pytest.fixture
def fast_dir(tmp_path):
    """A folder on a RAM file system where there is one: the journal syncs every write to disk, and the
    TPE-vs-random test writes about a thousand of them."""
    import shutil
    import tempfile
    from pathlib import Path

    shm = Path("/dev/shm")
    if not (shm.is_dir() and os.access(shm, os.W_OK)):
        yield tmp_path
        return
    folder = Path(tempfile.mkdtemp(prefix="trainlab-test-", dir=shm))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def search(sweep, **changes):
    data = {**BASE, **changes}
    data["sweep"] = {"method": "optuna", **sweep}
    return data


def trials(sweep_folder, sweep_id):
    return load_study(sweep_folder / JOURNAL, sweep_id).get_trials(deepcopy=False)


# ---- the space --------------------------------------------------------------------------------------

def test_markers_are_optuna_distributions_and_choices_are_define_by_run():
    template = {"optimizer": [{"name": "sgd", "lr": {"loguniform": [1e-3, 1.0]}, "momentum": {"uniform": [0, 0.9]}},
                              {"name": "adam", "lr": {"loguniform": [1e-4, 1e-2]}}],
                "train": {"batch_size": {"int": [16, 64]}, "epochs": 3}, "seed": {"choice": [0, 1]}}
    assert [p.name for p in search_space(template)] == [
        "optimizer", "train.batch_size", "seed", "optimizer.lr[sgd]", "optimizer.momentum[sgd]", "optimizer.lr[adam]"]
    study = optuna.create_study()
    trial = study.ask()
    data, values = suggest_config(optuna.trial.FixedTrial({"optimizer": "adam", "optimizer.lr[adam]": 0.003,
                                                           "train.batch_size": 20, "seed": 1}), template)
    assert data["optimizer"] == {"name": "adam", "lr": 0.003} and data["train"]["batch_size"] == 20
    assert values == {"optimizer": {"name": "adam", "lr": 0.003}, "train.batch_size": 20, "seed": 1,
                      "optimizer.lr": 0.003}
    data, _ = suggest_config(trial, template)
    dists = trial.distributions
    assert isinstance(dists["train.batch_size"], optuna.distributions.IntDistribution)
    assert dists["optimizer"].choices == ("sgd", "adam")
    branch = data["optimizer"]["name"]
    # only the chosen branch's markers were suggested, with its bounds and a log scale
    assert {k for k in dists if k.startswith("optimizer.lr")} == {f"optimizer.lr[{branch}]"}
    lr = dists[f"optimizer.lr[{branch}]"]
    assert lr.log and (lr.low, lr.high) == ((1e-3, 1.0) if branch == "sgd" else (1e-4, 1e-2))
    assert ("optimizer.momentum[sgd]" in dists) == (branch == "sgd")


@pytest.mark.parametrize("sweep, changes, match", [
    ({}, {}, r"sweep\.samples: method optuna needs samples"),
    ({"samples": 4, "sampler": "bayes"}, {}, r"sweep\.sampler: unknown sampler 'bayes'; one of tpe, random, cmaes"),
    ({"samples": 4, "pruner": "asha"}, {}, r"sweep\.pruner: unknown pruner 'asha'; one of none, median, hyperband"),
    ({"samples": 4, "pruner": {"n_startup_trials": 1}}, {}, r"sweep\.pruner: a mapping needs name: none \| median"),
    ({"samples": 4, "pruner": {"name": "median", "n_startup": 2}}, {},
     r"sweep\.pruner\.n_startup: not an argument of optuna's MedianPruner; allowed: n_startup_trials, n_warmup_steps"),
    ({"samples": 4, "pruner": {"name": "median", "n_startup_trials": -1}}, {},
     r"sweep\.pruner: optuna's MedianPruner\(n_startup_trials=-1\) refuses it: "),
    ({"samples": 4, "sampler": {"name": "tpe", "seed": 1}}, {}, r"sweep\.sampler\.seed: the sampler's seed is sweep\.seed"),
    ({"samples": 4, "seeds": [0, 1]}, {}, r"sweep\.seeds: an optuna trial is one run"),
    ({"samples": 4}, {"optimizer": {"name": {"grid": ["sgd", "adam"]}, "lr": 0.1}}, r"optimizer\.name: \{grid"),
    ({"samples": 4, "sampler": "cmaes"}, {"optimizer": {"name": ["sgd", "adam"], "lr": 0.1}},
     r"sweep\.sampler: cmaes proposes numbers only, but optimizer\.name is a choice"),
    ({"samples": 4}, {"model": {"kind": "mlp", "hidden": [{"int": [0, 8]}]}}, r"the search space at model\.hidden"),
])
def test_a_bad_search_is_refused_before_anything_runs(sweep, changes, match):
    with pytest.raises(SweepError, match=match):
        expand_sweep(search(sweep, **changes))


def test_optuna_fields_belong_to_optuna_and_grid_ids_do_not_change():
    with pytest.raises(SweepError, match=r"sweep\.sampler: applies to method: optuna"):
        expand_sweep({**BASE, "optimizer": {"name": "sgd", "lr": [0.1, 0.2]}, "sweep": {"sampler": "tpe"}})
    grid = expand_sweep({**BASE, "optimizer": {"name": "sgd", "lr": [0.1, 0.2]}})
    assert grid.id == "s-705d4556"  # the id a grid sweep had before the optuna fields existed
    # raising samples continues the same study; the sampler or its seed make another
    assert expand_sweep(search({"samples": 4})).id == expand_sweep(search({"samples": 9})).id
    assert expand_sweep(search({"samples": 4})).id != expand_sweep(search({"samples": 4, "seed": 1})).id


# ---- searching ----------------------------------------------------------------------------------------

class Formula(Executor):
    """Trains nothing: val_loss = (log10 lr + 2)² + 4 (momentum - 0.9)² + (log2 batch - 5)² / 4.

    Its minimum, 0, is at lr 0.01, momentum 0.9, batch size 32.
    """

    workers = 1

    def __init__(self):
        self.specs = []

    def submit(self, specs):
        self.specs += specs

    def results(self):
        specs, self.specs = self.specs, []
        for s in specs:
            opt, batch = s.config["optimizer"], s.config["train"]["batch_size"]
            v = (math.log10(opt["lr"]) + 2) ** 2 + 4 * (opt["momentum"] - 0.9) ** 2 + (math.log2(batch) - 5) ** 2 / 4
            yield RunOutcome(s.run_id, "finished", [{"epoch": 1, "val_loss": v}], {"val_loss": v})


def test_a_search_keeps_at_most_workers_trials_in_flight(tmp_path):
    rounds = []

    class Counting(Formula):
        workers = 3

        def results(self):
            rounds.append(len(self.specs))
            yield from super().results()

    space = {"optimizer": {"name": "sgd", "lr": {"loguniform": [1e-5, 1.0]}, "momentum": {"uniform": [0.0, 0.99]}},
             "train": {"epochs": 3, "batch_size": {"int": [8, 256]}}}
    plan = expand_sweep(search({"samples": 7, "metric": "val_loss"}, **space))
    with Store(tmp_path / "s.sqlite") as st:
        r = run_sweep(plan, store=st, executor=Counting(), verbose=False, report=False)
    assert rounds == [3, 3, 1] and r.ran == 7
    assert len(trials(r.out_dir, r.id)) == 7


def test_tpe_beats_random_search_at_the_same_budget(fast_dir):
    space = {"optimizer": {"name": "sgd", "lr": {"loguniform": [1e-5, 1.0]}, "momentum": {"uniform": [0.0, 0.99]}},
             "train": {"epochs": 3, "batch_size": {"int": [8, 256]}}}
    best = {}
    for sampler in ("tpe", "random"):
        for seed in (0, 1, 2):
            plan = expand_sweep(search({"samples": 20, "sampler": sampler, "seed": seed, "metric": "val_loss"},
                                       **space))
            # a store each: TPE starts with the random sampler's first draws, which one store would reuse
            with Store(fast_dir / f"{sampler}{seed}" / "s.sqlite") as st:
                r = run_sweep(plan, store=st, executor=Formula(), verbose=False, report=False)
            assert r.ran == 20
            best[sampler, seed] = min(t.value for t in trials(r.out_dir, r.id))
    tpe = statistics.mean(best["tpe", s] for s in (0, 1, 2))
    rnd = statistics.mean(best["random", s] for s in (0, 1, 2))
    # TPE's first 10 trials are random draws; the 10 it models must bring it well below random search
    assert tpe < 0.5 * rnd, best


def test_a_search_is_reproducible_from_its_seed_with_one_worker(tmp_path):
    data = search({"samples": 5, "seed": 3}, optimizer={"name": "sgd", "lr": {"loguniform": [1e-3, 1.0]},
                                                       "momentum": [0.0, 0.9]})
    got = []
    for i in range(2):
        with Store(tmp_path / str(i) / "s.sqlite") as st:
            r = run_sweep(expand_sweep(data), store=st, executor=LocalExecutor(0), verbose=False, report=False)
            got.append([(t.params, t.value) for t in trials(r.out_dir, r.id)])
            assert len(st.runs(sweep=r.id, status="finished")) == 5
    assert got[0] == got[1]
    assert len({t[1] for t in got[0]}) > 1  # trained runs, not one value five times
    # a finished search is not redone; raising samples continues the study
    with Store(tmp_path / "0" / "s.sqlite") as st:
        again = run_sweep(expand_sweep(data), store=st, executor=LocalExecutor(0), verbose=False, report=False)
        assert (again.ran, again.skipped) == (0, 5)
        more = run_sweep(expand_sweep({**data, "sweep": {**data["sweep"], "samples": 7}}), store=st,
                         executor=LocalExecutor(0), verbose=False, report=False)
        assert (more.ran, more.skipped) == (2, 5)
        assert [(t.params, t.value) for t in trials(more.out_dir, more.id)][:5] == got[0]


def test_pruning_stops_trials_early_and_records_them_pruned(fast_dir):
    # Optuna's MedianPruner, judging from the third trial on (its default waits for 5)
    data = search({"samples": 6, "pruner": {"name": "median", "n_startup_trials": 2}, "seed": 0,
                   "metric": "val_loss"}, train={"epochs": 5})
    with Store(fast_dir / "s.sqlite") as st:
        r = run_sweep(expand_sweep(data), store=st, executor=LocalExecutor(0), verbose=False)
        runs = st.runs(sweep=r.id)
        pruned = [rec for rec in runs if rec.status == "pruned"]
        assert len(runs) == 6 and pruned
        for rec in pruned:  # stopped after the epoch the pruner named, and only that many recorded
            assert 1 <= rec.info["pruned_epoch"] < 5
            assert len(st.history(rec.id)) == rec.info["pruned_epoch"]
        assert sum(len(st.history(rec.id)) for rec in runs) < 6 * 5  # epochs saved
        study_trials = trials(r.out_dir, r.id)
        states = [t.state for t in study_trials]
        assert states.count(optuna.trial.TrialState.PRUNED) == len(pruned)
        # every epoch of every trial was reported to the study, from the process that trained it
        for t in study_trials:
            rec = st.get_run(t.user_attrs["run_id"])
            assert t.intermediate_values == {i + 1: pytest.approx(h["val_loss"])
                                             for i, h in enumerate(st.history(rec.id))}
        html = r.report.read_text()
        assert "pruned after epoch" in html and "<h2>Search</h2>" in html
        for caption in ("val_loss per trial and the best so far", "parameter importances", "against each parameter"):
            assert caption in html
        assert all((r.out_dir / f"search-{n}.png").is_file() for n in ("history", "importances", "slices"))


def test_without_the_journal_in_the_worker_the_sweep_reports_the_epochs(tmp_path):
    class Remote(LocalExecutor):  # a worker on another machine: the sweep folder's path means nothing there
        def submit(self, specs):
            for s in specs:
                s.pruning = {**s.pruning, "journal": str(tmp_path / "elsewhere" / JOURNAL)}
            super().submit(specs)

    data = search({"samples": 3, "pruner": "median", "metric": "val_loss"}, train={"epochs": 2})
    with Store(tmp_path / "s.sqlite") as st:
        r = run_sweep(expand_sweep(data), store=st, executor=Remote(0), verbose=False, report=False)
        for t in trials(r.out_dir, r.id):
            rec = st.get_run(t.user_attrs["run_id"])
            assert rec.status == "finished" and "not reachable" in rec.info["pruning"]
            assert t.intermediate_values == {i + 1: pytest.approx(h["val_loss"])
                                             for i, h in enumerate(st.history(rec.id))}
    assert not (tmp_path / "elsewhere").exists()  # no stray journal made where the worker looked


@pytest.mark.parametrize("sampler, pruner", [("cmaes", "hyperband"), ("random", "median"), ("tpe", "none")])
def test_every_sampler_and_pruner_runs(tmp_path, monkeypatch, sampler, pruner):
    from trainlab.experiments import search as search_module

    built = []
    for name in ("build_sampler", "build_pruner"):
        real = getattr(search_module, name)
        monkeypatch.setattr(search_module, name, lambda *a, real=real: built.append(real(*a)) or built[-1])
    space = {"optimizer": {"name": "sgd", "lr": {"loguniform": [1e-5, 1.0]}, "momentum": {"uniform": [0.0, 0.99]}},
             "train": {"epochs": 3, "batch_size": {"int": [8, 256]}}}
    plan = expand_sweep(search({"samples": 4, "sampler": sampler, "pruner": pruner, "metric": "val_loss"}, **space))
    with Store(tmp_path / "s.sqlite") as st:
        r = run_sweep(plan, store=st, executor=Formula(), verbose=False, report=False)
    study = load_study(r.out_dir / JOURNAL, r.id)
    assert len(study.trials) == 4 and all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
    kinds = [type(x).__name__ for x in built[-2:]]  # those the search ran with (the check builds them too)
    assert kinds == [{"cmaes": "CmaEsSampler", "random": "RandomSampler", "tpe": "TPESampler"}[sampler],
                     {"hyperband": "HyperbandPruner", "median": "MedianPruner", "none": "NopPruner"}[pruner]]
    if pruner == "hyperband":  # the resource is the epoch
        assert built[-1]._max_resource == 3


def test_an_interrupted_search_resumes_with_exactly_samples_trials(tmp_path):
    data = search({"samples": 6, "seed": 0})
    plan = expand_sweep(data)

    class CtrlC(LocalExecutor):  # Ctrl-C while the fourth trial is being trained
        seen = 0

        def results(self):
            for o in super().results():
                CtrlC.seen += 1
                if CtrlC.seen == 4:
                    raise KeyboardInterrupt
                yield o

    with Store(tmp_path / "s.sqlite") as st:
        with pytest.raises(SweepInterrupted, match="3 of 6 runs done"):
            run_sweep(plan, store=st, executor=CtrlC(0), verbose=False, report=False)
        first = {rec.id: rec.ended for rec in st.runs(sweep=plan.id, status="finished")}
        assert len(first) == 3 and len(st.runs(sweep=plan.id, status="interrupted")) == 1
        folder = tmp_path / "sweeps" / plan.id
        # a search killed outright leaves its trial running in the journal: the resume fails it too
        study = load_study(folder / JOURNAL, plan.id)
        study.ask()
        # ... unless its run had been recorded in the store (killed between recording and telling)
        told_late = study.ask()
        told_late.set_user_attr("run_id", "recorded")
        told_late.set_user_attr("values", {"optimizer.lr": 0.5})
        config = st.get_run(next(iter(first))).config
        st.add_run("recorded", {**config, "seed": 99}, status="queued", info={"sweep": plan.id})
        st.finish_run("recorded", history=[{"epoch": 1, "val_accuracy": 0.75}], final={"val_accuracy": 0.75},
                      wall_time=0.1)

        trained = []
        r = run_sweep(plan, store=st, executor=LocalExecutor(0), verbose=False, report=False,
                      on_outcome=lambda o: trained.append(o.run_id))
        assert (r.ran, r.skipped) == (2, 4) and not set(trained) & set(first)
        runs = st.runs(sweep=plan.id)
        assert len(runs) == 6 and {rec.status for rec in runs} == {"finished"}  # the interrupted row is gone
        assert {rec.id: rec.ended for rec in runs if rec.id in first} == first  # not trained again
        study_trials = trials(folder, plan.id)
        abandoned = [t.number for t in study_trials if t.user_attrs.get("interrupted")]
        assert abandoned == [3, 4] and all(t.state.is_finished() for t in study_trials)
        assert study_trials[5].value == 0.75  # told from its store row
        assert [p["idx"] for p in st.sweep(plan.id)["points"]] == [0, 1, 2, 5, 6, 7]


def test_cli_search_dry_run_and_a_missing_optuna(tmp_path, monkeypatch, capsys):
    path = tmp_path / "search.yaml"
    path.write_text(yaml.safe_dump(search({"samples": 3, "pruner": "hyperband"})))
    assert main(["sweep", str(path), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "optuna search, 3 trials (tpe sampler, seed 0, pruner hyperband)" in out
    assert "optimizer.lr ~ loguniform[0.0001, 1]" in out
    monkeypatch.setitem(__import__("sys").modules, "optuna", None)
    assert main(["sweep", str(path), "--dry-run"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["trainlab sweep: sweep method optuna needs the optuna package: pip install 'trainlab[optuna]'"]


@pytest.mark.slow
def test_ctrl_c_stops_a_search_with_worker_processes_and_the_command_resumes_it(tmp_path):
    import signal
    import subprocess
    import sys

    path = tmp_path / "search.yaml"
    path.write_text(yaml.safe_dump(search({"samples": 8, "pruner": "median", "metric": "val_loss"},
                                          train={"epochs": 6, "batch_size": 16})))
    store = tmp_path / "s.sqlite"
    cmd = [sys.executable, "-m", "trainlab.cli", "sweep", str(path), "--store", str(store), "--workers", "2",
           "--threads", "1"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
    lines = []
    for line in proc.stderr:  # two trials told, then Ctrl-C
        lines.append(line)
        if line.startswith("[2/8]"):
            proc.send_signal(signal.SIGINT)
            break
    rest = proc.communicate(timeout=300)[1]
    assert proc.returncode == 130, "".join(lines) + rest
    assert "of 8 runs done" in rest and f"resume with: trainlab sweep {path} --store {store}" in rest
    plan = expand_sweep(yaml.safe_load(path.read_text()))
    with Store(store) as st:
        before = {r.id: r.ended for r in st.runs(sweep=plan.id, status=("finished", "pruned"))}
    assert len(before) >= 2
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert f"{len(before)} trial(s) already in" in done.stderr
    with Store(store) as st:
        runs = st.runs(sweep=plan.id)
        assert len(runs) == 8 and {r.status for r in runs} <= {"finished", "pruned"}
        assert {r.id: r.ended for r in runs if r.id in before} == before  # not trained again
        assert len(st.sweep(plan.id)["points"]) == 8
    counted = [t for t in trials(tmp_path / "sweeps" / plan.id, plan.id) if not t.user_attrs.get("interrupted")]
    assert len(counted) == 8
