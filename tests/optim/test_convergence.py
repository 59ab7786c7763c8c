"""Every optimizer converges on an ill-conditioned quadratic and on Rosenbrock (a table-driven check).

Each row gives the settings that work for that method; the slow ones say so in their budget.
Adaptive methods with a constant lr bounce around Rosenbrock's minimum (RMSprop, Adadelta): as
Robbins–Monro require, they get an annealed lr (cosine) to settle.
"""
import pytest
import torch

import trainlab.optim as O
from trainlab import schedules as S


def quadratic(v):
    x, y = float(v[0]), float(v[1])
    return 0.5 * (x * x + 50 * y * y), torch.tensor([x, 50 * y], dtype=torch.float64)


def rosenbrock(v):
    x, y = float(v[0]), float(v[1])
    return ((1 - x) ** 2 + 100 * (y - x * x) ** 2,
            torch.tensor([-2 * (1 - x) - 400 * x * (y - x * x), 200 * (y - x * x)], dtype=torch.float64))


def steps_to(function, start, make, budget, tol, anneal=False):
    """Steps until f ≤ tol (None if the budget runs out); gradients by formula, or autograd for Newton."""
    p = torch.nn.Parameter(torch.tensor(start, dtype=torch.float64))
    opt = make([p])
    sched = S.as_lr_scheduler(opt, S.Cosine(total_steps=budget)) if anneal else None

    def closure(backward=True):
        if isinstance(opt, O.Newton):  # Newton needs the graph
            x, y = p[0], p[1]
            f = 0.5 * (x * x + 50 * y * y) if function is quadratic else (1 - x) ** 2 + 100 * (y - x * x) ** 2
            if backward:
                opt.zero_grad()
                f.backward()
            return f
        f, g = function(p.detach())
        p.grad = g
        return torch.tensor(f, dtype=torch.float64)
    for t in range(1, budget + 1):
        opt.step(closure)
        if function(p.detach())[0] <= tol:
            return t
        if sched is not None:
            sched.step()
    return None


CASES = {
    # name: (quadratic factory, budget), (rosenbrock factory, budget, anneal)
    "sgd-momentum": ((lambda p: O.SGD(p, lr=0.01, momentum=0.9), 300),
                     (lambda p: O.SGD(p, lr=3e-3, momentum=0.9), 500, False)),
    "adagrad": ((lambda p: O.Adagrad(p, lr=1.0), 200), (lambda p: O.Adagrad(p, lr=0.1), 3000, False)),
    "rmsprop": ((lambda p: O.RMSprop(p, lr=0.3), 100), (lambda p: O.RMSprop(p, lr=0.01), 2000, True)),
    "adadelta": ((lambda p: O.Adadelta(p, lr=1.0, eps=1e-3), 300), (lambda p: O.Adadelta(p, lr=0.3), 6000, True)),
    "adam": ((lambda p: O.Adam(p, lr=0.1), 300), (lambda p: O.Adam(p, lr=0.1), 500, False)),
    "adamw": ((lambda p: O.AdamW(p, lr=0.1, weight_decay=1e-4), 300),
              (lambda p: O.AdamW(p, lr=0.1, weight_decay=1e-4), 500, False)),
    "adamax": ((lambda p: O.Adamax(p, lr=1.0), 300), (lambda p: O.Adamax(p, lr=0.1), 800, False)),
    "nadam": ((lambda p: O.NAdam(p, lr=0.3), 200), (lambda p: O.NAdam(p, lr=0.01), 2000, True)),
    "rprop": ((lambda p: O.Rprop(p, lr=0.3), 100), (lambda p: O.Rprop(p, lr=0.01), 2000, False)),
    "delta-bar-delta": ((lambda p: O.DeltaBarDelta(p, lr=0.1, kappa=0.01, phi=0.3), 100),
                        (lambda p: O.DeltaBarDelta(p, lr=0.01, kappa=1e-3, phi=0.3), 2000, False)),
    "newton": ((lambda p: O.Newton(p), 2), (lambda p: O.Newton(p, damping=1e-3), 50, False)),
    "nonlinear-cg": ((lambda p: O.NonlinearCG(p), 3), (lambda p: O.NonlinearCG(p), 200, False)),
    "lbfgs": ((lambda p: O.LBFGS(p), 2), (lambda p: O.LBFGS(p, line_search_fn="strong_wolfe"), 20, False)),
}


@pytest.mark.parametrize("name", list(CASES))
def test_converges_on_an_ill_conditioned_quadratic(name):
    (make, budget), _ = CASES[name]
    assert steps_to(quadratic, (-4.0, 1.0), make, budget, 1e-6) is not None


@pytest.mark.parametrize("name", list(CASES))
def test_converges_on_rosenbrock(name):
    _, (make, budget, anneal) = CASES[name]
    assert steps_to(rosenbrock, (0.0, 0.0), make, budget, 1e-3, anneal) is not None


def test_rmsprop_needs_the_annealing_adagrad_does_not():
    """Without annealing RMSprop keeps bouncing around the minimum (it 'keeps moving')."""
    _, (make, budget, _) = CASES["rmsprop"]
    assert steps_to(rosenbrock, (0.0, 0.0), make, budget, 1e-3, anneal=False) is None
