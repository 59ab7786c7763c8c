"""The optimizer shell: a chain of small gradient transformations run as a ``torch.optim.Optimizer``.

An optimizer in trainlab is a list of :class:`Transform` objects (optax's shape: per-parameter state
plus an update rule). The shell, :class:`ChainOptimizer`, owns what PyTorch users expect from an
optimizer — ``param_groups``, ``state``, ``state_dict``, closures — and runs the chain once per step::

    u ← g                                   (the gradients)
    for each pre-transform T:  u ← T(u)     (penalties, clipping, momentum, second moments, −lr·u …)
    θ ← θ + u                               (the update is *added*, as in optax)
    for each post-transform T: T(θ)         (proximal steps, lookahead synchronisation)

So "Adam + L1 + global-norm clipping" is literally ``[ClipByGlobalNorm, L1Penalty, ScaleByAdam,
ScaleByLearningRate]``. Hyperparameters live in the param groups (so schedules and per-group
settings work exactly as in PyTorch); each step the optimizer builds its chain from its group.

Per-parameter state is a named record (a ``NamedTuple`` per transform) whose field names are the
keys of ``optimizer.state[p]`` — the same names torch.optim uses (``exp_avg``, ``momentum_buffer``,
…), so ``state_dict()`` looks like PyTorch's. A transform has a readable per-tensor rule
(``update``) and may have a ``torch._foreach_*`` fast path over the whole group (``update_many``);
``foreach=False`` runs the readable rule and the tests check that both agree.
"""
from __future__ import annotations

import copy
import math
from typing import Any, Callable, ClassVar, Iterable, NamedTuple, Sequence

import torch
from torch import Tensor


class StepInfo(NamedTuple):
    """What a transform may read besides the tensors: the step and the group's hyperparameters.

    ``t`` is the 1-based number of steps these parameters have taken (PyTorch's ``state["step"]``
    after the increment), ``lr`` the group's learning rate as a float, ``group`` the param group.
    """
    t: int
    lr: float
    group: dict
    foreach: bool


class Direction:
    """A list of updates held lazily as ``scale · num / den`` (``den`` may be ``None``), plus
    optionally a second term ``scale2 · num2 / den`` over the same denominator (NAdam's).

    Only the fast paths use it: keeping ``−lr`` and Adam's denominator symbolic lets the shell apply
    the update with one fused ``_foreach_addcdiv_`` instead of materialising intermediate lists —
    one pass over memory less per factor (the step is memory-bound on CPU).
    """

    __slots__ = ("num", "den", "scale", "extra")

    def __init__(self, num: list[Tensor], den: list[Tensor] | None = None, scale: float = 1.0,
                 extra: tuple[list[Tensor], float] | None = None):
        self.num, self.den, self.scale, self.extra = num, den, scale, extra

    def scaled(self, factor: float) -> "Direction":
        extra = None if self.extra is None else (self.extra[0], self.extra[1] * factor)
        return Direction(self.num, self.den, self.scale * factor, extra)

    def materialize(self) -> list[Tensor]:
        """The updates as new tensors (or the original list when there is nothing to apply)."""
        if self.extra is not None:
            out = torch._foreach_mul(self.num, self.scale)
            torch._foreach_add_(out, self.extra[0], alpha=self.extra[1])
            return torch._foreach_div(out, self.den) if self.den is not None else out
        if self.den is not None:
            out = torch._foreach_div(self.num, self.den)
            if self.scale != 1.0:
                torch._foreach_mul_(out, self.scale)
            return out
        if self.scale != 1.0:
            return torch._foreach_mul(self.num, self.scale)
        return self.num

    def add_to(self, params: list[Tensor]) -> None:
        """θ ← θ + scale · num / den (+ scale2 · num2 / den), in one multi-tensor op per term."""
        terms = [(self.num, self.scale)] + ([self.extra] if self.extra is not None else [])
        for num, scale in terms:
            if self.den is not None:
                torch._foreach_addcdiv_(params, num, self.den, value=scale)
            else:
                torch._foreach_add_(params, num, alpha=scale)


