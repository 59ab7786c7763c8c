"""Losses computed stably from the network's raw outputs, the head/loss pairing, and accuracy.

The notes pair each output unit with a loss (notes 002, "output units and loss functions"):

=========  ===================  ======================================
head       output unit          loss (negative log-likelihood)
=========  ===================  ======================================
linear     ŷ = z                mean squared error (Gaussian likelihood)
sigmoid    ŷ = σ(z)             binary cross-entropy (Bernoulli)
softmax    ŷ = softmax(z)       categorical cross-entropy (multinoulli)
=========  ===================  ======================================

Models output the pre-activation ``z`` ("logits"); each loss applies its own output unit inside a
numerically stable formula, so σ and softmax are never evaluated and then logged.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

LossFn = Callable[[Tensor, Tensor], Tensor]


def mse(z: Tensor, y: Tensor) -> Tensor:
    """Mean squared error: mean over all elements of (z − y)²."""
    y = y.reshape(z.shape) if y.numel() == z.numel() else y
    return (z - y).square().mean()


def binary_cross_entropy(z: Tensor, y: Tensor) -> Tensor:
    """Binary cross-entropy from logits: −[y·log σ(z) + (1−y)·log(1−σ(z))], mean over elements.

    Stable form: max(z, 0) − z·y + log(1 + e^(−|z|)) (never exponentiates a large positive number).
    """
    y = y.reshape(z.shape).to(z.dtype)
    return (z.clamp_min(0) - z * y + torch.log1p(torch.exp(-z.abs()))).mean()


def cross_entropy(z: Tensor, y: Tensor, label_smoothing: float = 0.0) -> Tensor:
    """Categorical cross-entropy from logits, mean over the batch.

    With class indices ``y`` (sparse categorical cross-entropy): −log softmax(z)_y
    = logsumexp(z) − z_y. With a target distribution ``y`` of the logits' shape (categorical):
    −Σ_k y_k · log softmax(z)_k.

    ``label_smoothing`` ε mixes the target with the uniform distribution over K classes,
    y' = (1 − ε)·y + ε/K, exactly as ``torch.nn.functional.cross_entropy(label_smoothing=ε)``.
    """
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"label_smoothing must lie in [0, 1], got {label_smoothing}")
    log_p = z - z.logsumexp(dim=1, keepdim=True)  # log softmax, shifted by the max inside logsumexp
    if y.dtype in (torch.long, torch.int, torch.int16, torch.int8, torch.uint8):
        nll = -log_p.gather(1, y.long().view(-1, 1)).squeeze(1)
        if label_smoothing == 0.0:
            return nll.mean()
        uniform = -log_p.mean(dim=1)
        return ((1 - label_smoothing) * nll + label_smoothing * uniform).mean()
    if y.shape != z.shape:
        raise ValueError(f"categorical targets must have the logits' shape {tuple(z.shape)}, got {tuple(y.shape)}")
    if label_smoothing:
        y = (1 - label_smoothing) * y + label_smoothing / z.shape[1]
    return -(y * log_p).sum(dim=1).mean()


class Loss:
    """A named loss: the function, the head it pairs with, and how to read predictions.

    Args:
        name: ``"mse"``, ``"bce"`` or ``"cross_entropy"``.
        label_smoothing: only for ``"cross_entropy"``.
    """

    HEADS = {"mse": "linear", "bce": "sigmoid", "cross_entropy": "softmax"}
    ALIASES = {"mean_squared_error": "mse", "binary_cross_entropy": "bce", "ce": "cross_entropy",
               "categorical_cross_entropy": "cross_entropy",
               "sparse_categorical_cross_entropy": "cross_entropy"}

    def __init__(self, name: str, label_smoothing: float = 0.0):
        name = self.ALIASES.get(name, name)
        if name not in self.HEADS:
            raise ValueError(f"unknown loss {name!r}; choose one of {sorted(self.HEADS)}")
        if label_smoothing and name != "cross_entropy":
            raise ValueError("label_smoothing applies to the 'cross_entropy' loss only")
        self.name = name
        self.label_smoothing = float(label_smoothing)
        self.head = self.HEADS[name]
        self.is_classification = name != "mse"

    def __call__(self, z: Tensor, y: Tensor) -> Tensor:
        if self.name == "mse":
            return mse(z, y)
        if self.name == "bce":
            return binary_cross_entropy(z, y)
        return cross_entropy(z, y, self.label_smoothing)

    def predict(self, z: Tensor) -> Tensor:
        """Class predictions from logits (bce: z > 0, i.e. σ(z) > ½; softmax: argmax)."""
        if self.name == "bce":
            return (z.reshape(len(z), -1)[:, 0] > 0).long()
        return z.argmax(dim=1)

    def correct(self, z: Tensor, y: Tensor) -> Tensor:
        """Number of correct predictions in the batch, as a 0-d tensor (no host sync)."""
        if y.dtype.is_floating_point and y.dim() == 2 and y.shape[1] > 1:  # one-hot / soft labels
            y = y.argmax(dim=1)
        return (self.predict(z) == y.reshape(-1).long()).sum()

    def check_pairing(self, model: torch.nn.Module) -> None:
        """Refuse a model whose declared ``head`` does not pair with this loss (notes 002)."""
        head = getattr(model, "head", None)
        if head is not None and head != self.head:
            want = {v: k for k, v in self.HEADS.items()}[head] if head in self.HEADS.values() else "?"
            raise ValueError(
                f"the model's output head is {head!r} but the loss is {self.name!r}, which pairs with a "
                f"{self.head!r} head. The notes pair linear→mse, sigmoid→bce, softmax→cross_entropy: "
                f"use loss={want!r} or build the model with head={self.head!r}")

    def __repr__(self) -> str:
        extra = f", label_smoothing={self.label_smoothing}" if self.label_smoothing else ""
        return f"Loss({self.name!r}{extra})"


def resolve_loss(loss: str | Loss | LossFn) -> Loss | LossFn:
    """A name becomes a :class:`Loss`; a :class:`Loss` or any callable ``(z, y) -> scalar`` passes."""
    if isinstance(loss, str):
        return Loss(loss)
    if callable(loss):
        return loss
    raise TypeError(f"loss must be a name or a callable, got {type(loss).__name__}")
