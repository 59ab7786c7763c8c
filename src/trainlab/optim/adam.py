"""The Adam family: Adam (with AMSGrad), AdamW, Adamax, NAdam (notes 001–004; Goodfellow 8.5.3)."""
from __future__ import annotations

import math

from trainlab.optim.chain import ChainOptimizer, check_choice, check_lr, check_range
from trainlab.optim.transforms import (ADAM_EPS_MODES, AddWeightDecay, DecoupledWeightDecay,
                                       Negate, ScaleByAdam, ScaleByAdamax, ScaleByLearningRate,
                                       ScaleByNadam)

__all__ = ["Adam", "AdamW", "Adamax", "NAdam"]


def _check_betas(betas) -> tuple[float, float]:
    if not isinstance(betas, (tuple, list)) or len(betas) != 2:
        raise ValueError(f"betas must be a pair (beta1, beta2), got {betas!r}")
    check_range("beta parameter at index 0", betas[0], 0.0, 1.0)
    check_range("beta parameter at index 1", betas[1], 0.0, 1.0)
    return float(betas[0]), float(betas[1])


def _check_fused(fused, foreach) -> None:
    if fused:
        if foreach is False:
            raise ValueError("fused=True and foreach=False contradict each other: the fused rule is "
                             "a fast path; foreach=False asks for the readable per-tensor rule")
        from trainlab.train.compile import require_compiler
        require_compiler("cpu")


def _decay(group: dict, decoupled: bool) -> list:
    chain = []
    if group["maximize"]:
        chain.append(Negate())
    if group["weight_decay"] != 0:
        chain.append(DecoupledWeightDecay(group["weight_decay"]) if decoupled
                     else AddWeightDecay(group["weight_decay"]))
    return chain


class Adam(ChainOptimizer):
    """Adam: momentum on the gradient (first moment) plus RMSprop's scaling (second moment), both
    bias-corrected.

    ::

        g ← g + λθ                         (or θ ← θ(1 − lr·λ) with decoupled_weight_decay)
        m ← β₁·m + (1 − β₁)·g
        v ← β₂·v + (1 − β₂)·g⊙g           (amsgrad: v_max ← max(v_max, v), used below)
        m̂ = m / (1 − β₁ᵗ);  v̂ = v / (1 − β₂ᵗ)
        θ ← θ − lr · m̂ / (√v̂ + ε)

    Args: ``lr`` (1e-3), ``betas`` (β₁, β₂) = (0.9, 0.999), ``eps`` ε (1e-8; Keras 1e-7),
    ``weight_decay`` λ (0), ``amsgrad`` (False), ``foreach``, ``maximize``,
    ``decoupled_weight_decay`` (False; True is AdamW), ``bias_correction`` (True; False shows what
    the correction fixes), ``fused`` (False; True compiles the rule into one kernel over the flat
    buffers with ``torch.compile`` — see :mod:`trainlab.optim.fused`; needs a C++ compiler on the
    CPU), ``eps_mode``: ``"outside"`` (PyTorch, the paper's Alg. 1), ``"hat"``
    (the ε̂ form of Keras, TensorFlow and scikit-learn: lrₜ = lr·√(1 − β₂ᵗ)/(1 − β₁ᵗ),
    θ ← θ − lrₜ·m/(√v + ε̂)) or ``"inside"`` (√(v̂ + ε), notes 003).

    Reference: Kingma & Ba, ICLR 2015, Alg. 1; Goodfellow et al. Alg. 8.7 (notes 003: Alg. 8.6);
    Reddi et al. 2018 (AMSGrad). Differences from PyTorch: ``bias_correction`` and ``eps_mode``;
    tensor betas, ``capturable`` and ``differentiable`` are not offered; ``fused`` compiles our
    rule (torch's fused kernels are not used).
    """

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0, amsgrad: bool = False, *, foreach: bool | None = None,
                 maximize: bool = False, decoupled_weight_decay: bool = False,
                 bias_correction: bool = True, eps_mode: str = "outside", fused: bool | None = None):
        check_lr(lr)
        betas = _check_betas(betas)
        check_range("epsilon", eps, 0.0, math.inf, hi_open=False)
        check_range("weight_decay", weight_decay, 0.0, math.inf, hi_open=False)
        check_choice("eps_mode", eps_mode, ADAM_EPS_MODES)
        _check_fused(fused, foreach)
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                                      amsgrad=amsgrad, foreach=foreach, maximize=maximize,
                                      decoupled_weight_decay=decoupled_weight_decay,
                                      bias_correction=bias_correction, eps_mode=eps_mode,
                                      fused=fused))

    def transforms(self, group):
        b1, b2 = group["betas"]
        return _decay(group, group["decoupled_weight_decay"]) + [
            ScaleByAdam(b1, b2, group["eps"], group["amsgrad"], group["bias_correction"],
                        group["eps_mode"]),
            ScaleByLearningRate(),
        ]


