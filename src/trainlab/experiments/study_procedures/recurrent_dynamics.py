"""Recurrent nets beyond long memory (notes 002): order and chaos against the recurrent weight
scale, what an output → hidden recurrence can and cannot remember, and generation from one input."""
from __future__ import annotations

import math

import torch
from torch import nn

from trainlab.experiments.report import Section
from trainlab.experiments.studies import Outcome, StudyContext
from trainlab.experiments.study_procedures._common import train


def _label(g: float) -> str:
    return f"{g:g}"


def rnn_chaos(ctx: StudyContext, *, scales: list[float], hidden: int = 64, length: int = 100, batch: int = 32,
              input_std: float = 0.1, burn_in: int = 20, eps: float = 1e-8, nets: int = 3) -> Outcome:
    """Elman nets h_t = tanh(W_ih x_t + W_hh h_(t−1)) with W_hh ~ N(0, g²/H) for each scale g.

    For each g (``nets`` independent nets, H = ``hidden``, float64, biases 0, W_ih ~ N(0,
    ``input_std``²), the same ``batch`` random input sequences x_t ~ N(0, 1) of ``length`` steps):

    * the largest Lyapunov exponent λ (:func:`~trainlab.nn.recurrent.lyapunov_exponent`, the
      first ``burn_in`` steps not counted): λ < 0 order, λ > 0 chaos;
    * ‖h_T − h′_T‖/‖h_0 − h′_0‖ for two runs started ``eps`` apart
      (:func:`~trainlab.nn.recurrent.perturbation_divergence`);
    * ‖∂L/∂h_1‖/‖∂L/∂h_T‖ for L = Σ h_T (:func:`~trainlab.nn.recurrent.hidden_gradient_norms`);
    * the participation ratio of the states (after the burn-in): how many independent directions
      the H units span, the symmetry breaking (1 = every unit a copy of one signal up to scale).
    """
    from trainlab.nn.recurrent import (ElmanRNN, hidden_gradient_norms, lyapunov_exponent, perturbation_divergence,
                                       state_participation_ratio)

    g_in = torch.Generator().manual_seed(ctx.seed)
    x = torch.randn(length, batch, 1, generator=g_in, dtype=torch.float64)
    metrics: dict[str, float] = {}
    rows, div_series, grad_series = [], {}, {}
    lams, prs = [], []
    for g in scales:
        lam, div, grad, pr, sat = [], [], [], [], []
        for k in range(nets):
            gen = torch.Generator().manual_seed(ctx.seed * 1000 + k)
            rnn = ElmanRNN(1, hidden).double()
            with torch.no_grad():
                rnn.weight_hh_l0.copy_(torch.randn(hidden, hidden, generator=gen, dtype=torch.float64)
                                       * (g / math.sqrt(hidden)))
                rnn.weight_ih_l0.copy_(torch.randn(hidden, 1, generator=gen, dtype=torch.float64) * input_std)
                rnn.bias_ih_l0.zero_()
                rnn.bias_hh_l0.zero_()
            lam.append(float(lyapunov_exponent(rnn, x, burn_in=burn_in, seed=ctx.seed + k).mean()))
            d = perturbation_divergence(rnn, x, eps=eps, seed=ctx.seed + k)
            div.append(d)
            norms = hidden_gradient_norms(rnn, x)
            grad.append(norms / norms[-1])
            with torch.no_grad():
                states = torch.stack(rnn.unroll(x))
            pr.append(state_participation_ratio(states[burn_in:]))
            sat.append(float((states[burn_in:].abs() > 0.9).double().mean()))
        mean_div = torch.stack(div).mean(0)
        mean_grad = torch.stack(grad).log().mean(0).exp()  # geometric mean: the ratios span many decades
        key = f"g{_label(g)}"
        metrics[f"{key}.lyapunov"] = sum(lam) / nets
        metrics[f"{key}.divergence_T"] = float(mean_div[-1])
        metrics[f"{key}.grad_first_over_last"] = float(mean_grad[0])
        metrics[f"{key}.participation_ratio"] = sum(pr) / nets
        metrics[f"{key}.saturated_fraction"] = sum(sat) / nets
        lams.append(metrics[f"{key}.lyapunov"])
        prs.append(metrics[f"{key}.participation_ratio"])
        div_series[f"g = {g:g}"] = (range(1, length + 1), mean_div.clamp_min(1e-300).tolist())
        grad_series[f"g = {g:g}"] = (range(1, length + 1), mean_grad.clamp_min(1e-300).tolist())
        rows.append((f"{g:g}", metrics[f"{key}.lyapunov"], metrics[f"{key}.divergence_T"],
                     metrics[f"{key}.grad_first_over_last"], metrics[f"{key}.participation_ratio"],
                     metrics[f"{key}.saturated_fraction"]))
        ctx.log(f"g = {g:g}: λ = {lams[-1]:+.3f}/step, divergence at T {metrics[f'{key}.divergence_T']:.3g}, "
                f"gradient 1/T {metrics[f'{key}.grad_first_over_last']:.3g}, participation ratio {prs[-1]:.2f}")
    metrics["lyapunov_increases_with_scale"] = float(all(a < b for a, b in zip(lams, lams[1:])))
    metrics["participation_increases_with_scale"] = float(all(a < b for a, b in zip(prs, prs[1:])))
    chaotic = [g for g, lam in zip(scales, lams) if lam > 0]
    metrics["edge_of_chaos"] = min(chaotic) if chaotic else math.inf
    metrics["pr_ratio_largest_smallest"] = prs[-1] / prs[0]

    from trainlab.experiments.plots import plot_panels

    fig = plot_panels([
        {"title": f"two runs {eps:g} apart at h_0", "xlabel": "step t", "ylabel": "‖h_t − h′_t‖ / ‖h_0 − h′_0‖ (log)",
         "logy": True, "series": div_series},
        {"title": "gradient through time, L = Σ h_T", "xlabel": "step t", "ylabel": "‖∂L/∂h_t‖ / ‖∂L/∂h_T‖ (log)",
         "logy": True, "series": grad_series},
        {"title": "against the scale g", "xlabel": "g (W_hh ~ N(0, g²/H))", "ylabel": "value", "markers": True,
         "series": {"Lyapunov exponent λ": (scales, lams), "participation ratio / H": (scales, [p / hidden for p in prs])},
         "hline": 0.0},
    ], ctx.path("rnn_chaos.png"))
    text = [f"Elman tanh nets of H = {hidden} units, W_hh ~ N(0, g²/H), W_ih ~ N(0, {input_std:g}²), biases 0, "
            f"driven by {batch} sequences of {length} steps x_t ~ N(0, 1); means over {nets} nets (float64). "
            f"PyTorch's default U(−1/√H, 1/√H) is g = 1/√3 ≈ 0.58. λ in nats per step; the participation "
            f"ratio counts the independent directions the units span (1: the units are copies; H: all independent)."]
    return Outcome(metrics, [Section("Order and chaos against the recurrent weight scale", text=text, table=(
        ("g", "Lyapunov exponent λ", "‖h_T − h′_T‖/‖h_0 − h′_0‖", "‖∂L/∂h_1‖/‖∂L/∂h_T‖", "participation ratio",
         "fraction |h| > 0.9"), rows), figures=[("divergence, gradients through time, λ and dimensionality", fig)])])


