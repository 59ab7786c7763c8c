"""The command line's configs and overrides, through the real ``trainlab`` entry point."""
import json
import time

import pytest
import torch
import yaml

EXP = ("name: exp\nseed: 3\ndata: {name: circles, n_samples: 200, noise: 0.1}\n"
       "model: {kind: mlp, hidden: [8], activation: tanh}\n"
       "optimizer: {name: adam, lr: 0.02, betas: [0.8, 0.9]}\ntrain: {epochs: 2, batch_size: full}\n")


def _resolved(run_dir) -> dict:
    return yaml.safe_load((run_dir / "config.yaml").read_text())


def _refused(res, tmp_path, *needles):
    """Exit 2, one line on stderr naming every needle, no traceback, nothing created."""
    assert res.returncode == 2, (res.returncode, res.stderr)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert "Traceback" not in res.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    assert not (tmp_path / "runs").exists()
    assert not (tmp_path / "out").exists()
    assert not (tmp_path / "store").exists()  # no store, so no "failed" row
    return lines[0]


def test_a_new_name_changes_nothing_else(cli, tmp_path):
    (tmp_path / "exp.yaml").write_text(EXP)
    for args in (["--name", "renamed"], ["--set", "name=renamed"]):
        res = cli("run", "exp.yaml", *args, "--out", "r", "-q", "--no-store")
        assert res.returncode == 0, res.stderr
        cfg = _resolved(tmp_path / "r")
        assert cfg["name"] == "renamed" and cfg["seed"] == 3
        assert cfg["data"] == {"name": "circles", "split": None, "n_samples": 200, "noise": 0.1}
        assert cfg["optimizer"]["name"] == "adam" and cfg["optimizer"]["lr"] == 0.02
        assert cfg["train"]["epochs"] == 2 and cfg["model"]["activation"] == "tanh"
        assert len(json.loads((tmp_path / "r" / "metrics.json").read_text())["history"]) == 2
        (tmp_path / "r").rename(tmp_path / f"r-{args[0].strip('-')}")


def test_a_new_name_keeps_every_sweep_point(cli, tmp_path):
    (tmp_path / "s.yaml").write_text("name: lr\ndata: {name: moons, n_samples: 100}\nmodel: {hidden: [4]}\n"
                                     "optimizer: {name: sgd, lr: [0.01, 0.1, 0.3, 1.0]}\n"
                                     "train: {epochs: 1, batch_size: [16, 32]}\n")
    before = cli("sweep", "s.yaml", "--dry-run")
    after = cli("sweep", "s.yaml", "--dry-run", "--set", "name=other")
    assert before.returncode == after.returncode == 0, after.stderr
    assert "8 run" in before.stdout and "8 run" in after.stdout, after.stdout
    assert "sweep other-" in after.stdout and "optimizer.lr=1, train.batch_size=32" in after.stdout


def test_the_readme_switch_to_sgd_keeps_the_quickstart_lr(cli, tmp_path):
    res = cli("run", "--optimizer", "sgd", "--set", "optimizer.momentum=0.9", "--batch-size", "full",
              "--epochs", "1", "--out", "r", "-q", "--no-store")
    assert res.returncode == 0, res.stderr
    assert _resolved(tmp_path / "r")["optimizer"] == {"name": "sgd", "lr": 0.01, "momentum": 0.9}


def test_a_switch_says_which_arguments_it_dropped(cli, tmp_path):
    (tmp_path / "exp.yaml").write_text(EXP)
    res = cli("run", "exp.yaml", "--optimizer", "sgd", "--out", "r", "-q", "--no-store")
    assert res.returncode == 0, res.stderr
    assert _resolved(tmp_path / "r")["optimizer"] == {"name": "sgd", "lr": 0.02}
    assert "optimizer.betas" in res.stderr and "'sgd'" in res.stderr and "kept lr" in res.stderr


