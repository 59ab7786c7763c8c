"""Model builders: an MLP from a small spec and a small CNN for 28×28 images.

The layer kinds a spec may name live in the tables below: adding a kind is one line there.
"""
from __future__ import annotations

import inspect
import math
from typing import Callable, Literal, Sequence

import torch
from torch import Tensor, nn

from trainlab.nn.activations import (ELU, GELU, SELU, GeneralizedRectifier, LeakyReLU, PReLU, ReLU, Sigmoid,
                                     SiLU, Tanh)
from trainlab.nn.dropout import DropConnect, Dropout
from trainlab.nn.layers import MaxoutPool
from trainlab.nn.normalization import BatchNorm1d, BatchNorm2d, LayerNorm, weight_norm
from trainlab.nn.pooling import MaxPool2d


def _prelu_per_unit(width: int, init: float = 0.25) -> nn.Module:
    """PReLU with one learned slope per unit of the layer."""
    return PReLU(num_parameters=width, init=init)


def _gelu_tanh() -> nn.Module:
    return GELU(approximate="tanh")


def _classic_dropout(p: float) -> nn.Module:
    return Dropout(p, mode="classic")


def _batch_norm_keras(width: int) -> nn.Module:
    return BatchNorm1d.keras(width)


def _batch_norm_eps_outside(width: int) -> nn.Module:
    # (z − μ)/(σ + ε), the form of notes 004; PyTorch, Keras and the paper use √(σ² + ε)
    return BatchNorm1d(width, eps_placement="outside")


# name -> factory(**activation_kwargs) for a fresh activation module. A factory with a ``width``
# parameter also receives the layer's width (per-unit parameters); a module with a ``pieces``
# attribute (maxout) takes the max over that many linear pieces, so the layer before it is
# widened by that factor.
ACTIVATIONS: dict[str, Callable[..., nn.Module]] = {
    "identity": nn.Identity,
    "sigmoid": Sigmoid,
    "tanh": Tanh,
    "relu": ReLU,
    "leaky_relu": LeakyReLU,
    "rectifier": GeneralizedRectifier,
    "prelu": PReLU,
    "prelu_unit": _prelu_per_unit,
    "elu": ELU,
    "selu": SELU,
    "gelu": GELU,
    "gelu_tanh": _gelu_tanh,
    "silu": SiLU,
    "maxout": MaxoutPool,
}

# name -> factory(width) for a normalization layer after a hidden linear layer; entries listed in
# LINEAR_REPARAMETRIZATIONS instead rewrite the linear layer itself (weight norm: w = g·v/‖v‖)
NORMS: dict[str, Callable] = {
    "batch": BatchNorm1d,
    "batch_keras": _batch_norm_keras,
    "batch_eps_outside": _batch_norm_eps_outside,
    "layer": LayerNorm,
    "weight": weight_norm,
}
LINEAR_REPARAMETRIZATIONS = frozenset({"weight"})

# name -> factory(p) for a dropout layer after a hidden activation; an entry that is a Linear
# subclass (DropConnect) replaces the block's linear layer instead: DropConnect masks the
# block's incoming connections rather than its output units
DROPOUTS: dict[str, Callable] = {
    "dropout": Dropout,
    "classic": _classic_dropout,
    "dropconnect": DropConnect,
}

HEADS = ("linear", "sigmoid", "softmax", "gaussian")


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


def make_activation(name: str | Callable[[], nn.Module], width: int | None = None, **kwargs) -> nn.Module:
    """A fresh activation module from a name in :data:`ACTIVATIONS` (or a module factory).

    ``kwargs`` go to the factory (e.g. ``negative_slope=0.3`` for ``"leaky_relu"``,
    ``alpha=-1.0`` for ``"rectifier"``); factories with a ``width`` parameter get ``width``.
    """
    if callable(name) and not isinstance(name, str):
        return name(**kwargs)
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; choose one of {sorted(ACTIVATIONS)}")
    factory = ACTIVATIONS[name]
    params = inspect.signature(factory).parameters
    if "width" in params:
        if width is None:
            raise ValueError(f"activation {name!r} has one parameter per unit and needs the layer width")
        kwargs = {"width": width, **kwargs}
    try:
        return factory(**kwargs)
    except TypeError as e:
        accepted = [p for p in params if p != "width"]
        raise ValueError(f"activation {name!r} does not take {sorted(kwargs)}: {e}; it accepts "
                         f"{accepted or 'no options'}") from None


