"""The fit loop: mini-batches from memory, a closure step, callbacks, history, a NaN stop.

Every optimizer step goes through a closure that zeroes gradients, runs the forward pass,
computes the loss and back-propagates. Plain optimizers call it once; optimizers that need to
re-evaluate the loss (L-BFGS, Newton, conjugate gradients, Nesterov's true lookahead) call it as
often as their algorithm needs, so every ``torch.optim.Optimizer`` works here unchanged.

Nothing in a step waits for the device: on a GPU each step's loss and correct count stay device
tensors and are summed once at the end of the epoch (one read per epoch). The NaN check reads them
then too, so a non-finite loss is reported at the end of its epoch with the epoch and step where it
first appeared (the steps after it ran on NaN weights and changed nothing that is kept: the
error stops the run before any callback sees that epoch end). A callback that reads the batch
loss (one that overrides ``on_batch_end`` and keeps ``Callback.reads_batch_loss``) gets it as a
Python float every step, and then the check is made every step as well. On the CPU reading a
number waits for nothing, so the loss is read and checked at every step (cheaper there than the
tensor sums); the correct counts are summed once per epoch either way.
"""
from __future__ import annotations

import itertools
import math
import time
from typing import Iterable

import torch
from torch import Tensor, nn

from trainlab.data.batches import Batches
from trainlab.data.dataset import Dataset, as_dataset
from trainlab.losses import Loss, resolve_loss
from trainlab.train.callbacks import Callback, CallbackList, History, ProgressLogger
from trainlab.train.rng import GLOBAL_RNG_LOCK, manual_seed


# on the CPU a step's loss is read (and checked) at once; False keeps it on the device until the
# epoch ends, as on a GPU (the tests run that path on the CPU this way)
READ_CPU_LOSS_EACH_STEP = True


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
    for t in itertools.chain(model.parameters(), model.buffers()):  # lazily: stops at the first
        if t.is_floating_point():
            return t.dtype
    return torch.get_default_dtype()


def _argmax_correct(z: Tensor, y: Tensor) -> Tensor | None:
    # a loss function that is not a trainlab Loss: class-index targets and one logit per class
    if not y.dtype.is_floating_point and z.dim() == 2 and z.shape[1] > 1:
        return (z.argmax(1) == y).sum()
    return None


def _count_correct(loss_fn, z: Tensor, y: Tensor) -> Tensor | None:
    if isinstance(loss_fn, Loss):
        return loss_fn.correct(z, y) if loss_fn.is_classification else None
    return _argmax_correct(z, y)


def _correct_counter(loss_fn):
    """``(z, y) -> correct count`` (a device tensor) for ``loss_fn``, or ``None`` when it has no accuracy."""
    if isinstance(loss_fn, Loss):
        return loss_fn.correct if loss_fn.is_classification else None
    return _argmax_correct


def _set_mode(model: nn.Module, modules: list[nn.Module], training: bool) -> bool:
    """``model.train(training)`` over ``modules`` (the model's, listed once). When no module
    overrides ``train`` — ``nn.Module.train`` only sets each module's flag — the flags are set
    directly, and not at all when every module is in that mode already: the recursive walk is
    what a tiny model's epoch would notice. Returns whether it may have changed anything."""
    if any(type(m).train is not nn.Module.train for m in modules):
        model.train(training)  # an override may do more than set flags (keep a norm frozen, ...)
        return True
    if all(m.training == training for m in modules):
        return False
    for m in modules:
        m.__dict__["training"] = training  # where nn.Module.train puts it
    return True


