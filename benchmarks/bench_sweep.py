"""Batched sweep training vs. training the same models one after another in a plain PyTorch loop.

The workload (the sweep issue's goal): 32 MLPs 2-64-64-2 on two moons (1000 samples, 70/30 split),
50 epochs, batch size 64, SGD with momentum 0.9 at four learning rates {0.001, 0.01, 0.05, 0.1}
(the notes' grid) times eight seeds. Four ways, side by side in one process:

plain loop   a minimal hand-written PyTorch loop per model (nn.Sequential, torch.optim.SGD,
             randperm + index_select batches, F.cross_entropy), one model after another: the peer
trainlab fit the runner's ``run_experiment`` per model, one after another (for reference)
fit loop     the plain loop's model, optimizer and loss trained by :func:`trainlab.fit`: the
             loop's own cost (goal <= 1.05x the plain loop)
batched      :func:`trainlab.experiments.batched.train_group`: all 32 as one stacked model

It prints the seconds of each, the speed-up of batched over the plain loop (goal: >= 10x), and
checks that batched members reach the accuracies of their solo runs. Timings are wall-clock on
whatever else the machine is doing; compare ratios from the same run, not absolute numbers. Every
column uses the same number of torch threads (``--threads``, default 1).

A second workload (goal 5 of the sweep issue): 8 small MNIST CNNs (conv 8 → conv 16 → dense 32,
batch norm, dropout 0.1) on the first 2,000 training images, 2 epochs, batch 64, SGD with momentum
at two learning rates times four seeds: :func:`train_group` (one ``vmap``-ed model) against
:func:`run_experiment` one after another (goal >= 2x). Peak memory of each batched model is
printed (the GPU allocator's peak, or the process's peak resident size on the CPU).

Each ratio is also printed as a line ``RATIO <name> <value> <op> <goal>`` for
``benchmarks/run_all.py``'s summary table. ``--device cuda`` runs every column on the GPU and times
it with CUDA events.

    python benchmarks/bench_sweep.py            # both workloads
    python benchmarks/bench_sweep.py --workload moons
    python benchmarks/bench_sweep.py --quick    # a few models, two epochs (a smoke test)
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch
import torch.nn.functional as F
from torch import nn

from trainlab.experiments.batched import keep_freed_memory, train_group
from trainlab.experiments.config import parse_config
from trainlab.experiments.runner import build_data, run_experiment

LRS = (0.001, 0.01, 0.05, 0.1)


def configs(n_models: int, epochs: int, optimizer: str, device: str = "cpu") -> list:
    out = []
    for i in range(n_models):
        lr, seed = LRS[i % len(LRS)], i // len(LRS)
        opt = {"name": "sgd", "lr": lr, "momentum": 0.9} if optimizer == "sgd" else {"name": "adam", "lr": lr / 10}
        out.append(parse_config({
            "name": f"bench-{i}", "seed": seed,
            "data": {"name": "moons", "n_samples": 1000, "noise": 0.2, "split": [0.7, 0.3]},
            "model": {"kind": "mlp", "hidden": [64, 64], "activation": "relu"},
            "optimizer": opt, "train": {"epochs": epochs, "batch_size": 64, "device": device},
            "diagnostics": None}))  # the plain loop records no diagnostics either: same work everywhere
    return out


def plain_loop(cfg) -> float:
    """One model trained by a minimal PyTorch loop; returns its final validation accuracy.

    Like every trainlab run it keeps a per-epoch history (training loss and accuracy, validation
    loss and accuracy), so all columns compute the same numbers.
    """
    torch.manual_seed(cfg.seed)
    data = build_data(cfg)
    device = torch.device(cfg.train.device)
    X, y, Xv, yv = (t.to(device) for t in (data.train.X, data.train.y, data.val.X, data.val.y))
    model = nn.Sequential(nn.Linear(2, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 2)).to(device)
    kw = cfg.optimizer.kwargs
    opt = (torch.optim.SGD(model.parameters(), lr=kw["lr"], momentum=kw["momentum"]) if cfg.optimizer.name == "sgd"
           else torch.optim.Adam(model.parameters(), lr=kw["lr"]))
    g = torch.Generator().manual_seed(cfg.seed)
    bs = cfg.train.batch_size
    history = []
    for _ in range(cfg.train.epochs):
        perm = torch.randperm(len(X), generator=g).to(device)
        total, correct = 0.0, 0
        for i in range(0, len(X), bs):
            idx = perm[i:i + bs]
            z = model(X.index_select(0, idx))
            yb = y.index_select(0, idx)
            loss = F.cross_entropy(z, yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
            correct += int((z.argmax(1) == yb).sum())
        with torch.no_grad():
            zv = model(Xv)
            history.append({"loss": total / len(X), "accuracy": correct / len(X),
                            "val_loss": F.cross_entropy(zv, yv).item(),
                            "val_accuracy": (zv.argmax(1) == yv).float().mean().item()})
    return history[-1]["val_accuracy"]


DEVICE = torch.device("cpu")


def fit_loop_only(cfg) -> float:
    """The plain loop's model, ``torch.optim.SGD`` and ``F.cross_entropy`` trained by
    :func:`trainlab.fit`: what the fit loop itself costs over the plain loop (same work, same data
    order); returns the final validation accuracy."""
    from trainlab.train import fit

    torch.manual_seed(cfg.seed)
    data = build_data(cfg)
    device = torch.device(cfg.train.device)
    model = nn.Sequential(nn.Linear(2, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 2)).to(device)
    kw = cfg.optimizer.kwargs
    opt = (torch.optim.SGD(model.parameters(), lr=kw["lr"], momentum=kw["momentum"]) if cfg.optimizer.name == "sgd"
           else torch.optim.Adam(model.parameters(), lr=kw["lr"]))
    hist = fit(model, data.train, data.val, loss=F.cross_entropy, optimizer=opt, epochs=cfg.train.epochs,
               batch_size=cfg.train.batch_size, seed=cfg.seed, device=device, verbose=False)
    return hist["val_accuracy"][-1]


def timed(fn):
    """``(result, wall seconds, CPU seconds of this process)``: the CPU time is what the work cost
    even when other processes share the cores (the wall time then also counts their turns). On a
    GPU the wall time comes from CUDA events around the work (and the CPU column repeats it)."""
    if DEVICE.type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        torch.cuda.synchronize(DEVICE)
        start.record()
        out = fn()
        end.record()
        torch.cuda.synchronize(DEVICE)
        seconds = start.elapsed_time(end) / 1000
        return out, seconds, seconds
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - t0, time.process_time() - c0


def ratio_line(name: str, value: float, op: str, goal: float) -> None:
    """The machine-readable line ``benchmarks/run_all.py`` collects into its summary table."""
    print(f"RATIO {name} {value:.3f} {op} {goal:g}", flush=True)


def cnn_configs(n_models: int, epochs: int, limit: int, device: str) -> list:
    """8 small MNIST CNNs: two learning rates times four seeds, on the first ``limit`` images."""
    out = []
    for i in range(n_models):
        out.append(parse_config({
            "name": f"bench-cnn-{i}", "seed": i // 2,
            "data": {"name": "mnist", "limit": limit, "val_size": 1000, "download": False, "flatten": False},
            "model": {"kind": "cnn", "channels": [8, 16], "hidden": 32, "norm": "batch", "dropout": 0.1},
            "optimizer": {"name": "sgd", "lr": (0.01, 0.05)[i % 2], "momentum": 0.9},
            "train": {"epochs": epochs, "batch_size": 64, "device": device}, "diagnostics": None}))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="4 models, 2 epochs: checks that it runs")
    parser.add_argument("--models", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--optimizer", choices=["sgd", "adam"], default="sgd")
    parser.add_argument("--skip-fit", action="store_true", help="leave out the trainlab-fit column")
    parser.add_argument("--batched-repeats", type=int, default=3,
                        help="batched runs of the moons workload, spread over the others (the median counts)")
    parser.add_argument("--workload", choices=["moons", "cnn", "all"], default=None,
                        help="default: all (with --quick: moons, which needs no MNIST)")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda: where every column runs")
    parser.add_argument("--cnn-images", type=int, default=2000, help="MNIST training images of the CNN workload")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch intra-op threads for every column (default 1: these matrices are too "
                             "small to split, and spare threads spin against other processes)")
    args = parser.parse_args(argv)
    if args.workload is None:
        args.workload = "moons" if args.quick else "all"
    threads_before = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    tuned = keep_freed_memory()  # as `trainlab sweep` does; one process, so every column runs with it
    global DEVICE
    DEVICE = torch.device(args.device)
    print(f"device: {DEVICE}{' (' + torch.cuda.get_device_name(DEVICE) + ')' if DEVICE.type == 'cuda' else ''}, "
          f"{torch.get_num_threads()} thread(s)")
    try:
        code = 0
        if args.workload in ("moons", "all"):
            code |= _compare(args, tuned)
        if args.workload in ("cnn", "all"):
            code |= _compare_cnn(args)
        return code
    finally:
        torch.set_num_threads(threads_before)


def _compare_cnn(args) -> int:
    """8 small MNIST CNNs: batched (vmap) vs trainlab one after another."""
    from trainlab.data.mnist import MnistUnavailableError

    n, epochs, limit = (2, 1, 256) if args.quick else (8, 2, args.cnn_images)
    cfgs = cnn_configs(n, epochs, limit, args.device)
    print(f"\n{n} MNIST CNNs (conv 8, conv 16, dense 32, batch norm, dropout 0.1) on {limit} images, "
          f"{epochs} epochs, batch 64, sgd")
    try:
        solo, t_solo, c_solo = timed(lambda: [run_experiment(c, write=False, verbose=False) for c in cfgs])
    except MnistUnavailableError as err:
        print(f"skipped: {str(err).splitlines()[0]}")
        return 0
    outcomes, t_b, c_b = timed(lambda: train_group(cfgs, batch_convs_on_cpu=True))
    failed = [o for o in outcomes if o.error is not None]
    if failed:
        print(f"batched: {len(failed)} runs failed: {failed[0].error}", file=sys.stderr)
        return 1
    info = outcomes[0].info
    solo_acc = [r.final["val_accuracy"] for r in solo]
    acc = [o.result.final["val_accuracy"] for o in outcomes]
    print(f"{'':40s} {'wall s':>8s} {'CPU s':>8s} {'mean val acc':>13s}")
    print(f"{'trainlab, one after another':40s} {t_solo:8.2f} {c_solo:8.2f} {statistics.fmean(solo_acc):13.4f}")
    print(f"{'trainlab batched (' + info.get('engine', 'stack') + ', ' + info.get('mode', '?') + ')':40s} "
          f"{t_b:8.2f} {c_b:8.2f} {statistics.fmean(acc):13.4f}")
    print(f"batched members: {info.get('batched')}, peak memory {info.get('peak_memory_bytes', 0) / 2**20:.0f} MiB")
    print(f"largest |val acc batched - val acc solo|: {max(abs(a - b) for a, b in zip(solo_acc, acc)):.4f}")
    print(f"speed-up batched vs one after another: {c_solo / c_b:.2f}x CPU, {t_solo / t_b:.2f}x wall (goal >= 2x)")
    ratio_line("sweep.cnn8_batched_vs_sequential", c_solo / c_b, ">=", 2)
    return 0


def _compare(args, tuned: bool) -> int:
    n, epochs = (4, 2) if args.quick else (args.models, args.epochs)
    cfgs = configs(n, epochs, args.optimizer, args.device)
    print(f"{n} MLPs 2-64-64-2 on moons (1000 samples), {epochs} epochs, batch 64, {args.optimizer}, "
          f"lrs {LRS}; torch {torch.__version__}, {torch.get_num_threads()} thread(s), "
          f"malloc keeps freed memory: {tuned}")

    # The columns are interleaved model by model (plain, fit, loop for model 1, then model 2, ...)
    # and the batched run is repeated early, midway and late in that sequence (its median counts): on
    # a machine whose speed drifts, columns run one after another would each see another speed.
    columns = {"plain": plain_loop}
    if not args.skip_fit:
        columns["fit"] = lambda c: run_experiment(c, write=False, verbose=False).final["val_accuracy"]
        columns["loop"] = fit_loop_only
    acc = {k: [] for k in columns}
    wall = {k: 0.0 for k in columns}
    cpu = {k: 0.0 for k in columns}
    batched_runs, outcomes = [], None
    repeats = 1 if args.quick else args.batched_repeats
    checkpoints = {int((i + 0.5) * n / repeats) for i in range(repeats)}  # after the first model: warm
    for i, c in enumerate(cfgs):
        if i in checkpoints:
            outcomes, t_b, c_b = timed(lambda: train_group(cfgs))
            batched_runs.append((t_b, c_b))
        for name, fn in columns.items():
            a, t, cp = timed(lambda: fn(c))
            acc[name].append(a)
            wall[name] += t
            cpu[name] += cp
    failed = [o for o in outcomes if o.error is not None]
    if failed:
        print(f"batched: {len(failed)} runs failed: {failed[0].error}", file=sys.stderr)
        return 1
    t_batched = statistics.median(t for t, _ in batched_runs)
    c_batched = statistics.median(c for _, c in batched_runs)
    t_plain, c_plain, plain_acc = wall["plain"], cpu["plain"], acc["plain"]
    rows = [("plain PyTorch loop, one after another", t_plain, c_plain, plain_acc)]
    if not args.skip_fit:
        t_fit, c_fit, fit_acc = wall["fit"], cpu["fit"], acc["fit"]
        t_loop, c_loop, loop_acc = wall["loop"], cpu["loop"], acc["loop"]
        rows.append(("trainlab fit, one after another", t_fit, c_fit, fit_acc))
        rows.append(("fit loop only (torch model, SGD, loss)", t_loop, c_loop, loop_acc))
    batched_acc = [o.result.final["val_accuracy"] for o in outcomes]
    modes = sorted({o.info.get("mode", "alone") for o in outcomes})
    rows.append((f"trainlab batched ({', '.join(modes)}), median of {len(batched_runs)}", t_batched, c_batched,
                 batched_acc))

    print(f"{'':40s} {'wall s':>8s} {'CPU s':>8s} {'ms/model':>9s} {'mean val acc':>13s}")
    for name, t, c, acc in rows:
        print(f"{name:40s} {t:8.2f} {c:8.2f} {1000 * t / n:9.1f} {statistics.fmean(acc):13.4f}")
    print(f"speed-up batched vs plain loop: {t_plain / t_batched:.1f}x wall, {c_plain / c_batched:.1f}x CPU "
          "(goal >= 10x)")
    print("batched runs' CPU s: " + ", ".join(f"{c:.2f}" for _, c in batched_runs))
    print(f"batched members: {outcomes[0].info.get('batched')}, peak memory "
          f"{outcomes[0].info.get('peak_memory_bytes', 0) / 2**20:.0f} MiB")
    ratio_line("sweep.moons32_batched_vs_plain", c_plain / c_batched, ">=", 10)
    if not args.skip_fit:
        print(f"speed-up batched vs trainlab fit: {t_fit / t_batched:.1f}x wall, {c_fit / c_batched:.1f}x CPU")
        print(f"trainlab fit / plain loop: {c_fit / c_plain:.3f} CPU, {t_fit / t_plain:.3f} wall (goal <= 1.05)")
        ratio_line("sweep.moons32_fit_vs_plain", c_fit / c_plain, "<=", 1.05)
        print(f"fit loop only / plain loop: {c_loop / c_plain:.3f} CPU, {t_loop / t_plain:.3f} wall (goal <= 1.05: "
              "the loop's own per-step cost)")
        ratio_line("sweep.moons32_fit_loop_only_vs_plain", c_loop / c_plain, "<=", 1.05)
        diff = max(abs(a - b) for a, b in zip(fit_acc, batched_acc))
        print(f"largest |val acc batched - val acc fit| over the {n} runs: {diff:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
