"""Fused C kernels for the layers' fast paths on the CPU, and the ctypes glue that calls them.

A layer's fast path (a ``torch.autograd.Function``, see :mod:`trainlab.nn.fastpath`) runs its
formula as a handful of torch ops each way; at MNIST-MLP sizes (128 × 256 values) each op costs a
pass over memory plus a few microseconds of dispatch, and the ops, not the arithmetic, set the
speed. A kernel library here does a layer's forward or backward in one C call instead.

Each library is one C file next to this module, built at its first use and cached by
:class:`trainlab.native_build.NativeLibrary` (the system's C compiler; ``TRAINLAB_NATIVE=0`` turns
the kernels off, and without a compiler they are off: the layers then take their torch-op paths
and compute what those compute). :class:`LayerKernels` wraps one library: it declares its
functions, one per kernel and element type (``trainlab_<kernel>_f32``/``_f64``), and hands out the
bound functions for a dtype, so a call costs one dict lookup and the ctypes call.

Libraries:

* :data:`NORM` — ``native_norm.c``: layer norm and training-mode batch norm, forward and backward
  (used by :mod:`trainlab.nn.normalization`).
* :data:`POOL` — ``native_pool.c``: max-pooling with a window equal to its stride, forward and
  backward (used by :mod:`trainlab.nn.pooling`).
* :data:`OPS` — ``native_ops.cpp``: ``torch.ops.trainlab.layer_norm``, layer norm's two kernels
  behind an autograd node of torch's own, which saves the ~30 µs a Python ``autograd.Function``
  costs per forward + backward (its apply, context and backward call) — at 128 × 256 as much as
  the kernels themselves. A C++ library against torch's headers (:class:`TorchOpLibrary`), built
  at first use (~15 s, once per machine); where it cannot be built the Python Function runs, with
  the same kernels and so the same bits.
"""
from __future__ import annotations

import ctypes
from pathlib import Path
from types import SimpleNamespace

import torch
from torch import Tensor

from trainlab.native_build import NativeLibrary, TorchOpLibrary

__all__ = ["LayerKernels", "NORM", "POOL", "OPS", "usable"]

# -march=native: the CPU's vector width and instructions (the cache key includes the CPU), all of
# its width where it has AVX-512 (NativeLibrary adds native_build.CPU_FLAGS); the C
# file is compiled as ISO C99, where GCC contracts no a·b + c into a fused multiply-add
FLAGS = ["-O3", "-std=c99", "-fno-math-errno", "-march=native"]
SUFFIXES = {torch.float32: "f32", torch.float64: "f64"}

_i64, _i32, _dbl, _ptr = ctypes.c_int64, ctypes.c_int, ctypes.c_double, ctypes.c_void_p


class LayerKernels:
    """One C library of layer kernels, built at first use; its functions bound per element type.

    Args:
        source: the C file's name, next to this module.
        name: the built file's name prefix (``norm`` → ``norm-<key>.so``).
        what: the kernels in words, for :meth:`problem` ("the fused normalization kernels").
        signatures: kernel name → (argtypes, restype), the same for ``_f32`` and ``_f64``.
    """

    def __init__(self, source: str, name: str, what: str, signatures: dict[str, tuple[list, object]]):
        self.signatures = signatures
        self.library = NativeLibrary(Path(__file__).with_name(source), name, what, self._declare, FLAGS)
        self._by_dtype: dict[torch.dtype, SimpleNamespace] = {}

    def _declare(self, lib: ctypes.CDLL) -> None:
        by_dtype = {}
        for dtype, suffix in SUFFIXES.items():
            functions = {}
            for kernel, (argtypes, restype) in self.signatures.items():
                fn = getattr(lib, f"trainlab_{kernel}_{suffix}")
                fn.argtypes, fn.restype = argtypes, restype
                functions[kernel] = fn
            by_dtype[dtype] = SimpleNamespace(**functions)
        self._by_dtype = by_dtype

    def for_dtype(self, dtype: torch.dtype) -> SimpleNamespace | None:
        """The kernels for tensors of ``dtype`` (attributes named as the kernels), or ``None``: not
        float32/float64, no compiler (:meth:`problem`), or ``TRAINLAB_NATIVE=0``."""
        if self.library.get() is None:
            return None
        return self._by_dtype.get(dtype)

    def problem(self) -> str | None:
        """Why the kernels are off (one line), or ``None`` when they work."""
        return self.library.problem()

    def reset(self) -> None:
        """Forget the loaded library (tests build it again under another environment)."""
        self.library.reset()
        self._by_dtype = {}


