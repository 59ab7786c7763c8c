"""Newton, nonlinear CG and L-BFGS: analytic properties (quadratics) and use inside fit."""
import pytest
import torch
import torch.nn.functional as F

import trainlab.optim as O
from optim_helpers import problem


def spd(n, cond=100.0, seed=0):
    """A random symmetric positive-definite n×n matrix with eigenvalues from 1 to ``cond``."""
    g = torch.Generator().manual_seed(seed)
    Q, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))
    eig = torch.logspace(0, torch.log10(torch.tensor(cond)).item(), n, dtype=torch.float64)
    return Q @ torch.diag(eig) @ Q.T, torch.randn(n, generator=g, dtype=torch.float64)


def quadratic_closure(theta, A, b, opt, record=None):
    def closure(backward=True):
        if record is not None:
            record.append(theta.detach().clone())
        if backward:
            opt.zero_grad()
        loss = 0.5 * theta @ A @ theta - b @ theta
        if backward:
            loss.backward()
        return loss
    return closure


def test_newton_minimizes_a_quadratic_in_one_step():
    A, b = spd(6)
    theta = torch.nn.Parameter(torch.randn(6, dtype=torch.float64))
    opt = O.Newton([theta])
    opt.step(quadratic_closure(theta, A, b, opt))
    assert torch.allclose(theta.detach(), torch.linalg.solve(A, b), rtol=1e-10, atol=1e-12)


def test_newton_damped_step_by_hand():
    A, b = spd(4, cond=10)
    theta0 = torch.tensor([1.0, -1.0, 0.5, 2.0], dtype=torch.float64)
    theta = torch.nn.Parameter(theta0.clone())
    opt = O.Newton([theta], lr=0.5, damping=2.0)
    opt.step(quadratic_closure(theta, A, b, opt))
    g = A @ theta0 - b
    want = theta0 - 0.5 * torch.linalg.solve(A + 2.0 * torch.eye(4, dtype=torch.float64), g)
    assert torch.allclose(theta.detach(), want, rtol=1e-12)


def test_newton_hessian_matches_torch_func_on_an_mlp():
    model, X, y = problem(torch.float64)
    params = list(model.parameters())
    loss = F.cross_entropy(model(X), y)
    g, H = O.Newton.hessian(loss, params)
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for p in params]

    def f(flat):
        chunks = flat.split([s.numel() for s in shapes])
        ps = {n: c.view(s) for n, c, s in zip(names, chunks, shapes)}
        return F.cross_entropy(torch.func.functional_call(model, ps, (X,)), y)
    flat = torch.cat([p.detach().reshape(-1) for p in params])
    assert torch.allclose(H, torch.func.hessian(f)(flat), rtol=1e-10, atol=1e-12)
    assert torch.allclose(g, torch.func.grad(f)(flat), rtol=1e-12, atol=1e-14)


def test_newton_explains_what_closure_it_needs_and_when_to_damp():
    theta = torch.nn.Parameter(torch.ones(2, dtype=torch.float64))
    opt = O.Newton([theta])

    def plain_closure():
        opt.zero_grad()
        loss = (theta ** 2).sum()
        loss.backward()
        return loss
    with pytest.raises(TypeError, match="backward=False"):
        opt.step(plain_closure)
    flat = torch.zeros((2, 2), dtype=torch.float64)  # f = x₀ (linear): H = 0, singular
    with pytest.raises(RuntimeError, match="damping"):
        opt.step(quadratic_closure(theta, flat, torch.tensor([1.0, 0.0], dtype=torch.float64), opt))


@pytest.mark.parametrize("beta", ["fletcher_reeves", "polak_ribiere", "polak_ribiere_plus"])
def test_cg_finishes_an_n_dimensional_quadratic_in_n_steps_with_conjugate_directions(beta):
    # condition number 20: rounding stays near 1e-13. At 1e3 finite-precision CG — ours and the
    # textbook linear CG alike — loses conjugacy and ends n steps at a residual near 1e-5.
    n = 8
    A, b = spd(n, cond=20.0, seed=1)
    theta = torch.nn.Parameter(torch.zeros(n, dtype=torch.float64))
    opt = O.NonlinearCG([theta], beta=beta)
    closure = quadratic_closure(theta, A, b, opt)
    g0 = (A @ theta.detach() - b).norm()
    directions = []
    for _ in range(n):
        opt.step(closure)
        directions.append(opt.state[theta]["d"].clone())
    assert (A @ theta.detach() - b).norm() < 1e-9 * g0
    assert torch.allclose(theta.detach(), torch.linalg.solve(A, b), rtol=1e-8)
    D = torch.stack(directions)
    conj = D @ A @ D.T                                      # dᵢᵀ A dⱼ
    scale = torch.sqrt(torch.diag(conj)[:, None] * torch.diag(conj)[None, :])
    off = (conj / scale) - torch.eye(n, dtype=torch.float64)
    assert off.abs().max() < 1e-6


def test_steepest_descent_with_exact_line_search_needs_far_more_steps_than_cg():
    """The zig-zag CG avoids (notes 002): restarting every step makes CG steepest descent."""
    n = 8
    A, b = spd(n, cond=20.0, seed=1)
    theta = torch.nn.Parameter(torch.zeros(n, dtype=torch.float64))
    opt = O.NonlinearCG([theta], restart=1)
    closure = quadratic_closure(theta, A, b, opt)
    for _ in range(n):
        opt.step(closure)
    assert (A @ theta.detach() - b).norm() > 1e-3 * b.norm()


@pytest.mark.parametrize("opt_kwargs", [
    (O.NonlinearCG, {}), (O.NonlinearCG, {"line_search": "strong_wolfe", "beta": "fletcher_reeves"}),
    (O.LBFGS, {"line_search_fn": "strong_wolfe"}), (O.Newton, {"damping": 1e-3}),
], ids=["cg-secant", "cg-wolfe-fr", "lbfgs", "newton"])
def test_curvature_methods_reach_the_rosenbrock_minimum(opt_kwargs):
    cls, kwargs = opt_kwargs
    xy = torch.nn.Parameter(torch.tensor([-1.5, 2.0], dtype=torch.float64))
    opt = cls([xy], **kwargs)

    def closure(backward=True):
        if backward:
            opt.zero_grad()
        x, y = xy[0], xy[1]
        loss = (1 - x) ** 2 + 100 * (y - x ** 2) ** 2
        if backward:
            loss.backward()
        return loss
    for _ in range(200):
        opt.step(closure)
    assert torch.allclose(xy.detach(), torch.ones(2, dtype=torch.float64), atol=1e-5)


@pytest.mark.parametrize("name,kwargs", [("Newton", {"damping": 1.0, "lr": 0.5}), ("NonlinearCG", {}), ("LBFGS", {}),
                                         ("SGD", {"lr": 0.5, "momentum": 0.9, "nesterov": True,
                                                  "nesterov_form": "lookahead"})])
def test_closure_optimizers_train_inside_fit(name, kwargs):
    from trainlab import fit
    from trainlab.data import toy
    data = toy.moons(n_samples=200, noise=0.1, seed=0)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(2, 6), torch.nn.Tanh(), torch.nn.Linear(6, 2))
    opt = getattr(O, name)(model.parameters(), **kwargs)
    history = fit(model, data, loss="cross_entropy", optimizer=opt, epochs=8, batch_size="full",
                  verbose=False, seed=0)
    assert history["loss"][-1] < 0.8 * history["loss"][0]
