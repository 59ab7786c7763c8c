"""Every figure trainlab draws. The only module that imports matplotlib (headless Agg backend)."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
# titles, labels and ticks carry user text (run names, swept values); a name like "$\frac$" must
# print as written, not be parsed as mathtext (which raises on bad TeX). trainlab draws no math.
matplotlib.rcParams["text.parse_math"] = False
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402
import matplotlib.transforms  # noqa: E402


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _integer_epochs(ax) -> None:
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))


def _log_y(ax, values: Sequence[float] | None = None, *, axis: str = "y") -> None:
    """A log axis whose ticks read as plain numbers (0.3, 2) rather than 3×10⁻¹.

    Every log axis goes through here: matplotlib's own log labels are mathtext, which
    ``text.parse_math = False`` would print as raw TeX. Over less than two decades of ``values``
    (default: the data drawn so far) the in-between ticks are labelled too (the decades alone would
    be one or two labels); over more they would overlap, so only the decades are.
    """
    getattr(ax, f"set_{axis}scale")("log")
    target = ax.yaxis if axis == "y" else ax.xaxis
    if values is None:
        lo, hi = ax.dataLim.intervaly if axis == "y" else ax.dataLim.intervalx
        values = [lo, hi]
    pos = [v for v in values if _finite(v) and v > 0]
    plain = matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}")
    target.set_major_formatter(plain)
    if pos and math.log10(max(pos) / min(pos)) < 2:
        target.set_minor_formatter(plain)
        ax.tick_params(axis=axis, which="minor", labelsize=7)
    else:
        target.set_minor_formatter(matplotlib.ticker.NullFormatter())


def _legend_below(fig, axes, ncol: int | None = None) -> None:
    """One legend for the whole figure, under the panels, so it never covers a curve."""
    handles, labels = [], []
    for ax in axes:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    if handles:
        fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.0), frameon=False,
                   ncol=ncol or min(len(labels), 6), fontsize=8)


def plot_curves(records: Sequence[dict], path: str | Path, title: str = "", *,
                early_stops: Sequence[dict] = (), lr: bool | None = None) -> Path:
    """Loss (and accuracy, when recorded) per epoch for training and validation, side by side.

    ``records`` is :meth:`History.records` (epoch 0 there is the first epoch, drawn at 1).
    ``early_stops`` (dicts with ``monitor``, ``best_epoch``, ``stopped_epoch``, 1-based) are marked
    on every panel: the best epoch dashed, the epoch training stopped after dotted. ``lr`` adds a
    learning-rate panel (default: when the lr changed during training). A non-finite value is
    marked with a red cross at the last finite point of its curve.
    """
    epochs = [r["epoch"] + 1 for r in records]
    metrics = [m for m in ("loss", "accuracy") if any(m in r for r in records)]
    lrs = [r.get("lr") for r in records]
    if lr is None:
        lr = len({v for v in lrs if _finite(v)}) > 1
    panels = metrics + (["lr"] if lr and any(_finite(v) for v in lrs) else [])
    fig, axes = plt.subplots(1, len(panels), figsize=(4.8 * len(panels), 3.5), squeeze=False)
    for ax, m in zip(axes[0], panels):
        keys = ((m, "learning rate", "-", "tab:purple"),) if m == "lr" else (
            (m, "train", "-", "tab:blue"), (f"val_{m}", "validation", "--", "tab:orange"))
        for key, label, style, colour in keys:
            ys = [r.get(key) for r in records]
            pts = [(e, y) for e, y in zip(epochs, ys) if _finite(y)]
            if not pts:
                continue
            ax.plot(*zip(*pts), style, marker="o", markersize=3, label=label, color=colour)
            if any(y is not None and not _finite(y) for y in ys):
                ax.plot([pts[-1][0]], [pts[-1][1]], "x", color="red", markersize=10, markeredgewidth=2,
                        label="diverged (NaN/Inf next)")
        ax.set_xlabel("epoch")
        ax.set_ylabel("learning rate" if m == "lr" else m)
        _integer_epochs(ax)
        values = [r.get(k) for r in records for k in (m, f"val_{m}") if _finite(r.get(k))]
        # a log axis only pays off over a decade or more; below that its tick labels read badly
        if m in ("loss", "lr") and values and min(values) > 0 and max(values) / min(values) > 20:
            _log_y(ax, values)
        ax.grid(alpha=0.3)
        for stop in early_stops:
            if stop.get("best_epoch"):
                ax.axvline(stop["best_epoch"], color="tab:green", linestyle="--", linewidth=1.2,
                           label=f"best {stop.get('monitor', '')} (epoch {stop['best_epoch']})")
            if stop.get("stopped_epoch"):
                ax.axvline(stop["stopped_epoch"], color="tab:red", linestyle=":", linewidth=1.5,
                           label=f"early stop (after epoch {stop['stopped_epoch']})")
    _legend_below(fig, axes[0])
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)


def plot_decision_boundary(predict_proba, train, val, path: str | Path, title: str = "",
                           grid: int = 200) -> Path:
    """The classes a model predicts over the plane of a 2-D data set, with its points on top.

    ``predict_proba`` maps an ``(n, 2)`` float tensor to class probabilities ``(n, k)``; ``train``
    and ``val`` are ``(X, y)`` pairs (``val`` may be ``None``). Two classes: the shading is the
    probability of class 1 and the 0.5 contour is drawn; more classes: the predicted class.
    """
    import numpy as np
    import torch

    Xt, yt = (np.asarray(t.detach().cpu()) if hasattr(t, "detach") else np.asarray(t) for t in train)
    parts = [Xt] + ([np.asarray(val[0].detach().cpu())] if val is not None else [])
    allx = np.concatenate(parts)
    lo, hi = allx.min(axis=0), allx.max(axis=0)
    pad = 0.08 * (hi - lo) + 1e-9
    gx = np.linspace(lo[0] - pad[0], hi[0] + pad[0], grid)
    gy = np.linspace(lo[1] - pad[1], hi[1] + pad[1], grid)
    XX, YY = np.meshgrid(gx, gy)
    pts = torch.as_tensor(np.stack([XX.ravel(), YY.ravel()], axis=1), dtype=torch.float32)
    proba = np.asarray(predict_proba(pts).detach().cpu(), dtype=float)
    k = proba.shape[1]
    fig, ax = plt.subplots(figsize=(5.6, 4.6))
    if k == 2:
        zz = proba[:, 1].reshape(XX.shape)
        cs = ax.contourf(XX, YY, zz, levels=np.linspace(0, 1, 11), cmap="RdBu_r", alpha=0.3)
        ax.contour(XX, YY, zz, levels=[0.5], colors="k", linewidths=1.2)
        fig.colorbar(cs, ax=ax, fraction=0.046, pad=0.03, label="P(class 1)")
    else:
        zz = proba.argmax(axis=1).reshape(XX.shape)
        ax.contourf(XX, YY, zz, levels=np.arange(k + 1) - 0.5, cmap="tab10", vmin=0, vmax=9, alpha=0.35)
    from matplotlib.lines import Line2D

    def colour(c: int):
        return ("tab:blue", "tab:red")[c] if k == 2 else plt.get_cmap("tab10")(c % 10)

    ax.scatter(Xt[:, 0], Xt[:, 1], c=[colour(int(c)) for c in yt], s=12, alpha=0.8, edgecolors="white",
               linewidths=0.4)
    handles = [Line2D([], [], marker="o", linestyle="", color="gray", markeredgecolor="white", label="train")]
    if val is not None:
        Xv, yv = np.asarray(val[0].detach().cpu()), np.asarray(val[1].detach().cpu())
        ax.scatter(Xv[:, 0], Xv[:, 1], c=[colour(int(c)) for c in yv], s=26, marker="^", edgecolors="k",
                   linewidths=0.6)
        handles.append(Line2D([], [], marker="^", linestyle="", color="gray", markeredgecolor="k",
                              label="validation"))
    classes = sorted({int(c) for c in yt})
    handles += [Line2D([], [], marker="s", linestyle="", color=colour(c), label=f"class {c}") for c in classes[:10]]
    ax.set_xlim(gx[0], gx[-1])
    ax.set_ylim(gy[0], gy[-1])
    ax.set_xlabel("x₁")
    ax.set_ylabel("x₂")
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=min(len(handles), 6),
              frameon=False, fontsize=8)
    if title:
        ax.set_title(title, fontsize=10)
    return _save(fig, path)


def plot_confusion_matrix(counts: Sequence[Sequence[int]], path: str | Path, labels: Sequence[str] | None = None,
                          title: str = "") -> Path:
    """Counts of (true class, predicted class); cells shaded by the fraction of their row (recall)."""
    import numpy as np

    cm = np.asarray(counts, dtype=float)
    k = cm.shape[0]
    labels = list(labels) if labels is not None else [str(i) for i in range(k)]
    rows = cm.sum(axis=1, keepdims=True)
    frac = np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0)
    size = 1.6 + 0.45 * max(k, 3)
    fig, ax = plt.subplots(figsize=(size + 0.8, size))
    im = ax.imshow(frac, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="fraction of the true class")
    for i in range(k):
        for j in range(k):
            ax.text(j, i, f"{int(cm[i, j])}", ha="center", va="center", fontsize=8 if k <= 10 else 6,
                    color="white" if frac[i, j] > 0.5 else "black")
    ax.set_xticks(range(k))
    ax.set_xticklabels(labels)
    ax.set_yticks(range(k))
    ax.set_yticklabels(labels)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    if title:
        ax.set_title(title, fontsize=10)
    return _save(fig, path)


# ---- figures of the studies (trainlab.experiments.studies) ---------------------------------------


def plot_panels(panels: Sequence[dict], path: str | Path, title: str = "", ncols: int | None = None) -> Path:
    """Line plots side by side. Each panel is a dict with ``series`` ({label: (xs, ys)}) and
    optional ``title``, ``xlabel``, ``ylabel``, ``logy``, ``logx``, ``hline`` (a y value drawn
    dashed), ``markers`` (bool) and ``xticklabels`` (names of the x positions 0, 1, ... when the
    swept values are not numbers)."""
    n = len(panels)
    ncols = ncols or min(n, 3)
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(5.0 * ncols, 3.5 * nrows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    for ax, panel in zip(axes.flat, panels):
        for label, (xs, ys) in panel["series"].items():
            ax.plot(list(xs), list(ys), label=str(label), marker="o" if panel.get("markers") else None,
                    markersize=3, linewidth=1.2)
        if panel.get("hline") is not None:
            ax.axhline(panel["hline"], color="gray", linestyle="--", linewidth=1)
        if panel.get("logy"):
            _log_y(ax)
        if panel.get("logx"):
            _log_y(ax, axis="x")
        if panel.get("xticklabels"):
            names = panel["xticklabels"]
            ax.set_xticks(range(len(names)))
            ax.set_xticklabels(names, rotation=30 if max(map(len, names)) > 6 else 0, fontsize=8)
        ax.set_title(panel.get("title", ""), fontsize=10)
        ax.set_xlabel(panel.get("xlabel", ""))
        ax.set_ylabel(panel.get("ylabel", ""))
        if "epoch" in panel.get("xlabel", ""):
            _integer_epochs(ax)
        ax.grid(alpha=0.3)
        if len(panel["series"]) > 1 or panel.get("legend"):  # under the panel, off the curves
            ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.28), frameon=False,
                      ncol=min(len(panel["series"]), 3))
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)


def plot_bars(groups: dict[str, dict[str, float]], path: str | Path, ylabel: str = "", title: str = "",
              logy: bool = False) -> Path:
    """Grouped bars: ``groups[group][label] = value`` (one colour per label)."""
    import numpy as np

    names = list(groups)
    labels: list[str] = []
    for g in groups.values():
        labels.extend(k for k in g if k not in labels)
    width = 0.8 / max(len(labels), 1)
    fig, ax = plt.subplots(figsize=(max(5.0, 1.2 * len(names) * max(1, len(labels)) * 0.45 + 2), 3.6))
    x = np.arange(len(names))
    for i, label in enumerate(labels):
        ax.bar(x + (i - (len(labels) - 1) / 2) * width, [groups[g].get(label, float("nan")) for g in names],
               width, label=label)
    ax.set_xticks(x)
    ax.set_xticklabels(names, rotation=20 if max(len(n) for n in names) > 8 else 0, ha="right"
                       if max(len(n) for n in names) > 8 else "center")
    ax.set_ylabel(ylabel)
    if logy:
        _log_y(ax)
    if len(labels) > 1:
        ax.legend(fontsize=8)
    ax.grid(alpha=0.3, axis="y")
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return _save(fig, path)


def plot_eigenvalues(eigs, path: str | Path, radius: float = 1.0, title: str = "") -> Path:
    """Complex eigenvalues in the plane with the circle of the given radius (the circular law)."""
    import numpy as np

    eigs = np.asarray(eigs)
    fig, ax = plt.subplots(figsize=(4.4, 4.4))
    ax.scatter(eigs.real, eigs.imag, s=3, alpha=0.6)
    t = np.linspace(0, 2 * np.pi, 400)
    ax.plot(radius * np.cos(t), radius * np.sin(t), color="crimson", linewidth=1.2, label=f"radius {radius:g}")
    ax.set_aspect("equal")
    ax.set_xlabel("Re λ")
    ax.set_ylabel("Im λ")
    ax.legend(fontsize=8, loc="upper right")
    ax.grid(alpha=0.3)
    if title:
        ax.set_title(title, fontsize=10)
    return _save(fig, path)


def plot_histogram_density(samples, path: str | Path, density=None, bins: int = 60, xlabel: str = "",
                           title: str = "") -> Path:
    """A normalized histogram of ``samples`` with an optional density ``(xs, ys)`` drawn over it."""
    import numpy as np

    fig, ax = plt.subplots(figsize=(5.0, 3.6))
    ax.hist(np.asarray(samples), bins=bins, density=True, alpha=0.6, label="measured")
    if density is not None:
        xs, ys = density
        ax.plot(xs, ys, color="crimson", linewidth=1.5, label="theory")
        ax.legend(fontsize=8)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("density")
    ax.grid(alpha=0.3)
    if title:
        ax.set_title(title, fontsize=10)
    return _save(fig, path)


def plot_augmented_grid(images, augment, path: str | Path, *, repeats: int = 5, image_shape=None,
                        seed: int = 0, title: str = "") -> Path:
    """A grid of augmented samples: one row per image, the original first, then ``repeats`` draws.

    ``images`` is a batch ``(n, C, H, W)``, ``(n, H, W)`` or flat ``(n, D)`` (square one-channel
    unless ``image_shape=(C, H, W)``); ``augment`` is a batched augmentation (e.g. a
    :class:`trainlab.data.augment.Compose`). Draw j uses a generator seeded ``seed + j`` when
    ``augment`` accepts one, so the figure is reproducible.
    """
    import math

    import torch

    x = torch.as_tensor(images).detach().float().cpu()
    n = len(x)
    if x.dim() == 2:
        c, h, w = image_shape if image_shape is not None else (1, math.isqrt(x.shape[1]), math.isqrt(x.shape[1]))
        shown = x.reshape(n, c, h, w)
    elif x.dim() == 3:
        shown = x.unsqueeze(1)
    else:
        shown = x
    columns = [shown]
    for j in range(repeats):
        try:
            out = augment(x, generator=torch.Generator().manual_seed(seed + j))
        except TypeError:  # a plain callable x -> x
            out = augment(x)
        columns.append(torch.as_tensor(out).detach().float().cpu().reshape(shown.shape))
    fig, axes = plt.subplots(n, repeats + 1, figsize=(1.1 * (repeats + 1), 1.1 * n), squeeze=False)
    for i in range(n):
        for j, col in enumerate(columns):
            img = col[i]
            ax = axes[i][j]
            if img.shape[0] == 1:
                ax.imshow(img[0].numpy(), cmap="gray_r", vmin=0.0, vmax=1.0)
            else:
                ax.imshow(img.permute(1, 2, 0).clamp(0, 1).numpy())
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title("original" if j == 0 else f"draw {j}", fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    return _save(fig, path)


# ---- sweeps --------------------------------------------------------------------------------------


def plot_overlaid_curves(runs: Sequence[tuple], keys: Sequence[str], path: str | Path,
                         title: str = "", max_legend: int = 12) -> Path:
    """Many runs' curves on shared axes, one panel per metric in ``keys``.

    ``runs`` holds ``(label, colour index, history records)`` or ``(label, colour index, records,
    diverged)``; runs with the same colour index (the seeds of one sweep point) share a colour and
    one legend entry. A run that diverged (flagged, or with a non-finite value in its curve) ends in
    a red cross at its last finite point. Loss panels use a log scale; the legend sits to the right
    of the panels, so it covers no curve.
    """
    fig, axes = plt.subplots(1, len(keys), figsize=(5.0 * len(keys), 3.8), squeeze=False)
    cmap = plt.get_cmap("viridis" if len({r[1] for r in runs}) > 10 else "tab10")
    n_colours = max((r[1] for r in runs), default=0) + 1
    labelled: set[int] = set()
    diverged_shown = False
    # dots show where each epoch lies (and a run of one epoch at all) while they do not crowd
    few_points = sum(len(r[2]) for r in runs) <= 400
    for ax, key in zip(axes[0], keys):
        labelled = set()
        for run in runs:
            label, c, records = run[0], run[1], run[2]
            flagged = bool(run[3]) if len(run) > 3 else False
            pts = [(r["epoch"] + 1, r[key]) for r in records if _finite(r.get(key))]
            if not pts:
                continue
            colour = cmap(c / max(n_colours - 1, 1)) if n_colours > 10 else cmap(c % 10)
            show = c not in labelled and len(labelled) < max_legend
            ax.plot(*zip(*pts), color=colour, alpha=0.75, linewidth=1.2, label=label if show else None,
                    marker="o" if few_points else None, markersize=3)
            labelled.add(c)
            if flagged or any(r.get(key) is not None and not _finite(r.get(key)) for r in records):
                ax.plot([pts[-1][0]], [pts[-1][1]], "x", color="red", markersize=9, markeredgewidth=2,
                        label=None if diverged_shown else "diverged")
                diverged_shown = True
        ax.set_xlabel("epoch")
        ax.set_ylabel(key)
        _integer_epochs(ax)
        values = [r[key] for rs in runs for r in rs[2] if _finite(r.get(key))]
        if "loss" in key and values and min(values) > 0 and max(values) / min(values) > 20:
            _log_y(ax, values)
        ax.grid(alpha=0.3)
    handles, labels = [], []
    for ax in axes[0]:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    if handles:
        fig.legend(handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=7, frameon=False)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)


def plot_heatmap(values: Sequence[Sequence[float]], xticks: Sequence[str], yticks: Sequence[str], path: str | Path,
                 xlabel: str = "", ylabel: str = "", title: str = "", higher_is_better: bool = True) -> Path:
    """A metric over two swept fields: ``values[i][j]`` at row ``yticks[i]``, column ``xticks[j]``.

    Cells are annotated with their value (blank when NaN: no finished run); the best cell is outlined.
    """
    import numpy as np

    data = np.array(values, dtype=float)
    fig, ax = plt.subplots(figsize=(1.0 + 0.9 * max(len(xticks), 3), 1.0 + 0.6 * max(len(yticks), 3)))
    masked = np.ma.masked_invalid(data)
    im = ax.imshow(masked, cmap="viridis" if higher_is_better else "viridis_r", aspect="auto", origin="lower")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    ax.set_xticks(range(len(xticks)))
    ax.set_xticklabels(xticks, rotation=30 if max(map(len, xticks), default=0) > 6 else 0)
    ax.set_yticks(range(len(yticks)))
    ax.set_yticklabels(yticks)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    finite = np.isfinite(data)
    if finite.any():
        lo, hi = np.nanmin(data), np.nanmax(data)
        best = np.unravel_index(np.nanargmax(data) if higher_is_better else np.nanargmin(data), data.shape)
        for i in range(data.shape[0]):
            for j in range(data.shape[1]):
                if finite[i, j]:
                    light = (data[i, j] - lo) / (hi - lo + 1e-12) < 0.5
                    ax.text(j, i, f"{data[i, j]:.3g}", ha="center", va="center", fontsize=8,
                            color=("white" if light == higher_is_better else "black"))
        ax.add_patch(plt.Rectangle((best[1] - 0.5, best[0] - 0.5), 1, 1, fill=False, edgecolor="red", linewidth=2))
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return _save(fig, path)


def plot_error_bars(labels: Sequence[str], means: Sequence[float], errors: Sequence[float], path: str | Path,
                    ylabel: str = "", title: str = "") -> Path:
    """One bar per label at its mean with an error bar (e.g. ±1 standard deviation over seeds)."""
    import numpy as np

    n = len(labels)
    fig, ax = plt.subplots(figsize=(max(5.0, 0.55 * n + 2.0), 3.8))
    err = [0.0 if (e is None or e != e) else e for e in errors]
    ax.bar(np.arange(n), means, yerr=err, capsize=4, color=plt.get_cmap("tab10")(0), alpha=0.85)
    ax.set_xticks(np.arange(n))
    long = max((len(s) for s in labels), default=0) > 10
    ax.set_xticklabels(labels, rotation=35 if long else 0, ha="right" if long else "center", fontsize=8)
    finite = [m for m in means if m == m]
    if finite:  # zoom in on the differences rather than start every bar at zero
        lo = min(m - e for m, e in zip(means, err) if m == m)
        hi = max(m + e for m, e in zip(means, err) if m == m)
        pad = 0.1 * (hi - lo) or 0.05 * abs(hi) or 0.1
        ax.set_ylim(lo - pad, hi + pad)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3, axis="y")
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return _save(fig, path)


def plot_scatter(xs: Sequence[float], ys: Sequence[float], path: str | Path, xlabel: str = "", ylabel: str = "",
                 logx: bool = False, title: str = "", diverged: Sequence[float] = ()) -> Path:
    """One dot per run: a metric against a swept numeric field (random search).

    ``diverged`` holds the field's values of runs that diverged (no metric): red crosses along the
    bottom edge, so where a setting breaks training shows too.
    """
    fig, ax = plt.subplots(figsize=(5.4, 3.8))
    ax.scatter(xs, ys, s=18, alpha=0.8, label="run")
    if diverged:
        edge = matplotlib.transforms.blended_transform_factory(ax.transData, ax.transAxes)
        ax.scatter(list(diverged), [0.03] * len(diverged), marker="x", color="red", s=40, transform=edge,
                   label="diverged (no value)", clip_on=False)
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.18), ncol=2, frameon=False)
    if logx:
        _log_y(ax, list(xs) + list(diverged), axis="x")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return _save(fig, path)


# ---- searches (trainlab.experiments.search) ------------------------------------------------------


def plot_search_history(numbers: Sequence[int], values: Sequence[float], path: str | Path, ylabel: str = "",
                        higher_is_better: bool = True, pruned: Sequence[tuple[int, float]] = (),
                        title: str = "") -> Path:
    """One dot per trial at its value and a step line at the best value so far (Optuna's history view).

    ``values`` holds NaN for trials without a value (pruned, failed); ``pruned`` gives
    ``(trial number, last reported value)`` pairs, drawn as grey crosses.
    """
    fig, ax = plt.subplots(figsize=(5.8, 3.8))
    done = [(n, v) for n, v in zip(numbers, values) if _finite(v)]
    if done:
        ax.scatter([n for n, _ in done], [v for _, v in done], s=18, alpha=0.8, label="trial")
        best, line = None, []
        for n, v in done:
            best = v if best is None or (v > best if higher_is_better else v < best) else best
            line.append((n, best))
        ax.step([n for n, _ in line], [b for _, b in line], where="post", color="tab:red", label="best so far")
    if pruned:
        ax.scatter([n for n, _ in pruned], [v for _, v in pruned], marker="x", color="grey", s=30,
                   label="pruned (last reported)")
    ax.set_xlabel("trial")
    ax.set_ylabel(ylabel)
    _integer_epochs(ax)
    ax.grid(alpha=0.3)
    if done or pruned:
        ax.legend(fontsize=7, frameon=False)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return _save(fig, path)


def plot_importances(importances: dict[str, float], path: str | Path, title: str = "") -> Path:
    """Horizontal bars, most important parameter on top (importances as fractions of the total)."""
    names = list(importances)[::-1]
    fig, ax = plt.subplots(figsize=(5.8, 0.9 + 0.35 * len(names)))
    ax.barh(range(len(names)), [importances[n] for n in names], color=plt.get_cmap("tab10")(0), alpha=0.85)
    ax.set_yticks(range(len(names)))
    ax.set_yticklabels(names, fontsize=8)
    ax.set_xlabel("importance")
    ax.set_xlim(0, max(1e-9, max(importances.values(), default=1.0)) * 1.1)
    ax.grid(alpha=0.3, axis="x")
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return _save(fig, path)


def plot_slices(panels: Sequence[dict], path: str | Path, ylabel: str = "", ncols: int | None = None) -> Path:
    """One panel per parameter: the value of each trial against the parameter (Optuna's slice view).

    A panel is ``{"name", "x", "y", "trial", "log", "categorical"}``; dots are coloured by trial
    number (darker: later), a categorical parameter gets one column per choice.
    """
    n = len(panels)
    ncols = ncols or min(n, 3)
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.6 * ncols, 3.0 * nrows), squeeze=False, sharey=True)
    for ax, panel in zip(axes.flat, panels):
        xs = panel["x"]
        if panel.get("categorical"):
            labels = list(dict.fromkeys(str(x) for x in xs))
            xs = [labels.index(str(x)) for x in xs]
            ax.set_xticks(range(len(labels)))
            ax.set_xticklabels(labels, fontsize=7, rotation=30 if max(map(len, labels)) > 6 else 0)
        ax.scatter(xs, panel["y"], c=panel["trial"], cmap="Blues", vmin=-0.3 * max(panel["trial"], default=1),
                   s=16, edgecolors="none")
        if panel.get("log") and all(_finite(x) and x > 0 for x in xs):
            _log_y(ax, xs, axis="x")
            ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())  # a narrow panel: decades only
        ax.set_xlabel(panel["name"], fontsize=8)
        ax.grid(alpha=0.3)
    for ax in axes[:, 0]:
        ax.set_ylabel(ylabel)
    for ax in list(axes.flat)[n:]:
        ax.set_visible(False)
    fig.tight_layout()
    return _save(fig, path)


# ---- diagnostics of a run (trainlab.diagnostics) -------------------------------------------------


def _layer_label(name: str) -> str:
    parts = name.split(".")
    if len(parts) == 3 and parts[0] == "blocks" and parts[1].isdigit():
        return f"{parts[2]} {int(parts[1]) + 1}"
    return name


def _epoch_axis(points) -> tuple[list[float], list[float]]:
    # epoch -1 is the record taken before training: it is drawn at x = 0 ("init")
    return [e + 1 for e, _ in points], [v for _, v in points]


def plot_layer_series(series: dict[str, list[tuple[int, float]]], path: str | Path, *, ylabel: str = "",
                      log: bool = False, title: str = "") -> Path:
    """One line per layer of a per-epoch quantity ``series[layer] = [(epoch, value), ...]``.

    Layers are coloured from the input side (dark) to the output side (light), so a vanishing
    gradient shows as dark lines far below light ones. Epoch 0 on the x axis is initialization.
    """
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    cmap = plt.get_cmap("viridis")
    names = list(series)
    for i, name in enumerate(names):
        xs, ys = _epoch_axis(series[name])
        if log:
            ys = [y if y is not None and y > 0 else float("nan") for y in ys]
        ax.plot(xs, ys, marker="o", markersize=3, linewidth=1.3, label=_layer_label(name),
                color=cmap(i / max(len(names) - 1, 1) * 0.9))
    if log:
        _log_y(ax)
    ax.set_xlabel("epoch (0 = initialization)")
    _integer_epochs(ax)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2 if len(names) > 6 else 1, loc="center left", bbox_to_anchor=(1.01, 0.5))
    if title:
        ax.set_title(title, fontsize=10)
    return _save(fig, path)


def _bars_per_layer(ax, named: dict[str, float], title: str, ylabel: str) -> None:
    import numpy as np

    names = list(named)
    x = np.arange(len(names))
    values = [named[n] for n in names]
    ax.bar(x, values, color="tab:blue" if "dead" in title.lower() else "tab:orange")
    for xi, v in zip(x, values):  # the value on each bar, so a 0 % layer is visible too
        ax.text(xi, min(v, 0.9) + 0.02, f"{v:.0%}", ha="center", va="bottom", fontsize=7)
    ax.set_xticks(x)
    ax.set_xticklabels([_layer_label(n) for n in names], rotation=45 if len(names) > 4 else 0,
                       ha="right" if len(names) > 4 else "center", fontsize=8)
    ax.set_ylim(0, 1)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3, axis="y")


def plot_unit_health(dead: dict, saturated: dict, path: str | Path) -> Path:
    """Dead (ReLU) and saturated (sigmoid/tanh) fractions per layer: at initialization and at the end
    as bars, over epochs as lines."""
    panels = [(k, v) for k, v in (("dead", dead), ("saturated", saturated)) if v]
    if not panels:
        fig, ax = plt.subplots(figsize=(5.0, 1.6))
        ax.axis("off")
        ax.text(0.5, 0.5, "no ReLU, sigmoid or tanh activation modules to observe", ha="center", va="center")
        return _save(fig, path)
    fig, axes = plt.subplots(len(panels), 2, figsize=(10.5, 3.4 * len(panels)), squeeze=False)
    for row, (what, series) in zip(axes, panels):
        final = {name: pts[-1][1] for name, pts in series.items()}
        _bars_per_layer(row[0], final, f"{what} fraction per layer, end of training", f"{what} fraction")
        cmap = plt.get_cmap("viridis")
        for i, (name, pts) in enumerate(series.items()):
            xs, ys = _epoch_axis(pts)
            row[1].plot(xs, ys, marker="o", markersize=3, label=_layer_label(name),
                        color=cmap(i / max(len(series) - 1, 1) * 0.9))
        row[1].set_ylim(-0.02, 1.02)
        row[1].set_xlabel("epoch (0 = initialization)")
        _integer_epochs(row[1])
        row[1].set_ylabel(f"{what} fraction")
        row[1].set_title(f"{what} fraction over training", fontsize=10)
        row[1].grid(alpha=0.3)
        row[1].legend(fontsize=7, ncol=2 if len(series) > 6 else 1, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    return _save(fig, path)


def plot_sparsity(activation_zero: dict, weight_small: dict, path: str | Path) -> Path:
    """Activation sparsity (exact zeros) and weight sparsity (|w| below tolerance) per layer, at the
    end of training."""
    fig, axes = plt.subplots(1, 2, figsize=(10.5, 3.4))
    for ax, series, title, label in ((axes[0], activation_zero, "activation sparsity", "fraction of zeros"),
                                     (axes[1], weight_small, "weight sparsity", "fraction |w| < tol")):
        if series:
            _bars_per_layer(ax, {n: pts[-1][1] for n, pts in series.items()}, title, label)
        else:
            ax.axis("off")
            ax.text(0.5, 0.5, f"no {title} recorded", ha="center", va="center")
    fig.tight_layout()
    return _save(fig, path)


def plot_spectra(spectrum: dict[str, dict], path: str | Path, max_layers: int = 4) -> Path:
    """Singular-value histograms (initial and final) of up to ``max_layers`` weight matrices, with the
    Marchenko–Pastur density of the initial entry scale and its edges."""
    import numpy as np

    from trainlab.diagnostics.spectra import mp_singular_value_pdf

    names = [n for n in spectrum if "initial" in spectrum[n]]
    # a law about many singular values says little about a 2×64 matrix: prefer matrices with >= 8
    names = [n for n in names if min(spectrum[n]["initial"]["shape"]) >= 8] or names
    # the largest matrices follow the law best; keep the input-to-output order among them
    big = sorted(names, key=lambda n: -min(spectrum[n]["initial"]["shape"]))[:max_layers]
    names = [n for n in names if n in big]
    fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 3.4), squeeze=False)
    for ax, name in zip(axes[0], names):
        entry = spectrum[name]
        init = entry["initial"]
        lo, hi = init["edges"]
        bins = np.linspace(0, max(hi * 1.25, max(entry.get("final", init)["s_max"], init["s_max"]) * 1.05), 40)
        ax.hist(init["singular_values"], bins=bins, density=True, alpha=0.5, label="initial")
        if "final" in entry:
            ax.hist(entry["final"]["singular_values"], bins=bins, density=True, alpha=0.5, label="trained")
        xs = np.linspace(max(lo, 1e-9), hi, 400)
        ax.plot(xs, mp_singular_value_pdf(xs, init["shape"], init["sigma"]), color="crimson", linewidth=1.4,
                label="Marchenko–Pastur")
        for edge in (lo, hi):
            ax.axvline(edge, color="crimson", linestyle=":", linewidth=1)
        m, n = init["shape"]
        ax.set_title(f"{_layer_label(name)} ({m}×{n})", fontsize=10)
        ax.set_xlabel("singular value")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    axes[0][0].set_ylabel("density")
    fig.tight_layout()
    return _save(fig, path)


# ---- optimizer trajectories on 2-D test functions (trainlab.experiments.trajectories) -------------


def plot_trajectories(results, path: str | Path, *, function=None, title: str = "", grid: int = 300,
                      max_points: int = 4000) -> Path:
    """Paths of several optimizers on one 2-D test function, over its contour plot (PNG).

    ``results`` is ``{label: Trajectory}`` as :func:`trainlab.experiments.trajectories.run` returns;
    the function defaults to theirs. Contours are log-spaced for functions with a minimum of 0
    (Rosenbrock, Beale), linear otherwise; the start is a black dot, the minimum a star. Long paths
    are thinned to ``max_points`` points per optimizer.
    """
    import torch

    from trainlab.experiments.trajectories import resolve_function

    if not results:
        raise ValueError("plot_trajectories needs at least one trajectory")
    fn = resolve_function(function if function is not None else next(iter(results.values())).function)
    (x0, x1), (y0, y1) = fn.bounds
    xs = torch.linspace(x0, x1, grid, dtype=torch.float64)
    ys = torch.linspace(y0, y1, grid, dtype=torch.float64)
    X, Y = torch.meshgrid(xs, ys, indexing="xy")
    Z = fn.f(torch.stack([X, Y])).numpy()
    fig, ax = plt.subplots(figsize=(7.5, 6))
    if fn.log_levels:
        import numpy as np
        lo = max(float(Z.min()), 1e-2)  # levels below 1e-2 crowd into the minimum's pixel
        levels = np.logspace(np.log10(lo), np.log10(float(Z.max())), 25)
        ax.contour(X.numpy(), Y.numpy(), Z, levels=levels, cmap="viridis", linewidths=0.7, alpha=0.45)
    else:
        ax.contour(X.numpy(), Y.numpy(), Z, levels=25, cmap="viridis", linewidths=0.7, alpha=0.45)
    for label, tr in results.items():
        pts = tr.path
        if len(pts) > max_points:
            idx = torch.linspace(0, len(pts) - 1, max_points).round().long()
            pts = pts[idx]
        reached = f", {tr.steps_to_tol} steps" if tr.steps_to_tol is not None else ""
        ax.plot(pts[:, 0].numpy(), pts[:, 1].numpy(), "-", marker=".", markersize=2, linewidth=1.2,
                label=f"{label}{reached}")
    start = next(iter(results.values())).path[0]
    ax.plot([float(start[0])], [float(start[1])], "ko", markersize=6, zorder=5)
    if fn.minimum is not None:
        ax.plot([fn.minimum[0]], [fn.minimum[1]], "*", color="gold", markeredgecolor="k", markersize=14, zorder=5)
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.set_title(title or fn.description, fontsize=9)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # beside the contours, not on a path
    return _save(fig, path)


# ---- the primary verdict's evidence (trainlab.diagnostics.verdicts) ------------------------------


def plot_verdict_evidence(records: Sequence[dict], verdict, path: str | Path) -> Path | None:
    """The curve a verdict is about, with its epoch (vertical line) and threshold (horizontal line).

    ``verdict.evidence["mark"]`` names the series (``loss``, ``val_loss``, ``accuracy``,
    ``val_accuracy``), the 1-based epoch and the threshold; without a mark nothing is drawn.
    """
    mark = (getattr(verdict, "evidence", None) or {}).get("mark")
    if mark and mark.get("points"):
        return _plot_record_evidence(mark, verdict, path)
    if not mark or not records:
        return None
    base = mark["series"].removeprefix("val_")
    epochs = [r["epoch"] + 1 for r in records]
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    for key, label, style in ((base, "train", "-"), (f"val_{base}", "validation", "--")):
        ys = [r.get(key) for r in records]
        ys = [y if isinstance(y, (int, float)) and abs(y) < float("inf") else float("nan") for y in ys]
        if any(y == y for y in ys):
            ax.plot(epochs, ys, style, marker="o", markersize=3, label=label,
                    linewidth=2.2 if key == mark["series"] else 1.2)
    finite = [r.get(base) for r in records if isinstance(r.get(base), (int, float))]
    if base == "loss" and finite and all(0 < y < float("inf") for y in finite):
        _log_y(ax, finite + ([mark["threshold"]] if _finite(mark.get("threshold")) else []))
    if mark.get("epoch"):
        ax.axvline(mark["epoch"], color="#c22", linewidth=1.2, label=f"epoch {mark['epoch']}")
    if isinstance(mark.get("threshold"), (int, float)):
        ax.axhline(mark["threshold"], color="#d70", linestyle=":", linewidth=1.4,
                   label=f"{mark.get('label', 'threshold')} ({mark['threshold']:.3g})")
    ax.set_xlabel("epoch")
    _integer_epochs(ax)
    ax.set_ylabel(base)
    ax.set_title(f"{verdict.kind} ({verdict.severity})", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def _plot_record_evidence(mark: dict, verdict, path: str | Path) -> Path:
    """A verdict read from the diagnostics records: the curve it read (``mark["points"]``, 1-based
    epochs with 0 = initialization), its epoch and its threshold."""
    xs = [p[0] for p in mark["points"]]
    ys = [p[1] for p in mark["points"]]
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    ax.plot(xs, ys, marker="o", markersize=3, linewidth=2.2, label=mark["series"])
    ax.axvline(mark["epoch"], color="#c22", linewidth=1.2,
               label="initialization" if mark["epoch"] == 0 else f"epoch {mark['epoch']}")
    ax.axhline(mark["threshold"], color="#d70", linestyle=":", linewidth=1.4,
               label=f"{mark.get('label', 'threshold')} ({mark['threshold']:.3g})")
    if mark.get("log") and all(y > 0 for y in ys):
        _log_y(ax, ys + [mark["threshold"]])
    ax.set_xlabel("epoch (0 = initialization)")
    _integer_epochs(ax)
    ax.set_ylabel("ratio" if mark.get("log") else "fraction")
    ax.set_title(f"{verdict.kind} ({verdict.severity})", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_line_profile(alphas: Sequence[float], losses: Sequence[float], path: str | Path, title: str = "",
                      series: dict | None = None) -> Path:
    """The loss along θ(α) = (1 − α)θ₀ + αθ₁ (Goodfellow et al. 2015); α = 0 and 1 marked.
    ``series`` adds more lines ({label: (alphas, losses)})."""
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    lines = {"loss": (alphas, losses)} if series is None else series
    for label, (xs, ys) in lines.items():
        ax.plot(list(xs), list(ys), label=str(label), linewidth=1.4)
    for x in (0.0, 1.0):
        ax.axvline(x, color="gray", linestyle="--", linewidth=0.8)
    ax.set_xlabel("α (0: initial weights, 1: trained weights)")
    ax.set_ylabel("loss")
    ax.set_title(title or "loss along the line from initialization to the trained weights", fontsize=10)
    ax.grid(alpha=0.3)
    if len(lines) > 1:
        ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def plot_loss_contour(a: Sequence[float], b: Sequence[float], losses: Sequence[Sequence[float]], path: str | Path,
                      title: str = "", levels: int = 25) -> Path:
    """Contours of a 2-D loss slice (rows follow ``b``, columns ``a``; Li et al. 2018), log-spaced
    levels when the losses span more than a decade, the centre marked."""
    import numpy as np

    z = np.asarray(losses, dtype=float)
    z = np.where(np.isfinite(z), z, np.nanmax(np.where(np.isfinite(z), z, np.nan)))
    fig, ax = plt.subplots(figsize=(5.0, 4.2))
    lo, hi = float(z.min()), float(z.max())
    if lo > 0 and hi / lo > 10:
        lv = np.geomspace(lo, hi, levels)
    else:
        lv = np.linspace(lo, hi if hi > lo else lo + 1e-12, levels)
    cs = ax.contour(list(a), list(b), z, levels=lv, cmap="viridis", linewidths=0.8)
    fig.colorbar(cs, ax=ax, label="loss")
    ax.plot([0], [0], marker="*", color="red", markersize=9)
    ax.set_xlabel("a (direction δ)")
    ax.set_ylabel("b (direction η)")
    ax.set_title(title or "filter-normalized 2-D slice around the trained weights", fontsize=10)
    fig.tight_layout()
    return _save(fig, path)
