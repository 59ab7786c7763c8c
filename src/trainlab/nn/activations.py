"""Activation functions, written out: each as a function and as a module.

Most activations here are ``torch.autograd.Function`` classes whose forward evaluates the formula
with tensor ops and whose backward is the derivative written by hand in as few fused elementwise
ops as possible (that is what keeps them near PyTorch's C++ kernels in speed). When a graph of
the gradient is requested (``create_graph=True``, e.g. Hessian-vector products) the backward
uses differentiable ops instead: in terms of the saved *output* where the derivative is a
function of it (σ' = y − y², tanh' = 1 − y², the softmax Jacobian), else by autograd through a
reference formula — so second derivatives are exact too. The rectifiers (ReLU, leaky, generalized,
PReLU) are selects — z > 0 ? z : α·z, with the derivative g or α·g — and their fast path is
torch's own rectifier kernels, which compute exactly these selects (bit-equal to the readable
forms, tested); a Python Function around the same kernels only adds per-call cost. Their readable
forms: y = z·s with the piecewise-constant slope s held constant, differentiated exactly by
autograd's product rule.

==============================  ==============================================================
function / module               formula (z is the pre-activation)
==============================  ==============================================================
:func:`sigmoid` / Sigmoid       σ(z) = 1 / (1 + e^(−z))
:func:`tanh` / Tanh             tanh(z) = (e^z − e^(−z)) / (e^z + e^(−z))
:func:`relu` / ReLU             max(0, z)
:func:`generalized_rectifier`   max(0, z) + α·min(0, z)   (notes 002: ReLU α=0, leaky α>0,
/ GeneralizedRectifier          PReLU α learned, absolute-value rectification α=−1)
:func:`leaky_relu` / LeakyReLU  the generalized rectifier with a small fixed α (PyTorch 0.01)
:func:`prelu` / PReLU           the generalized rectifier with a learned α (shared or per unit)
:func:`elu` / ELU               z if z > 0 else α·(e^z − 1)
:func:`selu` / SELU             λ·elu(z, α), λ ≈ 1.0507, α ≈ 1.6733 (Klambauer et al. 2017)
:func:`gelu` / GELU             z·Φ(z)  (or the tanh approximation)
:func:`silu` / SiLU             z·σ(z)  (a.k.a. swish)
:func:`softmax` / Softmax       e^(z_k − max z) / Σ_j e^(z_j − max z)
:func:`log_softmax`             z_k − max z − log Σ_j e^(z_j − max z)
==============================  ==============================================================

Values and gradients match ``torch.nn.functional`` (tests compare them); the derivative at a
kink (z = 0) follows PyTorch's choice, stated in each docstring.

Each activation also has its *readable form* (``_<name>_readable``): the formula above in tensor
ops, differentiated by autograd. The Functions are the fast path used by default;
``trainlab.nn.set_fast_layers(False)`` (or ``with trainlab.nn.readable_layers():``) switches every
layer to its readable form, and the tests prove the two agree (see :mod:`trainlab.nn.fastpath`).
On the CPU the fast paths of softmax, log-softmax and ELU/SELU call fused C kernels with an
exponential of their own (:mod:`trainlab.nn.native_softmax`) for contiguous float32/float64
tensors along the last dimension; the backwards of tanh, sigmoid, SiLU and GELU are one C pass each,
and so are GELU's forwards (with an erf and a tanh of the kernels' own; tanh's and σ's values
stay torch's);
other inputs keep the torch-op path.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from trainlab.nn.fastpath import SWITCH as _SWITCH
from trainlab.nn.fastpath import function_apply
from trainlab.nn import native_softmax as _native

__all__ = [
    "sigmoid", "tanh", "relu", "generalized_rectifier", "leaky_relu", "prelu", "elu", "selu", "gelu",
    "silu", "softmax", "log_softmax",
    "Sigmoid", "Tanh", "ReLU", "GeneralizedRectifier", "LeakyReLU", "PReLU", "ELU", "SELU", "GELU",
    "SiLU", "Softmax", "LogSoftmax", "SELU_ALPHA", "SELU_SCALE",
]

# Klambauer et al. (2017), eq. 14: the fixed point (mean 0, variance 1) of the SELU network map.
SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946

_SQRT_2 = math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)


def _autograd_backward(reference, inputs: tuple, grad: Tensor) -> tuple:
    """Gradients of ``reference(*inputs)`` by autograd, keeping their graph.

    Used when the caller asked for a differentiable gradient (``create_graph=True``): the
    hand-written backward works on tensors saved without history, so second derivatives
    go through the readable formula instead.
    """
    wanted = [x for x in inputs if isinstance(x, Tensor) and x.requires_grad]
    out = reference(*inputs)
    grads = iter(torch.autograd.grad(out, wanted, grad, create_graph=True, allow_unused=True))
    return tuple(next(grads) if isinstance(x, Tensor) and x.requires_grad else None for x in inputs)


def _positive(z: Tensor) -> Tensor:
    """The indicator [z > 0] as a float tensor (0 at z = 0, PyTorch's choice at the kink)."""
    # sign(max(z, 0)) ∈ {0, 1}: two fast float kernels, where a bool mask and a cast are slower
    return z.clamp_min(0).sign_()


# --------------------------------------------------------------------------------------------
# sigmoid and tanh: their derivatives are functions of the output y alone
# --------------------------------------------------------------------------------------------
def _sigmoid_readable(z: Tensor) -> Tensor:
    # 1/(1 + e^(−z)) as written, but with e = e^(−|z|) ≤ 1: autograd through e^(−z) = inf for
    # z ≪ 0 would multiply 0·inf = NaN, so the negative side uses the equal form e^z/(1 + e^z).
    # −|z| is spelled with where: abs' is 0 at z = 0, which would give σ'(0) = 0
    e = torch.exp(torch.where(z >= 0, -z, z))
    return torch.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


class _Sigmoid(torch.autograd.Function):
    @staticmethod
    def forward(ctx, z):
        # the value is torch.sigmoid's, an elementary function evaluated in one kernel (like exp
        # or tanh; 1/(1 + e^(−z)) in four ops agrees with it to 1 ulp); what we own is σ' below
        y = torch.sigmoid(z)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved_tensors
        if torch.is_grad_enabled():  # a graph of the gradient is wanted: y carries it (see module doc)
            return g * (y - y * y)
        if _native.elementwise_usable(y):  # the same arithmetic in one C pass (trainlab.nn.native_softmax)
            return _native.sigmoid_backward(y, g)
        return torch.addcmul(y, y, y, value=-1.0).mul_(g)  # σ'(z) = σ(z)(1 − σ(z)) = y − y²


def sigmoid(z: Tensor) -> Tensor:
    """Logistic sigmoid σ(z) = 1 / (1 + e^(−z)), with σ'(z) = σ(z)(1 − σ(z)).

    Saturates for |z| ≫ 0 (σ' ≤ 1/4 everywhere), which is why deep sigmoid stacks show vanishing
    gradients (notes 004). Matches ``torch.sigmoid``.
    """
    return _sigmoid(z) if _SWITCH.fast else _sigmoid_readable(z)


class _Tanh(torch.autograd.Function):
    @staticmethod
    def forward(ctx, z):
        # tanh is an elementary function like exp: the identities 2σ(2z) − 1 or
        # (e^(2z) − 1)/(e^(2z) + 1) lose relative precision near 0 or overflow, so it is
        # evaluated directly; what we own is its derivative below.
        y = torch.tanh(z)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved_tensors
        if torch.is_grad_enabled():
            return g * (1.0 - y * y)
        if _native.elementwise_usable(y):  # one C pass
            return _native.tanh_backward(y, g)
        return torch.addcmul(g, g * y, y, value=-1.0)  # tanh'(z) = 1 − tanh²(z): g − g·y·y


def tanh(z: Tensor) -> Tensor:
    """Hyperbolic tangent, zero-centred, with tanh'(z) = 1 − tanh²(z) ≤ 1.

    Note: the value comes from ``torch.tanh`` (an elementary function); the backward is ours.
    """
    return _tanh(z) if _SWITCH.fast else torch.tanh(z)


# --------------------------------------------------------------------------------------------
# the rectifier family: max(0, z) + α·min(0, z)
# --------------------------------------------------------------------------------------------
def _relu_readable(z: Tensor) -> Tensor:
    return z * (z > 0)  # the mask [z > 0] is 0 at z = 0, PyTorch's derivative at the kink


def _relu_fast(z: Tensor) -> Tensor:
    # The fast path of the rectifiers is torch's own rectifier kernels: the formula is a select
    # (max(0, z), z > 0 ? z : α·z) and its derivative another (g where z > 0, else α·g), which
    # torch's kernels compute exactly (bit-equal to the readable forms, tested). A Python
    # autograd.Function around the same two kernels (clamp_min and threshold_backward) costs
    # ~7 µs per call more, which at small sizes is more than the kernels themselves.
    return torch.relu(z)


def relu(z: Tensor) -> Tensor:
    """Rectified linear unit max(0, z); derivative [z > 0] (0 at z = 0, as PyTorch).

    Its gradient is 1 on the active side, so it does not saturate there; units whose
    pre-activation is negative for every input get no gradient at all ("dying ReLU", notes 004).
    """
    return _relu_fast(z) if _SWITCH.fast else _relu_readable(z)


def _fixed_slope_rectifier(z: Tensor, alpha: float) -> Tensor:
    # y = z·s with the slope s = 1 for z > 0 and α for z ≤ 0 held constant: autograd's product
    # rule then gives exactly s as the derivative (and 0 as the second), in one C++ multiply
    if _SWITCH.fast:  # torch's leaky_relu kernels: z > 0 ? z : α·z, and g or α·g (see _relu_fast)
        return torch.relu(z) if alpha == 0.0 else torch.nn.functional.leaky_relu(z, alpha)
    if alpha == 0.0:
        return _relu_readable(z)
    if 0.0 < alpha < 1.0:  # sign(z) ∈ {−1, 0, 1} clamped to [α, 1] is 1 for z > 0 and α for z ≤ 0
        slope = z.detach().sign().clamp_(alpha, 1.0)
    else:
        positive = _positive(z.detach())
        slope = torch.add(positive, 1.0 - positive, alpha=alpha)  # exactly 1 or α, no rounding
    return z * slope


def _prelu_readable(z: Tensor, alpha: Tensor, channel_dim: int) -> Tensor:
    # z for z > 0, a·z otherwise: the derivative a at z = 0 (PyTorch's choice), min(0, z) for a
    return torch.where(z > 0, z, _broadcast_slope(alpha, z, channel_dim) * z)


class _PReLU(torch.autograd.Function):
    """max(0, z) + a·min(0, z) with learned slopes ``a`` (one, or one per channel)."""

    @staticmethod
    def forward(ctx, z, alpha, channel_dim):
        a = _broadcast_slope(alpha, z, channel_dim)
        negative = z.clamp_max(0)
        y = torch.addcmul(z.clamp_min(0), negative, a)
        ctx.save_for_backward(z, alpha, negative)
        ctx.channel_dim = channel_dim
        return y

    @staticmethod
    def backward(ctx, g):
        z, alpha, negative = ctx.saved_tensors
        if torch.is_grad_enabled():
            ref = lambda z_, a_: z_.clamp_min(0) + _broadcast_slope(a_, z_, ctx.channel_dim) * z_.clamp_max(0)
            dz, da = _autograd_backward(ref, (z, alpha), g)
            return dz, da, None
        a = _broadcast_slope(alpha, z, ctx.channel_dim)
        dz = da = None
        if ctx.needs_input_grad[0]:
            # d/dz = 1 for z > 0, a otherwise (a at z = 0, as PyTorch): [z > 0] + a·(1 − [z > 0])
            positive = _positive(z)
            dz = torch.addcmul(positive, 1.0 - positive, a).mul_(g)
        if ctx.needs_input_grad[1]:
            # d/da = min(0, z), summed over every axis the slope is shared across
            da = _reduce_to_slope(g * negative, alpha, ctx.channel_dim)
        return dz, da, None


def _broadcast_slope(alpha: Tensor, z: Tensor, channel_dim: int) -> Tensor:
    if alpha.numel() == 1:
        return alpha.reshape(())
    shape = [1] * z.dim()
    shape[channel_dim] = alpha.numel()
    return alpha.view(shape)


def _reduce_to_slope(grad: Tensor, alpha: Tensor, channel_dim: int) -> Tensor:
    if alpha.numel() == 1:
        return grad.sum().reshape(alpha.shape)
    dims = [d for d in range(grad.dim()) if d != channel_dim]
    return grad.sum(dim=dims).reshape(alpha.shape)


def generalized_rectifier(z: Tensor, alpha: float | Tensor) -> Tensor:
    """The generalized rectifier of notes 002: h = max(0, z) + α·min(0, z).

    α = 0 is the ReLU, a small α > 0 the leaky ReLU, a learned α the PReLU, and α = −1 the
    absolute-value rectifier |z| (Jarrett et al. 2009). The derivative is 1 for z > 0 and α for
    z ≤ 0 (α at the kink, as ``torch.nn.functional.leaky_relu``); with respect to α it is min(0, z).

    Args:
        z: pre-activations.
        alpha: the slope for negative inputs: a number, or a tensor broadcastable to ``z``
            along dimension 1 (one slope per channel) or with one element (shared).
    """
    if isinstance(alpha, Tensor):
        return _learned_slope_rectifier(z, alpha)
    return _fixed_slope_rectifier(z, float(alpha))


def leaky_relu(z: Tensor, negative_slope: float = 0.01) -> Tensor:
    """Leaky ReLU max(0, z) + α·min(0, z) with a fixed slope α = ``negative_slope``.

    Defaults: PyTorch α = 0.01 (ours); Keras ``LeakyReLU`` uses 0.3 and notes 004 draw
    max(0.1z, z). Matches ``torch.nn.functional.leaky_relu``, including the gradient α at z = 0.
    """
    return _fixed_slope_rectifier(z, float(negative_slope))


def prelu(z: Tensor, weight: Tensor) -> Tensor:
    """Parametric ReLU (He et al. 2015): max(0, z) + a·min(0, z) with a learned slope ``weight``.

    ``weight`` has one element (one slope shared by all units) or one per channel (dimension 1
    of ``z``; for a 1-D input, dimension 0), as ``torch.nn.functional.prelu``.
    """
    if weight.numel() != 1:
        channels = z.shape[1] if z.dim() > 1 else z.shape[0]
        if weight.numel() != channels:
            raise ValueError(f"prelu has {weight.numel()} slopes but the input has {channels} channels "
                             "(dimension 1); use one slope or one per channel")
    return _learned_slope_rectifier(z, weight)


def _learned_slope_rectifier(z: Tensor, alpha: Tensor) -> Tensor:
    if not _SWITCH.fast:
        return _prelu_readable(z, alpha, 1 if z.dim() > 1 else 0)
    if alpha.numel() == 1 or z.dim() > 1:  # the layouts torch's prelu kernels take (see _relu_fast)
        return torch.prelu(z, alpha)
    return _prelu(z, alpha, 0)  # a 1-D input with one slope per element: our Function


# --------------------------------------------------------------------------------------------
# ELU and SELU
# --------------------------------------------------------------------------------------------
def _elu_readable(z: Tensor, alpha: float, scale: float) -> Tensor:
    # e^z − 1 is evaluated at min(z, 0): the branch not taken must not overflow, or autograd
    # would multiply its zero gradient by e^z = inf
    return scale * torch.where(z > 0, z, alpha * torch.expm1(z.clamp_max(0)))


class _ELU(torch.autograd.Function):
    """scale·(z if z > 0 else α(e^z − 1)): ELU with scale 1, SELU with λ."""

    @staticmethod
    def forward(ctx, z, alpha, scale):
        ctx.alpha, ctx.scale = alpha, scale
        ctx.native = _native.elementwise_usable(z)
        if ctx.native:  # one fused C pass (trainlab.nn.native_softmax); the backward needs y only
            y = _native.elu_forward(z, alpha, scale)
            ctx.save_for_backward(y)
            return y
        negative = torch.expm1(z.clamp_max(0)).mul_(scale * alpha)   # λα(e^z − 1) for z ≤ 0, 0 above
        y = torch.add(negative, z.clamp_min(0), alpha=scale)
        ctx.save_for_backward(y, negative)
        return y

    @staticmethod
    def backward(ctx, g):
        y, *rest = ctx.saved_tensors
        la, lam = ctx.alpha * ctx.scale, ctx.scale
        if torch.is_grad_enabled():  # in terms of the output: λαe^z = y + λα for z ≤ 0 (y ≤ 0 there)
            return torch.where(y > 0, lam, y + la) * g, None, None
        if ctx.native:  # dz = g·(λ if y > 0 else y + λα), one pass
            return _native.elu_backward(y, g, ctx.alpha, ctx.scale), None, None
        (negative,) = rest
        # d/dz λα(e^z − 1) = λαe^z = negative + λα for z ≤ 0; λ for z > 0 (where negative = 0)
        slope = negative + la
        if la != lam:  # add (λ − λα) on the positive side; with α = 1 the two sides already agree
            slope.add_(_positive(y), alpha=lam - la)
        return slope.mul_(g), None, None


def elu(z: Tensor, alpha: float = 1.0) -> Tensor:
    """Exponential linear unit (Clevert et al. 2016): z for z > 0, α·(e^z − 1) for z ≤ 0.

    Smooth for α = 1, saturating to −α for z → −∞, gradient never exactly 0 (notes 002/004).
    Default α = 1.0 (PyTorch and Keras). Matches ``torch.nn.functional.elu`` (gradient α at z = 0).
    """
    return (_elu if _SWITCH.fast else _elu_readable)(z, float(alpha), 1.0)


def selu(z: Tensor) -> Tensor:
    """Scaled ELU (Klambauer et al. 2017): λ·(z if z > 0 else α(e^z − 1)).

    λ = 1.0507009873554805, α = 1.6732632423543772 make mean 0 / variance 1 a stable fixed point
    of a wide layer with LeCun-normal weights (std 1/√fan_in). Matches ``torch.selu``.
    """
    return (_elu if _SWITCH.fast else _elu_readable)(z, SELU_ALPHA, SELU_SCALE)


# --------------------------------------------------------------------------------------------
# GELU and SiLU: their derivatives need intermediates (Φ, σ), so a gradient graph goes through
# the reference formula
# --------------------------------------------------------------------------------------------
def _gelu_reference(z: Tensor, approximate: str) -> Tensor:
    if approximate == "tanh":
        return 0.5 * z * (1.0 + torch.tanh(_SQRT_2_OVER_PI * (z + 0.044715 * z ** 3)))
    return 0.5 * z * (1.0 + torch.erf(z / _SQRT_2))


class _GELU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, z, approximate):
        ctx.approximate = approximate
        # one C pass each way (trainlab.nn.native_softmax), with the kernels' erf and tanh; the
        # backward reads z and Φ(z) (or t)
        ctx.native = _native.elementwise_usable(z)
        if ctx.native:
            y, saved = (_native.gelu_tanh_forward if approximate == "tanh" else _native.gelu_forward)(z)
            ctx.save_for_backward(z, saved)
        elif approximate == "tanh":
            inner = (z * z * z).mul_(0.044715).add_(z).mul_(_SQRT_2_OVER_PI)  # √(2/π)(z + 0.044715z³)
            t = inner.tanh_()
            y = (t + 1.0).mul_(z).mul_(0.5)
            ctx.save_for_backward(z, t)
        else:
            cdf = torch.mul(z, 1.0 / _SQRT_2).erf_().add_(1.0).mul_(0.5)   # Φ(z) = ½(1 + erf(z/√2))
            y = z * cdf
            ctx.save_for_backward(z, cdf)
        return y

    @staticmethod
    def backward(ctx, g):
        z, saved = ctx.saved_tensors
        if torch.is_grad_enabled():
            dz, = _autograd_backward(lambda z_: _gelu_reference(z_, ctx.approximate), (z,), g)
            return dz, None
        if ctx.native:  # the formulas below in one C pass each (trainlab.nn.native_softmax)
            backward = _native.gelu_tanh_backward if ctx.approximate == "tanh" else _native.gelu_backward
            return backward(z, saved, g), None
        if ctx.approximate == "tanh":
            t = saved
            # d/dz ½z(1 + t) = ½(1 + t) + ½z·(1 − t²)·√(2/π)(1 + 3·0.044715·z²)
            d_inner = (z * z).mul_(3 * 0.044715).add_(1.0).mul_(_SQRT_2_OVER_PI)
            slope = (1.0 - t * t).mul_(0.5 * z).mul_(d_inner).add_((t + 1.0).mul_(0.5))
        else:
            cdf = saved
            # d/dz zΦ(z) = Φ(z) + z·φ(z), φ(z) = e^(−z²/2)/√(2π)
            slope = torch.addcmul(cdf, torch.square(z).mul_(-0.5).exp_(), z, value=_INV_SQRT_2PI)
        return slope.mul_(g), None