def _masks_connections(kind: str) -> bool:
    """Whether a dropout kind replaces the linear layer (DropConnect) rather than following it."""
    factory = DROPOUTS[kind]
    return isinstance(factory, type) and issubclass(factory, nn.Linear)


NORM_POSITIONS = ("before", "after")


class Block(nn.Sequential):
    """One hidden layer: ``linear → [norm] → activation → [dropout]`` (named children).

    Normalization sits between the affine map and the nonlinearity by default, as in Ioffe &
    Szegedy (2015) and the notes' batch-norm algorithm; ``norm_position="after"`` puts it after
    the nonlinearity instead (``linear → activation → norm → [dropout]``), the other placement
    notes 004 allow ("right before (or right after) the non-linearity").

    Args:
        in_features, out_features: widths.
        activation: a name from :data:`ACTIVATIONS` or a module factory. ``"maxout"`` widens the
            linear layer to ``out_features·k`` pieces and takes the max over each group of k.
        norm: a name from :data:`NORMS` or None. ``"weight"`` reparametrizes the linear layer
            (w = g·v/‖v‖) instead of adding a layer.
        dropout: a drop probability (0 = none) or a ``(kind, p)`` pair with kind from
            :data:`DROPOUTS`. ``"dropconnect"`` makes the linear layer a :class:`DropConnect`
            (masking this block's incoming connections) and adds no layer after the activation.
        bias: whether the linear layer has a bias.
        activation_kwargs: options for the activation factory (e.g. ``{"negative_slope": 0.3}``).
        norm_position: ``"before"`` (default) or ``"after"`` the activation. A norm after a
            maxout activation normalizes its ``out_features`` outputs, not the pieces.
    """

    def __init__(self, in_features: int, out_features: int, activation, norm: str | None,
                 dropout: float | tuple[str, float] | None, bias: bool = True, *,
                 activation_kwargs: dict | None = None, norm_position: str = "before"):
        super().__init__()
        if norm_position not in NORM_POSITIONS:
            raise ValueError(f"norm_position must be 'before' or 'after' (the activation), got {norm_position!r}")
        if norm_position == "after" and norm in LINEAR_REPARAMETRIZATIONS:
            raise ValueError(f"norm {norm!r} reparametrizes the linear layer and has no position; "
                             "use norm_position 'before' (the default) with it")
        kind, p = ("dropout", dropout) if not isinstance(dropout, (tuple, list)) else dropout
        if p and kind not in DROPOUTS:
            raise ValueError(f"unknown dropout kind {kind!r}; choose one of {sorted(DROPOUTS)}")
        connect = bool(p) and _masks_connections(kind)
        act = make_activation(activation, out_features, **(activation_kwargs or {}))
        width = out_features * getattr(act, "pieces", 1)
        self.add_module("linear", DROPOUTS[kind](in_features, width, bias, p=float(p)) if connect
                        else nn.Linear(in_features, width, bias=bias))
        if norm is not None:  # "" or False is a wrong name, not "no norm"
            if norm not in NORMS:
                raise ValueError(f"unknown norm {norm!r}; choose one of {sorted(NORMS)} or null")
            if norm in LINEAR_REPARAMETRIZATIONS:
                NORMS[norm](self.linear)
            elif norm_position == "before":
                self.add_module("norm", NORMS[norm](width))
        self.add_module("act", act)
        if norm is not None and norm_position == "after" and norm not in LINEAR_REPARAMETRIZATIONS:
            self.add_module("norm", NORMS[norm](out_features))
        if p and not connect:
            self.add_module("dropout", DROPOUTS[kind](float(p)))


