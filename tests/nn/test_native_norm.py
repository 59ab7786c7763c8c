"""The fused C kernels of layer norm and batch norm (trainlab.nn.native_norm.c) against the readable
form and torch.nn, and the torch-op fallbacks where the kernels do not apply.

float64: 1e-12 relative, as every fast path. float32: the kernels sum in double and round μ, σ²,
1/√(σ² + ε) once, then work in float32 from those rounded values (as torch saves μ and 1/√(σ² + ε)
in the input's type). So each output is a few roundings from the exact value of the same float32
inputs, relative to the size of the terms it is made of — γ·x̂ and β for y; r·ĝ (r = 1/√(σ² + ε),
ĝ = γ·g) for ∂L/∂x, whose three terms cancel where a row's values are nearly equal (two values
per channel: ∂L/∂x ∝ ε/σ² of its terms); Σ|g·x̂| and Σ|g| for ∂L/∂γ, ∂L/∂β — except for the
rounding of μ itself: x − μ carries ε|μ|/2, which the normalization scales by r. The bound, in units
of ε = 2⁻²³ of the largest term, is therefore 4·(1 + κ) with κ = max |μ|·r over the rows
(channels): 4 for well-conditioned data, more where a row's spread is small next to its mean
(torch's kernels have the same term). Measured on the data below: at most 1.1 ε where κ < 1, and
7.6 ε (bound 178 ε) on a layer norm over 3 features, where κ ≈ 44.
"""
import collections
from types import SimpleNamespace

import pytest
import torch
from torch import nn

import trainlab.nn as tn
from trainlab.nn import normalization
from trainlab.nn.native_layers import NORM

pytestmark = pytest.mark.skipif(NORM.for_dtype(torch.float64) is None, reason=f"no kernels: {NORM.problem()}")

EPS32 = 2.0 ** -23


class _NoOperators:
    """In place of native_layers.OPS: layer norm takes its Python Function, whose kernel calls the
    spy below counts (tests/nn/test_native_ops.py proves the C++ operator equal to it, bit for bit)."""
    DTYPES = ()

    def get(self):
        return None


@pytest.fixture
def calls(monkeypatch):
    """Counts the kernel calls by name (through the real kernels): proves which path ran."""
    counts = collections.Counter()
    real = normalization._NORM

    def counted(name, fn):
        def call(*args):
            counts[name] += 1
            return fn(*args)
        return call

    class Spy:
        def for_dtype(self, dtype):
            kernels = real.for_dtype(dtype)
            if kernels is None:
                return None
            return SimpleNamespace(**{name: counted(name, getattr(kernels, name)) for name in real.signatures})

    monkeypatch.setattr(normalization, "_NORM", Spy())
    monkeypatch.setattr(normalization, "_OPS", _NoOperators())
    return counts


def _set_params(layer, seed=1):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in layer.parameters():
            p.copy_(torch.rand(p.shape, generator=gen, dtype=p.dtype) + 0.5)
    return layer


def _run(layer, x, g, readable=False):
    """Output, input gradient, parameter gradients of one forward + backward; and the tensors the
    fast path saved for backward (None for the readable form and in eval mode)."""
    x = x.clone().requires_grad_()
    layer.zero_grad(set_to_none=True)
    with tn.readable_layers(readable):
        y = layer(x)
        saved = getattr(y.grad_fn, "saved_tensors", None) if not readable else None
        y.backward(g)
    return [y.detach(), x.grad] + [p.grad for p in layer.parameters()], saved


