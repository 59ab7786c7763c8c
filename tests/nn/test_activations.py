"""Activations: values and gradients against torch.nn.functional, formulas by hand, second derivatives."""
import math

import pytest
import torch
import torch.nn.functional as F

from trainlab.nn import activations as A
from trainlab.nn import layers as L

# name -> (ours, PyTorch's)
PAIRS = {
    "sigmoid": (A.sigmoid, torch.sigmoid),
    "tanh": (A.tanh, torch.tanh),
    "relu": (A.relu, F.relu),
    "leaky_relu": (A.leaky_relu, F.leaky_relu),
    "leaky_relu_0.3": (lambda z: A.leaky_relu(z, 0.3), lambda z: F.leaky_relu(z, 0.3)),
    "elu": (A.elu, F.elu),
    "elu_0.5": (lambda z: A.elu(z, 0.5), lambda z: F.elu(z, 0.5)),
    "selu": (A.selu, F.selu),
    "gelu": (A.gelu, F.gelu),
    "gelu_tanh": (lambda z: A.gelu(z, "tanh"), lambda z: F.gelu(z, approximate="tanh")),
    "silu": (A.silu, F.silu),
    "softmax": (lambda z: A.softmax(z, -1), lambda z: torch.softmax(z, -1)),
    "softmax_dim0": (lambda z: A.softmax(z, 0), lambda z: torch.softmax(z, 0)),
    "log_softmax": (lambda z: A.log_softmax(z, -1), lambda z: torch.log_softmax(z, -1)),
}
TOL = {torch.float32: dict(rtol=1e-6, atol=1e-6), torch.float64: dict(rtol=1e-12, atol=1e-12)}


def _inputs(dtype):
    g = torch.Generator().manual_seed(0)
    z = torch.randn(64, 33, generator=g, dtype=dtype) * 3
    z[0, :9] = torch.tensor([0.0, -0.0, 1e-30, -1e-30, 30.0, -30.0, 90.0, -90.0, 5.0], dtype=dtype)
    return z


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name", sorted(PAIRS))
def test_values_and_gradients_match_pytorch(name, dtype):
    """float64: against PyTorch's float64 with a random upstream gradient, to 1e-12.

    float32: against PyTorch's float64 result (the exact value, rounded) to 1e-6, with the
    upstream gradient 1 so the derivative itself is compared. PyTorch's float32 kernels are not
    the yardstick: e.g. its fused gelu-tanh backward returns 0 for z ≲ −5.08, where tanh(·)
    rounds to −1 in float32 although the derivative is ~1e-6 (ours keeps it down to z ≈ −5.1).
    """
    ours, ref = PAIRS[name]
    z = _inputs(dtype)
    g = (torch.randn(z.shape, dtype=dtype, generator=torch.Generator().manual_seed(1)) if dtype == torch.float64
         else torch.ones(z.shape, dtype=dtype))
    z1, z2 = z.clone().requires_grad_(), z.double().requires_grad_()
    y1, y2 = ours(z1), ref(z2)
    assert y1.dtype == dtype
    torch.testing.assert_close(y1, y2.to(dtype), **TOL[dtype])
    y1.backward(g)
    y2.backward(g.double())
    torch.testing.assert_close(z1.grad, z2.grad.to(dtype), **TOL[dtype])


@pytest.mark.parametrize("name", sorted(PAIRS))
def test_first_and_second_derivatives_numerically(name):
    ours, _ = PAIRS[name]
    # away from the kinks of the piecewise ones, where finite differences are not defined
    z = torch.linspace(-3.1, 2.9, 24, dtype=torch.float64).reshape(4, 6)
    z = torch.where(z.abs() < 0.05, z + 0.1, z).requires_grad_()
    assert torch.autograd.gradcheck(ours, (z,))
    assert torch.autograd.gradgradcheck(ours, (z,))


def test_second_derivative_formulas_by_hand():
    z = torch.tensor([-1.5, -0.3, 0.4, 2.0], dtype=torch.float64, requires_grad=True)
    (d1,) = torch.autograd.grad(A.sigmoid(z).sum(), z, create_graph=True)
    (d2,) = torch.autograd.grad(d1.sum(), z)
    s = torch.sigmoid(z.detach())
    torch.testing.assert_close(d1.detach(), s * (1 - s))
    torch.testing.assert_close(d2, s * (1 - s) * (1 - 2 * s))      # σ'' = σ(1−σ)(1−2σ)
    (t1,) = torch.autograd.grad(A.tanh(z).sum(), z, create_graph=True)
    (t2,) = torch.autograd.grad(t1.sum(), z)
    t = torch.tanh(z.detach())
    torch.testing.assert_close(t2, -2 * t * (1 - t * t))              # tanh'' = −2 tanh (1 − tanh²)


