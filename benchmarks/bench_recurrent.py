"""Forward + backward time of trainlab's recurrent networks next to torch.nn.RNN / LSTM / GRU.

Each row times ``out, _ = net(x); out.backward(g)`` on a sequence batch (T = 50, B = 64, 2 inputs,
H = 32: the adding problem of the ``rnn-long-memory`` study) for trainlab's network and for
PyTorch's with the same weights, in interleaved rounds. Ours is a Python loop over time steps
(one small matmul per step, autograd through the unrolled graph); PyTorch's CPU kernels fuse the
gates of a step, so expect ours to be slower: the ratio is the price of readable cells.

    python benchmarks/bench_recurrent.py              # 50 rounds
    python benchmarks/bench_recurrent.py --quick      # a few rounds (a smoke test)
    python benchmarks/bench_recurrent.py --threads 1  # one intra-op thread
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

import trainlab.nn as tn

T, B, I, H = 50, 64, 2, 32


def pairs(layers: int = 1) -> dict[str, tuple[nn.Module, nn.Module]]:
    out = {}
    for name, ours_cls, ref_cls in (("Elman RNN", tn.RNN, nn.RNN), ("LSTM", tn.LSTM, nn.LSTM), ("GRU", tn.GRU, nn.GRU)):
        for bi in (False, True):
            ref = ref_cls(I, H, layers, bidirectional=bi)
            ours = ours_cls(I, H, layers, bidirectional=bi)
            ours.load_state_dict(ref.state_dict())
            out[name + (" bidirectional" if bi else "")] = (ours, ref)
    return out


def _fwd_bwd(net: nn.Module, x: torch.Tensor, g: torch.Tensor):
    def run() -> float:
        t0 = time.perf_counter()
        out, _ = net(x)
        out.backward(g)
        return time.perf_counter() - t0
    return run


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=50)
    p.add_argument("--quick", action="store_true", help="a few rounds: a smoke test")
    p.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    rounds = 2 if args.quick else args.rounds
    g = torch.Generator().manual_seed(0)
    x = torch.randn(T, B, I, generator=g)
    rows = {}
    for name, (ours, ref) in pairs().items():
        grad = torch.randn(T, B, H * (2 if ours.bidirectional else 1), generator=g)
        a, b = _fwd_bwd(ours, x, grad), _fwd_bwd(ref, x, grad)
        a(), b()  # warm up
        t_ours, t_ref, ratios = [], [], []
        for _ in range(rounds):
            ta, tb = a(), b()
            t_ours.append(ta)
            t_ref.append(tb)
            ratios.append(ta / tb)
        rows[name] = {"ours_ms": 1e3 * min(t_ours), "torch_ms": 1e3 * min(t_ref),
                      "ratio": min(t_ours) / min(t_ref), "median_ratio": statistics.median(ratios)}
    print(f"forward + backward, T={T} B={B} inputs={I} hidden={H}; torch threads: {torch.get_num_threads()}; "
          f"{rounds} interleaved rounds; best-sample times\n")
    print(f"{'network':24s}{'trainlab ms':>13s}{'torch ms':>10s}{'best':>8s}{'median':>8s}")
    for name, r in rows.items():
        print(f"{name:24s}{r['ours_ms']:13.2f}{r['torch_ms']:10.2f}{r['ratio']:7.2f}x{r['median_ratio']:7.2f}x")
    return {"rows": rows}


if __name__ == "__main__":
    main()
