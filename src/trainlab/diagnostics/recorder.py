"""The diagnostics recorder: a callback that measures the network at a chosen interval."""
from __future__ import annotations

import torch
from torch import Tensor

from trainlab.data.dataset import Dataset, as_dataset
from trainlab.diagnostics.gradients import probe_gradients, snapshot_weights, update_ratios, weight_stats
from trainlab.diagnostics.layers import weight_layers
from trainlab.diagnostics.neurons import ActivationProbe
from trainlab.diagnostics.spectra import marchenko_pastur_fit
from trainlab.train.callbacks import Callback, Logs
from trainlab.train.rng import preserved_rng


VAL_SPREAD_SAMPLES = 2048  # enough for the spread of per-sample losses to 2-3 %; keeps the cost flat


@torch.no_grad()
def per_sample_spread(model, data: Dataset, loss_fn, max_samples: int = VAL_SPREAD_SAMPLES) -> dict | None:
    """``{"n", "loss_mean", "loss_std"}`` of the per-sample losses on (up to ``max_samples`` of) ``data``.

    The verdicts turn this into the standard error of the validation loss, std/√n: the size of a
    change that the validation set's finite size alone explains. ``None`` when the loss cannot be
    split into per-sample terms.
    """
    from torch.func import vmap

    x, y = data.X[:max_samples], data.y[:max_samples]
    was_training = model.training
    model.eval()
    try:
        with preserved_rng():
            z = model(x)
            losses = vmap(lambda zi, yi: loss_fn(zi.unsqueeze(0), yi.unsqueeze(0)))(z, y).double()
    except Exception:  # a loss that is not a mean of per-sample terms (or not vmap-able): no spread
        return None
    finally:
        model.train(was_training)
    if losses.dim() != 1 or not bool(torch.isfinite(losses).all()):
        return None
    return {"n": len(data), "loss_mean": float(losses.mean()), "loss_std": float(losses.std())}


