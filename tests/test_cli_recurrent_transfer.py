"""Issue 12 part 4 from the command line: recurrent models and sequence data, LSUV, reactivation, BN ε placement."""
import csv

import pytest
import torch
import yaml

from trainlab.experiments.config import ConfigError, parse_config
from trainlab.experiments.runner import build_training

SEQ = ("name: seq\nseed: 1\ndata: {name: copy, n_samples: 96, length: 3, delay: 4, symbols: 4}\n"
       "model: {kind: rnn, cell: gru, hidden: 8, pattern: seq2seq, bidirectional: true, layers: 2}\n"
       "optimizer: {name: adam, lr: 0.01}\ntrain: {epochs: 2, batch_size: 32}\n")


def test_cli_runs_a_recurrent_model_on_sequence_data_and_records_it(cli, tmp_path):
    (tmp_path / "seq.yaml").write_text(SEQ)
    res = cli("run", "seq.yaml", "--set", "model.cell=lstm", "--set", "model.forget_bias=1.0", "--out", "out", "-q")
    assert res.returncode == 0, res.stderr
    cfg = yaml.safe_load((tmp_path / "out" / "config.yaml").read_text())
    assert cfg["model"] == {"kind": "rnn", "cell": "lstm", "hidden": 8, "pattern": "seq2seq", "bidirectional": True,
                            "layers": 2, "forget_bias": 1.0}
    assert cfg["data"]["name"] == "copy"
    rows = list(csv.DictReader(open(tmp_path / "out" / "metrics.csv")))
    assert len(rows) == 2 and 0.0 <= float(rows[-1]["accuracy"]) <= 1.0  # per-step accuracy


def test_cli_lsuv_reactivation_and_eps_outside(cli, tmp_path):
    res = cli("run", "--set", "data.n_samples=200", "--set", "model.hidden=[16,16]",
              "--set", "model.norm=batch_eps_outside", "--set", "init.weight=lsuv", "--set", "init.tol=0.05",
              "--set", "callbacks.0.name=reactivate_dead_units", "--set", "callbacks.0.every=1",
              "--set", "train.epochs=2", "--set", "diagnostics=null", "--out", "out", "-q")
    assert res.returncode == 0, res.stderr
    cfg = yaml.safe_load((tmp_path / "out" / "config.yaml").read_text())
    assert cfg["init"]["weight"] == "lsuv" and cfg["callbacks"][0]["name"] == "reactivate_dead_units"
    rows = list(csv.DictReader(open(tmp_path / "out" / "metrics.csv")))
    assert "reactivated" in rows[0]


def test_lsuv_from_a_config_gives_unit_variance_on_the_training_batch():
    cfg = parse_config({"data": {"name": "moons", "n_samples": 400},
                        "model": {"kind": "mlp", "hidden": [32, 32], "activation": "tanh"},
                        "init": {"weight": "lsuv", "tol": 0.02, "max_iter": 20}})
    data, _, model, _ = build_training(cfg, torch.device("cpu"))
    seen = {}
    hooks = [m.register_forward_hook(lambda mod, a, out, n=n: seen.__setitem__(n, out.var().item()))
             for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)]
    with torch.no_grad():
        model.eval()
        model(data.train.X[:256])
    for h in hooks:
        h.remove()
    assert len(seen) == 3 and all(abs(v - 1.0) < 0.02 for v in seen.values()), seen


@pytest.mark.parametrize("override, needle", [
    ({"init": {"weight": "lsuv", "tol": 0}}, "init.tol=0"),
    ({"init": {"weight": "lsuv", "orthonormal": 1}}, "orthonormal"),
    ({"callbacks": [{"name": "reactivate_dead_units", "every": 0}]}, "callbacks.0.every=0"),
    ({"model": {"kind": "rnn", "cell": "lstm"}}, "model kind 'rnn' reads sequences"),
    ({"data": {"name": "adding", "length": 10}, "model": {"kind": "rnn", "pattern": "seq2seq"}}, "model.pattern"),
    ({"data": {"name": "noisy_sine"}, "model": {"kind": "rnn"}}, "use pattern seq2seq"),
    ({"data": {"name": "adding"}, "model": {"kind": "rnn", "layers": 0}}, "layers"),
    ({"data": {"name": "adding"}, "model": {"kind": "rnn", "cell": "transformer"}}, "model.cell='transformer'"),
    ({"model": {"kind": "mlp", "norm": "batch_eps_inside"}}, "batch_eps_outside"),
])
def test_bad_fields_are_refused_naming_the_field(override, needle):
    with pytest.raises(ConfigError, match=needle.replace("(", r"\(").replace("[", r"\[")):
        parse_config(override)
