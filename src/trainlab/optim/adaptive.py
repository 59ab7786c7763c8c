"""Per-parameter adaptive learning rates: Adagrad, RMSprop, Adadelta (notes 000–004; Goodfellow 8.5)."""
from __future__ import annotations

import math

from trainlab.optim.chain import ChainOptimizer, check_choice, check_lr, check_range
from trainlab.optim.transforms import (EPS_PLACEMENTS, AddWeightDecay, Momentum, Negate,
                                       ScaleByAdadelta, ScaleByAdagrad, ScaleByLearningRate,
                                       ScaleByRms)

__all__ = ["Adagrad", "RMSprop", "Adadelta"]


def _head(group: dict) -> list:
    chain = []
    if group["maximize"]:
        chain.append(Negate())
    if group["weight_decay"] != 0:
        chain.append(AddWeightDecay(group["weight_decay"]))
    return chain


class Adagrad(ChainOptimizer):
    """Adagrad: each parameter's step shrinks with the sum of its squared gradients.

    ::

        g ← g + λθ
        r ← r + g⊙g                        (r starts at initial_accumulator_value)
        θ ← θ − ηₜ · g / (√r + ε)          ηₜ = lr / (1 + (t − 1)·lr_decay)

    Args: ``lr`` (1e-2), ``lr_decay`` (0), ``weight_decay`` λ (0), ``initial_accumulator_value``
    r₀ (0; Keras uses 0.1), ``eps`` ε (1e-10), ``foreach``, ``maximize``, ``eps_placement``:
    ``"outside"`` √r + ε (PyTorch, Goodfellow Alg. 8.4 with δ = 1e-7, notes 002) or ``"inside"``
    √(r + ε) (Keras, notes 003/004); ``include_current`` (True): False is notes 003's variant
    θ ← θ − η g_t/(√r_{t−1} + ε), dividing by the squared gradients *before* this step (neither
    Duchi et al. nor PyTorch; its first step is η·g/√ε, huge unless r₀ > 0 or ε is large).

    Reference: Duchi, Hazan & Singer, JMLR 2011. Because r only grows, the effective rate
    lr/√r decays like 1/√t — "Adagrad's step dies" (notes 001/004), which the trajectories show.
    Differences from PyTorch: ``eps_placement``; no sparse gradients, no ``fused``.
    """

    def __init__(self, params, lr: float = 1e-2, lr_decay: float = 0, weight_decay: float = 0,
                 initial_accumulator_value: float = 0, eps: float = 1e-10,
                 foreach: bool | None = None, *, maximize: bool = False,
                 eps_placement: str = "outside", include_current: bool = True):
        check_lr(lr)
        check_range("lr_decay", lr_decay, 0.0, math.inf, hi_open=False)
        check_range("weight_decay", weight_decay, 0.0, math.inf, hi_open=False)
        check_range("initial_accumulator_value", initial_accumulator_value, 0.0, math.inf, hi_open=False)
        check_range("epsilon", eps, 0.0, math.inf, hi_open=False)
        check_choice("eps_placement", eps_placement, EPS_PLACEMENTS)
        super().__init__(params, dict(lr=lr, lr_decay=lr_decay, weight_decay=weight_decay,
                                      initial_accumulator_value=initial_accumulator_value, eps=eps,
                                      foreach=foreach, maximize=maximize, eps_placement=eps_placement,
                                      include_current=include_current))

    def transforms(self, group):
        return _head(group) + [
            ScaleByAdagrad(group["eps"], group["initial_accumulator_value"], group["eps_placement"],
                           group.get("include_current", True)),
            ScaleByLearningRate(group["lr_decay"]),
        ]


