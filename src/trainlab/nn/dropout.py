"""Dropout (masks on units) and DropConnect (masks on connections).

Dropout (Srivastava et al. 2014) multiplies each *activation* by an independent Bernoulli mask
while training; DropConnect (Wan et al. 2013) multiplies each *weight* of a linear layer. With
inputs x to a layer W:

    dropout on x:  y = W (m ⊙ x),   m_j ~ Bernoulli(1 − p)  — a dropped unit j removes the whole
                                                             column W[:, j] at once
    DropConnect:   y = (M ⊙ W) x,   M_ij ~ Bernoulli(1 − p) — every connection independently

so dropout is DropConnect with the mask tied across each column. Both keep a connection with
probability q = 1 − p and come in two scaling conventions, which give equal expectations:

    inverted (PyTorch, Keras): scale kept values by 1/q while training; inference is the plain net
    classic (the notes, Srivastava et al.): no scaling while training; at inference multiply by
    q — the notes' "w(1 − p)" (scaling a layer's outputs by q is scaling the next weights by q)
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["Dropout", "DropConnect"]

_MODES = ("inverted", "classic")


def _check_p(p) -> float:
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p <= 1.0:
        raise ValueError(f"p is a drop probability and must lie in [0, 1], got {p!r}")
    return float(p)


def _check_mode(mode: str) -> str:
    if mode not in _MODES:
        raise ValueError(f"mode must be 'inverted' (scale by 1/(1-p) while training, as PyTorch) or 'classic' "
                         f"(scale by (1-p) at inference, as the notes), got {mode!r}")
    return mode


def _keep_mask(shape, p: float, like: Tensor, generator: torch.Generator | None, scale: float) -> Tensor:
    """A tensor of ``shape`` holding ``scale`` with probability 1 − p and 0 otherwise.

    u ~ U[0, 1) and keep = [u ≥ p]: P(keep) = 1 − p. One uniform draw and an in-place compare is
    several times faster on the CPU than ``bernoulli_``.
    """
    mask = torch.rand(shape, generator=generator, device=like.device, dtype=like.dtype).ge_(p)
    return mask.mul_(scale) if scale != 1.0 else mask


class Dropout(nn.Module):
    """Dropout: zero each activation with probability ``p`` while training.

        inverted:  train  y = x ⊙ m / (1 − p)      eval  y = x
        classic:   train  y = x ⊙ m                eval  y = (1 − p)·x
        with m_i ~ Bernoulli(1 − p) independent for every element.

    Both give E[y_train] = y_eval. The inverted form keeps inference free of any rescaling
    and is what PyTorch and Keras implement; the classic form is the notes' test-time rule
    w(1 − p).

    Args:
        p: drop probability in [0, 1], default 0.5 (PyTorch; the notes' MNIST recipe uses 0.1).
            p = 1 drops everything (the output is all zeros while training), as PyTorch.
        mode: ``"inverted"`` (default) or ``"classic"``.
        generator: a ``torch.Generator`` for the masks (on the input's device); default: torch's
            global generator, as PyTorch.

    Note: the mask comes from one uniform draw compared with p instead of PyTorch's
    ``bernoulli_``: the same distribution, a different random stream, so a seed does not give
    PyTorch's exact masks.
    """

    def __init__(self, p: float = 0.5, mode: str = "inverted", generator: torch.Generator | None = None):
        super().__init__()
        self.p = _check_p(p)
        self.mode = _check_mode(mode)
        self.generator = generator

    @property
    def scale(self) -> float:
        """The value a kept unit's mask holds while training: 1/(1 − p) inverted, 1 classic."""
        return 1.0 / (1.0 - self.p) if self.mode == "inverted" else 1.0

    def draw_mask(self, shape, like: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """A training mask of ``shape`` (``scale`` with probability 1 − p, else 0), drawn from
        ``generator`` (default: torch's global one), with ``like``'s dtype and device."""
        return _keep_mask(shape, self.p, like, generator, self.scale)

    def mask_for(self, x: Tensor) -> Tensor:
        """The mask that multiplies ``x`` while training (0 < p < 1): a fresh :meth:`draw_mask`
        from this layer's generator. The hook for code that supplies masks drawn elsewhere
        (batched sweeps run many members' layers at once, each with its own stream of masks)."""
        return self.draw_mask(x.shape, x, self.generator)

    def forward(self, x: Tensor) -> Tensor:
        p = self.p
        if not self.training:
            return x * (1.0 - p) if self.mode == "classic" and p > 0 else x
        if p == 0.0:
            return x
        if p == 1.0:
            return x * 0.0
        return x * self.mask_for(x)

    def extra_repr(self) -> str:
        return f"p={self.p}, mode={self.mode!r}"


class DropConnect(nn.Linear):
    """A linear layer whose weights, not activations, are dropped (Wan et al. 2013).

        train:  y = (M ⊙ W)·x + b,   M_ij ~ Bernoulli(q), q = 1 − p   (M scaled by 1/q if inverted)
        eval:   see ``inference``

    Args:
        in_features, out_features, bias: as ``torch.nn.Linear``.
        p: probability of dropping a connection, default 0.5 (Wan et al.).
        mode: ``"inverted"`` (default; masks scaled by 1/q, so inference uses W) or
            ``"classic"`` (the paper: no scaling while training, inference uses q·W).
        per: ``"batch"`` (default): one mask M for the whole mini-batch (cheap: one masked
            matmul), or ``"example"``: an independent mask per example (the paper's definition;
            memory N·out·in).
        inference: ``"mean"`` (default): the deterministic mean network E[M ⊙ W]·x, i.e. the
            usual W (inverted) or q·W (classic) — exact for the linear output. ``"gaussian"``:
            the paper's moment matching (§3.2): u ~ N(E[u], Var[u]) with E[u] = E[M⊙W]·x and
            Var[u] = s²q(1 − q)·(W ⊙ W)(x ⊙ x) (s the training scale), averaged over
            ``samples`` draws of ``activation(u)``; it matters only with a nonlinear
            ``activation``, since E[a(u)] ≠ a(E[u]).
        samples: Monte-Carlo draws for ``inference="gaussian"`` (the paper uses 1000).
        activation: an optional module applied to the output, in both modes (needed for the
            Gaussian inference; the MLP builder leaves it None and applies its own activation).
        mask_bias: also drop the bias (the paper folds b into W); default False.
        generator: a ``torch.Generator`` for the masks and the Gaussian draws.

    Note: Dropout on the input is the special case where M's columns are all-or-nothing; here
    every connection is dropped independently, so two output units see different thinned inputs.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, *, p: float = 0.5,
                 mode: str = "inverted", per: str = "batch", inference: str = "mean", samples: int = 1000,
                 activation: nn.Module | None = None, mask_bias: bool = False,
                 generator: torch.Generator | None = None, device=None, dtype=None):
        super().__init__(in_features, out_features, bias, device=device, dtype=dtype)
        self.p = _check_p(p)
        if self.p == 1.0:
            raise ValueError("DropConnect with p = 1 drops every connection; use p < 1")
        self.mode = _check_mode(mode)
        if per not in ("batch", "example"):
            raise ValueError(f"per must be 'batch' (one mask per mini-batch) or 'example' (one per example), "
                             f"got {per!r}")
        if inference not in ("mean", "gaussian"):
            raise ValueError(f"inference must be 'mean' or 'gaussian' (the paper's moment matching), got {inference!r}")
        if not isinstance(samples, int) or samples < 1:
            raise ValueError(f"samples must be a positive integer, got {samples!r}")
        self.per, self.inference, self.samples = per, inference, samples
        self.activation = activation
        self.mask_bias = mask_bias
        self.generator = generator

    @property
    def keep(self) -> float:
        """q = 1 − p, the probability that a connection is kept."""
        return 1.0 - self.p

    @property
    def train_scale(self) -> float:
        """s: the value a kept connection's mask holds while training (1/q inverted, 1 classic)."""
        return 1.0 / self.keep if self.mode == "inverted" else 1.0

    def _act(self, u: Tensor) -> Tensor:
        return self.activation(u) if self.activation is not None else u

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0.0:
            return self._inference(x)
        s, W, b = self.train_scale, self.weight, self.bias
        if self.per == "batch":
            W = W * _keep_mask(W.shape, self.p, W, self.generator, s)
            if b is not None and self.mask_bias:
                b = b * _keep_mask(b.shape, self.p, b, self.generator, s)
            return self._act(nn.functional.linear(x, W, b))
        lead = x.shape[:-1]
        x2 = x.reshape(-1, self.in_features)
        M = _keep_mask((x2.shape[0],) + tuple(W.shape), self.p, W, self.generator, s)
        y = torch.einsum("noi,ni->no", M * W, x2)    # each example n has its own thinned W
        if b is not None:
            y = y + (b * _keep_mask((x2.shape[0],) + tuple(b.shape), self.p, b, self.generator, s)
                     if self.mask_bias else b)
        return self._act(y.reshape(*lead, self.out_features))

    def _inference(self, x: Tensor) -> Tensor:
        q, s = self.keep, self.train_scale
        mean_scale = s * q                                       # E[mask] = s·q: 1 inverted, q classic
        b = self.bias
        b_mean = None if b is None else (b * mean_scale if self.mask_bias else b)
        mean = nn.functional.linear(x, self.weight * mean_scale, b_mean)
        if self.inference == "mean" or self.p == 0.0:
            return self._act(mean)
        # Var[Σ_j M_ij W_ij x_j] = Σ_j Var[M_ij]·W_ij²·x_j², Var[M_ij] = s²·q·(1 − q)
        var_mask = s * s * q * (1.0 - q)
        var = nn.functional.linear(x * x, self.weight * self.weight * var_mask,
                                   None if b is None or not self.mask_bias else b * b * var_mask)
        std = var.clamp_min(0).sqrt()
        noise = torch.randn((self.samples,) + tuple(mean.shape), generator=self.generator, device=mean.device,
                            dtype=mean.dtype)
        return self._act(mean + std * noise).mean(0)

    def extra_repr(self) -> str:
        return (f"{super().extra_repr()}, p={self.p}, mode={self.mode!r}, per={self.per!r}, "
                f"inference={self.inference!r}")
