"""Fused C kernels for the softmax, log-softmax, ELU/SELU and GELU fast paths on the CPU, and one-pass
backwards for tanh, sigmoid and SiLU.

The torch-op fast paths of :mod:`trainlab.nn.activations` run a softmax as five or six ops (max,
subtract, exp, sum, reciprocal, multiply), each a pass over the tensor, and torch's exp costs
about 1.5 ns an element on CPUs where it is not vectorized well. ``native_softmax.c`` does a row's
whole formula in one call, with an exponential of its own that the compiler vectorizes:

=====================  ==========================================================================
kernel                 formula (rows of D along the last, contiguous dimension)
=====================  ==========================================================================
softmax forward        y = e/Σe, e = e^(z − m), m = max z
softmax backward       dz = y⊙(g − ⟨g, y⟩)   (= y⊙g − y·⟨g, y⟩, one rounding fewer where they cancel)
log-softmax forward    y = (z − m) − log Σe^(z − m)
log-softmax backward   dz = g − e^y·Σg
ELU/SELU forward       y = λz for z > 0, λα(e^z − 1) otherwise (elementwise)
ELU/SELU backward      dz = g·(λ if y > 0 else y + λα)   (y + λα = λαe^z; λα at z = 0, as PyTorch)
tanh backward          dz = g − (g·y)·y, from y = tanh z
sigmoid backward       dz = (y − y·y)·g, from y = σ(z)
SiLU backward          dz = ((y − y·s) + s)·g, from s = σ(z) and y = z·s
GELU forward           y = z·Φ(z), Φ(z) = ½(1 + erf(z/√2)), Φ(z) kept for the backward
GELU backward          dz = g·(Φ(z) + z·φ(z)), φ(z) = e^(−z²/2)/√(2π), from z and the saved Φ(z)
GELU (tanh) forward    y = ½z(1 + t), t = tanh(√(2/π)(z + 0.044715z³)), t kept for the backward
GELU (tanh) backward   dz = g·(½(1 + t) + ½z(1 − t²)·√(2/π)(1 + 3·0.044715z²)), from z and the saved t
=====================  ==========================================================================

The forward values of tanh and σ (and SiLU's σ) stay torch's (elementary functions, one torch
kernel each); their backwards, and GELU's forward and backward, were two to five torch ops each, a pass over the tensor
apiece, and are one pass here with the same arithmetic: GELU's e^(−z²/2) from the exponential
below (whose domain x ≤ 0 it is), its erf and tanh the kernels' own (below).

The Functions take a kernel when the tensor is on the CPU, contiguous, float32 or float64, the
dimension is the last one, and (in backward) no graph of the gradient is wanted; everything else
keeps the torch-op path. Built on first use with ``-march=native`` (the cache key includes the
CPU), as :mod:`trainlab.native_build` describes; ``TRAINLAB_NATIVE=0`` turns the kernels off.

Numerics. The exponential, for x ≤ 0 (every exponent in these kernels: z − max z, log-probabilities):
Cody–Waite reduction x = n·ln2 + r with Cephes' minimax polynomial (float) or the Taylor series to
r¹³ (double) for e^r − 1, and 2^n from exponent bits, applied as two factors so that results in the
subnormal range round once; underflow gives 0, e^(−inf) = 0, NaN stays NaN. Measured against
the exact value over a dense sweep and the special values (``tests/nn/test_native_softmax.py``):
at most :data:`EXP_ULPS_F32` ulp in float32 and :data:`EXP_ULPS_F64` ulp in float64 (an ulp of the
result; in the subnormal range, the subnormals' spacing).
The erf (GELU): x + x·Q(x²) for |x| ≤ 0.9375, else ±(1 − e^(−x² + L(|x|))), Q and L polynomials
fitted near-minimax to erf(x)/x − 1 and to log(e^(x²)·erfc x) (one piece in float32, two in float64):
at most :data:`ERF_ULPS_F32` / :data:`ERF_ULPS_F64` ulp of the exact value, measured. GELU (tanh)'s
tanh|w| = −m/(2 + m), m = e^(−2|w|) − 1 from the ELU kernels' expm1 (relative precision near 0), for
|w| < 0.55, else 1 − 2e/(1 + e), e = e^(−2|w|): at most :data:`TANH_ULPS_F32` / :data:`TANH_ULPS_F64` ulp.
ELU's e^z − 1 (z ≤ 0) keeps relative precision near 0 as 2^n·(e^r − 1) + (2^n − 1): at most
:data:`EXPM1_ULPS_F32` / :data:`EXPM1_ULPS_F64` ulp. Compiled with fused multiply-adds where the
CPU has them; the row sums are vectorized partial sums (another association than torch's). So the
layers agree with torch and with the readable forms to rounding, not bit for bit: in float64 to
1e-12; in float32 within 4 ε of the exact value (the float64 formula), ε = 2⁻²³ relative to the
tensor's largest value (``tests/nn/test_fastpath.py``'s measure) — for the gradient of a saturated
row, relative to its largest term (y⊙g, or g for log-softmax), whose rounding it inherits. Softmax's
y = e/Σe is a division (one rounding).
"""
from __future__ import annotations

