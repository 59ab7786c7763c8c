"""Batch, mini-batch and stochastic gradient descent: one loop, three batch sizes (notes 002)."""
from __future__ import annotations

import statistics
import time

from trainlab.experiments.report import Section
from trainlab.experiments.studies import Outcome, StudyContext
from trainlab.experiments.study_procedures._common import StepLosses, train


def gd_variants(ctx: StudyContext, *, data: dict, model: dict, optimizer: dict, epochs: int,
                batch_sizes: dict, shuffle: bool = True, step_plot_limit: int = 300) -> Outcome:
    """Train the same model from the same initialization with each batch size and compare.

    ``batch_sizes`` maps a label to ``"full"`` (batch GD: one update per epoch), ``k`` (mini-batch
    GD: ⌈n/k⌉ updates) or ``1`` (stochastic GD: n updates). Reported per label: updates per epoch,
    the final training loss (evaluated on the whole set after training), the fraction of steps
    whose mini-batch loss rose above the previous step's (how jumpy the curve is), validation
    accuracy when the data has a validation part, and seconds.
    """
    metrics: dict[str, float] = {}
    epoch_curves, step_curves, time_curves = {}, {}, {}
    rows = []
    for label, bs in batch_sizes.items():
        cfg = {"name": f"gd-{label}", "seed": ctx.seed, "data": data, "model": model, "optimizer": optimizer,
               "train": {"epochs": epochs, "batch_size": bs, "shuffle": shuffle}}
        steps = StepLosses()
        t0 = time.perf_counter()
        run = train(cfg, callbacks=(steps,))
        seconds = time.perf_counter() - t0
        if run.diverged is not None:
            raise RuntimeError(f"{label}: training diverged ({run.diverged}); lower optimizer.lr in the study")
        ups = steps.steps_per_epoch[0]
        losses = steps.losses
        rises = sum(b > a for a, b in zip(losses, losses[1:])) / max(len(losses) - 1, 1)
        final_loss = run.final["train_loss"]
        metrics[f"{label}.updates_per_epoch"] = ups
        metrics[f"{label}.final_loss"] = final_loss
        metrics[f"{label}.step_rise_fraction"] = rises
        metrics[f"{label}.seconds"] = seconds
        # the loop's own per-epoch clock (training steps and validation, no set-up); the median,
        # because the first epoch pays one-off costs and a shared CPU adds outliers
        metrics[f"{label}.seconds_per_epoch"] = statistics.median(run.history["time"])
        if "val_accuracy" in run.final:
            metrics[f"{label}.val_accuracy"] = run.final["val_accuracy"]
        epoch_curves[f"{label} (batch {bs})"] = (range(1, epochs + 1), run.history["loss"])
        n_show = min(len(losses), step_plot_limit)
        step_curves[f"{label}"] = (range(1, n_show + 1), losses[:n_show])
        times = [sum(run.history["time"][: i + 1]) for i in range(epochs)]
        time_curves[f"{label}"] = (times, run.history["loss"])
        rows.append((label, str(bs), ups, final_loss, rises, run.final.get("val_accuracy", float("nan")), seconds))
        ctx.log(f"{label}: batch {bs}, {ups} updates/epoch, final loss {final_loss:.4g}, rises {rises:.2f}")
    from trainlab.experiments.plots import plot_panels

    fig = plot_panels([
        {"title": "training loss per epoch", "xlabel": "epoch", "ylabel": "mean loss of the epoch's steps",
         "logy": True, "series": epoch_curves},
        {"title": f"mini-batch loss of each update (first {step_plot_limit})", "xlabel": "update",
         "ylabel": "loss of the update's batch", "logy": True, "series": step_curves},
        {"title": "training loss against wall time", "xlabel": "seconds", "ylabel": "loss", "logy": True,
         "series": time_curves},
    ], ctx.path("gd_variants.png"))
    section = Section("Batch vs mini-batch vs stochastic gradient descent",
                      text=["Same model, same initialization (same seed), same learning rate; only the "
                            "number of samples per update changes."],
                      table=(("variant", "batch size", "updates / epoch", "final train loss",
                              "fraction of rising steps", "val accuracy", "seconds"), rows),
                      figures=[("loss per epoch, per update, and against time", fig)])
    return Outcome(metrics, [section])
