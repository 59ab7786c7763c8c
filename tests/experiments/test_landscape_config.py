"""diagnostics.landscape and diagnostics.curvature from a config: validated, computed, written, reported."""
import json

import pytest
import torch

from trainlab.experiments.config import ConfigError, parse_config
from trainlab.experiments.runner import run_experiment

BASE = {"name": "landscape", "seed": 0, "data": {"name": "moons", "n_samples": 200},
        "model": {"kind": "mlp", "hidden": [8], "activation": "tanh"},
        "optimizer": {"name": "sgd", "lr": 0.1}, "train": {"epochs": 2, "batch_size": 32}}


def test_landscape_section_is_validated_with_the_field_path():
    cfg = parse_config({**BASE, "diagnostics": {"landscape": {"slice": True}}})
    assert cfg.diagnostics.landscape.slice.steps == 21 and cfg.diagnostics.landscape.sharpness
    assert parse_config({**BASE, "diagnostics": {"landscape": {"slice": False}}}).diagnostics.landscape.slice is None
    with pytest.raises(ConfigError, match=r"diagnostics\.landscape\.slice\.steps"):
        parse_config({**BASE, "diagnostics": {"landscape": {"slice": {"steps": 1}}}})
    with pytest.raises(ConfigError, match=r"diagnostics\.landscape\.slice\.span"):
        parse_config({**BASE, "diagnostics": {"landscape": {"slice": {"span": 0}}}})
    with pytest.raises(ConfigError, match=r"diagnostics\.landscape"):
        parse_config({**BASE, "diagnostics": {"landscape": {"lines": True}}})


def test_a_run_writes_the_landscape_and_the_curvature_records(tmp_path):
    cfg = {**BASE, "diagnostics": {"curvature": True, "every": 1, "spectra": False,
                                   "landscape": {"slice": {"steps": 5, "span": 0.5}, "iters": 10}}}
    result = run_experiment(cfg, run_dir=tmp_path / "run", verbose=False)
    land = json.loads((tmp_path / "run" / "landscape.json").read_text())
    assert land["line"]["loss_end"] == pytest.approx(result.final["train_loss"], rel=0.2)
    assert land["line"]["loss_start"] > land["line"]["loss_end"]        # training lowered the loss
    assert len(land["slice"]["losses"]) == 5 and land["sharpness"] > 0
    assert (tmp_path / "run" / "landscape_line.png").exists() and (tmp_path / "run" / "landscape_slice.png").exists()
    assert "Loss landscape" in (tmp_path / "run" / "report.html").read_text()
    assert (tmp_path / "run" / "curvature.png").exists()              # the monitor is drawn in the report
    records = json.loads((tmp_path / "run" / "metrics.json").read_text())["diagnostics"]["records"]
    assert all(set(r["curvature"]) == {"gTg", "gTHg", "curvature", "critical_lr"} for r in records)


def test_recording_curvature_does_not_change_the_run():
    with_c = run_experiment({**BASE, "diagnostics": {"curvature": True}}, write=False, verbose=False)
    without = run_experiment(BASE, write=False, verbose=False)
    for a, b in zip(with_c.model.parameters(), without.model.parameters()):
        assert torch.equal(a, b)


def test_the_cli_refuses_a_bad_slice_in_one_line_before_training(cli):
    res = cli("run", "--epochs", "1", "--set", "diagnostics.landscape.slice.steps=1", "--no-store")
    assert res.returncode != 0
    lines = [ln for ln in res.stderr.strip().splitlines() if ln]
    assert len(lines) == 1 and "diagnostics.landscape.slice.steps" in lines[0] and "epoch 1" not in res.stdout