class ResidualBlock(Block):
    """A :class:`Block` with a skip connection: ``y = block(x) + P·x`` (see :class:`trainlab.nn.Residual`).

    P is the identity when the widths agree and a bias-free learned projection (child
    ``shortcut``) when they differ (He et al. 2016, option B).
    """

    def __init__(self, in_features: int, out_features: int, *args, **kwargs):
        super().__init__(in_features, out_features, *args, **kwargs)
        self.add_module("shortcut", nn.Identity() if in_features == out_features
                        else nn.Linear(in_features, out_features, bias=False))

    def forward(self, x: Tensor) -> Tensor:
        out = x
        for name, module in self._modules.items():
            if name != "shortcut":
                out = module(out)
        return out + self.shortcut(x)


class MLP(nn.Module):
    """A multilayer perceptron built from a small spec.

    Args:
        in_features: input size (inputs are flattened, so images work too).
        hidden: sizes of the hidden layers, e.g. ``(64, 32)``; ``()`` gives a linear model.
        out_features: output units (classes for softmax, 1 for sigmoid or scalar regression).
        activation: a name from :data:`ACTIVATIONS` (or a module factory), or one per layer.
        head: ``"linear"`` (regression, pairs with MSE), ``"sigmoid"`` (pairs with BCE),
            ``"softmax"`` (pairs with cross-entropy) or ``"gaussian"`` (regression with a learned
            variance, pairs with ``gaussian_nll``: the model returns [μ ; log σ²], the means of
            the output layer beside one learned log-variance per output, the same for every
            input). The model returns the pre-activation z; the loss applies the output unit
            stably.
        log_var_init: the gaussian head's initial log σ² (a number, or one per output): 0 is
            the notes' "initialize to 1"; the runner's ``"marginal"`` sets log Var(y) of the
            training targets, the notes' other choice ("based on the marginal variance of the
            output"). Used by the gaussian head only.
        norm: ``None`` or a name from :data:`NORMS` (``"batch"``, ``"batch_keras"``,
            ``"batch_eps_outside"`` (ε outside the square root), ``"layer"``, ``"weight"``), or one
            per hidden layer.
        dropout: drop probability of each hidden layer (0 = none), or one per layer.
        dropout_kind: a name from :data:`DROPOUTS`, or one per layer: ``"dropout"`` (inverted,
            after the activation), ``"classic"`` (the notes' test-time scaling) or
            ``"dropconnect"`` (the hidden layer's weights are masked instead of its outputs).
        residual: add skip connections around the hidden blocks (``x + f(x)``, a learned
            projection where the width changes), or one flag per layer.
        activation_kwargs: options for the activation factory, e.g. ``{"negative_slope": 0.3}``
            for Keras' leaky ReLU or ``{"k": 3}`` for maxout with three pieces.
        norm_position: ``"before"`` (default: ``linear → norm → activation``) or ``"after"``
            (``linear → activation → norm``) the nonlinearity, for every hidden layer.

    Attributes ``blocks`` (a ``ModuleList`` of :class:`Block`; :class:`ResidualBlock` where
    ``residual``) and ``out`` (the output linear layer) are what diagnostics and initializers
    walk over.
    """

    def __init__(self, in_features: int, hidden: Sequence[int] = (64,), out_features: int = 2, *,
                 activation="relu", head: str = "softmax", norm=None, dropout=0.0, dropout_kind="dropout",
                 residual=False, activation_kwargs: dict | None = None,
                 norm_position: Literal["before", "after"] = "before",
                 log_var_init: float | list[float] | Literal["marginal"] = 0.0):
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
        kinds = _per_layer(dropout_kind, len(hidden), "dropout_kind")
        skips = _per_layer(residual, len(hidden), "residual")
        for kind in kinds:
            if kind not in DROPOUTS:
                raise ValueError(f"unknown dropout kind {kind!r}; choose one of {sorted(DROPOUTS)}")
        widths = [in_features] + hidden
        self.blocks = nn.ModuleList(
            (ResidualBlock if skips[i] else Block)(widths[i], widths[i + 1], acts[i], norms[i], (kinds[i], drops[i]),
                                                   activation_kwargs=activation_kwargs,
                                                   norm_position=norm_position)
            for i in range(len(hidden)))
        self.out = nn.Linear(widths[-1], out_features)
        if head == "gaussian":
            if log_var_init == "marginal":
                raise ValueError("log_var_init='marginal' needs the training targets: the runner replaces it by "
                                 "log Var(y); building an MLP directly, pass the number (e.g. y.var(0).log())")
            values = list(log_var_init) if isinstance(log_var_init, (list, tuple)) else [log_var_init]
            if (len(values) not in (1, out_features)
                    or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                               for v in values)):
                raise ValueError(f"log_var_init must be a finite number or {out_features} of them, got {log_var_init!r}")
            # a variance parameter (notes 002 "variance/precision parameters"): log σ², one per output
            self.log_var = nn.Parameter(torch.tensor(values * (out_features // len(values)), dtype=torch.float32))

    def forward(self, x: Tensor) -> Tensor:
        x = x.flatten(1)
        for block in self.blocks:
            x = block(x)
        z = self.out(x)
        if self.head == "gaussian":
            return torch.cat([z, self.log_var.expand_as(z)], dim=-1)
        return z


class CNN(nn.Module):
    """A small convolutional net: ``[conv → act → maxpool] × stages → flatten → dense → act → out``.

    The dense layer's input size comes from :func:`conv_output_size` applied stage by stage.

    Args:
        in_shape: ``(channels, height, width)`` of one input, e.g. ``(1, 28, 28)`` for MNIST.
        channels: output channels of each conv stage.
        kernel, padding, pool: conv window, conv padding and max-pool window (stride = window).
        hidden: units of the dense layer; classes: output units (softmax head).
        activation, dropout: as in :class:`MLP` (dropout before the output layer). Per-unit
            activations (``"prelu_unit"``) get one parameter per channel; ``"maxout"`` is for
            the MLP only.
        norm: None or ``"batch"`` (:class:`BatchNorm2d` after each convolution, which then has
            no bias: β takes its place).
        norm_position: ``"before"`` (default: ``conv → norm → act → pool``) or ``"after"``
            (``conv → act → norm → pool``; the convolution keeps its bias, since β now comes
            after the nonlinearity and cannot shift its input).
    """

    def __init__(self, in_shape: Sequence[int] = (1, 28, 28), channels: Sequence[int] = (32, 64), *,
                 kernel: int = 3, padding: int = 1, pool: int = 2, hidden: int = 128, classes: int = 10,
                 activation="relu", norm: str | None = None, dropout: float = 0.0,
                 norm_position: Literal["before", "after"] = "before"):
        super().__init__()
        if norm_position not in NORM_POSITIONS:
            raise ValueError(f"norm_position must be 'before' or 'after' (the activation), got {norm_position!r}")
        after = norm_position == "after"
        self.head = "softmax"
        self.in_shape = tuple(in_shape)
        c, h, w = in_shape
        layers: list[nn.Module] = []
        for out_c in channels:
            layers.append(nn.Conv2d(c, out_c, kernel, padding=padding, bias=norm is None or after))
            h, w = conv_output_size(h, kernel, 1, padding), conv_output_size(w, kernel, 1, padding)
            if norm is not None and norm != "batch":
                raise ValueError(f"CNN norm must be None or 'batch', got {norm!r}")
            if norm == "batch" and not after:
                layers.append(BatchNorm2d(out_c))
            act = make_activation(activation, out_c)
            if getattr(act, "pieces", 1) != 1:
                raise ValueError(f"activation {activation!r} pools over features and is not available in the "
                                 "CNN's convolution stages; use it in an MLP")
            layers.append(act)
            if norm == "batch" and after:
                layers.append(BatchNorm2d(out_c))
            layers.append(MaxPool2d(pool))
            h, w = conv_output_size(h, pool, pool), conv_output_size(w, pool, pool)
            c = out_c
        self.features = nn.Sequential(*layers)
        self.flat_features = c * h * w
        self.dense = Block(self.flat_features, hidden, activation, None, dropout)
        self.out = nn.Linear(hidden, classes)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() == 2:  # flat rows (as MNIST is stored) → images
            x = x.unflatten(1, self.in_shape)  # not view(len(x), ...): a traced export keeps the batch free
        return self.out(self.dense(self.features(x).flatten(1)))
