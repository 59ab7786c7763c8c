"""Executors other than the local one: where the runs of a sweep may be trained.

Every executor implements :class:`~trainlab.experiments.executor.Executor` (``submit``,
``results``, ``shutdown``) over plain data (:class:`~trainlab.experiments.executor.RunSpec` in,
:class:`~trainlab.experiments.executor.RunOutcome` out), so the sweep runner does not change:

- :class:`~trainlab.experiments.executor.LocalExecutor`: worker processes on this machine (the default);
- :class:`~trainlab.experiments.executors.ray.RayExecutor`: a Ray cluster (``pip install 'trainlab[ray]'``).

Nothing here imports Ray until a :class:`RayExecutor` is created.
"""
from __future__ import annotations

from trainlab.experiments.executor import Executor, LocalExecutor

EXECUTORS = ("local", "ray")

__all__ = ["EXECUTORS", "Executor", "LocalExecutor", "RayExecutor", "make_executor"]


def __getattr__(name: str):
    if name == "RayExecutor":  # lazily: importing this package must not need Ray
        from trainlab.experiments.executors.ray import RayExecutor
        return RayExecutor
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def make_executor(name: str, *, address: str | None = None, workers: int | None = None, batched: bool = True,
                  threads: int | None = None, gpus: float | None = None, keep_workers: bool = False) -> Executor:
    """The executor a sweep's ``executor`` setting (or ``--executor``) names.

    ``local``: :class:`LocalExecutor` with ``workers`` processes and ``threads`` torch threads each.
    ``ray``: :class:`RayExecutor` on the cluster at ``address`` (``None``: a new local Ray instance
    with ``workers`` CPUs, default all cores); each task asks Ray for ``threads`` CPUs (default 1)
    and ``gpus`` GPUs (default: 1 when its config names a cuda device, else 0). ``keep_workers``
    keeps the local worker processes between rounds (an optuna search submits in rounds; Ray keeps
    its workers anyway).
    """
    if name == "local":
        if address is not None or gpus is not None:
            raise ValueError("address and gpus apply to the ray executor; drop them or choose executor ray")
        return LocalExecutor(workers, batched=batched, threads=threads, keep_workers=keep_workers)
    if name == "ray":
        from trainlab.experiments.executors.ray import RayExecutor
        return RayExecutor(address, batched=batched, cpus=threads or 1, gpus=gpus, num_cpus=workers or None)
    raise ValueError(f"unknown executor {name!r}; choose one of {', '.join(EXECUTORS)}")
