"""Verdicts in words: what went wrong in a run, from which epoch, in which layer, and what to do.

Inputs are the epoch history (``loss``, ``val_loss``, optionally ``accuracy`` and
``val_accuracy``), the records of :class:`~trainlab.diagnostics.recorder.DiagnosticsRecorder`
(per-layer gradients, update ratios, unit health, the spread of per-sample validation losses) and
a little context (the loss and accuracy of a trivial predictor, how many epochs were planned,
whether the run stopped on NaN).

**Noise.** A difference between two points of a curve counts only when it exceeds what noise
explains. Two sources are combined, and every curve rule states its margin in these terms:

* the *validation set's size*: the standard error of the validation loss, SE = s/√n, with s the
  standard deviation of the per-sample validation losses (recorded; the median over the records up
  to the best validation epoch) and n the validation set's size; for an accuracy p, √(p(1−p)/n);
* the *curve's own noise* σ: the RMS of the residuals r_e = x_e − (x_{e−1} + x_{e+1})/2 after
  the first quarter of the run, divided by √1.5 (for white noise of variance σ², r has variance
  1.5σ²; a linear trend leaves r at zero, so slow learning is not mistaken for noise).

Curves are compared as trailing means over ``window`` (w = 3) epochs, so the noise of a difference
of two such means is √(2σ²/w + SE²); it is significant above ``z`` (2) times that. A rule must
also still hold at the last two epochs: a blip that goes away is noise, not a trend.

**Kinds** (exactly :data:`KINDS`), ranked from the one to act on first:

============================  ========  ===================================================================
kind                          severity  fires when
============================  ========  ===================================================================
``exploding_gradients``       error     the backward signal ‖∂L/∂a‖ of the first activation is more than
                                        ``exploding_ratio`` (100) × that of the last; or the first weighted
                                        layer's gradient norm is that much above the last's; or the total
                                        gradient norm grew ``exploding_growth`` (1e3) ×, or became
                                        non-finite, before the loss diverged
``diverging``                 error     the training loss became non-finite (also a run stopped on NaN) or
                                        exceeded ``diverge_factor`` (10) × its start and ended above its
                                        start
``lr_too_high``               error     the training loss stays high (≥ ``high_loss`` = 0.5 × the trivial
                                        predictor's) and oscillates without progress (second-half jitter
                                        σ/mean ≥ ``oscillation`` = 0.05; no significant downward trend, or a
                                        second half no better on average than the first half's best), with
                                        update ratios ≥ ``high_update`` (3e-3, 3× the healthy ~1e-3) where
                                        recorded
``memorization``              error     training accuracy is more than halfway from chance to 1 and rose,
                                        while validation accuracy (3-epoch means) stays within max(0.05, z·SE)
                                        of chance throughout
``saturation``                warning   a sigmoid/tanh layer has more than ``saturation_threshold`` (0.5) of
                                        its activations at a bound, at the end or in half the records
``dying_relus``               warning   a ReLU layer has more than ``dead_threshold`` (0.7) of its units dead
                                        (dead units never come back on their own), at the end
``vanishing_gradients``       warning   the first weighted layer's gradient norm is below
                                        ``vanishing_ratio`` (1e-2) × the last layer's, at initialization or
                                        in half the records
``lr_too_low``                warning   the training loss stays high, falls steadily but by less than
                                        ``min_progress`` (10 %) of its start, with update ratios below
                                        ``low_update`` (1e-4)
``underfitting``              warning   training and validation error ≥ ``high_error`` (0.2) (losses ≥
                                        ``high_loss`` × the trivial predictor's without accuracies), with
                                        an optimizer that works (none of the kinds above)
``overfitting``               warning   one of the notes' four rules (below), significant beyond noise
``healthy``                   info      nothing above fired; the key numbers
============================  ========  ===================================================================

Overfitting, the four rules of notes 002 ("How to detect overfitting using loss"):

1. *train loss falls while validation loss rises*: the smoothed validation loss is above its best
   by more than max(``rise_tol`` (2 %), z·noise + √(2 ln m)·σ/√w) (the best of m noisy means lies
   that much below the curve by chance), and the smoothed training loss fell by more than
   ``fall_tol`` (1 %) since that best epoch;
2. *a large train/validation gap*: (val − train)/val ≥ ``gap`` (0.5) and val − train above
   max(``min_gap`` (0.01), z·noise), for w epochs in a row; with accuracies, the training accuracy
   must also exceed the validation accuracy by more than max(``acc_tol``, z·SE_acc) (a loss gap
   with equal accuracies is over-confidence on a few examples, not a better fit);
3. *validation loss plateaus*: over the last 2w epochs (never the first, whose training loss is
   taken while the model still changes fastest), the mean validation loss of the last w improved
   on that of the first w by no more than z·σ·√(2/w) (+ ``min_delta`` = 0.1 %), while the training
   loss fell by at least ``plateau_fall`` (10 %) and beyond its noise, and the gap widened beyond
   the noise of both curves;
4. *validation accuracy plateaus while validation loss rises*: no new best accuracy by more than
   max(``acc_tol`` (0.005), z·SE_acc) for w epochs, while validation loss rose by more than
   max(``rise_tol``, z·noise) over them.

The ranking puts causes before symptoms: exploding gradients make the loss diverge, a too-high
learning rate kills ReLUs, saturated or dead units make gradients vanish, and any of them makes a
model look like it underfits; underfitting is high bias *with an optimizer that works*, so it is
reported only when no optimizer or gradient problem explains the high error.
"""
from __future__ import annotations

import functools
import inspect
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

KINDS = ("exploding_gradients", "diverging", "lr_too_high", "memorization", "saturation", "dying_relus",
         "vanishing_gradients", "lr_too_low", "underfitting", "overfitting", "healthy")
SEVERITY = {"exploding_gradients": "error", "diverging": "error", "lr_too_high": "error", "memorization": "error",
            "saturation": "warning", "dying_relus": "warning", "vanishing_gradients": "warning",
            "lr_too_low": "warning", "underfitting": "warning", "overfitting": "warning", "healthy": "info"}
_SEVERITY_RANK = {"error": 0, "warning": 1, "info": 2}
# kinds whose presence means the optimizer or the gradient flow, not the model's capacity, is the problem
_OPTIMIZER_KINDS = {"exploding_gradients", "diverging", "lr_too_high", "saturation", "dying_relus",
                    "vanishing_gradients", "lr_too_low"}


@dataclass
class Verdict:
    """One finding: ``kind`` (one of :data:`KINDS`), ``severity`` (error / warning / info), ``epoch``
    (1-based epoch it starts; 0 = at initialization), ``layer`` (where it applies, or ``None``), a
    sentence ``message``, the ``fix`` in words and the numbers behind it (``evidence``; ``"rule"``
    says which test fired, ``"mark"`` what to draw on the curves)."""

    kind: str
    epoch: int
    message: str
    fix: str
    evidence: dict = field(default_factory=dict)
    layer: str | None = None
    severity: str = ""

    def __post_init__(self) -> None:
        if self.kind not in SEVERITY:
            raise ValueError(f"unknown verdict kind {self.kind!r}; kinds are {', '.join(KINDS)}")
        self.severity = self.severity or SEVERITY[self.kind]

    @property
    def rule(self) -> str:
        return str(self.evidence.get("rule", ""))

    def to_dict(self) -> dict:
        return {"kind": self.kind, "severity": self.severity, "epoch": self.epoch, "layer": self.layer,
                "message": self.message, "fix": self.fix, "evidence": _jsonable(self.evidence)}

    @classmethod
    def from_dict(cls, d: dict) -> "Verdict":
        return cls(d["kind"], d["epoch"], d["message"], d["fix"], dict(d.get("evidence") or {}), d.get("layer"),
                   d.get("severity", ""))

    def __str__(self) -> str:
        return f"{self.message} Fix: {self.fix}"


