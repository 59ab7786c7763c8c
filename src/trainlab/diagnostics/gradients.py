"""Per-layer gradient norms, weight norms, update-to-weight ratios and weight sparsity.

For a weighted layer with weight ``W`` and gradient ``G = ∂L/∂W``:

    gradient norm       ‖G‖_F
    weight norm         ‖W‖_F
    update ratio        ‖W_t − W_{t−1}‖_F / ‖W_{t−1}‖_F      (one optimizer step; ~1e-3 is the
                                                             usual healthy scale, Karpathy 2016)
    weight sparsity     fraction of entries with W = 0 exactly, and with |W| < tol

The vanishing/exploding-gradient verdicts compare the gradient norm of the first weighted layer
with that of the last (notes 001: with W < I the backward signal shrinks geometrically with depth,
with W > I it grows).
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from trainlab.diagnostics.layers import weight_layers
from trainlab.train.rng import preserved_rng


def weight_stats(model: nn.Module, *, tol: float = 1e-3) -> dict[str, dict[str, float]]:
    """``{layer: {"weight_norm", "weight_zero_frac", "weight_small_frac"}}`` for every weighted layer."""
    if tol < 0:
        raise ValueError(f"tol must be >= 0, got {tol}")
    rows, names = [], []
    with torch.no_grad():
        for name, m in weight_layers(model):
            w = m.weight.detach()
            rows.append(torch.stack([w.norm().double(), (w == 0).double().mean(),
                                     (w.abs() < tol).double().mean()]))
            names.append(name)
    if not rows:
        return {}
    values = torch.stack(rows).tolist()
    return {n: {"weight_norm": v[0], "weight_zero_frac": v[1], "weight_small_frac": v[2]}
            for n, v in zip(names, values)}


def grad_norms(model: nn.Module) -> dict[str, float | None]:
    """``{layer: ‖∂L/∂W‖}`` from the gradients currently in ``.grad`` (``None`` where there is none)."""
    layers = weight_layers(model)
    have = [(name, m.weight.grad) for name, m in layers if m.weight.grad is not None]
    vals = torch.stack([g.detach().norm().float() for _, g in have]).tolist() if have else []
    found = dict(zip((n for n, _ in have), vals))
    return {name: found.get(name) for name, _ in layers}


def snapshot_weights(model: nn.Module) -> dict[str, Tensor]:
    """Copies of every weighted layer's weight (to measure the next update against)."""
    return {name: m.weight.detach().clone() for name, m in weight_layers(model)}


def update_ratios(model: nn.Module, before: dict[str, Tensor]) -> dict[str, float]:
    """``{layer: ‖W − W_before‖ / ‖W_before‖}`` for the layers in ``before``."""
    names, vals = [], []
    with torch.no_grad():
        for name, m in weight_layers(model):
            if name in before:
                b = before[name]
                names.append(name)
                vals.append((m.weight.detach() - b).norm().float() / b.norm().float().clamp_min(1e-30))
    return dict(zip(names, torch.stack(vals).tolist())) if vals else {}


def probe_gradients(model: nn.Module, x: Tensor, y: Tensor, loss_fn) -> tuple[float, dict[str, float]]:
    """Loss and per-layer gradient norms of ``loss_fn(model(x), y)``, leaving ``.grad`` untouched.

    Runs in eval mode (no dropout noise, batch-norm running statistics neither used for updates
    nor changed) under a forked RNG, so measuring never changes the training run.
    """
    params = list(model.parameters())
    saved = [p.grad for p in params]
    was_training = model.training
    try:
        for p in params:
            p.grad = None
        model.eval()
        with preserved_rng(), torch.enable_grad():
            loss = loss_fn(model(x), y)
            loss.backward()
        return float(loss.detach()), grad_norms(model)
    finally:
        model.train(was_training)
        for p, g in zip(params, saved):
            p.grad = g
