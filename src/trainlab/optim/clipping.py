"""Gradient clipping: by value, by each tensor's norm, by the global norm — as transforms and functions.

Clipping answers the notes' "cliffs and exploding gradients" (notes 002, Goodfellow et al. 8.2.4):
a huge gradient would throw the parameters far away, so its size is capped before the step.

* by value: every component clamped to [−c, c] (changes the direction);
* by norm: each tensor scaled down to norm ≤ c (per tensor; Keras' ``clipnorm``);
* by global norm: all gradients scaled by one factor so that their joint norm is ≤ c (keeps the
  direction; ``torch.nn.utils.clip_grad_norm_``, Keras' ``global_clipnorm``, Pascanu et al. 2013).

The transforms act on the param group they belong to (global = over that group); the functions
``clip_grad_norm_`` / ``clip_grad_value_`` act on whatever parameters you pass, for hand-written loops.
"""
from __future__ import annotations

import math
from typing import Iterable

import torch
from torch import Tensor

from trainlab.optim.chain import Direction, Transform, check_range

__all__ = ["ClipByValue", "ClipByNorm", "ClipByGlobalNorm", "global_norm", "clip_grad_norm_",
           "clip_grad_value_"]

# the 1e-6 keeps the factor finite for a zero gradient; same constant as torch.nn.utils
_EPS = 1e-6


def _check_norm_type(norm_type: float) -> float:
    norm_type = float(norm_type)
    if not (norm_type > 0):
        raise ValueError(f"Invalid norm_type value: {norm_type} (must be > 0, or inf)")
    return norm_type


def global_norm(tensors: Iterable[Tensor], norm_type: float = 2.0) -> Tensor:
    """‖(t₁, …, tₙ)‖ₚ: the p-norm of all tensors seen as one vector (p = ``norm_type``, may be inf)."""
    tensors = [t for t in tensors]
    if not tensors:
        return torch.tensor(0.0)
    norms = torch._foreach_norm(tensors, norm_type)
    return torch.linalg.vector_norm(torch.stack(norms), norm_type)


def clip_grad_norm_(parameters: Iterable[Tensor] | Tensor, max_norm: float, norm_type: float = 2.0,
                    error_if_nonfinite: bool = False) -> Tensor:
    """Scale the gradients of ``parameters`` in place so that their global norm is ≤ ``max_norm``.

    g ← g · min(1, c / (‖g‖ + 10⁻⁶)); returns the norm before clipping. Same semantics as
    ``torch.nn.utils.clip_grad_norm_`` (the tests compare them).
    """
    if isinstance(parameters, Tensor):
        parameters = [parameters]
    grads = [p.grad for p in parameters if p.grad is not None]
    check_range("max_norm", max_norm, 0.0, math.inf, hi_open=False)
    norm_type = _check_norm_type(norm_type)
    total = global_norm(grads, norm_type)
    if error_if_nonfinite and not torch.isfinite(total):
        raise RuntimeError(f"the total norm of order {norm_type} of the gradients is non-finite "
                           "({total}), so they cannot be clipped; pass error_if_nonfinite=False to skip this check")
    if grads:
        factor = torch.clamp(max_norm / (total + _EPS), max=1.0)
        torch._foreach_mul_(grads, factor)
    return total


def clip_grad_value_(parameters: Iterable[Tensor] | Tensor, clip_value: float) -> None:
    """Clamp every gradient component in place to [−c, c] (``torch.nn.utils.clip_grad_value_``)."""
    if isinstance(parameters, Tensor):
        parameters = [parameters]
    check_range("clip_value", clip_value, 0.0, math.inf, hi_open=False)
    for p in parameters:
        if p.grad is not None:
            p.grad.clamp_(-clip_value, clip_value)


class ClipByValue(Transform):
    """u ← clamp(u, −c, c) componentwise, c = ``clip_value`` (Keras' ``clipvalue``)."""

    def __init__(self, clip_value: float):
        check_range("clip_value", clip_value, 0.0, math.inf, hi_open=False, lo_open=True)
        self.clip_value = clip_value

    def update(self, u, state, p, info):
        return u.clamp(-self.clip_value, self.clip_value), None


class ClipByNorm(Transform):
    """Per tensor: u ← u · min(1, c / (‖u‖ₚ + 10⁻⁶)), c = ``max_norm``, p = ``norm_type``
    (Keras' ``clipnorm``). Each tensor is clipped on its own, so the overall direction can change."""

    def __init__(self, max_norm: float, norm_type: float = 2.0):
        check_range("max_norm", max_norm, 0.0, math.inf, hi_open=False)
        self.max_norm, self.norm_type = max_norm, _check_norm_type(norm_type)

    def update(self, u, state, p, info):
        norm = torch.linalg.vector_norm(u, self.norm_type)
        return u * torch.clamp(self.max_norm / (norm + _EPS), max=1.0), None


class ClipByGlobalNorm(Transform):
    """All tensors of the group: u ← u · min(1, c / (‖(u₁, …, uₙ)‖ₚ + 10⁻⁶)).

    The direction is kept and only the length capped — ``torch.nn.utils.clip_grad_norm_`` as a chain
    step. With several param groups each group is clipped on its own (use :func:`clip_grad_norm_`
    before ``step()`` to clip across groups). Args: ``max_norm`` c, ``norm_type`` p (2; may be inf).
    """

    whole_group = True

    def __init__(self, max_norm: float, norm_type: float = 2.0):
        check_range("max_norm", max_norm, 0.0, math.inf, hi_open=False)
        self.max_norm, self.norm_type = max_norm, _check_norm_type(norm_type)

    def update_many(self, d, states, params, info):
        us = d.materialize()
        total = global_norm(us, self.norm_type)
        factor = torch.clamp(self.max_norm / (total + _EPS), max=1.0)
        return Direction(torch._foreach_mul(us, factor))
