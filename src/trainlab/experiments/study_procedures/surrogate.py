"""The surrogate loss: why we descend cross-entropy instead of the 0–1 loss (notes 002; Goodfellow
et al. 2016, §8.1.2).

:func:`surrogate_loss` measures two things:

* the 0–1 loss L₀₁(θ) = mean 1[prediction ≠ label] is piecewise constant in θ: its gradient is
  zero almost everywhere (finite differences of L₀₁ along coordinates and random directions are
  exactly 0, except where a step carries a sample across the decision boundary), while the
  cross-entropy's are not, so gradient descent on L₀₁ cannot move;
* descending the surrogate keeps improving the *test* 0–1 error after the *training* 0–1 error
  has reached 0: the cross-entropy still falls by pushing the classes apart (larger margins),
  which a 0–1 loss at zero no longer sees. Shown on a separable logistic regression in high
  dimension (GD's direction tends to the max-margin separator, Soudry et al. 2018) and measured
  on a small MNIST MLP.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from trainlab.experiments.report import Section
from trainlab.experiments.studies import Outcome, StudyContext
from trainlab.experiments.study_procedures._common import merged, resolve_data, train
from trainlab.train.callbacks import Callback


def _log_points(steps: int, n: int) -> list[int]:
    """About ``n`` log-spaced steps in 1..steps (always including both ends)."""
    pts = {1, steps} | {int(round(math.exp(math.log(steps) * i / (n - 1)))) for i in range(n)}
    return sorted(p for p in pts if 1 <= p <= steps)


def _linear(ctx, p: dict, metrics: dict, sections: list, curves: dict) -> dict:
    """Logistic regression by full-batch gradient descent on separable data y = sign(x·w*) with a
    margin: x ~ N(0, I_d) kept only where |x·w*| > ``margin`` (‖w*‖ = 1), as for any data whose
    classes do not touch."""
    from trainlab.optim import SGD

    g = torch.Generator().manual_seed(ctx.seed + 5)
    d, n = p["features"], p["n_train"] + p["n_test"]
    w_star = torch.randn(d, generator=g, dtype=torch.float64)
    w_star /= w_star.norm()
    X = torch.empty(0, d, dtype=torch.float64)
    while len(X) < n:  # rejection sampling: draw, keep the points outside the margin
        draw = torch.randn(2 * n, d, generator=g, dtype=torch.float64)
        X = torch.cat([X, draw[(draw @ w_star).abs() > p["margin"]]])
    X = X[:n]
    y = torch.sign(X @ w_star)
    Xtr, ytr, Xte, yte = X[:p["n_train"]], y[:p["n_train"]], X[p["n_train"]:], y[p["n_train"]:]
    w = nn.Parameter(torch.zeros(d, dtype=torch.float64))
    opt = SGD([w], lr=p["lr"])
    checkpoints = set(_log_points(p["steps"], p["checkpoints"]))
    trace = []  # (step, train CE, train 0–1 error, test 0–1 error, cos(w, w*))
    first_zero = None
    for t in range(1, p["steps"] + 1):
        opt.zero_grad()
        # log(1 + exp(−y·x·w)), the logistic (binary cross-entropy) loss, stable for large margins
        loss = torch.nn.functional.softplus(-ytr * (Xtr @ w)).mean()
        loss.backward()
        opt.step()
        with torch.no_grad():
            train_err = float((torch.sign(Xtr @ w) != ytr).double().mean())
            if first_zero is None and train_err == 0.0:
                first_zero = t
                checkpoints.add(t)
            if t in checkpoints:
                ce = float(torch.nn.functional.softplus(-ytr * (Xtr @ w)).mean())
                test_err = float((torch.sign(Xte @ w) != yte).double().mean())
                cos = float(w @ w_star / (w.norm() * w_star.norm()))
                trace.append((t, ce, train_err, test_err, cos))
    by_step = {row[0]: row for row in trace}
    end = trace[-1]
    metrics["linear.first_zero_step"] = float(first_zero if first_zero is not None else p["steps"] + 1)
    if first_zero is not None:
        at = by_step[first_zero]
        metrics["linear.test_error_at_zero"] = at[3]
        metrics["linear.ce_at_zero"] = at[1]
        metrics["linear.cos_at_zero"] = at[4]
        metrics["linear.test_error_improvement"] = at[3] - end[3]
        metrics["linear.ce_ratio_after_zero"] = end[1] / at[1]
    metrics["linear.test_error_final"] = end[3]
    metrics["linear.train_error_final"] = end[2]
    metrics["linear.cos_final"] = end[4]
    curves["linear"] = trace
    sections.append(Section("Separable logistic regression: test error after the training error is 0", text=[
        f"d = {d} features, {p['n_train']} training and {p['n_test']} test points, labels sign(x·w*), no point "
        f"within {p['margin']:g} of the separator; full-batch "
        f"GD at lr {p['lr']:g} from w = 0 for {p['steps']} steps. The training 0–1 error first reaches 0 at step "
        f"{first_zero}; cos(w, w*) is the alignment with the true separator."],
        table=(("step", "train cross-entropy", "train 0–1 error", "test 0–1 error", "cos(w, w*)"), trace)))
    return {"X": Xtr, "y": ytr}


class _Errors(Callback):
    """Records the 0–1 error on the training and test sets (eval mode) at every epoch's end."""

    reads_batch_loss = False

    def __init__(self, train_set, test_set):
        self.sets = {"train": train_set, "test": test_set}
        self.rows: list[tuple[int, float, float, float]] = []

    @torch.no_grad()
    def on_epoch_end(self, epoch: int, logs: dict) -> None:
        model = self.loop.model
        was = model.training
        model.eval()
        errs = {k: float((model(ds.X).argmax(1) != ds.y).double().mean()) for k, ds in self.sets.items()}
        ce = float(torch.nn.functional.cross_entropy(model(self.sets["train"].X), self.sets["train"].y))
        model.train(was)
        self.rows.append((epoch + 1, ce, errs["train"], errs["test"]))


