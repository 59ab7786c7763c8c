"""Ridge and lasso on linear regression: the notes' worked example, the coefficient paths as λ grows,
and why L1 can have many solutions where L2 has one (notes 003, 004).

Everything here is a linear model ŷ = w·x + b fitted by full-batch gradient descent with trainlab's
own loss (:func:`trainlab.losses.mse`) and optimizer chain (``sgd`` + the ``l2`` or ``l1_proximal``
transform, built by the catalog exactly as a config builds it), in float64, and checked against a
reference computed independently: the ridge solution in closed form, the lasso solution by
coordinate descent. The objective is the mean squared error plus the penalty on the weights (not
the bias)::

    ridge:  (1/n)·‖y − Xw − b‖² + λ·‖w‖²        lasso:  (1/n)·‖y − Xw − b‖² + λ·‖w‖₁
"""
from __future__ import annotations

import math

import torch

from trainlab.experiments.report import Section
from trainlab.experiments.studies import Outcome, StudyContext


def _line_loss(x, y, m: float, b: float, lam: float) -> float:
    """The notes' ridge loss of the line y = m·x + b: Σ residual² + λ·m² (trainlab's penalty)."""
    from trainlab.losses import l2_penalty

    x, y = torch.tensor(x, dtype=torch.float64), torch.tensor(y, dtype=torch.float64)
    slope = torch.tensor([m], dtype=torch.float64)
    return float(((y - (m * x + b)) ** 2).sum() + l2_penalty([slope], lam))


def _fit(X, y, penalty: str, lam: float, *, steps: int, init=None) -> tuple[torch.Tensor, float]:
    """Full-batch gradient descent on MSE + penalty with trainlab's SGD and penalty transform.

    The step is 1/L, L the largest curvature of the smooth part (2·λ_max(XᵀX/n), + 2λ for ridge), so
    gradient descent (and ISTA, its proximal form for the lasso) converges without tuning.
    """
    from trainlab.experiments.catalog import build_optimizer
    from trainlab.losses import mse

    n, d = X.shape
    w = torch.zeros(d, 1, dtype=torch.float64) if init is None else torch.tensor(init, dtype=torch.float64).view(d, 1)
    w = w.clone().requires_grad_()
    b = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    Xc = torch.cat([X, torch.ones(n, 1, dtype=torch.float64)], 1)  # the bias's column: its curvature counts too
    curvature = 2 * float(torch.linalg.eigvalsh(Xc.T @ Xc / n).max()) + (2 * lam if penalty == "l2" else 0.0)
    name = {"l2": "l2", "l1": "l1_proximal"}[penalty]
    # skip_1d keeps the bias unpenalized; the weights are a (d, 1) matrix
    opt = build_optimizer([w, b], "sgd", {"lr": 1.0 / curvature}, [(name, {"weight": lam, "skip_1d": True})])
    for _ in range(steps):
        opt.zero_grad()
        loss = mse((X @ w).squeeze(1) + b, y)
        loss.backward()
        opt.step()
    with torch.no_grad():
        fit = float(mse((X @ w).squeeze(1) + b, y))
        pen = lam * float(w.square().sum() if penalty == "l2" else w.abs().sum())
    return w.detach().view(-1), fit + pen


def _ridge_closed_form(X, y, lam: float) -> torch.Tensor:
    """(XcᵀXc/n + λI)⁻¹ Xcᵀyc/n on centred data: the minimizer of (1/n)‖y − Xw − b‖² + λ‖w‖²."""
    n, d = X.shape
    Xc, yc = X - X.mean(0), y - y.mean()
    return torch.linalg.solve(Xc.T @ Xc / n + lam * torch.eye(d, dtype=X.dtype), Xc.T @ yc / n)


