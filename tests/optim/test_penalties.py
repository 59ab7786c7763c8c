"""L1 / L2 / elastic net as loss terms and as gradient transformations give the same gradients.

This is the notes' question "which parts of backpropagation change under L1/L2?": none of the
backward pass through the network — the penalty only adds ∂R/∂w to each weight's gradient.
"""
import pytest
import torch
import torch.nn.functional as F

import trainlab.optim as O
from trainlab import losses
from optim_helpers import maxdiff, problem, trajectory

PENALTIES = [
    ("l2", lambda ps, s: losses.l2_penalty(ps, 0.03, skip_1d=s), lambda s: O.L2Penalty(0.03, skip_1d=s)),
    ("l1", lambda ps, s: losses.l1_penalty(ps, 0.02, skip_1d=s), lambda s: O.L1Penalty(0.02, skip_1d=s)),
    ("elastic", lambda ps, s: losses.elastic_net(ps, 0.02, 0.3, skip_1d=s),
     lambda s: O.ElasticNet(0.02, 0.3, skip_1d=s)),
]


def _grads(model, X, y, penalty=None):
    model.zero_grad()
    loss = F.cross_entropy(model(X), y)
    if penalty is not None:
        loss = loss + penalty(list(model.parameters()))
    loss.backward()
    return [p.grad.clone() for p in model.parameters()]


@pytest.mark.parametrize("skip_1d", [False, True])
@pytest.mark.parametrize("name,term,transform", PENALTIES, ids=[p[0] for p in PENALTIES])
def test_loss_term_and_transform_give_the_same_gradient(name, term, transform, skip_1d):
    model, X, y = problem(torch.float64)
    with torch.no_grad():
        model[0].weight[0, 0] = 0.0  # sign(0) = 0 on both sides
    plain = _grads(model, X, y)
    with_term = _grads(model, X, y, lambda ps: term(ps, skip_1d))
    tr = transform(skip_1d)
    for p, g, g_term in zip(model.parameters(), plain, with_term):
        u, _ = tr.update(g, None, p.detach(), None)
        assert torch.allclose(u, g_term, rtol=0, atol=1e-15)
        if skip_1d and p.dim() == 1:
            assert torch.equal(g_term, g)      # biases untouched
        else:
            assert not torch.equal(g_term, g)  # the penalty did change this gradient
    # "which parts of backprop change": only ∂R/∂w is added, whatever the data
    X2 = X.flip(0) * 3
    diff1 = [a - b for a, b in zip(with_term, plain)]
    diff2 = [a - b for a, b in zip(_grads(model, X2, y, lambda ps: term(ps, skip_1d)), _grads(model, X2, y))]
    assert all(torch.allclose(a, b, atol=1e-15) for a, b in zip(diff1, diff2))


@pytest.mark.parametrize("name,term,transform", PENALTIES, ids=[p[0] for p in PENALTIES])
def test_training_with_the_term_equals_training_with_the_transform(name, term, transform):
    model, X, y = problem(torch.float64)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    for i in range(40):
        lo = (i * 8) % 32
        opt.zero_grad()
        (F.cross_entropy(model(X[lo:lo + 8]), y[lo:lo + 8]) + term(list(model.parameters()), False)).backward()
        opt.step()
    ref = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    got = trajectory(lambda p: O.SGD(p, lr=0.1, momentum=0.9).add_transforms(transform(False)), torch.float64, 40)
    assert maxdiff(got, ref) < 1e-12


def test_torch_weight_decay_is_an_l2_penalty_of_half_the_weight():
    wd = trajectory(lambda p: O.SGD(p, lr=0.1, weight_decay=0.02), torch.float64, 30)
    l2 = trajectory(lambda p: O.SGD(p, lr=0.1).add_transforms(O.L2Penalty(0.01)), torch.float64, 30)
    assert maxdiff(wd, l2) < 1e-12


def test_decoupled_decay_equals_coupled_decay_for_plain_sgd_but_not_for_adam():
    sgd_c = trajectory(lambda p: O.SGD(p, lr=0.1, weight_decay=0.05), torch.float64, 30)
    sgd_d = trajectory(lambda p: O.SGD(p, lr=0.1).add_transforms(O.DecoupledWeightDecay(0.05)), torch.float64, 30)
    assert maxdiff(sgd_c, sgd_d) < 1e-12
    adam_c = trajectory(lambda p: O.Adam(p, lr=0.01, weight_decay=0.05), torch.float64, 30)
    adam_d = trajectory(lambda p: O.AdamW(p, lr=0.01, weight_decay=0.05), torch.float64, 30)
    assert maxdiff(adam_c, adam_d) > 1e-4


def test_proximal_l1_soft_thresholds_to_exact_zeros():
    w = torch.nn.Parameter(torch.tensor([0.5, -0.03, 0.02, -0.8, 0.0], dtype=torch.float64))
    opt = O.SGD([w], lr=0.1).add_transforms(O.L1Proximal(0.5))   # threshold lr·λ = 0.05
    w.grad = torch.tensor([0.1, 0.1, -0.1, 0.0, 0.0], dtype=torch.float64)
    opt.step()
    after_sgd = torch.tensor([0.49, -0.04, 0.03, -0.8, 0.0], dtype=torch.float64)
    want = torch.sign(after_sgd) * torch.clamp(after_sgd.abs() - 0.05, min=0)
    assert torch.allclose(w.detach(), want, atol=1e-15)
    assert (w.detach()[1:3] == 0).all() and w.detach()[4] == 0


def test_l1_gives_more_exact_zeros_than_l2_and_the_subgradient():
    """Notes 001/004: L1 gives sparse weights (with the proximal step: exact zeros), L2 does not."""
    g = torch.Generator().manual_seed(0)
    X = torch.randn(200, 20, generator=g, dtype=torch.float64)
    true_w = torch.zeros(20, dtype=torch.float64)
    true_w[:3] = torch.tensor([2.0, -3.0, 1.5], dtype=torch.float64)
    y = X @ true_w + 0.1 * torch.randn(200, generator=g, dtype=torch.float64)

    def fit(transform):
        w = torch.nn.Parameter(torch.zeros(20, dtype=torch.float64))
        opt = O.SGD([w], lr=0.05).add_transforms(transform)
        for _ in range(300):
            opt.zero_grad()
            ((X @ w - y) ** 2).mean().backward()
            opt.step()
        return w.detach()
    prox, sub, ridge = fit(O.L1Proximal(0.1)), fit(O.L1Penalty(0.1)), fit(O.L2Penalty(0.1))
    assert (prox == 0).sum() >= 15           # the 17 irrelevant weights, (almost) all exactly 0
    assert (sub == 0).sum() <= 2             # the subgradient jitters around 0 instead
    assert (ridge == 0).sum() == 0
    assert (prox[:3] != 0).all()             # and the relevant ones survive


def test_penalty_weights_are_validated():
    with pytest.raises(ValueError, match="penalty weight"):
        losses.l2_penalty([torch.ones(2)], -1.0)
    with pytest.raises(ValueError, match="l1_ratio"):
        losses.elastic_net([torch.ones(2)], 0.1, l1_ratio=2.0)
    with pytest.raises(ValueError, match="no tensors"):
        losses.l1_penalty([torch.ones(2)], 0.1, skip_1d=True)
