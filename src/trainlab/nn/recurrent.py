"""Recurrent networks unrolled over time, in the notes' three design patterns (notes 002).

=====================================  ==============================================================
pattern                                recurrence
=====================================  ==============================================================
:class:`ElmanRNN` (hidden → hidden)    h_t = f(W_ih x_t + b_ih + W_hh h_(t−1) + b_hh)
:class:`OutputRecurrentRNN`            h_t = f(W_ih x_t + W_oh o_(t−1) + b),  o_t = W_ho h_t + c
(output → hidden)                      (with teacher forcing the true y_(t−1) replaces o_(t−1))
:class:`SequenceToFixed`               the hidden → hidden net read once at the end: o = V·h_τ + c
(sequence → fixed-size output)         (or a mean / max over time)
:class:`Bidirectional`                 one net forward in time, one backward, states concatenated
=====================================  ==============================================================

The loops are plain Python over time steps; autograd through the unrolled graph *is*
back-propagation through time (BPTT). :func:`hidden_gradient_norms` measures ‖∂L/∂h_t‖ along the
sequence, and :func:`clip_grad_norm_` is the rescaling of Pascanu et al. (2013) that tames the
exploding case.
"""
from __future__ import annotations

import copy
import math
from typing import Iterable

import torch
from torch import Tensor, nn

from trainlab.nn.activations import ReLU, Tanh

__all__ = ["ElmanRNN", "OutputRecurrentRNN", "SequenceToFixed", "Bidirectional", "clip_grad_norm_",
           "hidden_gradient_norms"]

_NONLINEARITIES = {"tanh": Tanh, "relu": ReLU, "identity": nn.Identity}


def _nonlinearity(name: str) -> nn.Module:
    if name not in _NONLINEARITIES:
        raise ValueError(f"nonlinearity must be one of {sorted(_NONLINEARITIES)}, got {name!r}")
    return _NONLINEARITIES[name]()


def _time_major(x: Tensor, batch_first: bool, what: str) -> tuple[Tensor, bool]:
    """(T, B, F) view of the input and whether it had no batch axis."""
    if x.dim() == 2:
        return x.unsqueeze(1), True
    if x.dim() != 3:
        raise ValueError(f"{what} expects a (T, B, features) input ((B, T, features) with batch_first), or "
                         f"(T, features) for one sequence; got shape {tuple(x.shape)}")
    return (x.transpose(0, 1) if batch_first else x), False


class ElmanRNN(nn.Module):
    """Hidden-to-hidden recurrence (Elman 1990; notes 002 "Type 1"):

        h_t = f(W_ih·x_t + b_ih + W_hh·h_(t−1) + b_hh),   h_0 = 0 unless given

    Args:
        input_size, hidden_size: widths of x_t and h_t.
        nonlinearity: ``"tanh"`` (default), ``"relu"`` or ``"identity"`` (a linear RNN, for
            studying W_hh's powers alone).
        bias: learn b_ih and b_hh.
        batch_first: inputs/outputs are (B, T, ·) instead of (T, B, ·).

    ``forward(x, h0=None)`` returns ``(outputs, h_n)``: all hidden states (T, B, H) and the last
    one with a leading layer axis (1, B, H). Parameter names and initialization
    (U(−1/√H, 1/√H)) match a one-layer ``torch.nn.RNN``, so weights copy across and the outputs
    agree.
    """

    def __init__(self, input_size: int, hidden_size: int, nonlinearity: str = "tanh", bias: bool = True,
                 batch_first: bool = False):
        super().__init__()
        for name, v in (("input_size", input_size), ("hidden_size", hidden_size)):
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        self.input_size, self.hidden_size, self.batch_first = input_size, hidden_size, batch_first
        self.nonlinearity = nonlinearity
        self.act = _nonlinearity(nonlinearity)
        self.weight_ih_l0 = nn.Parameter(torch.empty(hidden_size, input_size))
        self.weight_hh_l0 = nn.Parameter(torch.empty(hidden_size, hidden_size))
        if bias:
            self.bias_ih_l0 = nn.Parameter(torch.empty(hidden_size))
            self.bias_hh_l0 = nn.Parameter(torch.empty(hidden_size))
        else:
            self.register_parameter("bias_ih_l0", None)
            self.register_parameter("bias_hh_l0", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        bound = 1.0 / math.sqrt(self.hidden_size)
        with torch.no_grad():
            for p in self.parameters():
                p.uniform_(-bound, bound)

    def unroll(self, x: Tensor, h0: Tensor | None = None) -> list[Tensor]:
        """The hidden states [h_1, …, h_T] of a time-major input (T, B, I), as separate tensors.

        Each h_t is a node of the unrolled graph, so ∂L/∂h_t can be asked of autograd directly
        (see :func:`hidden_gradient_norms`).
        """
        T, B, _ = x.shape
        if x.shape[-1] != self.input_size:
            raise ValueError(f"ElmanRNN({self.input_size}, {self.hidden_size}) got inputs of width {x.shape[-1]}")
        h = x.new_zeros(B, self.hidden_size) if h0 is None else h0.reshape(B, self.hidden_size)
        # the input term does not depend on h: one matmul for all steps, then the serial part
        u = torch.nn.functional.linear(x, self.weight_ih_l0, self.bias_ih_l0)
        states = []
        for t in range(T):
            pre = u[t] + torch.nn.functional.linear(h, self.weight_hh_l0, self.bias_hh_l0)
            h = self.act(pre)
            states.append(h)
        return states

    def forward(self, x: Tensor, h0: Tensor | None = None) -> tuple[Tensor, Tensor]:
        xs, unbatched = _time_major(x, self.batch_first, "ElmanRNN")
        if h0 is not None and unbatched:
            h0 = h0.unsqueeze(1)
        states = self.unroll(xs, h0)
        out = torch.stack(states)
        h_n = states[-1].unsqueeze(0)
        if unbatched:
            return out.squeeze(1), h_n.squeeze(1)
        return (out.transpose(0, 1) if self.batch_first else out), h_n

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}, nonlinearity={self.nonlinearity!r}"