def gelu(z: Tensor, approximate: str = "none") -> Tensor:
    """Gaussian error linear unit (Hendrycks & Gimpel 2016): z·Φ(z), Φ the standard normal CDF.

    Args:
        approximate: ``"none"`` (exact, via erf; PyTorch's default) or ``"tanh"``:
            ½z(1 + tanh(√(2/π)(z + 0.044715z³))). Keras' ``gelu`` defaults to the exact form
            too (``approximate=False``). Matches ``torch.nn.functional.gelu``.
    """
    if approximate not in ("none", "tanh"):
        raise ValueError(f"approximate must be 'none' or 'tanh', got {approximate!r}")
    return _gelu(z, approximate) if _SWITCH.fast else _gelu_reference(z, approximate)


def _silu_reference(z: Tensor) -> Tensor:
    return z * _sigmoid_readable(z)


class _SiLU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, z):
        s = torch.sigmoid(z)  # σ(z), see _Sigmoid
        y = z * s
        ctx.save_for_backward(z, s, y)
        ctx.native = _native.elementwise_usable(z)  # then s and y are contiguous too
        return y

    @staticmethod
    def backward(ctx, g):
        z, s, y = ctx.saved_tensors
        if torch.is_grad_enabled():
            return _autograd_backward(_silu_reference, (z,), g)
        if ctx.native:  # the formula below in one C pass (trainlab.nn.native_softmax)
            return _native.silu_backward(s, y, g)
        # d/dz zσ(z) = σ(z)(1 + z(1 − σ(z))) = (y − y·σ) + σ: y − y·σ first, which is exactly 0 where
        # σ = 1 (large z), while (σ + y) − y·σ would lose σ to the rounding of a large y
        return torch.addcmul(y, y, s, value=-1.0).add_(s).mul_(g)


