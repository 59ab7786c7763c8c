"""Runs built at the same time in threads of one process get the weights of their seed.

The global RNG is one per process; ``build_training`` seeds it and draws the model's weights from
it, so two threads building at once (the playground's race mode builds its runs A and B side by
side) must not interleave their draws.
"""
import threading

import torch

from trainlab.experiments import runner
from trainlab.experiments.config import parse_config

CONFIG = {"seed": 3, "data": {"name": "moons", "n_samples": 200},
          "model": {"kind": "mlp", "hidden": [256, 256, 256]}, "diagnostics": None}


def _build_in_threads(n: int) -> list[torch.Tensor]:
    cfg = parse_config(CONFIG)
    barrier, out = threading.Barrier(n), [None] * n

    def build(i):
        barrier.wait()
        _, _, model, _ = runner.build_training(cfg, torch.device("cpu"))
        out[i] = torch.cat([p.detach().reshape(-1) for p in model.parameters()])

    threads = [threading.Thread(target=build, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


def test_builds_in_threads_at_once_get_their_seeds_weights():
    alone = _build_in_threads(1)[0]
    for _ in range(3):
        for weights in _build_in_threads(6):
            assert torch.equal(weights, alone)
