"""Batch norm right before or right after the nonlinearity (notes 004): the two placements compared."""
from __future__ import annotations

import math
import statistics

from trainlab.experiments.report import Section
from trainlab.experiments.studies import Outcome, StudyContext
from trainlab.experiments.study_procedures._common import merged, resolve_data, train

VARIANTS = {"none": {"model": {"norm": None}},
            "before": {"model": {"norm": "batch", "norm_position": "before"}},
            "after": {"model": {"norm": "batch", "norm_position": "after"}}}


def bn_position(ctx: StudyContext, *, sets: dict, only: list[str] | None = None, seeds: int = 2) -> Outcome:
    """Train each set's ``base`` config without batch norm, with it before and with it after the activation.

    ``sets`` maps a label to ``{data: ..., base: ...}`` (``data`` as in
    :func:`~trainlab.experiments.study_procedures._common.resolve_data`, ``base`` a runner config
    without ``model.norm``); ``only`` picks some of them (the quick mode). Every variant shares seeds, initialization and data order; the
    metrics are means over ``seeds`` seeds of the final validation accuracy and of the training
    loss after the first epoch (how fast it starts).
    """
    metrics: dict[str, float] = {}
    rows, panels = [], []
    for label, spec in sets.items():
        if only is not None and label not in only:
            continue
        cfg_data, splits = resolve_data(spec["data"], ctx.seed)
        curves = {}
        for variant, override in VARIANTS.items():
            accs, first, last = [], [], []
            for s in range(ctx.seed, ctx.seed + seeds):
                cfg = merged(dict(spec["base"], data=cfg_data, seed=s, name=f"{label}-{variant}-{s}",
                                  diagnostics=None), override)
                run = train(cfg, data=splits)
                accs.append(run.last("val_accuracy", 0.0) if run.diverged is None else 0.0)
                first.append(run.history.history.get("loss", [math.inf])[0])
                last.append(run.last("loss", math.inf))
                if s == ctx.seed:
                    curves[variant] = (range(1, len(run.history.history.get("val_accuracy", [])) + 1),
                                       run.history.history.get("val_accuracy", []))
            key = f"{label}.{variant}"
            metrics[f"{key}.val_accuracy"] = statistics.fmean(accs)
            metrics[f"{key}.first_epoch_loss"] = statistics.fmean(first)
            metrics[f"{key}.final_loss"] = statistics.fmean(last)
            rows.append((label, variant, metrics[f"{key}.val_accuracy"], min(accs), max(accs),
                         metrics[f"{key}.first_epoch_loss"], metrics[f"{key}.final_loss"]))
            ctx.log(f"{label} {variant}: val accuracy {metrics[f'{key}.val_accuracy']:.4f} "
                    f"(seeds {', '.join(f'{a:.4f}' for a in accs)}), first-epoch loss {metrics[f'{key}.first_epoch_loss']:.4g}")
        metrics[f"{label}.after_minus_before"] = metrics[f"{label}.after.val_accuracy"] - metrics[f"{label}.before.val_accuracy"]
        metrics[f"{label}.abs_after_minus_before"] = abs(metrics[f"{label}.after_minus_before"])
        panels.append({"title": label, "xlabel": "epoch", "ylabel": "validation accuracy", "series": curves})

    from trainlab.experiments.plots import plot_panels

    fig = plot_panels(panels, ctx.path("bn_position.png"))
    text = ["Each set's MLP trained three ways at equal settings: no normalization, batch norm between the linear "
            "map and the activation (`model.norm_position: before`, Ioffe & Szegedy's placement) and after the "
            f"activation (`model.norm_position: after`). Means over {seeds} seeds."]
    return Outcome(metrics, [Section("Batch norm before or after the nonlinearity", text=text, table=(
        ("set", "batch norm", "val accuracy (mean)", "min", "max", "loss after epoch 1", "final train loss"), rows),
        figures=[("validation accuracy per epoch (first seed)", fig)])])
