"""Landscape tools against quadratics with known Hessians (float64) and the definitions of Li et al."""
import math

import pytest
import torch
from torch import nn

from trainlab.diagnostics.landscape import (filter_normalized_direction, filter_normalized_slice, flat_parameters,
                                            gradient_curvature, hessian_top_eigenvalue, hvp, line_profile)


class Quadratic(nn.Module):
    """L(θ) = ½ θᵀAθ − bᵀθ through the usual (model, loss_fn, data) interface: the model returns θ."""

    def __init__(self, n):
        super().__init__()
        self.theta = nn.Parameter(torch.zeros(n, dtype=torch.float64))

    def forward(self, x):
        return self.theta


def quadratic(eigs, seed=0):
    g = torch.Generator().manual_seed(seed)
    n = len(eigs)
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))
    A = q @ torch.diag(torch.tensor(eigs, dtype=torch.float64)) @ q.T
    b = torch.randn(n, generator=g, dtype=torch.float64)
    model = Quadratic(n)
    with torch.no_grad():
        model.theta.copy_(torch.randn(n, generator=g, dtype=torch.float64))
    loss_fn = lambda th, y: 0.5 * th @ A @ th - b @ th
    data = (torch.zeros(1, 1, dtype=torch.float64), torch.zeros(1))
    return model, loss_fn, data, A, b


