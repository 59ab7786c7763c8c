import csv
import io

import pytest

from trainlab.cli import main
from trainlab.experiments.store import Store, compare_runs, format_table


def make_store(path):
    """Three runs whose best epochs are known: a improves to the end, b peaks at epoch 2, c failed."""
    st = Store(path)
    hists = {
        "run-a": [0.9, 0.7, 0.5, 0.4],
        "run-b": [0.8, 0.3, 0.6, 0.7],
    }
    for i, (rid, losses) in enumerate(hists.items()):
        cfg = {"name": rid, "seed": i, "optimizer": {"name": "sgd", "lr": [0.1, 0.01][i]}, "train": {"epochs": 4}}
        st.add_run(rid, cfg, status="running")
        hist = [{"epoch": e, "loss": l + 0.05, "val_loss": l, "val_accuracy": 1 - l, "lr": 0.1, "time": 0.1}
                for e, l in enumerate(losses)]
        st.finish_run(rid, history=hist, final={"val_loss": losses[-1], "val_accuracy": 1 - losses[-1]},
                      wall_time=2.0 + i)
    st.add_run("run-c", {"name": "run-c", "seed": 2, "optimizer": {"name": "sgd", "lr": 10.0}, "train": {"epochs": 4}})
    st.finish_run("run-c", history=[{"epoch": 0, "loss": 5.0, "val_loss": 6.0, "val_accuracy": 0.5}], final={},
                  wall_time=0.5, status="failed", error="NonFiniteLossError: training loss became nan")
    return st


def row(rows, label):
    return next(r[1:] for r in rows if r[0] == label)


def test_compare_table_final_best_and_epoch_of_best(tmp_path):
    with make_store(tmp_path / "s.sqlite") as st:
        header, rows, best = compare_runs(st, ["run-a", "run-b", "run-c"])
    assert header == ["", "run-a", "run-b", "run-c"]
    assert row(rows, "status") == ["finished", "finished", "failed"]
    assert row(rows, "epochs") == [4, 4, 1]
    assert row(rows, "time (s)") == [2.0, 3.0, 0.5]
    assert row(rows, "optimizer.lr") == [0.1, 0.01, 10.0] and row(rows, "seed") == [0, 1, 2]
    assert not any(r[0] in ("train.epochs", "name", "optimizer.name") for r in rows)  # equal fields are left out
    assert row(rows, "val_loss last epoch") == [0.4, 0.7, 6.0]
    assert row(rows, "val_loss best") == [0.4, 0.3, 6.0]
    assert row(rows, "val_loss best epoch") == [4, 2, 1]  # 1-based, as the progress lines count
    assert row(rows, "val_accuracy best") == pytest.approx([0.6, 0.7, 0.5])
    assert row(rows, "val_accuracy best epoch") == [4, 2, 1]
    final_acc = row(rows, "final val_accuracy")
    assert final_acc[:2] == pytest.approx([0.6, 0.3]) and final_acc[2] == ""  # the failed run has no final numbers
    labels = [r[0] for r in rows]
    assert "lr best" not in labels and "time best" not in labels
    marks = dict(zip(labels, best))
    assert marks["val_loss best"] == [False, True, False] and marks["val_accuracy best"] == [False, True, False]
    assert marks["val_loss last epoch"] == [True, False, False]


def test_table_formats(tmp_path):
    with make_store(tmp_path / "s.sqlite") as st:
        header, rows, best = compare_runs(st, ["run-a", "run-b"])
    text = format_table(header, rows, "text", best)
    lines = text.splitlines()
    assert lines[0].split() == ["run-a", "run-b"] and set(lines[1]) <= {"-", " "}
    assert any(line.startswith("val_loss best ") and line.endswith("0.3000 *") for line in lines)
    md = format_table(header, rows, "markdown", best)
    assert md.startswith("|  | run-a | run-b |") and "| val_loss best epoch | 4 | 2 |" in md
    parsed = list(csv.reader(io.StringIO(format_table(header, rows, "csv", best))))
    assert parsed[0] == header and ["val_loss best", "0.4000", "0.3000"] in parsed  # no marks in CSV


