"""The fit loop: mini-batches from memory, a closure step, callbacks, history, a NaN stop.

Every optimizer step goes through a closure that zeroes gradients, runs the forward pass,
computes the loss and back-propagates. Plain optimizers call it once; optimizers that need to
re-evaluate the loss (L-BFGS, Newton, conjugate gradients, Nesterov's true lookahead) call it as
often as their algorithm needs, so every ``torch.optim.Optimizer`` works here unchanged.
"""
from __future__ import annotations

import math
import time
from typing import Iterable

import torch
from torch import Tensor, nn

from trainlab.data.batches import Batches
from trainlab.data.dataset import Dataset, as_dataset
from trainlab.losses import Loss, resolve_loss
from trainlab.train.callbacks import Callback, CallbackList, History, ProgressLogger


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or ±Inf; ``epoch`` and ``step`` say where (0-based)."""

    def __init__(self, value: float, epoch: int, step: int, global_step: int):
        self.value, self.epoch, self.step, self.global_step = value, epoch, step, global_step
        super().__init__(
            f"training loss became {value} at epoch {epoch + 1}, step {step + 1} of that epoch "
            f"(global step {global_step + 1}); training stopped. Lower the learning rate, clip the "
            f"gradients, or check the inputs for NaN/Inf.")


def default_device() -> torch.device:
    """``cuda`` when a GPU is present, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def model_dtype(model: nn.Module) -> torch.dtype:
    """The dtype of the model's first floating parameter or buffer (torch's default without one):
    numpy inputs are cast to it."""
    for t in (*model.parameters(), *model.buffers()):
        if t.is_floating_point():
            return t.dtype
    return torch.get_default_dtype()


def _count_correct(loss_fn, z: Tensor, y: Tensor) -> Tensor | None:
    if isinstance(loss_fn, Loss):
        return loss_fn.correct(z, y) if loss_fn.is_classification else None
    if not y.dtype.is_floating_point and z.dim() == 2 and z.shape[1] > 1:
        return (z.argmax(1) == y).sum()
    return None


@torch.no_grad()
def evaluate(model: nn.Module, data, loss: str | Loss = "cross_entropy", *,
             batch_size: int = 8192, device: torch.device | str | None = None) -> dict[str, float]:
    """Loss and (for classification) accuracy of ``model`` on ``data``, in eval mode.

    The loss is the mean over samples (batches weighted by their size). The model's train/eval
    mode is restored afterwards.
    """
    loss_fn = resolve_loss(loss)
    ds = as_dataset(data, dtype=model_dtype(model))
    if device is not None:
        ds = ds.to(device)
    was_training = model.training
    model.eval()
    total, correct, n = 0.0, 0, len(ds)
    has_acc = False
    try:
        for i in range(0, n, batch_size):
            xb, yb = ds.X[i : i + batch_size], ds.y[i : i + batch_size]
            z = model(xb)
            total += float(loss_fn(z, yb)) * len(xb)
            c = _count_correct(loss_fn, z, yb)
            if c is not None:
                has_acc = True
                correct += int(c)
    finally:
        model.train(was_training)
    out = {"loss": total / max(n, 1)}
    if has_acc:
        out["accuracy"] = correct / max(n, 1)
    return out


