"""The Gaussian NLL with a learned variance: against torch.nn.GaussianNLLLoss, the gaussian head, log_var_init."""
import math

import pytest
import torch

from trainlab.experiments.config import ConfigError, parse_config
from trainlab.losses import Loss, gaussian_nll
from trainlab.nn.models import MLP


@pytest.mark.parametrize("full", [False, True])
def test_gaussian_nll_matches_torch_and_its_gradients(full):
    g = torch.Generator().manual_seed(0)
    z = torch.randn(32, 6, dtype=torch.float64, generator=g, requires_grad=True)
    y = torch.randn(32, 3, dtype=torch.float64, generator=g)
    ours = gaussian_nll(z, y, full=full)
    ref = torch.nn.GaussianNLLLoss(full=full)(z[:, :3], y, z[:, 3:].exp())
    torch.testing.assert_close(ours, ref)
    torch.testing.assert_close(torch.autograd.grad(ours, z)[0], torch.autograd.grad(ref, z)[0])
    by_hand = 0.5 * (z[:, 3:] + (y - z[:, :3]) ** 2 / z[:, 3:].exp()).mean() + (0.5 * math.log(2 * math.pi) if full else 0)
    torch.testing.assert_close(ours, by_hand)


def test_gaussian_head_outputs_mean_and_the_learned_log_variance():
    m = MLP(2, (8,), 3, head="gaussian", log_var_init=[0.5, 1.0, 2.0])
    z = m(torch.randn(4, 2))
    assert z.shape == (4, 6) and torch.equal(z[:, 3:], torch.tensor([[0.5, 1.0, 2.0]]).expand(4, 3))
    assert Loss("gaussian_nll").head == "gaussian" and not Loss("gaussian_nll").is_classification
    with pytest.raises(ValueError, match="needs the training targets"):
        MLP(2, (8,), 1, head="gaussian", log_var_init="marginal")


def test_the_runner_sets_the_marginal_log_variance_of_the_training_targets():
    from trainlab.experiments.runner import build_data, build_model

    cfg = parse_config({"data": {"name": "sine", "n_samples": 64}, "loss": {"name": "gaussian_nll"},
                        "model": {"kind": "mlp", "hidden": [4], "log_var_init": "marginal"}})
    train = build_data(cfg).train
    model = build_model(cfg, train)
    torch.testing.assert_close(model.log_var.detach(), train.y.double().var(0).log().float())
    zero = build_model(parse_config({"data": {"name": "sine", "n_samples": 64}, "loss": {"name": "gaussian_nll"},
                                     "model": {"kind": "mlp", "hidden": [4]}}), train)
    assert torch.equal(zero.log_var.detach(), torch.zeros(1))


@pytest.mark.parametrize("config, message", [
    ({"data": {"name": "moons"}, "loss": {"name": "gaussian_nll"}}, "needs float targets"),
    ({"data": {"name": "sine"}, "loss": {"name": "gaussian_nll"}, "model": {"log_var_init": "median"}},
     "model.log_var_init"),
])
def test_bad_gaussian_configs_fail_with_the_field(config, message):
    with pytest.raises(ConfigError, match=message):
        parse_config(config)
