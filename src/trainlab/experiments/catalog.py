"""The allow-lists: every technique a config file (and so the CLI) may name.

Each table maps a config name to the callable that builds it. A config names an entry and gives
its keyword arguments; :mod:`trainlab.experiments.config` checks the name against the table and the
arguments against the callable's signature, so a typo fails at load time with the field path.
Adding a technique to configs is one line in one table here.
"""
from __future__ import annotations

import torch

from trainlab import optim, schedules
from trainlab.data import augment, files, mnist, sequences, toy
from trainlab.nn import models, recurrent
from trainlab.train import callbacks

# data.name -> loader(**kwargs) returning a Dataset, or a (train, val[, test]) tuple of Datasets
DATASETS = {
    "moons": toy.moons,
    "circles": toy.circles,
    "spirals": toy.spirals,
    "xor": toy.xor,
    "blobs": toy.blobs,
    "line": toy.line,
    "sine": toy.sine,
    "ripple": toy.ripple,
    "mnist": mnist.load_mnist,
    "fashion_mnist": mnist.load_fashion_mnist,
    "csv": files.load_csv,
    "npz": files.load_npz,
    # sequences (samples, time, features) for model kind rnn
    "adding": sequences.adding,
    "copy": sequences.copy_task,
    "noisy_sine": sequences.noisy_sine,
    "sine_generation": sequences.sine_generation,  # one-to-many: X (n, 1, 3), y (n, T, 1)
    "delayed_echo": sequences.delayed_echo,
    "running_parity": sequences.running_parity,
}
# data sets that come with their own train/validation/test split (``data.split`` does not apply)
OWN_SPLIT = frozenset({"mnist", "fashion_mnist"})

# model.kind -> builder; the runner supplies the input/output sizes from the data
MODELS = {
    "mlp": models.MLP,
    "cnn": models.CNN,
    "rnn": recurrent.SequenceModel,  # cell: elman | lstm | gru; pattern: seq2one | seq2seq | one2many
}

# optimizer.name -> torch.optim.Optimizer subclass (params are supplied by the runner). Variants
# are options of these (momentum_form, nesterov_form, eps_placement, eps_mode, bias_correction, ...);
# batch / mini-batch / stochastic GD are "sgd" with train.batch_size full / k / 1.
OPTIMIZERS = {
    "sgd": optim.SGD,
    "adagrad": optim.Adagrad,
    "rmsprop": optim.RMSprop,
    "adadelta": optim.Adadelta,
    "adam": optim.Adam,
    "adamw": optim.AdamW,
    "adamax": optim.Adamax,
    "nadam": optim.NAdam,
    "rprop": optim.Rprop,
    "delta_bar_delta": optim.DeltaBarDelta,
    "newton": optim.Newton,
    "nonlinear_cg": optim.NonlinearCG,
    "lbfgs": optim.LBFGS,
}

# transforms[i].name -> gradient transformation chained with the optimizer (see build_optimizer)
TRANSFORMS = {
    "clip_value": optim.ClipByValue,
    "clip_norm": optim.ClipByNorm,
    "clip_global_norm": optim.ClipByGlobalNorm,
    "l1": optim.L1Penalty,
    "l1_proximal": optim.L1Proximal,
    "l2": optim.L2Penalty,
    "elastic_net": optim.ElasticNet,
    "weight_decay": optim.AddWeightDecay,
    "decoupled_weight_decay": optim.DecoupledWeightDecay,
    "noise": optim.AddNoise,
    "lookahead": optim.Lookahead,
}

# schedule.name -> schedule (step -> lr) or plateau rule; lr / total_steps default to the run's
SCHEDULES = {
    "constant": schedules.Constant,
    "step": schedules.StepDecay,
    "multistep": schedules.MultiStepDecay,
    "exponential": schedules.Exponential,
    "inverse_time": schedules.InverseTime,
    "polynomial": schedules.Polynomial,
    "cosine": schedules.Cosine,
    "cosine_restarts": schedules.CosineRestarts,
    "warmup": schedules.Warmup,
    "one_cycle": schedules.OneCycle,
    "join": schedules.Join,
    "plateau": schedules.ReduceOnPlateau,
    "adaptive": schedules.Adaptive,
}

