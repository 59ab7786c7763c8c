"""Weight and bias initialization: the schemes of the notes, PyTorch and Keras, and ``init_model``.

Every initializer works in place on a tensor and ends in ``_``; where PyTorch has the same scheme
the signature is PyTorch's (``torch.nn.init``), and all accept a ``torch.Generator``. For a
weight of shape (out, in, *kernel), fan_in = in·∏kernel and fan_out = out·∏kernel.

=======================  ========================================  =============================
initializer              distribution                              reference
=======================  ========================================  =============================
uniform_fan_in_          U(−1/√fan_in, 1/√fan_in)                  notes 002; PyTorch's Linear
uniform_inverse_fan_in_  U(−1/fan_in, 1/fan_in)                    notes 002 ("common heuristic")
xavier_normal_           N(0, gain²·2/(fan_in + fan_out))          Glorot & Bengio 2010
xavier_uniform_          U(±gain·√(6/(fan_in + fan_out)))          Glorot & Bengio 2010
he_normal_               N(0, gain²/fan)                           He et al. 2015
he_uniform_              U(±gain·√(3/fan))                         He et al. 2015
lecun_normal_            N(0, 1/fan_in)                            LeCun et al. 1998; SELU nets
lecun_uniform_           U(±√(3/fan_in))                           LeCun et al. 1998
orthogonal_              gain·Q, Q from the QR of a Gaussian       Saxe et al. 2014
sparse_                  k non-zero N(0, std²) inputs per unit     Martens 2010
identity_                I (2-D) or a Dirac kernel                 Le et al. 2015 (IRNN)
variance_scaling_        Keras' general form                       Keras
=======================  ========================================  =============================

The *_normal_ schemes take ``truncated=True`` for Keras' variant: a normal truncated at ±2σ'
with σ' = σ/0.8796… so that the truncated distribution still has standard deviation σ.

Bias rules (:func:`bias_zeros_`, :func:`bias_constant_` — 0.01 for ReLU units, the notes' fix for
dying ReLUs —, :func:`bias_prior_` — output bias log p from class priors —,
:func:`forget_gate_bias_`) and :func:`lsuv_` (Mishkin & Matas 2015) complete the set;
:func:`init_model` applies a weight scheme and a bias rule to every layer, with ``"auto"`` choosing
the scheme from each layer's activation.
"""
from __future__ import annotations

import functools
import inspect
import math
from typing import Callable, Mapping, Sequence

import torch
from torch import Tensor, nn

__all__ = [
    "calculate_fan_in_and_fan_out", "calculate_gain",
    "zeros_", "ones_", "constant_", "normal_", "uniform_", "trunc_normal_",
    "uniform_fan_in_", "uniform_inverse_fan_in_",
    "xavier_normal_", "xavier_uniform_", "glorot_normal_", "glorot_uniform_",
    "he_normal_", "he_uniform_", "kaiming_normal_", "kaiming_uniform_",
    "lecun_normal_", "lecun_uniform_", "variance_scaling_",
    "orthogonal_", "sparse_", "identity_", "auto_",
    "bias_zeros_", "bias_constant_", "bias_relu_", "bias_prior_", "class_priors", "forget_gate_bias_",
    "lsuv_", "init_model", "layer_activations", "WEIGHT_SCHEMES", "BIAS_RULES",
]

# standard deviation of N(0, 1) truncated to [−2, 2]; Keras divides by it (VarianceScaling)
_TRUNCATED_STD = 0.87962566103423978


# --------------------------------------------------------------------------------------------
# fans and gains
# --------------------------------------------------------------------------------------------
def calculate_fan_in_and_fan_out(tensor: Tensor) -> tuple[int, int]:
    """(fan_in, fan_out) of a weight of shape (out, in, *kernel): (in·∏kernel, out·∏kernel).

    As PyTorch's private ``_calculate_fan_in_and_fan_out``; a tensor with fewer than two
    dimensions has no fans (a clear error).
    """
    if tensor.dim() < 2:
        raise ValueError(f"fan in and fan out need a weight with at least 2 dimensions (out, in, ...), got shape "
                         f"{tuple(tensor.shape)}; initialize biases with a bias rule or constant_")
    receptive = math.prod(tensor.shape[2:]) if tensor.dim() > 2 else 1
    return tensor.shape[1] * receptive, tensor.shape[0] * receptive


def _fan(tensor: Tensor, mode: str) -> int:
    fan_in, fan_out = calculate_fan_in_and_fan_out(tensor)
    if mode == "fan_in":
        return fan_in
    if mode == "fan_out":
        return fan_out
    if mode == "fan_avg":
        return (fan_in + fan_out) / 2
    raise ValueError(f"mode must be 'fan_in', 'fan_out' or 'fan_avg', got {mode!r}")


