"""Load a finished run folder back into Python: the trained model, its config and its history.

``trainlab.load_run("runs/moons-…")`` rebuilds the model from the folder's ``config.yaml`` (the
same builder the run used, sized by the same data), loads ``weights.safetensors`` into it and puts
it in eval mode, so it predicts exactly as the model did when the run ended::

    run = trainlab.load_run("runs/quickstart-moons-20260101-120000")
    run.predict(X)           # class labels (classification) or values (regression)
    run.predict_proba(X)     # class probabilities (classification)
    run.model                # the nn.Module (outputs logits for classification)
    run.config, run.history, run.final
    run.data().val           # the run's validation split, rebuilt from the config
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

from trainlab.train.callbacks import History
from trainlab.train.rng import manual_seed, preserved_rng


class RunLoadError(ValueError):
    """A folder cannot be loaded as a trained run; the message names the folder and what is missing."""


@dataclass
class LoadedRun:
    """A trained run read back from its folder (what :func:`load_run` returns)."""

    run_dir: Path
    config: "object"  # trainlab.experiments.config.Config (not imported here: keep imports light)
    model: nn.Module
    history: History
    final: dict[str, float] = field(default_factory=dict)
    loss_name: str = "cross_entropy"
    input_shape: tuple[int, ...] = ()

    @property
    def is_classification(self) -> bool:
        return self.loss_name in ("cross_entropy", "bce")

    @torch.no_grad()
    def outputs(self, X, batch_size: int = 8192) -> Tensor:
        """The model's raw outputs on ``X`` (logits for classification), computed in eval mode."""
        X = self._as_input(X)
        self.model.eval()
        return torch.cat([self.model(X[i:i + batch_size]) for i in range(0, len(X), batch_size)])

    def predict_proba(self, X) -> Tensor:
        """Class probabilities, one row per sample (for a sigmoid head: ``[1 − p, p]``)."""
        if not self.is_classification:
            raise ValueError(f"predict_proba needs a classification run; {self.run_dir} is a regression "
                             f"run ({self.loss_name} loss): use predict")
        z = self.outputs(X)
        if self.loss_name == "bce":
            p = torch.sigmoid(z.reshape(-1))
            return torch.stack([1 - p, p], dim=1)
        return torch.softmax(z, dim=1)

    def predict(self, X) -> Tensor:
        """Class labels (int64) for a classification run, the predicted values for a regression run."""
        if not self.is_classification:
            return self.outputs(X)
        return self.predict_proba(X).argmax(dim=1)

    def _as_input(self, X) -> Tensor:
        dtype = next(self.model.parameters()).dtype
        X = torch.as_tensor(X)
        if torch.is_floating_point(X) or X.dtype in (torch.uint8, torch.int32, torch.int64):
            X = X.to(dtype)
        return X.to(next(self.model.parameters()).device)

    def data(self):
        """The run's data splits (``.train``, ``.val``, ``.test``), built again from the config as the run built them."""
        from trainlab.experiments.runner import build_data

        with preserved_rng():
            manual_seed(self.config.seed)
            return build_data(self.config)

    def example_input(self, n: int = 2) -> Tensor:
        """A batch of ``n`` zero inputs of the shape the model takes (to trace or export it)."""
        dtype = next(self.model.parameters()).dtype
        return torch.zeros((n, *self.input_shape), dtype=dtype)

    def __repr__(self) -> str:
        return (f"LoadedRun({str(self.run_dir)!r}, model={type(self.model).__name__}, "
                f"epochs={len(self.history.epoch)}, final={ {k: round(v, 4) for k, v in self.final.items()} })")


def _history_from_metrics(metrics: dict) -> History:
    """A :class:`History` from ``metrics.json`` (whose epochs are 1-based; History counts from 0)."""
    h = History()
    for rec in metrics.get("history", []):
        h.epoch.append(int(rec["epoch"]) - 1)
        for k, v in rec.items():
            if k != "epoch" and isinstance(v, (int, float)) and not isinstance(v, bool):
                h.history.setdefault(k, []).append(float(v))
    return h


def load_run(run_dir: str | Path, *, device: str | torch.device = "cpu", data=None) -> LoadedRun:
    """The trained model of the run in ``run_dir``, with its config and history, ready to predict.

    The model is built from ``config.yaml`` as the run built it, sized by the config's data (which
    is loaded again for that; pass ``data`` — the :class:`~trainlab.experiments.runner.Splits` or the
    training :class:`~trainlab.data.Dataset` — when the run was trained on data held in memory),
    then ``weights.safetensors`` is loaded into it and it is put in eval mode on ``device``.

    Raises:
        RunLoadError: the folder is not a finished run folder, or the weights do not fit the model
            the config describes.
    """
    from trainlab.experiments.config import ConfigError, load_yaml, on_this_machine, parse_config
    from trainlab.experiments.runner import Splits, build_data, build_model, resolve_loss_name
    from trainlab.train.checkpoint import CheckpointError, load_weights

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RunLoadError(f"{run_dir} is not a folder; pass a run folder (runs/<name>-<timestamp>)")
    if not (run_dir / "config.yaml").is_file():
        hint = (" (an ensemble folder: load one of its member-N/ folders)"
                if (run_dir / "member-1").is_dir() else "")
        raise RunLoadError(f"{run_dir} is not a run folder: it has no config.yaml{hint}")
    weights = run_dir / "weights.safetensors"
    if not weights.is_file():
        raise RunLoadError(f"{run_dir} has no weights.safetensors: the run did not finish; resume it "
                           f"with 'trainlab run --resume {run_dir}'")
    try:
        cfg = parse_config(on_this_machine(load_yaml(run_dir / "config.yaml"))[0])
    except ConfigError as err:
        raise RunLoadError(f"{run_dir / 'config.yaml'} is not a valid config: {err}") from None
    with preserved_rng():  # building data and model draws; the caller's RNG stays put
        manual_seed(cfg.seed)
        if data is None:
            data = build_data(cfg)
        train = data.train if isinstance(data, Splits) else data
        model = build_model(cfg, train)
    try:
        load_weights(model, weights)
    except (RuntimeError, CheckpointError) as err:
        first = str(err).strip().splitlines()[0]
        raise RunLoadError(f"{weights} does not fit the model config.yaml describes ({first}); was the run "
                           "trained on other data? pass data=... to load_run") from None
    model.to(device).eval()
    metrics = {}
    if (run_dir / "metrics.json").is_file():
        metrics = json.loads((run_dir / "metrics.json").read_text())
    x = train.X
    return LoadedRun(run_dir, cfg, model, _history_from_metrics(metrics), dict(metrics.get("final", {})),
                     resolve_loss_name(cfg, train), tuple(x.shape[1:]))
