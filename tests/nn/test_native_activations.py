"""The C kernels of tanh, sigmoid, SiLU and GELU: the erf's and tanh's error bounds, the layers on the C path against
their readable forms and PyTorch, special values, and the fallbacks."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import trainlab.nn as tn
from trainlab.nn import activations as A
from trainlab.nn import native_softmax as N

pytestmark = pytest.mark.skipif(N.kernels() is None, reason=f"no C kernels here: {N.native_problem()}")

EPS = {torch.float32: 2.0 ** -23, torch.float64: 2.0 ** -52}


def _ulps(y: np.ndarray, exact: np.ndarray, mant: int, emin: int) -> np.ndarray:
    """|y − exact| in ulps of the exact value (of the smallest normal's ulp below it)."""
    mag = np.abs(exact)
    e = np.maximum(np.floor(np.log2(np.where(mag > 0, mag, 1))), emin)
    return np.abs(y - exact) / np.ldexp(1.0, (e - mant).astype(int))


def test_erf_float32_is_within_its_stated_ulp_bound():
    # a dense grid over the range where erf is not 1 in float32, [−1, 1] denser, and the positive
    # float32 bit patterns at a stride (every binade down to the subnormals); the exact value is
    # the float64 erf (its error, under 1e-16, is far below a float32 ulp)
    bits = np.arange(0, 0x40900000, 997, dtype=np.uint32).view(np.float32)   # up to 4.5
    x = np.concatenate([np.linspace(-4.5, 4.5, 1_000_001), np.linspace(-1, 1, 500_001),
                        np.linspace(0.93, 0.95, 100_001)]).astype(np.float32)
    x = np.concatenate([x, bits, -bits])
    exact = torch.erf(torch.from_numpy(x).double()).numpy()
    err = _ulps(N.erf(torch.from_numpy(x)).numpy().astype(np.float64), exact, 23, -126)
    assert err.max() <= N.ERF_ULPS_F32, (float(err.max()), x[err.argmax()])
    assert err.max() > 0.5  # the sweep reaches the worst cases


def test_erf_float64_is_within_its_stated_ulp_bound():
    mpmath = pytest.importorskip("mpmath")
    mpmath.mp.prec = 80
    # the pieces' edges (0.9375, 1.75, the clamp at 6) and a grid over the range where erf is not 1
    x = np.concatenate([np.linspace(-6.5, 6.5, 6001), np.linspace(0.93, 0.95, 1001), np.linspace(1.7, 1.8, 1001),
                        np.linspace(5.8, 6.1, 1001), np.logspace(-300, 0, 301)])
    y = N.erf(torch.from_numpy(x)).numpy()
    exact = [mpmath.erf(mpmath.mpf(float(v))) for v in x]
    ulp = [mpmath.ldexp(1, max(int(mpmath.floor(mpmath.log(abs(b), 2))), -1022) - 52) if b else 1 for b in exact]
    err = np.array([float(abs(mpmath.mpf(float(a)) - b) / u) for a, b, u in zip(y, exact, ulp)])
    assert err.max() <= N.ERF_ULPS_F64, (float(err.max()), x[err.argmax()])
    assert err.max() > 0.5


def test_tanh_is_within_its_stated_ulp_bound():
    mpmath = pytest.importorskip("mpmath")
    mpmath.mp.prec = 80
    bits = np.arange(0, 0x41300000, 997, dtype=np.uint32).view(np.float32)   # up to 11, where tanh rounds to 1
    x = np.concatenate([np.linspace(-11, 11, 1_000_001), np.linspace(-1, 1, 500_001), bits, -bits]).astype(np.float32)
    err = _ulps(N.tanh(torch.from_numpy(x)).numpy().astype(np.float64), np.tanh(x.astype(np.float64)), 23, -126)
    assert 0.5 < err.max() <= N.TANH_ULPS_F32, (float(err.max()), x[err.argmax()])
    xd = np.concatenate([np.linspace(-20, 20, 2001), np.linspace(3.9, 4.1, 1001), np.logspace(-300, 1.3, 301)])
    exact = [mpmath.tanh(mpmath.mpf(float(v))) for v in xd]
    ulp = [mpmath.ldexp(1, max(int(mpmath.floor(mpmath.log(abs(b), 2))), -1022) - 52) if b else 1 for b in exact]
    err = np.array([float(abs(mpmath.mpf(float(a)) - b) / u) for a, b, u in zip(N.tanh(torch.from_numpy(xd)).numpy(),
                                                                                exact, ulp)])
    assert 0.5 < err.max() <= N.TANH_ULPS_F64, (float(err.max()), xd[err.argmax()])
    specials = torch.tensor([0.0, -0.0, float("inf"), float("-inf"), float("nan"), 30.0])
    for dtype in (torch.float32, torch.float64):
        y = N.tanh(specials.to(dtype))
        assert torch.equal(y[[0, 2, 3, 5]], torch.tensor([0.0, 1.0, -1.0, 1.0], dtype=dtype))
        assert torch.signbit(y[1]) and torch.isnan(y[4])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_erf_special_values(dtype):
    tiny = torch.finfo(dtype).tiny
    x = torch.tensor([0.0, -0.0, float("inf"), float("-inf"), float("nan"), 7.0, -30.0, 1e30, tiny], dtype=dtype)
    y = N.erf(x)
    assert y[0] == 0 and not torch.signbit(y[0]) and y[1] == 0 and torch.signbit(y[1])
    assert y[2] == 1 and y[3] == -1 and torch.isnan(y[4]) and y[5] == 1 and y[6] == -1 and y[7] == 1
    exact = float(torch.erf(x[8:9].double())) if dtype == torch.float32 else 2 / np.sqrt(np.pi) * tiny
    bound = N.ERF_ULPS_F32 if dtype == torch.float32 else N.ERF_ULPS_F64
    assert abs(float(y[8]) - exact) <= bound * EPS[dtype] * exact  # erf x ≈ 2x/√π at the smallest normal


# --------------------------------------------------------------------------------------------
# the layers on the C path
# --------------------------------------------------------------------------------------------
LAYERS = {  # name: (fast, readable, torch's, the C entry points it must call)
    "tanh": (A.tanh, torch.tanh, torch.tanh, ["tanh_backward"]),
    "sigmoid": (A.sigmoid, A._sigmoid_readable, torch.sigmoid, ["sigmoid_backward"]),
    "silu": (A.silu, A._silu_reference, F.silu, ["silu_backward"]),
    "gelu": (A.gelu, lambda z: A._gelu_reference(z, "none"), F.gelu, ["gelu_forward", "gelu_backward"]),
    "gelu_tanh": (lambda z: A.gelu(z, "tanh"), lambda z: A._gelu_reference(z, "tanh"),
                  lambda z: F.gelu(z, approximate="tanh"), ["gelu_tanh_forward", "gelu_tanh_backward"]),
}


def _value_and_grad(fn, z, g):
    z = z.detach().clone().requires_grad_()
    y = fn(z)
    y.backward(g)
    return y.detach(), z.grad


def _ulps_of_max(a, b, dtype):
    """max |a − b| in units of ε relative to max |b| (the convention of test_fastpath)."""
    a, b = a.double(), b.double()
    if not b.abs().max() > 0:  # all zero: exactly
        return 0.0 if torch.equal(a, b) else float("inf")
    return float((a - b).abs().max() / (EPS[dtype] * b.abs().max()))


def _counting(monkeypatch, name):
    calls = []
    real = getattr(N, name)
    monkeypatch.setattr(N, name, lambda *a: calls.append(1) or real(*a))
    return calls


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [(1,), (37, 41), (3, 5, 7)])
@pytest.mark.parametrize("name", sorted(LAYERS))
def test_layers_on_the_c_path_match_the_readable_form_and_torch(name, shape, dtype, monkeypatch):
    fast, readable, theirs, entries = LAYERS[name]
    calls = [_counting(monkeypatch, e) for e in entries]
    gen = torch.Generator().manual_seed(7 + len(shape))
    z = (torch.randn(shape, generator=gen, dtype=torch.float64) * 3).to(dtype)
    z.view(-1)[:8] = torch.tensor([0.0, -0.0, 1e-30, -1e-30, 6.0, -6.0, 40.0, -40.0])[:z.numel()].to(dtype)
    g = torch.randn(shape, generator=gen, dtype=torch.float64).to(dtype)
    ours = _value_and_grad(fast, z, g)
    assert all(calls)  # the C kernels ran
    if dtype == torch.float64:
        for reference in (readable, theirs):
            for a, b in zip(ours, _value_and_grad(reference, z, g)):
                torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    else:
        # within 4 ε (test_fastpath's bound) of the largest magnitude, from the exact value (the
        # float64 readable form of the same float32 input and gradient): the kernels round a few
        # times (σ's backward y − y² inherits σ's own rounding where y ≈ 1, ~2 ε measured; the
        # GELU(tanh) slope ~3 ε, torch's own ~6 ε)
        for a, b in zip(ours, _value_and_grad(readable, z.double(), g.double())):
            assert _ulps_of_max(a, b, dtype) <= 4


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name", sorted(LAYERS))
def test_special_values_match_the_formula_and_torch(name, dtype):
    """±0, ±inf, NaN, tiny and huge inputs give the readable formula's values (GELU(+inf) = inf·Φ(inf)
    = inf, GELU(−inf) = −inf·0 = NaN), and torch's wherever torch's own value does not depend on the
    CPU: torch's vectorized GELU gives NaN at +inf with AVX-512 and inf with AVX2 (both measured)."""
    fast, readable, theirs, _ = LAYERS[name]
    z = torch.tensor([0.0, -0.0, float("inf"), float("-inf"), float("nan"), 1e-30, 40.0, -40.0, 1e30, -1e30],
                     dtype=dtype)
    g = torch.linspace(-1, 1, z.numel(), dtype=dtype)
    finite = torch.isfinite(z)
    tol = dict(equal_nan=True, rtol=4 * EPS[dtype], atol=4 * EPS[dtype])
    ours = _value_and_grad(fast, z, g)
    for a, b in zip(ours, _value_and_grad(readable, z, g)):
        torch.testing.assert_close(a, b, **tol)
    for a, b in zip(ours, _value_and_grad(theirs, z, g)):
        torch.testing.assert_close(a[finite], b[finite], **tol)


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_c_path_passes_gradcheck_and_gradgradcheck(name):
    z = torch.linspace(-3.1, 2.9, 15, dtype=torch.float64).view(3, 5).requires_grad_()
    assert torch.autograd.gradcheck(LAYERS[name][0], (z,))
    assert torch.autograd.gradgradcheck(LAYERS[name][0], (z,))  # the double backward keeps its torch-op branch


