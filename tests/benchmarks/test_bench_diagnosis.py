"""A smoke test of the diagnosis-suite benchmark (one seed of two scenarios)."""
import json


def test_diagnosis_benchmark_quick(load_benchmark, capsys, tmp_path):
    mod = load_benchmark("bench_diagnosis")
    out = mod.main(["--quick", "--scenario", "diverging-sgd-lr50", "--scenario", "healthy-moons",
                    "--json", str(tmp_path / "d.json")])
    assert out["passed"] and out["healthy_runs"] == 1 and out["false_alarms"] == 0
    assert {r["primary"] for r in out["rows"]} == {"diverging", "healthy"}
    assert "precision" in capsys.readouterr().out
    assert json.loads((tmp_path / "d.json").read_text())["rows"] == out["rows"]
