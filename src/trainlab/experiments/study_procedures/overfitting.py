"""Overfitting and its remedies: each remedy on one overfitting setup, maxout's appetite for
regularization, a depth sweep read through the overfitting verdicts, the epoch budget (many runs
against one early-stopped run) and covariate shift (notes 002, 003, 004)."""
from __future__ import annotations

import math
import statistics
import time

from trainlab.experiments.report import Section
from trainlab.experiments.studies import Outcome, StudyContext
from trainlab.experiments.study_procedures._common import merged, resolve_data, train


def _gap_run(ctx: StudyContext, label: str, base: dict, data: dict, override: dict, seed: int):
    """Train ``base`` + ``override``; an override's ``data`` key changes the data section (e.g. more
    training images), everything else is a config override. Returns the run and its gap numbers."""
    override = dict(override or {})
    spec = merged(data, override.pop("data", {}))
    cfg_data, splits = resolve_data(spec, seed)
    cfg = merged(dict(base, name=label, seed=seed, data=cfg_data), override)
    run = train(cfg, data=splits)
    if run.diverged is not None:
        raise RuntimeError(f"{label}: training diverged ({run.diverged}); lower the learning rate")
    f = run.final
    numbers = {"loss_gap": f["val_loss"] - f["train_loss"], "accuracy_gap": f["train_accuracy"] - f["val_accuracy"],
               "train_accuracy": f["train_accuracy"], "val_accuracy": f["val_accuracy"], "val_loss": f["val_loss"],
               "train_loss": f["train_loss"], "epochs": len(run.history["loss"]),
               "n_train": len(splits[0]) if splits is not None else math.nan}
    ctx.log(f"{label}: " + ", ".join(f"{k} {v:.4f}" for k, v in numbers.items()))
    return run, numbers


def _gap_group(ctx: StudyContext, title: str, prefix: str, base: dict, data: dict, variants: dict,
               text: str, seeds: int = 1) -> tuple[dict, Section]:
    """Each variant trained with ``seeds`` seeds (data subset, initialization and order change
    together); the numbers are means over the seeds."""
    metrics, rows = {}, []
    for label, override in variants.items():
        per_seed = [_gap_run(ctx, f"{prefix}-{label}-seed-{ctx.seed + i}", base, data, override, ctx.seed + i)[1]
                    for i in range(seeds)]
        n = {k: statistics.fmean(r[k] for r in per_seed) for k in per_seed[0]}
        for k, v in n.items():
            metrics[f"{prefix}.{label}.{k}"] = v
        metrics[f"{prefix}.{label}.loss_gap_min"] = min(r["loss_gap"] for r in per_seed)
        metrics[f"{prefix}.{label}.loss_gap_max"] = max(r["loss_gap"] for r in per_seed)
        rows.append((label, str(override or "(none)"), n["n_train"], n["epochs"], n["train_loss"], n["val_loss"],
                     n["loss_gap"], n["train_accuracy"], n["val_accuracy"], n["accuracy_gap"]))
    section = Section(title, text=[text], table=(
        ("run", "change", "training images", "epochs", "train loss", "val loss", "loss gap", "train acc",
         "val acc", "accuracy gap"), rows))
    return metrics, section


