"""Regularization studies: L1 sparsity, dropout/DropConnect and the generalization gap, early
stopping, and L2 against decoupled weight decay (notes 000, 001, 002, 003, 004)."""
from __future__ import annotations

import math

import torch

from trainlab.experiments.report import Section
from trainlab.experiments.studies import Outcome, StudyContext
from trainlab.experiments.study_procedures._common import flat_weights, resolve_data, train


def _runs(ctx: StudyContext, base: dict, variants: dict, splits, callbacks=lambda label: ()) -> dict:
    """Train ``base`` merged with each variant (same seed: same initialization and data order)."""
    from trainlab.experiments.study_procedures._common import merged

    out = {}
    for label, override in variants.items():
        cfg = merged(dict(base, name=f"{base.get('name', 'run')}-{label}", seed=ctx.seed), override or {})
        run = train(cfg, callbacks=tuple(callbacks(label)), data=splits)
        if run.diverged is not None:
            raise RuntimeError(f"{label}: training diverged ({run.diverged})")
        out[label] = run
        ctx.log(f"{label}: " + ", ".join(f"{k} {v:.4f}" for k, v in run.final.items()))
    return out


def l1_sparsity(ctx: StudyContext, *, data: dict, base: dict, variants: dict, small: float = 1e-3) -> Outcome:
    """Train the same model under each regularizer and count the weights that are exactly zero.

    ``variants`` maps a label to a config override (``{transforms: [{name: l1_proximal, weight: ...}]}``,
    ...). Reported per label: the fraction of weight-matrix entries that are exactly 0, the fraction
    with |w| < ``small``, and validation accuracy.
    """
    cfg_data, splits = resolve_data(data, ctx.seed)
    runs = _runs(ctx, dict(base, data=cfg_data), variants, splits)
    metrics, rows, hist = {}, [], {}
    for label, run in runs.items():
        w = flat_weights(run.model)
        zero = float((w == 0).float().mean())
        near = float((w.abs() < small).float().mean())
        metrics[f"{label}.zero_frac"] = zero
        metrics[f"{label}.small_frac"] = near
        metrics[f"{label}.val_accuracy"] = run.final.get("val_accuracy", math.nan)
        metrics[f"{label}.weight_l1"] = float(w.abs().sum())
        rows.append((label, str(variants[label]), zero, near, float(w.abs().mean()), metrics[f"{label}.val_accuracy"]))
        hist[label] = w.abs().clamp_min(1e-8).log10().numpy()
    from trainlab.experiments.plots import plot_bars

    fig = plot_bars({"exactly 0": {k: metrics[f"{k}.zero_frac"] for k in runs},
                     f"|w| < {small:g}": {k: metrics[f"{k}.small_frac"] for k in runs}},
                    ctx.path("sparsity.png"), ylabel="fraction of weights", title="sparsity of the weights")
    section = Section("Exact zeros under L1 and L2", text=[
        "The same net, initialization and data order under each penalty; fractions over every entry of "
        "every weight matrix (biases excluded)."],
        table=(("run", "regularizer", "exactly 0", f"|w| < {small:g}", "mean |w|", "val accuracy"), rows),
        figures=[("fraction of zero and near-zero weights", fig)])
    return Outcome(metrics, [section])


def generalization_gap(ctx: StudyContext, *, data: dict, base: dict, variants: dict) -> Outcome:
    """Train an over-parameterized net on little data with and without each regularizer and measure
    the train/validation gap (loss and accuracy, both measured in eval mode after training)."""
    cfg_data, splits = resolve_data(data, ctx.seed)
    runs = _runs(ctx, dict(base, data=cfg_data), variants, splits)
    metrics, rows, curves = {}, [], {}
    for label, run in runs.items():
        f = run.final
        metrics[f"{label}.loss_gap"] = f["val_loss"] - f["train_loss"]
        metrics[f"{label}.accuracy_gap"] = f["train_accuracy"] - f["val_accuracy"]
        metrics[f"{label}.val_accuracy"] = f["val_accuracy"]
        metrics[f"{label}.train_accuracy"] = f["train_accuracy"]
        metrics[f"{label}.best_val_loss"] = min(run.history["val_loss"])
        rows.append((label, f["train_loss"], f["val_loss"], metrics[f"{label}.loss_gap"], f["train_accuracy"],
                     f["val_accuracy"], metrics[f"{label}.accuracy_gap"]))
        epochs = range(1, len(run.history["loss"]) + 1)
        curves[label] = (epochs, run.history["val_loss"])
    from trainlab.experiments.plots import plot_panels

    fig = plot_panels([{"title": "validation loss per epoch", "xlabel": "epoch", "ylabel": "val loss",
                        "series": curves}], ctx.path("gap_curves.png"))
    section = Section("Train/validation gap", text=[
        "Train and validation numbers are measured after training, in eval mode (no dropout), on the "
        "whole sets. The notes' rule 2: a large gap between training and validation loss signals overfitting."],
        table=(("run", "train loss", "val loss", "loss gap", "train acc", "val acc", "accuracy gap"), rows),
        figures=[("validation loss", fig)])
    return Outcome(metrics, [section])


