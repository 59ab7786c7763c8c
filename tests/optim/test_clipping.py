"""Clipping by value, per-tensor norm and global norm, against torch.nn.utils and the formulas."""
import math

import pytest
import torch

import trainlab.optim as O
from optim_helpers import maxdiff, trajectory


def _params(seed=0, scale=3.0):
    g = torch.Generator().manual_seed(seed)
    ps = [torch.nn.Parameter(torch.randn(s, generator=g, dtype=torch.float64)) for s in [(3, 4), (4,), (2, 2)]]
    for p in ps:
        p.grad = torch.randn(p.shape, generator=g, dtype=torch.float64) * scale
    return ps


@pytest.mark.parametrize("norm_type", [2.0, 1.0, math.inf])
@pytest.mark.parametrize("max_norm", [0.5, 1e3])
def test_clip_grad_norm_matches_torch(norm_type, max_norm):
    ours, ref = _params(), _params()
    n_ours = O.clip_grad_norm_(ours, max_norm, norm_type)
    n_ref = torch.nn.utils.clip_grad_norm_(ref, max_norm, norm_type)
    assert n_ours.item() == pytest.approx(n_ref.item(), rel=1e-14)
    for a, b in zip(ours, ref):
        assert torch.allclose(a.grad, b.grad, rtol=1e-14)
    clipped = O.global_norm([p.grad for p in ours], norm_type).item()
    assert clipped == pytest.approx(min(max_norm, n_ref.item()), rel=1e-5)


def test_clip_grad_value_matches_torch():
    ours, ref = _params(), _params()
    O.clip_grad_value_(ours, 0.7)
    torch.nn.utils.clip_grad_value_(ref, 0.7)
    assert all(torch.equal(a.grad, b.grad) for a, b in zip(ours, ref))
    assert max(p.grad.abs().max().item() for p in ours) == 0.7


def test_nonfinite_norm_is_reported_when_asked():
    ps = _params()
    ps[0].grad[0, 0] = float("nan")
    with pytest.raises(RuntimeError, match="non-finite"):
        O.clip_grad_norm_(ps, 1.0, error_if_nonfinite=True)


@pytest.mark.parametrize("foreach", [True, False])
def test_global_norm_transform_keeps_the_direction_and_caps_the_length(foreach):
    ps = _params()
    grads = [p.grad.clone() for p in ps]
    total = torch.sqrt(sum((g ** 2).sum() for g in grads))
    before = [p.detach().clone() for p in ps]
    O.Chain(ps, [O.ClipByGlobalNorm(1.0), O.ScaleByLearningRate()], lr=1.0, foreach=foreach).step()
    steps = [b - p.detach() for b, p in zip(before, ps)]
    for s, g in zip(steps, grads):
        assert torch.allclose(s, g / (total + 1e-6), rtol=1e-13)


def test_per_tensor_norm_and_value_clipping_by_hand():
    ps = _params()
    grads = [p.grad.clone() for p in ps]
    before = [p.detach().clone() for p in ps]
    O.Chain(ps, [O.ClipByNorm(0.5), O.ScaleByLearningRate()], lr=1.0).step()
    for b, p, g in zip(before, ps, grads):
        assert torch.allclose(b - p.detach(), g * min(1.0, 0.5 / (g.norm().item() + 1e-6)), rtol=1e-13)
    ps = _params()
    grads = [p.grad.clone() for p in ps]
    before = [p.detach().clone() for p in ps]
    O.Chain(ps, [O.ClipByValue(0.25), O.ScaleByLearningRate()], lr=1.0).step()
    for b, p, g in zip(before, ps, grads):
        assert torch.allclose(b - p.detach(), g.clamp(-0.25, 0.25), rtol=0, atol=1e-15)


def test_clipping_inside_sgd_equals_clipping_by_hand_in_a_loop():
    import torch.nn.functional as F
    from optim_helpers import problem
    got = trajectory(lambda p: O.SGD(p, lr=0.5, momentum=0.9).add_transforms(O.ClipByGlobalNorm(0.1)),
                     torch.float64, 30)
    model, X, y = problem(torch.float64)
    opt = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9)
    for i in range(30):
        lo = (i * 8) % 32
        opt.zero_grad()
        F.cross_entropy(model(X[lo:lo + 8]), y[lo:lo + 8]).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 0.1)
        opt.step()
    assert maxdiff(got, torch.cat([p.detach().reshape(-1) for p in model.parameters()])) < 1e-12
