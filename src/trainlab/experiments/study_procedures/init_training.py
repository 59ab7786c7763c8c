"""Initialization beyond time zero: how the scale changes speed, final loss and generalization; why
orthogonal matrices make depth harmless in a linear stack; sparse initialization's independence of
the fan-in; and how zero initialization's symmetry spreads layer by layer, update by update
(notes 000, 002, 004)."""
from __future__ import annotations

import math
import statistics

import torch
from torch import nn

from trainlab.experiments.report import Section
from trainlab.experiments.studies import Outcome, StudyContext
from trainlab.experiments.study_procedures._common import merged, train


def _epochs_to(curve, target):
    return next((i + 1 for i, v in enumerate(curve) if v <= target), math.inf)


def _product_spread(kind: str, depth: int, width: int, seed: int) -> tuple[float, float]:
    """log10 of the condition number of W_L···W_1, and ‖W_L···W_1 x‖/‖x‖ for a random x, at init."""
    from trainlab.init import normal_, orthogonal_

    g = torch.Generator().manual_seed(seed)
    product = torch.eye(width, dtype=torch.float64)
    for _ in range(depth):
        w = torch.empty(width, width, dtype=torch.float64)
        if kind == "orthogonal":
            orthogonal_(w, generator=g)
        else:  # Gaussian with the same variance per entry, 1/n: norms preserved on average only
            normal_(w, std=1.0 / math.sqrt(width), generator=g)
        product = w @ product
    s = torch.linalg.svdvals(product)
    x = torch.randn(width, dtype=torch.float64, generator=g)
    return math.log10(float(s[0] / s[-1])), float((product @ x).norm() / x.norm())


def _sparse_input_std(fan_in: int, k: int, n: int, seed: int) -> float:
    from trainlab.init import sparse_

    g = torch.Generator().manual_seed(seed)
    w = torch.empty(256, fan_in)
    sparse_(w, k=k, std=1.0, generator=g)
    x = torch.randn(n, fan_in, generator=g)
    return float((x @ w.T).std())


def _symmetry_spread(activation: str, depth: int, width: int, updates: int, seed: int) -> list[list[tuple[float, float]]]:
    """Zero-initialized MLP trained by plain SGD: after each update, per weight layer, (largest
    |entry|, spread) — for a hidden layer the spread between its units (the largest difference
    between two rows), for the output layer the spread between its columns (the notes' "all
    columns equal": the weights from each hidden unit)."""
    from trainlab.data import moons
    from trainlab.losses import cross_entropy
    from trainlab.nn import MLP
    from trainlab.optim import SGD

    data = moons(96, noise=0.2, seed=seed)
    # a balanced batch gives the output layer an exactly zero gradient at zero init (Σ(p − y)·h = 0
    # when every h is equal and p = ½): keep all of class 0 and a third of class 1
    keep = torch.cat([torch.nonzero(data.y == 0).flatten(), torch.nonzero(data.y == 1).flatten()[:16]])
    data = data.subset(keep)
    net = MLP(2, hidden=[width] * depth, out_features=2, activation=activation)
    for p in net.parameters():
        nn.init.zeros_(p)
    opt = SGD(net.parameters(), lr=0.5)
    layers = [m for m in net.modules() if isinstance(m, nn.Linear)]
    history = []
    for _ in range(updates):
        opt.zero_grad()
        cross_entropy(net(data.X.float()), data.y).backward()
        opt.step()
        row = []
        for i, m in enumerate(layers):
            w = m.weight.detach()
            spread = (w - w[:, :1]) if i == len(layers) - 1 else (w - w[:1])
            row.append((float(w.abs().max()), float(spread.abs().max())))
        history.append(row)
    return history


