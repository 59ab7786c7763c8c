"""``trainlab run CONFIG --nproc N``: one run on N local processes, through PyTorch's elastic launcher.

The launcher is what ``torchrun`` runs (``torch.distributed.launcher.api.elastic_launch``): a
rendezvous on 127.0.0.1 with a port the operating system picks, then N worker processes, each
running ``python -m trainlab run`` with the same command line minus ``--nproc`` (a config
crosses the process boundary as a file and flags, never as a pickled object). In every worker
the runner joins the process group from the environment the launcher sets
(:mod:`trainlab.train.distributed`); rank 0 writes the run folder, checkpoints and the store row
and prints, the others are silent (their output goes to log files the launcher removes).

A failure on one rank ends the launch: the launcher stops the other ranks, each rank's error is
in the error file the launcher gives it (``TORCHELASTIC_ERROR_FILE``, the format of
``torch.distributed.elastic``'s ``@record``), and this command prints one line naming the
failing rank and its error. Errors a rank raises only because a peer went away (a closed
connection in a collective, the launcher's SIGTERM) are not taken for the cause. A fresh run's
folder is removed, so no partial run is left; a NaN stop keeps its folder (it holds the
verdicts, as in one process), and a resumed run keeps its folder as it was at its last
checkpoint.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import tempfile
import time
import traceback
from pathlib import Path

# set in the workers of `trainlab run --nproc`: they stay silent and leave the one line to the launcher
LAUNCHED_BY_TRAINLAB = "TRAINLAB_NPROC_LAUNCH"


def rank_env() -> tuple[int, int] | None:
    """``(rank, world_size)`` when this process is a rank of a launch with more than one (no torch import)."""
    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ["RANK"])
    except (KeyError, ValueError):
        return None
    return (rank, world) if world > 1 else None


class RankFailure(Exception):
    """A failure of ``trainlab run`` on one rank: the one-line ``message`` and the exit ``status``."""

    def __init__(self, message: str, status: int, kind: str = "error"):
        super().__init__(message)
        self.message, self.status, self.kind = message, status, kind


class RankStopped(BaseException):
    """The launcher stopped this rank (SIGTERM) because another one failed."""


# errors a rank sees only because a peer has gone (the peer's own error is the cause)
_PEER_GONE = ("Connection closed by peer", "Connection reset by peer", "Broken pipe", "Socket Timeout",
              "connection closed", "NCCL communicator was aborted", "Connection refused")


def _kind(err: BaseException) -> str:
    if isinstance(err, RankStopped):
        return "peer"
    name = type(err).__name__
    text = str(err)
    if name in ("DistBackendError", "DistNetworkError", "DistStoreError") or any(p in text for p in _PEER_GONE):
        return "peer"
    if name == "NonFiniteLossError":
        return "nonfinite"
    return "error"


def record_error(message: str, status: int, kind: str) -> None:
    """Write this rank's failure into the launcher's error file (``torch.distributed.elastic``'s format)."""
    path = os.environ.get("TORCHELASTIC_ERROR_FILE")
    if not path:
        return
    now = time.time()
    data = {"message": {"message": message,
                        "extraInfo": {"py_callstack": traceback.format_exc(), "timestamp": str(int(now))}},
            "trainlab": {"message": message, "status": status, "kind": kind, "time": now,
                         "rank": int(os.environ.get("RANK", "0"))}}
    try:
        with open(path, "w") as f:
            json.dump(data, f)
    except OSError:
        pass  # the launcher then reports the exit status alone


def run_rank(run, args, describe) -> int:
    """Run ``run(args)`` (``trainlab run`` on this rank) and turn a failure into the launcher's error file.

    ``describe(err)`` is the CLI's ``(message, status)`` for an expected failure (None for a bug,
    whose message is then ``Type: text``). Under ``trainlab run --nproc`` the rank prints
    nothing of it (the launcher prints one line); under ``torchrun`` each failing rank prints
    its line prefixed with its rank. ``--debug`` adds the traceback.
    """
    rank = int(os.environ.get("RANK", "0"))

    def stop(signum, frame):
        raise RankStopped(f"stopped by the launcher (signal {signum}) because another rank failed")

    previous = signal.signal(signal.SIGTERM, stop)
    quiet = os.environ.get(LAUNCHED_BY_TRAINLAB) == "1"
    try:
        return run(args)
    except KeyboardInterrupt:
        if quiet:
            return 130
        raise
    except BaseException as err:  # noqa: BLE001 (every failure of a rank goes to its error file)
        if isinstance(err, RankFailure):
            message, status, kind = err.message, err.status, err.kind
        else:
            described = describe(err) if isinstance(err, Exception) else None
            message, status = described if described is not None else (f"{type(err).__name__}: {err}", 1)
            kind = _kind(err)
        record_error(message, status, kind)
        if getattr(args, "debug", False):
            traceback.print_exc()
        if not quiet:
            print(f"trainlab run: rank {rank}: {message}", file=sys.stderr)
        return status
    finally:
        signal.signal(signal.SIGTERM, previous)
        from trainlab.train import distributed
        distributed.destroy()


def worker_argv(argv: list[str], out: str | None) -> list[str]:
    """The command line of each worker: ``argv`` without ``--nproc N``, with ``--out DIR`` when given."""
    out_args: list[str] = []
    skip = False
    for i, a in enumerate(argv):
        if skip:
            skip = False
            continue
        if a == "--nproc":
            skip = True
            continue
        if a.startswith("--nproc="):
            continue
        out_args.append(a)
    if out is not None:
        out_args += ["--out", out]
    return out_args


def _quiet_launcher_logs(debug: bool) -> None:
    """The elastic agent logs every start and failure; the one line this command prints replaces them."""
    import logging

    if not debug:  # each module's logger has its own level, so every one is set
        names = [n for n in logging.root.manager.loggerDict if n.startswith("torch.distributed")]
        for name in names + ["torch.distributed.elastic", "torch.distributed.launcher"]:
            logging.getLogger(name).setLevel(logging.CRITICAL)


def choose_failure(failures: dict[int, dict]) -> tuple[int, dict]:
    """The rank whose failure caused the others: not a "peer gone" error, earliest, lowest rank."""
    def key(item):
        rank, f = item
        return (f.get("kind") == "peer", f.get("time", float("inf")), rank)
    return min(failures.items(), key=key)


def _read_failures(err) -> dict[int, dict]:
    """``rank -> {message, status, kind, time}`` from a ChildFailedError (its per-rank error files)."""
    out: dict[int, dict] = {}
    for rank, failure in err.failures.items():
        data = failure.error_file_data if isinstance(failure.error_file_data, dict) else {}
        info = data.get("trainlab")
        if isinstance(info, dict):
            out[rank] = info
            continue
        if failure.exitcode < 0:
            message, kind = f"killed by signal {failure.signal_name()}", "peer"
        else:
            message, kind = f"exited with status {failure.exitcode} without an error record", "error"
        if isinstance(data.get("message"), dict):
            message = str(data["message"].get("message", message))
        out[rank] = {"message": message, "status": failure.exitcode if failure.exitcode > 0 else 1,
                     "kind": kind, "time": float(failure.timestamp)}
    return out


def _record_failure(args, folder: str | None, message: str) -> None:
    """Put the cause into the store row rank 0 marked failed (it saw only its peer's closed connection)."""
    if folder is None or getattr(args, "no_store", False):
        return
    try:
        from trainlab.experiments.store import Store, default_store_path

        with Store(Path(args.store) if getattr(args, "store", None) else default_store_path()) as store:
            row = store.find_by_run_dir(folder)
            if row is not None and row.status == "failed":
                store.set_status(row.id, "failed", error=message)
    except Exception:  # noqa: BLE001 (the store is a record; the failure line has been printed)
        pass


def launch_run(args, nproc: int, folder: str | None, *, give_out: bool, fresh: bool) -> int:
    """Run ``trainlab run`` (the command line in ``args.argv``) on ``nproc`` local processes.

    ``folder``: the run folder (``--out``, the one reserved for a new run, or the resumed one);
    ``give_out``: add ``--out folder`` to the workers' command line; ``fresh``: this command
    created it (or it did not exist), so a failure removes it. A failure is also written into
    the run's store row, so ``trainlab runs`` shows the failing rank's error rather than the
    closed connection the other ranks saw. Returns the exit status.
    """
    from torch.distributed.elastic.multiprocessing import DefaultLogsSpecs, Std
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    debug = bool(getattr(args, "debug", False))
    _quiet_launcher_logs(debug)
    logs = tempfile.mkdtemp(prefix="trainlab-ranks-")
    # rank 0 keeps this terminal; the others' output (warnings repeated N times) goes to log files
    redirects = {r: Std.ALL for r in range(1, nproc)} if not debug else Std.NONE
    config = LaunchConfig(min_nodes=1, max_nodes=1, nproc_per_node=nproc, run_id=f"trainlab-{os.getpid()}",
                          rdzv_backend="c10d", rdzv_endpoint="127.0.0.1:0", max_restarts=0,
                          monitor_interval=0.1, local_addr="127.0.0.1",
                          logs_specs=DefaultLogsSpecs(log_dir=logs, redirects=redirects))
    env_before = os.environ.get(LAUNCHED_BY_TRAINLAB)
    os.environ[LAUNCHED_BY_TRAINLAB] = "1"  # the workers inherit this process's environment
    try:
        elastic_launch(config, sys.executable)("-m", "trainlab",
                                               *worker_argv(args.argv, folder if give_out else None))
        return 0
    except ChildFailedError as err:
        failures = _read_failures(err)
        rank, failure = choose_failure(failures)
        if 0 in failures and all(f.get("kind") == "nonfinite" for f in failures.values()):
            rank, failure = 0, failures[0]  # a NaN stop is the run's, on every rank: rank 0 names its folder
            failures = {0: failure}
        if fresh and folder is not None and failure.get("kind") != "nonfinite":
            shutil.rmtree(folder, ignore_errors=True)  # rank 0 removes it too; this covers a rank 0 that was killed
        same = len({f.get("message") for f in failures.values()}) == 1 and (len(failures) == nproc or
                                                                             failure.get("kind") == "nonfinite")
        message = failure.get("message") or "failed"
        if not same:
            message = f"rank {rank} of {nproc} failed: {message}"
            _record_failure(args, folder, message)
        print(f"trainlab run: {message}", file=sys.stderr)
        return int(failure.get("status") or 1)
    except SignalException as err:  # Ctrl-C (or a SIGTERM) reached the launcher: the ranks got it too
        raise KeyboardInterrupt(str(err)) from None
    finally:
        if env_before is None:
            os.environ.pop(LAUNCHED_BY_TRAINLAB, None)
        else:
            os.environ[LAUNCHED_BY_TRAINLAB] = env_before
        shutil.rmtree(logs, ignore_errors=True)
