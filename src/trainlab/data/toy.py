"""Small synthetic datasets, generated here (no scikit-learn), each seeded.

All classification sets return ``X`` as float32 ``(n, 2)`` (``(n, d)`` for blobs) and ``y`` as
``torch.long`` class indices. Noise is isotropic Gaussian with standard deviation ``noise``.
"""
from __future__ import annotations

import math

import torch

from trainlab.data.dataset import Dataset


def _check(n_samples: int, noise: float) -> None:
    if not isinstance(n_samples, int) or n_samples < 2:
        raise ValueError(f"n_samples must be an integer >= 2, got {n_samples!r}")
    if noise < 0:
        raise ValueError(f"noise must be >= 0, got {noise!r}")


def _finish(X: torch.Tensor, y: torch.Tensor, noise: float, g: torch.Generator, name: str) -> Dataset:
    if noise > 0:
        X = X + noise * torch.randn(X.shape, generator=g, dtype=X.dtype)
    perm = torch.randperm(len(X), generator=g)
    return Dataset(X[perm].float().contiguous(), y[perm].long().contiguous(), name)


def moons(n_samples: int = 1000, noise: float = 0.1, seed: int = 0) -> Dataset:
    """Two interleaving half circles (the shape scikit-learn's ``make_moons`` draws).

    Upper moon: (cos t, sin t), lower moon: (1 − cos t, 1/2 − sin t), t ∈ [0, π] evenly spaced.
    """
    _check(n_samples, noise)
    g = torch.Generator().manual_seed(seed)
    n_out = n_samples // 2
    n_in = n_samples - n_out
    t_out = torch.linspace(0, math.pi, n_out, dtype=torch.float64)
    t_in = torch.linspace(0, math.pi, n_in, dtype=torch.float64)
    upper = torch.stack([t_out.cos(), t_out.sin()], 1)
    lower = torch.stack([1 - t_in.cos(), 0.5 - t_in.sin()], 1)
    X = torch.cat([upper, lower])
    y = torch.cat([torch.zeros(n_out), torch.ones(n_in)])
    return _finish(X, y, noise, g, "moons")


def circles(n_samples: int = 1000, noise: float = 0.05, factor: float = 0.5, seed: int = 0) -> Dataset:
    """A small circle (class 1, radius ``factor``) inside a large one (class 0, radius 1)."""
    _check(n_samples, noise)
    if not 0 < factor < 1:
        raise ValueError(f"factor must lie in (0, 1), got {factor!r}")
    g = torch.Generator().manual_seed(seed)
    n_out = n_samples // 2
    n_in = n_samples - n_out
    t_out = torch.linspace(0, 2 * math.pi, n_out + 1, dtype=torch.float64)[:-1]
    t_in = torch.linspace(0, 2 * math.pi, n_in + 1, dtype=torch.float64)[:-1]
    outer = torch.stack([t_out.cos(), t_out.sin()], 1)
    inner = factor * torch.stack([t_in.cos(), t_in.sin()], 1)
    X = torch.cat([outer, inner])
    y = torch.cat([torch.zeros(n_out), torch.ones(n_in)])
    return _finish(X, y, noise, g, "circles")


