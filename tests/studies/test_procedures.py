"""The measurements the study procedures rely on, checked on hand-made cases."""
import math

import pytest
import torch
from torch import nn

from trainlab.experiments.study_procedures._common import StepLosses, flat_weights
from trainlab.experiments.study_procedures.activations import dead_fractions
from trainlab.experiments.study_procedures.deep_linear import _linear_net, _scaled_identity_
from trainlab.experiments.study_procedures.initialization import unit_spread
from trainlab.experiments.study_procedures.optimizers import _oscillation
from trainlab.nn.models import MLP


def test_unit_spread_is_zero_for_copies_and_sees_one_changed_weight():
    model = MLP(3, hidden=[4, 4], out_features=2)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Linear):
                m.weight.fill_(0.3)
                m.bias.fill_(-0.1)
    assert unit_spread(model) == 0.0
    with torch.no_grad():
        model.blocks[1].linear.weight[2, 0] += 0.25  # unit 2 of layer 2 now differs in one input
    assert unit_spread(model) == pytest.approx(0.25)
    with torch.no_grad():
        model.blocks[1].linear.weight[2, 0] -= 0.25
        model.out.weight[1, 3] = 1.0  # an outgoing weight of unit 3 of the last hidden layer
    assert unit_spread(model) == pytest.approx(0.7)


def test_dead_fraction_counts_relu_units_off_on_every_input_and_no_leaky_unit():
    torch.manual_seed(0)
    x = torch.randn(64, 5)
    relu = MLP(5, hidden=[8], out_features=2, activation="relu")
    leaky = MLP(5, hidden=[8], out_features=2, activation="leaky_relu")
    for model in (relu, leaky):
        with torch.no_grad():
            lin = model.blocks[0].linear
            lin.bias[:3] = -100.0  # three units whose pre-activation is negative for every input
            lin.bias[3:] = 100.0
    (relu_dead,) = dead_fractions(relu, x).values()
    (leaky_dead,) = dead_fractions(leaky, x).values()
    assert relu_dead == pytest.approx(3 / 8)
    assert leaky_dead == 0.0
    assert relu.training  # the mode is restored


def test_deep_linear_net_computes_the_closed_form():
    net = _linear_net(2, 7)
    _scaled_identity_(net, 1.5)
    y = net(torch.ones(1, 2, dtype=torch.float64))
    assert torch.allclose(y, torch.full((1, 2), 1.5 ** 7, dtype=torch.float64), rtol=1e-14, atol=0)


def test_oscillation_is_zero_for_a_descent_and_measures_relative_rises():
    assert _oscillation([{"loss": v} for v in (1.0, 0.5, 0.25)]) == 0.0
    # rises of 0.5 (from 1 to 1.5, relative 0.5) then a fall: mean over two transitions = 0.25
    assert _oscillation([{"loss": 1.0}, {"loss": 1.5}, {"loss": 1.0}]) == pytest.approx(0.25)
    assert _oscillation([{"loss": 1.0}]) == 0.0


def test_flat_weights_takes_weight_matrices_only():
    model = MLP(3, hidden=[4], out_features=2, norm="batch")
    w = flat_weights(model)
    assert w.numel() == 3 * 4 + 4 * 2


def test_step_losses_counts_updates_per_epoch():
    cb = StepLosses()
    for epoch, n in enumerate((3, 2)):
        cb.on_epoch_begin(epoch, {})
        for b in range(n):
            cb.on_batch_end(b, {"loss": float(b)})
        cb.on_epoch_end(epoch, {})
    assert cb.steps_per_epoch == [3, 2] and cb.losses == [0.0, 1.0, 2.0, 0.0, 1.0]
    assert not math.isnan(sum(cb.losses))


def test_a_fashion_mnist_data_section_gives_seeded_subsets_from_the_named_files(monkeypatch):
    from trainlab.data import mnist
    from trainlab.data.dataset import Dataset
    from trainlab.experiments.study_procedures import _common

    seen = []

    def fake_loader(**kwargs):
        seen.append(kwargs)
        return tuple(Dataset(torch.full((n, 784), float(i)), torch.arange(n) % 10, "fashion_mnist")
                     for i, n in enumerate((50, 20, 30)))

    monkeypatch.setattr(mnist, "load_fashion_mnist", fake_loader)
    monkeypatch.setattr(_common, "_MNIST_CACHE", {})
    spec = {"name": "fashion_mnist", "source": "idx", "root": "files", "n_train": 10, "n_val": 5, "n_test": 7}
    cfg, (train, val, test) = _common.resolve_data(spec, seed=3)
    assert cfg == {"name": "fashion_mnist"}
    assert (len(train), len(val), len(test)) == (10, 5, 7)
    assert float(train.X.max()) == 0.0 and float(test.X.min()) == 2.0  # each part cut from its own part
    assert seen == [{"flatten": True, "source": "idx", "root": "files"}]
    _, (again, _, _) = _common.resolve_data(spec, seed=3)
    assert torch.equal(again.y, train.y) and len(seen) == 1  # seeded, and loaded once
