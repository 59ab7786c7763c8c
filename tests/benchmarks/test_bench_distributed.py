"""A smoke test of the distributed benchmark (a small model, N = 1 and N = 2 on localhost)."""
import re

import pytest


@pytest.mark.slow  # two launches of the elastic launcher: process start-up dominates (~15 s)
def test_distributed_benchmark_quick(load_benchmark, capsys):
    assert load_benchmark("bench_distributed").main(["--quick"]) == 0
    out = capsys.readouterr().out
    losses = [float(x) for x in re.findall(r"final loss ([0-9.]+)", out)]
    assert len(losses) == 2 and abs(losses[0] - losses[1]) < 1e-4  # N = 2 trains the same model as N = 1
    assert re.search(r"speed-up N=2 vs N=1: [0-9.]+x", out)
