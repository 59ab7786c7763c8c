"""Initialization studies: symmetry, scale, and the match of Xavier/He to tanh/ReLU (notes 000, 002, 004)."""
from __future__ import annotations

import math

import torch

from trainlab.experiments.report import Section
from trainlab.experiments.studies import Outcome, StudyContext
from trainlab.experiments.study_procedures._common import train
from trainlab.nn.models import MLP
from trainlab.train.callbacks import Callback


def _init(model, spec: dict, generator: torch.Generator | None = None) -> None:
    from trainlab.init import init_model

    spec = dict(spec)
    init_model(model, spec.pop("weight", "auto"), spec.pop("bias", "zeros"), generator=generator, **spec)


class InitAtStart(Callback):
    """Initializes the model with :func:`trainlab.init.init_model` before the first step."""

    def __init__(self, spec: dict, seed: int):
        self.spec, self.seed = spec, seed

    def on_train_begin(self, logs):
        _init(self.loop.model, self.spec, torch.Generator().manual_seed(self.seed))


@torch.no_grad()
def unit_spread(model: MLP) -> float:
    """The largest difference between two hidden units of the same layer: incoming weights and
    bias (rows) and outgoing weights (columns of the next layer), max-abs, over all hidden layers."""
    spread = 0.0
    layers = [b.linear for b in model.blocks] + [model.out]
    for here, nxt in zip(layers[:-1], layers[1:]):
        rows = torch.cat([here.weight, here.bias[:, None]], 1)
        spread = max(spread, float((rows - rows[:1]).abs().max()), float((nxt.weight - nxt.weight[:, :1]).abs().max()))
    return spread


def init_symmetry(ctx: StudyContext, *, data: dict, hidden: list[int], activations: list[str], inits: dict,
                  optimizer: dict, epochs: int, batch_size: int | str = 32) -> Outcome:
    """Train the same MLP from each initialization and measure whether its hidden units differ.

    ``inits`` maps a label to :func:`trainlab.init.init_model` arguments (``{weight: zeros}``,
    ``{weight: constant, val: 0.7}``, ``{weight: xavier_normal}``, ...). After training, the
    *unit spread* is the largest max-abs difference between two units of one hidden layer (their
    incoming weights and bias, and their outgoing weights): 0 means the units are still copies of
    each other, so the layer computes what a single unit would.
    """
    metrics: dict[str, float] = {}
    rows = []
    for act in activations:
        for label, spec in inits.items():
            cfg = {"name": f"sym-{label}-{act}", "seed": ctx.seed, "data": data,
                   "model": {"kind": "mlp", "hidden": hidden, "activation": act},
                   "optimizer": optimizer, "train": {"epochs": epochs, "batch_size": batch_size}}
            run = train(cfg, callbacks=(InitAtStart(spec, ctx.seed),))
            if run.diverged is not None:
                raise RuntimeError(f"{label}/{act} diverged: {run.diverged}")
            spread = unit_spread(run.model)
            acc = run.final.get("val_accuracy", math.nan)
            metrics[f"{label}.{act}.unit_spread"] = spread
            metrics[f"{label}.{act}.val_accuracy"] = acc
            rows.append((label, act, spread, acc, run.final.get("train_loss", math.nan)))
            ctx.log(f"{label}/{act}: spread {spread:.3g}, val acc {acc:.3f}")
    for label in inits:
        metrics[f"{label}.max_unit_spread"] = max(metrics[f"{label}.{a}.unit_spread"] for a in activations)
        metrics[f"{label}.min_unit_spread"] = min(metrics[f"{label}.{a}.unit_spread"] for a in activations)
        metrics[f"{label}.mean_val_accuracy"] = sum(metrics[f"{label}.{a}.val_accuracy"] for a in activations) / len(activations)
    from trainlab.experiments.plots import plot_bars

    fig = plot_bars({a: {label: metrics[f"{label}.{a}.val_accuracy"] for label in inits} for a in activations},
                    ctx.path("symmetry_accuracy.png"), ylabel="validation accuracy",
                    title="identical units learn what one unit can")
    section = Section("Symmetry after training", text=[
        f"MLP {hidden} trained for {epochs} epochs with {optimizer}; the unit spread is the largest difference "
        "between two units of the same hidden layer after training."],
        table=(("init", "activation", "unit spread", "val accuracy", "train loss"), rows),
        figures=[("validation accuracy per initialization", fig)])
    return Outcome(metrics, [section])


