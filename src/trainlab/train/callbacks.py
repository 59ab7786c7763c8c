"""Callbacks: code that runs at fixed points of :func:`trainlab.fit`.

A callback overrides any of ``on_train_begin(logs)``, ``on_train_end(logs)``,
``on_epoch_begin(epoch, logs)``, ``on_epoch_end(epoch, logs)``, ``on_batch_begin(batch, logs)`` and
``on_batch_end(batch, logs)`` (the Keras names). It reads and writes the ``logs`` dict, and reaches
the run through ``self.loop`` (a :class:`trainlab.train.loop.Loop`: ``model``, ``optimizer``,
``epoch``, ``step``, ``history``). To stop training it sets ``self.loop.stop_training = True``;
the loop finishes the current epoch and ends.

Only callbacks that override a batch hook are called per batch, so epoch-level callbacks cost
nothing in the training step.
"""
from __future__ import annotations

import math
import sys
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

if TYPE_CHECKING:
    from trainlab.train.loop import Loop

Logs = dict[str, Any]


class Callback:
    """Base class: every hook is a no-op. ``order`` sorts callbacks (default 0; stable).

    ``main_process_only``: a callback whose only effect is output (files, console lines) runs on
    rank 0 alone when many processes train one model; the others keep its state for checkpoints.
    """

    loop: "Loop"
    order: int = 0
    main_process_only: bool = False
    # whether ``on_batch_end`` reads ``logs["loss"]``: the loop reads the batch loss from the
    # device every step only when a callback that overrides ``on_batch_end`` says so
    reads_batch_loss: bool = True

    def set_loop(self, loop: "Loop") -> None:
        self.loop = loop

    def on_train_begin(self, logs: Logs) -> None: ...
    def on_train_end(self, logs: Logs) -> None: ...
    def on_epoch_begin(self, epoch: int, logs: Logs) -> None: ...
    def on_epoch_end(self, epoch: int, logs: Logs) -> None: ...
    def on_batch_begin(self, batch: int, logs: Logs) -> None: ...
    def on_batch_end(self, batch: int, logs: Logs) -> None: ...

    # -- state for checkpoints (JSON-able); stateless callbacks keep the defaults ---------------
    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


def _overrides(cb: Callback, hook: str) -> bool:
    return getattr(type(cb), hook) is not getattr(Callback, hook)


class CallbackList:
    """Calls hooks in order; batch hooks only on the callbacks that define them."""

    def __init__(self, callbacks: Iterable[Callback], loop: "Loop"):
        # stable sort by ``order``: checkpoints (order 100) run after every other callback, so the
        # state they save includes this epoch's updates of all the others
        self.callbacks = sorted(callbacks, key=lambda cb: getattr(cb, "order", 0))
        for cb in self.callbacks:
            if not isinstance(cb, Callback):
                raise TypeError(f"callbacks must be trainlab Callback instances, got {type(cb).__name__}")
            cb.set_loop(loop)
        group = getattr(loop, "group", None)
        # on ranks > 0 the output-only callbacks stay in the list (checkpoints match states by it) but are not called
        self._active = [cb for cb in self.callbacks
                        if group is None or group.is_main or not getattr(cb, "main_process_only", False)]
        self._batch_begin = [cb for cb in self._active if _overrides(cb, "on_batch_begin")]
        self._batch_end = [cb for cb in self._active if _overrides(cb, "on_batch_end")]

    @property
    def has_batch_hooks(self) -> bool:
        return bool(self._batch_begin or self._batch_end)

    @property
    def has_batch_end(self) -> bool:
        return bool(self._batch_end)

    @property
    def reads_batch_loss(self) -> bool:
        """Whether a callback's ``on_batch_end`` needs ``logs["loss"]`` (a per-step device read)."""
        return any(getattr(cb, "reads_batch_loss", True) for cb in self._batch_end)

    def on_train_begin(self, logs: Logs) -> None:
        for cb in self._active:
            cb.on_train_begin(logs)

    def on_train_end(self, logs: Logs) -> None:
        for cb in self._active:
            cb.on_train_end(logs)

    def on_epoch_begin(self, epoch: int, logs: Logs) -> None:
        for cb in self._active:
            cb.on_epoch_begin(epoch, logs)

    def on_epoch_end(self, epoch: int, logs: Logs) -> None:
        for cb in self._active:
            cb.on_epoch_end(epoch, logs)

    def on_batch_begin(self, batch: int, logs: Logs) -> None:
        for cb in self._batch_begin:
            cb.on_batch_begin(batch, logs)

    def on_batch_end(self, batch: int, logs: Logs) -> None:
        for cb in self._batch_end:
            cb.on_batch_end(batch, logs)


