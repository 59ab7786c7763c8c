"""What recording diagnostics once per epoch costs, next to the epoch itself.

Trains the foundation MLP (784-256-256-10, ReLU, Adam, batch 128) on MNIST-shaped data for a few
epochs, once plainly and once with a :class:`trainlab.diagnostics.DiagnosticsRecorder` recording
every epoch (probe batch of 256: one forward and backward pass with hooks, weight norms and
sparsity, the update ratio of the last step), in interleaved rounds so a busy machine slows both
alike. The goal: recording once per epoch costs ≤ 10 % of the epoch. The Marchenko–Pastur
spectra (one SVD per weight matrix before and after training) are timed separately: they are paid
once per run, not per epoch.

Random inputs stand in for MNIST (the cost does not depend on the pixel values), so the benchmark
needs no download. Numbers are wall clock on a shared machine: read the ratios.

    python benchmarks/bench_diagnostics.py            # 6000 samples, 3 epochs, 5 rounds
    python benchmarks/bench_diagnostics.py --quick    # a few steps (a smoke test)
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from trainlab.diagnostics import DiagnosticsRecorder
from trainlab.nn.models import MLP
from trainlab.train import fit

GOAL = 0.10


class TimedRecorder(DiagnosticsRecorder):
    """The recorder, with the time spent inside its epoch hooks added up (the direct measure)."""

    spent = 0.0

    def on_batch_begin(self, batch, logs):
        t0 = time.perf_counter()
        super().on_batch_begin(batch, logs)
        self.spent += time.perf_counter() - t0

    def on_epoch_end(self, epoch, logs):
        t0 = time.perf_counter()
        super().on_epoch_end(epoch, logs)
        self.spent += time.perf_counter() - t0


def data(n: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 784, generator=g), torch.randint(0, 10, (n,), generator=g)


def one_run(X, y, epochs: int, recorder: DiagnosticsRecorder | None) -> float:
    torch.manual_seed(0)
    model = MLP(784, (256, 256), 10)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    t0 = time.perf_counter()
    fit(model, (X, y), loss="cross_entropy", optimizer=opt, epochs=epochs, batch_size=128, seed=0,
        verbose=False, callbacks=[recorder] if recorder is not None else [], device="cpu")
    return time.perf_counter() - t0


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="a few steps on little data (smoke test)")
    p.add_argument("--samples", type=int, default=6000)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = p.parse_args(argv)
    if args.quick:  # one thread: a smoke test on a busy machine should not fight for cores
        args.samples, args.epochs, args.rounds = 512, 1, 1
        args.threads = args.threads or 1
    threads_before = torch.get_num_threads()
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        return _measure(args)
    finally:
        torch.set_num_threads(threads_before)


def _measure(args) -> dict:
    X, y = data(args.samples)
    one_run(X[:256], y[:256], 1, None)  # warm-up: first-call costs are nobody's overhead
    plain, recorded, spectra, direct = [], [], [], []
    for _ in range(args.rounds):
        plain.append(one_run(X, y, args.epochs, None))
        rec = TimedRecorder(every=1, probe=256, spectra=False)
        t = one_run(X, y, args.epochs, rec)
        recorded.append(t)
        direct.append(rec.spent / (t - rec.spent))  # hook time over the rest of the run's time
        spectra.append(one_run(X, y, args.epochs, DiagnosticsRecorder(every=1, probe=256, spectra=True)))
    t_plain, t_rec, t_spec = (statistics.median(v) for v in (plain, recorded, spectra))
    steps = -(-args.samples // 128)
    overhead = statistics.median(direct)
    per_epoch = overhead * t_plain / args.epochs
    spectra_once = t_spec - t_rec
    print(f"diagnostics overhead, MLP 784-256-256-10, {args.samples} samples ({steps} steps/epoch), "
          f"{args.epochs} epochs, median of {args.rounds} rounds, {torch.get_num_threads()} threads")
    print(f"  {'variant':<34}{'s/run':>9}{'vs plain':>10}")
    print(f"  {'plain fit':<34}{t_plain:>9.3f}{'1.00x':>10}")
    print(f"  {'recorder every epoch':<34}{t_rec:>9.3f}{t_rec / t_plain:>9.2f}x")
    print(f"  {'recorder every epoch + spectra':<34}{t_spec:>9.3f}{t_spec / t_plain:>9.2f}x")
    verdict = "meets" if overhead <= GOAL else "misses"
    print(f"recording once per epoch (time inside the recorder's hooks): {per_epoch * 1000:.1f} ms per epoch = "
          f"{overhead:.1%} of the epoch ({verdict} the goal <= {GOAL:.0%}); whole-run ratio "
          f"{t_rec / t_plain - 1:+.1%}; spectra once per run: {spectra_once * 1000:.0f} ms")
    return {"plain_s": t_plain, "recorded_s": t_rec, "spectra_s": t_spec, "overhead": overhead,
            "per_epoch_ms": per_epoch * 1000, "spectra_ms": spectra_once * 1000,
            "whole_run_ratio": t_rec / t_plain}


if __name__ == "__main__":
    main()
