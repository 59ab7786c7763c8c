"""Magnitude pruning: exact masks, the cubic schedule, and the callback keeping pruned weights at zero."""
import pytest
import torch
from torch import nn

from trainlab import fit
from trainlab.experiments.config import ConfigError, parse_config
from trainlab.nn import MLP
from trainlab.nn.pruning import apply_masks, gradual_sparsity, magnitude_masks, prunable_weights, weight_sparsity
from trainlab.train.callbacks import Callback, MagnitudePruning


def _net():
    net = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 2))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[0.1, -0.9], [0.5, 0.05], [-0.3, 0.7]]))
        net[2].weight.copy_(torch.tensor([[0.2, -0.01, 0.6], [0.8, 0.4, -0.02]]))
    return net


def test_global_masks_drop_exactly_the_smallest_magnitudes_over_all_layers():
    net = _net()
    masks = magnitude_masks(net, 0.5, "global")  # 12 weights: the 6 smallest |w| go
    assert set(masks) == {"0.weight", "2.weight"}  # biases are never pruned
    assert masks["0.weight"].tolist() == [[False, True], [True, False], [False, True]]
    assert masks["2.weight"].tolist() == [[False, False, True], [True, True, False]]
    apply_masks(net, masks)
    assert weight_sparsity(net) == 0.5
    kept = torch.cat([p.detach().abs().flatten() for p in prunable_weights(net).values()])
    assert sorted(kept[kept != 0].tolist()) == pytest.approx([0.4, 0.5, 0.6, 0.7, 0.8, 0.9])


def test_layer_masks_prune_each_layer_to_the_sparsity_and_ties_are_broken_by_position():
    net = _net()
    masks = magnitude_masks(net, 1 / 3, "layer")  # 2 of 6 in each layer
    assert masks["0.weight"].tolist() == [[False, True], [True, False], [True, True]]
    assert masks["2.weight"].tolist() == [[True, False, True], [True, True, False]]
    tied = nn.Linear(4, 1, bias=False)
    with torch.no_grad():
        tied.weight.fill_(0.5)
    assert magnitude_masks(tied, 0.5)["weight"].tolist() == \
        [[False, False, True, True]]


def test_raising_the_sparsity_keeps_every_earlier_cut_and_reaches_the_exact_count():
    torch.manual_seed(0)
    net = MLP(20, hidden=[30, 10], out_features=3)
    n = sum(p.numel() for p in prunable_weights(net).values())
    previous = None
    for s in (0.2, 0.5, 0.77, 0.9):
        masks = magnitude_masks(net, s)
        apply_masks(net, masks)
        assert sum(int((~m).sum()) for m in masks.values()) == round(s * n)
        if previous is not None:
            assert all(bool((previous[k] >= masks[k]).all()) for k in masks)  # kept ⊇ kept later
        previous = masks
    assert weight_sparsity(net) == round(0.9 * n) / n


def test_gradual_sparsity_is_zhu_and_guptas_cubic():
    assert gradual_sparsity(0, 0.9, 2, 6) == 0.0
    assert gradual_sparsity(2, 0.9, 2, 6) == 0.0
    assert gradual_sparsity(4, 0.9, 2, 6) == pytest.approx(0.9 * (1 - 0.5 ** 3))
    assert gradual_sparsity(6, 0.9, 2, 6) == 0.9 and gradual_sparsity(9, 0.9, 2, 6) == 0.9
    with pytest.raises(ValueError, match="final must lie in"):
        gradual_sparsity(1, 1.0, 0, 2)


class _ZerosAfterEveryStep(Callback):
    """Runs after the pruning callback: checks every step that pruned weights are still exactly zero."""

    order = 1
    reads_batch_loss = False

    def __init__(self, pruning):
        self.pruning, self.checked, self.sparsity = pruning, 0, []

    def on_batch_end(self, batch, logs):
        if self.pruning.masks is not None:
            params = dict(self.loop.model.named_parameters())
            for name, mask in self.pruning.masks.items():
                assert bool((params[name][~mask] == 0).all())
            self.checked += 1

    def on_epoch_end(self, epoch, logs):
        self.sparsity.append(logs["sparsity"])