def silu(z: Tensor) -> Tensor:
    """Sigmoid-weighted linear unit z·σ(z) (Elfwing et al. 2018; "swish" with β = 1).

    Derivative σ(z)(1 + z(1 − σ(z))). Matches ``torch.nn.functional.silu``.
    """
    return _silu(z) if _SWITCH.fast else _silu_reference(z)


# --------------------------------------------------------------------------------------------
# softmax and log-softmax: derivatives in terms of the output
# --------------------------------------------------------------------------------------------
def _softmax_readable(z: Tensor, dim: int) -> Tensor:
    # the shift by max z is detached: softmax(z − c) = softmax(z) for every c, so it has no
    # gradient, and autograd need not route rounding noise through the argmax
    e = torch.exp(z - z.amax(dim, keepdim=True).detach())
    return e / e.sum(dim, keepdim=True)


def _log_softmax_readable(z: Tensor, dim: int) -> Tensor:
    shifted = z - z.amax(dim, keepdim=True).detach()
    return shifted - torch.log(torch.exp(shifted).sum(dim, keepdim=True))


class _Softmax(torch.autograd.Function):
    @staticmethod
    def forward(ctx, z, dim):
        ctx.dim = dim
        ctx.native = _native.rows_usable(z, dim)
        if ctx.native:  # the same formula in one C call per tensor (trainlab.nn.native_softmax)
            y = _native.softmax_forward(z)
            ctx.save_for_backward(y)
            return y
        # softmax(z) = softmax(z − c) for any c; c = max z makes every exponent ≤ 0 (no overflow)
        e = (z - z.amax(dim, keepdim=True)).exp_()
        # e·(1/Σe): one reciprocal per row and a multiply, where a division broadcast along the
        # rows is ~2× slower here; two roundings instead of one (≤ 1.5 ulp)
        y = e.mul_(e.sum(dim, keepdim=True).reciprocal_())
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved_tensors
        # Jacobian diag(y) − y yᵀ: dz = y ⊙ g − y·⟨g, y⟩
        if ctx.native and not torch.is_grad_enabled():
            return _native.softmax_backward(y, g), None
        gy = g * y
        if torch.is_grad_enabled():
            return gy - y * gy.sum(ctx.dim, keepdim=True), None
        return torch.addcmul(gy, y, gy.sum(ctx.dim, keepdim=True), value=-1.0), None