class History(Callback):
    """Per-epoch record of everything in the epoch logs (Keras' ``History``).

    ``history.history["val_loss"][e]`` is the validation loss after epoch ``e`` (0-based);
    ``history.epoch`` lists the epoch numbers. Standard keys: ``loss``, ``accuracy``, ``val_loss``,
    ``val_accuracy``, ``lr``, ``time`` (seconds of the epoch, training and validation).
    """

    def __init__(self) -> None:
        self.epoch: list[int] = []
        self.history: dict[str, list[float]] = {}

    def on_epoch_end(self, epoch: int, logs: Logs) -> None:
        self.epoch.append(epoch)
        for k, v in logs.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                self.history.setdefault(k, []).append(float(v))

    def __getitem__(self, key: str) -> list[float]:
        return self.history[key]

    def __contains__(self, key: str) -> bool:
        return key in self.history

    def records(self) -> list[dict[str, float]]:
        """One dict per epoch: ``{"epoch": e, "loss": ..., ...}``."""
        out = []
        for i, e in enumerate(self.epoch):
            row: dict[str, float] = {"epoch": e}
            for k, vals in self.history.items():
                if i < len(vals):
                    row[k] = vals[i]
            out.append(row)
        return out

    def state_dict(self) -> dict:
        return {"epoch": list(self.epoch), "history": {k: list(v) for k, v in self.history.items()}}

    def load_state_dict(self, state: dict) -> None:
        self.epoch = list(state["epoch"])
        self.history = {k: list(v) for k, v in state["history"].items()}

    def __repr__(self) -> str:
        return f"History(epochs={len(self.epoch)}, keys={sorted(self.history)})"


def format_logs(logs: Logs, keys: Iterable[str] | None = None) -> str:
    parts = []
    for k, v in logs.items():
        if keys is not None and k not in keys:
            continue
        if isinstance(v, float):
            if k == "time":
                parts.append(f"{k} {v:.2f}s")
            elif k == "lr" or abs(v) < 1e-3 and v != 0:
                parts.append(f"{k} {v:.3g}")
            else:
                parts.append(f"{k} {v:.4f}")
    return "  ".join(parts)


