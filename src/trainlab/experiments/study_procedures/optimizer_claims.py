"""The notes' individual optimizer claims, each on the smallest problem that shows it (notes 001–004).

Two procedures, each a set of small experiments whose metrics the study files assert on:

* :func:`adaptive_claims` — Adagrad on sparse features and on features of different scales, the
  notes' Adagrad variant that excludes the current gradient, Adadelta vs Adagrad, and Rprop on
  mini-batches vs full batches (the notes' 0.1 × 9 vs −0.9 example).
* :func:`dynamics_claims` — Nesterov's fewer iterations, SGD's noise escaping a shallow minimum,
  the cost of batch gradient descent as the data set grows, and the sharpness of the minima Adam
  and SGD find.

Every experiment uses trainlab's own optimizers on tensors (or the runner, for the networks), is
seeded from the study's seed, and takes its sizes from the study's parameters so the quick mode
runs in seconds.
"""
from __future__ import annotations

import math
import time

import torch

from trainlab.experiments.report import Section
from trainlab.experiments.studies import Outcome, StudyContext


def _optimizer(name: str, params, **kwargs):
    from trainlab import optim

    cls = {"sgd": optim.SGD, "adagrad": optim.Adagrad, "rmsprop": optim.RMSprop, "adadelta": optim.Adadelta,
           "rprop": optim.Rprop, "adam": optim.Adam}[name]
    return cls(params, **kwargs)


def _linear_fit(X, y, opt_name: str, opt_kwargs: dict, *, epochs: int, batch_size: int | None,
                g: torch.Generator) -> tuple[torch.Tensor, list[float]]:
    """Least squares ½·mean((Xw − y)²) from w = 0 with a trainlab optimizer; returns the weights
    and the full-data loss after every epoch (``inf`` from the epoch it became non-finite)."""
    n, d = X.shape
    w = torch.nn.Parameter(torch.zeros(d, dtype=X.dtype))
    opt = _optimizer(opt_name, [w], **opt_kwargs)
    bs = n if batch_size is None else batch_size
    losses = []
    for _ in range(epochs):
        order = torch.randperm(n, generator=g) if bs < n else torch.arange(n)
        for i in range(0, n, bs):
            idx = order[i:i + bs]
            opt.zero_grad()
            loss = 0.5 * ((X[idx] @ w - y[idx]) ** 2).mean()
            loss.backward()
            opt.step()
        with torch.no_grad():
            full = float(0.5 * ((X @ w - y) ** 2).mean())
        losses.append(full if math.isfinite(full) else math.inf)
        if not math.isfinite(full):
            losses += [math.inf] * (epochs - len(losses))
            break
    return w.detach(), losses


def _best_lr(X, y, opt_name: str, lrs: list[float], extra: dict, *, epochs: int, batch_size: int | None,
             seed: int) -> tuple[float, torch.Tensor, list[float]]:
    """The learning rate from ``lrs`` with the lowest final loss (each optimizer tuned on its own)."""
    best = None
    for lr in lrs:
        w, losses = _linear_fit(X, y, opt_name, {"lr": lr, **extra}, epochs=epochs, batch_size=batch_size,
                                g=torch.Generator().manual_seed(seed))
        if best is None or losses[-1] < best[2][-1]:
            best = (lr, w, losses)
    return best


# ---------------------------------------------------------------------------------------------
# Adagrad, Adadelta, Rprop