def _network(ctx, p: dict, metrics: dict, sections: list, curves: dict):
    cfg_data, splits = resolve_data(p["data"], ctx.seed)
    train_set, val_set, test_set = splits
    errors = _Errors(train_set, test_set)
    cfg = merged({"data": cfg_data, "seed": ctx.seed}, {k: v for k, v in p.items() if k != "data"})
    run = train(cfg, callbacks=(errors,), data=splits)
    rows = errors.rows
    first = next((r for r in rows if r[2] == 0.0), None)
    end = rows[-1]
    metrics["network.first_zero_epoch"] = float(first[0]) if first else float(len(rows) + 1)
    metrics["network.train_error_final"] = end[2]
    metrics["network.test_error_final"] = end[3]
    if first is not None:
        after = [r for r in rows if r[0] >= first[0]]
        metrics["network.test_error_at_zero"] = first[3]
        metrics["network.test_error_best_after_zero"] = min(r[3] for r in after)
        metrics["network.test_error_improvement"] = first[3] - end[3]
        metrics["network.ce_ratio_after_zero"] = end[1] / first[1]
    curves["network"] = rows
    sections.append(Section("A small MNIST MLP: test error after the training error is 0", text=[
        f"{len(train_set)} training images, test error on {len(test_set)}; {cfg['optimizer']}, "
        f"{cfg['train']}. Training 0–1 error first 0 at epoch {first[0] if first else '—'} (eval mode)."],
        table=(("epoch", "train cross-entropy", "train 0–1 error", "test 0–1 error"), rows)))
    return run


