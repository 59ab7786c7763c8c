"""ReLU, Leaky ReLU, PReLU, ELU and SELU compared on MNIST (notes 002, 004)."""
from __future__ import annotations

import math

import torch
from torch import nn

from trainlab.experiments.report import Section
from trainlab.experiments.studies import Outcome, StudyContext
from trainlab.experiments.study_procedures._common import resolve_data, train
from trainlab.experiments.study_procedures.initialization import InitAtStart


def dead_fractions(model: nn.Module, x: torch.Tensor) -> dict[str, float]:
    """Per activation module: the fraction of units whose derivative f'(z) is exactly 0 for every
    input of ``x`` (a dead unit passes no gradient to anything before it).

    f'(z) is taken by autograd from the module itself, so the definition is the same for every
    activation: a ReLU unit is dead when z ≤ 0 on all inputs; a leaky unit never is (slope α ≠ 0).
    """
    from trainlab.diagnostics.layers import activation_layers

    found: dict[str, torch.Tensor] = {}
    handles = []
    inside = [False]  # the hook calls the module again; that call must not re-enter the hook

    def hook(name):
        def fn(module, inputs, output):
            if inside[0]:
                return
            z = inputs[0].detach().requires_grad_(True)
            inside[0] = True
            try:
                with torch.enable_grad():
                    (d,) = torch.autograd.grad(module(z).sum(), z)
            finally:
                inside[0] = False
            alive = (d != 0).reshape(len(z), -1).any(0)
            found[name] = alive if name not in found else (found[name] | alive)
        return fn

    for name, m, _ in activation_layers(model):
        handles.append(m.register_forward_hook(hook(name)))
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(x)
    finally:
        model.train(was)
        for h in handles:
            h.remove()
    return {name: float((~alive).float().mean()) for name, alive in found.items()}


