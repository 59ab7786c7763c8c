"""Model builders: an MLP from a small spec and a small CNN for 28×28 images.

The layer kinds a spec may name live in the tables below: adding a kind is one line there.
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import Tensor, nn

# name -> factory() for a fresh activation module
ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "identity": nn.Identity,
    "sigmoid": nn.Sigmoid,
    "tanh": nn.Tanh,
    "relu": nn.ReLU,
    "leaky_relu": nn.LeakyReLU,
    "elu": nn.ELU,
    "selu": nn.SELU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
}

# name -> factory(width) for a normalization layer after a hidden linear layer
NORMS: dict[str, Callable[[int], nn.Module]] = {
    "batch": nn.BatchNorm1d,
    "layer": nn.LayerNorm,
}

# name -> factory(p) for a dropout layer after a hidden activation
DROPOUTS: dict[str, Callable[[float], nn.Module]] = {
    "dropout": nn.Dropout,
}

HEADS = ("linear", "sigmoid", "softmax")


def conv_output_size(n: int, kernel: int, stride: int = 1, padding: int = 0, dilation: int = 1) -> int:
    """Spatial size after a convolution or pooling window (notes 002):

        out = ⌊(N + 2P − D·(F − 1) − 1) / S⌋ + 1,

    which for dilation D = 1 is the notes' ⌊(N + 2P − F)/S⌋ + 1 with input size N, window F,
    padding P and stride S.
    """
    for name, v, lo in (("n", n, 1), ("kernel", kernel, 1), ("stride", stride, 1), ("padding", padding, 0),
                        ("dilation", dilation, 1)):
        if not isinstance(v, int) or v < lo:
            raise ValueError(f"{name} must be an integer >= {lo}, got {v!r}")
    out = (n + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1
    if out < 1:
        raise ValueError(f"a window of {kernel} (padding {padding}, stride {stride}) does not fit an input of {n}")
    return out


def _per_layer(value, n: int, what: str) -> list:
    if isinstance(value, (list, tuple)):
        if len(value) != n:
            raise ValueError(f"{what} lists {len(value)} values for {n} hidden layers")
        return list(value)
    return [value] * n


def make_activation(name: str | Callable[[], nn.Module]) -> nn.Module:
    if callable(name) and not isinstance(name, str):
        return name()
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; choose one of {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name]()


class Block(nn.Sequential):
    """One hidden layer: ``linear → [norm] → activation → [dropout]`` (named children).

    Normalization sits between the affine map and the nonlinearity, as in Ioffe & Szegedy (2015)
    and the notes' batch-norm algorithm.
    """

    def __init__(self, in_features: int, out_features: int, activation, norm: str | None,
                 dropout: float | tuple[str, float] | None, bias: bool = True):
        super().__init__()
        self.add_module("linear", nn.Linear(in_features, out_features, bias=bias))
        if norm:
            if norm not in NORMS:
                raise ValueError(f"unknown norm {norm!r}; choose one of {sorted(NORMS)} or null")
            self.add_module("norm", NORMS[norm](out_features))
        self.add_module("act", make_activation(activation))
        kind, p = ("dropout", dropout) if not isinstance(dropout, (tuple, list)) else dropout
        if p:
            if kind not in DROPOUTS:
                raise ValueError(f"unknown dropout kind {kind!r}; choose one of {sorted(DROPOUTS)}")
            self.add_module("dropout", DROPOUTS[kind](float(p)))


class MLP(nn.Module):
    """A multilayer perceptron built from a small spec.

    Args:
        in_features: input size (inputs are flattened, so images work too).
        hidden: sizes of the hidden layers, e.g. ``(64, 32)``; ``()`` gives a linear model.
        out_features: output units (classes for softmax, 1 for sigmoid or scalar regression).
        activation: a name from :data:`ACTIVATIONS` (or a module factory), or one per layer.
        head: ``"linear"`` (regression, pairs with MSE), ``"sigmoid"`` (pairs with BCE) or
            ``"softmax"`` (pairs with cross-entropy). The model returns the pre-activation z;
            the loss applies the output unit stably.
        norm: ``None``, ``"batch"`` or ``"layer"``, or one per hidden layer.
        dropout: drop probability after each hidden activation (0 = none), or one per layer.

    Attributes ``blocks`` (a ``ModuleList`` of :class:`Block`) and ``out`` (the output linear layer)
    are what diagnostics and initializers walk over.
    """

    def __init__(self, in_features: int, hidden: Sequence[int] = (64,), out_features: int = 2, *,
                 activation="relu", head: str = "softmax", norm=None, dropout=0.0):
        super().__init__()
        if head not in HEADS:
            raise ValueError(f"head must be one of {HEADS}, got {head!r}")
        if head == "sigmoid" and out_features != 1:
            raise ValueError("a sigmoid head has one output unit (binary classification); "
                             f"got out_features={out_features}. Use head='softmax' for {out_features} classes")
        if head == "softmax" and out_features < 2:
            raise ValueError("a softmax head needs out_features >= 2 (one unit per class)")
        hidden = list(hidden)
        if any((not isinstance(h, int)) or h < 1 for h in hidden):
            raise ValueError(f"hidden sizes must be positive integers, got {hidden}")
        self.head = head
        self.in_features, self.out_features = in_features, out_features
        acts = _per_layer(activation, len(hidden), "activation")
        norms = _per_layer(norm, len(hidden), "norm")
        drops = _per_layer(dropout, len(hidden), "dropout")
        widths = [in_features] + hidden
        self.blocks = nn.ModuleList(
            Block(widths[i], widths[i + 1], acts[i], norms[i], drops[i]) for i in range(len(hidden)))
        self.out = nn.Linear(widths[-1], out_features)

    def forward(self, x: Tensor) -> Tensor:
        x = x.flatten(1)
        for block in self.blocks:
            x = block(x)
        return self.out(x)


class CNN(nn.Module):
    """A small convolutional net: ``[conv → act → maxpool] × stages → flatten → dense → act → out``.

    The dense layer's input size comes from :func:`conv_output_size` applied stage by stage.

    Args:
        in_shape: ``(channels, height, width)`` of one input, e.g. ``(1, 28, 28)`` for MNIST.
        channels: output channels of each conv stage.
        kernel, padding, pool: conv window, conv padding and max-pool window (stride = window).
        hidden: units of the dense layer; classes: output units (softmax head).
        activation, dropout: as in :class:`MLP` (dropout before the output layer).
    """

    def __init__(self, in_shape: Sequence[int] = (1, 28, 28), channels: Sequence[int] = (32, 64), *,
                 kernel: int = 3, padding: int = 1, pool: int = 2, hidden: int = 128, classes: int = 10,
                 activation="relu", norm: str | None = None, dropout: float = 0.0):
        super().__init__()
        self.head = "softmax"
        self.in_shape = tuple(in_shape)
        c, h, w = in_shape
        layers: list[nn.Module] = []
        for out_c in channels:
            layers.append(nn.Conv2d(c, out_c, kernel, padding=padding, bias=norm is None))
            h, w = conv_output_size(h, kernel, 1, padding), conv_output_size(w, kernel, 1, padding)
            if norm == "batch":
                layers.append(nn.BatchNorm2d(out_c))
            elif norm is not None:
                raise ValueError(f"CNN norm must be None or 'batch', got {norm!r}")
            layers.append(make_activation(activation))
            layers.append(nn.MaxPool2d(pool))
            h, w = conv_output_size(h, pool, pool), conv_output_size(w, pool, pool)
            c = out_c
        self.features = nn.Sequential(*layers)
        self.flat_features = c * h * w
        self.dense = Block(self.flat_features, hidden, activation, None, dropout)
        self.out = nn.Linear(hidden, classes)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() == 2:  # flat rows (as MNIST is stored) → images
            x = x.view(len(x), *self.in_shape)
        return self.out(self.dense(self.features(x).flatten(1)))
