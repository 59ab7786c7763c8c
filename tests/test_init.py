"""Initializers: variances against their formulas, distributions against PyTorch's (KS tests),
structure (orthogonal, sparse, identity), bias rules, init_model and LSUV."""
import math

import pytest
import torch
from scipy import integrate, stats
from torch import nn

from trainlab import init
from trainlab.nn import MLP, CNN, weight_norm


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_fans():
    assert init.calculate_fan_in_and_fan_out(torch.empty(3, 5)) == (5, 3)
    assert init.calculate_fan_in_and_fan_out(torch.empty(8, 4, 3, 3)) == (36, 72)
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        init.calculate_fan_in_and_fan_out(torch.empty(4))


@pytest.mark.parametrize("name,param", [("linear", None), ("sigmoid", None), ("tanh", None), ("relu", None),
                                        ("leaky_relu", None), ("leaky_relu", 0.2), ("selu", None), ("conv2d", None)])
def test_gains_agree_with_pytorch(name, param):
    assert init.calculate_gain(name, param) == pytest.approx(nn.init.calculate_gain(name, param), rel=1e-15)


@pytest.mark.parametrize("name,f", [
    ("elu", lambda z: z if z > 0 else math.expm1(z)),
    ("gelu", lambda z: z * 0.5 * (1 + math.erf(z / math.sqrt(2)))),
    ("silu", lambda z: z / (1 + math.exp(-z))),
    ("relu", lambda z: max(z, 0.0)),
])
def test_second_moment_gains_by_quadrature(name, f):
    """gain = 1/√E[f(z)²], z ~ N(0,1); for ReLU this is PyTorch's √2."""
    second, _ = integrate.quad(lambda z: f(z) ** 2 * math.exp(-z * z / 2) / math.sqrt(2 * math.pi), -30, 30,
                               points=[0.0], limit=200)
    expected = 1 / math.sqrt(second)
    got = init.calculate_gain(name) if name != "relu" else init._second_moment_gain("elu", 0.0)
    assert got == pytest.approx(expected, rel=1e-7)


def test_other_gains():
    assert init.calculate_gain("prelu") == pytest.approx(math.sqrt(2 / (1 + 0.25 ** 2)))
    assert init.calculate_gain("rectifier", -1.0) == pytest.approx(1.0)     # |z|: E[z²] = 1
    assert init.calculate_gain("maxout") == pytest.approx(1.0, abs=1e-9)    # E[max(z1, z2)²] = 1
    k3, _ = integrate.quad(lambda z: z * z * 3 * stats.norm.pdf(z) * stats.norm.cdf(z) ** 2, -30, 30)
    assert init.calculate_gain("maxout", 3) == pytest.approx(1 / math.sqrt(k3), rel=1e-7)
    with pytest.raises(ValueError, match="unsupported nonlinearity"):
        init.calculate_gain("softsign")


# (initializer, kwargs, expected variance from (fan_in, fan_out)), on weights of two shapes
SHAPES = [(600, 1500), (96, 64, 3, 3)]
VARIANCES = [
    ("uniform_fan_in_", {}, lambda fi, fo: 1 / (3 * fi)),
    ("uniform_inverse_fan_in_", {}, lambda fi, fo: 1 / (3 * fi * fi)),
    ("xavier_normal_", {}, lambda fi, fo: 2 / (fi + fo)),
    ("xavier_normal_", {"gain": 5 / 3}, lambda fi, fo: (5 / 3) ** 2 * 2 / (fi + fo)),
    ("xavier_normal_", {"truncated": True}, lambda fi, fo: 2 / (fi + fo)),
    ("xavier_uniform_", {}, lambda fi, fo: 2 / (fi + fo)),
    ("he_normal_", {}, lambda fi, fo: 2 / fi),
    ("he_normal_", {"mode": "fan_out"}, lambda fi, fo: 2 / fo),
    ("he_normal_", {"a": 0.3}, lambda fi, fo: 2 / (1 + 0.09) / fi),
    ("he_normal_", {"truncated": True}, lambda fi, fo: 2 / fi),
    ("he_uniform_", {}, lambda fi, fo: 2 / fi),
    ("he_uniform_", {"nonlinearity": "tanh", "mode": "fan_out"}, lambda fi, fo: (5 / 3) ** 2 / fo),
    ("lecun_normal_", {}, lambda fi, fo: 1 / fi),
    ("lecun_normal_", {"truncated": True}, lambda fi, fo: 1 / fi),
    ("lecun_uniform_", {}, lambda fi, fo: 1 / fi),
    ("variance_scaling_", {"scale": 2.0, "mode": "fan_avg", "distribution": "uniform"}, lambda fi, fo: 4 / (fi + fo)),
    ("variance_scaling_", {"scale": 0.5}, lambda fi, fo: 0.5 / fi),
]


