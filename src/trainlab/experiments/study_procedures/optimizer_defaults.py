"""The notes' default recipes for the optimizer, measured (notes 002, 003, 004).

:func:`optimizer_defaults` runs three small experiments:

* ``adam_lr`` — Adam with β₁ = 0.9, β₂ = 0.999 over a grid of learning rates on tasks beyond the
  2-D toy sets (an MNIST subset, a 20-feature regression, two moons), each at a fixed epoch
  budget: how far lr 1e-3 and 1e-4 are from the best rate of the grid (notes 003/002: "a good
  start for any problem").
* ``nadam`` — NAdam against Adam at the same learning rate: on the 2-D test functions of
  :mod:`trainlab.experiments.trajectories` (overshoot past the minimum, steps to tolerance) and on
  the MNIST subset over several seeds (notes 004: "slightly faster, less overshoot, minimal gain").
* ``batch`` — SGD with momentum on the MNIST subset over batch sizes: accuracy after the same
  epochs and the wall time they take, then the large batch with a scaled learning rate, with and
  without a warm-up + cosine schedule (notes 004: "small batch accurate but slow, large fast but
  less accurate → use a scheduler").
"""
from __future__ import annotations

import math
import statistics
import time

import torch

from trainlab.experiments.report import Section
from trainlab.experiments.studies import Outcome, StudyContext
from trainlab.experiments.study_procedures._common import merged, resolve_data, train
from trainlab.train.callbacks import Callback


def _regression_splits(n_samples: int, features: int, hidden: int, noise: float, seed: int):
    """y = tanh(X·W)·a + noise from a random teacher (X ~ N(0, I)), standardized to unit variance
    (as one would standardize any target before fitting); 60/20/20 train/val/test."""
    from trainlab.data.dataset import Dataset

    g = torch.Generator().manual_seed(seed + 17)
    X = torch.randn(n_samples, features, generator=g)
    W = 2 * torch.randn(features, hidden, generator=g) / math.sqrt(features)
    y = torch.tanh(X @ W) @ torch.randn(hidden, 1, generator=g)
    y = y + noise * y.std() * torch.randn(n_samples, 1, generator=g)
    y = (y - y.mean()) / y.std()
    a, b = int(0.6 * n_samples), int(0.8 * n_samples)
    return (Dataset(X[:a], y[:a], "teacher-regression"), Dataset(X[a:b], y[a:b], "teacher-regression"),
            Dataset(X[b:], y[b:], "teacher-regression"))


def _task(ctx: StudyContext, spec: dict):
    """``(config without optimizer, splits, score name)`` of one task; the score is validation
    accuracy for classification and validation R² = 1 − MSE / Var(y) for regression."""
    spec = dict(spec)
    data = spec.pop("data")
    if data.get("name") == "teacher_regression":
        splits = _regression_splits(**{k: v for k, v in data.items() if k != "name"}, seed=ctx.seed)
        cfg = {"data": {"name": "ripple"}, "loss": {"name": "mse"}, **spec}
        return cfg, splits, "r2"
    cfg_data, splits = resolve_data(data, ctx.seed)
    return {"data": cfg_data, **spec}, splits, "accuracy"


def _score(run, kind: str, splits) -> float:
    if run.diverged is not None:
        return 0.0 if kind == "accuracy" else -1.0  # R² of a diverged fit: worse than predicting the mean
    if kind == "accuracy":
        return run.final["val_accuracy"]
    var = float(splits[1].y.var(unbiased=False)) if splits is not None else 1.0
    return 1.0 - run.final["val_loss"] / var


