"""Learning-rate schedules: a schedule is a function step → lr.

Every schedule here is a small object you call with a step number (``schedule(t)`` → lr), so it can
be plotted, tested and composed on its own. Two rules depend on the run rather than on t
(:class:`ReduceOnPlateau` and scikit-learn's :class:`Adaptive`): they are stateful and learn from
the monitored value through ``observe(value)``.

What counts as a step is the schedule's ``unit``: ``"epoch"`` (the default: ``t`` = epochs done, the
way torch's schedulers are usually stepped and Keras' ``LearningRateScheduler`` works) or
``"step"`` (``t`` = optimizer steps done, as torch's ``OneCycleLR`` and Keras' schedules count).

How they are used:

* in :func:`trainlab.fit`: ``callbacks=[LearningRateScheduler(cosine(0.1, total_steps=50))]``
  (:mod:`trainlab.train.callbacks`), or from a config: ``schedule: {name: cosine}``;
* in plain PyTorch: ``as_lr_scheduler(optimizer, schedule)`` gives a
  ``torch.optim.lr_scheduler.LRScheduler``; for the plateau rules ``PlateauLR``.

``lr`` (and ``total_steps`` where a schedule needs a horizon) may be left ``None``: the config
runner and the callback fill them from the optimizer's lr and the run's length (:meth:`Schedule.bind`).
Where PyTorch has the same schedule ours gives the same values (the tests compare them).
"""
from __future__ import annotations

import bisect
import copy
import math
from typing import Sequence

import torch

__all__ = [
    "Schedule", "Constant", "StepDecay", "MultiStepDecay", "Exponential", "InverseTime",
    "Polynomial", "Cosine", "CosineRestarts", "Warmup", "OneCycle", "Join",
    "ReduceOnPlateau", "Adaptive", "ScheduleLR", "PlateauLR", "as_lr_scheduler", "UNITS",
]

UNITS = ("epoch", "step")


def _check_positive(name: str, value, *, integer: bool = False, allow_zero: bool = False) -> None:
    if integer:
        ok = isinstance(value, int) and not isinstance(value, bool) and (value >= 0 if allow_zero else value > 0)
    else:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and (
            value >= 0 if allow_zero else value > 0)
    if not ok:
        kind = "an integer" if integer else "a number"
        raise ValueError(f"{name} must be {kind} {'>= 0' if allow_zero else '> 0'}, got {value!r}")


def _check_fraction(name: str, value, lo_open=False, hi_open=False) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and (
        (value > 0 if lo_open else value >= 0) and (value < 1 if hi_open else value <= 1))
    if not ok:
        raise ValueError(f"{name} must lie in {'(' if lo_open else '['}0, 1{')' if hi_open else ']'}, got {value!r}")


class Schedule:
    """Base class: ``schedule(t)`` is the learning rate after ``t`` units (``unit``) of training.

    Subclasses implement ``at(t)``; ``lr`` is the base (or peak) rate. Fields a schedule needs but
    was not given (``lr``, ``total_steps``) are filled by :meth:`bind`.
    """

    unit: str = "epoch"
    lr: float | None = None
    #: the attributes :meth:`bind` may fill
    bindable: tuple[str, ...] = ("lr",)

    def _init_common(self, lr, unit) -> None:
        if lr is not None:
            _check_positive("lr", lr, allow_zero=True)
        if unit not in UNITS:
            raise ValueError(f"unit must be one of {UNITS}, got {unit!r}")
        self.lr, self.unit = lr, unit

    def at(self, t: int) -> float:
        raise NotImplementedError

    def __call__(self, t: int) -> float:
        missing = [k for k in self.bindable if getattr(self, k) is None]
        if missing:
            raise ValueError(f"{type(self).__name__} has no {' or '.join(missing)} yet: give it, or call "
                             f".bind({', '.join(f'{k}=...' for k in missing)}) (fit's callback and the config "
                             "runner do this from the optimizer and the run length)")
        if t < 0:
            raise ValueError(f"a schedule is evaluated at t >= 0, got {t}")
        return float(self.at(int(t)))

    def bind(self, **values) -> "Schedule":
        """A copy with the missing (``None``) fields among ``lr``/``total_steps`` filled from ``values``."""
        out = copy.copy(self)
        for k in self.bindable:
            if getattr(out, k) is None and values.get(k) is not None:
                setattr(out, k, values[k])
        return out

    def values(self, n: int) -> list[float]:
        """[schedule(0), …, schedule(n − 1)] — handy for plots and tests."""
        return [self(t) for t in range(n)]

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({args})"