def spirals(n_samples: int = 1000, noise: float = 0.1, classes: int = 2, turns: float = 1.5,
            seed: int = 0) -> Dataset:
    """``classes`` interleaved Archimedean spiral arms; arm k is rotated by 2πk/classes.

    A point at parameter s ∈ [0, 1] of arm k sits at radius s and angle 2π·turns·s + 2πk/classes.
    """
    _check(n_samples, noise)
    if classes < 2:
        raise ValueError(f"classes must be >= 2, got {classes!r}")
    if classes > n_samples:  # checked before the per-arm lists are built
        raise ValueError(f"classes must be at most n_samples ({n_samples}), got {classes!r}")
    g = torch.Generator().manual_seed(seed)
    sizes = [n_samples // classes + (1 if k < n_samples % classes else 0) for k in range(classes)]
    Xs, ys = [], []
    for k, m in enumerate(sizes):
        s = torch.linspace(0.05, 1, m, dtype=torch.float64)
        angle = 2 * math.pi * turns * s + 2 * math.pi * k / classes
        Xs.append(torch.stack([s * angle.cos(), s * angle.sin()], 1))
        ys.append(torch.full((m,), k))
    return _finish(torch.cat(Xs), torch.cat(ys), noise, g, "spirals")


def xor(n_samples: int = 1000, noise: float = 0.0, seed: int = 0) -> Dataset:
    """Points uniform in [−1, 1]²; class 1 where x₁·x₂ < 0 (the XOR of the two signs)."""
    _check(n_samples, noise)
    g = torch.Generator().manual_seed(seed)
    X = torch.rand(n_samples, 2, generator=g, dtype=torch.float64) * 2 - 1
    y = (X[:, 0] * X[:, 1] < 0).long()
    return _finish(X, y, noise, g, "xor")


def blobs(n_samples: int = 1000, centers: int = 3, n_features: int = 2, cluster_std: float = 1.0,
          box: float = 10.0, seed: int = 0) -> Dataset:
    """Isotropic Gaussian blobs; centers drawn uniformly in [−box, box]^n_features."""
    _check(n_samples, cluster_std)
    if centers < 1 or n_features < 1:
        raise ValueError("centers and n_features must be >= 1")
    g = torch.Generator().manual_seed(seed)
    mu = (torch.rand(centers, n_features, generator=g, dtype=torch.float64) * 2 - 1) * box
    y = torch.arange(n_samples) % centers
    X = mu[y]
    return _finish(X, y, cluster_std, g, "blobs")


def line(n_points: int = 6, slope: float = 2.0, noise: float = 0.0, seed: int = 0) -> Dataset:
    """The notes' regression toy set {(1, 2), (2, 4), …, (6, 12)}: x = 1..n_points, y = slope·x.

    Returned in order (not shuffled) as float32 columns ``X (n, 1)``, ``y (n, 1)``.
    """
    if n_points < 1:
        raise ValueError(f"n_points must be >= 1, got {n_points!r}")
    g = torch.Generator().manual_seed(seed)
    x = torch.arange(1, n_points + 1, dtype=torch.float64).unsqueeze(1)
    y = slope * x
    if noise > 0:
        y = y + noise * torch.randn(y.shape, generator=g, dtype=y.dtype)
    return Dataset(x.float(), y.float(), "line")


def sine(n_samples: int = 200, noise: float = 0.1, seed: int = 0) -> Dataset:
    """A 1-D regression set: x uniform in [−π, π], y = sin x + noise; float32 ``X (n, 1)``, ``y (n, 1)``."""
    _check(n_samples, noise)
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(n_samples, 1, generator=g, dtype=torch.float64) * 2 - 1) * math.pi
    y = torch.sin(x)
    if noise > 0:
        y = y + noise * torch.randn(y.shape, generator=g, dtype=y.dtype)
    return Dataset(x.float(), y.float(), "sine")


def ripple(n_samples: int = 500, noise: float = 0.05, seed: int = 0) -> Dataset:
    """A 2-D regression set: X uniform in [−1, 1]², y = sin(π x₁)·cos(π x₂) + noise; ``y (n, 1)``."""
    _check(n_samples, noise)
    g = torch.Generator().manual_seed(seed)
    X = torch.rand(n_samples, 2, generator=g, dtype=torch.float64) * 2 - 1
    y = (torch.sin(math.pi * X[:, 0]) * torch.cos(math.pi * X[:, 1])).unsqueeze(1)
    if noise > 0:
        y = y + noise * torch.randn(y.shape, generator=g, dtype=y.dtype)
    return Dataset(X.float(), y.float(), "ripple")
