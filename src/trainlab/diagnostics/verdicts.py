"""Verdicts in words: what went wrong in a run, from which epoch, and on what evidence.

Inputs are the epoch history (``loss``, ``val_loss``, optionally ``accuracy`` and
``val_accuracy``) and the diagnostics records of :class:`~trainlab.diagnostics.recorder.DiagnosticsRecorder`.

Gradient flow (notes 001):

* **vanishing gradients** — the first weighted layer's gradient norm is below ``vanishing_ratio``
  (default 1e-2, two orders of magnitude) times the last layer's;
* **exploding gradients** — a gradient norm is not finite, the first layer's norm exceeds
  ``exploding_ratio`` (default 100) times the last layer's (the signal grows on its way back), or
  the total gradient norm grew by more than ``exploding_growth`` (default 1e3) since the first record;
* **dying ReLUs** — a ReLU layer has more than ``dead_threshold`` (default 0.5) of its units dead;
* **saturation** — a sigmoid/tanh layer has more than ``saturation_threshold`` (default 0.5) of its
  activations in the saturated band.

Overfitting, the four rules of notes 002 ("How to detect overfitting using loss"); ``w`` is
``window`` (default 3 epochs), relative tolerances make the rules scale-free:

1. *train loss falls while validation loss rises*: validation loss is more than ``rise_tol``
   (2 %) above its best, and training loss has fallen by more than ``fall_tol`` (1 %) since that
   best epoch;
2. *a large train/validation gap*: (val − train)/val ≥ ``gap`` (0.5, i.e. training loss at most
   half the validation loss) and val − train ≥ ``min_gap`` (0.01), for ``w`` epochs in a row;
3. *validation loss plateaus or worsens*: no improvement by more than ``min_delta`` (0.1 %) in the
   last ``w`` epochs, while staying within ``rise_tol`` of its best (a larger rise is rule 1) and
   training loss still fell by more than ``fall_tol`` over those epochs;
4. *validation accuracy plateaus while validation loss rises*: no new best accuracy (by more than
   ``acc_tol`` = 0.005) in the last ``w`` epochs, while validation loss rose by more than
   ``rise_tol`` over them.

Each rule reports the first epoch at which it holds; when the run is underfitting, the overfitting
rules are not reported (a model that fits nothing has a bias problem). **Underfitting** follows the bias/variance
table of notes 003 (high training error *and* high validation error → high bias): the final
training and validation error rates are both ≥ ``high_error`` (0.2); without accuracies, both
final losses are ≥ ``high_loss`` (0.5) times ``baseline_loss`` (the loss of a trivial predictor,
e.g. log K for K balanced classes; when not given, the first epoch's training loss).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field


@dataclass
class Verdict:
    """One finding: ``kind`` (e.g. ``"overfitting"``), ``rule`` (which test fired), ``epoch``
    (0-based; -1 = at initialization), a sentence ``message`` and the numbers behind it."""

    kind: str
    rule: str
    epoch: int
    message: str
    evidence: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        return self.message


def _when(epoch: int) -> str:
    return "at initialization" if epoch < 0 else f"at epoch {epoch + 1}"


def _fmt(x: float) -> str:
    return f"{x:.3g}"


OVERFITTING_RULES = {
    1: "training loss falls while validation loss rises",
    2: "large gap between training and validation loss",
    3: "validation loss plateaus while training loss still falls",
    4: "validation accuracy plateaus while validation loss rises",
}


def overfitting_verdicts(history, *, window: int = 3, rise_tol: float = 0.02, fall_tol: float = 0.01,
                         gap: float = 0.5, min_gap: float = 0.01, min_delta: float = 1e-3,
                         acc_tol: float = 0.005) -> list[Verdict]:
    """The notes' four overfitting rules on a history (``History`` or ``{key: [per epoch]}``)."""
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    h = history.history if hasattr(history, "history") else history
    loss, val = h.get("loss"), h.get("val_loss")
    if not loss or not val:
        return []
    acc = h.get("val_accuracy")
    n = min(len(loss), len(val))
    out: list[Verdict] = []

    # rule 1
    for e in range(1, n):
        b = min(range(e + 1), key=lambda i: val[i])
        if val[e] > val[b] * (1 + rise_tol) and loss[e] < loss[b] * (1 - fall_tol):
            out.append(Verdict("overfitting", OVERFITTING_RULES[1], e,
                               f"Overfitting {_when(e)} (rule 1, {OVERFITTING_RULES[1]}): validation loss "
                               f"rose from its best {_fmt(val[b])} (epoch {b + 1}) to {_fmt(val[e])} while "
                               f"training loss fell from {_fmt(loss[b])} to {_fmt(loss[e])}. Use early "
                               "stopping, regularization or more data.",
                               {"rule": 1, "best_epoch": b, "best_val_loss": val[b], "val_loss": val[e],
                                "train_loss_at_best": loss[b], "train_loss": loss[e]}))
            break
    # rule 2
    streak = 0
    for e in range(n):
        g = val[e] - loss[e]
        if val[e] > 0 and g / val[e] >= gap and g >= min_gap:
            streak += 1
            if streak >= window:
                out.append(Verdict("overfitting", OVERFITTING_RULES[2], e,
                                   f"Overfitting {_when(e)} (rule 2, {OVERFITTING_RULES[2]}): training loss "
                                   f"{_fmt(loss[e])} is {_fmt(val[e] / max(loss[e], 1e-300))}× below the "
                                   f"validation loss {_fmt(val[e])}, for {window} epochs in a row. The model "
                                   "fits the training set much better than unseen data.",
                                   {"rule": 2, "train_loss": loss[e], "val_loss": val[e], "gap": g,
                                    "relative_gap": g / val[e]}))
                break
        else:
            streak = 0
    # rule 3
    for e in range(window, n):
        best_before = min(val[: e - window + 1])
        recent = val[e - window + 1 : e + 1]
        best = min(best_before, min(recent))
        plateau = min(recent) >= best_before * (1 - min_delta)
        if plateau and val[e] <= best * (1 + rise_tol) and loss[e] < loss[e - window] * (1 - fall_tol):
            out.append(Verdict("overfitting", OVERFITTING_RULES[3], e,
                               f"Overfitting {_when(e)} (rule 3, {OVERFITTING_RULES[3]}): validation loss "
                               f"has not improved on {_fmt(best_before)} for {window} epochs (now "
                               f"{_fmt(val[e])}) while training loss fell from {_fmt(loss[e - window])} to "
                               f"{_fmt(loss[e])}. Further training helps the training set only.",
                               {"rule": 3, "best_val_loss": best_before, "val_loss": val[e],
                                "train_loss_before": loss[e - window], "train_loss": loss[e]}))
            break
    # rule 4
    if acc:
        m = min(n, len(acc))
        for e in range(window, m):
            best_acc = max(acc[: e - window + 1])
            recent_acc = max(acc[e - window + 1 : e + 1])
            if recent_acc <= best_acc + acc_tol and val[e] > val[e - window] * (1 + rise_tol):
                out.append(Verdict("overfitting", OVERFITTING_RULES[4], e,
                                   f"Overfitting {_when(e)} (rule 4, {OVERFITTING_RULES[4]}): validation "
                                   f"accuracy has not improved on {_fmt(best_acc)} for {window} epochs while "
                                   f"validation loss rose from {_fmt(val[e - window])} to {_fmt(val[e])}: the "
                                   "model grows over-confident on the examples it gets wrong.",
                                   {"rule": 4, "best_val_accuracy": best_acc, "val_accuracy": acc[e],
                                    "val_loss_before": val[e - window], "val_loss": val[e]}))
                break
    return out


