"""trainlab.optim against torch.optim: the optimizer step alone, and the MNIST MLP epoch.

1. Step. A model with ~100 parameter tensors (an MLP of 49 hidden layers, widths cycling through
   32/64/128, so tensors of many sizes; fixed random gradients). For Adam, AdamW and SGD with
   momentum 0.9 it times ``optimizer.step()`` of trainlab's optimizer (fast path, and the readable
   per-tensor rule for reference) and of torch.optim's three implementations: ``foreach=False``
   (the for-loop), ``foreach=True`` and ``fused=True``. Contestants run round-robin, a block of
   steps each in turn, so that other work on the machine slows them alike; the median over the
   blocks is reported. Goal: trainlab's step ≤ 1.0× torch's foreach step.

2. Epoch. The foundation benchmark's MNIST MLP epoch (benchmarks/bench_mnist_mlp.py: 784-256-256-10,
   batch 128) trained by ``trainlab.fit`` with ``trainlab.optim.Adam`` against the plain PyTorch
   ``DataLoader`` loop with ``torch.optim.Adam``. Goal: ≤ 0.6× the DataLoader loop.

Timings are wall clock on a shared machine: compare ratios from one run.

    python benchmarks/bench_optim.py              # full
    python benchmarks/bench_optim.py --quick      # a few steps of everything (a smoke test)
    python benchmarks/bench_optim.py --threads 0   # torch's own thread count
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent


def model_with_many_tensors(depth: int = 49, seed: int = 0) -> list[torch.nn.Parameter]:
    """Weights and biases of an MLP with ``depth`` hidden layers: 2·(depth + 1) = 100 tensors."""
    g = torch.Generator().manual_seed(seed)
    widths = [64] + [(32, 64, 128)[i % 3] for i in range(depth)] + [10]
    params = []
    for a, b in zip(widths[:-1], widths[1:]):
        params.append(torch.nn.Parameter(torch.randn(b, a, generator=g) / a ** 0.5))
        params.append(torch.nn.Parameter(torch.zeros(b)))
    for p in params:
        p.grad = torch.randn(p.shape, generator=g) * 1e-2
    return params


def contestants(kind: str) -> dict:
    """name -> factory(params) for one optimizer kind ("adam", "adamw", "sgd-momentum")."""
    import trainlab.optim as O

    if kind == "sgd-momentum":
        ours, theirs, kw = O.SGD, torch.optim.SGD, {"lr": 1e-2, "momentum": 0.9}
    elif kind == "adamw":
        ours, theirs, kw = O.AdamW, torch.optim.AdamW, {"lr": 1e-3}
    else:
        ours, theirs, kw = O.Adam, torch.optim.Adam, {"lr": 1e-3}
    return {
        "trainlab": lambda ps: ours(ps, **kw),
        "trainlab (readable rule)": lambda ps: ours(ps, foreach=False, **kw),
        "torch foreach=False": lambda ps: theirs(ps, foreach=False, **kw),
        "torch foreach=True": lambda ps: theirs(ps, foreach=True, **kw),
        "torch fused=True": lambda ps: theirs(ps, fused=True, **kw),
    }


def time_steps(kind: str, blocks: int, steps: int) -> dict[str, float]:
    """Median seconds per step of each contestant (round-robin blocks of ``steps`` steps)."""
    makers = contestants(kind)
    opts = {name: make(model_with_many_tensors()) for name, make in makers.items()}
    for opt in opts.values():  # warm-up: state allocated, code paths loaded
        for _ in range(3):
            opt.step()
    times = {name: [] for name in opts}
    for _ in range(blocks):
        for name, opt in opts.items():
            t0 = time.perf_counter()
            for _ in range(steps):
                opt.step()
            times[name].append((time.perf_counter() - t0) / steps)
    return {name: statistics.median(v) for name, v in times.items()}


def _foundation():
    spec = importlib.util.spec_from_file_location("bench_mnist_mlp_for_optim", HERE / "bench_mnist_mlp.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def time_epochs(quick: bool, epochs: int, seed: int = 0) -> dict:
    """The foundation's MNIST MLP epoch: trainlab fit + our Adam vs the DataLoader loop + torch Adam."""
    bench = _foundation()
    train, test, source = bench.load_data(quick, seed)
    ours = bench.Trainlab(train, seed)
    loop = bench.TorchDataLoader(train, seed)
    wall = {ours.name: [], loop.name: []}
    for _ in range(epochs):
        for c in (ours, loop):
            t0 = time.perf_counter()
            c.epoch()
            wall[c.name].append(time.perf_counter() - t0)
    rows = {c.name: {"optimizer": c.optimizer, "s_per_epoch": statistics.median(wall[c.name]),
                     "accuracy": c.accuracy(test)} for c in (ours, loop)}
    return {"data": source, "rows": rows,
            "ratio": rows[ours.name]["s_per_epoch"] / rows[loop.name]["s_per_epoch"]}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="a few steps and batches: a smoke test")
    p.add_argument("--blocks", type=int, default=15, help="round-robin blocks per contestant")
    p.add_argument("--steps", type=int, default=20, help="steps per block")
    p.add_argument("--epochs", type=int, default=3, help="MNIST epochs per contestant")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads (default 1: on a busy machine multi-threaded elementwise kernels "
                        "thrash and the timings mean little; 0 keeps torch's choice)")
    p.add_argument("--json", help="also write the results to this file")
    args = p.parse_args(argv)
    threads_before = torch.get_num_threads()
    try:
        return _main(args)
    finally:
        torch.set_num_threads(threads_before)


def _main(args) -> dict:
    if args.threads:
        torch.set_num_threads(args.threads)  # the caller's setting is restored on return (main() is importable)
    blocks, steps, epochs = (2, 2, 1) if args.quick else (args.blocks, args.steps, args.epochs)
    n_tensors = len(model_with_many_tensors())
    n_values = sum(p.numel() for p in model_with_many_tensors())
    print(f"optimizer step on {n_tensors} tensors ({n_values:,} values), median of {blocks} blocks of "
          f"{steps} steps, torch threads {torch.get_num_threads()}")
    result: dict = {"step": {}, "tensors": n_tensors}
    for kind in ("adam", "adamw", "sgd-momentum"):
        t = time_steps(kind, blocks, steps)
        ref = t["torch foreach=True"]
        result["step"][kind] = {name: {"us_per_step": 1e6 * s, "ratio_to_torch_foreach": s / ref} for name, s in t.items()}
        print(f"\n{kind}")
        print(f"  {'':28s}{'µs/step':>10s}{'× torch foreach':>17s}")
        for name, s in t.items():
            print(f"  {name:28s}{1e6 * s:10.1f}{s / ref:17.2f}")
    print(f"\nMNIST MLP epoch (the foundation benchmark's; {epochs} epoch(s) each, round-robin)")
    ep = time_epochs(args.quick, epochs)
    result["epoch"] = ep
    print(f"  data: {ep['data']}")
    for name, row in ep["rows"].items():
        print(f"  {name:28s}{row['s_per_epoch']:8.3f} s/epoch  accuracy {row['accuracy']:.4f}  ({row['optimizer']})")
    print(f"  time ratio trainlab / DataLoader loop: {ep['ratio']:.2f} (goal ≤ 0.6)")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
