"""Deep linear nets with W = a·I: exploding (a > 1) and vanishing (a < 1) signals, and clipping."""
from __future__ import annotations

import math

import torch
from torch import nn

from trainlab.data.dataset import Dataset
from trainlab.experiments.report import Section
from trainlab.experiments.studies import Outcome, StudyContext
from trainlab.experiments.study_procedures._common import StepLosses, train
from trainlab.nn.models import MLP
from trainlab.train.callbacks import Callback


def _scaled_identity_(model: nn.Module, scale: float) -> None:
    # the notes' construction: every layer W[l] = scale·I, b = 0 (square layers only)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Linear):
                m.weight.copy_(scale * torch.eye(m.out_features, m.in_features, dtype=m.weight.dtype))
                if m.bias is not None:
                    m.bias.zero_()


class _ScaledIdentityAtStart(Callback):
    """Puts W = scale·I into every layer before the first step (the runner builds the model)."""

    def __init__(self, scale: float):
        self.scale = scale

    def on_train_begin(self, logs):
        _scaled_identity_(self.loop.model, self.scale)


def _linear_net(width: int, depth: int, dtype=torch.float64) -> MLP:
    return MLP(width, hidden=[width] * (depth - 1), out_features=width, activation="identity",
               head="linear").to(dtype)


