"""Connection sparsity by magnitude pruning: accuracy against sparsity (notes 002; Han et al. 2015;
Zhu & Gupta 2017)."""
from __future__ import annotations

import copy

from trainlab.experiments.report import Section
from trainlab.experiments.studies import Outcome, StudyContext
from trainlab.experiments.study_procedures._common import merged, resolve_data, train


def pruning_sweep(ctx: StudyContext, *, data: dict, config: dict, sparsities: list[float], dense_epochs: int,
                  prune_epochs: int, finetune_epochs: int, layer_scope: list[float] = ()) -> Outcome:
    """Train a dense net, and the same net pruned to each sparsity, and compare their test accuracy.

    Every run has ``dense_epochs + prune_epochs + finetune_epochs`` epochs, the same seed and data.
    The pruned runs use the config's ``magnitude_pruning`` callback: dense training, then the cubic
    schedule from 0 to the target sparsity over ``prune_epochs`` (``scope: global``), then fine-tuning
    with the masks held. For comparison, the trained dense net is also cut to each sparsity at once
    with no retraining (one-shot), and the runs at ``layer_scope`` sparsities are repeated with
    ``scope: layer`` (every layer pruned to the same fraction).

    Metrics, per sparsity s: ``gradual.s_<s>.test_accuracy``, ``.sparsity`` (measured fraction of
    zero weights), ``.count_error`` (zero weights minus round(s·N), the exact count asked for),
    ``.accuracy_drop`` (dense minus pruned); ``oneshot.s_<s>.test_accuracy`` / ``.accuracy_drop``;
    ``layer.s_<s>.test_accuracy``; ``dense.test_accuracy``; ``weights`` (N).
    """
    from trainlab.experiments.plots import plot_panels
    from trainlab.nn.pruning import apply_masks, magnitude_masks, prunable_weights, weight_sparsity
    from trainlab.train.loop import evaluate
    from trainlab.losses import Loss

    cfg_data, splits = resolve_data(data, ctx.seed)
    test_set = splits[2]
    epochs = dense_epochs + prune_epochs + finetune_epochs
    base = merged({"data": cfg_data, "seed": ctx.seed}, merged(config, {"train": {"epochs": epochs}}))
    metrics: dict[str, float] = {}
    rows = []

    dense = train(base, data=splits)
    dense_acc = dense.final["test_accuracy"]
    n_weights = sum(p.numel() for p in prunable_weights(dense.model).values())
    metrics["dense.test_accuracy"] = dense_acc
    metrics["weights"] = float(n_weights)
    rows.append(("dense", 0.0, "—", 0.0, dense_acc, 0.0))
    ctx.log(f"dense: test accuracy {dense_acc:.4f}")

    loss = Loss("cross_entropy")
    curves = {"gradual (global)": ([], []), "one-shot, no retraining": ([], []), "gradual (per layer)": ([], [])}
    for s in sparsities:
        # one-shot: the trained dense weights, cut once, never trained again
        model = copy.deepcopy(dense.model)
        apply_masks(model, magnitude_masks(model, s, "global"))
        acc = evaluate(model, test_set, loss)["accuracy"]
        metrics[f"oneshot.s_{s:g}.test_accuracy"] = acc
        metrics[f"oneshot.s_{s:g}.accuracy_drop"] = dense_acc - acc
        rows.append(("one-shot, no retraining", s, "global", weight_sparsity(model), acc, dense_acc - acc))
        curves["one-shot, no retraining"][0].append(s)
        curves["one-shot, no retraining"][1].append(acc)
        for scope in ("global", "layer") if s in layer_scope else ("global",):
            prune = {"name": "magnitude_pruning", "sparsity": s, "scope": scope, "start_epoch": dense_epochs,
                     "end_epoch": dense_epochs + prune_epochs}
            run = train(dict(base, callbacks=[*base.get("callbacks", []), prune]), data=splits)
            acc = run.final["test_accuracy"]
            measured = weight_sparsity(run.model)
            key = f"{'gradual' if scope == 'global' else 'layer'}.s_{s:g}"
            metrics[f"{key}.test_accuracy"] = acc
            metrics[f"{key}.accuracy_drop"] = dense_acc - acc
            metrics[f"{key}.sparsity"] = measured
            if scope == "global":
                metrics[f"{key}.count_error"] = float(round(measured * n_weights) - round(s * n_weights))
                label = "gradual (global)"
            else:
                # per layer: each layer's own count is round(s·n_layer)
                asked = sum(round(s * p.numel()) for p in prunable_weights(run.model).values())
                metrics[f"{key}.count_error"] = float(round(measured * n_weights) - asked)
                label = "gradual (per layer)"
            layer_sparsity = {n: float((p == 0).double().mean()) for n, p in prunable_weights(run.model).items()}
            metrics.update({f"{key}.layer.{n}": v for n, v in layer_sparsity.items()})
            rows.append((label, s, scope, measured, acc, dense_acc - acc))
            curves[label][0].append(s)
            curves[label][1].append(acc)
            ctx.log(f"{label} {s:g}: test accuracy {acc:.4f}, sparsity {measured:.4f}; layers {layer_sparsity}")
    fig = plot_panels([{"title": "test accuracy against sparsity", "xlabel": "fraction of weights pruned",
                        "ylabel": "test accuracy", "series": {k: v for k, v in curves.items() if v[0]},
                        "markers": True, "hline": dense_acc}], ctx.path("pruning.png"))
    section = Section("Accuracy against sparsity", text=[
        f"{config.get('model')}, {config.get('optimizer')}; {dense_epochs} dense epochs, then the cubic schedule to "
        f"the target over {prune_epochs} epochs, then {finetune_epochs} epochs of fine-tuning with the masks held "
        f"({n_weights} prunable weights; biases are not pruned). One-shot: the dense net's weights cut at the end, "
        "without retraining. The dashed line is the dense net's accuracy."],
        table=(("run", "target sparsity", "scope", "measured sparsity", "test accuracy", "drop from dense"), rows),
        figures=[("test accuracy against the fraction of pruned weights", fig)])
    return Outcome(metrics, [section])
