"""The allow-lists: every technique a config file (and so the CLI) may name.

Each table maps a config name to the callable that builds it. A config names an entry and gives
its keyword arguments; :mod:`trainlab.experiments.config` checks the name against the table and the
arguments against the callable's signature, so a typo fails at load time with the field path.
Adding a technique to configs is one line in one table here.
"""
from __future__ import annotations

import torch

from trainlab.data import augment, mnist, toy
from trainlab.nn import models
from trainlab.train import callbacks

# data.name -> loader(**kwargs) returning a Dataset, or a (train, val[, test]) tuple of Datasets
DATASETS = {
    "moons": toy.moons,
    "circles": toy.circles,
    "spirals": toy.spirals,
    "xor": toy.xor,
    "blobs": toy.blobs,
    "line": toy.line,
    "mnist": mnist.load_mnist,
    "fashion_mnist": mnist.load_fashion_mnist,
}

# model.kind -> builder; the runner supplies the input/output sizes from the data
MODELS = {
    "mlp": models.MLP,
    "cnn": models.CNN,
}

# optimizer.name -> torch.optim.Optimizer subclass (params are supplied by the runner)
OPTIMIZERS = {
    "sgd": torch.optim.SGD,
    "adam": torch.optim.Adam,
}

# schedule.name -> schedule builder
SCHEDULES: dict = {}

# init.weight / init.bias -> initializer names understood by trainlab.init.init_model
# (trainlab.init.WEIGHT_SCHEMES / BIAS_RULES: "auto" picks the scheme from each layer's activation)
from trainlab import init as _init  # noqa: E402  (kept next to the tables it fills)

WEIGHT_INITS: dict = dict(_init.WEIGHT_SCHEMES)
BIAS_INITS: dict = dict(_init.BIAS_RULES)

# callbacks[i].name -> Callback class (file-writing ones get their paths inside the run folder)
CALLBACKS: dict = {
    "early_stopping": callbacks.EarlyStopping,
    "model_checkpoint": callbacks.ModelCheckpoint,
    "terminate_on_nan": callbacks.TerminateOnNaN,
    "csv_logger": callbacks.CSVLogger,
    "tensorboard": callbacks.TensorBoard,
}

# augment[i].name -> batched augmentation
AUGMENTATIONS: dict = {
    "rotation": augment.Rotation,
    "shift": augment.Shift,
    "zoom": augment.Zoom,
    "shear": augment.Shear,
    "hflip": augment.HorizontalFlip,
    "noise": augment.GaussianNoise,
    "elastic": augment.ElasticDistortion,
}


# ---- builders the runner calls (each domain refines its own) -------------------------------------

TRANSFORMS: dict = {}


def build_optimizer(params, name: str, kwargs: dict, transforms: list[tuple[str, dict]]):
    """The optimizer ``name`` over ``params``, chained with the given gradient transformations."""
    if transforms:
        raise ValueError("gradient transformations are not available yet")
    return OPTIMIZERS[name](params, **kwargs)


def build_schedule(optimizer, name: str, kwargs: dict, *, steps_per_epoch: int, epochs: int):
    """The callback that drives ``optimizer``'s learning rate by the schedule ``name``."""
    raise ValueError(f"schedule {name!r} is not available yet")


def apply_init(model, weight: str | None, bias: str | None, kwargs: dict) -> None:
    """Initialize every layer of ``model`` (``None`` keeps PyTorch's defaults).

    ``kwargs`` are the options of the scheme and the rule (e.g. ``mode: fan_out``,
    ``truncated: true``, ``value: 0.01``, ``priors: [0.9, 0.1]``); see :func:`trainlab.init.init_model`.
    """
    if weight is None and bias is None:
        if kwargs:
            raise ValueError(f"init options {sorted(kwargs)} given without a weight or bias initializer")
        return
    _init.init_model(model, WEIGHT_INITS[weight] if weight is not None else None,
                     BIAS_INITS[bias] if bias is not None else None, **kwargs)


# the path argument of each file-writing callback and its default inside the run folder
CALLBACK_PATHS = {"model_checkpoint": ("dirpath", "checkpoints"), "csv_logger": ("filename", "log.csv"),
                  "tensorboard": ("log_dir", "tensorboard")}


def build_callback(name: str, kwargs: dict, *, run_dir=None):
    """The callback ``name`` (``run_dir`` is where file-writing callbacks put their files).

    A file-writing callback's path defaults to a fixed place in the run folder; a relative path
    given in the config is taken relative to the run folder.
    """
    from pathlib import Path

    kwargs = dict(kwargs)
    if name in CALLBACK_PATHS:
        arg, default = CALLBACK_PATHS[name]
        path = Path(kwargs.get(arg, default))
        if not path.is_absolute():
            if run_dir is None:
                raise ValueError(f"callback {name!r} writes files and needs a run folder (run with write=True)")
            path = Path(run_dir) / path
        kwargs[arg] = path
    return CALLBACKS[name](**kwargs)


def build_augment(specs: list[tuple[str, dict]]):
    """One batched augmentation applying ``specs`` in order, or ``None`` for an empty list."""
    if not specs:
        return None
    return augment.Compose([AUGMENTATIONS[name](**kwargs) for name, kwargs in specs])