def activation_comparison(ctx: StudyContext, *, data: dict, base: dict, activations: dict, probe: int = 1000,
                          seeds: list[int] | None = None, baseline: str = "relu",
                          budget: dict | None = None) -> Outcome:
    """Train the same MLP with each activation and compare accuracy, gradient norms and dead units.

    ``activations`` maps a label to ``{activation, init}`` (init: :func:`trainlab.init.init_model`
    arguments; SELU wants LeCun normal). Reported per label: validation accuracy, the gradient norm
    of every hidden layer's weights on a fixed probe batch after the first epoch and at the end
    (:class:`~trainlab.diagnostics.recorder.DiagnosticsRecorder`), and the fraction of dead units
    over the probe set (:func:`dead_fractions`).

    ``seeds`` (default: the study's seed alone) trains every activation once per seed, on the same
    data subset; ``<label>.<metric>`` is then the mean over the seeds, ``<label>.<metric>_min`` and
    ``_max`` its extremes, and the paired comparisons with ``baseline`` (ReLU) are per seed:

        <label>.acc_minus_baseline   = mean over seeds of 100 · (acc − acc_baseline)   (points)
        <label>.acc_wins             = number of seeds where acc > acc_baseline
        <label>.grad_ratio           = mean over seeds of mean-layer grad norm / the baseline's
        <label>.grad_larger_seeds    = number of seeds where that ratio > 1

    with the gradient norms at the end of training (``grad_ratio``), at initialization
    (``init_grad_ratio``: the activation's own effect on backpropagation, before training moves
    the two nets apart) and averaged over every epoch's record (``epochs_grad_ratio``).

    ``budget`` (``{n_train, epochs}``) trains the baseline once more on ``n_train`` images for
    ``epochs`` epochs (same validation set) and reports the first epoch whose validation accuracy
    reaches 97 % and 98 % (``budget.epochs_to_97``, ``budget.epochs_to_98``; 0 when never reached)
    and ``budget.val_accuracy_at_<e>`` for the study's own epoch count: what the notes' 97–98 %
    costs in data and epochs.
    """
    from trainlab.diagnostics.recorder import DiagnosticsRecorder
    from trainlab.experiments.plots import plot_bars, plot_panels

    cfg_data, splits = resolve_data(data, ctx.seed)
    seeds = list(seeds) if seeds else [ctx.seed]
    metrics, rows = {}, []
    per_seed: dict[str, dict[str, list[float]]] = {}
    grad_bars, dead_bars, acc_curves = {}, {}, {}
    for seed in seeds:
        for label, spec in activations.items():
            cfg = dict(base, name=f"act-{label}", seed=seed, data=cfg_data,
                       model=dict(base.get("model", {}), activation=spec["activation"]))
            rec = DiagnosticsRecorder(every=1, probe=256, spectra=False, seed=seed)
            run = train(cfg, callbacks=(InitAtStart(spec.get("init", {"weight": "auto"}), seed), rec), data=splits)
            if run.diverged is not None:
                raise RuntimeError(f"{label} (seed {seed}) diverged: {run.diverged}")
            last = rec.records[-1]
            first_epoch = rec.records[0]
            hidden_layers = [n for n in last["layers"] if n != "out"]
            g_end = [last["layers"][n]["grad_norm"] for n in hidden_layers]
            g_start = [first_epoch["layers"][n]["grad_norm"] for n in hidden_layers]
            X = splits[0].X[:probe] if splits else None
            dead = dead_fractions(run.model, X) if X is not None else {}
            dead_all = sum(dead.values()) / max(len(dead), 1)
            got = {"val_accuracy": run.final["val_accuracy"],
                   "best_val_accuracy": max(run.history["val_accuracy"]),
                   "dead_frac": dead_all,
                   "dead_frac_max_layer": max(dead.values()) if dead else math.nan,
                   "first_layer_grad_norm": g_end[0],
                   "first_over_last_grad": g_end[0] / g_end[-1] if g_end[-1] > 0 else float("inf"),
                   "mean_grad_norm": sum(g_end) / len(g_end),
                   "first_epoch_mean_grad_norm": sum(g_start) / len(g_start),
                   # at initialization (same seed, so the same draw up to the init's gain) the
                   # activation's own effect on backpropagation shows without training's noise
                   "init_mean_grad_norm": _mean_grad(rec.initial, hidden_layers),
                   # averaged over every epoch's record: one probe batch at one step is noisy
                   "epochs_mean_grad_norm": sum(_mean_grad(r, hidden_layers) for r in rec.records) / len(rec.records)}
            for k, v in got.items():
                per_seed.setdefault(label, {}).setdefault(k, []).append(v)
            if len(seeds) > 1:
                metrics[f"{label}.seed{seed}.val_accuracy"] = got["val_accuracy"]
                metrics[f"{label}.seed{seed}.mean_grad_norm"] = got["mean_grad_norm"]
            if seed == seeds[0]:
                grad_bars[label] = {f"layer {i + 1}": g for i, g in enumerate(g_end)}
                dead_bars[label] = {"dead units": dead_all}
                acc_curves[label] = (range(1, len(run.history["val_accuracy"]) + 1), run.history["val_accuracy"])
            rows.append((label if len(seeds) == 1 else f"{label} (seed {seed})", spec["activation"],
                         str(spec.get("init", "auto")), got["val_accuracy"],
                         ", ".join(f"{g:.3g}" for g in g_end), dead_all))
            ctx.log(f"{label} seed {seed}: val acc {got['val_accuracy']:.4f}, grads {[round(g, 4) for g in g_end]}, "
                    f"dead {dead_all:.3f}")
    for label, got in per_seed.items():
        for k, values in got.items():
            metrics[f"{label}.{k}"] = sum(values) / len(values)
            metrics[f"{label}.{k}_min"] = min(values)
            metrics[f"{label}.{k}_max"] = max(values)
    compare = []
    if baseline in per_seed:
        b = per_seed[baseline]
        for label, got in per_seed.items():
            diffs = [100 * (a - r) for a, r in zip(got["val_accuracy"], b["val_accuracy"])]
            metrics[f"{label}.acc_minus_baseline"] = sum(diffs) / len(diffs)
            metrics[f"{label}.acc_wins"] = sum(d > 0 for d in diffs)
            for prefix, key in (("", "mean_grad_norm"), ("init_", "init_mean_grad_norm"),
                                ("epochs_", "epochs_mean_grad_norm")):
                ratios = [g / r for g, r in zip(got[key], b[key])]
                metrics[f"{label}.{prefix}grad_ratio"] = sum(ratios) / len(ratios)
                metrics[f"{label}.{prefix}grad_larger_seeds"] = sum(r > 1 for r in ratios)
            ratios = [g / r for g, r in zip(got["epochs_mean_grad_norm"], b["epochs_mean_grad_norm"])]
            init_ratios = [g / r for g, r in zip(got["init_mean_grad_norm"], b["init_mean_grad_norm"])]
            compare.append((label, len(seeds), metrics[f"{label}.val_accuracy"], metrics[f"{label}.val_accuracy_min"],
                            metrics[f"{label}.val_accuracy_max"], ", ".join(f"{d:+.2f}" for d in diffs),
                            ", ".join(f"{r:.2f}" for r in init_ratios), ", ".join(f"{r:.2f}" for r in ratios)))
    sections = []
    if budget:
        sections.append(_budget_run(ctx, data, base, activations[baseline], baseline, budget, metrics))
    fig_acc = plot_panels([{"title": "validation accuracy", "xlabel": "epoch", "ylabel": "accuracy",
                            "series": acc_curves}], ctx.path("activations_accuracy.png"))
    fig_grad = plot_bars(grad_bars, ctx.path("activations_grad_norms.png"), ylabel="‖∂L/∂W‖ on the probe batch",
                         title="gradient norm per hidden layer (end of training)", logy=True)
    fig_dead = plot_bars(dead_bars, ctx.path("activations_dead.png"), ylabel="fraction of hidden units",
                         title="dead units (f'(z) = 0 on every probe input)")
    section = Section("Activations compared", text=[
        f"Same MLP, data order and optimizer for each activation; gradient norms on a fixed probe batch "
        f"of 256 training images (eval mode); dead units over {probe} training images. Seeds: {seeds} "
        f"(figures: seed {seeds[0]})."],
        table=(("label", "activation", "init", "val accuracy", "grad norm per hidden layer", "dead fraction"), rows),
        figures=[("validation accuracy", fig_acc), ("gradient norms", fig_grad), ("dead units", fig_dead)])
    out = [section]
    if compare:
        out.append(Section(f"Against {baseline}, seed by seed", text=[
            f"Accuracy differences in points of validation accuracy and ratios of the mean hidden-layer "
            f"gradient norm on the probe batch (at initialization, and averaged over the epochs of "
            f"training), each against {baseline} trained with the same seed."],
            table=(("label", "seeds", "mean val acc", "min", "max", f"− {baseline} (points)",
                    f"grad norm / {baseline}'s at init", f"… during training"), compare)))
    return Outcome(metrics, out + sections)


