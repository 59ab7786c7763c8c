"""Layers built from others: Maxout and residual (skip) connections."""
from __future__ import annotations

from torch import Tensor, nn

__all__ = ["Maxout", "MaxoutPool", "Residual"]


class MaxoutPool(nn.Module):
    """The max half of a maxout unit: groups of ``k`` consecutive features → their maximum.

        h_j = max(z_{jk}, z_{jk+1}, …, z_{jk+k−1})      for an input z of width n·k → width n

    Placed after a linear layer of width n·k it makes n maxout units (see :class:`Maxout`); this
    is how the MLP builder offers ``activation="maxout"``. The gradient flows to the winning piece
    only (to the first one on ties, as ``torch.max``).

    Args:
        k: pieces per unit, default 2 (enough to mimic ReLU and leaky ReLU).
    """

    def __init__(self, k: int = 2):
        super().__init__()
        if not isinstance(k, int) or k < 1:
            raise ValueError(f"k must be a positive integer (pieces per unit), got {k!r}")
        self.k = k

    @property
    def pieces(self) -> int:
        """How many inputs each output unit takes the maximum of (the MLP builder widens by this)."""
        return self.k

    def forward(self, z: Tensor) -> Tensor:
        if z.shape[-1] % self.k:
            raise ValueError(f"MaxoutPool(k={self.k}) needs a last dimension divisible by k, got {z.shape[-1]}")
        return z.unflatten(-1, (z.shape[-1] // self.k, self.k)).max(dim=-1).values

    def extra_repr(self) -> str:
        return f"k={self.k}"


class Maxout(nn.Module):
    """A maxout layer (Goodfellow et al. 2013): each unit is the max of k affine pieces.

        z_ij = w_ijᵀ x + b_ij   (j = 1..k),      h_i = max_j z_ij

    A maxout unit is a learned convex piecewise-linear activation: with k = 2, pieces (w, 0)
    give ReLU max(wᵀx, 0), pieces (w, αw) give the leaky ReLU, (w, −w) gives |wᵀx|; with
    larger k it approximates any convex function (notes 002). It needs k times the weights of
    a plain layer, hence the notes' advice to regularize it (e.g. dropout).

    Args:
        in_features: input width.
        out_features: number of maxout units.
        k: pieces per unit (default 2).
        bias: learn b_ij.

    The pieces live in one ``nn.Linear`` (``self.linear``, out_features·k outputs, piece j of
    unit i at row i·k + j) so initializers treat it like any linear layer.
    """

    def __init__(self, in_features: int, out_features: int, k: int = 2, bias: bool = True):
        super().__init__()
        if not isinstance(out_features, int) or out_features < 1:
            raise ValueError(f"out_features must be a positive integer, got {out_features!r}")
        self.in_features, self.out_features = in_features, out_features
        self.pool = MaxoutPool(k)
        self.linear = nn.Linear(in_features, out_features * k, bias=bias)

    @property
    def k(self) -> int:
        return self.pool.k

    def pieces(self, x: Tensor) -> Tensor:
        """All k affine pieces, shape (..., out_features, k)."""
        z = self.linear(x)
        return z.unflatten(-1, (self.out_features, self.k))

    def forward(self, x: Tensor) -> Tensor:
        return self.pool(self.linear(x))

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, k={self.k}"


class Residual(nn.Module):
    """A skip connection: y = f(x) + P·x (He et al. 2016).

    The identity path gives every earlier layer a gradient term that does not pass through f's
    Jacobians, which is why residual nets train at depths where plain nets' first-layer gradients
    vanish (notes 002, the MNIST recipe). When f changes the width, P is a learned projection
    (a bias-free linear map, He et al.'s option B); otherwise P = I.

    Args:
        body: the residual branch f.
        in_features, out_features: widths of x and f(x); a projection is built when they differ.
            Leave both None for P = I.
        projection: an explicit P (a module), overriding the widths.
    """

    def __init__(self, body: nn.Module, in_features: int | None = None, out_features: int | None = None,
                 projection: nn.Module | None = None):
        super().__init__()
        self.body = body
        if projection is None:
            if in_features is not None and out_features is not None and in_features != out_features:
                projection = nn.Linear(in_features, out_features, bias=False)
            else:
                projection = nn.Identity()
        self.shortcut = projection

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x) + self.shortcut(x)
