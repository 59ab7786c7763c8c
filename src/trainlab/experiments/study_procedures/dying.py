"""Dying ReLUs: what kills units (a large learning rate, a negative bias, depth) and what brings
them back or keeps them alive (a small positive bias, a leaky variant, a lower learning rate,
reactivation) — notes 000, 002, 004."""
from __future__ import annotations

import math
import statistics

import torch

from trainlab.experiments.report import Section
from trainlab.experiments.studies import Outcome, StudyContext
from trainlab.experiments.study_procedures._common import merged, train
from trainlab.train.callbacks import Callback


def _mean_dead(model: torch.nn.Module, x: torch.Tensor) -> float:
    """The fraction of hidden units, over all activation layers, whose derivative is 0 on every input."""
    from trainlab.experiments.study_procedures.activations import dead_fractions

    fractions = dead_fractions(model, x)
    return statistics.fmean(fractions.values()) if fractions else 0.0


class _DeadAtStart(Callback):
    """Measures the dead fraction of the freshly initialized model on the training inputs."""

    def __init__(self, probe: int) -> None:
        self.probe, self.value, self.x = probe, math.nan, None

    def on_train_begin(self, logs) -> None:
        self.x = self.loop.train.data.X[: self.probe]  # the probe for the trained model too
        self.value = _mean_dead(self.loop.model, self.x)


def dying_relus(ctx: StudyContext, *, base: dict, cases: dict, seeds: int = 1, probe: int = 1000) -> Outcome:
    """Train ``base`` merged with each case's override over ``seeds`` seeds.

    Reported per case: the mean fraction of dead hidden units at initialization and after training
    (measured on the first ``probe`` training inputs; a unit is dead when its derivative is 0 for
    all of them), validation accuracy, and the fraction of seeds whose loss became non-finite.
    """
    metrics: dict[str, float] = {}
    rows = []
    for label, override in cases.items():
        dead, dead0, acc, diverged = [], [], [], 0
        for s in range(ctx.seed, ctx.seed + seeds):
            start = _DeadAtStart(probe)
            run = train(merged(dict(base, name=f"{label}-seed-{s}", seed=s), override or {}), callbacks=(start,))
            dead0.append(start.value)
            if run.diverged is not None:
                diverged += 1
                continue
            dead.append(_mean_dead(run.model, start.x))
            acc.append(run.final["val_accuracy"])
        metrics[f"{label}.dead_init"] = statistics.fmean(dead0)
        metrics[f"{label}.dead"] = statistics.fmean(dead) if dead else math.nan
        metrics[f"{label}.val_accuracy"] = statistics.fmean(acc) if acc else math.nan
        metrics[f"{label}.diverged"] = diverged / seeds
        ctx.log(f"{label}: dead at init {metrics[f'{label}.dead_init']:.3f}, after {metrics[f'{label}.dead']:.3f}, "
                f"val acc {metrics[f'{label}.val_accuracy']:.3f}, diverged {diverged}/{seeds}")
        rows.append((label, str(override), metrics[f"{label}.dead_init"], metrics[f"{label}.dead"],
                     metrics[f"{label}.val_accuracy"], f"{diverged}/{seeds}"))
    from trainlab.experiments.plots import plot_bars

    fig = plot_bars({"at initialization": {k: metrics[f"{k}.dead_init"] for k in cases},
                     "after training": {k: metrics[f"{k}.dead"] for k in cases}},
                    ctx.path("dead_units.png"), ylabel="fraction of dead hidden units",
                    title="dead ReLU units: causes and fixes")
    section = Section("Dead units: causes and fixes", text=[
        f"Each case is the base run with one change, mean of {seeds} seed(s). A unit is dead when its "
        f"derivative is exactly 0 for each of the first {probe} training inputs (a dead unit passes no gradient "
        "and cannot recover by itself). Fractions are averaged over the hidden layers."],
        table=(("case", "change", "dead at init", "dead after training", "val accuracy", "diverged"), rows),
        figures=[("dead units per case", fig)])
    return Outcome(metrics, [section])