def _check_finite(losses: list[Tensor], epoch: int, first_step: int, sizes: list[int] | None = None,
                  corrects: list | None = None, from_error: BaseException | None = None):
    """Read an epoch's step losses once: raise :class:`NonFiniteLossError` at the first non-finite
    one, else return ``(Σ loss·batch size, Σ correct or None)``.

    The sum is in float64, as a Python float sum of ``loss.item() * n`` would be. With
    ``from_error`` (a step raised) only the check is made.
    """
    if not losses:  # every loss was read at once (CPU): only the correct counts are left
        if not corrects or from_error is not None:
            return 0.0, None
        total = torch.stack([c.reshape(()) for c in corrects]).sum()
        return 0.0, int(total) if not total.is_floating_point() else float(total)
    step_losses = torch.stack(losses)
    finite = torch.isfinite(step_losses)
    if from_error is not None or sizes is None:
        if not bool(finite.all()):
            b = int((~finite).nonzero()[0, 0])
            raise NonFiniteLossError(float(step_losses[b]), epoch, b, first_step + b) from from_error
        return 0.0, None
    weights = torch.tensor(sizes, dtype=torch.float64, device=step_losses.device)
    parts = [(step_losses.double() * weights).sum(), finite.all().double()]
    if corrects:
        parts.append(torch.stack([c.reshape(()) for c in corrects]).sum().double())
    read = torch.stack(parts).tolist()  # the epoch's one read from the device
    if not read[1]:
        b = int((~finite).nonzero()[0, 0])
        raise NonFiniteLossError(float(step_losses[b]), epoch, b, first_step + b)
    correct = None
    if corrects:
        correct = int(read[2]) if not any(c.is_floating_point() for c in corrects) else read[2]
    return read[0], correct


@torch.no_grad()
def evaluate(model: nn.Module, data, loss: str | Loss = "cross_entropy", *,
             batch_size: int = 8192, device: torch.device | str | None = None,
             _modules: list[nn.Module] | None = None) -> dict[str, float]:
    """Loss and (for classification) accuracy of ``model`` on ``data``, in eval mode.

    The loss is the mean over samples (batches weighted by their size). The model's train/eval
    mode is restored afterwards.
    """
    loss_fn = resolve_loss(loss)
    ds = as_dataset(data, dtype=model_dtype(model))
    if device is not None:
        ds = ds.to(device)
    was_training = model.training
    modules = list(model.modules()) if _modules is None else _modules
    changed = _set_mode(model, modules, False)
    n = len(ds)
    totals, corrects = [], []  # device tensors, read once at the end
    try:
        for i in range(0, n, batch_size):
            xb, yb = ds.X[i : i + batch_size], ds.y[i : i + batch_size]
            z = model(xb)
            value = loss_fn(z, yb).detach()
            c = _count_correct(loss_fn, z, yb)
            if value.device.type == "cpu":  # reading waits for nothing there: plain numbers
                totals.append(float(value) * len(xb))
                if c is not None:
                    corrects.append(float(c))
                continue
            totals.append(value.double().reshape(()) * len(xb))
            if c is not None:
                corrects.append(c.reshape(()).double())  # sequences' per-step accuracy counts fractions
    finally:
        if changed:
            _set_mode(model, modules, was_training)
    if not totals:
        return {"loss": 0.0}
    if isinstance(totals[0], float):
        read = [sum(totals)] + ([sum(corrects)] if corrects else [])
    else:
        read = torch.stack([torch.stack(totals).sum()] + ([torch.stack(corrects).sum()] if corrects else [])).tolist()
    out = {"loss": read[0] / max(n, 1)}
    if corrects:
        out["accuracy"] = read[1] / max(n, 1)
    return out


