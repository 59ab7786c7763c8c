"""A smoke test of the augmentation benchmark (two rounds on random images)."""

import torch


def test_augment_benchmark_quick(load_benchmark, capsys):
    threads = torch.get_num_threads()
    out = load_benchmark("bench_augment").main(["--quick"])
    assert torch.get_num_threads() == threads
    assert out["step_ms"] > 0
    assert {"rotation(10)", "elastic(34, 4)", "rotation+shift+zoom"} <= set(out["rows"])
    assert all(r["ms"] > 0 for r in out["rows"].values())
    assert "goal <= 20%" in capsys.readouterr().out
