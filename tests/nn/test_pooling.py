"""trainlab.nn.MaxPool2d (its fused C kernels, native_pool.c) against torch.nn.MaxPool2d: values
and gradients bit for bit, ties and NaNs included, and the fallbacks where the kernels do not apply."""
import pytest
import torch
from torch import nn

import trainlab.nn as tn
from trainlab.nn import pooling
from trainlab.nn.native_layers import POOL

pytestmark = pytest.mark.skipif(POOL.for_dtype(torch.float32) is None, reason=f"no kernels: {POOL.problem()}")

KERNEL_NODE = "_MaxPoolFnBackward"


def _data(shape, dtype, seed=0, ties=True, nans=True):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=gen, dtype=torch.float64)
    if ties:
        x = x.mul(2).round()  # many equal values in a window: the gradient's routing is tested
    x = x.to(dtype)
    if nans:
        flat = x.view(-1)
        flat[::13] = float("nan")
        flat[5::29] = float("-inf")
    return x, torch.randn(shape, generator=gen, dtype=torch.float64).to(dtype)


def _run(layer, x, g_full):
    x = x.clone().requires_grad_()
    y = layer(x)
    g = g_full[..., :y.shape[-2], :y.shape[-1]].contiguous()
    y.backward(g)
    return y.grad_fn.name(), y.detach(), x.grad


def _same(a, b):
    """Equal bits, NaNs included (in the same places)."""
    assert a.shape == b.shape
    assert torch.equal(torch.isnan(a), torch.isnan(b))
    assert torch.equal(a.nan_to_num(0.0), b.nan_to_num(0.0))


CASES = [((64, 8, 28, 28), 2), ((3, 5, 7), 2), ((2, 3, 9, 10), 3), ((4, 2, 6, 6), 2), ((1, 1, 2, 2), 2),
         ((2, 3, 5, 5), 5), ((2, 2, 8, 9), 4), ((2, 1, 3, 3), 1), ((5, 4, 15, 16), 15)]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("shape,k", CASES, ids=[f"{s}-k{k}" for s, k in CASES])
def test_values_and_gradients_are_torchs_bit_for_bit(shape, k, dtype):
    for ties, nans in ((False, False), (True, False), (True, True)):
        x, g = _data(shape, dtype, ties=ties, nans=nans)
        node, y, dx = _run(tn.MaxPool2d(k), x, g)
        other, y_ref, dx_ref = _run(nn.MaxPool2d(k), x, g)
        assert node == KERNEL_NODE and other != KERNEL_NODE
        _same(y, y_ref)
        _same(dx, dx_ref)


def test_inference_and_two_threads():
    x, _ = _data((32, 16, 30, 30), torch.float32)
    with torch.no_grad():
        ref = nn.MaxPool2d(2)(x)
        before = torch.get_num_threads()
        try:
            for threads in (1, 2):
                torch.set_num_threads(threads)
                _same(tn.MaxPool2d(2)(x), ref)
        finally:
            torch.set_num_threads(before)


def test_a_graph_of_the_gradient_goes_through_torchs_max_pool():
    x = torch.randn(2, 3, 6, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradgradcheck(lambda t: tn.MaxPool2d(2)(t), (x,))


@pytest.mark.parametrize("kwargs", [{"kernel_size": 2, "stride": 1}, {"kernel_size": 3, "padding": 1},
                                    {"kernel_size": 2, "ceil_mode": True}, {"kernel_size": 2, "dilation": 2},
                                    {"kernel_size": (2, 3)}, {"kernel_size": 16}],
                         ids=["stride", "padding", "ceil", "dilation", "rectangular", "k16"])
def test_other_windows_are_torchs_own_forward(kwargs):
    x, g = _data((2, 3, 33, 33), torch.float32, nans=False)
    ours, theirs = tn.MaxPool2d(**kwargs), nn.MaxPool2d(**kwargs)
    assert pooling.window(ours) is None
    node, y, dx = _run(ours, x, g)
    _, y_ref, dx_ref = _run(theirs, x, g)
    assert node != KERNEL_NODE
    _same(y, y_ref)
    _same(dx, dx_ref)


def test_inputs_the_kernels_do_not_take_and_the_switches(monkeypatch):
    x, _ = _data((2, 3, 8, 8), torch.float32, nans=False)
    layer = tn.MaxPool2d(2)
    for other in (x.half(), x.transpose(-1, -2), x.to(torch.bfloat16)):
        assert layer(other.requires_grad_()).grad_fn.name() != KERNEL_NODE
    torch.testing.assert_close(torch.func.vmap(layer)(x), nn.functional.max_pool2d(x, 2))  # torch's under vmap
    with tn.readable_layers():
        assert layer(x.requires_grad_()).grad_fn.name() != KERNEL_NODE
    monkeypatch.setenv("TRAINLAB_NATIVE", "0")
    assert layer(x.requires_grad_()).grad_fn.name() != KERNEL_NODE
    monkeypatch.delenv("TRAINLAB_NATIVE")
    assert layer(x.requires_grad_()).grad_fn.name() == KERNEL_NODE


def test_it_is_a_torch_max_pool_and_the_cnn_builder_uses_it():
    layer = tn.MaxPool2d(2)
    assert isinstance(layer, nn.MaxPool2d) and repr(layer) == repr(nn.MaxPool2d(2))
    model = tn.CNN((1, 12, 12), channels=(4,), hidden=8, classes=3)
    assert any(type(m) is tn.MaxPool2d for m in model.modules())


def test_signed_zeros_of_the_gradient_and_planes_smaller_than_the_window():
    """torch adds g into zeros, so a −0 gradient arrives as +0: the same sign bits here; a plane
    smaller than the window is refused, as torch refuses it."""
    for k, shape in ((2, (1, 2, 4, 4)), (3, (1, 2, 6, 6))):
        x = torch.randn(shape)
        results = []
        for layer in (tn.MaxPool2d(k), nn.MaxPool2d(k)):
            xi = x.clone().requires_grad_()
            y = layer(xi)
            y.backward(torch.full_like(y, -0.0))
            results.append(xi.grad)
        assert torch.equal(torch.signbit(results[0]), torch.signbit(results[1]))
    with pytest.raises(RuntimeError, match="too small"):
        tn.MaxPool2d(2)(torch.ones(1, 1, 1, 1))