import ctypes
from pathlib import Path

import torch
from torch import Tensor

from trainlab.native_build import NativeLibrary

__all__ = ["kernels", "native_problem", "rows_usable", "elementwise_usable", "softmax_forward",
           "softmax_backward", "log_softmax_forward", "log_softmax_backward", "elu_forward", "elu_backward",
           "tanh_backward", "sigmoid_backward", "silu_backward", "gelu_forward", "gelu_backward",
           "gelu_tanh_forward", "gelu_tanh_backward",
           "EXP_ULPS_F32", "EXP_ULPS_F64", "EXPM1_ULPS_F32", "EXPM1_ULPS_F64", "ERF_ULPS_F32",
           "ERF_ULPS_F64", "TANH_ULPS_F32", "TANH_ULPS_F64"]

# -fno-trapping-math lets the compiler vectorize the exponential's clamps (selects); the kernels
# never read floating-point exception flags. -fopenmp-simd honours the `omp simd` reductions
# without the OpenMP runtime. With -march=native NativeLibrary adds the rest of native_build.CPU_FLAGS.
FLAGS = ["-O3", "-std=gnu99", "-march=native", "-ffp-contract=fast", "-fno-math-errno", "-fno-trapping-math",
         "-fopenmp-simd"]

# the measured worst cases (tests/nn/test_native_softmax.py sweeps them), in ulps of the result
# (measured: 0.997, 0.985, 0.849, 1.167 over some 40 million arguments, with fused multiply-adds)
EXP_ULPS_F32 = 1.0
EXP_ULPS_F64 = 1.0
EXPM1_ULPS_F32 = 0.9
EXPM1_ULPS_F64 = 1.2
# erf (tests/nn/test_native_activations.py): measured 1.318 ulp (float32, against the float64 erf,
# 4 million arguments in [−4.5, 4.5]; the worst just above 0.9375, from the rounding of the exponent
# L − x²) and 1.009 ulp (float64, against a 80-bit mpmath erf, 100 thousand arguments)
ERF_ULPS_F32 = 1.4
ERF_ULPS_F64 = 1.1
# GELU (tanh)'s tanh: −m/(2 + m), m = e^(−2|w|) − 1, below |w| = 0.55 (m's error, ≤ 1.2 ulp, amplified
# by 2/(2 + m) ∈ [1, 1.5]), 1 − 2e/(1 + e), e = e^(−2|w|), above: measured 2.211 ulp (float32, 5 million
# arguments, against numpy's float64 tanh) and 2.003 ulp (float64, 10 thousand, against mpmath), the
# worst at the switch; near tanh = ±1 it is about 1 ulp
TANH_ULPS_F32 = 2.3
TANH_ULPS_F64 = 2.3

_SUFFIX = {torch.float32: "f32", torch.float64: "f64"}
_KERNELS = ("softmax_forward", "softmax_backward", "log_softmax_forward", "log_softmax_backward",
            "elu_forward", "elu_backward", "tanh_backward", "sigmoid_backward", "silu_backward",
            "gelu_forward", "gelu_backward", "gelu_tanh_forward", "gelu_tanh_backward", "exp", "expm1_neg", "erf",
            "tanh")

