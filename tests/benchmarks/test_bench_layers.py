"""A smoke test of the layer benchmark (a few rounds; the numbers are not checked)."""

import torch


def test_layers_benchmark_quick(load_benchmark, capsys):
    threads = torch.get_num_threads()
    try:
        out = load_benchmark("bench_layers").main(["--quick", "--threads", "1"])
    finally:
        torch.set_num_threads(threads)
    rows = out["rows"]
    assert {"BatchNorm1d", "LayerNorm", "Dropout(0.5)", "ReLU", "GELU", "Softmax", "MLP step relu"} <= set(rows)
    assert all(r["ours_us"] > 0 and r["torch_us"] > 0 and r["ratio"] > 0 for r in rows.values())
    assert out["fast"] is True  # the default: the fast paths are timed
    printed = capsys.readouterr().out
    assert "goal <= 1.3x" in printed and "training step" in printed