def test_cli_runs_lists_and_filters(tmp_path, capsys):
    path = tmp_path / "s.sqlite"
    make_store(path).close()
    assert main(["runs", "--store", str(path)]) == 0
    out = capsys.readouterr().out
    assert all(r in out for r in ("run-a", "run-b", "run-c")) and "3 run(s)" in out
    assert main(["runs", "--store", str(path), "--status", "failed"]) == 0
    out = capsys.readouterr().out
    assert "run-c" in out and "run-a" not in out
    assert main(["runs", "--store", str(path), "--where", "optimizer.lr=0.01"]) == 0
    out = capsys.readouterr().out
    assert "run-b" in out and "run-a" not in out
    assert main(["runs", "--store", str(path), "--sort", "val_accuracy", "--format", "csv"]) == 0
    ids = [r[0] for r in csv.reader(io.StringIO(capsys.readouterr().out))][1:]
    assert ids == ["run-a", "run-b", "run-c"]  # 0.6, 0.3, then the run without a number
    assert main(["runs", "--store", str(tmp_path / "none.sqlite")]) == 2
    assert "no results store" in capsys.readouterr().err


def test_cli_compare(tmp_path, capsys):
    path = tmp_path / "s.sqlite"
    make_store(path).close()
    assert main(["compare", "run-a", "run-b", "--store", str(path)]) == 0
    out = capsys.readouterr().out
    assert "val_loss best epoch" in out and "optimizer.lr" in out and "*" in out
    assert main(["compare", "run-", "--store", str(path)]) == 2
    assert "matches 3 runs" in capsys.readouterr().err
    assert main(["compare", "nope", "--store", str(path)]) == 2
    assert "no run 'nope'" in capsys.readouterr().err


def test_trainlab_run_records_its_run(tmp_path, capsys):
    cfg = tmp_path / "exp.yaml"
    cfg.write_text("name: tiny\ndata: {name: moons, n_samples: 200}\nmodel: {hidden: [8]}\n"
                   "optimizer: {name: sgd, lr: 0.1}\ntrain: {epochs: 3, batch_size: 32}\ndiagnostics: null\n")
    store = tmp_path / "s.sqlite"
    out = tmp_path / "run1"
    assert main(["run", str(cfg), "--out", str(out), "-q", "--store", str(store)]) == 0
    with Store(store) as st:
        (rec,) = st.runs()
        assert rec.id == "run1" and rec.status == "finished" and rec.run_dir == str(out)
        assert len(st.history("run1")) == 3 and rec.final["val_accuracy"] > 0.5
        assert rec.config["optimizer"]["lr"] == 0.1
    assert main(["run", str(cfg), "--out", str(tmp_path / "run2"), "-q", "--no-store", "--store", str(store)]) == 0
    with Store(store) as st:
        assert [r.id for r in st.runs()] == ["run1"]
    capsys.readouterr()
    assert main(["compare", "run1", "--store", str(store)]) == 0
    assert "val_accuracy best epoch" in capsys.readouterr().out


def test_cli_compare_writes_a_figure_of_the_runs_curves(tmp_path, cli):
    make_store(tmp_path / "s.sqlite").close()
    res = cli("compare", "run-a", "run-b", "run-c", "--store", "s.sqlite")
    assert res.returncode == 0, res.stderr
    figure = tmp_path / "compare" / "run-a-run-b-run-c.png"
    assert res.stdout.rstrip().endswith(f"figure: {figure.relative_to(tmp_path)}") and figure.stat().st_size > 5000
    res = cli("compare", "run-a", "run-b", "--store", "s.sqlite", "--format", "csv", "--figure", "out/f.png")
    assert res.returncode == 0 and res.stderr == "figure: out/f.png\n"  # stdout stays pure CSV
    assert list(csv.reader(io.StringIO(res.stdout)))[0] == ["", "run-a", "run-b"]
    assert (tmp_path / "out" / "f.png").is_file()
    res = cli("compare", "run-a", "--store", "s.sqlite", "--no-figure", "--figure", "none.png")
    assert res.returncode == 0 and "figure" not in res.stdout and not (tmp_path / "none.png").exists()