class OutputRecurrentRNN(nn.Module):
    """Output-to-hidden recurrence (notes 002 "Type 2"): the previous *output* feeds the hidden layer.

        h_t = f(W_ih·x_t + W_oh·o_(t−1) + b),    o_t = W_ho·h_t + c,    o_0 = 0

    Less expressive than hidden → hidden (the output must carry all the history), but with
    teacher forcing — the true previous target y_(t−1) in place of o_(t−1), the notes'
    target → hidden pattern — no step waits for the previous one, so training runs all time
    steps at once.

    Args:
        input_size, hidden_size, output_size: widths of x_t, h_t and o_t.
        nonlinearity: ``"tanh"`` (default), ``"relu"`` or ``"identity"``.

    ``forward(x, targets=None)`` takes time-major (T, B, I) inputs and returns the outputs
    (T, B, O); with ``targets`` (T, B, O) it uses teacher forcing.
    """

    def __init__(self, input_size: int, hidden_size: int, output_size: int, nonlinearity: str = "tanh"):
        super().__init__()
        self.output_size = output_size
        self.input = nn.Linear(input_size, hidden_size)               # W_ih, b
        self.feedback = nn.Linear(output_size, hidden_size, bias=False)  # W_oh
        self.output = nn.Linear(hidden_size, output_size)             # W_ho, c
        self.act = _nonlinearity(nonlinearity)

    def forward(self, x: Tensor, targets: Tensor | None = None) -> Tensor:
        if x.dim() != 3:
            raise ValueError(f"OutputRecurrentRNN expects time-major inputs (T, B, I), got {tuple(x.shape)}")
        u = self.input(x)
        if targets is not None:  # teacher forcing: o_(t−1) := y_(t−1), all steps in parallel
            if targets.shape[:2] != x.shape[:2] or targets.shape[-1] != self.output_size:
                raise ValueError(f"targets must have shape (T, B, {self.output_size}) matching the inputs, "
                                 f"got {tuple(targets.shape)}")
            previous = torch.cat([torch.zeros_like(targets[:1]), targets[:-1]])
            return self.output(self.act(u + self.feedback(previous)))
        o = x.new_zeros(x.shape[1], self.output_size)
        outputs = []
        for t in range(x.shape[0]):
            h = self.act(u[t] + self.feedback(o))
            o = self.output(h)
            outputs.append(o)
        return torch.stack(outputs)