def _sparse_features(ctx, p: dict, metrics: dict, rows: list, curves: dict) -> None:
    """Binary features, half common (present with probability p_common), half rare (p_rare);
    y = X·1 + noise. Each optimizer at its best lr; RMS error of the rare and the common weights."""
    g = torch.Generator().manual_seed(ctx.seed)
    n, d = p["n_samples"], p["features"]
    probs = torch.tensor([p["p_common"]] * (d // 2) + [p["p_rare"]] * (d - d // 2), dtype=torch.float64)
    X = (torch.rand(n, d, generator=g, dtype=torch.float64) < probs).double()
    y = X.sum(1) + p["noise"] * torch.randn(n, generator=g, dtype=torch.float64)
    rare = probs == p["p_rare"]
    for name in ("sgd", "adagrad"):
        lr, w, losses = _best_lr(X, y, name, p["lrs"][name], {}, epochs=p["epochs"], batch_size=p["batch_size"],
                                 seed=ctx.seed)
        err_rare = float(((w[rare] - 1) ** 2).mean().sqrt())
        err_common = float(((w[~rare] - 1) ** 2).mean().sqrt())
        # the same lr after one epoch: how fast the rare weights start to move
        w1, _ = _linear_fit(X, y, name, {"lr": lr}, epochs=1, batch_size=p["batch_size"],
                            g=torch.Generator().manual_seed(ctx.seed))
        metrics[f"sparse.{name}.rare_error_first_epoch"] = float(((w1[rare] - 1) ** 2).mean().sqrt())
        metrics[f"sparse.{name}.common_error_first_epoch"] = float(((w1[~rare] - 1) ** 2).mean().sqrt())
        metrics[f"sparse.{name}.rare_error"] = err_rare
        metrics[f"sparse.{name}.common_error"] = err_common
        metrics[f"sparse.{name}.loss"] = losses[-1]
        metrics[f"sparse.{name}.lr"] = lr
        curves[f"sparse {name} (lr {lr:g})"] = (range(1, len(losses) + 1), losses)
        rows.append(("sparse features", name, lr, losses[-1],
                     f"weight RMS error after 1 epoch: rare {metrics[f'sparse.{name}.rare_error_first_epoch']:.3g}, "
                     f"common {metrics[f'sparse.{name}.common_error_first_epoch']:.3g}; after {p['epochs']}: "
                     f"rare {err_rare:.3g}, common {err_common:.3g}"))
    metrics["sparse.rare_error_ratio"] = metrics["sparse.adagrad.rare_error"] / metrics["sparse.sgd.rare_error"]
    metrics["sparse.rare_error_ratio_first_epoch"] = (metrics["sparse.adagrad.rare_error_first_epoch"]
                                                      / metrics["sparse.sgd.rare_error_first_epoch"])


def _feature_scales(ctx, p: dict, metrics: dict, rows: list, curves: dict) -> None:
    """x_j ~ N(0, s_j²) with scales s from 1 to ``max_scale``; y = Σ_j x_j / s_j, so every feature
    matters equally and the Hessian's condition number is max_scale². Each optimizer at its best lr."""
    g = torch.Generator().manual_seed(ctx.seed + 1)
    n, d = p["n_samples"], p["features"]
    scales = torch.logspace(0, math.log10(p["max_scale"]), d, dtype=torch.float64)
    X = torch.randn(n, d, generator=g, dtype=torch.float64) * scales
    y = (X / scales).sum(1)
    base = float(0.5 * (y ** 2).mean())
    for name in ("sgd", "adagrad"):
        lr, w, losses = _best_lr(X, y, name, p["lrs"][name], {}, epochs=p["epochs"], batch_size=p["batch_size"],
                                 seed=ctx.seed)
        rel = losses[-1] / base
        metrics[f"scales.{name}.relative_loss"] = rel
        metrics[f"scales.{name}.lr"] = lr
        # the weight of the smallest-scale feature: SGD's lr is capped by the largest scale, so it crawls
        metrics[f"scales.{name}.small_scale_weight_error"] = float((w[0] - 1 / scales[0]).abs())
        curves[f"scales {name} (lr {lr:g})"] = (range(1, len(losses) + 1), [l / base for l in losses])
        rows.append(("features of scales 1–%g" % p["max_scale"], name, lr, rel, "loss / initial loss"))
    metrics["scales.loss_ratio"] = metrics["scales.adagrad.relative_loss"] / max(metrics["scales.sgd.relative_loss"], 1e-300)


def _adagrad_variant(ctx, p: dict, metrics: dict, rows: list) -> None:
    """The notes' Adagrad (divides by the earlier squared gradients) against the standard one on the
    feature-scales problem: the first step, and the loss after training, with r₀ = 0 and r₀ > 0."""
    g = torch.Generator().manual_seed(ctx.seed + 2)
    n, d = p["n_samples"], p["features"]
    scales = torch.logspace(0, math.log10(p["max_scale"]), d, dtype=torch.float64)
    X = torch.randn(n, d, generator=g, dtype=torch.float64) * scales
    y = (X / scales).sum(1)
    base = float(0.5 * (y ** 2).mean())
    for r0 in (0.0, p["r0"]):
        for include in (True, False):
            label = f"variant.{'standard' if include else 'notes'}.r0_{r0:g}"
            kw = {"lr": p["lr"], "include_current": include, "initial_accumulator_value": r0}
            w1, _ = _linear_fit(X, y, "adagrad", kw, epochs=1, batch_size=n, g=torch.Generator().manual_seed(0))
            _, losses = _linear_fit(X, y, "adagrad", kw, epochs=p["epochs"], batch_size=p["batch_size"],
                                    g=torch.Generator().manual_seed(ctx.seed))
            metrics[f"{label}.first_step"] = float(w1.abs().max())
            metrics[f"{label}.relative_loss"] = min(losses[-1] / base, 1e300)
            rows.append(("Adagrad variant", f"{'standard' if include else 'notes 003'}, r₀ = {r0:g}", p["lr"],
                         losses[-1] / base, f"first step max |Δθ| = {float(w1.abs().max()):.3g}"))


def _adadelta_vs_adagrad(ctx, p: dict, metrics: dict, rows: list, curves: dict) -> None:
    """A long walk: L(w) = ½·Σ (w_j − c)² from 0 with a distant minimum c. Adagrad's effective
    step lr/√(Σg²) decays like 1/√t; Adadelta's (and RMSprop's, the notes' simplified Adadelta)
    does not. Also checks that the EMA gives the latest squared gradient the weight 1 − ρ."""
    d, c, steps = p["dimension"], p["distance"], p["steps"]
    for name, kw in (("adagrad", {"lr": p["adagrad_lr"]}), ("adadelta", {"lr": 1.0, "rho": p["rho"]}),
                     ("rmsprop", {"lr": p["rmsprop_lr"], "alpha": p["rho"]})):
        w = torch.nn.Parameter(torch.zeros(d, dtype=torch.float64))
        opt = _optimizer(name, [w], **kw)
        dist, steps_taken = [], []
        for t in range(steps):
            before = w.detach().clone()
            opt.zero_grad()
            loss = 0.5 * ((w - c) ** 2).sum()
            loss.backward()
            opt.step()
            steps_taken.append(float((w.detach() - before).abs().mean()))
            dist.append(float((w.detach() - c).abs().mean()))
        k = max(1, steps // 10)
        metrics[f"adadelta.{name}.final_distance"] = dist[-1] / c
        metrics[f"adadelta.{name}.step_decay"] = (sum(steps_taken[-2 * k:-k]) / k) / (sum(steps_taken[:k]) / k)
        label = {"adadelta": "Adadelta (Zeiler)", "rmsprop": f"RMSprop γ = {p['rho']:g} (the notes' Adadelta)"}.get(name, name)
        curves[label] = (range(1, steps + 1), [x / c for x in dist])
        rows.append(("long walk to a distant minimum", name, kw["lr"], dist[-1] / c, "distance left / start"))
    # the weight of the most recent squared gradient in Adadelta's running average: 1 − ρ
    w = torch.nn.Parameter(torch.zeros(1, dtype=torch.float64))
    opt = _optimizer("adadelta", [w], lr=1.0, rho=p["rho"])
    w.grad = torch.full((1,), 3.0, dtype=torch.float64)
    opt.step()
    metrics["adadelta.latest_weight"] = float(opt.state[w]["square_avg"]) / 9.0   # E[g²] = (1 − ρ)·3² from 0


def _rprop_toy(ctx, p: dict, metrics: dict, rows: list, curves: dict) -> None:
    """The notes' example: one weight whose gradient is +0.1 on nine mini-batches and −0.9 on the
    tenth (per-batch loss g_b·w). The ten sum to 0, so the weight should not move."""
    grads = [0.1] * 9 + [-0.9]
    for name, kw, full in (("rprop", {"lr": p["lr"]}, False), ("rprop", {"lr": p["lr"]}, True),
                           ("rmsprop", {"lr": p["lr"]}, False), ("sgd", {"lr": p["lr"]}, False)):
        w = torch.nn.Parameter(torch.zeros(1, dtype=torch.float64))
        opt = _optimizer(name, [w], **kw)
        path = []
        for _ in range(p["epochs"]):
            # the full batch's gradient is the exact mean, 0: in floating point 0.1·9 − 0.9 is 1e-16,
            # whose sign Rprop would follow as readily as any other
            for gb in ([0.0] if full else grads):
                opt.zero_grad()
                (gb * w).sum().backward()
                opt.step()
            path.append(float(w.detach()))
        label = f"rprop_toy.{name}{'_full' if full else ''}"
        metrics[f"{label}.drift"] = abs(path[-1])
        curves[f"{name} {'full batch' if full else 'mini-batches'}"] = (range(1, len(path) + 1), path)
        rows.append(("0.1 × 9, −0.9 × 1", f"{name} ({'full batch' if full else 'mini-batches'})", kw["lr"],
                     abs(path[-1]), f"|w| after {p['epochs']} epochs (should be 0)"))


def _rprop_regression(ctx, p: dict, metrics: dict, rows: list) -> None:
    """Rprop on a noisy least-squares problem with mini-batches and with the full batch."""
    g = torch.Generator().manual_seed(ctx.seed + 3)
    n, d = p["n_samples"], p["features"]
    X = torch.randn(n, d, generator=g, dtype=torch.float64)
    w_true = torch.randn(d, generator=g, dtype=torch.float64)
    y = X @ w_true + p["noise"] * torch.randn(n, generator=g, dtype=torch.float64)
    best = float(0.5 * ((X @ torch.linalg.lstsq(X, y).solution - y) ** 2).mean())
    for label, bs in (("minibatch", p["batch_size"]), ("full", None)):
        _, losses = _linear_fit(X, y, "rprop", {"lr": p["lr"]}, epochs=p["epochs"], batch_size=bs,
                                g=torch.Generator().manual_seed(ctx.seed))
        metrics[f"rprop_fit.{label}.excess_loss"] = losses[-1] - best
        rows.append(("noisy least squares", f"rprop ({label})", p["lr"], losses[-1] - best,
                     "final loss − least-squares optimum"))


def adaptive_claims(ctx: StudyContext, *, sparse: dict, scales: dict, variant: dict, adadelta: dict,
                    rprop_toy: dict, rprop_fit: dict) -> Outcome:
    """Adagrad, Adadelta and Rprop claims of notes 001–004, each on a problem built to show it.

    * ``sparse``: binary features, half common, half rare; SGD and Adagrad each at its best lr of
      ``lrs``; ``sparse.<opt>.rare_error`` is the RMS error of the rare features' weights.
    * ``scales``: Gaussian features with scales 1 … ``max_scale``; ``scales.<opt>.relative_loss``.
    * ``variant``: Adagrad with ``include_current`` True (Duchi et al., PyTorch) and False (notes 003),
      r₀ = 0 and r₀ = ``r0``; ``variant.<standard|notes>.r0_<r0>.first_step`` and ``.relative_loss``.
    * ``adadelta``: a walk to a minimum at distance ``distance``; ``adadelta.<opt>.final_distance``
      (fraction left), ``.step_decay`` (step size late / early), ``adadelta.latest_weight`` (1 − ρ).
    * ``rprop_toy``: the notes' gradient sequence; ``rprop_toy.<opt>[_full].drift`` = |w| at the end.
    * ``rprop_fit``: noisy least squares; ``rprop_fit.<minibatch|full>.excess_loss``.
    """
    metrics: dict = {}
    rows: list = []
    curves_lin: dict = {}
    curves_walk: dict = {}
    curves_rprop: dict = {}
    t0 = time.perf_counter()
    _sparse_features(ctx, sparse, metrics, rows, curves_lin)
    _feature_scales(ctx, scales, metrics, rows, curves_lin)
    _adagrad_variant(ctx, variant, metrics, rows)
    _adadelta_vs_adagrad(ctx, adadelta, metrics, rows, curves_walk)
    _rprop_toy(ctx, rprop_toy, metrics, rows, curves_rprop)
    _rprop_regression(ctx, rprop_fit, metrics, rows)
    ctx.log(f"adaptive claims in {time.perf_counter() - t0:.1f} s")
    from trainlab.experiments.plots import plot_panels

    fig = plot_panels([
        {"title": "sparse features / feature scales: loss per epoch", "xlabel": "epoch", "ylabel": "loss (log)",
         "logy": True, "series": curves_lin},
        {"title": "walk to a distant minimum: distance left", "xlabel": "step", "ylabel": "fraction left",
         "logx": True, "series": curves_walk},
        {"title": "notes' Rprop example: w per epoch (0 is right)", "xlabel": "epoch", "ylabel": "w",
         "series": curves_rprop},
    ], ctx.path("adaptive_claims.png"), ncols=3)
    section = Section("Adaptive learning rates: Adagrad, Adadelta, Rprop", text=[
        "Each row is one optimizer on one problem; where a learning rate grid was given, the lr shown is the "
        "optimizer's best on that problem (each tuned on its own)."],
        table=(("problem", "optimizer", "lr", "result", "what the result is"), rows),
        figures=[("loss, distance and drift curves", fig)])
    return Outcome(metrics, [section])



# ---------------------------------------------------------------------------------------------
# Nesterov, SGD noise, batch cost, sharpness


def _steps_to(f_and_grad_params, opt_factory, tol: float, max_steps: int) -> int:
    """Steps until the loss falls below ``tol`` (``max_steps + 1`` when it never does)."""
    loss_fn, w = f_and_grad_params
    opt = opt_factory([w])
    for t in range(max_steps + 1):
        opt.zero_grad()
        loss = loss_fn(w)
        if float(loss.detach()) < tol:   # the loss after t steps
            return t
        loss.backward()
        opt.step()
    return max_steps + 1


def _nesterov(ctx, p: dict, metrics: dict, rows: list) -> None:
    """Steps to reach a loss tolerance with heavy-ball momentum and with Nesterov's, same lr and β,
    on an ill-conditioned quadratic and on logistic regression."""
    from trainlab import optim

    d, kappa = p["dimension"], p["condition"]
    lam = torch.logspace(0, math.log10(kappa), d, dtype=torch.float64)
    quad = lambda w: 0.5 * (lam * w * w).sum()
    g = torch.Generator().manual_seed(ctx.seed + 4)
    n = p["n_samples"]
    X = torch.randn(n, p["features"], generator=g, dtype=torch.float64) * torch.logspace(0, 1, p["features"], dtype=torch.float64)
    # label noise keeps the classes overlapping, so the loss has a finite minimum to converge to
    y = (X @ torch.randn(p["features"], generator=g, dtype=torch.float64)
         + p["label_noise"] * torch.randn(n, generator=g, dtype=torch.float64) > 0).double()
    logistic = lambda w: torch.nn.functional.binary_cross_entropy_with_logits(X @ w, y)
    w_star = torch.zeros(p["features"], dtype=torch.float64, requires_grad=True)
    # the logistic loss's floor (L-BFGS, PyTorch's, as a reference solver), so the tolerance is reachable
    opt = torch.optim.LBFGS([w_star], lr=1.0, max_iter=500, tolerance_grad=1e-12, tolerance_change=1e-15,
                            line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = logistic(w_star)
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        floor = float(logistic(w_star))
    for beta in p["betas"]:
        for problem, fn, start, lr, tol in (
                ("quadratic", quad, torch.ones(d, dtype=torch.float64), p["quadratic_lr"] / kappa, 1e-8 * float(quad(torch.ones(d, dtype=torch.float64)))),
                ("logistic", logistic, torch.zeros(p["features"], dtype=torch.float64), p["logistic_lr"], floor + p["logistic_gap"])):
            counts = {}
            for label, nesterov in (("momentum", False), ("nag", True)):
                w = torch.nn.Parameter(start.clone())
                counts[label] = _steps_to((fn, w), lambda ps: optim.SGD(ps, lr=lr, momentum=beta, nesterov=nesterov),
                                          tol, p["max_steps"])
                metrics[f"nag.{problem}.beta_{beta:g}.{label}_steps"] = counts[label]
            metrics[f"nag.{problem}.beta_{beta:g}.ratio"] = counts["nag"] / counts["momentum"]
            rows.append((f"{problem}, β = {beta:g}", f"lr {lr:.3g}", counts["momentum"], counts["nag"],
                         counts["nag"] / counts["momentum"]))
    metrics["nag.max_ratio"] = max(v for k, v in metrics.items() if k.startswith("nag.") and k.endswith(".ratio"))


def _noise_escape(ctx, p: dict, metrics: dict, rows: list, curves: dict) -> None:
    """A shallow, narrow minimum at w = 0 next to a deep, wide one at w = ``deep_at``:
    f(w) = −a·exp(−w²/(2σ_a²)) − b·exp(−(w − deep_at)²/(2σ_b²)). Every sample adds c_i·w with
    Σc_i = 0, so the full-batch loss is exactly f and its gradient noise-free, while a mini-batch
    of size B sees f'(w) + mean of B c's (std ≈ s/√B). ``walkers`` independent runs start in the
    shallow minimum; the fraction that ends in the deep basin, per batch size."""
    from trainlab import optim

    g = torch.Generator().manual_seed(ctx.seed + 5)
    n, R = p["n_samples"], p["walkers"]
    c = torch.randn(n, generator=g, dtype=torch.float64) * p["noise"]
    c = c - c.mean()                                    # the full batch sees no noise at all
    a, sa, b, sb, deep = p["shallow_depth"], p["shallow_width"], p["deep_depth"], p["deep_width"], p["deep_at"]
    f = lambda w: -a * torch.exp(-w * w / (2 * sa * sa)) - b * torch.exp(-(w - deep) ** 2 / (2 * sb * sb))
    boundary = None  # the barrier top between the minima, found on a grid
    grid = torch.linspace(0.0, deep, 2001, dtype=torch.float64)
    boundary = float(grid[int(f(grid).argmax())])
    metrics["escape.barrier_at"] = boundary
    metrics["escape.barrier_height"] = float(f(torch.tensor(boundary, dtype=torch.float64)) - f(torch.zeros((), dtype=torch.float64)))
    for bs in p["batch_sizes"]:
        w = torch.nn.Parameter(torch.zeros(R, dtype=torch.float64))
        opt = optim.SGD([w], lr=p["lr"])
        frac = []
        for t in range(p["steps"]):
            if bs == "full":
                noise = torch.zeros(R, dtype=torch.float64)
            else:
                noise = c[torch.randint(0, n, (R, int(bs)), generator=g)].mean(1)
            opt.zero_grad()
            (f(w) + noise * w).sum().backward()
            opt.step()
            frac.append(float((w.detach() > boundary).double().mean()))
        key = f"escape.batch_{bs}"
        metrics[f"{key}.deep_fraction"] = frac[-1]
        curves[f"batch {bs}"] = (range(1, len(frac) + 1), frac)
        rows.append(("escape a shallow minimum", f"batch {bs}", p["lr"], frac[-1], "fraction of runs in the deep basin"))


def _batch_cost(ctx, p: dict, metrics: dict, rows: list, curves: dict) -> None:
    """Logistic regression on data sets of growing size: per-sample gradient evaluations (and wall
    time, reported only) until the training loss is within ``gap`` of its floor, for batch GD and
    for mini-batch SGD at the same learning rate."""
    from trainlab import optim

    g = torch.Generator().manual_seed(ctx.seed + 6)
    d = p["features"]
    w_true = torch.randn(d, generator=g)
    sizes = p["sizes"]
    for n in sizes:
        X = torch.randn(n, d, generator=g)
        y = (X @ w_true + 0.5 * torch.randn(n, generator=g) > 0).float()
        loss_of = lambda w: torch.nn.functional.binary_cross_entropy_with_logits(X @ w, y)
        target = p["target"]
        for label, bs in (("batch", n), ("minibatch", p["batch_size"])):
            w = torch.nn.Parameter(torch.zeros(d))
            opt = optim.SGD([w], lr=p["lr"] if label == "batch" else p["minibatch_lr"])
            evaluations, t0, reached = 0, time.perf_counter(), False
            for epoch in range(p["max_epochs"]):
                order = torch.randperm(n, generator=g)
                for i in range(0, n, bs):
                    idx = order[i:i + bs]
                    opt.zero_grad()
                    torch.nn.functional.binary_cross_entropy_with_logits(X[idx] @ w, y[idx]).backward()
                    opt.step()
                    evaluations += len(idx)
                    if bs < n and (evaluations // bs) % p["check_every"]:
                        continue
                    with torch.no_grad():
                        if float(loss_of(w)) < target:
                            reached = True
                            break
                if reached:
                    break
            wall = time.perf_counter() - t0
            metrics[f"cost.n_{n}.{label}.evaluations"] = evaluations if reached else math.inf
            metrics[f"cost.n_{n}.{label}.seconds"] = wall
            curves.setdefault(label, ([], []))
            curves[label][0].append(n)
            curves[label][1].append(evaluations if reached else float("nan"))
            rows.append((f"logistic regression, n = {n}", label, evaluations if reached else "not reached",
                         f"{wall:.3g} s", ""))
    lo, hi = sizes[0], sizes[-1]
    for label in ("batch", "minibatch"):
        metrics[f"cost.{label}.growth"] = metrics[f"cost.n_{hi}.{label}.evaluations"] / metrics[f"cost.n_{lo}.{label}.evaluations"]
    metrics["cost.size_growth"] = hi / lo


def _sharpness(ctx, p: dict, metrics: dict, rows: list) -> None:
    """Adam and SGD train the same MLP from the same start; the runner's ``diagnostics.landscape``
    gives the top Hessian eigenvalue at the end (on the training samples), with the train loss and
    validation accuracy, averaged over seeds."""
    from trainlab.experiments.study_procedures._common import train

    for label, opt in p["optimizers"].items():
        vals = {"sharpness": [], "train_loss": [], "val_accuracy": [], "gap": []}
        for seed in p["seeds"]:
            cfg = {"name": f"sharp-{label}", "seed": seed, "data": p["data"], "model": p["model"], "optimizer": opt,
                   "train": {"epochs": p["epochs"], "batch_size": p["batch_size"]},
                   "diagnostics": {"every": 0, "spectra": False,
                                   "landscape": {"line": False, "sharpness": True, "samples": p["samples"],
                                                 "iters": p["iters"]}}}
            run = train(cfg)
            if run.diverged is not None:
                raise RuntimeError(f"{label} diverged: {run.diverged}")
            vals["sharpness"].append(run.result.extras["landscape"]["sharpness"])
            vals["train_loss"].append(run.final["train_loss"])
            vals["val_accuracy"].append(run.final["val_accuracy"])
            vals["gap"].append(run.final["val_loss"] - run.final["train_loss"])
        for k, v in vals.items():
            metrics[f"sharpness.{label}.{k}"] = sum(v) / len(v)
        rows.append(("sharpness of the minimum found", label, opt.get("lr"), metrics[f"sharpness.{label}.sharpness"],
                     f"train loss {metrics[f'sharpness.{label}.train_loss']:.3g}, val acc "
                     f"{metrics[f'sharpness.{label}.val_accuracy']:.3f}, val − train loss {metrics[f'sharpness.{label}.gap']:.3g}"))


def dynamics_claims(ctx: StudyContext, *, nesterov: dict, escape: dict, cost: dict, sharpness: dict) -> Outcome:
    """Nesterov's fewer iterations, SGD noise escaping a shallow minimum, batch GD's cost as the data
    set grows, and the sharpness of Adam's and SGD's minima (notes 002, 003, 004).

    * ``nesterov``: steps to tolerance, heavy-ball vs Nesterov momentum at the same lr and β, on an
      ill-conditioned quadratic and logistic regression: ``nag.<problem>.beta_<β>.{momentum,nag}_steps``,
      ``.ratio`` (NAG / momentum), ``nag.max_ratio``.
    * ``escape``: ``escape.batch_<B>.deep_fraction``, the fraction of runs that left the shallow
      minimum for the deep one (``full``: the exact gradient).
    * ``cost``: ``cost.n_<n>.<batch|minibatch>.evaluations`` (per-sample gradients until the loss
      reaches ``target``), ``cost.<batch|minibatch>.growth`` (largest n / smallest n) against
      ``cost.size_growth``; wall times in ``.seconds``, reported, not asserted.
    * ``sharpness``: ``sharpness.<label>.{sharpness, train_loss, val_accuracy, gap}``.
    """
    metrics: dict = {}
    rows_nag, rows, curves_escape, curves_cost = [], [], {}, {}
    for name, run in (("nesterov", lambda: _nesterov(ctx, nesterov, metrics, rows_nag)),
                      ("escape", lambda: _noise_escape(ctx, escape, metrics, rows, curves_escape)),
                      ("cost", lambda: _batch_cost(ctx, cost, metrics, rows, curves_cost)),
                      ("sharpness", lambda: _sharpness(ctx, sharpness, metrics, rows))):
        t0 = time.perf_counter()
        run()
        ctx.log(f"{name}: {time.perf_counter() - t0:.1f} s")
    from trainlab.experiments.plots import plot_panels

    fig = plot_panels([
        {"title": "runs in the deep basin (SGD from the shallow minimum)", "xlabel": "step", "ylabel": "fraction",
         "series": curves_escape, "logx": True},
        {"title": f"per-sample gradients to reach loss {cost['target']}", "xlabel": "data set size n",
         "ylabel": "evaluations (log)", "series": curves_cost, "logy": True, "logx": True, "markers": True},
    ], ctx.path("dynamics_claims.png"), ncols=2)
    sections = [
        Section("Nesterov vs heavy-ball momentum: steps to tolerance", text=[
            "Same learning rate and β for both; NAG evaluates the gradient at the look-ahead point."],
            table=(("problem", "lr", "momentum steps", "NAG steps", "NAG / momentum"), rows_nag)),
        Section("SGD noise, batch cost, sharpness", table=(("experiment", "setting", "lr", "result", "note"), rows),
                figures=[("escape from a shallow minimum; cost of batch GD as n grows", fig)]),
    ]
    return Outcome(metrics, sections)
