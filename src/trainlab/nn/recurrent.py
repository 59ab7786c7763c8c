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

Gated cells (:class:`LSTM`, :class:`GRU`, and the stacked Elman :class:`RNN`) come with layers
and directions, and with PyTorch's parameter names and gate order, so ``load_state_dict`` moves
weights between them and ``torch.nn.LSTM``/``GRU``/``RNN``. :class:`SequenceModel` puts one of
them under a linear read-out (the ``model: {kind: rnn}`` of configs).

The loops are plain Python over time steps; autograd through the unrolled graph *is*
back-propagation through time (BPTT). :func:`hidden_gradient_norms` measures ‖∂L/∂h_t‖ along the
sequence, and :func:`clip_grad_norm_` is the rescaling of Pascanu et al. (2013) that tames the
exploding case.
"""
from __future__ import annotations

import copy
import math
from typing import Iterable, Literal

import torch
from torch import Tensor, nn

from trainlab.nn.activations import ReLU, Tanh

__all__ = ["ElmanRNN", "OutputRecurrentRNN", "SequenceToFixed", "Bidirectional", "clip_grad_norm_",
           "hidden_gradient_norms", "elman_cell", "lstm_cell", "gru_cell", "RNN", "LSTM", "GRU", "SequenceModel",
           "RECURRENT_CELLS", "state_gradient_norms", "lyapunov_exponent", "perturbation_divergence",
           "state_participation_ratio"]

_NONLINEARITIES = {"tanh": Tanh, "relu": ReLU, "identity": nn.Identity}
# normalizations of the Elman recurrence (RNN's ``norm``): none, layer norm over the units of each
# step, or batch norm with each step's batch statistics (its running averages pooled over steps)
RECURRENT_NORMS = (None, "layer", "batch")


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


# ---------------------------------------------------------------------------------------------
# gated cells (one time step) and the stacked, bidirectional networks built from them


def _input_term(x: Tensor | None, w_ih: Tensor, b_ih: Tensor | None, u: Tensor | None) -> Tensor:
    # W_ih·x + b_ih does not depend on the state: a network computes it for all steps in one matmul
    # and hands each step its slice as ``u``
    return torch.nn.functional.linear(x, w_ih, b_ih) if u is None else u


def elman_cell(x: Tensor | None, state: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Tensor | None,
               b_hh: Tensor | None, act=torch.tanh, u: Tensor | None = None) -> Tensor:
    """One Elman step: h' = f(W_ih·x + b_ih + W_hh·h + b_hh) (``torch.nn.RNN``'s cell).

    ``u``, when given, is W_ih·x + b_ih already computed (``x`` is then not used), as for the
    other cells."""
    return act(_input_term(x, w_ih, b_ih, u) + torch.nn.functional.linear(state, w_hh, b_hh))


def lstm_cell(x: Tensor | None, state: tuple[Tensor, Tensor], w_ih: Tensor, w_hh: Tensor, b_ih: Tensor | None,
              b_hh: Tensor | None, u: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """One LSTM step (Hochreiter & Schmidhuber 1997 with the forget gate of Gers et al. 2000)::

        i  = σ(W_ii·x + b_ii + W_hi·h + b_hi)        input gate
        f  = σ(W_if·x + b_if + W_hf·h + b_hf)        forget gate
        g  = tanh(W_ig·x + b_ig + W_hg·h + b_hg)     candidate cell
        o  = σ(W_io·x + b_io + W_ho·h + b_ho)        output gate
        c' = f ⊙ c + i ⊙ g                           the cell: an additive path through time
        h' = o ⊙ tanh(c')

    ``w_ih`` (4H, I) and ``w_hh`` (4H, H) stack the gates in PyTorch's order i, f, g, o;
    ``state`` is ``(h, c)``, each (B, H). While f ≈ 1, ∂c'/∂c = f passes gradient back unshrunk
    (notes 002: gated units control what is kept, the remedy for long-term dependencies).
    ``u``, when given, is W_ih·x + b_ih already computed for this step.
    """
    h, c = state
    gates = _input_term(x, w_ih, b_ih, u) + torch.nn.functional.linear(h, w_hh, b_hh)
    i, f, g, o = gates.chunk(4, dim=-1)
    i, f, g, o = torch.sigmoid(i), torch.sigmoid(f), torch.tanh(g), torch.sigmoid(o)
    c = f * c + i * g
    h = o * torch.tanh(c)
    return h, c


def gru_cell(x: Tensor | None, state: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Tensor | None,
             b_hh: Tensor | None, u: Tensor | None = None) -> Tensor:
    """One GRU step (Cho et al. 2014), in PyTorch's form::

        r  = σ(W_ir·x + b_ir + W_hr·h + b_hr)              reset gate
        z  = σ(W_iz·x + b_iz + W_hz·h + b_hz)              update gate
        n  = tanh(W_in·x + b_in + r ⊙ (W_hn·h + b_hn))      candidate
        h' = (1 − z) ⊙ n + z ⊙ h

    ``w_ih`` (3H, I) and ``w_hh`` (3H, H) stack the gates in the order r, z, n. Note the reset
    gate multiplies W_hn·h + b_hn (PyTorch, cuDNN); Cho et al. apply it to h before the matrix.
    While z ≈ 1 the state (and its gradient) is copied through the step. ``u``, when given, is
    W_ih·x + b_ih already computed for this step.
    """
    u = _input_term(x, w_ih, b_ih, u)
    v = torch.nn.functional.linear(state, w_hh, b_hh)
    u_r, u_z, u_n = u.chunk(3, dim=-1)
    v_r, v_z, v_n = v.chunk(3, dim=-1)
    r = torch.sigmoid(u_r + v_r)
    z = torch.sigmoid(u_z + v_z)
    n = torch.tanh(u_n + r * v_n)
    return (1 - z) * n + z * state


class _Stacked(nn.Module):
    """Layers × directions of one cell, with ``torch.nn.RNN``/``LSTM``/``GRU``'s names and layout.

    Parameters are ``weight_ih_l{k}``, ``weight_hh_l{k}``, ``bias_ih_l{k}``, ``bias_hh_l{k}``
    (``_reverse`` for the backward direction), initialized U(−1/√H, 1/√H) as PyTorch does.
    Layer k > 0 reads the outputs of layer k − 1 (both directions concatenated).
    """

    gates = 1
    cell_name = "elman"

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, bidirectional: bool = False):
        super().__init__()
        for name, v in (("input_size", input_size), ("hidden_size", hidden_size), ("num_layers", num_layers)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.bias, self.batch_first, self.bidirectional = bias, batch_first, bool(bidirectional)
        self.directions = 2 if bidirectional else 1
        G = self.gates * hidden_size
        for k in range(num_layers):
            width = input_size if k == 0 else hidden_size * self.directions
            for suffix in self._suffixes(k):
                self.register_parameter(f"weight_ih{suffix}", nn.Parameter(torch.empty(G, width)))
                self.register_parameter(f"weight_hh{suffix}", nn.Parameter(torch.empty(G, hidden_size)))
                for which in ("ih", "hh"):
                    self.register_parameter(f"bias_{which}{suffix}", nn.Parameter(torch.empty(G)) if bias else None)
        self.reset_parameters()

    def _suffixes(self, k: int) -> list[str]:
        return [f"_l{k}"] + ([f"_l{k}_reverse"] if self.bidirectional else [])

    def reset_parameters(self) -> None:
        bound = 1.0 / math.sqrt(self.hidden_size)
        with torch.no_grad():
            for p in self.parameters():
                p.uniform_(-bound, bound)

    def _weights(self, suffix: str):
        return (getattr(self, f"weight_ih{suffix}"), getattr(self, f"weight_hh{suffix}"),
                getattr(self, f"bias_ih{suffix}"), getattr(self, f"bias_hh{suffix}"))

    # the state of one layer-direction: a tensor (B, H), or (h, c) for the LSTM
    def _zero_state(self, x: Tensor):
        return x.new_zeros(x.shape[1], self.hidden_size)

    def _step(self, u: Tensor, state, weights):
        return elman_cell(None, state, *weights, u=u)

    @staticmethod
    def _hidden(state) -> Tensor:
        return state[0] if isinstance(state, tuple) else state

    def unroll(self, x: Tensor, state=None, layer: int = 0, reverse: bool = False) -> list:
        """The states of one layer and direction over a time-major input (T, B, width), as a list.

        Each entry is a node of the unrolled graph (for the LSTM the pair (h_t, c_t)), so
        ∂L/∂h_t can be asked of autograd directly (:func:`hidden_gradient_norms`).
        """
        suffix = f"_l{layer}" + ("_reverse" if reverse else "")
        weights = self._weights(suffix)
        state = self._zero_state(x) if state is None else state
        # the input term of every step at once (one matmul); the loop does the serial part only
        # (unbind: its backward stacks the steps' gradients once, where indexing u[t] would
        # allocate a full-size gradient for every step)
        u = torch.nn.functional.linear(x, weights[0], weights[2]).unbind(0)
        steps = range(x.shape[0] - 1, -1, -1) if reverse else range(x.shape[0])
        states = []
        for t in steps:
            state = self._step(u[t], state, weights)
            states.append(state)
        return states[::-1] if reverse else states

    def forward(self, x: Tensor, h0=None):
        """``(outputs, h_n)``: outputs (T, B, D·H) ((B, T, D·H) with ``batch_first``) of the last
        layer, and the final states (L·D, B, H) (for the LSTM the pair ``(h_n, c_n)``), as PyTorch."""
        xs, unbatched = _time_major(x, self.batch_first, type(self).__name__)
        if xs.shape[-1] != self.input_size:
            raise ValueError(f"{type(self).__name__}({self.input_size}, {self.hidden_size}) got inputs of width "
                             f"{xs.shape[-1]}")
        if h0 is not None and unbatched:
            h0 = tuple(h.unsqueeze(1) for h in h0) if isinstance(h0, tuple) else h0.unsqueeze(1)
        finals = []
        layer_input = xs
        for k in range(self.num_layers):
            outs = []
            for d in range(self.directions):
                init = self._initial_state(h0, k, d)
                states = self.unroll(layer_input, init, layer=k, reverse=d == 1)
                outs.append(torch.stack([self._hidden(s) for s in states]))
                finals.append(states[0] if d == 1 else states[-1])
            layer_input = torch.cat(outs, dim=-1) if self.directions == 2 else outs[0]
        out = layer_input
        h_n = self._pack(finals)
        if unbatched:
            h_n = tuple(h.squeeze(1) for h in h_n) if isinstance(h_n, tuple) else h_n.squeeze(1)
            return out.squeeze(1), h_n
        return (out.transpose(0, 1) if self.batch_first else out), h_n

    def _initial_state(self, h0, k: int, d: int):
        return None if h0 is None else h0[k * self.directions + d]

    def _pack(self, finals: list):
        return torch.stack(finals)

    def extra_repr(self) -> str:
        return (f"{self.input_size}, {self.hidden_size}, num_layers={self.num_layers}"
                + (", bidirectional=True" if self.bidirectional else ""))


class RNN(_Stacked):
    """Stacked Elman network, ``torch.nn.RNN`` with our loop: h_t^k = f(W_ih·h_t^(k−1) + b_ih + W_hh·h_(t−1)^k + b_hh).

    Args:
        input_size, hidden_size: widths of x_t and h_t.
        num_layers: stacked layers (layer k reads layer k − 1's outputs; default 1).
        nonlinearity: ``"tanh"`` (default) or ``"relu"``.
        bias, batch_first, bidirectional: as ``torch.nn.RNN``.
        norm: ``None`` (default), ``"layer"`` or ``"batch"``: normalize the summed input of every
            step before the nonlinearity, h_t = f(N(W_ih·x_t + b_ih + W_hh·h_(t−1) + b_hh)).
            ``"layer"`` is Ba et al.'s (2016) layer-norm RNN: statistics over the H units of each
            sequence, the same in training and evaluation and for any batch size or length.
            ``"batch"`` normalizes over the batch at each step (one γ, β and one set of running
            averages per layer, shared by all steps): training sees each step's statistics,
            evaluation their average over steps and batches, which is why batch norm suits
            recurrences badly (notes 004; Laurent et al. 2016, Cooijmans et al. 2016).

    ``forward(x, h0=None)`` returns ``(outputs, h_n)`` as ``torch.nn.RNN``; with the same weights
    (and no ``norm``) the outputs agree (see tests). :class:`ElmanRNN` is the one-layer form with the notes' other
    nonlinearities.
    """

    cell_name = "elman"

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, nonlinearity: str = "tanh",
                 bias: bool = True, batch_first: bool = False, bidirectional: bool = False, norm: str | None = None):
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
        if norm not in RECURRENT_NORMS:
            raise ValueError(f"norm must be one of {', '.join(map(repr, RECURRENT_NORMS))}, got {norm!r}")
        self.nonlinearity, self.norm = nonlinearity, norm
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, bidirectional)
        if norm is not None:
            from trainlab.nn.normalization import BatchNorm1d, LayerNorm

            make = LayerNorm if norm == "layer" else BatchNorm1d
            # one normalizer per layer and direction, shared by all its time steps
            self.norms = nn.ModuleDict({suffix[1:]: make(hidden_size) for k in range(num_layers)
                                        for suffix in self._suffixes(k)})

    def reset_parameters(self) -> None:
        super().reset_parameters()
        # the uniform draw above also hit the normalizers' γ and β (they are parameters of this module)
        for norm in (self.norms.values() if "norms" in self._modules else ()):
            norm.reset_parameters()

    def _weights(self, suffix: str):
        norm = self.norms[suffix[1:]] if self.norm is not None else None
        return super()._weights(suffix) + (norm,)

    def _step(self, u, state, weights):
        *weights, norm = weights
        act = torch.tanh if self.nonlinearity == "tanh" else torch.relu
        if norm is None:
            return elman_cell(None, state, *weights, act=act, u=u)
        # normalize the summed input a_t = W_ih·x + b_ih + W_hh·h + b_hh before f (Ba et al. 2016, §3.1)
        return act(norm(u + torch.nn.functional.linear(state, weights[1], weights[3])))


class LSTM(_Stacked):
    """Long short-term memory network (:func:`lstm_cell`), stacked and optionally bidirectional.

    Args:
        input_size, hidden_size, num_layers, bias, batch_first, bidirectional: as ``torch.nn.LSTM``.
        forget_bias: added to b_ih's forget slice after the uniform draw (0 = PyTorch's default
            init; 1 = Gers et al. / Jozefowicz et al., notes 002 "forget gate bias = 1").

    ``forward(x, (h0, c0)=None)`` returns ``(outputs, (h_n, c_n))`` exactly as ``torch.nn.LSTM``
    (gate order i, f, g, o in the stacked weights), so ``load_state_dict`` moves weights both ways.
    No projection (``proj_size``) and no inter-layer dropout.
    """

    gates = 4
    cell_name = "lstm"

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, bidirectional: bool = False, forget_bias: float = 0.0):
        if not isinstance(forget_bias, (int, float)) or isinstance(forget_bias, bool) or not math.isfinite(forget_bias):
            raise ValueError(f"forget_bias must be a finite number, got {forget_bias!r}")
        self.forget_bias = float(forget_bias)
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, bidirectional)

    def reset_parameters(self) -> None:
        super().reset_parameters()
        if self.bias and self.forget_bias:
            H = self.hidden_size
            with torch.no_grad():
                for name, p in self.named_parameters():
                    if name.startswith("bias_ih"):
                        p[H:2 * H] += self.forget_bias

    def _zero_state(self, x):
        h = x.new_zeros(x.shape[1], self.hidden_size)
        return h, h.clone()

    def _step(self, u, state, weights):
        return lstm_cell(None, state, *weights, u=u)

    def _initial_state(self, h0, k, d):
        if h0 is None:
            return None
        h, c = h0
        return h[k * self.directions + d], c[k * self.directions + d]

    def _pack(self, finals):
        return torch.stack([h for h, _ in finals]), torch.stack([c for _, c in finals])


class GRU(_Stacked):
    """Gated recurrent unit network (:func:`gru_cell`), stacked and optionally bidirectional.

    Args: as ``torch.nn.GRU`` (``input_size, hidden_size, num_layers, bias, batch_first,
    bidirectional``); gate order r, z, n in the stacked weights. ``forward(x, h0=None)``
    returns ``(outputs, h_n)`` exactly as ``torch.nn.GRU``.
    """

    gates = 3
    cell_name = "gru"

    def _step(self, u, state, weights):
        return gru_cell(None, state, *weights, u=u)


RECURRENT_CELLS = {"elman": RNN, "lstm": LSTM, "gru": GRU}


class SequenceModel(nn.Module):
    """A recurrent network under a linear read-out: the ``model: {kind: rnn}`` of configs.

        h_1..h_T = cell network(x_1..x_T)            (B, T, D·H), batch first
        seq2one:  o = W·h_T + c                      one output per sequence (notes 002 "many to one")
        seq2seq:  o_t = W·h_t + c  for every t       one output per step ("many to many")
        one2many: x_t = x for t = 1..steps,          a sequence from one input ("one to many"):
                  o_t = W·h_t + c                    the single input is fed at every step

    With ``bidirectional`` the read-out of seq2one sees [h→_T ; h←_1], the two directions' final
    states (each has then read the whole sequence).

    Args:
        in_features: width of x_t (the data's last axis).
        out_features: outputs per sequence (seq2one) or per step (seq2seq).
        cell: ``"elman"``, ``"lstm"`` or ``"gru"``.
        hidden: H, the state width (default 32).
        layers: stacked recurrent layers (default 1).
        pattern: ``"seq2one"`` (default), ``"seq2seq"`` or ``"one2many"``.
        steps: the length of the generated sequence for ``"one2many"`` (the runner takes it from
            the targets); not used by the other patterns.
        bidirectional: a second network reads the sequence backward (default False).
        nonlinearity: the Elman cell's ``"tanh"`` (default) or ``"relu"``.
        forget_bias: the LSTM's forget-gate bias offset (default 0; 1 is the notes' advice).
        norm: the Elman cell's normalized recurrence: ``None`` (default), ``"layer"`` or ``"batch"``
            (see :class:`RNN`).
        head: the output unit the loss pairs with (``"linear"``, ``"sigmoid"``, ``"softmax"``).

    Inputs are (B, T, in_features) ((B, 1, in_features) or (B, in_features) for one2many);
    outputs (B, out) or (B, T, out). For one2many the input is repeated as the input of every
    step, as in Goodfellow et al. (2016) §10.2.4 (an image caption's RNN sees the image at each
    step); the recurrence is what makes step t differ from step t − 1.
    """

    def __init__(self, in_features: int, out_features: int = 1, *, cell: str = "lstm", hidden: int = 32,
                 layers: int = 1, pattern: str = "seq2one", bidirectional: bool = False,
                 nonlinearity: str = "tanh", forget_bias: float = 0.0, head: str = "linear",
                 steps: int | None = None, norm: Literal["layer", "batch"] | None = None):
        super().__init__()
        if cell not in RECURRENT_CELLS:
            raise ValueError(f"cell must be one of {', '.join(RECURRENT_CELLS)}, got {cell!r}")
        if pattern not in ("seq2one", "seq2seq", "one2many"):
            raise ValueError(f"pattern must be 'seq2one', 'seq2seq' or 'one2many', got {pattern!r}")
        if pattern == "one2many" and (isinstance(steps, bool) or not isinstance(steps, int) or steps < 1):
            raise ValueError(f"pattern 'one2many' needs steps, the length of the sequence to generate (an "
                             f"integer >= 1), got {steps!r}")
        if head == "gaussian":
            raise ValueError("the gaussian head (loss gaussian_nll, a learned variance) is available for model kind "
                             "mlp only; use loss mse for a recurrent model")
        if head not in ("linear", "sigmoid", "softmax"):
            raise ValueError(f"head must be 'linear', 'sigmoid' or 'softmax', got {head!r}")
        if nonlinearity != "tanh" and cell != "elman":
            raise ValueError(f"nonlinearity applies to the elman cell only (the {cell} cell's are fixed)")
        if forget_bias and cell != "lstm":
            raise ValueError(f"forget_bias applies to the lstm cell only, not {cell!r}")
        if norm is not None and cell != "elman":
            raise ValueError(f"norm (a normalized recurrence) is available for the elman cell only, not {cell!r}")
        extra = {"nonlinearity": nonlinearity, "norm": norm} if cell == "elman" else {}
        if cell == "lstm":
            extra["forget_bias"] = forget_bias
        self.cell, self.pattern, self.head, self.steps = cell, pattern, head, steps
        self.rnn = RECURRENT_CELLS[cell](in_features, hidden, layers, batch_first=True,
                                         bidirectional=bidirectional, **extra)
        self.out = nn.Linear(hidden * self.rnn.directions, out_features)

    def forward(self, x: Tensor) -> Tensor:
        if self.pattern == "one2many":
            if x.dim() == 3 and x.shape[1] != 1:
                raise ValueError(f"a one-to-many model takes one input per sequence, (batch, 1, features) or "
                                 f"(batch, features); got shape {tuple(x.shape)}")
            x = x.reshape(x.shape[0], 1, -1).expand(-1, self.steps, -1)
        if x.dim() != 3:
            raise ValueError(f"a sequence model takes inputs (batch, time, features), got shape {tuple(x.shape)}")
        out, _ = self.rnn(x)
        if self.pattern in ("seq2seq", "one2many"):
            return self.out(out)
        H = self.rnn.hidden_size
        if self.rnn.bidirectional:  # forward direction's last step, backward direction's first
            summary = torch.cat([out[:, -1, :H], out[:, 0, H:]], dim=-1)
        else:
            summary = out[:, -1]
        return self.out(summary)


def state_gradient_norms(rnn: _Stacked, x: Tensor, loss_fn=None) -> Tensor:
    """‖∂L/∂h_t‖ for t = 1..T through a one-direction first layer of :class:`RNN`/:class:`LSTM`/:class:`GRU`.

    As :func:`hidden_gradient_norms`, for the gated cells: ``x`` is time-major (T, B, I) and
    ``loss_fn(h_T)`` defaults to the sum of the last hidden state. For the LSTM, h_t's gradient
    includes what reaches it through the cell path c (via the gates of step t + 1).
    """
    states = rnn.unroll(x)
    hs = [rnn._hidden(s) for s in states]
    loss = loss_fn(hs[-1]) if loss_fn is not None else hs[-1].sum()
    grads = torch.autograd.grad(loss, hs)
    return torch.stack([torch.linalg.vector_norm(g) for g in grads]).detach()


# ---------------------------------------------------------------------------------------------
# order and chaos in the hidden → hidden dynamics (notes 002: too large initial weights "lead to
# chaos in recurrent networks")


def _elman_steps(rnn: ElmanRNN, x: Tensor):
    """The map of each step, h ↦ (h_t, f′(a_t)) with a_t = u_t + W_hh·h + b_hh and h_t = f(a_t)."""
    if x.dim() != 3 or x.shape[-1] != rnn.input_size:
        raise ValueError(f"expected a time-major input (T, B, {rnn.input_size}), got shape {tuple(x.shape)}")
    u = torch.nn.functional.linear(x, rnn.weight_ih_l0, rnn.bias_ih_l0).detach()
    w, b = rnn.weight_hh_l0.detach(), None if rnn.bias_hh_l0 is None else rnn.bias_hh_l0.detach()

    def step(t: int, h: Tensor) -> tuple[Tensor, Tensor]:
        a = u[t] + torch.nn.functional.linear(h, w, b)
        if isinstance(rnn.act, Tanh):  # tanh′(a) = 1 − tanh²(a): no autograd needed
            out = torch.tanh(a)
            return out, 1 - out.square()
        with torch.enable_grad():
            a = a.detach().requires_grad_(True)
            out = rnn.act(a)
            # f acts elementwise, so the gradient of Σ f(a) is f′(a): the Jacobian's diagonal
            slope, = torch.autograd.grad(out.sum(), a)
        return out.detach(), slope
    return w, step


@torch.no_grad()
def lyapunov_exponent(rnn: ElmanRNN, x: Tensor, burn_in: int = 0, seed: int = 0) -> Tensor:
    """The largest Lyapunov exponent of the driven dynamics h_t = f(u_t + W_hh·h_(t−1) + b), per sequence.

        λ = 1/(T − T₀) · Σ_(t > T₀) log ‖J_t v_(t−1)‖,   v_t = J_t v_(t−1) / ‖J_t v_(t−1)‖,
        J_t = ∂h_t/∂h_(t−1) = diag(f′(a_t)) · W_hh

    (the tangent-vector method of Benettin et al. 1980): an infinitesimal perturbation of the
    state grows like e^(λt). λ < 0: nearby trajectories merge and the gradient through time
    vanishes (order); λ > 0: they separate exponentially (chaos) and the gradient explodes.
    f′(a_t) comes from autograd, so any elementwise nonlinearity works.

    Args:
        rnn: an :class:`ElmanRNN`.
        x: time-major inputs (T, B, I).
        burn_in: steps T₀ whose growth is not counted (the state forgets h_0 and v_0 aligns with
            the most expanding direction).
        seed: seed of the random unit vector v_0.

    Returns λ per sequence, shape (B,), in nats per step.
    """
    T, B = x.shape[:2]
    if not 0 <= burn_in < T:
        raise ValueError(f"burn_in must be in [0, {T}), got {burn_in!r}")
    w, step = _elman_steps(rnn, x)
    g = torch.Generator().manual_seed(seed)
    v = torch.randn(B, rnn.hidden_size, generator=g).to(x)
    v = v / torch.linalg.vector_norm(v, dim=1, keepdim=True)
    h = x.new_zeros(B, rnn.hidden_size)
    total = x.new_zeros(B)
    for t in range(T):
        h, slope = step(t, h)
        jv = slope * (v @ w.T)  # J_t v = diag(f′(a_t))·W_hh·v
        growth = torch.linalg.vector_norm(jv, dim=1).clamp_min(1e-300)
        v = jv / growth.unsqueeze(1)
        if t >= burn_in:
            total += growth.log()
    return total / (T - burn_in)


@torch.no_grad()
def perturbation_divergence(rnn: ElmanRNN, x: Tensor, eps: float = 1e-6, seed: int = 0) -> Tensor:
    """‖h_t − h′_t‖ / ‖h_0 − h′_0‖ for t = 1..T: how far two runs from states ``eps`` apart drift.

    Both runs see the same inputs x; the second starts from h′_0 = eps·v (v a random unit vector)
    instead of 0. The finite-size view of :func:`lyapunov_exponent`: the ratio falls like e^(λt)
    in the ordered regime and grows like e^(λt) in the chaotic one until it saturates at the
    size of the attractor (the states are bounded by the tanh). Returns the mean over the batch
    of the ratio at each step, shape (T,).
    """
    if not (isinstance(eps, (int, float)) and eps > 0):
        raise ValueError(f"eps must be a positive number, got {eps!r}")
    T, B = x.shape[:2]
    _, step = _elman_steps(rnn, x)
    g = torch.Generator().manual_seed(seed)
    v = torch.randn(B, rnn.hidden_size, generator=g).to(x)
    h = x.new_zeros(B, rnn.hidden_size)
    h2 = eps * v / torch.linalg.vector_norm(v, dim=1, keepdim=True)
    ratios = []
    for t in range(T):
        h, h2 = step(t, h)[0], step(t, h2)[0]
        ratios.append((torch.linalg.vector_norm(h - h2, dim=1) / eps).mean())
    return torch.stack(ratios)


def state_participation_ratio(states: Tensor) -> float:
    """How many independent directions the hidden units span: PR = (Σ λ_i)² / Σ λ_i².

    λ_i are the eigenvalues of the covariance of the states over time steps and sequences
    (``states`` (T, B, H) or (N, H)). PR is 1 when every unit is a multiple of one signal (the
    units are copies up to scale: no symmetry broken) and H when all H units vary independently
    with equal variance (Gao et al. 2017's dimensionality).
    """
    z = states.reshape(-1, states.shape[-1]).double()
    z = z - z.mean(0)
    lam = torch.linalg.eigvalsh(z.T @ z / max(len(z) - 1, 1)).clamp_min(0)
    return float(lam.sum() ** 2 / (lam.square().sum()).clamp_min(1e-300))