@functools.lru_cache(maxsize=None)
def _second_moment_gain(name: str, param: float | None) -> float:
    """gain = 1/√E[f(z)²] for z ~ N(0, 1), by the trapezoid rule on a fine grid (float64).

    This is He et al.'s forward argument: with Var(w) = gain²/fan_in, a layer keeps
    E[z_next²] = fan_in·Var(w)·E[f(z)²] = 1. It gives √2 for ReLU and √(2/(1+α²)) for
    leaky ReLU exactly, so it extends :func:`calculate_gain` to activations PyTorch has no
    gain for.
    """
    from trainlab.nn import activations as A

    z = torch.linspace(-14.0, 14.0, 280_001, dtype=torch.float64)
    density = torch.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)
    if name == "maxout":  # the max of k iid N(0,1): density k·φ(z)·Φ(z)^(k−1); E[max²] = ∫ z²·that
        k = int(param or 2)
        cdf = 0.5 * (1 + torch.erf(z / math.sqrt(2)))
        second = torch.trapezoid(z * z * k * density * cdf ** (k - 1), z)
        return float(1.0 / torch.sqrt(second))
    f = {"elu": lambda t: A.elu(t, 1.0 if param is None else param), "gelu": A.gelu,
         "gelu_tanh": lambda t: A.gelu(t, "tanh"), "silu": A.silu}[name]
    second = torch.trapezoid(f(z) ** 2 * density, z)
    return float(1.0 / torch.sqrt(second))


def calculate_gain(nonlinearity: str, param: float | None = None) -> float:
    """The recommended scale factor ("gain") for weights feeding a given nonlinearity.

    ==================================  ==========================================================
    nonlinearity                        gain
    ==================================  ==========================================================
    linear, identity, conv*, sigmoid,   1
    softmax
    tanh                                5/3 (PyTorch's value)
    relu                                √2
    leaky_relu, prelu, rectifier        √(2/(1 + α²)); α = ``param`` (default 0.01 for leaky_relu,
                                        0.25 for prelu, 0 for rectifier)
    selu                                3/4 (PyTorch's value, see the note)
    elu, gelu, gelu_tanh, silu          1/√E[f(z)²], z ~ N(0,1) (He's forward argument), computed
                                        numerically: elu (α = 1) ≈ 1.2452, gelu ≈ 1.5335,
                                        silu ≈ 1.6765
    maxout                              1/√E[max(z_1..z_k)²], k = ``param`` (default 2: exactly 1)
    ==================================  ==========================================================

    Note: SELU's own theory (Klambauer et al. 2017) wants gain 1 with fan_in (LeCun normal);
    PyTorch returns 3/4, which it chose to keep the gradients steadier in practice. We follow
    PyTorch here and :func:`auto_` uses LeCun normal for SELU. The √2 of ReLU and the leaky
    formula are the same second-moment argument we use for ELU/GELU/SiLU; tanh's 5/3 and
    sigmoid's 1 are PyTorch's conventions, not that argument.
    """
    name = nonlinearity
    if name in ("linear", "identity", "sigmoid", "softmax", "log_softmax", "conv1d", "conv2d", "conv3d",
                "conv_transpose1d", "conv_transpose2d", "conv_transpose3d"):
        return 1.0
    if name == "tanh":
        return 5.0 / 3
    if name == "relu":
        return math.sqrt(2.0)
    if name in ("leaky_relu", "prelu", "rectifier", "generalized_rectifier"):
        default = {"leaky_relu": 0.01, "prelu": 0.25}.get(name, 0.0)
        slope = default if param is None else param
        if isinstance(slope, bool) or not isinstance(slope, (int, float)):
            raise ValueError(f"negative slope {param!r} is not a valid number")
        return math.sqrt(2.0 / (1 + slope ** 2))
    if name == "selu":
        return 3.0 / 4
    if name in ("elu", "gelu", "gelu_tanh", "silu", "maxout"):
        return _second_moment_gain(name, None if param is None else float(param))
    raise ValueError(f"unsupported nonlinearity {nonlinearity!r}; known: linear, sigmoid, tanh, relu, leaky_relu, "
                     "prelu, rectifier, elu, selu, gelu, gelu_tanh, silu, softmax, maxout")


# --------------------------------------------------------------------------------------------
# basic distributions
# --------------------------------------------------------------------------------------------
@torch.no_grad()
def zeros_(tensor: Tensor) -> Tensor:
    """Fill with 0. For weights this keeps every unit of a layer identical forever (notes 000/004)."""
    return tensor.zero_()


@torch.no_grad()
def ones_(tensor: Tensor) -> Tensor:
    """Fill with 1."""
    return tensor.fill_(1.0)


@torch.no_grad()
def constant_(tensor: Tensor, val: float) -> Tensor:
    """Fill with ``val``. A constant weight does not break symmetry either (notes 004, case 2)."""
    return tensor.fill_(val)


@torch.no_grad()
def normal_(tensor: Tensor, mean: float = 0.0, std: float = 1.0, generator: torch.Generator | None = None) -> Tensor:
    """Draw from N(mean, std²)."""
    if std < 0:
        raise ValueError(f"std must be non-negative, got {std}")
    return tensor.normal_(mean, std, generator=generator)


@torch.no_grad()
def uniform_(tensor: Tensor, a: float = 0.0, b: float = 1.0, generator: torch.Generator | None = None) -> Tensor:
    """Draw from U(a, b)."""
    if b < a:
        raise ValueError(f"uniform_ needs a <= b, got a={a}, b={b}")
    return tensor.uniform_(a, b, generator=generator)


