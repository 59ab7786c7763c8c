"""Batch norm, layer norm and weight norm against PyTorch and against their formulas."""
import copy

import pytest
import torch
from torch import nn

from trainlab.nn import BatchNorm1d, BatchNorm2d, LayerNorm, WeightNorm, remove_weight_norm, weight_norm

# float64: the algorithms must agree to rounding. float32 over many training steps: the sums are
# taken in a different order than PyTorch's fused kernel, so parameters drift apart by rounding and
# absolute differences scale with the size of the values (~4 here): torch.testing's float32
# defaults (rtol 1.3e-6, atol 1e-5). A single float32 step is held to 1e-6 against the float64
# result in test_batch_norm_single_float32_step_against_float64.
TOL = {torch.float32: dict(), torch.float64: dict(rtol=1e-12, atol=1e-12)}


def _pair(ours_cls, torch_cls, *args, dtype=torch.float64, **kwargs):
    ours, ref = ours_cls(*args, **kwargs).to(dtype), torch_cls(*args, **kwargs).to(dtype)
    with torch.no_grad():
        for p in (ours.weight, ref.weight):
            if p is not None:
                p.copy_(torch.linspace(0.5, 1.5, p.numel(), dtype=dtype).view_as(p))
        for p in (ours.bias, ref.bias):
            if p is not None:
                p.copy_(torch.linspace(-0.3, 0.3, p.numel(), dtype=dtype).view_as(p))
    return ours, ref


def _params(m):
    return [p for p in (m.weight, m.bias) if p is not None]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("cls,torch_cls,shape", [
    (BatchNorm1d, nn.BatchNorm1d, (16, 6)), (BatchNorm1d, nn.BatchNorm1d, (8, 6, 5)),
    (BatchNorm2d, nn.BatchNorm2d, (4, 6, 5, 3)),
])
@pytest.mark.parametrize("momentum", [0.1, 0.3, None])
def test_batch_norm_matches_pytorch_over_many_steps(cls, torch_cls, shape, momentum, dtype):
    """Outputs, all gradients and the running statistics agree step after step, then in eval mode."""
    ours, ref = _pair(cls, torch_cls, 6, momentum=momentum, dtype=dtype)
    opt_o = torch.optim.SGD(ours.parameters(), lr=0.1)
    opt_r = torch.optim.SGD(ref.parameters(), lr=0.1)
    gen = torch.Generator().manual_seed(0)
    for step in range(25):
        x = (torch.randn(shape, generator=gen, dtype=dtype) * 2 + 3)
        g = torch.randn(shape, generator=gen, dtype=dtype)
        x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
        y1, y2 = ours(x1), ref(x2)
        torch.testing.assert_close(y1, y2, **TOL[dtype])
        opt_o.zero_grad()
        opt_r.zero_grad()
        y1.backward(g)
        y2.backward(g)
        torch.testing.assert_close(x1.grad, x2.grad, **TOL[dtype])
        for a, b in zip(_params(ours), _params(ref)):
            torch.testing.assert_close(a.grad, b.grad, **TOL[dtype])
        opt_o.step()
        opt_r.step()
        torch.testing.assert_close(ours.running_mean, ref.running_mean, **TOL[dtype])
        torch.testing.assert_close(ours.running_var, ref.running_var, **TOL[dtype])
        assert int(ours.num_batches_tracked) == int(ref.num_batches_tracked) == step + 1
    ours.eval()
    ref.eval()
    x = torch.randn(shape, generator=gen, dtype=dtype).requires_grad_()
    x2 = x.detach().clone().requires_grad_()
    torch.testing.assert_close(ours(x), ref(x2), **TOL[dtype])
    ours(x).sum().backward()
    ref(x2).sum().backward()
    torch.testing.assert_close(x.grad, x2.grad, **TOL[dtype])


@pytest.mark.parametrize("cls,torch_cls,shape", [(BatchNorm1d, nn.BatchNorm1d, (128, 256)),
                                                 (BatchNorm1d, nn.BatchNorm1d, (8, 6, 5)),
                                                 (BatchNorm2d, nn.BatchNorm2d, (4, 6, 5, 3))])
