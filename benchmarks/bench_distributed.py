"""Samples per second of one run on N = 1 and N = 2 processes (data parallel, gloo on the CPU).

The workload: an MLP 2-256-256-2 on two moons (20,000 samples, 70/30 split), batch size 256 (the
global batch: each of N ranks takes 256/N samples a step), SGD with momentum, one torch thread per
process. Each configuration is started the way ``trainlab run --nproc N`` starts it (PyTorch's
elastic launcher, a rendezvous on 127.0.0.1); the ranks train one warm-up epoch, wait for each
other, then time ``--epochs`` epochs of ``trainlab.fit``. Process start-up (the torch import,
the rendezvous) is not in the number: it is a fixed cost of a few seconds per launch.

It prints samples/s at N = 1 and N = 2 and their ratio. On a machine with at least 2 free cores
the ratio approaches 2 when a step's compute outweighs its all-reduce (a larger model or batch);
on a busy machine the two processes wait for cores and the ratio says more about the load than
about trainlab. Timings are wall-clock; compare ratios from the same run.

    python benchmarks/bench_distributed.py            # the full workload
    python benchmarks/bench_distributed.py --quick    # a small model, one timed epoch (a smoke test)
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path


def worker(out: str, samples: int, hidden: int, epochs: int, batch: int) -> None:
    """One rank (or the single process): warm up, time ``epochs`` epochs, rank 0 writes samples/s."""
    import torch

    from trainlab.data import moons, split
    from trainlab.nn import MLP
    from trainlab.train import fit

    torch.set_num_threads(1)
    train, val = split(moons(samples, noise=0.2, seed=0), (0.7, 0.3), seed=0)
    torch.manual_seed(0)
    model = MLP(2, (hidden, hidden), 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    kwargs = dict(loss="cross_entropy", optimizer=opt, batch_size=batch, device="cpu", verbose=False, seed=0)
    fit(model, train, None, epochs=1, **kwargs)  # warm-up (and, on many ranks, the process group)
    distributed = torch.distributed.is_initialized()
    if distributed:
        torch.distributed.barrier()
    t0 = time.perf_counter()
    history = fit(model, train, None, epochs=epochs, **kwargs)
    if distributed:
        torch.distributed.barrier()
    seconds = time.perf_counter() - t0
    rank = torch.distributed.get_rank() if distributed else 0
    if rank == 0:
        Path(out).write_text(json.dumps({"samples_per_s": epochs * len(train) / seconds, "seconds": seconds,
                                         "loss": history.records()[-1]["loss"]}))
    if distributed:
        torch.distributed.destroy_process_group()


def launch(nproc: int, args) -> dict:
    """Start ``nproc`` ranks of :func:`worker` through the elastic launcher; rank 0's measurement."""
    import logging

    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    logging.getLogger("torch.distributed.elastic").setLevel(logging.CRITICAL)
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "result.json")
        config = LaunchConfig(min_nodes=1, max_nodes=1, nproc_per_node=nproc, run_id=f"bench-{os.getpid()}",
                              rdzv_backend="c10d", rdzv_endpoint="127.0.0.1:0", max_restarts=0,
                              monitor_interval=0.1, local_addr="127.0.0.1")
        os.environ.setdefault("OMP_NUM_THREADS", "1")
        elastic_launch(config, sys.executable)(
            str(Path(__file__).resolve()), "--worker", out, "--samples", str(args.samples),
            "--hidden", str(args.hidden), "--epochs", str(args.epochs), "--batch", str(args.batch))
        return json.loads(Path(out).read_text())


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="a small model and one timed epoch")
    p.add_argument("--samples", type=int, default=20000)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--worker", metavar="OUT", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        worker(args.worker, args.samples, args.hidden, args.epochs, args.batch)
        return 0
    if args.quick:
        args.samples, args.hidden, args.epochs = 2000, 32, 1
    print(f"MLP 2-{args.hidden}-{args.hidden}-2 on moons ({args.samples} samples, 70% train), global batch "
          f"{args.batch}, {args.epochs} timed epoch(s), 1 torch thread per process, gloo on 127.0.0.1")
    results = {}
    for nproc in (1, 2):
        results[nproc] = launch(nproc, args)
        r = results[nproc]
        print(f"N = {nproc}: {r['samples_per_s']:10.0f} samples/s  ({r['seconds']:.2f} s, final loss {r['loss']:.4f})",
              flush=True)
    ratio = results[2]["samples_per_s"] / results[1]["samples_per_s"]
    print(f"speed-up N=2 vs N=1: {ratio:.2f}x (ideal 2x with 2 free cores; {os.cpu_count()} cores here)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
