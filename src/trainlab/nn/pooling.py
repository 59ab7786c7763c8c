"""Max-pooling: ``torch.nn.MaxPool2d`` with a fused C kernel where the window is its stride.

``MaxPool2d`` is ``torch.nn.MaxPool2d`` (a subclass: the same arguments, the same state, and
``isinstance(layer, torch.nn.MaxPool2d)`` holds), so its readable form is PyTorch's own max-pool.
What trainlab adds is speed. On the CPU, torch's kernel runs window by window without vectors,
and with gradients also records the argmax as a 64-bit index per output: for the small CNN of the
sweep benchmarks (64 images of 8 × 28 × 28) its forward and backward take 2.4 ms of a 8.8 ms
training step. For the common case — window k × k with stride k, no padding or dilation, floor
mode, a contiguous float32/float64 CPU tensor — the forward here is one pass of the C kernel
``native_pool.c`` that writes the maxima only, and the backward one pass that finds each window's
position of its maximum again from x and puts g there. The maximum and the position are chosen as
torch's CPU kernel chooses them (the first maximum in row-major order, a NaN wins), so values and
gradients are torch's, bit for bit (tested, ties and NaNs included). Anything else (padding,
another stride, ``return_indices``, CUDA, other dtypes, ``torch.func`` transforms,
``torch.compile`` tracing, a graph of the gradient, ``TRAINLAB_NATIVE=0``, no C compiler) runs
``torch.nn.MaxPool2d``'s forward.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from trainlab.nn.fastpath import SWITCH as _SWITCH
from trainlab.nn.fastpath import function_apply
from trainlab.nn.fastpath import transforms_active as _transforms_active
from trainlab.nn.native_layers import POOL as _POOL
from trainlab.nn.native_layers import usable as _usable

__all__ = ["MaxPool2d"]


class _MaxPoolFn(torch.autograd.Function):
    """Max-pool over k × k windows with stride k in the C kernels (see the module docstring)."""

    @staticmethod
    def forward(ctx, x, k, kernels):
        h, w = x.shape[-2], x.shape[-1]
        planes = x.numel() // (h * w) if h * w else 0
        y = x.new_empty((*x.shape[:-2], h // k, w // k))
        kernels.max_pool2d_forward(planes, h, w, k, x.data_ptr(), y.data_ptr(), torch.get_num_threads())
        ctx.k, ctx.kernels, ctx.hw, ctx.planes = k, kernels, (h, w), planes
        ctx.save_for_backward(x)
        return y

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        if torch.is_grad_enabled():  # a graph of the gradient: through torch's max-pool
            with torch.enable_grad():
                x_ = x.detach().requires_grad_()
                y = F.max_pool2d(x_.flatten(0, -4) if x_.dim() > 4 else x_, ctx.k).view(g.shape)
            (dx,) = torch.autograd.grad(y, x_, g, create_graph=True)
            return dx, None, None
        g = g.contiguous()
        dx = torch.empty_like(x)
        h, w = ctx.hw
        ctx.kernels.max_pool2d_backward(ctx.planes, h, w, ctx.k, g.data_ptr(), x.data_ptr(), dx.data_ptr(),
                                        torch.get_num_threads())
        return dx, None, None


_max_pool = function_apply(_MaxPoolFn)


def window(pool: nn.MaxPool2d) -> int | None:
    """The window k of a max-pool whose window is its stride (k × k, no padding, dilation, ceil
    mode or indices, k ≤ 15), else ``None``."""
    k = pool.kernel_size if isinstance(pool.kernel_size, int) else (
        pool.kernel_size[0] if len(set(pool.kernel_size)) == 1 else None)
    if k is None or not 1 <= k <= 15:
        return None
    simple = (pool.stride in (k, (k, k), None, ()) and pool.padding in (0, (0, 0))
              and pool.dilation in (1, (1, 1)) and not pool.ceil_mode and not pool.return_indices)
    return k if simple else None


class MaxPool2d(nn.MaxPool2d):
    """``torch.nn.MaxPool2d`` whose common case runs trainlab's fused kernel (see the module docstring).

    Same arguments as ``torch.nn.MaxPool2d`` (``kernel_size, stride=None, padding=0, dilation=1,
    return_indices=False, ceil_mode=False``); values and gradients are torch's, bit for bit.
    """

    def forward(self, x: Tensor) -> Tensor:
        if _SWITCH.fast and x.dim() in (3, 4) and not _transforms_active() and _usable(x):
            k = window(self)
            # a plane smaller than the window: torch's forward, which refuses it
            kernels = _POOL.for_dtype(x.dtype) if k is not None and min(x.shape[-2:]) >= k else None
            if kernels is not None:
                return _max_pool(x, k, kernels)
        return super().forward(x)
