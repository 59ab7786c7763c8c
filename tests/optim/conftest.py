import sys
from pathlib import Path

import pytest
import torch

# the suite imports test modules with --import-mode=importlib: make optim_helpers importable
sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(autouse=True)
def _one_thread():
    # the tensors here are tiny: one thread is fastest and keeps results independent of the load
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def float64_default():
    """Run with float64 as torch's default dtype (torch keeps some optimizer scalars in it)."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)
