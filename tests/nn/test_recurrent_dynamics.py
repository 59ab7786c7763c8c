"""Lyapunov exponent, perturbation divergence and participation ratio; one-to-many; normalized Elman recurrence."""
import math

import pytest
import torch

from trainlab.data.sequences import delayed_echo, running_parity, sine_generation
from trainlab.experiments.config import ConfigError, parse_config
from trainlab.nn.recurrent import (RNN, ElmanRNN, SequenceModel, lyapunov_exponent, perturbation_divergence,
                                   state_participation_ratio)


def _linear_rnn(a: float, H: int = 6) -> ElmanRNN:
    """h_t = a·Q·h_(t−1) + W_ih x_t with Q orthogonal: every perturbation grows exactly like a^t."""
    rnn = ElmanRNN(1, H, nonlinearity="identity").double()
    q, _ = torch.linalg.qr(torch.randn(H, H, dtype=torch.float64, generator=torch.Generator().manual_seed(0)))
    with torch.no_grad():
        rnn.weight_hh_l0.copy_(a * q)
    return rnn


@pytest.mark.parametrize("a", [0.5, 1.0, 1.7])
def test_lyapunov_exponent_of_a_scaled_orthogonal_map_is_log_a(a):
    x = torch.randn(30, 4, 1, dtype=torch.float64)
    lam = lyapunov_exponent(_linear_rnn(a), x, burn_in=5)
    torch.testing.assert_close(lam, torch.full((4,), math.log(a), dtype=torch.float64))


def test_perturbation_divergence_of_a_linear_map_is_a_to_the_t():
    x = torch.randn(12, 3, 1, dtype=torch.float64)
    ratios = perturbation_divergence(_linear_rnn(1.3), x, eps=1e-3)
    torch.testing.assert_close(ratios, 1.3 ** torch.arange(1, 13, dtype=torch.float64))


def test_lyapunov_exponent_of_tanh_uses_the_slope_at_each_state():
    # H = 1: J_t = w·(1 − h_t²), so λ is the mean of log|w·(1 − h_t²)| along the trajectory
    rnn = ElmanRNN(1, 1).double()
    x = torch.randn(25, 2, 1, dtype=torch.float64)
    with torch.no_grad():
        h = torch.stack(rnn.unroll(x))
    expected = (rnn.weight_hh_l0.abs().log() + (1 - h.square()).log()).squeeze(-1).mean(0)
    torch.testing.assert_close(lyapunov_exponent(rnn, x), expected.detach())


def test_participation_ratio_counts_independent_directions():
    g = torch.Generator().manual_seed(0)
    signal = torch.randn(4000, 1, generator=g)
    assert state_participation_ratio(signal * torch.arange(1.0, 9.0)) == pytest.approx(1.0)
    assert state_participation_ratio(torch.randn(4000, 8, generator=g)) == pytest.approx(8.0, rel=0.05)


def test_the_sequence_sets_compute_their_targets():
    e = delayed_echo(5, 9, delay=3, seed=1)
    assert torch.equal(e.y[:, 3:], e.X[:, :-3]) and not e.y[:, :3].any()
    p = running_parity(5, 9, seed=1)
    assert torch.equal(p.y[:, 1:], (p.y[:, :-1] + p.X[:, 1:]) % 2) and torch.equal(p.y[:, 0], p.X[:, 0])
    s = sine_generation(4, 7, seed=1)
    f, sin_phi, cos_phi = s.X[:, 0, 0] * 0.1, s.X[:, 0, 1], s.X[:, 0, 2]
    t = torch.arange(1, 8)
    phase = torch.atan2(sin_phi, cos_phi)
    torch.testing.assert_close(s.y[..., 0], torch.sin(2 * math.pi * f[:, None] * t + phase[:, None]), atol=1e-5,
                               rtol=0)


def test_one_to_many_emits_steps_outputs_from_one_input():
    m = SequenceModel(3, 2, cell="gru", hidden=8, pattern="one2many", steps=5)
    assert m(torch.randn(4, 1, 3)).shape == (4, 5, 2)
    assert m(torch.randn(4, 3)).shape == (4, 5, 2)
    with pytest.raises(ValueError, match="one input per sequence"):
        m(torch.randn(4, 2, 3))
    with pytest.raises(ValueError, match="needs steps"):
        SequenceModel(3, 2, pattern="one2many")


def test_the_runner_sizes_a_one_to_many_model_from_the_targets():
    from trainlab.experiments.runner import build_model

    cfg = parse_config({"data": {"name": "sine_generation", "n_samples": 8, "length": 11},
                        "model": {"kind": "rnn", "cell": "elman", "pattern": "one2many"}})
    model = build_model(cfg, sine_generation(8, 11))
    assert model.steps == 11 and model(torch.randn(2, 1, 3)).shape == (2, 11, 1)
    with pytest.raises(ConfigError, match="pattern='one2many' reads one input per sequence"):
        parse_config({"data": {"name": "noisy_sine", "n_samples": 8}, "model": {"kind": "rnn", "pattern": "one2many"}})


def test_layer_norm_elman_matches_the_formula_and_ignores_the_batch():
    torch.manual_seed(0)
    rnn = RNN(2, 5, norm="layer").double()
    x = torch.randn(6, 3, 2, dtype=torch.float64)
    out, _ = rnn(x)
    h, expected = torch.zeros(3, 5, dtype=torch.float64), []
    ln = torch.nn.LayerNorm(5).double()
    for t in range(6):
        h = torch.tanh(ln(x[t] @ rnn.weight_ih_l0.T + rnn.bias_ih_l0 + h @ rnn.weight_hh_l0.T + rnn.bias_hh_l0))
        expected.append(h)
    torch.testing.assert_close(out, torch.stack(expected))
    torch.testing.assert_close(rnn(x[:, :1])[0], out[:, :1])  # a batch of one: the same outputs


def test_batch_norm_elman_uses_each_steps_batch_statistics():
    torch.manual_seed(0)
    rnn = RNN(2, 4, norm="batch").double().train()
    x = torch.randn(5, 8, 2, dtype=torch.float64)
    out, _ = rnn(x)
    h, expected = torch.zeros(8, 4, dtype=torch.float64), []
    for t in range(5):
        a = x[t] @ rnn.weight_ih_l0.T + rnn.bias_ih_l0 + h @ rnn.weight_hh_l0.T + rnn.bias_hh_l0
        h = torch.tanh((a - a.mean(0)) / torch.sqrt(a.var(0, unbiased=False) + 1e-5))
        expected.append(h)
    torch.testing.assert_close(out, torch.stack(expected))
    assert not torch.allclose(rnn(x[:, :2])[0], out[:, :2])  # other sequences change these outputs
    assert torch.equal(rnn.norms["l0"].weight.detach(), torch.ones(4, dtype=torch.float64))


def test_rnn_norm_from_the_config_and_its_errors():
    cfg = parse_config({"data": {"name": "noisy_sine", "n_samples": 8},
                        "model": {"kind": "rnn", "cell": "elman", "pattern": "seq2seq", "norm": "layer"}})
    assert cfg.model.kwargs["norm"] == "layer"
    with pytest.raises(ConfigError, match="elman cell only"):
        parse_config({"data": {"name": "noisy_sine", "n_samples": 8},
                      "model": {"kind": "rnn", "cell": "lstm", "pattern": "seq2seq", "norm": "layer"}})