def init_training(ctx: StudyContext, *, scales: dict, orthogonal: dict, sparse: dict, symmetry: dict) -> Outcome:
    """Four measurements (each parameter group names its own settings)."""
    metrics: dict[str, float] = {}
    sections = []
    from trainlab.experiments.plots import plot_panels

    # 1. scale -> speed, final loss, generalization
    rows, curves = [], {}
    for label, init in scales["cases"].items():
        losses, vals, tos = [], [], []
        for s in range(ctx.seed, ctx.seed + scales["seeds"]):
            run = train(merged(dict(scales["base"], seed=s, name=f"{label}-seed-{s}"), {"init": init}))
            if run.diverged is not None:  # a diverged run never reaches the target; accuracy 0
                losses.append([math.nan])
                vals.append(0.0)
                tos.append(math.inf)
                continue
            losses.append(run.history["loss"])
            vals.append(run.final["val_accuracy"])
            tos.append(_epochs_to(run.history["loss"], scales["target_loss"]))
        finals = [c[-1] for c in losses if math.isfinite(c[-1])]
        # a run whose loss became non-finite counts as an infinite final loss
        metrics[f"scale.{label}.final_loss"] = statistics.fmean(finals) if len(finals) == len(losses) else math.inf
        metrics[f"scale.{label}.diverged"] = len(losses) - len(finals)
        metrics[f"scale.{label}.val_accuracy"] = statistics.fmean(vals)
        metrics[f"scale.{label}.epochs_to_target"] = statistics.fmean(tos)
        if math.isfinite(losses[0][-1]):
            curves[label] = (range(1, len(losses[0]) + 1), losses[0])
        rows.append((label, str(init), metrics[f"scale.{label}.epochs_to_target"],
                     metrics[f"scale.{label}.final_loss"], metrics[f"scale.{label}.val_accuracy"]))
    fig = plot_panels([{"title": "training loss by initialization", "xlabel": "epoch", "ylabel": "loss",
                        "series": curves, "logy": True, "hline": scales["target_loss"]}], ctx.path("init_training.png"))
    sections.append(Section("The scale of the initialization, through training", text=[
        f"The same ReLU net and training, each initialization over {scales['seeds']} seed(s): epochs to a training "
        f"loss of {scales['target_loss']:g} (inf: never), final training loss (inf: the loss became non-finite "
        "in some run) and validation accuracy (0 for a diverged run)."],
        table=(("initialization", "init", "epochs to target", "final train loss", "val accuracy"), rows),
        figures=[("training loss", fig)]))

    # 2. orthogonal vs Gaussian products over depth
    orth_rows = []
    for depth in orthogonal["depths"]:
        for kind in ("orthogonal", "gaussian"):
            cond, ratio = _product_spread(kind, depth, orthogonal["width"], ctx.seed)
            metrics[f"orthogonal.{kind}.depth{depth}.log10_condition"] = cond
            metrics[f"orthogonal.{kind}.depth{depth}.norm_ratio"] = ratio
            orth_rows.append((kind, depth, cond, ratio))
    deepest = orthogonal["depths"][-1]
    metrics["orthogonal.deepest_orthogonal_condition"] = metrics[f"orthogonal.orthogonal.depth{deepest}.log10_condition"]
    metrics["orthogonal.deepest_gaussian_condition"] = metrics[f"orthogonal.gaussian.depth{deepest}.log10_condition"]
    sections.append(Section("Orthogonal initialization and depth", text=[
        f"The product W_L···W_1 of L random {orthogonal['width']}×{orthogonal['width']} matrices, the map of a deep "
        "linear net at initialization. Orthogonal factors give an orthogonal product: every singular value 1 "
        "(condition number 1, log10 = 0) and every vector keeps its norm at any depth. Gaussian factors with "
        "the same variance 1/n keep norms only on average; the singular values of their product spread "
        "exponentially with depth (Saxe et al. 2014), so some directions explode and others vanish."],
        table=(("factors", "depth", "log10 condition number", "‖W_L···W_1 x‖ / ‖x‖"), orth_rows)))

    # 3. sparse initialization and the fan-in
    sp_rows = []
    for m in sparse["fan_ins"]:
        std = _sparse_input_std(m, sparse["k"], sparse["n"], ctx.seed)
        metrics[f"sparse.fan_in{m}.input_std"] = std
        sp_rows.append((m, std))
    stds = [metrics[f"sparse.fan_in{m}.input_std"] for m in sparse["fan_ins"]]
    metrics["sparse.relative_spread"] = (max(stds) - min(stds)) / statistics.fmean(stds)
    sections.append(Section("Sparse initialization: a unit's input independent of its fan-in", text=[
        f"Each unit gets exactly k = {sparse['k']} non-zero N(0, 1) weights; inputs N(0, 1). The standard "
        f"deviation of a unit's total input is √k ≈ {math.sqrt(sparse['k']):.2f} whatever the fan-in m, without the "
        "weights shrinking with m (a dense N(0, 1) init would give √m)."],
        table=(("fan-in m", "std of a unit's input"), sp_rows)))

    # 4. symmetry, update by update
    hist = _symmetry_spread(symmetry["activation"], symmetry["depth"], symmetry["width"], symmetry["updates"], ctx.seed)
    n_layers = len(hist[0])
    first_moved = []
    for layer in range(n_layers):
        moved = next((t + 1 for t, row in enumerate(hist) if row[layer][0] > 0), math.inf)
        first_moved.append(moved)
        metrics[f"symmetry.layer{layer + 1}.first_update"] = moved
    metrics["symmetry.max_unit_spread"] = max(spread for row in hist for _, spread in row[:-1])
    metrics["symmetry.output_column_spread"] = max(row[-1][1] for row in hist)
    # the output layer moves at update 1, the one below it at update 2, ...: exactly one more per update
    metrics["symmetry.one_layer_per_update"] = float(first_moved == list(range(n_layers, 0, -1)))
    sym_rows = [(t + 1, *(f"{'moved' if r[0] > 0 else 'zero'}, spread {r[1]:.0e}" for r in row)) for t, row in enumerate(hist)]
    sections.append(Section("Zero initialization: the symmetry, update by update", text=[
        f"An MLP with {symmetry['depth']} {symmetry['activation']} layers of {symmetry['width']} units, every weight and "
        "bias 0, plain SGD. With all weights 0 only the layer next to the loss gets a gradient at the first "
        "update; each later update brings one more layer below it into motion — the notes' 'after m − 1 "
        "updates' — and in every hidden layer all units stay exactly equal (the spread between any two "
        "units' weights is 0), while the output layer's columns (the weights leaving each hidden unit) are "
        "all equal: the symmetry is never broken."],
        table=(("update", *[f"layer {i + 1}" for i in range(n_layers)]), sym_rows)))
    return Outcome(metrics, sections)
