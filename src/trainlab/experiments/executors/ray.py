"""Sweeps on Ray: every planned task (one run, or a batched group of runs) is a Ray task.

The driver (the process running the sweep) plans the runs into tasks exactly as the local executor
does (:func:`~trainlab.experiments.executor.plan_tasks`), submits one Ray task per planned task
with its resource request, and records each outcome in the results store as it comes back::

    driver                                   Ray worker (any node)
    ------                                   ---------------------
    plan_tasks(specs) ──► task payload ─────► train_task(payload, threads)
      (run ids, resolved configs: plain data)    execute_task(...) in a temporary folder
    store.finish_run(...) ◄── outcomes ◄───── RunOutcome fields + run-folder files as bytes
    write run folder files (under the run folder only)

What travels is plain data: run ids and resolved configs one way; histories, final numbers, errors
and (with ``sweep.write_runs``) the run folder's files as bytes the other way. The task function is
:func:`train_task` of this module, which Ray's workers import by name: no closure of user code is
pickled, so every node needs the same trainlab installed (``pip install 'trainlab[ray]'``).
Workers never open the results store: the driver alone writes it, so no SQLite file is shared
across machines.

Faults, as Ray users expect them:

- a worker or node that dies while training is retried by Ray (``max_retries``, default 3) on
  whatever node is alive; the run is recorded once, when a try comes back;
- a run that fails by itself (a loss that diverges, a config a worker cannot build) comes back as
  a ``failed`` outcome and is not retried (``retry_exceptions=False``): it would fail again;
- Ctrl-C in the driver cancels every task Ray still holds (``ray.cancel``); the sweep marks their
  runs ``interrupted``, and running the same command again trains only the runs not yet recorded.

Reference: the Ray Core API (``ray.remote``, ``ray.wait``, ``ray.cancel``) and its fault-tolerance
guide, https://docs.ray.io/en/latest/ray-core/fault-tolerance.html.
"""
from __future__ import annotations

import logging
import os
import re
from dataclasses import asdict
from pathlib import Path, PurePath, PurePosixPath
from typing import Iterator, Sequence

from trainlab.experiments.executor import Executor, RunOutcome, RunSpec, Task, plan_tasks

# a local instance keeps its shared-memory object store small: a sweep moves configs and results
# (kilobytes), and the default (30% of RAM) would take memory the training needs
OBJECT_STORE_BYTES = 150 * 1024 ** 2
_ADDRESS = re.compile(r"^(ray://)?\[?[A-Za-z0-9_.:-]+?\]?:(\d{1,5})$")


def address_problem(address) -> str | None:
    """Why ``address`` is not a Ray address (``auto``, ``HOST:PORT`` or ``ray://HOST:PORT``), else ``None``."""
    if not isinstance(address, str) or not address.strip():
        return "must be 'auto' (the cluster this machine belongs to) or HOST:PORT of the cluster's head"
    if address == "auto":
        return None
    m = _ADDRESS.match(address)
    if m is None or not 0 < int(m.group(2)) < 65536:
        return ("is not a Ray address; give 'auto' or HOST:PORT of the head node (e.g. 10.0.0.5:6379, "
                "what 'ray start --head' printed), or ray://HOST:10001 for Ray Client")
    return None


def _probe(address: str, timeout: float = 10.0) -> None:
    """Fail at once when nothing listens at ``HOST:PORT`` (Ray itself retries for minutes)."""
    import socket

    if address == "auto":
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as err:
        raise ConnectionError(err.strerror or str(err)) from None


def _describe(err: BaseException) -> str:
    return f"{type(err).__name__}: {err}"


# ---------------------------------------------------------------------------------------------
# the worker side


