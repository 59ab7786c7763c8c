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