def underfitting_verdict(history, *, high_error: float = 0.2, high_loss: float = 0.5,
                         baseline_loss: float | None = None) -> Verdict | None:
    """High bias (notes 003): training *and* validation error high at the end of the run."""
    h = history.history if hasattr(history, "history") else history
    loss, val = h.get("loss"), h.get("val_loss")
    if not loss:
        return None
    e = len(loss) - 1
    acc, vacc = h.get("accuracy"), h.get("val_accuracy")
    if acc:
        train_err = 1 - acc[-1]
        val_err = 1 - vacc[-1] if vacc else None
        if train_err >= high_error and (val_err is None or val_err >= high_error):
            vtxt = f" and validation error {_fmt(val_err)}" if val_err is not None else ""
            return Verdict("underfitting", "high training and validation error", e,
                           f"Underfitting (high bias) {_when(e)}: training error {_fmt(train_err)}{vtxt} are "
                           f"both at least {_fmt(high_error)}. The notes' remedies: a larger model (more "
                           "layers or units) or more epochs.",
                           {"train_error": train_err, "val_error": val_err, "high_error": high_error})
        return None
    ref = baseline_loss if baseline_loss is not None else loss[0]
    if ref <= 0 or not math.isfinite(ref):
        return None
    if loss[-1] >= high_loss * ref and (not val or val[-1] >= high_loss * ref):
        vtxt = f" and validation loss {_fmt(val[-1])}" if val else ""
        what = "a trivial predictor's" if baseline_loss is not None else "the first epoch's"
        return Verdict("underfitting", "high training and validation loss", e,
                       f"Underfitting (high bias) {_when(e)}: training loss {_fmt(loss[-1])}{vtxt} are still "
                       f"at least {_fmt(high_loss)}× {what} loss {_fmt(ref)}. Use a larger model or train longer.",
                       {"train_loss": loss[-1], "val_loss": val[-1] if val else None, "reference_loss": ref})
    return None


