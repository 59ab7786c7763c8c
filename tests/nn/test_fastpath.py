"""The layers' fast paths against their readable forms (and both against PyTorch's layers)."""
import copy

import pytest
import torch
from torch import nn

import trainlab.nn as tn
from trainlab.nn.fastpath import SWITCH


def _modules():
    """name -> (layer factory, input shape); every layer that has a fast path and a readable form."""
    return {
        "BatchNorm1d": (lambda: tn.BatchNorm1d(6), (16, 6)),
        "BatchNorm1d (N, C, L)": (lambda: tn.BatchNorm1d(6), (8, 6, 5)),
        "BatchNorm2d": (lambda: tn.BatchNorm2d(6), (4, 6, 5, 3)),
        "BatchNorm1d affine off": (lambda: tn.BatchNorm1d(6, affine=False), (16, 6)),
        "LayerNorm": (lambda: tn.LayerNorm(6), (16, 6)),
        "LayerNorm (5, 6)": (lambda: tn.LayerNorm((5, 6)), (4, 5, 6)),
        "LayerNorm no affine": (lambda: tn.LayerNorm(6, elementwise_affine=False), (16, 6)),
        "ReLU": (tn.ReLU, (16, 6)),
        "LeakyReLU": (tn.LeakyReLU, (16, 6)),
        "PReLU (shared)": (tn.PReLU, (16, 6)),
        "PReLU (per unit)": (lambda: tn.PReLU(6), (16, 6)),
        "ELU": (tn.ELU, (16, 6)),
        "SELU": (tn.SELU, (16, 6)),
        "GELU": (tn.GELU, (16, 6)),
        "GELU (tanh)": (lambda: tn.GELU("tanh"), (16, 6)),
        "SiLU": (tn.SiLU, (16, 6)),
        "Sigmoid": (tn.Sigmoid, (16, 6)),
        "Tanh": (tn.Tanh, (16, 6)),
        "Softmax": (lambda: tn.Softmax(-1), (16, 6)),
        "Softmax dim 0": (lambda: tn.Softmax(0), (16, 6)),
        "LogSoftmax": (lambda: tn.LogSoftmax(-1), (16, 6)),
    }


MODULES = _modules()
NORMS = {name for name in MODULES if "Norm" in name}


def _layer(name, dtype):
    factory, shape = MODULES[name]
    layer = factory().to(dtype)
    with torch.no_grad():  # parameters away from their initial 1 / 0, so they matter
        for p in layer.parameters():
            p.copy_(torch.linspace(0.5, 1.5, p.numel(), dtype=dtype).view_as(p))
    return layer, shape


def _run(layer, x, g, fast: bool):
    """Output, input gradient and parameter gradients of one forward + backward."""
    previous = tn.set_fast_layers(fast)
    try:
        x = x.clone().requires_grad_()
        layer.zero_grad(set_to_none=True)
        y = layer(x)
        y.backward(g)
        return [y.detach(), x.grad] + [p.grad for p in layer.parameters()]
    finally:
        tn.set_fast_layers(previous)


def _data(shape, dtype, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=gen, dtype=dtype) * 3
    flat = x.view(-1)
    flat[:6] = torch.tensor([0.0, -0.0, 30.0, -30.0, 90.0, -90.0], dtype=dtype)  # kinks and saturation
    return x, torch.randn(shape, generator=gen, dtype=dtype)


@pytest.mark.parametrize("name", sorted(MODULES))
def test_fast_path_equals_readable_form_in_float64(name):
    """Values, input and parameter gradients agree to rounding, at kinks and saturated inputs too."""
    layer, shape = _layer(name, torch.float64)
    x, g = _data(shape, torch.float64)
    fast = _run(copy.deepcopy(layer), x, g, fast=True)
    readable = _run(copy.deepcopy(layer), x, g, fast=False)
    assert len(fast) == len(readable)
    for a, b in zip(fast, readable):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


