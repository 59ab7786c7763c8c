"""A smoke test of the recurrent benchmark (a few rounds; the numbers are not checked)."""

import torch


def test_recurrent_benchmark_quick(load_benchmark, capsys):
    threads = torch.get_num_threads()
    try:
        out = load_benchmark("bench_recurrent").main(["--quick", "--threads", "1"])
    finally:
        torch.set_num_threads(threads)
    rows = out["rows"]
    assert {"Elman RNN", "LSTM", "GRU", "LSTM bidirectional"} <= set(rows)
    assert all(r["ours_ms"] > 0 and r["torch_ms"] > 0 for r in rows.values())
    assert "trainlab ms" in capsys.readouterr().out