class _LogSoftmax(torch.autograd.Function):
    @staticmethod
    def forward(ctx, z, dim):
        ctx.dim = dim
        ctx.native = _native.rows_usable(z, dim)
        if ctx.native:  # one C call; its backward recomputes softmax(z) = e^y with its own (fast) exp
            y = _native.log_softmax_forward(z)
            ctx.save_for_backward(y)
            return y
        shifted = z - z.amax(dim, keepdim=True)
        e = shifted.exp()
        total = e.sum(dim, keepdim=True)
        y = shifted.sub_(total.log())
        # softmax(z) = e/Σe: keeping e and Σe saves the backward an exp over the whole tensor
        ctx.save_for_backward(y, e, total)
        return y

    @staticmethod
    def backward(ctx, g):
        y, *rest = ctx.saved_tensors
        # Jacobian I − 1·softmaxᵀ: dz = g − softmax(z)·Σg, softmax(z) = e^y = e/Σe
        if torch.is_grad_enabled():  # y carries the graph (e and Σe are intermediates without one)
            return g - y.exp() * g.sum(ctx.dim, keepdim=True), None
        if ctx.native:
            return _native.log_softmax_backward(y, g), None
        e, total = rest
        return torch.addcmul(g, e, g.sum(ctx.dim, keepdim=True).div_(total), value=-1.0), None


