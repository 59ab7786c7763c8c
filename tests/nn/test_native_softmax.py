"""The fused C kernels of softmax, log-softmax and ELU/SELU: the exponential's error bound, the
layers on the C path against their readable forms and PyTorch, extreme inputs, and the fallbacks."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import trainlab.nn as tn
from trainlab.nn import activations as A
from trainlab.nn import native_softmax as N

pytestmark = pytest.mark.skipif(N.kernels() is None, reason=f"no C kernels here: {N.native_problem()}")

EPS = {torch.float32: 2.0 ** -23, torch.float64: 2.0 ** -52}
MANT = {torch.float32: (23, -126), torch.float64: (52, -1022)}


def _ulp_error(y: torch.Tensor, exact: np.ndarray, dtype) -> np.ndarray:
    """|y − exact| in ulps of the exact value (of the smallest normal's ulp in the subnormal range)."""
    mant, emin = MANT[dtype]
    exact = np.asarray(exact, dtype=np.longdouble)
    mag = np.abs(exact)
    e = np.maximum(np.floor(np.log2(np.where(mag > 0, mag, 1))), emin)
    err = np.abs(y.numpy().astype(np.longdouble) - exact) / np.ldexp(np.longdouble(1), (e - mant).astype(int))
    # an exact value beyond the largest finite number rounds to inf: then inf is the right answer
    with np.errstate(over="ignore", invalid="ignore"):
        rounds_to_inf = np.isinf(exact.astype(np.float32 if dtype == torch.float32 else np.float64))
        return np.where(rounds_to_inf & (y.numpy() == np.sign(exact) * np.inf), 0, err)


def _exact_exp(x: np.ndarray, dtype) -> np.ndarray:
    """e^x to well beyond the type's precision: float64 for float32 results, long double for float64."""
    with np.errstate(over="ignore"):
        if dtype == torch.float32:
            return np.exp(x.astype(np.float64))
        return np.exp(x.astype(np.longdouble))


def _exact_expm1(x: np.ndarray, dtype) -> np.ndarray:
    return np.expm1(x.astype(np.float64 if dtype == torch.float32 else np.longdouble))


def _sweep(dtype) -> np.ndarray:
    """The kernels' exponential's domain x ≤ 0 down to where e^x rounds to 0: a dense grid, the
    negative float32 bit patterns at a stride (every binade, down to the subnormals), and a
    grid over [−1, 0] where the polynomial alone does the work."""
    np_type = np.float32 if dtype == torch.float32 else np.float64
    lo = -104.0 if dtype == torch.float32 else -746.0
    parts = [np.linspace(lo, 0, 1_500_001), np.linspace(-1, 0, 500_001)]
    bits = np.arange(2 ** 31, 2 ** 32, 1009, dtype=np.uint64).astype(np.uint32).view(np.float32)
    parts.append(bits[np.isfinite(bits) & (bits > lo)])
    return np.concatenate(parts).astype(np_type)


needs_long_double = pytest.mark.skipif(np.finfo(np.longdouble).nmant < 60,
                                       reason="no extended long double for a float64 reference here")


@pytest.mark.parametrize("dtype", [torch.float32, pytest.param(torch.float64, marks=needs_long_double)])
def test_exp_is_within_its_stated_ulp_bound_over_a_dense_sweep(dtype):
    x = _sweep(dtype)
    err = _ulp_error(N.exp(torch.from_numpy(x)), _exact_exp(x, dtype), dtype)
    bound = N.EXP_ULPS_F32 if dtype == torch.float32 else N.EXP_ULPS_F64
    assert err.max() <= bound, (float(err.max()), x[err.argmax()])
    assert err.max() > 0.5  # the sweep does reach the worst cases (not correctly rounded everywhere)


@pytest.mark.parametrize("dtype", [torch.float32, pytest.param(torch.float64, marks=needs_long_double)])
def test_expm1_keeps_relative_precision_down_to_tiny_arguments(dtype):
    np_type = np.float32 if dtype == torch.float32 else np.float64
    tiny = np.finfo(np_type).smallest_subnormal
    x = np.concatenate([np.linspace(-45, 0, 1_000_001), -np.logspace(np.log10(tiny), 0, 200_001),
                        [0.0, -0.0, -tiny]]).astype(np_type)
    err = _ulp_error(N.expm1_neg(torch.from_numpy(x)), _exact_expm1(x, dtype), dtype)
    bound = N.EXPM1_ULPS_F32 if dtype == torch.float32 else N.EXPM1_ULPS_F64
    assert err.max() <= bound, (float(err.max()), x[err.argmax()])


@pytest.mark.parametrize("dtype", [torch.float32, pytest.param(torch.float64, marks=needs_long_double)])
def test_exp_special_values_are_those_of_expf(dtype):
    x = torch.tensor([0.0, -0.0, float("-inf"), float("nan"), -1e30], dtype=dtype)
    y = N.exp(x)
    assert y[0] == 1 and y[1] == 1 and y[2] == 0 and torch.isnan(y[3]) and y[4] == 0
    # the subnormal range: e^x down to the smallest subnormal and the first x that rounds to 0
    tiny = torch.finfo(dtype).tiny
    sub = torch.linspace(float(np.log(tiny)) - 20, float(np.log(tiny)), 10001, dtype=dtype)
    exact = _exact_exp(sub.numpy(), dtype)
    err = _ulp_error(N.exp(sub), exact, dtype)
    assert err.max() <= 1.0  # in ulps of the smallest normal: the subnormals' spacing
    assert (N.exp(sub)[exact < float(tiny) * 2.0 ** -(MANT[dtype][0] + 1) * 0.99] == 0).all()
    assert (N.exp(sub)[exact > float(tiny) * 2.0 ** -MANT[dtype][0]] > 0).all()


# --------------------------------------------------------------------------------------------
# the layers on the C path
# --------------------------------------------------------------------------------------------
SOFTMAXES = {"softmax": (A.softmax, A._softmax_readable, torch.softmax),
             "log_softmax": (A.log_softmax, A._log_softmax_readable, torch.log_softmax)}
ELUS = {"elu": (A.elu, lambda z: A._elu_readable(z, 1.0, 1.0), F.elu),
        "elu_0.5": (lambda z: A.elu(z, 0.5), lambda z: A._elu_readable(z, 0.5, 1.0), lambda z: F.elu(z, 0.5)),
        "selu": (A.selu, lambda z: A._elu_readable(z, A.SELU_ALPHA, A.SELU_SCALE), F.selu)}


def _value_and_grad(fn, z, g):
    z = z.detach().clone().requires_grad_()
    y = fn(z)
    y.backward(g)
    return y.detach(), z.grad


def _ulps_of_max(a, b, dtype):
    """max |a − b| in units of ε relative to max |b| (the convention of test_fastpath)."""
    a, b = a.double(), b.double()
    fin = torch.isfinite(b)
    assert torch.equal(torch.isfinite(a), fin)
    torch.testing.assert_close(a[~fin], b[~fin], equal_nan=True)
    if not b[fin].abs().max() > 0:  # all zero (rows of one): exactly
        return 0.0 if torch.equal(a[fin], b[fin]) else float("inf")
    return float((a[fin] - b[fin]).abs().max() / (EPS[dtype] * b[fin].abs().max()))


def _counting(monkeypatch, name):
    """Count the calls of one C entry point (the Functions look it up on the module at each call)."""
    calls = []
    real = getattr(N, name)
    monkeypatch.setattr(N, name, lambda *a: calls.append(1) or real(*a))
    return calls


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [(4, 1), (5, 3), (6, 257), (2, 3, 257), (257,)])
@pytest.mark.parametrize("name", sorted(SOFTMAXES))
def test_softmaxes_on_the_c_path_match_the_readable_form_and_torch(name, shape, dtype, monkeypatch):
    fast, readable, theirs = SOFTMAXES[name]
    calls = _counting(monkeypatch, name + "_forward")
    back = _counting(monkeypatch, name + "_backward")
    gen = torch.Generator().manual_seed(len(shape) * 1000 + shape[-1])
    z = (torch.randn(shape, generator=gen, dtype=torch.float64) * 4).to(dtype)
    g = torch.randn(shape, generator=gen, dtype=torch.float64).to(dtype)
    ours = _value_and_grad(lambda t: fast(t, -1), z, g)
    assert calls and back  # the C kernels ran both ways
    if dtype == torch.float64:
        for reference in (readable, theirs):
            for a, b in zip(ours, _value_and_grad(lambda t: reference(t, -1), z, g)):
                torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    else:
        # 4 ε (test_fastpath's bound) from the exact value: the float64 readable form (which the
        # float64 case holds to torch) of the float32 shifted logits z − max z. Every float32 softmax
        # rounds z − max z first, which moves e^(z − m) by up to |z − m|·2⁻²⁴ relative (10 ulps at
        # z − m = −20): that error belongs to the input, not to the kernel. The output's ε is relative
        # to its largest value, the gradient's to its largest term, y⊙g or y·⟨g, y⟩ (softmax), g or
        # softmax·Σg (log-softmax): where a saturated row makes them cancel, the gradient's rounding
        # is of their size, not of the small difference.
        shifted = (z - z.amax(-1, keepdim=True)).double()
        y, dz = _value_and_grad(lambda t: readable(t, -1), shifted, g.double())
        p = y if name == "softmax" else y.exp()
        other = g.double() * p if name == "softmax" else g.double()
        terms = torch.maximum(other.abs(), (p * (other.sum(-1, keepdim=True))).abs())
        assert _ulps_of_max(ours[0], y, dtype) <= 4
        assert float((ours[1] - dz).abs().max() / (EPS[dtype] * terms.max())) <= 4


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name", sorted(SOFTMAXES))
def test_softmaxes_at_extreme_logits_match_torch(name, dtype):
    fast, _, theirs = SOFTMAXES[name]
    inf = float("inf")
    z = torch.tensor([[1e4, -1e4, 0.0, 3.0],       # one entry dominates
                      [-inf, 0.0, 1.0, -inf],       # masked entries
                      [7.0, 7.0, 7.0, 7.0],         # all equal: exactly uniform
                      [-1e4, -1e4, -1e4 + 1, -1e4],
                      [-inf, -inf, -inf, -inf],     # nothing left: NaN, as torch
                      [float("nan"), 0.0, 1.0, 2.0],
                      [inf, 0.0, 1.0, 2.0],           # inf − inf: NaN, as torch
                      [3e38, -3e38, 0.0, 1.0]], dtype=dtype)  # z − m overflows to −inf in float32
    g = torch.linspace(-1, 1, z.numel(), dtype=dtype).view_as(z)
    ours = _value_and_grad(lambda t: fast(t, -1), z, g)
    ref = _value_and_grad(lambda t: theirs(t, -1), z, g)
    tol = dict(rtol=4 * EPS[dtype], atol=4 * EPS[dtype])
    for a, b in zip(ours, ref):
        torch.testing.assert_close(a, b, equal_nan=True, **tol)
    if name == "softmax":
        assert torch.equal(ours[0][2], torch.full((4,), 0.25, dtype=dtype))
        assert ours[0][1, 0] == 0 and ours[0][1, 3] == 0 and ours[1][1, 0] == 0


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name", sorted(ELUS))
def test_elus_on_the_c_path_match_the_readable_form_and_torch(name, dtype, monkeypatch):
    fast, readable, theirs = ELUS[name]
    calls = _counting(monkeypatch, "elu_forward")
    back = _counting(monkeypatch, "elu_backward")
    gen = torch.Generator().manual_seed(5)
    z = (torch.randn(37, 41, generator=gen, dtype=torch.float64) * 3).to(dtype)
    z.view(-1)[:10] = torch.tensor([0.0, -0.0, 1e-30, -1e-30, 30.0, -30.0, 90.0, -90.0, 1e4, -1e4], dtype=dtype)
    g = torch.randn(37, 41, generator=gen, dtype=torch.float64).to(dtype)
    ours = _value_and_grad(fast, z, g)
    assert calls and back
    if dtype == torch.float64:
        for reference in (readable, theirs):
            for a, b in zip(ours, _value_and_grad(reference, z, g)):
                torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    else:  # as for the softmaxes: 4 ε of the largest magnitude, from the exact value
        for a, b in zip(ours, _value_and_grad(readable, z.double(), g.double())):
            assert _ulps_of_max(a, b, dtype) <= 4
    scale = A.SELU_SCALE if name == "selu" else 1.0
    alpha = A.SELU_ALPHA if name == "selu" else (0.5 if name == "elu_0.5" else 1.0)
    # the derivative at z = 0 (and −0) is λα, PyTorch's choice; saturation to −λα
    assert torch.equal(ours[1][0, :2], torch.tensor(scale * alpha, dtype=dtype) * g[0, :2])
    assert ours[0][0, 9] == torch.tensor(-scale * alpha, dtype=dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_elu_keeps_relative_precision_near_zero_and_handles_specials(dtype):
    z = -torch.logspace(-30, 0, 2001, dtype=torch.float64).to(dtype)
    y = A.selu(z)
    exact = A.SELU_SCALE * A.SELU_ALPHA * torch.expm1(z.double())
    rel = ((y.double() - exact) / exact).abs().max() / EPS[dtype]
    assert rel <= 2  # expm1's error plus the rounding of λα and of the product
    specials = torch.tensor([float("inf"), float("-inf"), float("nan")], dtype=dtype)
    torch.testing.assert_close(A.selu(specials), F.selu(specials), equal_nan=True)
    torch.testing.assert_close(A.elu(specials), F.elu(specials), equal_nan=True)


@pytest.mark.parametrize("name", ["softmax", "log_softmax", "selu"])
def test_c_path_passes_gradcheck_and_gradgradcheck(name):
    fn = {"softmax": lambda t: A.softmax(t, -1), "log_softmax": lambda t: A.log_softmax(t, -1), "selu": A.selu}[name]
    z = torch.linspace(-3.1, 2.9, 15, dtype=torch.float64).view(3, 5)
    z = torch.where(z.abs() < 0.05, z + 0.1, z).requires_grad_()
    assert torch.autograd.gradcheck(fn, (z,))
    assert torch.autograd.gradgradcheck(fn, (z,))  # the double backward keeps its torch-op branch


def test_a_contiguous_slice_with_an_offset_takes_the_c_path(monkeypatch):
    calls = _counting(monkeypatch, "softmax_forward")
    z = torch.randn(6, 9, generator=torch.Generator().manual_seed(4), dtype=torch.float64)[2:5]
    assert z.is_contiguous() and z.storage_offset() == 18
    torch.testing.assert_close(A.softmax(z, -1), torch.softmax(z, -1), rtol=1e-12, atol=1e-12)
    assert calls


def test_threads_split_rows_without_changing_a_bit():
    gen = torch.Generator().manual_seed(2)
    z = torch.randn(300, 257, generator=gen) * 5   # above the split threshold (32768 elements)
    g = torch.randn(300, 257, generator=gen)
    results = []
    for threads in (1, 2):
        torch.set_num_threads(threads)
        results.append([t for f in (lambda t: A.softmax(t, -1), lambda t: A.log_softmax(t, -1), A.selu)
                        for t in _value_and_grad(f, z, g)])
    torch.set_num_threads(1)
    for a, b in zip(*results):
        assert torch.equal(a, b)


@pytest.mark.parametrize("case", ["transposed", "dim 0", "bfloat16", "TRAINLAB_NATIVE=0", "readable"])
def test_fallbacks_take_the_torch_op_path_and_agree(case, monkeypatch):
    calls = _counting(monkeypatch, "softmax_forward")
    elu_calls = _counting(monkeypatch, "elu_forward")
    gen = torch.Generator().manual_seed(3)
    z = torch.randn(9, 7, generator=gen, dtype=torch.float64)
    g = torch.randn(9, 7, generator=gen, dtype=torch.float64)
    dim = -1
    if case == "transposed":
        z, g = z.t(), g.t()
    elif case == "dim 0":
        dim = 0
    elif case == "bfloat16":
        z, g = z.bfloat16(), g.bfloat16()
    elif case == "TRAINLAB_NATIVE=0":
        monkeypatch.setenv("TRAINLAB_NATIVE", "0")
        assert N.kernels() is None and "TRAINLAB_NATIVE=0" in N.native_problem()
    with tn.readable_layers(case == "readable"):
        ours = _value_and_grad(lambda t: A.softmax(t, dim), z, g)
        ours_selu = _value_and_grad(A.selu, z, g)
    assert not calls and (case in ("dim 0",) or not elu_calls)  # SELU is elementwise: any dim qualifies
    tol = dict(rtol=1e-2, atol=1e-2) if case == "bfloat16" else dict(rtol=1e-12, atol=1e-12)
    for a, b in zip(ours, _value_and_grad(lambda t: torch.softmax(t, dim), z, g)):
        torch.testing.assert_close(a, b, **tol)
    for a, b in zip(ours_selu, _value_and_grad(F.selu, z, g)):
        torch.testing.assert_close(a, b, **tol)