def _depth_profile(model: MLP, x: torch.Tensor, y: torch.Tensor, saturation_tol: float) -> dict:
    """Per hidden layer: activation std, saturated fraction, and the gradient std of its weights."""
    from trainlab.diagnostics.neurons import ActivationProbe
    from trainlab.losses import cross_entropy

    model.zero_grad(set_to_none=True)
    with ActivationProbe(model, saturation_tol) as probe:
        loss = cross_entropy(model(x), y)
    loss.backward()
    stats = probe.stats()
    names = [n for n in probe.order if n in stats]
    act_std = [stats[n]["std"] for n in names]
    sat = [stats[n].get("saturated_frac", float("nan")) for n in names]
    grad_std = [float(b.linear.weight.grad.std()) for b in model.blocks]
    return {"act_std": act_std, "saturated": sat, "grad_std": grad_std, "loss": float(loss.detach())}


def init_depth_profile(ctx: StudyContext, *, depth: int, width: int, n_samples: int, cases: dict,
                       classes: int = 10, saturation_tol: float = 0.01, repeats: int = 1) -> Outcome:
    """Activation and gradient statistics layer by layer in a deep MLP at initialization.

    Inputs are x ~ N(0, I) of dimension ``width`` with random labels; the net has ``depth`` hidden
    layers of ``width`` units. ``cases`` maps a label to ``{activation, init: {init_model args}}``.
    Per case: the std of each hidden layer's activations, the fraction of saturated units (tanh
    and sigmoid, within ``saturation_tol`` of their range of the bounds), and the std of the
    gradient of each hidden layer's weights for the cross-entropy loss. Summaries: the ratio of the
    last to the first hidden layer's activation std (``act_ratio``: 1 keeps the signal, ≪ 1 vanishes,
    ≫ 1 explodes) and of the first to the last layer's gradient std (``grad_ratio``), averaged in
    log space over ``repeats`` draws.
    """
    g = torch.Generator().manual_seed(ctx.seed)
    metrics: dict[str, float] = {}
    panels_act, panels_grad, rows = {}, {}, []
    for label, case in cases.items():
        profiles = []
        for r in range(repeats):
            x = torch.randn(n_samples, width, generator=g)
            y = torch.randint(0, classes, (n_samples,), generator=g)
            model = MLP(width, hidden=[width] * depth, out_features=classes, activation=case["activation"])
            _init(model, case["init"], g)
            profiles.append(_depth_profile(model, x, y, saturation_tol))
        mean = lambda key: [math.exp(sum(math.log(max(p[key][i], 1e-300)) for p in profiles) / len(profiles))
                            for i in range(len(profiles[0][key]))]
        act, grad = mean("act_std"), mean("grad_std")
        sat = [sum(p["saturated"][i] for p in profiles) / len(profiles) for i in range(len(profiles[0]["saturated"]))]
        metrics[f"{label}.act_ratio"] = act[-1] / act[0]
        metrics[f"{label}.grad_ratio"] = grad[0] / grad[-1] if grad[-1] > 0 else math.inf
        metrics[f"{label}.last_act_std"] = act[-1]
        metrics[f"{label}.first_act_std"] = act[0]
        metrics[f"{label}.first_grad_std"] = grad[0]
        metrics[f"{label}.last_grad_std"] = grad[-1]
        metrics[f"{label}.log10_act_ratio_abs"] = abs(math.log10(max(act[-1] / act[0], 1e-300)))
        metrics[f"{label}.log10_grad_ratio_abs"] = abs(math.log10(max(metrics[f"{label}.grad_ratio"], 1e-300)))
        if not any(math.isnan(s) for s in sat):
            metrics[f"{label}.saturated_frac"] = sum(sat) / len(sat)
            metrics[f"{label}.last_saturated_frac"] = sat[-1]
        panels_act[label] = (range(1, depth + 1), act)
        panels_grad[label] = (range(1, depth + 1), grad)
        rows.append((label, case["activation"], str(case["init"]), act[0], act[-1], act[-1] / act[0], grad[0],
                     grad[-1], metrics.get(f"{label}.saturated_frac", float("nan"))))
        ctx.log(f"{label}: act {act[0]:.3g} -> {act[-1]:.3g}, grad {grad[0]:.3g} / {grad[-1]:.3g}")
    from trainlab.experiments.plots import plot_panels

    fig = plot_panels([
        {"title": "activation std per hidden layer", "xlabel": "layer", "ylabel": "std (log)", "logy": True,
         "series": panels_act, "markers": True},
        {"title": "gradient std of each layer's weights", "xlabel": "layer", "ylabel": "std (log)", "logy": True,
         "series": panels_grad, "markers": True},
    ], ctx.path("depth_profile.png"))
    section = Section("Signals through depth at initialization", text=[
        f"{depth} hidden layers of {width} units, inputs N(0, I), {n_samples} samples, random labels; "
        f"geometric mean over {repeats} draw(s)."],
        table=(("case", "activation", "init", "act std layer 1", f"act std layer {depth}", "ratio",
                "grad std layer 1", f"grad std layer {depth}", "saturated frac"), rows),
        figures=[("activations and gradients over depth", fig)])
    return Outcome(metrics, [section])