def softmax(z: Tensor, dim: int = -1) -> Tensor:
    """Numerically stable softmax along ``dim``: e^(z_k − m) / Σ_j e^(z_j − m), m = max_j z_j.

    Shifting by the maximum changes nothing mathematically and keeps every exponent ≤ 0.
    Matches ``torch.softmax``. Note: trainlab's models output logits and the losses apply the
    softmax inside a log-sum-exp; use this for probabilities, not before a log.
    """
    return (_softmax if _SWITCH.fast else _softmax_readable)(z, dim)


def log_softmax(z: Tensor, dim: int = -1) -> Tensor:
    """Numerically stable log-softmax: z_k − m − log Σ_j e^(z_j − m), m = max_j z_j.

    Never forms log(softmax(z)), which underflows to log 0 = −inf for very negative logits.
    Matches ``torch.log_softmax``.
    """
    return (_log_softmax if _SWITCH.fast else _log_softmax_readable)(z, dim)


# the fast paths' entry points (see trainlab.nn.fastpath.function_apply)
_sigmoid, _tanh, _prelu, _elu, _gelu, _silu, _softmax, _log_softmax = map(function_apply, (
    _Sigmoid, _Tanh, _PReLU, _ELU, _GELU, _SiLU, _Softmax, _LogSoftmax))


