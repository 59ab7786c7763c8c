"""What the units do on a probe batch: activation statistics, dead and saturated units, sparsity,
and bringing dead ReLUs back to life.

For an activation output ``a`` (units along dimension 1: features of a dense layer, channels of a
convolution) on a probe batch:

    mean, std            over all entries of ``a``
    activation sparsity  fraction of entries with a = 0 exactly (notes 002, "activation sparsity")
    dead fraction        (ReLU) fraction of units with a = 0 for every sample (and position) of the
                         probe batch: such a unit passes no gradient, so it never changes again
                         (notes 004, "the dying ReLU problem")
    saturated fraction   (sigmoid, tanh) fraction of entries within ``tol·(hi − lo)`` of a bound of
                         the range [lo, hi]; with the default tol = 0.01 that is σ < 0.01 or σ > 0.99,
                         and |tanh| > 0.98, where the derivative has fallen below ~4 % of its peak
                         (notes 001: saturating regions are where gradients vanish)

:func:`reactivate_dead_units` answers the notes' "can you reactivate dead neurons?": yes, by
re-drawing the incoming weights of the dead units (He normal, std √(2/fan_in)) and setting their
bias to a small positive value (0.01, notes 004), and/or by giving exactly those units a leaky
slope so that a gradient flows again.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from trainlab.diagnostics.layers import BOUNDS, activation_layers, weight_layers
from trainlab.train.rng import preserved_rng


def _units_first(a: Tensor) -> Tensor:
    """``(units, everything else)``: dimension 1 holds the units (features or channels)."""
    if a.dim() < 2:
        return a.reshape(1, -1)
    return a.transpose(0, 1).reshape(a.shape[1], -1)


class ActivationProbe:
    """Context manager that observes every activation module during the forward passes inside it.

    ``with ActivationProbe(model) as probe: model(x)``; then ``probe.stats()`` gives
    ``{name: {"kind", "mean", "std", "zero_frac"[, "dead_frac"][, "saturated_frac"]}}`` and
    ``probe.dead[name]`` the boolean dead-unit mask of each ReLU layer. When a backward pass runs
    inside the block, ``"grad_out_norm"`` is the norm of the loss gradient with respect to the
    activation's output: the backward signal whose growth or decay with depth *is* exploding or
    vanishing gradients (weight gradients hide it, since ‖∂L/∂W_l‖ multiplies the backward signal
    by the forward one, and the two change in opposite directions through a deep net). Hooks exist only inside
    the ``with`` block, so training steps pay nothing.

    Args:
        model: any module; see :func:`trainlab.diagnostics.layers.activation_layers`.
        saturation_tol: the saturation band as a fraction of the activation's range (default 0.01).
    """

    def __init__(self, model: nn.Module, saturation_tol: float = 0.01):
        if not 0 < saturation_tol < 0.5:
            raise ValueError(f"saturation_tol must lie in (0, 0.5), got {saturation_tol}")
        self.model, self.tol = model, saturation_tol
        self.layers = activation_layers(model)
        self._raw: dict[str, dict[str, Tensor]] = {}
        self.dead: dict[str, Tensor] = {}
        self.order: list[str] = []  # module call order (weighted layers and activations)
        self._handles: list = []

    def _hook(self, name: str, kind: str):
        def hook(module, inputs, output):
            a = output.detach()
            units = _units_first(a)
            rec = {"mean": a.double().mean(), "std": a.double().std() if a.numel() > 1 else a.new_zeros(()).double(),
                   "zero_frac": (a == 0).double().mean()}
            if kind == "relu":
                dead = ~(units != 0).any(dim=1)
                self.dead[name] = dead
                rec["dead_frac"] = dead.double().mean()
            if kind in BOUNDS:
                lo, hi = BOUNDS[kind]
                band = self.tol * (hi - lo)
                rec["saturated_frac"] = ((a < lo + band) | (a > hi - band)).double().mean()
            self._raw[name] = rec
            self.order.append(name)
            if output.requires_grad:  # the backward signal ‖∂L/∂a‖ reaching this layer, when a backward pass runs
                def grad_hook(g, rec=rec):
                    rec["grad_out_norm"] = g.detach().double().norm()
                output.register_hook(grad_hook)
        return hook

    def _mark(self, name: str):
        def hook(module, inputs, output):
            self.order.append(name)
        return hook

    def __enter__(self) -> "ActivationProbe":
        self._raw.clear()
        self.dead.clear()
        self.order.clear()
        for name, m in weight_layers(self.model):
            self._handles.append(m.register_forward_hook(self._mark(name)))
        for name, m in self.model.named_modules():
            # normalization layers (torch's or trainlab's): per-feature affine weight, or "norm" in the name
            w = m._parameters.get("weight")
            if "norm" in type(m).__name__.lower() or (w is not None and w.dim() == 1 and not list(m.children())):
                self._handles.append(m.register_forward_hook(self._mark(name)))
        for name, m, kind in self.layers:
            self._handles.append(m.register_forward_hook(self._hook(name, kind)))
        return self

    def __exit__(self, *exc) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()

    def stats(self) -> dict[str, dict]:
        kinds = {name: kind for name, _, kind in self.layers}
        flat, keys = [], []
        for name, rec in self._raw.items():
            for k, v in rec.items():
                keys.append((name, k))
                flat.append(v)
        values = torch.stack(flat).tolist() if flat else []
        out: dict[str, dict] = {}
        for (name, k), v in zip(keys, values):
            out.setdefault(name, {"kind": kinds[name]})[k] = v
        return out


@torch.no_grad()
def activation_stats(model: nn.Module, x: Tensor, *, saturation_tol: float = 0.01) -> dict[str, dict]:
    """Activation statistics of ``model`` on the probe batch ``x`` (eval mode, RNG untouched)."""
    was_training = model.training
    model.eval()
    try:
        with preserved_rng(), ActivationProbe(model, saturation_tol) as probe:
            model(x)
    finally:
        model.train(was_training)
    return probe.stats()


class MaskedLeakyReLU(nn.Module):
    """ReLU whose marked units get a leaky slope: ``a = z`` for z > 0, ``slope·z`` for marked units
    with z ≤ 0, and 0 for the others (the units that were alive keep their plain ReLU).

    Made by :func:`reactivate_dead_units` with ``mode="leaky"``; ``mask`` is a buffer, so it is
    saved in checkpoints. Units are along dimension 1.
    """

    def __init__(self, mask: Tensor, slope: float = 0.01):
        super().__init__()
        if not 0 < slope < 1:
            raise ValueError(f"slope must lie in (0, 1), got {slope}")
        self.slope = float(slope)
        self.register_buffer("mask", mask.detach().clone().bool())

    def forward(self, z: Tensor) -> Tensor:
        shape = [1] * z.dim()
        if z.dim() >= 2:
            shape[1] = -1
        neg = self.mask.view(shape).to(z.dtype) * self.slope
        return torch.where(z > 0, z, z * neg)

    def extra_repr(self) -> str:
        return f"slope={self.slope}, leaky_units={int(self.mask.sum())}/{self.mask.numel()}"


def _set_submodule(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)


def _zero_optimizer_rows(optimizer, param: Tensor, rows: Tensor) -> None:
    state = optimizer.state.get(param) if optimizer is not None else None
    if not state:
        return
    for v in state.values():
        if isinstance(v, Tensor) and v.shape == param.shape:
            v[rows] = 0


@torch.no_grad()
def reactivate_dead_units(model: nn.Module, x: Tensor, *, mode: str = "reinit", bias: float = 0.01,
                          slope: float = 0.01, optimizer: torch.optim.Optimizer | None = None,
                          generator: torch.Generator | None = None) -> dict[str, int]:
    """Bring the ReLU units that are dead on the probe batch ``x`` back to life.

    A unit is dead when its output is 0 for every sample of ``x``. Its producer is the last
    weighted layer called before the activation (and a normalization layer between them, if any).

    Modes:
        ``"reinit"``: re-draw the unit's incoming weights from N(0, 2/fan_in) (He normal) and set
            its bias to ``bias`` (default 0.01, the notes' value against dying ReLUs); a
            normalization layer in between gets weight 1 and bias 0 for the unit. With
            ``optimizer``, the unit's rows of every optimizer state tensor (momentum, Adam's
            moments) are zeroed, so stale statistics do not push it straight back.
        ``"leaky"``: replace that activation by :class:`MaskedLeakyReLU`, which gives only the
            dead units the negative slope ``slope``; weights are left as they are.
        ``"both"``: the two together.

    Args:
        model: the network (modified in place).
        x: the probe batch that decides which units are dead.
        generator: for the re-drawn weights (default: torch's global RNG).

    Returns:
        ``{activation name: number of units reactivated}`` (layers with no dead unit omitted).

    The outgoing weights of a dead unit are kept: they carry what the unit once contributed.
    """
    if mode not in ("reinit", "leaky", "both"):
        raise ValueError(f"mode must be 'reinit', 'leaky' or 'both', got {mode!r}")
    was_training = model.training
    model.eval()
    try:
        with preserved_rng(), ActivationProbe(model) as probe:
            model(x)
    finally:
        model.train(was_training)
    modules = dict(model.named_modules())
    weighted = {name for name, _ in weight_layers(model)}
    done: dict[str, int] = {}
    for name, dead in probe.dead.items():
        if not bool(dead.any()):
            continue
        rows = dead.nonzero().flatten()
        if mode in ("reinit", "both"):
            pos = probe.order.index(name)
            before = probe.order[:pos]
            producer = next((n for n in reversed(before) if n in weighted), None)
            if producer is None:
                raise ValueError(f"cannot find the layer that feeds {name!r}; use mode='leaky'")
            between = before[before.index(producer) + 1:] if producer in before else []
            layer = modules[producer]
            w = layer.weight
            if w.shape[0] != dead.numel():
                raise ValueError(f"{producer!r} has {w.shape[0]} output units but {name!r} has {dead.numel()}")
            fan_in = w[0].numel()
            fresh = torch.randn((len(rows), *w.shape[1:]), generator=generator, dtype=w.dtype,
                                device="cpu") * math.sqrt(2.0 / fan_in)
            w[rows] = fresh.to(w.device)
            _zero_optimizer_rows(optimizer, w, rows)
            b = getattr(layer, "bias", None)
            if isinstance(b, Tensor):
                b[rows] = bias
                _zero_optimizer_rows(optimizer, b, rows)
            for norm_name in between:
                norm = modules[norm_name]
                if getattr(norm, "weight", None) is not None and norm.weight.dim() == 1 \
                        and norm.weight.numel() == dead.numel():
                    norm.weight[rows] = 1.0
                    _zero_optimizer_rows(optimizer, norm.weight, rows)
                if getattr(norm, "bias", None) is not None and norm.bias.dim() == 1 \
                        and norm.bias.numel() == dead.numel():
                    norm.bias[rows] = 0.0
                    _zero_optimizer_rows(optimizer, norm.bias, rows)
        if mode in ("leaky", "both"):
            _set_submodule(model, name, MaskedLeakyReLU(dead.to(next(model.parameters()).device), slope))
        done[name] = len(rows)
    return done