def _records(diagnostics) -> list[dict]:
    if diagnostics is None:
        return []
    if hasattr(diagnostics, "all_records"):
        return diagnostics.all_records()
    return list(diagnostics)


def gradient_verdicts(diagnostics, *, vanishing_ratio: float = 1e-2, exploding_ratio: float = 100.0,
                      exploding_growth: float = 1e3) -> list[Verdict]:
    """Vanishing and exploding gradients from the recorded per-layer gradient norms."""
    recs = [r for r in _records(diagnostics) if r.get("layers")]
    out: list[Verdict] = []
    vanish = explode = None
    n_vanish = 0
    first_total = None
    for r in recs:
        names = [k for k, v in r["layers"].items() if v.get("grad_norm") is not None]
        g = [float(r["layers"][k]["grad_norm"]) for k in names]
        bad = [k for k, v in zip(names, g) if not math.isfinite(v)]
        if bad:
            if explode is None:
                explode = Verdict("exploding_gradients", "non-finite gradient", r["epoch"],
                                  f"Exploding gradients {_when(r['epoch'])}: the gradient of {', '.join(bad[:3])} "
                                  "is not finite. Lower the learning rate, clip gradients, or use a smaller "
                                  "initialization.", {"layers": bad})
            continue
        if len(g) < 2:
            continue
        first, last = g[0], g[-1]
        total = math.sqrt(sum(v * v for v in g))
        first_total = total if first_total is None else first_total
        if last > 0 and first / last < vanishing_ratio:
            n_vanish += 1
            if vanish is None:
                orders = math.log10(last / max(first, 1e-300))
                vanish = Verdict("vanishing_gradients", "first layer far below last", r["epoch"],
                                 f"Vanishing gradients {_when(r['epoch'])}: the first layer's gradient norm "
                                 f"({_fmt(first)}, {names[0]}) is {orders:.1f} orders of magnitude below the last "
                                 f"layer's ({_fmt(last)}, {names[-1]}), so the early layers barely learn. Use "
                                 "ReLU-family activations with He initialization, batch normalization or "
                                 "residual connections.",
                                 {"first_layer": names[0], "last_layer": names[-1], "first_grad_norm": first,
                                  "last_grad_norm": last, "ratio": first / last,
                                  "profile": dict(zip(names, g))})
        elif explode is None and last > 0 and first / last > exploding_ratio:
            explode = Verdict("exploding_gradients", "first layer far above last", r["epoch"],
                              f"Exploding gradients {_when(r['epoch'])}: the first layer's gradient norm "
                              f"({_fmt(first)}) is {_fmt(first / last)}× the last layer's ({_fmt(last)}): the "
                              "backward signal grows layer by layer (weights larger than the identity, notes 001). "
                              "Use a smaller initialization (Xavier/He) or gradient clipping.",
                              {"first_grad_norm": first, "last_grad_norm": last, "ratio": first / last})
        elif explode is None and first_total and total / first_total > exploding_growth:
            explode = Verdict("exploding_gradients", "gradient norm growth", r["epoch"],
                              f"Exploding gradients {_when(r['epoch'])}: the total gradient norm grew "
                              f"{_fmt(total / first_total)}× since the first record ({_fmt(first_total)} → "
                              f"{_fmt(total)}). Lower the learning rate or clip gradients.",
                              {"first_total": first_total, "total": total})
    if vanish is not None:
        vanish.evidence["records_vanishing"] = n_vanish
        vanish.evidence["records"] = len(recs)
        vanish.message += f" Seen in {n_vanish} of {len(recs)} recordings."
        out.append(vanish)
    if explode is not None:
        out.append(explode)
    return out