# --------------------------------------------------------------------------------------------
# modules
# --------------------------------------------------------------------------------------------
class Sigmoid(nn.Module):
    """σ(z) = 1 / (1 + e^(−z)) as a module (see :func:`sigmoid`)."""

    def forward(self, z: Tensor) -> Tensor:
        return _sigmoid(z) if _SWITCH.fast else _sigmoid_readable(z)


class Tanh(nn.Module):
    """tanh(z) as a module (see :func:`tanh`)."""

    def forward(self, z: Tensor) -> Tensor:
        return _tanh(z) if _SWITCH.fast else torch.tanh(z)


class ReLU(nn.Module):
    """max(0, z) as a module (see :func:`relu`). Unlike ``torch.nn.ReLU`` there is no ``inplace``."""

    def forward(self, z: Tensor) -> Tensor:
        return _relu_fast(z) if _SWITCH.fast else _relu_readable(z)


class GeneralizedRectifier(nn.Module):
    """max(0, z) + α·min(0, z) with a fixed α of any sign (see :func:`generalized_rectifier`).

    Args:
        alpha: slope for z ≤ 0 (no default: 0 is ReLU, 0.01 leaky, −1 absolute value).
    """

    def __init__(self, alpha: float):
        super().__init__()
        if not isinstance(alpha, (int, float)) or not math.isfinite(alpha):
            raise ValueError(f"alpha must be a finite number, got {alpha!r}")
        self.alpha = float(alpha)

    def forward(self, z: Tensor) -> Tensor:
        return _fixed_slope_rectifier(z, self.alpha)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}"


