"""The results store: one embedded SQLite file holding every run, its config, metrics and status.

Layout (one row per ...)::

    runs         run: id, name, config hash, resolved config (JSON), status, timestamps, wall time,
                 final numbers (JSON), error, run folder, host/pid, extra info (JSON)
    metrics      (run, epoch, key) -> value: the per-epoch history, long format
    diagnostics  (run, key) -> JSON: diagnostics summaries
    sweeps       sweep: id, name, the sweep file (JSON), number of points, report folder
    sweep_runs   (sweep, point index) -> run, with the point's swept values (JSON)

A run's status is ``queued`` (submitted), ``running``, ``finished``, ``failed`` (an error, e.g. a
diverged loss; ``error`` says which), ``interrupted``, or ``pruned`` (a trial of an optuna search its
pruner stopped early; ``info.pruned_epoch`` says after which epoch). A ``running`` row records the host and pid
of the process training it and a heartbeat (updated every epoch); a process killed outright
(``kill -9``, a lost machine) cannot say it stopped, so opening the store marks such stale rows
``interrupted`` (see :meth:`Store.mark_stale`). Runs are identified by ``id``; the
``config_hash`` (SHA-256 of the resolved config without its ``name``, see :func:`config_hash`) is
what a sweep looks up to skip work that is already done.

Concurrency: the database runs in WAL mode (readers never block the writer) with a busy timeout,
and every write is one ``BEGIN IMMEDIATE`` transaction, so several processes may write at once
(two sweeps, a sweep and ``trainlab run``): a writer waits for the lock instead of failing, and a
transaction never has to upgrade a read lock (the case SQLite cannot wait out). WAL needs a local
file system; SQLite's documentation warns against network file systems.

The default file is ``runs/trainlab.sqlite``; ``TRAINLAB_STORE`` or ``--store`` changes it.

This module imports neither torch nor matplotlib, so querying is fast.
"""
from __future__ import annotations

import fnmatch
import hashlib
import json
import math
import os
import socket
import sqlite3
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

DEFAULT_STORE = Path("runs") / "trainlab.sqlite"
STATUSES = ("queued", "running", "finished", "failed", "interrupted", "pruned")
SCHEMA_VERSION = 2
# a running row of another host (whose pid cannot be checked) is stale after this long without a
# heartbeat; an epoch that takes longer than this on another machine would be marked too early
STALE_AFTER = 24 * 3600.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    config_hash TEXT NOT NULL,
    config      TEXT NOT NULL,
    status      TEXT NOT NULL,
    created     REAL NOT NULL,
    started     REAL,
    ended       REAL,
    wall_time   REAL,
    final       TEXT,
    error       TEXT,
    run_dir     TEXT,
    host        TEXT,
    pid         INTEGER,
    info        TEXT,
    heartbeat   REAL
);
CREATE INDEX IF NOT EXISTS runs_hash ON runs (config_hash);
CREATE INDEX IF NOT EXISTS runs_status ON runs (status);
CREATE TABLE IF NOT EXISTS metrics (
    run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    epoch  INTEGER NOT NULL,
    key    TEXT NOT NULL,
    value  REAL,
    PRIMARY KEY (run_id, epoch, key)
);
CREATE TABLE IF NOT EXISTS diagnostics (
    run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    key    TEXT NOT NULL,
    value  TEXT NOT NULL,
    PRIMARY KEY (run_id, key)
);
CREATE TABLE IF NOT EXISTS sweeps (
    id      TEXT PRIMARY KEY,
    name    TEXT NOT NULL,
    spec    TEXT NOT NULL,
    created REAL NOT NULL,
    n_points INTEGER NOT NULL,
    out_dir TEXT
);
CREATE TABLE IF NOT EXISTS sweep_runs (
    sweep_id TEXT NOT NULL REFERENCES sweeps (id) ON DELETE CASCADE,
    idx      INTEGER NOT NULL,
    run_id   TEXT NOT NULL,
    point    TEXT NOT NULL,
    PRIMARY KEY (sweep_id, idx)
);
CREATE INDEX IF NOT EXISTS sweep_runs_run ON sweep_runs (run_id);
"""


def default_store_path() -> Path:
    """``$TRAINLAB_STORE`` when set, else ``runs/trainlab.sqlite`` (relative to the working folder)."""
    env = os.environ.get("TRAINLAB_STORE")
    return Path(env) if env else DEFAULT_STORE


def canonical_json(obj: Any) -> str:
    """JSON with sorted keys and no spaces: equal data gives equal text (and so an equal hash)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=True)


def config_hash(config: dict) -> str:
    """SHA-256 (hex) of a resolved config without its ``name``.

    The name is a label, not part of what is computed: two runs whose configs differ only in name
    train the same model, so a sweep treats one as done when the other is.
    """
    data = {k: v for k, v in config.items() if k != "name"}
    return hashlib.sha256(canonical_json(data).encode()).hexdigest()


