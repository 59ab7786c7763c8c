"""data.test_shift: a covariate shift applied, seeded, to a copy of the test split only."""
import pytest
import torch

from trainlab.data.augment import Compose, Rotation
from trainlab.data.dataset import Dataset
from trainlab.experiments.config import ConfigError, parse_config
from trainlab.experiments.runner import TEST_SHIFT_SEED, Splits, run_experiment, shift_test_split
from trainlab.train.loop import evaluate


def _images(n: int, seed: int) -> Dataset:
    g = torch.Generator().manual_seed(seed)
    return Dataset(torch.rand(n, 784, generator=g), torch.randint(0, 10, (n,), generator=g), "images")


def _splits() -> Splits:
    return Splits(_images(64, 1), _images(32, 2), _images(40, 3))


SHIFT = [{"name": "rotation", "degrees": [20, 30]}]


def test_the_shift_is_the_augmentation_drawn_with_the_runs_seed_on_the_test_inputs_only():
    data = _splits()
    before = data.test.X.clone()
    cfg = parse_config({"seed": 5, "data": {"name": "mnist", "test_shift": SHIFT}})
    out = shift_test_split(cfg, data)
    by_hand = Compose([Rotation([20, 30])])(before.clone(), generator=torch.Generator().manual_seed(5 + TEST_SHIFT_SEED))
    assert torch.equal(out.shifted_test.X, by_hand)
    assert torch.equal(out.shifted_test.y, data.test.y)  # p(y | x) unchanged: the labels stay
    assert torch.equal(out.test.X, before) and out.train is data.train and out.val is data.val
    assert (out.shifted_test.X - before).abs().max() > 0.1  # it did move the images
    # no test_shift: the splits come back untouched
    assert shift_test_split(parse_config({"data": {"name": "mnist"}}), data) is data


def test_a_run_reports_test_and_shifted_test_numbers_and_the_config_keeps_the_shift():
    config = {"seed": 0, "data": {"name": "mnist", "test_shift": SHIFT}, "model": {"kind": "mlp", "hidden": [8]},
              "train": {"epochs": 1, "batch_size": 32}, "diagnostics": None}
    result = run_experiment(config, write=False, verbose=False, data=_splits())
    f = result.final
    shifted = result.extras["data"].shifted_test
    expected = evaluate(result.model, shifted, result.extras["loss"])
    assert f["shifted_test_accuracy"] == pytest.approx(expected["accuracy"], abs=0)
    assert f["shifted_test_loss"] == pytest.approx(expected["loss"], rel=1e-6)
    assert "test_accuracy" in f
    assert result.config.to_dict()["data"]["test_shift"] == [{"name": "rotation", "degrees": [20.0, 30.0]}]
    # a config without a shift resolves as before: no test_shift key, no shifted numbers
    assert "test_shift" not in parse_config({"data": {"name": "mnist"}}).to_dict()["data"]


@pytest.mark.parametrize("data, message", [
    ({"name": "moons", "test_shift": [{"name": "noise", "std": 0.1}]}, "data.test_shift: data.split=[0.7, 0.3] has no test part"),
    ({"name": "mnist", "test_shift": [{"name": "rotation", "degree": 10}]}, "data.test_shift.0.degree"),
    ({"name": "mnist", "test_shift": [{"name": "noise", "std": -1}]}, "data.test_shift.0.std=-1"),
    ({"name": "mnist", "test_shift": [{"name": "rotate"}]}, "data.test_shift.0: unknown name 'rotate'"),
    ({"name": "moons", "split": [0.6, 0.2, 0.2], "test_shift": [{"name": "rotation"}]},
     "data.test_shift acts on images"),
])
def test_a_bad_test_shift_fails_before_the_run_naming_the_field(data, message):
    with pytest.raises(ConfigError, match="invalid config") as err:
        parse_config({"data": data})
    assert message in str(err.value)


def test_data_without_a_test_split_is_refused_when_the_data_is_given():
    cfg = parse_config({"data": {"name": "mnist", "test_shift": SHIFT}})
    with pytest.raises(ConfigError, match="data.test_shift: the data 'mnist' has no test split"):
        shift_test_split(cfg, Splits(_images(8, 0), _images(8, 1)))