def _lasso_coordinate_descent(X, y, lam: float, sweeps: int = 2000) -> torch.Tensor:
    """The lasso by cyclic coordinate descent (the reference, independent of gradient descent).

    For (1/n)‖r‖² + λ‖w‖₁ on centred data: w_j = S((1/n)·x_jᵀ r₋ⱼ, λ/2) / ((1/n)·‖x_j‖²), with S
    the soft threshold and r₋ⱼ the residual without feature j.
    """
    n, d = X.shape
    Xc, yc = X - X.mean(0), y - y.mean()
    w = torch.zeros(d, dtype=X.dtype)
    sq = (Xc ** 2).sum(0) / n
    r = yc.clone()
    for _ in range(sweeps):
        biggest = 0.0
        for j in range(d):
            rho = float(Xc[:, j] @ (r + Xc[:, j] * w[j])) / n
            new = math.copysign(max(abs(rho) - lam / 2, 0.0), rho) / float(sq[j])
            delta = new - float(w[j])
            if delta:
                r -= Xc[:, j] * delta
                w[j] = new
                biggest = max(biggest, abs(delta))
        if biggest < 1e-14:
            break
    return w


def _regression_data(n: int, true_w: list[float], noise: float, seed: int):
    g = torch.Generator().manual_seed(seed)
    d = len(true_w)
    # correlated features (a shared factor), as real inputs are: it is what makes the paths cross
    shared = torch.randn(n, 1, generator=g, dtype=torch.float64)
    X = 0.6 * shared + 0.8 * torch.randn(n, d, generator=g, dtype=torch.float64)
    y = X @ torch.tensor(true_w, dtype=torch.float64) + 1.0 + noise * torch.randn(n, generator=g, dtype=torch.float64)
    return X, y


