"""One run on many processes: the process group, each rank's shard of a batch, and the reductions.

Data-parallel training (Goyal et al. 2017, "Accurate, large minibatch SGD"; PyTorch's
``DistributedDataParallel``): W processes ("ranks") hold the same model and the whole training
set; every step, the global batch of B samples that a single process would take from the
seeded epoch permutation is cut into W contiguous shards, rank r computes the loss of its
n_r samples, and the gradients are all-reduced. The per-rank loss is scaled so that the
all-reduced gradient *is* the single-process gradient of the mean loss over the global batch:

    DDP averages:   g = (1/W) Σ_r ∇ L_r,   with L_r = (n_r · W / B) · mean_{i ∈ shard r} ℓ_i
                      = Σ_r ∇ (Σ_{i ∈ shard r} ℓ_i) / B  =  ∇ mean_{i ∈ batch} ℓ_i

which holds for every batch, also a last batch smaller than B or one with fewer samples than
ranks (a rank with an empty shard contributes a zero gradient). Reported metrics are sums over
ranks (loss × count, correct predictions, counts), so the epoch loss and accuracy are those of
the whole epoch, the same numbers on every rank; callbacks (early stopping, schedules on a
plateau) therefore take the same decisions everywhere.

The process group comes from the environment ``torchrun`` (and ``trainlab run --nproc N``) set:
``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``. Backend: NCCL when
the ranks train on CUDA devices (rank ↦ ``cuda:LOCAL_RANK``), gloo on the CPU. A group the
caller already initialized (``torch.distributed.init_process_group`` in its own script) is used
as it is.

Randomness: the data order is drawn from the same seeded generator on every rank (the shards
are cut from one permutation). Torch's global RNG (dropout masks, noise) is seeded with the
run's seed on rank 0, as a single process is, and afresh on rank r > 0 at every epoch start
from (seed, rank, epoch), so ranks draw different masks and a resumed run draws the masks of
the uninterrupted one on every rank, with rank 0's state alone in the checkpoint.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from trainlab.data.batches import shard_bounds

__all__ = ["Group", "current", "init_from_env", "is_main_process", "shard_bounds", "launched", "destroy",
           "rank_device", "wrap"]


@dataclass(frozen=True)
class Group:
    """The ranks of the running process group, as this process sees them."""

    rank: int
    world_size: int
    local_rank: int
    backend: str

    @property
    def is_main(self) -> bool:
        """Rank 0 alone writes the run folder, checkpoints and the store row, and prints."""
        return self.rank == 0

    # -- the shard of a batch ------------------------------------------------------------------
    def bounds(self, n: int) -> tuple[int, int]:
        """``[lo, hi)`` of this rank's contiguous shard of a batch of ``n`` (see :func:`shard_bounds`)."""
        return shard_bounds(n, self.rank, self.world_size)

    # -- reductions ----------------------------------------------------------------------------
    def sum(self, values, device: torch.device | None = None) -> Tensor:
        """The element-wise sum over ranks of ``values`` (numbers or a tensor), in float64.

        Float64, so sums of float32 losses times counts lose nothing in the reduction itself.
        """
        t = torch.as_tensor(values, dtype=torch.float64)
        if self.backend == "nccl":
            t = t.to(device if device is not None else torch.device("cuda", torch.cuda.current_device()))
        import torch.distributed as dist
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return t.cpu()

    def broadcast(self, obj):
        """``obj`` of rank 0, on every rank (a small picklable value: a folder path, a flag)."""
        import torch.distributed as dist
        box = [obj if self.rank == 0 else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def barrier(self) -> None:
        import torch.distributed as dist
        dist.barrier()

    def epoch_seed(self, seed: int | None, epoch: int) -> None:
        """Seed torch's global RNG on ranks > 0 for ``epoch`` (rank 0 keeps the single-process stream).

        The seed mixes (seed, rank, epoch) through a SplitMix64-style multiply, so no two
        (rank, epoch) pairs of a run share a stream and a resumed epoch draws what it drew before.
        """
        if self.rank == 0:
            return
        base = 0 if seed is None else int(seed)
        mixed = (base * 0x9E3779B97F4A7C15 + self.rank * 0xBF58476D1CE4E5B9 + epoch * 0x94D049BB133111EB)
        torch.manual_seed(mixed % (2**63))


def launched() -> bool:
    """Whether this process was started by ``torchrun`` (or ``trainlab run --nproc``) with more than one rank."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1")) > 1 and "RANK" in os.environ
    except ValueError:
        return False


_OWNED = False  # whether init_from_env created the group (then destroy() ends it)


def init_from_env(device: str | torch.device | None = None) -> Group | None:
    """Join the process group ``torchrun`` describes in the environment; ``None`` for one process.

    An initialized group is used as it is. Otherwise, when ``WORLD_SIZE`` > 1, the group is
    initialized with NCCL if the run trains on CUDA (``device`` None or ``"cuda"`` and a GPU
    present: this rank then uses ``cuda:LOCAL_RANK``) and gloo otherwise.
    """
    global _OWNED
    if not launched():
        return current()
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return current()
    if not dist.is_available():
        raise RuntimeError("this PyTorch build has no torch.distributed; it cannot train on many processes")
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = _wants_cuda(device)
    if cuda:
        if local_rank >= torch.cuda.device_count():
            raise RuntimeError(f"rank {os.environ.get('RANK')} would train on cuda:{local_rank}, but this machine has "
                               f"{torch.cuda.device_count()} GPU(s): start at most one process per GPU, or train on "
                               "the CPU (train.device: cpu)")
        torch.cuda.set_device(local_rank)
    dist.init_process_group(backend="nccl" if cuda else "gloo",
                            device_id=torch.device("cuda", local_rank) if cuda else None)
    _OWNED = True
    return current()


def _wants_cuda(device) -> bool:
    if device is None:
        return torch.cuda.is_available()
    return torch.device(device).type == "cuda" and torch.cuda.is_available()


def destroy() -> None:
    """End the process group if :func:`init_from_env` created it (a caller's own group stays)."""
    global _OWNED
    import torch.distributed as dist

    if _OWNED and dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
    _OWNED = False


def current() -> Group | None:
    """The running process group, or ``None`` when there is none or it has a single rank."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return None
    world = dist.get_world_size()
    if world < 2:
        return None
    return Group(rank=dist.get_rank(), world_size=world, local_rank=int(os.environ.get("LOCAL_RANK", "0")),
                 backend=str(dist.get_backend()))


def is_main_process() -> bool:
    """True on rank 0 and in a single process: the one that writes files and prints."""
    group = current()
    return group is None or group.is_main


def rank_device(group: Group, device: torch.device) -> torch.device:
    """The device of this rank: ``cuda:LOCAL_RANK`` for a CUDA run without an index, else ``device``."""
    if device.type == "cuda" and device.index is None:
        return torch.device("cuda", group.local_rank)
    return device


def wrap(model: nn.Module, group: Group, device: torch.device) -> nn.Module:
    """``model`` in :class:`~torch.nn.parallel.DistributedDataParallel` (an already wrapped one as is).

    DDP broadcasts rank 0's parameters and buffers when it is built, so every rank starts from
    the same weights, and averages the gradients in buckets during the backward pass (sums of
    two values, so the average is the same on every rank). Parameters that take no part in a
    forward pass are allowed (``find_unused_parameters`` would cost a graph walk per step, so
    only models that need it should set it themselves).
    """
    from torch.nn.parallel import DistributedDataParallel as DDP

    if isinstance(model, DDP):
        return model
    ids = [device.index if device.index is not None else group.local_rank] if device.type == "cuda" else None
    return DDP(model, device_ids=ids)
