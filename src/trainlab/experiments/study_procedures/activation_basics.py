"""The basic claims about activations: ReLU against sigmoid and tanh trained side by side, why
zero-centring matters, a network without activations is linear, SELU normalizes itself over depth,
maxout with more pieces fits convex functions better, and what each activation costs per step
(notes 000, 001, 002, 004)."""
from __future__ import annotations

import math
import statistics
import time

import torch
from torch import nn

from trainlab.experiments.report import Section
from trainlab.experiments.studies import Outcome, StudyContext
from trainlab.experiments.study_procedures._common import merged, train


def _epochs_to(curve: list[float], target: float) -> float:
    """The first epoch (1-based) at which ``curve`` is at or below ``target``; inf if never."""
    return next((i + 1 for i, v in enumerate(curve) if v <= target), math.inf)


def _one_signed_rows(model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss_fn) -> float:
    """For one example, the fraction of units of the second weight layer whose incoming weight
    gradients all share one sign. ∂L/∂W_ij = δ_i·h_j: when every input h_j of the layer is positive
    (a sigmoid's output), row i of the gradient has the sign of δ_i in every entry."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    layer = linears[1]
    fractions = []
    for i in range(len(x)):
        model.zero_grad()
        loss_fn(model(x[i: i + 1]), y[i: i + 1]).backward()
        g = layer.weight.grad
        nonzero = g.abs().sum(1) > 0
        same = ((g >= 0).all(1) | (g <= 0).all(1)) & nonzero
        fractions.append(float(same.sum()) / max(int(nonzero.sum()), 1))
    return statistics.fmean(fractions)


def _depth_profile(activation: str, init: str, depth: int, width: int, n: int, seed: int, input_mean: float,
                   input_std: float) -> list[tuple[float, float]]:
    """(mean, variance) of the activations after each layer of a ``depth``-layer MLP at initialization."""
    from trainlab.init import init_model
    from trainlab.nn import MLP

    g = torch.Generator().manual_seed(seed)
    net = MLP(width, hidden=[width] * depth, out_features=2, activation=activation)
    init_model(net, weight=init, bias="zeros", generator=g)
    x = input_mean + input_std * torch.randn(n, width, generator=g)
    stats = []
    h = x
    with torch.no_grad():
        for block in net.blocks:
            h = block(h)
            stats.append((float(h.mean()), float(h.var())))
    return stats


def _fit_maxout(k: int, xs: torch.Tensor, ys: torch.Tensor, steps: int, seed: int) -> float:
    """One maxout unit with k affine pieces, max_j (w_j·x + b_j), fitted to (xs, ys) by trainlab's Adam."""
    from trainlab.losses import mse
    from trainlab.nn import Maxout
    from trainlab.optim import Adam

    torch.manual_seed(seed)
    unit = Maxout(1, 1, k=k).double()
    with torch.no_grad():  # spread the pieces' slopes so that each starts on its own part of the input
        unit.linear.weight.copy_(torch.linspace(-2, 2, k, dtype=torch.float64).view(k, 1))
        unit.linear.bias.zero_()
    opt = Adam(unit.parameters(), lr=0.02)
    for _ in range(steps):
        opt.zero_grad()
        loss = mse(unit(xs).squeeze(1), ys)
        loss.backward()
        opt.step()
    with torch.no_grad():
        return float(mse(unit(xs).squeeze(1), ys))


def _cost_per_step(names: list[str], shape: tuple[int, int], repeats: int) -> dict[str, float]:
    """Forward + backward seconds of each activation on one tensor, the minimum over interleaved repeats."""
    from trainlab.nn.models import ACTIVATIONS

    x = torch.randn(*shape, requires_grad=True)
    modules = {n: ACTIVATIONS[n]() for n in names}
    best = {n: math.inf for n in names}
    for _ in range(repeats):
        for n, m in modules.items():  # round-robin, so that a busy moment hits every contestant alike
            t = time.perf_counter()
            m(x).sum().backward()
            best[n] = min(best[n], time.perf_counter() - t)
            x.grad = None
    return best