class Constant(Schedule):
    """lr(t) = lr."""

    def __init__(self, lr: float | None = None, *, unit: str = "epoch"):
        self._init_common(lr, unit)

    def at(self, t):
        return self.lr


class StepDecay(Schedule):
    """lr(t) = lr · γ^⌊t / step_size⌋ — ``torch.optim.lr_scheduler.StepLR``; the notes' "step-down
    annealing" (002). Args: ``step_size`` (units between drops), ``gamma`` γ (0.1)."""

    def __init__(self, lr: float | None = None, step_size: int = 30, gamma: float = 0.1, *,
                 unit: str = "epoch"):
        self._init_common(lr, unit)
        _check_positive("step_size", step_size, integer=True)
        _check_positive("gamma", gamma)
        self.step_size, self.gamma = step_size, gamma

    def at(self, t):
        return self.lr * self.gamma ** (t // self.step_size)


class MultiStepDecay(Schedule):
    """lr(t) = lr · γ^(number of milestones ≤ t) — ``MultiStepLR``. Args: ``milestones``, ``gamma``."""

    def __init__(self, lr: float | None = None, milestones: Sequence[int] = (30, 60, 90),
                 gamma: float = 0.1, *, unit: str = "epoch"):
        self._init_common(lr, unit)
        milestones = list(milestones)
        for m in milestones:
            _check_positive("each milestone", m, integer=True)
        _check_positive("gamma", gamma)
        self.milestones, self.gamma = sorted(milestones), gamma

    def at(self, t):
        return self.lr * self.gamma ** bisect.bisect_right(self.milestones, t)


class Exponential(Schedule):
    """lr(t) = lr · γᵗ — ``ExponentialLR`` (Keras' ``ExponentialDecay`` with decay_steps = 1)."""

    def __init__(self, lr: float | None = None, gamma: float = 0.95, *, unit: str = "epoch"):
        self._init_common(lr, unit)
        _check_positive("gamma", gamma)
        self.gamma = gamma

    def at(self, t):
        return self.lr * self.gamma ** t


class InverseTime(Schedule):
    """lr(t) = lr / (1 + rate·t)^power.

    ``rate=1, power=0.5`` is scikit-learn's ``learning_rate="invscaling"`` (η₀ / (t + 1)^power_t;
    scikit-learn counts t in samples seen), ``power=1`` Keras' ``InverseTimeDecay`` with
    rate = decay_rate / decay_steps, and torch's Adagrad ``lr_decay``.
    """

    def __init__(self, lr: float | None = None, rate: float = 1.0, power: float = 0.5, *,
                 unit: str = "epoch"):
        self._init_common(lr, unit)
        _check_positive("rate", rate, allow_zero=True)
        _check_positive("power", power, allow_zero=True)
        self.rate, self.power = rate, power

    def at(self, t):
        return self.lr / (1 + self.rate * t) ** self.power


class Polynomial(Schedule):
    """lr(t) = (lr − end_lr)·(1 − min(t, T)/T)^power + end_lr, T = ``total_steps``.

    ``end_lr=0`` is ``torch.optim.lr_scheduler.PolynomialLR``; Keras' ``PolynomialDecay`` has end_lr.
    """

    bindable = ("lr", "total_steps")

    def __init__(self, lr: float | None = None, total_steps: int | None = None, power: float = 1.0,
                 end_lr: float = 0.0, *, unit: str = "epoch"):
        self._init_common(lr, unit)
        if total_steps is not None:
            _check_positive("total_steps", total_steps, integer=True)
        _check_positive("power", power, allow_zero=True)
        _check_positive("end_lr", end_lr, allow_zero=True)
        self.total_steps, self.power, self.end_lr = total_steps, power, end_lr

    def at(self, t):
        T = self.total_steps
        return (self.lr - self.end_lr) * (1 - min(t, T) / T) ** self.power + self.end_lr


class Cosine(Schedule):
    """Cosine annealing: lr(t) = min_lr + (lr − min_lr)·(1 + cos(π·min(t, T)/T))/2, T = ``total_steps``.

    ``CosineAnnealingLR(T_max=T, eta_min=min_lr)`` for t ≤ T (Loshchilov & Hutter 2017). After T we
    hold min_lr; PyTorch's formula would climb back up (a half-period restart nobody asks for).
    """

    bindable = ("lr", "total_steps")

    def __init__(self, lr: float | None = None, total_steps: int | None = None, min_lr: float = 0.0, *,
                 unit: str = "epoch"):
        self._init_common(lr, unit)
        if total_steps is not None:
            _check_positive("total_steps", total_steps, integer=True)
        _check_positive("min_lr", min_lr, allow_zero=True)
        self.total_steps, self.min_lr = total_steps, min_lr

    def at(self, t):
        T = self.total_steps
        return self.min_lr + (self.lr - self.min_lr) * (1 + math.cos(math.pi * min(t, T) / T)) / 2


class CosineRestarts(Schedule):
    """Cosine annealing with warm restarts (SGDR, Loshchilov & Hutter 2017).

    Period i lasts Tᵢ = T₀·mⁱ units (T₀ = ``period``, m = ``period_mult``); inside it
    lr = min_lr + (lr − min_lr)·(1 + cos(π·T_cur/Tᵢ))/2, and at each restart lr jumps back to lr.
    Same values as ``CosineAnnealingWarmRestarts(T_0, T_mult, eta_min)``.
    """

    def __init__(self, lr: float | None = None, period: int = 10, period_mult: int = 1,
                 min_lr: float = 0.0, *, unit: str = "epoch"):
        self._init_common(lr, unit)
        _check_positive("period", period, integer=True)
        _check_positive("period_mult", period_mult, integer=True)
        _check_positive("min_lr", min_lr, allow_zero=True)
        self.period, self.period_mult, self.min_lr = period, period_mult, min_lr

    def position(self, t: int) -> tuple[int, int]:
        """(T_cur, Tᵢ): how far into its period step t is, and that period's length."""
        T0, m = self.period, self.period_mult
        if m == 1:
            return t % T0, T0
        # the start of period n is T0·(mⁿ − 1)/(m − 1); find n with integer arithmetic
        n, start, length = 0, 0, T0
        while t >= start + length:
            start += length
            length *= m
            n += 1
        return t - start, length

    def at(self, t):
        t_cur, t_i = self.position(t)
        return self.min_lr + (self.lr - self.min_lr) * (1 + math.cos(math.pi * t_cur / t_i)) / 2


class Warmup(Schedule):
    """Linear warmup, then any schedule: for t < W lr rises linearly from start_factor·lr₀ to lr₀;
    afterwards lr(t) = then(t − W) (the inner schedule starts when the warmup ends).

    lr₀ = then(0). Args: ``then`` (a :class:`Schedule`; default constant), ``warmup_steps`` W,
    ``start_factor`` (0). ``Warmup(Constant(lr), W, s)`` equals torch's ``LinearLR(start_factor=s,
    total_iters=W)``; Goyal et al. 2017 use it for large-batch SGD.
    """

    bindable = ("lr",)

    def __init__(self, then: Schedule | None = None, warmup_steps: int = 5, start_factor: float = 0.0,
                 lr: float | None = None, *, unit: str | None = None):
        if then is None:
            then = Constant(lr, unit=unit or "epoch")
        if not isinstance(then, Schedule) or isinstance(then, (ReduceOnPlateau, Adaptive)):
            raise TypeError(f"Warmup(then=...) takes a step → lr schedule, got {type(then).__name__}")
        unit = unit or then.unit
        if unit != then.unit:
            raise ValueError(f"warmup unit {unit!r} differs from the inner schedule's {then.unit!r}")
        _check_positive("warmup_steps", warmup_steps, integer=True, allow_zero=True)
        _check_fraction("start_factor", start_factor)
        self.then, self.warmup_steps, self.start_factor, self.unit = then, warmup_steps, start_factor, unit
        self.lr = lr if lr is not None else then.lr
        if lr is not None and then.lr is None:
            self.then = then.bind(lr=lr)

    def bind(self, **values):
        """Fill the inner schedule; its horizon is what remains after the warmup."""
        out = copy.copy(self)
        if values.get("total_steps") is not None:
            values = {**values, "total_steps": max(values["total_steps"] - self.warmup_steps, 1)}
        out.then = self.then.bind(**values)
        if out.lr is None:
            out.lr = out.then.lr
        return out

    def at(self, t):
        W = self.warmup_steps
        if t >= W:
            return self.then(t - W)
        peak = self.then(0)
        return peak * (self.start_factor + (1 - self.start_factor) * t / W)


class OneCycle(Schedule):
    """The one-cycle policy (Smith & Topin 2018), as ``torch.optim.lr_scheduler.OneCycleLR``.

    lr rises from lr/div_factor to lr (the peak, torch's ``max_lr``) over the first ``pct_start`` of
    ``total_steps``, then anneals to lr/(div_factor·final_div_factor). ``anneal`` is ``"cos"`` or
    ``"linear"``; ``three_phase`` comes back down to the start before the final anneal.
    Difference: torch also cycles the momentum by default (``cycle_momentum``); we drive only the lr.
    Unit default ``"step"`` as in torch.
    """

    bindable = ("lr", "total_steps")

    def __init__(self, lr: float | None = None, total_steps: int | None = None, pct_start: float = 0.3,
                 anneal: str = "cos", div_factor: float = 25.0, final_div_factor: float = 1e4,
                 three_phase: bool = False, *, unit: str = "step"):
        self._init_common(lr, unit)
        if total_steps is not None:
            _check_positive("total_steps", total_steps, integer=True)
        _check_fraction("pct_start", pct_start, lo_open=True, hi_open=True)
        if anneal not in ("cos", "linear"):
            raise ValueError(f"anneal must be 'cos' or 'linear', got {anneal!r}")
        _check_positive("div_factor", div_factor)
        _check_positive("final_div_factor", final_div_factor)
        self.total_steps, self.pct_start, self.anneal = total_steps, pct_start, anneal
        self.div_factor, self.final_div_factor, self.three_phase = div_factor, final_div_factor, three_phase

    def _interp(self, start: float, end: float, pct: float) -> float:
        if self.anneal == "cos":
            return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)
        return (end - start) * pct + start

    def at(self, t):
        T = self.total_steps
        initial = self.lr / self.div_factor
        final = initial / self.final_div_factor
        up_end = float(self.pct_start * T) - 1
        if self.three_phase:
            phases = [(up_end, initial, self.lr), (float(2 * self.pct_start * T) - 2, self.lr, initial),
                      (T - 1, initial, final)]
        else:
            phases = [(up_end, initial, self.lr), (T - 1, self.lr, final)]
        start_step = 0.0
        for i, (end_step, lo, hi) in enumerate(phases):
            if t <= end_step or i == len(phases) - 1:
                return self._interp(lo, hi, (t - start_step) / (end_step - start_step))
            start_step = end_step
        raise AssertionError("unreachable")


