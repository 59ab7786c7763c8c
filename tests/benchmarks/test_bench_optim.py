"""A smoke test of the optimizer benchmark (--quick: a few steps of every contestant)."""


def test_optimizer_benchmark_quick(load_benchmark, capsys, tmp_path):
    out = load_benchmark("bench_optim").main(["--quick", "--json", str(tmp_path / "r.json")])
    assert out["tensors"] == 100
    for kind in ("adam", "adamw", "sgd-momentum"):
        rows = out["step"][kind]
        assert set(rows) == {"trainlab", "trainlab (readable rule)", "torch foreach=False",
                             "torch foreach=True", "torch fused=True"}
        assert rows["torch foreach=True"]["ratio_to_torch_foreach"] == 1.0
        assert all(r["us_per_step"] > 0 for r in rows.values())
    epoch = out["epoch"]
    assert epoch["ratio"] > 0 and len(epoch["rows"]) == 2
    assert any(r["optimizer"] == "trainlab.optim.Adam" for r in epoch["rows"].values())
    text = capsys.readouterr().out
    assert "× torch foreach" in text and "time ratio trainlab / DataLoader loop" in text
    assert (tmp_path / "r.json").exists()