def overfitting_remedies(ctx: StudyContext, *, data: dict, base: dict, remedies: dict, maxout: dict,
                         depth: dict, seeds: int = 1) -> Outcome:
    """Three measurements on overfitting setups.

    1. ``remedies``: label → override of one overfitting net (``base`` on ``data``); the first label
       is the unregularized baseline. An override's ``data`` key changes the data (``{data: {n_train:
       8000}}``: more data), the rest is a config override (a smaller net, early stopping, L1/L2,
       dropout, augmentation). Reported per run, measured after training in eval mode: the loss gap
       val − train and the accuracy gap train − val, and validation accuracy, each the mean over
       ``seeds`` seeds.
    2. ``maxout``: the same, for ReLU against maxout at equal width (``maxout.base`` overrides
       ``base``; ``maxout.variants`` label → override).
    3. ``depth``: ``depth.depths`` hidden layers of ``depth.width`` units on ``depth.data`` with
       ``depth.base``; each run's verdicts (:func:`trainlab.diagnostics.verdicts.diagnose_run`, what
       ``trainlab run`` writes to ``verdicts.json``) are read: the notes' rule is to stop adding
       layers at the first depth whose run is diagnosed as overfitting, so the chosen depth is the
       one before it.
    """
    sections, metrics = [], {}
    m, s = _gap_group(ctx, "Remedies for overfitting", "remedy", base, data, remedies,
                      f"One overfitting setup ({base.get('model')}, {base.get('train', {}).get('epochs')} epochs "
                      f"on {data.get('n_train')} training images) and each remedy of the notes (004) alone. "
                      "Gaps are measured after training, in eval mode, on the whole sets; the early-stopped run "
                      f"is measured on its restored best weights. Means over {seeds} seed(s).", seeds)
    metrics.update(m)
    sections.append(s)
    first = next(iter(remedies))
    for label in list(remedies)[1:]:
        metrics[f"remedy.{label}.gap_reduction"] = (metrics[f"remedy.{first}.loss_gap"]
                                                    - metrics[f"remedy.{label}.loss_gap"])

    m, s = _gap_group(ctx, "Maxout needs more regularization", "maxout", merged(base, maxout.get("base", {})), data,
                      maxout["variants"],
                      "Maxout at the same number of units as ReLU: each unit is the max of k linear pieces, so "
                      "the layer before it has k times the weights (notes 002: maxout needs more "
                      f"regularization, dropout or more data). Means over {seeds} seed(s).", seeds)
    metrics.update(m)
    sections.append(s)

    d_metrics, d_section = _depth_sweep(ctx, depth)
    metrics.update(d_metrics)
    sections.append(d_section)
    return Outcome(metrics, sections)


def _depth_sweep(ctx: StudyContext, depth: dict) -> tuple[dict, Section]:
    depths, seeds = depth["depths"], depth.get("seeds", 1)
    metrics, rows = {}, []
    over_runs = {d: [] for d in depths}
    val_acc = {d: [] for d in depths}
    chosen_acc, chosen_depths = [], []
    for i in range(seeds):
        seed = ctx.seed + i
        cfg_data, splits = resolve_data(depth["data"], seed)
        first_over = None
        for d in depths:
            cfg = merged(dict(depth["base"], name=f"depth-{d}-seed-{seed}", seed=seed, data=cfg_data),
                         {"model": {"hidden": [depth["width"]] * d}})
            run = train(cfg, data=splits)
            if run.diverged is not None:
                raise RuntimeError(f"depth {d}: training diverged ({run.diverged})")
            verdicts = run.result.extras["verdicts"]
            over = [v for v in verdicts if v.kind == "overfitting"]
            f = run.final
            over_runs[d].append(float(bool(over)))
            val_acc[d].append(f["val_accuracy"])
            rules = ", ".join(str(v.evidence.get("rule")) for v in over) or "-"
            rows.append((seed, d, f["train_accuracy"], f["val_accuracy"], f["train_accuracy"] - f["val_accuracy"],
                         ", ".join(verdicts.kinds()), rules))
            ctx.log(f"seed {seed} depth {d}: val acc {f['val_accuracy']:.3f}, verdicts {verdicts.kinds()}")
            if over and first_over is None:
                first_over = d
        # the depth before the first overfitting one (the shallowest if even it overfits; the deepest if none does)
        chosen = depths[-1] if first_over is None else max([d for d in depths if d < first_over], default=depths[0])
        chosen_depths.append(chosen)
        chosen_acc.append(val_acc[chosen][-1])
    for d in depths:
        metrics[f"depth{d}.overfitting"] = statistics.fmean(over_runs[d])  # the fraction of seeds diagnosed
        metrics[f"depth{d}.val_accuracy"] = statistics.fmean(val_acc[d])
    metrics.update({"depth.chosen_mean": statistics.fmean(chosen_depths),
                    "depth.chosen_val_accuracy": statistics.fmean(chosen_acc),
                    "depth.deepest_val_accuracy": metrics[f"depth{depths[-1]}.val_accuracy"],
                    "depth.best_val_accuracy": max(metrics[f"depth{d}.val_accuracy"] for d in depths),
                    "depth.shallowest_overfitting": metrics[f"depth{depths[0]}.overfitting"],
                    "depth.deepest_overfitting": metrics[f"depth{depths[-1]}.overfitting"]})
    section = Section("Stop adding hidden layers once the model overfits", text=[
        f"{depth['width']} units per hidden layer on {depth['data']}, each depth trained alike, {seeds} seed(s); the "
        "verdicts are the ones a run folder gets (verdicts.json). The rule (notes 004) keeps the depth before the "
        f"first one diagnosed as overfitting: depth {', '.join(map(str, chosen_depths))} (per seed), mean validation "
        f"accuracy {metrics['depth.chosen_val_accuracy']:.3f} against {metrics['depth.deepest_val_accuracy']:.3f} for "
        f"the deepest net."],
        table=(("seed", "hidden layers", "train acc", "val acc", "accuracy gap", "verdicts", "overfitting rules"), rows))
    return metrics, section


