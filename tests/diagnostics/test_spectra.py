"""Random-matrix laws: the formulas against numerical integration, and concentration with size."""
import math

import numpy as np
import pytest
import torch
from scipy import integrate

from trainlab.diagnostics.spectra import (circular_law_fit, concentration, marchenko_pastur_fit, mp_edges,
                                          mp_eigenvalue_cdf, mp_eigenvalue_pdf, mp_singular_value_pdf)


@pytest.mark.parametrize("q", [0.25, 0.5, 1.0])
def test_mp_density_integrates_to_one_and_cdf_agrees(q):
    lo, hi = (1 - math.sqrt(q)) ** 2, (1 + math.sqrt(q)) ** 2
    total, _ = integrate.quad(lambda x: float(mp_eigenvalue_pdf(np.array([x]), q)[0]), lo, hi, limit=200)
    assert total == pytest.approx(1.0, abs=1e-6)
    for x in (lo + 0.2 * (hi - lo), 1.0, lo + 0.9 * (hi - lo)):
        part, _ = integrate.quad(lambda t: float(mp_eigenvalue_pdf(np.array([t]), q)[0]), lo, x, limit=200)
        assert float(mp_eigenvalue_cdf(np.array([x]), q)[0]) == pytest.approx(part, abs=1e-5)
    # the mean of the law is σ² (here 1): E[λ] = tr(WWᵀ)/(N·M)
    mean, _ = integrate.quad(lambda x: x * float(mp_eigenvalue_pdf(np.array([x]), q)[0]), lo, hi, limit=200)
    assert mean == pytest.approx(1.0, abs=1e-6)


def test_edges_and_singular_value_density():
    lo, hi = mp_edges((200, 800), sigma=0.1)  # σ(√N ∓ √M) with N = 800, M = 200
    assert (lo, hi) == pytest.approx((0.1 * (math.sqrt(800) - math.sqrt(200)), 0.1 * (math.sqrt(800) + math.sqrt(200))))
    assert mp_edges((800, 200), 0.1) == mp_edges((200, 800), 0.1)  # transposing changes nothing
    assert mp_edges((16, 8, 3, 3), 1.0) == mp_edges((16, 72), 1.0)  # a conv kernel as (out, in·k·k)
    total, _ = integrate.quad(lambda s: float(mp_singular_value_pdf(np.array([s]), (200, 800), 0.1)[0]), lo, hi)
    assert total == pytest.approx(1.0, abs=1e-6)


def test_a_gaussian_matrix_follows_marchenko_pastur_and_a_spike_stands_out():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(200, 400, generator=g, dtype=torch.float64) * 0.05
    fit = marchenko_pastur_fit(w)
    assert fit["ks"] < 0.05 and fit["outside_frac"] == 0.0
    assert 0.97 < fit["edge_ratio"] < 1.03 and fit["sigma"] == pytest.approx(0.05, rel=0.01)
    # a rank-one "learned" direction leaves the bulk (what training does to a layer)
    u, v = torch.randn(200, 1, generator=g, dtype=torch.float64), torch.randn(1, 400, generator=g, dtype=torch.float64)
    spiked = w + 3 * 0.05 * u @ v / math.sqrt(200 * 400) * math.sqrt(400)
    fit2 = marchenko_pastur_fit(spiked, sigma=0.05)
    assert fit2["edge_ratio"] > 1.2 and fit2["outside_frac"] > 0


def test_circular_law_fills_the_unit_disc_uniformly():
    a = torch.randn(400, 400, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    fit = circular_law_fit(a)
    r = np.abs(np.array([complex(x, y) for x, y in fit["eigenvalues"]]))
    assert fit["inside_frac"] > 0.99 and fit["ks"] < 0.06
    assert (r <= 0.5).mean() == pytest.approx(0.25, abs=0.04)  # uniform: P(|λ| ≤ r) = r²
    with pytest.raises(ValueError, match="square"):
        circular_law_fit(torch.randn(3, 4))


@pytest.mark.parametrize("law", ["mp", "circular"])
def test_properties_of_random_matrices_concentrate_as_size_grows(law):
    rows = concentration((16, 64, 256), trials=4, law=law, generator=torch.Generator().manual_seed(2))
    ks = [r["ks_mean"] for r in rows]
    assert ks[0] > ks[1] > ks[2] and ks[2] < 0.06
    edge = [r["edge_mean"] for r in rows]
    assert abs(edge[2] - 1) < abs(edge[0] - 1) + 0.02 and abs(edge[2] - 1) < 0.06
    assert rows[2]["ks_std"] < rows[0]["ks_std"]
