"""A smoke test of the sweep benchmark (four models, two epochs)."""
import re

import torch


def test_sweep_benchmark_quick(load_benchmark, capsys):
    threads = torch.get_num_threads()
    assert load_benchmark("bench_sweep").main(["--quick"]) == 0
    assert torch.get_num_threads() == threads  # the benchmark gives the thread setting back
    out = capsys.readouterr().out
    for name in ("plain PyTorch loop, one after another", "trainlab fit, one after another",
                 "trainlab batched (fused)"):
        assert name in out
    assert re.search(r"speed-up batched vs plain loop: [0-9.]+x wall, [0-9.]+x CPU \(goal >= 10x\)", out)
    diff = float(re.search(r"largest \|val acc batched - val acc fit\| over the 4 runs: ([0-9.]+)", out).group(1))
    assert diff <= 0.01  # the batched members are the solo runs
    ratios = re.findall(r"^RATIO (\S+) [0-9.]+ (\S+) (\S+)$", out, re.M)
    assert ratios == [("sweep.moons32_batched_vs_plain", ">=", "10"), ("sweep.moons32_fit_vs_plain", "<=", "1.05"),
                      ("sweep.moons32_fit_loop_only_vs_plain", "<=", "1.05")]
    assert "device: cpu" in out and "peak memory" in out
