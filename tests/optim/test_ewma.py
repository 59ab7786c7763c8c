"""The EWMA against its recursion, its expansion (1 − β)·β^k and the notes' worked V₃."""
import math

import pytest
import torch

from trainlab.optim import ewma, ewma_weights


def test_ewma_is_the_recursion_written_out():
    values = [3.0, -1.0, 4.0, 1.5, 9.0, 2.0]
    beta, v, expected = 0.9, 0.0, []
    for theta in values:
        v = beta * v + (1 - beta) * theta
        expected.append(v)
    assert ewma(values, beta).tolist() == pytest.approx(expected, rel=1e-15, abs=0)


def test_ewma_equals_its_expansion_with_weights_one_minus_beta_times_beta_to_the_k():
    torch.manual_seed(0)
    theta = torch.randn(50, dtype=torch.float64)
    for beta in (0.5, 0.9, 0.98):
        for t in (1, 3, 17, 50):
            w = ewma_weights(t, beta)
            # θ_{t−k} weighs (1 − β)β^k: the newest 1 − β, each step back one more factor β
            assert w[-1] == pytest.approx(1 - beta, rel=1e-15)
            assert torch.allclose(w[:-1] / w[1:], torch.full((t - 1,), beta, dtype=torch.float64), rtol=1e-13)
            assert float(w.sum()) == pytest.approx(1 - beta ** t, rel=1e-13)
            assert float(ewma(theta[:t], beta)[-1]) == pytest.approx(float(w @ theta[:t]), rel=1e-12, abs=1e-15)


def test_the_notes_v3_has_beta_squared_on_theta_1():
    beta = 0.9
    theta = torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)  # only θ₁: V₃ is θ₁'s weight
    v3 = float(ewma(theta, beta)[-1])
    assert v3 == pytest.approx(beta ** 2 * (1 - beta), rel=1e-14)  # 0.081, the correct expansion
    assert v3 != pytest.approx(beta * (1 - beta))                  # 0.09, the notes' slip
    assert ewma_weights(3, beta).tolist() == pytest.approx([0.081, 0.09, 0.1], rel=1e-14)


def test_bias_correction_divides_by_one_minus_beta_to_the_t():
    values = torch.full((20,), 5.0, dtype=torch.float64)
    plain = ewma(values, 0.9)
    corrected = ewma(values, 0.9, bias_correction=True)
    assert plain[0] == pytest.approx(0.5)                       # pulled towards V₀ = 0
    assert torch.allclose(corrected, values, rtol=1e-14)      # a constant stays itself
    t = torch.arange(1, 21, dtype=torch.float64)
    assert torch.allclose(corrected, plain / (1 - 0.9 ** t), rtol=1e-14)
    assert float(ewma_weights(7, 0.9, bias_correction=True).sum()) == pytest.approx(1.0, rel=1e-14)


def test_columns_are_averaged_on_their_own_and_bad_input_is_refused():
    x = torch.tensor([[1.0, 10.0], [2.0, 20.0], [3.0, 30.0]])
    out = ewma(x, 0.5)
    assert out.shape == x.shape and out.dtype == torch.float32
    assert torch.allclose(out[:, 1], 10 * out[:, 0])
    assert ewma([1, 2, 3], 0.0).tolist() == [1.0, 2.0, 3.0]
    for beta in (1.0, -0.1, math.nan, True):
        with pytest.raises(ValueError, match="beta must lie in"):
            ewma([1.0], beta)
    with pytest.raises(ValueError, match="sequence"):
        ewma(3.0)
    with pytest.raises(ValueError, match="positive integer"):
        ewma_weights(0)