# init.weight / init.bias -> initializer names understood by trainlab.init.init_model
# (trainlab.init.WEIGHT_SCHEMES / BIAS_RULES: "auto" picks the scheme from each layer's activation)
from trainlab import init as _init  # noqa: E402  (kept next to the tables it fills)

WEIGHT_INITS: dict = dict(_init.WEIGHT_SCHEMES)
# LSUV is not a per-tensor scheme: it scales each layer on a batch of training inputs (apply_init)
WEIGHT_INITS["lsuv"] = _init.lsuv_
LSUV_OPTIONS = {"target_var": float, "tol": float, "max_iter": int, "orthonormal": bool}
LSUV_SAMPLES = 256  # training inputs LSUV measures the variances on (the first ones, after the seeded split)
BIAS_INITS: dict = dict(_init.BIAS_RULES)

# callbacks[i].name -> Callback class (file-writing ones get their paths inside the run folder)
CALLBACKS: dict = {
    "early_stopping": callbacks.EarlyStopping,
    "model_checkpoint": callbacks.ModelCheckpoint,
    "terminate_on_nan": callbacks.TerminateOnNaN,
    "csv_logger": callbacks.CSVLogger,
    "tensorboard": callbacks.TensorBoard,
    "reactivate_dead_units": callbacks.ReactivateDeadUnits,
    "magnitude_pruning": callbacks.MagnitudePruning,
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

def build_optimizer(params, name: str, kwargs: dict, transforms: list[tuple[str, dict]]):
    """The optimizer ``name`` over ``params``, chained with the given gradient transformations.

    ``transforms`` are ``(name, kwargs)`` pairs from :data:`TRANSFORMS`, e.g.
    ``[("clip_global_norm", {"max_norm": 1.0}), ("l1", {"weight": 1e-4})]``. Gradient transforms
    run before the optimizer's own rule, in the order given; ``l1_proximal`` and ``lookahead`` act
    on the weights after the update. A ``noise`` transform without a seed takes one from torch's
    global seed (which the runner sets from the config), so runs stay reproducible.
    Optimizers that evaluate the loss themselves (newton, nonlinear_cg, lbfgs) take no transforms.
    """
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; allowed: {', '.join(sorted(OPTIMIZERS))}")
    optimizer = OPTIMIZERS[name](params, **kwargs)
    if not transforms:
        return optimizer
    if not isinstance(optimizer, optim.ChainOptimizer):
        chained = sorted(k for k, v in OPTIMIZERS.items() if issubclass(v, optim.ChainOptimizer))
        raise ValueError(f"optimizer {name!r} evaluates the loss itself (line searches / Hessian), so gradient "
                         f"transformations cannot be chained with it; transforms work with: {', '.join(chained)}")
    built = []
    for tname, tkwargs in transforms:
        if tname not in TRANSFORMS:
            raise ValueError(f"unknown transform {tname!r}; allowed: {', '.join(sorted(TRANSFORMS))}")
        tkwargs = dict(tkwargs)
        if tname == "noise" and tkwargs.get("seed") is None:
            tkwargs["seed"] = torch.initial_seed() % 2**63
        built.append(TRANSFORMS[tname](**tkwargs))
    return optimizer.add_transforms(*built)


def _make_schedule(spec, unit: str | None = None):
    """A schedule from ``{"name": ..., **kwargs}`` (or a bare name); nested ``then`` (warmup) and
    ``schedules`` (join) entries are built the same way and inherit the outer ``unit``."""
    if isinstance(spec, schedules.Schedule):
        return spec
    if isinstance(spec, str):
        spec = {"name": spec}
    if not isinstance(spec, dict) or "name" not in spec:
        raise ValueError(f"a schedule is given as {{name: ..., <arguments>}}, got {spec!r}")
    kwargs = dict(spec)
    name = kwargs.pop("name")
    if name not in SCHEDULES:
        raise ValueError(f"unknown schedule {name!r}; allowed: {', '.join(sorted(SCHEDULES))}")
    if unit is not None:
        kwargs.setdefault("unit", unit)
    inner_unit = kwargs.get("unit")
    if name == "warmup" and kwargs.get("then") is not None:
        kwargs["then"] = _make_schedule(kwargs["then"], inner_unit)
    if name == "join":
        kwargs["schedules"] = [_make_schedule(s, inner_unit) for s in kwargs.get("schedules", [])]
    return SCHEDULES[name](**kwargs)


def build_schedule(optimizer, name: str, kwargs: dict, *, steps_per_epoch: int, epochs: int):
    """The callback that drives ``optimizer``'s learning rate by the schedule ``name``.

    A :class:`~trainlab.train.callbacks.LearningRateScheduler`. Missing ``lr`` is the optimizer's
    lr; missing ``total_steps`` is the run's length in the schedule's unit (``epochs``, or
    ``epochs · steps_per_epoch`` for ``unit: step``). ``warmup`` takes its inner schedule as
    ``then: {name: cosine, ...}``.
    """
    from trainlab.train.callbacks import LearningRateScheduler

    schedule = _make_schedule({"name": name, **kwargs})
    total = epochs * (steps_per_epoch if schedule.unit == "step" else 1)
    schedule = schedule.bind(lr=float(optimizer.param_groups[0]["lr"]), total_steps=max(int(total), 1))
    return LearningRateScheduler(schedule)


def _lsuv_options(kwargs: dict) -> tuple[dict, dict]:
    """Split ``init`` options into LSUV's (checked: type and range) and the bias rule's."""
    lsuv, rest = {}, {}
    for key, value in kwargs.items():
        if key not in LSUV_OPTIONS:
            rest[key] = value
            continue
        kind = LSUV_OPTIONS[key]
        ok = isinstance(value, bool) if kind is bool else (
            not isinstance(value, bool) and isinstance(value, int if kind is int else (int, float)))
        if not ok:
            raise ValueError(f"lsuv option {key}={value!r} must be {'a boolean' if kind is bool else 'an integer' if kind is int else 'a number'}")
        if kind is not bool and not value > 0:
            raise ValueError(f"lsuv option {key}={value!r} must be > 0")
        lsuv[key] = value
    return lsuv, rest


def apply_init(model, weight: str | None, bias: str | None, kwargs: dict, batch=None) -> None:
    """Initialize every layer of ``model`` (``None`` keeps PyTorch's defaults).

    ``kwargs`` are the options of the scheme and the rule (e.g. ``mode: fan_out``,
    ``truncated: true``, ``value: 0.01``, ``priors: [0.9, 0.1]``); see :func:`trainlab.init.init_model`.

    ``weight: lsuv`` runs :func:`trainlab.init.lsuv_` (orthonormal, then each layer scaled to unit
    output variance) on ``batch``, training inputs the runner supplies; its options are
    ``target_var``, ``tol``, ``max_iter`` and ``orthonormal``, the others go to the bias rule,
    which runs first. Without a batch (the config check) only the options are checked.
    """
    if weight == "lsuv":
        lsuv, rest = _lsuv_options(kwargs)
        if bias is not None or rest:
            _init.init_model(model, None, BIAS_INITS[bias] if bias is not None else None, **rest)
        if batch is not None:
            _init.lsuv_(model, batch, **lsuv)
        return
    if weight is None and bias is None:
        if kwargs:
            raise ValueError(f"init options {sorted(kwargs)} given without a weight or bias initializer")
        return
    _init.init_model(model, WEIGHT_INITS[weight] if weight is not None else None,
                     BIAS_INITS[bias] if bias is not None else None, **kwargs)


# the path argument of each file-writing callback and its default inside the run folder
CALLBACK_PATHS = {"model_checkpoint": ("dirpath", "checkpoints"), "csv_logger": ("filename", "log.csv"),
                  "tensorboard": ("log_dir", "tensorboard")}


def callback_path_problem(name: str, kwargs: dict) -> tuple[str, object, str] | None:
    """``(argument, value, why)`` when a file-writing callback's path would leave the run folder.

    Files a run writes stay inside its run folder, so a config cannot overwrite a file anywhere
    else: the path must be relative and must not climb out with ``..``. Purely lexical (no file
    system access), so the config layer can call it before anything exists.
    """
    import os
    from pathlib import PurePath

    if name not in CALLBACK_PATHS:
        return None
    arg = CALLBACK_PATHS[name][0]
    if arg not in kwargs:
        return None
    value = kwargs[arg]
    if not isinstance(value, (str, os.PathLike)) or not str(value).strip():
        return arg, value, "must be a non-empty path relative to the run folder"
    path = PurePath(value)
    if path.is_absolute() or path.drive or str(value).startswith("~"):
        return arg, value, "must be relative to the run folder (an absolute path would write outside it)"
    if os.path.normpath(str(path)).split(os.sep)[0] == "..":
        return arg, value, "climbs out of the run folder with '..'; give a path inside it"
    return None


def build_callback(name: str, kwargs: dict, *, run_dir=None):
    """The callback ``name`` (``run_dir`` is where file-writing callbacks put their files).

    A file-writing callback's path defaults to a fixed place in the run folder; a path given in
    the config is taken relative to the run folder and must stay inside it
    (:func:`callback_path_problem`).
    """
    from pathlib import Path

    kwargs = dict(kwargs)
    if name in CALLBACK_PATHS:
        problem = callback_path_problem(name, kwargs)
        if problem is not None:
            arg, value, why = problem
            raise ValueError(f"callback {name!r}: {arg}: {value!r} {why}")
        arg, default = CALLBACK_PATHS[name]
        if run_dir is None:
            raise ValueError(f"callback {name!r} writes files and needs a run folder (run with write=True)")
        kwargs[arg] = Path(run_dir) / Path(kwargs.get(arg, default))
    return CALLBACKS[name](**kwargs)


def build_augment(specs: list[tuple[str, dict]]):
    """One batched augmentation applying ``specs`` in order, or ``None`` for an empty list."""
    if not specs:
        return None
    return augment.Compose([AUGMENTATIONS[name](**kwargs) for name, kwargs in specs])


# arguments the runner supplies itself, per `trainlab list` table (not written in configs)
SUPPLIED = {"datasets": ("seed",), "models": ("in_features", "out_features", "in_shape", "classes"),
            "optimizers": ("params",), "weight-inits": ("tensor", "generator", "model", "x"),
            "bias-inits": ("bias", "context"), "norms": ("width",), "activations": ("width",)}


def describe(fn, table: str = "") -> str:
    """``arg=default, arg (required), ...`` of one technique: what ``trainlab list NAME`` prints."""
    import inspect

    target = fn.__init__ if inspect.isclass(fn) else fn
    try:
        sig = inspect.signature(target)
    except (TypeError, ValueError):
        return "(arguments not introspectable)"
    parts = []
    for p in sig.parameters.values():
        if p.name == "self" or p.name in SUPPLIED.get(table, ()) or p.kind is p.VAR_POSITIONAL:
            continue
        if p.kind is p.VAR_KEYWORD:
            parts.append(f"**{p.name}")
        elif p.default is p.empty:
            parts.append(f"{p.name} (required)")
        else:
            parts.append(f"{p.name}={p.default!r}")
    return ", ".join(parts) or "(no arguments)"
