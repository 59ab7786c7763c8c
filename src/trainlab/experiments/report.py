"""Self-contained HTML reports: figures embedded as base64 PNG, tables, the resolved config.

A report is a list of sections; each section has a heading and any of: paragraphs of text, a
table (header + rows), figures (PNG files, embedded), and preformatted text. No external assets,
so the file can be mailed or archived alone.
"""
from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from trainlab.train.checkpoint import atomic_write_bytes
from trainlab.train.rng import preserved_rng


@dataclass
class Section:
    title: str
    text: list[str] = field(default_factory=list)
    table: tuple[Sequence[str], Sequence[Sequence]] | None = None
    figures: list[tuple[str, Path]] = field(default_factory=list)  # (caption, png path)
    pre: str | None = None
    css_class: str = ""


def _cell(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}" if abs(v) < 1e-3 and v != 0 else f"{v:.4f}"
    return html.escape(str(v))


def _img(path: Path) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode()
    return f'<img src="data:image/png;base64,{data}" alt="">'


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1100px;margin:2rem auto;
padding:0 1rem;color:#1d1d1f;line-height:1.45}
h1{font-size:1.6rem;margin-bottom:.2rem} h2{font-size:1.2rem;border-bottom:1px solid #ddd;padding-bottom:.2rem;
margin-top:2rem} .sub{color:#666;margin-top:0}
table{border-collapse:collapse;margin:.5rem 0} td,th{border:1px solid #ddd;padding:.3rem .6rem;text-align:right}
th{background:#f5f5f7} td:first-child,th:first-child{text-align:left}
figure{display:inline-block;margin:.5rem 1rem .5rem 0;vertical-align:top} figure img{max-width:100%}
figcaption{color:#555;font-size:.9rem} pre{background:#f5f5f7;padding:.8rem;overflow:auto;font-size:.85rem}
.verdicts p{padding:.4rem .7rem;border-left:4px solid #d70;background:#fff7ee;margin:.3rem 0}
.ok p{border-left-color:#2a2;background:#f2fbf2} .pass{color:#2a2;font-weight:600} .fail{color:#c22;font-weight:600}
"""


def render_report(title: str, sections: Sequence[Section], subtitle: str = "") -> str:
    """The whole HTML document as a string."""
    out = ["<!doctype html><html><head><meta charset='utf-8'>",
           f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>",
           f"<h1>{html.escape(title)}</h1>"]
    if subtitle:
        out.append(f"<p class='sub'>{html.escape(subtitle)}</p>")
    for s in sections:
        out.append(f"<section class='{html.escape(s.css_class)}'><h2>{html.escape(s.title)}</h2>")
        out.extend(f"<p>{t}</p>" if t.startswith("<") else f"<p>{html.escape(t)}</p>" for t in s.text)
        if s.table is not None:
            header, rows = s.table
            out.append("<table><tr>" + "".join(f"<th>{html.escape(str(h))}</th>" for h in header) + "</tr>")
            out.extend("<tr>" + "".join(f"<td>{_cell(v)}</td>" for v in row) + "</tr>" for row in rows)
            out.append("</table>")
        for caption, path in s.figures:
            out.append(f"<figure>{_img(path)}<figcaption>{html.escape(caption)}</figcaption></figure>")
        if s.pre is not None:
            out.append(f"<pre>{html.escape(s.pre)}</pre>")
        out.append("</section>")
    out.append("</body></html>")
    return "\n".join(out)


def write_report(path: str | Path, title: str, sections: Sequence[Section], subtitle: str = "") -> Path:
    path = Path(path)
    atomic_write_bytes(path, render_report(title, sections, subtitle).encode())
    return path


# ---- the report of one training run (shared by run folders and trainlab.report) ---------------


def epoch_records(records: Sequence[dict]) -> list[dict]:
    """History records as files and tables show them: epochs counted from 1 (History counts from 0)."""
    return [{**r, "epoch": int(r["epoch"]) + 1} for r in records]


def early_stops(callbacks) -> list[dict]:
    """What each :class:`~trainlab.train.callbacks.EarlyStopping` among ``callbacks`` did (1-based epochs)."""
    from trainlab.train.callbacks import EarlyStopping

    return [{"monitor": cb.monitor, "best_epoch": cb.best_epoch, "best": cb.best, "stopped_epoch": cb.stopped_epoch,
             "patience": cb.patience, "reason": cb.reason,
             "restored": bool(cb.restore_best_weights and cb.best_weights is not None)}
            for cb in callbacks if isinstance(cb, EarlyStopping)]


def stop_sentence(stop: dict, epochs_planned: int | None = None) -> str:
    """Early stopping in one sentence: when it stopped and why, or that it did not."""
    restored = (f" The weights of epoch {stop['best_epoch']} were restored." if stop["restored"] else
                " The final weights are those of the last epoch run.")
    if stop["stopped_epoch"]:
        planned = f" of {epochs_planned}" if epochs_planned else ""
        return f"Early stopping ended training after epoch {stop['stopped_epoch']}{planned}: {stop['reason']}." + restored
    best = f"; best {stop['monitor']} {stop['best']:.4g} at epoch {stop['best_epoch']}" if stop["best_epoch"] else ""
    return (f"Early stopping (monitoring {stop['monitor']}, patience {stop['patience']}) did not stop "
            f"training{best}." + (restored if stop["restored"] else ""))


def _as_xy(ds):
    if ds is None:
        return None
    X, y = (ds.X, ds.y) if hasattr(ds, "X") else ds
    return X, y


def prediction_sections(model, loss, train, val, fig_dir: Path, max_classes: int = 20) -> list[Section]:
    """For a classifier: the decision boundary (2-D inputs) and the confusion matrix on validation data.

    ``loss`` is the run's :class:`~trainlab.losses.Loss`; ``train``/``val`` are datasets or ``(X, y)``.
    Regression runs and models without data get no section.
    """
    import torch

    from trainlab.experiments import plots
    from trainlab.experiments.ensemble import predict_proba

    if model is None or train is None or loss is None or not getattr(loss, "is_classification", False):
        return []
    train, val = _as_xy(train), _as_xy(val)
    device = next(model.parameters()).device

    def proba(X):
        return predict_proba(model, X.to(device=device, dtype=next(model.parameters()).dtype), loss).cpu()

    figures = []
    Xt = train[0]
    if Xt.dim() == 2 and Xt.shape[1] == 2:
        figures.append(("decision boundary: the model's class over the input plane; dots are training "
                        "points, triangles validation points, coloured by their true class",
                        plots.plot_decision_boundary(proba, (Xt.cpu(), train[1].cpu()),
                                                     None if val is None else (val[0].cpu(), val[1].cpu()),
                                                     fig_dir / "decision_boundary.png")))
    X, y = val if val is not None else train
    y = y.reshape(-1).long().cpu()
    p = proba(X)
    pred = p.reshape(-1, p.shape[-1]).argmax(dim=1)  # per-step classes (B, T, K) count every step
    k = max(int(y.max()) + 1 if len(y) else 0, int(pred.max()) + 1 if len(pred) else 0, 2)
    if k <= max_classes:
        counts = torch.zeros(k, k, dtype=torch.long)
        counts.index_put_((y, pred), torch.ones_like(y), accumulate=True)
        which = "validation" if val is not None else "training"
        figures.append((f"confusion matrix on the {which} data ({len(y)} samples): rows are the true "
                        "class, columns the predicted one",
                        plots.plot_confusion_matrix(counts.tolist(), fig_dir / "confusion_matrix.png")))
    return [Section("Predictions", figures=figures)] if figures else []


def training_sections(records: Sequence[dict], fig_dir: Path, *, title: str = "", stops: Sequence[dict] = (),
                      scheduled: bool = False, epochs_planned: int | None = None) -> list[Section]:
    """Early stopping (when and why), learning curves with the stops marked, and the lr when scheduled."""
    from trainlab.experiments import plots

    out = []
    if stops:
        out.append(Section("Early stopping", text=[stop_sentence(s, epochs_planned) for s in stops]))
    if not records:  # a run stopped on NaN in its first epoch has no epoch to draw
        out.append(Section("Learning curves", text=["No epoch finished."]))
        return out
    curves = plots.plot_curves(records, Path(fig_dir) / "curves.png", title=title, early_stops=stops,
                               lr=True if scheduled else None)
    caption = "loss and accuracy per epoch"
    if scheduled or len({r.get("lr") for r in records}) > 1:
        caption += ", and the learning rate"
    if stops:
        caption += "; dashed: the best epoch of early stopping, dotted: the epoch it stopped after"
    out.append(Section("Learning curves", figures=[(caption, curves)]))
    return out


def history_section(records: Sequence[dict]) -> Section:
    """The per-epoch table, epochs counted from 1."""
    rows = epoch_records(records)
    return Section("Per-epoch history", table=(list(rows[0].keys()) if rows else [], [list(r.values()) for r in rows]))


def report(history, path: str | Path, *, model=None, train=None, val=None, loss=None, callbacks=None,
           title: str = "", config=None) -> Path:
    """Write the HTML report of a model trained with :func:`trainlab.fit` from Python, as a run folder has.

    Everything is read from ``history`` when it comes from ``fit`` (it knows its loop): the model,
    the training and validation data, the loss, and callbacks such as
    :class:`~trainlab.train.callbacks.EarlyStopping` or a learning-rate schedule. The keyword
    arguments override what the history knows, or supply it for a :class:`History` built another
    way. The report holds the final numbers, the early-stopping verdict, learning curves (with the
    lr when it changed), the decision boundary for 2-D inputs and the confusion matrix for a
    classifier, and the per-epoch table; ``config`` (a dict or a trainlab config) is printed at the
    end. Figures are embedded: the one file is the whole report. Returns ``path``.
    """
    import tempfile

    from trainlab.losses import Loss, resolve_loss
    from trainlab.train.callbacks import LearningRateScheduler
    from trainlab.train.loop import evaluate

    loop = getattr(history, "loop", None)
    model = model if model is not None else getattr(loop, "model", None)
    if train is None and loop is not None:
        train = getattr(loop.train, "data", None)
    val = val if val is not None else getattr(loop, "val", None)
    loss = resolve_loss(loss) if loss is not None else getattr(loop, "loss_fn", None)
    if callbacks is None:
        callbacks = list(loop.callbacks.callbacks) if loop is not None else []
    records = history.records()
    path = Path(path)
    title = title or path.stem
    stops = early_stops(callbacks)
    scheduled = any(isinstance(cb, LearningRateScheduler) for cb in callbacks)
    final: dict[str, float] = {}
    if model is not None and isinstance(loss, Loss):
        device = next(model.parameters()).device
        for name, ds in (("train", train), ("val", val)):
            if ds is not None:
                final.update({f"{name}_{k}": v for k, v in evaluate(model, _as_xy(ds), loss, device=device).items()})
    elif records:
        final = {k: v for k, v in records[-1].items() if k not in ("epoch", "time", "lr")}
    rows = [(k, v) for k, v in final.items()] + [("epochs run", len(records))]
    text = []
    if model is not None:
        n_params = sum(p.numel() for p in model.parameters())
        text.append(f"{type(model).__name__} with {n_params:,} parameters"
                    + (f", {getattr(loss, 'name', '')} loss." if isinstance(loss, Loss) else "."))
    with tempfile.TemporaryDirectory() as tmp, preserved_rng():
        sections = [Section("Final numbers", text=text, table=(("metric", "value"), rows)),
                    *training_sections(records, Path(tmp), title=title, stops=stops, scheduled=scheduled,
                                       epochs_planned=getattr(loop, "epochs", None)),
                    *prediction_sections(model, loss, train, val, Path(tmp)),
                    history_section(records)]
        if config is not None:
            import yaml
            data = config.to_dict() if hasattr(config, "to_dict") else dict(config)
            sections.append(Section("Config", pre=yaml.safe_dump(data, sort_keys=False)))
        return write_report(path, f"trainlab report: {title}", sections)