def test_the_callback_prunes_on_schedule_and_pruned_weights_stay_zero_under_adam():
    torch.manual_seed(0)
    X = torch.randn(256, 8)
    y = (X[:, 0] + X[:, 1] > 0).long()
    model = MLP(8, hidden=[32], out_features=2)
    n = sum(p.numel() for p in prunable_weights(model).values())
    pruning = MagnitudePruning(sparsity=0.8, start_epoch=1, end_epoch=3)
    check = _ZerosAfterEveryStep(pruning)
    # Adam's moments keep moving a weight whose gradient is not zero: only the re-applied mask holds it at 0
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    fit(model, (X, y), loss="cross_entropy", optimizer=opt, epochs=5, batch_size=32,
        callbacks=[pruning, check], verbose=False)
    expected = [0.0, 0.0, gradual_sparsity(2, 0.8, 1, 3), 0.8, 0.8]
    assert check.sparsity == pytest.approx([round(s * n) / n for s in expected], abs=1e-12)
    assert check.checked == 4 * 8  # epochs 1–4, 8 steps each
    assert opt.state[model.blocks[0].linear.weight]["exp_avg"].abs().sum() > 0


@pytest.mark.parametrize("kwargs, match", [
    ({"sparsity": 1.0}, "sparsity must lie in"), ({"scope": "net"}, "scope must be"),
    ({"start_epoch": -1}, "start_epoch must be"), ({"start_epoch": 3, "end_epoch": 2}, "end_epoch must be"),
    ({"every": 0}, "every must be"),
])
def test_bad_arguments_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MagnitudePruning(**kwargs)


def test_sparsity_reaches_the_history_and_so_metrics_csv():
    torch.manual_seed(0)
    X, y = torch.randn(64, 4), torch.randint(0, 2, (64,))
    model = MLP(4, hidden=[8], out_features=2)
    history = fit(model, (X, y), loss="cross_entropy", optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
                  epochs=2, batch_size=16, callbacks=[MagnitudePruning(sparsity=0.5)], verbose=False)
    assert history.history["sparsity"] == [0.5, 0.5]


def test_the_config_reaches_the_callback_and_names_a_bad_field():
    cfg = parse_config({"callbacks": [{"name": "magnitude_pruning", "sparsity": 0.5, "scope": "layer"}]})
    assert cfg.callbacks[0].name == "magnitude_pruning"
    with pytest.raises(ConfigError, match=r"callbacks\.0\.sparsity"):
        parse_config({"callbacks": [{"name": "magnitude_pruning", "sparsity": 1.5}]})
    with pytest.raises(ConfigError, match=r"callbacks\.0\.start_epoch=5: the run has only 3 epochs"):
        parse_config({"train": {"epochs": 3}, "callbacks": [{"name": "magnitude_pruning", "start_epoch": 5}]})


def test_a_resumed_callback_rebuilds_its_masks_from_the_saved_zeros():
    torch.manual_seed(0)
    model = MLP(6, hidden=[10], out_features=2)
    apply_masks(model, magnitude_masks(model, 0.6))

    class _Loop:  # what the callback reads of the fit loop
        pass

    loop = _Loop()
    loop.model = model
    resumed = MagnitudePruning(sparsity=0.6, start_epoch=0, end_epoch=4)
    resumed.load_state_dict(MagnitudePruning(sparsity=0.6).state_dict() | {"current": 0.6})
    resumed.set_loop(loop)
    resumed.on_epoch_begin(5, {})  # after the schedule: no new cut, only the rebuilt masks
    assert all(bool((m == (p != 0)).all()) for (n, p), m in
               zip(prunable_weights(model).items(), resumed.masks.values()))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)  # an optimizer step that would revive every weight
    resumed.on_batch_end(0, {})
    assert weight_sparsity(model) == 48 / 80  # 0.6 of the 6·10 + 10·2 weights, exactly