def test_hvp_is_the_hessian_times_v():
    model, loss_fn, data, A, _ = quadratic([3.0, 1.0, 0.5, -2.0])
    v = torch.tensor([1.0, -2.0, 0.5, 3.0], dtype=torch.float64)
    torch.testing.assert_close(hvp(model, loss_fn, data, v), A @ v, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("method", ["lanczos", "power"])
def test_top_eigenvalue_of_a_known_positive_definite_hessian(method):
    eigs = [100.0] + [float(x) for x in torch.linspace(0.1, 40.0, 49)]
    model, loss_fn, data, A, _ = quadratic(eigs, seed=1)
    before = flat_parameters(model)
    lam, v = hessian_top_eigenvalue(model, loss_fn, data, method=method, iters=200, tol=1e-14,
                                    generator=torch.Generator().manual_seed(0), return_vector=True)
    assert lam == pytest.approx(100.0, abs=1e-6)
    assert float((A @ v - lam * v).norm()) < 1e-4        # the vector is the eigenvector
    assert torch.equal(flat_parameters(model), before)


def test_lanczos_finds_the_largest_algebraic_eigenvalue_at_a_saddle_and_power_the_largest_magnitude():
    eigs = [5.0, 2.0, 1.0, 0.3, -9.0, -1.0]
    model, loss_fn, data, A, _ = quadratic(eigs, seed=2)
    exact = torch.linalg.eigvalsh(A)
    lanczos = hessian_top_eigenvalue(model, loss_fn, data, method="lanczos", generator=torch.Generator().manual_seed(3))
    power = hessian_top_eigenvalue(model, loss_fn, data, method="power", iters=500, tol=1e-15,
                                   generator=torch.Generator().manual_seed(3))
    assert lanczos == pytest.approx(float(exact[-1]), abs=1e-6)    # 5
    assert power == pytest.approx(-9.0, abs=1e-6)                  # |−9| > 5: power iteration's limit


def test_sharpness_of_least_squares_through_a_linear_layer():
    # L = ½·mean((Xw + c − y)²): the Hessian over (w, c) is [X 1]ᵀ[X 1]/n, known in closed form
    g = torch.Generator().manual_seed(4)
    X = torch.randn(64, 5, generator=g, dtype=torch.float64) * torch.tensor([3.0, 1.0, 1.0, 0.5, 0.1], dtype=torch.float64)
    y = torch.randn(64, 1, generator=g, dtype=torch.float64)
    model = nn.Linear(5, 1).double()
    loss_fn = lambda out, t: 0.5 * ((out - t) ** 2).mean()
    Z = torch.cat([X, torch.ones(64, 1, dtype=torch.float64)], 1)
    exact = float(torch.linalg.eigvalsh(Z.T @ Z / 64)[-1])
    assert hessian_top_eigenvalue(model, loss_fn, (X, y)) == pytest.approx(exact, abs=1e-6)
    # batches: the size-weighted mean gives the same Hessian
    batches = [(X[:40], y[:40]), (X[40:], y[40:])]
    assert hessian_top_eigenvalue(model, loss_fn, batches) == pytest.approx(exact, abs=1e-6)


def test_gradient_curvature_is_gTHg_over_gTg():
    model, loss_fn, data, A, b = quadratic([4.0, 1.0, 0.25], seed=5)
    th = model.theta.detach()
    gvec = A @ th - b
    out = gradient_curvature(model, loss_fn, data)
    assert out["gTg"] == pytest.approx(float(gvec @ gvec), rel=1e-12)
    assert out["gTHg"] == pytest.approx(float(gvec @ A @ gvec), rel=1e-12)
    assert 0.25 <= out["curvature"] <= 4.0
    # the second-order model is exact on a quadratic: a step of critical_lr leaves the loss unchanged
    eps = out["critical_lr"]
    before, after = loss_fn(th, None), loss_fn(th - eps * gvec, None)
    assert float(after) == pytest.approx(float(before), rel=1e-10, abs=1e-12)
    assert float(loss_fn(th - 1.01 * eps * gvec, None)) > float(before)


def test_line_profile_is_exact_on_a_quadratic_and_has_no_barrier():
    model, loss_fn, data, A, b = quadratic([2.0, 1.0, 0.5], seed=6)
    theta0 = flat_parameters(model)
    theta1 = torch.linalg.solve(A, b)        # the minimum
    alphas = [-0.5, 0.0, 0.25, 0.5, 1.0, 1.5]
    out = line_profile(model, loss_fn, data, theta0, theta1, alphas)
    for a, l in zip(alphas, out["losses"]):
        th = (1 - a) * theta0 + a * theta1
        assert l == pytest.approx(float(0.5 * th @ A @ th - b @ th), rel=1e-12, abs=1e-12)
    assert out["monotone"] and out["max_barrier"] <= 1e-12
    assert torch.equal(flat_parameters(model), theta0)


def test_line_profile_sees_the_barrier_of_a_double_well():
    model = Quadratic(1)
    loss_fn = lambda th, y: ((th ** 2 - 1) ** 2).sum()        # minima at ±1, barrier 1 at 0
    data = (torch.zeros(1, 1), torch.zeros(1))
    out = line_profile(model, loss_fn, data, torch.tensor([-1.0], dtype=torch.float64),
                       torch.tensor([1.0], dtype=torch.float64), [0.0, 0.25, 0.5, 0.75, 1.0])
    assert out["max_barrier"] == pytest.approx(1.0) and not out["monotone"]


def test_filter_normalized_directions_and_slice():
    torch.manual_seed(7)
    model = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.Tanh(), nn.Linear(6, 3))
    d = filter_normalized_direction(model, torch.Generator().manual_seed(0))
    offset = 0
    for p in model.parameters():
        part = d[offset:offset + p.numel()].view_as(p)
        offset += p.numel()
        if p.dim() == 1:
            assert (part == 0).all()                                      # biases and BN γ, β
        else:
            torch.testing.assert_close(part.norm(dim=1), p.detach().norm(dim=1))   # filter by filter
    x, y = torch.randn(32, 4), torch.randint(0, 3, (32,))
    loss_fn = nn.functional.cross_entropy
    model.train()
    before = flat_parameters(model)
    out = filter_normalized_slice(model, loss_fn, (x, y), steps=5, span=0.5, generator=torch.Generator().manual_seed(1))
    assert len(out["a"]) == len(out["b"]) == 5 and all(len(row) == 5 for row in out["losses"])
    assert out["a"][0] == -0.5 and out["a"][-1] == 0.5
    model.eval()
    with torch.no_grad():
        at_center = float(loss_fn(model(x), y))
    assert out["losses"][2][2] == pytest.approx(at_center, rel=1e-6) and out["center_loss"] == pytest.approx(at_center)
    assert torch.equal(flat_parameters(model), before)


def test_conv_filters_are_normalized_per_output_channel():
    model = nn.Sequential(nn.Conv2d(2, 4, 3), nn.Flatten(), nn.Linear(4 * 4 * 4, 2))
    d = filter_normalized_direction(model, torch.Generator().manual_seed(0))
    w = model[0].weight
    part = d[:w.numel()].view_as(w)
    torch.testing.assert_close(part.flatten(1).norm(dim=1), w.detach().flatten(1).norm(dim=1))


def test_bad_arguments_are_refused():
    model, loss_fn, data, _, _ = quadratic([1.0, 2.0])
    with pytest.raises(ValueError, match="method"):
        hessian_top_eigenvalue(model, loss_fn, data, method="arnoldi")
    with pytest.raises(ValueError, match="steps"):
        filter_normalized_slice(model, loss_fn, data, steps=1)
    with pytest.raises(ValueError, match="differ in size"):
        line_profile(model, loss_fn, data, torch.zeros(2), torch.zeros(3))
