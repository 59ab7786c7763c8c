"""Initializing a variance parameter to 1 or to the marginal variance of the targets (notes 002)."""
from __future__ import annotations

import math
import statistics

import torch

from trainlab.experiments.report import Section
from trainlab.experiments.studies import Outcome, StudyContext
from trainlab.experiments.study_procedures._common import train


def _regression(n: int, scale: float, seed: int):
    """x ~ U(−π, π), y = scale·(sin x + 0.1·ε): a sine whose target variance is about scale²·0.51."""
    from trainlab.data.dataset import Dataset

    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(n, 1, generator=g) * 2 - 1) * math.pi
    y = scale * (torch.sin(x) + 0.1 * torch.randn(n, 1, generator=g))
    return Dataset(x, y, f"sine-x{scale:g}")


def _epochs_to(curve: list[float], target: float) -> float:
    return next((i + 1 for i, v in enumerate(curve) if v <= target), math.inf)


def variance_init(ctx: StudyContext, *, scales: list[float], base: dict, n_train: int = 1000, n_val: int = 500,
                  seeds: int = 2) -> Outcome:
    """Train ``base`` (an MLP with ``loss: gaussian_nll``) with ``model.log_var_init: 0`` (σ² = 1) and
    ``marginal`` (σ² = Var(y)) on sines scaled by each of ``scales``.

    Metrics per scale and init (means over ``seeds`` seeds): the validation NLL after the first
    epoch, at the end, and the epochs until the validation NLL first reaches the target: the
    worst final NLL of all runs at that scale, a level every run reaches by its last epoch. The
    speed-up is the ratio of the two inits' epochs to the target.
    """
    from trainlab.experiments.runner import Splits

    metrics: dict[str, float] = {}
    rows, panels = [], []
    for scale in scales:
        train_set, val_set = _regression(n_train, scale, ctx.seed + 1), _regression(n_val, scale, ctx.seed + 2)
        log_var_y = float(train_set.y.double().var().log())
        runs = {}
        for init in ("one", "marginal"):
            runs[init] = []
            for s in range(ctx.seed, ctx.seed + seeds):
                # data: a regression set of the same shape for validation; the runs train on the splits given
                cfg = {**base, "name": f"variance-{init}-x{scale:g}-{s}", "seed": s, "data": {"name": "sine"},
                       "loss": {"name": "gaussian_nll"},
                       "model": {**base["model"], "log_var_init": 0.0 if init == "one" else "marginal"},
                       "diagnostics": None}
                runs[init].append(train(cfg, data=Splits(train_set, val_set)))
        finals = {init: [r.last("val_loss", math.inf) for r in rs] for init, rs in runs.items()}
        target = max(max(v) for v in finals.values())
        curves = {}
        for init, rs in runs.items():
            key = f"x{scale:g}.{init}"
            hist = [r.history.history.get("val_loss", []) for r in rs]
            metrics[f"{key}.first_epoch_nll"] = statistics.fmean(h[0] for h in hist)
            metrics[f"{key}.final_nll"] = statistics.fmean(finals[init])
            metrics[f"{key}.epochs_to_target"] = statistics.fmean(_epochs_to(h, target) for h in hist)
            metrics[f"{key}.final_log_var"] = statistics.fmean(float(r.model.log_var.detach().mean()) for r in rs)
            curves[f"σ² init {'1' if init == 'one' else 'Var(y)'}"] = (range(1, len(hist[0]) + 1), hist[0])
            rows.append((f"{scale:g}", "1" if init == "one" else f"Var(y) (log {log_var_y:.2f})",
                         metrics[f"{key}.first_epoch_nll"], metrics[f"{key}.epochs_to_target"],
                         metrics[f"{key}.final_nll"], metrics[f"{key}.final_log_var"]))
            ctx.log(f"scale {scale:g}, σ² init {init}: NLL after epoch 1 {metrics[f'{key}.first_epoch_nll']:.4g}, "
                    f"epochs to {target:.4g} {metrics[f'{key}.epochs_to_target']:.3g}, "
                    f"final {metrics[f'{key}.final_nll']:.4g}")
        metrics[f"x{scale:g}.log_var_y"] = log_var_y
        metrics[f"x{scale:g}.speedup"] = metrics[f"x{scale:g}.one.epochs_to_target"] / metrics[f"x{scale:g}.marginal.epochs_to_target"]
        panels.append({"title": f"targets scaled ×{scale:g} (log Var(y) = {log_var_y:.2f})", "xlabel": "epoch",
                       "ylabel": "validation NLL", "series": curves})

    from trainlab.experiments.plots import plot_panels

    fig = plot_panels(panels, ctx.path("variance_init.png"))
    text = [f"An MLP with a gaussian head (mean from the output layer, one learned log σ²) trained on the Gaussian "
            f"NLL, `model.log_var_init: 0` (σ² = 1) against `marginal` (σ² = Var(y) of the training targets); "
            f"y = scale·(sin x + 0.1ε), {n_train} training points; means over {seeds} seeds. The target is the "
            f"worst final validation NLL of the runs at that scale (every run reaches it)."]
    return Outcome(metrics, [Section("A variance parameter initialized to 1 or to Var(y)", text=text, table=(
        ("target scale", "σ² init", "val NLL after epoch 1", "epochs to target", "final val NLL", "final log σ²"), rows),
        figures=[("validation NLL per epoch (first seed)", fig)])])