class SequenceToFixed(nn.Module):
    """Read a whole sequence, emit one fixed-size output (notes 002 "Type 3", the encoder pattern).

        h_1..h_τ = ElmanRNN(x_1..x_τ),    o = V·summary(h) + c

    Args:
        input_size, hidden_size, output_size: widths.
        pooling: ``"last"`` (default, summary = h_τ), ``"mean"`` or ``"max"`` over time.
        nonlinearity, batch_first: passed to the :class:`ElmanRNN`.
        rnn: a recurrent module to use instead (e.g. :class:`Bidirectional`), returning
            ``(outputs, h_n)`` with outputs of width ``rnn_width``.

    ``forward(x)`` returns (B, output_size): logits for sequence classification, or a regression.
    """

    def __init__(self, input_size: int, hidden_size: int, output_size: int, pooling: str = "last",
                 nonlinearity: str = "tanh", batch_first: bool = False, rnn: nn.Module | None = None,
                 rnn_width: int | None = None):
        super().__init__()
        if pooling not in ("last", "mean", "max"):
            raise ValueError(f"pooling must be 'last', 'mean' or 'max', got {pooling!r}")
        self.pooling, self.batch_first = pooling, batch_first
        self.rnn = rnn if rnn is not None else ElmanRNN(input_size, hidden_size, nonlinearity,
                                                        batch_first=batch_first)
        self.head = nn.Linear(rnn_width or hidden_size, output_size)

    def forward(self, x: Tensor) -> Tensor:
        out, _ = self.rnn(x)
        time_axis = 1 if self.batch_first else 0
        if self.pooling == "last":
            summary = out.select(time_axis, -1)
        elif self.pooling == "mean":
            summary = out.mean(time_axis)
        else:
            summary = out.amax(time_axis)
        return self.head(summary)


class Bidirectional(nn.Module):
    """Run one recurrent net forward in time and another backward; concatenate their states.

        h→_t = RNN_f(x_1..x_t),   h←_t = RNN_b(x_T..x_t),   out_t = [h→_t ; h←_t]

    so each output sees the whole sequence (notes 002: a causal RNN cannot use future inputs).

    Args:
        forward_rnn: a recurrent module returning ``(outputs, h_n)`` (e.g. :class:`ElmanRNN`).
        backward_rnn: the backward-in-time net; default a fresh copy of ``forward_rnn``
            (same architecture, re-initialized).

    Returns ``(outputs, h_n)``: (T, B, 2H) and (2, B, H) (forward direction first), the layout of
    ``torch.nn.RNN(bidirectional=True)``; with the same weights the two agree.
    """

    def __init__(self, forward_rnn: nn.Module, backward_rnn: nn.Module | None = None):
        super().__init__()
        self.forward_rnn = forward_rnn
        if backward_rnn is None:
            backward_rnn = copy.deepcopy(forward_rnn)
            if hasattr(backward_rnn, "reset_parameters"):
                backward_rnn.reset_parameters()
        self.backward_rnn = backward_rnn
        self.batch_first = getattr(forward_rnn, "batch_first", False)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        time_axis = 1 if (self.batch_first and x.dim() == 3) else 0
        out_f, h_f = self.forward_rnn(x)
        out_b, h_b = self.backward_rnn(x.flip(time_axis))
        out = torch.cat([out_f, out_b.flip(time_axis)], dim=-1)
        return out, torch.cat([h_f, h_b], dim=0)


def clip_grad_norm_(parameters: Iterable[Tensor] | Tensor, max_norm: float) -> Tensor:
    """Rescale gradients so their joint L2 norm is at most ``max_norm`` (Pascanu et al. 2013).

        ‖g‖ = √(Σ_p ‖g_p‖²);   if ‖g‖ > c:  g ← g · c/‖g‖

    The direction is kept and only the step length is capped, so one cliff-like gradient
    (notes 002, "cliffs and exploding gradients") cannot throw the parameters far away.
    Returns the norm before clipping. Same rule as ``torch.nn.utils.clip_grad_norm_``
    (which adds 1e-6 to the norm in the denominator).
    """
    if not (isinstance(max_norm, (int, float)) and max_norm > 0):
        raise ValueError(f"max_norm must be a positive number, got {max_norm!r}")
    params = [parameters] if isinstance(parameters, Tensor) else list(parameters)
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return torch.tensor(0.0)
    total = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
    if total > max_norm:
        scale = max_norm / total
        for g in grads:
            g.mul_(scale)
    return total


def hidden_gradient_norms(rnn: ElmanRNN, x: Tensor, loss_fn=None) -> Tensor:
    """‖∂L/∂h_t‖ for t = 1..T: how much gradient back-propagation through time delivers to each step.

    For a linear RNN, ∂h_T/∂h_t = W_hh^(T−t): the norms grow like ρ^(T−t) when W_hh's spectral
    radius ρ > 1 (exploding gradients) and shrink like it when ρ < 1 (vanishing) — notes 001's
    W > I versus W < I. ``loss_fn(h_T)`` defaults to the sum of the last state.

    Args:
        rnn: an :class:`ElmanRNN`.
        x: a time-major input (T, B, I).
    """
    states = rnn.unroll(x)
    loss = loss_fn(states[-1]) if loss_fn is not None else states[-1].sum()
    grads = torch.autograd.grad(loss, states)
    return torch.stack([torch.linalg.vector_norm(g) for g in grads]).detach()
