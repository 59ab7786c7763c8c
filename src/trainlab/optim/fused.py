"""``fused=True``: the update rule compiled into one kernel over the flat buffers.

The flat path (:class:`trainlab.optim.chain._FlatGroup`) already runs a step as a few
whole-buffer ops; each op reads and writes its buffers once, so a step moves several times the
bytes the rule needs. ``fused=True`` goes one further: the rule below — the optimizer's own rule,
line for line as its ``update_many`` fast path (``ScaleByAdam``, ``Momentum``) — is compiled by
``torch.compile`` into a single loop that reads θ, g and the state once and writes θ and the state
once. The numbers that change every step (lr, the bias corrections) enter as 0-d tensors of the
parameters' dtype, so the kernel is compiled once, not once per step.

Numerics: the operations of the ``update_many`` fast path (Adam's corrections folded into one
scalar, m̂/(√v̂ + ε) = (√c₂/c₁)·m/(√v + ε√c₂), the moving average as a lerp), in its order, so the
kernel computes what the flat path computes; the compiler may still contract a·b + c into a fused
multiply-add, so the tests hold it to the fast path's tolerance against the readable rule (1e-6 in
float32, 1e-12 in float64 over the trajectory) and report the difference to the flat path.
"""
from __future__ import annotations

import functools
import math
import types

import torch
from torch import Tensor

from trainlab.optim.transforms import (AddWeightDecay, DecoupledWeightDecay, Momentum, Negate,
                                       ScaleByAdam, ScaleByLearningRate)

__all__ = ["fused_rule"]

_COMPILED: dict = {}


def _adam_rule(p: Tensor, g: Tensor, m: Tensor, v: Tensor, v_max: Tensor | None, scalars: Tensor, *,
               b1: float, b2: float, eps_mode: str, negate: bool, coupled: float,
               decoupled: float) -> None:
    # scalars (float64 arithmetic outside, as the fast path does it): the step −lr·√c₂/c₁, the ε
    # term of the denominator, and 1 − lr·λ
    step, eps_term, shrink = scalars[0], scalars[1], scalars[2]
    theta = p
    if negate:
        g = -g                                       # Negate
    if coupled:
        g = g + coupled * theta                      # AddWeightDecay: u ← u + λθ
    if decoupled:
        theta = theta * shrink                       # DecoupledWeightDecay: θ ← θ(1 − lr·λ)
    m_new = torch.lerp(m, g, 1 - b1)                 # m ← β₁m + (1 − β₁)g
    v_new = v * b2 + (1 - b2) * g * g                # v ← β₂v + (1 − β₂)g²
    v_used = v_new
    if v_max is not None:
        v_used = torch.maximum(v_max, v_new)         # AMSGrad
        v_max.copy_(v_used)
    if eps_mode == "inside":
        den = (v_used + eps_term).sqrt()             # √(v + ε·c₂)
    else:
        den = v_used.sqrt() + eps_term               # √v + ε·√c₂ ("outside"), √v + ε̂ ("hat")
    m.copy_(m_new)
    v.copy_(v_new)
    p.copy_(theta + step * (m_new / den))            # θ ← θ − lr·(√c₂/c₁)·m/den


def _sgd_rule(p: Tensor, g: Tensor, buf: Tensor, scalars: Tensor, *, momentum: float,
              dampening: float, nesterov: bool, negate: bool, coupled: float) -> None:
    step = scalars[0]                                # −lr
    if negate:
        g = -g
    if coupled:
        g = g + coupled * p                          # AddWeightDecay
    buf_new = buf * momentum + (1 - dampening) * g   # buf ← μ·buf + (1 − d)·g (Momentum, pytorch form)
    u = g + momentum * buf_new if nesterov else buf_new
    buf.copy_(buf_new)
    p.copy_(p + step * u)                            # θ ← θ − lr·u


def _compiled(rule, like: Tensor, **config):
    """``rule`` with ``config`` bound, compiled for tensors like ``like`` (dtype, device)."""
    key = (rule.__name__, like.dtype, like.device, tuple(sorted(config.items())))
    fn = _COMPILED.get(key)
    if fn is None:
        # torch.compile keeps its compiled versions per code object, with a small limit on how
        # many: a fresh copy of the function per configuration keeps them from crowding out
        name = f"{rule.__name__}_{len(_COMPILED)}"
        fresh = types.FunctionType(rule.__code__.replace(co_name=name), rule.__globals__, name)
        compiled = torch.compile(fresh, fullgraph=True, dynamic=False)
        fn = _COMPILED[key] = functools.partial(compiled, **config)
    return fn


def _split_chain(chain) -> tuple[dict, list]:
    """The pre-transforms the fused rules know (sign, weight decay) and the rest."""
    head = {"negate": False, "coupled": 0.0, "decoupled": 0.0}
    rest = []
    for tr in chain:
        if type(tr) is Negate and not rest:
            head["negate"] = True
        elif type(tr) is AddWeightDecay and not rest:
            head["coupled"] = tr.weight_decay
        elif type(tr) is DecoupledWeightDecay and not rest:
            head["decoupled"] = tr.weight_decay
        else:
            rest.append(tr)
    return head, rest


def fused_rule(chain):
    """A callable ``(flat_group, info) -> bool`` running ``chain`` as one compiled kernel, or
    ``None`` when the chain is not one the fused rules cover (Adam/AdamW in every ε mode and with
    AMSGrad; SGD with PyTorch-form momentum). The callable returns False when it cannot take this
    step (SGD's first step, whose momentum buffer does not exist yet): the flat path takes it."""
    head, rest = _split_chain(chain)
    if (len(rest) == 2 and type(rest[0]) is ScaleByAdam and type(rest[1]) is ScaleByLearningRate
            and rest[1].decay == 0 and rest[0].bias_correction in (True, False)):
        adam = rest[0]
        config = dict(b1=adam.b1, b2=adam.b2, eps_mode=adam.eps_mode, **head)
        eps = adam.eps

        def step(fg, info) -> bool:
            fn = _compiled(_adam_rule, fg.param, **config)
            c1, c2 = adam._corrections(info.t)
            eps_term = {"outside": eps * math.sqrt(c2), "inside": eps * c2, "hat": eps}[adam.eps_mode]
            scalars = torch.tensor([(math.sqrt(c2) / c1) * -info.lr, eps_term,
                                    1 - info.lr * head["decoupled"]],
                                   dtype=fg.param.dtype, device=fg.param.device)
            fn(fg.param, fg.grad, fg.flat[adam.prefix + "exp_avg"], fg.flat[adam.prefix + "exp_avg_sq"],
               fg.flat.get(adam.prefix + "max_exp_avg_sq"), scalars)
            return True
        return step
    if (len(rest) == 2 and type(rest[0]) is Momentum and rest[0].form == "pytorch"
            and type(rest[1]) is ScaleByLearningRate and rest[1].decay == 0 and not head["decoupled"]):
        mom = rest[0]
        config = dict(momentum=mom.momentum, dampening=mom.dampening, nesterov=mom.nesterov,
                      negate=head["negate"], coupled=head["coupled"])
        key = mom.prefix + "momentum_buffer"

        def step(fg, info) -> bool:
            if fg.flat.get(key) is None:
                return False  # the buffer starts as the first gradient: the flat path makes it
            fn = _compiled(_sgd_rule, fg.param, **config)
            fn(fg.param, fg.grad, fg.flat[key],
               torch.tensor([-info.lr], dtype=fg.param.dtype, device=fg.param.device))
            return True
        return step
    return None
