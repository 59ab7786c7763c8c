"""Long-term memory in recurrent nets: gradients through time, and the adding problem (notes 002)."""
from __future__ import annotations

import math

import torch

from trainlab.experiments.report import Section
from trainlab.experiments.studies import Outcome, StudyContext
from trainlab.experiments.study_procedures._common import train


def _profile(rnn, x: torch.Tensor, loss_of_last) -> list[float]:
    """‖∂L/∂h_t‖ / ‖∂L/∂h_T‖ for t = 1..T through the first layer (x time-major)."""
    states = rnn.unroll(x)
    hs = [rnn._hidden(s) for s in states]
    grads = torch.autograd.grad(loss_of_last(hs[-1]), hs)
    norms = torch.stack([torch.linalg.vector_norm(g) for g in grads]).detach()
    return (norms / norms[-1]).tolist()


def _decay_per_step(ratios: list[float]) -> float:
    """exp of the least-squares slope of log ratio against t: the per-step shrink factor (1 = none)."""
    pts = [(t, math.log(r)) for t, r in enumerate(ratios) if r > 0 and math.isfinite(r)]
    n = len(pts)
    mx, my = sum(t for t, _ in pts) / n, sum(v for _, v in pts) / n
    slope = sum((t - mx) * (v - my) for t, v in pts) / sum((t - mx) ** 2 for t, _ in pts)
    return math.exp(-slope)  # ratios grow toward t = T, so the decay going back is exp(-slope)