def _teacher_task(width: int, n: int, classes: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """x ~ N(0, I_width), labels argmax(x W_t) of a random linear teacher: learnable by any depth."""
    teacher = torch.randn(width, classes, generator=g)
    x = torch.randn(n, width, generator=g)
    return x, (x @ teacher).argmax(1)


def _train_loss(model: MLP, x: torch.Tensor, y: torch.Tensor, *, epochs: int, batch_size: int, lr: float,
                momentum: float, g: torch.Generator) -> float:
    """Mini-batch SGD with momentum for ``epochs``; returns the training cross-entropy after it
    (``inf`` when the loss became non-finite)."""
    from trainlab.losses import cross_entropy
    from trainlab.optim import SGD

    opt = SGD(model.parameters(), lr=lr, momentum=momentum)
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=g)
        for i in range(0, len(x), batch_size):
            idx = order[i:i + batch_size]
            opt.zero_grad(set_to_none=True)
            loss = cross_entropy(model(x[idx]), y[idx])
            if not torch.isfinite(loss):
                return math.inf
            loss.backward()
            opt.step()
    with torch.no_grad():
        return float(cross_entropy(model(x), y))


def init_tanh_gain(ctx: StudyContext, *, depths: list[int], width: int, n_samples: int, cases: dict,
                   epochs: int, batch_size: int = 64, lr: float = 0.01, momentum: float = 0.9,
                   classes: int = 10, saturation_tol: float = 0.01, repeats: int = 1) -> Outcome:
    """Which gain suits tanh: signals at initialization and the loss after training, over depth.

    For each depth in ``depths`` and each case (``{init: {init_model args}}``; the activation is
    tanh) a ``depth × width`` tanh MLP is measured at initialization on x ~ N(0, I) with random
    labels, exactly as :func:`init_depth_profile` does (``grad_ratio``: first/last layer gradient
    std; ``saturated_frac``: mean fraction of units within ``saturation_tol`` of ±1; ``act_ratio``:
    last/first activation std), and then trained from that initialization for ``epochs`` of SGD
    (``lr``, ``momentum``, ``batch_size``) on a linear-teacher task of ``n_samples`` points;
    ``loss`` is the training cross-entropy after it. Metrics are named ``<case>.d<depth>.<what>``
    and averaged over ``repeats`` seeds (geometric mean for ratios, arithmetic for the rest).
    """
    metrics: dict[str, float] = {}
    rows = []
    series = {key: {label: ([], []) for label in cases} for key in ("grad", "sat", "loss", "act")}
    for depth in depths:
        for label, case in cases.items():
            logs = {"grad": [], "sat": [], "loss": [], "act": []}
            for r in range(repeats):
                g = torch.Generator().manual_seed(ctx.seed * 1000 + 17 * r + depth)
                model = MLP(width, hidden=[width] * depth, out_features=classes, activation="tanh")
                _init(model, case["init"], g)
                xr = torch.randn(n_samples, width, generator=g)
                yr = torch.randint(0, classes, (n_samples,), generator=g)
                p = _depth_profile(model, xr, yr, saturation_tol)
                logs["grad"].append(math.log(max(p["grad_std"][0] / p["grad_std"][-1], 1e-300)))
                logs["act"].append(math.log(max(p["act_std"][-1] / p["act_std"][0], 1e-300)))
                logs["sat"].append(sum(p["saturated"]) / len(p["saturated"]))
                x, y = _teacher_task(width, n_samples, classes, g)
                model.zero_grad(set_to_none=True)
                logs["loss"].append(_train_loss(model, x, y, epochs=epochs, batch_size=batch_size, lr=lr,
                                                momentum=momentum, g=g))
            grad = math.exp(sum(logs["grad"]) / repeats)
            act = math.exp(sum(logs["act"]) / repeats)
            sat = sum(logs["sat"]) / repeats
            loss = sum(logs["loss"]) / repeats
            key = f"{label}.d{depth}"
            metrics[f"{key}.grad_ratio"] = grad
            metrics[f"{key}.log10_grad_ratio_abs"] = abs(math.log10(grad))
            metrics[f"{key}.act_ratio"] = act
            metrics[f"{key}.saturated_frac"] = sat
            metrics[f"{key}.loss"] = loss
            for k, v in (("grad", grad), ("sat", sat), ("loss", loss), ("act", act)):
                series[k][label][0].append(depth)
                series[k][label][1].append(v)
            rows.append((label, depth, str(case["init"]), grad, act, sat, loss))
            ctx.log(f"{label} depth {depth}: grad ratio {grad:.3g}, act ratio {act:.3g}, saturated {sat:.3g}, "
                    f"loss {loss:.4g}")
    for label in cases:
        metrics[f"{label}.max_log10_grad_ratio_abs"] = max(metrics[f"{label}.d{d}.log10_grad_ratio_abs"] for d in depths)
        metrics[f"{label}.max_saturated_frac"] = max(metrics[f"{label}.d{d}.saturated_frac"] for d in depths)
        metrics[f"{label}.mean_loss"] = sum(metrics[f"{label}.d{d}.loss"] for d in depths) / len(depths)
    from trainlab.experiments.plots import plot_panels

    fig = plot_panels([
        {"title": "first/last layer gradient std at init", "xlabel": "depth", "ylabel": "ratio (log)",
         "logy": True, "series": series["grad"], "markers": True, "hline": 1.0},
        {"title": "last/first layer activation std at init", "xlabel": "depth", "ylabel": "ratio (log)",
         "logy": True, "series": series["act"], "markers": True, "hline": 1.0},
        {"title": "saturated fraction at init", "xlabel": "depth", "ylabel": "fraction",
         "series": series["sat"], "markers": True},
        {"title": f"training loss after {epochs} epochs", "xlabel": "depth", "ylabel": "cross-entropy",
         "series": series["loss"], "markers": True},
    ], ctx.path("tanh_gain.png"), ncols=2)
    section = Section("tanh: gain 1 vs 5/3 vs He over depth", text=[
        f"tanh MLPs of {width} units per hidden layer, depths {depths}; at initialization on x ~ N(0, I) with "
        f"random labels ({n_samples} samples), then {epochs} epochs of SGD (lr {lr}, momentum {momentum}, "
        f"batch {batch_size}) on a linear-teacher task; mean over {repeats} seed(s)."],
        table=(("case", "depth", "init", "grad std first/last", "act std last/first", "saturated frac",
                f"loss after {epochs} epochs"), rows),
        figures=[("gradient balance, saturation and trained loss over depth", fig)])
    return Outcome(metrics, [section])
