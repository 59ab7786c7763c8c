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


def activation_comparison(ctx: StudyContext, *, data: dict, base: dict, activations: dict, probe: int = 1000) -> Outcome:
    """Train the same MLP with each activation and compare accuracy, gradient norms and dead units.

    ``activations`` maps a label to ``{activation, init}`` (init: :func:`trainlab.init.init_model`
    arguments; SELU wants LeCun normal). Reported per label: validation accuracy, the gradient norm
    of every hidden layer's weights on a fixed probe batch after the first epoch and at the end
    (:class:`~trainlab.diagnostics.recorder.DiagnosticsRecorder`), and the fraction of dead units
    over the probe set (:func:`dead_fractions`).
    """
    from trainlab.diagnostics.recorder import DiagnosticsRecorder
    from trainlab.experiments.plots import plot_bars, plot_panels

    cfg_data, splits = resolve_data(data, ctx.seed)
    metrics, rows = {}, []
    grad_bars, dead_bars, acc_curves = {}, {}, {}
    for label, spec in activations.items():
        cfg = dict(base, name=f"act-{label}", seed=ctx.seed, data=cfg_data,
                   model=dict(base.get("model", {}), activation=spec["activation"]))
        rec = DiagnosticsRecorder(every=1, probe=256, spectra=False, seed=ctx.seed)
        run = train(cfg, callbacks=(InitAtStart(spec.get("init", {"weight": "auto"}), ctx.seed), rec), data=splits)
        if run.diverged is not None:
            raise RuntimeError(f"{label} diverged: {run.diverged}")
        last = rec.records[-1]
        first_epoch = rec.records[0]
        hidden_layers = [n for n in last["layers"] if n != "out"]
        g_end = [last["layers"][n]["grad_norm"] for n in hidden_layers]
        g_start = [first_epoch["layers"][n]["grad_norm"] for n in hidden_layers]
        X = (splits[0] if splits else None).X[:probe] if splits else None
        dead = dead_fractions(run.model, X) if X is not None else {}
        dead_all = sum(dead.values()) / max(len(dead), 1)
        metrics[f"{label}.val_accuracy"] = run.final["val_accuracy"]
        metrics[f"{label}.best_val_accuracy"] = max(run.history["val_accuracy"])
        metrics[f"{label}.dead_frac"] = dead_all
        metrics[f"{label}.dead_frac_max_layer"] = max(dead.values()) if dead else math.nan
        metrics[f"{label}.first_layer_grad_norm"] = g_end[0]
        metrics[f"{label}.first_over_last_grad"] = g_end[0] / g_end[-1] if g_end[-1] > 0 else float("inf")
        metrics[f"{label}.mean_grad_norm"] = sum(g_end) / len(g_end)
        metrics[f"{label}.first_epoch_mean_grad_norm"] = sum(g_start) / len(g_start)
        grad_bars[label] = {f"layer {i + 1}": g for i, g in enumerate(g_end)}
        dead_bars[label] = {"dead units": dead_all}
        acc_curves[label] = (range(1, len(run.history["val_accuracy"]) + 1), run.history["val_accuracy"])
        rows.append((label, spec["activation"], str(spec.get("init", "auto")), run.final["val_accuracy"],
                     ", ".join(f"{g:.3g}" for g in g_end), dead_all))
        ctx.log(f"{label}: val acc {run.final['val_accuracy']:.4f}, grads {[round(g, 4) for g in g_end]}, dead {dead_all:.3f}")
    fig_acc = plot_panels([{"title": "validation accuracy", "xlabel": "epoch", "ylabel": "accuracy",
                            "series": acc_curves}], ctx.path("activations_accuracy.png"))
    fig_grad = plot_bars(grad_bars, ctx.path("activations_grad_norms.png"), ylabel="‖∂L/∂W‖ on the probe batch",
                         title="gradient norm per hidden layer (end of training)", logy=True)
    fig_dead = plot_bars(dead_bars, ctx.path("activations_dead.png"), ylabel="fraction of hidden units",
                         title="dead units (f'(z) = 0 on every probe input)")
    section = Section("Activations compared", text=[
        f"Same MLP, data order and optimizer for each activation; gradient norms on a fixed probe batch "
        f"of 256 training images (eval mode); dead units over {probe} training images."],
        table=(("label", "activation", "init", "val accuracy", "grad norm per hidden layer", "dead fraction"), rows),
        figures=[("validation accuracy", fig_acc), ("gradient norms", fig_grad), ("dead units", fig_dead)])
    return Outcome(metrics, [section])
