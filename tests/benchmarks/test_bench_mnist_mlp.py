"""A smoke test of the foundation benchmark (a few batches of each contestant)."""

import pytest
import torch


def test_foundation_benchmark_quick(load_benchmark, capsys, tmp_path):
    threads = torch.get_num_threads()
    out = load_benchmark("bench_mnist_mlp").main(["--quick", "--breakdown", "--json", str(tmp_path / "r.json")])
    names = [r["name"] for r in out["rows"]]
    assert names[:3] == ["trainlab fit", "PyTorch DataLoader loop", "scikit-learn MLPClassifier"]
    assert "fused Adam" in names[3] and out["rows"][3]["optimizer"] == "torch.optim.Adam(fused=True)"
    assert names[4] == "PyTorch best loop"
    for r in out["rows"]:
        assert r["s_per_epoch"] > 0 and 0.0 <= r["accuracy"] <= 1.0
    assert out["rows"][0]["ratio"] == pytest.approx(1.0)
    assert out["rows"][0]["optimizer"] in ("trainlab.optim.Adam", "torch.optim.Adam")
    text = capsys.readouterr().out
    assert "s/epoch" in text and "time ratio" in text and "optimizer: trainlab used" in text
    assert "RATIO mnist_mlp.epoch_vs_best_loop" in text
    assert (tmp_path / "r.json").exists()
    assert "optimizer step: torch.optim.Adam(fused=True)" in out["breakdown"]
    assert all(v["wall_ms"] > 0 for v in out["breakdown"].values())
    assert torch.get_num_threads() == threads  # quick mode ran on one thread and put the count back

