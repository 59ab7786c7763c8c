"""Finding the layers to observe in any model: weighted layers and activation modules.

A *weighted layer* is any module that owns a parameter called ``weight`` with two or more
dimensions (``nn.Linear``, every ``nn.ConvNd``, embeddings, trainlab's own layers); normalization
layers have 1-D weights and are left out. An *activation* is a module whose class name says what
it is (``ReLU``, ``LeakyReLU``, ``Sigmoid``, ``Tanh``, ...), torch's and trainlab's alike. For the
MLP builder this finds ``blocks[i].linear``, ``blocks[i].act`` and ``out``; for any other model
it finds the same kinds of modules wherever they sit. Activations applied as functions inside
``forward`` (``F.relu``) have no module and cannot be observed.
"""
from __future__ import annotations

from torch import nn

# how an activation's output is read: "relu" (exact zeros = inactive), "leaky" (never exactly
# zero), "sigmoid" and "tanh" (bounded, so they saturate), "smooth" (ELU, GELU, ...)
_KINDS = (
    ("leakyrelu", "leaky"), ("prelu", "leaky"), ("rrelu", "leaky"), ("rectifier", "leaky"),
    ("maskedleaky", "leaky"), ("relu", "relu"), ("hardsigmoid", "sigmoid"), ("sigmoid", "sigmoid"),
    ("hardtanh", "tanh"), ("tanh", "tanh"), ("elu", "smooth"), ("gelu", "smooth"), ("silu", "smooth"),
    ("swish", "smooth"), ("mish", "smooth"), ("softplus", "smooth"), ("maxout", "smooth"),
)

# the range of the bounded activations, for the saturation test
BOUNDS = {"sigmoid": (0.0, 1.0), "tanh": (-1.0, 1.0)}


def activation_kind(module: nn.Module) -> str | None:
    """``"relu"``, ``"leaky"``, ``"sigmoid"``, ``"tanh"``, ``"smooth"``, or ``None`` (not an activation)."""
    name = type(module).__name__.lower()
    if name in ("identity", "softmax", "logsoftmax", "softmin"):
        return None
    for key, kind in _KINDS:
        if key in name:
            if kind == "leaky" and key == "rectifier" and float(getattr(module, "alpha", 1.0) or 0.0) == 0.0:
                return "relu"  # a generalized rectifier with slope 0 is the ReLU
            return kind
    return None


def weight_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """``(name, module)`` of every weighted layer, in registration order (input side first)."""
    out = []
    for name, m in model.named_modules():
        w = m._parameters.get("weight") if hasattr(m, "_parameters") else None
        if w is not None and w.dim() >= 2:
            out.append((name or type(m).__name__, m))
    return out


def activation_layers(model: nn.Module) -> list[tuple[str, nn.Module, str]]:
    """``(name, module, kind)`` of every activation module (see :func:`activation_kind`)."""
    out = []
    for name, m in model.named_modules():
        kind = activation_kind(m)
        if kind is not None and not list(m.children()):
            out.append((name or type(m).__name__, m, kind))
    return out


def short_name(name: str) -> str:
    """A compact label for plots: ``blocks.3.linear`` → ``L4``-style names stay readable."""
    parts = name.split(".")
    if len(parts) == 3 and parts[0] == "blocks" and parts[1].isdigit():
        return f"{parts[2]} {int(parts[1]) + 1}"
    return name
