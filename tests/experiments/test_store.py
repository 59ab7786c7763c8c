import sqlite3
import subprocess
import sys
import textwrap

import pytest

import trainlab.experiments.store as store_module
from trainlab.experiments.store import Store, config_hash, metric_mode, unique_run_id


def _history(n, start=1.0):
    return [{"epoch": e, "loss": start / (e + 1), "val_loss": start / (e + 1) + 0.1,
             "val_accuracy": 0.5 + 0.04 * e} for e in range(n)]


def test_runs_round_trip_with_history_final_and_diagnostics(tmp_path):
    with Store(tmp_path / "s.sqlite") as st:
        cfg = {"name": "a", "seed": 1, "optimizer": {"name": "sgd", "lr": 0.1}}
        st.add_run("run-a", cfg, status="running", run_dir=tmp_path / "a")
        st.finish_run("run-a", history=_history(3), final={"val_accuracy": 0.6, "val_loss": float("nan")},
                      wall_time=1.5, diagnostics={"summary": {"records": [1, 2]}}, info={"batched": 4})
        rec = st.get_run("run-a")
        assert rec.status == "finished" and rec.wall_time == 1.5 and rec.run_dir == str(tmp_path / "a")
        assert rec.final == {"val_accuracy": 0.6, "val_loss": None}  # non-finite numbers are stored as NULL
        assert rec.config == cfg and rec.config_hash == config_hash(cfg)
        assert rec.get("optimizer.lr") == 0.1 and rec.info == {"batched": 4}
        assert st.history("run-a") == _history(3)
        assert st.diagnostics("run-a") == {"summary": {"records": [1, 2]}}
        assert st.count("metrics") == 9
        assert st._conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_config_hash_ignores_the_name_only():
    a = {"name": "x", "seed": 0, "optimizer": {"lr": 0.1, "name": "sgd"}}
    assert config_hash(a) == config_hash({**a, "name": "y"})
    assert config_hash(a) == config_hash({"optimizer": {"name": "sgd", "lr": 0.1}, "seed": 0, "name": "z"})
    assert config_hash(a) != config_hash({**a, "seed": 1})


def test_filters_prefixes_and_lookup_by_hash(tmp_path):
    with Store(tmp_path / "s.sqlite") as st:
        for i, (lr, status) in enumerate([(0.1, "finished"), (0.01, "finished"), (0.1, "failed")]):
            cfg = {"name": f"lr-{i}", "seed": i, "optimizer": {"name": "sgd", "lr": lr}}
            st.add_run(f"lr-{i}", cfg)
            st.finish_run(f"lr-{i}", history=_history(2), final={"val_accuracy": 0.5 + i / 10}, wall_time=1.0,
                          status=status, error="boom" if status == "failed" else None)
        assert {r.id for r in st.runs(where={"optimizer.lr": 0.1})} == {"lr-0", "lr-2"}
        assert [r.id for r in st.runs(status="failed")] == ["lr-2"]
        assert len(st.runs(name="lr-*")) == 3 and st.runs(name="nothing*") == []
        assert st.get_run("lr-1").id == "lr-1"
        with pytest.raises(KeyError, match="matches 3 runs"):
            st.get_run("lr-")
        with pytest.raises(KeyError, match="no run 'zzz'"):
            st.get_run("zzz")
        h = config_hash({"name": "other", "seed": 2, "optimizer": {"name": "sgd", "lr": 0.1}})
        assert st.find_by_hash(h) is None  # failed is not finished
        assert st.find_by_hash(h, status=("finished", "failed")).id == "lr-2"
        rows = st.records(status="finished")
        assert {r["id"] for r in rows} == {"lr-0", "lr-1"} and all("final.val_accuracy" in r for r in rows)


def test_reusing_an_id_resets_the_old_history(tmp_path):
    with Store(tmp_path / "s.sqlite") as st:
        st.add_run("r", {"name": "r"})
        st.finish_run("r", history=_history(5), final={}, wall_time=1.0, status="failed", error="nan")
        st.add_run("r", {"name": "r"}, status="queued")
        assert st.history("r") == [] and st.get_run("r").error is None and st.get_run("r").status == "queued"


def test_dataframe_needs_pandas_and_says_what_to_use_instead(tmp_path, monkeypatch):
    with Store(tmp_path / "s.sqlite") as st:
        st.add_run("r", {"name": "r"})
        monkeypatch.setitem(sys.modules, "pandas", None)  # as if pandas were not installed
        with pytest.raises(ImportError, match="records"):
            st.dataframe()


