"""A smoke test of the search benchmark (four trials, two epochs)."""
import re

import pytest
import torch

pytest.importorskip("optuna")


def test_search_benchmark_quick(load_benchmark, capsys):
    threads = torch.get_num_threads()
    assert load_benchmark("bench_search").main(["--quick"]) == 0  # 0: both searches found the same best value
    assert torch.get_num_threads() == threads
    out = capsys.readouterr().out
    assert "optuna by hand (study.optimize)" in out and "trainlab search (run_sweep)" in out
    assert re.search(r"ratio trainlab / by hand: [0-9.]+x; same best value: True", out)