def activation_basics(ctx: StudyContext, *, compare: dict, linear: dict, selu: dict, maxout: dict,
                      cost: dict) -> Outcome:
    """Five measurements, one per claim (each parameter group names its own settings)."""
    metrics: dict[str, float] = {}
    sections = []
    from trainlab.experiments.plots import plot_panels

    # 1. sigmoid, tanh and ReLU side by side: the same net, each with its own initialization (auto)
    curves, rows = {}, []
    for act in compare["activations"]:
        losses, accs, epochs_to = [], [], []
        for s in range(ctx.seed, ctx.seed + compare["seeds"]):
            run = train(merged(dict(compare["base"], seed=s, name=f"{act}-seed-{s}"), {"model": {"activation": act}}))
            if run.diverged is not None:
                raise RuntimeError(f"{act}: training diverged ({run.diverged})")
            losses.append(run.history["loss"])
            accs.append(run.final["val_accuracy"])
            epochs_to.append(_epochs_to(run.history["loss"], compare["target_loss"]))
        mean_curve = [statistics.fmean(c[i] for c in losses) for i in range(len(losses[0]))]
        curves[act] = (range(1, len(mean_curve) + 1), mean_curve)
        metrics[f"compare.{act}.final_loss"] = mean_curve[-1]
        metrics[f"compare.{act}.val_accuracy"] = statistics.fmean(accs)
        metrics[f"compare.{act}.epochs_to_target"] = statistics.fmean(epochs_to)
        rows.append((act, mean_curve[-1], metrics[f"compare.{act}.val_accuracy"],
                     metrics[f"compare.{act}.epochs_to_target"]))
    # zero-centring: the gradient rows of the layer after the activation, for single examples
    from trainlab.data import moons
    from trainlab.init import init_model
    from trainlab.losses import cross_entropy
    from trainlab.nn import MLP

    probe = moons(compare["sign_examples"], noise=0.2, seed=ctx.seed)
    sign_rows = []
    for act in ("sigmoid", "tanh", "relu"):
        net = MLP(2, hidden=[32, 32], out_features=2, activation=act)
        init_model(net, weight="auto", bias="zeros", generator=torch.Generator().manual_seed(ctx.seed))
        frac = _one_signed_rows(net, probe.X.float(), probe.y, cross_entropy)
        metrics[f"sign.{act}.one_signed_rows"] = frac
        sign_rows.append((act, frac))
    fig = plot_panels([{"title": "training loss (mean over seeds)", "xlabel": "epoch", "ylabel": "loss",
                        "series": curves, "logy": True,
                        "hline": compare["target_loss"]}], ctx.path("activations_loss.png"))
    sections.append(Section("Sigmoid, tanh and ReLU trained side by side", text=[
        f"The same MLP and training ({compare['base'].get('optimizer')}, {compare['base']['train']}), each activation "
        f"with the initialization made for it (`init.weight: auto`), mean of {compare['seeds']} seeds. "
        f"Epochs to a training loss of {compare['target_loss']:g} (inf: never).",
        "Zero-centring: for a single example, ∂L/∂W_ij = δ_i·h_j. After a sigmoid every h_j is positive, so "
        "every row of the next layer's weight gradient has one sign — the weights of a unit can only all "
        "grow or all shrink together in one step (zig-zagging). tanh's and ReLU's outputs (ReLU's are ≥ 0, "
        "so its rows are one-signed too wherever they are non-zero) are measured the same way."],
        table=(("activation", "final train loss", "val accuracy", "epochs to target"), rows),
        figures=[("training loss per epoch", fig)]))
    sections.append(Section("Zero-centring: one-signed gradient rows", table=(
        ("activation before the layer", "fraction of one-signed gradient rows (single examples)"), sign_rows)))

    # 2. no activation: a linear model
    lin_rows = []
    for label, override in (("identity (no activation)", {"model": {"activation": "identity"}}),
                            ("linear classifier", {"model": {"hidden": []}}),
                            ("relu", {"model": {"activation": "relu"}})):
        run = train(merged(dict(linear["base"], seed=ctx.seed, name=label), override))
        key = label.split()[0]
        metrics[f"linear.{key}.val_accuracy"] = run.final["val_accuracy"]
        lin_rows.append((label, run.final["train_accuracy"], run.final["val_accuracy"]))
        if key == "identity":
            # the stack of linear layers collapses into one affine map: check it exactly
            layers = [m for m in run.model.modules() if isinstance(m, nn.Linear)]
            x = torch.randn(64, layers[0].in_features, dtype=layers[0].weight.dtype)
            w, b = torch.eye(layers[0].in_features, dtype=x.dtype), torch.zeros(layers[0].in_features, dtype=x.dtype)
            for m in layers:
                w, b = m.weight @ w, m.weight @ b + m.bias
            with torch.no_grad():
                metrics["linear.collapse_error"] = float((run.model(x) - (x @ w.T + b)).abs().max())
    sections.append(Section("Without a nonlinearity the network is linear", text=[
        f"An MLP {linear['base']['model'].get('hidden')} with the identity as activation computes W_L·…·W_1·x + b: "
        f"one affine map (checked to {metrics['linear.collapse_error']:.1e}), so on the moons it classifies no "
        "better than a linear classifier, and far worse than the same net with ReLU."],
        table=(("model", "train accuracy", "val accuracy"), lin_rows)))

    # 3. SELU's self-normalization over depth
    profiles = {}
    for act, init in selu["nets"].items():
        profiles[act] = _depth_profile(act, init, selu["depth"], selu["width"], selu["n"], ctx.seed,
                                       selu["input_mean"], selu["input_std"])
        metrics[f"selu.{act}.last_mean"] = profiles[act][-1][0]
        metrics[f"selu.{act}.last_var"] = profiles[act][-1][1]
    depth_axis = range(1, selu["depth"] + 1)
    fig = plot_panels([
        {"title": "mean of the activations", "xlabel": "layer", "ylabel": "mean",
         "series": {a: (depth_axis, [m for m, _ in p]) for a, p in profiles.items()}, "hline": 0.0},
        {"title": "variance of the activations", "xlabel": "layer", "ylabel": "variance", "logy": True,
         "series": {a: (depth_axis, [v for _, v in p]) for a, p in profiles.items()}, "hline": 1.0},
    ], ctx.path("selu_depth.png"))
    sections.append(Section("SELU normalizes itself", text=[
        f"{selu['depth']} layers of {selu['width']} units at initialization, inputs drawn from "
        f"N({selu['input_mean']:g}, {selu['input_std'] ** 2:g}) — deliberately not normalized. SELU with LeCun "
        "normal weights pulls mean and variance to the fixed point (0, 1) (Klambauer et al. 2017); ReLU "
        "with He keeps the second moment but not the mean, tanh with Xavier shrinks the variance."],
        table=(("activation", "mean at the last layer", "variance at the last layer"),
               [(a, p[-1][0], p[-1][1]) for a, p in profiles.items()]),
        figures=[("mean and variance over depth", fig)]))

    # 4. maxout: more pieces, better convex fits
    xs = torch.linspace(-1, 1, maxout["points"], dtype=torch.float64).view(-1, 1)
    ys = xs.squeeze(1) ** 2
    errors = {k: _fit_maxout(k, xs, ys, maxout["steps"], ctx.seed) for k in maxout["pieces"]}
    for k, e in errors.items():
        metrics[f"maxout.k{k}.mse"] = e
    metrics["maxout.decreasing"] = float(all(a > b for a, b in zip(errors.values(), list(errors.values())[1:])))
    sections.append(Section("Maxout: more pieces approximate a convex function better", text=[
        f"One maxout unit max_j (w_j·x + b_j) with k pieces fitted to x² on [−1, 1] ({maxout['steps']} Adam steps)."],
        table=(("pieces k", "mean squared error"), [(k, e) for k, e in errors.items()])))

    # 5. cost per step (measured, not asserted: a timing depends on the machine and its load)
    seconds = _cost_per_step(cost["activations"], tuple(cost["shape"]), cost["repeats"])
    base = seconds["relu"]
    for n, s in seconds.items():
        metrics[f"cost.{n}.relative"] = s / base
    sections.append(Section("What each activation costs", text=[
        f"Forward + backward on a {cost['shape'][0]}×{cost['shape'][1]} tensor, minimum of {cost['repeats']} "
        "round-robin repeats, relative to ReLU. Exponentials (sigmoid, tanh, ELU, SELU) cost more than a "
        "comparison; on a CPU the difference is a small factor, and in a real net the matrix products dominate."],
        table=(("activation", "seconds", "relative to ReLU"), [(n, s, s / base) for n, s in seconds.items()])))
    return Outcome(metrics, sections)