class LeakyReLU(GeneralizedRectifier):
    """Leaky ReLU with fixed slope ``negative_slope`` for z ≤ 0 (see :func:`leaky_relu`).

    Args:
        negative_slope: α ≥ 0; default 0.01 as PyTorch (Keras 0.3, notes 004 draw 0.1).
    """

    def __init__(self, negative_slope: float = 0.01):
        if not isinstance(negative_slope, (int, float)) or not 0.0 <= negative_slope < 1.0:
            raise ValueError(f"negative_slope must lie in [0, 1) for a leaky ReLU, got {negative_slope!r}; "
                             "use GeneralizedRectifier for other slopes")
        super().__init__(negative_slope)

    @property
    def negative_slope(self) -> float:
        return self.alpha

    def extra_repr(self) -> str:
        return f"negative_slope={self.alpha}"


class PReLU(nn.Module):
    """Parametric ReLU (He et al. 2015): max(0, z) + a·min(0, z) with learned slope(s) ``weight``.

    Args:
        num_parameters: 1 (one slope shared by every unit, PyTorch's default) or the number of
            units/channels (one slope per unit, along dimension 1 of the input).
        init: initial slope, default 0.25 as PyTorch and He et al.

    Note: Keras' ``PReLU`` starts the slopes at 0 (a ReLU) and keeps one per unit by default.
    The slope is a parameter, so weight decay applies to it unless excluded; He et al. do not
    decay it.
    """

    def __init__(self, num_parameters: int = 1, init: float = 0.25):
        super().__init__()
        if not isinstance(num_parameters, int) or num_parameters < 1:
            raise ValueError(f"num_parameters must be a positive integer, got {num_parameters!r}")
        self.num_parameters = num_parameters
        self.init = float(init)
        self.weight = nn.Parameter(torch.full((num_parameters,), self.init))

    def reset_parameters(self) -> None:
        with torch.no_grad():
            self.weight.fill_(self.init)

    def forward(self, z: Tensor) -> Tensor:
        return prelu(z, self.weight)

    def extra_repr(self) -> str:
        return f"num_parameters={self.num_parameters}, init={self.init}"