@pytest.mark.parametrize("yaml_text, args, needles", [
    ("model: {activation: rellu}\n", [], ["model.activation='rellu'", "relu"]),
    ("data: {name: moons, n_samples: lots}\n", [], ["data.n_samples", "'lots'", "int"]),
    ("optimizer: {name: adam, lr: fast}\n", [], ["optimizer.lr", "'fast'", "float"]),
    ("optimizer: {name: adam, lr: -0.1}\n", [], ["optimizer.lr=-0.1", ">= 0"]),
    ("model: {hidden: 8}\n", [], ["model.hidden", "(got 8)", "Sequence[int]"]),
    ("train: {epochs: 0}\n", [], ["train.epochs", "(got 0)", "greater than or equal to 1"]),
    ("model: {hidden: [1e12]}\n", [], ["model:", "parameters", "model.hidden=[1000000000000]", "GiB"]),
    ("data: {name: moons, n_samples: 1e12}\n", [], ["data.n_samples=1,000,000,000,000", "GiB"]),
    (None, ["--hidden", "32,x"], ["model.hidden", "'32,x'"]),
    (None, ["--set", "seed.x=1"], ["--set seed.x", "seed is 0"]),
    (None, ["--set", "callbacks.100000000.name=x"], ["callbacks.100000000", "index 0..0"]),
    (None, ["--set", "optimizer.lr=1e-3", "--set", "optimizer.betas=oops"], ["optimizer.betas", "'oops'"]),
    ("optimizer: {name: adam}\noptimizer: {name: sgd}\n", [], ["duplicate key 'optimizer'", "line 2"]),
    ("", [], ["is empty"]),
    ("data: {name: moons, split: [.nan, 0.3]}\n", [], ["data.split=[nan, 0.3]", "summing to 1"]),
    ("data: {name: moons, split: [.nan]}\n", [], ["data.split=[nan]", "[1.0]"]),
])
def test_bad_configs_are_refused_before_anything_runs(cli, tmp_path, yaml_text, args, needles):
    config = []
    if yaml_text is not None:
        (tmp_path / "exp.yaml").write_text(yaml_text)
        config = ["exp.yaml"]
    res = cli("run", *config, *args)
    _refused(res, tmp_path, *needles)


def test_hidden_accepts_a_comma_list(cli, tmp_path):
    res = cli("run", "--hidden", "16,8", "--epochs", "1", "--out", "r", "-q", "--no-store",
              "--set", "data.n_samples=200")
    assert res.returncode == 0, res.stderr
    assert _resolved(tmp_path / "r")["model"]["hidden"] == [16, 8]


def test_a_yaml_1_2_float_is_a_learning_rate(cli, tmp_path):
    (tmp_path / "exp.yaml").write_text(EXP.replace("lr: 0.02", "lr: 1e-3"))
    res = cli("run", "exp.yaml", "--set", "optimizer.eps=1.0e-6", "--out", "r", "-q", "--no-store")
    assert res.returncode == 0, res.stderr
    assert _resolved(tmp_path / "r")["optimizer"]["lr"] == 0.001
    assert _resolved(tmp_path / "r")["optimizer"]["eps"] == 1e-6


def test_an_alias_bomb_is_refused_at_once(cli, tmp_path):
    lines = ['name: bomb', 'a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 10)]
    (tmp_path / "exp.yaml").write_text("\n".join(lines) + "\n")
    start = time.perf_counter()
    res = cli("run", "exp.yaml", timeout=60)
    assert time.perf_counter() - start < 30
    line = _refused(res, tmp_path, "expands to more than 100,000 values")
    assert len(line) < 300


@pytest.mark.parametrize("device", ["gpu", "cuda:999"]
                         + ([] if torch.cuda.is_available() else ["cuda", "cuda:3"])
                         + ([] if torch.backends.mps.is_available() else ["mps"]))
def test_a_missing_device_is_one_line_naming_the_devices_present(cli, tmp_path, device):
    res = cli("run", "--device", device)
    _refused(res, tmp_path, f"train.device={device!r}", "devices present: cpu")


def test_a_sweep_point_that_is_invalid_stops_the_sweep_before_it_runs(cli, tmp_path):
    (tmp_path / "s.yaml").write_text("name: s\ndata: {name: moons, n_samples: 100}\n"
                                     "optimizer: {name: sgd, lr: [0.1, -1.0]}\ntrain: {epochs: 1}\n")
    res = cli("sweep", "s.yaml")
    _refused(res, tmp_path, "sweep point 2 of 2", "optimizer.lr=-1.0")


def test_list_shows_arguments_and_defaults(cli):
    res = cli("list", "optimizers")
    assert res.returncode == 0
    sgd = next(line for line in res.stdout.splitlines() if line.strip().startswith("sgd "))
    assert "lr=0.001" in sgd and "momentum=0" in sgd and "params" not in sgd
    res = cli("list", "adam")
    assert res.returncode == 0 and res.stdout.startswith("adam (optimizers): lr=0.001, betas=(0.9, 0.999)")
    res = cli("list", "moons")
    assert "n_samples=1000" in res.stdout and "noise=0.1" in res.stdout and "seed" not in res.stdout
    res = cli("list", "adamm")
    assert res.returncode == 2 and "'adamm'" in res.stderr and len(res.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("field", ["data.classes=100000000", "data.n_features=1000000000000"])
def test_a_huge_class_or_feature_count_is_refused_at_once(cli, field):
    name = "spirals" if "classes" in field else "blobs"
    res = cli("run", "--dataset", name, "--set", field, "-q", timeout=60)
    assert res.returncode == 2, res.stderr
    assert field.split("=")[0] in res.stderr and "Traceback" not in res.stderr
