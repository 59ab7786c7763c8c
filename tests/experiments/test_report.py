"""Run reports and their figures: trainlab.report, early stopping, lr, decision boundary, confusion matrix,
1-based epochs in files and tables, and what a reader of the figures needs (legends, ticks, marks)."""
import csv
import json
import math
import re

import pytest
import torch

import trainlab
from trainlab.data import moons, split
from trainlab.experiments import plots
from trainlab.experiments.runner import run_experiment
from trainlab.nn import MLP
from trainlab.schedules import Cosine
from trainlab.train.callbacks import EarlyStopping, LearningRateScheduler


class Feed(trainlab.Callback):
    """Overwrites ``val_loss`` with a scripted sequence, so early stopping stops where the test says."""

    def __init__(self, values):
        self.values = values

    def on_epoch_end(self, epoch, logs):
        logs["val_loss"] = self.values[epoch]


def _fit_with_stop():
    torch.manual_seed(0)
    train, val = split(moons(160, noise=0.2, seed=0), (0.7, 0.3), seed=0)
    model = MLP(2, hidden=(8,), out_features=2)
    es = EarlyStopping(patience=2, restore_best_weights=True)
    history = trainlab.fit(model, train, val, loss="cross_entropy", epochs=10, batch_size=32, seed=0,
                           optimizer=torch.optim.SGD(model.parameters(), lr=0.1), verbose=False,
                           callbacks=[Feed([0.9, 0.5, 0.6, 0.7, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1]), es,
                                      LearningRateScheduler(Cosine())])
    return model, history, es


def _figures(html: str) -> int:
    return html.count("<img src=\"data:image/png;base64,")


def test_report_from_python_has_the_run_reports_sections(tmp_path):
    model, history, es = _fit_with_stop()
    assert (es.best_epoch, es.stopped_epoch) == (2, 4)  # epochs count from 1
    path = trainlab.report(history, tmp_path / "moons.html")
    html = path.read_text()
    assert "Early stopping ended training after epoch 4 of 10: val_loss did not improve for 2 epochs" in html
    assert "best 0.5 at epoch 2" in html and "The weights of epoch 2 were restored." in html
    assert "and the learning rate" in html and "decision boundary" in html and "confusion matrix on the " \
                                                                                 "validation data (48 samples)" in html
    assert _figures(html) == 3  # curves (with the lr), decision boundary, confusion matrix: all embedded
    assert "src=\"http" not in html and "src=\"/" not in html
    first_row = re.search(r"<h2>Per-epoch history</h2>\s*<table><tr>(.*?)</tr>\s*<tr><td>(\d+)</td>", html, re.S)
    assert first_row.group(1).startswith("<th>epoch</th>") and first_row.group(2) == "1"
    # the final numbers are those of the restored (best) weights
    val_acc = trainlab.evaluate(model, history.loop.val, "cross_entropy")["accuracy"]
    assert f"<td>val_accuracy</td><td>{val_acc:.4f}</td>" in html


def test_report_of_a_regression_has_no_class_figures(tmp_path):
    torch.manual_seed(0)
    X = torch.randn(64, 3)
    y = X.sum(1, keepdim=True)
    model = MLP(3, hidden=(4,), out_features=1, head="linear")
    history = trainlab.fit(model, (X, y), (X, y), loss="mse", epochs=2, verbose=False,
                           optimizer=torch.optim.SGD(model.parameters(), lr=0.05))
    html = trainlab.report(history, tmp_path / "r.html", title="regression").read_text()
    assert _figures(html) == 1 and "confusion" not in html and "Early stopping" not in html
    assert "<title>trainlab report: regression</title>" in html


def test_run_folder_counts_epochs_from_1_and_reports_the_stop(tmp_path, capsys):
    cfg = {"name": "stop", "seed": 0, "data": {"name": "moons", "n_samples": 160},
           "model": {"hidden": [8]}, "optimizer": {"name": "sgd", "lr": 0.001},
           "train": {"epochs": 12, "batch_size": 32},
           "callbacks": [{"name": "early_stopping", "monitor": "val_accuracy", "patience": 1}]}
    result = run_experiment(cfg, run_dir=tmp_path / "run", verbose=True)
    stop = result.extras["early_stops"][0]
    assert stop["stopped_epoch"] == len(result.history.epoch) < 12  # lr 0.001 barely moves: it stops early
    err = capsys.readouterr().err
    assert f"early stopping after epoch {stop['stopped_epoch']} of 12: val_accuracy did not improve for 1 epoch" in err
    rows = list(csv.DictReader((tmp_path / "run" / "metrics.csv").open()))
    assert [int(r["epoch"]) for r in rows] == list(range(1, len(rows) + 1))
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert [r["epoch"] for r in metrics["history"]] == list(range(1, len(rows) + 1))
    html = (tmp_path / "run" / "report.html").read_text()
    assert f"Early stopping ended training after epoch {stop['stopped_epoch']} of 12" in html
    assert (tmp_path / "run" / "decision_boundary.png").is_file()
    assert (tmp_path / "run" / "confusion_matrix.png").is_file()


@pytest.fixture
def captured(monkeypatch):
    """The matplotlib figure a plot function draws, instead of its file."""
    figs = []

    def keep(fig, path):
        figs.append(fig)
        return path
    monkeypatch.setattr(plots, "_save", keep)
    return figs