# kernel name -> {dtype: the ctypes function}, filled when the library loads (a dict lookup per call)
_FUNCTIONS: dict[str, dict[torch.dtype, object]] = {name: {} for name in _KERNELS}


def _declare(lib: ctypes.CDLL) -> None:
    i64, i32, dbl, vp = ctypes.c_int64, ctypes.c_int, ctypes.c_double, ctypes.c_void_p
    rows, rows_backward = [vp, vp, i64, i64, i32], [vp, vp, vp, i64, i64, i32]
    signatures = {"softmax_forward": rows, "softmax_backward": rows_backward, "log_softmax_forward": rows,
                  "log_softmax_backward": rows_backward, "elu_forward": [vp, vp, i64, dbl, dbl, i32],
                  "elu_backward": [vp, vp, vp, i64, dbl, dbl, i32], "tanh_backward": [vp, vp, vp, i64, i32],
                  "sigmoid_backward": [vp, vp, vp, i64, i32],
                  "silu_backward": [vp, vp, vp, vp, i64, i32], "gelu_forward": [vp, vp, vp, i64, i32],
                  "gelu_tanh_forward": [vp, vp, vp, i64, i32],
                  "gelu_backward": [vp, vp, vp, vp, i64, i32],
                  "gelu_tanh_backward": [vp, vp, vp, vp, i64, i32], "exp": [vp, vp, i64],
                  "expm1_neg": [vp, vp, i64], "erf": [vp, vp, i64], "tanh": [vp, vp, i64]}
    for dtype, suffix in _SUFFIX.items():
        for name, argtypes in signatures.items():
            fn = getattr(lib, f"trainlab_{name}_{suffix}")
            fn.argtypes, fn.restype = argtypes, None
            _FUNCTIONS[name][dtype] = fn


LIBRARY = NativeLibrary(Path(__file__).with_name("native_softmax.c"), "softmax",
                        "the fused softmax, ELU and activation-backward kernels", _declare, FLAGS)
_get_library = LIBRARY.get
_STRIDED = torch.strided
_PARALLEL_MIN = 32768  # the kernels split a tensor over threads from this many elements (PARALLEL_MIN)


def kernels() -> ctypes.CDLL | None:
    """The loaded kernel library, building it at the first call; ``None`` when it cannot be built
    here (:func:`native_problem` says why) or ``TRAINLAB_NATIVE=0``."""
    return LIBRARY.get()


def native_problem() -> str | None:
    """Why :func:`kernels` is ``None`` (one line), or ``None`` when the kernels work."""
    return LIBRARY.problem()


def _reset() -> None:
    """Forget the loaded library (tests build it again under another environment)."""
    LIBRARY.reset()
    for table in _FUNCTIONS.values():
        table.clear()


# The checks run at every forward: a handful of tensor attributes (~0.1 µs each) and the library
# (which reads TRAINLAB_NATIVE), in one function, cheapest first.
def elementwise_usable(z: Tensor) -> bool:
    """True when an elementwise kernel can take ``z``: a dense, contiguous float32/float64 CPU tensor
    (and the kernels are available)."""
    return (z.dtype in _SUFFIX and z.is_cpu and z.layout is _STRIDED and z.is_contiguous()
            and _get_library() is not None)


def rows_usable(z: Tensor, dim: int) -> bool:
    """True when a row kernel can take ``z`` along ``dim``: :func:`elementwise_usable` and ``dim`` is
    the last dimension, of at least one element."""
    last = z.dim() - 1
    return (last >= 0 and (dim == -1 or dim == last) and z.dtype in _SUFFIX and z.is_cpu and z.layout is _STRIDED
            and z.is_contiguous() and z.shape[last] > 0 and _get_library() is not None)


def _threads(n: int) -> int:
    # below the split threshold the kernels do not read the thread count: spare the call
    return torch.get_num_threads() if n >= _PARALLEL_MIN else 1


_SOFTMAX_FORWARD, _SOFTMAX_BACKWARD = _FUNCTIONS["softmax_forward"], _FUNCTIONS["softmax_backward"]
_LOG_SOFTMAX_FORWARD, _LOG_SOFTMAX_BACKWARD = _FUNCTIONS["log_softmax_forward"], _FUNCTIONS["log_softmax_backward"]
_ELU_FORWARD, _ELU_BACKWARD = _FUNCTIONS["elu_forward"], _FUNCTIONS["elu_backward"]


