"""Every figure trainlab draws. The only module that imports matplotlib (headless Agg backend)."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def plot_curves(records: Sequence[dict], path: str | Path, title: str = "") -> Path:
    """Loss (and accuracy, when recorded) per epoch for training and validation, side by side."""
    epochs = [r["epoch"] + 1 for r in records]
    metrics = [m for m in ("loss", "accuracy") if any(m in r for r in records)]
    fig, axes = plt.subplots(1, len(metrics), figsize=(5.2 * len(metrics), 3.6), squeeze=False)
    for ax, m in zip(axes[0], metrics):
        for key, label, style in ((m, "train", "-"), (f"val_{m}", "validation", "--")):
            ys = [r.get(key) for r in records]
            if any(y is not None for y in ys):
                ax.plot(epochs, ys, style, marker="o", markersize=3, label=label)
        ax.set_xlabel("epoch")
        ax.set_ylabel(m)
        if m == "loss" and all(r.get("loss", 1) > 0 for r in records):
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    return _save(fig, path)


# ---- figures of the studies (trainlab.experiments.studies) ---------------------------------------


def plot_panels(panels: Sequence[dict], path: str | Path, title: str = "", ncols: int | None = None) -> Path:
    """Line plots side by side. Each panel is a dict with ``series`` ({label: (xs, ys)}) and
    optional ``title``, ``xlabel``, ``ylabel``, ``logy``, ``logx``, ``hline`` (a y value drawn
    dashed) and ``markers`` (bool)."""
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
            ax.set_yscale("log")
        if panel.get("logx"):
            ax.set_xscale("log")
        ax.set_title(panel.get("title", ""), fontsize=10)
        ax.set_xlabel(panel.get("xlabel", ""))
        ax.set_ylabel(panel.get("ylabel", ""))
        ax.grid(alpha=0.3)
        if len(panel["series"]) > 1 or panel.get("legend"):
            ax.legend(fontsize=8)
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
        ax.set_yscale("log")
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
