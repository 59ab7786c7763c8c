"""Capacity: from underfitting to a good fit to overfitting as the network grows, memorizing random
labels, and deep-and-narrow against shallow-and-wide (notes 000, 003, 004)."""
from __future__ import annotations

import statistics

import torch

from trainlab.experiments.report import Section
from trainlab.experiments.studies import Outcome, StudyContext
from trainlab.experiments.study_procedures._common import merged, train


def _parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _splits(data: dict, seed: int, random_labels: bool = False):
    """The data section's train/validation split, drawn as the runner draws it; with
    ``random_labels`` the training labels are replaced by a seeded random permutation of themselves
    (same class balance, no relation to the inputs)."""
    from trainlab.experiments.config import parse_config
    from trainlab.experiments.runner import Splits, build_data
    from trainlab.experiments.study_procedures._common import resolve_data

    _, subset = resolve_data(data, seed)  # an MNIST subset in memory, or None
    splits = Splits(*subset) if subset is not None else build_data(parse_config({"data": data, "seed": seed}))
    if not random_labels:
        return splits
    g = torch.Generator().manual_seed(seed + 7919)
    train_set = splits.train
    shuffled = train_set.y[torch.randperm(len(train_set), generator=g)]
    return type(splits)(type(train_set)(train_set.X, shuffled, train_set.name + " (random labels)"), splits.val, splits.test)


def _fit(ctx: StudyContext, base: dict, hidden: list[int], splits, seed: int, label: str, data: dict):
    from trainlab.experiments.study_procedures._common import resolve_data

    cfg = merged(dict(base, name=label, seed=seed, data=resolve_data(data, seed)[0]), {"model": {"hidden": list(hidden)}})
    run = train(cfg, data=splits)
    if run.diverged is not None:
        raise RuntimeError(f"{label}: training diverged ({run.diverged}); lower the learning rate")
    f = run.final
    ctx.log(f"{label}: train acc {f['train_accuracy']:.3f}, val acc {f['val_accuracy']:.3f}")
    return run, _parameters(run.model)


