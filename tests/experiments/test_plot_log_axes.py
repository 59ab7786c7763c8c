"""Log axes label their ticks as plain numbers: trainlab turns mathtext off, so matplotlib's default
log labels ($\\mathdefault{10^{-1}}$) would be printed as raw TeX source."""
import pytest

from trainlab.diagnostics.verdicts import Verdict
from trainlab.experiments import plots


@pytest.fixture
def figures(monkeypatch):
    """Every figure a plot function saves, kept for inspection."""
    kept = []
    save = plots._save

    def keep(fig, path):
        out = save(fig, path)  # saving draws the figure, so the tick labels hold their text
        kept.append(fig)
        return out

    monkeypatch.setattr(plots, "_save", keep)
    return kept


def _tick_texts(fig):
    return [t.get_text() for ax in fig.axes for axis in (ax.xaxis, ax.yaxis)
            for t in axis.get_ticklabels(which="both") if t.get_text()]


def test_the_evidence_figure_labels_a_narrow_log_axis_in_plain_numbers(figures, tmp_path):
    records = [{"epoch": e, "loss": 0.743 - 0.0001 * e, "val_loss": 0.745 - 0.0001 * e} for e in range(30)]
    v = Verdict("lr_too_low", 1, "too low", "raise it",
                {"rule": "steady negligible progress",
                 "mark": {"series": "loss", "epoch": 1, "threshold": 0.668, "label": "10% below the start"}})
    assert plots.plot_verdict_evidence(records, v, tmp_path / "ev.png") is not None
    texts = _tick_texts(figures[-1])
    assert texts and not any("$" in t or "mathdefault" in t for t in texts), texts


def test_layer_series_on_a_log_axis_labels_its_decades_in_plain_numbers(figures, tmp_path):
    series = {"blocks.0.linear": [(-1, 0.2), (0, 0.05), (1, 0.01)], "out": [(-1, 0.3), (0, 0.02), (1, 0.004)]}
    plots.plot_layer_series(series, tmp_path / "g.png", ylabel="grad", log=True)
    texts = _tick_texts(figures[-1])
    assert any(t in ("0.01", "0.1") for t in texts), texts
    assert not any("$" in t or "mathdefault" in t for t in texts), texts


def test_the_evidence_figure_of_a_short_run_counts_whole_epochs(figures, tmp_path):
    records = [{"epoch": e, "loss": 0.7 * 10 ** (5 * e)} for e in range(5)]
    v = Verdict("diverging", 2, "diverging", "lower it",
                {"rule": "non-finite loss", "mark": {"series": "loss", "epoch": 2, "threshold": 7.0}})
    plots.plot_verdict_evidence(records, v, tmp_path / "ev.png")
    xs = [t.get_text() for t in figures[-1].axes[0].xaxis.get_ticklabels() if t.get_text()]
    assert xs and all(x.lstrip("−-").isdigit() for x in xs), xs
