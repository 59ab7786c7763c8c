"""An optuna search through ``trainlab sweep`` vs. the same search written by hand with Optuna.

The workload: TPE (seed 0) over SGD's learning rate (log-uniform in [1e-4, 1]) and momentum
(uniform in [0, 0.99]) for an MLP 2-32-32-2 on two moons (500 samples, 70/30 split), 10 epochs,
batch size 32, 20 trials, one at a time, the study in a journal file. Two ways, side by side in
one process:

optuna by hand   ``study.optimize(objective)``: the objective trains the config with trainlab's
                 ``run_experiment`` (no run folder) and returns the final validation loss: the peer
trainlab search  ``run_sweep`` with ``method: optuna``: the same trials, plus what trainlab adds
                 around each (config validation, the results store, the sweep record)

Both train the same configs, so the ratio is trainlab's overhead per trial; the two searches must
find the same best value (same sampler, seed and objective). Timings are wall-clock on whatever
else the machine is doing; compare ratios from the same run.

    python benchmarks/bench_search.py            # the full workload
    python benchmarks/bench_search.py --quick    # 4 trials, 2 epochs (a smoke test)
"""
from __future__ import annotations

import argparse
import copy
import shutil
import tempfile
import time
from pathlib import Path

import torch

TEMPLATE = {"name": "bench-search", "data": {"name": "moons", "n_samples": 500, "noise": 0.2, "split": [0.7, 0.3]},
            "model": {"kind": "mlp", "hidden": [32, 32]},
            "optimizer": {"name": "sgd", "lr": {"loguniform": [1e-4, 1.0]}, "momentum": {"uniform": [0.0, 0.99]}},
            "train": {"epochs": 10, "batch_size": 32, "device": "cpu"}, "diagnostics": None}


def by_hand(template: dict, trials: int, folder: Path) -> float:
    """The search an Optuna user writes; returns the best value."""
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    from trainlab.experiments.runner import run_experiment

    def objective(trial):
        cfg = copy.deepcopy(template)
        cfg["optimizer"] = {"name": "sgd", "lr": trial.suggest_float("optimizer.lr", 1e-4, 1.0, log=True),
                            "momentum": trial.suggest_float("optimizer.momentum", 0.0, 0.99)}
        cfg["name"] = f"hand-{trial.number:03d}"
        return run_experiment(cfg, write=False, verbose=False).final["val_loss"]

    storage = JournalStorage(JournalFileBackend(str(folder / "hand.journal")))
    study = optuna.create_study(study_name="hand", storage=storage, sampler=optuna.samplers.TPESampler(seed=0))
    study.optimize(objective, n_trials=trials)
    return study.best_value


def through_trainlab(template: dict, trials: int, folder: Path) -> float:
    from trainlab.experiments.executor import LocalExecutor
    from trainlab.experiments.search import JOURNAL, load_study
    from trainlab.experiments.store import Store
    from trainlab.experiments.sweep import expand_sweep, run_sweep

    data = {**template, "sweep": {"method": "optuna", "samples": trials, "seed": 0, "metric": "val_loss"}}
    with Store(folder / "store.sqlite") as st:
        r = run_sweep(expand_sweep(data), store=st, executor=LocalExecutor(0), verbose=False, report=False)
    return load_study(r.out_dir / JOURNAL, r.id).best_value


def main(argv: list[str] | None = None) -> int:
    import optuna

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="4 trials, 2 epochs: checks that it runs")
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = parser.parse_args(argv)
    trials, epochs = (4, 2) if args.quick else (args.trials, args.epochs)
    template = copy.deepcopy(TEMPLATE)
    template["train"]["epochs"] = epochs
    threads_before = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    folder = Path(tempfile.mkdtemp(prefix="bench-search-"))
    try:
        print(f"TPE, {trials} trials, MLP 2-32-32-2 on moons (500 samples), {epochs} epochs; optuna "
              f"{optuna.__version__}, torch {torch.__version__}, {torch.get_num_threads()} thread(s)")
        through_trainlab(template, 1, folder / "warm")  # imports and first-call costs out of both columns
        t0 = time.perf_counter()
        hand = by_hand(template, trials, folder)
        t_hand = time.perf_counter() - t0
        t0 = time.perf_counter()
        ours = through_trainlab(template, trials, folder)
        t_ours = time.perf_counter() - t0
        print(f"{'optuna by hand (study.optimize)':<36} {t_hand:8.2f} s  {t_hand / trials * 1e3:7.1f} ms/trial  "
              f"best val_loss {hand:.4f}")
        print(f"{'trainlab search (run_sweep)':<36} {t_ours:8.2f} s  {t_ours / trials * 1e3:7.1f} ms/trial  "
              f"best val_loss {ours:.4f}")
        print(f"ratio trainlab / by hand: {t_ours / t_hand:.2f}x; same best value: {abs(hand - ours) < 1e-6}")
        return 0 if abs(hand - ours) < 1e-6 else 1
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        torch.set_num_threads(threads_before)


if __name__ == "__main__":
    raise SystemExit(main())