@torch.no_grad()
def trunc_normal_(tensor: Tensor, mean: float = 0.0, std: float = 1.0, a: float = -2.0, b: float = 2.0,
                  generator: torch.Generator | None = None) -> Tensor:
    """Draw from N(mean, std²) conditioned on [a, b] (absolute bounds, as ``torch.nn.init.trunc_normal_``).

    By inversion: u ~ U(Φ(α), Φ(β)) with α = (a − mean)/std, β = (b − mean)/std, then
    x = mean + std·Φ⁻¹(u), using Φ⁻¹(u) = √2·erfinv(2u − 1). Note: the result's standard
    deviation is *less* than ``std`` (0.88·std for ±2std); Keras' variant corrects for that
    (see ``truncated=True`` on the *_normal_ schemes).
    """
    if std <= 0:
        raise ValueError(f"std must be positive, got {std}")
    if not a < b:
        raise ValueError(f"trunc_normal_ needs a < b, got a={a}, b={b}")
    cdf = lambda x: 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))
    lo, hi = cdf((a - mean) / std), cdf((b - mean) / std)
    tensor.uniform_(2 * lo - 1, 2 * hi - 1, generator=generator)
    tensor.erfinv_().mul_(std * math.sqrt(2.0)).add_(mean)
    return tensor.clamp_(min=a, max=b)


def _normal_scaled_(tensor: Tensor, std: float, truncated: bool, generator) -> Tensor:
    if truncated:  # Keras: truncate at ±2σ' with σ' = σ/0.8796 so the result has std σ
        s = std / _TRUNCATED_STD
        return trunc_normal_(tensor, 0.0, s, -2 * s, 2 * s, generator=generator) if s > 0 else zeros_(tensor)
    return normal_(tensor, 0.0, std, generator=generator)