def _evaluate_sharded(model: nn.Module, data: Dataset, loss_fn, batch_size: int, group, device) -> dict[str, float]:
    """:func:`evaluate` over all ranks: each evaluates its contiguous shard, the sums are reduced."""
    lo, hi = group.bounds(len(data))
    n = hi - lo
    part = evaluate(model, (data.X[lo:hi], data.y[lo:hi]), loss_fn, batch_size=batch_size) if n else {}
    s = group.sum([part.get("loss", 0.0) * n, round(part.get("accuracy", 0.0) * n), n, float("accuracy" in part)], device)
    out = {"loss": float(s[0]) / max(float(s[2]), 1.0)}
    if s[3] > 0:
        out["accuracy"] = float(s[1]) / max(float(s[2]), 1.0)
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
                 augment=None, seed: int | None = None, group=None):
        self.model, self.train, self.val = model, train, val
        self.loss_fn, self.optimizer = loss_fn, optimizer
        self.epochs, self.device, self.history = epochs, device, history
        self.generator = train.generator
        self.steps_per_epoch = len(train)
        self.eval_batch_size = eval_batch_size
        self.augment = augment  # a callable x -> x for training inputs only (trainlab.data.augment)
        self.seed = seed  # recorded in checkpoints; a resume with another seed is refused
        # a trainlab.train.distributed.Group when many processes train this model (None: one)
        self.group = group
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
        batch_end, reads_loss = cbs.has_batch_end, cbs.reads_batch_loss
        count = _correct_counter(loss_fn)
        stash: dict[str, Tensor] = {}
        group = self.group
        if group is not None:
            from trainlab.train import distributed
            forward = distributed.wrap(model, group, self.device)

        def sharded_closure(backward: bool = True) -> Tensor:
            # this rank's part of the global batch; the scale n_r·W/B makes DDP's average of the
            # ranks' gradients the gradient of the mean over the global batch (distributed.py)
            if not backward:
                raise NotImplementedError(f"{type(optimizer).__name__} differentiates the loss twice (Newton's "
                                          "method), which trainlab does not run on many processes; train it in one")
            optimizer.zero_grad(set_to_none=True)
            x, y, total_n = stash["x"], stash["y"], stash["n"]
            n = len(y)
            z = forward(x)
            if n:
                loss = loss_fn(z, y)
                (loss * (n * group.world_size / total_n)).backward()
                local = [float(loss.detach()) * n]
            else:  # an empty shard (a last batch with fewer samples than ranks) adds a zero gradient
                loss = z.sum() * 0.0
                loss.backward()
                local = [0.0]
            first = "stats" not in stash
            if first:  # the first evaluation is the one this step reports: its correct count too
                c = _count_correct(loss_fn, z.detach(), y)
                local += [0.0 if c is None else float(c), float(c is not None)]
            stats = group.sum(local, self.device)
            if first:
                stash["stats"] = stats
            return torch.as_tensor(float(stats[0]) / total_n, dtype=loss.dtype, device=loss.device)

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
        # for the train/eval switches of every epoch (taken after on_train_begin, which may change the model)
        modules = list(model.modules())
        for epoch in range(initial_epoch, self.epochs if not self.stop_training else initial_epoch):
            self.epoch = epoch
            if group is not None:
                group.epoch_seed(self.seed, epoch)
            logs: dict = {}
            cbs.on_epoch_begin(epoch, logs)
            _set_mode(model, modules, True)
            t0 = time.perf_counter()
            losses, corrects, sizes = [], [], []  # device tensors, read once at the epoch end
            host_total = 0.0  # Σ loss·batch size of the steps read at once (CPU, many processes)
            host_correct = None  # the ranks' summed correct counts (many processes)
            for b, (xb, yb) in enumerate(self.train):
                if batch_hooks:
                    cbs.on_batch_begin(b, {"batch": b, "size": len(xb)})
                stash.clear()
                if self.augment is not None:
                    xb = self.augment(xb)
                stash["x"], stash["y"] = xb, yb
                if group is not None:
                    stash["n"] = self.train.global_size(b)
                try:
                    loss = optimizer.step(closure if group is None else sharded_closure)
                except Exception as err:  # a step that fails after a NaN (a solver on NaN weights) reports the NaN
                    _check_finite(losses, epoch, self.step - len(losses), from_error=err)
                    raise
                if loss is None:
                    raise TypeError(f"{type(optimizer).__name__}.step(closure) returned None; "
                                    "trainlab's fit needs optimizers that return the closure's loss")
                n = len(xb) if group is None else stash["n"]
                sizes.append(n)
                value = None
                if group is not None:
                    # the ranks' sums came back as numbers inside the closure (distributed.py): use them
                    value = float(loss)
                    if not math.isfinite(value):
                        raise NonFiniteLossError(value, epoch, b, self.step)
                    host_total += value * n
                    if stash["stats"][2]:
                        host_correct = float(stash["stats"][1]) + (host_correct or 0.0)
                else:
                    if count is not None:
                        corrects.append(count(stash["z"], yb))
                    if not isinstance(loss, Tensor) or (loss.device.type == "cpu" and READ_CPU_LOSS_EACH_STEP):
                        # on the CPU reading a number waits for nothing: read and check it at once
                        value = loss.item() if isinstance(loss, Tensor) else float(loss)
                        if not math.isfinite(value):
                            raise NonFiniteLossError(value, epoch, b, self.step)
                        host_total += value * n
                    else:
                        losses.append(loss.detach())
                self.step += 1
                if batch_end:
                    batch_logs = {"batch": b, "size": n}
                    if reads_loss:  # the one per-step read, only for callbacks that want the number
                        value = losses[-1].item() if value is None else value
                        if not math.isfinite(value):
                            raise NonFiniteLossError(value, epoch, b, self.step - 1)
                        batch_logs["loss"] = value
                    cbs.on_batch_end(b, batch_logs)
            total, correct = _check_finite(losses, epoch, self.step - len(losses), sizes, corrects)
            total += host_total
            if host_correct is not None:
                correct = host_correct if correct is None else correct + host_correct
            seen = sum(sizes)
            logs["loss"] = total / max(seen, 1)
            if correct is not None:
                logs["accuracy"] = float(correct) / max(seen, 1)
            if self.val is not None and group is not None:
                v = _evaluate_sharded(model, self.val, loss_fn, self.eval_batch_size, group, self.device)
                logs.update({f"val_{k}": val for k, val in v.items()})
            elif self.val is not None:
                v = evaluate(model, self.val, loss_fn, batch_size=self.eval_batch_size, _modules=modules)
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

    Many processes: inside a ``torchrun`` launch (or ``trainlab run --nproc N``) every rank calls
    ``fit`` with the same arguments; the process group is joined from the environment (or the
    one the script initialized is used), the model is wrapped in ``DistributedDataParallel``,
    ``batch_size`` is the global batch, each rank trains on its shard of every batch, and the
    epoch metrics are those of the whole epoch on every rank. Only rank 0 prints. The trained
    weights equal one process's to float32 rounding (:mod:`trainlab.train.distributed`).

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
    from trainlab.train import distributed
    group = distributed.init_from_env(device)
    device = torch.device(device) if device is not None else default_device()
    if group is not None:
        device = distributed.rank_device(group, device)
        from torch.nn.parallel import DistributedDataParallel
        if isinstance(model, DistributedDataParallel):  # the loop wraps the bare module itself
            model = model.module
    if seed is not None:
        with GLOBAL_RNG_LOCK:
            manual_seed(seed)
    if generator is None:
        generator = torch.Generator()
        order_seed = seed if seed is not None else int(torch.randint(0, 2**62, (1,)).item())
        if group is not None and seed is None:  # the shards are cut from one permutation: rank 0's
            order_seed = group.broadcast(order_seed)
        generator.manual_seed(order_seed)
    model.to(device)
    if compile:
        from trainlab.train.compile import compile_model
        compile_model(model, device)
    dtype = model_dtype(model)
    train_ds = as_dataset(train, "train", dtype=dtype).to(device)
    val_ds = as_dataset(val, "val", dtype=dtype).to(device) if val is not None else None
    shard = (group.rank, group.world_size) if group is not None else None
    batches = Batches(train_ds, batch_size, shuffle=shuffle, drop_last=drop_last, generator=generator, shard=shard)
    if len(batches) == 0:
        raise ValueError(f"no training batches: {len(train_ds)} samples with batch_size={batch_size} "
                         "and drop_last=True")
    callbacks = list(callbacks)
    history = next((cb for cb in callbacks if isinstance(cb, History)), None)
    if history is None:
        history = History()
        callbacks.insert(0, history)
    if verbose and (group is None or group.is_main) and not any(isinstance(cb, ProgressLogger) for cb in callbacks):
        callbacks.append(ProgressLogger())
    if isinstance(augment, (list, tuple)):
        from trainlab.data.augment import Compose
        augment = Compose(augment)
    if augment is not None and not callable(augment):
        raise TypeError(f"augment must be a callable x -> x, got {type(augment).__name__}")
    loop = Loop(model, batches, val_ds, loss_fn=loss_fn, optimizer=optimizer, epochs=epochs,
                device=device, callbacks=callbacks, history=history, augment=augment, seed=seed, group=group)
    return loop.run(initial_epoch, resume=resume_from)
