"""How the named variants relate to each other and to the textbook algorithms."""
import torch

import trainlab.optim as O
from optim_helpers import maxdiff, trajectory


def _with_lr_drop(make, steps=60, drop_at=30):
    """Trajectory with the lr halved after ``drop_at`` steps (as a schedule would)."""
    from optim_helpers import problem
    model, _, _ = problem(torch.float64)
    opt = make(model.parameters())
    trajectory(None, torch.float64, drop_at, model=model, opt=opt)
    for g in opt.param_groups:
        g["lr"] *= 0.5
    return trajectory(None, torch.float64, steps - drop_at, model=model, opt=opt, start=drop_at)


def test_velocity_form_equals_pytorch_form_at_constant_lr_but_not_when_lr_changes():
    pt = lambda p: O.SGD(p, lr=0.05, momentum=0.9)  # noqa: E731
    vel = lambda p: O.SGD(p, lr=0.05, momentum=0.9, momentum_form="velocity")  # noqa: E731
    assert maxdiff(trajectory(pt, torch.float64, 60), trajectory(vel, torch.float64, 60)) < 1e-12
    # after an lr change the velocity keeps its old steps at the old lr: the runs part
    assert maxdiff(_with_lr_drop(pt), _with_lr_drop(vel)) > 1e-4


def test_ema_form_is_pytorch_form_with_dampening_beta_started_from_zero():
    beta = 0.8
    ema = trajectory(lambda p: O.SGD(p, lr=0.05, momentum=beta, momentum_form="ema"), torch.float64, 50)

    def pytorch_damped(params):
        params = list(params)
        opt = O.SGD(params, lr=0.05, momentum=beta, dampening=beta)
        for p in params:  # PyTorch would start the buffer at g; the EMA starts at 0
            opt.state[p]["momentum_buffer"] = torch.zeros_like(p)
        return opt
    assert maxdiff(ema, trajectory(pytorch_damped, torch.float64, 50)) < 1e-12
    plain = trajectory(lambda p: O.SGD(p, lr=0.05, momentum=beta, dampening=beta), torch.float64, 50)
    assert maxdiff(ema, plain) > 1e-4  # the first step differs, and it shows


def _quadratic_nag(form, nesterov_form, steps=30):
    """θ on f(θ) = ½θᵀAθ with the closure counting where the gradient was taken."""
    A = torch.tensor([[3.0, 0.5], [0.5, 1.0]], dtype=torch.float64)
    theta = torch.nn.Parameter(torch.tensor([1.0, -2.0], dtype=torch.float64))
    opt = O.SGD([theta], lr=0.1, momentum=0.9, nesterov=True, momentum_form=form, nesterov_form=nesterov_form)
    path, evaluated_at = [], []

    def closure():
        opt.zero_grad()
        evaluated_at.append(theta.detach().clone())
        loss = 0.5 * theta @ A @ theta
        loss.backward()
        return loss
    for _ in range(steps):
        opt.step(closure)
        path.append(theta.detach().clone())
    return torch.stack(path), torch.stack(evaluated_at), opt, theta, A


def test_true_lookahead_follows_algorithm_8_3_by_hand():
    path, at, _, _, A = _quadratic_nag("velocity", "lookahead", steps=5)
    eps, alpha = 0.1, 0.9
    theta, v = torch.tensor([1.0, -2.0], dtype=torch.float64), torch.zeros(2, dtype=torch.float64)
    for k in range(5):
        interim = theta + alpha * v                 # apply interim update
        assert torch.allclose(at[k], interim, atol=1e-15)   # the gradient is taken there
        g = A @ interim
        v = alpha * v - eps * g
        theta = theta + v
        assert torch.allclose(path[k], theta, rtol=1e-14, atol=1e-15)


def test_pytorch_nesterov_iterates_are_the_lookahead_points_of_the_true_method():
    """Sutskever's reformulation tracks φ = θ + αv of Alg. 8.3 exactly (constant lr)."""
    for form in ("pytorch", "velocity"):
        true_path, _, opt, theta, _ = _quadratic_nag(form, "lookahead")
        reform_path, _, _, _, _ = _quadratic_nag(form, "pytorch")
        # rebuild the lookahead points of the true run step by step
        true_path2, at, opt2, theta2, A = _quadratic_nag(form, "lookahead")
        lookahead_points = at[1:]                    # where step k+1 evaluated = θ_k + α v_k
        assert torch.allclose(reform_path[:-1], lookahead_points, rtol=1e-12, atol=1e-13)
        assert maxdiff(true_path[-1], reform_path[-1]) > 1e-6  # yet the iterates themselves differ


def test_lookahead_without_closure_is_refused():
    import pytest
    p = torch.nn.Parameter(torch.ones(2))
    opt = O.SGD([p], lr=0.1, momentum=0.9, nesterov=True, nesterov_form="lookahead")
    p.grad = torch.ones(2)
    with pytest.raises(RuntimeError, match="closure"):
        opt.step()