# ---------------------------------------------------------------------------------------------
# Type 1 (hidden → hidden) against Type 2 (output → hidden)


class _Type1(nn.Module):
    """Elman net with a read-out at every step: o_t = V·h_t + c (time-major in and out)."""

    def __init__(self, hidden: int):
        super().__init__()
        from trainlab.nn.recurrent import ElmanRNN

        self.rnn, self.out = ElmanRNN(1, hidden), nn.Linear(hidden, 1)

    def forward(self, x, targets=None):
        return self.out(self.rnn(x)[0])


def _fit_sequence_model(model, X, Y, *, epochs: int, batch_size: int, lr: float, teacher_forcing: bool, seed: int):
    """Adam on the mse of every step; X, Y time-major (T, N, 1)."""
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    g = torch.Generator().manual_seed(seed)
    losses = []
    for _ in range(epochs):
        order = torch.randperm(X.shape[1], generator=g)
        total = 0.0
        for i in range(0, X.shape[1], batch_size):
            idx = order[i:i + batch_size]
            x, y = X[:, idx], Y[:, idx]
            out = model(x, targets=y) if teacher_forcing else model(x)
            loss = (out - y).square().mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        losses.append(total / X.shape[1])
    return losses


def rnn_output_recurrence(ctx: StudyContext, *, tasks: list[str], hidden: int = 32, length: int = 20, delay: int = 2,
                          n_train: int = 1024, n_val: int = 512, epochs: int = 30, batch_size: int = 64,
                          lr: float = 0.01) -> Outcome:
    """Is the output → hidden recurrence ("Type 2") less powerful than hidden → hidden ("Type 1")?

    Each net (H = ``hidden``) is trained with Adam at ``lr`` on the mse of every step for ``epochs``
    epochs of ``n_train`` bit sequences of ``length`` steps and scored by its free-running
    per-step accuracy (output rounded at ½) on ``n_val`` fresh sequences:

    * ``type1``: :class:`~trainlab.nn.recurrent.ElmanRNN` + a read-out, BPTT;
    * ``type2_teacher``: :class:`~trainlab.nn.recurrent.OutputRecurrentRNN` trained with teacher
      forcing (the true y_(t−1) fed back, all steps at once), run on its own outputs at test;
    * ``type2_bptt``: the same net trained on its own outputs, BPTT through the feedback.

    Tasks: ``delayed_echo`` (y_t = b_(t−delay): the memory is a past input no output holds) and
    ``running_parity`` (y_t = y_(t−1) ⊕ b_t: the previous output is all the memory needed).
    Accuracy counts the steps t > ``delay`` for the echo (earlier targets are the constant 0).
    """
    from trainlab.data.sequences import delayed_echo, running_parity
    from trainlab.nn.recurrent import OutputRecurrentRNN

    makers = {"delayed_echo": lambda n, s: delayed_echo(n, length, delay, seed=s),
              "running_parity": lambda n, s: running_parity(n, length, seed=s)}
    unknown = [t for t in tasks if t not in makers]
    if unknown:
        raise ValueError(f"unknown task {unknown[0]!r}; choose from {sorted(makers)}")
    metrics: dict[str, float] = {}
    rows, curves = [], {}
    for task in tasks:
        train_set, val_set = makers[task](n_train, ctx.seed + 1), makers[task](n_val, ctx.seed + 2)
        X, Y = train_set.X.transpose(0, 1), train_set.y.transpose(0, 1)
        Xv, Yv = val_set.X.transpose(0, 1), val_set.y.transpose(0, 1)
        first = delay if task == "delayed_echo" else 0
        for variant in ("type1", "type2_teacher", "type2_bptt"):
            torch.manual_seed(ctx.seed)
            model = _Type1(hidden) if variant == "type1" else OutputRecurrentRNN(1, hidden, 1)
            losses = _fit_sequence_model(model, X, Y, epochs=epochs, batch_size=batch_size, lr=lr,
                                         teacher_forcing=variant == "type2_teacher", seed=ctx.seed)
            with torch.no_grad():
                out = model(Xv)
            acc = float(((out[first:] > 0.5).float() == Yv[first:]).float().mean())
            metrics[f"{task}.{variant}.accuracy"] = acc
            metrics[f"{task}.{variant}.train_mse"] = losses[-1]
            curves[f"{task}, {variant}"] = (range(1, epochs + 1), losses)
            rows.append((task, variant, losses[-1], acc))
            ctx.log(f"{task} {variant}: train mse {losses[-1]:.4g}, free-running val accuracy {acc:.3f}")

    from trainlab.experiments.plots import plot_panels

    fig = plot_panels([{"title": "training mse per epoch", "xlabel": "epoch", "ylabel": "mse (log)", "logy": True,
                        "series": curves}], ctx.path("rnn_type1_type2.png"))
    text = [f"Bit sequences of {length} steps, H = {hidden}, Adam lr {lr:g}, batch {batch_size}, {epochs} epochs of "
            f"{n_train} sequences; accuracy of the free-running net on {n_val} new sequences (chance 0.5). "
            f"Echo delay {delay}: the Type 2 hidden layer sees x_t and o_(t−1) ≈ b_(t−1−{delay}) only."]
    return Outcome(metrics, [Section("Type 1 (hidden → hidden) against Type 2 (output → hidden)", text=text,
                                     table=(("task", "net", "train mse", "val accuracy"), rows),
                                     figures=[("training curves", fig)])])


