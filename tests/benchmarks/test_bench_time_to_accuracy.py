"""Smoke test of the time-to-accuracy benchmark: every contestant runs, the numbers are recorded."""
import importlib.util
import json
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_time_to_accuracy.py"


def _load():
    spec = importlib.util.spec_from_file_location("bench_time_to_accuracy", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_quick_mode_runs_every_contestant_and_writes_ratios(tmp_path, capsys):
    pytest.importorskip("sklearn")
    bench = _load()
    out = tmp_path / "bench.json"
    assert bench.main(["--quick", "--threads", "1", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "MLP 784-256-256-10" in printed and "CNN to" in printed and "ratio trainlab /" in printed
    data = json.loads(out.read_text())
    assert data["quick"] is True and data["threads"] == 1
    mlp, cnn = data["races"]["mlp"]["races"], data["races"]["cnn"]["races"]
    assert [r["contestant"].split(" (")[0] for r in mlp] == [
        "trainlab fit", "PyTorch DataLoader loop", "scikit-learn MLPClassifier"]
    assert [r["contestant"].split(" (")[0] for r in cnn] == ["trainlab fit", "classic PyTorch MNIST example"]
    for race in mlp + cnn:
        assert 1 <= race["epochs"] <= 2 and len(race["accuracies"]) == race["epochs"]
        assert all(0.0 <= a <= 1.0 for a in race["accuracies"])
        assert race["times"] == sorted(race["times"])
        if race["seconds"] is not None:  # reached: the time is that of the epoch that reached it
            assert race["accuracies"][-1] >= race["target"] and race["seconds"] == race["times"][-1]
    # the MLP contestants all clear the smoke test's low bar, so the ratios exist
    assert all(r["seconds"] is not None for r in mlp)
    assert len(data["races"]["mlp"]["ratios"]) == 2


def test_the_classic_example_net_is_the_one_of_pytorch_examples():
    bench = _load()
    net = bench.ClassicNet()
    assert sum(p.numel() for p in net.parameters()) == 1_199_882  # conv 32/64 3x3, fc 9216-128-10
