"""Dropout and DropConnect: conventions, expectations, randomness, and how the two differ."""
import math

import pytest
import torch
from torch import nn

from trainlab.nn import DropConnect, Dropout, ReLU


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("p", [0.1, 0.5, 0.8])
def test_inverted_dropout_drops_p_and_scales_the_rest(p):
    d = Dropout(p, generator=_gen())
    x = torch.full((200, 500), 2.0)
    y = d(x)
    kept = y != 0
    n = x.numel()
    # the kept fraction is Binomial(n, 1 − p)/n: within 5 standard deviations
    assert abs(kept.float().mean().item() - (1 - p)) < 5 * math.sqrt(p * (1 - p) / n)
    torch.testing.assert_close(y[kept], torch.full((int(kept.sum()),), 2.0 / (1 - p)))
    d.eval()
    assert torch.equal(d(x), x)


@pytest.mark.parametrize("mode", ["inverted", "classic"])
def test_train_expectation_equals_eval_output(mode):
    p = 0.3
    d = Dropout(p, mode=mode, generator=_gen(1))
    x = torch.randn(64) * 3
    draws = torch.stack([d(x) for _ in range(4000)])
    d.eval()
    expected = d(x)
    # each entry is x·s·Bernoulli(1 − p): standard error |x|·s·√(p(1 − p)/n)
    s = 1 / (1 - p) if mode == "inverted" else 1.0
    se = x.abs() * s * math.sqrt(p * (1 - p) / len(draws))
    assert ((draws.mean(0) - expected).abs() <= 5 * se + 1e-6).all()
    if mode == "classic":
        torch.testing.assert_close(expected, (1 - p) * x)             # the notes' w(1 − p) at test time
        assert set(draws[0].unique().tolist()) <= set([0.0] + x.tolist())   # no scaling while training


def test_dropout_gradient_is_the_mask():
    d = Dropout(0.5, generator=_gen(2))
    x = torch.randn(10, 20, requires_grad=True)
    y = d(x)
    y.sum().backward()
    torch.testing.assert_close(x.grad, (y != 0).float() * 2.0)


def test_generator_makes_masks_reproducible():
    x = torch.ones(1000)
    a = Dropout(0.5, generator=_gen(7))(x)
    b = Dropout(0.5, generator=_gen(7))(x)
    c = Dropout(0.5, generator=_gen(8))(x)
    assert torch.equal(a, b) and not torch.equal(a, c)
    torch.manual_seed(3)
    d1 = Dropout(0.5)(x)
    torch.manual_seed(3)
    assert torch.equal(d1, Dropout(0.5)(x))      # without a generator: torch's global RNG


def test_edge_probabilities_and_validation():
    x = torch.randn(5, 5)
    assert torch.equal(Dropout(0.0)(x), x)
    assert torch.equal(Dropout(1.0)(x), torch.zeros_like(x))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        Dropout(1.5)
    with pytest.raises(ValueError, match="mode"):
        Dropout(0.5, mode="scaled")


# ---------------------------------------------------------------------------------------------
def _dropconnect(per="batch", mode="inverted", p=0.4, **kw):
    torch.manual_seed(0)
    m = DropConnect(6, 3, p=p, per=per, mode=mode, generator=_gen(4), **kw)
    return m


@pytest.mark.parametrize("per", ["batch", "example"])
@pytest.mark.parametrize("mode", ["inverted", "classic"])
def test_dropconnect_expectation_is_the_mean_network(per, mode):
    m = _dropconnect(per, mode)
    x = torch.randn(4, 6)
    draws = torch.stack([m(x) for _ in range(3000)])
    m.eval()
    mean_net = m(x)
    q, s = m.keep, m.train_scale
    with torch.no_grad():
        torch.testing.assert_close(mean_net, nn.functional.linear(x, m.weight * s * q, m.bias))
        # Var of one output: Σ_j s²q(1 − q) W_ij² x_j²
        var = nn.functional.linear(x * x, m.weight * m.weight) * s * s * q * (1 - q)
    se = (var / len(draws)).sqrt()
    assert ((draws.mean(0) - mean_net).abs() <= 5 * se).all()
    if mode == "inverted":
        torch.testing.assert_close(mean_net, nn.functional.linear(x, m.weight, m.bias))