# ---------------------------------------------------------------------------------------------
# one to many


def rnn_one_to_many(ctx: StudyContext, *, cell: str = "gru", hidden: int = 32, length: int = 30, n_train: int = 2048,
                    n_val: int = 256, epochs: int = 30, batch_size: int = 64, lr: float = 0.01) -> Outcome:
    """Generate a sine wave of ``length`` steps from one input (f, sin φ, cos φ), through the runner.

    ``model: {kind: rnn, pattern: one2many, cell}`` on ``data: sine_generation``: the model reads
    one input per sequence and emits one value per step. Reports the validation mse against ½,
    the mse of answering 0, and plots generated against true waves.
    """
    from trainlab.data.sequences import sine_generation
    from trainlab.experiments.runner import Splits

    train_set = sine_generation(n_train, length, seed=ctx.seed + 1)
    val_set = sine_generation(n_val, length, seed=ctx.seed + 2)
    cfg = {"name": f"one2many-{cell}", "seed": ctx.seed,
           "data": {"name": "sine_generation", "n_samples": n_train, "length": length},
           "model": {"kind": "rnn", "cell": cell, "hidden": hidden, "pattern": "one2many"},
           "loss": {"name": "mse"}, "optimizer": {"name": "adam", "lr": lr},
           "train": {"epochs": epochs, "batch_size": batch_size}, "diagnostics": None}
    run = train(cfg, data=Splits(train_set, val_set))
    val = run.history.history.get("val_loss", [])
    metrics = {"val_mse": val[-1] if val and run.diverged is None else math.inf,
               "first_epoch_val_mse": val[0] if val else math.inf, "zero_answer_mse": 0.5}
    metrics["val_mse_over_zero_answer"] = metrics["val_mse"] / 0.5
    figures = []
    if run.model is not None:
        model = run.model.cpu().eval()
        with torch.no_grad():
            out = model(val_set.X[:4])
        metrics["outputs_per_input"] = float(out.shape[1])
        metrics["outputs_per_input_is_length"] = float(out.shape[1] == length)
        metrics["inputs_per_sequence"] = float(val_set.X.shape[1])
        from trainlab.experiments.plots import plot_panels

        series = {}
        for i in range(3):
            series[f"true {i}"] = (range(1, length + 1), val_set.y[i, :, 0].tolist())
            series[f"generated {i}"] = (range(1, length + 1), out[i, :, 0].tolist())
        fig = plot_panels([
            {"title": "validation mse per epoch", "xlabel": "epoch", "ylabel": "mse (log)", "logy": True,
             "series": {cell: (range(1, len(val) + 1), val)}, "hline": 0.5},
            {"title": "generated from one input", "xlabel": "step t", "ylabel": "value", "series": series}],
            ctx.path("rnn_one_to_many.png"))
        figures = [("training and three generated waves", fig)]
    ctx.log(f"one2many {cell}: val mse {metrics['val_mse']:.4g} (answering 0: 0.5)")
    text = [f"A {cell} net of H = {hidden} reads one input x = (f/f_max, sin φ, cos φ) and emits {length} values "
            f"(the input repeated as each step's input); targets sin(2π f t + φ). Adam lr {lr:g}, batch "
            f"{batch_size}, {epochs} epochs of {n_train} sequences."]
    return Outcome(metrics, [Section("One to many: a sequence from one input", text=text, table=(
        ("validation mse", "first epoch", "answering 0"),
        [(metrics["val_mse"], metrics["first_epoch_val_mse"], 0.5)]), figures=figures)])


