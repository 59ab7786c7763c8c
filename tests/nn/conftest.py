import pytest
import torch


@pytest.fixture(autouse=True)
def one_thread():
    """These tests use small tensors: one intra-op thread is as fast and does not fight other
    processes for the cores (multi-threaded BLAS on a busy machine is many times slower)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
