"""Ensembles: members by seed (and overrides), averaged probabilities, per-member and ensemble numbers."""
import json

import pytest
import torch
import yaml

from trainlab.experiments.config import ConfigError, parse_config
from trainlab.experiments.ensemble import member_configs, predict_proba, run_ensemble, score
from trainlab.losses import Loss

CFG = {"name": "ens", "seed": 4,
       "data": {"name": "moons", "n_samples": 300, "noise": 0.3},
       "model": {"kind": "mlp", "hidden": [16]},
       "optimizer": {"name": "adam", "lr": 0.02},
       "train": {"epochs": 3, "batch_size": 32},
       "diagnostics": None,
       "ensemble": {"members": 3, "overrides": [{}, {}, {"model.hidden": [8, 8]}]}}


def test_member_configs_and_validation():
    members = member_configs(parse_config(CFG))
    assert [m.seed for m in members] == [4, 5, 6]
    assert [m.model.kwargs["hidden"] for m in members] == [[16], [16], [8, 8]]
    assert all(m.ensemble is None for m in members) and members[2].name == "ens-member3"
    seeded = parse_config({**CFG, "ensemble": {"members": 2, "seeds": [10, 20]}})
    assert [m.seed for m in member_configs(seeded)] == [10, 20]
    for bad, where in (({"members": 2, "seeds": [1]}, "ensemble.seeds"),
                       ({"members": 2, "overrides": [{"data.noise": 0.1}]}, "ensemble.overrides.0.data.noise"),
                       ({"members": 2, "overrides": [{"model.hiden": 3}]}, "ensemble.overrides.0"),
                       ({"members": 1}, "ensemble.members")):
        with pytest.raises(ConfigError, match=where.replace(".", r"\.")):
            parse_config({**CFG, "ensemble": bad})


def test_ensemble_averages_member_probabilities(tmp_path):
    res = run_ensemble(CFG, run_dir=tmp_path, verbose=False)
    assert len(res.members) == 3
    # members really differ
    w = [m.model.blocks[0].linear.weight for m in res.members[:2]]
    assert not torch.equal(w[0], w[1])
    loss = Loss("cross_entropy")
    from trainlab.experiments.runner import build_data
    torch.manual_seed(4)
    data = build_data(parse_config(CFG))
    probs = [predict_proba(m.model, data.val.X, loss) for m in res.members]
    mean = torch.stack(probs).mean(0)
    assert torch.allclose(mean.sum(1), torch.ones(len(mean), dtype=mean.dtype))
    acc = (mean.argmax(1) == data.val.y).double().mean().item()
    assert res.ensemble["val_accuracy"] == pytest.approx(acc)
    nll = -mean[torch.arange(len(mean)), data.val.y].log().mean().item()
    assert res.ensemble["val_loss"] == pytest.approx(nll)
    for i, m in enumerate(res.members):  # each member's row is what its own run measured
        assert res.table[f"member {i + 1}"]["val_accuracy"] == pytest.approx(m.final["val_accuracy"])
        assert res.table[f"member {i + 1}"]["val_loss"] == pytest.approx(m.final["val_loss"], rel=1e-5)
    # averaging probabilities never does worse in loss than the average member (log is concave)
    member_loss = sum(res.table[f"member {i + 1}"]["val_loss"] for i in range(3)) / 3
    assert res.ensemble["val_loss"] <= member_loss + 1e-12
    saved = json.loads((tmp_path / "ensemble.json").read_text())
    assert saved["seeds"] == [4, 5, 6] and saved["table"]["ensemble"]["val_accuracy"] == res.ensemble["val_accuracy"]
    assert (tmp_path / "member-3" / "report.html").exists() and "Members and ensemble" in (tmp_path / "report.html").read_text()


def test_score_by_hand_and_regression():
    p = torch.tensor([[0.9, 0.1], [0.4, 0.6], [0.3, 0.7]], dtype=torch.float64)
    y = torch.tensor([0, 0, 1])
    s = score(p, y, Loss("cross_entropy"))
    assert s["accuracy"] == pytest.approx(2 / 3)
    assert s["loss"] == pytest.approx(-(torch.log(torch.tensor([0.9, 0.4, 0.7], dtype=torch.float64))).mean().item())
    assert score(torch.tensor([[1.0], [3.0]]), torch.tensor([2.0, 2.0]), Loss("mse")) == {"loss": 1.0}


def test_cli_run_honours_the_ensemble_section(tmp_path, capsys):
    from trainlab.cli import main

    path = tmp_path / "ens.yaml"
    path.write_text(yaml.safe_dump({**CFG, "ensemble": {"members": 2}}))
    assert main(["run", str(path), "--out", str(tmp_path / "out"), "--epochs", "1", "-q"]) == 0
    table = json.loads((tmp_path / "out" / "ensemble.json").read_text())["table"]
    assert set(table) == {"member 1", "member 2", "ensemble"}
