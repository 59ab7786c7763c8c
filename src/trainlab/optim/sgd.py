"""Stochastic gradient descent with the momentum and Nesterov variants of the notes.

Batch, mini-batch and stochastic gradient descent are all this one optimizer: what changes is how
many samples the gradient is averaged over, i.e. the fit loop's ``batch_size`` ("full", k or 1;
notes 002). The update rule itself is Goodfellow et al. Alg. 8.1: θ ← θ − ε·ĝ.
"""
from __future__ import annotations

import math

import torch

from trainlab.optim.chain import ChainOptimizer, check_choice, check_lr, check_range
from trainlab.optim.transforms import (MOMENTUM_FORMS, AddWeightDecay, Momentum, Negate,
                                       ScaleByLearningRate)

__all__ = ["SGD", "NESTEROV_FORMS"]

NESTEROV_FORMS = ("pytorch", "lookahead")


class SGD(ChainOptimizer):
    """Stochastic gradient descent, optionally with momentum (PyTorch's ``torch.optim.SGD`` and more).

    Plain: θ ← θ − lr·(g + λθ). With momentum μ, in the default PyTorch form::

        buf ← μ·buf + (1 − d)·g          (buf starts as the first g)
        θ   ← θ − lr·buf                 (nesterov: θ ← θ − lr·(g + μ·buf))

    Args:
        params: parameters or param groups.
        lr: learning rate ε (default 1e-3, as PyTorch).
        momentum: μ (α in Goodfellow, β in the notes), default 0.
        dampening: d, PyTorch form only (default 0).
        weight_decay: λ, coupled L2: g ← g + λθ (default 0).
        nesterov: use Nesterov momentum (default False).
        maximize: ascend instead of descend.
        foreach: use the ``torch._foreach_*`` fast path (default) or the readable per-tensor rule.
        momentum_form: ``"pytorch"`` (default), ``"ema"`` (v ← βv + (1 − β)g; θ ← θ − lr·v — notes
            001/003/004) or ``"velocity"`` (v ← αv − lr·g; θ ← θ + v — Goodfellow Alg. 8.2, Keras,
            scikit-learn). See :class:`trainlab.optim.transforms.Momentum`.
        nesterov_form: ``"pytorch"`` (default: Sutskever's reformulation, one gradient per step) or
            ``"lookahead"``: the gradient is evaluated at the interim point θ̃ = θ + (momentum's
            step), Goodfellow Alg. 8.3 and the notes' "lookahead position" (notes 002). It needs a
            closure, evaluates it at θ̃, and so the loss it returns is the loss at θ̃.

    Reference: Robbins & Monro 1951; Polyak 1964 (momentum); Nesterov 1983; Sutskever et al. 2013.
        fused: compile the momentum rule into one kernel over the flat buffers (``torch.compile``,
            :mod:`trainlab.optim.fused`; PyTorch-form momentum; needs a C++ compiler on the CPU).

    Differences from PyTorch: the two ``*_form`` options; no ``differentiable``; ``fused``
    compiles our rule (torch's fused kernels are not used).
    With ``nesterov_form="lookahead"`` weight decay uses θ, not θ̃.
    """

    def __init__(self, params, lr: float = 1e-3, momentum: float = 0, dampening: float = 0,
                 weight_decay: float = 0, nesterov: bool = False, *, maximize: bool = False,
                 foreach: bool | None = None, momentum_form: str = "pytorch",
                 nesterov_form: str = "pytorch", fused: bool | None = None):
        check_lr(lr)
        check_range("momentum", momentum, 0.0, 1.0)
        check_range("dampening", dampening, 0.0, 1.0, hi_open=False)
        check_range("weight_decay", weight_decay, 0.0, math.inf, hi_open=False)
        check_choice("momentum_form", momentum_form, MOMENTUM_FORMS)
        check_choice("nesterov_form", nesterov_form, NESTEROV_FORMS)
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")
        if momentum_form != "pytorch" and dampening != 0:
            raise ValueError("dampening applies to momentum_form='pytorch' only")
        from trainlab.optim.adam import _check_fused
        _check_fused(fused, foreach)
        defaults = dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
                        nesterov=nesterov, maximize=maximize, foreach=foreach,
                        momentum_form=momentum_form, nesterov_form=nesterov_form, fused=fused)
        super().__init__(params, defaults)

    @property
    def needs_closure(self) -> bool:  # type: ignore[override]
        return any(self._lookahead(g) for g in self.param_groups)

    @staticmethod
    def _lookahead(group: dict) -> bool:
        return bool(group["nesterov"]) and group["nesterov_form"] == "lookahead" and group["momentum"] > 0

    def _momentum(self, group: dict) -> Momentum:
        # with the true look-ahead, the gradient already comes from θ̃: plain momentum follows
        nesterov = group["nesterov"] and not self._lookahead(group)
        return Momentum(group["momentum"], group["dampening"], nesterov, group["momentum_form"])

    def transforms(self, group):
        chain = []
        if group["maximize"]:
            chain.append(Negate())
        if group["weight_decay"] != 0:
            chain.append(AddWeightDecay(group["weight_decay"]))
        if group["momentum"] == 0:
            chain.append(ScaleByLearningRate())
        elif group["momentum_form"] == "velocity":
            chain += [ScaleByLearningRate(), self._momentum(group)]
        else:
            chain += [self._momentum(group), ScaleByLearningRate()]
        return chain

    @torch.no_grad()
    def step(self, closure=None):
        """One step; with ``nesterov_form="lookahead"`` the closure is evaluated at θ̃ (Alg. 8.3)."""
        if not self.needs_closure:
            return super().step(closure)
        if closure is None:
            raise RuntimeError("SGD with nesterov_form='lookahead' needs a closure: the gradient is "
                               "evaluated at the look-ahead point θ + αv (Goodfellow Alg. 8.3)")
        # interim update θ̃ = θ + (momentum's step), remembering θ to return to
        saved = []
        for group in self.param_groups:
            if not self._lookahead(group):
                continue
            mom = self._momentum(group)
            lr = float(group["lr"])
            for p in group["params"]:
                buf = self.state[p].get("momentum_buffer")
                if buf is None:
                    continue
                saved.append((p, p.detach().clone()))
                p.add_(mom.lookahead(mom.State(buf), p, lr))
        with torch.enable_grad():
            loss = closure()
        for p, theta in saved:
            p.copy_(theta)
        for group in self.param_groups:
            self._step_group(group)
        return loss