def _json_or_none(obj) -> str | None:
    return None if obj is None else canonical_json(obj)


def _loads(text: str | None, default=None):
    return default if text is None else json.loads(text)


def _finite_or_none(v) -> float | None:
    if v is None:
        return None
    v = float(v)
    return v if math.isfinite(v) else None


@dataclass
class RunRecord:
    """One row of ``runs`` as plain Python data (JSON columns decoded)."""

    id: str
    name: str
    config_hash: str
    config: dict
    status: str
    created: float
    started: float | None = None
    ended: float | None = None
    wall_time: float | None = None
    final: dict = field(default_factory=dict)
    error: str | None = None
    run_dir: str | None = None
    host: str | None = None
    pid: int | None = None
    info: dict = field(default_factory=dict)

    def get(self, path: str, default=None):
        """A config field by dotted path, e.g. ``rec.get("optimizer.lr")`` (list items by index)."""
        return get_path(self.config, path, default)

    def as_dict(self) -> dict:
        """A flat record: the run's columns, ``final.*`` numbers and nothing nested."""
        out = {"id": self.id, "name": self.name, "status": self.status, "config_hash": self.config_hash,
               "created": self.created, "wall_time": self.wall_time, "error": self.error,
               "run_dir": self.run_dir}
        out.update({f"final.{k}": v for k, v in self.final.items()})
        return out


def get_path(data, path: str, default=None):
    """``data["a"]["b"][0]`` for ``path="a.b.0"``; ``default`` when any step is missing."""
    node = data
    for part in path.split("."):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.lstrip("-").isdigit() and -len(node) <= int(part) < len(node):
            node = node[int(part)]
        else:
            return default
    return node


def _row_to_record(row: sqlite3.Row) -> RunRecord:
    return RunRecord(id=row["id"], name=row["name"], config_hash=row["config_hash"],
                     config=_loads(row["config"], {}), status=row["status"], created=row["created"],
                     started=row["started"], ended=row["ended"], wall_time=row["wall_time"],
                     final=_loads(row["final"], {}), error=row["error"], run_dir=row["run_dir"],
                     host=row["host"], pid=row["pid"], info=_loads(row["info"], {}))


