"""Random-matrix views of weight matrices: Marchenko–Pastur singular values and the circular law.

The notes ask "are the properties of random matrices random?" — no: for large matrices they
concentrate on deterministic laws, which is why a random initialization is predictable.

**Marchenko–Pastur** (Marčenko & Pastur 1967). Let ``W`` be m×n with i.i.d. entries of mean 0 and
variance σ², N = max(m, n), M = min(m, n), ratio q = M/N ≤ 1. The eigenvalues λ = s²/N of
(1/N)·WWᵀ (s the M singular values of W) follow, as N → ∞ with q fixed, the density

    p(λ) = √((λ₊ − λ)(λ − λ₋)) / (2π σ² q λ)   on  [λ₋, λ₊],   λ± = σ²(1 ± √q)²,

so the singular values fill [σ(√N − √M), σ(√N + √M)] with density p(s²/N)·2s/N. The notes write
the edges as (1 ± k/n)√N; the law has the *square root* of the ratio: √N·σ·(1 ± √(M/N)).
A trained layer shows structure as singular values outside the bulk (Martin & Mahoney 2021,
"Implicit self-regularization in deep neural networks").

**Circular law** (Tao & Vu 2010). The eigenvalues of an N×N matrix with i.i.d. entries of mean 0
and variance 1/N are uniformly distributed on the unit disc as N → ∞: the fraction within radius
r ≤ 1 tends to r².

:func:`concentration` shows both laws taking hold as N grows: the Kolmogorov–Smirnov distance to
the law, and its spread over independent draws, shrink with N.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
from torch import Tensor


def matrix_of(weight: Tensor) -> Tensor:
    """A weight as a matrix: ``(out, in)`` for dense layers, ``(out, in·k·k)`` for convolutions."""
    w = weight.detach()
    if w.dim() < 2:
        raise ValueError(f"a weight matrix needs >= 2 dimensions, got shape {tuple(w.shape)}")
    return w.reshape(w.shape[0], -1)


def singular_values(weight: Tensor) -> np.ndarray:
    """Singular values of :func:`matrix_of` ``weight``, descending, in float64."""
    return torch.linalg.svdvals(matrix_of(weight).double().cpu()).numpy()


def mp_edges(shape: Sequence[int], sigma: float) -> tuple[float, float]:
    """The Marchenko–Pastur edges ``(s₋, s₊) = σ(√N − √M), σ(√N + √M)`` of the singular values."""
    m, n = int(shape[0]), int(np.prod(shape[1:]))
    if sigma <= 0 or m < 1 or n < 1:
        raise ValueError(f"need sigma > 0 and a non-empty shape, got sigma={sigma}, shape={tuple(shape)}")
    big, small = max(m, n), min(m, n)
    return sigma * (math.sqrt(big) - math.sqrt(small)), sigma * (math.sqrt(big) + math.sqrt(small))


def mp_eigenvalue_pdf(lam, q: float, sigma: float = 1.0) -> np.ndarray:
    """The Marchenko–Pastur density of λ for ratio ``q`` ∈ (0, 1] and entry variance ``sigma``²."""
    if not 0 < q <= 1:
        raise ValueError(f"q must lie in (0, 1], got {q}")
    lam = np.asarray(lam, dtype=np.float64)
    s2 = sigma * sigma
    lo, hi = s2 * (1 - math.sqrt(q)) ** 2, s2 * (1 + math.sqrt(q)) ** 2
    inside = (lam > lo) & (lam < hi)
    out = np.zeros_like(lam)
    li = lam[inside]
    out[inside] = np.sqrt((hi - li) * (li - lo)) / (2 * math.pi * s2 * q * li)
    return out


def mp_singular_value_pdf(s, shape: Sequence[int], sigma: float) -> np.ndarray:
    """The Marchenko–Pastur density of the singular values of a ``shape`` matrix (entries var σ²)."""
    m, n = int(shape[0]), int(np.prod(shape[1:]))
    big, small = max(m, n), min(m, n)
    s = np.asarray(s, dtype=np.float64)
    return mp_eigenvalue_pdf(s * s / big, small / big, sigma) * 2 * s / big


def mp_eigenvalue_cdf(lam, q: float, sigma: float = 1.0) -> np.ndarray:
    """The Marchenko–Pastur distribution function, integrated numerically.

    With λ = λ₋ + (λ₊ − λ₋)(1 − cos θ)/2 the integrand becomes smooth in θ ∈ [0, π] (the square
    root at the edges cancels against dλ/dθ), so the trapezoid rule is accurate.
    """
    s2 = sigma * sigma
    lo, hi = s2 * (1 - math.sqrt(q)) ** 2, s2 * (1 + math.sqrt(q)) ** 2
    theta = np.linspace(0.0, math.pi, 4097)
    grid = lo + (hi - lo) * (1 - np.cos(theta)) / 2
    half = (hi - lo) / 2
    with np.errstate(divide="ignore", invalid="ignore"):
        integrand = half * half * np.sin(theta) ** 2 / (2 * math.pi * s2 * q * grid)
    integrand[~np.isfinite(integrand)] = 0.0
    if lo == 0.0:  # q = 1: the limit at θ → 0 is finite, 2·half²/(2π σ² · half) · ... from L'Hôpital
        integrand[0] = integrand[1]
    cdf = np.concatenate([[0.0], np.cumsum((integrand[1:] + integrand[:-1]) / 2 * np.diff(theta))])
    cdf /= cdf[-1]
    return np.interp(np.asarray(lam, dtype=np.float64), grid, cdf, left=0.0, right=1.0)


def _ks(sample: np.ndarray, cdf) -> float:
    x = np.sort(np.asarray(sample, dtype=np.float64))
    n = len(x)
    f = cdf(x)
    return float(max(np.max(np.arange(1, n + 1) / n - f), np.max(f - np.arange(0, n) / n)))


def marchenko_pastur_fit(weight: Tensor, sigma: float | None = None, tol: float = 0.05) -> dict:
    """Compare the singular values of ``weight`` with the Marchenko–Pastur law.

    Args:
        weight: a dense or convolution weight (see :func:`matrix_of`).
        sigma: the entry standard deviation of the law; default the matrix's own (for a trained
            layer pass the initial value to see how far training moved away from the bulk).
        tol: relative slack around the edges before a singular value counts as outside.

    Returns:
        ``{"shape", "sigma", "edges", "s_max", "s_min", "edge_ratio" (s_max / s₊), "outside_frac",
        "ks"}`` where ``ks`` is the Kolmogorov–Smirnov distance between the eigenvalues s²/N and
        the law.
    """
    w = matrix_of(weight).double().cpu()
    shape = tuple(w.shape)
    if sigma is None:
        sigma = float(w.std())
    s = singular_values(w)
    lo, hi = mp_edges(shape, sigma)
    big, small = max(shape), min(shape)
    outside = ((s > hi * (1 + tol)) | (s < lo * (1 - tol))).mean()
    ks = _ks(s * s / big, lambda v: mp_eigenvalue_cdf(v, small / big, sigma))
    return {"shape": list(shape), "sigma": sigma, "edges": [lo, hi], "s_max": float(s.max()),
            "s_min": float(s.min()), "edge_ratio": float(s.max() / hi), "outside_frac": float(outside),
            "ks": ks, "singular_values": s.tolist()}


def circular_law_eigenvalues(matrix: Tensor, sigma: float | None = None) -> np.ndarray:
    """Eigenvalues of a square ``matrix`` scaled by 1/(σ√N), as complex numbers (unit disc expected)."""
    a = matrix.detach().double().cpu()
    if a.dim() != 2 or a.shape[0] != a.shape[1]:
        raise ValueError(f"the circular law is about square matrices, got shape {tuple(a.shape)}")
    if sigma is None:
        sigma = float(a.std())
    return torch.linalg.eigvals(a).numpy() / (sigma * math.sqrt(a.shape[0]))


def circular_law_fit(matrix: Tensor, sigma: float | None = None) -> dict:
    """``{"n", "inside_frac" (|λ| ≤ 1.05), "max_modulus", "ks"}`` with ``ks`` the KS distance of
    the moduli |λ| to the law's radial distribution F(r) = r²."""
    ev = circular_law_eigenvalues(matrix, sigma)
    r = np.abs(ev)
    return {"n": int(len(ev)), "inside_frac": float((r <= 1.05).mean()), "max_modulus": float(r.max()),
            "ks": _ks(r, lambda v: np.clip(v, 0, 1) ** 2), "eigenvalues": [[float(z.real), float(z.imag)] for z in ev]}