def test_threads_split_without_changing_a_bit():
    """Each C kernel, fed the same inputs above the split threshold (32768 elements), gives the same
    bits at one thread and two. (The kernels are called directly: σ's and SiLU's values are torch's
    own kernels, which on an AVX-512 CPU round a chunk's last elements differently with the split.)"""
    gen = torch.Generator().manual_seed(2)
    z = torch.randn(300, 257, generator=gen) * 3
    g = torch.randn(300, 257, generator=gen)
    s, t = torch.sigmoid(z), torch.tanh(z)
    cdf = torch.special.ndtr(z)
    tz = torch.tanh(0.7978845608028654 * (z + 0.044715 * z ** 3))
    calls = {"tanh_backward": (t, g), "sigmoid_backward": (s, g), "silu_backward": (s, z * s, g),
             "gelu_forward": (z,), "gelu_backward": (z, cdf, g), "gelu_tanh_forward": (z,),
             "gelu_tanh_backward": (z, tz, g)}
    assert set(calls) == {e for *_, entries in LAYERS.values() for e in entries}
    results = []
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            results.append([getattr(N, name)(*args) for name, args in calls.items()])
    finally:
        torch.set_num_threads(1)
    for name, a, b in zip(calls, *results):
        for x, y in zip(a if isinstance(a, tuple) else (a,), b if isinstance(b, tuple) else (b,)):
            assert torch.equal(x, y), name