def unit_verdicts(diagnostics, *, dead_threshold: float = 0.5,
                  saturation_threshold: float = 0.5) -> list[Verdict]:
    """Dying ReLUs and saturated sigmoid/tanh layers from the recorded activation statistics."""
    out: list[Verdict] = []
    dying = saturated = None
    for r in _records(diagnostics):
        for name, a in (r.get("activations") or {}).items():
            d = a.get("dead_frac")
            if dying is None and d is not None and d > dead_threshold:
                dying = Verdict("dying_relus", "dead fraction over threshold", r["epoch"],
                                f"Dying ReLUs {_when(r['epoch'])}: {d:.0%} of the units of {name} output 0 for "
                                f"every probe sample, so they receive no gradient and never recover on their own. "
                                "Lower the learning rate, use He initialization or a small positive bias (0.01), "
                                "a leaky variant, or reactivate them (trainlab.diagnostics.reactivate_dead_units).",
                                {"layer": name, "dead_frac": d, "threshold": dead_threshold})
            s = a.get("saturated_frac")
            if saturated is None and s is not None and s > saturation_threshold:
                saturated = Verdict("saturation", "saturated fraction over threshold", r["epoch"],
                                    f"Saturated units {_when(r['epoch'])}: {s:.0%} of the activations of {name} "
                                    f"({a.get('kind')}) sit at a bound, where the derivative is nearly 0. Use a "
                                    "smaller initialization, normalize inputs, or a non-saturating activation.",
                                    {"layer": name, "saturated_frac": s, "threshold": saturation_threshold})
    out.extend(v for v in (dying, saturated) if v is not None)
    return out


def threshold_names() -> list[str]:
    """The keyword arguments :func:`diagnose` accepts as thresholds."""
    import inspect
    names: set[str] = set()
    for fn in (gradient_verdicts, unit_verdicts, overfitting_verdicts, underfitting_verdict):
        names |= {p for p in inspect.signature(fn).parameters if p not in ("history", "diagnostics", "baseline_loss")}
    return sorted(names)


def diagnose(history=None, diagnostics=None, *, baseline_loss: float | None = None, **thresholds) -> list[Verdict]:
    """All verdicts for a run, ordered by epoch.

    Args:
        history: a :class:`~trainlab.train.callbacks.History` or ``{key: [value per epoch]}``.
        diagnostics: a :class:`~trainlab.diagnostics.recorder.DiagnosticsRecorder` or its records.
        baseline_loss: a trivial predictor's loss, for the underfitting test without accuracies.
        thresholds: any keyword of :func:`gradient_verdicts`, :func:`unit_verdicts`,
            :func:`overfitting_verdicts` or :func:`underfitting_verdict`.
    """
    import inspect

    def pick(fn):
        names = inspect.signature(fn).parameters
        return {k: v for k, v in thresholds.items() if k in names}

    unknown = set(thresholds) - set(threshold_names())
    if unknown:
        raise TypeError(f"unknown threshold(s): {', '.join(sorted(unknown))}")
    out: list[Verdict] = []
    if diagnostics is not None:
        out += gradient_verdicts(diagnostics, **pick(gradient_verdicts))
        out += unit_verdicts(diagnostics, **pick(unit_verdicts))
    if history is not None:
        over = overfitting_verdicts(history, **pick(overfitting_verdicts))
        u = underfitting_verdict(history, baseline_loss=baseline_loss, **pick(underfitting_verdict))
        if u is not None:
            # high training error and high validation error is high bias (notes 003); a wiggle of the
            # validation curve of a model that fits nothing is not variance, so it is not reported
            if over:
                rules = ", ".join(str(v.evidence["rule"]) for v in over)
                u.message += (f" (The validation curve also matches overfitting rule {rules}, but with training "
                              "error this high the problem is bias, not variance.)")
                u.evidence["suppressed_overfitting_rules"] = [v.evidence["rule"] for v in over]
            out.append(u)
        else:
            out += over
    return sorted(out, key=lambda v: v.epoch)