# ---------------------------------------------------------------------------------------------
# normalizing the recurrence: batch norm against layer norm


def rnn_norm(ctx: StudyContext, *, norms: list[str], batch_sizes: list[int], hidden: int = 32, length: int = 30,
             n_train: int = 1024, n_val: int = 256, epochs: int = 10, lr: float = 0.003,
             long_factor: int = 3) -> Outcome:
    """Elman nets with ``model.norm`` none / layer / batch on ``noisy_sine`` (next value at each step).

    Each norm is trained through the runner at each of ``batch_sizes`` (Adam at ``lr``, ``epochs``
    epochs of ``n_train`` sequences of ``length`` steps) and evaluated (eval mode) on ``n_val``
    fresh sequences of ``length`` steps and of ``long_factor``·``length`` steps. Also measured at
    initialization, in training mode: how much one sequence's outputs change when the other
    sequences of its batch change (batch norm's statistics are the batch's; layer norm's its own).
    """
    from trainlab.data.sequences import noisy_sine
    from trainlab.experiments.runner import Splits
    from trainlab.nn.recurrent import SequenceModel

    metrics: dict[str, float] = {}
    labels = {"none": None, "layer": "layer", "batch": "batch"}
    g = torch.Generator().manual_seed(ctx.seed)
    probe = torch.randn(8, length, 1, generator=g)
    other = torch.randn(8, length, 1, generator=g)
    for name in norms:
        torch.manual_seed(ctx.seed)
        model = SequenceModel(1, 1, cell="elman", hidden=hidden, pattern="seq2seq", norm=labels[name]).train()
        with torch.no_grad():
            a = model(probe)[:2]
            b = model(torch.cat([probe[:2], other[2:]]))[:2]
        metrics[f"{name}.batch_dependence"] = float((a - b).abs().max())
    train_set = noisy_sine(n_train, length, seed=ctx.seed + 1)
    val_set = noisy_sine(n_val, length, seed=ctx.seed + 2)
    long_set = noisy_sine(n_val, long_factor * length, seed=ctx.seed + 3)
    rows, curves = [], {}
    for bs in batch_sizes:
        for name in norms:
            model_cfg = {"kind": "rnn", "cell": "elman", "hidden": hidden, "pattern": "seq2seq"}
            if labels[name] is not None:
                model_cfg["norm"] = labels[name]
            cfg = {"name": f"noisy-sine-{name}-b{bs}", "seed": ctx.seed,
                   "data": {"name": "noisy_sine", "n_samples": n_train, "length": length},
                   "model": model_cfg, "loss": {"name": "mse"}, "optimizer": {"name": "adam", "lr": lr},
                   "train": {"epochs": epochs, "batch_size": bs}, "diagnostics": None}
            run = train(cfg, data=Splits(train_set, val_set))
            key = f"{name}.b{bs}"
            val = long_mse = math.inf
            if run.model is not None:
                model = run.model.cpu().eval()
                with torch.no_grad():
                    val = float((model(val_set.X) - val_set.y).square().mean())
                    long_mse = float((model(long_set.X) - long_set.y).square().mean())
            metrics[f"{key}.val_mse"] = val
            metrics[f"{key}.long_mse"] = long_mse
            metrics[f"{key}.train_loss"] = run.last("loss", math.inf)
            curves[f"{name}, batch {bs}"] = (range(1, len(run.history.history.get("val_loss", [])) + 1),
                                             run.history.history.get("val_loss", []))
            rows.append((name, bs, metrics[f"{key}.train_loss"], val, long_mse))
            ctx.log(f"{name} batch {bs}: train loss {metrics[f'{key}.train_loss']:.4g}, val mse {val:.4g}, "
                    f"length {long_factor * length} mse {long_mse:.4g}")
    small, large = min(batch_sizes), max(batch_sizes)
    for name in norms:
        metrics[f"{name}.small_over_large"] = metrics[f"{name}.b{small}.val_mse"] / metrics[f"{name}.b{large}.val_mse"]
        metrics[f"{name}.long_over_val"] = metrics[f"{name}.b{large}.long_mse"] / metrics[f"{name}.b{large}.val_mse"]

    from trainlab.experiments.plots import plot_panels

    fig = plot_panels([{"title": "validation mse per epoch (eval mode)", "xlabel": "epoch", "ylabel": "mse (log)",
                        "logy": True, "series": curves}], ctx.path("rnn_norm.png"))
    dep = [(name, metrics[f"{name}.batch_dependence"]) for name in norms]
    return Outcome(metrics, [
        Section("One sequence's outputs depend on the rest of its batch (training mode, at initialization)",
                text=["Max |change| of the outputs of two sequences when the other six of the batch of 8 are "
                      "replaced."], table=(("norm", "max |Δ output|"), dep)),
        Section("Training at a large and a small batch; evaluating at the training length and longer", text=[
            f"Elman nets of H = {hidden} (`model: {{kind: rnn, cell: elman, norm: ...}}`) predict a noisy sine's "
            f"next value at each of {length} steps; Adam lr {lr:g}, {epochs} epochs of {n_train} sequences. "
            f"Evaluation in eval mode on {n_val} new sequences of {length} and {long_factor * length} steps."],
            table=(("norm", "batch", "train loss", f"val mse (T = {length})", f"mse at T = {long_factor * length}"), rows),
            figures=[("validation curves", fig)])])