def usable(x: Tensor, *others: Tensor | None) -> bool:
    """Whether ``x`` and the tensors in ``others`` (``None`` skipped) can be handed to a kernel:
    dense, contiguous, on the CPU, all of ``x``'s dtype — and not while ``torch.compile`` traces
    the layer (its tensors have no memory then; the torch ops are traced, as without kernels)."""
    if not x.is_cpu or x.layout is not torch.strided or not x.is_contiguous():
        return False
    dtype = x.dtype
    for t in others:
        if t is not None and (t.dtype != dtype or not t.is_cpu or t.layout is not torch.strided
                              or not t.is_contiguous()):
            return False
    return not _compiling()


_compiling = torch.compiler.is_compiling


def ptr(t: Tensor | None) -> int | None:
    """The address ctypes passes for ``t`` (``None``: a NULL pointer, an output not wanted)."""
    return None if t is None else t.data_ptr()


NORM = LayerKernels(
    "native_norm.c", "norm", "the fused normalization kernels",
    {
        # rows R, row length D, x, γ, β, ε, y, μ, 1/√(σ² + ε), threads
        "layer_norm_forward": ([_i64, _i64, _ptr, _ptr, _ptr, _dbl, _ptr, _ptr, _ptr, _i32], None),
        # R, D, g, x, μ, 1/√(σ² + ε), γ, ∂x, ∂γ, ∂β, threads → 0, or 1 when out of memory
        "layer_norm_backward": ([_i64, _i64, _ptr, _ptr, _ptr, _ptr, _ptr, _ptr, _ptr, _ptr, _i32], _i32),
        # N, C, S, x, γ, β, ε, c, y, μ, σ²·c (σ² biased), 1/√(σ² + ε), running mean, running variance
        # (both NULL: none updated), momentum m, threads
        "batch_norm_forward": ([_i64, _i64, _i64, _ptr, _ptr, _ptr, _dbl, _dbl, _ptr, _ptr, _ptr, _ptr, _ptr, _ptr,
                                _dbl, _i32], None),
        # N, C, S, g, x, μ, 1/√(σ² + ε), γ, ∂x, ∂γ, ∂β, threads
        "batch_norm_backward": ([_i64, _i64, _i64, _ptr, _ptr, _ptr, _ptr, _ptr, _ptr, _ptr, _ptr, _i32], None),
    })

POOL = LayerKernels(
    "native_pool.c", "pool", "the max-pool kernels",
    {
        # planes P, H, W, window k, x, y, threads
        "max_pool2d_forward": ([_i64, _i64, _i64, _i64, _ptr, _ptr, _i32], None),
        # P, H, W, k, g, x, ∂x, threads
        "max_pool2d_backward": ([_i64, _i64, _i64, _i64, _ptr, _ptr, _ptr, _i32], None),
    })


class _Operators:
    """trainlab's C++ operators (``native_ops.cpp``), with the kernels of :data:`NORM` bound in."""

    DTYPES = (torch.float32, torch.float64)

    def __init__(self):
        self.library = TorchOpLibrary(Path(__file__).with_name("native_ops.cpp"), "ops",
                                      "the C++ layer-norm operator", self._bind, ["-O2"])
        self.layer_norm = None

    def _bind(self, lib: ctypes.CDLL) -> None:
        kernels = NORM.library.get()
        if kernels is None:
            raise OSError(f"it calls the fused normalization kernels: {NORM.problem()}")
        address = lambda name: ctypes.cast(getattr(kernels, name), ctypes.c_void_p)  # noqa: E731
        lib.trainlab_bind_norm_kernels.argtypes = [ctypes.c_void_p] * 4
        lib.trainlab_bind_norm_kernels(*(address(f"trainlab_layer_norm_{way}_{suffix}")
                                         for suffix in ("f32", "f64") for way in ("forward", "backward")))
        self.layer_norm = torch.ops.trainlab.layer_norm.default

    def get(self):
        """``torch.ops.trainlab.layer_norm.default`` (its library built at the first call), or
        ``None`` where it cannot be built or used here (:meth:`problem` says why)."""
        return self.layer_norm if self.library.get() is not None else None

    def problem(self) -> str | None:
        """Why the operator is off (one line), or ``None`` when it works."""
        return self.library.problem()

    def reset(self) -> None:
        self.library.reset()
        self.layer_norm = None


OPS = _Operators()