@pytest.mark.parametrize("shape", SHAPES, ids=["linear", "conv"])
@pytest.mark.parametrize("name,kwargs,var", VARIANCES, ids=[f"{v[0]}{v[1]}" for v in VARIANCES])
def test_sample_variance_matches_the_formula(name, kwargs, var, shape):
    w = torch.empty(shape)
    getattr(init, name)(w, generator=_gen(1), **kwargs)
    fan_in, fan_out = init.calculate_fan_in_and_fan_out(w)
    expected = var(fan_in, fan_out)
    n = w.numel()
    # the sample variance's standard error is σ²·√((κ − 1)/n), κ ≤ 3 for these distributions
    assert abs(w.var().item() - expected) < 6 * expected * math.sqrt(2 / n)
    assert abs(w.mean().item()) < 6 * math.sqrt(expected / n)


# ours vs PyTorch's for the same distribution: two independent samples, a two-sample KS test
KS_CASES = [
    ("xavier_normal_", {}, lambda t, g: nn.init.xavier_normal_(t, generator=g)),
    ("xavier_uniform_", {"gain": 1.7}, lambda t, g: nn.init.xavier_uniform_(t, gain=1.7, generator=g)),
    ("he_normal_", {"a": 0.2, "mode": "fan_out"}, lambda t, g: nn.init.kaiming_normal_(t, a=0.2, mode="fan_out", generator=g)),
    ("he_uniform_", {"nonlinearity": "relu"}, lambda t, g: nn.init.kaiming_uniform_(t, nonlinearity="relu", generator=g)),
    ("lecun_normal_", {}, lambda t, g: nn.init.kaiming_normal_(t, nonlinearity="linear", generator=g)),
    ("uniform_fan_in_", {}, lambda t, g: nn.init.kaiming_uniform_(t, a=math.sqrt(5), generator=g)),  # nn.Linear's default
    ("trunc_normal_", {"mean": 0.5, "std": 2.0, "a": -1.0, "b": 4.0},
     lambda t, g: nn.init.trunc_normal_(t, mean=0.5, std=2.0, a=-1.0, b=4.0, generator=g)),
    ("orthogonal_", {}, lambda t, g: nn.init.orthogonal_(t, generator=g)),
]


@pytest.mark.parametrize("name,kwargs,theirs", KS_CASES, ids=[c[0] for c in KS_CASES])
def test_distribution_matches_pytorch_ks(name, kwargs, theirs):
    shape = (300, 400)
    a, b = torch.empty(shape), torch.empty(shape)
    getattr(init, name)(a, generator=_gen(2), **kwargs)
    theirs(b, _gen(3))
    assert stats.ks_2samp(a.flatten().numpy(), b.flatten().numpy()).pvalue > 1e-3
    # and the test has power: a 10 % wider distribution is rejected
    assert stats.ks_2samp(a.flatten().numpy(), 1.1 * b.flatten().numpy()).pvalue < 1e-6


