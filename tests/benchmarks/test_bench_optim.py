"""A smoke test of the optimizer benchmark (--quick: a few steps of every contestant)."""


def test_optimizer_benchmark_quick(load_benchmark, capsys, tmp_path):
    out = load_benchmark("bench_optim").main(["--quick", "--threads", "1", "--json", str(tmp_path / "r.json")])
    assert out["tensors"] == 100 and out["device"] == "cpu"
    table = out["step"][1]["100 tensors"]
    assert table["tensors"] == 100 and table["copy_GBps"] > 0
    for kind in ("adam", "adamw", "sgd-momentum", "adagrad", "rmsprop"):
        entry = table["kinds"][kind]
        rows = entry["rows"]
        assert {"trainlab", "trainlab per-tensor foreach", "trainlab (readable rule)",
                "torch foreach=False", "torch foreach=True"} <= set(rows)
        assert rows["torch foreach=True"]["ratio_to_torch_foreach"] == 1.0
        assert all(r["us_per_step"] > 0 and r["x_memory_floor"] > 0 for r in rows.values())
        assert entry["bytes_per_step"] > 0 and "trainlab / torch foreach=True" in entry["goals"]
    epoch = out["epoch"]
    assert epoch["ratio"] > 0 and len(epoch["rows"]) == 2
    assert any(r["optimizer"] == "trainlab.optim.Adam" for r in epoch["rows"].values())
    text = capsys.readouterr().out
    assert "× torch foreach" in text and "time ratio trainlab / DataLoader loop" in text
    assert "device cpu" in text and "at memory speed" in text and "(goal ≤ 1.0)" in text
    assert (tmp_path / "r.json").exists()
