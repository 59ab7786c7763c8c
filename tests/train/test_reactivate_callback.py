"""The ReactivateDeadUnits callback: every k epochs it revives units dead on a probe batch and logs how many."""
import pytest
import torch

from trainlab import fit
from trainlab.nn import MLP
from trainlab.train.callbacks import Callback, ReactivateDeadUnits


class _CountDead(Callback):
    """Counts, by the definition, the hidden units that output 0 for every probe input (runs first)."""

    def __init__(self, X):
        self.X, self.counts = X, []

    def on_epoch_begin(self, epoch, logs):
        with torch.no_grad():
            self.counts.append(int((~(self.loop.model.blocks[0](self.X) > 0).any(0)).sum()))


def _killed_mlp(dead: int):
    torch.manual_seed(0)
    model = MLP(2, hidden=[16], out_features=2)
    with torch.no_grad():  # a large negative bias: these units output 0 for every input
        model.blocks[0].linear.bias[:dead] = -1e3
    return model


def test_dead_units_are_revived_every_k_epochs_and_counted():
    g = torch.Generator().manual_seed(1)
    X = torch.randn(128, 2, generator=g)
    y = (X[:, 0] > 0).long()
    model = _killed_mlp(5)
    cb = ReactivateDeadUnits(every=2, probe=128)
    spy = _CountDead(X)
    history = fit(model, (X, y), loss="cross_entropy", optimizer=torch.optim.SGD(model.parameters(), lr=0.01),
                  epochs=4, batch_size=32, callbacks=[spy, cb], verbose=False, seed=0)
    # checked before epoch 3 (index 2) only: every unit dead then (the five killed ones at least) comes back
    assert spy.counts[2] >= 5
    assert history["reactivated"] == [0, 0, spy.counts[2], 0]
    assert cb.events[0] == (2, {"blocks.0.act": spy.counts[2]})
    with torch.no_grad():
        alive = (model.blocks[0](X) > 0).any(0)
    assert bool(alive[:5].all())
    # its state round-trips (resume)
    other = ReactivateDeadUnits(every=2)
    other.load_state_dict(cb.state_dict())
    assert other.events == cb.events


@pytest.mark.parametrize("kwargs, match", [({"every": 0}, "every"), ({"probe": 0}, "probe"),
                                           ({"mode": "zap"}, "mode"), ({"slope": 2.0}, "slope")])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ReactivateDeadUnits(**kwargs)
