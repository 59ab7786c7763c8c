import pytest

from trainlab.experiments.config import ConfigError, apply_overrides, load_config, load_yaml, parse_config


def _err(data) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    return str(info.value)


def test_defaults_resolve():
    cfg = parse_config({})
    assert cfg.data.name == "moons" and cfg.optimizer.name == "adam" and cfg.train.batch_size == 32
    assert "optimizer:" in cfg.to_yaml()


def test_unknown_keys_are_rejected_with_their_path():
    assert "train.batchsize: unknown field; did you mean 'batch_size'? (else remove it)" in _err({"train": {"batchsize": 3}})
    assert "optimzer: unknown field; did you mean 'optimizer'?" in _err({"optimzer": {"name": "adam"}})
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


# ---- YAML as people write it -------------------------------------------------------------------

def test_numbers_people_write_parse_as_numbers(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text("optimizer: {name: adam, lr: 1e-3, eps: 1.0e-8}\ndata: {name: moons, n_samples: 1.0e3}\n"
                    "train: {epochs: 2}\n")
    cfg = load_config(path)
    assert cfg.optimizer.kwargs == {"lr": 0.001, "eps": 1e-8}
    assert cfg.data.kwargs["n_samples"] == 1000 and isinstance(cfg.data.kwargs["n_samples"], int)
    out = apply_overrides({}, ["optimizer.lr=1e-3", "x.big=1.0e6", "x.half=.5", "x.word=1e", "x.int=7"])
    assert out["optimizer"]["lr"] == 0.001
    assert out["x"] == {"big": 1e6, "half": 0.5, "word": "1e", "int": 7} and isinstance(out["x"]["int"], int)


def test_duplicate_keys_and_empty_files_are_errors(tmp_path):
    path = tmp_path / "dup.yaml"
    path.write_text("optimizer: {name: adam, lr: 0.1}\ntrain: {epochs: 2}\noptimizer: {name: sgd}\n")
    with pytest.raises(ConfigError, match=r"duplicate key 'optimizer' \(first given on line 1\)") as info:
        load_config(path)
    assert "line 3" in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(ConfigError, match="duplicate key 'lr'"):
        apply_overrides({}, ["optimizer={name: sgd, lr: 0.1, lr: 0.2}"])
    for text in ("", "\n# nothing but a comment\n", "---\n"):
        (tmp_path / "empty.yaml").write_text(text)
        with pytest.raises(ConfigError, match="is empty"):
            load_config(tmp_path / "empty.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_config(tmp_path / "list.yaml")


def billion_laughs(levels: int = 9) -> str:
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, levels + 1):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]")
    return "\n".join(lines) + "\n"


def test_alias_bombs_and_loops_are_refused_quickly(tmp_path):
    import time

    path = tmp_path / "bomb.yaml"
    path.write_text(billion_laughs())
    assert len(path.read_bytes()) < 700
    start = time.perf_counter()
    with pytest.raises(ConfigError, match="expands to more than 100,000 values") as info:
        load_config(path)
    assert time.perf_counter() - start < 1.0 and len(str(info.value)) < 300
    path.write_text("data: &d {name: moons, more: *d}\n")
    with pytest.raises(ConfigError, match="refers to the mapping or list that contains it"):
        load_config(path)
    with pytest.raises(ConfigError, match="expands to more than"):
        apply_overrides({}, ["x=" + billion_laughs().replace("\n", ", ").join("{}")])
    # a few aliases are fine, and each use is its own copy
    path.write_text("defaults: &opt {name: sgd, lr: 0.1}\noptimizer: *opt\ntrain: {epochs: 1}\n")
    data = load_yaml(path)
    assert data["optimizer"] == {"name": "sgd", "lr": 0.1} and data["optimizer"] is not data["defaults"]
    # one alias used many times in one list is a repetition, not a loop
    path.write_text("t: &t {name: clip_value, clip: 1.0}\nx: [*t, *t, *t]\ny: {a: *t, b: *t}\n")
    assert load_yaml(path)["x"] == [{"name": "clip_value", "clip": 1.0}] * 3