def _data(shape, dtype, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return (torch.randn(shape, generator=gen, dtype=torch.float64) * 3 + 1).to(dtype), \
        torch.randn(shape, generator=gen, dtype=torch.float64).to(dtype)


def _ulps(a, b, scale) -> float:
    """max |a − b| in units of float32's ε times ``scale`` (terms of size 0: exact, or infinity)."""
    err = float((a.double() - b.double()).abs().max())
    return err / (EPS32 * scale) if scale > 0 else (0.0 if err == 0 else float("inf"))


def _bound_and_scales(x, g, weight, bias, dims, eps, shape=None):
    """4·(1 + κ), κ = max |μ|·r over the rows (channels) ``dims`` reduces, and the size of the
    terms each of y, ∂L/∂x, ∂L/∂γ, ∂L/∂β is made of (see the module docstring)."""
    x, g = x.double(), g.double()
    weight, bias = (None if t is None else t.detach() for t in (weight, bias))
    view = (lambda t: t.double().view(shape)) if shape is not None else (lambda t: t.double())
    mu = x.mean(dims, keepdim=True)
    r = (x.var(dims, unbiased=False, keepdim=True) + eps).rsqrt()
    x_hat = (x - mu) * r
    g_hat = g * view(weight) if weight is not None else g
    y_terms = (x_hat * view(weight)).abs() if weight is not None else x_hat.abs()
    if bias is not None:
        y_terms = y_terms + view(bias).abs()
    others = tuple(d for d in range(x.dim()) if d not in dims) if shape is not None else \
        tuple(range(x.dim() - len(dims)))
    sum_dims = dims if shape is not None else others  # batch norm sums γ's gradient over dims, layer norm over the rest
    scales = [float(y_terms.max()), float((r * g_hat).abs().max()),
              float((g * x_hat).abs().sum(sum_dims).max()) if sum_dims else float((g * x_hat).abs().max()),
              float(g.abs().sum(sum_dims).max()) if sum_dims else float(g.abs().max())]
    return 4 * (1 + float((mu.abs() * r).max())), scales


LN_CASES = [  # (input shape, normalized_shape)
    ((128, 256), 256), ((3, 257), 257), ((257, 3), 3), ((1, 1), 1), ((5, 1), 1), ((1, 257), 257),
    ((257,), 257), ((4, 3, 5), (3, 5)), ((2, 3, 4, 5), 5),
]
LN_KWARGS = [{}, {"bias": False}, {"elementwise_affine": False}]


def _ln_pair(normalized, kwargs, dtype):
    ours = _set_params(tn.LayerNorm(normalized, **kwargs).to(dtype))
    theirs = nn.LayerNorm(normalized, **kwargs).to(dtype)
    theirs.load_state_dict(ours.state_dict())
    return ours, theirs


@pytest.mark.parametrize("kwargs", LN_KWARGS, ids=["affine", "no-bias", "no-affine"])
@pytest.mark.parametrize("shape,normalized", LN_CASES, ids=[str(s) for s, _ in LN_CASES])
def test_layer_norm_kernels_match_readable_form_and_torch_in_float64(shape, normalized, kwargs, calls):
    ours, theirs = _ln_pair(normalized, kwargs, torch.float64)
    x, g = _data(shape, torch.float64)
    fast, saved = _run(ours, x, g)
    assert calls == {"layer_norm_forward": 1, "layer_norm_backward": 1}
    readable, _ = _run(ours, x, g, readable=True)
    reference, _ = _run(theirs, x, g)
    for a, b, c in zip(fast, readable, reference):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(a, c, rtol=1e-12, atol=1e-12)
    # saved for backward: μ and 1/√(σ² + ε) per row (as torch saves them), not x̂
    k = 1 if isinstance(normalized, int) else len(normalized)
    dims = tuple(range(x.dim() - k, x.dim()))
    stats = saved[3]
    torch.testing.assert_close(stats[0], x.mean(dims).reshape(-1), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(stats[1], (x.var(dims, unbiased=False) + ours.eps).rsqrt().reshape(-1),
                               rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kwargs", LN_KWARGS, ids=["affine", "no-bias", "no-affine"])
@pytest.mark.parametrize("shape,normalized", LN_CASES, ids=[str(s) for s, _ in LN_CASES])
def test_layer_norm_kernels_in_float32_within_the_stated_bound(shape, normalized, kwargs, calls):
    """Against the float64 readable form of the same float32 inputs and parameters: 4·(1 + κ) ε."""
    ours, _ = _ln_pair(normalized, kwargs, torch.float32)
    x, g = _data(shape, torch.float32, seed=5)
    fast, _ = _run(ours, x, g)
    assert calls["layer_norm_forward"] == 1 and calls["layer_norm_backward"] == 1
    k = 1 if isinstance(normalized, int) else len(normalized)
    bound, scales = _bound_and_scales(x, g, ours.weight, ours.bias, tuple(range(x.dim() - k, x.dim())), ours.eps)
    exact, _ = _run(ours.double(), x.double(), g.double(), readable=True)
    for what, a, b, scale in zip(["output", "input gradient", "weight gradient", "bias gradient"], fast, exact, scales):
        assert _ulps(a, b, scale) <= bound, (what, _ulps(a, b, scale), bound)


BN_CASES = [  # (class, torch class, input shape)
    (tn.BatchNorm1d, nn.BatchNorm1d, (128, 256)), (tn.BatchNorm1d, nn.BatchNorm1d, (2, 1)),
    (tn.BatchNorm1d, nn.BatchNorm1d, (3, 257)), (tn.BatchNorm1d, nn.BatchNorm1d, (257, 3)),
    (tn.BatchNorm1d, nn.BatchNorm1d, (4, 3, 5)), (tn.BatchNorm1d, nn.BatchNorm1d, (2, 3, 257)),
    (tn.BatchNorm2d, nn.BatchNorm2d, (2, 3, 4, 5)), (tn.BatchNorm2d, nn.BatchNorm2d, (3, 257, 1, 1)),
    (tn.BatchNorm2d, nn.BatchNorm2d, (1, 3, 1, 2)),
]
BN_IDS = [f"{cls.__name__}{shape}" for cls, _, shape in BN_CASES]
BN_KWARGS = [{}, {"affine": False}, {"momentum": None}, {"track_running_stats": False},
             {"momentum": 0.3, "unbiased_running_var": False}]


def _bn_pair(cls, torch_cls, c, kwargs, dtype):
    ours = _set_params(cls(c, **kwargs).to(dtype))
    theirs_kwargs = {k: v for k, v in kwargs.items() if k != "unbiased_running_var"}
    theirs = torch_cls(c, **theirs_kwargs).to(dtype)
    theirs.load_state_dict(ours.state_dict())
    return ours, theirs


@pytest.mark.parametrize("kwargs", BN_KWARGS, ids=lambda kw: ",".join(f"{k}={v}" for k, v in kw.items()) or "default")
@pytest.mark.parametrize("cls,torch_cls,shape", BN_CASES, ids=BN_IDS)
def test_batch_norm_kernels_match_readable_form_and_torch_in_float64(cls, torch_cls, shape, kwargs, calls):
    """Two training steps then eval: outputs, gradients, saved statistics, running estimates."""
    c = shape[1]
    ours, theirs = _bn_pair(cls, torch_cls, c, kwargs, torch.float64)
    readable, _ = _bn_pair(cls, torch_cls, c, kwargs, torch.float64)
    dims = (0,) + tuple(range(2, len(shape)))
    for step in range(2):
        x, g = _data(shape, torch.float64, seed=step)
        fast, saved = _run(ours, x, g)
        assert calls == {"batch_norm_forward": step + 1, "batch_norm_backward": step + 1}
        slow, _ = _run(readable, x, g, readable=True)
        for a, b in zip(fast, slow):
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
        if not kwargs.get("unbiased_running_var", True):
            continue  # torch.nn has no such option: the readable form is the reference
        reference, _ = _run(theirs, x, g)
        for a, b in zip(fast, reference):
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
        stats = saved[3]  # μ, σ²·c, 1/√(σ² + ε) per channel
        torch.testing.assert_close(stats[0], x.mean(dims), rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(stats[2], (x.var(dims, unbiased=False) + ours.eps).rsqrt(), rtol=1e-12, atol=1e-12)
        for name in ("running_mean", "running_var", "num_batches_tracked"):
            if getattr(theirs, name) is not None:
                torch.testing.assert_close(getattr(ours, name), getattr(theirs, name), rtol=1e-12, atol=1e-12)
                torch.testing.assert_close(getattr(readable, name), getattr(theirs, name), rtol=1e-12, atol=1e-12)
    x, g = _data(shape, torch.float64, seed=9)
    for a, b in zip(_run(ours.eval(), x, g)[0], _run(readable.eval(), x, g)[0]):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("cls,torch_cls,shape", BN_CASES, ids=BN_IDS)
def test_batch_norm_kernels_in_float32_within_the_stated_bound(cls, torch_cls, shape, affine, calls):
    """Against the float64 readable form of the same float32 inputs: 4·(1 + κ) ε; the running
    estimates against torch.nn's float32 update (the same lerp of the batch statistics)."""
    c = shape[1]
    ours, theirs = _bn_pair(cls, torch_cls, c, {"affine": affine}, torch.float32)
    exact_layer, _ = _bn_pair(cls, torch_cls, c, {"affine": affine}, torch.float64)
    exact_layer.load_state_dict(ours.state_dict())
    x, g = _data(shape, torch.float32, seed=5)
    fast, _ = _run(ours, x, g)
    assert calls == {"batch_norm_forward": 1, "batch_norm_backward": 1}
    exact, _ = _run(exact_layer, x.double(), g.double(), readable=True)
    view = (1, -1) + (1,) * (len(shape) - 2)
    bound, scales = _bound_and_scales(x, g, ours.weight, ours.bias, (0,) + tuple(range(2, len(shape))), ours.eps,
                                      view)
    for what, a, b, scale in zip(["output", "input gradient", "weight gradient", "bias gradient"], fast, exact, scales):
        assert _ulps(a, b, scale) <= bound, (what, _ulps(a, b, scale), bound)
    _run(theirs, x, g)
    for name in ("running_mean", "running_var"):  # lerps of μ and σ²·c, each within the bound of its own size
        ref = getattr(theirs, name)
        assert _ulps(getattr(ours, name), ref, float(ref.abs().max())) <= bound, name


# torch's CPU lerp is one fused multiply-add per value where its kernels are vectorized (AVX2, AVX-512)
_TORCH_LERP_FUSED = torch.backends.cpu.get_cpu_capability() in ("AVX2", "AVX512")


@pytest.mark.parametrize("momentum", [0.1, None, 0.7, 1.0], ids=lambda m: f"momentum={m}")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
def test_batch_norm_running_estimates_in_the_kernel_are_torch_lerp(dtype, momentum, calls):
    """Four training steps: the kernel's running estimates are, bit for bit (AVX2, AVX-512), torch's lerp of the
    previous estimates to the kernel's own batch statistics (μ, σ²·c) with this step's momentum
    (None: 1/t, the cumulative average; 0.7, 1.0: the lerp's other branch, from the batch end), so
    they are the numbers of the foreach lerp they replace; num_batches_tracked counts as torch.nn's,
    and the estimates follow torch.nn's within 1e-12 (float64) or, in float32, the largest of the
    steps' forward bounds 4·(1 + κ) ε plus one ε for the lerp's own rounding (the lerp weighs the
    steps' errors into a convex combination; measured at most 1.7 ε here)."""
    ours, theirs = _bn_pair(tn.BatchNorm1d, nn.BatchNorm1d, 37, {"momentum": momentum}, dtype)
    worst = 0.0
    for step in range(4):
        x, g = _data((13, 37), dtype, seed=20 + step)
        before = [ours.running_mean.clone(), ours.running_var.clone()]
        _, saved = _run(ours, x, g)
        stats = saved[3]  # μ, σ²·c, 1/√(σ² + ε)
        m = 1.0 / (step + 1) if momentum is None else momentum
        torch._foreach_lerp_(before, [stats[0], stats[1]], m)
        if _TORCH_LERP_FUSED:
            assert torch.equal(ours.running_mean, before[0]) and torch.equal(ours.running_var, before[1])
        else:  # torch's unvectorized lerp rounds w·(b − a) before the addition: one rounding apart
            for a, b in ((ours.running_mean, before[0]), (ours.running_var, before[1])):
                assert bool(((a - b).abs() <= torch.finfo(dtype).eps * b.abs()).all())
        _run(theirs, x, g)
        if dtype == torch.float32:
            worst = max(worst, _bound_and_scales(x, g, ours.weight, ours.bias, (0,), ours.eps, (1, -1))[0])
        assert int(ours.num_batches_tracked) == int(theirs.num_batches_tracked) == step + 1
        for name in ("running_mean", "running_var"):
            a, b = getattr(ours, name), getattr(theirs, name)
            if dtype == torch.float64:
                torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
            else:
                assert _ulps(a, b, float(b.abs().max())) <= worst + 1, (name, step)
    assert calls["batch_norm_forward"] == 4


def test_batch_norm_running_estimates_of_another_dtype_follow_the_kernel():
    """float32 estimates under a float64 input are not the kernel's type: the foreach lerp after
    the kernel updates them, as the readable form does."""
    ours = _set_params(tn.BatchNorm1d(5).double())
    ours.running_mean, ours.running_var = ours.running_mean.float(), ours.running_var.float()
    readable = _set_params(tn.BatchNorm1d(5).double())
    readable.running_mean, readable.running_var = readable.running_mean.float(), readable.running_var.float()
    x, g = _data((6, 5), torch.float64)
    _run(ours, x, g)
    _run(readable, x, g, readable=True)
    for name in ("running_mean", "running_var"):
        assert getattr(ours, name).dtype == torch.float32
        torch.testing.assert_close(getattr(ours, name), getattr(readable, name), rtol=2 * EPS32, atol=2 * EPS32)


@pytest.mark.parametrize("which", ["input", "parameters"])
@pytest.mark.parametrize("layer", ["LayerNorm", "BatchNorm1d"])
def test_only_the_wanted_gradients(layer, which, calls):
    """x alone, or γ and β alone, require a gradient: the kernel computes just those."""
    ours = _set_params((tn.LayerNorm(7) if layer == "LayerNorm" else tn.BatchNorm1d(7)).double())
    theirs = (nn.LayerNorm(7) if layer == "LayerNorm" else nn.BatchNorm1d(7)).double()
    theirs.load_state_dict(ours.state_dict())
    x, g = _data((9, 7), torch.float64)
    results = []
    for m in (ours, theirs):
        for p in m.parameters():
            p.requires_grad_(which == "parameters")
        xi = x.clone().requires_grad_(which == "input")
        m(xi).backward(g)
        results.append([xi.grad] + [p.grad for p in m.parameters()])
    assert sum(calls.values()) == 2
    for a, b in zip(*results):
        assert (a is None) == (b is None)
        if a is not None:
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_an_expanded_output_gradient_and_several_threads(calls):
    """y.sum().backward() hands the backward an expanded (stride-0) gradient; a large tensor is
    split over threads by rows (channels), which gives the same values as one thread (γ's and β's
    layer-norm sums up to the order of the threads' partial sums)."""
    ln, bn = _set_params(tn.LayerNorm(1024).double()), _set_params(tn.BatchNorm1d(1024).double())
    x, _ = _data((64, 1024), torch.float64)
    before = torch.get_num_threads()
    results = {}
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            for name, m in (("ln", ln), ("bn", bn)):
                xi = x.clone().requires_grad_()
                m.zero_grad(set_to_none=True)
                y = m(xi)
                y.sum().backward()
                results[name, threads] = [y.detach(), xi.grad] + [p.grad for p in m.parameters()]
    finally:
        torch.set_num_threads(before)
    assert calls["layer_norm_backward"] == 2 and calls["batch_norm_backward"] == 2
    for name in ("ln", "bn"):
        for i, (a, b) in enumerate(zip(results[name, 1], results[name, 2])):
            if name == "ln" and i >= 2:
                torch.testing.assert_close(a, b, rtol=1e-13, atol=1e-13)
            else:
                assert torch.equal(a, b), (name, i)
    with tn.readable_layers():  # and the values are right
        for name, m in (("ln", ln), ("bn", bn)):
            xi = x.clone().requires_grad_()
            m.zero_grad(set_to_none=True)
            y = m(xi)
            y.sum().backward()
            for a, b in zip(results[name, 1], [y.detach(), xi.grad] + [p.grad for p in m.parameters()]):
                torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_double_backward_goes_through_the_readable_form(calls):
    """create_graph=True: the forward ran the kernel, the backward differentiates the formula."""
    for layer in (tn.LayerNorm(4).double(), tn.BatchNorm1d(4).double()):
        x = torch.randn(6, 4, dtype=torch.float64, requires_grad=True)
        assert torch.autograd.gradgradcheck(lambda x: layer(x), (x,))
    assert calls["layer_norm_forward"] > 0 and calls["batch_norm_forward"] > 0


def _fallback_cases():
    x, _ = _data((8, 6), torch.float64)
    return {
        "non-contiguous input": (lambda: tn.LayerNorm(8).double(), lambda: nn.LayerNorm(8).double(), x.t()),
        "non-contiguous input (batch norm)": (lambda: tn.BatchNorm1d(8).double(),
                                              lambda: nn.BatchNorm1d(8).double(), x.t()),
        "float16": (lambda: tn.LayerNorm(6).half(), lambda: nn.LayerNorm(6).half(), x.half()),
        "bfloat16 (batch norm)": (lambda: tn.BatchNorm1d(6).bfloat16(), lambda: nn.BatchNorm1d(6).bfloat16(),
                                  x.bfloat16()),
        "parameters of another dtype": (lambda: tn.LayerNorm(6).float(), None, x),
    }


@pytest.mark.parametrize("case", list(_fallback_cases()))
def test_the_torch_op_path_where_the_kernels_do_not_apply(case, calls):
    make, make_torch, x = _fallback_cases()[case]
    ours = _set_params(make())
    g = torch.ones_like(x)
    if make_torch is None:  # torch.nn refuses mixed dtypes; the readable form promotes, as the fast path
        fast, _ = _run(ours, x, g)
        slow, _ = _run(ours, x, g, readable=True)
    else:
        theirs = make_torch()
        theirs.load_state_dict(ours.state_dict())
        fast, _ = _run(ours, x, g)
        slow, _ = _run(theirs, x, g)
    assert not calls
    tol = dict(rtol=1e-12, atol=1e-12) if x.dtype == torch.float64 else dict(rtol=2e-2, atol=2e-2)
    for a, b in zip(fast, slow):
        torch.testing.assert_close(a, b, **tol)


def test_trainlab_native_0_turns_the_kernels_off(monkeypatch, calls):
    monkeypatch.setenv("TRAINLAB_NATIVE", "0")
    assert "TRAINLAB_NATIVE=0" in NORM.problem()
    x, g = _data((8, 6), torch.float64)
    for ours, theirs in ((tn.LayerNorm(6).double(), nn.LayerNorm(6).double()),
                         (tn.BatchNorm1d(6).double(), nn.BatchNorm1d(6).double())):
        for a, b in zip(_run(ours, x, g)[0], _run(theirs, x, g)[0]):
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    assert not calls
    monkeypatch.delenv("TRAINLAB_NATIVE")
    _run(tn.LayerNorm(6).double(), x, g)
    assert calls["layer_norm_forward"] == 1


def test_eps_outside_takes_the_readable_form(calls):
    bn = tn.BatchNorm1d(6, eps_placement="outside").double()
    x, g = _data((8, 6), torch.float64)
    _run(bn, x, g)
    assert not calls


def test_torch_compile_traces_the_torch_ops(monkeypatch, calls):
    """While torch.compile traces a layer its tensors have no memory: the torch-op path is traced."""
    from trainlab.nn import native_layers

    monkeypatch.setattr(native_layers, "_compiling", lambda: True)
    x, g = _data((8, 6), torch.float64)
    for ours, theirs in ((tn.LayerNorm(6).double(), nn.LayerNorm(6).double()),
                         (tn.BatchNorm1d(6).double(), nn.BatchNorm1d(6).double())):
        for a, b in zip(_run(ours, x, g)[0], _run(theirs, x, g)[0]):
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    assert not calls