def _mean_grad(record: dict, layers: list[str]) -> float:
    """The mean over ``layers`` of a diagnostics record's weight-gradient norms."""
    return sum(record["layers"][n]["grad_norm"] for n in layers) / len(layers)


def _budget_run(ctx: StudyContext, data: dict, base: dict, spec: dict, label: str, budget: dict,
                metrics: dict) -> Section:
    """Train ``label`` on ``budget['n_train']`` images for ``budget['epochs']`` epochs; record when the
    validation accuracy first reaches 97 % and 98 % (the notes' expected range)."""
    n_train, epochs = int(budget["n_train"]), int(budget["epochs"])
    cfg_data, (train_ds, val_ds, test_ds) = resolve_data(dict(data, n_train=n_train), ctx.seed)
    # the same validation set as the comparison: only the training set grows
    _, (_, val_same, _) = resolve_data(data, ctx.seed)
    cfg = dict(base, name=f"act-{label}-budget", seed=ctx.seed, data=cfg_data,
               model=dict(base.get("model", {}), activation=spec["activation"]),
               train=dict(base.get("train", {}), epochs=epochs))
    run = train(cfg, callbacks=(InitAtStart(spec.get("init", {"weight": "auto"}), ctx.seed),),
                data=(train_ds, val_same, test_ds))
    if run.diverged is not None:
        raise RuntimeError(f"the budget run diverged: {run.diverged}")
    acc = run.history["val_accuracy"]
    first = lambda t: next((i + 1 for i, a in enumerate(acc) if a >= t), 0)  # noqa: E731
    study_epochs = int(base.get("train", {}).get("epochs", 20))
    metrics["budget.n_train"] = len(train_ds)
    metrics["budget.epochs"] = len(acc)
    metrics["budget.epochs_to_97"] = first(0.97)
    metrics["budget.epochs_to_98"] = first(0.98)
    metrics["budget.best_val_accuracy"] = max(acc)
    metrics["budget.val_accuracy"] = acc[-1]
    if study_epochs <= len(acc):
        metrics[f"budget.val_accuracy_at_{study_epochs}"] = acc[study_epochs - 1]
    ctx.log(f"budget {label}: {len(train_ds)} images, val accuracy per epoch {[round(a, 4) for a in acc]}")
    return Section(f"What 97–98 % costs ({label})", text=[
        f"{label} trained on {len(train_ds)} training images for {len(acc)} epochs (the comparison above: "
        f"{data.get('n_train', 'all')} images, {study_epochs} epochs), same validation set. First epoch at 97 %: "
        f"{metrics['budget.epochs_to_97'] or 'never'}; at 98 %: {metrics['budget.epochs_to_98'] or 'never'}."],
        table=(("epoch", "val accuracy"), [(i + 1, a) for i, a in enumerate(acc)]))
