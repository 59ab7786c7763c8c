"""MNIST to 99 %: the notes' recipe for an MLP (with a 3-model ensemble) and a small CNN (notes 002)."""
from __future__ import annotations

import math
import time

import torch

from trainlab.experiments.report import Section
from trainlab.experiments.studies import Outcome, StudyContext
from trainlab.experiments.study_procedures._common import EpochLog, merged, resolve_data, train


def mnist_recipe(ctx: StudyContext, *, data: dict, config: dict, members: int = 1,
                 member_seeds: list[int] | None = None) -> Outcome:
    """Train ``members`` models of ``config`` (differing only in their seed) on MNIST and average
    their predicted probabilities (the notes' "train 3 models, average predictions").

    ``config`` is a runner config without data: model, init, optimizer, schedule, transforms,
    callbacks (early stopping), augment, train. Every member sees the same data split; test
    accuracy is measured once per member and once for the ensemble, on the test set the members
    never saw (early stopping watches the validation set). Wall time covers everything: loading
    aside, each member's training and evaluation and the ensemble's averaging.
    """
    from trainlab.experiments.ensemble import predict_proba, score
    from trainlab.experiments.plots import plot_panels
    from trainlab.losses import Loss

    t0 = time.perf_counter()
    cfg_data, splits = resolve_data(data, ctx.seed)
    if splits is None:
        from trainlab.experiments.runner import build_data
        from trainlab.experiments.config import parse_config

        splits = build_data(parse_config({"data": cfg_data, "seed": ctx.seed}))
        splits = (splits.train, splits.val, splits.test)
    train_ds, val_ds, test_ds = splits
    seeds = member_seeds or [ctx.seed + i for i in range(members)]
    loss = Loss("cross_entropy")
    metrics: dict[str, float] = {}
    preds_val, preds_test, rows, curves = [], [], [], {}
    for i, seed in enumerate(seeds):
        t1 = time.perf_counter()
        cfg = merged(dict(config, name=f"mnist-member{i + 1}", seed=seed, data=cfg_data), {})
        log = (EpochLog(f"member {i + 1}", ctx.log),) if ctx.verbose else ()
        run = train(cfg, data=(train_ds, val_ds, test_ds), callbacks=log)
        if run.diverged is not None:
            raise RuntimeError(f"member {i + 1} diverged: {run.diverged}")
        seconds = time.perf_counter() - t1
        model = run.model
        p_val = predict_proba(model, val_ds.X.to(next(model.parameters()).device), loss).cpu()
        p_test = predict_proba(model, test_ds.X.to(next(model.parameters()).device), loss).cpu()
        preds_val.append(p_val)
        preds_test.append(p_test)
        test_acc = score(p_test, test_ds.y, loss)["accuracy"]
        metrics[f"member{i + 1}.test_accuracy"] = test_acc
        metrics[f"member{i + 1}.val_accuracy"] = score(p_val, val_ds.y, loss)["accuracy"]
        metrics[f"member{i + 1}.epochs"] = len(run.history["loss"])
        metrics[f"member{i + 1}.seconds"] = seconds
        curves[f"member {i + 1} (val)"] = (range(1, len(run.history["val_accuracy"]) + 1), run.history["val_accuracy"])
        rows.append((f"member {i + 1} (seed {seed})", len(run.history["loss"]), max(run.history["val_accuracy"]),
                     metrics[f"member{i + 1}.val_accuracy"], test_acc, seconds))
        ctx.log(f"member {i + 1}: test accuracy {test_acc:.4f} after {len(run.history['loss'])} epochs, {seconds:.0f} s")
    ens_test = score(torch.stack(preds_test).mean(0), test_ds.y, loss)
    ens_val = score(torch.stack(preds_val).mean(0), val_ds.y, loss)
    member_tests = [metrics[f"member{i + 1}.test_accuracy"] for i in range(len(seeds))]
    metrics["ensemble.test_accuracy"] = ens_test["accuracy"]
    metrics["ensemble.val_accuracy"] = ens_val["accuracy"]
    metrics["ensemble.test_loss"] = ens_test["loss"]
    metrics["best_member.test_accuracy"] = max(member_tests)
    metrics["mean_member.test_accuracy"] = sum(member_tests) / len(member_tests)
    metrics["ensemble_gain"] = ens_test["accuracy"] - metrics["mean_member.test_accuracy"]
    metrics["wall_time_s"] = time.perf_counter() - t0
    metrics["wall_time_min"] = metrics["wall_time_s"] / 60
    metrics["threads"] = torch.get_num_threads()
    metrics["n_train"] = len(train_ds)
    metrics["n_test"] = len(test_ds)
    if len(seeds) > 1:
        rows.append((f"ensemble of {len(seeds)} (averaged probabilities)", "", "", ens_val["accuracy"],
                     ens_test["accuracy"], ""))
    fig = plot_panels([{"title": "validation accuracy per epoch", "xlabel": "epoch", "ylabel": "accuracy",
                        "series": curves, "hline": 0.99}], ctx.path("mnist_curves.png"))
    section = Section("MNIST", text=[
        f"{len(train_ds)} training / {len(val_ds)} validation / {len(test_ds)} test images. "
        f"Wall time {metrics['wall_time_s']:.0f} s ({metrics['wall_time_min']:.1f} min) with "
        f"{torch.get_num_threads()} torch threads.",
        f"Recipe: {config}"],
        table=(("model", "epochs", "best val acc", "final val acc", "test accuracy", "seconds"), rows),
        figures=[("validation accuracy", fig)])
    return Outcome(metrics, [section])