def softmax_forward(z: Tensor) -> Tensor:
    """softmax along the last dimension of ``z`` (:func:`rows_usable` must hold)."""
    y = torch.empty_like(z)
    d, n = z.shape[-1], z.numel()
    _SOFTMAX_FORWARD[z.dtype](z.data_ptr(), y.data_ptr(), n // d, d, _threads(n))
    return y


def softmax_backward(y: Tensor, g: Tensor) -> Tensor:
    """dz = y⊙(g − ⟨g, y⟩) along the last dimension, from the output ``y`` of :func:`softmax_forward`."""
    g = g.contiguous()  # e.g. the expanded gradient of a sum
    dz = torch.empty_like(y)
    d, n = y.shape[-1], y.numel()
    _SOFTMAX_BACKWARD[y.dtype](y.data_ptr(), g.data_ptr(), dz.data_ptr(), n // d, d, _threads(n))
    return dz


def log_softmax_forward(z: Tensor) -> Tensor:
    """log-softmax along the last dimension of ``z`` (:func:`rows_usable` must hold)."""
    y = torch.empty_like(z)
    d, n = z.shape[-1], z.numel()
    _LOG_SOFTMAX_FORWARD[z.dtype](z.data_ptr(), y.data_ptr(), n // d, d, _threads(n))
    return y


def log_softmax_backward(y: Tensor, g: Tensor) -> Tensor:
    """dz = g − e^y·Σg along the last dimension, from the output ``y`` of :func:`log_softmax_forward`."""
    g = g.contiguous()
    dz = torch.empty_like(y)
    d, n = y.shape[-1], y.numel()
    _LOG_SOFTMAX_BACKWARD[y.dtype](y.data_ptr(), g.data_ptr(), dz.data_ptr(), n // d, d, _threads(n))
    return dz


def elu_forward(z: Tensor, alpha: float, scale: float) -> Tensor:
    """scale·(z if z > 0 else α(e^z − 1)) elementwise (:func:`elementwise_usable` must hold)."""
    y = torch.empty_like(z)
    n = z.numel()
    _ELU_FORWARD[z.dtype](z.data_ptr(), y.data_ptr(), n, alpha, scale, _threads(n))
    return y


def elu_backward(y: Tensor, g: Tensor, alpha: float, scale: float) -> Tensor:
    """dz = g·(λ if y > 0 else y + λα), λ = scale, from the output ``y`` of :func:`elu_forward`."""
    g = g.contiguous()
    dz = torch.empty_like(y)
    n = y.numel()
    _ELU_BACKWARD[y.dtype](y.data_ptr(), g.data_ptr(), dz.data_ptr(), n, alpha, scale, _threads(n))
    return dz


_TANH_BACKWARD, _SIGMOID_BACKWARD = _FUNCTIONS["tanh_backward"], _FUNCTIONS["sigmoid_backward"]
_GELU_BACKWARD, _GELU_TANH_BACKWARD = _FUNCTIONS["gelu_backward"], _FUNCTIONS["gelu_tanh_backward"]


def tanh_backward(y: Tensor, g: Tensor) -> Tensor:
    """dz = g − (g·y)·y elementwise, from the output ``y`` of tanh (:func:`elementwise_usable` must hold)."""
    g = g.contiguous()
    dz = torch.empty_like(y)
    n = y.numel()
    _TANH_BACKWARD[y.dtype](y.data_ptr(), g.data_ptr(), dz.data_ptr(), n, _threads(n))
    return dz


def sigmoid_backward(y: Tensor, g: Tensor) -> Tensor:
    """dz = (y − y·y)·g elementwise, from the output ``y`` of σ (:func:`elementwise_usable` must hold)."""
    g = g.contiguous()
    dz = torch.empty_like(y)
    n = y.numel()
    _SIGMOID_BACKWARD[y.dtype](y.data_ptr(), g.data_ptr(), dz.data_ptr(), n, _threads(n))
    return dz


def silu_backward(s: Tensor, y: Tensor, g: Tensor) -> Tensor:
    """dz = ((y − y·s) + s)·g elementwise from ``s`` = σ(z) and ``y`` = z·σ(z), both contiguous, of one
    dtype."""
    g = g.contiguous()
    dz = torch.empty_like(s)
    n = s.numel()
    _FUNCTIONS["silu_backward"][s.dtype](s.data_ptr(), y.data_ptr(), g.data_ptr(), dz.data_ptr(), n, _threads(n))
    return dz


def gelu_forward(z: Tensor) -> tuple[Tensor, Tensor]:
    """(y, Φ(z)): y = z·Φ(z), Φ(z) = ½(1 + erf(z/√2)) elementwise with the kernels' erf
    (:func:`elementwise_usable` must hold); Φ(z) is for :func:`gelu_backward`."""
    y, cdf = torch.empty_like(z), torch.empty_like(z)
    n = z.numel()
    _FUNCTIONS["gelu_forward"][z.dtype](z.data_ptr(), y.data_ptr(), cdf.data_ptr(), n, _threads(n))
    return y, cdf


def gelu_backward(z: Tensor, cdf: Tensor, g: Tensor) -> Tensor:
    """dz = g·(Φ(z) + z·φ(z)) elementwise from ``z`` and ``cdf`` = Φ(z), both contiguous, of one dtype."""
    g = g.contiguous()
    dz = torch.empty_like(z)
    n = z.numel()
    _GELU_BACKWARD[z.dtype](z.data_ptr(), cdf.data_ptr(), g.data_ptr(), dz.data_ptr(), n, _threads(n))
    return dz


def gelu_tanh_forward(z: Tensor) -> tuple[Tensor, Tensor]:
    """(y, t): y = ½z(1 + t), t = tanh(√(2/π)(z + 0.044715z³)) elementwise with the kernels' tanh
    (:func:`elementwise_usable` must hold); t is for :func:`gelu_tanh_backward`."""
    y, t = torch.empty_like(z), torch.empty_like(z)
    n = z.numel()
    _FUNCTIONS["gelu_tanh_forward"][z.dtype](z.data_ptr(), y.data_ptr(), t.data_ptr(), n, _threads(n))
    return y, t


def gelu_tanh_backward(z: Tensor, t: Tensor, g: Tensor) -> Tensor:
    """dz = g·(½(1 + t) + ½z(1 − t²)·√(2/π)(1 + 3·0.044715z²)) elementwise from ``z`` and the saved
    ``t`` = tanh(√(2/π)(z + 0.044715z³)), both contiguous, of one dtype."""
    g = g.contiguous()
    dz = torch.empty_like(z)
    n = z.numel()
    _GELU_TANH_BACKWARD[z.dtype](z.data_ptr(), t.data_ptr(), g.data_ptr(), dz.data_ptr(), n, _threads(n))
    return dz


def exp(x: Tensor) -> Tensor:
    """The kernels' e^x for x ≤ 0 (a positive x gives 1) elementwise, for tests of its error (``x``
    contiguous float32/float64 CPU)."""
    y = torch.empty_like(x)
    _FUNCTIONS["exp"][x.dtype](x.data_ptr(), y.data_ptr(), x.numel())
    return y


def erf(x: Tensor) -> Tensor:
    """The GELU kernel's erf elementwise, for tests of its error."""
    y = torch.empty_like(x)
    _FUNCTIONS["erf"][x.dtype](x.data_ptr(), y.data_ptr(), x.numel())
    return y


def tanh(x: Tensor) -> Tensor:
    """The GELU (tanh) kernel's tanh elementwise, for tests of its error."""
    y = torch.empty_like(x)
    _FUNCTIONS["tanh"][x.dtype](x.data_ptr(), y.data_ptr(), x.numel())
    return y


def expm1_neg(x: Tensor) -> Tensor:
    """The ELU kernels' e^x − 1 for x ≤ 0 elementwise, for tests of its error."""
    y = torch.empty_like(x)
    _FUNCTIONS["expm1_neg"][x.dtype](x.data_ptr(), y.data_ptr(), x.numel())
    return y
