"""Initialization by unsupervised pretraining: an autoencoder's encoder as the classifier's first layer (notes 002)."""
from __future__ import annotations

import math
import statistics
import tempfile
from pathlib import Path

import torch

from trainlab.experiments.report import Section
from trainlab.experiments.studies import Outcome, StudyContext
from trainlab.experiments.study_procedures._common import mnist_subset, train


def unsupervised_pretraining(ctx: StudyContext, *, hidden: int = 256, activation: str = "relu",
                             n_unlabelled: int = 10000, autoencoder_epochs: int = 10, n_labels: list[int],
                             n_val: int = 2000, epochs: int = 30, batch_size: int = 32, lr: float = 0.001,
                             seeds: int = 3, corruption: float = 0.0) -> Outcome:
    """Pretrain an autoencoder x → h → x̂ on ``n_unlabelled`` MNIST images without their labels, then
    train a classifier x → h → softmax from its weights (``model.pretrained``: the encoder
    ``blocks.0`` is copied; the output layer, 784 wide in the autoencoder, is replaced by a fresh
    10-way one) and from a random (He) initialization, on each of ``n_labels`` labelled images.

    The autoencoder is an ordinary run: ``data: {name: npz}`` whose targets are the inputs, an
    MLP (``hidden``) with a linear head and mse, written to a run folder. The classifiers share
    everything but the initialization of their first layer: Adam at ``lr``, ``epochs`` epochs,
    ``seeds`` seeds; reported are the validation accuracy after the first epoch, at the end, and
    the best over the epochs, on ``n_val`` held-out images. ``corruption`` > 0 makes it a
    denoising autoencoder (Vincent et al. 2008): that fraction of each input's pixels is set to
    0 (one fixed draw) and the clean image is the target.
    """
    import numpy as np

    metrics: dict[str, float] = {}
    unlabelled, val, _ = mnist_subset(n_unlabelled, n_val, 10, seed=ctx.seed)
    rows, curves = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        archive = Path(tmp) / "unlabelled.npz"
        clean = unlabelled.X
        g = torch.Generator().manual_seed(ctx.seed + 5)
        noisy = clean * (torch.rand(clean.shape, generator=g) >= corruption) if corruption > 0 else clean
        # an autoencoder's targets are its (clean) inputs: no label is read
        np.savez(archive, X=noisy.numpy().astype(np.float32), y=clean.numpy().astype(np.float32))
        ae_cfg = {"name": "autoencoder", "seed": ctx.seed,
                  "data": {"name": "npz", "path": str(archive), "task": "regression", "split": [0.9, 0.1]},
                  "model": {"kind": "mlp", "hidden": [hidden], "activation": activation},
                  "init": {"weight": "he_normal", "bias": "zeros"}, "loss": {"name": "mse"},
                  "optimizer": {"name": "adam", "lr": lr}, "train": {"epochs": autoencoder_epochs, "batch_size": 64},
                  "diagnostics": None}
        from trainlab.experiments.runner import Splits, run_experiment

        ae_dir = ctx.path("autoencoder-run")
        ae = run_experiment(ae_cfg, run_dir=ae_dir, write=True, verbose=False, overwrite=True)
        metrics["autoencoder.val_mse"] = ae.final.get("val_loss", math.nan)
        metrics["autoencoder.input_variance"] = float(unlabelled.X.var(0).mean())
        ctx.log(f"autoencoder {784}→{hidden}→784: val mse {metrics['autoencoder.val_mse']:.4g} "
                f"(per-pixel variance {metrics['autoencoder.input_variance']:.4g})")
    # the classifier as the runner builds it, before training: is its first layer the encoder?
    from trainlab.experiments.config import parse_config
    from trainlab.experiments.runner import build_training

    probe_cfg = parse_config({"data": {"name": "mnist"}, "seed": ctx.seed, "init": {"weight": "he_normal"},
                              "model": {"kind": "mlp", "hidden": [hidden], "activation": activation,
                                        "pretrained": str(ae_dir)}})
    classifier = build_training(probe_cfg, torch.device("cpu"), Splits(val, val))[2]
    encoder = ae.model.blocks[0].linear
    metrics["encoder_copied"] = float(torch.equal(classifier.blocks[0].linear.weight.cpu(), encoder.weight.cpu())
                                      and torch.equal(classifier.blocks[0].linear.bias.cpu(), encoder.bias.cpu()))
    metrics["output_layer_replaced"] = float(classifier.out.weight.shape == (10, hidden))
    for n in n_labels:
        labelled = mnist_subset(n, None, None, seed=ctx.seed + 17)[0]
        for init in ("random", "pretrained"):
            first, final, best = [], [], []
            for s in range(ctx.seed, ctx.seed + seeds):
                model = {"kind": "mlp", "hidden": [hidden], "activation": activation}
                if init == "pretrained":
                    model["pretrained"] = str(ae_dir)
                cfg = {"name": f"classifier-{init}-{n}-{s}", "seed": s, "data": {"name": "mnist"}, "model": model,
                       "init": {"weight": "he_normal", "bias": "zeros"}, "optimizer": {"name": "adam", "lr": lr},
                       "train": {"epochs": epochs, "batch_size": batch_size}, "diagnostics": None}
                run = train(cfg, data=Splits(labelled, val))
                acc = run.history.history.get("val_accuracy", [0.0])
                first.append(acc[0])
                final.append(acc[-1])
                best.append(max(acc))
                if s == ctx.seed:
                    curves[f"{n} labels, {init}"] = (range(1, len(acc) + 1), acc)
            key = f"n{n}.{init}"
            metrics[f"{key}.first_epoch_accuracy"] = statistics.fmean(first)
            metrics[f"{key}.final_accuracy"] = statistics.fmean(final)
            metrics[f"{key}.best_accuracy"] = statistics.fmean(best)
            rows.append((n, init, metrics[f"{key}.first_epoch_accuracy"], metrics[f"{key}.final_accuracy"],
                         metrics[f"{key}.best_accuracy"]))
            ctx.log(f"{n} labels, {init}: val accuracy after epoch 1 {metrics[f'{key}.first_epoch_accuracy']:.4f}, "
                    f"final {metrics[f'{key}.final_accuracy']:.4f}, best {metrics[f'{key}.best_accuracy']:.4f}")
        metrics[f"n{n}.final_gain"] = metrics[f"n{n}.pretrained.final_accuracy"] - metrics[f"n{n}.random.final_accuracy"]
        metrics[f"n{n}.abs_final_gain"] = abs(metrics[f"n{n}.final_gain"])
        metrics[f"n{n}.first_epoch_gain"] = (metrics[f"n{n}.pretrained.first_epoch_accuracy"]
                                             - metrics[f"n{n}.random.first_epoch_accuracy"])

    from trainlab.experiments.plots import plot_panels

    fig = plot_panels([{"title": "classifier validation accuracy", "xlabel": "epoch", "ylabel": "accuracy",
                        "series": curves}], ctx.path("pretraining.png"))
    text = [f"Autoencoder 784 → {hidden} ({activation}) → 784 trained {autoencoder_epochs} epochs (mse, Adam lr {lr:g}) "
            f"on {n_unlabelled} MNIST images without labels; its first layer initializes the classifier "
            f"(`model.pretrained`). Classifiers 784 → {hidden} → 10, Adam lr {lr:g}, batch {batch_size}, {epochs} "
            f"epochs on the labelled subset; validation on {n_val} images; means over {seeds} seeds."]
    return Outcome(metrics, [Section("Unsupervised pretraining against random initialization", text=text, table=(
        ("labels", "first layer", "val accuracy after epoch 1", "final", "best"), rows),
        figures=[("validation accuracy per epoch (first seed)", fig)])])
