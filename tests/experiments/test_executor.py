from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

from trainlab.experiments.config import parse_config
from trainlab.experiments.executor import Executor, LocalExecutor, RunSpec, Task, execute_task, plan_tasks
from trainlab.experiments.store import Store
from trainlab.experiments.sweep import expand_sweep, run_sweep


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def spec(rid, hidden=(8,), seed=0, lr=0.1, epochs=2, **extra):
    cfg = parse_config({"name": rid, "seed": seed, "data": {"name": "moons", "n_samples": 200},
                        "model": {"hidden": list(hidden)}, "optimizer": {"name": "sgd", "lr": lr},
                        "train": {"epochs": epochs, "batch_size": 32}, "diagnostics": None, **extra})
    return RunSpec(rid, cfg.to_dict())


def test_plan_groups_runs_that_share_architecture_and_data():
    specs = [spec("a", seed=0), spec("b", seed=1, lr=0.3), spec("c", hidden=(4,)),
             spec("d", model={"hidden": [8], "dropout": 0.5}), spec("e", seed=2)]
    tasks = plan_tasks(specs)
    assert [[s.run_id for s in t.specs] for t in tasks] == [["a", "b", "e"], ["c"], ["d"]]
    assert [t.batched for t in tasks] == [True, False, False]
    assert all(not t.batched for t in plan_tasks(specs, batched=False)) and len(plan_tasks(specs, batched=False)) == 5
    assert [len(t) for t in plan_tasks(specs, max_group=2)] == [2, 1, 1, 1]


def test_execute_task_returns_plain_outcomes_and_failures():
    outs = execute_task(Task([spec("a", seed=0), spec("b", seed=1)], batched=True))
    assert [o.status for o in outs] == ["finished", "finished"]
    assert all(o.info["batched"] == 2 and len(o.history) == 2 and "val_accuracy" in o.final for o in outs)
    # parse_config refuses this split, so the config reaches the worker unvalidated (as from an old store)
    bad = RunSpec("bad", {**spec("bad").config, "data": {"name": "moons", "n_samples": 200, "split": [0.999, 0.001]}})
    out = execute_task(Task([bad]))[0]
    assert out.status == "failed" and "empty part" in out.error


def test_an_ensemble_config_trains_as_an_ensemble():
    (out,) = execute_task(Task([spec("ens", ensemble={"members": 2})]))
    assert out.status == "finished" and out.history == []
    assert set(out.info["ensemble"]) == {"member 1", "member 2", "ensemble"}
    assert out.final == out.info["ensemble"]["ensemble"] and "val_accuracy" in out.final


def test_worker_processes_give_the_results_of_this_process(tmp_path):
    specs = [spec("a", hidden=(8,), seed=0), spec("b", hidden=(4,), seed=1), spec("c", hidden=(8,), seed=2)]
    with LocalExecutor(workers=0) as ex:
        ex.submit(specs)
        here = {o.run_id: o for o in ex.results()}
    with LocalExecutor(workers=1, threads=1) as ex:  # one spawned worker takes both tasks
        ex.submit(specs)
        there = {o.run_id: o for o in ex.results()}
    assert set(here) == set(there) == {"a", "b", "c"}
    for rid in here:
        assert there[rid].status == "finished"
        assert there[rid].history[-1]["loss"] == pytest.approx(here[rid].history[-1]["loss"], abs=1e-6)
        assert there[rid].final == pytest.approx(here[rid].final, abs=1e-6)
    assert here["a"].info["batched"] == 2 and here["b"].info["batched"] == 1


class ThreadExecutor(Executor):
    """A stand-in for a cluster executor: runs each task on a thread, in plain data only."""

    def __init__(self):
        self.specs, self.calls = [], []

    def submit(self, specs):
        self.calls.append("submit")
        self.specs += list(specs)

    def results(self):
        self.calls.append("results")
        tasks = [Task([s]) for s in self.specs]
        with ThreadPoolExecutor(2) as pool:
            for outs in pool.map(execute_task, tasks):
                yield from outs

    def shutdown(self, cancel=False):
        self.calls.append(f"shutdown(cancel={cancel})")


def test_the_sweep_runner_takes_any_executor(tmp_path):
    plan = expand_sweep({"name": "thr", "data": {"name": "moons", "n_samples": 200}, "model": {"hidden": [8]},
                         "optimizer": {"name": "sgd", "lr": [0.05, 0.2]}, "train": {"epochs": 2},
                         "diagnostics": None})
    ex = ThreadExecutor()
    with Store(tmp_path / "s.sqlite") as st:
        result = run_sweep(plan, store=st, executor=ex, report=False, verbose=False)
        assert result.ran == 2 and [r.status for r in st.runs(sweep=plan.id)] == ["finished"] * 2
    assert ex.calls == ["submit", "results", "shutdown(cancel=False)"]
