"""Forward + backward time of trainlab's layers next to PyTorch's built-ins, at MNIST-MLP sizes.

Each row times ``y = layer(x); y.backward(g)`` on a batch of 128 × 256 (the hidden layer of the
784-256-256-10 MLP) for trainlab's layer and for its ``torch.nn`` counterpart, in interleaved
rounds (ours, theirs, ours, theirs, ...). The goal: ≤ 1.3× for every layer. The last rows time
whole training steps (forward, cross-entropy, backward, SGD step) of the MLP built from
trainlab's layers and of the same MLP with the torch.nn layers swapped in: that is what a user
of ``trainlab.fit`` pays.

Two ratios are printed. ``best``: the fastest sample of each side (samples are a couple of calls
long): on a machine shared with other work a sample is either undisturbed or hit by a time slice
of someone else's process, and the fastest one is the undisturbed cost. ``median``: the median
over rounds of ours/theirs, which is what an unloaded machine shows too, but which a heavily
loaded one inflates for whichever side runs longer. Read the ratios, not the microseconds.

    python benchmarks/bench_layers.py              # 300 rounds
    python benchmarks/bench_layers.py --quick      # a few rounds (a smoke test)
    python benchmarks/bench_layers.py --threads 1  # one intra-op thread (steadier on a busy machine)
    python benchmarks/bench_layers.py --readable   # trainlab's readable forms instead of the fast paths

trainlab's layers run their fast paths (the default in training; LayerNorm's is a C++ operator,
built before the timing starts); ``--readable`` times the
readable forms (the formulas differentiated by autograd, ``trainlab.nn.set_fast_layers(False)``)
to show what the fast paths buy. The RATIO lines are printed either way.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch
from torch import nn

import trainlab.nn as tn

BATCH, WIDTH, GOAL = 128, 256, 1.3


def layer_pairs() -> dict[str, tuple[nn.Module, nn.Module]]:
    """name -> (trainlab layer, torch.nn layer), both in training mode."""
    pairs = {
        "BatchNorm1d": (tn.BatchNorm1d(WIDTH), nn.BatchNorm1d(WIDTH)),
        "LayerNorm": (tn.LayerNorm(WIDTH), nn.LayerNorm(WIDTH)),
        "Dropout(0.5)": (tn.Dropout(0.5), nn.Dropout(0.5)),
        "Dropout(0.1)": (tn.Dropout(0.1), nn.Dropout(0.1)),
        "ReLU": (tn.ReLU(), nn.ReLU()),
        "LeakyReLU": (tn.LeakyReLU(), nn.LeakyReLU()),
        "PReLU (shared)": (tn.PReLU(), nn.PReLU()),
        "PReLU (per unit)": (tn.PReLU(WIDTH), nn.PReLU(WIDTH)),
        "ELU": (tn.ELU(), nn.ELU()),
        "SELU": (tn.SELU(), nn.SELU()),
        "GELU": (tn.GELU(), nn.GELU()),
        "GELU (tanh)": (tn.GELU("tanh"), nn.GELU("tanh")),
        "SiLU": (tn.SiLU(), nn.SiLU()),
        "Sigmoid": (tn.Sigmoid(), nn.Sigmoid()),
        "Tanh": (tn.Tanh(), nn.Tanh()),
        "Softmax": (tn.Softmax(-1), nn.Softmax(-1)),
        "LogSoftmax": (tn.LogSoftmax(-1), nn.LogSoftmax(-1)),
    }
    for ours, theirs in pairs.values():
        ours.train()
        theirs.train()
    return pairs


def _to_torch_layers(model: tn.MLP) -> tn.MLP:
    """The same MLP with every trainlab layer replaced by its torch.nn counterpart."""
    import copy

    twin = copy.deepcopy(model)
    for block in twin.blocks:
        if hasattr(block, "norm"):
            block.norm = nn.BatchNorm1d(block.norm.num_features)
        block.act = {tn.ReLU: nn.ReLU, tn.Tanh: nn.Tanh, tn.GELU: nn.GELU}[type(block.act)]()
        if hasattr(block, "dropout"):
            block.dropout = nn.Dropout(block.dropout.p)
    return twin


def step_pairs() -> dict[str, tuple]:
    """name -> (step with trainlab's layers, step with torch's layers) for the 784-256-256-10 MLP."""
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(BATCH, 784, generator=g), torch.randint(0, 10, (BATCH,), generator=g)
    out = {}
    for name, kwargs in {"MLP step relu": {}, "MLP step relu+BN+dropout": {"norm": "batch", "dropout": 0.1},
                         "MLP step gelu+BN": {"activation": "gelu", "norm": "batch"}}.items():
        torch.manual_seed(0)
        ours = tn.MLP(784, (256, 256), 10, **kwargs)
        theirs = _to_torch_layers(ours)
        steps = []
        for model in (ours, theirs):
            opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

            def step(model=model, opt=opt):
                opt.zero_grad(set_to_none=True)
                nn.functional.cross_entropy(model(x), y).backward()
                opt.step()
            steps.append(step)
        out[name] = tuple(steps)
    return out


def _fwd_bwd(layer: nn.Module, x: torch.Tensor, g: torch.Tensor, reps: int):
    def run() -> float:
        t0 = time.perf_counter()
        for _ in range(reps):
            x.grad = None
            layer(x).backward(g)
        return (time.perf_counter() - t0) / reps
    return run


def _repeat(fn, reps: int):
    def run() -> float:
        t0 = time.perf_counter()
        for _ in range(reps):
            fn()
        return (time.perf_counter() - t0) / reps
    return run


def measure(pairs: dict[str, tuple], rounds: int) -> dict[str, dict]:
    """Interleaved rounds; per row the best time of each side, their ratio, and the median ratio."""
    rows = {}
    for name, (ours, theirs) in pairs.items():
        for _ in range(3):  # warm up the allocator and the dispatcher caches
            ours()
            theirs()
        t_ours, t_theirs, ratios = [], [], []
        for _ in range(rounds):
            a, b = ours(), theirs()
            t_ours.append(a)
            t_theirs.append(b)
            ratios.append(a / b)
        rows[name] = {"ours_us": 1e6 * min(t_ours), "torch_us": 1e6 * min(t_theirs),
                      "ratio": min(t_ours) / min(t_theirs), "median_ratio": statistics.median(ratios)}
    return rows


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=400)
    p.add_argument("--reps", type=int, default=2, help="calls per timed sample")
    p.add_argument("--quick", action="store_true", help="a few rounds: a smoke test")
    p.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    p.add_argument("--readable", action="store_true", help="time trainlab's readable forms, not the fast paths")
    args = p.parse_args(argv)
    if args.readable:
        tn.set_fast_layers(False)
    if args.threads:
        torch.set_num_threads(args.threads)
    rounds, reps = (3, 2) if args.quick else (args.rounds, args.reps)
    from trainlab.nn.native_layers import OPS

    if OPS.get() is None:  # built at its first use: here, before the timing
        print(f"note: LayerNorm runs its Python autograd.Function: {OPS.problem()}")
    g = torch.Generator().manual_seed(0)
    x = torch.randn(BATCH, WIDTH, generator=g).requires_grad_()
    grad = torch.randn(BATCH, WIDTH, generator=g)
    layers = {name: (_fwd_bwd(ours, x, grad, reps), _fwd_bwd(theirs, x, grad, reps))
              for name, (ours, theirs) in layer_pairs().items()}
    steps = {name: (_repeat(a, 1), _repeat(b, 1)) for name, (a, b) in step_pairs().items()}
    rows = measure(layers, rounds)
    step_rows = measure(steps, max(2, rounds // 4))
    print(f"forward + backward at batch {BATCH} x width {WIDTH}; torch threads: {torch.get_num_threads()}; "
          f"{rounds} interleaved rounds of {reps} calls; best-sample times; trainlab's "
          f"{'fast paths' if tn.fast_layers() else 'readable forms'}\n")
    header = f"{'':28s}{'trainlab us':>13s}{'torch us':>11s}{'best':>8s}{'median':>8s}   goal <= {GOAL}x"
    for title, table in (("layer", rows), ("training step", step_rows)):
        print(title + header[len(title):])
        for name, r in table.items():
            # a training step lasts milliseconds, so it is rarely undisturbed on a busy machine:
            # there the median ratio is the measure
            verdict = "met" if (r["median_ratio"] if table is step_rows else r["ratio"]) <= GOAL else "NOT met"
            print(f"{name:28s}{r['ours_us']:13.1f}{r['torch_us']:11.1f}{r['ratio']:7.2f}x{r['median_ratio']:7.2f}x"
                  f"   {verdict}")
            measured = r["median_ratio"] if table is step_rows else r["ratio"]
            slug = "".join(c if c.isalnum() else "_" for c in name.lower()).strip("_")
            print(f"RATIO layers.{title.replace(' ', '_')}.{slug}.t{torch.get_num_threads()} {measured:.3f} <= {GOAL}")
        print()
    rows.update(step_rows)
    if args.quick:
        print("(quick mode: a smoke test; the numbers mean little)")
    fast = tn.fast_layers()
    tn.set_fast_layers(True)
    return {"rows": rows, "threads": torch.get_num_threads(), "fast": fast}


if __name__ == "__main__":
    main(sys.argv[1:])