def penalty_paths(ctx: StudyContext, *, example: dict, n_samples: int, true_weights: list[float], noise: float,
                  lambdas: list[float], steps: int, example_steps: int, duplicate: dict) -> Outcome:
    """Three parts, one linear model.

    1. The notes' worked example (004): two training points, the overfitted line L_n through both
       and the regularized line L_R; their ridge losses (λ = 1) recomputed with trainlab's penalty,
       and the true ridge minimum found by trainlab's optimizer (``example_steps`` steps) next to
       the closed form.
    2. The coefficient paths of ridge and lasso over ``lambdas`` on a regression with
       ``true_weights`` (zeros included), fitted by trainlab and checked against the references.
    3. Two identical features (``duplicate``): the lasso's minimizers form a segment (gradient
       descent from different starts ends at different points with the same objective), the
       ridge's is one point.
    """
    metrics: dict[str, float] = {}
    sections = []

    # 1. the worked example
    xs, ys, lam = example["x"], example["y"], example["lambda"]
    m_n = (ys[1] - ys[0]) / (xs[1] - xs[0])
    b_n = ys[0] - m_n * xs[0]
    loss_n = _line_loss(xs, ys, m_n, b_n, lam)
    m_r, b_r = example["regularized_line"]
    loss_r = _line_loss(xs, ys, m_r, b_r, lam)
    X1 = torch.tensor(xs, dtype=torch.float64).view(-1, 1)
    y1 = torch.tensor(ys, dtype=torch.float64)
    # the notes sum the squared residuals; trainlab's mse is their mean, so λ is divided by n
    n1 = len(xs)
    w_fit, obj = _fit(X1, y1, "l2", lam / n1, steps=example_steps)  # x is far from centred: slow to converge
    w_exact = float(_ridge_closed_form(X1, y1, lam / n1)[0])
    b_exact = float(y1.mean() - w_exact * X1.mean())
    metrics.update({"example.loss_overfit": loss_n, "example.loss_regularized": loss_r,
                    "example.ridge_slope": float(w_fit[0]), "example.ridge_slope_error": abs(float(w_fit[0]) - w_exact),
                    "example.ridge_loss": obj * n1, "example.ridge_loss_exact": _line_loss(xs, ys, w_exact, b_exact, lam)})
    sections.append(Section("The notes' ridge example", text=[
        f"Training points {list(zip(xs, ys))}. The line through both (slope {m_n:g}, intercept {b_n:g}) has no "
        f"residual, so its ridge loss (λ = {lam:g}) is the penalty alone: {loss_n:.4g} (the notes: 2.25). The "
        f"notes' regularized line y = {m_r:g}·x + {b_r:g} pays residuals but a smaller penalty: {loss_r:.4g} (the "
        f"notes: 2.03). Neither is the ridge minimum: trainlab's gradient descent finds slope "
        f"{float(w_fit[0]):.6f} (closed form {w_exact:.6f}) with loss {obj * n1:.4g}."],
        table=(("line", "slope", "intercept", "ridge loss (λ = 1)"),
               [("through both points (L_n)", m_n, b_n, loss_n), ("the notes' L_R", m_r, b_r, loss_r),
                ("ridge minimum", w_exact, b_exact, metrics["example.ridge_loss_exact"])])))

    # 2. the paths
    X, y = _regression_data(n_samples, true_weights, noise, ctx.seed)
    n, d = X.shape
    lam_max = float((2 * (X - X.mean(0)).T @ (y - y.mean()) / n).abs().max())  # the lasso is all zeros from here on
    ridge, lasso, ridge_err, lasso_err, train_mse = [], [], 0.0, 0.0, []
    for lam in lambdas:
        w_r, _ = _fit(X, y, "l2", lam, steps=steps)
        w_l, _ = _fit(X, y, "l1", lam, steps=steps)
        ridge_err = max(ridge_err, float((w_r - _ridge_closed_form(X, y, lam)).abs().max()))
        lasso_err = max(lasso_err, float((w_l - _lasso_coordinate_descent(X, y, lam)).abs().max()))
        ridge.append(w_r)
        lasso.append(w_l)
        pred = (X - X.mean(0)) @ w_l + y.mean()
        train_mse.append(float(((y - pred) ** 2).mean()))
        ctx.log(f"λ {lam:g}: ridge {[round(float(v), 3) for v in w_r]}, lasso {[round(float(v), 3) for v in w_l]}")
    ridge_t, lasso_t = torch.stack(ridge), torch.stack(lasso)
    relevant = torch.tensor([w != 0 for w in true_weights])
    metrics.update({
        "paths.ridge_error": ridge_err, "paths.lasso_error": lasso_err,
        "paths.ridge_min_abs_coefficient": float(ridge_t.abs().min()),
        "paths.ridge_norm_decreases": float(all(float(a.norm()) >= float(b.norm()) - 1e-12 for a, b in zip(ridge, ridge[1:]))),
        "paths.lasso_zero_at_largest": float((lasso_t[-1] == 0).float().mean()),
        "paths.lasso_irrelevant_zero_at_middle": float((lasso_t[len(lambdas) // 2][~relevant] == 0).float().mean()),
        "paths.lasso_zeros_smallest": float((lasso_t[0] == 0).float().mean()),
        "paths.train_mse_smallest": train_mse[0], "paths.train_mse_largest": train_mse[-1],
        "paths.target_variance": float(y.var(unbiased=False)), "paths.lambda_max": lam_max,
    })
    from trainlab.experiments.plots import plot_panels

    def series(t):
        return {f"w{j + 1} (true {true_weights[j]:g})": (lambdas, t[:, j].tolist()) for j in range(d)}

    fig = plot_panels([
        {"title": "ridge: every coefficient shrinks, none reaches 0", "xlabel": "λ", "ylabel": "coefficient",
         "series": series(ridge_t), "logx": True, "hline": 0.0},
        {"title": "lasso: coefficients hit exactly 0, one after another", "xlabel": "λ", "ylabel": "coefficient",
         "series": series(lasso_t), "logx": True, "hline": 0.0},
        {"title": "lasso: training error as λ grows", "xlabel": "λ", "ylabel": "training MSE",
         "series": {"training MSE": (lambdas, train_mse)}, "logx": True,
         "hline": metrics["paths.target_variance"]},
    ], ctx.path("paths.png"))
    rows = [(f"{lam:g}", " ".join(f"{float(v):+.3f}" for v in r), " ".join(f"{float(v):+.3f}" for v in l),
             int((l == 0).sum()), mse) for lam, r, l, mse in zip(lambdas, ridge, lasso, train_mse)]
    sections.append(Section("Coefficient paths", text=[
        f"{n} samples, {d} correlated features, true weights {true_weights}, noise {noise:g}. Each point is "
        f"trainlab's full-batch gradient descent ({steps} steps); the largest difference from the closed-form "
        f"ridge solution is {ridge_err:.1e}, from the coordinate-descent lasso {lasso_err:.1e}. Beyond "
        f"λ_max = {lam_max:.3g} every lasso coefficient is 0 and the model predicts the mean: training MSE "
        f"climbs to the variance of y ({metrics['paths.target_variance']:.3g}), the underfitting the notes describe."],
        table=(("λ", "ridge w", "lasso w", "lasso zeros", "lasso train MSE"), rows),
        figures=[("ridge and lasso coefficient paths", fig)]))

    # 3. two identical features
    g = torch.Generator().manual_seed(ctx.seed + 1)
    x = torch.randn(duplicate["n_samples"], 1, generator=g, dtype=torch.float64)
    X2 = torch.cat([x, x], 1)
    y2 = duplicate["slope"] * x.squeeze(1) + 0.1 * torch.randn(duplicate["n_samples"], generator=g, dtype=torch.float64)
    lam2 = duplicate["lambda"]
    found = {}
    for penalty in ("l1", "l2"):
        found[penalty] = [_fit(X2, y2, penalty, lam2, steps=steps, init=start) for start in duplicate["starts"]]
    spread = {p: max(float((w - found[p][0][0]).abs().max()) for w, _ in found[p]) for p in found}
    objective_spread = {p: max(abs(o - found[p][0][1]) for _, o in found[p]) for p in found}
    sums = [float(w.sum()) for w, _ in found["l1"]]
    metrics.update({"duplicate.l1_solution_spread": spread["l1"], "duplicate.l1_objective_spread": objective_spread["l1"],
                    "duplicate.l2_solution_spread": spread["l2"], "duplicate.l1_sum_spread": max(sums) - min(sums)})
    rows = [(p, str(list(start)), f"({float(w[0]):.4f}, {float(w[1]):.4f})", obj)
            for p in ("l1", "l2") for start, (w, obj) in zip(duplicate["starts"], found[p])]
    sections.append(Section("One solution or many", text=[
        "The input is duplicated (x₁ = x₂), so only w₁ + w₂ matters to the fit. The L1 penalty |w₁| + |w₂| "
        "is the same for every split of that sum with equal signs: the lasso objective is flat along a "
        "segment and gradient descent stops wherever it reaches it, depending on the start. The L2 penalty "
        "w₁² + w₂² is smallest for the even split, so ridge has exactly one minimizer (strictly convex).",
        f"From {len(duplicate['starts'])} starts: lasso solutions differ by up to {spread['l1']:.3g} with objectives "
        f"equal to {objective_spread['l1']:.1e}; ridge solutions differ by {spread['l2']:.1e}."],
        table=(("penalty", "start (w₁, w₂)", "solution (w₁, w₂)", "objective"), rows)))
    return Outcome(metrics, sections)


def penalty_strength(ctx: StudyContext, *, data: dict, base: dict, lambdas: list[float], penalty: str = "l2",
                     seeds: int = 1) -> Outcome:
    """Sweep the strength λ of a weight penalty on a network that overfits without it.

    Every run has the same initialization and data order (same seed); ``penalty`` names the
    transform (``l2``: λ·Σw², ``l1_proximal``, ``decoupled_weight_decay``...). Reported per λ: train
    and validation accuracy and loss, their gap, and the L2 norm of the weight matrices, averaged over
    ``seeds``; and which λ is best on validation.
    """
    import statistics

    from trainlab.experiments.study_procedures._common import flat_weights, merged, train

    rows, norms, gaps, val_acc, train_acc, val_loss = [], [], [], [], [], []
    for lam in lambdas:
        runs = []
        for s in range(ctx.seed, ctx.seed + seeds):
            override = {"transforms": [{"name": penalty, "weight": lam}]} if lam > 0 else {}
            cfg = merged(dict(base, data=data, seed=s, name=f"{penalty}-{lam:g}-seed-{s}"), override)
            run = train(cfg)
            if run.diverged is not None:
                raise RuntimeError(f"λ = {lam:g}: training diverged ({run.diverged})")
            runs.append(run)
        mean = lambda key: statistics.fmean(r.final[key] for r in runs)  # noqa: E731
        norm = statistics.fmean(float(flat_weights(r.model).norm()) for r in runs)
        train_acc.append(mean("train_accuracy"))
        val_acc.append(mean("val_accuracy"))
        gaps.append(mean("val_loss") - mean("train_loss"))
        val_loss.append(mean("val_loss"))
        norms.append(norm)
        ctx.log(f"λ {lam:g}: train acc {train_acc[-1]:.3f}, val acc {val_acc[-1]:.3f}, loss gap {gaps[-1]:.3f}, "
                f"‖W‖ {norm:.2f}")
        rows.append((f"{lam:g}", train_acc[-1], val_acc[-1], mean("train_loss"), mean("val_loss"), gaps[-1], norm))
    # tuned on the validation loss (what early stopping and sweeps monitor); accuracy is reported beside it
    best = min(range(len(lambdas)), key=val_loss.__getitem__)
    metrics = {"none.loss_gap": gaps[0], "none.val_accuracy": val_acc[0], "none.weight_norm": norms[0],
               "none.val_loss": val_loss[0], "best.val_loss": val_loss[best],
               "best.lambda": lambdas[best], "best.val_accuracy": val_acc[best], "best.loss_gap": gaps[best],
               "largest.train_accuracy": train_acc[-1], "largest.val_accuracy": val_acc[-1],
               "largest.weight_norm": norms[-1],
               # non-increasing, up to 1 % of the unpenalized norm (collapsed nets wobble near 0)
               "norm_decreases": float(all(a >= b - 0.01 * norms[0] for a, b in zip(norms, norms[1:]))),
               "best_is_inside": float(0 < best < len(lambdas) - 1)}
    xs = [max(lam, lambdas[1] / 10) for lam in lambdas]  # λ = 0 drawn one decade left of the first λ
    from trainlab.experiments.plots import plot_panels

    fig = plot_panels([
        {"title": "accuracy", "xlabel": "λ (0 drawn at the left end)", "ylabel": "accuracy", "logx": True,
         "markers": True, "series": {"train": (xs, train_acc), "validation": (xs, val_acc)}},
        {"title": "validation − train loss", "xlabel": "λ", "ylabel": "loss gap", "logx": True, "markers": True,
         "series": {"gap": (xs, gaps)}, "hline": 0.0},
        {"title": "weight norm ‖W‖₂", "xlabel": "λ", "ylabel": "norm", "logx": True, "markers": True,
         "series": {"‖W‖": (xs, norms)}},
    ], ctx.path("strength.png"))
    section = Section(f"Tuning the strength of the {penalty} penalty", text=[
        f"The same network, initialization and data order at every λ ({seeds} seed(s)). Without a penalty it "
        f"overfits (loss gap {gaps[0]:.3f}); as λ grows the weights shrink (‖W‖ {norms[0]:.1f} → {norms[-1]:.2f}) and "
        f"the gap closes; the validation loss is lowest at λ = {lambdas[best]:g} ({val_loss[best]:.3f} against "
        f"{val_loss[0]:.3f} without a penalty; validation accuracy {val_acc[best]:.3f} against {val_acc[0]:.3f}), and "
        f"at the largest λ the net underfits (train accuracy {train_acc[-1]:.3f}): λ must be tuned."],
        table=(("λ", "train acc", "val acc", "train loss", "val loss", "loss gap", "‖W‖"), rows),
        figures=[("accuracy, gap and weight norm against λ", fig)])
    return Outcome(metrics, [section])