def test_curves_mark_the_stop_plot_the_lr_and_keep_the_legend_off_the_curves(captured, tmp_path):
    records = [{"epoch": e, "loss": 1.0 / (e + 1), "val_loss": 1.2 / (e + 1), "lr": 0.1 * 0.8 ** e}
               for e in range(7)]
    plots.plot_curves(records, tmp_path / "c.png", early_stops=[{"monitor": "val_loss", "best_epoch": 5,
                                                                 "stopped_epoch": 7}])
    (fig,) = captured
    axes = fig.axes
    assert [a.get_ylabel() for a in axes] == ["loss", "learning rate"]
    for ax in axes:
        assert ax.get_legend() is None  # the one legend is the figure's, under the panels
        assert all(float(t).is_integer() for t in ax.get_xticks())
        vertical = sorted(line.get_xdata()[0] for line in ax.get_lines() if line.get_linestyle() in ("--", ":")
                          and len(set(line.get_xdata())) == 1)
        assert vertical == [5, 7]
    assert fig.legends and {t.get_text() for t in fig.legends[0].get_texts()} >= {
        "train", "validation", "best val_loss (epoch 5)", "early stop (after epoch 7)", "learning rate"}
    assert [x for x, _ in zip(*axes[0].get_lines()[0].get_data())][0] == 1  # the first epoch is drawn at 1


def test_constant_lr_gets_no_panel_and_a_diverged_curve_ends_in_a_cross(captured, tmp_path):
    records = [{"epoch": 0, "loss": 1.0, "lr": 0.1}, {"epoch": 1, "loss": 0.5, "lr": 0.1},
               {"epoch": 2, "loss": math.nan, "lr": 0.1}]
    plots.plot_curves(records, tmp_path / "c.png")
    (fig,) = captured
    assert [a.get_ylabel() for a in fig.axes] == ["loss"]
    crosses = [line for line in fig.axes[0].get_lines() if line.get_marker() == "x"]
    assert len(crosses) == 1 and list(crosses[0].get_xdata()) == [2]


def test_overlaid_curves_mark_diverged_runs_outside_the_axes_legend(captured, tmp_path):
    ok = [{"epoch": e, "val_loss": 1.0 - 0.1 * e} for e in range(4)]
    bad = [{"epoch": 0, "val_loss": 2.0}, {"epoch": 1, "val_loss": 3.0}]
    plots.plot_overlaid_curves([("a", 0, ok), ("b", 1, bad, True)], ["val_loss"], tmp_path / "o.png")
    (fig,) = captured
    ax = fig.axes[0]
    crosses = [line for line in ax.get_lines() if line.get_marker() == "x"]
    assert len(crosses) == 1 and list(crosses[0].get_xdata()) == [2] and list(crosses[0].get_ydata()) == [3.0]
    assert ax.get_legend() is None and {t.get_text() for t in fig.legends[0].get_texts()} == {"a", "b", "diverged"}
    assert all(float(t).is_integer() for t in ax.get_xticks())


def test_confusion_matrix_and_decision_boundary_draw(tmp_path):
    path = plots.plot_confusion_matrix([[5, 1], [0, 4]], tmp_path / "cm.png")
    assert path.stat().st_size > 1000
    model = MLP(2, hidden=(4,), out_features=3).eval()
    X = torch.randn(30, 2)
    y = torch.randint(0, 3, (30,))
    path = plots.plot_decision_boundary(lambda x: torch.softmax(model(x), 1), (X, y), (X[:5], y[:5]),
                                        tmp_path / "db.png", grid=40)
    assert path.stat().st_size > 1000


def test_panels_put_named_values_on_labelled_ticks(captured, tmp_path):
    plots.plot_panels([{"series": {"adam": ([0, 1, 2], [0.8, 0.9, 0.85])}, "xticklabels": ["32", "128", "full"]},
                       {"series": {"adam": ([1e-3, 1e-2, 1e-1], [0.8, 0.9, 0.5])}, "logx": True}],
                      tmp_path / "p.png")
    (fig,) = captured
    named, numeric = fig.axes[:2]
    assert [t.get_text() for t in named.get_xticklabels()] == ["32", "128", "full"]
    assert numeric.get_xscale() == "log" and list(numeric.get_lines()[0].get_xdata()) == [1e-3, 1e-2, 1e-1]


def test_metrics_json_counts_diagnostics_and_verdict_epochs_as_the_history_does(tmp_path):
    cfg = {"name": "diag", "seed": 0, "data": {"name": "moons", "n_samples": 120}, "model": {"hidden": [6]},
           "optimizer": {"name": "sgd", "lr": 0.05}, "train": {"epochs": 2, "batch_size": 32},
           "diagnostics": {"every": 1, "spectra": False}}
    run_experiment(cfg, run_dir=tmp_path / "run", verbose=False)
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert [r["epoch"] for r in metrics["diagnostics"]["records"]] == [0, 1, 2]  # 0: at initialization
    assert all(v["epoch"] >= 0 for v in metrics["verdicts"])


def test_fit_says_when_and_why_early_stopping_ended_training(capsys):
    torch.manual_seed(0)
    model = MLP(2, hidden=(4,), out_features=2)
    X, y = torch.randn(40, 2), torch.randint(0, 2, (40,))
    trainlab.fit(model, (X, y), (X, y), loss="cross_entropy", epochs=10, seed=0,
                 optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
                 callbacks=[Feed([0.9, 0.5, 0.6, 0.7] + [0.1] * 6), EarlyStopping(patience=2)])
    lines = capsys.readouterr().err.splitlines()
    assert lines[-2].startswith("epoch  4/10")
    assert lines[-1] == ("early stopping after epoch 4 of 10: val_loss did not improve for 2 epochs (patience 2); "
                         "best 0.5 at epoch 2")