def rnn_long_memory(ctx: StudyContext, *, cells: list[str], hidden: int = 32, grad_length: int = 100,
                    forget_bias: float = 1.0, train_length: int = 50, n_train: int = 2048, n_val: int = 512,
                    epochs: int = 48, batch_size: int = 64, lr: float = 3e-3) -> Outcome:
    """Gradients through time for Elman, LSTM and GRU cells, and whether each learns the adding problem.

    Part 1, at initialization: ‖∂L/∂h_t‖ of L = Σ h_T along a sequence of ``grad_length`` steps of
    adding-problem inputs (the LSTM with the notes' forget-gate bias ``forget_bias``). An Elman
    net multiplies the gradient by W_hhᵀ·diag(f′) at every step back, so it shrinks geometrically;
    the LSTM's cell path multiplies it by the forget gate f ≈ σ(``forget_bias``) instead.

    Part 2: train each cell (hidden ``hidden``, Adam at ``lr``) through the runner on the adding
    problem of length ``train_length`` (``n_train`` sequences, ``epochs`` epochs), report the
    validation mse against the no-memory level 1/6, and measure ‖∂L/∂h_t‖ of the trained net's
    mse on a validation batch: what BPTT delivers to the steps that hold the marked values.
    """
    from trainlab.data.sequences import ADDING_BASELINE_MSE, adding
    from trainlab.experiments.runner import Splits
    from trainlab.nn.recurrent import RECURRENT_CELLS

    metrics: dict[str, float] = {}
    torch.manual_seed(ctx.seed)
    probe = adding(64, grad_length, seed=ctx.seed + 7).X.transpose(0, 1)  # (T, B, 2)
    init_series, rows = {}, []
    for cell in cells:
        extra = {"forget_bias": forget_bias} if cell == "lstm" else {}
        torch.manual_seed(ctx.seed)
        rnn = RECURRENT_CELLS[cell](2, hidden, **extra)
        ratios = _profile(rnn, probe, lambda h: h.sum())
        decay = _decay_per_step(ratios)
        metrics[f"{cell}.init_first_over_last"] = ratios[0]
        metrics[f"{cell}.init_decay_per_step"] = decay
        init_series[cell + (f" (forget bias {forget_bias:g})" if extra else "")] = (range(1, grad_length + 1), ratios)
        rows.append((cell, ratios[0], decay))
        ctx.log(f"{cell}: at init ‖∂L/∂h_1‖/‖∂L/∂h_T‖ = {ratios[0]:.3g}, decay per step {decay:.3f}")

    train_set = adding(n_train, train_length, seed=ctx.seed + 1)
    val_set = adding(n_val, train_length, seed=ctx.seed + 2)
    half = train_length // 2
    curves, trained_series, train_rows = {}, {}, []
    for cell in cells:
        cfg = {"name": f"adding-{cell}", "seed": ctx.seed,
               "data": {"name": "adding", "n_samples": n_train, "length": train_length},
               "model": {"kind": "rnn", "cell": cell, "hidden": hidden},
               "loss": {"name": "mse"}, "optimizer": {"name": "adam", "lr": lr},
               "train": {"epochs": epochs, "batch_size": batch_size}, "diagnostics": None}
        run = train(cfg, data=Splits(train_set, val_set))
        val_mse = run.last("val_loss", math.inf) if run.diverged is None else math.inf
        metrics[f"{cell}.val_mse"] = val_mse
        metrics[f"{cell}.val_mse_over_baseline"] = val_mse / ADDING_BASELINE_MSE
        curves[cell] = (range(1, len(run.history.history.get("val_loss", [])) + 1),
                        run.history.history.get("val_loss", []))
        first_half = first_step = math.nan
        if run.model is not None:
            model = run.model.cpu()
            x, y = val_set.X[:256], val_set.y[:256]
            ratios = _profile(model.rnn, x.transpose(0, 1), lambda h: (model.out(h) - y).square().mean())
            first_half = sum(ratios[:half]) / half
            first_step = ratios[0]
            trained_series[cell] = (range(1, train_length + 1), ratios)
        metrics[f"{cell}.trained_first_half_grad"] = first_half
        metrics[f"{cell}.trained_first_step_grad"] = first_step
        train_rows.append((cell, val_mse, val_mse / ADDING_BASELINE_MSE, first_half, first_step))
        ctx.log(f"{cell}: adding T={train_length} val mse {val_mse:.4g} (no-memory level "
                f"{ADDING_BASELINE_MSE:.4g}); trained ‖∂L/∂h_t‖/‖∂L/∂h_T‖ over the first half {first_half:.3g}")

    from trainlab.experiments.plots import plot_panels

    fig1 = plot_panels([{"title": f"at initialization, T = {grad_length}", "xlabel": "step t",
                         "ylabel": "‖∂L/∂h_t‖ / ‖∂L/∂h_T‖ (log)", "logy": True, "series": init_series}],
                       ctx.path("rnn_gradients_at_init.png"))
    panels = [{"title": f"adding problem, T = {train_length}", "xlabel": "epoch", "ylabel": "validation mse",
               "logy": True, "series": curves, "hline": ADDING_BASELINE_MSE}]
    if trained_series:
        panels.append({"title": "after training: gradient reaching step t", "xlabel": "step t",
                       "ylabel": "‖∂L/∂h_t‖ / ‖∂L/∂h_T‖ (log)", "logy": True, "series": trained_series})
    fig2 = plot_panels(panels, ctx.path("rnn_adding.png"))
    sections = [
        Section("Gradients through time at initialization", text=[
            f"L = Σ h_T after {grad_length} steps; each cell {hidden} units, PyTorch's uniform initialization"
            f" (the LSTM with forget-gate bias {forget_bias:g}). The decay per step is fitted to log ‖∂L/∂h_t‖."],
            table=(("cell", "‖∂L/∂h_1‖ / ‖∂L/∂h_T‖", "decay per step"), rows),
            figures=[("gradient norm reaching each step, relative to the last", fig1)]),
        Section("The adding problem", text=[
            f"Sum the two marked values of a sequence of {train_length} (one marker in each half). Answering "
            f"the mean 1 always gives mse 1/6 = {ADDING_BASELINE_MSE:.4f} (dashed): a net below it remembers. "
            f"Adam lr {lr:g}, batch {batch_size}, {epochs} epochs of {n_train} sequences."],
            table=(("cell", "validation mse", "mse / (1/6)", "mean ‖∂L/∂h_t‖/‖∂L/∂h_T‖, first half",
                                    "‖∂L/∂h_1‖/‖∂L/∂h_T‖"), train_rows),
            figures=[("validation mse per epoch, and the trained nets' gradients through time", fig2)]),
    ]
    return Outcome(metrics, sections)