def train_task(payload: dict, threads: int = 1) -> list[dict]:
    """Train one planned task on a Ray worker; return its outcomes as plain data.

    ``payload``: ``{"batched": bool, "specs": [{"run_id", "config", "run_dir"}, ...]}``.
    Returns one ``{"outcome": RunOutcome fields, "files": {relative path: bytes}}`` per run; the
    files are those of the run folder (``run_dir`` given), trained into a temporary folder here
    and written by the driver, so the worker needs no access to the driver's disk.
    """
    import tempfile

    import torch

    from trainlab.experiments.batched import keep_freed_memory
    from trainlab.experiments.executor import execute_task

    torch.set_num_threads(max(1, int(threads)))
    keep_freed_memory()
    # one line in the worker's log (Ray's session folder) per task: what trained where, also for a
    # task whose node died before it could return
    print(f"trainlab: training {' '.join(s['run_id'] for s in payload['specs'])}", flush=True)
    with tempfile.TemporaryDirectory(prefix="trainlab-") as tmp:
        specs, folders = [], {}
        for i, s in enumerate(payload["specs"]):
            local = None
            if s.get("run_dir") is not None:  # same folder name, so files naming it read the same
                local = str(Path(tmp) / str(i) / (PurePath(s["run_dir"]).name or "run"))
                folders[s["run_id"]] = (local, s["run_dir"])
            specs.append(RunSpec(s["run_id"], s["config"], local, store=None))
        outcomes = execute_task(Task(specs, batched=bool(payload.get("batched"))))
        node = _node_id()
        out = []
        for o in outcomes:
            files: dict[str, bytes] = {}
            if o.run_id in folders:
                local, remote = folders[o.run_id]
                files = _read_folder(Path(local))
                o.run_dir = remote
                if o.error:  # a diverged run's message names its folder: the driver's one
                    o.error = o.error.replace(local, remote)
            if node:
                o.info = {**o.info, "ray_node": node}
            out.append({"outcome": asdict(o), "files": files})
        return out


def _node_id() -> str | None:
    try:
        import ray
        return ray.get_runtime_context().get_node_id()
    except Exception:  # outside Ray (a test calling train_task directly)
        return None


def _read_folder(root: Path) -> dict[str, bytes]:
    if not root.is_dir():
        return {}
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# ---------------------------------------------------------------------------------------------
# the driver side


