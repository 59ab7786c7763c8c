"""A smoke test of the augmentation benchmark (two rounds on random images)."""
import importlib.util
from pathlib import Path

import torch

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


def _module(name):
    spec = importlib.util.spec_from_file_location(f"{name}_under_test", BENCH / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_augment_benchmark_quick(capsys):
    threads = torch.get_num_threads()
    out = _module("bench_augment").main(["--quick"])
    assert torch.get_num_threads() == threads
    assert out["step_ms"] > 0
    assert {"rotation(10)", "elastic(34, 4)", "rotation+shift+zoom"} <= set(out["rows"])
    assert all(r["ms"] > 0 for r in out["rows"].values())
    assert "goal <= 20%" in capsys.readouterr().out
