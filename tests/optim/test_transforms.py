"""Gradient noise and lookahead: definitions by hand and statistics."""
import math

import pytest
import torch
from scipy import stats

import trainlab.optim as O


def test_gradient_noise_has_the_annealed_variance():
    """σₜ² = η/(1 + t)^γ (t from 0): a Kolmogorov–Smirnov test of the added noise at t = 0 and t = 99."""
    eta, gamma = 0.3, 0.55
    p = torch.nn.Parameter(torch.zeros(20000, dtype=torch.float64))
    opt = O.Chain([p], [O.AddNoise(eta, gamma, seed=0), O.ScaleByLearningRate()], lr=1.0)
    samples = {}
    for t in range(100):
        before = p.detach().clone()
        p.grad = torch.zeros_like(p)
        opt.step()
        if t in (0, 99):
            samples[t] = -(p.detach() - before)
    for t, x in samples.items():
        sigma = math.sqrt(eta / (1 + t) ** gamma)
        assert stats.kstest((x / sigma).numpy(), "norm").pvalue > 1e-3
    # and the two are really different distributions (the test can fail)
    assert stats.kstest((samples[99] / math.sqrt(eta)).numpy(), "norm").pvalue < 1e-6


def test_gradient_noise_is_reproducible_from_its_seed():
    def draw(seed):
        p = torch.nn.Parameter(torch.zeros(5))
        opt = O.SGD([p], lr=1.0).add_transforms(O.AddNoise(seed=seed))
        p.grad = torch.zeros(5)
        opt.step()
        return p.detach().clone()
    assert torch.equal(draw(1), draw(1)) and not torch.equal(draw(1), draw(2))


@pytest.mark.parametrize("foreach", [True, False])
def test_lookahead_pulls_back_every_k_steps(foreach):
    k, alpha, lr = 3, 0.4, 0.1
    p = torch.nn.Parameter(torch.tensor([1.0, -1.0], dtype=torch.float64))
    opt = O.SGD([p], lr=lr, foreach=foreach).add_transforms(O.Lookahead(k, alpha))
    slow, fast = p.detach().clone(), p.detach().clone()
    for t in range(1, 8):
        g = torch.tensor([t, -2.0 * t], dtype=torch.float64)
        p.grad = g
        opt.step()
        fast = fast - lr * g
        if t % k == 0:
            slow = slow + alpha * (fast - slow)
            fast = slow.clone()
        assert torch.allclose(p.detach(), fast, rtol=1e-14)
