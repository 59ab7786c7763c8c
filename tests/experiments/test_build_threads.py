"""Runs built at the same time in threads of one process get the weights of their seed.

The global RNG is one per process; ``build_training`` seeds it and draws the model's weights from
it, and ``fit(seed=...)`` seeds it. Threads that build or start runs at once (the playground's race
mode builds and starts its runs A and B side by side) must not land in each other's draws.
"""
import threading

import torch

import trainlab
from trainlab.experiments import runner
from trainlab.experiments.config import parse_config

CONFIG = {"seed": 3, "data": {"name": "moons", "n_samples": 200},
          "model": {"kind": "mlp", "hidden": [256, 256, 256]}, "diagnostics": None}


def _weights(model) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


def _race(builders: int, fitters: int) -> list[torch.Tensor]:
    cfg = parse_config(CONFIG)
    barrier, out = threading.Barrier(builders + fitters), [None] * builders
    X, y = torch.randn(8, 2), torch.randint(0, 2, (8,))

    def build(i):
        barrier.wait()
        out[i] = _weights(runner.build_training(cfg, torch.device("cpu"))[2])

    def start_fits():
        model = torch.nn.Linear(2, 2)
        barrier.wait()
        for seed in range(30):  # each fit seeds the global RNG first
            trainlab.fit(model, (X, y), loss="cross_entropy", optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
                         epochs=1, batch_size=8, seed=seed, verbose=False)

    threads = [threading.Thread(target=build, args=(i,)) for i in range(builders)]
    threads += [threading.Thread(target=start_fits) for _ in range(fitters)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


def test_builds_in_threads_at_once_get_their_seeds_weights():
    alone = _race(1, 0)[0]
    for _ in range(3):
        for weights in _race(6, 0):
            assert torch.equal(weights, alone)


def test_a_fit_seeding_the_rng_in_another_thread_does_not_change_a_build():
    alone = _race(1, 0)[0]
    for _ in range(3):
        for weights in _race(2, 2):
            assert torch.equal(weights, alone)