def test_error_messages_never_print_a_huge_value():
    msg = _err({"optimizer": {"name": "adam", "lr": "x" * 100_000}})
    assert "optimizer.lr" in msg and len(msg) < 400
    msg = _err({"model": {"hidden": list(range(50_000)) + ["x"]}})
    assert "model.hidden.50000" in msg and len(msg) < 400
    msg = _err({"callbacks": [{"name": f"bad{i}"} for i in range(500)]})
    assert "and 492 more" in msg and len(msg) < 3000


# ---- overrides -----------------------------------------------------------------------------------

BASE = {"name": "exp", "data": {"name": "circles", "n_samples": 200}, "model": {"hidden": [8]},
        "optimizer": {"name": "adam", "lr": 0.01, "betas": [0.8, 0.9]}, "train": {"epochs": 2},
        "callbacks": [{"name": "early_stopping", "patience": 3}]}


def test_the_top_level_name_is_a_label_that_changes_nothing_else():
    out = apply_overrides(BASE, ["name=renamed"])
    assert out == {**BASE, "name": "renamed"}
    assert parse_config(out).optimizer.kwargs == {"lr": 0.01, "betas": [0.8, 0.9]}


def test_switching_a_technique_keeps_what_the_new_one_accepts():
    dropped = []
    out = apply_overrides(BASE, ["optimizer.name=sgd", "optimizer.momentum=0.9", "data.name=moons",
                                 "callbacks.0.name=terminate_on_nan"], dropped=dropped)
    assert out["optimizer"] == {"name": "sgd", "lr": 0.01, "momentum": 0.9}
    assert out["data"] == {"name": "moons", "n_samples": 200}          # moons takes n_samples too
    assert out["callbacks"] == [{"name": "terminate_on_nan"}]
    assert [d.split(" dropped ")[1].split(" (")[0] for d in dropped] == ["optimizer.betas", "callbacks.0.patience"]
    # a model kind switch keeps the arguments the CNN also has (hidden, activation), drops the rest
    out = apply_overrides({"model": {"kind": "mlp", "hidden": 16, "residual": True}}, ["model.kind=cnn"])
    assert out["model"] == {"kind": "cnn", "hidden": 16}
    # a switch to an unknown name keeps everything: validation names the unknown technique
    assert apply_overrides(BASE, ["optimizer.name=adamm"])["optimizer"]["betas"] == [0.8, 0.9]


def test_override_paths_are_checked():
    with pytest.raises(ConfigError, match=r"--set callbacks.100000000.name: callbacks is a list of 1; "
                                          r"use an index 0..1 \(1 appends\), got '100000000'"):
        apply_overrides(BASE, ["callbacks.100000000.name=x"])
    assert apply_overrides(BASE, ["callbacks.1.name=terminate_on_nan"])["callbacks"][1] == {"name": "terminate_on_nan"}
    with pytest.raises(ConfigError, match="callbacks is a list of 1; use an index"):
        apply_overrides(BASE, ["callbacks.first.name=x"])
    with pytest.raises(ConfigError, match=r"--set seed.x: seed is 0, a single value without fields"):
        apply_overrides({"seed": 0}, ["seed.x=1"])
    with pytest.raises(ConfigError, match="names joined by dots"):
        apply_overrides(BASE, ["optimizer..lr=1"])
    with pytest.raises(ConfigError, match="names joined by dots"):
        apply_overrides(BASE, [".".join(["a"] * 100) + "=1"])


# ---- every argument is checked at config time ---------------------------------------------------