def test_formulas_by_hand():
    z = torch.tensor([-2.0, -0.5, 0.0, 0.5, 2.0], dtype=torch.float64)
    torch.testing.assert_close(A.sigmoid(z), 1 / (1 + torch.exp(-z)))
    torch.testing.assert_close(A.relu(z), torch.tensor([0, 0, 0, 0.5, 2.0], dtype=torch.float64))
    torch.testing.assert_close(A.leaky_relu(z, 0.1), torch.tensor([-0.2, -0.05, 0, 0.5, 2.0], dtype=torch.float64))
    # the generalized rectifier with α = −1 is the absolute value
    torch.testing.assert_close(A.generalized_rectifier(z, -1.0), z.abs())
    torch.testing.assert_close(A.elu(z, 2.0), torch.where(z > 0, z, 2.0 * (torch.exp(z) - 1)))
    lam, alpha = 1.0507009873554805, 1.6732632423543772
    torch.testing.assert_close(A.selu(z), lam * torch.where(z > 0, z, alpha * (torch.exp(z) - 1)))
    phi = 0.5 * (1 + torch.erf(z / math.sqrt(2)))
    torch.testing.assert_close(A.gelu(z), z * phi)
    torch.testing.assert_close(A.silu(z), z / (1 + torch.exp(-z)))
    e = torch.exp(z)
    torch.testing.assert_close(A.softmax(z, 0), e / e.sum())
    torch.testing.assert_close(A.log_softmax(z, 0), torch.log(e / e.sum()))


def test_kink_gradients_follow_pytorch():
    z = torch.zeros(3, requires_grad=True)
    A.relu(z).sum().backward()
    assert z.grad.tolist() == [0.0, 0.0, 0.0]
    z.grad = None
    A.leaky_relu(z, 0.2).sum().backward()
    torch.testing.assert_close(z.grad, torch.full((3,), 0.2))
    z.grad = None
    A.elu(z, 0.7).sum().backward()
    torch.testing.assert_close(z.grad, torch.full((3,), 0.7))


def test_saturated_inputs_give_finite_values_and_gradients():
    z = torch.tensor([-1000.0, -100.0, 100.0, 1000.0], requires_grad=True)
    for f in (A.sigmoid, A.silu, A.tanh, A.elu, A.selu, A.gelu):
        y = f(z)
        (g,) = torch.autograd.grad(y.sum(), z)
        assert torch.isfinite(y).all() and torch.isfinite(g).all(), f.__name__
    assert A.sigmoid(torch.tensor(-1000.0)) == 0.0 and A.sigmoid(torch.tensor(1000.0)) == 1.0


def test_softmax_is_stable_for_huge_logits():
    z = torch.tensor([[1000.0, 1000.0, -1000.0], [-5e4, 0.0, 5e4]])
    p = A.softmax(z)
    torch.testing.assert_close(p, torch.tensor([[0.5, 0.5, 0.0], [0.0, 0.0, 1.0]]))
    lp = A.log_softmax(z)
    assert torch.isfinite(lp[0, :2]).all()
    torch.testing.assert_close(lp, torch.log_softmax(z, -1))


@pytest.mark.parametrize("shape,num", [((8, 5), 1), ((8, 5), 5), ((4, 3, 6, 6), 3), ((4, 3, 6, 6), 1), ((7,), 1)])
def test_prelu_matches_pytorch_shared_and_per_channel(shape, num):
    gen = torch.Generator().manual_seed(3)
    z = torch.randn(shape, generator=gen, dtype=torch.float64)
    w = torch.rand(num, generator=gen, dtype=torch.float64)
    z1, z2 = z.clone().requires_grad_(), z.clone().requires_grad_()
    w1, w2 = w.clone().requires_grad_(), w.clone().requires_grad_()
    g = torch.randn(shape, generator=gen, dtype=torch.float64)
    y1, y2 = A.prelu(z1, w1), F.prelu(z2, w2)
    torch.testing.assert_close(y1, y2)
    y1.backward(g)
    y2.backward(g)
    torch.testing.assert_close(z1.grad, z2.grad)
    torch.testing.assert_close(w1.grad, w2.grad)