class Loop:
    """The state of one :func:`fit` call, shared with the callbacks as ``callback.loop``.

    Attributes callbacks may read: ``model``, ``optimizer``, ``loss_fn``, ``train`` (the
    :class:`Batches`), ``val`` (a :class:`Dataset` or ``None``), ``epochs``, ``epoch`` (0-based,
    the running epoch), ``step`` (global optimizer steps so far), ``steps_per_epoch``,
    ``history``, ``device``, ``generator`` (owns the data order). Callbacks stop training by
    setting ``stop_training = True``.
    """

    def __init__(self, model: nn.Module, train: Batches, val: Dataset | None, *, loss_fn,
                 optimizer: torch.optim.Optimizer, epochs: int, device: torch.device,
                 callbacks: Iterable[Callback], history: History, eval_batch_size: int = 8192,
                 augment=None, seed: int | None = None):
        self.model, self.train, self.val = model, train, val
        self.loss_fn, self.optimizer = loss_fn, optimizer
        self.epochs, self.device, self.history = epochs, device, history
        self.generator = train.generator
        self.steps_per_epoch = len(train)
        self.eval_batch_size = eval_batch_size
        self.augment = augment  # a callable x -> x for training inputs only (trainlab.data.augment)
        self.seed = seed  # recorded in checkpoints; a resume with another seed is refused
        self.epoch = 0
        self.step = 0
        self.stop_training = False
        self.callbacks = CallbackList(callbacks, self)

    def run(self, initial_epoch: int = 0, resume=None) -> History:
        """Train from ``initial_epoch``; with ``resume`` (a :class:`~trainlab.train.checkpoint.Checkpoint`)
        continue where that checkpoint ends. The checkpoint is checked completely before any
        callback runs and its state is put in after ``on_train_begin``."""
        model, optimizer, loss_fn, cbs = self.model, self.optimizer, self.loss_fn, self.callbacks
        batch_hooks = cbs.has_batch_hooks
        stash: dict[str, Tensor] = {}

        def closure(backward: bool = True) -> Tensor:
            # backward=False returns the loss with its graph (Newton differentiates it twice)
            if backward:
                optimizer.zero_grad(set_to_none=True)
            z = model(stash["x"])
            loss = loss_fn(z, stash["y"])
            if backward:
                loss.backward()
            if "z" not in stash:  # the first evaluation is the one this step reports
                stash["z"] = z.detach()
            return loss

        train_logs: dict = {}
        if resume is not None:
            # all of it is checked before any callback runs, so a refused resume touches no file
            from trainlab.train.checkpoint import check_resume, restore
            check_resume(self, resume)
        cbs.on_train_begin(train_logs)
        if resume is not None:
            # put in after on_train_begin, so callbacks that reset themselves there get their saved state
            initial_epoch = restore(self, resume, checked=True)
            self.stop_training = bool(resume.loop.get("stop_training", False))
        for epoch in range(initial_epoch, self.epochs if not self.stop_training else initial_epoch):
            self.epoch = epoch
            logs: dict = {}
            cbs.on_epoch_begin(epoch, logs)
            model.train()
            t0 = time.perf_counter()
            total, correct, seen = 0.0, None, 0
            for b, (xb, yb) in enumerate(self.train):
                if batch_hooks:
                    cbs.on_batch_begin(b, {"batch": b, "size": len(xb)})
                stash.clear()
                if self.augment is not None:
                    xb = self.augment(xb)
                stash["x"], stash["y"] = xb, yb
                loss = optimizer.step(closure)
                if loss is None:
                    raise TypeError(f"{type(optimizer).__name__}.step(closure) returned None; "
                                    "trainlab's fit needs optimizers that return the closure's loss")
                value = loss.item()
                if not math.isfinite(value):
                    raise NonFiniteLossError(value, epoch, b, self.step)
                n = len(xb)
                total += value * n
                seen += n
                c = _count_correct(loss_fn, stash["z"], yb)
                if c is not None:
                    correct = c if correct is None else correct + c
                self.step += 1
                if batch_hooks:
                    cbs.on_batch_end(b, {"batch": b, "size": n, "loss": value})
            logs["loss"] = total / max(seen, 1)
            if correct is not None:
                logs["accuracy"] = int(correct) / max(seen, 1)
            if self.val is not None:
                v = evaluate(model, self.val, loss_fn, batch_size=self.eval_batch_size)
                logs.update({f"val_{k}": val for k, val in v.items()})
            logs["lr"] = float(optimizer.param_groups[0]["lr"])
            logs["time"] = time.perf_counter() - t0
            cbs.on_epoch_end(epoch, logs)
            if self.stop_training:
                break
        cbs.on_train_end(train_logs)
        return self.history


