"""MNIST to 99 %: the notes' recipe for an MLP (with a 3-model ensemble) and a small CNN (notes 002)."""
from __future__ import annotations

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


def recipe_ablation(ctx: StudyContext, *, data: dict, recipe: dict, variants: dict[str, dict],
                    recipe_seeds: list[int] | None = None, only: list[str] | None = None,
                    reference: str = "recipe", pairs: dict[str, list[str]] | None = None) -> Outcome:
    """Train the recipe and each variant of it on the same MNIST subset and compare test accuracy.

    ``recipe`` is a runner config without data; each entry of ``variants`` is an override merged
    into it (:func:`~trainlab.experiments.studies.deep_merge`: dicts merge key by key, lists and
    values replace, so ``augment: []`` removes the augmentation and ``model: {norm: null}`` the
    batch norm); the sections an override lists under ``replace`` are replaced whole instead
    (``{optimizer: {name: adamw, lr: 0.001}, replace: [optimizer]}`` drops SGD's momentum). The
    reference variant (``reference``, an empty override) is the recipe itself.

    Every variant trains with the same seed, so the same initial draw where the shapes agree and
    the same batch order: the comparison is paired. ``recipe_seeds`` trains the recipe again with
    other seeds to measure how far accuracy moves by chance alone; a variant's cost is

        cost = 100 · (test accuracy of the recipe − test accuracy of the variant)   (points)

    and a cost smaller than the recipe's seed spread (max − min over its seeds) is noise, not an
    effect. ``pairs`` names differences between two variants, ``{name: [a, b]}`` reporting
    ``name = 100 · (accuracy of a − accuracy of b)`` (e.g. batch norm's worth at depth 10; pairs
    whose variants did not run are left out). ``only`` restricts the run to some variants (quick
    mode). Reported per variant:
    ``<label>.test_accuracy``, ``.val_accuracy``, ``.best_val_accuracy``, ``.cost``, ``.epochs``,
    ``.seconds`` (process CPU time); and ``recipe.seed_spread`` / ``recipe.seed_mean``.
    """
    from trainlab.experiments.ensemble import predict_proba, score
    from trainlab.experiments.plots import plot_bars
    from trainlab.experiments.studies import StudyError
    from trainlab.losses import Loss

    # a bad parameter fails here, before any training, naming the field and the fix
    if data.get("name") != "mnist" or not any(k in data for k in ("n_train", "n_val", "n_test")):
        raise StudyError(f"params.data: recipe_ablation trains on an in-memory MNIST subset; give "
                         f"{{name: mnist, n_train: N, n_val: N, n_test: N}}, got {data}")
    for field, names in (("only", only or []), *((f"pairs.{k}", v) for k, v in (pairs or {}).items())):
        unknown = [n for n in names if n not in variants and n != reference]
        if unknown:
            raise StudyError(f"params.{field}: unknown variant(s) {', '.join(map(repr, unknown))}; "
                             f"the variants are: {', '.join(variants)}")
    t0 = time.perf_counter()
    cfg_data, splits = resolve_data(data, ctx.seed)
    train_ds, val_ds, test_ds = splits
    labels = [k for k in variants if only is None or k in only]
    if reference not in labels:
        labels.insert(0, reference)
    runs = [(label, ctx.seed) for label in labels] + [(reference, s) for s in (recipe_seeds or [])]
    metrics: dict[str, float] = {}
    seed_accs: list[float] = []
    rows = []
    for label, seed in runs:
        override = dict(variants.get(label) or {})
        replace = override.pop("replace", [])
        cfg = merged({k: v for k, v in recipe.items() if k not in replace}, override)
        cfg.update(name=f"recipe-{label}", seed=seed, data=cfg_data)
        log = (EpochLog(label, ctx.log),) if ctx.verbose else ()
        c0 = time.process_time()
        run = train(cfg, data=splits, callbacks=log)
        seconds = time.process_time() - c0
        if run.diverged is not None:
            # a variant that diverges has a measured outcome too: chance accuracy
            test_acc, val_acc, best_val, epochs = 0.1, 0.1, 0.1, len(run.history["loss"])
        else:
            model = run.model
            device = next(model.parameters()).device
            loss = Loss("cross_entropy")
            test_acc = score(predict_proba(model, test_ds.X.to(device), loss).cpu(), test_ds.y, loss)["accuracy"]
            val_acc = run.final["val_accuracy"]
            best_val, epochs = max(run.history["val_accuracy"]), len(run.history["loss"])
        if label == reference:
            seed_accs.append(test_acc)
        if seed != ctx.seed:
            metrics[f"{label}.seed{seed}.test_accuracy"] = test_acc
            rows.append((f"{label} (seed {seed})", "", epochs, val_acc, test_acc, "", seconds))
            ctx.log(f"{label} seed {seed}: test accuracy {test_acc:.4f}, {seconds:.0f} s")
            continue
        metrics.update({f"{label}.test_accuracy": test_acc, f"{label}.val_accuracy": val_acc,
                        f"{label}.best_val_accuracy": best_val, f"{label}.epochs": epochs,
                        f"{label}.seconds": seconds, f"{label}.diverged": float(run.diverged is not None)})
        rows.append((label, _json_short(override), epochs, val_acc, test_acc, None, seconds))
        ctx.log(f"{label}: test accuracy {test_acc:.4f} after {epochs} epochs, {seconds:.0f} s")
    ref_acc = metrics[f"{reference}.test_accuracy"]
    for label in labels:
        metrics[f"{label}.cost"] = 100 * (ref_acc - metrics[f"{label}.test_accuracy"])
    for name, (a, b) in (pairs or {}).items():
        if f"{a}.test_accuracy" in metrics and f"{b}.test_accuracy" in metrics:
            metrics[name] = 100 * (metrics[f"{a}.test_accuracy"] - metrics[f"{b}.test_accuracy"])
    metrics[f"{reference}.seed_mean"] = sum(seed_accs) / len(seed_accs)
    metrics[f"{reference}.seed_spread"] = 100 * (max(seed_accs) - min(seed_accs))
    metrics["n_train"], metrics["n_test"] = len(train_ds), len(test_ds)
    metrics["cpu_seconds"] = sum(metrics[f"{label}.seconds"] for label in labels)
    metrics["wall_time_s"] = time.perf_counter() - t0
    metrics["threads"] = torch.get_num_threads()
    rows = [r if r[5] is not None else (*r[:5], f"{metrics[f'{r[0]}.cost']:+.2f}", r[6]) for r in rows]
    fig = plot_bars({label: {"cost (points)": metrics[f"{label}.cost"]} for label in labels if label != reference},
                    ctx.path("recipe_costs.png"), ylabel="test accuracy points lost vs the recipe",
                    title=f"each change to the recipe (seed spread of the recipe: "
                          f"{metrics[f'{reference}.seed_spread']:.2f} points)")
    section = Section("The recipe, item by item", text=[
        f"{len(train_ds)} training / {len(val_ds)} validation / {len(test_ds)} test images of MNIST; every "
        f"variant trains with seed {ctx.seed} (same batch order); the recipe also with seeds {recipe_seeds or []} "
        f"(test accuracies {', '.join(f'{a:.4f}' for a in seed_accs)}: a spread of "
        f"{metrics[f'{reference}.seed_spread']:.2f} points, the size of a difference chance alone makes). "
        f"Cost = points of test accuracy lost against the recipe (negative: the change helped). "
        f"CPU seconds with {torch.get_num_threads()} torch thread(s).",
        f"Recipe: {recipe}"],
        table=(("variant", "change", "epochs", "final val acc", "test accuracy", "cost (points)", "CPU s"), rows),
        figures=[("cost of each change", fig)])
    return Outcome(metrics, [section])


def _json_short(override: dict) -> str:
    """An override as compact one-line text for the report's table."""
    import json

    return json.dumps(override, separators=(",", ":"))[:120] if override else "(the recipe)"
