"""Executors: where the runs of a sweep are trained.

The sweep runner talks to an executor through three calls and plain data only::

    with executor:
        executor.submit([RunSpec(run_id, config_dict, run_dir), ...])
        for outcome in executor.results():     # RunOutcome, in completion order
            ...record it...

:class:`RunSpec` and :class:`RunOutcome` hold JSON-able data (a resolved config in, a history and
final numbers out), so an executor may send them anywhere. The work itself is
:func:`execute_task`, a module-level function of a :class:`Task` that imports what it needs: the
function a remote worker runs.

:class:`LocalExecutor` (the default) plans the runs into tasks with :func:`plan_tasks` — runs that
share an architecture and data become one *batched* task (:mod:`trainlab.experiments.batched`),
every other run a task of its own — and runs the tasks in worker processes (``spawn``, at most one
per CPU core, each with its share of torch's threads), or in this process when there is a single
task or ``workers=0``.

A cluster executor (Ray, Dask, a job queue) subclasses :class:`Executor` and implements the three
calls; the sweep runner does not change. :class:`~trainlab.experiments.executors.ray.RayExecutor`
runs every planned task as a Ray task (``trainlab sweep FILE --executor ray``).
"""
from __future__ import annotations

import os
import signal
import time
import traceback
from abc import ABC, abstractmethod
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

from trainlab.experiments.store import diagnostics_of


@dataclass
class RunSpec:
    """One run to train: its id, its resolved config (plain data), and its run folder (or ``None``).

    ``store``: a results store the process training the run can reach; it marks the run
    ``running`` there with its own pid when it starts and beats once per epoch, so a killed
    worker's run is found stale later (``Store.mark_stale``). ``None`` for a worker that cannot
    reach the store (a remote machine): the sweep then only records the outcome.

    ``pruning``: for a trial of an optuna search, where the process training it reports the
    sweep metric every epoch (plain data, see :func:`trainlab.experiments.search.pruning_callback`);
    such a run is trained alone, never in a batched model, and may end ``pruned``.
    """

    run_id: str
    config: dict
    run_dir: str | None = None
    store: str | None = None
    pruning: dict | None = None


@dataclass
class RunOutcome:
    """What came of a run: status ``finished``, ``failed`` or ``pruned`` (an optuna trial stopped by its
    pruner; ``info["pruned_epoch"]`` says after which epoch), history, final numbers, time, error."""

    run_id: str
    status: str
    history: list[dict] = field(default_factory=list)
    final: dict = field(default_factory=dict)
    wall_time: float = 0.0
    error: str | None = None
    info: dict = field(default_factory=dict)
    diagnostics: dict = field(default_factory=dict)
    run_dir: str | None = None


@dataclass
class Task:
    """A unit of work for one worker: a single run, or several runs trained as one batched model."""

    specs: list[RunSpec]
    batched: bool = False

    def __len__(self) -> int:
        return len(self.specs)


def plan_tasks(specs: Sequence[RunSpec], *, batched: bool = True, max_group: int = 64) -> list[Task]:
    """Group runs that share an architecture and data (see :func:`batched.batch_key`) into tasks.

    Groups larger than ``max_group`` are cut into several tasks; tasks come largest first, so the
    long ones start early. With ``batched=False`` every run is a task of its own.
    """
    from trainlab.experiments.batched import batch_key
    from trainlab.experiments.config import parse_config

    if max_group < 1:
        raise ValueError(f"max_group must be >= 1, got {max_group}")
    groups: dict[object, list[RunSpec]] = {}  # in order of first appearance
    for i, spec in enumerate(specs):
        # a trial that may be pruned stops on its own: it cannot share a batched model
        key = batch_key(parse_config(spec.config)) if batched and spec.pruning is None else None
        groups.setdefault(key if key is not None else ("alone", i), []).append(spec)
    tasks: list[Task] = []
    for members in groups.values():
        for i in range(0, len(members), max_group):
            chunk = members[i:i + max_group]
            tasks.append(Task(chunk, batched=len(chunk) > 1))
    tasks.sort(key=len, reverse=True)  # stable: equal sizes keep their order
    return tasks


def _describe(err: BaseException) -> str:
    text = f"{type(err).__name__}: {err}"
    if not isinstance(err, (ValueError, FloatingPointError, TypeError)):  # unexpected: keep where it happened
        text += "\n" + "".join(traceback.format_exception(type(err), err, err.__traceback__)[-3:])
    return text


def execute_task(task: Task) -> list[RunOutcome]:
    """Train the runs of ``task`` and return their outcomes (a failed run is an outcome, not an error).

    Writes each run's folder when its spec has a ``run_dir``. Safe to call in any process.
    """
    store = _mark_running(task)
    try:
        return _execute(task, store)
    finally:
        if store is not None:
            store.close()