def capacity_sweep(ctx: StudyContext, *, data: dict, base: dict, widths: list[int], memorize: dict,
                   shapes: dict, depth: int = 1, seeds: int = 1) -> Outcome:
    """Three measurements of capacity.

    1. ``widths``: ``depth`` hidden layers of each width on a small, noisy training set (``data``);
       train and validation accuracy after the same training, averaged over ``seeds``.
    2. ``memorize``: the smallest and largest width trained on the same inputs with *random* labels
       (``memorize.epochs`` epochs): what a net can fit beyond any pattern is its raw capacity.
    3. ``shapes``: named hidden-layer lists (e.g. 3 × 30 against 1 × 500) on ``shapes.data``, over
       ``seeds`` seeds: accuracy and parameter count.
    """
    metrics: dict[str, float] = {}
    sections = []
    seed_list = [ctx.seed + i for i in range(seeds)]

    # 1. underfit -> good fit -> overfit
    rows, train_acc, val_acc, gaps, params = [], [], [], [], []
    for w in widths:
        tr, va, n_params = [], [], 0
        for s in seed_list:
            run, n_params = _fit(ctx, base, [w] * depth, _splits(data, s), s, f"width-{w}-seed-{s}", data)
            tr.append(run.final["train_accuracy"])
            va.append(run.final["val_accuracy"])
        train_acc.append(statistics.fmean(tr))
        val_acc.append(statistics.fmean(va))
        gaps.append(train_acc[-1] - val_acc[-1])
        params.append(n_params)
        metrics[f"width{w}.train_accuracy"] = train_acc[-1]
        metrics[f"width{w}.val_accuracy"] = val_acc[-1]
        metrics[f"width{w}.gap"] = gaps[-1]
        rows.append((w, n_params, train_acc[-1], val_acc[-1], gaps[-1]))
    best = max(range(len(widths)), key=val_acc.__getitem__)
    metrics.update({"sweep.best_width": widths[best], "sweep.best_val_accuracy": val_acc[best],
                    "sweep.smallest_train_accuracy": train_acc[0], "sweep.largest_train_accuracy": train_acc[-1],
                    "sweep.smallest_gap": gaps[0], "sweep.largest_gap": gaps[-1], "sweep.gap_growth": gaps[-1] - gaps[0],
                    "sweep.largest_val_accuracy": val_acc[-1], "sweep.smallest_val_accuracy": val_acc[0]})
    from trainlab.experiments.plots import plot_panels

    fig = plot_panels([
        {"title": "accuracy as capacity grows", "xlabel": f"hidden units per layer ({depth} layers)", "ylabel": "accuracy",
         "series": {"train": (widths, train_acc), "validation": (widths, val_acc)}, "logx": True, "markers": True},
        {"title": "train − validation accuracy", "xlabel": f"hidden units per layer ({depth} layers)", "ylabel": "gap",
         "series": {"gap": (widths, gaps)}, "logx": True, "markers": True, "hline": 0.0},
    ], ctx.path("capacity.png"))
    sections.append(Section("Underfit, good fit, overfit", text=[
        f"{depth} hidden layer(s) of each width, the same training (`{base.get('optimizer')}`, "
        f"{base.get('train', {}).get('epochs')} epochs), mean of {seeds} seed(s). Too few units cannot "
        f"fit even the training set (train accuracy {train_acc[0]:.2f} at width {widths[0]}: underfitting); "
        f"the validation accuracy peaks at width {widths[best]} ({val_acc[best]:.3f}); the widest net fits the "
        f"training set almost perfectly ({train_acc[-1]:.3f}) and its gap grows to {gaps[-1]:.3f}: overfitting."],
        table=(("width", "parameters", "train accuracy", "val accuracy", "gap"), rows),
        figures=[("train and validation accuracy against capacity", fig)]))

    # 2. random labels
    mem_base = merged(base, {"train": {"epochs": memorize["epochs"]}})
    mem_rows = []
    for w in (memorize["small"], memorize["large"]):
        run, n_params = _fit(ctx, mem_base, [w] * depth, _splits(data, ctx.seed, random_labels=True), ctx.seed,
                             f"random-labels-{w}", data)
        metrics[f"random{'_small' if w == memorize['small'] else '_large'}.train_accuracy"] = run.final["train_accuracy"]
        metrics[f"random{'_small' if w == memorize['small'] else '_large'}.val_accuracy"] = run.final["val_accuracy"]
        mem_rows.append((w, n_params, run.final["train_accuracy"], run.final["val_accuracy"]))
    n_classes = data.get("classes", 2)
    metrics["random.chance"] = 1.0 / n_classes
    sections.append(Section("Memorizing random labels", text=[
        "The training labels are shuffled, so nothing links input and label: what a net fits now is "
        "memorized, and how much it can memorize is its capacity (Zhang et al. 2017, 'Understanding deep "
        f"learning requires rethinking generalization'). Validation accuracy stays at chance (1/{n_classes})."],
        table=(("width", "parameters", "train accuracy (random labels)", "val accuracy"), mem_rows)))

    # 3. deep and narrow against shallow and wide
    shape_rows, shape_acc = [], {}
    shape_base = merged(base, shapes.get("base", {}))
    for name, hidden in shapes["nets"].items():
        accs, n_params = [], 0
        for s in seed_list:
            run, n_params = _fit(ctx, shape_base, hidden, _splits(shapes["data"], s), s, f"{name}-seed-{s}", shapes["data"])
            accs.append(run.final["val_accuracy"])
        shape_acc[name] = statistics.fmean(accs)
        metrics[f"shape.{name}.val_accuracy"] = shape_acc[name]
        metrics[f"shape.{name}.parameters"] = n_params
        shape_rows.append((name, str(hidden), n_params, shape_acc[name], min(accs), max(accs)))
    sections.append(Section("Deep and narrow or shallow and wide", text=[
        f"The notes (004) prefer 3 hidden layers of 30 units to 1 of 500. Data: {shapes['data']}, mean "
        f"validation accuracy over {seeds} seed(s)."],
        table=(("net", "hidden", "parameters", "val accuracy (mean)", "min", "max"), shape_rows)))
    return Outcome(metrics, sections)