class Transform:
    """One gradient transformation: per-parameter state (``State``) and an update rule.

    Subclasses set:

    * ``State`` — a ``NamedTuple`` class of per-parameter state, or ``None`` for a stateless rule.
      Its field names are the keys under which the shell stores the values in
      ``optimizer.state[p]`` (prefixed when the transform was added to an existing chain).
    * ``init(p) -> State`` — the initial state of parameter ``p``.
    * ``update(u, state, p, info) -> (u, state)`` — the readable per-tensor rule; returns the new
      update and the new state record. It must not modify ``u`` in place (it may be ``p.grad``).
    * optionally ``update_many(d, states, params, info) -> Direction`` — a fast path over the whole
      group: ``d`` is a :class:`Direction`, ``states`` the ``State`` record whose fields are lists
      (one entry per parameter) and may be updated in place. Set ``whole_group = True`` when the rule
      itself needs all tensors at once (global-norm clipping): then ``update_many`` is the rule and is
      used with and without ``foreach``.
    * ``post = True`` for a rule that runs after the update was added to the parameters; it acts on
      ``p`` in place and its ``update`` receives ``u=None``.
    """

    State: ClassVar[type | None] = None
    post: ClassVar[bool] = False
    whole_group: ClassVar[bool] = False
    # set True when update_many may assign new values into the state lists (e.g. a buffer created
    # on the first step): the shell then writes the lists back into optimizer.state — unless the
    # transform sets ``self.dirty = False`` to say that this step it only updated in place
    replaces_state: ClassVar[bool] = False
    # set True when the rule acts on every coordinate on its own (no norms, shapes or random
    # draws): then the shell may run ``update_many`` on one flat buffer per group (see _FlatGroup)
    elementwise: ClassVar[bool] = False
    prefix: str = ""

    def init(self, p: Tensor):
        raise NotImplementedError(f"{type(self).__name__} declares State but no init()")

    def update(self, u: Tensor | None, state, p: Tensor, info: StepInfo):
        raise NotImplementedError(f"{type(self).__name__} has no per-tensor rule")

    update_many: Callable | None = None

    @property
    def keys(self) -> tuple[str, ...]:
        if self.State is None:
            return ()
        return tuple(self.prefix + f for f in self.State._fields)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items()
                         if not k.startswith("_") and k not in ("prefix", "State"))
        return f"{type(self).__name__}({args})"


def _lr_value(lr: Any) -> float:
    return float(lr.item()) if isinstance(lr, Tensor) else float(lr)


def check_lr(lr: Any) -> None:
    """Validate a learning rate (a non-negative float or a one-element tensor)."""
    if isinstance(lr, Tensor):
        if lr.numel() != 1:
            raise ValueError("Tensor lr must be 1-element")
        lr = lr.item()
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not lr >= 0.0:
        raise ValueError(f"Invalid learning rate: {lr} (must be a number >= 0)")


