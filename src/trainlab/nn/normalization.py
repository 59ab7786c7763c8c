"""Normalization layers: batch norm (1-D and 2-D), layer norm, and weight norm.

================  ==========================================  ===============================
layer             statistics                                  learnable
================  ==========================================  ===============================
BatchNorm1d/2d    per feature/channel, over the mini-batch    γ (weight), β (bias)
                  (and the spatial positions for 2-D);
                  running EWMA estimates for inference
LayerNorm         per sample, over its last dimensions        γ, β (elementwise)
WeightNorm        none: reparametrizes w = g·v/‖v‖            g (length), v (direction)
================  ==========================================  ===============================

The training-mode forward passes of batch and layer norm are ``torch.autograd.Function`` classes with
the backward written out (the three-term formula of Ioffe & Szegedy 2015, §3): that is what keeps
them close to PyTorch's fused kernels in speed. Each has a readable reference formula that the
tests compare against and that autograd differentiates when a graph of the gradient is requested.

On the CPU, for contiguous float32/float64 tensors, each Function does its forward and its backward
in one call of a fused C kernel (``native_norm.c``, see :mod:`trainlab.nn.native_layers`), which
saves μ and 1/√(σ² + ε) instead of x̂, as torch does; everywhere else (CUDA, other dtypes,
non-contiguous inputs, ``TRAINLAB_NATIVE=0``, no C compiler) it runs the same formulas as torch ops.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from trainlab.nn.fastpath import SWITCH as _SWITCH
from trainlab.nn.fastpath import function_apply
from trainlab.nn.fastpath import transforms_active as _transforms_active
from trainlab.nn.native_layers import NORM as _NORM
from trainlab.nn.native_layers import OPS as _OPS
from trainlab.nn.native_layers import ptr as _ptr
from trainlab.nn.native_layers import usable as _usable

__all__ = ["BatchNorm1d", "BatchNorm2d", "LayerNorm", "WeightNorm", "weight_norm", "remove_weight_norm",
           "convert_sync_batchnorm"]


def _autograd_backward(reference, inputs: tuple, grad: Tensor) -> tuple:
    wanted = [x for x in inputs if isinstance(x, Tensor) and x.requires_grad]
    out = reference(*inputs)
    grads = iter(torch.autograd.grad(out, wanted, grad, create_graph=True, allow_unused=True))
    return tuple(next(grads) if isinstance(x, Tensor) and x.requires_grad else None for x in inputs)


def _normalize_reference(x: Tensor, weight: Tensor | None, bias: Tensor | None, dims: tuple[int, ...],
                         eps: float, eps_inside: bool = True) -> Tensor:
    """x̂ = (x − μ)/√(σ² + ε) over ``dims`` (biased σ²), then γx̂ + β: the readable formula."""
    mu = x.mean(dims, keepdim=True)
    var = (x - mu).square().mean(dims, keepdim=True)
    std = torch.sqrt(var + eps) if eps_inside else torch.sqrt(var) + eps
    x_hat = (x - mu) / std
    if weight is not None:
        x_hat = x_hat * weight
    if bias is not None:
        x_hat = x_hat + bias
    return x_hat


class _BatchNormTrain(torch.autograd.Function):
    """Training-mode batch norm over ``dims`` (all but the channel axis), hand-written backward.

    Forward:  μ = Σx/n,  σ² = Σ(x − μ)²/n,  x̂ = (x − μ)/√(σ² + ε),  y = γ·x̂ + β
    and, when ``running`` = (running_mean, running_var, m, c) is given, the running estimates in
    place: running ← (1 − m)·running + m·batch, i.e. lerp(running, batch, m), with the batch
    variance times c = n/(n − 1) (or 1): two small tensors in one foreach op.
    Backward, with n values per channel and sums over ``dims`` (Ioffe & Szegedy 2015, §3):
        ∂L/∂β = Σ g,   ∂L/∂γ = Σ g·x̂,
        ∂L/∂x = γ/√(σ² + ε) · (g − (Σ g)/n − x̂·(Σ g·x̂)/n)
    — the two sums are the parameter gradients already; with s = γ/√(σ² + ε) the input
    gradient is s·g − x̂·(s·Σg·x̂/n) − s·Σg/n: two multiply-adds over the batch.

    For a contiguous float32/float64 CPU input each direction is one call of the fused C kernel
    (``native_norm.c``: the statistics summed in double, the forward saving μ, 1/√(σ² + ε) rather
    than x̂, and σ²·c for the running variance; running estimates of the input's dtype updated in
    the same call, with PyTorch's lerp); otherwise the torch ops below.
    """

    @staticmethod
    def forward(ctx, x, weight, bias, eps, dims, shape, running):
        n = x.numel() // x.shape[1]
        ctx.eps, ctx.dims, ctx.shape, ctx.n = eps, dims, shape, n
        kernels = _NORM.for_dtype(x.dtype) if _usable(x, weight, bias) else None
        ctx.kernels = kernels
        if kernels is not None:  # one C pass over the (N, C, S) layout: μ, σ²·c, 1/√(σ² + ε), y
            c = x.shape[1]
            ctx.ncs = (x.shape[0], c, n // x.shape[0])
            y = torch.empty_like(x)
            stats = torch.empty(3, c, dtype=x.dtype)  # μ, σ²·c (for the running variance), 1/√(σ² + ε)
            at, step = stats.data_ptr(), c * x.element_size()
            # the kernel lerps running estimates of x's dtype (torch.nn's numbers); others after it
            in_kernel = running is not None and _usable(x, running[0], running[1])
            kernels.batch_norm_forward(*ctx.ncs, x.data_ptr(), _ptr(weight), _ptr(bias), eps,
                                       1.0 if running is None else running[3], y.data_ptr(), at, at + step,
                                       at + 2 * step, *((running[0].data_ptr(), running[1].data_ptr(), running[2])
                                                        if in_kernel else (None, None, 0.0)),
                                       torch.get_num_threads())
            if running is not None and not in_kernel:
                _lerp_running(running, stats[0], stats[1])
            ctx.save_for_backward(x, weight, bias, stats)
            return y
        mu = x.sum(dims, keepdim=True).div_(n)          # sum/n: the same value as mean(), one op faster
        xc = x - mu
        var = (xc * xc).sum(dims, keepdim=True).div_(n)
        inv_std = (var + eps).rsqrt_()
        x_hat = xc.mul_(inv_std)
        y = _affine(x_hat, weight, bias, shape)
        if running is not None:
            correction = running[3]
            _lerp_running(running, mu.view(-1), var.view(-1) if correction == 1.0 else var.view(-1) * correction)
        ctx.save_for_backward(x, weight, bias, x_hat, inv_std)
        return y

    @staticmethod
    def backward(ctx, g):
        x, weight, bias, *saved = ctx.saved_tensors
        dims, shape, n = ctx.dims, ctx.shape, ctx.n
        if torch.is_grad_enabled():
            ref = lambda x_, w_, b_: _normalize_reference(x_, _view(w_, shape), _view(b_, shape), dims, ctx.eps)
            dx, dw, db = _autograd_backward(ref, (x, weight, bias), g)
            return dx, dw, db, None, None, None, None
        if ctx.kernels is not None:  # the forward's μ and 1/√(σ² + ε); x̂ is recomputed from x
            stats, = saved
            g = g.contiguous()
            c = stats.shape[1]
            dx = torch.empty_like(x) if ctx.needs_input_grad[0] else None
            dw = torch.empty_like(weight) if weight is not None and ctx.needs_input_grad[1] else None
            db = torch.empty_like(bias) if bias is not None and ctx.needs_input_grad[2] else None
            at = stats.data_ptr()
            ctx.kernels.batch_norm_backward(*ctx.ncs, g.data_ptr(), x.data_ptr(), at, at + 2 * c * x.element_size(),
                                            _ptr(weight), _ptr(dx), _ptr(dw), _ptr(db), torch.get_num_threads())
            return dx, dw, db, None, None, None, None
        x_hat, inv_std = saved
        dx, dw, db = batch_norm_backward_ops(g, x_hat, inv_std, weight, bias is not None, dims, shape, n,
                                             ctx.needs_input_grad)
        return dx, dw, db, None, None, None, None


def batch_norm_backward_ops(g: Tensor, x_hat: Tensor, inv_std: Tensor, weight: Tensor | None, has_bias: bool,
                            dims, shape, n: int, needs) -> tuple:
    """Training-mode batch norm's closed-form backward in torch ops (``(∂L/∂x, ∂L/∂γ, ∂L/∂β)``, each
    ``None`` unless ``needs`` asks for it), out of place so that ``vmap`` can batch it too:
        ∂L/∂β = Σ g,  ∂L/∂γ = Σ g·x̂,  ∂L/∂x = s·g − s·Σg/n − x̂·s·Σg·x̂/n,  s = γ/√(σ² + ε)
    with the sums over ``dims`` (every axis but the channels') and γ, β viewed to ``shape``."""
    sum_g = g.sum(dims, keepdim=True)                     # ∂L/∂β
    sum_gx = (g * x_hat).sum(dims, keepdim=True)          # ∂L/∂γ
    dx = None
    if needs[0]:
        scale = inv_std if weight is None else inv_std * weight.view(shape)   # s = γ/√(σ² + ε)
        dx = torch.addcmul(sum_g.mul(scale).mul_(-1.0 / n), g, scale)     # s·g − s·Σg/n
        dx = dx.addcmul(x_hat, scale.mul(sum_gx), value=-1.0 / n)         #  − x̂·s·Σg·x̂/n
    dw = sum_gx.view(-1) if weight is not None and needs[1] else None
    db = sum_g.view(-1) if has_bias and needs[2] else None
    return dx, dw, db


def _lerp_running(running: tuple, mu: Tensor, batch_var: Tensor) -> None:
    """running ← lerp(running, batch, m) for the mean and the variance in one foreach op;
    ``running`` = (running_mean, running_var, m, c), ``mu`` and ``batch_var`` = σ²·c the batch's,
    per channel."""
    running_mean, running_var, m, _ = running
    dtype = running_mean.dtype  # a lower-precision input (bfloat16, float16) keeps float32 estimates
    if mu.dtype != dtype:
        mu, batch_var = mu.to(dtype), batch_var.to(dtype)
    torch._foreach_lerp_([running_mean, running_var], [mu, batch_var], m)


def _sync_group():
    """The default process group when many processes train (``torch.distributed`` with > 1 rank), else None."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        return dist
    return None


class _SyncBatchNormTrain(torch.autograd.Function):
    """Batch norm whose statistics are those of the global batch, split over all ranks.

    With shards x⁽ʳ⁾ of n_r values per channel on rank r and N = Σ_r n_r (sums all-reduced, in
    float64 so the reduction adds no rounding of its own):
        μ = Σ_r Σ x⁽ʳ⁾ / N,   σ² = Σ_r Σ (x⁽ʳ⁾ − μ)² / N              (two passes, as one process)
        x̂ = (x − μ)/√(σ² + ε),   y = γ·x̂ + β
    Backward: the input gradient needs the global sums of g and g·x̂,
        ∂L/∂x = γ/√(σ² + ε) · (g − (Σ_all g)/N − x̂·(Σ_all g·x̂)/N)
    while ∂L/∂γ, ∂L/∂β stay this rank's sums, which DistributedDataParallel then averages, as
    it does every parameter gradient (torch.nn.SyncBatchNorm splits the work the same way).
    """

    @staticmethod
    def forward(ctx, x, weight, bias, eps, dims, shape):
        dist = _sync_group()
        c = x.shape[1]
        n_local = x.numel() // c
        first = torch.cat([x.sum(dims, dtype=torch.float64), x.new_full((1,), n_local, dtype=torch.float64)])
        dist.all_reduce(first)
        n = int(first[-1].item())
        if n < 2:
            raise ValueError(f"synchronized batch norm needs more than one value per channel over all ranks to "
                             f"estimate a variance, got {n}; use a larger batch")
        mu = (first[:c] / n).to(x.dtype).view(shape)
        xc = x - mu
        second = (xc * xc).sum(dims, dtype=torch.float64)
        dist.all_reduce(second)
        var = (second / n).to(x.dtype).view(shape)
        inv_std = (var + eps).rsqrt()
        x_hat = xc.mul_(inv_std)
        y = _affine(x_hat, weight, bias, shape)
        ctx.save_for_backward(weight, x_hat, inv_std)
        ctx.dims, ctx.shape, ctx.n = dims, shape, n
        ctx.mark_non_differentiable(mu, var)
        return y, mu, var, torch.tensor(n)

    @staticmethod
    def backward(ctx, g, _g_mu, _g_var, _g_n):
        weight, x_hat, inv_std = ctx.saved_tensors
        dims, shape, n = ctx.dims, ctx.shape, ctx.n
        sum_g = g.sum(dims, keepdim=True)
        sum_gx = (g * x_hat).sum(dims, keepdim=True)
        both = torch.cat([sum_g.view(-1), sum_gx.view(-1)]).to(torch.float64)
        _sync_group().all_reduce(both)
        c = sum_g.numel()
        all_g, all_gx = (both[:c].to(g.dtype).view(shape), both[c:].to(g.dtype).view(shape))
        dx = None
        if ctx.needs_input_grad[0]:
            scale = inv_std if weight is None else inv_std * weight.view(shape)
            dx = torch.addcmul(g, x_hat, all_gx / n, value=-1.0).sub_(all_g / n).mul_(scale)
        dw = sum_gx.view(-1) if weight is not None and ctx.needs_input_grad[1] else None
        db = sum_g.view(-1) if ctx.needs_input_grad[2] else None
        return dx, dw, db, None, None, None


class _LayerNormFn(torch.autograd.Function):
    """Layer norm over the trailing ``dims`` with elementwise γ, β; hand-written backward.

    Forward as batch norm, per sample. Backward, with ĝ = g ⊙ γ and means over ``dims``:
        ∂L/∂x = (ĝ − mean(ĝ) − x̂·mean(ĝ ⊙ x̂))/√(σ² + ε)
        ∂L/∂γ = Σ_batch g ⊙ x̂,   ∂L/∂β = Σ_batch g
    Note: the per-sample terms enter through an addcmul whose first argument is full-size and
    binary ops, the broadcasts TensorIterator vectorizes; the sums over the features as
    matrix-vector products with γ measured slower here.

    For a contiguous float32/float64 CPU input (γ, β of its dtype) each direction is one call of
    the fused C kernel (``native_norm.c``), which saves μ and 1/√(σ² + ε) per row, as torch does;
    otherwise the torch ops below.
    """

    @staticmethod
    def forward(ctx, x, weight, bias, eps, dims):
        ctx.eps, ctx.dims = eps, dims
        kernels = _NORM.for_dtype(x.dtype) if _usable(x, weight, bias) else None
        ctx.kernels = kernels
        if kernels is not None:  # one C pass per row: μ, 1/√(σ² + ε), y
            d = x.shape[-1] if len(dims) == 1 else math.prod(x.shape[dims[0]:])
            rows = x.numel() // d
            ctx.rd = (rows, d)
            y = torch.empty_like(x)
            stats = torch.empty(2, rows, dtype=x.dtype)  # μ, 1/√(σ² + ε) per row, as torch saves them
            at = stats.data_ptr()
            kernels.layer_norm_forward(rows, d, x.data_ptr(), _ptr(weight), _ptr(bias), eps, y.data_ptr(),
                                       at, at + rows * x.element_size(), torch.get_num_threads())
            ctx.save_for_backward(x, weight, bias, stats)
            return y
        mu = x.mean(dims, keepdim=True)
        xc = x - mu
        var = (xc * xc).mean(dims, keepdim=True)
        inv_std = (var + eps).rsqrt_()
        x_hat = xc.mul_(inv_std)
        y = _affine(x_hat, weight, bias, None)
        ctx.save_for_backward(x, weight, bias, x_hat, inv_std)
        return y

    @staticmethod
    def backward(ctx, g):
        x, weight, bias, *saved = ctx.saved_tensors
        dims = ctx.dims
        if torch.is_grad_enabled():
            ref = lambda x_, w_, b_: _normalize_reference(x_, w_, b_, dims, ctx.eps)
            dx, dw, db = _autograd_backward(ref, (x, weight, bias), g)
            return dx, dw, db, None, None
        if ctx.kernels is not None:  # the forward's μ and 1/√(σ² + ε); x̂ is recomputed from x
            stats, = saved
            g = g.contiguous()
            rows, d = ctx.rd
            dx = torch.empty_like(x) if ctx.needs_input_grad[0] else None
            dw = torch.empty_like(weight) if weight is not None and ctx.needs_input_grad[1] else None
            db = torch.empty_like(bias) if bias is not None and ctx.needs_input_grad[2] else None
            at = stats.data_ptr()
            if ctx.kernels.layer_norm_backward(rows, d, g.data_ptr(), x.data_ptr(), at, at + rows * x.element_size(),
                                               _ptr(weight), _ptr(dx), _ptr(dw), _ptr(db), torch.get_num_threads()):
                raise MemoryError(f"layer norm's backward could not allocate the sums for ∂L/∂γ, ∂L/∂β "
                                  f"({2 * d} doubles per thread)")
            return dx, dw, db, None, None
        x_hat, inv_std = saved
        batch_dims = tuple(range(g.dim() - len(dims)))
        dx = dw = db = None
        if ctx.needs_input_grad[0]:
            g_hat = g * weight if weight is not None else g                           # ∂L/∂x̂
            mean_g = g_hat.mean(dims, keepdim=True)
            mean_gx = (g_hat * x_hat).mean(dims, keepdim=True)
            dx = torch.addcmul(g_hat, x_hat, mean_gx, value=-1.0).sub_(mean_g).mul_(inv_std)
        if weight is not None and ctx.needs_input_grad[1]:
            dw = (g * x_hat).sum(batch_dims) if batch_dims else g * x_hat
        if bias is not None and ctx.needs_input_grad[2]:
            db = g.sum(batch_dims) if batch_dims else g.clone()
        return dx, dw, db, None, None


_batch_norm_train, _layer_norm = function_apply(_BatchNormTrain), function_apply(_LayerNormFn)


def _view(t: Tensor | None, shape) -> Tensor | None:
    return None if t is None else t.view(shape)


def _affine(x_hat: Tensor, weight: Tensor | None, bias: Tensor | None, shape) -> Tensor:
    """γ·x̂ + β (γ, β viewed to ``shape`` when given), in one fused op when both exist."""
    w, b = (_view(weight, shape), _view(bias, shape)) if shape is not None else (weight, bias)
    if w is not None and b is not None:
        return torch.addcmul(b, x_hat, w)
    if w is not None:
        return x_hat * w
    if b is not None:
        return x_hat + b
    return x_hat.clone()


class _BatchNorm(nn.Module):
    """Batch normalization (Ioffe & Szegedy 2015, Algorithm 1) over every axis but the channel axis.

    Training (the notes' algorithm box, per feature/channel over the m values of the batch):
        μ_B = (1/m) Σ x_i,   σ²_B = (1/m) Σ (x_i − μ_B)²,   x̂_i = (x_i − μ_B)/√(σ²_B + ε),
        y_i = γ·x̂_i + β
    and the running estimates, as PyTorch (momentum m weights the *new* batch):
        running_mean ← (1 − m)·running_mean + m·μ_B
        running_var  ← (1 − m)·running_var  + m·σ²_B·n/(n − 1)      (unbiased, n values per channel)
    Evaluation: y = γ·(x − running_mean)/√(running_var + ε) + β (the notes' EWMA at test time).

    Args:
        num_features: C, the size of the channel axis (dimension 1).
        eps: ε, default 1e-5 (PyTorch; Keras 1e-3).
        momentum: m, default 0.1 (PyTorch). ``None`` keeps a cumulative average instead
            (m = 1/t at the t-th batch), as PyTorch. Keras' ``momentum=0.99`` is the weight of
            the *old* value, i.e. our 0.01; see :meth:`keras`.
        affine: learn γ (init 1) and β (init 0).
        track_running_stats: keep running estimates and use them in eval mode; if False, batch
            statistics are used in both modes (as PyTorch).
        unbiased_running_var: store σ²_B·n/(n − 1) (PyTorch) or σ²_B (Keras) in the running variance.
        eps_placement: ``"inside"`` √(σ² + ε) (the paper, PyTorch, Keras) or ``"outside"``
            √σ² + ε, the form written in notes 004. The fast backward covers ``"inside"``;
            ``"outside"`` is differentiated by autograd.
        sync: when many processes train one model (``torch.distributed`` initialized with more
            than one rank), take μ_B and σ²_B over the global batch, all ranks' samples together
            (``torch.nn.SyncBatchNorm``); without a process group it is plain batch norm. Needs
            ``eps_placement="inside"``; a graph of the gradient (double backward) is not kept.

    The parameter and buffer names (``weight``, ``bias``, ``running_mean``, ``running_var``,
    ``num_batches_tracked``) match ``torch.nn.BatchNorm*``, so state dicts load either way.

    Raises:
        ValueError: in training mode, when a channel sees a single value (a batch of one):
            its variance is 0 and x̂ would be 0/0.
    """

    _expected_dims: tuple[int, ...] = ()

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1, affine: bool = True,
                 track_running_stats: bool = True, *, unbiased_running_var: bool = True,
                 eps_placement: str = "inside", sync: bool = False):
        super().__init__()
        if not isinstance(num_features, int) or num_features < 1:
            raise ValueError(f"num_features must be a positive integer, got {num_features!r}")
        if not (isinstance(eps, (int, float)) and eps >= 0):
            raise ValueError(f"eps must be a non-negative number, got {eps!r}")
        if momentum is not None and not (isinstance(momentum, (int, float)) and 0.0 <= momentum <= 1.0):
            raise ValueError(f"momentum must lie in [0, 1] (PyTorch convention: the weight of the new batch) "
                             f"or be None for a cumulative average, got {momentum!r}")
        if eps_placement not in ("inside", "outside"):
            raise ValueError(f"eps_placement must be 'inside' or 'outside', got {eps_placement!r}")
        if sync and eps_placement != "inside":
            raise ValueError("sync=True needs eps_placement='inside' (the synchronized pass has the fast backward only)")
        self.sync = bool(sync)
        self.num_features, self.eps, self.momentum = num_features, float(eps), momentum
        self.affine, self.track_running_stats = affine, track_running_stats
        self.unbiased_running_var, self.eps_placement = unbiased_running_var, eps_placement
        if affine:
            self.weight = nn.Parameter(torch.ones(num_features))
            self.bias = nn.Parameter(torch.zeros(num_features))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        if track_running_stats:
            self.register_buffer("running_mean", torch.zeros(num_features))
            self.register_buffer("running_var", torch.ones(num_features))
            self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)
            self.register_buffer("num_batches_tracked", None)

    @classmethod
    def keras(cls, num_features: int, momentum: float = 0.99, epsilon: float = 1e-3, **kwargs):
        """A batch norm with Keras' defaults and conventions.

        Keras' ``momentum`` (default 0.99) weights the old running value, so it becomes our
        1 − momentum; ε = 1e-3; the running variance stores the biased batch variance.
        """
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"Keras momentum must lie in [0, 1], got {momentum!r}")
        return cls(num_features, eps=epsilon, momentum=1.0 - momentum, unbiased_running_var=False, **kwargs)

    def reset_running_stats(self) -> None:
        if self.track_running_stats:
            self.running_mean.zero_()
            self.running_var.fill_(1.0)
            self.num_batches_tracked.zero_()

    def reset_parameters(self) -> None:
        self.reset_running_stats()
        if self.affine:
            with torch.no_grad():
                self.weight.fill_(1.0)
                self.bias.zero_()

    def _check_input(self, x: Tensor) -> None:
        if x.dim() not in self._expected_dims:
            raise ValueError(f"{type(self).__name__} expects a {' or '.join(f'{d}-D' for d in self._expected_dims)} "
                             f"input (N, C, ...), got shape {tuple(x.shape)}")
        if x.shape[1] != self.num_features:
            raise ValueError(f"{type(self).__name__}({self.num_features}) got {x.shape[1]} channels "
                             f"(input shape {tuple(x.shape)})")

    def forward(self, x: Tensor) -> Tensor:
        self._check_input(x)
        dims, shape = self._axes(x.dim())
        if not (self.training or not self.track_running_stats):
            return self._normalize_with(x, self.running_mean.view(shape), self.running_var.view(shape), shape)
        n = x.numel() // x.shape[1]
        if self.sync and self.training and _sync_group() is not None:
            y, mu, var, total = _SyncBatchNormTrain.apply(x, self.weight, self.bias, self.eps, dims, shape)
            if self.track_running_stats:  # the global batch's statistics, the same on every rank
                self.num_batches_tracked.add_(1)
                self._update_running_stats(mu.view(-1), var.view(-1), int(total))
            return y
        if n < 2 and self.training:
            raise ValueError(f"{type(self).__name__} in training mode needs more than one value per channel to "
                             f"estimate a variance, got input shape {tuple(x.shape)} (a batch of one). Use a "
                             "larger batch, call model.eval() for inference, or use LayerNorm")
        update = self.training and self.track_running_stats
        if self.eps_placement == "inside" and _SWITCH.fast:
            running = None
            if update:  # the Function updates the running estimates in place, in one op
                self.num_batches_tracked.add_(1)
                correction = n / (n - 1) if self.unbiased_running_var else 1.0
                running = (self.running_mean, self.running_var, self._momentum_now(), correction)
            return _batch_norm_train(x, self.weight, self.bias, self.eps, dims, shape, running)
        # the readable form: the formula differentiated by autograd, then the running estimates
        y = _normalize_reference(x, _view(self.weight, shape), _view(self.bias, shape), dims, self.eps,
                                 self.eps_placement == "inside")
        if update:
            with torch.no_grad():
                mu = x.mean(dims, keepdim=True)
                var = (x - mu).square().mean(dims, keepdim=True)
            self.num_batches_tracked.add_(1)
            self._update_running_stats(mu.view(-1), var.view(-1), n)
        return y

    @staticmethod
    def _axes(ndim: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """The reduced axes (all but channel axis 1) and the broadcast shape of per-channel tensors."""
        return (0,) + tuple(range(2, ndim)), (1, -1) + (1,) * (ndim - 2)

    def _momentum_now(self) -> float:
        """m for this batch (``num_batches_tracked`` already counts it)."""
        if self.momentum is None:  # cumulative moving average: m = 1/t
            return 1.0 / float(self.num_batches_tracked)
        return self.momentum

    @torch.no_grad()
    def _update_running_stats(self, mu: Tensor, var: Tensor, n: int) -> None:
        """The running estimates as written (the fast path does the same in one lerp); the caller
        has counted the batch in ``num_batches_tracked``."""
        m = self._momentum_now()
        correction = n / (n - 1) if self.unbiased_running_var else 1.0
        # running ← (1 − m)·running + m·batch, both at once; the variance with n/(n − 1)
        torch._foreach_mul_([self.running_mean, self.running_var], 1.0 - m)
        self.running_mean.add_(mu, alpha=m)
        self.running_var.add_(var, alpha=m * correction)

    def _normalize_with(self, x: Tensor, mean: Tensor, var: Tensor, shape) -> Tensor:
        # eval: y = γ(x − μ)/√(σ² + ε) + β folded into one multiply-add, y = x·scale + shift
        std = torch.sqrt(var + self.eps) if self.eps_placement == "inside" else torch.sqrt(var) + self.eps
        scale = 1.0 / std
        if self.weight is not None:
            scale = scale * self.weight.view(shape)
        shift = -mean * scale
        if self.bias is not None:
            shift = shift + self.bias.view(shape)
        return torch.addcmul(shift, x, scale)

    def extra_repr(self) -> str:
        extra = "" if self.eps_placement == "inside" else ", eps_placement='outside'"
        extra += "" if self.unbiased_running_var else ", unbiased_running_var=False"
        extra += ", sync=True" if self.sync else ""
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}, "
                f"track_running_stats={self.track_running_stats}{extra}")


class BatchNorm1d(_BatchNorm):
    __doc__ = _BatchNorm.__doc__.replace("over every axis but the channel axis",
                                         "for (N, C) or (N, C, L) inputs", 1)
    _expected_dims = (2, 3)


class BatchNorm2d(_BatchNorm):
    __doc__ = _BatchNorm.__doc__.replace("over every axis but the channel axis",
                                         "for (N, C, H, W) inputs, statistics over N, H and W", 1)
    _expected_dims = (4,)


def convert_sync_batchnorm(model: nn.Module) -> int:
    """Make every trainlab batch norm in ``model`` synchronized (``sync=True``); return how many.

    The counterpart of ``torch.nn.SyncBatchNorm.convert_sync_batchnorm`` for trainlab's own
    :class:`BatchNorm1d`/:class:`BatchNorm2d` (in place: parameters and running estimates are
    kept). torch's own ``nn.BatchNorm*`` layers are converted with torch's function.
    """
    count = 0
    for m in model.modules():
        if isinstance(m, _BatchNorm):
            if m.eps_placement != "inside":
                raise ValueError(f"{type(m).__name__} with eps_placement='outside' cannot be synchronized")
            m.sync = True
            count += 1
    return count


class LayerNorm(nn.Module):
    """Layer normalization (Ba, Kiros & Hinton 2016): normalize each sample over its last dimensions.

        μ = mean(x),  σ² = mean((x − μ)²)      over the trailing ``normalized_shape`` axes
        y = γ ⊙ (x − μ)/√(σ² + ε) + β

    Unlike batch norm there are no running statistics and train/eval behave the same, so it works
    for a batch of one and for recurrent nets (notes 004: "batch norm is not suitable for RNNs").

    Args:
        normalized_shape: the trailing shape to normalize over (an int for the last axis).
        eps: ε, default 1e-5 (PyTorch; Keras ``LayerNormalization`` uses 1e-3).
        elementwise_affine: learn γ (init 1) and β (init 0) of shape ``normalized_shape``.
        bias: learn β (only with ``elementwise_affine``), as PyTorch.

    Matches ``torch.nn.LayerNorm`` (same parameter names, so state dicts interchange).
    """

    def __init__(self, normalized_shape: int | Sequence[int], eps: float = 1e-5, elementwise_affine: bool = True,
                 bias: bool = True):
        super().__init__()
        shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
        if not shape or any((not isinstance(s, int)) or s < 1 for s in shape):
            raise ValueError(f"normalized_shape must be a positive int or a tuple of them, got {normalized_shape!r}")
        if not (isinstance(eps, (int, float)) and eps >= 0):
            raise ValueError(f"eps must be a non-negative number, got {eps!r}")
        self.normalized_shape, self.eps, self.elementwise_affine = shape, float(eps), elementwise_affine
        if elementwise_affine:
            self.weight = nn.Parameter(torch.ones(shape))
            self.bias = nn.Parameter(torch.zeros(shape)) if bias else None
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)

    def reset_parameters(self) -> None:
        with torch.no_grad():
            if self.weight is not None:
                self.weight.fill_(1.0)
            if self.bias is not None:
                self.bias.zero_()

    def forward(self, x: Tensor) -> Tensor:
        shape = self.normalized_shape
        k = len(shape)
        if x.shape[-k:] != shape:  # a torch.Size is a tuple
            raise ValueError(f"LayerNorm{shape} got an input of shape {tuple(x.shape)}; its trailing "
                             f"dimensions must equal normalized_shape")
        weight, bias = self.weight, self.bias
        if _SWITCH.fast:
            # the C++ operator: the same kernels as _LayerNormFn, behind an autograd node of torch's own
            if _usable(x, weight, bias) and not _transforms_active() and x.dtype in _OPS.DTYPES:
                op = _OPS.get()
                if op is not None:
                    return op(x, weight, bias, self.eps, k)
            return _layer_norm(x, weight, bias, self.eps, tuple(range(x.dim() - k, x.dim())))
        return _normalize_reference(x, weight, bias, tuple(range(x.dim() - k, x.dim())), self.eps)  # the readable form

    def extra_repr(self) -> str:
        return f"{self.normalized_shape}, eps={self.eps}, elementwise_affine={self.elementwise_affine}"


class WeightNorm(nn.Module):
    """The weight-norm map w = g · v / ‖v‖ (Salimans & Kingma 2016), as a parametrization.

    The norm is taken over every axis except ``dim`` (for a ``Linear`` weight of shape
    (out, in) and ``dim=0``: one length g_i per output unit, ‖v_i‖ over its incoming weights);
    ``dim=None`` uses one norm for the whole tensor. ``forward(g, v)`` returns w;
    ``right_inverse(w)`` returns (‖w‖, w), so registering it keeps the layer's function.

    Use :func:`weight_norm` to apply it. Matches ``torch.nn.utils.parametrizations.weight_norm``
    (the same parameters ``parametrizations.weight.original0`` = g and ``original1`` = v).
    """

    def __init__(self, dim: int | None = 0):
        super().__init__()
        self.dim = dim

    def _norm(self, v: Tensor) -> Tensor:
        if self.dim is None:
            return torch.linalg.vector_norm(v)
        dim = self.dim % v.dim()
        others = [d for d in range(v.dim()) if d != dim]
        return torch.linalg.vector_norm(v, dim=others, keepdim=True)

    def forward(self, g: Tensor, v: Tensor) -> Tensor:
        return v * (g / self._norm(v))

    def right_inverse(self, w: Tensor) -> tuple[Tensor, Tensor]:
        return self._norm(w), w


def weight_norm(module: nn.Module, name: str = "weight", dim: int | None = 0) -> nn.Module:
    """Reparametrize ``module.<name>`` as w = g·v/‖v‖ (in place; returns the module).

    Gradient descent then moves the length g and the direction v/‖v‖ separately, which
    Salimans & Kingma (2016) show conditions the problem like batch norm does, without batch
    statistics. Args as ``torch.nn.utils.parametrizations.weight_norm`` (``dim=0``: one g per
    output unit). Note: PyTorch's older ``torch.nn.utils.weight_norm`` names the parameters
    ``weight_g``/``weight_v``; this follows the newer parametrization API.
    """
    if not isinstance(getattr(module, name, None), Tensor):
        raise ValueError(f"{type(module).__name__} has no tensor {name!r} to reparametrize")
    parametrize.register_parametrization(module, name, WeightNorm(dim), unsafe=True)
    return module


def remove_weight_norm(module: nn.Module, name: str = "weight") -> nn.Module:
    """Fold g·v/‖v‖ back into a plain parameter ``module.<name>``."""
    parametrize.remove_parametrizations(module, name, leave_parametrized=True)
    return module