class Store:
    """An open results store (one SQLite file; created with its tables on first use).

    Args:
        path: the database file (default :func:`default_store_path`); parent folders are created.
        timeout: seconds a writer waits for another writer's lock before giving up (SQLite's
            busy timeout). Writes are short, so the default 60 s is only reached by a stuck process.

    Use as a context manager or call :meth:`close`. One ``Store`` per process (or thread): SQLite
    connections are not shared across processes.
    """

    def __init__(self, path: str | Path | None = None, *, timeout: float = 60.0):
        self.path = Path(path) if path is not None else default_store_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: we issue BEGIN IMMEDIATE ourselves (see the module docstring)
        self._conn = sqlite3.connect(str(self.path), timeout=timeout, isolation_level=None)
        self._conn.row_factory = sqlite3.Row
        self._conn.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
        self._conn.execute("PRAGMA foreign_keys = ON")
        self._retry(lambda: self._conn.execute("PRAGMA journal_mode = WAL"), timeout)
        # NORMAL is durable across application crashes in WAL mode (only an OS crash may lose the
        # last transactions), and makes commits much cheaper than FULL
        self._conn.execute("PRAGMA synchronous = NORMAL")
        with self._write() as c:
            for stmt in filter(str.strip, _SCHEMA.split(";")):
                c.execute(stmt)
            columns = {r["name"] for r in c.execute("PRAGMA table_info(runs)")}
            if "heartbeat" not in columns:  # a store written before heartbeats existed
                c.execute("ALTER TABLE runs ADD COLUMN heartbeat REAL")
            c.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        self.mark_stale()

    @staticmethod
    def _retry(fn, timeout: float):
        # switching to WAL needs an exclusive moment; the busy handler does not cover every case
        deadline = time.monotonic() + timeout
        while True:
            try:
                return fn()
            except sqlite3.OperationalError as err:
                if "locked" not in str(err) or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    # -- plumbing ----------------------------------------------------------------------------------
    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        conn = self._conn
        if conn.in_transaction:  # a write that Ctrl-C cut between BEGIN and its try left one open:
            conn.execute("ROLLBACK")  # it never committed, so its statements go
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException:  # the body or the COMMIT failed (or was interrupted): nothing of it stays
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Store({str(self.path)!r})"

    # -- writing runs ------------------------------------------------------------------------------
    def add_run(self, run_id: str, config: dict, *, status: str = "queued", name: str | None = None,
                run_dir: str | Path | None = None, info: dict | None = None) -> str:
        """Insert (or reset, when ``run_id`` exists) a run with its resolved config; returns the id.

        Resetting clears the old metrics, so a rerun of a failed run does not mix two histories.
        """
        _check_status(status)
        now = time.time()
        with self._write() as c:
            c.execute("DELETE FROM metrics WHERE run_id = ?", (run_id,))
            c.execute("DELETE FROM diagnostics WHERE run_id = ?", (run_id,))
            c.execute(
                "INSERT INTO runs (id, name, config_hash, config, status, created, started, run_dir, host, "
                "pid, info) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (id) DO UPDATE SET name=excluded.name, config_hash=excluded.config_hash, "
                "config=excluded.config, status=excluded.status, created=excluded.created, "
                "started=excluded.started, ended=NULL, wall_time=NULL, final=NULL, error=NULL, "
                "run_dir=excluded.run_dir, host=excluded.host, pid=excluded.pid, info=excluded.info",
                (run_id, name or config.get("name", run_id), config_hash(config), canonical_json(config),
                 status, now, now if status == "running" else None,
                 str(run_dir) if run_dir is not None else None, socket.gethostname(), os.getpid(),
                 _json_or_none(info or {})))
        return run_id

    def new_run(self, base: str, config: dict, *, status: str = "running", name: str | None = None,
                run_dir: str | Path | None = None, info: dict | None = None) -> str:
        """Insert a run under a fresh id: ``base``, else ``base-2``, ``base-3`` ...; returns the id.

        Choosing the id and inserting the row happen in one write transaction with a plain
        ``INSERT`` (never an upsert), so concurrent recordings can neither pick the same id nor
        overwrite each other's row.
        """
        _check_status(status)
        now = time.time()
        with self._write() as c:
            rid, i = base, 1
            while True:
                try:
                    c.execute(
                        "INSERT INTO runs (id, name, config_hash, config, status, created, started, run_dir, "
                        "host, pid, info, heartbeat) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (rid, name or config.get("name", rid), config_hash(config), canonical_json(config),
                         status, now, now if status == "running" else None,
                         str(run_dir) if run_dir is not None else None, socket.gethostname(), os.getpid(),
                         _json_or_none(info or {}), now))
                    return rid
                except sqlite3.IntegrityError:
                    i += 1
                    rid = f"{base}-{i}"

    def heartbeat(self, run_id: str) -> None:
        """Say that the process training ``run_id`` is alive (called once per epoch)."""
        with self._write() as c:
            c.execute("UPDATE runs SET heartbeat=? WHERE id=?", (time.time(), run_id))

    def mark_stale(self, *, stale_after: float = STALE_AFTER) -> list[str]:
        """Mark ``running`` rows whose process is gone as ``interrupted``; returns their ids.

        A row of this host is stale when its pid is no longer alive; a row of another host when
        its last heartbeat (or start) is older than ``stale_after`` seconds.
        """
        host, now = socket.gethostname(), time.time()
        rows = self._conn.execute("SELECT id, host, pid, heartbeat, started, created FROM runs "
                                  "WHERE status = 'running'").fetchall()
        stale = []
        for r in rows:
            last = r["heartbeat"] or r["started"] or r["created"]
            if r["host"] == host and r["pid"] is not None:
                gone = not _pid_alive(int(r["pid"]))
            else:
                gone = now - last > stale_after
            if gone:
                stale.append(r["id"])
        if stale:
            with self._write() as c:
                for rid in stale:  # re-checked inside the transaction: it may have finished meanwhile
                    c.execute("UPDATE runs SET status='interrupted', ended=COALESCE(ended, ?), "
                              "error=COALESCE(error, ?) WHERE id=? AND status='running'",
                              (now, "the process training it stopped without a word (killed?)", rid))
        return stale

    def set_status(self, run_ids: str | Sequence[str], status: str, error: str | None = None, *,
                   only: Sequence[str] | None = None, pid: int | None = None) -> None:
        """Set the status of one or more runs (``running`` also stamps the start time and the pid).

        ``only``: change only rows whose status is one of these (e.g. mark ``interrupted`` only
        the runs that were ``running``, leaving ``queued`` ones queued).
        """
        _check_status(status)
        ids = [run_ids] if isinstance(run_ids, str) else list(run_ids)
        now = time.time()
        with self._write() as c:
            for rid in ids:
                if status == "running":
                    c.execute("UPDATE runs SET status=?, started=?, host=?, pid=?, heartbeat=? WHERE id=?",
                              (status, now, socket.gethostname(), pid if pid is not None else os.getpid(),
                               now, rid))
                else:
                    sql, args = "UPDATE runs SET status=?, error=COALESCE(?, error) WHERE id=?", [status, error, rid]
                    if only:
                        sql += f" AND status IN ({', '.join('?' * len(only))})"
                        args += list(only)
                    c.execute(sql, args)

    def finish_run(self, run_id: str, *, history: Sequence[dict], final: dict, wall_time: float,
                   status: str = "finished", error: str | None = None, diagnostics: dict | None = None,
                   info: dict | None = None, run_dir: str | Path | None = None) -> None:
        """Record the outcome of a run: its per-epoch history, final numbers, wall time, status.

        ``history`` is :meth:`History.records` (one dict per epoch with an ``epoch`` key);
        ``diagnostics`` maps a name to any JSON-able summary. Non-finite numbers are stored as NULL.
        """
        _check_status(status)
        rows = []
        for rec in history:
            epoch = int(rec["epoch"])
            for key, value in rec.items():
                if key != "epoch" and isinstance(value, (int, float)) and not isinstance(value, bool):
                    rows.append((run_id, epoch, key, _finite_or_none(value)))
        with self._write() as c:
            c.execute("DELETE FROM metrics WHERE run_id = ?", (run_id,))
            c.executemany("INSERT INTO metrics (run_id, epoch, key, value) VALUES (?, ?, ?, ?)", rows)
            for key, value in (diagnostics or {}).items():
                c.execute("INSERT OR REPLACE INTO diagnostics (run_id, key, value) VALUES (?, ?, ?)",
                          (run_id, key, json.dumps(value, default=str)))
            sets = "status=?, ended=?, wall_time=?, final=?, error=?"
            args: list = [status, time.time(), wall_time, canonical_json(_clean(final)), error]
            if info is not None:  # merged into what add_run stored (read inside this transaction)
                row = c.execute("SELECT info FROM runs WHERE id=?", (run_id,)).fetchone()
                merged = {**_loads(row["info"] if row else None, {}), **info}
                sets += ", info=?"
                args.append(canonical_json(merged))
            if run_dir is not None:
                sets += ", run_dir=?"
                args.append(str(run_dir))
            cur = c.execute(f"UPDATE runs SET {sets} WHERE id=?", (*args, run_id))
            if cur.rowcount != 1:
                raise KeyError(f"no run {run_id!r} in {self.path}; add_run() it first")

    def delete_runs(self, run_ids: Iterable[str]) -> int:
        """Delete runs with their metrics and diagnostics; returns how many were deleted."""
        n = 0
        with self._write() as c:
            for rid in run_ids:
                c.execute("DELETE FROM sweep_runs WHERE run_id = ?", (rid,))
                n += c.execute("DELETE FROM runs WHERE id = ?", (rid,)).rowcount
        return n

    # -- sweeps ------------------------------------------------------------------------------------
    def add_sweep(self, sweep_id: str, name: str, spec: dict, points: Sequence[tuple[int, str, dict]],
                  out_dir: str | Path | None = None) -> None:
        """Record a sweep and its points ``(index, run id, swept values)`` (replacing an older record)."""
        with self._write() as c:
            c.execute("INSERT INTO sweeps (id, name, spec, created, n_points, out_dir) VALUES (?, ?, ?, ?, ?, ?) "
                      "ON CONFLICT (id) DO UPDATE SET spec=excluded.spec, n_points=excluded.n_points, "
                      "out_dir=excluded.out_dir",
                      (sweep_id, name, canonical_json(spec), time.time(), len(points),
                       str(out_dir) if out_dir is not None else None))
            c.execute("DELETE FROM sweep_runs WHERE sweep_id = ?", (sweep_id,))
            c.executemany("INSERT INTO sweep_runs (sweep_id, idx, run_id, point) VALUES (?, ?, ?, ?)",
                          [(sweep_id, i, rid, canonical_json(point)) for i, rid, point in points])

    def sweeps(self) -> list[dict]:
        """Every sweep as ``{id, name, created, n_points, out_dir}``, newest first."""
        rows = self._conn.execute("SELECT id, name, created, n_points, out_dir FROM sweeps "
                                  "ORDER BY created DESC").fetchall()
        return [dict(r) for r in rows]

    def sweep(self, sweep_id: str) -> dict:
        """One sweep with its spec and its points ``[{idx, run_id, point}]`` (a unique id prefix works)."""
        rows = self._conn.execute("SELECT * FROM sweeps WHERE id = ? OR id LIKE ? ESCAPE '\\' ORDER BY id",
                                  (sweep_id, _like_prefix(sweep_id))).fetchall()
        exact = [r for r in rows if r["id"] == sweep_id]
        rows = exact or rows
        if len(rows) != 1:
            raise KeyError(f"no sweep {sweep_id!r} in {self.path}" if not rows else
                           f"{sweep_id!r} matches several sweeps: {', '.join(r['id'] for r in rows)}")
        row = rows[0]
        points = self._conn.execute("SELECT idx, run_id, point FROM sweep_runs WHERE sweep_id = ? ORDER BY idx",
                                    (row["id"],)).fetchall()
        return {"id": row["id"], "name": row["name"], "spec": _loads(row["spec"], {}), "created": row["created"],
                "n_points": row["n_points"], "out_dir": row["out_dir"],
                "points": [{"idx": p["idx"], "run_id": p["run_id"], "point": _loads(p["point"], {})}
                           for p in points]}

    # -- reading -----------------------------------------------------------------------------------
    def get_run(self, run_id: str) -> RunRecord:
        """The run ``run_id``; a unique prefix of an id also works (as with git commits)."""
        return self.get_runs([run_id])[0]

    def get_runs(self, run_ids: Sequence[str]) -> list[RunRecord]:
        """Runs by id or unique id prefix, in the order asked; a clear error names what is missing."""
        out = []
        for rid in run_ids:
            rows = self._conn.execute("SELECT * FROM runs WHERE id = ? OR id LIKE ? ESCAPE '\\' ORDER BY id",
                                      (rid, _like_prefix(rid))).fetchall()
            exact = [r for r in rows if r["id"] == rid]
            rows = exact or rows
            if not rows:
                raise KeyError(f"no run {rid!r} in {self.path} (see 'trainlab runs')")
            if len(rows) > 1:
                names = ", ".join(r["id"] for r in rows[:6])
                raise KeyError(f"{rid!r} matches {len(rows)} runs ({names}{', ...' if len(rows) > 6 else ''}); "
                               "give more of the id")
            out.append(_row_to_record(rows[0]))
        return out

    def find_by_hash(self, config_hash_: str, status: Sequence[str] | None = ("finished",)) -> RunRecord | None:
        """The most recent run with this config hash (and one of ``status``), or ``None``."""
        sql, args = "SELECT * FROM runs WHERE config_hash = ?", [config_hash_]
        if status:
            sql += f" AND status IN ({', '.join('?' * len(status))})"
            args += list(status)
        row = self._conn.execute(sql + " ORDER BY created DESC LIMIT 1", args).fetchone()
        return _row_to_record(row) if row is not None else None

    def find_by_run_dir(self, run_dir: str | Path) -> RunRecord | None:
        """The newest run recorded with this run folder (compared as absolute paths), or ``None``."""
        want = Path(run_dir).resolve()
        for row in self._conn.execute("SELECT * FROM runs WHERE run_dir IS NOT NULL ORDER BY created DESC"):
            if Path(row["run_dir"]).resolve() == want:
                return _row_to_record(row)
        return None

    def runs(self, *, status: str | Sequence[str] | None = None, sweep: str | None = None,
             name: str | None = None, where: dict[str, Any] | None = None, limit: int | None = None,
             newest_first: bool = True) -> list[RunRecord]:
        """Runs as plain records, filtered.

        Args:
            status: one status or several (``"finished"``, ``("failed", "interrupted")``).
            sweep: only runs of this sweep (id or unique prefix).
            name: a shell pattern on the run name or id, e.g. ``"lr-*"``.
            where: config fields by dotted path that must equal the given values,
                e.g. ``{"optimizer.name": "sgd", "train.batch_size": 32}``.
            limit: at most this many (after filtering).
        """
        sql, args = "SELECT * FROM runs", []
        conds = []
        if status:
            sts = [status] if isinstance(status, str) else list(status)
            for s in sts:
                _check_status(s)
            conds.append(f"status IN ({', '.join('?' * len(sts))})")
            args += sts
        if sweep:
            sid = self.sweep(sweep)["id"]
            conds.append("id IN (SELECT run_id FROM sweep_runs WHERE sweep_id = ?)")
            args.append(sid)
        if conds:
            sql += " WHERE " + " AND ".join(conds)
        sql += f" ORDER BY created {'DESC' if newest_first else 'ASC'}, id"
        records = [_row_to_record(r) for r in self._conn.execute(sql, args)]
        if name:
            records = [r for r in records if fnmatch.fnmatchcase(r.name, name) or fnmatch.fnmatchcase(r.id, name)]
        for path, want in (where or {}).items():
            records = [r for r in records if _equal(r.get(path, _MISSING), want)]
        return records[:limit] if limit is not None else records

    def history(self, run_id: str) -> list[dict]:
        """The per-epoch history of a run: ``[{"epoch": 0, "loss": ..., ...}, ...]``."""
        rid = self.get_run(run_id).id
        rows = self._conn.execute("SELECT epoch, key, value FROM metrics WHERE run_id = ? ORDER BY epoch",
                                  (rid,)).fetchall()
        by_epoch: dict[int, dict] = {}
        for r in rows:
            by_epoch.setdefault(r["epoch"], {"epoch": r["epoch"]})[r["key"]] = (
                r["value"] if r["value"] is not None else math.nan)
        return [by_epoch[e] for e in sorted(by_epoch)]

    def diagnostics(self, run_id: str) -> dict:
        rid = self.get_run(run_id).id
        rows = self._conn.execute("SELECT key, value FROM diagnostics WHERE run_id = ?", (rid,)).fetchall()
        return {r["key"]: json.loads(r["value"]) for r in rows}

    def count(self, table: str = "runs") -> int:
        if table not in ("runs", "metrics", "diagnostics", "sweeps", "sweep_runs"):
            raise ValueError(f"unknown table {table!r}")
        return int(self._conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])

    def records(self, **filters) -> list[dict]:
        """:meth:`runs` as flat dicts (``id``, ``status``, ``final.val_accuracy``, ...)."""
        return [r.as_dict() for r in self.runs(**filters)]

    def dataframe(self, **filters):
        """:meth:`records` as a pandas ``DataFrame`` (needs pandas, which trainlab does not require)."""
        try:
            import pandas as pd
        except ImportError:
            raise ImportError("Store.dataframe needs pandas (pip install pandas); Store.records gives the "
                              "same rows as plain dicts") from None
        return pd.DataFrame.from_records(self.records(**filters))


