"""benchmarks/run_all.py finds every bench_*.py and filters by name."""
import importlib.util
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


def _module(name):
    spec = importlib.util.spec_from_file_location(f"{name}_under_test", BENCH / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_run_all_lists_and_filters(capsys):
    run_all = _module("run_all")
    assert run_all.main(["--list"]) == 0
    listed = capsys.readouterr().out.split()
    assert {"bench_mnist_mlp.py", "bench_augment.py"} <= set(listed)
    assert all(name.startswith("bench_") for name in listed)
    assert run_all.main(["--only", "no-such-benchmark"]) == 1