def test_keras_truncated_normal_has_the_requested_std_and_bounds():
    w = torch.empty(800, 800)
    init.variance_scaling_(w, 1.0, "fan_in", "truncated_normal", generator=_gen(4))
    sigma = 1 / math.sqrt(800)
    bound = 2 * sigma / 0.87962566103423978
    assert w.abs().max().item() <= bound * (1 + 1e-6)
    assert abs(w.std().item() - sigma) < 6 * sigma * math.sqrt(1 / w.numel())
    # PyTorch's trunc_normal_ with the same bounds is the same distribution
    r = nn.init.trunc_normal_(torch.empty(800, 800), std=bound / 2, a=-bound, b=bound, generator=_gen(5))
    assert stats.ks_2samp(w.flatten().numpy(), r.flatten().numpy()).pvalue > 1e-3


@pytest.mark.parametrize("shape", [(50, 20), (20, 50), (30, 30), (16, 4, 3, 3)])
def test_orthogonal(shape):
    w = init.orthogonal_(torch.empty(shape, dtype=torch.float64), gain=1.5, generator=_gen(6))
    m = w.reshape(shape[0], -1)
    gram = m.T @ m if m.shape[0] >= m.shape[1] else m @ m.T
    torch.testing.assert_close(gram, 2.25 * torch.eye(gram.shape[0], dtype=torch.float64))
    with pytest.raises(ValueError):
        init.orthogonal_(torch.empty(5))


@pytest.mark.parametrize("shape,k", [((40, 100), 15), ((8, 6, 3, 3), 5), ((10, 4), 15)])
def test_sparse_gives_exactly_k_inputs_per_unit(shape, k):
    w = init.sparse_(torch.empty(shape), k=k, std=0.5, generator=_gen(7))
    rows = w.reshape(shape[0], -1)
    expected = min(k, rows.shape[1])
    assert ((rows != 0).sum(1) == expected).all()
    # the chosen inputs differ between units (not one shared pattern)
    if expected < rows.shape[1]:
        assert len({tuple((r != 0).nonzero().flatten().tolist()) for r in rows}) > 1


def test_sparse_values_and_uniform_choice():
    w = init.sparse_(torch.empty(2000, 50), k=10, std=0.5, generator=_gen(8))
    values = w[w != 0]
    assert stats.kstest(values.numpy(), "norm", args=(0, 0.5)).pvalue > 1e-3
    # each input is chosen with probability k/m = 0.2 per unit
    per_column = (w != 0).float().mean(0)
    assert (per_column - 0.2).abs().max() < 6 * math.sqrt(0.2 * 0.8 / 2000)
    with pytest.raises(ValueError):
        init.sparse_(torch.empty(3, 3), k=0)


def test_identity_matches_eye_and_dirac():
    torch.testing.assert_close(init.identity_(torch.empty(3, 5)), nn.init.eye_(torch.empty(3, 5)))
    torch.testing.assert_close(init.identity_(torch.empty(4, 4, 3, 3)), nn.init.dirac_(torch.empty(4, 4, 3, 3)))
    torch.testing.assert_close(init.identity_(torch.empty(2, 2), gain=3.0), 3 * torch.eye(2))
    conv = nn.Conv2d(3, 3, 3, padding=1, bias=False)
    init.identity_(conv.weight)
    x = torch.randn(1, 3, 5, 5)
    torch.testing.assert_close(conv(x), x)


def test_basic_fills_and_validation():
    t = torch.empty(3, 3)
    assert (init.zeros_(t) == 0).all() and (init.ones_(t) == 1).all() and (init.constant_(t, 0.7) == 0.7).all()
    u = init.uniform_(torch.empty(10000), -2, 3, generator=_gen(9))
    assert u.min() >= -2 and u.max() <= 3
    with pytest.raises(ValueError):
        init.uniform_(t, 1, 0)
    with pytest.raises(ValueError):
        init.trunc_normal_(t, a=1, b=1)
    with pytest.raises(ValueError, match="mode"):
        init.he_normal_(t, mode="fan_mid")