# the (N, C, L), 2-D and multi-axis norms run the same code with other axes; the float64 test
# above holds them to the 2-D ones' results, and finite differences over their larger inputs are slow
@pytest.mark.parametrize("name", sorted(set(MODULES) - {"BatchNorm1d (N, C, L)", "BatchNorm2d", "LayerNorm (5, 6)"}))
def test_both_forms_pass_gradcheck_and_gradgradcheck(name):
    """First and second derivatives of both forms against finite differences (float64, away
    from kinks): the fast path's double backward goes through the readable form, so it is exact."""
    layer, shape = _layer(name, torch.float64)
    if "BatchNorm" in name:
        layer.train()
    gen = torch.Generator().manual_seed(3)
    x = torch.linspace(-3.1, 2.9, torch.Size(shape).numel(), dtype=torch.float64)
    x = x[torch.randperm(x.numel(), generator=gen)].view(shape)
    x = torch.where(x.abs() < 0.05, x + 0.1, x).requires_grad_()
    params = [p for p in layer.parameters()]
    fn = lambda x, *ps: torch.func.functional_call(layer, dict(zip([n for n, _ in layer.named_parameters()], ps)), (x,))
    for fast in (True, False):
        with tn.readable_layers(not fast):
            assert torch.autograd.gradcheck(fn, (x, *params))
            assert torch.autograd.gradgradcheck(fn, (x, *params))


# float32: both forms round differently (a different association of the same sums and
# products; torch.sigmoid's one kernel against 1/(1 + e^(−|z|)); sums over the batch or the
# features in different orders). The bound is in units of float32's ε = 2^−23 relative to the
# largest magnitude in the tensor, not to each element: the derivatives are differences of terms
# of that size (1 − y², Φ(z) + zφ(z), g − Σ g·y, the three-term batch-norm gradient), so near
# their zero crossings the rounding error is relative to the terms, not to the tiny difference.
# 4 ε for the elementwise layers (a few roundings each way), 8 ε for the normalization layers
# (sums over up to 128 values in different orders; pairwise summation keeps that to a few ε).
# Both float32 forms are held to the exact value (the readable form evaluated in float64 on the
# same inputs): the softmax fast path computes its own exponential (trainlab.nn.native_softmax),
# whose rounding is independent of torch.exp's, so the two float32 forms can differ by the sum of
# their errors, while each stays within the bound of the exact value.
# Measured against the exact value: fast paths at most 2.6 ε (a BatchNorm2d γ gradient) and 1.9 ε
# (log-softmax's input gradient), readable forms at most 3.8 ε (softmax's input gradient).
EPS32 = 2.0 ** -23