def _adam_lr(ctx, p: dict, metrics: dict, sections: list) -> None:
    from trainlab.experiments.plots import plot_panels

    rows, series = [], {}
    for label in p.get("use_tasks") or list(p["tasks"]):
        spec = p["tasks"][label]
        cfg, splits, kind = _task(ctx, spec)
        scores = {}
        for lr in p["lrs"]:
            run = train(dict(cfg, seed=ctx.seed, optimizer={"name": "adam", "lr": lr, "betas": [0.9, 0.999]}),
                        data=splits)
            scores[lr] = _score(run, kind, splits)
            metrics[f"adam_lr.{label}.lr_{lr:g}.score"] = scores[lr]
            ctx.log(f"adam lr {lr:g} on {label}: {kind} {scores[lr]:.4f}")
        best_lr = max(scores, key=scores.get)
        metrics[f"adam_lr.{label}.best_lr"] = best_lr
        metrics[f"adam_lr.{label}.best_score"] = scores[best_lr]
        for lr in (1e-3, 1e-4):
            if lr in scores:
                # regret: what starting at this rate costs against the best rate of the grid
                metrics[f"adam_lr.{label}.regret_{lr:g}"] = scores[best_lr] - scores[lr]
        rows += [(label, kind, f"{lr:g}", s, scores[best_lr] - s) for lr, s in scores.items()]
        series[label] = (list(scores), [max(s, -0.1) for s in scores.values()])
    fig = plot_panels([{"title": "Adam (0.9, 0.999) over learning rates", "xlabel": "learning rate",
                        "ylabel": "validation accuracy / R²", "series": series, "markers": True, "logx": True}],
                      ctx.path("adam_lr.png"))
    sections.append(Section("Adam's default learning rates", text=[
        "Adam with β = (0.9, 0.999) at every learning rate of the grid, the same epochs, initialization "
        "and data order per task; regret = best score of the grid − this rate's score."],
        table=(("task", "score", "lr", "score value", "regret"), rows),
        figures=[("validation score over the learning rate", fig)]))


