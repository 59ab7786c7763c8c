"""fit(augment=...): training batches are augmented, validation and evaluation data never are."""
import pytest
import torch
from torch import nn

from trainlab import evaluate, fit
from trainlab.data import moons
from trainlab.data.augment import GaussianNoise, Rotation


class Recorder(nn.Module):
    """A linear classifier that remembers the inputs it saw and in which mode."""

    def __init__(self, d=2):
        super().__init__()
        self.lin = nn.Linear(d, 2)
        self.seen: list[tuple[bool, torch.Tensor]] = []

    def forward(self, x):
        self.seen.append((self.training, x.detach().clone()))
        return self.lin(x.flatten(1))


def test_augment_applies_to_training_batches_only():
    data = moons(96, seed=0)
    val = moons(40, seed=1)
    calls = []

    def shift_by_100(x):
        calls.append(len(x))
        return x + 100.0

    model = Recorder()
    fit(model, data, val, loss="cross_entropy", optimizer=torch.optim.SGD(model.parameters(), lr=1e-3),
        epochs=2, batch_size=32, seed=0, verbose=False, augment=shift_by_100)
    assert calls == [32, 32, 32] * 2
    train_inputs = [x for training, x in model.seen if training]
    eval_inputs = [x for training, x in model.seen if not training]
    assert len(train_inputs) == 6 and all(x.min() > 90 for x in train_inputs)
    assert len(eval_inputs) == 2 and all(x.abs().max() < 10 for x in eval_inputs)
    model.seen.clear()
    evaluate(model, val)
    assert all(x.abs().max() < 10 for _, x in model.seen)


def test_augment_list_is_composed_and_seeded_runs_repeat():
    data = moons(64, seed=0)
    X = data.X.repeat(1, 8)  # 16 values per row: a 4x4 one-channel "image"

    def run():
        torch.manual_seed(123)
        model = nn.Sequential(nn.Flatten(), nn.Linear(16, 2))
        fit(model, (X, data.y), loss="cross_entropy", optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
            epochs=2, batch_size=16, seed=5, verbose=False, augment=[Rotation(30), GaussianNoise(0.1)])
        return torch.cat([p.detach().flatten() for p in model.parameters()])

    def run_plain():
        torch.manual_seed(123)
        model = nn.Sequential(nn.Flatten(), nn.Linear(16, 2))
        fit(model, (X, data.y), loss="cross_entropy", optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
            epochs=2, batch_size=16, seed=5, verbose=False)
        return torch.cat([p.detach().flatten() for p in model.parameters()])

    a, b = run(), run()
    assert torch.equal(a, b)
    assert not torch.allclose(a, run_plain())  # the augmentation really changed the training data


def test_augment_must_be_callable():
    model = nn.Linear(2, 2)
    with pytest.raises(TypeError, match="augment must be a callable"):
        fit(model, moons(32), loss="cross_entropy", optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
            epochs=1, verbose=False, augment=3)
