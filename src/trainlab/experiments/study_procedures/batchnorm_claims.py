"""Batch normalization's side claims, each measured with and without it at equal settings: faster
convergence, less sensitivity to the initialization, worse with tiny batches (where layer norm is
not), a regularizing effect, and the drift of a layer's inputs ("internal covariate shift")
(notes 003, 004)."""
from __future__ import annotations

import math
import statistics

import torch
from torch import nn

from trainlab.experiments.report import Section
from trainlab.experiments.studies import Outcome, StudyContext
from trainlab.experiments.study_procedures._common import merged, resolve_data, train
from trainlab.train.callbacks import Callback


class _InputDrift(Callback):
    """Per epoch, the per-unit mean of the inputs of the ``layer``-th linear layer on a fixed probe
    batch (eval mode); the drift is the mean absolute change of those means between epochs, in units
    of their spread across the probe at the first epoch."""

    def __init__(self, layer: int, probe: int) -> None:
        self.layer, self.probe, self.means, self.scale = layer, probe, [], math.nan

    def on_epoch_end(self, epoch: int, logs) -> None:
        model = self.loop.model
        linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
        seen = {}
        handle = linears[self.layer].register_forward_pre_hook(lambda m, args: seen.__setitem__("x", args[0].detach()))
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                model(self.loop.train.data.X[: self.probe])
        finally:
            handle.remove()
            model.train(was_training)
        x = seen["x"]
        if not self.means:
            self.scale = float(x.std(0).mean()) or 1.0
        self.means.append(x.mean(0))

    @property
    def drift(self) -> float:
        steps = [float((b - a).abs().mean()) for a, b in zip(self.means, self.means[1:])]
        return statistics.fmean(steps) / self.scale if steps else math.nan


def _epochs_to(curve, target):
    return next((i + 1 for i, v in enumerate(curve) if v <= target), math.inf)