def fit(model: nn.Module, train, val=None, *, loss, optimizer: torch.optim.Optimizer, epochs: int,
        batch_size: int | str = 32, callbacks: Iterable[Callback] = (),
        device: torch.device | str | None = None, seed: int | None = None, verbose: bool = True,
        shuffle: bool = True, drop_last: bool = False, initial_epoch: int = 0,
        generator: torch.Generator | None = None, resume_from=None, augment=None,
        compile: bool = False) -> History:
    """Train ``model`` on ``train`` and return its :class:`History`.

    Args:
        model: any ``nn.Module`` mapping a batch of inputs to outputs (logits for classification).
        train, val: a :class:`trainlab.data.Dataset` or a pair ``(X, y)`` of tensors or numpy
            arrays, held in memory on ``device`` for the whole run. Arrays are converted as
            scikit-learn and Keras users expect: features (and floating targets) to the model's
            dtype, so float64 data trains a float32 model; integer labels to ``int64``. Tensors
            are used as given.
        loss: ``"mse"``, ``"bce"``, ``"cross_entropy"``, a :class:`trainlab.losses.Loss`, or any
            callable ``(outputs, targets) -> scalar``. A named loss checks that it pairs with the
            model's ``head`` attribute when it has one.
        optimizer: any ``torch.optim.Optimizer`` over the model's parameters.
        epochs: number of passes over ``train``.
        batch_size: ``1`` (stochastic GD), ``k`` (mini-batch GD) or ``"full"`` (batch GD).
        callbacks: :class:`Callback` instances; a :class:`History` is always added first.
        device: where model and data live; default ``cuda`` if present, else CPU.
        seed: seeds torch's global RNG (dropout, noise) and the data order; with a seed a CPU run
            is reproducible bit for bit.
        verbose: print one line per epoch (and a batch bar on a terminal).
        shuffle, drop_last: data order per epoch, and whether to drop a short last batch.
        initial_epoch: the epoch to start from (when resuming a run).
        generator: a CPU ``torch.Generator`` for the data order (overrides ``seed`` for it).
        augment: a callable ``x -> x`` applied to the inputs of every training batch (never to
            validation data), e.g. a :class:`trainlab.data.augment.Compose`; a list or tuple of
            augmentations is composed. Its randomness comes from torch's global RNG (seeded by
            ``seed``) unless it owns a generator.
        resume_from: a checkpoint file written by :class:`~trainlab.train.callbacks.ModelCheckpoint`
            (or a loaded :class:`~trainlab.train.checkpoint.Checkpoint`): model, optimizer,
            callbacks, RNG and data order are restored and training continues after the
            checkpoint's epoch. Pass the same model, optimizer and callbacks as the original run;
            on the CPU the result equals the uninterrupted run bit for bit.
        compile: compile the model's forward (and so its backward) with ``torch.compile``
            (:func:`trainlab.train.compile.compile_model`; the model stays compiled after ``fit``).
            The first steps pay for compiling. Needs a C++ compiler on the CPU (Triton on a GPU);
            without one, :class:`~trainlab.train.compile.CompilerMissingError` says so in one line.

    Raises:
        NonFiniteLossError: the loss became NaN/Inf; the error names the epoch and step.
    """
    if not isinstance(epochs, int) or epochs < 0:
        raise ValueError(f"epochs must be a non-negative integer, got {epochs!r}")
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}")
    loss_fn = resolve_loss(loss)
    if isinstance(loss_fn, Loss):
        loss_fn.check_pairing(model)
    if resume_from is not None:  # read (and validate) it before any work is done
        from trainlab.train.checkpoint import Checkpoint, load_checkpoint
        if not isinstance(resume_from, Checkpoint):
            resume_from = load_checkpoint(resume_from)
    device = torch.device(device) if device is not None else default_device()
    if seed is not None:
        torch.manual_seed(seed)
    if generator is None:
        generator = torch.Generator()
        generator.manual_seed(seed if seed is not None else int(torch.randint(0, 2**62, (1,)).item()))
    model.to(device)
    if compile:
        from trainlab.train.compile import compile_model
        compile_model(model, device)
    dtype = model_dtype(model)
    train_ds = as_dataset(train, "train", dtype=dtype).to(device)
    val_ds = as_dataset(val, "val", dtype=dtype).to(device) if val is not None else None
    batches = Batches(train_ds, batch_size, shuffle=shuffle, drop_last=drop_last, generator=generator)
    if len(batches) == 0:
        raise ValueError(f"no training batches: {len(train_ds)} samples with batch_size={batch_size} "
                         "and drop_last=True")
    callbacks = list(callbacks)
    history = next((cb for cb in callbacks if isinstance(cb, History)), None)
    if history is None:
        history = History()
        callbacks.insert(0, history)
    if verbose and not any(isinstance(cb, ProgressLogger) for cb in callbacks):
        callbacks.append(ProgressLogger())
    if isinstance(augment, (list, tuple)):
        from trainlab.data.augment import Compose
        augment = Compose(augment)
    if augment is not None and not callable(augment):
        raise TypeError(f"augment must be a callable x -> x, got {type(augment).__name__}")
    loop = Loop(model, batches, val_ds, loss_fn=loss_fn, optimizer=optimizer, epochs=epochs,
                device=device, callbacks=callbacks, history=history, augment=augment, seed=seed)
    return loop.run(initial_epoch, resume=resume_from)
