import pytest

from trainlab.experiments.config import ConfigError, apply_overrides, load_config, parse_config


def _err(data) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    return str(info.value)


def test_defaults_resolve():
    cfg = parse_config({})
    assert cfg.data.name == "moons" and cfg.optimizer.name == "adam" and cfg.train.batch_size == 32
    assert "optimizer:" in cfg.to_yaml()


def test_unknown_keys_are_rejected_with_their_path():
    assert "train.batchsize: unknown field" in _err({"train": {"batchsize": 3}})
    assert "colour: unknown field" in _err({"colour": "red"})


def test_unknown_technique_names_list_the_allowed_ones():
    msg = _err({"optimizer": {"name": "adamm"}})
    assert "optimizer: unknown name 'adamm'" in msg and "adam" in msg and "sgd" in msg
    msg = _err({"data": {"name": "mnistt"}})
    assert "data: unknown name 'mnistt'" in msg and "moons" in msg


def test_unknown_arguments_name_the_field_and_the_allowed_ones():
    msg = _err({"optimizer": {"name": "adam", "lrr": 0.1}})
    assert "optimizer.lrr: not an argument of 'adam'" in msg and "lr" in msg
    msg = _err({"model": {"kind": "mlp", "activaton": "relu"}})
    assert "model.activaton: not an argument" in msg and "activation" in msg
    msg = _err({"data": {"name": "moons", "seed": 3}})  # the run's seed is top-level
    assert "data.seed" in msg


def test_bad_values_name_the_field():
    msg = _err({"train": {"epochs": "many", "batch_size": 0}})
    assert "train.epochs" in msg and "'many'" in msg
    assert "train.batch_size" in msg
    assert "loss.name" in _err({"loss": {"name": "hinge"}})
    assert "train.batch_size" in _err({"train": {"batch_size": "half"}})


def test_batch_size_full_mini_and_stochastic():
    for bs in ("full", 16, 1):
        assert parse_config({"train": {"batch_size": bs}}).train.batch_size == bs


def test_overrides_by_dotted_path():
    data = {"optimizer": {"name": "adam", "lr": 0.1, "betas": [0.9, 0.99]}, "model": {"hidden": [8]}}
    out = apply_overrides(data, ["optimizer.lr=0.01", "model.hidden=[64, 32]", "train.epochs=3",
                                 "callbacks.0.name=x", "callbacks.0.patience=2"])
    assert out["optimizer"] == {"name": "adam", "lr": 0.01, "betas": [0.9, 0.99]}
    assert out["model"]["hidden"] == [64, 32] and out["train"]["epochs"] == 3
    assert out["callbacks"] == [{"name": "x", "patience": 2}]
    # switching technique keeps the arguments the new one accepts (sgd takes lr, not betas)
    dropped = []
    assert apply_overrides(data, ["optimizer.name=sgd"], dropped=dropped)["optimizer"] == {"name": "sgd", "lr": 0.1}
    assert len(dropped) == 1 and "optimizer.betas" in dropped[0] and "kept lr" in dropped[0]
    assert data["optimizer"]["lr"] == 0.1  # the input is not modified
    with pytest.raises(ConfigError, match="key.path=value"):
        apply_overrides(data, ["optimizer.lr"])


def test_load_config_from_yaml(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text("name: t\noptimizer: {name: sgd, lr: 0.5}\ntrain: {epochs: 2, batch_size: full}\n")
    cfg = load_config(path, ["optimizer.momentum=0.9"])
    assert cfg.optimizer.kwargs == {"lr": 0.5, "momentum": 0.9}
    assert cfg.train.batch_size == "full"
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    (tmp_path / "bad.yaml").write_text("a: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(tmp_path / "bad.yaml")