# --------------------------------------------------------------------------------------------
# fan-scaled schemes
# --------------------------------------------------------------------------------------------
def uniform_fan_in_(tensor: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """U(−1/√m, 1/√m) with m = fan_in (notes 002, "uniform scaling").

    Variance 1/(3m). This is also what PyTorch's ``nn.Linear`` starts from (its
    ``kaiming_uniform_(a=√5)`` works out to the same bound).
    """
    bound = 1.0 / math.sqrt(_fan(tensor, "fan_in"))
    return uniform_(tensor, -bound, bound, generator)


def uniform_inverse_fan_in_(tensor: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """U(−1/m, 1/m) with m = fan_in: the notes' (002) "common heuristic" for m inputs.

    Variance 1/(3m²), which shrinks much faster with width than 1/√m scaling: wide layers start
    with very small signals (the notes' "tiny weights" case).
    """
    bound = 1.0 / _fan(tensor, "fan_in")
    return uniform_(tensor, -bound, bound, generator)


def xavier_normal_(tensor: Tensor, gain: float = 1.0, generator: torch.Generator | None = None, *,
                   truncated: bool = False) -> Tensor:
    """Glorot & Bengio (2010) normal: N(0, σ²), σ = gain·√(2/(fan_in + fan_out)).

    Balances the forward (fan_in) and backward (fan_out) variance conditions for tanh-like units
    (notes 004). ``truncated``: Keras' ``glorot_normal`` (see module doc). Default gain 1.
    """
    fan_in, fan_out = calculate_fan_in_and_fan_out(tensor)
    return _normal_scaled_(tensor, gain * math.sqrt(2.0 / (fan_in + fan_out)), truncated, generator)


def xavier_uniform_(tensor: Tensor, gain: float = 1.0, generator: torch.Generator | None = None) -> Tensor:
    """Glorot & Bengio (2010) uniform: U(−a, a), a = gain·√(6/(fan_in + fan_out)) (variance as the normal)."""
    fan_in, fan_out = calculate_fan_in_and_fan_out(tensor)
    bound = gain * math.sqrt(6.0 / (fan_in + fan_out))
    return uniform_(tensor, -bound, bound, generator)


def _he_gain(a: float, nonlinearity: str) -> float:
    return calculate_gain(nonlinearity, a) if nonlinearity in ("leaky_relu", "prelu", "rectifier") \
        else calculate_gain(nonlinearity)


def he_normal_(tensor: Tensor, a: float = 0.0, mode: str = "fan_in", nonlinearity: str = "leaky_relu",
               generator: torch.Generator | None = None, *, truncated: bool = False) -> Tensor:
    """He et al. (2015) normal: N(0, σ²), σ = gain/√fan, gain = :func:`calculate_gain` (nonlinearity, a).

    With the defaults (leaky_relu, a = 0) gain = √2, i.e. Var(w) = 2/fan_in — the notes' He normal.
    ``mode="fan_out"`` preserves the backward variance instead. ``truncated``: Keras'
    ``he_normal`` (see module doc). Same signature as ``torch.nn.init.kaiming_normal_``.
    """
    std = _he_gain(a, nonlinearity) / math.sqrt(_fan(tensor, mode))
    return _normal_scaled_(tensor, std, truncated, generator)


def he_uniform_(tensor: Tensor, a: float = 0.0, mode: str = "fan_in", nonlinearity: str = "leaky_relu",
                generator: torch.Generator | None = None) -> Tensor:
    """He et al. (2015) uniform: U(−b, b), b = gain·√(3/fan) (same variance as :func:`he_normal_`).

    With the defaults b = √(6/fan_in), the notes' He uniform. As ``torch.nn.init.kaiming_uniform_``.
    """
    bound = _he_gain(a, nonlinearity) * math.sqrt(3.0 / _fan(tensor, mode))
    return uniform_(tensor, -bound, bound, generator)


def lecun_normal_(tensor: Tensor, generator: torch.Generator | None = None, *, truncated: bool = False) -> Tensor:
    """LeCun normal: N(0, 1/fan_in) — the initialization SELU's self-normalization assumes.

    Note: Keras' ``lecun_normal`` is the truncated variant (``truncated=True``); PyTorch has no
    named LeCun init (``kaiming_normal_(nonlinearity='linear')`` is the same distribution).
    """
    return _normal_scaled_(tensor, 1.0 / math.sqrt(_fan(tensor, "fan_in")), truncated, generator)


def lecun_uniform_(tensor: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """LeCun uniform: U(−√(3/fan_in), √(3/fan_in)), variance 1/fan_in (Keras ``lecun_uniform``)."""
    bound = math.sqrt(3.0 / _fan(tensor, "fan_in"))
    return uniform_(tensor, -bound, bound, generator)


def variance_scaling_(tensor: Tensor, scale: float = 1.0, mode: str = "fan_in",
                      distribution: str = "truncated_normal", generator: torch.Generator | None = None) -> Tensor:
    """Keras' ``VarianceScaling``: Var(w) = scale/n with n = fan_in, fan_out or their mean (``fan_avg``).

    ``distribution``: ``"truncated_normal"`` (Keras' default; truncated at ±2σ' with the 0.8796
    correction), ``"untruncated_normal"`` (``"normal"``) or ``"uniform"`` (bound √(3·scale/n)).
    Keras' named schemes are special cases: glorot = (1, fan_avg), he = (2, fan_in),
    lecun = (1, fan_in).
    """
    if scale <= 0:
        raise ValueError(f"scale must be positive, got {scale}")
    n = _fan(tensor, mode)
    if distribution == "uniform":
        bound = math.sqrt(3.0 * scale / n)
        return uniform_(tensor, -bound, bound, generator)
    if distribution in ("truncated_normal", "untruncated_normal", "normal"):
        return _normal_scaled_(tensor, math.sqrt(scale / n), distribution == "truncated_normal", generator)
    raise ValueError(f"distribution must be 'truncated_normal', 'untruncated_normal' or 'uniform', got {distribution!r}")


glorot_normal_ = xavier_normal_
glorot_uniform_ = xavier_uniform_
kaiming_normal_ = he_normal_
kaiming_uniform_ = he_uniform_


# --------------------------------------------------------------------------------------------
# structured schemes
# --------------------------------------------------------------------------------------------
@torch.no_grad()
def orthogonal_(tensor: Tensor, gain: float = 1.0, generator: torch.Generator | None = None) -> Tensor:
    """A (semi-)orthogonal matrix times ``gain`` (Saxe, McClelland & Ganguli 2014).

    The weight is viewed as (rows, cols) = (out, in·∏kernel). Draw A ~ N(0,1) of shape
    (max, min), take A = QR, and fix the signs Q ← Q·diag(sign(diag R)) so Q is uniformly
    (Haar) distributed rather than biased by the QR convention. Tall: WᵀW = gain²·I; wide:
    WWᵀ = gain²·I. All singular values equal gain, so a deep linear net neither explodes nor
    vanishes (notes 000/002: "preserve signal norm regardless of depth"). As ``torch.nn.init.orthogonal_``.
    """
    if tensor.dim() < 2:
        raise ValueError(f"orthogonal_ needs at least 2 dimensions, got shape {tuple(tensor.shape)}")
    if tensor.numel() == 0:
        return tensor
    rows = tensor.shape[0]
    cols = tensor.numel() // rows
    a = torch.empty(max(rows, cols), min(rows, cols), dtype=torch.float64 if tensor.dtype == torch.float64
                    else torch.float32, device=tensor.device).normal_(0, 1, generator=generator)
    q, r = torch.linalg.qr(a)
    q = q * torch.sign(torch.diagonal(r)).unsqueeze(0)  # sign fix: makes the distribution Haar
    if rows < cols:
        q = q.T
    tensor.copy_(q.reshape(tensor.shape)).mul_(gain)
    return tensor


@torch.no_grad()
def sparse_(tensor: Tensor, k: int = 15, std: float = 1.0, generator: torch.Generator | None = None) -> Tensor:
    """Sparse initialization (Martens 2010; notes 002): each unit gets exactly k non-zero inputs.

    For every output unit (row of the (out, in·∏kernel) view), k of its incoming weights are
    chosen uniformly without replacement and drawn from N(0, std²); the rest are 0. The total
    input of a unit then does not depend on the fan-in m, and individual weights need not
    shrink with m. A unit with fewer than k inputs gets all of them.

    Defaults k = 15, std = 1 (Martens). Note: ``torch.nn.init.sparse_(tensor, sparsity, std=0.01)``
    is a different rule — it zeroes a *fraction* of each column (a fixed number of outgoing
    connections per input), so it does not give every unit the same number of inputs.
    """
    if tensor.dim() < 2:
        raise ValueError(f"sparse_ needs at least 2 dimensions, got shape {tuple(tensor.shape)}")
    if not isinstance(k, int) or k < 1:
        raise ValueError(f"k (non-zero inputs per unit) must be a positive integer, got {k!r}")
    rows = tensor.shape[0]
    fan_in = tensor.numel() // rows
    k = min(k, fan_in)
    # k distinct columns per row: the k smallest of fan_in iid uniforms are a uniform k-subset
    scores = torch.rand(rows, fan_in, generator=generator, device=tensor.device)
    chosen = scores.topk(k, dim=1, largest=False).indices
    values = torch.empty(rows, k, dtype=tensor.dtype, device=tensor.device).normal_(0, std, generator=generator)
    flat = torch.zeros(rows, fan_in, dtype=tensor.dtype, device=tensor.device)
    flat.scatter_(1, chosen, values)
    return tensor.copy_(flat.reshape(tensor.shape))


@torch.no_grad()
def identity_(tensor: Tensor, gain: float = 1.0) -> Tensor:
    """The identity map times ``gain``: I for a 2-D weight, a Dirac kernel for a convolution.

    2-D (out, in): ones on the main diagonal (rectangular allowed). 3-/4-/5-D (out, in, *k):
    output channel i copies input channel i through the kernel's centre tap. A recurrent net
    with W_hh = I and ReLU units is Le et al.'s (2015) IRNN. As ``torch.nn.init.eye_`` /
    ``dirac_`` with a gain.
    """
    if tensor.dim() < 2:
        raise ValueError(f"identity_ needs at least 2 dimensions, got shape {tuple(tensor.shape)}")
    tensor.zero_()
    n = min(tensor.shape[0], tensor.shape[1])
    idx = torch.arange(n, device=tensor.device)
    centre = tuple(s // 2 for s in tensor.shape[2:])
    tensor[(idx, idx) + centre] = gain
    return tensor


def _rectifier_slope(activation: str, param) -> float | None:
    if activation == "relu":
        return 0.0
    if activation in ("leaky_relu", "prelu", "rectifier"):
        return {"leaky_relu": 0.01, "prelu": 0.25}.get(activation, 0.0) if param is None else float(param)
    return None


def auto_(tensor: Tensor, activation: str = "linear", param: float | None = None, distribution: str = "normal",
          generator: torch.Generator | None = None) -> str:
    """Pick the scheme for a weight from the activation that follows it, apply it, describe it.

    ==========================================  =============================================
    activation after the layer                  scheme
    ==========================================  =============================================
    relu, leaky_relu, prelu, rectifier          He (fan_in), gain √(2/(1 + α²))
    elu, gelu, silu, maxout                     He-style (fan_in), gain 1/√E[f(z)²]
    selu                                        LeCun (fan_in, gain 1): self-normalization
    tanh, sigmoid                               Xavier (fan_avg), gain 1 (Glorot's Var = 2/(n_in+n_out))
    linear / none (output layers), softmax      Xavier (fan_avg), gain 1 (Keras' default)
    ==========================================  =============================================

    Note: for tanh this is *not* PyTorch's ``calculate_gain('tanh') = 5/3``. The study
    ``init-tanh-gain`` measured both on tanh MLPs of depth 5–50: gain 1 keeps the first/last
    gradient std within 0.76–1.14 with < 0.5 % saturated units and still trains at depth 50;
    gain 5/3 puts the net in the chaotic regime (gradient ratio 5 at depth 20, 87 at depth 50,
    4–7 % saturated) and a depth-50 net does not learn. 5/3 keeps activations from shrinking
    and trains shallow nets a little faster; pass ``gain=5/3`` to ``xavier_normal`` for that.

    Args:
        activation, param: the activation's name and parameter (slope α, ELU α, maxout k).
        distribution: ``"normal"`` (default) or ``"uniform"`` (same variance).

    Returns a description such as ``"he_normal(fan_in, gain=1.414)"``.
    """
    if distribution not in ("normal", "uniform"):
        raise ValueError(f"distribution must be 'normal' or 'uniform', got {distribution!r}")
    slope = _rectifier_slope(activation, param)
    if slope is not None:
        mode, gain, family = "fan_in", math.sqrt(2.0 / (1 + slope ** 2)), "he"
    elif activation in ("elu", "gelu", "gelu_tanh", "silu", "maxout"):
        mode, gain, family = "fan_in", calculate_gain(activation, param), "he"
    elif activation == "selu":
        mode, gain, family = "fan_in", 1.0, "lecun"
    elif activation in ("tanh", "sigmoid", "linear", "identity", "softmax", "log_softmax"):
        # gain 1 for tanh too (Glorot & Bengio 2010, the notes): see the note above and init-tanh-gain
        mode, gain, family = "fan_avg", 1.0, "xavier"
    else:
        raise ValueError(f"auto_ does not know the activation {activation!r}")
    n = _fan(tensor, mode)
    if distribution == "normal":
        normal_(tensor, 0.0, gain / math.sqrt(n), generator)
    else:
        bound = gain * math.sqrt(3.0 / n)
        uniform_(tensor, -bound, bound, generator)
    return f"{family}_{distribution}({mode}, gain={gain:.4g})"


# --------------------------------------------------------------------------------------------
# bias rules
# --------------------------------------------------------------------------------------------
_RECTIFIERS = ("relu", "leaky_relu", "prelu", "rectifier")


@torch.no_grad()
def bias_zeros_(bias: Tensor, **context) -> Tensor:
    """b = 0: the usual choice (notes 002), symmetry is broken by the weights."""
    return bias.zero_()


@torch.no_grad()
def bias_constant_(bias: Tensor, value: float = 0.01, **context) -> Tensor:
    """b = ``value`` for every layer (default 0.01, the notes' (004) guard against dying ReLUs)."""
    return bias.fill_(value)


@torch.no_grad()
def bias_relu_(bias: Tensor, value: float = 0.01, *, activation: str = "linear", **context) -> Tensor:
    """b = ``value`` (default 0.01) for units followed by a rectifier, 0 for every other layer.

    A small positive bias starts ReLU units in their active region, so fewer of them are dead
    from the first step (notes 002/004).
    """
    return bias.fill_(value if activation in _RECTIFIERS else 0.0)


def class_priors(y: Tensor, num_classes: int | None = None) -> Tensor:
    """Class frequencies p_k = count_k / N of integer labels ``y`` (a float64 vector)."""
    y = torch.as_tensor(y).reshape(-1).long()
    if y.numel() == 0:
        raise ValueError("class_priors needs at least one label")
    n = num_classes if num_classes is not None else int(y.max()) + 1
    return torch.bincount(y, minlength=n).double() / y.numel()


@torch.no_grad()
def bias_prior_(bias: Tensor, priors: Sequence[float] | Tensor | float = (), *, is_output: bool = True,
                **context) -> Tensor:
    """Output bias from the class priors, so the untrained net already predicts the marginals.

        softmax head (K units):  b_k = log p_k          ⇒ softmax(b) = p
        sigmoid head (1 unit):   b = log(p / (1 − p))   ⇒ σ(b) = p, p = P(y = 1)

    Hidden layers (``is_output=False``) get 0. ``priors`` are class frequencies or counts
    (normalized here); for a sigmoid head give [p_0, p_1] or p_1. Notes 002: "non-zero biases
    are used for output units (to obtain correct marginal statistics)".
    """
    if not is_output:
        return bias.zero_()
    p = torch.as_tensor(priors, dtype=torch.float64).reshape(-1)
    if p.numel() == 0:
        raise ValueError("bias_prior_ needs the class priors (frequencies or counts), e.g. priors=[0.9, 0.1]")
    if (p < 0).any():
        raise ValueError(f"class priors must be non-negative, got {p.tolist()}")
    if bias.numel() == 1:
        p1 = p[0] if p.numel() == 1 else p[1] / p.sum()
        if not 0 < p1 < 1:
            raise ValueError(f"a sigmoid output needs a positive-class prior in (0, 1), got {float(p1)}")
        return bias.fill_(float(torch.log(p1 / (1 - p1))))
    if p.numel() != bias.numel():
        raise ValueError(f"{p.numel()} class priors for an output layer with {bias.numel()} units")
    p = p / p.sum()
    if (p == 0).any():
        raise ValueError("a class with prior 0 would get bias −inf; smooth the counts (e.g. add 1)")
    return bias.copy_(torch.log(p).to(bias.dtype))


@torch.no_grad()
def forget_gate_bias_(target, value: float = 1.0) -> None:
    """Set an LSTM's forget-gate bias to ``value`` (default 1; Gers et al. 2000, Jozefowicz et al. 2015).

    An open forget gate at the start lets the cell state (and its gradient) pass through many
    steps (notes 002: "forget gate bias = 1"). ``target``: a ``torch.nn.LSTM`` / ``LSTMCell``,
    trainlab's :class:`~trainlab.nn.recurrent.LSTM` (gates ordered i, f, g, o in each bias), or
    one such bias tensor of length 4H. PyTorch adds
    two biases (b_ih + b_hh): we set b_ih's forget slice to ``value`` and b_hh's to 0, so the
    effective bias is ``value`` (Keras' ``unit_forget_bias`` has a single bias).
    """
    if isinstance(target, Tensor):
        if target.dim() != 1 or target.numel() % 4:
            raise ValueError(f"an LSTM bias has length 4·hidden_size, got shape {tuple(target.shape)}")
        h = target.numel() // 4
        target[h:2 * h] = value
        return
    if not isinstance(target, (nn.LSTM, nn.LSTMCell)) and getattr(target, "cell_name", None) != "lstm":
        raise TypeError(f"forget_gate_bias_ takes an nn.LSTM, nn.LSTMCell or a bias tensor, got {type(target).__name__}")
    h = target.hidden_size
    for name, p in target.named_parameters():
        if name.startswith("bias_ih"):
            p[h:2 * h] = value
        elif name.startswith("bias_hh"):
            p[h:2 * h] = 0.0


# --------------------------------------------------------------------------------------------
# model-level: layers and their activations, init_model, LSUV
# --------------------------------------------------------------------------------------------
def _weight_layer(m: nn.Module) -> bool:
    return isinstance(m, (nn.Linear, nn.modules.conv._ConvNd)) and m.weight is not None


def _describe_activation(m: nn.Module) -> tuple[str, float | None] | None:
    """(name, param) for an activation module (ours or torch's); None if ``m`` is not one."""
    from trainlab.nn import activations as A
    from trainlab.nn.layers import MaxoutPool

    if isinstance(m, (A.LeakyReLU,)):
        return "leaky_relu", m.alpha
    if isinstance(m, A.GeneralizedRectifier):
        return "rectifier", m.alpha
    if isinstance(m, (A.PReLU, nn.PReLU)):
        return "prelu", float(m.weight.detach().mean())
    if isinstance(m, nn.LeakyReLU):
        return "leaky_relu", m.negative_slope
    if isinstance(m, (A.ELU, nn.ELU)):
        return "elu", m.alpha
    if isinstance(m, A.GELU) or isinstance(m, nn.GELU):
        return ("gelu_tanh" if m.approximate == "tanh" else "gelu"), None
    if isinstance(m, MaxoutPool):
        return "maxout", m.k
    table = [((A.ReLU, nn.ReLU), "relu"), ((A.SELU, nn.SELU), "selu"), ((A.SiLU, nn.SiLU), "silu"),
             ((A.Tanh, nn.Tanh), "tanh"), ((A.Sigmoid, nn.Sigmoid), "sigmoid"),
             ((A.Softmax, nn.Softmax, nn.LogSoftmax), "softmax"), ((nn.Identity,), "linear")]
    for types, name in table:
        if isinstance(m, types):
            return name, None
    return None


def layer_activations(model: nn.Module) -> dict[str, tuple[nn.Module, str, float | None]]:
    """Each weight layer (Linear, Conv) of ``model`` with the activation that follows it.

    Walks the modules in registration order (which is the forward order for sequential builds
    like trainlab's MLP and CNN) and pairs each layer with the first activation module after it
    and before the next weight layer; a layer with none (an output layer, a shortcut projection)
    gets ``"linear"``. Returns ``{name: (layer, activation_name, param)}``.

    Note: activations applied as functions inside a custom ``forward`` are invisible here; such
    layers count as linear.
    """
    mods = list(model.named_modules())
    out = {}
    for i, (name, m) in enumerate(mods):
        if not _weight_layer(m):
            continue
        act: tuple[str, float | None] = ("linear", None)
        for _, nxt in mods[i + 1:]:
            if _weight_layer(nxt):
                break
            described = _describe_activation(nxt)
            if described is not None and described[0] != "linear":
                act = described
                break
        out[name] = (m, act[0], act[1])
    return out


WEIGHT_SCHEMES: dict[str, Callable] = {
    "auto": auto_,
    "zeros": zeros_,
    "constant": constant_,
    "normal": normal_,
    "uniform": uniform_,
    "trunc_normal": trunc_normal_,
    "uniform_fan_in": uniform_fan_in_,
    "uniform_inverse_fan_in": uniform_inverse_fan_in_,
    "xavier_normal": xavier_normal_,
    "xavier_uniform": xavier_uniform_,
    "glorot_normal": xavier_normal_,
    "glorot_uniform": xavier_uniform_,
    "he_normal": he_normal_,
    "he_uniform": he_uniform_,
    "kaiming_normal": he_normal_,
    "kaiming_uniform": he_uniform_,
    "lecun_normal": lecun_normal_,
    "lecun_uniform": lecun_uniform_,
    "variance_scaling": variance_scaling_,
    "orthogonal": orthogonal_,
    "sparse": sparse_,
    "identity": identity_,
}

BIAS_RULES: dict[str, Callable] = {
    "zeros": bias_zeros_,
    "constant": bias_constant_,
    "relu": bias_relu_,
    "prior": bias_prior_,
}


def _accepts(fn: Callable) -> tuple[set[str], bool]:
    params = inspect.signature(fn).parameters
    names = {n for n, p in params.items() if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)}
    return names, any(p.kind == p.VAR_KEYWORD for p in params.values())


def _split_kwargs(weight_fn, bias_fn, kwargs: Mapping) -> tuple[dict, dict]:
    """Send each keyword to the weight scheme or the bias rule that takes it (prefixes force it)."""
    w_names, _ = _accepts(weight_fn) if weight_fn is not None else (set(), False)
    b_names, _ = _accepts(bias_fn) if bias_fn is not None else (set(), False)
    w_names -= {"tensor", "generator", "activation", "param"}
    b_names -= {"bias", "activation", "is_output", "context"}
    w_kw, b_kw = {}, {}
    for key, value in kwargs.items():
        if key.startswith("weight_") and key[7:] in w_names:
            w_kw[key[7:]] = value
        elif key.startswith("bias_") and key[5:] in b_names:
            b_kw[key[5:]] = value
        elif key in w_names and key in b_names:
            raise ValueError(f"init option {key!r} fits both the weight scheme and the bias rule; write "
                             f"'weight_{key}' or 'bias_{key}'")
        elif key in w_names:
            w_kw[key] = value
        elif key in b_names:
            b_kw[key] = value
        else:
            raise ValueError(f"unknown init option {key!r}; the weight scheme takes {sorted(w_names) or 'none'}, "
                             f"the bias rule takes {sorted(b_names) or 'none'}")
    for fn, given in ((weight_fn, w_kw), (bias_fn, b_kw)):
        if fn is None:
            continue
        params = list(inspect.signature(fn).parameters.values())[1:]   # the first one is the tensor
        needed = [p.name for p in params if p.default is p.empty and p.name not in given
                  and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
        if needed:
            raise ValueError(f"{getattr(fn, '__name__', 'the initializer').rstrip('_')} needs the option(s) {needed}")
    return w_kw, b_kw


def _resolve(spec, table: Mapping[str, Callable], what: str):
    if spec is None or callable(spec):
        return spec
    if spec not in table:
        raise ValueError(f"unknown {what} {spec!r}; choose one of {sorted(table)} (or None to keep the current values)")
    return table[spec]


def init_model(model: nn.Module, weight: str | Callable | None = "auto", bias: str | Callable | None = "zeros", *,
               generator: torch.Generator | None = None, **kwargs) -> dict[str, str]:
    """Initialize every weight layer (Linear, Conv, and their subclasses) of ``model`` in place.

    Args:
        model: any module; layers are found by :func:`layer_activations`.
        weight: a name from :data:`WEIGHT_SCHEMES` (``"auto"``, ``"he_normal"``,
            ``"xavier_uniform"``, ``"orthogonal"``, ...), an initializer ``fn(tensor, **kw)``, or
            None to keep the weights. ``"auto"`` (:func:`auto_`) picks fan mode and gain from the
            activation after each layer.
        bias: a name from :data:`BIAS_RULES` (``"zeros"``, ``"constant"``, ``"relu"``,
            ``"prior"``), a rule ``fn(bias, *, activation, is_output, **kw)``, or None to keep.
        generator: a ``torch.Generator`` for every draw (reproducible initialization).
        **kwargs: options of the scheme and the rule, e.g. ``mode="fan_out"``, ``gain=2.0``,
            ``truncated=True``, ``value=0.01``, ``priors=[0.9, 0.1]``; a name both take must be
            written ``weight_<name>`` or ``bias_<name>``.

    The output layer is the last weight layer in module order (it gets ``is_output=True``).
    Normalization layers keep γ = 1, β = 0. Recurrent cells with raw weight matrices
    (:class:`~trainlab.nn.recurrent.ElmanRNN`) are not touched; initialize their tensors directly.

    Returns ``{layer name: what was applied}``.
    """
    weight_fn = _resolve(weight, WEIGHT_SCHEMES, "weight initializer")
    bias_fn = _resolve(bias, BIAS_RULES, "bias rule")
    w_kw, b_kw = _split_kwargs(weight_fn, bias_fn, kwargs)
    layers = layer_activations(model)
    if not layers:
        raise ValueError(f"{type(model).__name__} has no Linear or Conv layers to initialize")
    last = list(layers)[-1]
    report = {}
    for name, (layer, act, param) in layers.items():
        done = []
        if weight_fn is not None:
            names, _ = _accepts(weight_fn)
            extra = dict(w_kw)
            if "activation" in names:
                extra.update(activation=act, param=param)
            if "generator" in names:
                extra["generator"] = generator
            desc = _apply_to_weight(layer, weight_fn, extra)
            done.append(desc if isinstance(desc, str) else getattr(weight_fn, "__name__", "custom").rstrip("_"))
        if bias_fn is not None and getattr(layer, "bias", None) is not None:
            bias_fn(layer.bias, activation=act, is_output=(name == last), **b_kw)
            rule = getattr(bias_fn, "__name__", "custom").rstrip("_")
            done.append(f"bias {rule[5:] if rule.startswith('bias_') else rule}")
        report[name] = ", ".join(done) + f" [{act}]"
    return report


def _apply_to_weight(layer: nn.Module, fn: Callable, kwargs: dict):
    """Run ``fn`` on the layer's weight; for a reparametrized weight (weight norm) assign the result."""
    if nn.utils.parametrize.is_parametrized(layer, "weight"):
        w = torch.empty_like(layer.weight)
        out = fn(w, **kwargs)
        with torch.no_grad():
            layer.weight = w
        return out
    return fn(layer.weight, **kwargs)


@torch.no_grad()
def lsuv_(model: nn.Module, x: Tensor, *, target_var: float = 1.0, tol: float = 0.1, max_iter: int = 10,
          orthonormal: bool = True, generator: torch.Generator | None = None) -> dict[str, float]:
    """Layer-sequential unit-variance initialization (Mishkin & Matas 2015, Algorithm 1).

        1. (``orthonormal``) W_L ← orthonormal for every layer L.
        2. For each layer L in forward order: forward the batch ``x``; v = Var(output of L);
           while |v − target| ≥ tol and fewer than ``max_iter`` rounds: W_L ← W_L/√(v/target).

    The notes' practical tip (002): "check activations in a single batch to adjust scales".
    The variance is that of the layer's own output (before its activation), over all elements.
    Biases are left as they are (zero them first for the paper's setting). The model runs in
    eval mode (no dropout) and its mode is restored.

    Returns ``{layer name: final output variance}``.
    """
    if not (target_var > 0 and tol > 0 and isinstance(max_iter, int) and max_iter >= 1):
        raise ValueError("lsuv_ needs target_var > 0, tol > 0 and an integer max_iter >= 1")
    layers = {name: layer for name, (layer, _, _) in layer_activations(model).items()}
    if not layers:
        raise ValueError(f"{type(model).__name__} has no Linear or Conv layers for LSUV")
    if orthonormal:
        for layer in layers.values():
            _apply_to_weight(layer, orthogonal_, {"generator": generator})
    seen: dict[str, Tensor] = {}
    order: list[str] = []  # layers in the order the forward pass calls them
    hooks = []
    for name, layer in layers.items():
        def hook(module, args, output, name=name):
            if name not in order:
                order.append(name)
            seen[name] = output.detach()
        hooks.append(layer.register_forward_hook(hook))
    was_training = model.training
    model.eval()
    result = {}
    try:
        model(x)  # the call order of the hooks is the forward order
        for name in list(order):
            layer = layers[name]
            for _ in range(max_iter):
                seen.clear()
                model(x)
                var = float(seen[name].var())
                if abs(var - target_var) < tol or var == 0.0:
                    break
                w = layer.weight / math.sqrt(var / target_var)
                if nn.utils.parametrize.is_parametrized(layer, "weight"):
                    layer.weight = w
                else:
                    layer.weight.copy_(w)
            seen.clear()
            model(x)
            result[name] = float(seen[name].var())
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return result
