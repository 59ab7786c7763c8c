"""Losses computed stably from the network's raw outputs, the head/loss pairing, and accuracy.

The notes pair each output unit with a loss (notes 002, "output units and loss functions"):

=========  ===================  ======================================
head       output unit          loss (negative log-likelihood)
=========  ===================  ======================================
linear     ŷ = z                mean squared error (Gaussian likelihood)
sigmoid    ŷ = σ(z)             binary cross-entropy (Bernoulli)
softmax    ŷ = softmax(z)       categorical cross-entropy (multinoulli)
gaussian   (μ, log σ²) = z      Gaussian negative log-likelihood with a
                                learned variance (:func:`gaussian_nll`)
=========  ===================  ======================================

Models output the pre-activation ``z`` ("logits"); each loss applies its own output unit inside a
numerically stable formula, so σ and softmax are never evaluated and then logged.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

LossFn = Callable[[Tensor, Tensor], Tensor]


def mse(z: Tensor, y: Tensor) -> Tensor:
    """Mean squared error: mean over all elements of (z − y)²."""
    y = y.reshape(z.shape) if y.numel() == z.numel() else y
    return (z - y).square().mean()


def gaussian_nll(z: Tensor, y: Tensor, full: bool = False) -> Tensor:
    """Gaussian negative log-likelihood with a learned variance, mean over elements of y:

        −log N(y; μ, σ²) = ½·(log σ² + (y − μ)²/σ²)  [+ ½·log 2π with ``full``]

    ``z`` holds μ and log σ² side by side on its last axis: z = [μ ; log σ²], each as wide as y
    (a ``head="gaussian"`` model's output). The variance is parametrized by its logarithm so it
    stays positive without a clamp. Equals ``torch.nn.GaussianNLLLoss(full=full)`` with
    ``var = exp(log σ²)`` (which clamps var at ``eps = 1e-6``; we do not need to).
    """
    mean, log_var = z.chunk(2, dim=-1)
    y = y.reshape(mean.shape) if y.numel() == mean.numel() else y
    nll = 0.5 * (log_var + (y - mean).square() * torch.exp(-log_var))
    if full:
        nll = nll + 0.5 * math.log(2 * math.pi)
    return nll.mean()


def binary_cross_entropy(z: Tensor, y: Tensor) -> Tensor:
    """Binary cross-entropy from logits: −[y·log σ(z) + (1−y)·log(1−σ(z))], mean over elements.

    Stable form: max(z, 0) − z·y + log(1 + e^(−|z|)) (never exponentiates a large positive number).
    """
    y = y.reshape(z.shape).to(z.dtype)
    return (z.clamp_min(0) - z * y + torch.log1p(torch.exp(-z.abs()))).mean()


_INDEX_DTYPES = (torch.long, torch.int, torch.int16, torch.int8, torch.uint8)


def cross_entropy(z: Tensor, y: Tensor, label_smoothing: float = 0.0) -> Tensor:
    """Categorical cross-entropy from logits, mean over the batch.

    With class indices ``y`` (sparse categorical cross-entropy)::

        ℓ = −log softmax(z)_y = logsumexp(z) − z_y

    With a target distribution ``y`` of the logits' shape (categorical): ℓ = −Σ_k y_k · log softmax(z)_k.

    ``label_smoothing`` ε mixes the target with the uniform distribution over K classes,
    y' = (1 − ε)·y + ε/K, exactly as ``torch.nn.functional.cross_entropy(label_smoothing=ε)``; for
    class indices ℓ = (1 − ε)·(−log softmax(z)_y) + ε·mean_k(−log softmax(z)_k).

    Computed as PyTorch computes ``F.cross_entropy`` — ``log_softmax`` (one max-shifted pass), then
    ``nll_loss``, whose backward is the fused softmax − one-hot — in the same order, so value and
    gradient are F.cross_entropy's to the last bit and so is its cost. The formula above, written
    out, is :func:`cross_entropy_reference`; the tests prove the two agree.
    """
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"label_smoothing must lie in [0, 1], got {label_smoothing}")
    if z.dim() == 3 and y.dim() == 2 and not y.dtype.is_floating_point:
        # one class per time step: logits (B, T, K), classes (B, T); the mean runs over all B·T steps
        z, y = z.reshape(-1, z.shape[-1]), y.reshape(-1)
    log_p = torch.log_softmax(z, dim=1)
    if y.dtype in _INDEX_DTYPES:
        nll = F.nll_loss(log_p, y.long())
        if label_smoothing == 0.0:
            return nll
        smooth = -log_p.sum(dim=1)
        return (1 - label_smoothing) * nll + smooth.mean() * (label_smoothing / z.shape[1])
    if y.shape != z.shape:
        raise ValueError(f"categorical targets must have the logits' shape {tuple(z.shape)}, got {tuple(y.shape)}")
    if label_smoothing:
        y = y * (1 - label_smoothing) + label_smoothing / z.shape[1]
    return -(log_p * y).sum() / (z.numel() / z.shape[1])


def cross_entropy_reference(z: Tensor, y: Tensor, label_smoothing: float = 0.0) -> Tensor:
    """:func:`cross_entropy` written as its formula: logsumexp(z) − z_y per sample (class indices)
    or −Σ_k y'_k·(z_k − logsumexp(z)) (a distribution), with y' = (1 − ε)·y + ε/K; mean over the
    batch. The readable form the fast one is tested against."""
    K = z.shape[1]
    log_p = z - torch.logsumexp(z, dim=1, keepdim=True)
    if y.dtype in _INDEX_DTYPES:
        y = F.one_hot(y.long(), K).to(z.dtype)
    y = (1 - label_smoothing) * y + label_smoothing / K
    return -(y * log_p).sum(dim=1).mean()


class Loss:
    """A named loss: the function, the head it pairs with, and how to read predictions.

    Args:
        name: ``"mse"``, ``"bce"``, ``"cross_entropy"`` or ``"gaussian_nll"`` (a regression whose
            model also learns the variance, :func:`gaussian_nll`).
        label_smoothing: only for ``"cross_entropy"``.
    """

    HEADS = {"mse": "linear", "bce": "sigmoid", "cross_entropy": "softmax", "gaussian_nll": "gaussian"}
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
        self.is_classification = name not in ("mse", "gaussian_nll")

    def __call__(self, z: Tensor, y: Tensor) -> Tensor:
        if self.name == "mse":
            return mse(z, y)
        if self.name == "gaussian_nll":
            return gaussian_nll(z, y)
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
        if z.dim() == 3 and y.dim() == 2 and self.name == "cross_entropy":
            # one class per step (B, T, K): each sequence counts the fraction of its steps right,
            # so accuracy is the per-step accuracy
            return (z.argmax(dim=-1) == y.long()).to(z.dtype).mean(dim=1).sum()
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


# ------------------------------------------------------------------------------------------------
# penalties (regularization terms added to the loss)
# ------------------------------------------------------------------------------------------------
# Cost = Loss + R(θ) (notes 003/004). R only adds ∂R/∂w to each weight's gradient after
# backpropagation; the backward pass through the network itself is unchanged. The same gradients,
# applied by the optimizer instead of autograd, are the transforms in trainlab.optim.transforms
# (L2Penalty, L1Penalty, ElasticNet); tests prove the two agree.

def _penalized(params, skip_1d: bool) -> list[Tensor]:
    if isinstance(params, Tensor):
        params = [params]
    out = [p for p in params if not (skip_1d and p.dim() < 2)]
    if not out:
        raise ValueError("no tensors to penalize (did skip_1d=True leave only biases?)")
    return out


def _check_weight(weight: float) -> None:
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not weight >= 0:
        raise ValueError(f"penalty weight must be a number >= 0, got {weight!r}")


def l2_penalty(params, weight: float, *, skip_1d: bool = False) -> Tensor:
    """Ridge / L2 penalty: weight · Σ θ² over all tensors in ``params``.

    Its gradient is 2·weight·θ. This is the notes' λΣw² and Keras' ``regularizers.l2(weight)``;
    PyTorch's ``weight_decay=λ`` corresponds to ``weight = λ/2`` (the ½ of λ/2·‖θ‖²). The notes'
    slides also write λ/(2m)·Σ‖w‖²: pass ``weight = λ/(2m)``. ``skip_1d=True`` penalizes only weight
    matrices / kernels (tensors with ≥ 2 dims), as the notes and Keras' ``kernel_regularizer`` do.
    """
    _check_weight(weight)
    return weight * sum(p.square().sum() for p in _penalized(params, skip_1d))


def l1_penalty(params, weight: float, *, skip_1d: bool = False) -> Tensor:
    """Lasso / L1 penalty: weight · Σ |θ|. Its (sub)gradient is weight·sign(θ) — the same push for
    every weight whatever its size, which is why L1 drives weights to exactly 0 (notes 001/004)."""
    _check_weight(weight)
    return weight * sum(p.abs().sum() for p in _penalized(params, skip_1d))


def elastic_net(params, weight: float, l1_ratio: float = 0.5, *, skip_1d: bool = False) -> Tensor:
    """Elastic-net penalty: weight · (ρ·Σ|θ| + (1 − ρ)·Σθ²), ρ = ``l1_ratio`` ∈ [0, 1].

    ρ = 1 is :func:`l1_penalty`, ρ = 0 :func:`l2_penalty`. scikit-learn's ``ElasticNet(alpha,
    l1_ratio)`` uses α·ρ·‖w‖₁ + ½·α·(1 − ρ)·‖w‖²: the squared part is halved there.
    """
    _check_weight(weight)
    if not 0.0 <= l1_ratio <= 1.0:
        raise ValueError(f"l1_ratio must lie in [0, 1], got {l1_ratio!r}")
    ps = _penalized(params, skip_1d)
    return weight * (l1_ratio * sum(p.abs().sum() for p in ps)
                     + (1 - l1_ratio) * sum(p.square().sum() for p in ps))
