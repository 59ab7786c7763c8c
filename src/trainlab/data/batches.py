"""In-memory mini-batching: whole tensors on the device, shuffled by index every epoch.

Batch gradient descent, mini-batch gradient descent and stochastic gradient descent are one
loop with ``batch_size="full"``, ``batch_size=k`` and ``batch_size=1`` respectively (notes 002,
"Batch vs mini-batch vs stochastic"). There is no per-sample Python: each batch is one
``index_select`` per tensor.
"""
from __future__ import annotations

import math
from typing import Iterator

import torch
from torch import Tensor

from trainlab.data.dataset import Dataset, as_dataset


def resolve_batch_size(batch_size: int | str, n: int) -> int:
    """``"full"`` (or ``"all"``) means the whole set per step; otherwise a positive integer."""
    if isinstance(batch_size, str):
        if batch_size.lower() in ("full", "all", "batch"):
            return max(n, 1)
        raise ValueError(f"batch_size must be a positive integer or 'full', got {batch_size!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer or 'full', got {batch_size!r}")
    return batch_size


def shard_bounds(n: int, rank: int, world_size: int) -> tuple[int, int]:
    """``[lo, hi)`` of rank ``rank``'s contiguous shard of ``n`` items over ``world_size`` ranks.

    lo = ⌊r·n/W⌋, hi = ⌊(r+1)·n/W⌋: the shards tile ``range(n)`` in rank order and their sizes
    differ by at most one; with n < W some shards are empty.
    """
    return (rank * n) // world_size, ((rank + 1) * n) // world_size


class Batches:
    """Iterate ``(X_batch, y_batch)`` over a dataset held in memory.

    Args:
        data: a :class:`Dataset` or ``(X, y)``.
        batch_size: ``1`` (stochastic GD), ``k`` (mini-batch GD) or ``"full"`` (batch GD).
        shuffle: draw a new permutation every epoch (``torch.randperm`` with ``generator``).
        drop_last: drop a last batch smaller than ``batch_size``.
        generator: a CPU ``torch.Generator`` that owns the data order; its state is what a
            checkpoint saves to resume mid-run with the same order.

    Every sample appears exactly once per epoch (except those dropped by ``drop_last``).

    ``shard=(rank, world_size)`` yields only rank ``rank``'s contiguous part of each batch
    (:func:`shard_bounds`): the batches, their order and
    :meth:`global_size` stay those of one process, so W ranks together take exactly the samples
    a single process takes, step by step.
    """

    def __init__(self, data, batch_size: int | str = 32, *, shuffle: bool = True,
                 drop_last: bool = False, generator: torch.Generator | None = None,
                 shard: tuple[int, int] | None = None):
        self.data: Dataset = as_dataset(data)
        self.n = len(self.data)
        self.batch_size = resolve_batch_size(batch_size, self.n)
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.generator = generator if generator is not None else torch.Generator()
        self.shard = shard

    def __len__(self) -> int:
        if self.drop_last:
            return self.n // self.batch_size
        return math.ceil(self.n / self.batch_size)

    def global_size(self, i: int) -> int:
        """The number of samples in batch ``i`` over all ranks (the last one may be smaller)."""
        return min(self.batch_size, self.n - i * self.batch_size)

    def order(self) -> Tensor | None:
        """The index order of the next epoch (advances the generator), or ``None`` in place order."""
        if not self.shuffle:
            return None
        return torch.randperm(self.n, generator=self.generator).to(self.data.X.device)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        X, y, b, n, shard = self.data.X, self.data.y, self.batch_size, self.n, self.shard
        perm = self.order()
        for i in range(len(self)):
            start = i * b
            stop = start + b if start + b < n else n
            if shard is not None:
                lo, hi = shard_bounds(stop - start, *shard)
                start, stop = start + lo, start + hi
            if perm is None:  # contiguous views, no copy
                yield X[start:stop], y[start:stop]
            else:
                idx = perm[start:stop]
                yield X.index_select(0, idx), y.index_select(0, idx)
