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

import sys
import time
from typing import TYPE_CHECKING, Any, Iterable

if TYPE_CHECKING:
    from trainlab.train.loop import Loop

Logs = dict[str, Any]


class Callback:
    """Base class: every hook is a no-op."""

    loop: "Loop"

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
        self.callbacks = list(callbacks)
        for cb in self.callbacks:
            if not isinstance(cb, Callback):
                raise TypeError(f"callbacks must be trainlab Callback instances, got {type(cb).__name__}")
            cb.set_loop(loop)
        self._batch_begin = [cb for cb in self.callbacks if _overrides(cb, "on_batch_begin")]
        self._batch_end = [cb for cb in self.callbacks if _overrides(cb, "on_batch_end")]

    @property
    def has_batch_hooks(self) -> bool:
        return bool(self._batch_begin or self._batch_end)

    def on_train_begin(self, logs: Logs) -> None:
        for cb in self.callbacks:
            cb.on_train_begin(logs)

    def on_train_end(self, logs: Logs) -> None:
        for cb in self.callbacks:
            cb.on_train_end(logs)

    def on_epoch_begin(self, epoch: int, logs: Logs) -> None:
        for cb in self.callbacks:
            cb.on_epoch_begin(epoch, logs)

    def on_epoch_end(self, epoch: int, logs: Logs) -> None:
        for cb in self.callbacks:
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
