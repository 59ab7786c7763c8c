"""Sign-based per-parameter rate heuristics: Rprop and delta-bar-delta (notes 002, 003)."""
from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor

from trainlab.optim.chain import ChainOptimizer, Transform, check_lr, check_range
from trainlab.optim.transforms import Negate

__all__ = ["Rprop", "DeltaBarDelta", "ScaleByRprop", "DeltaBarDeltaRule"]


class RpropState(NamedTuple):
    prev: Tensor
    step_size: Tensor


class ScaleByRprop(Transform):
    """Rprop's step: only the sign of the gradient is used; each weight has its own step size.

    ::

        s = sign(g · g_prev)
        Δ ← clamp(Δ · (η₊ if s > 0, η₋ if s < 0, 1 if s = 0), Δ_min, Δ_max)
        g ← 0 where s < 0                  (after a sign flip skip the step and forget g: iRprop⁻)
        u = −sign(g) · Δ;  g_prev ← g

    Δ starts at ``lr``. The output is already a step (no lr scaling follows).
    """

    State = RpropState

    def __init__(self, lr: float, etas=(0.5, 1.2), step_sizes=(1e-6, 50)):
        self.lr = lr
        self.etaminus, self.etaplus = etas
        self.step_size_min, self.step_size_max = step_sizes

    def init(self, p):
        return RpropState(torch.zeros_like(p, memory_format=torch.preserve_format),
                          torch.full_like(p, self.lr, memory_format=torch.preserve_format))

    def update(self, g, s, p, info):
        agree = torch.sign(g * s.prev)
        factor = torch.ones_like(g)
        factor[agree > 0] = self.etaplus
        factor[agree < 0] = self.etaminus
        step_size = (s.step_size * factor).clamp(self.step_size_min, self.step_size_max)
        g = torch.where(agree < 0, torch.zeros_like(g), g)
        return -torch.sign(g) * step_size, RpropState(g, step_size)


class Rprop(ChainOptimizer):
    """Resilient backpropagation (Riedmiller & Braun 1993), PyTorch's variant (iRprop⁻).

    Each weight moves by its own step size Δ in the direction −sign(g); Δ grows by η₊ while the
    gradient keeps its sign and shrinks by η₋ when it flips (and that step is skipped).

    Args: ``lr`` — the initial Δ (1e-2), ``etas`` (η₋, η₊) = (0.5, 1.2), ``step_sizes``
    (Δ_min, Δ_max) = (1e-6, 50), ``foreach`` (accepted; the readable rule is used), ``maximize``.
    Full-batch only in spirit: notes 003 explain why sign-based steps fail on mini-batches (the
    motivation for RMSprop). The lr does not act after the first step (it only sets Δ₀), as in PyTorch.
    """

    def __init__(self, params, lr: float = 1e-2, etas=(0.5, 1.2), step_sizes=(1e-6, 50), *,
                 foreach: bool | None = None, maximize: bool = False):
        check_lr(lr)
        if not (isinstance(etas, (tuple, list)) and len(etas) == 2 and 0.0 < etas[0] < 1.0 < etas[1]):
            raise ValueError(f"Invalid eta values: {etas[0]}, {etas[1]} (need 0 < eta_minus < 1 < eta_plus)"
                             if isinstance(etas, (tuple, list)) and len(etas) == 2 else
                             f"etas must be a pair (eta_minus, eta_plus), got {etas!r}")
        if not (isinstance(step_sizes, (tuple, list)) and len(step_sizes) == 2
                and 0.0 <= step_sizes[0] <= step_sizes[1]):
            raise ValueError(f"step_sizes must be a pair (min, max) with 0 <= min <= max, got {step_sizes!r}")
        super().__init__(params, dict(lr=lr, etas=tuple(etas), step_sizes=tuple(step_sizes),
                                      foreach=foreach, maximize=maximize))

    def transforms(self, group):
        chain = [Negate()] if group["maximize"] else []
        return chain + [ScaleByRprop(float(group["lr"]), group["etas"], group["step_sizes"])]


class DeltaBarDeltaState(NamedTuple):
    rate: Tensor
    bar_delta: Tensor


class DeltaBarDeltaRule(Transform):
    """The delta-bar-delta rule (see :class:`DeltaBarDelta`). Its output is already a step."""

    State = DeltaBarDeltaState

    def __init__(self, lr: float, kappa: float, phi: float, theta: float):
        self.lr, self.kappa, self.phi, self.theta = lr, kappa, phi, theta

    def init(self, p):
        return DeltaBarDeltaState(torch.full_like(p, self.lr, memory_format=torch.preserve_format),
                                  torch.zeros_like(p, memory_format=torch.preserve_format))

    def update(self, g, s, p, info):
        agree = s.bar_delta * g                          # δ̄(t−1) · δ(t)
        rate = torch.where(agree > 0, s.rate + self.kappa,
                           torch.where(agree < 0, s.rate * (1 - self.phi), s.rate))
        bar_delta = (1 - self.theta) * g + self.theta * s.bar_delta
        return -rate * g, DeltaBarDeltaState(rate, bar_delta)


class DeltaBarDelta(ChainOptimizer):
    """Delta-bar-delta (Jacobs 1988): per-parameter rates that grow additively while the gradient
    keeps the sign of its running average and shrink multiplicatively when it flips.

    For each weight, with δ(t) = ∂J/∂w and the running average δ̄::

        Δε = +κ          if δ̄(t−1)·δ(t) > 0
             −φ·ε(t)     if δ̄(t−1)·δ(t) < 0
             0           otherwise
        ε(t+1) = ε(t) + Δε
        δ̄(t) = (1 − θ)·δ(t) + θ·δ̄(t−1)
        w ← w − ε(t+1)·δ(t)

    Args: ``lr`` — the initial rate ε(0) of every weight (1e-2), ``kappa`` κ (1e-3), ``phi`` φ
    (0.1), ``theta`` θ (0.7), ``weight_decay`` (coupled, 0), ``maximize``.
    Reference: R. A. Jacobs, "Increased rates of convergence through learning rate adaptation",
    Neural Networks 1(4), 1988; Goodfellow et al. 8.5; notes 002. Meant for full-batch training
    (like Rprop). No framework ships it. The rates are state: changing ``lr`` after the first step
    (e.g. by a schedule) does not rescale them.
    """

    def __init__(self, params, lr: float = 1e-2, kappa: float = 1e-3, phi: float = 0.1,
                 theta: float = 0.7, weight_decay: float = 0, *, maximize: bool = False):
        check_lr(lr)
        check_range("kappa", kappa, 0.0, math.inf, hi_open=False)
        check_range("phi", phi, 0.0, 1.0, hi_open=False)
        check_range("theta", theta, 0.0, 1.0)
        check_range("weight_decay", weight_decay, 0.0, math.inf, hi_open=False)
        super().__init__(params, dict(lr=lr, kappa=kappa, phi=phi, theta=theta,
                                      weight_decay=weight_decay, maximize=maximize, foreach=False))

    def transforms(self, group):
        from trainlab.optim.transforms import AddWeightDecay
        chain = [Negate()] if group["maximize"] else []
        if group["weight_decay"] != 0:
            chain.append(AddWeightDecay(group["weight_decay"]))
        return chain + [DeltaBarDeltaRule(float(group["lr"]), group["kappa"], group["phi"],
                                          group["theta"])]