def test_batch_norm_single_float32_step_against_float64(cls, torch_cls, shape):
    """Elementwise results within 1e-6 of the float64 result; the γ/β gradients (sums over the
    batch, magnitude ~30) at least as accurate as PyTorch's own float32 kernel."""
    c = shape[1]
    ours, ref32 = _pair(cls, torch_cls, c, dtype=torch.float32)
    ref = torch_cls(c).double()
    ref.load_state_dict(ref32.state_dict())
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(shape, generator=gen) * 2 + 3
    g = torch.randn(shape, generator=gen)
    x1, x2 = x.clone().requires_grad_(), x.double().requires_grad_()
    y1, y2 = ours(x1), ref(x2)
    torch.testing.assert_close(y1, y2.float(), rtol=1e-6, atol=1e-6)
    y1.backward(g)
    y2.backward(g.double())
    ref32(x).backward(g)
    torch.testing.assert_close(x1.grad, x2.grad.float(), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(ours.running_var, ref.running_var.float(), rtol=1e-6, atol=1e-6)
    for a, exact, theirs in zip(_params(ours), _params(ref), _params(ref32)):
        our_err = (a.grad.double() - exact.grad).abs().max()
        their_err = (theirs.grad.double() - exact.grad).abs().max()
        assert our_err <= 2 * their_err + 1e-6, (our_err, their_err)


def test_batch_norm_one_step_by_hand():
    x = torch.tensor([[1.0, 10.0], [2.0, 20.0], [6.0, 60.0]], dtype=torch.float64)
    bn = BatchNorm1d(2, eps=0.0, momentum=0.5).double()
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([2.0, 1.0]))
        bn.bias.copy_(torch.tensor([1.0, -1.0]))
    y = bn(x)
    mu = torch.tensor([3.0, 30.0], dtype=torch.float64)
    var = torch.tensor([14 / 3, 1400 / 3], dtype=torch.float64)           # biased: Σ(x − μ)²/m
    torch.testing.assert_close(y, torch.tensor([2.0, 1.0]) * (x - mu) / var.sqrt() + torch.tensor([1.0, -1.0]))
    # running: (1 − m)·old + m·batch, the variance unbiased (×m/(m − 1) = ×3/2)
    torch.testing.assert_close(bn.running_mean, 0.5 * mu)
    torch.testing.assert_close(bn.running_var, 0.5 * 1.0 + 0.5 * var * 1.5)
    # each feature of x̂ has mean 0 and (biased) variance 1
    x_hat = (y - bn.bias.detach()) / bn.weight.detach()
    torch.testing.assert_close(x_hat.mean(0), torch.zeros(2, dtype=torch.float64))
    torch.testing.assert_close(x_hat.var(0, unbiased=False), torch.ones(2, dtype=torch.float64))


def test_batch_norm_gradient_formula_and_double_backward():
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(7, 3, dtype=torch.float64, generator=gen, requires_grad=True)
    w = torch.rand(3, dtype=torch.float64, generator=gen, requires_grad=True)
    b = torch.randn(3, dtype=torch.float64, generator=gen, requires_grad=True)

    def ours(x, w, b):
        bn = BatchNorm1d(3, track_running_stats=False, affine=False).double()
        return bn(x) * w + b   # γ and β outside, to check the input gradient of the Function alone

    assert torch.autograd.gradcheck(ours, (x, w, b))
    assert torch.autograd.gradgradcheck(ours, (x, w, b))
    bn = BatchNorm1d(3).double()
    with torch.no_grad():
        bn.weight.copy_(w)
        bn.bias.copy_(b)
    assert torch.autograd.gradcheck(lambda x: bn(x), (x,))
    assert torch.autograd.gradgradcheck(lambda x: bn(x), (x,))


def test_batch_of_one_is_a_clear_error_in_training_only():
    bn = BatchNorm1d(4)
    with pytest.raises(ValueError, match="batch of one"):
        bn(torch.randn(1, 4))
    bn.eval()
    assert bn(torch.randn(1, 4)).shape == (1, 4)
    with pytest.raises(ValueError, match="channels"):
        bn(torch.randn(3, 5))
    with pytest.raises(ValueError, match="2-D or 3-D"):
        bn(torch.randn(3, 4, 2, 2))


def test_batch_norm_without_running_stats_and_without_affine():
    for kwargs in (dict(track_running_stats=False), dict(affine=False)):
        ours, ref = BatchNorm1d(5, **kwargs).double(), nn.BatchNorm1d(5, **kwargs).double()
        x = torch.randn(9, 5, dtype=torch.float64)
        for mode in (True, False):
            ours.train(mode)
            ref.train(mode)
            torch.testing.assert_close(ours(x), ref(x))


def test_batch_norm_state_dict_is_pytorch_compatible():
    ref = nn.BatchNorm2d(3)
    ref(torch.randn(4, 3, 2, 2) * 5)
    ours = BatchNorm2d(3)
    ours.load_state_dict(ref.state_dict())
    ref.eval()
    ours.eval()
    x = torch.randn(2, 3, 4, 4)
    torch.testing.assert_close(ours(x), ref(x))
    assert set(ours.state_dict()) == set(ref.state_dict())


