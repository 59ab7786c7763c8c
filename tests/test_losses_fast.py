"""cross_entropy is computed as F.cross_entropy computes it (value and gradient to the last bit),
and agrees with its readable formula (cross_entropy_reference)."""
import pytest
import torch
import torch.nn.functional as F

from trainlab.losses import cross_entropy, cross_entropy_reference

TOL = {torch.float32: 1e-6, torch.float64: 1e-12}


def _inputs(dtype, soft=False, seed=0):
    g = torch.Generator().manual_seed(seed)
    z = (torch.randn(64, 10, generator=g) * 4).to(dtype)
    if soft:
        y = torch.softmax(torch.randn(64, 10, generator=g), 1).to(dtype)
    else:
        y = torch.randint(0, 10, (64,), generator=g)
    return z, y


def _value_and_grad(fn, z, y, eps):
    z = z.clone().requires_grad_()
    loss = fn(z, y, eps)
    loss.backward()
    return loss.detach(), z.grad


def _torch(z, y, eps):
    return F.cross_entropy(z, y, label_smoothing=eps)


@pytest.mark.parametrize("soft", [False, True], ids=["indices", "distribution"])
@pytest.mark.parametrize("eps", [0.0, 0.1])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cross_entropy_is_bit_identical_to_torch(dtype, eps, soft):
    z, y = _inputs(dtype, soft)
    ours, theirs = _value_and_grad(cross_entropy, z, y, eps), _value_and_grad(_torch, z, y, eps)
    assert torch.equal(ours[0], theirs[0]) and torch.equal(ours[1], theirs[1])


@pytest.mark.parametrize("soft", [False, True], ids=["indices", "distribution"])
@pytest.mark.parametrize("eps", [0.0, 0.1])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cross_entropy_matches_its_readable_formula(dtype, eps, soft):
    z, y = _inputs(dtype, soft)
    (v, g), (v_ref, g_ref) = _value_and_grad(cross_entropy, z, y, eps), _value_and_grad(cross_entropy_reference, z, y, eps)
    assert abs(v - v_ref).item() < TOL[dtype] * max(1.0, abs(v_ref).item())
    assert (g - g_ref).abs().max().item() < TOL[dtype]


def test_cross_entropy_double_backward_matches_torch():
    z, y = _inputs(torch.float64)
    z.requires_grad_()
    for fn in (cross_entropy, _torch):
        (g,) = torch.autograd.grad(fn(z, y, 0.1), z, create_graph=True)
        (h,) = torch.autograd.grad(g.square().sum(), z)
        if fn is cross_entropy:
            ours = h
    assert torch.allclose(ours, h, rtol=0, atol=1e-15)