def write_files(run_dir: str | Path, files: dict[str, bytes]) -> None:
    """Write the files a worker returned into ``run_dir``, refusing any path that would leave it.

    A path must be relative, with no ``..`` part, and must land inside ``run_dir`` once symbolic
    links are followed: the bytes come from another machine, the folder is this one's.
    """
    from trainlab.train.checkpoint import atomic_write_bytes

    root = Path(run_dir)
    root.mkdir(parents=True, exist_ok=True)
    real_root = root.resolve()
    for rel, data in files.items():
        path = PurePosixPath(rel)
        if not rel or path.is_absolute() or PurePath(rel).drive or ".." in path.parts or "\\" in rel:
            raise ValueError(f"a worker returned the file {rel!r} for {root}: not a path inside the run folder")
        target = root.joinpath(*path.parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.parent.resolve().is_relative_to(real_root) or target.is_symlink():
            raise ValueError(f"a worker returned the file {rel!r} for {root}: it would be written outside the "
                             "run folder (a symbolic link there)")
        atomic_write_bytes(target, data)


class RayExecutor(Executor):
    """Train a sweep's planned tasks as Ray tasks on a Ray cluster (or a local Ray instance).

    Args:
        address: the cluster: ``"auto"`` (the one this machine runs, started with ``ray start``),
            ``"HOST:PORT"`` of its head node, ``"ray://HOST:10001"`` (Ray Client); ``None``: the
            cluster in ``$RAY_ADDRESS`` if set, else a new local Ray instance, stopped at the end.
            When Ray is already initialized in this process (``ray.init()`` in a notebook), that
            connection is used and left open.
        batched: group runs sharing an architecture and data into one batched task, as the local
            executor does (:func:`~trainlab.experiments.executor.plan_tasks`).
        max_group: most runs in one batched task.
        cpus: CPUs each task asks Ray for; the task trains with as many torch threads.
        gpus: GPUs each task asks for; ``None``: 1 for a task whose config names a ``cuda`` device
            (``train.device``), else 0 (Ray then hides the GPUs from it and it trains on the CPU).
        max_retries: how often Ray retries a task whose worker or node died (Ray's default is 3).
        num_cpus: CPUs of a new local instance (default: every core); ignored for a cluster.
        init: further keyword arguments for ``ray.init`` (e.g. ``runtime_env``, ``object_store_memory``).

    Ray's defaults are kept except where a sweep wants otherwise: a new local instance has no
    dashboard, a 150 MB object store and Ray's own messages at ERROR level; worker logs are not
    copied to the driver's terminal (they are in Ray's session folder); usage statistics are off
    unless ``RAY_USAGE_STATS_ENABLED`` says otherwise.
    """

    #: the store statuses of runs in flight that an interrupt marks ``interrupted``: every task
    #: handed to Ray, waiting there or training (the local executor only has ``running`` ones)
    interrupt_from = ("queued", "running")

    def __init__(self, address: str | None = None, *, batched: bool = True, max_group: int = 64, cpus: float = 1,
                 gpus: float | None = None, max_retries: int = 3, num_cpus: int | None = None,
                 init: dict | None = None):
        if address is not None and address_problem(address) is not None:
            raise ValueError(f"address {address!r} {address_problem(address)}")
        if not cpus > 0:
            raise ValueError(f"cpus must be > 0 (CPUs per task), got {cpus}")
        if gpus is not None and gpus < 0:
            raise ValueError(f"gpus must be >= 0, got {gpus}")
        if max_retries < 0:
            raise ValueError(f"max_retries must be >= 0 (-1 is not allowed: a dying task would run forever), "
                             f"got {max_retries}")
        if num_cpus is not None and num_cpus < 1:
            raise ValueError(f"num_cpus must be >= 1, got {num_cpus}")
        import ray  # noqa: F401 (fail here, before the sweep writes anything, when Ray is missing)

        self.address, self.batched, self.max_group = address, batched, max_group
        self.cpus, self.gpus, self.max_retries, self.num_cpus = cpus, gpus, max_retries, num_cpus
        self.init = dict(init or {})
        self._specs: list[RunSpec] = []
        self._pending: dict = {}          # ObjectRef -> Task
        self._connected = False           # this executor called ray.init (and so calls ray.shutdown)

    # -- connecting -----------------------------------------------------------------------------

    def connect(self):
        """Initialize Ray (connect to the cluster or start a local instance); return the ``ray`` module."""
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        import ray

        if ray.is_initialized():
            return ray
        address = self.address or os.environ.get("RAY_ADDRESS") or None
        options = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.ERROR,
                   "configure_logging": True}
        if address is None:  # a new local instance: its size is ours to choose
            options.update(num_cpus=self.num_cpus or os.cpu_count() or 1, object_store_memory=OBJECT_STORE_BYTES)
        elif address.startswith("ray://"):  # Ray Client forwards what it is given to the cluster's ray.init
            options = {}
        options.update(self.init)
        if address is not None:
            options["address"] = address
        try:
            if address is not None:
                _probe(address)
            ray.init(**options)
        except (ConnectionError, TimeoutError, RuntimeError) as err:
            if address is None:
                raise
            first = (str(err).strip().splitlines() or [type(err).__name__])[0]
            raise ConnectionError(f"cannot connect to the Ray cluster at {address} ({first}); check that its head "
                                  "node runs ('ray status' there) and that this machine reaches the address, or "
                                  "drop --address to start a local Ray instance") from None
        self._connected = True
        return ray

    # -- the Executor calls ------------------------------------------------------------------------

    def submit(self, specs: Sequence[RunSpec]) -> None:
        self._specs.extend(specs)

    def plan(self) -> list[Task]:
        return plan_tasks(self._specs, batched=self.batched, max_group=self.max_group)

    def _gpus_for(self, task: Task) -> float:
        if self.gpus is not None:
            return self.gpus
        devices = [((s.config.get("train") or {}).get("device") or "") for s in task.specs]
        return 1 if any(str(d).startswith("cuda") for d in devices) else 0

    def results(self) -> Iterator[RunOutcome]:
        tasks = self.plan()
        self._specs = []
        if not tasks:
            return
        ray = self.connect()
        from ray.exceptions import RayTaskError, TaskCancelledError

        remote = ray.remote(train_task)
        wanted = max(self._gpus_for(t) for t in tasks)
        have = ray.cluster_resources().get("GPU", 0)
        if wanted > have:  # Ray waits for such a node (an autoscaler may add one); say why nothing moves
            import sys
            print(f"warning: tasks ask for {wanted:g} GPU(s) (train.device names cuda) and the Ray cluster has "
                  f"{have:g}; they wait until a node with a GPU joins. Set train.device: cpu to train on CPUs",
                  file=sys.stderr)
        for task in tasks:
            payload = {"batched": task.batched,
                       "specs": [{"run_id": s.run_id, "config": s.config, "run_dir": s.run_dir} for s in task.specs]}
            name = f"trainlab:{task.specs[0].run_id}" + (f"+{len(task) - 1}" if len(task) > 1 else "")
            ref = remote.options(num_cpus=self.cpus, num_gpus=self._gpus_for(task), max_retries=self.max_retries,
                                 retry_exceptions=False, name=name).remote(payload, max(1, int(self.cpus)))
            self._pending[ref] = task
        while self._pending:
            # a short timeout: Ctrl-C reaches Python between two waits; then whatever else is ready
            refs = list(self._pending)
            done, _ = ray.wait(refs, num_returns=1, timeout=0.5)
            if done and len(refs) > 1:
                done, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
            for ref in done:
                task = self._pending.pop(ref)
                try:
                    returned = ray.get(ref)
                except TaskCancelledError:
                    continue
                except RayTaskError as err:  # raised inside the task and not retried: a failure of the runs
                    cause = getattr(err, "cause", None)
                    error = _describe(cause) if cause is not None else str(err).strip().splitlines()[0]
                    for spec in task.specs:
                        yield RunOutcome(spec.run_id, "failed", error=error, info={"batched": len(task)})
                    continue
                except Exception as err:  # the worker or node died, and kept dying for max_retries tries
                    for spec in task.specs:
                        yield RunOutcome(spec.run_id, "failed", error=f"worker failed after {self.max_retries} "
                                         f"retries: {_describe(err).splitlines()[0]}", info={"batched": len(task)})
                    continue
                yield from self._receive(task, returned)
        self.shutdown()

    def _receive(self, task: Task, returned: list[dict]) -> Iterator[RunOutcome]:
        specs = {s.run_id: s for s in task.specs}
        for item in returned:
            o = RunOutcome(**item["outcome"])
            spec = specs.get(o.run_id)
            if spec is None:  # not a run of this task: nothing to record
                continue
            o.run_dir = spec.run_dir  # the driver's folder, whatever the worker said
            if spec.run_dir is not None and item.get("files"):
                try:
                    write_files(spec.run_dir, item["files"])
                except (ValueError, OSError) as err:  # the numbers stand; the folder could not be written
                    o.status, o.error = "failed", f"{type(err).__name__}: {err}"
            yield o

    def shutdown(self, cancel: bool = False) -> None:
        pending, self._pending = list(self._pending), {}
        if not pending and not self._connected:
            return
        import ray

        if cancel and ray.is_initialized():
            for ref in pending:  # force: a running task stops now (its worker process is killed)
                try:
                    ray.cancel(ref, force=True)
                except Exception:  # already finished or its node gone: nothing left to stop
                    pass
        if self._connected:  # a connection the user opened stays theirs
            self._connected = False
            ray.shutdown()