class Join(Schedule):
    """One schedule after another: ``Join([warm, main], boundaries=[5])`` follows ``warm`` for t < 5,
    then ``main(t − 5)`` (optax's ``join_schedules``; torch's ``SequentialLR``)."""

    def __init__(self, schedules: Sequence[Schedule], boundaries: Sequence[int], *, unit: str | None = None):
        schedules = list(schedules)
        boundaries = list(boundaries)
        if len(boundaries) != len(schedules) - 1:
            raise ValueError(f"Join needs one boundary fewer than schedules ({len(schedules)} schedules, "
                             f"{len(boundaries)} boundaries)")
        if boundaries != sorted(boundaries) or any(b < 0 for b in boundaries):
            raise ValueError(f"boundaries must be increasing and >= 0, got {boundaries}")
        units = {s.unit for s in schedules}
        if len(units) != 1:
            raise ValueError(f"all joined schedules need the same unit, got {sorted(units)}")
        self.schedules, self.boundaries = schedules, boundaries
        self.unit = unit or schedules[0].unit
        self.lr = schedules[0].lr

    def bind(self, **values):
        """Fill every part; part i's horizon is the span between its boundaries (the last one's
        is what remains of ``total_steps``)."""
        out = copy.copy(self)
        total = values.get("total_steps")
        edges = [0] + self.boundaries + ([total] if total is not None else [])
        parts = []
        for i, sched in enumerate(self.schedules):
            v = dict(values)
            if total is not None or i < len(self.boundaries):
                v["total_steps"] = max(edges[i + 1] - edges[i], 1) if i + 1 < len(edges) else None
            parts.append(sched.bind(**v))
        out.schedules = parts
        out.lr = parts[0].lr
        return out

    def at(self, t):
        i = bisect.bisect_right(self.boundaries, t)
        start = self.boundaries[i - 1] if i > 0 else 0
        return self.schedules[i](t - start)