def test_dropconnect_masks_connections_where_dropout_masks_units():
    """Dropout on the input removes a unit from *every* output at once; DropConnect drops each
    connection on its own. With one active input, dropout's two outputs are on or off together
    (correlation 1), DropConnect's independently (correlation 0)."""
    lin = nn.Linear(3, 2, bias=False)
    with torch.no_grad():
        lin.weight.fill_(1.0)
    dc = DropConnect(3, 2, bias=False, p=0.5, generator=_gen(5))
    with torch.no_grad():
        dc.weight.fill_(1.0)
    drop = Dropout(0.5, generator=_gen(6))
    x = torch.tensor([[1.0, 0.0, 0.0]])
    a = torch.stack([lin(drop(x))[0] for _ in range(2000)])
    b = torch.stack([dc(x)[0] for _ in range(2000)])
    corr = lambda t: torch.corrcoef(t.T)[0, 1].item()
    assert corr(a) == pytest.approx(1.0)
    assert abs(corr(b)) < 0.1
    assert a.mean().item() == pytest.approx(1.0, abs=0.1) and b.mean().item() == pytest.approx(1.0, abs=0.1)


def test_dropconnect_per_batch_and_per_example_masks():
    x = torch.ones(8, 6)
    batch = _dropconnect("batch")(x)
    assert torch.equal(batch, batch[:1].expand_as(batch))     # one thinned W for the whole batch
    example = _dropconnect("example")(x)
    assert not torch.equal(example, example[:1].expand_as(example))


def test_dropconnect_gradient_flows_through_kept_weights_only():
    m = _dropconnect(p=0.5)
    x = torch.randn(5, 6)
    gen_state = m.generator.get_state()
    y = m(x)
    y.sum().backward()
    m.generator.set_state(gen_state)
    mask = torch.rand(m.weight.shape, generator=m.generator).ge_(0.5).mul_(2.0)
    torch.testing.assert_close(m.weight.grad, mask * x.sum(0).expand(3, 6))


def test_dropconnect_gaussian_inference_moment_matching():
    """The paper's inference: E[a(u)] with u Gaussian-matched to the masked pre-activation. With a
    ReLU it approximates the true average over masks, and differs from the mean network a(E[u])."""
    torch.manual_seed(1)
    m = DropConnect(50, 4, p=0.5, activation=ReLU(), inference="gaussian", samples=4000, generator=_gen(9))
    x = torch.randn(3, 50)
    with torch.no_grad():
        true_avg = torch.stack([m(x) for _ in range(2000)]).mean(0)   # training mode: real masks
        m.eval()
        gaussian = m(x)
        m.inference = "mean"
        mean_net = m(x)
    # Monte-Carlo standard errors are ~0.015 here
    torch.testing.assert_close(gaussian, true_avg, atol=0.06, rtol=0.05)
    assert (mean_net - true_avg).abs().max() > 3 * (gaussian - true_avg).abs().max()


def test_dropconnect_in_mlp_and_validation():
    with pytest.raises(ValueError, match="per"):
        DropConnect(2, 2, per="unit")
    with pytest.raises(ValueError, match="inference"):
        DropConnect(2, 2, inference="median")
    with pytest.raises(ValueError, match="p = 1"):
        DropConnect(2, 2, p=1.0)
    m = DropConnect(4, 3, p=0.0)
    x = torch.randn(2, 4)
    torch.testing.assert_close(m(x), nn.functional.linear(x, m.weight, m.bias))


def test_the_mask_hook_gives_the_forward_its_mask():
    # forward multiplies by mask_for(x); draw_mask from a generator in the same state draws the
    # same mask, and a mask supplied through the hook (as batched sweeps do) is the one used
    d = Dropout(0.3, generator=torch.Generator().manual_seed(5))
    x = torch.randn(4, 6)
    y = d(x)
    mask = d.draw_mask(x.shape, x, torch.Generator().manual_seed(5))
    assert torch.equal(y, x * mask) and torch.equal(mask.unique(), torch.tensor([0.0, 1 / 0.7]))
    given = torch.zeros(4, 6)
    d.mask_for = lambda inp: given
    assert torch.equal(d(x), x * given)