def test_recipe_ablation_pairs_variants_and_replaces_whole_sections(tmp_path):
    from trainlab.experiments.studies import StudyContext
    from trainlab.experiments.study_procedures.mnist import recipe_ablation

    recipe = {"model": {"kind": "mlp", "hidden": [16], "norm": "batch"},
              "optimizer": {"name": "sgd", "lr": 0.1, "momentum": 0.9, "nesterov": True},
              "train": {"epochs": 1, "batch_size": 64}, "diagnostics": None}
    variants = {"recipe": {}, "same_again": {"model": {"norm": "batch"}},
                # merged, AdamW would get SGD's momentum and nesterov and refuse them
                "adamw": {"optimizer": {"name": "adamw", "lr": 0.001}, "replace": ["optimizer"]}}
    out = recipe_ablation(StudyContext(tmp_path), data={"name": "mnist", "n_train": 300, "n_val": 100, "n_test": 100},
                          recipe=recipe, variants=variants, recipe_seeds=[1])
    m = out.metrics
    # the same config with the same seed trains identically: a cost of exactly 0 (the comparison is paired)
    assert m["same_again.cost"] == 0.0 and m["recipe.cost"] == 0.0
    assert m["adamw.cost"] == pytest.approx(100 * (m["recipe.test_accuracy"] - m["adamw.test_accuracy"]))
    seeds = [m["recipe.test_accuracy"], m["recipe.seed1.test_accuracy"]]
    assert m["recipe.seed_spread"] == pytest.approx(100 * (max(seeds) - min(seeds)))


def test_recipe_ablation_names_the_bad_parameter_before_training(tmp_path):
    from trainlab.experiments.studies import StudyContext, StudyError
    from trainlab.experiments.study_procedures.mnist import recipe_ablation

    ctx = StudyContext(tmp_path)
    with pytest.raises(StudyError, match=r"params.data: .*in-memory MNIST subset"):
        recipe_ablation(ctx, data={"name": "mnist"}, recipe={}, variants={"recipe": {}})
    with pytest.raises(StudyError, match=r"params.pairs.bn: unknown variant\(s\) 'deep'"):
        recipe_ablation(ctx, data={"name": "mnist", "n_train": 10}, recipe={}, variants={"recipe": {}},
                        pairs={"bn": ["recipe", "deep"]})


def test_width_sweep_reports_each_width_and_names_the_bad_parameter(tmp_path):
    from trainlab.experiments.studies import StudyContext, StudyError
    from trainlab.experiments.study_procedures.width import width_sweep

    ctx = StudyContext(tmp_path)
    data = {"name": "mnist", "n_train": 300, "n_val": 100, "n_test": 100}
    base = {"model": {"kind": "mlp"}, "optimizer": {"name": "adam", "lr": 0.001},
            "train": {"epochs": 1, "batch_size": 64}, "diagnostics": None}
    with pytest.raises(StudyError, match=r"params.data: .*in-memory MNIST subset"):
        width_sweep(ctx, data={"name": "mnist"}, base=base, widths=[8, 32])
    with pytest.raises(StudyError, match=r"params.reference: 16 is not one of the widths"):
        width_sweep(ctx, data=data, base=base, widths=[8, 32], reference=16)
    m = width_sweep(ctx, data=data, base=base, widths=[8, 32], depth=2, seeds=2).metrics
    assert m["width8.parameters"] == 784 * 8 + 8 + 8 * 8 + 8 + 8 * 10 + 10
    assert m["widest.train_loss"] == m["width32.train_loss"] and m["reference.train_loss"] == m["width32.train_loss"]
    assert m["narrowest.test_spread"] >= 0 and m["cost_ratio"] > 0
    assert m["widest_minus_reference.test_points"] == 0.0 and m["width32.widest_cost_ratio"] == 1.0
    assert m["width8.widest_test_points"] == pytest.approx(100 * (m["width32.test_accuracy"] - m["width8.test_accuracy"]))