def _ulps(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double(), b.double()
    return float((a - b).abs().max() / (EPS32 * b.abs().max()))


@pytest.mark.parametrize("name", sorted(MODULES))
def test_fast_path_equals_readable_form_in_float32_to_a_few_ulps(name):
    layer, shape = _layer(name, torch.float32)
    if "BatchNorm" in name:
        shape = (128,) + tuple(shape[1:])   # the benchmark's batch: sums over 128 values
    x, g = _data(shape, torch.float32, seed=7)
    fast = _run(copy.deepcopy(layer), x, g, fast=True)
    readable = _run(copy.deepcopy(layer), x, g, fast=False)
    exact = _run(copy.deepcopy(layer).double(), x.double(), g.double(), fast=False)
    bound = 8 if name in NORMS else 4
    whats = ["output", "input gradient", "parameter gradient", "parameter gradient"]
    for form, result in (("fast", fast), ("readable", readable)):
        for what, a, b in zip(whats, result, exact):
            assert _ulps(a, b) <= bound, (form, what, _ulps(a, b))


@pytest.mark.parametrize("momentum", [0.1, None])
@pytest.mark.parametrize("affine,track", [(True, True), (False, True), (True, False)])
@pytest.mark.parametrize("cls,torch_cls,shape", [(tn.BatchNorm1d, nn.BatchNorm1d, (16, 4)),
                                                 (tn.BatchNorm2d, nn.BatchNorm2d, (4, 4, 3, 3))])
def test_batch_norm_fast_readable_and_torch_agree_over_steps_and_in_eval(cls, torch_cls, shape, momentum,
                                                                         affine, track):
    """Outputs, gradients, running estimates (momentum 0.1 and None, the cumulative average) and
    num_batches_tracked of the fast path, the readable form and torch.nn, then eval mode."""
    kwargs = dict(momentum=momentum, affine=affine, track_running_stats=track)
    layers = [cls(4, **kwargs).double(), cls(4, **kwargs).double(), torch_cls(4, **kwargs).double()]
    gen = torch.Generator().manual_seed(0)
    for step in range(6):
        x = torch.randn(shape, generator=gen, dtype=torch.float64) * 2 + 3
        g = torch.randn(shape, generator=gen, dtype=torch.float64)
        results = [_run(layer, x, g, fast) for layer, fast in zip(layers, (True, False, True))]
        for a, b, c in zip(*results):
            torch.testing.assert_close(a, c, rtol=1e-12, atol=1e-12)
            torch.testing.assert_close(b, c, rtol=1e-12, atol=1e-12)
        if track:
            for name in ("running_mean", "running_var", "num_batches_tracked"):
                ref = getattr(layers[2], name)
                torch.testing.assert_close(getattr(layers[0], name), ref, rtol=1e-12, atol=1e-12)
                torch.testing.assert_close(getattr(layers[1], name), ref, rtol=1e-12, atol=1e-12)
    x, g = torch.randn(shape, generator=gen, dtype=torch.float64), torch.randn(shape, generator=gen,
                                                                               dtype=torch.float64)
    results = [_run(layer.eval(), x, g, fast) for layer, fast in zip(layers, (True, False, True))]
    for a, b, c in zip(*results):
        torch.testing.assert_close(a, c, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(b, c, rtol=1e-12, atol=1e-12)


def test_the_switch_and_its_context_manager():
    assert tn.fast_layers() is True            # the default
    assert tn.set_fast_layers(False) is True   # returns the previous setting
    try:
        assert tn.fast_layers() is False
        with tn.readable_layers(False):        # the fast paths inside, the readable forms again after
            assert tn.fast_layers() is True
        assert tn.fast_layers() is False
    finally:
        tn.set_fast_layers(True)
    with pytest.raises(RuntimeError):
        with tn.readable_layers():
            assert SWITCH.fast is False
            raise RuntimeError("restored even when the block fails")
    assert tn.fast_layers() is True
    with pytest.raises(TypeError, match="True or False"):
        tn.set_fast_layers("no")


def test_functorch_transforms_take_the_full_autograd_function_path():
    """Under vmap the fast path defers to Function.apply (so it fails as torch's own rule says: the
    Functions have no setup_context); the readable forms are plain tensor ops and vmap fine."""
    z = torch.randn(3, 5)
    with pytest.raises(RuntimeError, match="setup_context"):
        torch.func.vmap(tn.sigmoid)(z)
    with tn.readable_layers():
        torch.testing.assert_close(torch.func.vmap(tn.gelu)(z), torch.nn.functional.gelu(z))
        torch.testing.assert_close(torch.func.vmap(tn.LayerNorm(5))(z), torch.nn.functional.layer_norm(z, (5,)))


def test_batch_norm_keeps_float32_running_estimates_for_a_bfloat16_input():
    """A lower-precision input (as under autocast) updates float32 running estimates on both paths."""
    x = torch.randn(16, 4, generator=torch.Generator().manual_seed(2)).to(torch.bfloat16)
    layers = [tn.BatchNorm1d(4), tn.BatchNorm1d(4)]
    for layer, fast in zip(layers, (True, False)):
        with tn.readable_layers(not fast):
            layer(x.clone().requires_grad_()).sum().backward()
        assert layer.running_mean.dtype == layer.running_var.dtype == torch.float32
    # the batch statistics are computed in bfloat16 (ε = 2^−8) by different ops on the two paths
    torch.testing.assert_close(layers[0].running_mean, layers[1].running_mean, rtol=2 ** -7, atol=1e-3)
    torch.testing.assert_close(layers[0].running_var, layers[1].running_var, rtol=2 ** -7, atol=1e-3)
    torch.testing.assert_close(layers[0].running_mean, 0.1 * x.float().mean(0), rtol=1e-2, atol=1e-3)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("make", [tn.ReLU, tn.LeakyReLU, lambda: tn.LeakyReLU(0.3), lambda: tn.GeneralizedRectifier(-1.0),
                                  lambda: tn.GeneralizedRectifier(1.5), tn.PReLU, lambda: tn.PReLU(6)],
                         ids=["relu", "leaky", "leaky0.3", "abs", "slope1.5", "prelu", "prelu6"])
def test_the_rectifiers_fast_path_is_bit_equal_to_the_readable_form(make, dtype):
    """The rectifiers' fast path (torch's kernels) computes the same selects as the readable
    forms: values and input gradients bit-equal (at z = ±0 too); the learned slope's gradient is a
    sum, equal up to its summation order."""
    layer = make().to(dtype)
    x, g = _data((16, 6), dtype)
    fast = _run(copy.deepcopy(layer), x, g, fast=True)
    readable = _run(copy.deepcopy(layer), x, g, fast=False)
    assert torch.equal(fast[0], readable[0]) and torch.equal(fast[1], readable[1])
    for a, b in zip(fast[2:], readable[2:]):
        assert _ulps(a, b) <= 4 if dtype == torch.float32 else torch.allclose(a, b, rtol=1e-12, atol=0)