def test_dataframe_with_pandas(tmp_path):
    pd = pytest.importorskip("pandas")
    with Store(tmp_path / "s.sqlite") as st:
        st.add_run("r", {"name": "r"})
        df = st.dataframe()
        assert isinstance(df, pd.DataFrame) and list(df["id"]) == ["r"]


def test_unique_run_ids(tmp_path):
    with Store(tmp_path / "s.sqlite") as st:
        assert unique_run_id(st, "run1") == "run1"
        st.add_run("run1", {"name": "a"})
        st.add_run("run1-2", {"name": "a"})
        assert unique_run_id(st, "run1") == "run1-3"


def test_metric_mode():
    assert metric_mode("val_accuracy") == "max" and metric_mode("val_loss") == "min"


WRITER = textwrap.dedent("""
    import importlib.util, sys, time
    spec = importlib.util.spec_from_file_location("store_only", sys.argv[1])
    mod = sys.modules["store_only"] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)          # the module needs only the standard library
    worker, n, epochs = sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
    while time.time() < float(sys.argv[6]):  # start together, so the writers really overlap
        time.sleep(0.005)
    st = mod.Store(sys.argv[2], timeout=120)
    for i in range(n):
        rid = f"w{worker}-{i}"
        st.add_run(rid, {"name": rid, "seed": i, "worker": worker})
        st.set_status(rid, "running")
        hist = [{"epoch": e, "loss": 1.0 / (e + 1), "val_loss": 2.0, "val_accuracy": 0.5} for e in range(epochs)]
        st.finish_run(rid, history=hist, final={"val_accuracy": 0.5}, wall_time=0.1,
                      diagnostics={"probe": [worker, i]})
        st.runs(status="finished", limit=3)  # readers in between writes
    st.close()
""")


def test_concurrent_writer_processes_lose_no_row(tmp_path):
    import time

    path = tmp_path / "shared.sqlite"
    Store(path).close()
    writers, n, epochs = 4, 25, 8
    start = time.time() + 1.0
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, store_module.__file__, str(path), str(w), str(n),
                               str(epochs), str(start)], stderr=subprocess.PIPE) for w in range(writers)]
    errors = [p.communicate(timeout=240)[1].decode() for p in procs]
    assert [p.returncode for p in procs] == [0] * writers, errors
    with Store(path) as st:
        assert st.count("runs") == writers * n
        assert st.count("metrics") == writers * n * epochs * 3
        assert st.count("diagnostics") == writers * n
        assert len(st.runs(status="finished")) == writers * n
        for w in range(writers):
            assert st.history(f"w{w}-{n - 1}")[-1]["epoch"] == epochs - 1
    # the file is a plain SQLite database any tool can read
    con = sqlite3.connect(path)
    assert con.execute("SELECT COUNT(DISTINCT json_extract(config, '$.worker')) FROM runs").fetchone()[0] == writers
    con.close()


def test_a_write_cut_short_by_ctrl_c_leaves_no_transaction_open(tmp_path, monkeypatch):
    """Ctrl-C between a write's BEGIN and its body, or during its COMMIT: the next write still
    works (it used to fail with 'cannot start a transaction within a transaction'), and what the
    cut write did is gone."""
    with Store(tmp_path / "s.sqlite") as st:
        cfg = {"name": "a", "seed": 1}
        st.add_run("run-a", cfg)
        st._conn.execute("BEGIN IMMEDIATE")  # as if KeyboardInterrupt struck right after BEGIN
        st._conn.execute("UPDATE runs SET status = 'half-written' WHERE id = 'run-a'")
        st.add_run("run-b", cfg)
        assert st.get_run("run-a").status == "queued" and st.get_run("run-b").status == "queued"

        class Interrupting:  # a connection whose COMMIT is interrupted
            def __init__(self, conn):
                self.conn = conn

            def execute(self, sql, *args):
                if sql == "COMMIT":
                    raise KeyboardInterrupt
                return self.conn.execute(sql, *args)

            def __getattr__(self, name):
                return getattr(self.conn, name)

        real = st._conn
        monkeypatch.setattr(st, "_conn", Interrupting(real))
        with pytest.raises(KeyboardInterrupt):
            st.add_run("run-c", cfg)
        monkeypatch.setattr(st, "_conn", real)
        assert not real.in_transaction
        st.add_run("run-d", cfg)
        assert sorted(r.id for r in st.runs()) == ["run-a", "run-b", "run-d"]