def test_prelu_slope_gradient_by_hand_and_second_order():
    z = torch.tensor([[-2.0, 1.0], [-1.0, -3.0]], dtype=torch.float64, requires_grad=True)
    w = torch.tensor([0.25], dtype=torch.float64, requires_grad=True)
    A.prelu(z, w).sum().backward()
    assert w.grad.item() == pytest.approx(-2.0 - 1.0 - 3.0)           # Σ min(0, z)
    zz = z.detach().clone().requires_grad_()
    ww = torch.tensor([0.3, 0.1], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(A.prelu, (zz, ww))
    assert torch.autograd.gradgradcheck(A.prelu, (zz, ww))


def test_prelu_module_defaults_and_learning():
    m = A.PReLU()
    assert m.weight.shape == (1,) and m.weight.item() == 0.25   # PyTorch's default (Keras: 0)
    m = A.PReLU(4, init=0.1)
    z = -torch.ones(2, 4)
    torch.testing.assert_close(m(z), torch.full((2, 4), -0.1))
    with pytest.raises(ValueError, match="channels"):
        A.prelu(torch.randn(2, 3), torch.ones(4))


def test_module_validation_and_defaults():
    assert A.LeakyReLU().negative_slope == 0.01
    assert A.ELU().alpha == 1.0
    assert A.SELU.scale == pytest.approx(1.0507009873554805) and A.SELU.alpha == pytest.approx(1.6732632423543772)
    with pytest.raises(ValueError):
        A.LeakyReLU(-0.1)
    with pytest.raises(ValueError):
        A.GELU("fast")
    with pytest.raises(ValueError):
        A.GeneralizedRectifier(float("nan"))
    with pytest.raises(ValueError):
        A.ELU(-1.0)


@pytest.mark.parametrize("module,functional", [
    (A.Sigmoid(), torch.sigmoid), (A.Tanh(), torch.tanh), (A.ReLU(), F.relu), (A.LeakyReLU(0.2), lambda z: F.leaky_relu(z, 0.2)),
    (A.GeneralizedRectifier(0.5), lambda z: F.leaky_relu(z, 0.5)), (A.ELU(1.3), lambda z: F.elu(z, 1.3)),
    (A.SELU(), F.selu), (A.GELU("tanh"), lambda z: F.gelu(z, approximate="tanh")), (A.SiLU(), F.silu),
    (A.Softmax(1), lambda z: torch.softmax(z, 1)), (A.LogSoftmax(1), lambda z: torch.log_softmax(z, 1)),
])
def test_modules_match_functional(module, functional):
    z = torch.randn(5, 7, 3, dtype=torch.float64)
    torch.testing.assert_close(module(z), functional(z))


def test_maxout_with_two_pieces_reproduces_relu_and_leaky_relu():
    torch.manual_seed(0)
    w = torch.randn(6, 4)
    b = torch.randn(6)
    x = torch.randn(50, 4)
    z = x @ w.T + b
    for alpha, expected in ((0.0, F.relu(z)), (0.2, F.leaky_relu(z, 0.2)), (-1.0, z.abs())):
        m = L.Maxout(4, 6, k=2)
        with torch.no_grad():
            pieces = m.linear.weight.view(6, 2, 4)
            pieces[:, 0] = w                      # piece 1: z
            pieces[:, 1] = alpha * w              # piece 2: α·z  (0 for ReLU)
            m.linear.bias.view(6, 2)[:, 0] = b
            m.linear.bias.view(6, 2)[:, 1] = alpha * b
        torch.testing.assert_close(m(x), expected)


def test_maxout_shapes_gradient_and_validation():
    m = L.Maxout(3, 5, k=4)
    x = torch.randn(7, 3)
    assert m(x).shape == (7, 5) and m.pieces(x).shape == (7, 5, 4)
    torch.testing.assert_close(m(x), m.pieces(x).amax(-1))
    m(x).sum().backward()
    # each unit's gradient goes to its winning piece only: per example, one of k rows is non-zero
    assert m.linear.bias.grad.view(5, 4).sum(1).tolist() == [7.0] * 5
    with pytest.raises(ValueError):
        L.MaxoutPool(0)
    with pytest.raises(ValueError, match="divisible"):
        L.MaxoutPool(2)(torch.randn(2, 5))