def early_stopping(ctx: StudyContext, *, data: dict, base: dict, epochs: int, early_stopping: dict) -> Outcome:
    """Train once for ``epochs`` (the reference) and once with :class:`~trainlab.train.callbacks.EarlyStopping`.

    The two runs share seed, initialization and data order, so the early-stopped run's history is
    a prefix of the reference's. Reported: the epoch of the reference's validation minimum, the
    epoch the early-stopped run stopped at and the one it restored, and the validation loss of the
    restored weights next to the best one seen.
    """
    from trainlab.train.callbacks import EarlyStopping

    cfg_data, splits = resolve_data(data, ctx.seed)
    cfg = dict(base, data=cfg_data, seed=ctx.seed, train=dict(base.get("train", {}), epochs=epochs))
    ref = train(dict(cfg, name="reference"), data=splits)
    es = EarlyStopping(**early_stopping)
    run = train(dict(cfg, name="early-stopped"), callbacks=(es,), data=splits)
    if ref.diverged or run.diverged:
        raise RuntimeError("training diverged; lower the learning rate")
    monitor = early_stopping.get("monitor", "val_loss")
    ref_curve = ref.history[monitor]
    ref_best = min(range(len(ref_curve)), key=ref_curve.__getitem__)
    es_curve = run.history[monitor]
    es_best = min(range(len(es_curve)), key=es_curve.__getitem__)
    stopped = len(es_curve) - 1  # 0-based index of the last epoch run
    # the runner measures the final numbers after training, i.e. on the restored weights
    restored_val = run.final["val_loss"] if monitor == "val_loss" else run.final[monitor]
    metrics = {
        "reference.best_epoch": ref_best + 1,
        "reference.best_val_loss": ref_curve[ref_best],
        "reference.final_val_loss": ref_curve[-1],
        "reference.epochs": len(ref_curve),
        "early.stopped_epoch": stopped + 1,
        "early.best_epoch": es_best + 1,
        "early.best_val_loss": es_curve[es_best],
        "early.restored_val_loss": restored_val,
        "early.restored_minus_best": abs(restored_val - es_curve[es_best]),
        "early.epochs_after_best": stopped - es_best,
        "early.stop_minus_reference_best": stopped - ref_best,
        "early.epochs_saved": len(ref_curve) - len(es_curve),
        "prefix_max_diff": max(abs(a - b) for a, b in zip(es_curve, ref_curve)),
    }
    from trainlab.experiments.plots import plot_panels

    fig = plot_panels([{"title": "validation loss", "xlabel": "epoch", "ylabel": monitor,
                        "series": {"reference (no early stopping)": (range(1, len(ref_curve) + 1), ref_curve),
                                   "early-stopped run": (range(1, len(es_curve) + 1), es_curve),
                                   "training loss (reference)": (range(1, len(ref_curve) + 1), ref.history["loss"])},
                        "hline": ref_curve[ref_best]}], ctx.path("early_stopping.png"))
    section = Section("Early stopping", text=[
        f"EarlyStopping({early_stopping}). The reference run's {monitor} is lowest after epoch {ref_best + 1}; "
        f"the early-stopped run stopped after epoch {stopped + 1} and restored the weights of epoch {es_best + 1} "
        f"({monitor} {restored_val:.4f}, against {ref_curve[-1]:.4f} after all {len(ref_curve)} epochs)."],
        figures=[("validation loss with and without early stopping", fig)])
    return Outcome(metrics, [section])


def weight_decay_forms(ctx: StudyContext, *, data: dict, base: dict, pairs: dict) -> Outcome:
    """Train pairs of runs that differ only in how weight decay enters, and measure how far apart
    their weights end up.

    ``pairs`` maps a pair label to ``{coupled: override, decoupled: override}``: L2 inside the
    gradient (``g + λθ``, then the optimizer's scaling) against decoupled decay (``θ ← θ − lr·λ·θ``
    beside the optimizer's step). Reported per pair: the relative distance ‖θ_c − θ_d‖/‖θ_c‖ and
    both weight norms.
    """
    from trainlab.experiments.study_procedures._common import merged

    cfg_data, splits = resolve_data(data, ctx.seed)
    metrics, rows = {}, []
    for pair, sides in pairs.items():
        models = {}
        for side in ("coupled", "decoupled"):
            cfg = merged(dict(base, data=cfg_data, seed=ctx.seed, name=f"{pair}-{side}"), sides[side])
            run = train(cfg, data=splits)
            if run.diverged is not None:
                raise RuntimeError(f"{pair}/{side} diverged: {run.diverged}")
            models[side] = torch.cat([p.detach().flatten() for p in run.model.parameters()])
            metrics[f"{pair}.{side}.val_accuracy"] = run.final.get("val_accuracy", math.nan)
            metrics[f"{pair}.{side}.weight_norm"] = float(models[side].norm())
        dist = float((models["coupled"] - models["decoupled"]).norm() / models["coupled"].norm())
        metrics[f"{pair}.relative_distance"] = dist
        rows.append((pair, str(sides["coupled"]), str(sides["decoupled"]), dist,
                     metrics[f"{pair}.coupled.weight_norm"], metrics[f"{pair}.decoupled.weight_norm"]))
        ctx.log(f"{pair}: relative distance {dist:.3g}")
    section = Section("L2 penalty against decoupled weight decay", text=[
        "Each pair starts from the same weights and sees the same batches; only the form of the decay differs."],
        table=(("pair", "coupled (L2 in the gradient)", "decoupled", "‖θ_c − θ_d‖ / ‖θ_c‖", "‖θ_c‖", "‖θ_d‖"), rows))
    return Outcome(metrics, [section])
