"""In-memory datasets and seeded splits.

A :class:`Dataset` is a pair of tensors ``(X, y)`` held in memory (on the target device during
training). Classification targets are integer class indices (``torch.long``); regression targets
are floating point. Everything else in trainlab accepts either a ``Dataset`` or a plain ``(X, y)``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor


@dataclass(frozen=True)
class Dataset:
    """Features ``X`` (n, ...) and targets ``y`` (n, ...) as tensors of equal length.

    ``name`` is informational (it appears in reports); ``classes`` is the number of classes for a
    classification set and ``None`` for regression.
    """

    X: Tensor
    y: Tensor
    name: str = "data"

    def __post_init__(self) -> None:
        if not isinstance(self.X, Tensor) or not isinstance(self.y, Tensor):
            raise TypeError("Dataset needs tensors X and y; convert numpy arrays with torch.as_tensor")
        if len(self.X) != len(self.y):
            raise ValueError(f"Dataset: X has {len(self.X)} rows but y has {len(self.y)}; they must match")

    def __len__(self) -> int:
        return len(self.X)

    def __iter__(self):  # allows ``X, y = dataset``
        yield self.X
        yield self.y

    @property
    def is_classification(self) -> bool:
        return not torch.is_floating_point(self.y)

    @property
    def classes(self) -> int | None:
        if not self.is_classification or len(self.y) == 0:
            return None
        return int(self.y.max().item()) + 1

    @property
    def n_features(self) -> int:
        return int(self.X[0].numel())

    def to(self, device: torch.device | str | None) -> "Dataset":
        if device is None:
            return self
        return Dataset(self.X.to(device), self.y.to(device), self.name)

    def subset(self, index: Tensor | slice) -> "Dataset":
        return Dataset(self.X[index], self.y[index], self.name)


def as_dataset(data, name: str = "data") -> Dataset:
    """Accept a :class:`Dataset` or a pair ``(X, y)`` of tensors / arrays."""
    if isinstance(data, Dataset):
        return data
    try:
        X, y = data
    except (TypeError, ValueError):
        raise TypeError("expected a trainlab Dataset or a pair (X, y) of tensors") from None
    return Dataset(torch.as_tensor(X), torch.as_tensor(y), name)


def split(data, fractions: Sequence[float] = (0.7, 0.3), *, seed: int = 0) -> tuple[Dataset, ...]:
    """Shuffle once with ``seed`` and cut into consecutive parts of the given fractions.

    ``fractions`` must be positive and sum to 1, e.g. ``(0.7, 0.3)`` for the notes' train/validation
    split or ``(0.7, 0.15, 0.15)`` for train/validation/test. The last part takes the rounding rest.
    """
    ds = as_dataset(data)
    fractions = tuple(float(f) for f in fractions)
    if len(fractions) < 2 or any(f <= 0 for f in fractions) or abs(sum(fractions) - 1.0) > 1e-6:
        raise ValueError(f"split fractions must be >= 2 positive numbers summing to 1, got {fractions}")
    n = len(ds)
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(n, generator=g).to(ds.X.device)
    sizes = [int(round(f * n)) for f in fractions[:-1]]
    sizes.append(n - sum(sizes))
    if any(s <= 0 for s in sizes):
        raise ValueError(f"split of {n} samples by {fractions} leaves an empty part; use more data")
    parts, start = [], 0
    for s in sizes:
        parts.append(ds.subset(perm[start : start + s]))
        start += s
    return tuple(parts)
