"""Sequence toy sets: shapes, seeds, the targets by their definitions, argument checks; per-step losses."""
import math

import pytest
import torch

from trainlab.data.sequences import ADDING_BASELINE_MSE, adding, copy_task, noisy_sine
from trainlab.losses import Loss


def test_adding_targets_are_the_sum_of_the_two_marked_values():
    ds = adding(500, 20, seed=3)
    assert ds.X.shape == (500, 20, 2) and ds.y.shape == (500, 1) and not ds.is_classification
    values, markers = ds.X[..., 0], ds.X[..., 1]
    assert torch.equal(markers.sum(1), torch.full((500,), 2.0))
    assert torch.all(markers[:, :10].sum(1) == 1) and torch.all(markers[:, 10:].sum(1) == 1)
    torch.testing.assert_close(ds.y[:, 0], (values * markers).sum(1))
    # answering the mean 1 scores about Var(u1 + u2) = 1/6
    assert abs(float((ds.y - 1).square().mean()) - ADDING_BASELINE_MSE) < 0.03
    assert torch.equal(adding(50, 20, seed=3).X, adding(50, 20, seed=3).X)
    assert not torch.equal(adding(50, 20, seed=3).X, adding(50, 20, seed=4).X)


def test_copy_task_writes_back_the_symbols_after_the_delimiter():
    ds = copy_task(40, length=4, delay=6, symbols=5, seed=1)
    T = 2 * 4 + 6
    assert ds.X.shape == (40, T, 7) and ds.y.shape == (40, T) and ds.is_classification
    tokens = ds.X.argmax(-1) + 1
    assert torch.equal(ds.y[:, -4:], tokens[:, :4])           # the symbols, in order, at the end
    assert torch.all(ds.y[:, :-4] == 0)                         # blanks before
    assert torch.all(tokens[:, 4 + 6 - 1] == 5 + 2)             # the delimiter
    assert torch.all(ds.X.sum(-1) == 1)                         # one-hot


def test_noisy_sine_targets_the_clean_wave_one_step_ahead():
    clean = noisy_sine(10, 30, noise=0.0, seed=2)
    torch.testing.assert_close(clean.y[:, :-1], clean.X[:, 1:])
    noisy = noisy_sine(10, 30, noise=0.5, seed=2)
    torch.testing.assert_close(noisy.y, clean.y)
    assert 0.3 < float((noisy.X - clean.X).std()) < 0.7


@pytest.mark.parametrize("make, kwargs, match", [
    (adding, {"length": 1}, "length"), (adding, {"n_samples": 1}, "n_samples"),
    (copy_task, {"symbols": 1}, "symbols"), (copy_task, {"delay": 0}, "delay"),
    (noisy_sine, {"noise": -1.0}, "noise"), (noisy_sine, {"max_freq": 0.7}, "max_freq"),
])
def test_bad_arguments_fail_clearly(make, kwargs, match):
    with pytest.raises(ValueError, match=match):
        make(**kwargs)


def test_per_step_cross_entropy_and_accuracy():
    torch.manual_seed(0)
    z = torch.randn(4, 6, 3)
    y = torch.randint(0, 3, (4, 6))
    loss = Loss("cross_entropy")
    torch.testing.assert_close(loss(z, y), torch.nn.functional.cross_entropy(z.reshape(-1, 3), y.reshape(-1)))
    # accuracy is the per-step accuracy: each sequence counts the fraction of its steps right
    right = (z.argmax(-1) == y).double().mean()
    assert math.isclose(float(loss.correct(z, y)) / 4, float(right), rel_tol=1e-6)