class Diagnosis(list):
    """The verdicts of a run, ranked: ``diagnosis[0]`` is :attr:`primary`, the one to act on first."""

    def __init__(self, verdicts=(), context: dict | None = None):
        super().__init__(sorted(verdicts, key=_rank))
        self.context = dict(context or {})

    @property
    def primary(self) -> Verdict | None:
        return self[0] if self else None

    def kinds(self) -> list[str]:
        return [v.kind for v in self]

    def to_dict(self) -> dict:
        """The ``verdicts.json`` contract: ``{"primary": kind, "verdicts": [...], "context": {...}}``."""
        return {"primary": self.primary.kind if self else None, "verdicts": [v.to_dict() for v in self],
                "context": _jsonable(self.context)}

    def text(self) -> str:
        """The verdicts as lines for a terminal, primary first."""
        lines = []
        for i, v in enumerate(self):
            head = "primary" if i == 0 else "also"
            where = _when(v.epoch) + (f", layer {v.layer}" if v.layer else "")
            lines.append(f"[{head}] {v.severity}: {v.kind} ({where})\n  {v.message}\n  fix: {v.fix}")
        return "\n".join(lines)

    def summary(self, run_dir) -> str:
        """The end of a run's terminal output: the primary verdict's kind and message, its fix
        unless the run is healthy, and where the others are (``trainlab diagnose run_dir``)."""
        primary = self.primary
        lines = [f"verdict:    {primary.kind} ({primary.severity}): {primary.message}"]
        if primary.kind != "healthy":
            lines.append(f"fix:        {primary.fix}")
        if len(self) > 1:
            lines.append(f"            {len(self) - 1} more: trainlab diagnose {run_dir}")
        return "\n".join(lines)


def _rank(v: Verdict):
    return (_SEVERITY_RANK[v.severity], KINDS.index(v.kind), v.epoch)


def _jsonable(x):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)  # JSON has no NaN/Inf; "nan", "inf" stay readable
    return x


def _when(epoch: int) -> str:
    return "at initialization" if epoch <= 0 else f"at epoch {epoch}"


def _fmt(x) -> str:
    return f"{x:.3g}" if isinstance(x, (int, float)) else str(x)


# ---------------------------------------------------------------------------------------------
# noise