class _Beat:
    def __init__(self, store, run_id: str):
        self.store, self.run_id = store, run_id

    def beat(self) -> None:
        try:
            self.store.heartbeat(self.run_id)
        except Exception:  # a missed heartbeat must not stop a training
            pass


def _mark_running(task: Task):
    """Open the specs' store and mark the task's runs ``running`` under this process's pid."""
    path = next((s.store for s in task.specs if s.store), None)
    if path is None:
        return None
    import sqlite3

    from trainlab.experiments.store import Store
    try:
        store = Store(path)
        store.set_status([s.run_id for s in task.specs], "running")
        return store
    except (sqlite3.Error, OSError):  # the outcome is still recorded by the sweep
        return None


def _execute(task: Task, store) -> list[RunOutcome]:
    from trainlab.experiments.config import parse_config
    from trainlab.experiments.runner import _Heartbeat, run_experiment, write_run_folder

    out: list[RunOutcome] = []

    def finished(spec: RunSpec, result, info: dict, write: bool) -> RunOutcome:
        if write and spec.run_dir is not None:
            result.run_dir = Path(spec.run_dir)
            write_run_folder(result)
        return RunOutcome(spec.run_id, "finished", result.history.records(), dict(result.final),
                          float(result.wall_time), None, info, diagnostics_of(result), spec.run_dir)

    def alone(spec: RunSpec, extra: tuple = ()):  # run_experiment writes the run folder itself
        beats = (_Heartbeat(_Beat(store, spec.run_id)),) if store is not None else ()
        return run_experiment(spec.config, run_dir=spec.run_dir, write=spec.run_dir is not None, verbose=False,
                              callbacks=beats + extra)

    if task.batched and len(task.specs) > 1:
        from trainlab.experiments.batched import train_group

        cfgs = [parse_config(s.config) for s in task.specs]
        spec_of = {id(c): s for c, s in zip(cfgs, task.specs)}
        for spec, o in zip(task.specs, train_group(cfgs, solo=lambda cfg: alone(spec_of[id(cfg)]))):
            if o.error is not None:
                out.append(RunOutcome(spec.run_id, "failed", wall_time=float(o.info.get("wall_time", 0.0)),
                                      error=_describe(o.error), info=o.info))
            else:  # members trained alone (batched == 1) have their folder already
                out.append(finished(spec, o.result, o.info, write=o.info.get("batched", 1) > 1))
        return out

    for spec in task.specs:
        t0 = time.perf_counter()
        try:
            if spec.config.get("ensemble") is not None:  # as 'trainlab run' trains such a config
                from trainlab.experiments.ensemble import run_ensemble
                ens = run_ensemble(spec.config, run_dir=spec.run_dir, write=spec.run_dir is not None, verbose=False)
                # an ensemble has no single learning curve: its numbers are those of the averaged model
                out.append(RunOutcome(spec.run_id, "finished", [], dict(ens.ensemble), float(ens.wall_time), None,
                                      {"batched": 1, "ensemble": ens.table}, {}, spec.run_dir))
                continue
            if spec.pruning is not None:
                from trainlab.experiments.search import pruning_callback
                pruner = pruning_callback(spec.pruning)
                outcome = finished(spec, alone(spec, (pruner,) if pruner is not None else ()), {"batched": 1},
                                   write=False)
                if pruner is None:  # the study cannot be reached from here: the sweep reports the epochs
                    outcome.info["pruning"] = "the study's journal is not reachable from the worker"
                elif pruner.pruned_epoch:
                    outcome.status = "pruned"
                    outcome.info["pruned_epoch"] = pruner.pruned_epoch
                out.append(outcome)
                continue
            out.append(finished(spec, alone(spec), {"batched": 1}, write=False))
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as err:
            out.append(RunOutcome(spec.run_id, "failed", wall_time=time.perf_counter() - t0,
                                  error=_describe(err), info={"batched": 1}))
    return out


class Executor(ABC):
    """Trains submitted runs and hands back their outcomes; see the module docstring."""

    @abstractmethod
    def submit(self, specs: Sequence[RunSpec]) -> None:
        """Queue runs (nothing needs to start before :meth:`results` is iterated)."""

    @abstractmethod
    def results(self) -> Iterator[RunOutcome]:
        """Yield one :class:`RunOutcome` per submitted run, as runs finish, until all are done."""

    def shutdown(self, cancel: bool = False) -> None:
        """Release workers; with ``cancel`` stop runs that have not finished (after an interrupt)."""

    def __enter__(self) -> "Executor":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.shutdown(cancel=exc_type is not None)


