"""Train M models of one architecture as one batched model, each computing what it computes alone.

A sweep over learning rates or seeds trains many small networks of the same shape. One at a time,
each step is a handful of tiny kernels and the time goes to Python and kernel-launch overhead.
Batched, one kernel per layer serves all members. Two engines do it:

``vmap`` (any model the builders make: CNNs, batch/layer norm, dropout, residual blocks)
    ``torch.func``: the members' solo-built models are stacked (``stack_module_state``: every
    parameter and buffer becomes one ``(M, ...)`` tensor) and a base copy of the architecture on
    the ``meta`` device runs them all, ``vmap(functional_call(base, (params, buffers), x))``.
    Batch norm keeps per-member running statistics (its buffers are stacked and updated in place
    row by row under ``vmap``); dropout masks are drawn per member from a generator in the state
    of that member's solo run (see the section "any model" below for what is exact where).
``stack`` (plain MLPs without schedules or callbacks: the fastest path)
    Member k's layer-l weights are row k of a stacked tensor and one batched matrix product per
    layer serves all members. With a fused update, cross-entropy on class indices and a ReLU,
    tanh or sigmoid (:class:`_FlatMLP`), all parameters of all members live in one flat buffer,
    activations are feature-major and the step is written out by hand — no autograd, one update
    over the whole buffer::

        hᵀ[l+1] = act(bmm(W[l], hᵀ[l]) + b[l])        hᵀ: (M, width, B), W: (M, out, in)

    otherwise autograd differentiates ``h[l+1] = act(baddbmm(b[l], h[l], Wᵀ[l]))``.

Each member keeps its own everything:

- **initialization**: member k's solo model is built exactly as :func:`run_experiment` builds it
  (seeded by its config's seed, through the runner's ``build_data``/``build_model`` and the
  catalog's initializer) and its weights are stacked; at the end they are copied back, so the
  result *is* that solo model.
- **data and data order**: its own data set (the seed also draws the toy data and its split) and
  its own ``torch.Generator`` seeded as :func:`trainlab.fit` seeds it, drawing one
  ``randperm`` per epoch exactly as :class:`~trainlab.data.batches.Batches` does.
- **hyperparameters**: read from its own optimizer (built by the catalog from its config), held as
  ``(M, 1, 1)`` columns that broadcast over the members' rows; a schedule (the config's
  ``schedule``, built as the runner builds it) drives each member's own optimizer, and the lr
  column follows it (re-read after the schedule's hooks whenever one is set).
- **callbacks**: early stopping runs on each member's own loop at every epoch end; a member that
  stops keeps its state from then on (its own model holds it; its row of the batch is ignored).
- **loss**: the objective is the sum of the members' mean losses; member k's parameters appear only
  in its own term, so its gradient is exactly the gradient of its own loss.

Two ways to update (chosen per batch, ``mode="auto"``):

``fused``
    All members' parameters are stepped together by one update rule (:class:`BatchedSGD`,
    :class:`BatchedAdam`: the formulas of ``torch.optim.SGD`` / ``Adam`` / ``AdamW`` with
    per-member hyperparameters). Used only when a probe shows that the rule reproduces the
    catalog's optimizer for every member's settings (a few steps in float64 on random gradients,
    see :func:`probe_optimizer`), so a new or changed optimizer can never be silently replaced by
    a different formula.
``per_member``
    The forward and backward passes are batched, and each member's own optimizer (any
    ``torch.optim.Optimizer``, with gradient transformations) steps its own parameters. Works for
    every optimizer that evaluates the closure once per step.

Runs that cannot be batched (see :func:`why_not_batchable_config` and :func:`why_not_batchable`:
augmentation, file-writing callbacks, DropConnect, weight norm, layers that do not run under
``vmap``; on the CPU, CNNs unless ``batch_convs_on_cpu``) train alone through
:func:`run_experiment`, so :func:`train_group` always returns one result per config, and its
``info`` says how it was trained and why. Members are chunked so that one batched model stays
within a memory budget (:func:`member_bytes`); ``info["peak_memory_bytes"]`` reports the peak.

Nothing in a step reads from the device: the step losses stay device tensors and are read once
per epoch, which is also when a member whose loss became NaN/Inf is found (it fails with the
epoch and step of its first non-finite loss, as its solo run does).

Differences from training alone: floating-point rounding (a batched product sums in another order),
so parameters agree to ~1e-6 after tens of steps rather than bit for bit; the ``time`` of an epoch
is the batch's epoch time divided by the number of members still training.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch
from torch import Tensor, nn

from trainlab.experiments import catalog
from trainlab.experiments.config import Config, parse_config
from trainlab.experiments.runner import RunResult, Splits, build_training, final_metrics
from trainlab.experiments.store import canonical_json
from trainlab.losses import Loss
from trainlab.nn.models import MLP, Block
from trainlab.nn.pooling import MaxPool2d
from trainlab.train.callbacks import History
from trainlab.train.loop import NonFiniteLossError, default_device
from trainlab.train.rng import GLOBAL_RNG_LOCK, manual_seed

# stacked copies of the training data above this size are split into several batches
MAX_STACKED_DATA_BYTES = 1 << 30
_MALLOC_TUNED = False


def keep_freed_memory() -> bool:
    """Ask glibc's ``malloc`` to keep freed memory for reuse instead of returning it to the system.

    A batched step allocates and frees tensors of a few hundred kilobytes. glibc serves such
    blocks with fresh ``mmap``s and returns freed heap tops to the system, so every step pays
    ~130 page faults (the kernel zero-fills each new page) — about a fifth of the step's time for
    32 MLPs 2-64-64-2. Raising the mmap and trim thresholds (``mallopt``) makes freed blocks
    reusable: ~0 faults per step. It is process-wide (the process keeps up to 256 MB it no longer
    uses), so it is called by the processes trainlab starts for sweeps (the ``trainlab sweep``
    command, sweep workers), not by :func:`train_group`. Returns whether it applied (glibc only).
    """
    global _MALLOC_TUNED
    if _MALLOC_TUNED:
        return True
    try:
        import ctypes
        import ctypes.util

        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's malloc.h
    _MALLOC_TUNED = bool(mallopt(M_MMAP_THRESHOLD, 1 << 26)) and bool(mallopt(M_TRIM_THRESHOLD, 1 << 28))
    return _MALLOC_TUNED


# ---------------------------------------------------------------------------------------------
# which runs can be batched


def batch_key(cfg: Config, *, batch_convs_on_cpu: bool = False) -> str | None:
    """A key shared by configs that may train as one batch, or ``None`` when ``cfg`` cannot.

    The key holds what members must share: the model spec, loss, training settings (epochs, batch
    size, order, device), the optimizer's name and transformations, and the data set's name and
    split. What may differ: seed, initializer, optimizer hyperparameters, data arguments (noise,
    ...). Members whose data or parameters still differ in shape are split apart later.
    """
    if why_not_batchable_config(cfg, batch_convs_on_cpu=batch_convs_on_cpu) is not None:
        return None
    key = {"model": cfg.model.model_dump(mode="json"), "loss": cfg.loss.model_dump(mode="json"),
           "train": cfg.train.model_dump(mode="json"), "optimizer": cfg.optimizer.name,
           "transforms": [t.model_dump(mode="json") for t in cfg.transforms],
           "data": [cfg.data.name, cfg.data.split]}
    return canonical_json(key)


CONVS_ON_CPU = ("convolutions on the CPU: vmap's grouped convolutions are slower than one model at a "
                "time (batch_convs_on_cpu=True batches them anyway)")


def why_not_batchable_config(cfg: Config, *, batch_convs_on_cpu: bool = False) -> str | None:
    """Why the config alone rules out batching (``None``: it may batch; the model is checked later).

    Any model the builders make may batch (CNNs, batch/layer norm, dropout, residual blocks), with
    a schedule and epoch-end callbacks (early stopping); the model itself must then run under
    ``vmap`` (:func:`why_not_batchable`). A CNN on the CPU trains alone unless
    ``batch_convs_on_cpu`` (see :func:`train_group`), so a sweep's workers share such runs out.
    """
    from trainlab.nn.models import CNN

    builder = catalog.MODELS.get(cfg.model.kind)
    device = torch.device(cfg.train.device) if cfg.train.device else default_device()
    if (not batch_convs_on_cpu and device.type == "cpu" and isinstance(builder, type)
            and issubclass(builder, CNN)):
        return CONVS_ON_CPU
    if cfg.model.kind == "rnn":
        return "model kind 'rnn' (recurrent models train alone)"
    if cfg.model.pretrained_dir is not None or cfg.model.freeze_layers:
        return "model.pretrained / model.freeze is set (transfer learning loads and freezes one run's model)"
    if cfg.model.sync:
        return "model.sync is set (synchronized batch norm is for many processes)"
    other = [c.name for c in cfg.callbacks if c.name not in BATCHABLE_CALLBACKS]
    if other:
        return f"callback {other[0]!r} acts on one run's loop (batched: {', '.join(sorted(BATCHABLE_CALLBACKS))})"
    if cfg.augment:
        return "augmentation draws from the global RNG"
    # sections added to configs later are batched only once this module knows them: any other
    # field must keep its default
    for name, fld in type(cfg).model_fields.items():
        if name in _KNOWN_FIELDS:
            continue
        default = fld.get_default(call_default_factory=True)
        if getattr(cfg, name) != default:
            return f"config field {name!r} is set (batched training does not handle it)"
    return None


# config sections the batched trainer handles; diagnostics observe a run without changing it and
# are not recorded for batched members
_KNOWN_FIELDS = frozenset({"name", "seed", "data", "model", "init", "loss", "optimizer", "transforms",
                           "schedule", "train", "callbacks", "augment", "diagnostics"})


def _is_elementwise(act: nn.Module) -> bool:
    # a parameter-free module that gives the same numbers whatever the shape of its input can be
    # applied to a (M, B, H) stack (ReLU, tanh, GELU ...); softmax-like or learnable ones cannot
    if any(True for _ in act.parameters()) or any(True for _ in act.buffers()):
        return False
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 5, generator=g) * 3
    try:
        with torch.no_grad():
            a = act(x)
            b = act(x.reshape(-1)).reshape(2, 3, 5)
            c = act(x.reshape(5, 6)).reshape(2, 3, 5)
    except Exception:
        return False
    return a.shape == x.shape and torch.equal(a, b) and torch.equal(a, c)


def why_not_stackable(model: nn.Module) -> str | None:
    """Why this built model cannot take the hand-stacked MLP path (``None``: it can): plain
    ``Linear → activation`` blocks only, one ``baddbmm`` per layer (see the module docstring)."""
    if type(model) is not MLP:
        return f"{type(model).__name__} is not trainlab's MLP"
    from torch.nn.utils import parametrize

    for i, block in enumerate(model.blocks):
        names = [n for n, _ in block.named_children()]
        if names != ["linear", "act"] or type(block) is not Block:
            return f"block {i} has {names} (only linear + activation are stacked by hand)"
        if not _is_elementwise(block.act):
            return f"activation {block.act!r} is not a parameter-free elementwise function"
    for i, lin in enumerate(_linears(model)):
        # exactly nn.Linear: subclasses (DropConnect) and reparametrizations (weight norm) compute
        # something else from their parameters
        if type(lin) is not nn.Linear or parametrize.is_parametrized(lin) or lin.bias is None:
            return f"layer {i} is {type(lin).__name__}{' without bias' if lin.bias is None else ''}, not a plain Linear"
    return None


def why_not_batchable(model: nn.Module, example: Tensor | None = None) -> str | None:
    """Why this built model cannot be trained batched (``None``: it can).

    A plain MLP takes the hand-stacked path; any other model must run under ``vmap``
    (:func:`why_not_vmappable`, checked on ``example`` inputs: default zeros of the model's
    ``in_features`` or ``in_shape``).
    """
    if why_not_stackable(model) is None:
        return None
    if example is None:
        shape = getattr(model, "in_shape", None) or ((model.in_features,) if hasattr(model, "in_features") else None)
        if shape is None:
            return f"{type(model).__name__}: no example input to check it under vmap"
        example = torch.zeros(4, *shape, dtype=next(model.parameters()).dtype)
    return why_not_vmappable(model, example)


def _linears(model: MLP) -> list[nn.Linear]:
    return [b.linear for b in model.blocks] + [model.out]


# ---------------------------------------------------------------------------------------------
# the batched update rules


def _column(values: Sequence[float], like: Tensor, dtype=None, spread: Callable[[Tensor], Tensor] | None = None
            ) -> Tensor:
    """Per-member hyperparameters as an (M, 1, 1) column: it broadcasts over every member's
    stacked (M, out, in) weights and (M, 1, out) biases.

    ``spread`` lays the (M,) values out another way (one value per element of a flat buffer that
    holds all members' parameters, see :class:`_FlatMLP`). A value shared by every member is one
    0-d tensor instead: it broadcasts the same, and the update reads no column at all.
    """
    col = torch.tensor([float(v) for v in values], dtype=dtype or like.dtype, device=like.device)
    if len(values) > 0 and all(float(v) == float(values[0]) for v in values):
        return col[0].clone()
    return spread(col) if spread is not None else col.view(-1, 1, 1)


class BatchedSGD:
    """Stochastic gradient descent with momentum, Nesterov momentum and weight decay, M members at once.

    For member k with learning rate η, momentum μ, dampening τ and weight decay λ (PyTorch's
    ``torch.optim.SGD`` rule, Sutskever et al. 2013 for the momentum form)::

        g = g + λ·p                          (L2 weight decay)
        b = g                                 on the first step, then
        b = μ·b + (1 − τ)·g
        d = g + μ·b   if Nesterov, else   d = b        (d = g when μ = 0)
        p = p − η·d

    Args:
        groups: one dict per member with ``lr``, ``momentum``, ``dampening``, ``weight_decay``,
            ``nesterov`` (an optimizer's ``param_groups[0]``; defaults as PyTorch's).
        like: a tensor with the parameters' dtype and device.

    Hyperparameters are (M, 1, 1) columns; :meth:`step` updates a list of stacked parameter
    tensors (member k in row k of each) in place. With ``spread`` (see :func:`_column`) they take
    the layout that function gives them instead, e.g. one flat buffer of all parameters.
    """

    def __init__(self, groups: Sequence[dict], like: Tensor, spread: Callable[[Tensor], Tensor] | None = None):
        self.spread = spread
        self.lr = _column([g["lr"] for g in groups], like, spread=spread)
        self.momentum = _column([g.get("momentum", 0.0) for g in groups], like, spread=spread)
        self.weight_decay = _column([g.get("weight_decay", 0.0) for g in groups], like, spread=spread)
        self.one_minus_dampening = _column([1.0 - g.get("dampening", 0.0) for g in groups], like, spread=spread)
        self.nesterov = _column([bool(g.get("nesterov", False)) for g in groups], like, spread=spread) != 0
        self.has_momentum = self.momentum != 0
        self.any_decay = bool((self.weight_decay != 0).any())
        self.any_momentum = bool(self.has_momentum.any())
        self.all_momentum = bool(self.has_momentum.all())
        self.any_nesterov = bool(self.nesterov.any())
        self.no_dampening = bool((self.one_minus_dampening == 1).all())
        self.neg_lr = -self.lr
        self.buf: list[Tensor] | None = None

    def set_lr(self, lrs: Sequence[float]) -> None:
        """New per-member learning rates (a schedule moved them); the momentum buffers are kept."""
        self.lr = _column(lrs, self.lr, spread=self.spread)
        self.neg_lr = -self.lr

    @torch.no_grad()
    def step(self, params: Sequence[Tensor], grads: Sequence[Tensor]) -> None:
        first = self.buf is None
        if first:
            self.buf = [None] * len(params)
        for i, (p, g) in enumerate(zip(params, grads)):
            if self.any_decay:
                g = g + self.weight_decay * p
            d = g
            if self.any_momentum:
                if first:
                    self.buf[i] = g.clone()
                elif self.no_dampening:  # b = μ·b + g, in place (the common case, fewer passes)
                    self.buf[i].mul_(self.momentum).add_(g)
                else:
                    self.buf[i] = self.momentum * self.buf[i] + self.one_minus_dampening * g
                b = self.buf[i]
                d = torch.where(self.nesterov, g + self.momentum * b, b) if self.any_nesterov else b
                if not self.all_momentum:
                    d = torch.where(self.has_momentum, d, g)
            p.addcmul_(self.neg_lr, d)  # p = p − η·d


class BatchedAdam:
    """Adam (Kingma & Ba 2015, Algorithm 1), AMSGrad and AdamW's decoupled decay, M members at once.

    For member k with learning rate η, betas β₁, β₂, ε and weight decay λ, at step t::

        g = g + λ·p                           (Adam: L2 penalty in the gradient)
        p = p·(1 − η·λ)                       (AdamW: decoupled decay, Loshchilov & Hutter 2019)
        m = β₁·m + (1 − β₁)·g
        v = β₂·v + (1 − β₂)·g²
        v_max = max(v_max, v)                 (AMSGrad: v below is v_max)
        m̂ = m / (1 − β₁ᵗ),   v̂ = v / (1 − β₂ᵗ)
        p = p − η·m̂ / (√v̂ + ε)

    The last line is evaluated as ``p − (η/(1−β₁ᵗ))·m / (√v/√(1−β₂ᵗ) + ε)``, PyTorch's grouping
    (the same number, rounded the same way), with the bias corrections in float64: in float32,
    1 − 0.999¹ already loses five digits.

    Args:
        groups: one dict per member with ``lr``, ``betas``, ``eps``, ``weight_decay``, ``amsgrad``.
        like: a tensor with the parameters' dtype and device.
        decoupled: AdamW's decay (True) or Adam's L2 penalty (False), for all members.
    """

    def __init__(self, groups: Sequence[dict], like: Tensor, decoupled: bool,
                 spread: Callable[[Tensor], Tensor] | None = None):
        f64 = torch.float64
        self.decoupled, self.spread = decoupled, spread
        self.lr64 = _column([g["lr"] for g in groups], like, f64, spread)
        self.beta1_64 = _column([g.get("betas", (0.9, 0.999))[0] for g in groups], like, f64, spread)
        self.beta2_64 = _column([g.get("betas", (0.9, 0.999))[1] for g in groups], like, f64, spread)
        self.beta2 = self.beta2_64.to(like.dtype)
        self.one_minus_beta1 = (1 - self.beta1_64).to(like.dtype)
        self.one_minus_beta2 = (1 - self.beta2_64).to(like.dtype)
        self.eps = _column([g.get("eps", 1e-8) for g in groups], like, spread=spread)
        self.weight_decay = _column([g.get("weight_decay", 0.0) for g in groups], like, spread=spread)
        self.wd64 = _column([g.get("weight_decay", 0.0) for g in groups], like, f64, spread)
        self.decay_factor = (1 - self.lr64 * self.wd64).to(like.dtype)
        self.any_decay = bool((self.weight_decay != 0).any())
        amsgrad = {bool(g.get("amsgrad", False)) for g in groups}
        if len(amsgrad) > 1:
            raise ValueError("BatchedAdam: amsgrad must be the same for every member")
        self.amsgrad = amsgrad.pop()
        self.t = 0
        self.m: list[Tensor] = []
        self.v: list[Tensor] = []
        self.v_max: list[Tensor] = []

    def set_lr(self, lrs: Sequence[float]) -> None:
        """New per-member learning rates (a schedule moved them); the moments are kept."""
        self.lr64 = _column(lrs, self.lr64, spread=self.spread)
        self.decay_factor = (1 - self.lr64 * self.wd64).to(self.eps.dtype)

    @torch.no_grad()
    def step(self, params: Sequence[Tensor], grads: Sequence[Tensor]) -> None:
        if not self.m:
            self.m = [torch.zeros_like(p) for p in params]
            self.v = [torch.zeros_like(p) for p in params]
            self.v_max = [torch.zeros_like(p) for p in params] if self.amsgrad else []
        self.t += 1
        bias_correction1 = 1 - self.beta1_64 ** self.t
        bias_correction2 = 1 - self.beta2_64 ** self.t
        step_size = (self.lr64 / bias_correction1).to(params[0].dtype)
        bias_correction2_sqrt = bias_correction2.sqrt().to(params[0].dtype)
        for i, (p, g) in enumerate(zip(params, grads)):
            if self.any_decay:
                if self.decoupled:
                    p.mul_(self.decay_factor)
                else:
                    g = g + self.weight_decay * p
            m = self.m[i].lerp_(g, self.one_minus_beta1)                           # m = β₁·m + (1 − β₁)·g
            v = self.v[i].mul_(self.beta2).addcmul_(self.one_minus_beta2 * g, g)   # v = β₂·v + (1 − β₂)·g²
            if self.amsgrad:
                v = torch.maximum(self.v_max[i], v, out=self.v_max[i])
            denom = v.sqrt().div_(bias_correction2_sqrt).add_(self.eps)             # √v̂ + ε, up to the factor
            p.sub_(step_size * m / denom)                                           # p = p − η·m̂/(√v̂ + ε)


FusedRule = Callable[..., "BatchedSGD | BatchedAdam"]  # (groups, like, spread=None) -> rule
_FUSED_RULES: dict[str, FusedRule] = {
    "sgd": lambda groups, like, spread=None: BatchedSGD(groups, like, spread),
    "adam": lambda groups, like, spread=None: BatchedAdam(groups, like, decoupled=False, spread=spread),
    "adamw": lambda groups, like, spread=None: BatchedAdam(groups, like, decoupled=True, spread=spread),
}
# flags that must be off (or unset) for the fused rules; they do not change the math when off
_OFF_FLAGS = ("maximize", "differentiable")
_probe_cache: dict[str, tuple[str | None, int]] = {}


def _rule_family(optimizer: torch.optim.Optimizer) -> str | None:
    if len(optimizer.param_groups) != 1:
        return None
    group = optimizer.param_groups[0]
    if any(group.get(flag) for flag in _OFF_FLAGS):
        return None
    if "betas" in group:
        decoupled = bool(group.get("decoupled_weight_decay")) or "adamw" in type(optimizer).__name__.lower()
        return "adamw" if decoupled else "adam"
    if "momentum" in group and "nesterov" in group:
        return "sgd"
    return None


def probe_optimizer(cfg: Config) -> tuple[str | None, int]:
    """``(fused rule name or None, closure calls per step)`` for ``cfg``'s optimizer.

    Builds the optimizer as the runner does (catalog name, arguments, transformations) over two
    float64 parameters, feeds it five steps of seeded random gradients through a counting closure,
    and runs the candidate fused rule on the same gradients. The rule is accepted only when every
    step agrees to 1e-10 (relative). Cached per optimizer spec.
    """
    spec = canonical_json([cfg.optimizer.name, cfg.optimizer.kwargs, [(t.name, t.kwargs) for t in cfg.transforms]])
    if spec in _probe_cache:
        return _probe_cache[spec]
    g = torch.Generator().manual_seed(1234)
    w = torch.randn(3, 4, generator=g, dtype=torch.float64).requires_grad_()
    b = torch.randn(4, generator=g, dtype=torch.float64).requires_grad_()
    grads = [(torch.randn(3, 4, generator=g, dtype=torch.float64), torch.randn(4, generator=g, dtype=torch.float64))
             for _ in range(5)]
    try:
        opt = catalog.build_optimizer([w, b], cfg.optimizer.name, cfg.optimizer.kwargs,
                                      [(t.name, t.kwargs) for t in cfg.transforms])
    except Exception:
        _probe_cache[spec] = (None, 0)
        return _probe_cache[spec]
    family = _rule_family(opt) if not cfg.transforms else None
    stacked = [w.detach().clone().unsqueeze(0), b.detach().clone().view(1, 1, -1)]  # M = 1
    rule = _FUSED_RULES[family]([opt.param_groups[0]], stacked[0]) if family else None
    calls, agree = 0, rule is not None
    for step, (gw, gb) in enumerate(grads):
        def closure():
            nonlocal calls
            calls += 1
            w.grad, b.grad = gw.clone(), gb.clone()
            return torch.zeros((), dtype=torch.float64)
        try:
            opt.step(closure)
        except Exception:
            _probe_cache[spec] = (None, 0)
            return _probe_cache[spec]
        if rule is not None:
            rule.step(stacked, [gw.unsqueeze(0), gb.view(1, 1, -1)])
            agree = agree and torch.allclose(stacked[0][0], w.detach(), rtol=1e-10, atol=1e-12) \
                and torch.allclose(stacked[1][0, 0], b.detach(), rtol=1e-10, atol=1e-12)
    per_step = calls // len(grads) if calls % len(grads) == 0 else -1
    _probe_cache[spec] = (family if agree and per_step == 1 else None, per_step)
    return _probe_cache[spec]


# ---------------------------------------------------------------------------------------------
# members


@dataclass
class Member:
    """One run inside a batch: its config and the pieces :func:`run_experiment` would build for it."""

    config: Config
    data: Splits
    loss: Loss
    model: nn.Module
    optimizer: torch.optim.Optimizer
    generator: torch.Generator
    device: torch.device
    error: BaseException | None = None
    history: History = field(default_factory=History)
    recorder: object | None = None          # the run's DiagnosticsRecorder (cfg.diagnostics), if any
    loop: "_MemberLoop | None" = None


class _MemberLoop:
    """What a callback reads from :class:`~trainlab.train.loop.Loop`, for one member of a batch.

    Only the diagnostics recorder is driven through it (it observes a run without changing it);
    the member's ``model`` holds the member's current weights whenever a hook is called.
    """

    def __init__(self, member: "Member", steps_per_epoch: int):
        from types import SimpleNamespace

        self.model, self.optimizer, self.loss_fn = member.model, member.optimizer, member.loss
        self.train = SimpleNamespace(data=member.data.train, generator=member.generator)
        self.val, self.device, self.history = member.data.val, member.device, member.history
        self.generator = member.generator
        self.epochs, self.steps_per_epoch = member.config.train.epochs, steps_per_epoch
        self.epoch = self.step = 0
        self.stop_training = False


def prepare_member(cfg: Config, loaded: dict | None = None) -> Member:
    """Build data, loss, model, initialization and optimizer in :func:`run_experiment`'s order.

    The order matters: the global RNG is seeded with the run's seed and then consumed by the data
    loader (if it draws from it), the model's initialization and the initializer, exactly as in a
    solo run; :func:`trainlab.fit` then seeds the data-order generator with the same seed.

    ``loaded`` (a dict the caller keeps across members) holds the data sets built so far, by data
    section and seed: a member whose data an earlier member built takes it from there instead of
    loading it again (8 MNIST members of 4 seeds: 4 loads, not 8). Only data whose building drew
    nothing from the global RNG is kept, so the model's initialization sees the stream it sees in
    a solo run; a loader that does draw is noted and loads for every member.
    """
    device = torch.device(cfg.train.device) if cfg.train.device else default_device()
    data = None
    if loaded is not None:
        spec = canonical_json(cfg.data.model_dump(mode="json"))
        key = canonical_json([spec, cfg.seed])
        data = loaded.get(key)
        if data is None and spec not in loaded:
            from trainlab.experiments.runner import build_data

            with GLOBAL_RNG_LOCK:
                manual_seed(cfg.seed)  # as build_training seeds before loading
                before = torch.random.get_rng_state()
                data = build_data(cfg)
                if torch.equal(torch.random.get_rng_state(), before):
                    loaded[key] = data
                else:  # the loader draws from the global RNG: build_training loads it in the stream
                    loaded[spec], data = True, None
    data, loss, model, optimizer = build_training(cfg, device, data)
    loss.check_pairing(model)
    manual_seed(cfg.seed)  # as fit does before training (leaves the global RNG where a solo run has it)
    generator = torch.Generator()
    generator.manual_seed(cfg.seed)
    data = Splits(*(d.to(device) if d is not None else None
                    for d in (data.train, data.val, data.test, data.shifted_test)))
    recorder = None
    if getattr(cfg, "diagnostics", None) is not None:  # as the runner builds it
        from trainlab.diagnostics import DiagnosticsRecorder
        d = cfg.diagnostics
        recorder = DiagnosticsRecorder(every=d.every, probe=d.probe, spectra=d.spectra, seed=cfg.seed)
    return Member(cfg, data, loss, model, optimizer, generator, device, recorder=recorder)


def _signature(m: Member) -> tuple:
    # members of one batch must agree on every shape and on everything they share in the loop
    shapes = tuple(tuple(p.shape) for p in m.model.parameters())
    acts = tuple(repr(b.act) for b in m.model.blocks) if isinstance(m.model, MLP) else ()
    d = m.data

    def desc(ds):
        return None if ds is None else (len(ds), tuple(ds.X.shape[1:]), ds.X.dtype, tuple(ds.y.shape[1:]), ds.y.dtype)

    t = m.config.train
    return (shapes, acts, desc(d.train), desc(d.val), desc(d.test), m.loss.name, m.loss.label_smoothing,
            t.epochs, t.batch_size, t.shuffle, t.drop_last, str(m.device))


# ---------------------------------------------------------------------------------------------
# the batched model, loss and data


class _Stack:
    """Member tensors stacked along a new first dimension (shared once when all are equal)."""

    def __init__(self, tensors: Sequence[Tensor]):
        first = tensors[0]
        self.shared = all(t is first or torch.equal(t, first) for t in tensors[1:])
        self.data = first if self.shared else torch.stack(list(tensors))
        # member k's rows start at k·n in the (M·n, ...) view of the stack
        self.offsets = None if self.shared else (torch.arange(len(tensors), device=first.device) * len(first)).view(-1, 1)

    def take(self, idx: Tensor) -> Tensor:
        """Rows ``idx`` (M, B) of each member's tensor: (M, B, ...)."""
        # index_select: ~10x faster than advanced indexing for these sizes
        if self.shared:
            return self.data.index_select(0, idx.reshape(-1)).view(*idx.shape, *self.data.shape[1:])
        rows = (idx + self.offsets).reshape(-1)  # member k's row i is row k·n + i of the flattened stack
        return self.data.flatten(0, 1).index_select(0, rows).view(*idx.shape, *self.data.shape[2:])

    def full(self, m: int) -> Tensor:
        return self.data.unsqueeze(0).expand(m, *self.data.shape) if self.shared else self.data


def _forward(x: Tensor, weights: Sequence[Tensor], biases: Sequence[Tensor], acts: Sequence[nn.Module]) -> Tensor:
    """(M, B, in) → (M, B, out): one ``baddbmm`` per layer, activations between.

    ``weights`` are the members' Wᵀ, stacked: (M, in, out) each, contiguous, so every product
    reads its right operand in the layout the batched GEMM wants (a transposed view is ~20% slower).
    """
    h = x.flatten(2)
    for i, (w, b) in enumerate(zip(weights, biases)):
        h = torch.baddbmm(b, h, w)   # nn.Linear's x·Wᵀ + b, per member
        if i < len(acts):
            h = acts[i](h)
    return h


# d act / d input from the activation's output h, for the hand-written backward of _FlatMLP: the
# kernels autograd runs for torch.relu / tanh / sigmoid, so the gradients are autograd's numbers
_ACTIVATION_BACKWARD = {
    # relu'(0) = 0; written over g (the backward's fresh product), saving a buffer per layer
    torch.relu: (torch.relu_, lambda g, h: torch.ops.aten.threshold_backward.grad_input(g, h, 0, grad_input=g)),
    torch.tanh: (torch.tanh_, torch.ops.aten.tanh_backward),                             # 1 − h²
    torch.sigmoid: (torch.sigmoid_, torch.ops.aten.sigmoid_backward),                    # h·(1 − h)
}


class _FlatMLP:
    """M stacked MLPs whose parameters live in one flat buffer, trained without autograd.

    Layer l's weights of all members are ``flat[o:o + M·out·in].view(M, out, in)`` (each member's
    ``nn.Linear.weight``) and its biases the next ``(M, out, 1)`` block; the gradients have the
    same layout in ``grad``, so one fused update (:class:`BatchedSGD`, :class:`BatchedAdam` with
    hyperparameters spread over the buffer, see :meth:`spread`) steps all members at once.

    Activations are kept feature-major, hᵀ of shape (M, features, B): then every product reads
    its operands in the layout the batched GEMM wants, including the thin ones (a 2-unit output
    layer costs ~10 µs for 32 members instead of ~100 µs through transposed views), the softmax
    runs over the class dimension vectorized along the batch (over a trailing dimension of 2 it
    is ~20× slower) and bias gradients are sums over the innermost dimension.

    :meth:`step` is forward, loss and backward by hand, for cross-entropy on class indices and
    the activations of ``_ACTIVATION_BACKWARD``: for member k with mean loss
    L = −(1/B) Σ_b log softmax(z_b)[y_b] (with label smoothing s the target is
    (1 − s)·onehot + s/C)::

        dL/dzᵀ = (softmax(zᵀ) − targetᵀ) / B
        dW[l] = dhᵀ[l+1] · h[l],   db[l] = Σ_b dhᵀ[l+1],   dhᵀ[l] = (W[l]ᵀ · dhᵀ[l+1]) ⊙ act'(hᵀ[l])

    which is what autograd computes from the same formulas (rounding aside; tested against solo
    runs through autograd).
    """

    def __init__(self, linears: Sequence[Sequence[nn.Linear]], acts: Sequence[Callable]):
        M = len(linears)
        first = linears[0][0].weight
        self.M, self.acts = M, list(acts)
        self.shapes = [(lin.out_features, lin.in_features) for lin in linears[0]]
        sizes = [n for o, i in self.shapes for n in (M * o * i, M * o)]
        self.flat = torch.empty(sum(sizes), dtype=first.dtype, device=first.device)
        self.grad = torch.zeros_like(self.flat)
        offsets = [0]
        for n in sizes:
            offsets.append(offsets[-1] + n)
        self.W, self.B, self.gW, self.gB = [], [], [], []
        for j, (o, i) in enumerate(self.shapes):
            w, b = slice(offsets[2 * j], offsets[2 * j + 1]), slice(offsets[2 * j + 1], offsets[2 * j + 2])
            self.W.append(self.flat[w].view(M, o, i))
            self.B.append(self.flat[b].view(M, o, 1))
            self.gW.append(self.grad[w].view(M, o, i))
            self.gB.append(self.grad[b].view(M, o))
        with torch.no_grad():
            for j in range(len(self.shapes)):
                self.W[j].copy_(torch.stack([ls[j].weight for ls in linears]))
                self.B[j].copy_(torch.stack([ls[j].bias for ls in linears]).unsqueeze(-1))
        # member index of every element of the flat buffer: spreads (M,) hyperparameters over it
        rows = torch.arange(M, device=first.device)
        self.member = torch.cat([rows.repeat_interleave(n // M) for n in sizes])

    @staticmethod
    def supports(loss: Loss, y: Tensor, acts: Sequence[Callable]) -> bool:
        """Whether :meth:`step` computes this loss and these activations by hand."""
        return (loss.name == "cross_entropy" and not y.dtype.is_floating_point
                and all(a in _ACTIVATION_BACKWARD for a in acts))

    def spread(self, column: Tensor) -> Tensor:
        """(M,) per-member values → one value per element of the flat buffer."""
        return column[self.member]

    def stacked(self) -> tuple[list[Tensor], list[Tensor]]:
        """The weights as :func:`_forward` takes them: Wᵀ (M, in, out) and b (M, 1, out), views."""
        return [w.transpose(1, 2) for w in self.W], [b.transpose(1, 2) for b in self.B]

    def copy_to(self, linears: dict[int, Sequence[nn.Linear]]) -> None:
        """Member k's weights back into its own layers ``linears[k]``."""
        with torch.no_grad():
            for k, ls in linears.items():
                for j, lin in enumerate(ls):
                    lin.weight.copy_(self.W[j][k])
                    lin.bias.copy_(self.B[j][k, :, 0])

    def forward_t(self, xt: Tensor) -> list[Tensor]:
        """Inputs ``xt`` (M, in, B), feature-major → [xᵀ, h₁ᵀ, ..., logitsᵀ], each (M, features, B)."""
        hs = [xt]
        for j in range(len(self.shapes) - 1):
            h = torch.baddbmm(self.B[j], self.W[j], hs[-1])
            hs.append(_ACTIVATION_BACKWARD[self.acts[j]][0](h))
        hs.append(torch.baddbmm(self.B[-1], self.W[-1], hs[-1]))
        return hs

    @staticmethod
    def head(zt: Tensor, y: Tensor, label_smoothing: float = 0.0) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Cross-entropy of logits ``zt`` (M, C, B) on classes ``y`` (M, B): ``(mean loss per
        member, correct per member, log-softmax, indices (M, 1, B))``, as :func:`member_losses`
        and :func:`member_correct` compute them."""
        M, C, B = zt.shape
        log_p = torch.log_softmax(zt, dim=1)
        yi = y.long().unsqueeze(1)
        nll = log_p.gather(1, yi).neg_()
        if label_smoothing:
            per = nll.mul_(1 - label_smoothing).sub_(log_p.mean(1, keepdim=True), alpha=label_smoothing)
        else:
            per = nll
        losses = per.view(M, B).mean(1)
        # argmax over classes, the first of equal maxima (argmax's rule), without argmax: over a
        # dimension that is not the innermost one, argmax (and any integer reduction) is ~100x
        # slower than a float amax/amin there
        top = zt.amax(1, keepdim=True)
        classes = torch.arange(C, dtype=zt.dtype, device=zt.device).view(1, C, 1)
        pred = torch.where(zt == top, classes, float(C)).amin(1)
        correct = (pred.long() == y).sum(1)
        return losses, correct, log_p, yi

    @torch.no_grad()
    def evaluate(self, sets: "_EvalSets", label_smoothing: float = 0.0) -> list[dict]:
        """:func:`trainlab.evaluate` of every member on its split (as :meth:`_EvalSets.evaluate`)."""
        n, M = sets.n, sets.m
        total = torch.zeros(M, dtype=torch.float64)
        correct = torch.zeros(M, dtype=torch.long)
        xt_all = sets.features_major()
        for i in range(0, n, 8192):  # fit's evaluate: chunk losses weighted by chunk size
            xt, y = xt_all[:, :, i:i + 8192], sets.Y.full(M)[:, i:i + 8192]
            zt = self.forward_t(xt)[-1]
            losses, c, _, _ = self.head(zt, y, label_smoothing)
            total += losses.double().cpu() * y.shape[1]
            correct += c.cpu()
        total, correct = total.tolist(), correct.tolist()
        return [{"loss": total[k] / max(n, 1), "accuracy": correct[k] / max(n, 1)} for k in range(M)]

    @torch.no_grad()
    def step(self, xt: Tensor, y: Tensor, label_smoothing: float = 0.0) -> tuple[Tensor, Tensor]:
        """Forward, loss and gradients (into :attr:`grad`) for a batch ``xt`` (M, in, B)
        (feature-major), ``y`` (M, B); returns each member's mean loss and correct count, (M,) each."""
        B = xt.shape[2]
        hs = self.forward_t(xt)
        zt = hs.pop()                                         # logits: (M, C, B)
        C = zt.shape[1]
        losses, correct, log_p, yi = self.head(zt, y, label_smoothing)
        g = log_p.exp_()                                      # softmax
        g.scatter_add_(1, yi, torch.full(yi.shape, -(1 - label_smoothing), dtype=g.dtype, device=g.device))
        if label_smoothing:
            g.sub_(label_smoothing / C)
        g.mul_(1.0 / B)
        for j in range(len(self.shapes) - 1, -1, -1):
            out, inp = self.shapes[j]
            torch.sum(g, 2, out=self.gB[j])
            if inp < out:  # dWᵀ = h·dhᵀ: a product with a thin result (in columns) is ~4x slower in MKL
                self.gW[j].copy_(torch.bmm(hs[j], g.transpose(1, 2)).transpose(1, 2))
            else:
                torch.bmm(g, hs[j].transpose(1, 2), out=self.gW[j])
            if j > 0:
                dh = torch.bmm(self.W[j].transpose(1, 2), g)
                g = _ACTIVATION_BACKWARD[self.acts[j - 1]][1](dh, hs[j])
        return losses, correct


def member_losses(loss: Loss, z: Tensor, y: Tensor) -> Tensor:
    """Each member's mean loss over its batch, shape (M,): :class:`Loss` applied per member.

    ``z`` is (M, B, out) and ``y`` (M, B[, ...]); the formulas are those of :mod:`trainlab.losses`.
    """
    m, b = z.shape[:2]
    if loss.name == "cross_entropy":
        log_p = torch.log_softmax(z, dim=-1)  # the fused kernel trainlab's loss uses
        if not y.dtype.is_floating_point:
            nll = -log_p.gather(-1, y.long().unsqueeze(-1)).squeeze(-1)
            if loss.label_smoothing == 0.0:
                return nll.mean(1)
            uniform = -log_p.mean(dim=-1)
            return ((1 - loss.label_smoothing) * nll + loss.label_smoothing * uniform).mean(1)
        if loss.label_smoothing:
            y = (1 - loss.label_smoothing) * y + loss.label_smoothing / z.shape[-1]
        return -(y * log_p).sum(dim=-1).mean(1)
    if loss.name == "bce":
        y = y.reshape(z.shape).to(z.dtype)
        return (z.clamp_min(0) - z * y + torch.log1p(torch.exp(-z.abs()))).reshape(m, -1).mean(1)
    y = y.reshape(z.shape) if y.numel() == z.numel() else y
    return (z - y).square().reshape(m, -1).mean(1)


def member_correct(loss: Loss, z: Tensor, y: Tensor) -> Tensor | None:
    """Correct predictions per member, shape (M,) (``None`` for regression), as :meth:`Loss.correct`."""
    if not loss.is_classification:
        return None
    if y.dtype.is_floating_point and y.dim() == 3 and y.shape[-1] > 1:
        y = y.argmax(dim=-1)
    pred = (z[..., 0] > 0).long() if loss.name == "bce" else z.argmax(dim=-1)
    return (pred == y.reshape(pred.shape).long()).sum(dim=1)


class _EvalSets:
    """One split (``"val"``, ``"train"``) of every member, stacked once, for evaluation each epoch."""

    def __init__(self, members: Sequence[Member], which: str):
        sets = [getattr(m.data, which) for m in members]
        self.X, self.Y = _Stack([s.X for s in sets]), _Stack([s.y for s in sets])
        self.n, self.m, self.loss = len(sets[0]), len(members), members[0].loss
        self._xt: Tensor | None = None

    def features_major(self) -> Tensor:
        """The inputs as (M, features, n), contiguous per member (one shared copy when all members'
        inputs are equal): the layout :class:`_FlatMLP` computes in, made once per split."""
        if self._xt is None:
            if self.X.shared:
                self._xt = self.X.data.flatten(1).t().contiguous().unsqueeze(0).expand(self.m, -1, -1)
            else:
                self._xt = self.X.data.flatten(2).transpose(1, 2).contiguous()
        return self._xt

    @torch.no_grad()
    def evaluate(self, weights, biases, acts, chunk: int = 8192) -> list[dict]:
        """:func:`trainlab.evaluate` for every member at once (loss mean over samples, accuracy)."""
        n, M = self.n, self.m
        total = torch.zeros(M, dtype=torch.float64)
        correct = torch.zeros(M, dtype=torch.long)
        has_acc = False
        for i in range(0, n, chunk):  # fit's evaluate: chunk losses weighted by chunk size
            if n <= chunk:
                x, y = self.X.full(M), self.Y.full(M)
            else:
                x, y = self.X.full(M)[:, i:i + chunk], self.Y.full(M)[:, i:i + chunk]
            # the forward pass in slices whose activations stay in cache (~512 KB: a (32, 64, 64)
            # block), then the loss of the whole chunk at once, reduced exactly as evaluate() does
            width = max(max(w.shape[1:]) for w in weights)
            step = max(16, (1 << 17) // (M * width))
            z = torch.cat([_forward(x[:, j:j + step], weights, biases, acts) for j in range(0, x.shape[1], step)], 1)
            total += member_losses(self.loss, z, y).double().cpu() * x.shape[1]
            c = member_correct(self.loss, z, y)
            if c is not None:
                has_acc = True
                correct += c.cpu()
        out = []
        for k in range(M):
            row = {"loss": float(total[k]) / max(n, 1)}
            if has_acc:
                row["accuracy"] = int(correct[k]) / max(n, 1)
            out.append(row)
        return out


# ---------------------------------------------------------------------------------------------
# training


@dataclass
class MemberOutcome:
    """The result of one config of :func:`train_group`: a :class:`RunResult` or the error it raised."""

    config: Config
    result: RunResult | None
    error: BaseException | None
    info: dict


def train_group(configs: Sequence[Config | dict], *, mode: str = "auto", solo: Callable | None = None,
                progress: Callable[[MemberOutcome], None] | None = None,
                memory_budget: int | None = None, batch_convs_on_cpu: bool = False) -> list[MemberOutcome]:
    """Train every config; those that can share a batched model do, the rest train alone.

    Args:
        configs: configs (or dicts) to train; typically those sharing one :func:`batch_key`.
        mode: ``"auto"`` (fused when the probe accepts the optimizer, else per-member),
            ``"fused"`` or ``"per_member"`` (force one; fused raises when the probe refuses it).
        solo: trains one config alone, ``solo(config) -> RunResult`` (default: the runner's
            ``run_experiment`` without writing a run folder).
        progress: called with each outcome as soon as it exists.
        memory_budget: bytes one batched model may take (estimated by :func:`member_bytes`);
            members beyond it form further batches. Default :data:`MAX_BATCH_BYTES`.
        batch_convs_on_cpu: batch models with convolutions on the CPU too. Off by default: at one
            thread ``vmap`` runs M convolutions as one grouped convolution, which oneDNN computes
            up to 3x slower (forward) than M separate ones, so the convolutions themselves gain
            nothing there; a batched CNN's gain on the CPU comes from the layers around them (batch
            norm with its closed-form backward, max-pool ahead of ReLU) and from its evaluation
            (member by member in cache-sized chunks, pooling ahead of batch norm and activation,
            max-pool without argmax): 8 small MNIST CNNs trained 1.8x faster than one after another
            at one thread (CPU time, on a shared machine). Sweep workers running solo CNNs side by
            side use the cores as well. On a GPU they are always batched (there the per-step
            launch overhead is what M small models pay).

    Returns:
        one :class:`MemberOutcome` per config, in order. ``info`` says how it was trained
        (``{"batched": M, "mode": ...}`` or ``{"batched": 1, "reason": ...}``).
    """
    if mode not in ("auto", "fused", "per_member"):
        raise ValueError(f"mode must be 'auto', 'fused' or 'per_member', got {mode!r}")
    cfgs = [parse_config(c) for c in configs]
    outcomes: list[MemberOutcome | None] = [None] * len(cfgs)

    def emit(i: int, outcome: MemberOutcome) -> None:
        outcomes[i] = outcome
        if progress is not None:
            progress(outcome)

    def run_alone(i: int, reason: str) -> None:
        t0 = time.perf_counter()
        try:
            result = (solo or _run_solo)(cfgs[i])
            emit(i, MemberOutcome(cfgs[i], result, None, {"batched": 1, "reason": reason}))
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as err:  # a failed run is an outcome, not the end of the batch
            emit(i, MemberOutcome(cfgs[i], None, err, {"batched": 1, "reason": reason,
                                                        "wall_time": time.perf_counter() - t0}))

    # group by everything that must be shared, then by shapes once the pieces are built
    members: dict[int, Member] = {}
    groups: dict[tuple, list[int]] = {}
    loaded: dict = {}  # data sets built so far, shared by members of one data section and seed
    for i, cfg in enumerate(cfgs):
        reason = why_not_batchable_config(cfg, batch_convs_on_cpu=batch_convs_on_cpu)
        member = None
        if reason is None:
            try:
                member = prepare_member(cfg, loaded)
            except (KeyboardInterrupt, SystemExit):
                raise
            except BaseException as err:
                emit(i, MemberOutcome(cfg, None, err, {"batched": 1, "reason": "failed to build"}))
                continue
        if reason is not None:
            run_alone(i, reason)
            continue
        members[i] = member
        # the hand-stacked MLP path: plain MLPs whose hyperparameters never change during training
        engine = "stack" if (why_not_stackable(member.model) is None and cfg.schedule is None
                             and not cfg.callbacks) else "vmap"
        key = (batch_key(cfg, batch_convs_on_cpu=batch_convs_on_cpu), _signature(member), engine)
        groups.setdefault(key, []).append(i)

    for key, idx in groups.items():
        if len(idx) == 1:
            members.pop(idx[0])
            run_alone(idx[0], "no other run shares its architecture and data")
            continue
        engine = key[-1]
        if engine == "vmap":
            first = members[idx[0]]
            reason = why_not_vmappable(first.model, first.data.train.X)
            if reason is None and not batch_convs_on_cpu and first.device.type == "cpu" and _has_conv(first.model):
                reason = CONVS_ON_CPU
            if reason is not None:
                for i in idx:
                    members.pop(i)
                    run_alone(i, reason)
                continue
        for chunk in _chunks_by_memory([members[i] for i in idx], idx, memory_budget):
            batch = [members.pop(i) for i in chunk]
            family, calls = probe_optimizer(batch[0].config)
            chosen = mode
            if mode == "auto":
                chosen = "fused" if family and len({_rule_family(m.optimizer) for m in batch}) == 1 else "per_member"
            if chosen == "fused" and not family:
                raise ValueError(f"mode='fused': optimizer {batch[0].config.optimizer.name!r} with these settings "
                                 "has no fused rule that reproduces it; use mode='auto' or 'per_member'")
            if chosen == "per_member" and calls != 1:
                for i in chunk:
                    run_alone(i, f"optimizer {batch[0].config.optimizer.name!r} evaluates the closure "
                                 f"{calls if calls > 0 else 'an unknown number of'} times per step")
                continue
            train = _train_batch if engine == "stack" else _train_vmapped
            for i, outcome in zip(chunk, train(batch, chosen, family)):
                emit(i, outcome)
    return [o for o in outcomes if o is not None]


def _run_solo(cfg: Config) -> RunResult:
    from trainlab.experiments.runner import run_experiment
    return run_experiment(cfg, write=False, verbose=False)


def member_bytes(member: Member) -> tuple[int, int]:
    """``(data bytes, training bytes)`` one member adds to a batched model: its stacked data, and
    its parameters four times over (weights, gradients, two optimizer states) plus twice the
    activations of one training batch (the forward's outputs and their gradients), traced on ``meta``."""
    data = sum(d.X.numel() * d.X.element_size() + d.y.numel() * d.y.element_size()
               for d in (member.data.train, member.data.val, member.data.test) if d is not None)
    params = sum(p.numel() * p.element_size() for p in member.model.parameters())
    from trainlab.data.batches import resolve_batch_size
    bsz = min(resolve_batch_size(member.config.train.batch_size, len(member.data.train)), len(member.data.train))
    try:
        base, _ = _vmap_base(member.model)
        acts = _trace(base, member.data.train.X[:1].expand(bsz, *member.data.train.X.shape[1:]))
    except Exception:  # noqa: BLE001 - a model that cannot be traced on meta: count its parameters only
        acts = 0
    return data, 4 * params + 2 * acts


def _chunks_by_memory(batch: list[Member], idx: list[int], budget: int | None = None) -> list[list[int]]:
    """Split ``idx`` into batched models that each fit ``budget`` bytes (default
    :data:`MAX_BATCH_BYTES`; the stacked data alone within :data:`MAX_STACKED_DATA_BYTES`)."""
    data, train = member_bytes(batch[0])
    budget = MAX_BATCH_BYTES if budget is None else budget
    size = max(1, min(MAX_STACKED_DATA_BYTES // max(data, 1), budget // max(data + train, 1)))
    return [idx[i:i + size] for i in range(0, len(idx), size)]


class _EpochTally:
    """One epoch's step losses, correct counts and batch sizes, kept on the device (nothing in a step
    reads from it); :meth:`read` is the epoch's one read. Both engines use it."""

    def __init__(self):
        self.losses: list[Tensor] = []
        self.correct: list[Tensor] = []
        self.counts: list[int] = []

    def add(self, losses: Tensor, size: int, correct: Tensor | None) -> None:
        self.losses.append(losses)
        self.counts.append(size)
        if correct is not None:
            self.correct.append(correct)

    def read(self, batch: Sequence[Member], alive: list[bool], epoch: int, global_step: int
             ) -> tuple[list[float], list[int] | None, int]:
        """The NaN check and fit's sums: ``(Σ loss·batch size per member in float64, correct per
        member or None, samples seen)``, as Python numbers. A member whose loss turned non-finite
        fails as its solo run would, at the first such step (``alive[k]`` turns False, its
        ``error`` is set)."""
        L = torch.stack(self.losses)
        finite = torch.isfinite(L).cpu()
        sizes = torch.tensor(self.counts, dtype=torch.float64, device=L.device).view(-1, 1)
        total = (L.double() * sizes).sum(0).tolist()
        correct = torch.stack(self.correct).sum(0).tolist() if self.correct else None
        steps = len(self.losses)
        for k in range(len(batch)):
            if alive[k] and not bool(finite[:, k].all()):
                bad = int((~finite[:, k]).nonzero()[0, 0])
                alive[k] = False
                batch[k].error = NonFiniteLossError(float(L[bad, k]), epoch, bad, global_step - steps + bad)
        return total, correct, sum(self.counts)


def _epoch_logs(k: int, member: Member, read: tuple, val: list[dict] | None, elapsed: float) -> dict:
    """Member k's epoch record as :func:`trainlab.fit` writes it, from :meth:`_EpochTally.read`."""
    total, correct, seen = read
    logs = {"loss": total[k] / max(seen, 1)}
    if correct is not None:
        logs["accuracy"] = correct[k] / max(seen, 1)
    if val is not None:
        logs.update({f"val_{key}": v for key, v in val[k].items()})
    logs["lr"] = float(member.optimizer.param_groups[0]["lr"])
    logs["time"] = elapsed
    return logs


def _autograd_step(forward: Callable[[], Tensor], leaves: Sequence[Tensor], loss: Loss, y: Tensor,
                   update: Callable[[Tensor], None], active: Tensor | None = None
                   ) -> tuple[Tensor, Tensor | None]:
    """One batched step through autograd, for both engines: the members' logits ``forward()``
    (M, B, ...), their mean losses, one backward of their sum (member k's parameters only see
    member k's loss; with ``active``, stopped members see none) and ``update(losses)``. Returns
    the losses and correct counts (M,), on the device."""
    for p in leaves:
        p.grad = None
    z = forward()
    losses = member_losses(loss, z, y)
    objective = losses if active is None else torch.where(active, losses, torch.zeros((), device=losses.device))
    objective.sum().backward()
    values = losses.detach()
    update(values)
    return values, member_correct(loss, z.detach(), y)


def _updater(mode: str, rule, batch: Sequence[Member], alive: list[bool]) -> Callable[[Tensor], None]:
    """The update after a backward pass: the fused rule, or each live member's own optimizer
    (its closure returns that member's loss)."""
    if mode == "fused":
        return lambda values: rule.step()

    def per_member(values: Tensor) -> None:
        for k, m in enumerate(batch):
            if alive[k]:
                m.optimizer.step(lambda k=k: values[k])
    return per_member


def _train_batch(batch: list[Member], mode: str, family: str | None) -> list[MemberOutcome]:
    """Train members of identical signature together; returns their outcomes in order.

    Fused, with cross-entropy on class indices and ReLU/tanh/sigmoid: :class:`_FlatMLP` (one flat
    buffer, forward and backward by hand, one update for all). Otherwise stacked leaves through
    autograd: one (M, in, out) leaf per layer (fused) or the members' own parameters stacked in
    the graph (per member).
    """
    t_start = time.perf_counter()
    M = len(batch)
    first = batch[0]
    cfg, device = first.config, first.device
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    loss = first.loss
    # trainlab's activations in plain ops where one exists (the same numbers, no autograd.Function call)
    acts = [_activation_forward(b.act) or b.act for b in first.model.blocks]
    layers = [_linears(m.model) for m in batch]
    shapes = [(lin.out_features, lin.in_features) for lin in layers[0]]
    flat = None
    alive = [True] * M

    if mode == "fused" and _FlatMLP.supports(loss, first.data.train.y, acts):
        flat = _FlatMLP(layers, acts)
        rule = _FUSED_RULES[family]([m.optimizer.param_groups[0] for m in batch], flat.flat, flat.spread)
        leaves: list[Tensor] = []

        def params() -> tuple[list[Tensor], list[Tensor]]:
            return flat.stacked()
    elif mode == "fused":
        # each layer's weights stacked into one (M, in, out) leaf, its biases into one (M, 1, out) leaf
        with torch.no_grad():
            W = [torch.stack([ls[j].weight.t() for ls in layers]).requires_grad_() for j in range(len(shapes))]
            B = [torch.stack([ls[j].bias for ls in layers]).unsqueeze(1).requires_grad_() for j in range(len(shapes))]
        leaves = [t for pair in zip(W, B) for t in pair]
        rule = _RowRule(_FUSED_RULES[family]([m.optimizer.param_groups[0] for m in batch], W[0]), leaves)

        def params() -> tuple[list[Tensor], list[Tensor]]:
            return W, B
    else:
        rule = None
        leaves = [p for ls in layers for lin in ls for p in (lin.weight, lin.bias)]

        def params() -> tuple[list[Tensor], list[Tensor]]:
            ws = [torch.stack([ls[j].weight.t() for ls in layers]) for j in range(len(shapes))]
            bs = [torch.stack([ls[j].bias for ls in layers]).unsqueeze(1) for j in range(len(shapes))]
            return ws, bs
    update = _updater(mode, rule, batch, alive)

    def copy_back(ks) -> None:  # fused: the members' own models get the current stacked weights
        if mode != "fused":
            return
        if flat is not None:
            flat.copy_to({k: layers[k] for k in ks})
            return
        with torch.no_grad():
            for k in ks:
                for j, lin in enumerate(layers[k]):
                    lin.weight.copy_(W[j][k].t())
                    lin.bias.copy_(B[j][k, 0])

    X = _Stack([m.data.train.X for m in batch])
    Y = _Stack([m.data.train.y for m in batch])
    n = len(first.data.train)
    from trainlab.data.batches import resolve_batch_size
    bsz = resolve_batch_size(cfg.train.batch_size, n)
    steps = n // bsz if cfg.train.drop_last else math.ceil(n / bsz)
    if steps == 0:
        err = ValueError(f"no training batches: {n} samples with batch_size={cfg.train.batch_size} and drop_last=True")
        return [MemberOutcome(m.config, None, err, {"batched": M, "mode": mode}) for m in batch]
    recording = [k for k, m in enumerate(batch) if m.recorder is not None]
    for k in recording:
        batch[k].loop = _MemberLoop(batch[k], steps)
        batch[k].recorder.set_loop(batch[k].loop)
        batch[k].recorder.on_train_begin({})
    global_step = 0
    val_sets = _EvalSets(batch, "val") if first.data.val is not None else None
    for epoch in range(cfg.train.epochs):
        t0 = time.perf_counter()
        if cfg.train.shuffle:  # each member's own generator, one randperm per epoch (as Batches)
            order = torch.stack([torch.randperm(n, generator=m.generator) for m in batch]).to(device)
            # one gather per epoch; the batches are then contiguous slices of it (same rows, same order)
            X_epoch, Y_epoch = X.take(order), Y.take(order)
        else:
            X_epoch, Y_epoch = X.full(M), Y.full(M)
        if flat is not None:  # the flat engine's layout, feature-major (M, in, n): one copy per epoch,
            # which also serves as the batches' (M, B, in) views, so the gathered copy is not kept
            Xt_epoch = X_epoch.flatten(2).transpose(1, 2).contiguous()
            X_epoch = Xt_epoch.transpose(1, 2)
        tally = _EpochTally()
        for b in range(steps):
            xb, yb = X_epoch[:, b * bsz:(b + 1) * bsz], Y_epoch[:, b * bsz:(b + 1) * bsz]
            if recording and b == steps - 1:  # the recorder snapshots weights before an epoch's last step
                copy_back(recording)
                for k in recording:
                    if alive[k]:
                        batch[k].loop.epoch, batch[k].loop.step = epoch, global_step
                        batch[k].recorder.on_batch_begin(b, {"batch": b, "size": xb.shape[1]})
            if flat is not None:
                values, c = flat.step(Xt_epoch[:, :, b * bsz:(b + 1) * bsz], yb, loss.label_smoothing)
                rule.step([flat.flat], [flat.grad])
            else:
                values, c = _autograd_step(lambda: _forward(xb, *params(), acts), leaves, loss, yb, update)
            tally.add(values, xb.shape[1], c)
            global_step += 1
        read = tally.read(batch, alive, epoch, global_step)
        if not any(alive):
            break
        if val_sets is None:
            val = None
        elif flat is not None:
            val = flat.evaluate(val_sets, loss.label_smoothing)
        else:
            val = val_sets.evaluate(*params(), acts)
        elapsed = (time.perf_counter() - t0) / M
        for k, m in enumerate(batch):
            if alive[k]:
                m.history.on_epoch_end(epoch, _epoch_logs(k, m, read, val, elapsed))
        if recording:
            copy_back(recording)
            for k in recording:
                if alive[k]:
                    batch[k].loop.epoch, batch[k].loop.step = epoch, global_step
                    batch[k].recorder.on_epoch_end(epoch, dict(batch[k].history.records()[-1]))

    copy_back(range(M))  # the trained weights go back into each member's own model
    for k in recording:
        if alive[k]:
            batch[k].recorder.on_train_end({})
    finals = None
    if flat is not None:  # runner.final_metrics of every member at once, from the trained buffer
        finals = [{} for _ in range(M)]
        for which in ("train", "val", "test"):
            if getattr(first.data, which) is not None:
                for k, row in enumerate(flat.evaluate(_EvalSets(batch, which), loss.label_smoothing)):
                    finals[k].update({f"{which}_{key}": v for key, v in row.items()})
    info = {"batched": M, "mode": mode, "engine": "stack", "backward": "by hand" if flat is not None else "autograd"}
    return _outcomes(batch, info, t_start, lambda k: finals[k] if finals is not None
                     else final_metrics(batch[k].model, batch[k].data, batch[k].loss, device))


def _outcomes(batch: Sequence[Member], info: dict, t_start: float, final: Callable[[int], dict],
              extras: Callable[[int], dict] | None = None) -> list[MemberOutcome]:
    """The members' outcomes at the end of a batched run, for both engines: each member's
    :class:`RunResult` as :func:`run_experiment` returns it (history, ``final(k)``, its
    diagnostics and verdicts, ``extras(k)``) or its error; ``info`` (how they were trained) gains
    the peak memory, a failed member's also the wall time."""
    from trainlab.diagnostics.verdicts import diagnose_run

    wall = (time.perf_counter() - t_start) / len(batch)
    info = {**info, "peak_memory_bytes": _peak_memory(batch[0].device)}
    out = []
    for k, m in enumerate(batch):
        if m.error is not None:
            out.append(MemberOutcome(m.config, None, m.error, {**info, "wall_time": wall}))
            continue
        result = RunResult(m.config, m.model, m.history, final(k), wall)
        if extras is not None:
            result.extras.update(extras(k))
        if m.recorder is not None:  # what run_experiment puts there
            result.extras["diagnostics"] = m.recorder
        result.extras["verdicts"] = diagnose_run(result, m.loss, m.data)
        out.append(MemberOutcome(m.config, result, None, dict(info)))
    return out


# ---------------------------------------------------------------------------------------------
# any model: torch.func (stack_module_state, functional_call, vmap)
#
# The members' solo-built models are stacked (``stack_module_state``: every parameter and buffer
# becomes one (M, ...) tensor) and one base copy of the architecture on the ``meta`` device runs
# them all: ``vmap(functional_call(base, (params, buffers), x))`` over the member axis. Three
# kinds of layer need a forward written for ``vmap`` (the same formula in plain tensor ops, set
# on the base copy only, never on the members' models):
#
# - batch norm: trainlab's training-mode batch norm is an ``autograd.Function`` with a hand-written
#   backward written in the old ``ctx`` style, which ``vmap`` cannot batch; the base runs the same
#   formulas, backward included, as a Function ``vmap`` can batch (``_BatchNormBatched``; with ε
#   outside the root, the plain-ops steps through autograd) and updates its running statistics in
#   place. In place on a buffer under ``vmap`` writes member k's row of the stacked buffer, so
#   every member keeps its own running mean and variance, updated from its own batch.
# - layer norm: the readable formula ``_normalize_reference`` (its fast path is an
#   ``autograd.Function`` too).
# - dropout: a solo run draws each mask from torch's global RNG, seeded by the run's seed, layer
#   after layer in forward order. Each member gets a ``torch.Generator`` seeded as that RNG is at
#   the start of its solo run and draws the same masks in the same order, outside ``vmap``; the
#   stacked (M, ...) masks go in as an input. On the CPU the masks are those of the solo run,
#   exactly (tested). On a GPU the generators are GPU generators seeded as ``torch.manual_seed``
#   seeds the solo run's, so the masks should be the solo run's there too (not tested on a GPU).


BATCHABLE_CALLBACKS = frozenset({"early_stopping"})  # epoch-end callbacks on the member's own loop
MAX_BATCH_BYTES = 2 << 30  # estimated memory of one batched model (data, state, activations)
EVAL_CHUNK_BYTES = 1 << 28  # activations of one batched evaluation chunk, all members together
EVAL_CACHE_BYTES = 1 << 25  # activations of one member's evaluation chunk on the CPU (about cache-sized)


class _BatchNormBatched(torch.autograd.Function):
    """Training-mode batch norm (ε inside the root) with the closed-form backward, written so that
    ``vmap`` can batch it (``generate_vmap_rule``: no ``ctx`` in the forward, intermediates
    returned as outputs): the formulas of :class:`trainlab.nn.normalization._BatchNormTrain`,
    the solo runs' batch norm. Differentiated by autograd instead, the plain-ops form costs about
    ten passes over the activations backward; this one costs three.

    Forward:  μ = Σx/n,  σ² = Σ(x − μ)²/n,  x̂ = (x − μ)/√(σ² + ε),  y = γ·x̂ + β
    Backward: ∂L/∂β = Σ g,  ∂L/∂γ = Σ g·x̂,  ∂L/∂x = s·g − s·Σg/n − x̂·s·Σg·x̂/n,  s = γ/√(σ² + ε)
    Returns ``(y, μ, σ², x̂, 1/√(σ² + ε))``; only y is differentiable (μ and σ² feed the running
    estimates).
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(x, weight, bias, eps, dims, shape):
        from trainlab.nn.normalization import _affine

        n = x.numel() // x.shape[1]
        mu = x.sum(dims, keepdim=True).div_(n)
        xc = x - mu
        var = (xc * xc).sum(dims, keepdim=True).div_(n)                    # biased σ²
        inv_std = (var + eps).rsqrt_()
        x_hat = xc.mul_(inv_std)
        return _affine(x_hat, weight, bias, shape), mu, var, x_hat, inv_std

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, weight, bias, eps, dims, shape = inputs
        _, mu, var, x_hat, inv_std = output
        ctx.mark_non_differentiable(mu, var, x_hat, inv_std)
        ctx.save_for_backward(weight, x_hat, inv_std)
        ctx.dims, ctx.shape, ctx.n, ctx.has_bias = dims, shape, x.numel() // x.shape[1], bias is not None

    @staticmethod
    def backward(ctx, g, *_):
        from trainlab.nn.normalization import batch_norm_backward_ops

        weight, x_hat, inv_std = ctx.saved_tensors
        dx, dw, db = batch_norm_backward_ops(g, x_hat, inv_std, weight, ctx.has_bias, ctx.dims, ctx.shape, ctx.n,
                                             ctx.needs_input_grad)
        return dx, dw, db, None, None, None


class _BatchNormMembers(torch.autograd.Function):
    """Training-mode batch norm of all members in fused C kernel calls (``native_norm.c``, the solo
    runs' kernels), on the physical tensor ``vmap`` hands :class:`_BatchNormVmapped` over.

    ``layout`` = (N, C, S, M, members_first). A batched convolution's output is (N, M, C, *S)
    physically: that is the kernels' (N, M·C, S) layout, whose channels are the members' channels,
    so one call does them all (``members_first`` False). A batched linear layer's is (M, N, C, *S):
    one call per member on its own (N, C, S) block (``members_first`` True). Either way each
    member's channel gets the sums, in the same order, that a solo run's kernel computes for it.
    γ, β are (M·C,); returns y, μ and the biased σ² (each (M·C,), μ and σ² not differentiable).
    """

    @staticmethod
    def forward(ctx, x, weight, bias, eps, layout, kernels):
        n, c, s, m, members_first = layout
        y = torch.empty_like(x)
        stats = x.new_empty(3, m * c)  # μ, σ², 1/√(σ² + ε) per member and channel
        es, threads = x.element_size(), torch.get_num_threads()
        at, row = stats.data_ptr(), m * c * es
        calls = [(0, 0, (n, m * c, s))] if not members_first else \
            [(k * n * c * s * es, k * c * es, (n, c, s)) for k in range(m)]
        for off, ch, ncs in calls:  # byte offsets into x, y and into the (M·C,) vectors
            kernels.batch_norm_forward(*ncs, x.data_ptr() + off, None if weight is None else weight.data_ptr() + ch,
                                       None if bias is None else bias.data_ptr() + ch, eps, 1.0,
                                       y.data_ptr() + off, at + ch, at + row + ch, at + 2 * row + ch,
                                       None, None, 0.0, threads)
        ctx.save_for_backward(x, weight, stats)
        ctx.layout, ctx.calls, ctx.kernels, ctx.has_bias, ctx.eps = layout, calls, kernels, bias is not None, eps
        mu, var = stats[0].clone(), stats[1].clone()
        ctx.mark_non_differentiable(mu, var)
        return y, mu, var

    @staticmethod
    def backward(ctx, g, _g_mu, _g_var):
        from trainlab.nn.normalization import batch_norm_backward_ops

        x, weight, stats = ctx.saved_tensors
        n, c, s, m, members_first = ctx.layout
        needs = ctx.needs_input_grad
        if torch.is_grad_enabled():  # a graph of the gradient: the same formulas in torch ops, from x
            view = (m, n, c, s) if members_first else (n, m * c, s)
            shape = (m, 1, c, 1) if members_first else (1, m * c, 1)
            dims = (1, 3) if members_first else (0, 2)
            xv = x.view(view)
            mu = xv.mean(dims, keepdim=True)
            inv_std = ((xv - mu).square().mean(dims, keepdim=True) + ctx.eps).rsqrt()
            x_hat = (xv - mu) * inv_std
            w = None if weight is None else weight.view(shape)
            dx, dw, db = batch_norm_backward_ops(g.reshape(view), x_hat, inv_std, w, ctx.has_bias, dims, shape,
                                                 n * s, needs)
            dx = None if dx is None else dx.view(x.shape)
            dw = None if dw is None else dw.reshape(-1)
            db = None if db is None else db.reshape(-1)
            return dx, dw, db, None, None, None
        g = g.contiguous()
        dx = torch.empty_like(x) if needs[0] else None
        dw = torch.empty_like(weight) if weight is not None and needs[1] else None
        db = torch.empty(m * c, dtype=x.dtype) if ctx.has_bias and needs[2] else None
        es, threads = x.element_size(), torch.get_num_threads()
        at, row = stats.data_ptr(), m * c * es
        shift = lambda t, off: None if t is None else t.data_ptr() + off  # noqa: E731
        for off, ch, ncs in ctx.calls:
            ctx.kernels.batch_norm_backward(*ncs, g.data_ptr() + off, x.data_ptr() + off, at + ch,
                                            at + 2 * row + ch, shift(weight, ch), shift(dx, off), shift(dw, ch),
                                            shift(db, ch), threads)
        return dx, dw, db, None, None, None


class _BatchNormVmapped(torch.autograd.Function):
    """The base copy's training-mode batch norm under ``vmap`` (ε inside the root): ``(y, μ, σ²)``
    per member. Its batching rule hands the physical tensors to :class:`_BatchNormMembers` (the
    fused C kernels) when they are CPU float32/float64, dense and contiguous, with the member axis
    first or second; otherwise it runs :class:`_BatchNormBatched`, whose rule ``vmap`` generates."""

    @staticmethod
    def forward(x, weight, bias, eps, dims, shape):  # outside vmap: the formulas
        y, mu, var, _, _ = _BatchNormBatched.forward(x, weight, bias, eps, dims, shape)
        return y, mu, var

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, weight, bias, eps, dims, shape = inputs
        _, mu, var = output
        ctx.mark_non_differentiable(mu, var)
        ctx.save_for_backward(x, weight, mu, var)
        ctx.eps, ctx.dims, ctx.shape, ctx.has_bias = eps, dims, shape, bias is not None

    @staticmethod
    def backward(ctx, g, _g_mu, _g_var):
        from trainlab.nn.normalization import batch_norm_backward_ops

        x, weight, mu, var = ctx.saved_tensors
        inv_std = (var + ctx.eps).rsqrt()
        dx, dw, db = batch_norm_backward_ops(g, (x - mu) * inv_std, inv_std, weight, ctx.has_bias, ctx.dims,
                                             ctx.shape, x.numel() // x.shape[1], ctx.needs_input_grad)
        return dx, dw, db, None, None, None

    @staticmethod
    def vmap(info, in_dims, x, weight, bias, eps, dims, shape):
        from trainlab.nn.fastpath import SWITCH
        from trainlab.nn.native_layers import NORM, usable

        x_dim, w_dim, b_dim = in_dims[:3]
        m = info.batch_size
        # the kernels take a plain physical tensor: not one an outer transform still wraps
        plain = SWITCH.fast and not torch._C._are_functorch_transforms_active()
        kernels = NORM.for_dtype(x.dtype) if plain and x_dim in (0, 1) and x.dim() >= 3 else None
        if kernels is not None:
            c = x.shape[2]
            flat = []
            for t, t_dim in ((weight, w_dim), (bias, b_dim)):  # γ, β as (M·C,) vectors
                if t is not None:
                    t = t.expand(m, c) if t_dim is None else t.movedim(t_dim, 0)
                    t = t.contiguous().view(-1)
                flat.append(t)
            if usable(x, *flat):
                n, s = x.shape[1 - x_dim], math.prod(x.shape[3:])
                y, mu, var = _BatchNormMembers.apply(x, flat[0], flat[1], eps, (n, c, s, m, x_dim == 0), kernels)
                return (y, mu.view(m, *shape), var.view(m, *shape)), (x_dim, 0, 0)
        outs = torch.vmap(_BatchNormBatched.apply, in_dims=(x_dim, w_dim, b_dim, None, None, None))(
            x, weight, bias, eps, dims, shape)
        return outs[:3], (0, 0, 0)


def _bn_forward(self, x: Tensor) -> Tensor:
    """:class:`trainlab.nn.BatchNorm1d`/``2d``'s forward in ops ``vmap`` batches (see the section comment).

    With ε inside the root (the default), :class:`_BatchNormBatched`: the formulas of its
    ``autograd.Function``, backward included. Otherwise its steps in plain ops (μ, x − μ,
    σ² = mean((x − μ)²), 1/(√σ² + ε), γ·x̂ + β), differentiated by autograd. μ and σ² of the
    batch also feed the running estimates, so each is computed once.
    """
    from trainlab.nn.normalization import _affine

    dims, shape = self._axes(x.dim())
    if not (self.training or not self.track_running_stats):
        return self._normalize_with(x, self.running_mean.view(shape), self.running_var.view(shape), shape)
    n = x.numel() // x.shape[1]
    if self.eps_placement == "inside":
        y, mu, var = _BatchNormVmapped.apply(x, self.weight, self.bias, self.eps, dims, shape)
    else:
        mu = x.mean(dims, keepdim=True)
        xc = x - mu
        var = (xc * xc).mean(dims, keepdim=True)                           # biased σ²
        y = _affine(xc * (1.0 / (var.sqrt() + self.eps)), self.weight, self.bias, shape)
    if self.training and self.track_running_stats:
        with torch.no_grad():
            self.num_batches_tracked.add_(1)
            m = self.momentum if self.momentum is not None else 1.0 / self.num_batches_tracked.to(x.dtype)
            correction = n / (n - 1) if self.unbiased_running_var else 1.0
            self.running_mean.mul_(1.0 - m).add_(mu.detach().view(-1) * m)          # (1 − m)·running + m·μ_B
            self.running_var.mul_(1.0 - m).add_(var.detach().view(-1) * (m * correction))
    return y


_MAX_POOLS = (nn.MaxPool2d, MaxPool2d)  # torch's and trainlab's (the CNN builder's)


def _simple_pool(pool: nn.Module) -> int | None:
    """The window k of a max-pool (torch's or trainlab's) whose window is its stride (no padding,
    dilation, ceil mode or indices; :func:`trainlab.nn.pooling.window`), else ``None``."""
    from trainlab.nn.pooling import window

    return window(pool) if type(pool) in _MAX_POOLS else None


class _MaxPoolVmapped(torch.autograd.Function):
    """The base copy's max-pool (window k = stride) under ``vmap``: its batching rule hands the
    physical tensor, whose last two axes are the images' (the member axis before them), to the
    fused C kernels of :class:`trainlab.nn.MaxPool2d` (values and gradients torch's, bit for bit);
    elsewhere ``max_pool2d`` under ``vmap``."""

    @staticmethod
    def forward(x, k):  # outside vmap: torch's max-pool
        return nn.functional.max_pool2d(x, k)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(inputs[0])
        ctx.k = inputs[1]

    @staticmethod
    def backward(ctx, g):  # torch's max-pool backward, in ops that transforms batch
        (x,) = ctx.saved_tensors
        k = [ctx.k, ctx.k]
        _, indices = nn.functional.max_pool2d(x, ctx.k, return_indices=True)
        return torch.ops.aten.max_pool2d_with_indices_backward(g, x, k, k, [0, 0], [1, 1], False, indices), None

    @staticmethod
    def vmap(info, in_dims, x, k):
        from trainlab.nn.fastpath import SWITCH
        from trainlab.nn.native_layers import POOL, usable
        from trainlab.nn.pooling import _MaxPoolFn

        x_dim = in_dims[0]
        # the kernels take a plain physical tensor: not one an outer transform still wraps
        plain = SWITCH.fast and not torch._C._are_functorch_transforms_active()
        kernels = POOL.for_dtype(x.dtype) if (plain and x_dim is not None and x_dim < x.dim() - 2
                                              and x.dim() in (4, 5) and min(x.shape[-2:]) >= k and usable(x)) else None
        if kernels is not None:
            return _MaxPoolFn.apply(x, k, kernels), x_dim
        return torch.vmap(lambda t: nn.functional.max_pool2d(t, k), in_dims=x_dim)(x), 0


def _max_pool_forward(self, x: Tensor) -> Tensor:
    """``nn.MaxPool2d`` (or trainlab's) on the base copy, window = stride (no padding, dilation or
    ceil mode). Training: under ``vmap`` through :class:`_MaxPoolVmapped` (the fused C kernels on
    the CPU). Evaluation without gradients (member by member, outside ``vmap``): the C kernel's
    maxima where it applies, else elementwise maxima of strided views — the same maxima, ~7x faster
    than ``max_pool2d`` on the CPU at these sizes (its kernel also tracks the argmax)."""
    k = _simple_pool(self)
    if k is None:
        return nn.functional.max_pool2d(x, self.kernel_size, self.stride, self.padding, self.dilation,
                                        ceil_mode=self.ceil_mode, return_indices=self.return_indices)
    vmapped = torch._C._are_functorch_transforms_active()
    if self.training or torch.is_grad_enabled():
        return _MaxPoolVmapped.apply(x, k) if vmapped else nn.functional.max_pool2d(x, k)
    from trainlab.nn.native_layers import POOL, usable
    from trainlab.nn.pooling import _max_pool
    from trainlab.nn.fastpath import SWITCH
    kernels = POOL.for_dtype(x.dtype) if (SWITCH.fast and not vmapped and x.dim() in (3, 4)
                                          and min(x.shape[-2:]) >= k and usable(x)) else None
    if kernels is not None:
        return _max_pool(x, k, kernels)
    ho, wo = x.shape[-2] // k, x.shape[-1] // k
    if x.is_contiguous() and x.shape[-2] == ho * k and x.shape[-1] == wo * k:
        # the maximum over each row's k neighbours (contiguous k-tuples), then over k rows: ~2x
        # faster than the k² strided views below
        rows = x.view(*x.shape[:-1], wo, k)
        out = rows[..., 0]
        for j in range(1, k):
            out = torch.maximum(out, rows[..., j])
        cols = out.view(*x.shape[:-2], ho, k, wo)
        out = cols[..., 0, :]
        for i in range(1, k):
            out = torch.maximum(out, cols[..., i, :])
        return out
    out = None
    for i in range(k):
        for j in range(k):
            v = x[..., i:i + ho * k:k, j:j + wo * k:k]
            out = v if out is None else torch.maximum(out, v)
    return out


# elementwise activations that never decrease: they commute with a maximum (max f(xᵢ) = f(max xᵢ))
_MONOTONE = (torch.relu, torch.tanh, torch.sigmoid)


def _pool_first_stage(mods: Sequence[nn.Module]) -> bool:
    """Whether ``mods`` is ``conv → batch norm → monotone activation → max-pool`` (on the base copy,
    see :func:`_vmap_base`) whose batch norm, in eval mode, never decreases in its input
    (every γ ≥ 0, or no γ)."""
    from trainlab.nn.normalization import _BatchNorm

    if len(mods) < 4:
        return False
    conv, bn, act, pool = mods[:4]
    monotone = (act.__dict__.get("forward") in _MONOTONE or type(act) in (nn.ReLU, nn.Tanh, nn.Sigmoid))
    return (isinstance(conv, nn.modules.conv._ConvNd) and isinstance(bn, _BatchNorm) and monotone
            and _simple_pool(pool) is not None and bn.track_running_stats
            and (bn.weight is None or bool((bn.weight >= 0).all())))


def _is_relu(act: nn.Module) -> bool:
    return act.__dict__.get("forward") is torch.relu or type(act) is nn.ReLU


def _stages_forward(self: nn.Sequential, x: Tensor) -> Tensor:
    """``nn.Sequential``'s forward on the base copy, with max-pools moved ahead of what commutes
    with them, so that those layers run on k² times fewer elements; the same numbers, bit for bit:

    - ``ReLU → max-pool`` is ``max-pool → ReLU``, in training too: ReLU keeps positive values and
      sends the rest to 0, so a window's first maximum (where ``max_pool2d`` sends the gradient)
      is the same element whenever it is positive, and otherwise every gradient in the window is
      0 either way (relu'(0) = 0);
    - in evaluation (eval mode, no gradients) and with ``self._pool_first`` set, ``conv → batch norm
      → activation → max-pool`` is ``conv → max-pool → batch norm → activation``
      (:func:`_pool_first_stage`): in eval mode batch norm is ``x·scale + shift`` per channel with
      scale ≥ 0 there, and the activation never decreases, so both are non-decreasing functions
      of x even after rounding (a correctly rounded monotone operation stays monotone) and
      commute with the window's maximum. Only member after member on the CPU (the γ check reads
      the member's tensors), never under ``vmap``.
    """
    mods = list(self._modules.values())
    evaluating = self._pool_first and not self.training and not torch.is_grad_enabled()
    i = 0
    while i < len(mods):
        if evaluating and _pool_first_stage(mods[i:i + 4]):
            conv, bn, act, pool = mods[i:i + 4]
            x = act(bn(pool(conv(x))))
            i += 4
        elif i + 1 < len(mods) and _is_relu(mods[i]) and _simple_pool(mods[i + 1]) is not None:
            x = mods[i](mods[i + 1](x))
            i += 2
        else:
            x = mods[i](x)
            i += 1
    return x


def _ln_forward(self, x: Tensor) -> Tensor:
    """:class:`trainlab.nn.LayerNorm`'s forward in plain ops."""
    from trainlab.nn.normalization import _normalize_reference

    k = len(self.normalized_shape)
    return _normalize_reference(x, self.weight, self.bias, tuple(range(x.dim() - k, x.dim())), self.eps)


def _given_mask(self, x: Tensor) -> Tensor:
    """:meth:`trainlab.nn.Dropout.mask_for` on the base copy: the mask given as ``self._vmask``
    (drawn per member outside ``vmap``); while tracing shapes (no mask yet) it records the input's
    shape and keeps every unit."""
    if self._vmask is None:
        self._vshape = tuple(x.shape)
        return torch.ones((), dtype=x.dtype, device=x.device)
    return self._vmask


def _activation_forward(mod: nn.Module):
    """A plain-ops forward for trainlab's activation modules (theirs are ``autograd.Function``s with
    hand-written backwards, which ``vmap`` cannot batch), or ``None`` for modules that need none."""
    import torch.nn.functional as F

    from trainlab.nn import activations as A

    kind = type(mod)
    if kind is A.ReLU:
        return torch.relu                           # relu'(0) = 0, as trainlab's
    if kind is A.Tanh:
        return torch.tanh
    if kind is A.Sigmoid:
        return torch.sigmoid
    if kind in (A.GeneralizedRectifier, A.LeakyReLU):
        return torch.relu if mod.alpha == 0.0 else None  # other slopes are plain ops already
    if kind is A.PReLU:
        return lambda z: z.clamp_min(0) + A._broadcast_slope(mod.weight, z, 1 if z.dim() > 1 else 0) * z.clamp_max(0)
    if kind in (A.ELU, A.SELU):
        alpha, scale = (mod.alpha, 1.0) if kind is A.ELU else (A.SELU_ALPHA, A.SELU_SCALE)
        return lambda z: torch.add(torch.expm1(z.clamp_max(0)) * (scale * alpha), z.clamp_min(0), alpha=scale)
    if kind is A.GELU:
        return lambda z: F.gelu(z, approximate=mod.approximate)
    if kind is A.SiLU:
        return F.silu
    if kind is A.LogSoftmax:
        return lambda z: torch.log_softmax(z, mod.dim)
    if kind is A.Softmax:
        return lambda z: torch.softmax(z, mod.dim)
    return None


def _vmap_base(model: nn.Module, pool_first: bool = False) -> tuple[nn.Module, list[nn.Module]]:
    """A copy of ``model`` on ``meta`` with the forwards above; returns it and its dropout layers
    that draw masks (in forward order, as registered). Its ``nn.Sequential`` blocks pool early
    (:func:`_stages_forward`; with ``pool_first`` also ahead of batch norm in evaluation, which is
    not for ``vmap``)."""
    import copy
    import types

    from trainlab.nn.dropout import Dropout
    from trainlab.nn.normalization import LayerNorm, _BatchNorm

    base = copy.deepcopy(model).to("meta")
    drops = []
    for mod in base.modules():
        if isinstance(mod, _BatchNorm):
            mod.forward = types.MethodType(_bn_forward, mod)
        elif isinstance(mod, LayerNorm):
            mod.forward = types.MethodType(_ln_forward, mod)
        elif type(mod) in _MAX_POOLS:
            mod.forward = types.MethodType(_max_pool_forward, mod)
        elif _activation_forward(mod) is not None:
            mod.forward = _activation_forward(mod)
        elif type(mod) is Dropout:
            mod.mask_for = types.MethodType(_given_mask, mod)
            mod._vmask, mod._vshape = None, None
            if 0.0 < mod.p < 1.0:
                drops.append(mod)
        elif type(mod) is nn.Sequential:
            mod.forward = types.MethodType(_stages_forward, mod)
            mod._pool_first = pool_first
    return base, drops


def _trace(base: nn.Module, x: Tensor) -> tuple[dict, int]:
    """Run ``base`` on a meta batch like ``x``: records each dropout layer's input shape and returns
    the bytes of all module outputs (about what a backward pass keeps)."""
    sizes = []
    hooks = [m.register_forward_hook(lambda m, i, o: sizes.append(o.numel() * o.element_size())
                                     if isinstance(o, Tensor) else None) for m in base.modules()]
    try:
        base.train()
        with torch.no_grad():
            base(torch.empty(x.shape, dtype=x.dtype, device="meta"))
    finally:
        for h in hooks:
            h.remove()
    return sum(sizes)


def why_not_vmappable(model: nn.Module, example: Tensor) -> str | None:
    """Why ``model`` cannot run under ``vmap`` as the batched trainer runs it (``None``: it can).

    The check runs it: two copies of the model, stacked, forward and backward on two rows of
    ``example`` under ``vmap`` (with per-member dropout masks), against each copy run alone with
    the same masks; outputs and gradients must agree to 1e-4. Parametrized layers (weight norm),
    DropConnect, frozen parameters and models without parameters are refused first.
    """
    from torch.func import functional_call, stack_module_state, vmap
    from torch.nn.utils import parametrize

    from trainlab.nn.dropout import DropConnect

    params = list(model.parameters())
    if not params:
        return "the model has no parameters"
    if not all(p.requires_grad for p in params):
        return "some parameters are frozen"
    for name, mod in model.named_modules():
        if isinstance(mod, DropConnect):
            return f"{name} is DropConnect (its weight masks are not batched)"
        if parametrize.is_parametrized(mod):
            return f"{name} is reparametrized (weight norm)"
    import copy

    try:
        copies = [copy.deepcopy(model).cpu().double() for _ in range(2)]
        base, drops = _vmap_base(copies[0])
        x = example[:4].detach().cpu().double()
        _trace(base, x)
        g = torch.Generator().manual_seed(0)
        masks = [torch.stack([(torch.rand(d._vshape, generator=g, dtype=x.dtype) > 0.5).double()
                              for _ in range(2)]) for d in drops]
        p, b = stack_module_state(copies)
        p = {k: v.detach().requires_grad_() for k, v in p.items()}

        def one(pp, bb, xx, mm):
            for d, m in zip(drops, mm):
                d._vmask = m
            return functional_call(base, (pp, bb), (xx,))

        z = vmap(one)(p, b, torch.stack([x, x.flip(0)]), masks)
        z.square().sum().backward()
        # the plain-ops forwards compute what the model's own do (in eval mode: no masks drawn)
        import copy as _copy
        own, plain = _copy.deepcopy(copies[0]).eval(), _copy.deepcopy(copies[0]).eval()
        plain_base, _ = _vmap_base(plain)
        plain_base = plain_base.to_empty(device="cpu")
        plain_base.load_state_dict(plain.state_dict())
        plain_base.eval()
        za, zb = own(x), plain_base(x)
        za.square().sum().backward()
        zb.square().sum().backward()
        if not torch.allclose(za, zb, rtol=1e-6, atol=1e-9):
            return "a layer's forward has no plain-ops form that computes the same numbers"
        for (name, q), r in zip(own.named_parameters(), plain_base.parameters()):
            if (q.grad is None) != (r.grad is None) or (q.grad is not None and not torch.allclose(q.grad, r.grad, rtol=1e-6, atol=1e-9)):
                return f"a layer's plain-ops gradient differs from its own ({name})"
        # each copy alone: the same forwards (a base per copy, on the CPU), the same masks
        for k, c in enumerate(copies):
            solo, solo_drops = _vmap_base(c)
            solo = solo.to_empty(device="cpu")
            solo.load_state_dict(c.state_dict())
            for d, m in zip(solo_drops, masks):
                d._vmask = m[k]
            zk = solo(x if k == 0 else x.flip(0))
            zk.square().sum().backward()
            if not torch.allclose(zk, z[k].detach(), rtol=1e-4, atol=1e-6):
                return "under vmap the model computes other outputs than alone"
            for name, q in solo.named_parameters():
                if q.grad is None or not torch.allclose(q.grad, p[name].grad[k], rtol=1e-4, atol=1e-6):
                    return f"under vmap the gradient of {name} differs from the model's own"
    except Exception as err:  # noqa: BLE001 - any failure means: train it alone
        return f"the model does not run under vmap ({type(err).__name__}: {str(err).splitlines()[0][:120]})"
    return None


class _RowRule:
    """A fused rule over stacked parameters of any shape: each (M, ...) tensor is seen as an
    (M, 1, n) view (the rules' hyperparameters are (M, 1, 1) columns)."""

    def __init__(self, rule, leaves: Sequence[Tensor]):
        self.rule, self.leaves = rule, list(leaves)
        self.views = [p.detach().view(p.shape[0], 1, -1) for p in self.leaves]

    def step(self) -> None:
        self.rule.step(self.views, [p.grad.reshape(p.shape[0], 1, -1) for p in self.leaves])


def _member_callbacks(member: Member, steps: int) -> list:
    """The schedule and the epoch-end callbacks a solo run of ``member`` would have, in its order."""
    cfg = member.config
    cbs = []
    if cfg.schedule is not None:
        cbs.append(catalog.build_schedule(member.optimizer, cfg.schedule.name, cfg.schedule.kwargs,
                                          steps_per_epoch=steps, epochs=cfg.train.epochs))
    cbs += [catalog.build_callback(c.name, c.kwargs, run_dir=None) for c in cfg.callbacks]
    return sorted(cbs, key=lambda cb: getattr(cb, "order", 0))


def _peak_memory(device: torch.device) -> int:
    """Peak memory so far: the GPU's allocator peak, or the process's peak resident size on the CPU."""
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    try:
        import resource
        return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024
    except (ImportError, OSError):
        return 0


def _has_conv(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.conv._ConvNd) for m in model.modules())


def _train_vmapped(batch: list[Member], mode: str, family: str | None) -> list[MemberOutcome]:
    """Train members of any architecture as one ``vmap``-ed model; returns their outcomes in order."""
    from torch.func import functional_call, stack_module_state, vmap

    from trainlab.data.batches import resolve_batch_size
    from trainlab.train.callbacks import _overrides

    t_start = time.perf_counter()
    M = len(batch)
    first = batch[0]
    cfg, device, loss = first.config, first.device, first.loss
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    n = len(first.data.train)
    bsz = resolve_batch_size(cfg.train.batch_size, n)
    steps = n // bsz if cfg.train.drop_last else math.ceil(n / bsz)
    if steps == 0:
        err = ValueError(f"no training batches: {n} samples with batch_size={cfg.train.batch_size} and drop_last=True")
        return [MemberOutcome(m.config, None, err, {"batched": M, "mode": mode}) for m in batch]
    models = [m.model for m in batch]
    base, drops = _vmap_base(first.model)
    names = [name for name, _ in first.model.named_parameters()]
    own = [dict(m.named_parameters()) for m in models]
    with torch.no_grad():
        _, buffers = stack_module_state(models)
    if mode == "fused":
        stacked, _ = stack_module_state(models)  # (M, ...) leaves
        leaves = [stacked[k] for k in names]
        rule = _RowRule(_FUSED_RULES[family]([m.optimizer.param_groups[0] for m in batch],
                                             leaves[0].detach().view(M, 1, -1)), leaves)

        def params() -> dict:
            return stacked
    else:
        leaves = [p for d in own for p in d.values()]

        def params() -> dict:  # stacked in the graph: gradients flow to each member's own parameters
            return {k: torch.stack([d[k] for d in own]) for k in names}

    def one(p, b, x, masks):
        for d, m in zip(drops, masks):
            d._vmask = m
        return functional_call(base, (p, b), (x,))

    batched_forward = vmap(one)
    drop_gens = []
    if drops:  # each member's dropout masks from a generator in the state of its solo run's global RNG
        # on the members' device, so that on a GPU the masks come from a GPU generator as a solo
        # run's do, without a host-to-device copy per step
        drop_gens = [torch.Generator(device=device).manual_seed(m.config.seed) for m in batch]
    mask_shapes: dict[int, list] = {}

    def draw_masks(B: int, like: Tensor) -> list[Tensor]:
        if not drops:
            return []
        if B not in mask_shapes:
            for d in drops:
                d._vmask = None
            _trace(base, torch.empty((B, *first.data.train.X.shape[1:]), dtype=like.dtype, device="meta"))
            mask_shapes[B] = [d._vshape for d in drops]
        return [torch.stack([d.draw_mask(shape, like, g) for g in drop_gens])
                for d, shape in zip(drops, mask_shapes[B])]

    def sync(k: int) -> None:  # member k's own model gets its row of the stack
        with torch.no_grad():
            if mode == "fused":
                for name in names:
                    own[k][name].copy_(stacked[name][k])
            for name, buf in models[k].named_buffers():
                buf.copy_(buffers[name][k])

    X = _Stack([m.data.train.X for m in batch])
    Y = _Stack([m.data.train.y for m in batch])
    callbacks = [_member_callbacks(m, steps) for m in batch]
    per_batch = [[cb for cb in cbs if _overrides(cb, "on_batch_begin")] for cbs in callbacks]
    for k, m in enumerate(batch):
        m.loop = _MemberLoop(m, steps)
        for cb in callbacks[k] + ([m.recorder] if m.recorder is not None else []):
            cb.set_loop(m.loop)
            cb.on_train_begin({})
    recording = [k for k, m in enumerate(batch) if m.recorder is not None]
    observed = [k for k in range(M) if callbacks[k] or batch[k].recorder is not None]
    lrs = [float(m.optimizer.param_groups[0]["lr"]) for m in batch]
    if mode == "fused":  # on_train_begin may have set a first lr (a rule's lr at step 0)
        rule.rule.set_lr(lrs)
    scheduled = mode == "fused" and any(callbacks)  # lrs are read back every step only then
    alive = [True] * M
    frozen = [False] * M  # stopped early: its own model holds its final state
    active = torch.ones(M, dtype=torch.bool, device=device)  # members still training
    update = _updater(mode, rule if mode == "fused" else None, batch, alive)

    masked = list(alive)

    def mask_out() -> None:
        """Members that stopped or failed drop out of the objective (zero gradient) and, with a
        fused rule, get lr 0, so their rows of the batch stay as they were."""
        if masked == alive:
            return
        masked[:] = alive
        active.copy_(torch.tensor(alive, device=device))
        if mode == "fused":
            rule.rule.set_lr([lr if a else 0.0 for lr, a in zip(lrs, alive)])

    global_step = 0
    # evaluation in chunks whose activations stay within EVAL_CHUNK_BYTES for all members together
    per_sample = max(_trace(base, first.data.train.X[:1].expand(2, *first.data.train.X.shape[1:])) // 2, 1)
    eval_chunk = int(max(1, min(8192, EVAL_CHUNK_BYTES // (M * per_sample))))

    # On the CPU, models with convolutions evaluate member after member (vmap's grouped convolution
    # is slower there than M plain ones, and evaluation needs no batching: its batches are large)
    # in chunks whose activations stay in cache: ~4x faster than evaluate()'s 8192-sample batches
    by_member = device.type == "cpu" and _has_conv(first.model)
    if by_member:
        eval_chunk = int(max(1, min(eval_chunk, EVAL_CACHE_BYTES // per_sample)))

    eval_base = _vmap_base(first.model, pool_first=True)[0] if by_member else base

    def eval_forward(p: dict, bufs: dict, x: Tensor) -> Tensor:
        if not by_member:
            return batched_forward(p, bufs, x, [])
        return torch.stack([functional_call(eval_base, ({k: v[j] for k, v in p.items()},
                                                        {k: v[j] for k, v in bufs.items()}), (x[j],))
                            for j in range(M)])

    def evaluate_split(which: str, p: dict, bufs: dict) -> list[dict]:
        """:func:`trainlab.evaluate` of every member on its split ``which`` (eval mode, batched)."""
        sets = [getattr(m.data, which) for m in batch]
        xs, ys = _Stack([d.X for d in sets]).full(M), _Stack([d.y for d in sets]).full(M)
        nv = len(sets[0])
        base.eval()
        eval_base.eval()
        try:
            with torch.no_grad():
                total, correct = [], []
                for i in range(0, nv, eval_chunk):
                    z = eval_forward(p, bufs, xs[:, i:i + eval_chunk])
                    total.append(member_losses(loss, z, ys[:, i:i + eval_chunk]).double() * z.shape[1])
                    c = member_correct(loss, z, ys[:, i:i + eval_chunk])
                    if c is not None:
                        correct.append(c)
                tot = torch.stack(total).sum(0).cpu()
                cor = torch.stack(correct).sum(0).cpu() if correct else None
        finally:
            base.train()
            eval_base.train()
        return [{"loss": float(tot[k]) / max(nv, 1), **({"accuracy": int(cor[k]) / max(nv, 1)} if cor is not None else {})}
                for k in range(M)]

    base.train()
    for epoch in range(cfg.train.epochs):
        t0 = time.perf_counter()
        for k in range(M):
            if alive[k]:
                batch[k].loop.epoch = epoch
                for cb in callbacks[k]:
                    cb.on_epoch_begin(epoch, {})
        if cfg.train.shuffle:  # each member's own generator, one randperm per epoch (as Batches)
            order = torch.stack([torch.randperm(n, generator=m.generator) for m in batch]).to(device)
            X_epoch, Y_epoch = X.take(order), Y.take(order)
        else:
            X_epoch, Y_epoch = X.full(M), Y.full(M)
        tally = _EpochTally()
        for b in range(steps):
            xb, yb = X_epoch[:, b * bsz:(b + 1) * bsz], Y_epoch[:, b * bsz:(b + 1) * bsz]
            for k in range(M):
                if per_batch[k] and alive[k]:
                    batch[k].loop.step = global_step
                    for cb in per_batch[k]:
                        cb.on_batch_begin(b, {"batch": b, "size": xb.shape[1]})
            if recording and b == steps - 1:  # the recorder snapshots weights before an epoch's last step
                for k in recording:
                    if alive[k]:
                        sync(k)
                        batch[k].loop.epoch, batch[k].loop.step = epoch, global_step
                        batch[k].recorder.on_batch_begin(b, {"batch": b, "size": xb.shape[1]})
            if scheduled:
                now = [float(m.optimizer.param_groups[0]["lr"]) for m in batch]
                if now != lrs:  # a schedule moved some member's lr: the rule's lr column follows
                    lrs = now
                    rule.rule.set_lr([lr if a else 0.0 for lr, a in zip(lrs, alive)])
            values, c = _autograd_step(lambda: batched_forward(params(), buffers, xb, draw_masks(xb.shape[1], xb)),
                                       leaves, loss, yb, update, active)
            tally.add(values, xb.shape[1], c)
            global_step += 1
        read = tally.read(batch, alive, epoch, global_step)
        if not any(alive):
            break
        mask_out()
        val = evaluate_split("val", params(), buffers) if first.data.val is not None else None
        elapsed = (time.perf_counter() - t0) / max(sum(alive), 1)
        for k, m in enumerate(batch):
            if not alive[k]:
                continue
            logs = _epoch_logs(k, m, read, val, elapsed)
            m.loop.epoch, m.loop.step = epoch, global_step
            if k in observed:
                sync(k)
            m.history.on_epoch_end(epoch, logs)
            for cb in callbacks[k]:
                cb.on_epoch_end(epoch, logs)
            if m.recorder is not None:
                m.recorder.on_epoch_end(epoch, dict(m.history.records()[-1]))
            if m.loop.stop_training:  # stopped early: masked out from here on, its state frozen
                alive[k], frozen[k] = False, True
        if not any(alive):
            break
        mask_out()

    for k in range(M):
        if alive[k]:
            sync(k)
    for k, m in enumerate(batch):
        if m.error is None:
            for cb in callbacks[k]:
                cb.on_train_end({})
            if m.recorder is not None:
                m.recorder.on_train_end({})
    # the final numbers of every member at once, from the members' own models as training left
    # them (an early stop's restored best weights included): runner.final_metrics, batched
    with torch.no_grad():
        final_p, final_b = stack_module_state(models)
    finals: list[dict] = [{} for _ in range(M)]
    for which in ("train", "val", "test"):
        if getattr(first.data, which) is not None:
            for k, row in enumerate(evaluate_split(which, final_p, final_b)):
                finals[k].update({f"{which}_{key}": v for key, v in row.items()})
    from trainlab.experiments.runner import early_stops

    return _outcomes(batch, {"batched": M, "mode": mode, "engine": "vmap"}, t_start, finals.__getitem__,
                     lambda k: {"data": batch[k].data, "loss": batch[k].loss, "early_stops": early_stops(callbacks[k])})
