"""Random matrices at initialization: the circular law and the Marchenko–Pastur law (notes 000)."""
from __future__ import annotations

import math

import numpy as np
import torch

from trainlab.experiments.report import Section
from trainlab.experiments.studies import Outcome, StudyContext


def _gaussian(shape, sigma: float, g: torch.Generator) -> torch.Tensor:
    # the matrix an initializer draws: i.i.d. N(0, σ²) entries
    return torch.randn(shape, generator=g, dtype=torch.float64) * sigma


def random_matrices(ctx: StudyContext, *, n: int = 400, mp_shape: list[int] = (200, 800), sizes: list[int] = (16, 64, 256),
                    trials: int = 5) -> Outcome:
    """Eigenvalues of an n×n matrix with entries N(0, 1/n), singular values of a k×N matrix, and how
    both concentrate as the size grows.

    Circular law: the eigenvalues of A (n×n, entries i.i.d. with mean 0 and variance 1/n) fill the
    unit disc uniformly as n → ∞, so the fraction with |λ| ≤ r tends to r².
    Marchenko–Pastur: the singular values of a k×N matrix with i.i.d. N(0, 1) entries (k ≤ N) fill
    [√N − √k, √N + √k] = (1 ± √(k/N))·√N with the Marchenko–Pastur density.
    Concentration: these are not random properties of random matrices: the Kolmogorov–Smirnov
    distance to the law shrinks as the size grows. Measured with :mod:`trainlab.diagnostics.spectra`.
    """
    from trainlab.diagnostics import spectra
    from trainlab.experiments.plots import plot_eigenvalues, plot_histogram_density, plot_panels

    g = torch.Generator().manual_seed(ctx.seed)
    metrics: dict[str, float] = {}
    A = _gaussian((n, n), 1 / math.sqrt(n), g)
    circ = spectra.circular_law_fit(A, sigma=1 / math.sqrt(n))
    eig = np.array([complex(re, im) for re, im in circ["eigenvalues"]])
    r = np.abs(eig)
    metrics["circular.inside_frac"] = circ["inside_frac"]
    metrics["circular.max_modulus"] = circ["max_modulus"]
    metrics["circular.ks"] = circ["ks"]
    metrics["circular.frac_within_half"] = float((r <= 0.5).mean())  # uniform on the disc: 0.25

    k, N = int(mp_shape[0]), int(mp_shape[1])
    B = _gaussian((k, N), 1.0, g)
    mp = spectra.marchenko_pastur_fit(B, sigma=1.0)
    s = np.asarray(mp["singular_values"])
    lo, hi = math.sqrt(N) - math.sqrt(k), math.sqrt(N) + math.sqrt(k)
    metrics["mp.ks"] = mp["ks"]
    metrics["mp.outside_frac"] = mp["outside_frac"]
    metrics["mp.s_min_over_edge"] = float(s.min() / lo)
    metrics["mp.s_max_over_edge"] = float(s.max() / hi)
    metrics["mp.edges_lo"], metrics["mp.edges_hi"] = mp["edges"]

    rows_c = spectra.concentration(sizes, trials, law="circular", generator=g)
    rows_m = spectra.concentration(sizes, trials, law="mp", ratio=k / N, generator=g)
    metrics["concentration.circular_ks_small"] = rows_c[0]["ks_mean"]
    metrics["concentration.circular_ks_large"] = rows_c[-1]["ks_mean"]
    metrics["concentration.mp_ks_small"] = rows_m[0]["ks_mean"]
    metrics["concentration.mp_ks_large"] = rows_m[-1]["ks_mean"]
    metrics["concentration.mp_edge_std_small"] = rows_m[0]["edge_std"]
    metrics["concentration.mp_edge_std_large"] = rows_m[-1]["edge_std"]

    fig_c = plot_eigenvalues(eig, ctx.path("circular_law.png"),
                             title=f"eigenvalues of a {n}×{n} matrix, entries N(0, 1/{n})")
    xs = np.linspace(max(lo * 0.9, 1e-6), hi * 1.05, 400)
    fig_m = plot_histogram_density(s, ctx.path("marchenko_pastur.png"),
                                   density=(xs, spectra.mp_singular_value_pdf(xs, (k, N), 1.0)),
                                   xlabel="singular value", title=f"{k}×{N} matrix, entries N(0, 1)")
    fig_k = plot_panels([{"title": "distance to the law shrinks with the size", "xlabel": "N",
                          "ylabel": "Kolmogorov–Smirnov distance", "logx": True, "logy": True, "markers": True,
                          "series": {"circular law": ([r["n"] for r in rows_c], [r["ks_mean"] for r in rows_c]),
                                     "Marchenko–Pastur": ([r["n"] for r in rows_m], [r["ks_mean"] for r in rows_m])}}],
                        ctx.path("concentration.png"))
    sections = [
        Section("Circular law", text=[
            f"{circ['inside_frac']:.3f} of the eigenvalues lie within |λ| ≤ 1.05, the largest modulus is "
            f"{circ['max_modulus']:.3f}, {metrics['circular.frac_within_half']:.3f} lie within |λ| ≤ 0.5 "
            f"(uniform on the disc: 0.25); KS distance of |λ| to F(r) = r²: {circ['ks']:.4f}."],
            figures=[("eigenvalues and the unit circle", fig_c)]),
        Section("Marchenko–Pastur", text=[
            f"Singular values of a {k}×{N} matrix fill [{s.min():.2f}, {s.max():.2f}]; the law's edges are "
            f"√N ∓ √k = [{lo:.2f}, {hi:.2f}]. KS distance of s²/N to the law: {mp['ks']:.4f}.",
            "The notes write the edges as (1 ± k/n)√N; the law has the square root: (1 ± √(k/N))·√N."],
            figures=[("histogram of singular values and the Marchenko–Pastur density", fig_m)]),
        Section("Are the properties of random matrices random?", text=[
            "No: they concentrate. Mean KS distance over draws, per size:"],
            table=(("N", "circular law KS", "Marchenko–Pastur KS", "MP edge ratio std"),
                   [(a["n"], a["ks_mean"], b["ks_mean"], b["edge_std"]) for a, b in zip(rows_c, rows_m)]),
            figures=[("concentration", fig_k)]),
    ]
    return Outcome(metrics, sections, {"concentration_circular": rows_c, "concentration_mp": rows_m})
