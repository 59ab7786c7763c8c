"""Benchmarks are scripts, not a package: the smoke tests load them by file path."""
import importlib.util
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture
def load_benchmark():
    """``load_benchmark("bench_optim")`` imports ``benchmarks/bench_optim.py`` as a fresh module."""
    def load(name: str):
        spec = importlib.util.spec_from_file_location(f"{name}_under_test", BENCH / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    return load