class RMSprop(ChainOptimizer):
    """RMSprop: divide the gradient by a running root-mean-square of recent gradients.

    ::

        g ← g + λθ
        r ← α·r + (1 − α)·g⊙g
        centered:  ḡ ← α·ḡ + (1 − α)·g;  r̃ = r − ḡ²      (else r̃ = r)
        s = g / (√r̃ + ε)
        momentum μ > 0:  buf ← μ·buf + s;  θ ← θ − lr·buf      else θ ← θ − lr·s

    Args: ``lr`` (1e-2), ``alpha`` α — the decay rate ρ of the notes and Goodfellow (0.99; Keras and
    Hinton use 0.9), ``eps`` ε (1e-8), ``weight_decay`` λ, ``momentum`` μ (0), ``centered``
    (False), ``foreach``, ``maximize``, ``eps_placement``: ``"outside"`` (PyTorch) or ``"inside"``
    √(r + ε) (Goodfellow Alg. 8.5, Keras).

    Reference: Hinton, Coursera lecture 6e (2012); Graves 2013 (centered). Unlike Adagrad the average
    forgets, so the step does not die ("RMSprop keeps moving"). Differences from PyTorch:
    ``eps_placement``; Keras's momentum keeps lr inside the buffer (the velocity form), ours as PyTorch.
    """

    def __init__(self, params, lr: float = 1e-2, alpha: float = 0.99, eps: float = 1e-8,
                 weight_decay: float = 0, momentum: float = 0, centered: bool = False,
                 foreach: bool | None = None, maximize: bool = False, *,
                 eps_placement: str = "outside"):
        check_lr(lr)
        check_range("alpha", alpha, 0.0, 1.0, hi_open=False)
        check_range("epsilon", eps, 0.0, math.inf, hi_open=False)
        check_range("weight_decay", weight_decay, 0.0, math.inf, hi_open=False)
        check_range("momentum", momentum, 0.0, 1.0)
        check_choice("eps_placement", eps_placement, EPS_PLACEMENTS)
        super().__init__(params, dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay,
                                      momentum=momentum, centered=centered, foreach=foreach,
                                      maximize=maximize, eps_placement=eps_placement))

    def transforms(self, group):
        chain = _head(group) + [ScaleByRms(group["alpha"], group["eps"], group["centered"],
                                           group["eps_placement"])]
        if group["momentum"] > 0:
            chain.append(Momentum(group["momentum"]))
        return chain + [ScaleByLearningRate()]


class Adadelta(ChainOptimizer):
    """Adadelta: RMSprop whose step is rescaled by a running RMS of past steps (no global rate needed).

    ::

        g ← g + λθ
        E[g²] ← ρ·E[g²] + (1 − ρ)·g²
        Δ = √(E[Δ²] + ε) / √(E[g²] + ε) · g
        E[Δ²] ← ρ·E[Δ²] + (1 − ρ)·Δ²
        θ ← θ − lr·Δ

    Args: ``lr`` (1.0 — the paper's rule has no rate), ``rho`` ρ (0.9; the paper and Keras 0.95),
    ``eps`` ε (1e-6), ``weight_decay`` λ, ``foreach``, ``maximize``.
    Reference: Zeiler, "ADADELTA: an adaptive learning rate method", 2012, Alg. 1. Notes 003 write
    Adadelta as RMSprop with γ = 0.95; the Δ-rescaling is Zeiler's.
    """

    def __init__(self, params, lr: float = 1.0, rho: float = 0.9, eps: float = 1e-6,
                 weight_decay: float = 0, foreach: bool | None = None, *, maximize: bool = False):
        check_lr(lr)
        check_range("rho", rho, 0.0, 1.0, hi_open=False)
        check_range("epsilon", eps, 0.0, math.inf, hi_open=False)
        check_range("weight_decay", weight_decay, 0.0, math.inf, hi_open=False)
        super().__init__(params, dict(lr=lr, rho=rho, eps=eps, weight_decay=weight_decay,
                                      foreach=foreach, maximize=maximize))

    def transforms(self, group):
        return _head(group) + [ScaleByAdadelta(group["rho"], group["eps"]), ScaleByLearningRate()]