class ProgressLogger(Callback):
    """One line per epoch: ``epoch 3/20  loss 0.2311  accuracy 0.9120  val_loss ...``.

    On an interactive terminal a ``tqdm`` bar also shows the batches of the running epoch.
    """

    main_process_only = True
    reads_batch_loss = False  # the bar counts batches; it shows no batch loss

    def __init__(self, stream=None, bar: bool | None = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.bar = bar if bar is not None else bool(getattr(self.stream, "isatty", lambda: False)())
        self._pbar = None

    def on_epoch_begin(self, epoch: int, logs: Logs) -> None:
        self._t0 = time.perf_counter()
        if self.bar:
            from tqdm.auto import tqdm
            self._pbar = tqdm(total=self.loop.steps_per_epoch, leave=False, file=self.stream,
                              desc=f"epoch {epoch + 1}/{self.loop.epochs}", mininterval=0.25)

    def on_batch_end(self, batch: int, logs: Logs) -> None:
        if self._pbar is not None:
            self._pbar.update(1)

    def on_epoch_end(self, epoch: int, logs: Logs) -> None:
        if self._pbar is not None:
            self._pbar.close()
            self._pbar = None
        width = len(str(self.loop.epochs))
        print(f"epoch {epoch + 1:>{width}}/{self.loop.epochs}  {format_logs(logs)}", file=self.stream,
              flush=True)

    def on_train_end(self, logs: Logs) -> None:
        # a run that ends before its last epoch says why, where the epoch lines stop
        for cb in self.loop.callbacks.callbacks:
            if isinstance(cb, EarlyStopping) and cb.stopped_epoch and not cb.verbose:
                print(cb.stop_message(), file=self.stream, flush=True)


# ---- stopping, checkpoints, logging -----------------------------------------------------------

def _direction(monitor: str, mode: str) -> str:
    """``"min"`` or ``"max"`` for ``monitor`` under ``mode`` (``"auto"`` guesses from the name)."""
    if mode not in ("auto", "min", "max"):
        raise ValueError(f"mode must be 'auto', 'min' or 'max', got {mode!r}")
    if mode != "auto":
        return mode
    name = monitor.removeprefix("val_")
    if name in ("accuracy", "acc", "auc", "precision", "recall", "f1") or name.endswith("accuracy"):
        return "max"
    if name in ("loss", "error", "mse", "mae") or name.endswith("loss") or name.endswith("error"):
        return "min"
    raise ValueError(f"cannot tell whether {monitor!r} should be minimized or maximized; "
                     "pass mode='min' or mode='max'")


def _copy_state(model) -> dict:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


class EarlyStopping(Callback):
    """Stop training when a monitored quantity has stopped improving (Keras' ``EarlyStopping``).

    At the end of every epoch ``e >= start_from_epoch`` the monitored value ``v`` counts as an
    improvement over the best so far when

        mode 'min':  v < best − min_delta          mode 'max':  v > best + min_delta

    An improvement resets the wait counter (only when ``v`` also beats ``baseline``, if given);
    otherwise the counter grows, and once it reaches ``patience`` training stops (never after
    the very first epoch). Notes 003, "early stopping"; Prechelt (1998), "Early stopping — but when?".

    Args:
        monitor: a key of the epoch logs (default ``"val_loss"``).
        min_delta: smallest change that counts as an improvement (absolute; default 0).
        patience: epochs without improvement before stopping (default 0).
        mode: ``"min"``, ``"max"`` or ``"auto"`` (accuracy-like names → max, loss-like → min).
        baseline: a value the monitor must beat before the wait counter is ever reset.
        restore_best_weights: put back the weights (and buffers) of the best epoch when training
            ends, whether or not it was stopped early.
        start_from_epoch: warm-up epochs that are not monitored (default 0).
        verbose: print when stopping and restoring.

    After training, ``stopped_epoch`` (the epoch it stopped after; 0 when it was not stopped),
    ``best_epoch`` / ``best`` and ``reason`` (a sentence; empty without a stop) say what happened.
    Epochs are numbered from 1, as the progress lines, the CSVs and the report count them.

    Differences from Keras 3: ``best`` is reset at every ``on_train_begin`` (Keras keeps it across
    ``fit`` calls); a monitor missing from the logs warns once rather than every epoch.
    """

    def __init__(self, monitor: str = "val_loss", min_delta: float = 0.0, patience: int = 0,
                 mode: str = "auto", baseline: float | None = None, restore_best_weights: bool = False,
                 start_from_epoch: int = 0, verbose: bool = False):
        if not isinstance(patience, int) or patience < 0:
            raise ValueError(f"patience must be a non-negative integer, got {patience!r}")
        if not isinstance(start_from_epoch, int) or start_from_epoch < 0:
            raise ValueError(f"start_from_epoch must be a non-negative integer, got {start_from_epoch!r}")
        if not isinstance(min_delta, (int, float)) or not math.isfinite(min_delta):
            raise ValueError(f"min_delta must be a finite number, got {min_delta!r}")
        self.monitor, self.patience, self.baseline = monitor, patience, baseline
        self.min_delta = abs(float(min_delta))
        self.mode = _direction(monitor, mode)
        self.restore_best_weights = restore_best_weights
        self.start_from_epoch = start_from_epoch
        self.verbose = verbose
        self._reset()

    def _reset(self) -> None:
        self.wait = 0
        self.stopped_epoch = 0
        self.best = math.inf if self.mode == "min" else -math.inf
        self.best_epoch = 0
        self.reason = ""
        self.best_weights: dict | None = None
        self._warned = False

    def _improves(self, value: float, reference: float) -> bool:
        if self.mode == "min":
            return value + self.min_delta < reference
        return value - self.min_delta > reference

    def on_train_begin(self, logs: Logs) -> None:
        self._reset()

    def on_epoch_end(self, epoch: int, logs: Logs) -> None:
        value = logs.get(self.monitor)
        if value is None:
            if not self._warned:
                warnings.warn(f"EarlyStopping monitors {self.monitor!r}, which is not in the logs "
                              f"(available: {', '.join(logs)})", stacklevel=2)
                self._warned = True
            return
        if epoch < self.start_from_epoch:
            return
        value = float(value)
        if self.restore_best_weights and self.best_weights is None:
            self.best_weights, self.best_epoch = _copy_state(self.loop.model), epoch + 1
        self.wait += 1
        if self._improves(value, self.best):
            self.best, self.best_epoch = value, epoch + 1
            if self.restore_best_weights:
                self.best_weights = _copy_state(self.loop.model)
            if self.baseline is None or self._improves(value, self.baseline):
                self.wait = 0
            return
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch + 1
            by = f" by more than {self.min_delta:g}" if self.min_delta else ""
            self.reason = (f"{self.monitor} did not improve{by} for {self.wait} "
                           f"epoch{'s' if self.wait != 1 else ''} (patience {self.patience}); best "
                           f"{self.best:.4g} at epoch {self.best_epoch}")
            self.loop.stop_training = True

    def stop_message(self) -> str:
        """``early stopping after epoch 12 of 40: <reason>`` (empty when training was not stopped)."""
        if not self.stopped_epoch:
            return ""
        return f"early stopping after epoch {self.stopped_epoch} of {self.loop.epochs}: {self.reason}"

    def on_train_end(self, logs: Logs) -> None:
        if self.stopped_epoch > 0 and self.verbose:
            print(self.stop_message(), file=sys.stderr)
        if self.restore_best_weights and self.best_weights is not None:
            if self.verbose:
                print(f"restoring the weights of the best epoch, {self.best_epoch}", file=sys.stderr)
            self.loop.model.load_state_dict(self.best_weights)

    def state_dict(self) -> dict:
        return {"wait": self.wait, "stopped_epoch": self.stopped_epoch, "best": self.best,
                "best_epoch": self.best_epoch, "best_weights": self.best_weights, "reason": self.reason}

    def load_state_dict(self, state: dict) -> None:
        self.wait, self.stopped_epoch = int(state["wait"]), int(state["stopped_epoch"])
        self.best, self.best_epoch = float(state["best"]), int(state["best_epoch"])
        self.best_weights = state["best_weights"]
        self.reason = str(state.get("reason", ""))


class ModelCheckpoint(Callback):
    """Save full checkpoints at epoch ends: the last epoch, the best one, and/or every N epochs.

    Each checkpoint is one safetensors file holding the weights, the optimizer state, the state
    of every callback (schedules, early stopping, history), the global RNG, the data-order
    generator and the loop position (:mod:`trainlab.train.checkpoint`), written atomically: a
    crash mid-write leaves the previous checkpoint intact. ``fit(..., resume_from=path)`` continues
    from one. Files in ``dirpath``:

    ``last.safetensors``        after every epoch (``save_last``)
    ``best.safetensors``        when ``monitor`` improves (``save_best``), improvement as in
                                :class:`EarlyStopping` (``mode``, ``min_delta``)
    ``epoch-0005.safetensors``  after every ``every_n_epochs``-th epoch (1-based numbering)

    A state holding NaN/Inf (weights, optimizer state, or a non-finite value in the epoch logs)
    is never written: the callback warns and keeps the previous checkpoint. It runs after all
    other callbacks at epoch end (``order = 100``), so their updates of that epoch are included.

    Args:
        dirpath: folder for the files (created when needed).
        monitor, mode, min_delta: what "best" means (default: lowest ``val_loss``).
        save_last, save_best, every_n_epochs: which files to write (``every_n_epochs=0``: none).
        metadata: JSON-able data stored in every checkpoint (the runner stores the config).
        verbose: print a line for each file written.

    Unlike Keras there is no weights-only mode: a checkpoint is always complete, and
    :func:`trainlab.train.checkpoint.load_weights` reads the weights out of one.
    """

    main_process_only = True

    order = 100

    def __init__(self, dirpath: str | Path, *, monitor: str = "val_loss", mode: str = "auto",
                 min_delta: float = 0.0, save_last: bool = True, save_best: bool = False,
                 every_n_epochs: int = 0, metadata: dict | None = None, verbose: bool = False):
        if not isinstance(every_n_epochs, int) or every_n_epochs < 0:
            raise ValueError(f"every_n_epochs must be a non-negative integer, got {every_n_epochs!r}")
        if not (save_last or save_best or every_n_epochs):
            raise ValueError("ModelCheckpoint would write nothing: set save_last, save_best or every_n_epochs")
        self.dirpath = Path(dirpath)
        self.monitor, self.min_delta = monitor, abs(float(min_delta))
        self.mode = _direction(monitor, mode) if save_best else mode
        self.save_last, self.save_best, self.every_n_epochs = save_last, save_best, every_n_epochs
        self.metadata = dict(metadata or {})
        self.verbose = verbose
        self.best = math.inf if self.mode == "min" else -math.inf
        self.best_epoch: int | None = None
        self.skipped: list[int] = []  # epochs whose state was not finite, so nothing was written
        self._warned = False

    @property
    def last_path(self) -> Path:
        return self.dirpath / "last.safetensors"

    @property
    def best_path(self) -> Path:
        return self.dirpath / "best.safetensors"

    def epoch_path(self, epoch: int) -> Path:
        """The file of the checkpoint taken after ``epoch`` (0-based)."""
        return self.dirpath / f"epoch-{epoch + 1:04d}.safetensors"

    def _improves(self, value: float) -> bool:
        if self.mode == "min":
            return value + self.min_delta < self.best
        return value - self.min_delta > self.best

    def on_epoch_end(self, epoch: int, logs: Logs) -> None:
        from trainlab.train.checkpoint import atomic_write_bytes, capture, checkpoint_bytes, nonfinite_entries

        improved = False
        if self.save_best:
            value = logs.get(self.monitor)
            if value is None:
                if not self._warned:
                    warnings.warn(f"ModelCheckpoint monitors {self.monitor!r}, which is not in the logs "
                                  f"(available: {', '.join(logs)}); no best checkpoint", stacklevel=2)
                    self._warned = True
            elif math.isfinite(float(value)) and self._improves(float(value)):
                improved = True
        targets = []
        if self.save_last:
            targets.append(self.last_path)
        if self.every_n_epochs and (epoch + 1) % self.every_n_epochs == 0:
            targets.append(self.epoch_path(epoch))
        if improved:
            targets.append(self.best_path)
        if not targets:
            return
        bad_logs = [k for k, v in logs.items()
                    if isinstance(v, float) and not math.isfinite(v) and k not in ("lr", "time")]
        if improved:  # the best-so-far is part of the saved state of this callback
            old = (self.best, self.best_epoch)
            self.best, self.best_epoch = float(logs[self.monitor]), epoch
        ckpt = capture(self.loop, extra=self.metadata)
        bad = bad_logs + nonfinite_entries(ckpt)
        if bad:
            if improved:
                self.best, self.best_epoch = old
            self.skipped.append(epoch)
            warnings.warn(f"epoch {epoch + 1}: not writing a checkpoint, the state is not finite "
                          f"({', '.join(bad[:5])}); the previous checkpoint stays", stacklevel=2)
            return
        data = checkpoint_bytes(ckpt)
        for path in targets:
            atomic_write_bytes(path, data)
            if self.verbose:
                print(f"epoch {epoch + 1}: checkpoint {path}", file=sys.stderr)

    def state_dict(self) -> dict:
        return {"best": self.best, "best_epoch": self.best_epoch, "skipped": list(self.skipped)}

    def load_state_dict(self, state: dict) -> None:
        self.best = float(state["best"])
        self.best_epoch = None if state["best_epoch"] is None else int(state["best_epoch"])
        self.skipped = [int(e) for e in state["skipped"]]


class TerminateOnNaN(Callback):
    """Stop training as soon as a loss, a validation metric or (optionally) a weight is NaN/±Inf.

    The fit loop itself raises :class:`~trainlab.train.loop.NonFiniteLossError` (naming epoch and
    step) the moment a *training* loss is not finite, before any callback sees that epoch end, so
    no checkpoint of a diverged state can be written. This callback adds the checks the loop does
    not make: a non-finite value anywhere in the epoch logs (e.g. ``val_loss`` overflowing while
    the training loss is still finite), a non-finite batch loss reported by other loops, and with
    ``check_weights`` non-finite parameters. It then stops training (no exception) and records
    ``stopped_epoch`` and ``reason``. :class:`ModelCheckpoint` refuses non-finite states on its own,
    so no NaN checkpoint is written either way.

    Keras' ``TerminateOnNaN`` checks only the batch loss.
    """

    def __init__(self, check_weights: bool = True):
        self.check_weights = check_weights
        self.stopped_epoch: int | None = None
        self.reason = ""

    def _stop(self, reason: str) -> None:
        self.reason = reason
        self.stopped_epoch = self.loop.epoch
        self.loop.stop_training = True
        print(f"epoch {self.loop.epoch + 1}: {reason}; training stopped (TerminateOnNaN)", file=sys.stderr)

    def on_batch_end(self, batch: int, logs: Logs) -> None:
        loss = logs.get("loss")
        if loss is not None and not math.isfinite(float(loss)) and self.stopped_epoch is None:
            self._stop(f"batch {batch + 1}: loss is {loss}")

    def on_epoch_end(self, epoch: int, logs: Logs) -> None:
        if self.stopped_epoch is not None:
            return
        for k, v in logs.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool) and not math.isfinite(v):
                self._stop(f"{k} is {v}")
                return
        if self.check_weights:
            import torch
            for name, p in self.loop.model.named_parameters():
                if not bool(torch.isfinite(p).all()):
                    self._stop(f"parameter {name} holds NaN/Inf")
                    return


