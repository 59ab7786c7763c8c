"""The small composable pieces optimizers are made of.

Each class is one line of an algorithm box: a per-parameter state record and a rule that maps the
incoming update ``u`` (at the start of the chain: the gradient ``g``) to the outgoing one. The
shell in :mod:`trainlab.optim.chain` adds the final ``u`` to the parameters, so the chain for
plain SGD is ``[ScaleByLearningRate()]`` (``u = −lr·g``) and Adam is
``[ScaleByAdam(), ScaleByLearningRate()]``.

Sign convention: transforms before :class:`ScaleByLearningRate` see gradient-like quantities
(pointing uphill); ``ScaleByLearningRate`` turns them into a step (pointing downhill). The textbook
velocity form of momentum (Goodfellow Alg. 8.2) therefore sits *after* it.

Penalties as gradient transformations — the notes ask "which parts of backpropagation change under
L1/L2?". None of the backward pass through the network does: the penalty's gradient is added to
each weight's gradient after backpropagation, ``g ← g + ∂R/∂w``. :class:`L2Penalty`,
:class:`L1Penalty` and :class:`ElasticNet` give exactly the gradient of the matching loss terms in
:mod:`trainlab.losses` (tests prove it); :class:`L1Proximal` and :class:`DecoupledWeightDecay`
act on the weights themselves instead and have no loss-term equivalent.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor

from trainlab.optim.chain import Direction, StepInfo, Transform, check_choice, check_range

__all__ = [
    "Negate", "ScaleByLearningRate", "AddWeightDecay", "DecoupledWeightDecay", "L2Penalty",
    "L1Penalty", "ElasticNet", "L1Proximal", "Momentum", "ScaleByRms", "ScaleByAdagrad",
    "ScaleByAdadelta", "ScaleByAdam", "ScaleByAdamax", "ScaleByNadam", "AddNoise", "Lookahead",
    "MOMENTUM_FORMS", "EPS_PLACEMENTS", "bias_correction",
]

MOMENTUM_FORMS = ("pytorch", "ema", "velocity")
EPS_PLACEMENTS = ("outside", "inside")


def bias_correction(beta: float, t: int) -> float:
    """1 − βᵗ: the weight an exponential moving average started at 0 has put on data after t steps.

    Dividing the average by it removes the bias towards the zero initialisation (Kingma & Ba 2015,
    Sec. 3): with β = 0.999 the raw second moment after one step is 0.001·g², the corrected one g².
    """
    return 1.0 - beta ** t


def _skip(p: Tensor, skip_1d: bool) -> bool:
    # the notes (and Keras' kernel_regularizer) penalise weight matrices, not biases / norm gains
    return skip_1d and p.dim() < 2


# ------------------------------------------------------------------------------------------------
# sign, learning rate, weight decay and penalties
# ------------------------------------------------------------------------------------------------

class Negate(Transform):
    """u ← −u. Put first in a chain to *maximize* the objective (torch.optim's ``maximize=True``)."""

    elementwise = True

    def update(self, u, state, p, info):
        return -u, None

    def update_many(self, d, states, params, info):
        return d.scaled(-1.0)


class ScaleByLearningRate(Transform):
    """u ← −ηₜ·u with ηₜ = lr / (1 + (t − 1)·decay): turn a direction into a descent step.

    ``lr`` is read from the param group every step (schedules change it there). ``decay`` is
    Adagrad's built-in inverse-time decay (torch's ``lr_decay``); 0 keeps ηₜ = lr.
    """

    elementwise = True

    def __init__(self, decay: float = 0.0):
        check_range("lr_decay", decay, 0.0, math.inf, hi_open=False)
        self.decay = decay

    def rate(self, info: StepInfo) -> float:
        return info.lr / (1 + (info.t - 1) * self.decay)

    def update(self, u, state, p, info):
        return -self.rate(info) * u, None

    def update_many(self, d, states, params, info):
        return d.scaled(-self.rate(info))


class AddWeightDecay(Transform):
    """Coupled weight decay (PyTorch's ``weight_decay``): u ← u + λ·θ.

    This is the gradient of the L2 penalty (λ/2)·‖θ‖², so ``weight_decay=λ`` equals
    ``L2Penalty(λ/2)``. Inside adaptive methods it is scaled like the gradient (Loshchilov & Hutter
    2019 show why that differs from true decay — see :class:`DecoupledWeightDecay`).
    """

    elementwise = True

    def __init__(self, weight_decay: float):
        check_range("weight_decay", weight_decay, 0.0, math.inf, hi_open=False)
        self.weight_decay = weight_decay

    def update(self, u, state, p, info):
        return u + self.weight_decay * p, None

    def update_many(self, d, states, params, info):
        return Direction(torch._foreach_add(d.materialize(), params, alpha=self.weight_decay))


class DecoupledWeightDecay(Transform):
    """Decoupled weight decay (AdamW): θ ← θ·(1 − lr·λ), applied to the weights, not the gradient.

    Reference: Loshchilov & Hutter, "Decoupled Weight Decay Regularization", ICLR 2019. As in
    PyTorch the decay is multiplied by the current lr (the paper scales it by the schedule
    multiplier ηₜ only). Leaves ``u`` unchanged.
    """

    elementwise = True

    def __init__(self, weight_decay: float):
        check_range("weight_decay", weight_decay, 0.0, math.inf, hi_open=False)
        self.weight_decay = weight_decay

    def update(self, u, state, p, info):
        p.mul_(1 - info.lr * self.weight_decay)
        return u, None

    def update_many(self, d, states, params, info):
        torch._foreach_mul_(params, 1 - info.lr * self.weight_decay)
        return d


class L2Penalty(Transform):
    """The gradient of the L2 penalty R(θ) = weight·Σθ² (ridge): u ← u + 2·weight·θ.

    Same gradient as the loss term :func:`trainlab.losses.l2_penalty` (the notes' λΣw², Keras'
    ``regularizers.l2``). PyTorch's ``weight_decay=λ`` is ``L2Penalty(weight=λ/2)``.
    ``skip_1d=True`` leaves 1-D tensors (biases, normalisation gains) alone, as the notes and Keras'
    ``kernel_regularizer`` do.
    """

    def __init__(self, weight: float, skip_1d: bool = False):
        check_range("weight", weight, 0.0, math.inf, hi_open=False)
        self.weight, self.skip_1d = weight, skip_1d

    def update(self, u, state, p, info):
        if _skip(p, self.skip_1d):
            return u, None
        return u + 2 * self.weight * p, None


class L1Penalty(Transform):
    """The subgradient of the L1 penalty R(θ) = weight·Σ|θ| (lasso): u ← u + weight·sign(θ).

    Same gradient as :func:`trainlab.losses.l1_penalty` (autograd also uses sign(0) = 0). The
    subgradient pushes every weight towards 0 by the same amount but rarely lands exactly on 0;
    :class:`L1Proximal` gives exact zeros.
    """

    def __init__(self, weight: float, skip_1d: bool = False):
        check_range("weight", weight, 0.0, math.inf, hi_open=False)
        self.weight, self.skip_1d = weight, skip_1d

    def update(self, u, state, p, info):
        if _skip(p, self.skip_1d):
            return u, None
        return u + self.weight * torch.sign(p), None


class ElasticNet(Transform):
    """The gradient of the elastic-net penalty R(θ) = weight·(ρ·Σ|θ| + (1 − ρ)·Σθ²), ρ = ``l1_ratio``.

    u ← u + weight·(ρ·sign(θ) + 2(1 − ρ)·θ). Same gradient as :func:`trainlab.losses.elastic_net`.
    Note: scikit-learn's ``ElasticNet`` halves the squared term (α·ρ·‖w‖₁ + ½α(1 − ρ)‖w‖²); the
    notes (003) write λ((1 − α)Σ|w| + αΣw²) while their text says α weights the L1 part — we follow
    the text and name the mix ``l1_ratio`` as scikit-learn does.
    """

    def __init__(self, weight: float, l1_ratio: float = 0.5, skip_1d: bool = False):
        check_range("weight", weight, 0.0, math.inf, hi_open=False)
        check_range("l1_ratio", l1_ratio, 0.0, 1.0, hi_open=False)
        self.weight, self.l1_ratio, self.skip_1d = weight, l1_ratio, skip_1d

    def update(self, u, state, p, info):
        if _skip(p, self.skip_1d):
            return u, None
        rho = self.l1_ratio
        return u + self.weight * (rho * torch.sign(p) + 2 * (1 - rho) * p), None


class L1Proximal(Transform):
    """L1 as a proximal step (soft-thresholding) after the update: θ ← sign(θ)·max(|θ| − lr·weight, 0).

    This is ISTA's step for the penalty weight·Σ|θ| (Beck & Teboulle 2009): weights whose magnitude
    falls below lr·weight become exactly 0 — the sparsity the notes attribute to L1, which the
    subgradient (:class:`L1Penalty`) only approximates. With an adaptive optimizer the threshold
    still uses the global lr (a simplification: the per-coordinate step sizes are ignored).
    """

    post = True

    def __init__(self, weight: float, skip_1d: bool = False):
        check_range("weight", weight, 0.0, math.inf, hi_open=False)
        self.weight, self.skip_1d = weight, skip_1d

    def update(self, u, state, p, info):
        if not _skip(p, self.skip_1d):
            threshold = info.lr * self.weight
            p.copy_(torch.sign(p) * torch.clamp(p.abs() - threshold, min=0.0))
        return None, None


# ------------------------------------------------------------------------------------------------
# momentum
# ------------------------------------------------------------------------------------------------

class MomentumState(NamedTuple):
    momentum_buffer: Tensor | None


class Momentum(Transform):
    """Momentum in one of three forms (``form``); PyTorch's is the default.

    * ``"pytorch"`` — buf ← μ·buf + (1 − d)·u (buf starts as the first u); out = buf, or
      u + μ·buf with ``nesterov``. Used by torch.optim.SGD; placed *before* the lr scaling, so
      p ← p − lr·buf.
    * ``"ema"`` — v ← β·v + (1 − β)·u (v starts at 0); out = v, or β·v + (1 − β)·u with
      ``nesterov``. The exponential moving average of notes 001/003/004 (p ← p − η·v).
    * ``"velocity"`` — v ← α·v + u, where u is already −ε·g, so v ← α·v − ε·g (v starts at 0);
      out = v, or α·v + u with ``nesterov``. Goodfellow et al. Alg. 8.2, Keras and scikit-learn
      (p ← p + v); placed *after* the lr scaling.

    With a constant lr the pytorch and velocity forms give the same trajectory; they differ when the
    lr changes (velocity keeps old steps at their old lr). The ema form is the pytorch form with
    ``dampening = β`` except on the first step (it starts from 0 rather than from g).
    ``nesterov`` here is the reformulation of Sutskever et al. 2013 (no extra gradient
    evaluation); the true look-ahead of Alg. 8.3 is ``SGD(nesterov_form="lookahead")``.

    Args: ``momentum`` μ (α, β) in [0, 1); ``dampening`` d (pytorch form only); ``nesterov``;
    ``form``.
    """

    elementwise = True

    State = MomentumState
    replaces_state = True

    def __init__(self, momentum: float = 0.9, dampening: float = 0.0, nesterov: bool = False,
                 form: str = "pytorch"):
        check_range("momentum", momentum, 0.0, 1.0)
        check_range("dampening", dampening, 0.0, 1.0, hi_open=False)
        check_choice("momentum_form", form, MOMENTUM_FORMS)
        if form != "pytorch" and dampening != 0:
            raise ValueError(f"dampening applies to momentum_form='pytorch' only (got form={form!r}, "
                             f"dampening={dampening}); the ema form already weights g by (1 − β)")
        self.momentum, self.dampening, self.nesterov, self.form = momentum, dampening, nesterov, form

    def init(self, p):
        if self.form == "pytorch":
            return MomentumState(None)  # PyTorch starts the buffer at the first gradient
        return MomentumState(torch.zeros_like(p, memory_format=torch.preserve_format))

    def update(self, u, s, p, info):
        mu = self.momentum
        if self.form == "pytorch":
            if s.momentum_buffer is None:
                buf = u.clone()
            else:
                buf = mu * s.momentum_buffer + (1 - self.dampening) * u
            out = u + mu * buf if self.nesterov else buf
        elif self.form == "ema":
            buf = mu * s.momentum_buffer + (1 - mu) * u
            out = mu * buf + (1 - mu) * u if self.nesterov else buf
        else:  # velocity: u is already −ε·g
            buf = mu * s.momentum_buffer + u
            out = mu * buf + u if self.nesterov else buf
        return out, MomentumState(buf)

    def update_many(self, d, s, params, info):
        mu, bufs = self.momentum, s.momentum_buffer
        us = d.materialize()
        self.dirty = False
        if self.form == "pytorch":
            if any(b is None for b in bufs):
                self.dirty = True
                for i, (b, u) in enumerate(zip(bufs, us)):
                    if b is None:
                        bufs[i] = torch.clone(u).detach()
                    else:
                        b.mul_(mu).add_(u, alpha=1 - self.dampening)
            else:
                torch._foreach_mul_(bufs, mu)
                torch._foreach_add_(bufs, us, alpha=1 - self.dampening)
            if self.nesterov:
                return Direction(torch._foreach_add(us, bufs, alpha=mu))
            return Direction(bufs)
        if self.form == "ema":
            torch._foreach_lerp_(bufs, us, 1 - mu)
            if self.nesterov:
                return Direction(torch._foreach_lerp(bufs, us, 1 - mu))
            return Direction(bufs)
        torch._foreach_mul_(bufs, mu)
        torch._foreach_add_(bufs, us)
        if self.nesterov:
            return Direction(torch._foreach_add(us, bufs, alpha=mu))
        return Direction(bufs)

    def lookahead(self, state: MomentumState, p: Tensor, lr: float) -> Tensor | None:
        """Where momentum alone would move θ this step (the gradient-free part of the update):
        the interim point θ̃ = θ + this of Alg. 8.3. ``None`` before the first step."""
        buf = state.momentum_buffer
        if buf is None:
            return None
        if self.form == "velocity":
            return self.momentum * buf
        return -lr * self.momentum * buf


# ------------------------------------------------------------------------------------------------
# adaptive scalings: Adagrad, RMSprop, Adadelta
# ------------------------------------------------------------------------------------------------

def _denominator(second_moment: Tensor, eps: float, placement: str) -> Tensor:
    # outside: √r + ε (PyTorch, Alg. 8.4, Adam); inside: √(r + ε) (Alg. 8.5, Keras, notes 003/004)
    if placement == "outside":
        return second_moment.sqrt() + eps
    return (second_moment + eps).sqrt()


def _denominator_many(second_moments: list[Tensor], eps: float, placement: str) -> list[Tensor]:
    if placement == "outside":
        den = torch._foreach_sqrt(second_moments)
        torch._foreach_add_(den, eps)
    else:
        den = torch._foreach_add(second_moments, eps)
        torch._foreach_sqrt_(den)
    return den


class AdagradState(NamedTuple):
    sum: Tensor


class ScaleByAdagrad(Transform):
    """Adagrad's scaling: r ← r + g⊙g; u ← g / (√r + ε)  (``eps_placement="outside"``).

    Goodfellow et al. Alg. 8.4; Duchi, Hazan & Singer 2011. ``initial_accumulator_value`` r₀
    (PyTorch 0, Keras 0.1) keeps the first steps from being ±lr for every coordinate.
    ``eps_placement="inside"`` uses √(r + ε) as Keras and notes 003/004 do.
    ``include_current=False`` is notes 003's variant: the step divides by the sum of the *earlier*
    squared gradients, u_t = g_t / (√r_{t−1} + ε), r_{t−1} = Σ_{i<t} g_i², and only then adds g_t².
    """

    elementwise = True

    State = AdagradState

    def __init__(self, eps: float = 1e-10, initial_accumulator_value: float = 0.0,
                 eps_placement: str = "outside", include_current: bool = True):
        check_range("epsilon", eps, 0.0, math.inf, hi_open=False)
        check_range("initial_accumulator_value", initial_accumulator_value, 0.0, math.inf, hi_open=False)
        check_choice("eps_placement", eps_placement, EPS_PLACEMENTS)
        self.eps, self.initial_accumulator_value, self.eps_placement = eps, initial_accumulator_value, eps_placement
        self.include_current = bool(include_current)

    def init(self, p):
        return AdagradState(torch.full_like(p, self.initial_accumulator_value,
                                            memory_format=torch.preserve_format))

    def update(self, g, s, p, info):
        r = s.sum + g * g
        seen = r if self.include_current else s.sum     # notes 003: r_{t−1}, without g_t²
        return g / _denominator(seen, self.eps, self.eps_placement), AdagradState(r)

    def update_many(self, d, s, params, info):
        gs = d.materialize()
        if not self.include_current:  # the denominator from r_{t−1}, taken before g_t² is added
            den = _denominator_many(s.sum, self.eps, self.eps_placement)
            torch._foreach_addcmul_(s.sum, gs, gs)
            return Direction(gs, den)
        torch._foreach_addcmul_(s.sum, gs, gs)
        return Direction(gs, _denominator_many(s.sum, self.eps, self.eps_placement))


class RmsState(NamedTuple):
    square_avg: Tensor


class CenteredRmsState(NamedTuple):
    square_avg: Tensor
    grad_avg: Tensor


class ScaleByRms(Transform):
    """RMSprop's scaling: r ← ρ·r + (1 − ρ)·g⊙g; u ← g / (√r + ε).

    Goodfellow et al. Alg. 8.5 (which puts ε inside: ``eps_placement="inside"``, as Keras does);
    Hinton's lecture 6e. ``centered`` (Graves 2013) divides by the estimated standard deviation
    instead: also track ḡ ← ρ·ḡ + (1 − ρ)·g and use r − ḡ². Args: ``alpha`` ρ (PyTorch's name),
    ``eps`` ε, ``centered``, ``eps_placement``.
    """

    elementwise = True

    def __init__(self, alpha: float = 0.99, eps: float = 1e-8, centered: bool = False,
                 eps_placement: str = "outside"):
        check_range("alpha", alpha, 0.0, 1.0, hi_open=False)
        check_range("epsilon", eps, 0.0, math.inf, hi_open=False)
        check_choice("eps_placement", eps_placement, EPS_PLACEMENTS)
        self.alpha, self.eps, self.centered, self.eps_placement = alpha, eps, centered, eps_placement
        self.State = CenteredRmsState if centered else RmsState

    def init(self, p):
        zeros = lambda: torch.zeros_like(p, memory_format=torch.preserve_format)  # noqa: E731
        return CenteredRmsState(zeros(), zeros()) if self.centered else RmsState(zeros())

    def update(self, g, s, p, info):
        rho = self.alpha
        r = rho * s.square_avg + (1 - rho) * g * g
        if self.centered:
            g_bar = rho * s.grad_avg + (1 - rho) * g
            variance = r - g_bar * g_bar
            return g / _denominator(variance, self.eps, self.eps_placement), CenteredRmsState(r, g_bar)
        return g / _denominator(r, self.eps, self.eps_placement), RmsState(r)

    def update_many(self, d, s, params, info):
        rho, gs = self.alpha, d.materialize()
        torch._foreach_mul_(s.square_avg, rho)
        torch._foreach_addcmul_(s.square_avg, gs, gs, value=1 - rho)
        if self.centered:
            torch._foreach_lerp_(s.grad_avg, gs, 1 - rho)
            variance = torch._foreach_addcmul(s.square_avg, s.grad_avg, s.grad_avg, value=-1)
            return Direction(gs, _denominator_many(variance, self.eps, self.eps_placement))
        return Direction(gs, _denominator_many(s.square_avg, self.eps, self.eps_placement))


class AdadeltaState(NamedTuple):
    square_avg: Tensor
    acc_delta: Tensor


class ScaleByAdadelta(Transform):
    """Adadelta's scaling (Zeiler 2012, Alg. 1): units-correct steps without a global rate.

    E[g²] ← ρ·E[g²] + (1 − ρ)·g²;  Δ = √(E[Δ²] + ε) / √(E[g²] + ε) · g;
    E[Δ²] ← ρ·E[Δ²] + (1 − ρ)·Δ²;  u = Δ. The paper applies θ ← θ − Δ; PyTorch (and we) still
    multiply by lr (default 1.0, which is the paper's rule).
    """

    elementwise = True

    State = AdadeltaState

    def __init__(self, rho: float = 0.9, eps: float = 1e-6):
        check_range("rho", rho, 0.0, 1.0, hi_open=False)
        check_range("epsilon", eps, 0.0, math.inf, hi_open=False)
        self.rho, self.eps = rho, eps

    def init(self, p):
        return AdadeltaState(torch.zeros_like(p, memory_format=torch.preserve_format),
                             torch.zeros_like(p, memory_format=torch.preserve_format))

    def update(self, g, s, p, info):
        rho, eps = self.rho, self.eps
        sq_g = rho * s.square_avg + (1 - rho) * g * g
        delta = (s.acc_delta + eps).sqrt() / (sq_g + eps).sqrt() * g
        sq_delta = rho * s.acc_delta + (1 - rho) * delta * delta
        return delta, AdadeltaState(sq_g, sq_delta)

    def update_many(self, d, s, params, info):
        rho, eps, gs = self.rho, self.eps, d.materialize()
        torch._foreach_mul_(s.square_avg, rho)
        torch._foreach_addcmul_(s.square_avg, gs, gs, value=1 - rho)
        std = torch._foreach_add(s.square_avg, eps)
        torch._foreach_sqrt_(std)
        delta = torch._foreach_add(s.acc_delta, eps)
        torch._foreach_sqrt_(delta)
        torch._foreach_div_(delta, std)
        torch._foreach_mul_(delta, gs)
        torch._foreach_mul_(s.acc_delta, rho)
        torch._foreach_addcmul_(s.acc_delta, delta, delta, value=1 - rho)
        return Direction(delta)


# ------------------------------------------------------------------------------------------------
# Adam family
# ------------------------------------------------------------------------------------------------

class AdamState(NamedTuple):
    exp_avg: Tensor
    exp_avg_sq: Tensor


class AmsgradState(NamedTuple):
    exp_avg: Tensor
    exp_avg_sq: Tensor
    max_exp_avg_sq: Tensor


ADAM_EPS_MODES = ("outside", "hat", "inside")


class ScaleByAdam(Transform):
    """Adam's scaling (Kingma & Ba 2015, Alg. 1; Goodfellow et al. Alg. 8.7; notes 003 Alg. 8.6):

    m ← β₁·m + (1 − β₁)·g;  v ← β₂·v + (1 − β₂)·g⊙g;
    m̂ = m / (1 − β₁ᵗ);  v̂ = v / (1 − β₂ᵗ);  u = m̂ / (√v̂ + ε).

    Variants (named options; defaults follow PyTorch):

    * ``amsgrad`` — divide by √max(v̂ so far) (Reddi, Kale & Kumar 2018).
    * ``bias_correction=False`` — use m and v as they are; shows what the correction fixes (the
      first steps are far too large: m/√v ≈ (1 − β₁)/√(1 − β₂) ≈ 3.2·sign(g) at t = 1).
    * ``eps_mode`` — ``"outside"`` √v̂ + ε (PyTorch, the paper's Alg. 1); ``"hat"``: the step is
      √(1 − β₂ᵗ)/(1 − β₁ᵗ) · m / (√v + ε̂), the ε̂ of the paper's Sec. 2 last paragraph, used by Keras,
      TensorFlow and scikit-learn (ε̂ is not rescaled by the correction); ``"inside"`` √(v̂ + ε)
      (notes 003's slide).
    """

    elementwise = True

    def __init__(self, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8, amsgrad: bool = False,
                 bias_correction: bool = True, eps_mode: str = "outside"):
        check_range("beta parameter at index 0", b1, 0.0, 1.0)
        check_range("beta parameter at index 1", b2, 0.0, 1.0)
        check_range("epsilon", eps, 0.0, math.inf, hi_open=False)
        check_choice("eps_mode", eps_mode, ADAM_EPS_MODES)
        self.b1, self.b2, self.eps, self.amsgrad = b1, b2, eps, amsgrad
        self.bias_correction, self.eps_mode = bias_correction, eps_mode
        self.State = AmsgradState if amsgrad else AdamState

    def init(self, p):
        zeros = [torch.zeros_like(p, memory_format=torch.preserve_format) for _ in self.State._fields]
        return self.State(*zeros)

    def _corrections(self, t: int) -> tuple[float, float]:
        if not self.bias_correction:
            return 1.0, 1.0
        return bias_correction(self.b1, t), bias_correction(self.b2, t)

    def update(self, g, s, p, info):
        b1, b2, eps = self.b1, self.b2, self.eps
        m = b1 * s.exp_avg + (1 - b1) * g
        v = b2 * s.exp_avg_sq + (1 - b2) * g * g
        if self.amsgrad:
            v_max = torch.maximum(s.max_exp_avg_sq, v)
            new_state, v_used = AmsgradState(m, v, v_max), v_max
        else:
            new_state, v_used = AdamState(m, v), v
        c1, c2 = self._corrections(info.t)
        if self.eps_mode == "hat":
            u = (math.sqrt(c2) / c1) * m / (v_used.sqrt() + eps)
        else:
            m_hat = m / c1
            v_hat = v_used / c2
            u = m_hat / _denominator(v_hat, eps, self.eps_mode)
        return u, new_state

    def update_many(self, d, s, params, info):
        b1, b2, eps = self.b1, self.b2, self.eps
        gs = d.materialize()
        torch._foreach_lerp_(s.exp_avg, gs, 1 - b1)
        torch._foreach_mul_(s.exp_avg_sq, b2)
        torch._foreach_addcmul_(s.exp_avg_sq, gs, gs, value=1 - b2)
        v = s.exp_avg_sq
        if self.amsgrad:
            torch._foreach_maximum_(s.max_exp_avg_sq, v)
            v = s.max_exp_avg_sq
        c1, c2 = self._corrections(info.t)
        # m̂/(√v̂ + ε) = (√c₂/c₁)·m/(√v + ε√c₂): the corrections become one scalar and the
        # denominator one pass, so the whole step is applied by a single fused addcdiv.
        if self.eps_mode == "inside":
            den = torch._foreach_add(v, eps * c2)
            torch._foreach_sqrt_(den)
        else:
            den = torch._foreach_sqrt(v)
            torch._foreach_add_(den, eps * math.sqrt(c2) if self.eps_mode == "outside" else eps)
        return Direction(s.exp_avg, den, math.sqrt(c2) / c1)


class AdamaxState(NamedTuple):
    exp_avg: Tensor
    exp_inf: Tensor


class ScaleByAdamax(Transform):
    """Adamax (Kingma & Ba 2015, Sec. 7.1): Adam with the infinity norm in the denominator.

    m ← β₁·m + (1 − β₁)·g;  u∞ ← max(β₂·u∞, |g| + ε);  u = m / ((1 − β₁ᵗ)·u∞).
    The paper has max(β₂·u∞, |g|); PyTorch adds ε inside the max to avoid 0/0, as we do.
    """

    elementwise = True

    State = AdamaxState

    def __init__(self, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8):
        check_range("beta parameter at index 0", b1, 0.0, 1.0)
        check_range("beta parameter at index 1", b2, 0.0, 1.0)
        check_range("epsilon", eps, 0.0, math.inf, hi_open=False)
        self.b1, self.b2, self.eps = b1, b2, eps

    def init(self, p):
        return AdamaxState(torch.zeros_like(p, memory_format=torch.preserve_format),
                           torch.zeros_like(p, memory_format=torch.preserve_format))

    def update(self, g, s, p, info):
        b1, b2 = self.b1, self.b2
        m = b1 * s.exp_avg + (1 - b1) * g
        u_inf = torch.maximum(b2 * s.exp_inf, g.abs() + self.eps)
        return m / (bias_correction(b1, info.t) * u_inf), AdamaxState(m, u_inf)

    def update_many(self, d, s, params, info):
        gs = d.materialize()
        torch._foreach_lerp_(s.exp_avg, gs, 1 - self.b1)
        torch._foreach_mul_(s.exp_inf, self.b2)
        abs_g = torch._foreach_abs(gs)
        torch._foreach_add_(abs_g, self.eps)
        torch._foreach_maximum_(s.exp_inf, abs_g)
        return Direction(s.exp_avg, s.exp_inf, 1.0 / bias_correction(self.b1, info.t))


class NadamState(NamedTuple):
    exp_avg: Tensor
    exp_avg_sq: Tensor
    mu_product: float


class ScaleByNadam(Transform):
    """NAdam (Dozat 2016): Adam with a Nesterov-style first moment and a momentum schedule.

    μₜ = β₁(1 − ½·0.96^(t·ψ)),  Πₜ = Πₜ₋₁·μₜ  (ψ = ``momentum_decay``);
    m ← β₁·m + (1 − β₁)·g;  v ← β₂·v + (1 − β₂)·g²;  v̂ = v / (1 − β₂ᵗ);
    u = (1 − μₜ)/(1 − Πₜ) · g/(√v̂ + ε) + μₜ₊₁/(1 − Πₜμₜ₊₁) · m/(√v̂ + ε).

    As in PyTorch. Difference: Πₜ (``mu_product``) is kept as a Python float (float64) rather than a
    float32 tensor, so it is more precise than torch's in float32.
    """

    elementwise = True

    State = NadamState
    replaces_state = True  # mu_product is a float: the shell writes the list back

    def __init__(self, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8, momentum_decay: float = 4e-3):
        check_range("beta parameter at index 0", b1, 0.0, 1.0)
        check_range("beta parameter at index 1", b2, 0.0, 1.0)
        check_range("epsilon", eps, 0.0, math.inf, hi_open=False)
        check_range("momentum_decay", momentum_decay, 0.0, math.inf, hi_open=False)
        self.b1, self.b2, self.eps, self.momentum_decay = b1, b2, eps, momentum_decay

    def init(self, p):
        return NadamState(torch.zeros_like(p, memory_format=torch.preserve_format),
                          torch.zeros_like(p, memory_format=torch.preserve_format), 1.0)

    def mu(self, t: int) -> float:
        """The momentum schedule μₜ."""
        return self.b1 * (1.0 - 0.5 * 0.96 ** (t * self.momentum_decay))

    def update(self, g, s, p, info):
        b1, b2, t = self.b1, self.b2, info.t
        mu_t, mu_next = self.mu(t), self.mu(t + 1)
        prod = s.mu_product * mu_t
        m = b1 * s.exp_avg + (1 - b1) * g
        v = b2 * s.exp_avg_sq + (1 - b2) * g * g
        denom = (v / bias_correction(b2, t)).sqrt() + self.eps
        u = ((1 - mu_t) / (1 - prod)) * g / denom + (mu_next / (1 - prod * mu_next)) * m / denom
        return u, NadamState(m, v, prod)

    def update_many(self, d, s, params, info):
        b1, b2, t = self.b1, self.b2, info.t
        mu_t, mu_next = self.mu(t), self.mu(t + 1)
        gs = d.materialize()
        if any(prod != s.mu_product[0] for prod in s.mu_product):
            # momentum histories differ (hyperparameters changed mid-run): the readable rule per tensor
            out = []
            for i, (g, p) in enumerate(zip(gs, params)):
                u, (s.exp_avg[i], s.exp_avg_sq[i], s.mu_product[i]) = self.update(
                    g, NadamState(s.exp_avg[i], s.exp_avg_sq[i], s.mu_product[i]), p, info)
                out.append(u)
            return Direction(out)
        prod = s.mu_product[0] * mu_t
        s.mu_product[:] = [prod] * len(s.mu_product)
        torch._foreach_lerp_(s.exp_avg, gs, 1 - b1)
        torch._foreach_mul_(s.exp_avg_sq, b2)
        torch._foreach_addcmul_(s.exp_avg_sq, gs, gs, value=1 - b2)
        denom = torch._foreach_sqrt(s.exp_avg_sq)
        torch._foreach_div_(denom, math.sqrt(bias_correction(b2, t)))
        torch._foreach_add_(denom, self.eps)
        return Direction(gs, denom, (1 - mu_t) / (1 - prod),
                         extra=(s.exp_avg, mu_next / (1 - prod * mu_next)))


# ------------------------------------------------------------------------------------------------
# noise and lookahead
# ------------------------------------------------------------------------------------------------

class AddNoise(Transform):
    """Annealed Gaussian gradient noise (Neelakantan et al. 2015): u ← u + N(0, σₜ²),
    σₜ² = eta / (1 + t)^gamma with t counted from 0. Defaults eta = 0.01, gamma = 0.55 (the paper's).

    ``seed`` seeds a private CPU generator, so runs are reproducible; the noise is drawn on the CPU
    and moved to the parameter's device.
    """

    def __init__(self, eta: float = 0.01, gamma: float = 0.55, seed: int | None = None):
        check_range("eta", eta, 0.0, math.inf, hi_open=False)
        check_range("gamma", gamma, 0.0, math.inf, hi_open=False)
        self.eta, self.gamma, self.seed = eta, gamma, seed
        self._gen = torch.Generator()
        if seed is not None:
            self._gen.manual_seed(seed)
        else:
            self._gen.seed()

    def __getstate__(self) -> dict:
        # a torch.Generator does not pickle: keep its state instead
        state = dict(self.__dict__)
        state["_gen"] = self._gen.get_state()
        return state

    def __setstate__(self, state: dict) -> None:
        gen = torch.Generator()
        gen.set_state(state.pop("_gen"))
        self.__dict__.update(state)
        self._gen = gen

    def sigma(self, t: int) -> float:
        return math.sqrt(self.eta / (1 + (t - 1)) ** self.gamma)

    def update(self, u, state, p, info):
        noise = torch.randn(u.shape, generator=self._gen, dtype=u.dtype)
        return u + self.sigma(info.t) * noise.to(u.device), None


class LookaheadState(NamedTuple):
    slow: Tensor


class Lookahead(Transform):
    """Lookahead (Zhang, Lucas, Hinton & Ba 2019): every k steps pull back towards slow weights.

    The inner chain takes k "fast" steps; then φ ← φ + α·(θ − φ) and θ ← φ. Args: ``k`` (5),
    ``alpha`` α (0.5). A post transform: it acts on the weights after the update.
    """

    State = LookaheadState
    post = True

    def __init__(self, k: int = 5, alpha: float = 0.5):
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"Invalid k value: {k!r} (must be an integer >= 1)")
        check_range("alpha", alpha, 0.0, 1.0, hi_open=False)
        self.k, self.alpha = k, alpha

    def init(self, p):
        return LookaheadState(p.detach().clone())

    def update(self, u, s, p, info):
        if info.t % self.k != 0:
            return None, s
        slow = s.slow + self.alpha * (p - s.slow)
        p.copy_(slow)
        return None, LookaheadState(slow)