# ---------------------------------------------------------------------------------------------
def test_bias_from_priors():
    b = torch.empty(3)
    init.bias_prior_(b, [0.7, 0.2, 0.1])
    torch.testing.assert_close(torch.softmax(b, 0), torch.tensor([0.7, 0.2, 0.1]))
    init.bias_prior_(b, torch.tensor([70, 20, 10]))              # counts work too
    torch.testing.assert_close(torch.softmax(b, 0), torch.tensor([0.7, 0.2, 0.1]))
    s = torch.empty(1)
    init.bias_prior_(s, [0.9, 0.1])
    assert torch.sigmoid(s).item() == pytest.approx(0.1)
    init.bias_prior_(s, 0.25)
    assert torch.sigmoid(s).item() == pytest.approx(0.25)
    init.bias_prior_(b, [0.5, 0.5, 0.0], is_output=False)
    assert (b == 0).all()
    with pytest.raises(ValueError, match="prior 0"):
        init.bias_prior_(b, [0.5, 0.5, 0.0])
    with pytest.raises(ValueError, match="3 units"):
        init.bias_prior_(b, [0.5, 0.5])
    torch.testing.assert_close(init.class_priors(torch.tensor([0, 1, 1, 3])), torch.tensor([0.25, 0.5, 0, 0.25],
                                                                                          dtype=torch.float64))


def test_forget_gate_bias():
    lstm = nn.LSTM(3, 4, num_layers=2)
    init.forget_gate_bias_(lstm)
    for layer in range(2):
        total = getattr(lstm, f"bias_ih_l{layer}") + getattr(lstm, f"bias_hh_l{layer}")
        torch.testing.assert_close(total[4:8], torch.ones(4), check_dtype=False)   # gates i, f, g, o
    b = torch.zeros(12)
    init.forget_gate_bias_(b, 2.0)
    assert b.tolist() == [0] * 3 + [2.0] * 3 + [0] * 6
    with pytest.raises(TypeError):
        init.forget_gate_bias_(nn.Linear(2, 2))


def test_relu_bias_rule_in_init_model():
    m = MLP(3, (8, 8), 2, activation=["relu", "tanh"])
    init.init_model(m, "he_normal", "relu")
    assert (m.blocks[0].linear.bias == 0.01).all()          # the notes' dying-ReLU guard
    assert (m.blocks[1].linear.bias == 0).all() and (m.out.bias == 0).all()
    init.init_model(m, None, "constant", value=0.1)
    assert all((l.bias == 0.1).all() for l in (m.blocks[0].linear, m.blocks[1].linear, m.out))


# ---------------------------------------------------------------------------------------------
def test_auto_picks_scheme_from_each_layers_activation():
    m = MLP(200, (300, 300, 300, 300), 10, activation=["relu", "tanh", "selu", "leaky_relu"])
    report = init.init_model(m, "auto", "zeros", generator=_gen(10))
    assert report["blocks.0.linear"].startswith("he_normal(fan_in, gain=1.414)")
    # tanh: Glorot's gain 1, not PyTorch's 5/3 (changed on purpose: the init-tanh-gain study)
    assert report["blocks.1.linear"].startswith("xavier_normal(fan_avg, gain=1)")
    assert report["blocks.2.linear"].startswith("lecun_normal(fan_in, gain=1)")
    assert report["out"].startswith("xavier_normal(fan_avg, gain=1)")
    stds = [b.linear.weight.std().item() for b in m.blocks] + [m.out.weight.std().item()]
    expected = [math.sqrt(2 / 200), math.sqrt(2 / 600), math.sqrt(1 / 300),
                math.sqrt(2 / (1 + 1e-4) / 300), math.sqrt(2 / 310)]
    for got, want in zip(stds, expected):
        assert got == pytest.approx(want, rel=0.02)
    assert all((b.linear.bias == 0).all() for b in m.blocks)


