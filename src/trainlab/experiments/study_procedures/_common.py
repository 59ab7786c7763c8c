"""Helpers the study procedures share: training through the runner, step-level records, tables."""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Any

import torch

from trainlab.train.callbacks import Callback, History
from trainlab.train.loop import NonFiniteLossError


class EpochLog(Callback):
    """Prints one line per epoch (for long study runs in verbose mode)."""

    def __init__(self, label: str, log) -> None:
        self.label, self.log = label, log

    def on_epoch_end(self, epoch: int, logs: dict) -> None:
        keys = [k for k in ("loss", "val_loss", "val_accuracy", "lr", "time") if k in logs]
        self.log(f"{self.label} epoch {epoch + 1}: " + "  ".join(f"{k} {logs[k]:.4g}" for k in keys))


class StepLosses(Callback):
    """Records the loss of every optimizer step and how many steps each epoch took."""

    def __init__(self) -> None:
        self.losses: list[float] = []
        self.steps_per_epoch: list[int] = []
        self._n = 0

    def on_epoch_begin(self, epoch: int, logs: dict) -> None:
        self._n = 0

    def on_batch_end(self, batch: int, logs: dict) -> None:
        self.losses.append(float(logs["loss"]))
        self._n += 1

    def on_epoch_end(self, epoch: int, logs: dict) -> None:
        self.steps_per_epoch.append(self._n)


@dataclass
class Trained:
    """A training run a study made: the runner's result (``None`` when the loss became non-finite),
    the per-epoch history (kept also when training diverged) and the divergence, if any."""

    config: dict
    history: History
    result: Any = None
    diverged: NonFiniteLossError | None = None
    extras: dict = field(default_factory=dict)

    @property
    def model(self):
        return None if self.result is None else self.result.model

    @property
    def final(self) -> dict[str, float]:
        return {} if self.result is None else self.result.final

    def last(self, key: str, default: float = math.nan) -> float:
        values = self.history.history.get(key)
        return values[-1] if values else default

    def best(self, key: str, mode: str = "max", default: float = math.nan) -> float:
        values = self.history.history.get(key)
        if not values:
            return default
        return max(values) if mode == "max" else min(values)


def train(config: dict, callbacks: tuple = (), data=None) -> Trained:
    """Train ``config`` (a runner config dict) without writing a run folder.

    ``data`` is an optional :class:`~trainlab.experiments.runner.Splits` (or a ``(train, val[, test])``
    tuple) used instead of the data the config names.

    A non-finite loss does not raise: the returned :class:`Trained` carries the error and the
    history up to that point, because "this diverges" is an outcome several studies measure.
    """
    from trainlab.experiments.runner import Splits, run_experiment

    history = History()
    config = copy.deepcopy(config)
    if data is not None and not isinstance(data, Splits):
        data = Splits(*data)
    try:
        result = run_experiment(config, write=False, verbose=False, callbacks=(history, *callbacks), data=data)
    except NonFiniteLossError as err:
        return Trained(config, history, None, err)
    return Trained(config, history, result)


def merged(base: dict, override: dict) -> dict:
    from trainlab.experiments.studies import deep_merge

    return deep_merge(base, override)


def finite_or(x: float, fallback: float) -> float:
    return x if isinstance(x, (int, float)) and math.isfinite(x) else fallback


@torch.no_grad()
def flat_weights(model: torch.nn.Module) -> torch.Tensor:
    """Every weight matrix of ``model`` (not biases or norm parameters) as one vector."""
    return torch.cat([p.detach().flatten() for n, p in model.named_parameters()
                      if n.endswith("weight") and p.dim() >= 2])


_MNIST_CACHE: dict = {}


def mnist_subset(n_train: int | None = None, n_val: int | None = None, n_test: int | None = None, *,
                 seed: int = 0, flatten: bool = True, dataset: str = "mnist", **source):
    """MNIST ``(train, val, test)`` from :func:`trainlab.data.mnist.load_mnist`, each cut to a seeded
    random subset of the given size (``None`` keeps the whole part: 50,000 / 10,000 / 10,000).

    ``dataset="fashion_mnist"`` cuts Fashion-MNIST (:func:`~trainlab.data.mnist.load_fashion_mnist`)
    the same way; ``source`` (``source=``, ``root=``) says where the loader finds the files."""
    from trainlab.data.mnist import load_fashion_mnist, load_mnist

    key = ("mnist", flatten) if dataset == "mnist" and not source else (dataset, flatten, tuple(sorted(source.items())))
    if key not in _MNIST_CACHE:
        loader = load_mnist if dataset == "mnist" else load_fashion_mnist
        _MNIST_CACHE[key] = loader(flatten=flatten, **source)
    parts = []
    for i, (part, n) in enumerate(zip(_MNIST_CACHE[key], (n_train, n_val, n_test))):
        if n is None or n >= len(part):
            parts.append(part)
            continue
        g = torch.Generator().manual_seed(seed * 1000 + i)
        parts.append(part.subset(torch.randperm(len(part), generator=g)[:n]))
    return tuple(parts)


def resolve_data(spec: dict, seed: int = 0):
    """A study's data section: ``{name: mnist, n_train, n_val, n_test, flatten}`` gives a seeded MNIST
    subset in memory (``name: fashion_mnist``, with optional ``source``/``root``: a Fashion-MNIST
    one); anything else is a runner data section. Returns ``(config data section, splits or None)``
    for :func:`train`."""
    spec = dict(spec)
    if spec.get("name") == "mnist" and any(k in spec for k in ("n_train", "n_val", "n_test", "flatten")):
        splits = mnist_subset(spec.pop("n_train", None), spec.pop("n_val", None), spec.pop("n_test", None),
                              seed=seed, flatten=spec.pop("flatten", True))
        return {"name": "mnist"}, splits
    if spec.get("name") == "fashion_mnist" and any(k in spec for k in ("n_train", "n_val", "n_test")):
        source = {k: spec.pop(k) for k in ("source", "root") if k in spec}
        splits = mnist_subset(spec.pop("n_train", None), spec.pop("n_val", None), spec.pop("n_test", None),
                              seed=seed, flatten=spec.pop("flatten", True), dataset="fashion_mnist", **source)
        return {"name": "fashion_mnist"}, splits
    return spec, None