class AdamW(Adam):
    """AdamW: Adam with decoupled weight decay, θ ← θ·(1 − lr·λ) before the Adam step.

    Same update as :class:`Adam` with ``decoupled_weight_decay=True``; default ``weight_decay``
    λ = 1e-2 as in PyTorch. Reference: Loshchilov & Hutter, ICLR 2019 (the notes' recipe for 99% on
    MNIST suggests it). The paper multiplies λ by the schedule multiplier only; PyTorch and we by lr.
    """

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2, amsgrad: bool = False, *, maximize: bool = False,
                 foreach: bool | None = None, bias_correction: bool = True, eps_mode: str = "outside",
                 fused: bool | None = None):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, foreach=foreach,
                         maximize=maximize, decoupled_weight_decay=True,
                         bias_correction=bias_correction, eps_mode=eps_mode, fused=fused)

    def __setstate__(self, state):
        super().__setstate__(state)
        for group in self.param_groups:
            group["decoupled_weight_decay"] = True


class Adamax(ChainOptimizer):
    """Adamax: Adam with the infinity norm instead of the second moment.

    ::

        g ← g + λθ
        m ← β₁·m + (1 − β₁)·g
        u ← max(β₂·u, |g| + ε)
        θ ← θ − lr/(1 − β₁ᵗ) · m / u

    Args: ``lr`` (2e-3), ``betas`` (0.9, 0.999), ``eps`` (1e-8), ``weight_decay``, ``foreach``,
    ``maximize``. Reference: Kingma & Ba 2015, Sec. 7.1 (Alg. 2). PyTorch's ε inside the max is
    not in the paper; we keep PyTorch's form.
    """

    def __init__(self, params, lr: float = 2e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0, foreach: bool | None = None, *, maximize: bool = False):
        check_lr(lr)
        betas = _check_betas(betas)
        check_range("epsilon", eps, 0.0, math.inf, hi_open=False)
        check_range("weight_decay", weight_decay, 0.0, math.inf, hi_open=False)
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                                      foreach=foreach, maximize=maximize))

    def transforms(self, group):
        b1, b2 = group["betas"]
        return _decay(group, False) + [ScaleByAdamax(b1, b2, group["eps"]), ScaleByLearningRate()]


class NAdam(ChainOptimizer):
    """NAdam: Adam with Nesterov momentum (the notes: "a combination of NAG and Adam").

    ::

        g ← g + λθ                          (or θ ← θ(1 − lr·λ) if decoupled_weight_decay)
        μₜ = β₁(1 − ½·0.96^(tψ));  Πₜ = Π_{t−1}·μₜ
        m ← β₁·m + (1 − β₁)·g;  v ← β₂·v + (1 − β₂)·g⊙g;  v̂ = v/(1 − β₂ᵗ)
        θ ← θ − lr·[(1 − μₜ)/(1 − Πₜ)·g + μₜ₊₁/(1 − Πₜμₜ₊₁)·m] / (√v̂ + ε)

    Args: ``lr`` (2e-3), ``betas`` (0.9, 0.999), ``eps`` (1e-8), ``weight_decay`` λ (0),
    ``momentum_decay`` ψ (4e-3), ``decoupled_weight_decay`` (False), ``foreach`` (accepted for
    compatibility; NAdam has only the readable rule), ``maximize``.
    Reference: Dozat, "Incorporating Nesterov Momentum into Adam", ICLR workshop 2016; as PyTorch.
    Keras' Nadam uses the same μ schedule. Difference: Πₜ is a float64 Python number.
    """

    def __init__(self, params, lr: float = 2e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0, momentum_decay: float = 4e-3,
                 decoupled_weight_decay: bool = False, *, foreach: bool | None = None,
                 maximize: bool = False):
        check_lr(lr)
        betas = _check_betas(betas)
        check_range("epsilon", eps, 0.0, math.inf, hi_open=False)
        check_range("weight_decay", weight_decay, 0.0, math.inf, hi_open=False)
        check_range("momentum_decay", momentum_decay, 0.0, math.inf, hi_open=False)
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                                      momentum_decay=momentum_decay,
                                      decoupled_weight_decay=decoupled_weight_decay,
                                      foreach=foreach, maximize=maximize))

    def transforms(self, group):
        b1, b2 = group["betas"]
        return _decay(group, group["decoupled_weight_decay"]) + [
            ScaleByNadam(b1, b2, group["eps"], group["momentum_decay"]), ScaleByLearningRate()]