class DiagnosticsRecorder(Callback):
    """Record per-layer diagnostics every ``every`` epochs (and at initialization and the last epoch).

    Each record is ``{"epoch", "step", "loss" (probe loss), "layers": {weighted layer: {"grad_norm",
    "weight_norm", "update_ratio", "weight_zero_frac", "weight_small_frac"}}, "activations":
    {activation: {"kind", "mean", "std", "zero_frac", "dead_frac" (ReLU), "saturated_frac"
    (sigmoid/tanh), "grad_out_norm" (‖∂L/∂a‖)}}, "val": {"n", "loss_mean", "loss_std"} (per-sample
    validation losses, when there is a validation set)}``; see :mod:`trainlab.diagnostics.gradients` and
    :mod:`~trainlab.diagnostics.neurons` for the definitions. The record taken before training has
    ``epoch = -1``. With ``spectra``, the singular values of every weight matrix are compared with
    the Marchenko–Pastur law before and after training (:mod:`~trainlab.diagnostics.spectra`).

    Measuring is one forward and backward pass over a fixed probe batch of ``probe`` training
    samples (chosen once with its own generator), in eval mode, under a forked RNG and with the
    training gradients put back afterwards: recording never changes the run. The update ratio is
    that of the epoch's last optimizer step, against a copy of the weights taken just before it.

    Args:
        every: record after every ``every``-th epoch (``0``: only at initialization and the end).
        probe: probe batch size drawn from the training set, or a ``Dataset`` / ``(X, y)``.
        spectra: compare weight spectra with Marchenko–Pastur at the start and the end.
        weight_tol: |w| below this counts as "small" for weight sparsity (default 1e-3).
        saturation_tol: the saturation band as a fraction of the activation's range (0.01).
        seed: seeds the choice of probe samples.
        curvature: also record ``"curvature": {"gTg", "gTHg", "curvature", "critical_lr"}``, the
            curvature along the gradient gᵀHg/gᵀg (:func:`~trainlab.diagnostics.landscape.gradient_curvature`);
            a gradient step longer than ``critical_lr`` raises the loss (ill-conditioning, notes 002).

    Differs from Keras/TensorBoard-style histogram logging in measuring on a fixed batch in eval
    mode, so successive records are comparable and free of dropout noise.
    """

    def __init__(self, every: int = 1, probe: int | Dataset | tuple = 256, *, spectra: bool = True,
                 weight_tol: float = 1e-3, saturation_tol: float = 0.01, seed: int = 0, curvature: bool = False):
        if not isinstance(every, int) or every < 0:
            raise ValueError(f"every must be a non-negative integer, got {every!r}")
        if isinstance(probe, int) and probe < 1:
            raise ValueError(f"probe must be a positive number of samples, got {probe}")
        self.every, self.probe, self.spectra = every, probe, spectra
        self.weight_tol, self.saturation_tol, self.seed = weight_tol, saturation_tol, seed
        self.curvature = curvature
        self.initial: dict | None = None
        self.records: list[dict] = []
        self.spectrum: dict[str, dict] = {}
        self._before: dict[str, Tensor] | None = None
        self._x = self._y = None

    # -- what to record when ------------------------------------------------------------------
    def _records_epoch(self, epoch: int) -> bool:
        return epoch == self.loop.epochs - 1 or (self.every > 0 and (epoch + 1) % self.every == 0)

    def _probe_batch(self) -> tuple[Tensor, Tensor]:
        if isinstance(self.probe, int):
            data = self.loop.train.data
            n = min(self.probe, len(data))
            g = torch.Generator().manual_seed(self.seed)
            idx = torch.randperm(len(data), generator=g)[:n].to(data.X.device)
            return data.X.index_select(0, idx), data.y.index_select(0, idx)
        ds = as_dataset(self.probe).to(self.loop.device)
        return ds.X, ds.y

    def measure(self, epoch: int) -> dict:
        """One record of the model as it is now."""
        model = self.loop.model
        with ActivationProbe(model, self.saturation_tol) as probe:
            loss, grads = probe_gradients(model, self._x, self._y, self.loop.loss_fn)
        layers = weight_stats(model, tol=self.weight_tol)
        ratios = update_ratios(model, self._before) if self._before is not None else {}
        for name, row in layers.items():
            row["grad_norm"] = grads.get(name)
            if name in ratios:
                row["update_ratio"] = ratios[name]
        self._before = None
        out = {"epoch": epoch, "step": self.loop.step, "loss": loss, "layers": layers,
               "activations": probe.stats()}
        if self.curvature:  # the notes' ill-conditioning monitor: one extra Hessian-vector product
            from trainlab.diagnostics.landscape import gradient_curvature
            out["curvature"] = gradient_curvature(model, self.loop.loss_fn, (self._x, self._y))
        val = getattr(self.loop, "val", None)
        if val is not None and len(val) > 1:
            spread = per_sample_spread(model, val, self.loop.loss_fn)
            if spread is not None:
                out["val"] = spread
        return out

    def _spectra(self, which: str) -> None:
        for name, m in weight_layers(self.loop.model):
            w = m.weight.detach()
            if min(w.shape[0], w[0].numel()) < 2:
                continue
            if which == "final" and "initial" not in self.spectrum.get(name, {}):
                continue
            if not bool(torch.isfinite(w).all()) or float(w.double().std()) == 0.0:
                continue  # a constant (e.g. zero-initialized) matrix has no random-matrix law to compare with
            entry = self.spectrum.setdefault(name, {})
            sigma = entry.get("initial", {}).get("sigma") if which == "final" else None
            entry[which] = marchenko_pastur_fit(w, sigma=sigma)

    # -- hooks ---------------------------------------------------------------------------------
    def on_train_begin(self, logs: Logs) -> None:
        self._x, self._y = self._probe_batch()
        self.records, self.spectrum, self._before = [], {}, None
        self.initial = self.measure(-1)
        if self.spectra:
            self._spectra("initial")

    def on_batch_begin(self, batch: int, logs: Logs) -> None:
        if batch == self.loop.steps_per_epoch - 1 and self._records_epoch(self.loop.epoch):
            self._before = snapshot_weights(self.loop.model)

    def on_epoch_end(self, epoch: int, logs: Logs) -> None:
        if self._records_epoch(epoch) or self.loop.stop_training:
            self.records.append(self.measure(epoch))

    def on_train_end(self, logs: Logs) -> None:
        if self.spectra:
            self._spectra("final")

    # -- results -------------------------------------------------------------------------------
    def all_records(self) -> list[dict]:
        """The record at initialization (if any) followed by the epoch records."""
        return ([self.initial] if self.initial is not None else []) + list(self.records)

    def series(self, group: str, key: str) -> dict[str, list[tuple[int, float]]]:
        """``{layer: [(epoch, value), ...]}`` for e.g. ``("layers", "grad_norm")`` or
        ``("activations", "dead_frac")`` (epoch -1 = initialization)."""
        out: dict[str, list] = {}
        for r in self.all_records():
            for name, row in (r.get(group) or {}).items():
                v = row.get(key)
                if v is not None:
                    out.setdefault(name, []).append((r["epoch"], v))
        return out

    def verdicts(self, history=None, **thresholds):
        """:func:`trainlab.diagnostics.verdicts.diagnose` on these records (and ``history``)."""
        from trainlab.diagnostics.verdicts import diagnose
        return diagnose(history, self, **thresholds)

    def summary(self) -> dict:
        """Everything recorded, JSON-able (spectra without the full singular-value lists)."""
        spectra = {name: {which: {k: v for k, v in fit.items() if k != "singular_values"}
                          for which, fit in entry.items()} for name, entry in self.spectrum.items()}
        return {"records": self.all_records(), "spectra": spectra}

    def state_dict(self) -> dict:
        return {"initial": self.initial, "records": self.records, "spectrum": self.spectrum}

    def load_state_dict(self, state: dict) -> None:
        self.initial, self.records = state["initial"], list(state["records"])
        self.spectrum = state["spectrum"]