def deep_linear(ctx: StudyContext, *, scales: list[float], depths: list[int], width: int = 2,
                train_depth: int = 20, train_scale: float = 1.5, n_samples: int = 256, lr: float = 0.01,
                epochs: int = 20, batch_size: int = 32, clip: dict | None = None) -> Outcome:
    """Forward and backward signals of ŷ = W[L]···W[1]x with W[l] = a·I, then training with clipping.

    Part 1 (notes 001): for x = (1, …, 1) the output is ŷ = a^L·x and the gradient of Σŷ with respect
    to the first layer's weights has every entry a^(L−1): both grow geometrically for a > 1 and shrink
    for a < 1. We compute them with trainlab's MLP (identity activations, float64) and report the
    relative error against the closed form and the per-layer growth factor fitted over depth.

    Part 2: train a ``train_depth``-layer linear net started at W = ``train_scale``·I to map x ↦ x
    (mean squared error, SGD at ``lr``), once plain and once with the gradient transformation ``clip``
    (e.g. ``{name: clip_global_norm, max_norm: 1.0}``) chained before the step.
    """
    metrics: dict[str, float] = {}
    rows, sections = [], []
    series_out, series_grad = {}, {}
    for a in scales:
        outs, grads = [], []
        for L in depths:
            net = _linear_net(width, L)
            _scaled_identity_(net, a)
            x = torch.ones(1, width, dtype=torch.float64)
            y = net(x)
            y.sum().backward()
            first = net.blocks[0].linear.weight if L > 1 else net.out.weight
            outs.append(float(y.detach()[0, 0]))
            grads.append(float(first.grad.abs().max()))
            rows.append((a, L, outs[-1], a ** L, float(first.grad[0, 0]), a ** (L - 1)))
        out_err = max(abs(o - a ** L) / a ** L for o, L in zip(outs, depths))
        grad_err = max(abs(g - a ** (L - 1)) / a ** (L - 1) for g, L in zip(grads, depths))
        # least-squares slope of log|ŷ| against depth: the per-layer growth factor
        n = len(depths)
        mx, my = sum(depths) / n, sum(math.log(o) for o in outs) / n
        slope = sum((L - mx) * (math.log(o) - my) for L, o in zip(depths, outs)) / sum((L - mx) ** 2 for L in depths)
        tag = f"a={a:g}"
        metrics[f"{tag}.output_rel_error"] = out_err
        metrics[f"{tag}.grad_rel_error"] = grad_err
        metrics[f"{tag}.growth_per_layer"] = math.exp(slope)
        metrics[f"{tag}.output_at_max_depth"] = outs[-1]
        metrics[f"{tag}.first_layer_grad_at_max_depth"] = grads[-1]
        series_out[tag] = (depths, outs)
        series_grad[tag] = (depths, grads)

    # part 2: training the exploding net, with and without clipping
    g = torch.Generator().manual_seed(ctx.seed)
    X = torch.randn(n_samples, width, generator=g)
    data = (Dataset(X, X.clone(), "identity-map"), Dataset(X[: n_samples // 4], X[: n_samples // 4].clone(), "val"))
    base = {"name": "deep-linear", "seed": ctx.seed, "data": {"name": "line"},
            "model": {"kind": "mlp", "hidden": [width] * (train_depth - 1), "activation": "identity"},
            "loss": {"name": "mse"}, "optimizer": {"name": "sgd", "lr": lr},
            "train": {"epochs": epochs, "batch_size": batch_size}}
    curves, train_rows = {}, []
    for label, transforms in (("plain", []), ("clipped", [clip] if clip else [])):
        if label == "clipped" and not clip:
            continue
        cfg = dict(base, transforms=transforms)
        steps = StepLosses()
        run = train(cfg, callbacks=(_ScaledIdentityAtStart(train_scale), steps), data=data)
        first = steps.losses[0] if steps.losses else math.nan
        losses = steps.losses
        final = run.final.get("train_loss", math.inf) if run.diverged is None else math.inf
        finite = [v for v in losses if math.isfinite(v)]
        metrics[f"{label}.diverged"] = float(run.diverged is not None or not math.isfinite(final) or final > first)
        metrics[f"{label}.initial_loss"] = first
        metrics[f"{label}.final_loss"] = final
        metrics[f"{label}.max_loss"] = max(finite) if finite else math.inf
        metrics[f"{label}.final_over_initial"] = final / first if math.isfinite(final) else math.inf
        curves[label] = (range(1, len(finite) + 1), finite)
        train_rows.append((label, "yes" if metrics[f"{label}.diverged"] else "no", first, max(finite) if finite else math.inf,
                           final, str(run.diverged) if run.diverged else ""))
        ctx.log(f"{label}: initial {first:.3g}, final {final:.3g}, diverged {bool(metrics[f'{label}.diverged'])}")

    from trainlab.experiments.plots import plot_panels

    fig = plot_panels([
        {"title": "output ŷ₁ for x = (1, 1)", "xlabel": "depth L", "ylabel": "ŷ₁ (log)", "logy": True,
         "series": series_out, "markers": True},
        {"title": "|∂Σŷ/∂W[1]| (each entry)", "xlabel": "depth L", "ylabel": "gradient (log)", "logy": True,
         "series": series_grad, "markers": True},
    ], ctx.path("deep_linear_signals.png"))
    sections.append(Section("Signals through W = a·I", text=[
        "ŷ = W[L]···W[1]x with every W[l] = a·I and x = (1, 1): the closed form is ŷ = a^L·x, and "
        "the gradient of Σŷ with respect to W[1] has every entry a^(L−1) (notes 001)."],
        table=(("a", "depth L", "ŷ₁ measured", "a^L", "∂Σŷ/∂W[1]₁₁ measured", "a^(L−1)"), rows),
        figures=[("output and first-layer gradient over depth", fig)]))
    fig2 = plot_panels([{"title": f"training a depth-{train_depth} linear net from W = {train_scale:g}·I",
                         "xlabel": "update", "ylabel": "mini-batch loss (log)", "logy": True, "series": curves}],
                       ctx.path("deep_linear_clipping.png"))
    sections.append(Section("Gradient clipping tames the explosion", text=[
        f"SGD (lr {lr:g}, batch {batch_size}) on the identity map x ↦ x, {epochs} epochs; the clipped run "
        f"chains {clip} before the step."],
        table=(("run", "diverged", "first loss", "largest loss", "final loss", "error"), train_rows),
        figures=[("loss of every update", fig2)]))
    return Outcome(metrics, sections)
