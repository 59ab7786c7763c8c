"""Wider hidden layers on MNIST: training fit, validation and test accuracy, and CPU cost per epoch
against the width (notes 002: "increase units to 2048 or 4096")."""
from __future__ import annotations

import statistics
import time

import torch

from trainlab.experiments.report import Section
from trainlab.experiments.studies import Outcome, StudyContext
from trainlab.experiments.study_procedures._common import EpochLog, merged, resolve_data, train
from trainlab.train.callbacks import Callback


class EpochCPU(Callback):
    """CPU seconds (``time.process_time``) of each epoch: the training steps and the epoch's
    validation pass, not the model's construction or the final evaluation."""

    def __init__(self) -> None:
        self.seconds: list[float] = []
        self._t = 0.0

    def on_epoch_begin(self, epoch: int, logs: dict) -> None:
        self._t = time.process_time()

    def on_epoch_end(self, epoch: int, logs: dict) -> None:
        self.seconds.append(time.process_time() - self._t)


def width_sweep(ctx: StudyContext, *, data: dict, base: dict, widths: list[int], depth: int = 1,
                seeds: int = 1, reference: int | None = None) -> Outcome:
    """Train an MLP of ``depth`` hidden layers of each width in ``widths`` on one MNIST subset, with
    the same training (``base``: a runner config without data or hidden sizes) and the same epochs.

    Every width trains with seeds ``ctx.seed … ctx.seed + seeds − 1``; with one seed, every width
    sees the same batch order, so the comparison is paired. After training, the loss and accuracy
    are evaluated (eval mode) on the whole training, validation and test sets. The capacity claim
    is about the *training* numbers: at equal epochs a wider net should reach a lower training loss.
    Whether that also buys validation/test accuracy is measured separately, against the seed
    spread (max − min test accuracy over the seeds, in points) of the ``reference`` width (default:
    the second width of the list).

    CPU cost is the mean ``time.process_time()`` of an epoch (its training steps and its validation
    pass; not the model's construction or the final evaluation), with the study's torch threads. Reported per width ``w``:
    ``width<w>.train_loss``, ``.train_accuracy``, ``.val_accuracy``, ``.test_accuracy`` (means over
    the seeds), ``.test_spread`` (points), ``.cpu_s_per_epoch``, ``.parameters``; and
    ``widest.*`` / ``narrowest.*`` / ``reference.*`` aliases, ``best_val_width``,
    ``widest_minus_reference.test_points``, ``cost_ratio`` (CPU per epoch of the widest over the
    reference width); and per width what the widest net adds over it: ``width<w>.widest_test_points``
    (points of test accuracy), ``.widest_train_loss_change`` and ``.widest_cost_ratio``.
    """
    from trainlab.experiments.plots import plot_panels
    from trainlab.experiments.studies import StudyError

    # a bad parameter fails here, before any training, naming the field and the fix
    if data.get("name") != "mnist" or not any(k in data for k in ("n_train", "n_val", "n_test")):
        raise StudyError(f"params.data: width_sweep trains on an in-memory MNIST subset; give "
                         f"{{name: mnist, n_train: N, n_val: N, n_test: N}}, got {data}")
    if len(widths) < 2 or any(not isinstance(w, int) or w < 1 for w in widths):
        raise StudyError(f"params.widths: give at least two positive integer widths, got {widths}")
    reference = widths[1] if reference is None else reference
    if reference not in widths:
        raise StudyError(f"params.reference: {reference} is not one of the widths {widths}")

    cfg_data, splits = resolve_data(data, ctx.seed)
    train_ds, val_ds, test_ds = splits
    seed_list = [ctx.seed + i for i in range(seeds)]
    metrics: dict[str, float] = {}
    rows, curves = [], {}
    t0 = time.perf_counter()
    for w in widths:
        per_seed = {k: [] for k in ("train_loss", "train_accuracy", "val_accuracy", "test_accuracy", "cpu")}
        n_params = 0
        for s in seed_list:
            cfg = merged(dict(base, name=f"width-{w}-seed-{s}", seed=s, data=cfg_data), {"model": {"hidden": [w] * depth}})
            log = (EpochLog(f"width {w} seed {s}", ctx.log),) if ctx.verbose else ()
            timer = EpochCPU()
            c0 = time.process_time()
            run = train(cfg, data=splits, callbacks=(timer, *log))
            cpu = time.process_time() - c0
            if run.diverged is not None:
                raise RuntimeError(f"width {w}, seed {s}: training diverged ({run.diverged}); lower the learning rate")
            f = run.final
            n_params = sum(p.numel() for p in run.model.parameters())
            for k in ("train_loss", "train_accuracy", "val_accuracy", "test_accuracy"):
                per_seed[k].append(f[k])
            per_seed["cpu"].append(statistics.fmean(timer.seconds))
            if s == ctx.seed:
                curves[f"width {w}"] = (range(1, len(run.history["loss"]) + 1), run.history["loss"])
            ctx.log(f"width {w} seed {s}: train loss {f['train_loss']:.4f}, val acc {f['val_accuracy']:.4f}, "
                    f"test acc {f['test_accuracy']:.4f}, {cpu:.0f} CPU s")
        m = {k: statistics.fmean(v) for k, v in per_seed.items() if k != "cpu"}
        m["cpu_s_per_epoch"] = statistics.fmean(per_seed["cpu"])
        m["test_spread"] = 100 * (max(per_seed["test_accuracy"]) - min(per_seed["test_accuracy"]))
        m["parameters"] = n_params
        for k, v in m.items():
            metrics[f"width{w}.{k}"] = v
        rows.append((w, n_params, m["train_loss"], m["train_accuracy"], m["val_accuracy"], m["test_accuracy"],
                     m["test_spread"], m["cpu_s_per_epoch"]))

    keys = ("train_loss", "train_accuracy", "val_accuracy", "test_accuracy", "test_spread", "cpu_s_per_epoch", "parameters")
    for alias, w in (("narrowest", widths[0]), ("widest", widths[-1]), ("reference", reference)):
        for k in keys:
            metrics[f"{alias}.{k}"] = metrics[f"width{w}.{k}"]
    val = [metrics[f"width{w}.val_accuracy"] for w in widths]
    losses = [metrics[f"width{w}.train_loss"] for w in widths]
    metrics["best_val_width"] = widths[max(range(len(widths)), key=val.__getitem__)]
    metrics["train_loss_monotone"] = float(all(a >= b for a, b in zip(losses, losses[1:])))
    metrics["widest_minus_reference.test_points"] = 100 * (metrics["widest.test_accuracy"] - metrics["reference.test_accuracy"])
    metrics["widest_minus_reference.val_points"] = 100 * (metrics["widest.val_accuracy"] - metrics["reference.val_accuracy"])
    metrics["cost_ratio"] = metrics["widest.cpu_s_per_epoch"] / metrics["reference.cpu_s_per_epoch"]
    for w in widths:  # what the widest net adds over each width, and what it costs more
        metrics[f"width{w}.widest_test_points"] = 100 * (metrics["widest.test_accuracy"] - metrics[f"width{w}.test_accuracy"])
        metrics[f"width{w}.widest_train_loss_change"] = metrics["widest.train_loss"] - metrics[f"width{w}.train_loss"]
        metrics[f"width{w}.widest_cost_ratio"] = metrics["widest.cpu_s_per_epoch"] / metrics[f"width{w}.cpu_s_per_epoch"]
    metrics["n_train"], metrics["n_test"] = len(train_ds), len(test_ds)
    metrics["wall_time_s"] = time.perf_counter() - t0
    metrics["threads"] = torch.get_num_threads()

    test = [metrics[f"width{w}.test_accuracy"] for w in widths]
    cpu = [metrics[f"width{w}.cpu_s_per_epoch"] for w in widths]
    fig = plot_panels([
        {"title": "fit and accuracy against width", "xlabel": f"hidden units per layer ({depth} layer(s))",
         "ylabel": "accuracy", "series": {"train": (widths, [metrics[f"width{w}.train_accuracy"] for w in widths]),
                                          "validation": (widths, val), "test": (widths, test)},
         "logx": True, "markers": True},
        {"title": "training loss after training", "xlabel": "hidden units per layer", "ylabel": "train loss",
         "series": {"train loss": (widths, losses)}, "logx": True, "logy": True, "markers": True},
        {"title": "CPU seconds per epoch", "xlabel": "hidden units per layer", "ylabel": "CPU s",
         "series": {"CPU s / epoch": (widths, cpu)}, "logx": True, "markers": True},
    ], ctx.path("width.png"))
    loss_fig = plot_panels([{"title": "training loss per epoch (running mean over the epoch)", "xlabel": "epoch",
                             "ylabel": "loss", "series": curves, "logy": True}], ctx.path("width_curves.png"))
    section = Section("Wider hidden layers", text=[
        f"{depth} hidden layer(s) of each width, {len(train_ds)} training / {len(val_ds)} validation / "
        f"{len(test_ds)} test images of MNIST, the same training for every width "
        f"(`{base.get('optimizer')}`, {base.get('train', {}).get('epochs')} epochs), mean of {seeds} seed(s) "
        f"{seed_list}. Train loss/accuracy are evaluated on the whole training set after training. "
        f"CPU seconds per epoch with {torch.get_num_threads()} torch thread(s). The widest net's test accuracy "
        f"differs from width {reference}'s by {metrics['widest_minus_reference.test_points']:+.2f} points "
        f"(seed spread at width {reference}: {metrics['reference.test_spread']:.2f} points) at "
        f"{metrics['cost_ratio']:.1f}× the CPU time per epoch."],
        table=(("width", "parameters", "train loss", "train accuracy", "val accuracy", "test accuracy",
                "test spread (points)", "CPU s / epoch"), rows),
        figures=[("accuracy, training loss and cost against width", fig), ("training loss per epoch", loss_fig)])
    return Outcome(metrics, [section])