@pytest.mark.parametrize("data, where, value", [
    ({"model": {"activation": "rellu"}}, "model.activation", "'rellu'"),
    ({"data": {"name": "moons", "n_samples": "lots"}}, "data.n_samples", "'lots'"),
    ({"optimizer": {"name": "adam", "lr": "fast"}}, "optimizer.lr", "'fast'"),
    ({"optimizer": {"name": "adam", "lr": -0.1}}, "optimizer.lr", "-0.1"),
    ({"model": {"hidden": 8}}, "model.hidden", "8"),
    ({"train": {"epochs": 0}}, "train.epochs", "0"),
    ({"model": {"hidden": "32,32"}}, "model.hidden", "'32,32'"),
    ({"model": {"hidden": [1e12]}}, "model", "1000000000000"),
    ({"data": {"name": "moons", "n_samples": 1e12}}, "data.n_samples", "1,000,000,000,000"),
    ({"data": {"name": "moons", "noise": -1}}, "data.noise", "-1"),
    ({"seed": {"x": 1}}, "seed", "{'x': 1}"),
    ({"train": {"epochs": True}}, "train.epochs", "True"),
    ({"optimizer": {"name": "sgd", "momentum": True}}, "optimizer.momentum", "True"),
    ({"schedule": {"name": "step", "gamma": -1}}, "schedule.gamma", "-1"),
    ({"transforms": [{"name": "clip_global_norm", "max_norm": -1}]}, "transforms.0.max_norm", "-1"),
    ({"callbacks": [{"name": "early_stopping", "patience": -2}]}, "callbacks.0.patience", "-2"),
    ({"augment": [{"name": "rotation", "degrees": "x"}]}, "augment.0.degrees", "'x'"),
    ({"data": {"name": "moons", "split": [0.6, 0.6]}}, "data.split", "[0.6, 0.6]"),
    ({"data": {"name": "mnist", "split": [0.5, 0.5]}}, "data.split", "[0.5, 0.5]"),
    ({"optimizer": {"name": "lbfgs"}, "transforms": [{"name": "l1", "weight": 0.1}]}, "transforms", "lbfgs"),
    ({"model": {"hidden": [8], "activation": ["relu", "tanh"]}}, "model", "['relu', 'tanh']"),
    ({"loss": {"name": "bce"}, "data": {"name": "spirals", "classes": 3}}, "loss.name", "'bce'"),
    ({"loss": {"name": "mse"}, "data": {"name": "moons"}}, "loss.name", "'mse'"),
    ({"loss": {"name": "cross_entropy"}, "data": {"name": "line"}}, "loss.name", "'cross_entropy'"),
    ({"train": {"device": "gpu"}}, "train.device", "'gpu'"),
    ({"train": {"device": "cuda:999"}}, "train.device", "'cuda:999'"),
])
def test_bad_arguments_fail_at_config_time_naming_path_and_value(data, where, value):
    msg = _err(data)
    assert f"{where}" in msg and value in msg and "\n" not in msg, msg


def test_missing_devices_name_the_devices_present():
    import torch

    missing = ["gpu", "cuda:999"] + ([] if torch.cuda.is_available() else ["cuda", "cuda:3"]) \
        + ([] if torch.backends.mps.is_available() else ["mps"])
    for device in missing:
        msg = _err({"train": {"device": device}})
        assert f"train.device={device!r}" in msg and "devices present: cpu" in msg
    assert parse_config({"train": {"device": "cpu"}}).train.device == "cpu"


def test_checks_leave_the_global_rng_alone():
    import torch

    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    parse_config({"data": {"name": "spirals", "n_samples": 100}, "model": {"hidden": [16, 16]},
                  "init": {"weight": "he_normal"}, "transforms": [{"name": "noise", "eta": 0.1}]})
    assert torch.equal(torch.rand(3), expected)


@pytest.mark.parametrize("split", [[float("nan"), 0.3], [0.7, float("nan")], [float("nan")], [float("inf"), -1.0]])
def test_a_split_with_nan_or_inf_fractions_is_refused(split):
    with pytest.raises(ConfigError, match="data.split"):
        parse_config({"data": {"name": "moons", "n_samples": 200, "split": split}})