def _init_worker(threads: int) -> None:
    # Ctrl-C goes to the whole process group; the parent decides what happens (it cancels and
    # terminates the workers), so a worker must not die half-way through writing a result
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    import torch

    from trainlab.experiments.batched import keep_freed_memory
    torch.set_num_threads(max(1, threads))
    keep_freed_memory()


class LocalExecutor(Executor):
    """Batched training for runs that share an architecture and data, worker processes for the rest.

    Args:
        workers: worker processes (at most one per task); ``0`` = train everything in this process
            (simplest to debug); ``None`` = one per CPU core, or this process when there is a single
            task (a worker would only add the start-up time of a new Python with torch).
        batched: group runs into batched models (:mod:`trainlab.experiments.batched`).
        max_group: most runs in one batched model.
        threads: torch threads per process training runs (default: ``cores // workers`` in each
            worker, torch's own setting in this process). Tiny networks gain nothing from more than
            one, and on a machine busy with other work, idle threads spin against them: pass 1 there.
        keep_workers: keep the worker processes between calls of :meth:`results` until
            :meth:`shutdown` (a search submits its trials in rounds; a fresh process per round would
            pay Python's and torch's start-up every time).
    """

    def __init__(self, workers: int | None = None, *, batched: bool = True, max_group: int = 64,
                 threads: int | None = None, keep_workers: bool = False):
        if workers is not None and workers < 0:
            raise ValueError(f"workers must be >= 0 (0: in this process), got {workers}")
        if threads is not None and threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        self.workers, self.batched, self.max_group, self.threads = workers, batched, max_group, threads
        self.keep_workers = keep_workers
        self._pool_size = 0
        self._specs: list[RunSpec] = []
        self._pool: ProcessPoolExecutor | None = None
        self._futures: list[Future] = []

    def submit(self, specs: Sequence[RunSpec]) -> None:
        self._specs.extend(specs)

    def plan(self) -> list[Task]:
        return plan_tasks(self._specs, batched=self.batched, max_group=self.max_group)

    def results(self) -> Iterator[RunOutcome]:
        tasks = self.plan()
        self._specs = []
        cores = os.cpu_count() or 1
        if self.workers is None:
            n = min(cores, len(tasks)) if len(tasks) > 1 else 0
        else:
            n = min(self.workers, len(tasks))
        if n == 0:
            import torch
            before = torch.get_num_threads()
            if self.threads is not None:
                torch.set_num_threads(self.threads)
            try:
                for task in tasks:
                    yield from execute_task(task)
            finally:
                torch.set_num_threads(before)
            return
        import multiprocessing as mp

        if self._pool is None or self._pool_size < n:
            self.shutdown()
            self._pool = ProcessPoolExecutor(max_workers=n, mp_context=mp.get_context("spawn"),
                                             initializer=_init_worker, initargs=(self.threads or max(1, cores // n),))
            self._pool_size = n
        self._futures = [self._pool.submit(execute_task, t) for t in tasks]
        pending = set(self._futures)
        broken = False
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for fut in done:
                err = fut.exception()
                if err is not None:  # the worker itself died (killed, out of memory)
                    broken = True
                    task = tasks[self._futures.index(fut)]
                    for spec in task.specs:
                        yield RunOutcome(spec.run_id, "failed", error=f"worker failed: {type(err).__name__}: {err}")
                else:
                    yield from fut.result()
        if not self.keep_workers or broken:  # a broken pool takes no more work: the next call starts afresh
            self.shutdown()

    def worker_pids(self) -> list[int]:
        """The pids of the worker processes now running (empty without a pool)."""
        pool = self._pool
        procs = getattr(pool, "_processes", None) or {} if pool is not None else {}
        return [p.pid for p in list(procs.values()) if p.pid is not None]

    def shutdown(self, cancel: bool = False) -> None:
        pool, self._pool, self._pool_size = self._pool, None, 0
        if pool is None:
            return
        if not cancel:
            pool.shutdown(wait=True)
            return
        # Python < 3.14 has no public way to stop running workers; these processes are ours. Take
        # them before shutdown(), which forgets them (it sets _processes to None)
        procs = list((getattr(pool, "_processes", None) or {}).values())
        for proc in procs:
            if proc.is_alive():
                proc.terminate()
        pool.shutdown(wait=False, cancel_futures=True)
        deadline = time.monotonic() + 5.0
        for proc in procs:
            proc.join(timeout=max(0.0, deadline - time.monotonic()))
            if proc.is_alive():  # ignored SIGTERM (stuck in native code): no more waiting
                proc.kill()
                proc.join(timeout=1.0)
