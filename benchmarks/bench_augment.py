"""What augmenting a batch costs, next to one training step of the foundation MLP.

For each augmentation of :mod:`trainlab.data.augment` (and the chains the notes use), the time to
augment one batch of 128 MNIST images (flat rows, as :func:`trainlab.fit` hands them over) is
compared with one training step of the 784-256-256-10 ReLU MLP on that batch (zero_grad, forward,
cross-entropy, backward, Adam step). The goal: augmenting costs ≤ 20 % of a step.

Both are timed in interleaved rounds (augment, step, augment, step, ...) and the medians are
compared, so that a busy machine slows both sides alike; the printed numbers are still wall clock
on a shared machine: read the ratios.

    python benchmarks/bench_augment.py            # 200 rounds
    python benchmarks/bench_augment.py --quick    # two rounds on random images, one thread (a smoke test)
    python benchmarks/bench_augment.py --threads 1
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch
import torch.nn.functional as F

from trainlab.data.augment import (Compose, ElasticDistortion, GaussianNoise, HorizontalFlip, Rotation, Shear,
                                   Shift, Zoom)

BATCH, GOAL = 128, 0.20


def batch_of_images(seed: int, quick: bool = False) -> torch.Tensor:
    from trainlab.data.mnist import MnistUnavailableError, load_mnist
    if quick:  # the smoke test skips loading MNIST
        return torch.rand(BATCH, 784, generator=torch.Generator().manual_seed(seed))
    try:
        train, _, _ = load_mnist(download=False)
        return train.X[:BATCH].clone()
    except MnistUnavailableError:
        return torch.rand(BATCH, 784, generator=torch.Generator().manual_seed(seed))


def augmentations() -> dict:
    return {
        "rotation(10)": Rotation(10),
        "shift(0.1)": Shift(0.1),
        "zoom(0.1)": Zoom(0.1),
        "shear(10)": Shear(10),
        "hflip(0.5)": HorizontalFlip(0.5),
        "noise(0.1)": GaussianNoise(0.1),
        "elastic(34, 4)": ElasticDistortion(34.0, 4.0),
        "rotation+shift+zoom": Compose([Rotation(10), Shift(0.1), Zoom(0.1)]),
        "rot+shift+zoom+shear": Compose([Rotation(10), Shift(0.1), Zoom(0.1), Shear(10)]),
        "affine chain + elastic": Compose([Rotation(10), Shift(0.1), Zoom(0.1), ElasticDistortion()]),
    }


def make_step(x: torch.Tensor, y: torch.Tensor):
    from trainlab.nn.models import MLP
    try:
        from trainlab.optim import Adam
        opt_name = "trainlab.optim.Adam"
    except ImportError:
        Adam, opt_name = torch.optim.Adam, "torch.optim.Adam"
    torch.manual_seed(0)
    model = MLP(784, (256, 256), 10)
    opt = Adam(model.parameters(), lr=1e-3)

    def step():
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()
    return step, opt_name


def _time(fn) -> tuple[float, float]:
    """Wall and CPU (process) seconds of one call."""
    t0, c0 = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - t0, time.process_time() - c0


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=200)
    p.add_argument("--quick", action="store_true", help="2 rounds on random images: a smoke test")
    p.add_argument("--threads", type=int, help="torch threads (default: torch's choice); 1 is the "
                   "least disturbed by other work on a busy machine")
    args = p.parse_args(argv)
    # the smoke test runs on one thread unless told otherwise: quick, and steady on a busy machine
    threads = args.threads or (1 if args.quick else None)
    if threads is None:
        return run(args)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return run(args)
    finally:
        torch.set_num_threads(before)


def run(args) -> dict:
    rounds = 2 if args.quick else args.rounds
    x = batch_of_images(0, args.quick)
    y = torch.randint(0, 10, (BATCH,), generator=torch.Generator().manual_seed(0))
    step, opt_name = make_step(x, y)
    augs = augmentations()
    for _ in range(1 if args.quick else 3):  # warm up caches and the allocator
        step()
        for aug in augs.values():
            aug(x)
    step_times: list[tuple[float, float]] = []
    aug_times: dict[str, list[tuple[float, float]]] = {name: [] for name in augs}
    for _ in range(rounds):
        for name, aug in augs.items():
            aug_times[name].append(_time(lambda: aug(x)))
            step_times.append(_time(step))

    def medians(ts):
        return 1e3 * statistics.median(t[0] for t in ts), 1e3 * statistics.median(t[1] for t in ts)

    step_wall, step_cpu = medians(step_times)
    print(f"batch of {BATCH} MNIST images (flat rows); one training step of the 784-256-256-10 MLP "
          f"with {opt_name}: {step_wall:.3f} ms wall, {step_cpu:.3f} ms CPU (medians of {len(step_times)}); "
          f"torch threads: {torch.get_num_threads()}\n")
    print(f"{'augmentation':26s}{'ms wall':>9s}{'/ step':>8s}{'ms CPU':>9s}{'/ step':>8s}   goal <= {GOAL:.0%}")
    rows = {}
    for name, ts in aug_times.items():
        wall, cpu = medians(ts)
        ratio, cpu_ratio = wall / step_wall, cpu / step_cpu
        rows[name] = {"ms": wall, "ratio": ratio, "cpu_ms": cpu, "cpu_ratio": cpu_ratio}
        verdict = "met" if max(ratio, cpu_ratio) <= GOAL else ("NOT met" if min(ratio, cpu_ratio) > GOAL else "borderline")
        print(f"{name:26s}{wall:9.3f}{ratio:8.1%}{cpu:9.3f}{cpu_ratio:8.1%}   {verdict}")
    print("(CPU = process time over all threads; on a busy machine it is the steadier measure)")
    if args.quick:
        print("(quick mode: a smoke test; the numbers mean little)")
    return {"step_ms": step_wall, "step_cpu_ms": step_cpu, "rows": rows}


if __name__ == "__main__":
    main(sys.argv[1:])