def epochs_budget(ctx: StudyContext, *, data: dict, base: dict, epoch_grid: list[int],
                  early_stopping: dict) -> Outcome:
    """The number of epochs as a hyperparameter: a run per value of ``epoch_grid`` (pick the one with
    the best validation accuracy) against one run of ``max(epoch_grid)`` epochs under
    :class:`~trainlab.train.callbacks.EarlyStopping` (``early_stopping`` its arguments).

    Cost is counted in epochs trained and in CPU seconds (the process's, so other jobs on the
    machine do not inflate it; with several torch threads it sums them); result is the test accuracy of the model each
    approach returns. The longest grid run is also the notes' example (003): 50 epochs give 88.8 %
    validation accuracy, early stopping after 15 epochs 88.1 % test accuracy.
    """
    from trainlab.train.callbacks import EarlyStopping

    cfg_data, splits = resolve_data(data, ctx.seed)
    cfg = dict(base, data=cfg_data, seed=ctx.seed)
    rows, grid = [], {}
    for e in epoch_grid:
        t0 = time.process_time()  # CPU seconds: unlike wall time, not inflated by other jobs on the machine
        run = train(merged(dict(cfg, name=f"epochs-{e}"), {"train": {"epochs": e}}), data=splits)
        seconds = time.process_time() - t0
        if run.diverged is not None:
            raise RuntimeError(f"{e} epochs: training diverged ({run.diverged})")
        grid[e] = (run.final, seconds)
        rows.append((f"{e} epochs", e, run.final["val_accuracy"], run.final["test_accuracy"], seconds))
        ctx.log(f"{e} epochs: val acc {run.final['val_accuracy']:.4f}, test acc {run.final['test_accuracy']:.4f}")
    longest = max(epoch_grid)
    es = EarlyStopping(**early_stopping)
    t0 = time.process_time()
    run = train(merged(dict(cfg, name="early-stopped"), {"train": {"epochs": longest}}), callbacks=(es,), data=splits)
    es_time = time.process_time() - t0
    if run.diverged is not None:
        raise RuntimeError(f"early-stopped run diverged ({run.diverged})")
    es_epochs = len(run.history["loss"])
    monitor = early_stopping.get("monitor", "val_loss")
    curve = run.history[monitor]
    best_epoch = (min if early_stopping.get("mode", "auto") != "max" and "acc" not in monitor else max)(
        range(len(curve)), key=curve.__getitem__) + 1
    rows.append((f"early stopping ({early_stopping})", es_epochs, run.final["val_accuracy"],
                 run.final["test_accuracy"], es_time))
    pick = max(epoch_grid, key=lambda e: grid[e][0]["val_accuracy"])
    grid_epochs, grid_time = sum(epoch_grid), sum(t for _, t in grid.values())
    metrics = {
        "grid.picked_epochs": pick, "grid.val_accuracy": grid[pick][0]["val_accuracy"],
        "grid.test_accuracy": grid[pick][0]["test_accuracy"], "grid.epochs_trained": grid_epochs,
        "grid.seconds": grid_time,
        "early.epochs_trained": es_epochs, "early.best_epoch": best_epoch, "early.seconds": es_time,
        "early.val_accuracy": run.final["val_accuracy"], "early.test_accuracy": run.final["test_accuracy"],
        "cost_ratio_epochs": es_epochs / grid_epochs, "cost_ratio_seconds": es_time / grid_time,
        "test_accuracy_difference": run.final["test_accuracy"] - grid[pick][0]["test_accuracy"],
        # the notes' example: the long run's validation accuracy against the early-stopped test accuracy
        "long.epochs": longest, "long.val_accuracy": grid[longest][0]["val_accuracy"],
        "long.test_accuracy": grid[longest][0]["test_accuracy"],
        "example.long_val_minus_early_test": grid[longest][0]["val_accuracy"] - run.final["test_accuracy"],
        "example.long_test_minus_early_test": grid[longest][0]["test_accuracy"] - run.final["test_accuracy"],
        "example.epoch_fraction": es_epochs / longest,
    }
    from trainlab.experiments.plots import plot_panels

    fig = plot_panels([{"title": "validation accuracy at the end of each run", "xlabel": "epochs", "ylabel": "val accuracy",
                        "series": {"one run per epoch count": (epoch_grid, [grid[e][0]["val_accuracy"] for e in epoch_grid]),
                                   "early-stopped run, per epoch": (range(1, es_epochs + 1), run.history["val_accuracy"])},
                        "markers": True}], ctx.path("epochs_budget.png"))
    section = Section("Epochs: a grid of runs or one early-stopped run", text=[
        f"The grid trains {len(epoch_grid)} runs ({grid_epochs} epochs, {grid_time:.1f} CPU s) and keeps the one with the "
        f"best validation accuracy ({pick} epochs); early stopping trains one run of at most {longest} epochs and "
        f"stopped after {es_epochs} ({es_time:.1f} CPU s), restoring epoch {best_epoch}. Test accuracy: grid "
        f"{grid[pick][0]['test_accuracy']:.4f}, early stopping {run.final['test_accuracy']:.4f}.",
        f"The notes' example (003) compares the long run's validation accuracy (88.8 % after 50 epochs) with the "
        f"early-stopped run's test accuracy (88.1 % after 15). Here: {longest} epochs give validation accuracy "
        f"{grid[longest][0]['val_accuracy']:.4f} (test {grid[longest][0]['test_accuracy']:.4f}); early stopping gives "
        f"test accuracy {run.final['test_accuracy']:.4f} after {es_epochs} epochs."],
        table=(("run", "epochs trained", "val accuracy", "test accuracy", "CPU seconds"), rows),
        figures=[("validation accuracy against epochs", fig)])
    return Outcome(metrics, [section])