@pytest.mark.parametrize("case", ["transposed", "bfloat16", "TRAINLAB_NATIVE=0", "readable"])
@pytest.mark.parametrize("name", sorted(LAYERS))
def test_fallbacks_take_the_torch_op_path_and_agree(name, case, monkeypatch):
    fast, _, theirs, entries = LAYERS[name]
    calls = [_counting(monkeypatch, e) for e in entries]
    gen = torch.Generator().manual_seed(3)
    z = torch.randn(9, 7, generator=gen, dtype=torch.float64)
    g = torch.randn(9, 7, generator=gen, dtype=torch.float64)
    if case == "transposed":
        z, g = z.t(), g.t()
    elif case == "bfloat16":
        z, g = z.bfloat16(), g.bfloat16()
    elif case == "TRAINLAB_NATIVE=0":
        monkeypatch.setenv("TRAINLAB_NATIVE", "0")
        assert N.kernels() is None
    with tn.readable_layers(case == "readable"):
        ours = _value_and_grad(fast, z, g)
    assert not any(calls)
    tol = dict(rtol=1e-2, atol=1e-2) if case == "bfloat16" else dict(rtol=1e-12, atol=1e-12)
    for a, b in zip(ours, _value_and_grad(theirs, z, g)):
        torch.testing.assert_close(a, b, **tol)


@pytest.mark.parametrize("native", [True, False])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_silu_slope_is_one_for_large_inputs_on_both_paths(native, dtype, monkeypatch):
    # σ = 1 there and the slope σ + y(1 − σ) is exactly 1; (σ + y) − y·σ would round σ away (0 or 2)
    if not native:
        monkeypatch.setenv("TRAINLAB_NATIVE", "0")
    z = torch.tensor([3e7, 1e10, 1e30, -3e7, -1e30], dtype=dtype)
    _, dz = _value_and_grad(A.silu, z, torch.ones_like(z))
    assert torch.equal(dz, torch.tensor([1.0, 1.0, 1.0, 0.0, 0.0], dtype=dtype))