class CSVLogger(Callback):
    """Append one row per epoch to a CSV file: ``epoch`` (1-based), then every value in the logs.

    The columns are fixed by the first epoch (later new keys are ignored; missing ones are
    written as ``NA``, as Keras does). With ``append=False`` an existing file is replaced when
    training begins. Each row is written and flushed at its epoch end, so a crash loses at most
    the running epoch; on resume the file is rewritten from the checkpoint's rows, so rows of
    epochs after the checkpoint disappear.

    Args:
        filename: the CSV path.
        separator: the field separator (default ``","``).
        append: keep an existing file and add rows to it.
    """

    main_process_only = True

    def __init__(self, filename: str | Path, separator: str = ",", append: bool = False):
        if not isinstance(separator, str) or len(separator) != 1:
            raise ValueError(f"separator must be one character, got {separator!r}")
        self.filename = Path(filename)
        self.separator, self.append = separator, append
        self.keys: list[str] | None = None
        self.rows: list[list[str]] = []
        self._rewrite = False

    def _line(self, fields) -> str:
        return self.separator.join(str(f) for f in fields) + "\n"

    def on_train_begin(self, logs: Logs) -> None:
        self.filename.parent.mkdir(parents=True, exist_ok=True)
        if self.append and self.filename.exists() and self.filename.stat().st_size > 0:
            with open(self.filename) as f:
                header = f.readline().rstrip("\n")
            self.keys = header.split(self.separator)[1:] or None
        else:
            self.keys = None
            self.filename.write_text("")
        self.rows = []
        self._rewrite = False

    def on_epoch_end(self, epoch: int, logs: Logs) -> None:
        new_file = self.keys is None
        if new_file:
            self.keys = [k for k, v in logs.items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
        row = [str(epoch + 1)] + [repr(float(logs[k])) if k in logs else "NA" for k in self.keys]
        self.rows.append(row)
        with open(self.filename, "a") as f:
            if new_file:
                f.write(self._line(["epoch"] + self.keys))
            f.write(self._line(row))
            f.flush()

    def state_dict(self) -> dict:
        return {"keys": self.keys, "rows": [list(r) for r in self.rows]}

    def load_state_dict(self, state: dict) -> None:
        keys, rows = state["keys"], state["rows"]
        if not (keys is None or isinstance(keys, list) and all(isinstance(k, str) for k in keys)):
            raise ValueError("CSVLogger state: keys must be a list of column names or null")
        if not (isinstance(rows, list) and all(isinstance(r, list) and all(isinstance(c, str) for c in r)
                                              for r in rows)):
            raise ValueError("CSVLogger state: rows must be lists of strings")
        self.keys, self.rows = keys, [list(r) for r in rows]
        # the file is rewritten when training goes on, not here: loading a state (also the trial
        # load that checks a checkpoint before a resume) must not touch the file
        self._rewrite = True

    def _write_restored(self) -> None:
        from trainlab.train.checkpoint import atomic_write_bytes

        if getattr(self, "_rewrite", False):
            self._rewrite = False
            text = "" if self.keys is None else self._line(["epoch"] + self.keys)
            atomic_write_bytes(self.filename, (text + "".join(self._line(r) for r in self.rows)).encode())

    def on_epoch_begin(self, epoch: int, logs: Logs) -> None:
        self._write_restored()

    def on_train_end(self, logs: Logs) -> None:
        self._write_restored()


class TensorBoard(Callback):
    """Log the epoch scalars, and weight and gradient histograms, for TensorBoard.

    Needs the optional ``tensorboard`` package (``pip install 'trainlab[tensorboard]'``). Scalars
    (every value in the epoch logs) are written every epoch; histograms of every parameter and of
    its gradient (from the epoch's last step) every ``histogram_freq`` epochs (0 = never).

    Args:
        log_dir: the event-file folder (``tensorboard --logdir`` it).
        histogram_freq: epochs between histograms (default 1).
    """

    main_process_only = True

    def __init__(self, log_dir: str | Path, histogram_freq: int = 1):
        if not isinstance(histogram_freq, int) or histogram_freq < 0:
            raise ValueError(f"histogram_freq must be a non-negative integer, got {histogram_freq!r}")
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise ImportError("the TensorBoard callback needs the tensorboard package: "
                              "pip install 'trainlab[tensorboard]'") from None
        self.log_dir, self.histogram_freq = Path(log_dir), histogram_freq
        self._writer_cls = SummaryWriter
        self.writer = None

    def on_train_begin(self, logs: Logs) -> None:
        self.writer = self._writer_cls(log_dir=str(self.log_dir))

    def on_epoch_end(self, epoch: int, logs: Logs) -> None:
        for k, v in logs.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                self.writer.add_scalar(k, float(v), epoch + 1)
        if self.histogram_freq and (epoch + 1) % self.histogram_freq == 0:
            for name, p in self.loop.model.named_parameters():
                self.writer.add_histogram(f"weights/{name}", p.detach().cpu(), epoch + 1)
                if p.grad is not None:
                    self.writer.add_histogram(f"gradients/{name}", p.grad.detach().cpu(), epoch + 1)
        self.writer.flush()

    def on_train_end(self, logs: Logs) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


class LearningRateScheduler(Callback):
    """Drive the optimizer's learning rate from a schedule (:mod:`trainlab.schedules`).

    A step → lr schedule is evaluated at the start of every epoch (``unit="epoch"``: t = epochs
    done) or of every optimizer step (``unit="step"``: t = steps done, ``self.loop.step``). A
    stateful rule (``ReduceOnPlateau``, ``Adaptive``) is fed ``logs[rule.monitor]`` at the end of
    each epoch and its lr applies from the next epoch; when an ``Adaptive`` rule gives up
    (scikit-learn's stop) training stops.

    A schedule without ``lr`` takes the optimizer's lr at the start of training; one without
    ``total_steps`` takes the run's length (epochs, or epochs × steps per epoch). With several
    param groups each keeps its ratio to the first group's lr. Keras' callback of the same name
    calls ``schedule(epoch, lr)``; ours takes trainlab schedules (any ``t -> lr`` callable works
    too, as an epoch schedule). ``verbose`` prints each change of the lr.
    """

    def __init__(self, schedule, verbose: bool = False) -> None:
        if not callable(schedule):
            raise TypeError(f"schedule must be a trainlab schedule or a callable t -> lr, got {type(schedule).__name__}")
        self.schedule = schedule
        self.verbose = verbose
        self.base_lrs: list[float] | None = None
        self._last: float | None = None

    @property
    def unit(self) -> str:
        return getattr(self.schedule, "unit", "epoch")

    @property
    def is_rule(self) -> bool:
        return hasattr(self.schedule, "observe")

    def on_train_begin(self, logs: Logs) -> None:
        groups = self.loop.optimizer.param_groups
        if self.base_lrs is None:
            self.base_lrs = [float(g["lr"]) for g in groups]
        if hasattr(self.schedule, "bind"):
            total = self.loop.epochs * (self.loop.steps_per_epoch if self.unit == "step" else 1)
            self.schedule = self.schedule.bind(lr=self.base_lrs[0], total_steps=max(total, 1))
        if self.is_rule:
            self._set(self.schedule.at(0))

    def _set(self, lr: float) -> None:
        base0 = self.base_lrs[0]
        for g, b in zip(self.loop.optimizer.param_groups, self.base_lrs):
            g["lr"] = lr * (b / base0) if base0 else lr
        if self.verbose and lr != self._last:
            print(f"LearningRateScheduler: lr = {lr:.4g} (epoch {self.loop.epoch + 1}, step {self.loop.step})",
                  file=sys.stderr)
        self._last = lr

    def on_epoch_begin(self, epoch: int, logs: Logs) -> None:
        if not self.is_rule and self.unit == "epoch":
            self._set(float(self.schedule(epoch)))

    def on_batch_begin(self, batch: int, logs: Logs) -> None:
        if not self.is_rule and self.unit == "step":
            self._set(float(self.schedule(self.loop.step)))

    def on_epoch_end(self, epoch: int, logs: Logs) -> None:
        if not self.is_rule:
            return
        monitor = self.schedule.monitor
        if monitor not in logs:
            raise KeyError(f"{type(self.schedule).__name__} monitors {monitor!r}, which is not in the epoch "
                           f"logs (have: {', '.join(sorted(logs))}); pass validation data or monitor 'loss'")
        self._set(self.schedule.observe(logs[monitor]))
        if getattr(self.schedule, "stop", False):
            self.loop.stop_training = True

    def state_dict(self) -> dict:
        state: dict = {"base_lrs": self.base_lrs}
        if self.is_rule:
            state["rule"] = self.schedule.state_dict()
        return state

    def load_state_dict(self, state: dict) -> None:
        self.base_lrs = state.get("base_lrs", self.base_lrs)
        if self.is_rule and "rule" in state:
            self.schedule.load_state_dict(state["rule"])


class ReduceLROnPlateau(LearningRateScheduler):
    """Multiply the lr by ``factor`` when ``monitor`` has stopped improving (Keras' callback names).

    Args: ``monitor`` ("val_loss"), ``factor`` (0.1), ``patience`` (10), ``mode`` ("min", "max" or
    "auto": "max" for accuracy-like keys), ``min_delta`` (1e-4), ``threshold_mode`` ("abs" as Keras'
    min_delta; "rel" as PyTorch), ``cooldown`` (0), ``min_lr`` (0), ``verbose``.
    The counting follows PyTorch (reduce when bad epochs exceed ``patience``); see
    :class:`trainlab.schedules.ReduceOnPlateau`.
    """

    def __init__(self, monitor: str = "val_loss", factor: float = 0.1, patience: int = 10,
                 mode: str = "auto", min_delta: float = 1e-4, threshold_mode: str = "abs",
                 cooldown: int = 0, min_lr: float = 0.0, verbose: bool = False) -> None:
        from trainlab.schedules import ReduceOnPlateau
        if mode == "auto":
            mode = _direction(monitor, "auto")
        rule = ReduceOnPlateau(None, mode=mode, factor=factor, patience=patience, threshold=min_delta,
                               threshold_mode=threshold_mode, cooldown=cooldown, min_lr=min_lr,
                               monitor=monitor)
        super().__init__(rule, verbose=verbose)


class ReactivateDeadUnits(Callback):
    """Every ``every`` epochs, bring the ReLU units that are dead on a probe batch back to life.

    A unit is dead when it outputs 0 for every probe sample (notes 004: "always 0, gradient 0,
    never recovers"; notes 000: reactivating dead neurons). At the start of epochs ``every``,
    ``2·every``, ... this calls :func:`trainlab.diagnostics.neurons.reactivate_dead_units` on the
    first ``probe`` training inputs, with the run's optimizer, so a re-drawn unit's momentum and
    Adam moments start from zero too.

    Args:
        every: epochs between checks (default 1: before every epoch after the first).
        probe: training inputs that decide which units are dead (default 256).
        mode: ``"reinit"`` (default: He-normal incoming weights, bias ``bias``), ``"leaky"`` (a
            negative slope ``slope`` for the dead units only) or ``"both"``.
        bias: the bias a re-drawn unit gets (default 0.01, the notes' value against dying ReLUs).
        slope: the leaky mode's negative slope (default 0.01).

    Logs ``reactivated`` (units revived at the start of the epoch; 0 on epochs without a check)
    in every epoch's logs, so it appears in ``metrics.csv``; ``self.events`` lists
    ``(epoch, {layer: units})`` for each check that revived something. Re-drawn weights come from
    torch's global RNG (seeded by the run), so a run stays reproducible.
    """

    def __init__(self, every: int = 1, probe: int = 256, mode: str = "reinit", bias: float = 0.01,
                 slope: float = 0.01):
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"every must be an integer >= 1, got {every!r}")
        if isinstance(probe, bool) or not isinstance(probe, int) or probe < 1:
            raise ValueError(f"probe must be an integer >= 1, got {probe!r}")
        if mode not in ("reinit", "leaky", "both"):
            raise ValueError(f"mode must be 'reinit', 'leaky' or 'both', got {mode!r}")
        if not (isinstance(slope, (int, float)) and 0 < slope < 1):
            raise ValueError(f"slope must lie in (0, 1), got {slope!r}")
        if not (isinstance(bias, (int, float)) and math.isfinite(bias)):
            raise ValueError(f"bias must be a finite number, got {bias!r}")
        self.every, self.probe, self.mode, self.bias, self.slope = every, probe, mode, float(bias), float(slope)
        self.events: list[tuple[int, dict[str, int]]] = []

    def on_epoch_begin(self, epoch: int, logs: Logs) -> None:
        from trainlab.diagnostics.neurons import reactivate_dead_units

        revived = 0
        if epoch > 0 and epoch % self.every == 0:
            x = self.loop.train.data.X[: self.probe]
            done = reactivate_dead_units(self.loop.model, x, mode=self.mode, bias=self.bias, slope=self.slope,
                                         optimizer=self.loop.optimizer)
            revived = sum(done.values())
            if done:
                self.events.append((epoch, dict(done)))
        logs["reactivated"] = revived

    def state_dict(self) -> dict:
        return {"events": [[e, d] for e, d in self.events]}

    def load_state_dict(self, state: dict) -> None:
        self.events = [(int(e), dict(d)) for e, d in state.get("events", [])]


