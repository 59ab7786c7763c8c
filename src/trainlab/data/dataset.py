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


def _array_to_tensor(a, role: str, name: str, dtype: torch.dtype) -> Tensor:
    """A numpy array (or anything ``np.asarray`` takes: lists, pandas frames) as a tensor:
    numbers to ``dtype``, except integer and boolean targets, which become class indices."""
    import numpy as np

    arr = np.asarray(a)
    kind = arr.dtype.kind
    if kind not in "biuf":
        raise TypeError(f"{name}: the {role} are {arr.dtype} values; trainlab trains on numbers "
                        "(encode strings as integers first, e.g. with sklearn's LabelEncoder)")
    if role == "targets" and kind in "biu":
        return torch.from_numpy(arr.astype(np.int64, copy=False))
    return torch.from_numpy(np.ascontiguousarray(arr)).to(dtype)


def as_dataset(data, name: str = "data", *, dtype: torch.dtype | None = None) -> Dataset:
    """Accept a :class:`Dataset` or a pair ``(X, y)`` of tensors or numpy arrays.

    Tensors are used as they are. Arrays (and lists, pandas objects) are converted as
    scikit-learn and Keras users expect: features, and floating targets, to ``dtype`` (the
    model's dtype in :func:`trainlab.fit`; default torch's default dtype, float32), integer and
    boolean targets to ``int64`` class indices.
    """
    if isinstance(data, Dataset):
        return data
    try:
        X, y = data
    except (TypeError, ValueError):
        raise TypeError(f"{name}: expected a trainlab Dataset or a pair (X, y) of tensors or arrays") from None
    dtype = dtype or torch.get_default_dtype()
    X = X if isinstance(X, Tensor) else _array_to_tensor(X, "features", name, dtype)
    y = y if isinstance(y, Tensor) else _array_to_tensor(y, "targets", name, dtype)
    return Dataset(X, y, name)


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