# ------------------------------------------------------------------------------------------------
# stateful rules
# ------------------------------------------------------------------------------------------------

class ReduceOnPlateau(Schedule):
    """Reduce lr by ``factor`` when the monitored value stops improving (torch's ``ReduceLROnPlateau``).

    After each ``observe(value)``: if value beats the best by more than ``threshold`` (relative:
    best·(1 ∓ threshold); absolute: best ∓ threshold) it becomes the best, else a bad epoch is
    counted; when bad epochs exceed ``patience`` the lr becomes max(lr·factor, min_lr) (changes
    smaller than ``eps`` are skipped) and ``cooldown`` epochs follow in which nothing is counted.

    Args: ``lr``, ``mode`` ("min"/"max"), ``factor`` (0.1), ``patience`` (10), ``threshold``
    (1e-4), ``threshold_mode`` ("rel"/"abs"), ``cooldown`` (0), ``min_lr`` (0), ``eps`` (1e-8),
    ``monitor`` — the logs key fed to ``observe`` by the fit callback ("val_loss").
    Same decisions as PyTorch (tests feed both the same values); Keras' callback reduces one epoch
    earlier (after ``patience`` bad epochs rather than more than ``patience``).
    """

    def __init__(self, lr: float | None = None, mode: str = "min", factor: float = 0.1,
                 patience: int = 10, threshold: float = 1e-4, threshold_mode: str = "rel",
                 cooldown: int = 0, min_lr: float = 0.0, eps: float = 1e-8, *,
                 monitor: str = "val_loss", unit: str = "epoch"):
        self._init_common(lr, unit)
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
        _check_fraction("factor", factor, hi_open=True)
        _check_positive("patience", patience, integer=True, allow_zero=True)
        _check_positive("threshold", threshold, allow_zero=True)
        if threshold_mode not in ("rel", "abs"):
            raise ValueError(f"threshold_mode must be 'rel' or 'abs', got {threshold_mode!r}")
        _check_positive("cooldown", cooldown, integer=True, allow_zero=True)
        _check_positive("min_lr", min_lr, allow_zero=True)
        self.mode, self.factor, self.patience, self.threshold = mode, factor, patience, threshold
        self.threshold_mode, self.cooldown, self.min_lr, self.eps = threshold_mode, cooldown, min_lr, eps
        self.monitor = monitor
        self.reset()

    def reset(self) -> None:
        self.best = math.inf if self.mode == "min" else -math.inf
        self.bad_epochs = 0
        self.cooldown_left = 0
        self.current = self.lr
        self.stop = False

    def bind(self, **values):
        out = super().bind(**values)
        if out.current is None:
            out.current = out.lr
        return out

    def improved(self, value: float) -> bool:
        if self.mode == "min":
            limit = self.best * (1 - self.threshold) if self.threshold_mode == "rel" else self.best - self.threshold
            return value < limit
        limit = self.best * (1 + self.threshold) if self.threshold_mode == "rel" else self.best + self.threshold
        return value > limit

    def observe(self, value: float) -> float:
        """Feed the monitored value of one epoch; returns the lr to use from now on."""
        if self.current is None:
            raise ValueError("ReduceOnPlateau has no lr yet: give lr or call bind(lr=...)")
        value = float(value)
        if self.improved(value):
            self.best, self.bad_epochs = value, 0
        else:
            self.bad_epochs += 1
        if self.cooldown_left > 0:
            self.cooldown_left -= 1
            self.bad_epochs = 0
        if self.bad_epochs > self.patience:
            new = max(self.current * self.factor, self.min_lr)
            if self.current - new > self.eps:
                self.current = new
            self.cooldown_left, self.bad_epochs = self.cooldown, 0
        return self.current

    def at(self, t):
        return self.current

    def state_dict(self) -> dict:
        return {"best": self.best, "bad_epochs": self.bad_epochs, "cooldown_left": self.cooldown_left,
                "current": self.current, "stop": self.stop}

    def load_state_dict(self, state: dict) -> None:
        for k, v in state.items():
            setattr(self, k, v)