def concentration(sizes: Sequence[int] = (16, 64, 256), trials: int = 5, *, law: str = "mp", ratio: float = 0.5,
                  generator: torch.Generator | None = None) -> list[dict]:
    """How tightly random matrices follow their law as the size N grows.

    For each N, ``trials`` Gaussian matrices (entries N(0, 1/N); shape ``(⌈ratio·N⌉, N)`` for
    ``law="mp"``, ``(N, N)`` for ``law="circular"``) are drawn and compared with the law. Returns
    one ``{"n", "ks_mean", "ks_std", "edge_mean", "edge_std"}`` per size, where ``edge`` is s_max/s₊
    (MP) or the largest |λ| (circular law), both → 1 as N → ∞.
    """
    if law not in ("mp", "circular"):
        raise ValueError(f"law must be 'mp' or 'circular', got {law!r}")
    if not 0 < ratio <= 1 or trials < 2:
        raise ValueError("need 0 < ratio <= 1 and trials >= 2")
    g = generator if generator is not None else torch.Generator().manual_seed(0)
    rows = []
    for n in sizes:
        ks, edge = [], []
        for _ in range(trials):
            shape = (max(1, math.ceil(ratio * n)), n) if law == "mp" else (n, n)
            a = torch.randn(shape, generator=g, dtype=torch.float64) / math.sqrt(n)
            if law == "mp":
                fit = marchenko_pastur_fit(a, sigma=1 / math.sqrt(n))
                ks.append(fit["ks"])
                edge.append(fit["edge_ratio"])
            else:
                fit = circular_law_fit(a, sigma=1 / math.sqrt(n))
                ks.append(fit["ks"])
                edge.append(fit["max_modulus"])
        rows.append({"n": int(n), "ks_mean": float(np.mean(ks)), "ks_std": float(np.std(ks)),
                     "edge_mean": float(np.mean(edge)), "edge_std": float(np.std(edge))})
    return rows