@torch.no_grad()
def _flatness(ctx, p: dict, metrics: dict, sections: list, linear_data: dict) -> None:
    """Finite differences of the 0–1 loss and of the cross-entropy along random directions, on a
    logistic model at a random w (0–1 error near ½) and on an MLP at initialization."""
    from trainlab.nn.models import MLP

    g = torch.Generator().manual_seed(ctx.seed + 9)
    X, y = linear_data["X"], linear_data["y"]
    w0 = torch.randn(X.shape[1], generator=g, dtype=torch.float64)

    def lin_01(w):
        return float((torch.sign(X @ w) != y).double().mean())

    def lin_ce(w):
        return float(torch.nn.functional.softplus(-y * (X @ w)).mean())

    torch.manual_seed(ctx.seed)
    net = MLP(X.shape[1], hidden=list(p["hidden"]), out_features=2).double()
    labels = (y > 0).long()
    theta0 = torch.nn.utils.parameters_to_vector(net.parameters()).clone()

    def net_eval(theta):
        torch.nn.utils.vector_to_parameters(theta, net.parameters())
        z = net(X)
        return float((z.argmax(1) != labels).double().mean()), float(torch.nn.functional.cross_entropy(z, labels))

    rows = []
    for model, x0, f01, fce in (("logistic", w0, lin_01, lin_ce),
                                ("mlp", theta0, lambda t: net_eval(t)[0], lambda t: net_eval(t)[1])):
        for h in p["steps"]:
            zero01 = zero_ce = 0
            for _ in range(p["directions"]):
                u = torch.randn(x0.shape, generator=g, dtype=torch.float64)
                u /= u.norm()
                # central differences: (L(θ + h·u) − L(θ − h·u)) / 2h, the slope along u
                d01 = (f01(x0 + h * u) - f01(x0 - h * u)) / (2 * h)
                dce = (fce(x0 + h * u) - fce(x0 - h * u)) / (2 * h)
                zero01 += d01 == 0.0
                zero_ce += dce == 0.0
            n = p["directions"]
            metrics[f"flat.{model}.h_{h:g}.zero_fraction_01"] = zero01 / n
            metrics[f"flat.{model}.h_{h:g}.zero_fraction_ce"] = zero_ce / n
            rows.append((model, h, f01(x0), zero01 / n, zero_ce / n))
        # a line scan: L₀₁ along one direction takes few values, constant between jumps
        u = torch.randn(x0.shape, generator=g, dtype=torch.float64)
        u = u / u.norm() * x0.norm() * p["scan_radius"]
        values = [f01(x0 + s * u) for s in torch.linspace(-1, 1, p["scan_points"], dtype=torch.float64)]
        flat_segments = sum(a == b for a, b in zip(values, values[1:])) / (len(values) - 1)
        metrics[f"flat.{model}.scan_flat_fraction"] = flat_segments
        metrics[f"flat.{model}.scan_distinct_values"] = float(len(set(values)))
    torch.nn.utils.vector_to_parameters(theta0, net.parameters())
    sections.append(Section("The 0–1 loss is flat almost everywhere", text=[
        f"Central differences along {p['directions']} random unit directions at a random logistic-regression "
        f"weight and at an MLP {list(p['hidden'])} at initialization (both with 0–1 training error far from 0): "
        "the fraction whose slope is exactly 0. Line scans: "
        + "; ".join(f"{m}: {metrics[f'flat.{m}.scan_distinct_values']:.0f} distinct values over {p['scan_points']} "
                    f"points, {metrics[f'flat.{m}.scan_flat_fraction']:.3f} of the segments flat"
                    for m in ("logistic", "mlp"))],
        table=(("model", "h", "0–1 error at θ", "slope of 0–1 loss exactly 0", "slope of cross-entropy exactly 0"),
               rows)))


def surrogate_loss(ctx: StudyContext, *, linear: dict, network: dict, flatness: dict) -> Outcome:
    """Cross-entropy as the surrogate of the 0–1 loss (see the module docstring).

    Args:
        linear: ``features``, ``n_train``, ``n_test``, ``margin``, ``lr``, ``steps``, ``checkpoints``
            (log-spaced rows of the trace).
        network: a runner config (``data`` may be an MNIST subset) trained with the train and test
            0–1 error recorded every epoch.
        flatness: ``steps`` (finite-difference h values), ``directions``, ``hidden`` (the MLP),
            ``scan_points``, ``scan_radius`` (the scan's half-length relative to ‖θ‖).

    Metrics: ``linear.*`` / ``network.*``: ``first_zero_step`` / ``first_zero_epoch``,
    ``test_error_at_zero``, ``test_error_final``, ``test_error_improvement`` (at zero minus final),
    ``ce_ratio_after_zero``; ``flat.<model>.h_<h>.zero_fraction_01`` / ``zero_fraction_ce``,
    ``flat.<model>.scan_flat_fraction`` / ``scan_distinct_values``.
    """
    from trainlab.experiments.plots import plot_panels

    metrics: dict[str, float] = {}
    sections: list[Section] = []
    curves: dict = {}
    linear_data = _linear(ctx, linear, metrics, sections, curves)
    _network(ctx, network, metrics, sections, curves)
    _flatness(ctx, flatness, metrics, sections, linear_data)
    lin, net = curves["linear"], curves["network"]
    fig = plot_panels([
        {"title": "logistic regression (separable)", "xlabel": "GD step", "ylabel": "0–1 error / loss", "logx": True,
         "series": {"train cross-entropy": ([r[0] for r in lin], [r[1] for r in lin]),
                    "train 0–1": ([r[0] for r in lin], [r[2] for r in lin]),
                    "test 0–1": ([r[0] for r in lin], [r[3] for r in lin])}},
        {"title": "MNIST MLP", "xlabel": "epoch", "ylabel": "0–1 error / loss", "logy": True,
         "series": {"train cross-entropy": ([r[0] for r in net], [r[1] for r in net]),
                    "test 0–1": ([r[0] for r in net], [r[3] for r in net])}}],
        ctx.path("surrogate.png"))
    sections[0].figures.append(("cross-entropy and 0–1 errors over training", fig))
    return Outcome(metrics, sections)
