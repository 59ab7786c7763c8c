"""Config-time checks that need the techniques themselves: build each one on a tiny dummy.

The schema (:mod:`trainlab.experiments.config`) checks names, argument names and annotated types.
What only a constructor knows (a negative learning rate, an unknown activation, a noise level
below zero, ``bce`` with three classes) is checked here by running that constructor on something
small: the optimizer and its transforms on one dummy parameter, the schedule on that optimizer,
the model on PyTorch's ``meta`` device (shapes without memory), a toy data generator on a few
samples, each callback and augmentation with its files pointed into a temporary folder. Sizes are
bounded by this machine's memory, and ``train.device`` must name a device that is present. A
``ValueError``/``TypeError`` of a constructor becomes one :class:`ConfigError` naming the dotted
path and the value; nothing is written and the global RNG is left as it was.
"""
from __future__ import annotations

import inspect
import json
import os
import re
import tempfile

import torch

from trainlab.experiments import catalog
from trainlab.experiments.config import Config, ConfigError, join_problems
from trainlab.experiments.yamlio import short

TINY = 64  # samples a toy generator is checked with
_CHECKED = (ValueError, TypeError, OverflowError, ImportError)


def memory_bytes() -> int:
    """This machine's physical memory (16 GiB where the OS does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 16 * 2**30


def _gib(n: float) -> str:
    return f"{n / 2**30:,.1f} GiB"


def _blame(path: str, kwargs: dict, err: Exception) -> str:
    """``path.key=value: message`` when the message points at one argument (by name or value)."""
    msg = " ".join(str(err).split())
    if len(msg) > 300:
        msg = msg[:297] + "..."
    named = [k for k in kwargs if re.search(rf"(?<![\w.]){re.escape(k)}(?![\w])", msg)]
    if len(named) != 1:
        named = [k for k, v in kwargs.items() if isinstance(v, (int, float, str)) and not isinstance(v, bool)
                 and len(str(v)) <= 200 and re.search(rf"(?<![\w.]){re.escape(str(v))}(?![\w.])", msg)]
    if len(named) == 1:
        key = named[0]
        return f"{path}.{key}={short(kwargs[key])}: {msg}"
    given = ", ".join(f"{k}={short(v, 30)}" for k, v in kwargs.items())
    return f"{path}: {msg}" + (f" (given {given})" if given else "")


def check_device(device: str | None) -> str | None:
    """``None`` when ``device`` is present on this machine, else a message naming the devices that are."""
    if device is None:
        return None
    present = ["cpu"]
    if torch.cuda.is_available():
        present += ["cuda"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        present.append("mps")
    where = f"train.device={short(device)}"
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        return f"{where}: not a device name; devices present: {', '.join(present)}"
    if dev.type == "cpu":
        return None
    if dev.type == "cuda" and torch.cuda.is_available() and (dev.index is None or dev.index < torch.cuda.device_count()):
        return None
    if dev.type == "mps" and "mps" in present:
        return None
    missing = {"cuda": "no such CUDA GPU", "mps": "no Apple GPU (MPS)"}.get(dev.type, "not a device trainlab trains on")
    return f"{where}: {missing} on this machine; devices present: {', '.join(present)}"


def _size_argument(loader) -> str | None:
    params = inspect.signature(loader).parameters
    return next((p for p in ("n_samples", "n_points") if p in params), None)


def _dummy_data(cfg: Config, problems: list[str]):
    """A few samples shaped like ``cfg.data`` (``None`` when that cannot be known without the files)."""
    from trainlab.data import sequences, toy
    from trainlab.data.dataset import Dataset

    spec = cfg.data
    loader = catalog.DATASETS[spec.name]
    kwargs = dict(spec.kwargs)
    if spec.name not in catalog.OWN_SPLIT and getattr(loader, "__module__", "") not in (toy.__name__,
                                                                                       sequences.__name__):
        # the user's own files (CSV, NPZ): their shape is known once they are read, their split now
        _check_split(spec.split, None, problems)
        return None
    if spec.name in catalog.OWN_SPLIT:
        # file-backed sets (MNIST): 28×28 images, ten classes; the loader checks its own files
        flat = kwargs.get("flatten", True)
        x = torch.zeros((10, 784) if flat else (10, 1, 28, 28))
        kept = kwargs.get("classes")
        k = len(kept) if isinstance(kept, list) and len(kept) >= 2 else 10
        if spec.split is not None:
            problems.append(f"data.split={short(spec.split)}: {spec.name!r} comes with its own train/validation/"
                            "test split; remove data.split")
        try:  # the loader's own check of classes, before any file is read
            from trainlab.data.mnist import _check_classes
            _check_classes(kept)
        except ValueError as err:
            problems.append(_blame("data", {"classes": kept}, err))
            return None
        return Dataset(x, torch.arange(10) % k, spec.name)
    size_arg = _size_argument(loader)
    n = kwargs.get(size_arg, inspect.signature(loader).parameters[size_arg].default) if size_arg else None
    if "seed" in inspect.signature(loader).parameters:
        kwargs["seed"] = cfg.seed
    for count in ("classes", "centers"):  # generators keep one entry per class: bound them by the samples
        k = kwargs.get(count)
        if isinstance(k, int) and not isinstance(k, bool) and isinstance(n, int):
            if k > n:
                problems.append(f"data.{count}={k:,}: more than the {n:,} samples (data.{size_arg}); "
                                f"use at most data.{size_arg} {count}")
                return None
            kwargs[count] = min(k, TINY)
    width = kwargs.get("n_features")
    if isinstance(width, int) and not isinstance(width, bool) and 3 * 8 * TINY * width > memory_bytes():
        problems.append(f"data.n_features={width:,}: {TINY} samples alone would need about "
                        f"{_gib(3 * 8 * TINY * width)}; this machine has {_gib(memory_bytes())}; use fewer features")
        return None
    if size_arg is not None and isinstance(n, int) and n > TINY:
        kwargs[size_arg] = TINY
    try:
        tiny = loader(**kwargs)
    except _CHECKED as err:
        problems.append(_blame("data", dict(spec.kwargs), err))
        return None
    if size_arg is not None and isinstance(n, int):
        per_sample = tiny.X[0].numel() + tiny.y[0].numel()
        # generated in float64, then copied to float32 and shuffled: about 3 copies at 8 bytes
        need = 3 * 8 * n * per_sample
        if need > memory_bytes():
            problems.append(f"data.{size_arg}={n:,}: {n:.3g} samples of {per_sample} numbers need about {_gib(need)} "
                            f"to generate; this machine has {_gib(memory_bytes())}; use fewer samples")
            return None
    _check_split(spec.split, n, problems)
    return tiny


def _check_split(split, n: int | None, problems: list[str]) -> None:
    """``data.split``: one part [1.0], or 2–3 positive fractions summing to 1 that leave no part of ``n`` empty."""
    fractions = split if split is not None else [0.7, 0.3]
    if len(fractions) == 1:
        if not abs(fractions[0] - 1.0) <= 1e-9:  # written so that NaN fails too
            problems.append(f"data.split={short(fractions)}: one part must be [1.0] (train on everything)")
    elif len(fractions) > 3 or not all(f > 0 for f in fractions) or not abs(sum(fractions) - 1.0) <= 1e-6:  # NaN fails
        problems.append(f"data.split={short(fractions)}: give 2 or 3 positive fractions summing to 1, e.g. [0.7, 0.3]")
    elif isinstance(n, int):
        sizes = [int(round(f * n)) for f in fractions[:-1]]
        if any(s <= 0 for s in sizes + [n - sum(sizes)]):
            problems.append(f"data.split={short(fractions)}: {n} samples leave an empty part; use more samples")


def _check_test_shift(cfg: Config, tiny, problems: list[str]) -> None:
    """``data.test_shift``: each augmentation builds, their chain runs on a few samples shaped like the
    data, and the data has a test split to shift."""
    specs = cfg.data.test_shift or []
    if not specs:
        return
    built = []
    for i, a in enumerate(specs):
        try:
            built.append(catalog.AUGMENTATIONS[a.name](**a.kwargs))
        except _CHECKED as err:
            problems.append(_blame(f"data.test_shift.{i}", a.kwargs, err))
    if len(built) < len(specs):
        return
    spec = cfg.data
    split = spec.split if spec.split is not None else [0.7, 0.3]
    if spec.name not in catalog.OWN_SPLIT and len(split) != 3 and not _loads_own_split(spec.name):
        problems.append(f"data.test_shift: data.split={short(split)} has no test part to shift; give three "
                        "fractions (train, validation, test), e.g. data.split=[0.6,0.2,0.2]")
    if tiny is not None:
        from trainlab.data.augment import Compose
        try:
            Compose(built)(tiny.X[:2].clone(), generator=torch.Generator().manual_seed(0))
        except _CHECKED as err:
            problems.append(f"data.test_shift: {err} (the data's inputs have shape {tuple(tiny.X.shape[1:])}; "
                            "data.test_shift acts on images, such as mnist or fashion_mnist)")


def _loads_own_split(name: str) -> bool:
    # the user's own files (CSV, NPZ) may hold their own test part: known once they are read
    from trainlab.data import sequences, toy

    return getattr(catalog.DATASETS[name], "__module__", "") not in (toy.__name__, sequences.__name__)


def _check_model(cfg: Config, train, problems: list[str]) -> None:
    from trainlab.experiments.runner import build_model

    kwargs = dict(cfg.model.kwargs)
    loss = cfg.loss.name
    if loss in ("cross_entropy", "bce") and not train.is_classification:
        problems.append(f"loss.name={loss!r}: {cfg.data.name!r} is a regression set (float targets); "
                        "use mse, or leave loss.name unset")
        return
    if loss == "bce" and (train.classes or 2) > 2:
        problems.append(f"loss.name='bce': binary cross-entropy is for two classes and {cfg.data.name!r} has "
                        f"{train.classes}; use cross_entropy, or leave loss.name unset")
        return
    if loss == "gaussian_nll" and train.is_classification:
        problems.append(f"loss.name='gaussian_nll': {cfg.data.name!r} has class labels and the Gaussian likelihood "
                        "needs float targets; use cross_entropy, or leave loss.name unset")
        return
    if loss == "mse" and train.is_classification:
        problems.append(f"loss.name='mse': {cfg.data.name!r} has class labels and mse needs float targets; use "
                        "cross_entropy (or bce for two classes), or leave loss.name unset")
        return
    try:
        with torch.device("meta"):  # shapes and constructor checks without allocating the weights
            model = build_model(cfg, train)
    except _CHECKED as err:
        problems.append(_blame("model", kwargs, err))
        return
    if cfg.model.freeze_layers:
        from trainlab.nn.transfer import _select
        try:
            _select(model, cfg.model.freeze_layers)
        except (ValueError, TypeError, IndexError) as err:
            problems.append(f"model.freeze={short(cfg.model.freeze_layers)}: {' '.join(str(err).split())}")
    n = sum(p.numel() for p in model.parameters())
    need = 4 * 4 * n  # float32 weights, gradients and two optimizer moments
    if need > memory_bytes():
        sizes = ", ".join(f"model.{k}={short(v)}" for k, v in kwargs.items() if k in ("hidden", "channels"))
        problems.append(f"model: {n:,} parameters ({sizes or 'the model'}) need about {_gib(need)} for weights, "
                        f"gradients and optimizer state; this machine has {_gib(memory_bytes())}; use smaller layers")
        return
    try:
        with torch.device("meta"):
            catalog.apply_init(model, cfg.init.weight, cfg.init.bias, cfg.init.kwargs)
    except (ValueError, TypeError) as err:
        problems.append(_blame("init", {**cfg.init.kwargs, "weight": cfg.init.weight, "bias": cfg.init.bias}, err))
    except (NotImplementedError, RuntimeError):
        pass  # an initializer the meta device cannot run (e.g. a QR); its arguments are checked at run time


def _check_optimization(cfg: Config, problems: list[str]) -> None:
    param = torch.nn.Parameter(torch.zeros(2))
    ok = True
    for i, t in enumerate(cfg.transforms):
        try:
            catalog.TRANSFORMS[t.name](**t.kwargs)
        except _CHECKED as err:
            problems.append(_blame(f"transforms.{i}", t.kwargs, err))
            ok = False
    try:
        optimizer = catalog.OPTIMIZERS[cfg.optimizer.name]([param], **cfg.optimizer.kwargs)
    except _CHECKED as err:
        problems.append(_blame("optimizer", cfg.optimizer.kwargs, err))
        return
    if ok and cfg.transforms:
        try:
            catalog.build_optimizer([param], cfg.optimizer.name, cfg.optimizer.kwargs,
                                    [(t.name, t.kwargs) for t in cfg.transforms])
        except _CHECKED as err:
            problems.append(f"transforms: {' '.join(str(err).split())}")
    if cfg.schedule is not None:
        try:
            callback = catalog.build_schedule(optimizer, cfg.schedule.name, cfg.schedule.kwargs,
                                              steps_per_epoch=1, epochs=cfg.train.epochs)
            float(callback.schedule(0)) if callable(getattr(callback, "schedule", None)) else None
        except _CHECKED as err:
            problems.append(_blame("schedule", cfg.schedule.kwargs, err))


def _check_callbacks(cfg: Config, problems: list[str]) -> None:
    with tempfile.TemporaryDirectory(prefix="trainlab-check-") as tmp:
        for i, c in enumerate(cfg.callbacks):
            # a file path is taken relative to the run folder (here a stand-in) and must stay inside it
            path_problem = catalog.callback_path_problem(c.name, c.kwargs)
            if path_problem is not None:
                arg, value, why = path_problem
                problems.append(f"callbacks.{i}.{arg}: {value!r} {why}")
                continue
            try:
                catalog.build_callback(c.name, dict(c.kwargs), run_dir=tmp)
            except ImportError:
                # a missing optional package is this machine's, not the config's fault: its own line
                # with the install command (exit 1), still before anything is created
                raise
            except _CHECKED as err:
                problems.append(_blame(f"callbacks.{i}", c.kwargs, err))
    for i, a in enumerate(cfg.augment):
        try:
            catalog.AUGMENTATIONS[a.name](**a.kwargs)
        except _CHECKED as err:
            problems.append(_blame(f"augment.{i}", a.kwargs, err))


def _check_pruning_epochs(cfg: Config, problems: list[str]) -> None:
    """A pruning callback whose first cut comes after the last epoch would silently prune nothing."""
    for i, c in enumerate(cfg.callbacks):
        if c.name == "magnitude_pruning":
            start = c.kwargs.get("start_epoch", 0)
            if isinstance(start, int) and start >= cfg.train.epochs:
                problems.append(f"callbacks.{i}.start_epoch={start}: the run has only {cfg.train.epochs} epochs "
                                f"(0..{cfg.train.epochs - 1}), so nothing would be pruned; give a start_epoch "
                                "below train.epochs")


_MEMO: dict[str, tuple[str, ...]] = {}  # the problems of config parts already checked (sweeps repeat them)


def _memo(key_parts, check) -> list[str]:
    key = json.dumps(key_parts, sort_keys=True, default=repr)
    if key not in _MEMO:
        problems: list[str] = []
        check(problems)
        if len(_MEMO) > 4096:
            _MEMO.clear()
        _MEMO[key] = tuple(problems)
    return list(_MEMO[key])


def check_config(cfg: Config) -> None:
    """Run every technique's own checks on dummies; raise one :class:`ConfigError` listing the problems."""
    d = cfg.model_dump(mode="json")
    problems: list[str] = []
    device_problem = check_device(cfg.train.device)
    if device_problem:
        problems.append(device_problem)
    if cfg.train.compile and not device_problem:
        from trainlab.train.compile import compiler_problem
        from trainlab.train.loop import default_device
        compile_problem = compiler_problem(cfg.train.device or default_device())
        if compile_problem:
            problems.append(f"train.compile=true: {compile_problem}")
    state = torch.get_rng_state()
    try:
        def data_and_model(out):
            train = _dummy_data(cfg, out)
            if train is not None:
                _check_model(cfg, train, out)
            _check_test_shift(cfg, train, out)

        problems += _memo(["model", d["seed"], d["data"], d["model"], d["init"], d["loss"]], data_and_model)
        problems += _memo(["optimization", d["optimizer"], d["transforms"], d["schedule"], d["train"]["epochs"]],
                          lambda out: _check_optimization(cfg, out))
        problems += _memo(["callbacks", d["callbacks"], d["augment"]], lambda out: _check_callbacks(cfg, out))
        _check_pruning_epochs(cfg, problems)
    finally:
        torch.set_rng_state(state)
    if problems:
        raise ConfigError(join_problems(problems))
