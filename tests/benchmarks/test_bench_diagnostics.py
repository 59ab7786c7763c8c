"""A smoke test of the diagnostics benchmark (one round on little data)."""
import importlib.util
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


def test_diagnostics_benchmark_quick(capsys):
    spec = importlib.util.spec_from_file_location("bench_diagnostics_under_test", BENCH / "bench_diagnostics.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out = mod.main(["--quick"])
    assert out["plain_s"] > 0 and out["recorded_s"] > 0 and out["spectra_s"] > 0
    assert "goal <= 10%" in capsys.readouterr().out