_MISSING = object()


def _equal(value, want) -> bool:
    if value is _MISSING:
        return False
    if isinstance(value, (int, float)) and isinstance(want, (int, float)) and not isinstance(value, bool):
        return float(value) == float(want)
    return value == want


def _like_prefix(prefix: str) -> str:
    escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped + "%"


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    except OSError:
        return False
    # a zombie (exited, not yet reaped by its parent) answers signal 0 but trains nothing
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[-1].split()[0] != "Z"
    except OSError:
        return True


def _check_status(status: str) -> None:
    if status not in STATUSES:
        raise ValueError(f"unknown run status {status!r}; one of {', '.join(STATUSES)}")


def _clean(final: dict) -> dict:
    return {k: (_finite_or_none(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v)
            for k, v in (final or {}).items()}


# ---------------------------------------------------------------------------------------------
# recording a RunResult, comparing runs


def diagnostics_of(result) -> dict:
    """A run result's diagnostics summary and verdicts as JSON-able data (empty without diagnostics)."""
    extras = getattr(result, "extras", None) or {}
    rec = extras.get("diagnostics")
    if rec is None:
        return {}
    out = {"summary": rec.summary() if hasattr(rec, "summary") else rec}
    verdicts = extras.get("verdicts")
    if verdicts is not None:
        out["verdicts"] = [v.to_dict() if hasattr(v, "to_dict") else v for v in verdicts]
    return out


def unique_run_id(store: Store, base: str) -> str:
    """``base``, or ``base-2``, ``base-3`` ... whichever is not taken yet.

    Only a hint: another process may take it before it is inserted. :meth:`Store.new_run`
    chooses and inserts in one step.
    """
    rid, i = base, 1
    while store._conn.execute("SELECT 1 FROM runs WHERE id = ?", (rid,)).fetchone() is not None:
        i += 1
        rid = f"{base}-{i}"
    return rid


class RunRecording:
    """Record one run (``trainlab run``) in a store: ``running`` now, its outcome at the end.

    Use as a context manager around the training; call :meth:`finish` with the result and
    :meth:`beat` once per epoch. An error inside marks the run ``failed`` (``interrupted`` for
    Ctrl-C) and propagates. A store that cannot be written (read-only folder, ...) prints a warning
    and training goes on unrecorded.

    ``resume=True`` continues the row of the run recorded for ``run_dir`` (found by its folder)
    instead of adding one, so a resumed run ends ``finished`` with its whole history.
    ``replace=True`` (``--overwrite``) first deletes the rows of runs recorded in that folder.
    """

    def __init__(self, path: str | Path | None, config: dict, run_dir: str | Path | None, run_id: str | None = None,
                 *, resume: bool = False, replace: bool = False):
        import sys

        self.store: Store | None = None
        self.run_id = None
        folder = str(Path(run_dir).resolve()) if run_dir is not None else None
        try:
            self.store = Store(path)
            existing = self.store.find_by_run_dir(folder) if resume and folder is not None else None
            while replace and folder is not None and (old := self.store.find_by_run_dir(folder)) is not None:
                self.store.delete_runs([old.id])  # its files were removed: the row would describe nothing
            if existing is not None:
                self.run_id = existing.id
                with self.store._write() as c:
                    c.execute("UPDATE runs SET config=?, config_hash=?, error=NULL, ended=NULL WHERE id=?",
                              (canonical_json(config), config_hash(config), self.run_id))
                self.store.set_status(self.run_id, "running")
            else:
                base = run_id or (Path(run_dir).name if run_dir is not None else config.get("name", "run"))
                self.run_id = self.store.new_run(base, config, status="running", run_dir=folder,
                                                 info={"source": "run"})
        except (sqlite3.Error, OSError) as err:
            print(f"warning: not recording the run in {path or default_store_path()}: {err}", file=sys.stderr)
            if self.store is not None:
                self.store.close()
            self.store = None

    def beat(self) -> None:
        if self.store is None:
            return
        try:
            self.store.heartbeat(self.run_id)
        except sqlite3.Error:  # a missed heartbeat must not stop a training
            pass

    def finish(self, result) -> None:
        if self.store is None:
            return
        run_dir = getattr(result, "run_dir", None)
        self.store.finish_run(self.run_id, history=result.history.records(), final=dict(result.final),
                              wall_time=float(result.wall_time), diagnostics=diagnostics_of(result),
                              run_dir=Path(run_dir).resolve() if run_dir is not None else None)

    def __enter__(self) -> "RunRecording":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if self.store is None:
            return
        try:
            if exc_type is not None:
                status = "interrupted" if issubclass(exc_type, KeyboardInterrupt) else "failed"
                self.store.set_status(self.run_id, status, error=f"{exc_type.__name__}: {exc}")
        finally:
            self.store.close()


def metric_mode(key: str) -> str:
    """``"max"`` for accuracy-like metrics, ``"min"`` for losses and errors."""
    k = key.lower()
    return "max" if any(s in k for s in ("acc", "auc", "f1", "precision", "recall", "score")) else "min"


def _flatten(data, prefix: str = "") -> dict:
    out = {}
    if isinstance(data, dict):
        for k, v in data.items():
            out.update(_flatten(v, f"{prefix}{k}."))
    elif isinstance(data, list) and data and all(isinstance(x, dict) for x in data):
        for i, v in enumerate(data):
            out.update(_flatten(v, f"{prefix}{i}."))
    else:
        out[prefix[:-1]] = data
    return out


def compare_runs(store: Store, run_ids: Sequence[str]) -> tuple[list[str], list[list], list[list[bool]]]:
    """Runs side by side: ``(header, rows, best)``; ``best[i][j]`` marks the best run of a metric row.

    Rows: status, epochs, wall time; every config field that differs between the runs (by dotted
    path, the name excluded); then for every metric of the histories the final value, the best value
    over the epochs and the epoch of the best (1-based, as the progress lines count), and the numbers
    of the evaluation after training (``final.*``). "Best" is the highest accuracy-like value and the
    lowest loss-like one (:func:`metric_mode`).
    """
    records = store.get_runs(list(run_ids))
    histories = [store.history(r.id) for r in records]
    header = ["", *(r.id for r in records)]
    rows: list[list] = []
    best: list[list[bool]] = []

    def add(label: str, values: list, mode: str | None = None) -> None:
        rows.append([label, *values])
        marks = [False] * len(values)
        nums = [(v, i) for i, v in enumerate(values) if isinstance(v, (int, float)) and not isinstance(v, bool)
                and not math.isnan(v)]
        if mode and len(records) > 1 and nums:
            target = (max if mode == "max" else min)(v for v, _ in nums)
            marks = [isinstance(v, (int, float)) and not isinstance(v, bool) and v == target for v in values]
        best.append(marks)

    add("status", [r.status for r in records])
    add("epochs", [len(h) for h in histories])
    add("time (s)", [r.wall_time if r.wall_time is not None else "" for r in records])
    flat = [_flatten({k: v for k, v in r.config.items() if k != "name"}) for r in records]
    keys = []
    for f in flat:
        keys.extend(k for k in f if k not in keys)
    for k in keys:
        vals = [f.get(k, "(absent)") for f in flat]
        if len({canonical_json(v) for v in vals}) > 1:
            add(k, [v if isinstance(v, (int, float, str)) or v is None else canonical_json(v) for v in vals])
    metrics: list[str] = []
    for h in histories:
        for rec in h:
            metrics.extend(k for k in rec if k not in metrics and k not in ("epoch", "time", "lr"))
    for m in metrics:
        mode = metric_mode(m)
        series = [[r[m] for r in h if isinstance(r.get(m), (int, float)) and not math.isnan(r[m])] for h in histories]
        finals = [s[-1] if s else "" for s in series]
        bests, epochs = [], []
        for h in histories:
            pts = [(r[m], r["epoch"]) for r in h if isinstance(r.get(m), (int, float)) and not math.isnan(r[m])]
            if pts:
                v, e = (max if mode == "max" else min)(pts, key=lambda p: p[0])
                bests.append(v)
                epochs.append(int(e) + 1)
            else:
                bests.append("")
                epochs.append("")
        add(f"{m} last epoch", finals, mode)
        add(f"{m} best", bests, mode)
        add(f"{m} best epoch", epochs)
    final_keys: list[str] = []
    for r in records:
        final_keys.extend(k for k in r.final if k not in final_keys)
    for k in final_keys:
        add(f"final {k}", [r.final.get(k, "") for r in records], metric_mode(k))
    return header, rows, best


def _fmt(v) -> str:
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        return f"{v:.4g}" if (abs(v) < 1e-3 and v != 0) or abs(v) >= 1e5 else f"{v:.4f}"
    return "" if v is None else str(v)


def format_table(header: Sequence[str], rows: Sequence[Sequence], fmt: str = "text",
                 marks: Sequence[Sequence[bool]] | None = None) -> str:
    """A table as aligned text (``*`` after a marked cell), Markdown or CSV."""
    cells = [[_fmt(v) for v in row] for row in rows]
    if marks is not None and fmt != "csv":
        for i, row in enumerate(marks):
            for j, m in enumerate(row):
                if m:
                    cells[i][j + 1] += " *"
    if fmt == "csv":
        import csv
        import io
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(header)
        w.writerows(cells)
        return buf.getvalue()
    if fmt == "markdown":
        lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
        lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in cells]
        return "\n".join(lines) + "\n"
    widths = [max(len(str(h)), *(len(r[i]) for r in cells)) if cells else len(str(h)) for i, h in enumerate(header)]
    lines = ["  ".join(str(h).ljust(w) for h, w in zip(header, widths)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    for row in cells:
        lines.append("  ".join((c.ljust(w) if i == 0 else c.rjust(w)) for i, (c, w) in enumerate(zip(row, widths))).rstrip())
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
# the command line: trainlab runs, trainlab compare


def _open_existing(path, command: str) -> Store | None:
    import sys

    path = Path(path) if path else default_store_path()
    if not path.exists():
        print(f"trainlab {command}: no results store at {path} yet ('trainlab run' and 'trainlab sweep' "
              "create it; --store FILE or TRAINLAB_STORE picks another)", file=sys.stderr)
        return None
    return Store(path)


def cli_runs(args) -> int:
    """``trainlab runs``: list (and filter) the runs or the sweeps of a store."""
    import sys
    from datetime import datetime

    import yaml

    store = _open_existing(args.store, "runs")
    if store is None:
        return 2
    with store:
        if args.sweeps:
            rows = [[s["id"], s["name"], s["n_points"], datetime.fromtimestamp(s["created"]).strftime("%Y-%m-%d %H:%M"),
                     s["out_dir"] or ""] for s in store.sweeps()]
            print(format_table(["sweep", "name", "runs", "created", "folder"], rows, args.format), end="")
            return 0
        where = {}
        for item in args.where or []:
            if "=" not in item:
                print(f"trainlab runs: --where {item!r} must look like path=value", file=sys.stderr)
                return 2
            key, raw = item.split("=", 1)
            where[key.strip()] = yaml.safe_load(raw)
        try:
            records = store.runs(status=args.status, sweep=args.sweep, name=args.name, where=where)
        except KeyError as err:
            print(f"trainlab runs: {err.args[0]}", file=sys.stderr)
            return 2
        present = {k for r in records for k in r.final}
        metrics = ([m.strip() for m in args.metrics.split(",") if m.strip()] if args.metrics else
                   [m for m in ("val_loss", "val_accuracy") if m in present] or sorted(present)[:3])
        if args.sort:
            # the columns any run of the store has, so that a filter matching nothing does not
            # turn a valid column into an error (nor a typo into an empty listing)
            known = present | {k for r in store.runs() for k in r.final}
            if args.sort not in known:
                allowed = ", ".join(sorted(known)) if known else "none yet (no run in the store has finished)"
                print(f"trainlab runs: --sort {args.sort!r} is not a final number of the runs in {store.path}; "
                      f"allowed: {allowed}", file=sys.stderr)
                return 2
            sign = -1.0 if metric_mode(args.sort) == "max" else 1.0

            def key(r):
                v = r.final.get(args.sort)
                return (v is None or not isinstance(v, (int, float)), sign * v if isinstance(v, (int, float)) else 0.0)
            records.sort(key=key)
        if args.limit is not None:
            records = records[:args.limit]
        header = ["id", "status", "created", "time (s)", *metrics]
        rows = [[r.id, r.status, datetime.fromtimestamp(r.created).strftime("%Y-%m-%d %H:%M"),
                 r.wall_time if r.wall_time is not None else "", *(r.final.get(m, "") for m in metrics)]
                for r in records]
        print(format_table(header, rows, args.format), end="")
        if args.format == "text":
            print(f"{len(rows)} run(s) in {store.path}")
    return 0


def cli_compare(args) -> int:
    """``trainlab compare RUN...``: runs side by side."""
    import sys

    store = _open_existing(args.store, "compare")
    if store is None:
        return 2
    with store:
        try:
            header, rows, best = compare_runs(store, args.runs)
        except KeyError as err:
            print(f"trainlab compare: {err.args[0]}", file=sys.stderr)
            return 2
    print(format_table(header, rows, args.format, best), end="")
    return 0
