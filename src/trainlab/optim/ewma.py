"""The exponentially weighted moving average (EWMA) behind momentum, RMSprop, Adam and batch norm.

Notes 004 define it by the recursion

    V_0 = 0,    V_t = β·V_{t−1} + (1 − β)·θ_t

and expand it: unrolled, V_t = Σ_{k=0}^{t−1} (1 − β)·β^k·θ_{t−k}, so a point k steps back weighs
(1 − β)·β^k (each step back multiplies by one more β). The weights sum to 1 − β^t, not 1, which
is why early averages lean towards the starting 0; dividing by 1 − β^t (the bias correction of
Adam, Kingma & Ba 2015, Alg. 1) makes them sum to 1. With β = 0.9 the average spans about
1/(1 − β) = 10 points, with 0.98 about 50, with 0.999 about 1,000.
"""
from __future__ import annotations

import math
from typing import Iterable

import torch
from torch import Tensor

__all__ = ["ewma", "ewma_weights"]


def _check_beta(beta: float) -> float:
    if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not (0.0 <= beta < 1.0):
        raise ValueError(f"beta must lie in [0, 1), got {beta!r} (the notes use 0.9 to 0.999)")
    return float(beta)


def ewma(values: Iterable[float] | Tensor, beta: float = 0.9, *, bias_correction: bool = False) -> Tensor:
    """The EWMA of a sequence: every V_t of V_t = β·V_{t−1} + (1 − β)·θ_t, V_0 = 0 (notes 004).

    Args:
        values: θ_1 … θ_T, a sequence of numbers or a tensor whose first axis is time (each
            later axis is averaged on its own, e.g. one column per weight).
        beta: β ∈ [0, 1), the weight of the old average (default 0.9; β = 0 returns the values).
        bias_correction: divide V_t by 1 − β^t (Adam's m̂_t = m_t / (1 − β₁^t)) so the early
            averages are not pulled towards V_0 = 0 (default False, the notes' plain recursion).

    Returns:
        V_1 … V_T, a float tensor of the same shape as ``values`` (float64 unless ``values`` is
        a floating tensor already).

    Unrolled, V_t = Σ_{k=0}^{t−1} (1 − β)·β^k·θ_{t−k}: :func:`ewma_weights` gives those weights.
    This is a plain loop over time, like the algorithm; it is meant for curves and worked
    examples, not for optimizer steps (those keep their own running averages).
    """
    beta = _check_beta(beta)
    # numbers from Python become float64 (a float32 average would drift from the recursion)
    theta = values if isinstance(values, Tensor) else torch.as_tensor(values, dtype=torch.float64)
    if not theta.is_floating_point():
        theta = theta.to(torch.float64)
    if theta.dim() == 0:
        raise ValueError("values must be a sequence (time along the first axis), got a single number")
    out = torch.empty_like(theta)
    v = torch.zeros_like(theta[0]) if len(theta) else None
    for t in range(len(theta)):
        v = beta * v + (1 - beta) * theta[t]
        # t + 1 points seen so far: the weights sum to 1 − β^(t+1)
        out[t] = v / (1 - beta ** (t + 1)) if bias_correction else v
    return out


def ewma_weights(t: int, beta: float = 0.9, *, bias_correction: bool = False) -> Tensor:
    """The weight of θ_1 … θ_t in V_t: θ_{t−k} weighs (1 − β)·β^k (float64, oldest first).

    With ``bias_correction`` every weight is divided by 1 − β^t, so they sum to 1. For t = 3:
    V_3 = β²(1 − β)·θ_1 + β(1 − β)·θ_2 + (1 − β)·θ_3 (the notes write β(1 − β)·θ_1: a slip).
    """
    beta = _check_beta(beta)
    if isinstance(t, bool) or not isinstance(t, int) or t < 1:
        raise ValueError(f"t must be a positive integer, got {t!r}")
    k = torch.arange(t - 1, -1, -1, dtype=torch.float64)  # steps back from t, for θ_1 … θ_t
    w = (1 - beta) * beta ** k
    return w / (1 - math.pow(beta, t)) if bias_correction else w