def _nadam(ctx, p: dict, metrics: dict, sections: list) -> None:
    from trainlab.experiments import trajectories as T
    from trainlab.experiments.plots import plot_panels

    rows = []
    for fn in p["functions"]:
        steps = p.get("steps") or T.FUNCTIONS[fn].steps
        res = T.run(fn, ["adam", "nadam"], steps=steps)
        for name, tr in res.items():
            # not reached within the budget: counted as budget + 1 (a lower bound; JSON has no inf)
            reached = tr.steps_to_tol if tr.steps_to_tol is not None else steps + 1
            metrics[f"nadam.{fn}.{name}.overshoot"] = tr.overshoot()
            metrics[f"nadam.{fn}.{name}.steps"] = reached
            metrics[f"nadam.{fn}.{name}.final_loss"] = tr.final_loss
            rows.append((fn, name, T.FUNCTIONS[fn].lrs[name], tr.overshoot(),
                         "> %d" % steps if tr.steps_to_tol is None else reached, tr.final_loss))
        if metrics[f"nadam.{fn}.adam.overshoot"] > 0:  # a ratio only where Adam overshoots at all
            metrics[f"nadam.{fn}.overshoot_ratio"] = (metrics[f"nadam.{fn}.nadam.overshoot"]
                                                     / metrics[f"nadam.{fn}.adam.overshoot"])
        metrics[f"nadam.{fn}.steps_ratio"] = metrics[f"nadam.{fn}.nadam.steps"] / metrics[f"nadam.{fn}.adam.steps"]
    sections.append(Section("NAdam against Adam on the 2-D test functions", text=[
        "The trajectory presets `adam` and `nadam` at the same learning rate from the function's start; "
        "overshoot = the largest swing past the minimum over the start distance; steps to f − f* ≤ 1e-6."],
        table=(("function", "optimizer", "lr", "overshoot", "steps to tolerance", "final f"), rows)))

    cfg, splits, kind = _task(ctx, p["network"])
    curves, net_rows = {}, []
    finals: dict[str, list[float]] = {"adam": [], "nadam": []}
    early: dict[str, list[float]] = {"adam": [], "nadam": []}
    for seed in p["seeds"]:
        for name in ("adam", "nadam"):
            run = train(dict(cfg, seed=seed, optimizer={"name": name, "lr": p["lr"]}), data=splits)
            hist = run.history.history["loss"]
            finals[name].append(_score(run, kind, splits))
            early[name].append(hist[max(len(hist) // 4 - 1, 0)])
            if seed == p["seeds"][0]:
                curves[name] = (range(1, len(hist) + 1), hist)
            net_rows.append((seed, name, finals[name][-1], early[name][-1], hist[-1]))
    for name in ("adam", "nadam"):
        metrics[f"nadam.network.{name}.score"] = statistics.fmean(finals[name])
        metrics[f"nadam.network.{name}.early_loss"] = statistics.fmean(early[name])
    metrics["nadam.network.score_gain"] = metrics["nadam.network.nadam.score"] - metrics["nadam.network.adam.score"]
    metrics["nadam.network.early_loss_ratio"] = (metrics["nadam.network.nadam.early_loss"]
                                                 / metrics["nadam.network.adam.early_loss"])
    fig = plot_panels([{"title": "training loss, Adam vs NAdam", "xlabel": "epoch", "ylabel": "loss",
                        "series": curves, "logy": True}], ctx.path("nadam_network.png"))
    sections.append(Section("NAdam against Adam on a network", text=[
        f"The MNIST subset, lr {p['lr']:g} for both, seeds {list(p['seeds'])}; early loss = training loss "
        "a quarter of the way through."],
        table=(("seed", "optimizer", "val score", "early train loss", "final train loss"), net_rows),
        figures=[("training loss (first seed)", fig)]))


class _CpuClock(Callback):
    """CPU seconds of every epoch (training and evaluation). With one torch thread this is the
    epoch's wall time on an idle core, and unlike wall time it hardly depends on what else the
    machine runs, so ratios of it are comparable across runs of a shared machine."""

    def __init__(self) -> None:
        self.seconds: list[float] = []

    def on_epoch_begin(self, epoch: int, logs: dict) -> None:
        self._t0 = time.process_time()

    def on_epoch_end(self, epoch: int, logs: dict) -> None:
        self.seconds.append(time.process_time() - self._t0)


def _batch(ctx, p: dict, metrics: dict, sections: list) -> None:
    from trainlab.experiments.plots import plot_panels

    cfg, splits, kind = _task(ctx, {"data": p["data"], "model": p["model"]})
    base = dict(cfg, seed=ctx.seed, optimizer=dict(p["optimizer"]))
    rows, acc_time, acc_epoch = [], {}, {}

    def fit(config: dict):
        clock = _CpuClock()
        return train(config, callbacks=(clock,), data=splits), clock.seconds

    def record(label: str, trained, batch_size, lr, schedule: str) -> None:
        run, cpu = trained
        h = run.history.history
        seconds = sum(cpu)
        acc = _score(run, kind, splits)
        key = f"batch.{label}"
        metrics[f"{key}.val_accuracy"] = acc
        metrics[f"{key}.seconds"] = seconds
        metrics[f"{key}.wall_seconds"] = sum(h["time"])
        metrics[f"{key}.epoch_seconds"] = seconds / len(cpu)
        metrics[f"{key}.updates"] = len(cpu) * math.ceil(len(splits[0]) / batch_size)
        rows.append((label, batch_size, lr, schedule, len(cpu), metrics[f"{key}.updates"], acc, seconds,
                     sum(h["time"])))
        elapsed = [sum(cpu[:i + 1]) for i in range(len(cpu))]
        acc_time[label] = (elapsed, h.get("val_accuracy", []))
        acc_epoch[label] = (range(1, len(h["time"]) + 1), h.get("val_accuracy", []))
        ctx.log(f"{label}: accuracy {acc:.4f} in {seconds:.2f} s")

    lr0 = p["optimizer"]["lr"]
    for bs in p["batch_sizes"]:
        record(f"bs_{bs}", fit(merged(base, {"train": {"epochs": p["epochs"], "batch_size": bs}})), bs, lr0,
               "constant")
    small, large = min(p["batch_sizes"]), p["large"]
    for lr in p["large_lrs"]:
        for schedule in ("constant", "warmup_cosine"):
            over = {"train": {"epochs": p["large_epochs"], "batch_size": large}, "optimizer": {"lr": lr}}
            if schedule == "warmup_cosine":
                over["schedule"] = {"name": "warmup", "warmup_steps": p["warmup_epochs"], "then": {"name": "cosine"}}
            record(f"large.lr_{lr:g}.{schedule}", fit(merged(base, over)), large, lr, schedule)
    m = metrics
    small_acc, plain = m[f"batch.bs_{small}.val_accuracy"], m[f"batch.bs_{large}.val_accuracy"]
    best_label = max((f"large.lr_{lr:g}.warmup_cosine" for lr in p["large_lrs"]),
                     key=lambda k: m[f"batch.{k}.val_accuracy"])
    m["batch.accuracy_gap"] = small_acc - plain
    m["batch.epoch_time_ratio"] = m[f"batch.bs_{small}.epoch_seconds"] / m[f"batch.bs_{large}.epoch_seconds"]
    m["batch.scheduled.val_accuracy"] = m[f"batch.{best_label}.val_accuracy"]
    m["batch.scheduled.gap_closed"] = (m["batch.scheduled.val_accuracy"] - plain) / max(small_acc - plain, 1e-12)
    m["batch.scheduled.time_ratio"] = m[f"batch.{best_label}.seconds"] / m[f"batch.bs_{small}.seconds"]
    top = max(p["large_lrs"])
    m["batch.top_lr.schedule_gain"] = (m[f"batch.large.lr_{top:g}.warmup_cosine.val_accuracy"]
                                       - m[f"batch.large.lr_{top:g}.constant.val_accuracy"])
    fig = plot_panels([
        {"title": "validation accuracy over time", "xlabel": "CPU seconds (1 thread: wall time on an idle core)",
         "ylabel": "val accuracy", "series": acc_time},
        {"title": "validation accuracy over epochs", "xlabel": "epoch", "ylabel": "val accuracy",
         "series": acc_epoch}], ctx.path("batch_time.png"))
    sections.append(Section("Batch size: accuracy against wall time, and the large batch with a schedule", text=[
        f"SGD + momentum on the MNIST subset; every batch size at lr {lr0:g} for {p['epochs']} epochs, then "
        f"batch {large} for {p['large_epochs']} epochs at larger rates, constant or with a {p['warmup_epochs']}-epoch "
        f"linear warm-up followed by cosine decay. Best scheduled run: {best_label}. Seconds are the epochs' "
        "CPU time (evaluation included) at one torch thread, i.e. their wall time on an idle core; the wall "
        "time measured alongside depends on what else the machine was running."],
        table=(("run", "batch", "lr", "schedule", "epochs", "updates", "val accuracy", "CPU seconds",
                "wall seconds"), rows),
        figures=[("accuracy against wall time and epochs", fig)]))


def optimizer_defaults(ctx: StudyContext, *, adam_lr: dict, nadam: dict, batch: dict) -> Outcome:
    """Adam's default learning rates on several tasks, NAdam against Adam, and batch size against
    wall time with a large batch rescued by a learning-rate schedule (see the module docstring).

    Args:
        adam_lr: ``tasks`` (label -> ``{data, model, train[, loss]}``; ``data: {name: teacher_regression,
            n_samples, features, hidden, noise}`` is the synthetic regression), ``lrs`` and
            ``use_tasks`` (the labels to run; default all).
        nadam: ``functions`` (trajectory test functions), ``steps`` (``None``: the function's),
            ``network`` (a task as in ``adam_lr``), ``lr`` and ``seeds``.
        batch: ``data``, ``model``, ``optimizer``, ``epochs``, ``batch_sizes``, ``large`` (the large
            batch), ``large_epochs``, ``large_lrs`` and ``warmup_epochs``.

    Metrics: ``adam_lr.<task>.regret_0.001`` / ``regret_0.0001`` (best score − the rate's score),
    ``.best_lr``; ``nadam.<function>.overshoot_ratio`` / ``steps_ratio`` (NAdam over Adam),
    ``nadam.network.score_gain``, ``early_loss_ratio``; ``batch.accuracy_gap`` (smallest minus largest
    batch at equal epochs), ``batch.epoch_time_ratio``, ``batch.scheduled.gap_closed`` (fraction of
    that gap the best scheduled large-batch run closes), ``batch.scheduled.time_ratio`` (its CPU time
    over the small batch's) and ``batch.top_lr.schedule_gain`` (warm-up + cosine minus constant at
    the largest rate).
    """
    metrics: dict[str, float] = {}
    sections: list[Section] = []
    _adam_lr(ctx, adam_lr, metrics, sections)
    _nadam(ctx, nadam, metrics, sections)
    _batch(ctx, batch, metrics, sections)
    return Outcome(metrics, sections)