def covariate_shift(ctx: StudyContext, *, data: dict, base: dict, shift: list[dict], variants: dict) -> Outcome:
    """Train on the data as it is and test on a shifted copy of the test split (``data.test_shift``:
    ``shift``, augmentations from :mod:`trainlab.data.augment`), with each training variant
    (label → override; the first is plain training, others e.g. augment with the shift).

    Reported per variant: test accuracy, shifted test accuracy and the drop between them; and how
    much of the plain run's drop each variant recovers, (shifted_v − shifted_plain) / drop_plain.
    """
    cfg_data, splits = resolve_data(data, ctx.seed)
    cfg = dict(base, data=dict(cfg_data, test_shift=shift), seed=ctx.seed)
    metrics, rows = {}, []
    for label, override in variants.items():
        run = train(merged(dict(cfg, name=label), override or {}), data=splits)
        if run.diverged is not None:
            raise RuntimeError(f"{label}: training diverged ({run.diverged})")
        f = run.final
        metrics[f"{label}.test_accuracy"] = f["test_accuracy"]
        metrics[f"{label}.shifted_test_accuracy"] = f["shifted_test_accuracy"]
        metrics[f"{label}.drop"] = f["test_accuracy"] - f["shifted_test_accuracy"]
        metrics[f"{label}.val_accuracy"] = f["val_accuracy"]
        ctx.log(f"{label}: test {f['test_accuracy']:.4f}, shifted test {f['shifted_test_accuracy']:.4f}")
    plain = next(iter(variants))
    for label in variants:
        metrics[f"{label}.recovered"] = ((metrics[f"{label}.shifted_test_accuracy"] - metrics[f"{plain}.shifted_test_accuracy"])
                                         / max(metrics[f"{plain}.drop"], 1e-12))
        rows.append((label, str(variants[label] or "(none)"), metrics[f"{label}.test_accuracy"],
                     metrics[f"{label}.shifted_test_accuracy"], metrics[f"{label}.drop"], metrics[f"{label}.recovered"]))
    section = Section("Covariate shift", text=[
        f"The test split is shifted by data.test_shift = {shift} (applied once, seeded): production inputs drawn "
        "unlike the training inputs, with the same labels. 'recovered' is the part of the plain run's accuracy "
        "drop that a variant wins back on the shifted test set."],
        table=(("run", "training change", "test accuracy", "shifted test accuracy", "drop", "recovered"), rows))
    return Outcome(metrics, [section])