class MagnitudePruning(Callback):
    """Prune the smallest-magnitude weights during training and keep them at zero (notes 002:
    sparsity of connections; Han et al. 2015; Zhu & Gupta 2017).

    At the start of epoch ``start_epoch`` (and, when ``end_epoch`` is given, every ``every`` epochs
    until ``end_epoch``) the masks of :func:`trainlab.nn.pruning.magnitude_masks` are recomputed for
    the sparsity of the schedule and applied; after every optimizer step the masks are applied
    again, so a pruned weight stays exactly zero however the optimizer's state would move it.

    Args:
        sparsity: the final fraction of prunable weights (weight matrices and kernels) set to zero,
            in [0, 1) (default 0.9).
        scope: ``"global"`` (default: one magnitude rank over all layers) or ``"layer"`` (each
            layer pruned to ``sparsity`` on its own).
        start_epoch: the epoch (0-based) of the first cut (default 0: before any training; prune a
            trained net by training dense first, e.g. ``start_epoch: 10``).
        end_epoch: ``None`` (default) prunes to ``sparsity`` at once (one-shot); an epoch > start
            makes the cut gradual, on the cubic schedule s_t = s_f·(1 − (1 − (t − t₀)/(t₁ − t₀))³)
            (:func:`trainlab.nn.pruning.gradual_sparsity`), reaching ``sparsity`` at ``end_epoch``.
        every: epochs between cuts on the gradual schedule (default 1).

    Logs ``sparsity`` (the measured fraction of zero prunable weights) at every epoch's end.
    """

    # before every other callback: the masks are back on the weights before anyone looks at them,
    # and ``sparsity`` is in the epoch's logs before History (and so metrics.csv) records them
    order = -10
    reads_batch_loss = False

    def __init__(self, sparsity: float = 0.9, scope: str = "global", start_epoch: int = 0,
                 end_epoch: int | None = None, every: int = 1):
        from trainlab.nn.pruning import SCOPES, _check_sparsity, check_schedule

        self.sparsity = _check_sparsity(sparsity)
        if scope not in SCOPES:
            raise ValueError(f"scope must be 'global' or 'layer', got {scope!r}")
        check_schedule(start_epoch, end_epoch, every)
        self.scope, self.start_epoch, self.end_epoch, self.every = scope, start_epoch, end_epoch, every
        self.masks: dict | None = None
        self.current = 0.0  # the sparsity of the last cut

    def target(self, epoch: int) -> float:
        """The sparsity the schedule asks for at the start of ``epoch``."""
        from trainlab.nn.pruning import gradual_sparsity

        if epoch < self.start_epoch:
            return 0.0
        if self.end_epoch is None or self.end_epoch == self.start_epoch:
            return self.sparsity
        return gradual_sparsity(epoch, self.sparsity, self.start_epoch, self.end_epoch)

    def on_epoch_begin(self, epoch: int, logs: Logs) -> None:
        from trainlab.nn.pruning import apply_masks, magnitude_masks, prunable_weights

        model = self.loop.model
        if self.masks is None and self.current > 0:
            # resumed from a checkpoint: the saved weights carry the cut, so the masks are their zeros
            self.masks = {n: p.detach() != 0 for n, p in prunable_weights(model).items()}
        due = epoch >= self.start_epoch and (
            self.end_epoch is None and epoch == self.start_epoch
            or self.end_epoch is not None and epoch <= self.end_epoch
            and ((epoch - self.start_epoch) % self.every == 0 or epoch == self.end_epoch))
        if due:
            target = self.target(epoch)
            if target > self.current or self.masks is None:
                self.masks = magnitude_masks(model, target, self.scope)
                self.current = target
        if self.masks is not None:
            apply_masks(model, self.masks)

    def on_batch_end(self, batch: int, logs: Logs) -> None:
        if self.masks is not None:
            from trainlab.nn.pruning import apply_masks

            apply_masks(self.loop.model, self.masks)

    def on_epoch_end(self, epoch: int, logs: Logs) -> None:
        from trainlab.nn.pruning import weight_sparsity

        logs["sparsity"] = weight_sparsity(self.loop.model)

    def state_dict(self) -> dict:
        return {"current": self.current}

    def load_state_dict(self, state: dict) -> None:
        self.current = float(state.get("current", 0.0))
        self.masks = None
