"""The notes' optimizer comparison on moons and circles, one sweep per factor (notes 002)."""
from __future__ import annotations

import math
import statistics

from trainlab.experiments.report import Section
from trainlab.experiments.studies import Outcome, StudyContext


def _oscillation(history: list[dict]) -> float:
    """Mean relative rise of the training loss from one epoch to the next (0 for a monotone descent)."""
    losses = [h["loss"] for h in history if "loss" in h]
    rises = [max(b - a, 0.0) / max(a, 1e-12) for a, b in zip(losses, losses[1:])]
    return sum(rises) / len(rises) if rises else 0.0


def optimizer_grid(ctx: StudyContext, *, datasets: dict, base: dict, optimizers: dict, axes: dict,
                   use_datasets: list[str] | None = None, seeds: list[int] = (0,), workers: int = 0) -> Outcome:
    """For every data set and every factor of the notes' grid, sweep that factor around the base
    point for every optimizer, with :func:`trainlab.experiments.sweep.run_sweep` (batched training,
    results in a SQLite store inside the run folder).

    Args:
        datasets: label -> data section (``{name: moons, noise: 0.2, n_samples: 1000, split: [0.7, 0.3]}``).
        base: the rest of the config (model, train).
        optimizers: label -> optimizer section (``{name: sgd, lr: 0.05, momentum: 0.9}``).
        axes: factor -> ``{path: <dotted config path>, values: [...], optimizers: [labels]}``;
            e.g. ``lr: {path: optimizer.lr, values: [0.001, 0.01, 0.05, 0.1], optimizers: [sgd, adam]}``.
            A path under ``data.`` changes the data set (noise levels); an empty ``optimizers``
            list skips the factor.
        use_datasets: the labels of ``datasets`` to run (default all).
        seeds: every point is trained once per seed; numbers are means over seeds.

    Reported as ``<data>.<factor>.<optimizer>.<value>.val_accuracy`` (final validation accuracy),
    ``.train_accuracy`` and ``.gap`` (train minus validation accuracy at the end: generalization),
    ``.early_val_accuracy`` (a quarter of the way through training), ``.oscillation`` (mean
    relative epoch-to-epoch rise of the training loss) and ``.diverged_runs``, plus per data set,
    factor and optimizer the best value (``.best``), its accuracy (``.best_accuracy``), the mean over
    the factor's values (``.mean_accuracy``), best minus worst (``.spread``: how much tuning matters)
    and the largest train-minus-validation gap over the values (``.max_gap``).
    """
    from trainlab.experiments.plots import plot_panels
    from trainlab.experiments.store import Store
    from trainlab.experiments.sweep import run_sweep, sweep_table

    store = Store(ctx.path("results.sqlite"))
    metrics: dict[str, float] = {}
    sections, data_out = [], {}
    try:
        for dlabel in (use_datasets if use_datasets is not None else list(datasets)):
            dspec = datasets[dlabel]
            panels, rows = [], []
            for factor, axis in axes.items():
                opts = axis["optimizers"]
                if not opts:
                    continue
                series = {}
                for olabel in opts:
                    sweep = {"name": f"{dlabel}-{factor}-{olabel}", "seed": ctx.seed, "data": dict(dspec),
                             **{k: v for k, v in base.items()}, "optimizer": dict(optimizers[olabel]),
                             axis["path"]: {"grid": list(axis["values"])},
                             "sweep": {"method": "grid", "seeds": list(seeds), "workers": workers}}
                    res = run_sweep(sweep, store=store, out_dir=ctx.path(f"sweeps/{dlabel}-{factor}-{olabel}"),
                                    report=False, verbose=False)
                    table = sweep_table(store, res.id)
                    by_value, generalization = {}, {}
                    for g in table["groups"]:
                        value = g["values"][axis["path"]] if axis["path"] in g["values"] else next(iter(g["values"].values()))
                        done = [r for r in g["runs"] if r["status"] == "finished"]
                        osc = [_oscillation(r["history"]) for r in done]
                        # accuracy a quarter of the way through: how fast a setting gets somewhere
                        early = [r["history"][max(len(r["history"]) // 4 - 1, 0)].get("val_accuracy", math.nan)
                                 for r in done if r["history"]]
                        # generalization: the final training accuracy and its lead over validation's
                        train_acc = [r["history"][-1].get("accuracy", math.nan) for r in done if r["history"]]
                        gaps = [r["history"][-1].get("accuracy", math.nan) - r["history"][-1].get("val_accuracy", math.nan)
                                for r in done if r["history"]]
                        generalization[str(value)] = (statistics.fmean(train_acc) if train_acc else math.nan,
                                                      statistics.fmean(gaps) if gaps else math.nan)
                        diverged = sum(r["status"] != "finished" for r in g["runs"])
                        acc = g["mean"] if not math.isnan(g["mean"]) else 0.0
                        by_value[str(value)] = (value, acc, statistics.fmean(osc) if osc else math.inf, diverged,
                                                statistics.fmean(early) if early else 0.0)
                    ordered = [by_value[str(v)] for v in axis["values"] if str(v) in by_value]
                    for value, acc, osc, div, early_acc in ordered:
                        key = f"{dlabel}.{factor}.{olabel}.{value}"
                        metrics[f"{key}.val_accuracy"] = acc
                        metrics[f"{key}.early_val_accuracy"] = early_acc
                        metrics[f"{key}.oscillation"] = osc
                        metrics[f"{key}.diverged_runs"] = div
                        train_acc, gap = generalization.get(str(value), (math.nan, math.nan))
                        metrics[f"{key}.train_accuracy"] = train_acc
                        metrics[f"{key}.gap"] = gap
                        rows.append((factor, olabel, str(value), acc, early_acc, osc, div))
                    best = max(ordered, key=lambda t: t[1])
                    if all(isinstance(v, (int, float)) for v, *_ in ordered):
                        metrics[f"{dlabel}.{factor}.{olabel}.best"] = float(best[0])
                    metrics[f"{dlabel}.{factor}.{olabel}.mean_accuracy"] = statistics.fmean(t[1] for t in ordered)
                    metrics[f"{dlabel}.{factor}.{olabel}.best_accuracy"] = best[1]
                    metrics[f"{dlabel}.{factor}.{olabel}.spread"] = best[1] - min(t[1] for t in ordered)
                    gaps = [metrics[f"{dlabel}.{factor}.{olabel}.{t[0]}.gap"] for t in ordered]
                    metrics[f"{dlabel}.{factor}.{olabel}.max_gap"] = max((x for x in gaps if not math.isnan(x)),
                                                                         default=math.nan)
                    numeric = all(isinstance(t[0], (int, float)) and not isinstance(t[0], bool) for t in ordered)
                    xs = [t[0] if numeric else list(axis["values"]).index(t[0]) for t in ordered]
                    series[olabel] = (xs, [t[1] for t in ordered])
                    ctx.log(f"{dlabel} {factor} {olabel}: " + ", ".join(f"{t[0]}→{t[1]:.3f}" for t in ordered))
                values = list(axis["values"])
                numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
                panel = {"title": f"{dlabel}: {factor}", "xlabel": factor, "ylabel": "val accuracy",
                         "series": series, "markers": True}
                if not numeric:  # named settings: one tick per value, labelled with it
                    panel["xticklabels"] = [str(v) for v in values]
                elif min(values) > 0 and max(values) / min(values) >= 10:
                    panel["logx"] = True
                panels.append(panel)
            fig = plot_panels(panels, ctx.path(f"grid_{dlabel}.png"), title=dlabel)
            sections.append(Section(f"{dlabel}", text=[f"data {dspec}; base {base}; seeds {list(seeds)}."],
                                    table=(("factor", "optimizer", "value", "val accuracy (mean over seeds)",
                                            "val accuracy at 1/4 of training", "loss oscillation", "diverged runs"), rows),
                                    figures=[("validation accuracy along each factor", fig)]))
            data_out[dlabel] = rows
    finally:
        store.close()
    return Outcome(metrics, sections, {"rows": data_out})