class Adaptive(ReduceOnPlateau):
    """scikit-learn's ``learning_rate="adaptive"``: keep lr while the training loss improves; when it
    has failed to improve by ``tol`` for more than ``patience`` epochs (scikit-learn's
    ``n_iter_no_change``, 10), divide lr by 5 (``factor`` 0.2). Once lr ≤ ``min_lr`` (1e-6), the next
    trigger sets ``stop`` (scikit-learn ends training there; the fit callback does the same).

    Improvement: value < best − tol (absolute), counted against the best value so far.
    Monitors ``"loss"`` (the training loss), as scikit-learn does without early stopping.
    """

    def __init__(self, lr: float | None = None, factor: float = 0.2, patience: int = 10,
                 tol: float = 1e-4, min_lr: float = 1e-6, *, monitor: str = "loss",
                 unit: str = "epoch"):
        super().__init__(lr, "min", factor, patience, tol, "abs", 0, min_lr, 0.0, monitor=monitor,
                         unit=unit)
        self.tol = tol

    def observe(self, value: float) -> float:
        if self.current is None:
            raise ValueError("Adaptive has no lr yet: give lr or call bind(lr=...)")
        value = float(value)
        if value > self.best - self.tol:
            self.bad_epochs += 1
        else:
            self.bad_epochs = 0
        self.best = min(self.best, value)
        if self.bad_epochs > self.patience:
            if self.current <= self.min_lr:
                self.stop = True
            else:
                self.current = self.current * self.factor
            self.bad_epochs = 0
        return self.current