def test_keras_convention_and_eps_outside():
    bn = BatchNorm1d.keras(2)
    assert bn.eps == 1e-3 and bn.momentum == pytest.approx(0.01) and not bn.unbiased_running_var
    x = torch.tensor([[0.0, 1.0], [2.0, 5.0]], dtype=torch.float64)
    bn = BatchNorm1d.keras(2, momentum=0.9).double()
    bn(x)
    # Keras: moving = momentum·moving + (1 − momentum)·batch, batch variance biased
    torch.testing.assert_close(bn.running_mean, 0.1 * torch.tensor([1.0, 3.0], dtype=torch.float64))
    torch.testing.assert_close(bn.running_var, 0.9 + 0.1 * torch.tensor([1.0, 4.0], dtype=torch.float64))
    # the notes' (004) form: x̂ = (x − μ)/(σ + ε)
    bn = BatchNorm1d(2, eps=0.5, eps_placement="outside", affine=False).double()
    torch.testing.assert_close(bn(x), (x - x.mean(0)) / (x.std(0, unbiased=False) + 0.5))
    x2 = x.clone().requires_grad_()
    assert torch.autograd.gradcheck(bn, (x2,))
    bn.eval()
    torch.testing.assert_close(bn(x), (x - bn.running_mean) / (bn.running_var.sqrt() + 0.5))


def test_batch_norm_validation():
    with pytest.raises(ValueError, match="momentum"):
        BatchNorm1d(3, momentum=0.99 + 1)
    with pytest.raises(ValueError, match="num_features"):
        BatchNorm1d(0)
    with pytest.raises(ValueError, match="eps_placement"):
        BatchNorm1d(3, eps_placement="middle")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape,normalized", [((16, 10), 10), ((4, 5, 6), (5, 6)), ((3, 7, 8), 8)])
@pytest.mark.parametrize("kwargs", [{}, dict(elementwise_affine=False), dict(bias=False)])
def test_layer_norm_matches_pytorch(shape, normalized, kwargs, dtype):
    ours, ref = _pair(LayerNorm, nn.LayerNorm, normalized, dtype=dtype, **kwargs)
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(shape, generator=gen, dtype=dtype) * 3 + 1
    g = torch.randn(shape, generator=gen, dtype=dtype)
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    y1, y2 = ours(x1), ref(x2)
    torch.testing.assert_close(y1, y2, **TOL[dtype])
    y1.backward(g)
    y2.backward(g)
    torch.testing.assert_close(x1.grad, x2.grad, **TOL[dtype])
    for a, b in zip(_params(ours), _params(ref)):
        torch.testing.assert_close(a.grad, b.grad, **TOL[dtype])
    ours.eval()
    torch.testing.assert_close(ours(x), y2.detach(), **TOL[dtype])   # no train/eval difference


def test_layer_norm_by_hand_second_order_and_batch_of_one():
    x = torch.tensor([[1.0, 2.0, 6.0]], dtype=torch.float64)
    ln = LayerNorm(3, eps=0.0).double()
    torch.testing.assert_close(ln(x), (x - 3.0) / (14 / 3) ** 0.5)
    xr = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(ln, (xr,))
    assert torch.autograd.gradgradcheck(ln, (xr,))
    with pytest.raises(ValueError, match="trailing"):
        ln(torch.randn(2, 4))


@pytest.mark.parametrize("dim", [0, 1, None])
def test_weight_norm_matches_pytorch(dim):
    torch.manual_seed(0)
    lin = nn.Linear(5, 4).double()
    ours = weight_norm(copy.deepcopy(lin), dim=dim)
    ref = torch.nn.utils.parametrizations.weight_norm(copy.deepcopy(lin), dim=dim)
    # the same parameters, under the same names
    assert set(n for n, _ in ours.named_parameters()) == set(n for n, _ in ref.named_parameters())
    for (n1, p1), (n2, p2) in zip(sorted(ours.named_parameters()), sorted(ref.named_parameters())):
        torch.testing.assert_close(p1, p2)
    torch.testing.assert_close(ours.weight, lin.weight)   # registering keeps the function
    x = torch.randn(6, 5, dtype=torch.float64)
    ours(x).square().sum().backward()
    ref(x).square().sum().backward()
    for (n1, p1), (n2, p2) in zip(sorted(ours.named_parameters()), sorted(ref.named_parameters())):
        torch.testing.assert_close(p1.grad, p2.grad)



def test_weight_norm_formula_and_removal():
    wn = WeightNorm(dim=0)
    v = torch.tensor([[3.0, 4.0], [1.0, 0.0]])
    g = torch.tensor([[10.0], [2.0]])
    torch.testing.assert_close(wn(g, v), torch.tensor([[6.0, 8.0], [2.0, 0.0]]))   # g·v/‖v‖ row-wise
    lin = weight_norm(nn.Linear(2, 2))
    g0, v0 = wn.right_inverse(lin.weight.detach())
    torch.testing.assert_close(g0.squeeze(1), lin.weight.detach().norm(dim=1))
    w = lin.weight.detach().clone()
    remove_weight_norm(lin)
    assert isinstance(lin.weight, nn.Parameter)
    torch.testing.assert_close(lin.weight.detach(), w)
    with pytest.raises(ValueError, match="no tensor"):
        weight_norm(nn.ReLU())
