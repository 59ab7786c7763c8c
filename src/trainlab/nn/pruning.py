"""Magnitude pruning: connection sparsity by removing the smallest weights (notes 002, "sparsity of
connections"; Han et al. 2015, "Learning both Weights and Connections"; Zhu & Gupta 2017).

A mask per weight matrix keeps the weights with the largest |w| and sets the others to zero. The
rank is taken over all prunable weights at once (``scope="global"``: layers with many small
weights lose more of them) or inside each layer (``scope="layer"``: every layer gets the same
sparsity). Only weight matrices and convolution kernels (``dim ≥ 2``) are pruned, never biases or
normalization parameters, as in Han et al.

The functions here make and apply masks; :class:`trainlab.train.callbacks.MagnitudePruning` prunes
during training (one-shot or on the gradual schedule of :func:`gradual_sparsity`) and re-applies the
masks after every optimizer step, so a pruned weight stays exactly zero even when momentum or Adam's
moments would move it.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["prunable_weights", "magnitude_masks", "apply_masks", "weight_sparsity", "gradual_sparsity"]

SCOPES = ("global", "layer")


def prunable_weights(model: nn.Module) -> dict[str, nn.Parameter]:
    """``{name: parameter}`` of every weight matrix / kernel of ``model`` (``weight``, ``dim ≥ 2``)."""
    return {n: p for n, p in model.named_parameters() if n.endswith("weight") and p.dim() >= 2}


def _check_sparsity(sparsity: float, name: str = "sparsity") -> float:
    if isinstance(sparsity, bool) or not isinstance(sparsity, (int, float)) or not (0.0 <= sparsity < 1.0):
        raise ValueError(f"{name} must lie in [0, 1) (the fraction of weights set to zero), got {sparsity!r}")
    return float(sparsity)


def _smallest(magnitudes: Tensor, k: int) -> Tensor:
    """A boolean mask of the ``k`` smallest entries of a flat tensor (ties by position: stable)."""
    drop = torch.zeros(magnitudes.numel(), dtype=torch.bool, device=magnitudes.device)
    if k > 0:
        drop[torch.argsort(magnitudes, stable=True)[:k]] = True
    return drop


@torch.no_grad()
def magnitude_masks(model: nn.Module, sparsity: float, scope: str = "global") -> dict[str, Tensor]:
    """Masks that zero the fraction ``sparsity`` of the weights with the smallest |w|.

    Exactly ``round(sparsity · N)`` weights are dropped, N the number of prunable weights (of all
    layers for ``scope="global"``, of each layer for ``"layer"``); ties are broken by position, so
    the masks are deterministic. Weights already at zero are the smallest, so raising the sparsity
    keeps every earlier cut (the masks shrink monotonically).

    Returns ``{name: bool tensor}`` (True = kept), shaped like each weight.
    """
    sparsity = _check_sparsity(sparsity)
    if scope not in SCOPES:
        raise ValueError(f"scope must be 'global' or 'layer', got {scope!r}")
    weights = prunable_weights(model)
    if not weights:
        raise ValueError("the model has no weight matrices to prune (no parameter named *weight with dim >= 2)")
    if scope == "layer":
        return {n: ~_smallest(p.detach().abs().flatten(), round(sparsity * p.numel())).view_as(p)
                for n, p in weights.items()}
    flat = torch.cat([p.detach().abs().flatten() for p in weights.values()])
    keep = ~_smallest(flat, round(sparsity * flat.numel()))
    masks, start = {}, 0
    for n, p in weights.items():
        masks[n] = keep[start:start + p.numel()].view_as(p)
        start += p.numel()
    return masks


@torch.no_grad()
def apply_masks(model: nn.Module, masks: dict[str, Tensor]) -> None:
    """Set the masked-out weights of ``model`` to zero, in place."""
    params = dict(model.named_parameters())
    for n, mask in masks.items():
        params[n].mul_(mask.to(params[n].dtype))


@torch.no_grad()
def weight_sparsity(model: nn.Module) -> float:
    """The fraction of the prunable weights (:func:`prunable_weights`) that are exactly zero."""
    weights = list(prunable_weights(model).values())
    total = sum(p.numel() for p in weights)
    return sum(int((p == 0).sum()) for p in weights) / max(total, 1)


def gradual_sparsity(t: float, final: float, begin: float, end: float, initial: float = 0.0) -> float:
    """Zhu & Gupta's (2017) cubic schedule: s_t = s_f + (s_i − s_f)·(1 − (t − t₀)/(t₁ − t₀))³.

    ``initial`` s_i before ``begin`` t₀, ``final`` s_f from ``end`` t₁ on, and in between a cubic that
    prunes fast while there are many redundant weights and slowly near the end. t in any unit
    (epochs in :class:`~trainlab.train.callbacks.MagnitudePruning`).
    """
    _check_sparsity(final, "final")
    _check_sparsity(initial, "initial")
    if t <= begin:
        return initial
    if t >= end or end <= begin:
        return final
    return final + (initial - final) * (1 - (t - begin) / (end - begin)) ** 3


def _is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def check_schedule(start_epoch, end_epoch, every) -> None:
    """Validate MagnitudePruning's epochs (shared with the callback, so messages match)."""
    if not _is_int(start_epoch) or start_epoch < 0:
        raise ValueError(f"start_epoch must be an integer >= 0, got {start_epoch!r}")
    if end_epoch is not None and (not _is_int(end_epoch) or end_epoch < start_epoch):
        raise ValueError(f"end_epoch must be an integer >= start_epoch ({start_epoch}), got {end_epoch!r}")
    if not _is_int(every) or every < 1:
        raise ValueError(f"every must be an integer >= 1, got {every!r}")