# ------------------------------------------------------------------------------------------------
# plain PyTorch adapters
# ------------------------------------------------------------------------------------------------

class ScheduleLR(torch.optim.lr_scheduler.LRScheduler):
    """A trainlab schedule as a ``torch.optim.lr_scheduler.LRScheduler``: call ``.step()`` once per
    unit, as with any torch scheduler. Group g gets schedule(t) · base_lr_g / base_lr_0, so groups
    keep their lr ratios. A schedule without ``lr`` is bound to the first group's lr."""

    def __init__(self, optimizer: torch.optim.Optimizer, schedule: Schedule, last_epoch: int = -1):
        if isinstance(schedule, ReduceOnPlateau):
            raise TypeError("a plateau rule needs the monitored value: use PlateauLR(optimizer, rule)")
        base = float(optimizer.param_groups[0]["lr"]) if last_epoch == -1 else float(
            optimizer.param_groups[0]["initial_lr"])
        self.schedule = schedule.bind(lr=base)
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        lr = self.schedule(self.last_epoch)
        base0 = self.base_lrs[0]
        return [lr * (b / base0) if base0 else lr for b in self.base_lrs]


class PlateauLR:
    """A stateful rule (:class:`ReduceOnPlateau`, :class:`Adaptive`) driving an optimizer:
    ``step(value)`` once per epoch, like ``torch.optim.lr_scheduler.ReduceLROnPlateau``."""

    def __init__(self, optimizer: torch.optim.Optimizer, rule: ReduceOnPlateau):
        self.optimizer = optimizer
        self.base_lrs = [float(g["lr"]) for g in optimizer.param_groups]
        self.rule = rule.bind(lr=self.base_lrs[0])

    def step(self, value: float) -> None:
        lr = self.rule.observe(value)
        base0 = self.base_lrs[0]
        for g, b in zip(self.optimizer.param_groups, self.base_lrs):
            g["lr"] = lr * (b / base0) if base0 else lr

    def get_last_lr(self) -> list[float]:
        return [float(g["lr"]) for g in self.optimizer.param_groups]

    def state_dict(self) -> dict:
        return {"rule": self.rule.state_dict(), "base_lrs": list(self.base_lrs)}

    def load_state_dict(self, state: dict) -> None:
        self.rule.load_state_dict(state["rule"])
        self.base_lrs = list(state["base_lrs"])


def as_lr_scheduler(optimizer: torch.optim.Optimizer, schedule: Schedule):
    """``ScheduleLR`` for a step → lr schedule, ``PlateauLR`` for a plateau rule."""
    if isinstance(schedule, ReduceOnPlateau):
        return PlateauLR(optimizer, schedule)
    return ScheduleLR(optimizer, schedule)
