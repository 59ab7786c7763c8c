"""torch's global RNG, shared by every thread of a process: one lock, seeding, and draws that leave it put.

The global (CPU) generator is one per process. A run seeds it and then draws from it in an order
that fixes its weights, its dropout masks and its noise; a second thread that seeds it, draws
from it, or saves and restores it in the middle of that sequence changes what the first run
draws. The playground's race mode trains two runs in two threads of one process, so everything
that seeds the global RNG and then draws from it in sequence, or saves and later restores it,
holds :data:`GLOBAL_RNG_LOCK` while it does.
"""
from __future__ import annotations

import contextlib
import threading
from typing import Iterator

import torch

GLOBAL_RNG_LOCK = threading.RLock()


def manual_seed(seed: int) -> None:
    """``torch.manual_seed(seed)``, without its cost where no accelerator exists.

    ``torch.manual_seed`` also queues a seed for each accelerator backend that is not initialized
    yet (CUDA, XPU, MTIA), recording a stack trace for each: ~0.6 ms a call, more than a whole
    small training epoch. Where none of them is available, seeding the CPU generator is all it
    does to any generator; where one is, this is ``torch.manual_seed`` itself.
    """
    if torch.cuda.is_available() or _other_accelerator():
        torch.manual_seed(seed)
    else:
        torch.default_generator.manual_seed(seed)


def _other_accelerator() -> bool:
    for name in ("xpu", "mtia", "mps"):
        backend = getattr(torch, name, None)
        available = getattr(backend, "is_available", None)
        if available is not None and available():
            return True
    return False


@contextlib.contextmanager
def preserved_rng() -> Iterator[None]:
    """Draws inside leave the CPU generator where it was, as ``torch.random.fork_rng(devices=[])``.

    The lock is held throughout: restoring the saved state on exit would otherwise rewind the
    stream under another thread that seeded and drew from it in between (a run being built).
    """
    with GLOBAL_RNG_LOCK, torch.random.fork_rng(devices=[]):
        yield