def test_init_model_options_reproducibility_and_errors():
    m1, m2 = MLP(5, (7,), 3), MLP(5, (7,), 3)
    init.init_model(m1, "he_uniform", generator=_gen(11), mode="fan_out")
    init.init_model(m2, "he_uniform", generator=_gen(11), mode="fan_out")
    assert torch.equal(m1.blocks[0].linear.weight, m2.blocks[0].linear.weight)
    bound = math.sqrt(2) * math.sqrt(3 / 7)
    assert m1.blocks[0].linear.weight.abs().max() <= bound
    with pytest.raises(ValueError, match="unknown init option"):
        init.init_model(m1, "he_normal", "zeros", gain=2.0)
    with pytest.raises(ValueError, match=r"constant needs the option\(s\) \['val'\]"):
        init.init_model(m1, "constant", "zeros")

    def scaled_constant_(tensor, value=1.0):
        return tensor.detach().fill_(value)

    with pytest.raises(ValueError, match="fits both"):
        init.init_model(m1, scaled_constant_, "constant", value=0.5)
    init.init_model(m1, scaled_constant_, "constant", weight_value=0.5, bias_value=0.2)
    assert (m1.out.weight == 0.5).all() and (m1.out.bias == 0.2).all()
    with pytest.raises(ValueError, match="unknown weight initializer"):
        init.init_model(m1, "glorious")
    init.init_model(m1, "zeros", "prior", priors=[0.5, 0.3, 0.2])
    torch.testing.assert_close(torch.softmax(m1.out.bias, 0), torch.tensor([0.5, 0.3, 0.2]))


def test_init_model_on_cnn_weight_norm_and_sparse():
    c = CNN((1, 8, 8), (4,), hidden=16, classes=3, activation="relu")
    report = init.init_model(c, "auto")
    assert set(report) == {"features.0", "dense.linear", "out"} and "[relu]" in report["features.0"]
    lin = weight_norm(nn.Linear(30, 20))
    init.init_model(nn.Sequential(lin), "sparse", k=4)
    assert ((lin.weight != 0).sum(1) == 4).all()


@pytest.mark.parametrize("activation", ["tanh", "relu", "selu"])
def test_lsuv_gives_unit_output_variance_in_every_layer(activation):
    torch.manual_seed(12)
    m = MLP(20, (64,) * 6, 5, activation=activation)
    x = torch.randn(256, 20) * 3 + 1
    result = init.lsuv_(m, x, tol=0.05, generator=_gen(13))
    assert list(result) == [f"blocks.{i}.linear" for i in range(6)] + ["out"]
    outputs = {}
    hooks = [mod.register_forward_hook(lambda mod, i, o, n=n: outputs.__setitem__(n, o.var().item()))
             for n, mod in [(f"b{i}", b.linear) for i, b in enumerate(m.blocks)] + [("out", m.out)]]
    with torch.no_grad():
        m(x)
    for h in hooks:
        h.remove()
    assert all(abs(v - 1.0) < 0.05 for v in outputs.values()), outputs


def test_zero_and_constant_init_never_break_symmetry():
    """Notes 000/004: with equal weights every hidden unit computes and learns the same thing."""
    torch.manual_seed(14)
    x, y = torch.randn(64, 4), torch.randint(0, 2, (64,))
    for weight, kwargs in (("zeros", {}), ("constant", {"val": 0.3})):
        m = MLP(4, (6,), 2, activation="sigmoid")
        init.init_model(m, weight, "zeros", **kwargs)
        opt = torch.optim.SGD(m.parameters(), lr=0.5)
        for _ in range(20):
            opt.zero_grad()
            nn.functional.cross_entropy(m(x), y).backward()
            opt.step()
        w = m.blocks[0].linear.weight
        assert torch.allclose(w, w[:1].expand_as(w)), weight      # all 6 hidden units still identical
    m = MLP(4, (6,), 2, activation="sigmoid")
    init.init_model(m, "xavier_normal")
    w = m.blocks[0].linear.weight
    assert not torch.allclose(w, w[:1].expand_as(w))