def curve_noise(xs) -> float:
    """The curve's own noise σ: RMS of the residuals from the 3-point linear interpolation, /√1.5.

    The first quarter of the curve is left out: there the loss falls fastest and its curvature,
    not noise, dominates the residuals. RMS rather than a robust spread, because the spikes of
    a noisy optimizer are part of the noise a trend must stand out from.
    """
    xs = [float(x) for x in xs if x is not None and math.isfinite(float(x))]
    xs = xs[len(xs) // 4:] if len(xs) >= 8 else xs
    if len(xs) < 3:
        return 0.0
    r = [xs[i] - (xs[i - 1] + xs[i + 1]) / 2 for i in range(1, len(xs) - 1)]
    return math.sqrt(sum(v * v for v in r) / len(r) / 1.5)


def _smooth(xs, w: int) -> list[float]:
    """Trailing means over ``w`` epochs (shorter at the start)."""
    out = []
    for e in range(len(xs)):
        part = xs[max(0, e - w + 1): e + 1]
        out.append(sum(part) / len(part))
    return out


def _val_se(records, context) -> float:
    """Standard error of the validation loss from the recorded per-sample spread (median over records)."""
    ses = [r["val"]["loss_std"] / math.sqrt(r["val"]["n"]) for r in records
           if r.get("val") and r["val"].get("n") and r["val"].get("loss_std") is not None]
    if not ses and context.get("val_loss_se") is not None:
        return float(context["val_loss_se"])
    if not ses:
        return 0.0
    ses.sort()
    return ses[len(ses) // 2]


def _slope(xs) -> tuple[float, float]:
    """Least-squares slope per epoch and its standard error."""
    n = len(xs)
    if n < 3:
        return 0.0, math.inf
    t = range(n)
    tm, xm = (n - 1) / 2, sum(xs) / n
    sxx = sum((ti - tm) ** 2 for ti in t)
    b = sum((ti - tm) * (x - xm) for ti, x in zip(t, xs)) / sxx
    res = sum((x - xm - b * (ti - tm)) ** 2 for ti, x in zip(t, xs))
    return b, math.sqrt(res / (n - 2) / sxx) if n > 2 else math.inf


# ---------------------------------------------------------------------------------------------
# the notes' four overfitting rules


OVERFITTING_RULES = {
    1: "training loss falls while validation loss rises",
    2: "large gap between training and validation loss",
    3: "validation loss plateaus while training loss still falls",
    4: "validation accuracy plateaus while validation loss rises",
}
_OVERFIT_FIX = ("Stop earlier (early stopping on val_loss, restore_best_weights), regularize (L2 / weight decay, "
                "dropout, data augmentation), use a smaller model, or get more data.")


def overfitting_verdicts(history, *, window: int = 3, z: float = 2.0, rise_tol: float = 0.02,
                         fall_tol: float = 0.01, gap: float = 0.5, min_gap: float = 0.01, acc_tol: float = 0.005,
                         plateau_fall: float = 0.1, min_delta: float = 1e-3, val_loss_se: float = 0.0, n_val: int | None = None) -> list[Verdict]:
    """The notes' four overfitting rules, each significant beyond the noise (see the module docstring).

    ``val_loss_se`` is the validation loss's standard error (from per-sample losses) and ``n_val``
    the validation set's size (for the accuracy's standard error); both default to "unknown" (0),
    leaving the curve's own noise as the only noise.
    """
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    h = history.history if hasattr(history, "history") else history
    loss, val = h.get("loss"), h.get("val_loss")
    if not loss or not val:
        return []
    n = min(len(loss), len(val))
    loss, val = [float(x) for x in loss[:n]], [float(x) for x in val[:n]]
    if not all(math.isfinite(x) for x in loss + val):
        return []
    w = window
    sv, st = _smooth(val, w), _smooth(loss, w)
    sig_v, sig_t = curve_noise(val), curve_noise(loss)
    se = float(val_loss_se or 0.0)
    noise = math.sqrt(2 * sig_v ** 2 / w + se ** 2)  # of a difference of two w-epoch means
    margin = z * noise
    out: list[Verdict] = []

    def first(cond, start):
        """First epoch index e >= start where cond(e) holds, if it also holds at the last two epochs
        (a trend persists; a spike in the last epoch is noise)."""
        if n - 2 < start or not cond(n - 1) or not cond(n - 2):
            return None
        return next(e for e in range(start, n) if cond(e))

    def best_before(e):
        return min(range(w - 1, e + 1), key=lambda i: sv[i]) if e >= w - 1 else 0

    # rule 1; the best of m noisy means lies ~σ_s·√(2 ln m) below the curve, so that much is allowed on top
    def margin1(e):
        m = max(e - w + 2, 2)
        return margin + math.sqrt(2 * math.log(m)) * sig_v / math.sqrt(w)

    def r1(e):
        b = best_before(e)
        return (sv[e] - sv[b] > max(rise_tol * sv[b], margin1(e)) and st[e] < st[b] * (1 - fall_tol))
    e = first(r1, w)
    if e is not None:
        b = best_before(e)
        m1 = margin1(e)
        out.append(Verdict("overfitting", e + 1,
                           f"Overfitting from epoch {e + 1} (rule 1, {OVERFITTING_RULES[1]}): the validation loss "
                           f"({w}-epoch mean) rose from its best {_fmt(sv[b])} (epoch {b + 1}) to {_fmt(sv[e])}, "
                           f"more than the noise explains (margin {_fmt(m1)}), while the training loss "
                           f"fell from {_fmt(st[b])} to {_fmt(st[e])}; at the end: {_fmt(sv[-1])}.",
                           _OVERFIT_FIX,
                           {"rule": 1, "best_epoch": b + 1, "best_val_loss": sv[b], "val_loss": sv[e],
                            "train_loss_at_best": st[b], "train_loss": st[e], "margin": m1, "val_loss_se": se,
                            "curve_noise": sig_v,
                            "mark": {"series": "val_loss", "epoch": e + 1, "threshold": sv[b] + max(rise_tol * sv[b], m1),
                                     "label": "best val loss + margin"}}))
    # rule 2
    gap_noise = math.sqrt(se ** 2 + (sig_v ** 2 + sig_t ** 2) / w)
    gap_margin = max(min_gap, z * gap_noise)

    tacc, vacc2 = h.get("accuracy"), h.get("val_accuracy")
    have_acc = (tacc and vacc2 and len(tacc) >= n and len(vacc2) >= n
                and all(a is not None for a in list(tacc[:n]) + list(vacc2[:n])))
    sta = _smooth([float(a) for a in tacc[:n]], w) if have_acc else None
    sva = _smooth([float(a) for a in vacc2[:n]], w) if have_acc else None

    def acc_gap_ok(e):
        # a loss gap without an accuracy gap is over-confidence on a few examples (rule 4's business),
        # not "fitting the training set much better"
        if not have_acc:
            return True
        p = min(max(sva[e], 1e-6), 1 - 1e-6)
        se_acc = math.sqrt(p * (1 - p) / n_val) if n_val else 0.0
        return sta[e] - sva[e] > max(acc_tol, z * se_acc)

    def big_gap(e):
        g = sv[e] - st[e]
        return sv[e] > 0 and g / sv[e] >= gap and g > gap_margin and acc_gap_ok(e)

    def r2(e):
        return all(big_gap(i) for i in range(e - w + 1, e + 1))
    e = first(r2, w - 1)
    if e is not None:
        g = sv[e] - st[e]
        out.append(Verdict("overfitting", e + 1,
                           f"Overfitting from epoch {e + 1} (rule 2, {OVERFITTING_RULES[2]}): the training loss "
                           f"{_fmt(st[e])} is {_fmt(sv[e] / max(st[e], 1e-300))}× below the validation loss "
                           f"{_fmt(sv[e])} for {w} epochs in a row (gap {_fmt(g)}, noise margin {_fmt(gap_margin)}); "
                           f"at the end {_fmt(st[-1])} vs {_fmt(sv[-1])}. The model fits the training set much "
                           "better than unseen data.", _OVERFIT_FIX,
                           {"rule": 2, "train_loss": st[e], "val_loss": sv[e], "gap": g, "relative_gap": g / sv[e],
                            "margin": gap_margin,
                            "mark": {"series": "val_loss", "epoch": e + 1, "threshold": st[e] / (1 - gap),
                                     "label": f"train loss / (1 − {gap:g})"}}))
    # rule 3: over the last 2w epochs (never the first, whose training loss is taken while the model is
    # still at its start), compare the mean of the first w with the mean of the last w
    half_noise = math.sqrt(2 / w)

    def deltas(e):
        a, b = slice(e - 2 * w + 1, e - w + 1), slice(e - w + 1, e + 1)
        dv = sum(val[a]) / w - sum(val[b]) / w
        dt = sum(loss[a]) / w - sum(loss[b]) / w
        return dv, dt, sum(loss[a]) / w

    def r3(e):
        if e - 2 * w + 1 < 1:
            return False
        dv, dt, t0 = deltas(e)
        flat = dv <= z * sig_v * half_noise + min_delta * val[e]
        fell = dt >= plateau_fall * t0 and dt > z * sig_t * half_noise
        widened = dt - dv > z * math.sqrt(sig_t ** 2 + sig_v ** 2) * half_noise
        return flat and fell and widened
    e = first(r3, 2 * w)
    if e is not None and not any(v.evidence["rule"] == 1 for v in out):
        dv, dt, t0 = deltas(e)
        vb = sum(val[e - 2 * w + 1: e - w + 1]) / w
        out.append(Verdict("overfitting", e + 1,
                           f"Overfitting from epoch {e + 1} (rule 3, {OVERFITTING_RULES[3]}): over epochs "
                           f"{e - 2 * w + 2}–{e + 1} the validation loss improved by only {_fmt(dv)} (within its noise, "
                           f"{_fmt(z * sig_v * half_noise)}) while the training loss fell by {_fmt(dt)} "
                           f"({dt / t0:.0%}). Further training helps the training set only.", _OVERFIT_FIX,
                           {"rule": 3, "val_loss_before": vb, "val_loss": vb - dv, "train_loss_before": t0,
                            "train_loss": t0 - dt, "val_improvement": dv, "train_fall": dt,
                            "threshold": plateau_fall,
                            "mark": {"series": "val_loss", "epoch": e + 1, "threshold": vb - z * sig_v * half_noise,
                                     "label": "val loss before − noise"}}))
    # rule 4
    acc = h.get("val_accuracy")
    if acc and len(acc) >= n and all(a is not None for a in acc[:n]):
        acc = [float(a) for a in acc[:n]]
        p = max(acc)
        acc_margin = max(acc_tol, z * math.sqrt(max(p * (1 - p), 1e-12) / n_val)) if n_val else acc_tol

        def r4(e):
            if e < w:
                return False
            best_acc = max(acc[: e - w + 1])
            return (max(acc[e - w + 1: e + 1]) <= best_acc + acc_margin
                    and sv[e] - sv[e - w] > max(rise_tol * sv[e - w], margin))
        e = first(r4, w)
        if e is not None:
            best_acc = max(acc[: e - w + 1])
            out.append(Verdict("overfitting", e + 1,
                               f"Overfitting from epoch {e + 1} (rule 4, {OVERFITTING_RULES[4]}): validation "
                               f"accuracy has not improved on {_fmt(best_acc)} by more than {_fmt(acc_margin)} for "
                               f"{w} epochs while the validation loss rose from {_fmt(sv[e - w])} to {_fmt(sv[e])}: "
                               "the model grows over-confident on the examples it gets wrong.", _OVERFIT_FIX,
                               {"rule": 4, "best_val_accuracy": best_acc, "val_accuracy": acc[e],
                                "val_loss_before": sv[e - w], "val_loss": sv[e], "margin": margin,
                                "accuracy_margin": acc_margin,
                                "mark": {"series": "val_loss", "epoch": e + 1,
                                         "threshold": sv[e - w] + max(rise_tol * sv[e - w], margin),
                                         "label": "val loss w epochs before + margin"}}))
    return out


# ---------------------------------------------------------------------------------------------
# records


def _records(diagnostics) -> list[dict]:
    if diagnostics is None:
        return []
    if hasattr(diagnostics, "all_records"):
        return diagnostics.all_records()
    return list(diagnostics)


def _ep(record) -> int:
    """A record's 1-based epoch (the record before training, epoch -1, is 0: initialization)."""
    return int(record["epoch"]) + 1


def _record_mark(recs, value, series: str, epoch: int, threshold: float, label: str, log: bool) -> dict:
    """The evidence mark of a verdict read from the records: the curve it read, one point per record.

    The history has no such curve (a dead fraction, a gradient ratio), so the points travel with the
    verdict and the report draws them as they are: ``[[1-based epoch (0 = initialization), value], ...]``.
    """
    points = []
    for r in recs:
        try:
            v = value(r)
        except (KeyError, TypeError, ZeroDivisionError):
            continue
        if v is not None and math.isfinite(v):
            points.append([_ep(r), float(v)])
    return {"series": series, "epoch": epoch, "threshold": float(threshold), "label": label, "points": points,
            "log": log}


def _ratio(a, b):
    return None if a is None or b is None or not b else float(a) / float(b)


def _update_ratio(records) -> float | None:
    """Median over records (after initialization) of the median update ratio across layers."""
    per = []
    for r in records:
        vals = sorted(float(v["update_ratio"]) for v in (r.get("layers") or {}).values()
                      if v.get("update_ratio") is not None and math.isfinite(float(v["update_ratio"])))
        if vals:
            per.append(vals[len(vals) // 2])
    if not per:
        return None
    per.sort()
    return per[len(per) // 2]


def gradient_verdicts(diagnostics, *, vanishing_ratio: float = 1e-2, exploding_ratio: float = 100.0,
                      exploding_growth: float = 1e3) -> list[Verdict]:
    """Vanishing and exploding gradients from the recorded per-layer gradient norms and backward signals."""
    recs = [r for r in _records(diagnostics) if r.get("layers")]
    out: list[Verdict] = []
    vanish = explode = None
    vanish_at: list[int] = []
    first_total = None
    fix_v = ("Use ReLU-family activations with He initialization, batch normalization, or residual connections "
             "(notes 000/001: the sigmoid's derivative is at most 1/4, so the backward signal shrinks layer by layer).")
    fix_e = ("Use a smaller initialization (Xavier/He; weights below the identity, notes 001), clip gradients "
             "(transforms: clip_global_norm), add batch normalization, or lower the learning rate.")
    for r in recs:
        names = [k for k, v in r["layers"].items() if v.get("grad_norm") is not None]
        g = [float(r["layers"][k]["grad_norm"]) for k in names]
        bad = [k for k, v in zip(names, g) if not math.isfinite(v)]
        if bad:
            if explode is None:
                explode = Verdict("exploding_gradients", _ep(r),
                                  f"Exploding gradients {_when(_ep(r))}: the gradient of {', '.join(bad[:3])} is not "
                                  "finite.", fix_e, {"rule": "non-finite gradient", "layers": bad}, bad[0])
            continue
        if len(g) < 2:
            continue
        first, last = g[0], g[-1]
        total = math.sqrt(sum(v * v for v in g))
        first_total = total if first_total is None else first_total
        acts = [(k, float(a["grad_out_norm"])) for k, a in (r.get("activations") or {}).items()
                if a.get("grad_out_norm") is not None]
        if last > 0 and first / last < vanishing_ratio:
            vanish_at.append(_ep(r))
            if vanish is None:
                orders = math.log10(last / max(first, 1e-300))
                vanish = Verdict("vanishing_gradients", _ep(r),
                                 f"Vanishing gradients {_when(_ep(r))}: the first layer's gradient norm "
                                 f"({_fmt(first)}, {names[0]}) is {orders:.1f} orders of magnitude below the last "
                                 f"layer's ({_fmt(last)}, {names[-1]}), so the early layers barely learn.", fix_v,
                                 {"rule": "first layer far below last", "first_layer": names[0],
                                  "last_layer": names[-1], "first_grad_norm": first, "last_grad_norm": last,
                                  "ratio": first / last, "threshold": vanishing_ratio,
                                  "profile": dict(zip(names, g))}, names[0])
        if explode is not None:
            continue
        if len(acts) >= 2 and acts[-1][1] > 0 and math.isfinite(acts[0][1]) and acts[0][1] / acts[-1][1] > exploding_ratio:
            ratio = acts[0][1] / acts[-1][1]
            explode = Verdict("exploding_gradients", _ep(r),
                              f"Exploding gradients {_when(_ep(r))}: the backward signal ‖∂L/∂a‖ reaching the first "
                              f"activation ({acts[0][0]}, {_fmt(acts[0][1])}) is {_fmt(ratio)}× that at the last "
                              f"({acts[-1][0]}, {_fmt(acts[-1][1])}): it grows layer by layer on its way back "
                              f"(threshold {exploding_ratio:g}×).", fix_e,
                              {"rule": "backward signal grows with depth", "ratio": ratio, "threshold": exploding_ratio,
                               "profile": dict(acts)}, acts[0][0])
        elif last > 0 and first / last > exploding_ratio:
            explode = Verdict("exploding_gradients", _ep(r),
                              f"Exploding gradients {_when(_ep(r))}: the first layer's gradient norm ({_fmt(first)}) "
                              f"is {_fmt(first / last)}× the last layer's ({_fmt(last)}): the backward signal grows "
                              f"layer by layer (threshold {exploding_ratio:g}×).", fix_e,
                              {"rule": "first layer far above last", "first_grad_norm": first, "last_grad_norm": last,
                               "ratio": first / last, "threshold": exploding_ratio}, names[0])
        elif first_total and total / first_total > exploding_growth:
            explode = Verdict("exploding_gradients", _ep(r),
                              f"Exploding gradients {_when(_ep(r))}: the total gradient norm grew "
                              f"{_fmt(total / first_total)}× since the first record ({_fmt(first_total)} → "
                              f"{_fmt(total)}; threshold {exploding_growth:g}×).", fix_e,
                              {"rule": "gradient norm growth", "first_total": first_total, "total": total,
                               "threshold": exploding_growth})
    # persistent: at initialization (where init decides it) or in at least half the records
    if vanish is not None and (vanish_at[0] == 0 or 2 * len(vanish_at) >= len(recs)):
        f, l = vanish.evidence["first_layer"], vanish.evidence["last_layer"]
        vanish.evidence["mark"] = _record_mark(
            recs, lambda r: _ratio(r["layers"][f].get("grad_norm"), r["layers"][l].get("grad_norm")),
            f"gradient norm {f} / {l}", vanish.epoch, vanishing_ratio, f"{vanishing_ratio:g}×", True)
        vanish.evidence["records_vanishing"] = len(vanish_at)
        vanish.evidence["records"] = len(recs)
        vanish.message += f" Seen in {len(vanish_at)} of {len(recs)} recordings."
        out.append(vanish)
    if explode is not None:
        ev = explode.evidence
        if ev["rule"] == "backward signal grows with depth":
            a0, a1 = list(ev["profile"])[0], list(ev["profile"])[-1]
            ev["mark"] = _record_mark(
                recs, lambda r: _ratio(r["activations"][a0].get("grad_out_norm"),
                                       r["activations"][a1].get("grad_out_norm")),
                f"backward signal ‖∂L/∂a‖ {a0} / {a1}", explode.epoch, exploding_ratio, f"{exploding_ratio:g}×", True)
        elif ev["rule"] == "first layer far above last":
            ev["mark"] = _record_mark(
                recs, lambda r: _ratio(*(v.get("grad_norm") for v in (list(r["layers"].values())[0],
                                                                      list(r["layers"].values())[-1]))),
                "gradient norm first / last layer", explode.epoch, exploding_ratio, f"{exploding_ratio:g}×", True)
        elif ev["rule"] == "gradient norm growth":
            ev["mark"] = _record_mark(
                recs, lambda r: _ratio(math.sqrt(sum(float(v["grad_norm"]) ** 2 for v in r["layers"].values()
                                                     if v.get("grad_norm") is not None)), ev["first_total"]),
                "total gradient norm / its first record", explode.epoch, exploding_growth,
                f"{exploding_growth:g}×", True)
        out.append(explode)
    return out


def unit_verdicts(diagnostics, *, dead_threshold: float = 0.7, saturation_threshold: float = 0.5) -> list[Verdict]:
    """Dying ReLUs and saturated sigmoid/tanh layers from the recorded activation statistics."""
    recs = _records(diagnostics)
    out: list[Verdict] = []
    if not recs:
        return out
    last = recs[-1].get("activations") or {}
    dead: dict[str, list] = {}
    sat: dict[str, list] = {}
    for r in recs:
        for name, a in (r.get("activations") or {}).items():
            if a.get("dead_frac") is not None and a["dead_frac"] > dead_threshold:
                dead.setdefault(name, []).append((_ep(r), a["dead_frac"]))
            if a.get("saturated_frac") is not None and a["saturated_frac"] > saturation_threshold:
                sat.setdefault(name, []).append((_ep(r), a["saturated_frac"], a.get("kind")))
    # dead units do not come back on their own: the layer must still be dead at the end
    dying = [(n, s) for n, s in dead.items() if (last.get(n) or {}).get("dead_frac", 0) > dead_threshold]
    if dying:
        name, seen = max(dying, key=lambda t: last[t[0]]["dead_frac"])
        d = last[name]["dead_frac"]
        out.append(Verdict("dying_relus", seen[0][0],
                           f"Dying ReLUs {_when(seen[0][0])}: {seen[0][1]:.0%} of the units of {name} output 0 for every "
                           f"probe sample (threshold {dead_threshold:.0%}), {d:.0%} at the end; they receive no gradient "
                           "and never recover on their own.",
                           "Lower the learning rate, use He initialization with a small positive bias (bias: relu, "
                           "0.01) instead of a negative one, a leaky variant (leaky_relu, elu), or reactivate the "
                           "dead units (trainlab.diagnostics.reactivate_dead_units).",
                           {"rule": "dead fraction over threshold", "dead_frac": seen[0][1], "final_dead_frac": d,
                            "threshold": dead_threshold, "layers": sorted(n for n, _ in dying),
                            "mark": _record_mark(recs, lambda r: r["activations"][name]["dead_frac"],
                                                 f"dead fraction of {name}", seen[0][0], dead_threshold,
                                                 f"{dead_threshold:.0%} dead", False)}, name))
    saturated = [(n, s) for n, s in sat.items()
                 if (last.get(n) or {}).get("saturated_frac", 0) > saturation_threshold or 2 * len(s) >= len(recs)]
    if saturated:
        name, seen = max(saturated, key=lambda t: max(x[1] for x in t[1]))
        out.append(Verdict("saturation", seen[0][0],
                           f"Saturated units {_when(seen[0][0])}: {seen[0][1]:.0%} of the activations of {name} "
                           f"({seen[0][2]}) sit at a bound (threshold {saturation_threshold:.0%}), where the "
                           f"derivative is nearly 0; over threshold in {len(seen)} of {len(recs)} recordings.",
                           "Use a smaller initialization (Xavier for tanh/sigmoid, notes 004), normalize the inputs, "
                           "add batch normalization, or a non-saturating activation (ReLU family).",
                           {"rule": "saturated fraction over threshold", "saturated_frac": seen[0][1],
                            "threshold": saturation_threshold, "records_saturated": len(seen), "records": len(recs),
                            "mark": _record_mark(recs, lambda r: r["activations"][name]["saturated_frac"],
                                                 f"saturated fraction of {name}", seen[0][0], saturation_threshold,
                                                 f"{saturation_threshold:.0%} saturated", False)},
                           name))
    return out


# ---------------------------------------------------------------------------------------------
# the optimizer, the fit, and the whole diagnosis


def _series(h, key):
    v = h.get(key)
    return [float(x) if x is not None else math.nan for x in v] if v else []


def optimizer_verdicts(history, diagnostics=None, *, start_loss: float | None = None,
                       baseline_loss: float | None = None, stopped: dict | None = None,
                       diverge_factor: float = 10.0, high_loss: float = 0.5, oscillation: float = 0.05,
                       high_update: float = 3e-3, low_update: float = 1e-4, min_progress: float = 0.1,
                       z: float = 2.0) -> list[Verdict]:
    """``diverging``, ``lr_too_high`` and ``lr_too_low`` from the training loss and the update ratios."""
    h = history.history if hasattr(history, "history") else (history or {})
    loss = _series(h, "loss")
    recs = _records(diagnostics)
    if start_loss is None:
        start_loss = next((float(r["loss"]) for r in recs if r.get("epoch", 0) < 0 and r.get("loss") is not None),
                          None)
    ref = start_loss if start_loss is not None and math.isfinite(start_loss) else (loss[0] if loss else None)
    out: list[Verdict] = []
    fix_div = ("Lower the learning rate (by 10× and retry), clip gradients (transforms: clip_global_norm), "
               "or use an adaptive optimizer (Adam) with its default rate.")
    bad = next((e for e, x in enumerate(loss) if not math.isfinite(x)), None)
    limit = diverge_factor * max(ref, baseline_loss or 0.0) if ref is not None and ref > 0 else None
    if stopped is not None or bad is not None:
        e = int(stopped["epoch"]) if stopped is not None else bad + 1
        value = stopped["value"] if stopped is not None else loss[bad]
        where = (f" at step {stopped['step']} of epoch {e}; the run stopped there" if stopped is not None
                 else "")
        # the divergence starts where the loss first went far above its start, often epochs before
        # it overflowed; growth of the gradients from then on is its consequence, not its cause
        far = next((i for i, x in enumerate(loss[:e - 1]) if limit is not None and math.isfinite(x) and x > limit),
                   None)
        if far is not None:
            msg = (f"Diverging from epoch {far + 1}: the training loss {_fmt(loss[far])} is more than "
                   f"{diverge_factor:g}× its start ({_fmt(ref)}), and it became {value}{where or f' at epoch {e}'}.")
            mark = {"series": "loss", "epoch": far + 1, "threshold": limit, "label": f"{diverge_factor:g}× start"}
            e = far + 1
        else:
            msg = f"Diverging {_when(e)}: the training loss became {value}{where} (it started at {_fmt(ref)})."
            mark = {"series": "loss", "epoch": e, "threshold": None, "label": "loss became non-finite"}
        out.append(Verdict("diverging", e, msg, fix_div,
                           {"rule": "non-finite loss", "value": value, "start_loss": ref, "stopped": stopped,
                            "mark": mark}))
        return out
    if not loss or limit is None:
        return out
    far = next((e for e, x in enumerate(loss) if x > limit), None)
    if far is not None and loss[-1] > ref:  # a spike the loss recovers from (below its start) is not divergence
        out.append(Verdict("diverging", far + 1,
                           f"Diverging at epoch {far + 1}: the training loss {_fmt(loss[far])} is more than "
                           f"{diverge_factor:g}× its start ({_fmt(ref)}); the largest was {_fmt(max(loss))}.", fix_div,
                           {"rule": "loss far above its start", "loss": loss[far], "start_loss": ref, "limit": limit,
                            "mark": {"series": "loss", "epoch": far + 1, "threshold": limit,
                                     "label": f"{diverge_factor:g}× start"}}))
        return out
    level = baseline_loss if baseline_loss else ref
    n = len(loss)
    ratio = _update_ratio([r for r in recs if r.get("epoch", 0) >= 0])
    half = loss[n // 2:] if n >= 4 else loss
    final = sum(loss[-min(3, n):]) / min(3, n)
    high = final >= high_loss * level
    if not high or n < 3:
        return out
    jitter = curve_noise(half) / max(sum(half) / len(half), 1e-300)
    b, b_se = _slope(half)
    # no progress: no significant downward trend, or a second half that on average is no better than
    # the best the first half already reached (one spike at its start fakes a downward trend)
    first_half = loss[: n - len(half)] or loss[:1]
    no_trend = b > -z * b_se or sum(half) / len(half) >= min(first_half)
    ups = sum(1 for a, c in zip(loss, loss[1:]) if c > a) / max(n - 1, 1)
    if jitter >= oscillation and no_trend and (ratio is None or ratio >= high_update):
        rtxt = f", update-to-weight ratios around {_fmt(ratio)} (healthy ~1e-3)" if ratio is not None else ""
        out.append(Verdict("lr_too_high", 1,
                           f"Learning rate too high: the training loss oscillates without progress (second-half "
                           f"jitter {jitter:.0%} of its level, {ups:.0%} of epochs go up{rtxt}) and stays at "
                           f"{_fmt(final)}, {_fmt(final / level)}× the trivial predictor's loss {_fmt(level)}.",
                           "Lower the learning rate (try 3–10× smaller), or use a schedule that decays it; with SGD "
                           "add momentum only together with a smaller rate.",
                           {"rule": "oscillation without progress", "jitter": jitter, "threshold": oscillation,
                            "update_ratio": ratio, "final_loss": final, "reference_loss": level, "up_fraction": ups,
                            "mark": {"series": "loss", "epoch": 1, "threshold": high_loss * level,
                                     "label": f"{high_loss:g}× trivial loss"}}))
        return out
    progress = (loss[0] - final) / max(loss[0], 1e-300)
    steady = ups <= 0.34
    if progress < min_progress and steady and ratio is not None and ratio < low_update:
        out.append(Verdict("lr_too_low", 1,
                           f"Learning rate too low: the training loss falls steadily but only {progress:.1%} in {n} "
                           f"epochs ({_fmt(loss[0])} → {_fmt(final)}), with update-to-weight ratios around "
                           f"{_fmt(ratio)} (healthy ~1e-3; threshold {low_update:g}). The model is not too small: "
                           "the optimizer barely moves it.",
                           "Raise the learning rate (10× and more; a learning-rate range test finds it), or use Adam.",
                           {"rule": "steady negligible progress", "progress": progress, "threshold": min_progress,
                            "update_ratio": ratio, "update_threshold": low_update, "final_loss": final,
                            "mark": {"series": "loss", "epoch": 1, "threshold": loss[0] * (1 - min_progress),
                                     "label": f"{min_progress:.0%} below the start"}}))
    return out


def memorization_verdict(history, *, chance_accuracy: float | None = None, n_val: int | None = None,
                         z: float = 2.0) -> Verdict | None:
    """Training accuracy climbs toward 1 while validation accuracy stays at chance."""
    h = history.history if hasattr(history, "history") else history
    acc, vacc = _series(h, "accuracy"), _series(h, "val_accuracy")
    if not acc or not vacc or chance_accuracy is None:
        return None
    c = float(chance_accuracy)
    k = min(3, len(acc))
    tr, va = acc[-1], sum(vacc[-k:]) / k  # a rising training accuracy is read where it got to
    margin = max(0.05, z * math.sqrt(c * (1 - c) / n_val)) if n_val else 0.05
    # "stays at chance": the whole smoothed validation curve, not only its end (a model that learned
    # something first and then overfits a tiny noisy set is overfitting, not memorizing)
    va_max = max(_smooth(vacc, k))
    if tr >= c + 0.5 * (1 - c) and tr - acc[0] >= 0.1 and va_max <= c + margin:
        e = next(i for i, a in enumerate(acc) if a >= c + 0.5 * (1 - c)) + 1
        return Verdict("memorization", e,
                       f"Memorization from epoch {e}: training accuracy rose to {_fmt(tr)} while validation accuracy "
                       f"stays at chance ({_fmt(va)}; chance {_fmt(c)}, margin {_fmt(margin)}). The model memorizes the "
                       "training examples; nothing it learns carries over.",
                       "Check the labels and the train/validation split (shuffled or random labels, leakage); with "
                       "correct labels, regularize strongly and get more data.",
                       {"rule": "train accuracy up, validation at chance", "train_accuracy": tr, "val_accuracy": va,
                        "best_val_accuracy": va_max,
                        "chance_accuracy": c, "margin": margin,
                        "mark": {"series": "val_accuracy", "epoch": e, "threshold": c + margin,
                                 "label": "chance + margin"}})
    return None


def underfitting_verdict(history, *, high_error: float = 0.2, high_loss: float = 0.5,
                         baseline_loss: float | None = None, epochs_planned: int | None = None,
                         recorded: bool = True, min_progress: float = 0.1, z: float = 2.0) -> Verdict | None:
    """High bias (notes 003): training *and* validation error high at the end of the run.

    ``recorded`` says whether diagnostics (update ratios, gradients) were there to rule out the
    optimizer; without them the verdict does not claim it works, and a loss that barely moved
    points the fix at the learning rate too.
    """
    h = history.history if hasattr(history, "history") else history
    loss, val = _series(h, "loss"), _series(h, "val_loss")
    if not loss:
        return None
    n = len(loss)
    acc, vacc = _series(h, "accuracy"), _series(h, "val_accuracy")
    k = min(3, n)
    if acc:
        train_err = 1 - sum(acc[-k:]) / k
        val_err = 1 - sum(vacc[-k:]) / k if vacc else None
        if not (train_err >= high_error and (val_err is None or val_err >= high_error)):
            return None
        vtxt = f" and validation error {_fmt(val_err)}" if val_err is not None else ""
        what = f"training error {_fmt(train_err)}{vtxt} are both at least {_fmt(high_error)}"
        ev = {"train_error": train_err, "val_error": val_err, "threshold": high_error,
              "mark": {"series": "accuracy", "epoch": n, "threshold": 1 - high_error, "label": f"1 − {high_error:g}"}}
    else:
        ref = baseline_loss if baseline_loss is not None else loss[0]
        if ref <= 0 or not math.isfinite(ref):
            return None
        tl = sum(loss[-k:]) / k
        vl = sum(val[-k:]) / k if val else None
        if not (tl >= high_loss * ref and (vl is None or vl >= high_loss * ref)):
            return None
        vtxt = f" and validation loss {_fmt(vl)}" if vl is not None else ""
        whose = "a trivial predictor's" if baseline_loss is not None else "the first epoch's"
        what = f"training loss {_fmt(tl)}{vtxt} are still at least {_fmt(high_loss)}× {whose} loss {_fmt(ref)}"
        ev = {"train_loss": tl, "val_loss": vl, "reference_loss": ref,
              "mark": {"series": "loss", "epoch": n, "threshold": high_loss * ref, "label": f"{high_loss:g}× trivial loss"}}
    # "train longer" only when the loss still falls beyond its noise and the run was not stopped early
    tail = loss[-max(3, n // 3):]
    b, b_se = _slope(tail)
    falling = b < -z * b_se and b < 0
    early = epochs_planned is not None and n < epochs_planned
    if early:
        fix = (f"Use a larger model (more layers or units) or better features. Training longer will not help: the run "
               f"was stopped at epoch {n} of {epochs_planned} because the validation loss stopped improving.")
    elif falling:
        fix = "Train longer (the training loss is still falling), or use a larger model (more layers or units)."
    else:
        fix = ("Use a larger model (more layers or units) or better features; the training loss has flattened, so "
               "more epochs of this model will not help.")
    ev.update({"rule": "high training and validation error", "still_falling": falling, "stopped_early": early,
               "optimizer_checked": recorded})
    if recorded:
        why = "with an optimizer that works (loss finite, no gradient or learning-rate problem found)"
    else:
        why = ("with a finite loss; whether the optimizer works is unknown (diagnostics were not recorded: no "
               "update ratios or gradients)")
        progress = (loss[0] - sum(loss[-k:]) / k) / max(abs(loss[0]), 1e-300)
        if progress < min_progress:
            fix = (f"The training loss fell only {progress:.1%} in {n} epochs, which is also what too low a "
                   "learning rate looks like: raise it first (or record diagnostics to tell). " + fix)
    return Verdict("underfitting", n, f"Underfitting (high bias) at epoch {n}: {what}, {why}.", fix, ev)


def healthy_verdict(history, diagnostics=None) -> Verdict:
    """The positive statement when nothing is wrong: the key numbers."""
    h = history.history if hasattr(history, "history") else (history or {})
    loss, val = _series(h, "loss"), _series(h, "val_loss")
    acc, vacc = _series(h, "accuracy"), _series(h, "val_accuracy")
    n = len(loss)
    parts, ev = [], {"rule": "no problem found", "epochs": n}
    if loss:
        parts.append(f"training loss {_fmt(loss[0])} → {_fmt(loss[-1])}")
        ev["train_loss"] = loss[-1]
    if val:
        b = min(range(len(val)), key=lambda i: val[i])
        parts.append(f"validation loss {_fmt(val[-1])} (best {_fmt(val[b])} at epoch {b + 1})")
        ev.update(val_loss=val[-1], best_val_loss=val[b], best_epoch=b + 1)
    if acc:
        parts.append(f"training accuracy {_fmt(acc[-1])}")
        ev["train_accuracy"] = acc[-1]
    if vacc:
        parts.append(f"validation accuracy {_fmt(vacc[-1])}")
        ev["val_accuracy"] = vacc[-1]
    flow = " Gradients flow through every layer and no layer is mostly dead or saturated." if _records(diagnostics) else ""
    return Verdict("healthy", n,
                   f"Healthy after {n} epoch{'' if n == 1 else 's'}: {', '.join(parts) or 'no curves recorded'}; the curves show neither "
                   f"over- nor underfitting beyond their noise.{flow}",
                   "Nothing to fix. To do better, try the notes' recipe: a larger model with regularization, "
                   "augmentation, and learning-rate annealing.", ev)



def _threshold_funcs():
    return (gradient_verdicts, unit_verdicts, overfitting_verdicts, underfitting_verdict, optimizer_verdicts,
            memorization_verdict)


_CONTEXT = {"history", "diagnostics", "baseline_loss", "start_loss", "stopped", "chance_accuracy", "n_val",
            "val_loss_se", "epochs_planned", "recorded"}


@functools.lru_cache(maxsize=None)
def _parameter_names(fn) -> frozenset[str]:
    # inspect.signature costs ~0.1 ms a call, and every run's diagnosis asks for a dozen
    return frozenset(inspect.signature(fn).parameters)


def threshold_names() -> list[str]:
    """The keyword arguments :func:`diagnose` accepts as thresholds."""
    names: set[str] = set()
    for fn in _threshold_funcs():
        names |= {p for p in _parameter_names(fn) if p not in _CONTEXT}
    return sorted(names)


def diagnose(history=None, diagnostics=None, *, baseline_loss: float | None = None,
             chance_accuracy: float | None = None, n_val: int | None = None, epochs_planned: int | None = None,
             stopped: dict | None = None, start_loss: float | None = None, val_loss_se: float | None = None,
             **thresholds) -> Diagnosis:
    """All verdicts of a run, ranked; ``result.primary`` is the one to act on first.

    Args:
        history: a :class:`~trainlab.train.callbacks.History`, ``{key: [value per epoch]}``, or a run
            folder (``str`` / ``Path``): then the run's ``metrics.json`` and ``verdicts.json`` are read
            and the diagnosis is recomputed (what ``trainlab diagnose RUN_DIR`` prints).
        diagnostics: a :class:`~trainlab.diagnostics.recorder.DiagnosticsRecorder` or its records.
        baseline_loss: a trivial predictor's loss (the entropy of the class frequencies; the targets'
            variance for regression).
        chance_accuracy: a trivial predictor's accuracy (the largest class frequency), for memorization.
        n_val: the validation set's size (standard error of the validation accuracy).
        epochs_planned: the epochs the run was configured for (fewer ran: it was stopped early).
        stopped: ``{"epoch", "step", "value"}`` when the run stopped on a non-finite loss: the epoch
            and the step within it count from 1, as everywhere a user reads them (the message,
            stderr, ``verdicts.json``).
        start_loss: the loss at initialization (default: the recorder's record before training).
        val_loss_se: the validation loss's standard error when the recorder did not measure it.
        thresholds: any keyword in :func:`threshold_names`.
    """
    if isinstance(history, (str, Path)):
        return diagnose_folder(history, **thresholds)
    unknown = set(thresholds) - set(threshold_names())
    if unknown:
        raise TypeError(f"unknown threshold(s): {', '.join(sorted(unknown))}; allowed: {', '.join(threshold_names())}")

    def pick(fn):
        names = _parameter_names(fn)
        return {k: v for k, v in thresholds.items() if k in names}

    recs = _records(diagnostics)
    h = (history.history if hasattr(history, "history") else history) or {}
    if n_val is None:
        n_val = next((r["val"]["n"] for r in recs if r.get("val")), None)
    # the validation loss's standard error up to its best epoch: an overfitting model's per-sample
    # losses spread ever wider (confident mistakes), which would hide the very rise it is tested for
    vl = [float(x) for x in (h.get("val_loss") or [])]
    best = min(range(len(vl)), key=lambda i: vl[i] if math.isfinite(vl[i]) else math.inf) if vl else None
    upto = [r for r in recs if best is not None and 0 <= r.get("epoch", -1) <= best]
    se = _val_se(upto or recs, {"val_loss_se": val_loss_se})
    context = {"baseline_loss": baseline_loss, "chance_accuracy": chance_accuracy, "n_val": n_val,
               "epochs_planned": epochs_planned, "epochs_run": len(h.get("loss") or []),
               "stopped": stopped,
               "start_loss": start_loss, "val_loss_se": se, "thresholds": dict(thresholds)}
    out: list[Verdict] = []
    out += optimizer_verdicts(h, recs, start_loss=start_loss, baseline_loss=baseline_loss, stopped=stopped,
                              **pick(optimizer_verdicts))
    grads = gradient_verdicts(recs, **pick(gradient_verdicts)) if recs else []
    div = next((v for v in out if v.kind == "diverging"), None)
    for v in grads:
        if v.kind == "exploding_gradients" and div is not None and (
                v.epoch >= div.epoch or v.rule in ("non-finite gradient", "gradient norm growth")):
            # a consequence of the divergence, not its cause: told as part of it
            div.evidence["exploding_gradients"] = v.to_dict()
            continue
        out.append(v)
    out += unit_verdicts(recs, **pick(unit_verdicts)) if recs else []
    if div is None:
        mem = memorization_verdict(h, chance_accuracy=chance_accuracy, n_val=n_val, **pick(memorization_verdict))
        if mem is not None:
            out.append(mem)
        over = overfitting_verdicts(h, val_loss_se=se, n_val=n_val, **pick(overfitting_verdicts))
        u = underfitting_verdict(h, baseline_loss=baseline_loss, epochs_planned=epochs_planned,
                                 recorded=bool(recs), **pick(underfitting_verdict))
        causes = [v for v in out if v.kind in _OPTIMIZER_KINDS]
        if u is not None and mem is not None:
            u = None  # high training error on random labels is memorization in progress, not high bias
        if u is not None:
            if over:
                rules = ", ".join(str(v.evidence["rule"]) for v in over)
                u.message += (f" (The validation curve also matches overfitting rule {rules}, but with training "
                              "error this high the problem is bias, not variance.)")
                u.evidence["suppressed_overfitting_rules"] = [v.evidence["rule"] for v in over]
            if causes:
                # high error with a broken optimizer or gradient flow is that problem, not a capacity problem
                causes[0].evidence["high_error"] = {k: u.evidence.get(k) for k in
                                                    ("train_error", "val_error", "train_loss", "val_loss")}
            else:
                out.append(u)
        else:
            out += over
    if not any(v.severity in ("error", "warning") for v in out):
        out.append(healthy_verdict(h, recs))
    return Diagnosis(out, context)


def diagnose_run(result, loss=None, data=None, *, stopped=None) -> Diagnosis:
    """The diagnosis of a :class:`~trainlab.experiments.runner.RunResult` (what the runner writes)."""
    import torch

    cfg = result.config
    rec = result.extras.get("diagnostics")
    baseline = chance = None
    if data is not None and loss is not None:
        y = data.train.y
        if getattr(loss, "name", None) == "mse":
            baseline = float(y.double().var(unbiased=False)) if len(y) > 1 else None
        elif not y.dtype.is_floating_point:
            counts = torch.bincount(y.reshape(-1).long()).double()
            p = counts[counts > 0] / counts.sum()
            baseline = float(-(p * p.log()).sum())
            chance = float(p.max())
    n_val = len(data.val) if data is not None and data.val is not None else None
    # the loop's NonFiniteLossError counts from 0; the diagnosis, like every file and message, from 1
    stop = (None if stopped is None else
            {"epoch": stopped.epoch + 1, "step": stopped.step + 1, "value": str(stopped.value)})
    thresholds = dict(cfg.diagnostics.thresholds) if cfg.diagnostics is not None else {}
    return diagnose(result.history, rec, baseline_loss=baseline, chance_accuracy=chance, n_val=n_val,
                    epochs_planned=cfg.train.epochs, stopped=stop, **thresholds)


def diagnose_folder(run_dir, **thresholds) -> Diagnosis:
    """Recompute the diagnosis of a run folder from its ``metrics.json`` (and the context in ``verdicts.json``)."""
    run_dir = Path(run_dir)
    metrics_path = run_dir / "metrics.json"
    if not metrics_path.is_file():
        raise FileNotFoundError(f"{run_dir} is not a run folder: {metrics_path.name} is missing")
    metrics = json.loads(metrics_path.read_text())
    context: dict = {}
    vpath = run_dir / "verdicts.json"
    if vpath.is_file():
        context = dict(json.loads(vpath.read_text()).get("context") or {})
    history: dict[str, list] = {}
    for row in metrics.get("history") or []:
        for k, v in row.items():
            history.setdefault(k, []).append(float(v) if isinstance(v, str) else v)
    recs = (metrics.get("diagnostics") or {}).get("records")
    if recs:  # the file counts epochs from 1 (0: at initialization); the recorder counts from 0 (-1)
        recs = [{**r, "epoch": r["epoch"] - 1} if isinstance(r.get("epoch"), int) else r for r in recs]
    merged = dict(context.get("thresholds") or {})
    merged.update(thresholds)
    return diagnose(history, recs, baseline_loss=context.get("baseline_loss"),
                    chance_accuracy=context.get("chance_accuracy"), n_val=context.get("n_val"),
                    epochs_planned=context.get("epochs_planned"), stopped=context.get("stopped"),
                    start_loss=context.get("start_loss"),
                    val_loss_se=context.get("val_loss_se") if not recs else None, **merged)