def batchnorm_claims(ctx: StudyContext, *, data: dict, base: dict, target_loss: float, init_stds: list[float],
                     small_batch: int, small_batch_lr: float, seeds: int = 1, drift_layer: int = 2, probe: int = 256) -> Outcome:
    """Train ``base`` (an MLP without normalization) and the same with ``model.norm: batch`` in each
    experiment; every pair shares seed, initialization scheme and data order."""
    cfg_data, splits = resolve_data(data, ctx.seed)
    metrics: dict[str, float] = {}
    sections = []

    def run(label: str, override: dict, callbacks=()):
        results = []
        for s in range(ctx.seed, ctx.seed + seeds):
            r = train(merged(dict(base, data=cfg_data, seed=s, name=f"{label}-seed-{s}"), override),
                      callbacks=tuple(callbacks), data=splits)
            results.append(r)
        return results

    def mean(results, key, default=math.nan):
        values = [r.final[key] for r in results if r.diverged is None]
        return statistics.fmean(values) if values else default

    # 1. convergence at equal learning rate, and the input drift of one layer
    speed_rows, curves = [], {}
    for label, override in (("plain", {}), ("batch norm", {"model": {"norm": "batch"}})):
        drift = _InputDrift(drift_layer, probe)
        results = run(label, override, callbacks=(drift,))
        r0 = results[0]
        key = "bn" if override else "plain"
        metrics[f"speed.{key}.epochs_to_target"] = statistics.fmean(_epochs_to(r.history["loss"], target_loss) for r in results)
        metrics[f"speed.{key}.val_accuracy"] = mean(results, "val_accuracy")
        metrics[f"speed.{key}.loss_gap"] = mean(results, "val_loss") - mean(results, "train_loss")
        metrics[f"drift.{key}"] = drift.drift  # of the last seed's run
        curves[label] = (range(1, len(r0.history["loss"]) + 1), r0.history["loss"])
        speed_rows.append((label, metrics[f"speed.{key}.epochs_to_target"], metrics[f"speed.{key}.val_accuracy"],
                           metrics[f"speed.{key}.loss_gap"], metrics[f"drift.{key}"]))
    from trainlab.experiments.plots import plot_panels

    fig = plot_panels([{"title": "training loss at the same learning rate", "xlabel": "epoch", "ylabel": "loss",
                        "series": curves, "logy": True, "hline": target_loss}], ctx.path("bn_speed.png"))
    sections.append(Section("Convergence, the gap and the drift of a layer's inputs", text=[
        f"The same net and learning rate with and without batch norm, mean of {seeds} seed(s). Epochs to a "
        f"training loss of {target_loss:g}; the loss gap is validation − training loss after training (batch "
        "norm's batch noise is said to regularize). The drift is how far the per-unit means of the inputs of "
        f"linear layer {drift_layer} move from one epoch to the next on a fixed probe batch, in units of their "
        "spread at the first epoch: the 'internal covariate shift' batch norm was proposed to reduce (Ioffe & "
        "Szegedy 2015). Santurkar et al. (2018) showed that batch norm helps even when such a shift is "
        "injected on purpose, and that what it does is smooth the loss landscape; the drift is reported as "
        "what it is, not as the mechanism."],
        table=(("net", "epochs to target", "val accuracy", "loss gap", "input drift per epoch"), speed_rows),
        figures=[("training loss", fig)]))

    # 2. sensitivity to the initialization scale
    init_rows, accs = [], {"plain": [], "bn": []}
    for std in init_stds:
        row = [f"N(0, {std:g}²)"]
        for key, override in (("plain", {}), ("bn", {"model": {"norm": "batch"}})):
            results = run(f"init-{std:g}-{key}", merged(override, {"init": {"weight": "normal", "std": std}}))
            acc = mean(results, "val_accuracy", default=0.0)
            accs[key].append(acc)
            metrics[f"init.{key}.std{std:g}.val_accuracy"] = acc
            row.append(acc)
        init_rows.append(tuple(row))
    for key in accs:
        metrics[f"init.{key}.trained"] = sum(a > 0.5 for a in accs[key])  # scales at which it learns at all
        metrics[f"init.{key}.worst"] = min(accs[key])
    sections.append(Section("Sensitivity to the initialization", text=[
        "Weights drawn from N(0, std²) at each scale, biases 0; validation accuracy (a diverged run counts as 0; "
        "'trains' means above 0.5). "
        "Without normalization a too small or too large scale stalls or breaks training; batch norm rescales "
        "every layer's pre-activations, so the scale of the weights matters far less."],
        table=(("initialization", "plain val accuracy", "batch norm val accuracy"), init_rows)))

    # 3. tiny batches: batch norm's statistics get noisy; layer norm does not use the batch
    batch_rows = []
    for label, norm in (("batch norm", "batch"), ("layer norm", "layer")):
        for bs in (small_batch, base["train"]["batch_size"]):
            override = {"model": {"norm": norm}, "train": {"batch_size": bs}}
            if bs == small_batch:  # a smaller step for the noisier gradient, the same for both norms
                override["optimizer"] = {"lr": small_batch_lr}
            results = run(f"{norm}-batch-{bs}", override)
            acc = mean(results, "val_accuracy", default=0.0)
            metrics[f"batch.{norm}.bs{bs}.val_accuracy"] = acc
            batch_rows.append((label, bs, acc))
    big = base["train"]["batch_size"]
    metrics["batch.batch.drop"] = metrics[f"batch.batch.bs{big}.val_accuracy"] - metrics[f"batch.batch.bs{small_batch}.val_accuracy"]
    metrics["batch.layer.drop"] = metrics[f"batch.layer.bs{big}.val_accuracy"] - metrics[f"batch.layer.bs{small_batch}.val_accuracy"]
    sections.append(Section("Small batches", text=[
        f"Batch size {small_batch} (learning rate {small_batch_lr:g}) against {big}, the same number of epochs. "
        "Batch norm normalizes with the "
        f"statistics of {small_batch} samples while training and with running averages at evaluation; layer "
        "norm normalizes each sample over its own units and does not see the batch at all."],
        table=(("normalization", "batch size", "val accuracy"), batch_rows)))
    return Outcome(metrics, sections)