class ELU(nn.Module):
    """z for z > 0, α(e^z − 1) otherwise (see :func:`elu`). Default α = 1.0."""

    def __init__(self, alpha: float = 1.0):
        super().__init__()
        if not isinstance(alpha, (int, float)) or not alpha >= 0:
            raise ValueError(f"alpha must be a non-negative number, got {alpha!r}")
        self.alpha = float(alpha)

    def forward(self, z: Tensor) -> Tensor:
        return (_elu if _SWITCH.fast else _elu_readable)(z, self.alpha, 1.0)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}"


class SELU(nn.Module):
    """λ·elu(z, α) with the self-normalizing constants (see :func:`selu`)."""

    alpha = SELU_ALPHA
    scale = SELU_SCALE

    def forward(self, z: Tensor) -> Tensor:
        return (_elu if _SWITCH.fast else _elu_readable)(z, SELU_ALPHA, SELU_SCALE)


class GELU(nn.Module):
    """z·Φ(z) (see :func:`gelu`). ``approximate``: ``"none"`` (default) or ``"tanh"``."""

    def __init__(self, approximate: str = "none"):
        super().__init__()
        if approximate not in ("none", "tanh"):
            raise ValueError(f"approximate must be 'none' or 'tanh', got {approximate!r}")
        self.approximate = approximate

    def forward(self, z: Tensor) -> Tensor:
        return _gelu(z, self.approximate) if _SWITCH.fast else _gelu_reference(z, self.approximate)

    def extra_repr(self) -> str:
        return f"approximate={self.approximate!r}"


class SiLU(nn.Module):
    """z·σ(z) (see :func:`silu`)."""

    def forward(self, z: Tensor) -> Tensor:
        return _silu(z) if _SWITCH.fast else _silu_reference(z)


class Softmax(nn.Module):
    """Stable softmax along ``dim`` (default −1; see :func:`softmax`)."""

    def __init__(self, dim: int = -1):
        super().__init__()
        self.dim = dim

    def forward(self, z: Tensor) -> Tensor:
        return (_softmax if _SWITCH.fast else _softmax_readable)(z, self.dim)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


class LogSoftmax(Softmax):
    """Stable log-softmax along ``dim`` (default −1; see :func:`log_softmax`)."""

    def forward(self, z: Tensor) -> Tensor:
        return (_log_softmax if _SWITCH.fast else _log_softmax_readable)(z, self.dim)
