"""Input features computed from the raw inputs: x₁, x₂, x₁², x₂², x₁x₂, sin and cos of each.

TensorFlow Playground's feature columns: a linear model on ``[x1, x2, x1^2, x2^2]`` already draws
circles, and ``x1*x2`` alone separates XOR. ``data.input_features`` in a config lists the columns, in
order; without it the raw inputs are used as they are.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from trainlab.data.dataset import Dataset

# name -> (inputs it needs, feature of the (n, d) raw inputs as an (n,) column)
FEATURES: dict[str, tuple[int, Callable[[Tensor], Tensor]]] = {
    "x1": (1, lambda X: X[:, 0]),
    "x2": (2, lambda X: X[:, 1]),
    "x1^2": (1, lambda X: X[:, 0] ** 2),
    "x2^2": (2, lambda X: X[:, 1] ** 2),
    "x1*x2": (2, lambda X: X[:, 0] * X[:, 1]),
    "sin(x1)": (1, lambda X: torch.sin(X[:, 0])),
    "sin(x2)": (2, lambda X: torch.sin(X[:, 1])),
    "cos(x1)": (1, lambda X: torch.cos(X[:, 0])),
    "cos(x2)": (2, lambda X: torch.cos(X[:, 1])),
}


def check_feature_names(names: list[str]) -> None:
    """Raise ``ValueError`` for an empty list, an unknown name or a repeated one."""
    if not names:
        raise ValueError("features lists no column; give at least one (e.g. [x1, x2]) or null for the raw inputs")
    for name in names:
        if name not in FEATURES:
            raise ValueError(f"unknown feature {name!r}; allowed: {', '.join(FEATURES)}")
    if len(set(names)) != len(names):
        raise ValueError(f"features lists a column twice: {names}")


def expand_features(data: Dataset, names: list[str]) -> Dataset:
    """``data`` with its inputs replaced by the feature columns ``names`` (float, same dtype).

    The raw inputs must be flat ``(n, d)`` with ``d`` at least the largest input index a feature
    uses (``x2`` needs two inputs).
    """
    check_feature_names(names)
    X = data.X
    if X.dim() != 2:
        raise ValueError(f"features need flat (n, d) inputs; {data.name!r} has inputs of shape {tuple(X.shape[1:])}")
    need = max(FEATURES[n][0] for n in names)
    if X.shape[1] < need:
        bad = [n for n in names if FEATURES[n][0] > X.shape[1]]
        raise ValueError(f"features {bad} need {need} input columns; {data.name!r} has {X.shape[1]} "
                         f"(use only the x1 features)")
    cols = [FEATURES[n][1](X) for n in names]
    return Dataset(torch.stack(cols, 1).to(X.dtype).contiguous(), data.y, data.name)
