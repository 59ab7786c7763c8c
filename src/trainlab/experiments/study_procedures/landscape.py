"""The loss landscape of a small network (notes 002): non-convex, with minima about equally good."""
from __future__ import annotations

import math
import statistics

import torch

from trainlab.experiments.report import Section
from trainlab.experiments.studies import Outcome, StudyContext


def landscape_minima(ctx: StudyContext, *, data: dict, widths: list[int], seeds: list[int], epochs: int,
                     optimizer: dict, batch_size: int = 32, activation: str = "relu", samples: int = 512,
                     slice_steps: int = 21, slice_span: float = 1.0) -> Outcome:
    """Train a one-hidden-layer MLP of each width from several seeds and look at the landscape.

    ``data``: ``{n_samples, noise, split}`` of two moons; ``optimizer``: ``{lr}`` of Adam.

    Per width: the training loss each seed ends at (``minima.w<width>.{mean, spread, rel_spread}``:
    spread = max − min, relative to the loss at initialization), the loss along the line from
    initialization to the trained weights (``line.w<width>.monotone_frac``: the fraction of seeds
    whose line falls monotonically; ``.max_barrier``), and along the line between the minima of
    two seeds (``between.w<width>.barrier``: the largest rise above the chord, averaged over
    consecutive seed pairs; a convex loss would have none). A filter-normalized 2-D slice around
    the first seed's minimum of the widest net is drawn as contours. Everything is measured on the
    first ``samples`` training points, with :mod:`trainlab.diagnostics.landscape`.
    """
    from trainlab.diagnostics.landscape import filter_normalized_slice, flat_parameters, line_profile

    metrics: dict = {}
    rows, line_series, between_series = [], {}, {}
    slice_out = None
    from trainlab.data.dataset import split as split_data
    from trainlab.data.toy import moons
    from trainlab.init import init_model
    from trainlab.losses import cross_entropy
    from trainlab.nn.models import MLP
    from trainlab.optim import Adam

    spec = dict(data)
    train_set, _ = split_data(moons(spec.get("n_samples", 600), spec.get("noise", 0.2), seed=ctx.seed),
                              spec.get("split", (0.7, 0.3)), seed=ctx.seed)
    batch = (train_set.X[:samples], train_set.y[:samples])
    loss_fn = cross_entropy

    def fit_one(width: int, seed: int) -> tuple:
        """Adam on mini-batches from trainlab's default (``auto``) initialization; returns the model
        and its line from the initialization to the trained weights."""
        g = torch.Generator().manual_seed(seed)
        model = MLP(2, hidden=[width], out_features=2, activation=activation)
        init_model(model, "auto", "zeros", generator=g)
        theta0 = flat_parameters(model)
        opt = Adam(model.parameters(), lr=optimizer.get("lr", 0.01))
        X, y = train_set.X, train_set.y
        for _ in range(epochs):
            order = torch.randperm(len(X), generator=g)
            for i in range(0, len(X), batch_size):
                idx = order[i:i + batch_size]
                opt.zero_grad()
                loss_fn(model(X[idx]), y[idx]).backward()
                opt.step()
        return model, line_profile(model, loss_fn, batch, theta0, flat_parameters(model),
                                   [i / 20 for i in range(-5, 26)])

    for width in widths:
        runs = [fit_one(width, seed) for seed in seeds]
        lines = [line for _, line in runs]
        finals = [l["loss_end"] for l in lines]
        start = statistics.fmean(l["loss_start"] for l in lines)
        key = f"w{width}"
        metrics[f"minima.{key}.mean"] = statistics.fmean(finals)
        metrics[f"minima.{key}.spread"] = max(finals) - min(finals)
        metrics[f"minima.{key}.rel_spread"] = (max(finals) - min(finals)) / start
        metrics[f"minima.{key}.start"] = start
        metrics[f"line.{key}.monotone_frac"] = sum(l["monotone"] for l in lines) / len(lines)
        metrics[f"line.{key}.max_barrier"] = max(l["max_barrier"] for l in lines)
        line_series[f"width {width}"] = (lines[0]["alphas"], lines[0]["losses"])
        barriers = []
        model = runs[0][0]
        for (a, _), (b, _) in zip(runs[:-1], runs[1:]):
            prof = line_profile(model, loss_fn, batch, flat_parameters(a), flat_parameters(b),
                                [i / 20 for i in range(21)])
            barriers.append(prof["max_barrier"])
            if a is runs[0][0]:
                between_series[f"width {width}"] = (prof["alphas"], prof["losses"])
        metrics[f"between.{key}.barrier"] = statistics.fmean(barriers)
        metrics[f"between.{key}.min_barrier"] = min(barriers)
        rows.append((width, start, statistics.fmean(finals), max(finals) - min(finals),
                     metrics[f"minima.{key}.rel_spread"], metrics[f"line.{key}.monotone_frac"],
                     statistics.fmean(barriers)))
        ctx.log(f"width {width}: final losses {[round(f, 4) for f in finals]}, between-minima barrier "
                f"{statistics.fmean(barriers):.3g}")
        if width == widths[-1]:
            slice_out = filter_normalized_slice(runs[0][0], loss_fn, batch, steps=slice_steps, span=slice_span,
                                                generator=torch.Generator().manual_seed(ctx.seed))
            metrics["slice.center_loss"] = slice_out["center_loss"]
            metrics["slice.min_loss"] = min(min(r) for r in slice_out["losses"])
            metrics["slice.max_loss"] = max(max(r) for r in slice_out["losses"])
    metrics["minima.rel_spread_narrow_over_wide"] = (metrics[f"minima.w{widths[0]}.rel_spread"]
                                                     / max(metrics[f"minima.w{widths[-1]}.rel_spread"], 1e-12))
    from trainlab.experiments.plots import plot_line_profile, plot_loss_contour

    fig_line = plot_line_profile([], [], ctx.path("line_init_to_trained.png"), series=line_series,
                                 title="loss from initialization (α = 0) to the trained weights (α = 1)")
    fig_between = plot_line_profile([], [], ctx.path("line_between_minima.png"), series=between_series,
                                    title="loss between the minima of two seeds (α = 0: seed 1, α = 1: seed 2)")
    fig_slice = plot_loss_contour(slice_out["a"], slice_out["b"], slice_out["losses"], ctx.path("slice.png"),
                                  title=f"filter-normalized slice around a minimum (width {widths[-1]})")
    section = Section("The landscape of a one-hidden-layer MLP", text=[
        f"data {data}; hidden widths {widths}; seeds {seeds}; {epochs} epochs of {optimizer}, batch {batch_size}; "
        f"losses on {samples} training points. The relative spread is (max − min) of the final training losses "
        "over seeds divided by the loss at initialization."],
        table=(("width", "loss at init", "mean final loss", "spread", "relative spread",
                "monotone lines init→trained", "barrier between minima"), rows),
        figures=[("loss along the line from initialization to the trained weights", fig_line),
                 ("loss along the line between two trained solutions: a rise above the chord means non-convex",
                  fig_between),
                 ("2-D slice around the trained weights (Li et al. 2018)", fig_slice)])
    return Outcome(metrics, [section])
