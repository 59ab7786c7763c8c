"""Batch normalization lets a deep net train at a learning rate that diverges without it (notes 003, 004)."""
from __future__ import annotations

import math

from trainlab.experiments.report import Section
from trainlab.experiments.studies import Outcome, StudyContext
from trainlab.experiments.study_procedures._common import resolve_data, train
from trainlab.experiments.study_procedures.initialization import InitAtStart


def bn_learning_rate(ctx: StudyContext, *, data: dict, hidden: list[int], activation: str, init: dict,
                     optimizer: dict, lrs: list[float], norms: dict, epochs: int, batch_size: int = 64) -> Outcome:
    """Train the same deep MLP at each learning rate, with and without a normalization layer.

    ``norms`` maps a label to the model's ``norm`` (``null`` for none, ``batch`` for batch norm).
    A run *diverges* when its loss becomes NaN/Inf (the fit loop stops it). Reported per label and
    learning rate: diverged (0/1), final validation accuracy (0 when diverged), and per label the
    largest learning rate that did not diverge.
    """
    cfg_data, splits = resolve_data(data, ctx.seed)
    metrics: dict[str, float] = {}
    rows, curves = [], {}
    for label, norm in norms.items():
        stable = []
        for lr in lrs:
            cfg = {"name": f"bn-{label}-{lr:g}", "seed": ctx.seed, "data": cfg_data,
                   "model": {"kind": "mlp", "hidden": hidden, "activation": activation, "norm": norm},
                   "optimizer": dict(optimizer, lr=lr), "train": {"epochs": epochs, "batch_size": batch_size}}
            run = train(cfg, callbacks=(InitAtStart(init, ctx.seed),), data=splits)
            diverged = run.diverged is not None
            acc = 0.0 if diverged else run.final.get("val_accuracy", math.nan)
            metrics[f"{label}.lr={lr:g}.diverged"] = float(diverged)
            metrics[f"{label}.lr={lr:g}.val_accuracy"] = acc
            if not diverged:
                stable.append(lr)
            where = (f"epoch {run.diverged.epoch + 1}, step {run.diverged.step + 1}" if diverged else "")
            rows.append((label, lr, "yes" if diverged else "no", where, acc))
            ctx.log(f"{label} lr {lr:g}: {'diverged ' + where if diverged else f'val acc {acc:.3f}'}")
        metrics[f"{label}.max_stable_lr"] = max(stable) if stable else 0.0
        curves[label] = (lrs, [metrics[f"{label}.lr={lr:g}.val_accuracy"] for lr in lrs])
    from trainlab.experiments.plots import plot_panels

    fig = plot_panels([{"title": "validation accuracy (0 = diverged)", "xlabel": "learning rate", "logx": True,
                        "ylabel": "val accuracy", "series": curves, "markers": True}], ctx.path("bn_lr.png"))
    section = Section("Learning rate against normalization", text=[
        f"MLP {hidden} ({activation}, init {init}), {optimizer}, {epochs} epochs, batch {batch_size}."],
        table=(("norm", "learning rate", "diverged", "where", "val accuracy"), rows),
        figures=[("accuracy per learning rate", fig)])
    return Outcome(metrics, [section])