def check_range(name: str, value: Any, lo: float, hi: float, *, lo_open: bool = False,
                hi_open: bool = True) -> None:
    """Raise ``ValueError("Invalid <name> value: …")`` unless ``lo ≤ value < hi`` (ends as given)."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isnan(value)
    if ok:
        ok = (value > lo if lo_open else value >= lo) and (value < hi if hi_open else value <= hi)
    if not ok:
        lo_b, hi_b = "(" if lo_open else "[", ")" if hi_open else "]"
        raise ValueError(f"Invalid {name} value: {value!r} (must lie in {lo_b}{lo}, {hi}{hi_b})")


def check_choice(name: str, value: Any, choices: Sequence[Any]) -> None:
    if value not in choices:
        raise ValueError(f"Invalid {name}: {value!r}; choose one of {', '.join(map(repr, choices))}")


class ChainOptimizer(torch.optim.Optimizer):
    """A ``torch.optim.Optimizer`` whose step runs a chain of :class:`Transform` objects.

    Subclasses implement ``transforms(group) -> list[Transform]`` from the group's hyperparameters.
    ``add_transforms`` extends any chain — gradient transforms run before the optimizer's own rule
    (in the order given), post transforms after the update.

    Every step returns the closure's loss (``None`` without a closure). Parameters whose ``.grad``
    is ``None`` are skipped and keep their state, as in PyTorch; ``state[p]["step"]`` counts the
    steps each parameter took.
    """

    #: set by optimizers that cannot take a step without a closure
    needs_closure: ClassVar[bool] = False
    #: the flat path copies the gradients into one buffer each step (one pass more); it pays off
    #: when it saves per-tensor kernel launches, i.e. for groups of many tensors (``fused=True``
    #: needs the flat buffers and takes them whatever the count)
    flat_min_tensors: int = 8
    #: whether steps the one-pass native kernels cover run there (trainlab.optim.native); off,
    #: the foreach and flat paths take them
    native: bool = True

    def __init__(self, params, defaults: dict):
        self._extra_pre: list[Transform] = []
        self._extra_post: list[Transform] = []
        super().__init__(params, defaults)

    # -- the chain -------------------------------------------------------------------------------
    def transforms(self, group: dict) -> list[Transform]:
        raise NotImplementedError

    def add_transforms(self, *transforms: Transform) -> "ChainOptimizer":
        """Add transforms to every group's chain: gradient transforms run first (in order),
        post transforms (``post = True``) after the update. Their state keys get a prefix
        (``"t0."``, ``"t1."``, …) so they never clash with the optimizer's own. Returns ``self``."""
        for tr in transforms:
            if not isinstance(tr, Transform):
                raise TypeError(f"add_transforms takes Transform objects, got {type(tr).__name__}")
            tr.prefix = f"t{len(self._extra_pre) + len(self._extra_post)}."
            (self._extra_post if tr.post else self._extra_pre).append(tr)
        return self

    def chain(self, group: dict | None = None) -> list[Transform]:
        """The full chain that one step runs for ``group`` (the first group by default).

        Built from the group's hyperparameters, and rebuilt only when one of them (other than
        ``lr``, which the transforms read each step) or the added transforms change.
        """
        group = self.param_groups[0] if group is None else group
        key = (len(self._extra_pre), len(self._extra_post),
               tuple((k, v) for k, v in group.items() if k != "params" and k != "lr"))
        cache = self.__dict__.setdefault("_chains", {})
        hit = cache.get(id(group))
        if hit is not None and hit[0] == key:
            return hit[1]
        own = self.transforms(group)
        chain = self._extra_pre + [t for t in own if not t.post] + [t for t in own if t.post] + self._extra_post
        cache[id(group)] = (key, chain)
        return chain

    # -- pickling (copy.deepcopy, torch.save of the whole optimizer) ------------------------------
    def __getstate__(self) -> dict:
        state = super().__getstate__()
        # torch keeps only defaults/state/param_groups; the added transforms belong to the optimizer
        state.update({k: v for k, v in self.__dict__.items()
                      if k in ("_extra_pre", "_extra_post", "_chain")})
        return state

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(state)
        self.__dict__.setdefault("_extra_pre", [])
        self.__dict__.setdefault("_extra_post", [])

    # -- state dict ------------------------------------------------------------------------------
    def load_state_dict(self, state_dict: dict) -> None:
        # torch's load_state_dict keeps the incoming tensors when dtype and device match, so two
        # optimizers loaded from one dict would share (and jointly mutate) their buffers. Copy.
        super().load_state_dict(copy.deepcopy(state_dict))
        for group in self.param_groups:  # a torch.optim state dict lacks our variant options
            for k, v in self.defaults.items():
                group.setdefault(k, v)
        for st in self.state.values():
            if isinstance(st.get("step"), Tensor):  # a torch.optim state dict: steps are tensors
                st["step"] = int(st["step"].item())

    # -- the step --------------------------------------------------------------------------------
    def _foreach(self, group: dict) -> bool:
        fe = group.get("foreach")
        return True if fe is None else bool(fe)

    @torch.no_grad()
    def step(self, closure: Callable[[], Tensor] | None = None):
        """One optimization step over every param group; returns the closure's loss."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        elif self.needs_closure:
            raise RuntimeError(f"{type(self).__name__} needs a closure: optimizer.step(closure)")
        for group in self.param_groups:
            self._step_group(group)
        return loss

    def _step_group(self, group: dict, params: list[Tensor] | None = None,
                    chain: list[Transform] | None = None) -> None:
        if params is None:
            params = [p for p in group["params"] if p.grad is not None]
        if not params:
            return
        chain = self.chain(group) if chain is None else chain
        state = self.state
        states = [state[p] for p in params]
        steps, uniform = [], True
        for p, st in zip(params, states):
            t = st.get("step")
            if t is None:
                _check_param(p, type(self).__name__)
                t = 0
            st["step"] = t = t + 1
            steps.append(t)
        t0 = steps[0]
        uniform = steps.count(t0) == len(steps)
        for tr in chain:
            if tr.State is not None:
                k0 = tr.keys[0]
                for p, st in zip(params, states):
                    if k0 not in st:
                        st.update(zip(tr.keys, tr.init(p)))
        lr = _lr_value(group["lr"])
        foreach = self._foreach(group)
        if uniform:
            info = StepInfo(t0, lr, group, foreach)
            if foreach and self._step_native(group, chain, params, states, info):
                return
            if foreach and self._step_flat(group, chain, params, states, info):
                return
            self._run(chain, params, states, info)
            return
        # parameters that missed steps (no grad) are at different t: run each cohort separately
        for t in sorted(set(steps)):
            idx = [i for i, s in enumerate(steps) if s == t]
            self._run(chain, [params[i] for i in idx], [states[i] for i in idx],
                      StepInfo(t, lr, group, foreach))

    def _run(self, chain: list[Transform], params: list[Tensor], states: list[dict],
             info: StepInfo, grads: list[Tensor] | None = None) -> None:
        if grads is None:
            grads = [p.grad for p in params]
        if info.foreach:
            d = Direction(grads)
            for tr in chain:
                if tr.post:
                    continue
                if tr.update_many is not None:
                    d = self._many(tr, d, params, states, info)
                else:
                    d = Direction(self._each(tr, d.materialize(), params, states, info))
            d.add_to(params)
        else:
            us = grads
            for tr in chain:
                if tr.post:
                    continue
                if tr.whole_group:
                    us = self._many(tr, Direction(us), params, states, info).materialize()
                else:
                    us = self._each(tr, us, params, states, info)
            for p, u in zip(params, us):
                p.add_(u)
        for tr in chain:
            if tr.post:
                if tr.whole_group or (info.foreach and tr.update_many is not None):
                    self._many(tr, None, params, states, info)
                else:
                    self._each(tr, [None] * len(params), params, states, info)


    # -- the flat path ---------------------------------------------------------------------------
    def _step_native(self, group: dict, chain: list[Transform], params: list[Tensor],
                     states: list[dict], info: StepInfo) -> bool:
        """Run the step as one call of a one-pass native kernel (:mod:`trainlab.optim.native`).

        Taken on the CPU when the optimizer's ``native`` is on (the default), the group does not
        say ``fused=False`` or ``native=False``, a kernel covers the chain (Adam/AdamW, SGD,
        Adagrad, RMSprop without the variants that change the rule's shape) and every tensor is a
        contiguous float32/float64 CPU tensor. Returns False (nothing done) otherwise.
        """
        if not self.native or group.get("native") is False or group.get("fused") is False:
            return False
        cache = self.__dict__.setdefault("_native", {})
        hit = cache.get(id(group))
        if hit is None or hit[0] is not chain:
            from trainlab.optim.native import native_rule
            hit = cache[id(group)] = (chain, native_rule(chain))
        return hit[1] is not None and hit[1](params, states, info)

    def _step_flat(self, group: dict, chain: list[Transform], params: list[Tensor],
                   states: list[dict], info: StepInfo) -> bool:
        """Run the step on one flat buffer per state instead of one tensor per parameter.

        Taken when ``group["flat"]`` is not False, the group has at least ``flat_min_tensors``
        tensors (or asks for ``fused``), every transform is elementwise, and every parameter of
        the group has a gradient (same dtype and device, contiguous). The first such
        step moves the group's parameters and states into flat buffers (see :class:`_FlatGroup`);
        after that a step is one gradient copy plus the chain's ``update_many`` over one-element
        lists — the same kernels as the per-tensor fast path on the same numbers, so the result
        is bit-identical, at a few whole-buffer ops per step instead of a few per tensor.
        Returns False (nothing done) when the group does not qualify.
        """
        if group.get("flat") is False or len(params) < 2 or len(params) != len(group["params"]):
            return False
        if len(params) < self.flat_min_tensors and not group.get("fused"):
            return False
        if not all(tr.elementwise for tr in chain):
            return False
        flats = self.__dict__.setdefault("_flat", {})
        fg = flats.get(id(group))
        if fg is None or not fg.still_holds(params, states):
            fg = _FlatGroup.build(params, states, chain)
            if fg is None:
                flats.pop(id(group), None)
                return False
            flats[id(group)] = fg
        fused = self._fused_rule(group, chain)
        fg.gather_grads(params)
        if fused is not None and fused(fg, info):
            return True
        flat_state = [dict(fg.flat)]
        self._run(chain, [fg.param], flat_state, info, grads=[fg.grad])
        fg.scatter_state(flat_state[0], states)
        return True

    def _fused_rule(self, group: dict, chain: list[Transform]):
        """The compiled one-kernel rule for the flat buffers when the group asks for ``fused``
        and :func:`trainlab.optim.fused.fused_rule` covers its chain, else None."""
        if not group.get("fused"):
            return None
        cache = self.__dict__.setdefault("_fused", {})
        hit = cache.get(id(group))
        if hit is None or hit[0] is not chain:
            from trainlab.optim.fused import fused_rule
            hit = cache[id(group)] = (chain, fused_rule(chain))
        return hit[1]

    @property
    def flat_buffers(self) -> dict:
        """For each param group (by index) on the flat path: ``{"param": …, "grad": …, <state
        key>: …}``, the flat buffers the group's tensors are views into (empty before the first
        step, or when no group qualifies)."""
        flats = self.__dict__.get("_flat", {})
        out = {}
        for i, group in enumerate(self.param_groups):
            fg = flats.get(id(group))
            if fg is not None:
                out[i] = {"param": fg.param, "grad": fg.grad,
                          **{k: v for k, v in fg.flat.items() if isinstance(v, Tensor)}}
        return out

    @staticmethod
    def _many(tr: Transform, d: Direction | None, params, states, info) -> Direction:
        if tr.State is None:
            return tr.update_many(d, None, params, info)
        keys = tr.keys
        lists = tr.State(*([st[k] for st in states] for k in keys))
        out = tr.update_many(d, lists, params, info)
        if tr.replaces_state and getattr(tr, "dirty", True):
            for k, values in zip(keys, lists):
                for st, v in zip(states, values):
                    st[k] = v
        return out

    @staticmethod
    def _each(tr: Transform, us: list, params, states, info) -> list:
        out = []
        if tr.State is None:
            for u, p in zip(us, params):
                out.append(tr.update(u, None, p, info)[0])
            return out
        keys, S = tr.keys, tr.State
        for u, p, st in zip(us, params, states):
            u, rec = tr.update(u, S(*[st[k] for k in keys]), p, info)
            for k, v in zip(keys, rec):
                st[k] = v
            out.append(u)
        return out


class _FlatGroup:
    """A param group whose parameters and per-parameter states are views into flat buffers.

    Built at the first flat step: the parameters' values are copied into one contiguous buffer
    and each ``p.data`` is re-pointed to its slice (as apex's flat master weights); each state
    (``exp_avg``, …) gets one buffer likewise, and ``optimizer.state[p][key]`` becomes a view of
    it. Everything torch users rely on keeps working — the ``Parameter`` objects, ``state_dict``
    (it holds the views; saved and loaded values are the same), ``load_state_dict`` and
    ``add_param_group`` (the next step sees the tensors are no longer the views and rebuilds).
    What changes: a tensor taken from ``p.data`` *before* the first step no longer follows the
    parameter, and ``torch.save`` of one parameter writes the whole flat buffer (views share it).
    """

    __slots__ = ("params", "ptrs", "param", "grad", "sizes", "flat", "views")

    @classmethod
    def build(cls, params: list[Tensor], states: list[dict], chain: list[Transform]):
        p0 = params[0]
        for p in params:
            if (p.dtype != p0.dtype or p.device != p0.device or not p.is_contiguous()
                    or p.grad.is_sparse or p.grad.dtype != p.dtype or p.grad.device != p.device):
                return None
        keys = [k for tr in chain if tr.State is not None for k in tr.keys]
        flat, views = {}, {}
        for k in keys:
            values = [st[k] for st in states]
            if all(isinstance(v, Tensor) for v in values):
                if any(v.shape != p.shape or v.dtype != p.dtype or v.device != p.device
                       for v, p in zip(values, params)):
                    return None
            elif all(v is None for v in values):
                flat[k] = None
                continue
            elif not any(isinstance(v, Tensor) for v in values) and all(v == values[0] for v in values):
                flat[k] = values[0]  # a number shared by the group (NAdam's mu_product)
                continue
            else:
                return None
        self = cls()
        self.params, self.sizes = list(params), [p.numel() for p in params]
        self.flat, self.views = flat, views
        with torch.no_grad():
            self.param = torch.cat([p.detach().reshape(-1) for p in params])
            for p, v in zip(params, self._split(self.param, params)):
                p.data = v
            self.grad = torch.empty_like(self.param)
            for k in keys:
                if k in flat:
                    continue
                buf = torch.cat([st[k].detach().reshape(-1) for st in states])
                self._adopt(k, buf, states)
        self.ptrs = [p.data_ptr() for p in params]
        return self

    def _split(self, buf: Tensor, like: list[Tensor]) -> list[Tensor]:
        return [v.view(p.shape) for v, p in zip(buf.split(self.sizes), like)]

    def _adopt(self, key: str, buf: Tensor, states: list[dict]) -> None:
        self.flat[key] = buf
        self.views[key] = vs = self._split(buf, self.params)
        for st, v in zip(states, vs):
            st[key] = v

    def still_holds(self, params: list[Tensor], states: list[dict]) -> bool:
        """Whether the parameters and states are still the views (nothing re-assigned them)."""
        if len(params) != len(self.params):
            return False
        for p, q, ptr in zip(params, self.params, self.ptrs):
            if p is not q or p.data_ptr() != ptr:
                return False
        for k, v in self.flat.items():
            if isinstance(v, Tensor):
                for st, view in zip(states, self.views[k]):
                    if st.get(k) is not view:
                        return False
            else:
                for st in states:
                    if st.get(k, v) is not v and st.get(k) != v:
                        return False
        return True

    def gather_grads(self, params: list[Tensor]) -> None:
        torch.cat([p.grad.reshape(-1) for p in params], out=self.grad)

    def scatter_state(self, flat_state: dict, states: list[dict]) -> None:
        """Write back what the chain replaced (a buffer created at the first step, a number)."""
        for k, v in flat_state.items():
            if v is self.flat.get(k):
                continue
            if isinstance(v, Tensor):
                self._adopt(k, v, states)
            else:
                self.flat[k] = v
                for st in states:
                    st[k] = v


def _check_param(p: Tensor, who: str) -> None:
    if p.grad is not None and p.grad.is_sparse:
        raise RuntimeError(f"{who} does not support sparse gradients")
    if torch.is_complex(p):
        raise RuntimeError(f"{who} supports real parameters only (got a {p.dtype} parameter)")


class Chain(ChainOptimizer):
    """An optimizer made of any list of transforms: ``Chain(params, [ClipByGlobalNorm(1.0),
    L1Penalty(1e-4), ScaleByAdam(), ScaleByLearningRate()], lr=1e-3)``.

    The transforms' hyperparameters are fixed at construction; ``lr`` lives in the param groups
    (so schedules drive it). ``foreach`` chooses the fast paths (default) or the readable rules.
    """

    def __init__(self, params, transforms: Iterable[Transform], lr: float = 1e-3, *,
                 foreach: bool | None = None):
        check_lr(lr)
        self._chain = list(transforms)
        if not self._chain:
            raise ValueError("Chain needs at least one transform")
        seen: set[str] = set()
        for i, tr in enumerate(self._chain):
            if not isinstance(tr, Transform):
                raise TypeError(f"Chain takes Transform objects, got {type(tr).__name__}")
            if seen.intersection(tr.keys):  # e.g. two momentum stages: keep their buffers apart
                tr.prefix = f"{i}."
            seen.update(tr.keys)
        super().__init__(params, {"lr": lr, "foreach": foreach})

    def transforms(self, group: dict) -> list[Transform]:
        return self._chain
