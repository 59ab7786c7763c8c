"""Run one experiment from a :class:`~trainlab.experiments.config.Config` and write its run folder.

A run folder holds:

``config.yaml``           the resolved config (every default filled in)
``metrics.csv``           one row per epoch (train/validation loss and accuracy, lr, time)
``metrics.json``          the same history plus final train/validation/test numbers and wall time
``curves.png``            loss and accuracy curves for training and validation
``report.html``           a self-contained report (plots embedded, table of final numbers)
``weights.safetensors``   the final weights (safetensors: loading never runs code)
``verdicts.json``         the diagnosis: ``{"primary": kind, "verdicts": [...]}`` (also for a run
                          that stopped on NaN or early; see :mod:`trainlab.diagnostics.verdicts`)
"""
from __future__ import annotations

import csv
import inspect
import io
import math
import re
import shutil
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import torch
from torch import nn

from trainlab.data.dataset import Dataset, split
from trainlab.experiments import catalog
from trainlab.experiments.config import Config, ConfigError, parse_config
from trainlab.experiments.report import (Section, early_stops, epoch_records, history_section,
                                         prediction_sections, training_sections, write_report)
from trainlab.losses import Loss
from trainlab.train.callbacks import Callback, History
from trainlab.train.checkpoint import atomic_write_bytes, atomic_write_json, save_weights
from trainlab.train.loop import NonFiniteLossError, default_device, evaluate, fit
from trainlab.train.rng import GLOBAL_RNG_LOCK, manual_seed


@dataclass
class Splits:
    train: Dataset
    val: Dataset | None = None
    test: Dataset | None = None
    shifted_test: Dataset | None = None  # the test split under data.test_shift (a covariate shift)


@dataclass
class RunResult:
    """What :func:`run_experiment` returns: the trained model, its history, the final numbers."""

    config: Config
    model: nn.Module
    history: History
    final: dict[str, float]
    wall_time: float
    run_dir: Path | None = None
    extras: dict = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------
# building the pieces


def build_data(cfg: Config) -> Splits:
    """Load ``cfg.data`` and split it (sets with their own split keep it)."""
    spec = cfg.data
    loader = catalog.DATASETS[spec.name]
    kwargs = dict(spec.kwargs)
    if "seed" in inspect.signature(loader).parameters:
        kwargs["seed"] = cfg.seed
    data = loader(**kwargs)
    if spec.input_features is not None:  # columns computed from the raw inputs, before the split
        from trainlab.data.features import expand_features
        data = (expand_features(data, spec.input_features) if isinstance(data, Dataset)
                else tuple(expand_features(d, spec.input_features) for d in data))
    if isinstance(data, Dataset):
        fractions = spec.split if spec.split is not None else [0.7, 0.3]
        if len(fractions) == 1:
            if abs(fractions[0] - 1.0) > 1e-9:
                raise ValueError("data.split with one part must be [1.0] (train on everything)")
            return Splits(data)
        return Splits(*split(data, fractions, seed=cfg.seed))
    if spec.split is not None:
        raise ValueError(f"data.split: {spec.name!r} comes with its own train/validation/test split; "
                         "remove data.split")
    return Splits(*data)


TEST_SHIFT_SEED = 104729  # added to the run's seed: the shift's draws never coincide with training's


def shift_test_split(cfg: Config, data: Splits) -> Splits:
    """``data`` with ``shifted_test``: the test split under ``cfg.data.test_shift``, drawn once.

    A covariate shift: p(x) differs between training and production while p(y | x) does not,
    so the labels are kept and only the inputs move (notes 003, 004: "covariate shift"). The
    augmentations of ``data.test_shift`` are applied to a copy of the test inputs with a generator
    seeded ``seed + TEST_SHIFT_SEED``, so every run of a config sees the same shifted set; the
    unshifted test split stays as it is, so a run reports both (``test_*`` and ``shifted_test_*``).
    """
    specs = cfg.data.test_shift
    if not specs:
        return data
    if data.test is None:
        raise ConfigError(f"data.test_shift: the data {cfg.data.name!r} has no test split to shift; give "
                          "data.split three fractions (train, validation, test), e.g. [0.6, 0.2, 0.2]")
    shift = catalog.build_augment([(a.name, a.kwargs) for a in specs])
    g = torch.Generator().manual_seed(cfg.seed + TEST_SHIFT_SEED)
    with torch.no_grad():
        x = shift(data.test.X.clone(), generator=g)
    shifted = Dataset(x, data.test.y, f"{data.test.name} (shifted)")
    return Splits(data.train, data.val, data.test, shifted)


def resolve_loss_name(cfg: Config, train: Dataset) -> str:
    if cfg.loss.name is not None:
        return cfg.loss.name
    return "cross_entropy" if train.is_classification else "mse"


def build_model(cfg: Config, train: Dataset) -> nn.Module:
    """The model of ``cfg.model`` sized for ``train`` (inputs, classes or regression outputs)."""
    kind, kwargs = cfg.model.kind, dict(cfg.model.kwargs)
    builder = catalog.MODELS[kind]
    loss = resolve_loss_name(cfg, train)
    head = {"mse": "linear", "bce": "sigmoid", "cross_entropy": "softmax", "gaussian_nll": "gaussian"}[loss]
    if train.is_classification:
        out = 1 if loss == "bce" else max(train.classes or 2, 2)
    else:
        out = int(train.y[0].numel())
    params = inspect.signature(builder).parameters
    if kind == "rnn":
        return _build_sequence_model(builder, kwargs, train, out, head)
    if kind == "cnn" or "in_shape" in params:
        x = train.X
        in_shape = tuple(x.shape[1:]) if x.dim() == 4 else (1, *([int(round(x[0].numel() ** 0.5))] * 2))
        kwargs.setdefault("in_shape", in_shape)
        kwargs.setdefault("classes", out)
    else:
        kwargs.setdefault("head", head)
        if kwargs.get("log_var_init") == "marginal":  # the notes' "marginal variance of the output"
            y = train.y.reshape(len(train.y), -1).double()
            kwargs["log_var_init"] = y.var(0).clamp_min(1e-12).log().tolist() if len(y) > 1 else 0.0
        return builder(train.n_features, out_features=out, **kwargs)
    return builder(**kwargs)


def _build_sequence_model(builder, kwargs: dict, train: Dataset, out: int, head: str) -> nn.Module:
    """``model: {kind: rnn}``: inputs (samples, time, features); targets per sequence or per step."""
    x, y = train.X, train.y
    if x.dim() != 3:
        raise ValueError(f"model kind 'rnn' reads sequences of shape (samples, time, features), but the data's "
                         f"inputs have shape {tuple(x.shape)}; use a sequence set (data.name: adding, copy, "
                         "noisy_sine) or model kind mlp")
    pattern = kwargs.get("pattern", "seq2one")
    per_step = (y.dim() == 2 and train.is_classification) or (y.dim() == 3 and not train.is_classification)
    if pattern == "one2many":  # one input per sequence, a target for each generated step
        if not per_step:
            raise ValueError(f"pattern='one2many' generates a sequence, but {train.name!r} has one target per "
                             "sequence; use pattern seq2one")
        if x.shape[1] != 1:
            raise ValueError(f"pattern='one2many' reads one input per sequence, but {train.name!r} has inputs of "
                             f"length {x.shape[1]}; use pattern seq2seq (or data.name: sine_generation)")
        kwargs.setdefault("steps", int(y.shape[1]))
        kwargs.setdefault("head", head)
        return builder(int(x.shape[-1]), out_features=out if train.is_classification else int(y.shape[-1]),
                       **kwargs)
    if per_step and y.shape[1] != x.shape[1]:
        raise ValueError(f"per-step targets of length {y.shape[1]} for inputs of length {x.shape[1]}")
    if pattern == "seq2seq" and not per_step:
        raise ValueError(f"pattern='seq2seq' needs one target per time step, but {train.name!r} has one per "
                         "sequence; use pattern seq2one")
    if pattern == "seq2one" and per_step:
        raise ValueError(f"pattern='seq2one' gives one output per sequence, but {train.name!r} has a target for "
                         "every time step; use pattern seq2seq")
    if per_step and not train.is_classification:
        out = int(y.shape[-1])
    kwargs.setdefault("head", head)
    return builder(int(x.shape[-1]), out_features=out, **kwargs)


def build_training(cfg: Config, device: torch.device, data: Splits | None = None, *, pretrained: bool = True):
    """Data, loss, initialized model and optimizer of ``cfg``, in the order that fixes the RNG stream.

    The global RNG is seeded with the run's seed and then consumed, in this order, by the data
    loader (if it draws from it), the model's construction and the initializer. Everything that
    must reproduce a run (solo or as a member of a batched sweep) builds it through here.
    ``pretrained=False`` skips loading ``model.pretrained`` (a resumed run's checkpoint holds
    every weight, so the source run folder is not needed then).
    """
    # the global RNG is one per process: two threads building at once, or one seeding it for
    # its fit while another builds (the playground's race mode runs A and B side by side), would
    # interleave with the draws and give other weights
    with GLOBAL_RNG_LOCK:
        return _build_training(cfg, device, data, pretrained)


def _build_training(cfg: Config, device: torch.device, data: Splits | None, pretrained: bool):
    manual_seed(cfg.seed)
    data = build_data(cfg) if data is None else data
    data = shift_test_split(cfg, data)
    loss = Loss(resolve_loss_name(cfg, data.train), label_smoothing=cfg.loss.label_smoothing)
    model = build_model(cfg, data.train)
    if cfg.model.sync:
        from trainlab.nn.normalization import convert_sync_batchnorm
        if convert_sync_batchnorm(model) == 0:
            raise ConfigError(f"model.sync: true, but the {cfg.model.kind} has no batch norm layer to synchronize; "
                              "set model.norm: batch, or remove model.sync")
    batch = data.train.X[:catalog.LSUV_SAMPLES] if cfg.init.weight == "lsuv" else None
    catalog.apply_init(model, cfg.init.weight, cfg.init.bias, cfg.init.kwargs, batch=batch)
    if cfg.model.pretrained_dir is not None and pretrained:
        load_pretrained_run(model, cfg.model.pretrained_dir)
    if cfg.model.freeze_layers:
        from trainlab.nn.transfer import freeze
        freeze(model, cfg.model.freeze_layers)
    model.to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = catalog.build_optimizer(params, cfg.optimizer.name, cfg.optimizer.kwargs,
                                        [(t.name, t.kwargs) for t in cfg.transforms])
    return data, loss, model, optimizer


# ---------------------------------------------------------------------------------------------
# transfer learning: start from another run's weights (model.pretrained), freeze layers


class PretrainedRunError(ConfigError):
    """``model.pretrained`` does not name a finished run folder, or its weights do not fit the model."""


def pretrained_problem(path: str) -> str | None:
    """Why ``path`` cannot be a ``model.pretrained`` run folder (``None`` when it can).

    The path points to another run's folder by design (relative paths from the working folder);
    only its ``weights.safetensors`` is read, through safetensors, so loading never runs code.
    """
    p = Path(path).expanduser()
    if not p.exists():
        return "no such folder; give the folder of a finished run (the 'run folder:' line of trainlab run)"
    if not p.is_dir():
        return "is a file; give the run folder that holds weights.safetensors"
    if not (p / "config.yaml").is_file():
        return "is not a run folder (no config.yaml)"
    if not (p / "weights.safetensors").is_file():
        return "has no weights.safetensors: that run did not finish; resume it first (trainlab run --resume)"
    return None


def load_pretrained_run(model: nn.Module, path: str | Path) -> dict[str, list[str]]:
    """Copy the final weights of the run folder ``path`` into ``model``; a changed output layer is kept fresh.

    Every tensor must match by name and shape, except those of the output layer (the last
    weight layer): when its shape differs (another class count, the notes' digits → letters)
    the new, freshly initialized head is kept. Returns ``{"loaded", "replaced"}`` tensor names.
    Raises :class:`PretrainedRunError` naming the tensors that do not fit.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from trainlab.init import layer_activations
    from trainlab.nn.transfer import PretrainedMismatchError, load_pretrained

    problem = pretrained_problem(str(path))
    if problem is not None:
        raise PretrainedRunError(f"model.pretrained={str(path)!r}: {problem}")
    file = Path(path).expanduser() / "weights.safetensors"
    try:
        state = load_file(str(file))
    except (SafetensorError, OSError) as err:
        raise PretrainedRunError(f"model.pretrained={str(path)!r}: {file} is not a safetensors weights file: "
                                 f"{err}") from None
    own = model.state_dict()
    layers = list(layer_activations(model))
    head = layers[-1] + "." if layers else None
    replaced = [k for k, v in state.items() if head and k.startswith(head) and k in own
                and tuple(v.shape) != tuple(own[k].shape)]
    exclude = (head,) if replaced else ()
    try:
        info = load_pretrained(model, state, exclude=exclude)
    except PretrainedMismatchError as err:
        raise PretrainedRunError(f"model.pretrained={str(path)!r}: the run's weights do not fit this model "
                                 f"(same model kind and hidden sizes needed; only the output layer may change): "
                                 f"{str(err).removeprefix('cannot load pretrained weights: ')}") from None
    return {"loaded": info["loaded"], "replaced": replaced}


def build_callbacks(cfg: Config, run_dir: Path | None) -> list:
    return [catalog.build_callback(c.name, c.kwargs, run_dir=run_dir) for c in cfg.callbacks]


# ---------------------------------------------------------------------------------------------
# running


def slug(name: str, default: str = "run") -> str:
    """``name`` as one safe folder name: letters, digits, ``_ . -`` kept, anything else one ``-``.

    A run name is a label a user types; as a folder it must neither climb out of ``runs/``
    (``../../etc``, ``/abs``) nor create nested folders (``a/b``, ``</script>``).
    """
    text = re.sub(r"[^A-Za-z0-9_.-]+", "-", str(name)).strip("-.")
    return text[:80].rstrip("-.") or default


def default_run_dir(cfg: Config, root: str | Path = "runs") -> Path:
    """A fresh, created folder ``root/<slug of the name>-<timestamp>`` (see :func:`fresh_dir`)."""
    return fresh_dir(cfg.name, root)


def fresh_dir(prefix: str, root: str | Path = "runs") -> Path:
    """Create and return ``root/<prefix>-<timestamp>`` (``-2``, ``-3``... when that one is taken).

    The folder is reserved by creating it (``mkdir`` without ``exist_ok``, which is atomic), so
    processes starting in the same second never share a folder. ``prefix`` is slugged.
    """
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    base = f"{slug(prefix)}-{stamp}"
    i = 1
    while True:
        path = root / (base if i == 1 else f"{base}-{i}")
        try:
            path.mkdir()
            return path
        except FileExistsError:
            i += 1


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped a written run; the message gives its folder and the command that resumes it."""

    def __init__(self, run_dir: Path, resumable: bool = True):
        import shlex

        self.run_dir, self.resumable = run_dir, resumable
        if resumable:
            super().__init__(f"interrupted; the run folder is {run_dir}. Continue it with: "
                             f"trainlab run --resume {shlex.quote(str(run_dir))}")
        else:
            super().__init__(f"interrupted before the first epoch ended (no checkpoint to resume from); the "
                             f"run folder {run_dir} can be deleted, start the run again")


class RunDirError(ValueError):
    """A run folder cannot be used (``--out`` onto an existing folder without ``--overwrite``, ...)."""


def check_out_dir(path: str | Path, overwrite: bool) -> None:
    """Refuse an existing, non-empty folder unless ``overwrite`` and it is a run folder.

    Checked before anything is built, so a refusal costs nothing; the folder is only cleared
    later (:func:`claim_out_dir`), once the whole config has been built.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise RunDirError(f"--out {path}: a file of that name exists; give a folder path")
    if not path.is_dir() or not any(path.iterdir()):
        return
    if not overwrite:
        raise RunDirError(f"--out {path}: the folder exists and is not empty (its old files would mix with "
                          "the new run's); give a new folder, or pass --overwrite to replace that run")
    if not (path / "config.yaml").is_file():
        raise RunDirError(f"--out {path}: the folder is not a run folder (no config.yaml); --overwrite replaces "
                          "only run folders, so give a new or empty folder")


def claim_out_dir(path: str | Path, overwrite: bool) -> Path:
    """Create ``path`` for a new run: after :func:`check_out_dir`, the old run's files are removed."""
    path = Path(path)
    check_out_dir(path, overwrite)
    if path.is_dir() and overwrite:
        for child in path.iterdir():
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()
    path.mkdir(parents=True, exist_ok=True)
    return path


def check_paths(cfg: Config, *, pretrained: bool = True) -> None:
    """Raise :class:`ConfigError` when a callback's file path would leave the run folder, or (with
    ``pretrained``) when ``model.pretrained`` is not a finished run folder (:class:`PretrainedRunError`).

    The pretrained folder is checked here, when a run starts, rather than when the config is read:
    a finished run's config must still load (``load_run``, reports) after its source run is deleted.
    """
    if pretrained and cfg.model.pretrained_dir is not None:
        problem = pretrained_problem(cfg.model.pretrained_dir)
        if problem is not None:
            raise PretrainedRunError(f"model.pretrained={cfg.model.pretrained_dir!r}: {problem}")
    for i, cb in enumerate(cfg.callbacks):
        problem = catalog.callback_path_problem(cb.name, cb.kwargs)
        if problem is not None:
            arg, value, why = problem
            raise ConfigError(f"callbacks.{i}.{arg}: {value!r} {why}")


class _Heartbeat(Callback):
    """Tell the results store that this run is alive (see ``Store.mark_stale``).

    After the first epoch and then at most every ``every`` seconds: a store write per epoch of a
    run whose epochs take milliseconds would cost more than the epochs.
    """

    def __init__(self, recording, every: float = 5.0):
        self.recording, self.every = recording, every
        self._last: float | None = None

    def on_epoch_end(self, epoch, logs) -> None:
        now = time.monotonic()
        if self._last is None or now - self._last >= self.every:
            self._last = now
            self.recording.beat()


def run_experiment(config: Config | dict | None = None, *, run_dir: str | Path | None = None,
                   write: bool = True, verbose: bool = True, callbacks: tuple = (),
                   data: Splits | None = None, resume_from: str | Path | None = None,
                   store: str | Path | bool | None = None, overwrite: bool | None = None) -> RunResult:
    """Train the experiment ``config`` describes; with ``write`` also write its run folder.

    ``run_dir`` defaults to a fresh ``runs/<name>-<timestamp>``. ``callbacks`` are extra callback
    objects (measurements a study takes) run after the config's own. ``data`` replaces the data
    the config names with splits already in memory (a study's subset of MNIST, say); ``cfg.data``
    then only labels the run. ``resume_from`` continues from a checkpoint (see :func:`resume_run`).

    ``store``: record the run in a results store (``True``: the default store, a path: that one;
    ``None``/``False``: not recorded). ``overwrite``: for a given ``run_dir``, ``None`` reuses it
    as it is; ``False`` refuses an existing non-empty folder and ``True`` replaces the run folder
    there (what ``--out`` and ``--overwrite`` do).

    Everything the config describes (data, model, optimizer, schedule, callbacks, augmentation)
    is built before the run folder is created or the store row inserted, so a config that fails
    leaves neither behind.

    A written run keeps ``checkpoints/last.safetensors`` (unless the config has its own
    ``model_checkpoint``), so it can be resumed; with ``cfg.diagnostics`` a
    :class:`~trainlab.diagnostics.DiagnosticsRecorder` records the network and its verdicts go to
    ``metrics.json`` and the top of the report.

    Inside a ``torchrun`` launch (or ``trainlab run --nproc N``) every rank calls this with the
    same config: the ranks train one model (:mod:`trainlab.train.distributed`), rank 0 alone
    creates and writes the run folder, the checkpoints and the store row and prints, and the
    others learn the folder from it. A failure on any rank (not a NaN stop, not Ctrl-C) removes
    the folder a fresh run had created, so no partial run is left.
    """
    from trainlab.train import distributed

    cfg = parse_config(config)
    check_paths(cfg, pretrained=resume_from is None)
    group = distributed.init_from_env(cfg.train.device)
    main = group is None or group.is_main
    has_folder = write  # every rank builds the callbacks of the run folder...
    write = write and main  # ...and rank 0 alone writes into it
    verbose = verbose and main
    if run_dir is not None and write and overwrite is not None:
        check_out_dir(run_dir, overwrite)
    t0 = time.perf_counter()
    device = torch.device(cfg.train.device) if cfg.train.device else default_device()
    if group is not None:
        device = distributed.rank_device(group, device)
    data, loss, model, optimizer = build_training(cfg, device, data, pretrained=resume_from is None)
    # construct once against a folder that is not created, so a bad callback fails here
    build_callbacks(cfg, Path(run_dir) if run_dir is not None else Path("runs") / slug(cfg.name))
    batches_per_epoch = _batches_per_epoch(cfg, len(data.train))
    schedule = None
    if cfg.schedule is not None:
        schedule = catalog.build_schedule(optimizer, cfg.schedule.name, cfg.schedule.kwargs,
                                          steps_per_epoch=batches_per_epoch, epochs=cfg.train.epochs)
    augment = catalog.build_augment([(a.name, a.kwargs) for a in cfg.augment])

    run_path = None
    existed = run_dir is not None and Path(run_dir).exists()  # a failure on many ranks removes only what it made
    recording = None
    try:
        if write:
            if run_dir is None:
                run_path = default_run_dir(cfg)
            elif overwrite is None:
                run_path = Path(run_dir)
                run_path.mkdir(parents=True, exist_ok=True)
            else:
                run_path = claim_out_dir(run_dir, overwrite)
            atomic_write_bytes(run_path / "config.yaml", cfg.to_yaml().encode())
        elif run_dir is not None:
            run_path = Path(run_dir)
        if group is not None and has_folder:  # the folder rank 0 chose, on every rank
            chosen = group.broadcast(None if run_path is None else str(run_path))
            run_path = None if chosen is None else Path(chosen)
        if store not in (None, False) and write:
            from trainlab.experiments.store import RunRecording
            recording = RunRecording(None if store is True else store, cfg.to_dict(), run_path,
                                     resume=resume_from is not None, replace=bool(overwrite))
    except KeyboardInterrupt:
        # Ctrl-C once the folder exists but before training began: say which folder (not resumable)
        if write and run_path is not None and resume_from is None:
            raise RunInterrupted(run_path, resumable=False) from None
        raise
    run_callbacks: list = []
    try:
        run_callbacks = build_callbacks(cfg, run_path) + list(callbacks)
        if recording is not None:
            run_callbacks.append(_Heartbeat(recording))
        recorder = _add_run_callbacks(cfg, run_callbacks, run_path if has_folder else None)
        if schedule is not None:
            run_callbacks.insert(0, schedule)
        fit_kwargs = {"augment": augment} if augment is not None else {}
        if cfg.train.compile:
            fit_kwargs["compile"] = True
        # held here (the one fit would use), so a run that stops on NaN still has the epochs that ran
        history = next((cb for cb in run_callbacks if isinstance(cb, History)), None)
        if history is None:
            history = History()
            run_callbacks.insert(0, history)
        stopped = None
        landscape = cfg.diagnostics.landscape if cfg.diagnostics is not None else None
        # the initialization is reproducible from the config, so on resume too this is where training began
        theta0 = _flat_parameters(model) if landscape is not None else None
        try:
            fit(model, data.train, data.val, loss=loss, optimizer=optimizer, epochs=cfg.train.epochs,
                batch_size=cfg.train.batch_size, callbacks=run_callbacks, device=device, seed=cfg.seed,
                verbose=verbose, shuffle=cfg.train.shuffle, drop_last=cfg.train.drop_last,
                resume_from=resume_from, **fit_kwargs)
        except NonFiniteLossError as err:
            stopped = err
        # rank 0 alone reports: the weights are the same on every rank
        final = final_metrics(model, data, loss, device) if main else {}
        result = RunResult(cfg, model, history, final, time.perf_counter() - t0, run_path)
        result.extras.update(data=data, loss=loss, early_stops=early_stops(run_callbacks))
        if recorder is not None:
            result.extras["diagnostics"] = recorder
        if landscape is not None and stopped is None and main:
            result.extras["landscape"] = _landscape(cfg, model, loss, data, theta0)
        if main:
            from trainlab.diagnostics.verdicts import diagnose_run
            result.extras["verdicts"] = diagnose_run(result, loss, data, stopped=stopped)
        if augment is not None:
            result.extras["augment"] = augment
            result.extras["augment_sample"] = data.train.X[:6].detach().cpu()
        if write and run_path is not None:
            write_run_folder(result)
        if stopped is not None:  # the folder holds the epochs that ran; the store row records the failure
            stopped.result = result
            if write and run_path is not None:
                n = len(history.records())
                ran = f"the {n} epoch(s) that finished" if n else "no finished epoch (it stopped in the first)"
                stopped.args = (f"{stopped} The run folder {run_path} holds {ran} and the verdicts "
                                "(verdicts.json).",)
            if group is not None:  # every rank stopped at this step; the others wait for rank 0's folder
                group.barrier()
            raise stopped
        if recording is not None:
            recording.finish(result)
    except BaseException as err:
        if recording is not None:
            recording.__exit__(type(err), err, err.__traceback__)
        if group is not None and write and run_path is not None and resume_from is None \
                and not isinstance(err, (KeyboardInterrupt, NonFiniteLossError)):
            _remove_partial_run(run_path, existed)
        if isinstance(err, KeyboardInterrupt) and not isinstance(err, RunInterrupted) and write \
                and run_path is not None:
            last = [cb.last_path for cb in run_callbacks if type(cb).__name__ == "ModelCheckpoint" and cb.save_last]
            raise RunInterrupted(run_path, resumable=any(p.is_file() for p in last)) from None
        raise
    if recording is not None:
        recording.__exit__(None, None, None)
    if write and run_path is not None and verbose:
        print(f"run folder: {run_path}\nreport:     {run_path / 'report.html'}")
        if result.extras.get("verdicts"):
            print(result.extras["verdicts"].summary(run_path))
    return result


def _remove_partial_run(run_path: Path, existed: bool) -> None:
    """Remove what a failed run on many ranks wrote: the folder, or its contents if it was there before."""
    if not existed:
        shutil.rmtree(run_path, ignore_errors=True)
        return
    for child in run_path.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)


def _add_run_callbacks(cfg: Config, callbacks: list, run_path: Path | None):
    """Add the diagnostics recorder and (for a written run) a last-epoch checkpoint; return the recorder."""
    from trainlab.diagnostics import DiagnosticsRecorder
    from trainlab.train.callbacks import ModelCheckpoint

    recorder = None
    if cfg.diagnostics is not None:
        d = cfg.diagnostics
        recorder = DiagnosticsRecorder(every=d.every, probe=d.probe, spectra=d.spectra, seed=cfg.seed,
                                       curvature=d.curvature)
        callbacks.append(recorder)
    checkpoints = [cb for cb in callbacks if isinstance(cb, ModelCheckpoint)]
    if run_path is not None and not checkpoints:
        checkpoints.append(ModelCheckpoint(run_path / "checkpoints"))
        callbacks.append(checkpoints[-1])
    for cb in checkpoints:  # resuming compares the config in the checkpoint with the one given
        cb.metadata.setdefault("config", cfg.to_dict())
    return recorder


def _flat_parameters(model):
    from trainlab.diagnostics.landscape import flat_parameters
    return flat_parameters(model)


def _landscape(cfg: Config, model, loss, data, theta0) -> dict:
    """``diagnostics.landscape`` after training, on the first ``samples`` training samples."""
    from trainlab.diagnostics.landscape import landscape_summary

    spec = cfg.diagnostics.landscape
    n = min(spec.samples, len(data.train))
    batch = (data.train.X[:n], data.train.y[:n])
    return landscape_summary(model, loss, batch, theta0, line=spec.line,
                             slice=spec.slice.model_dump() if spec.slice is not None else None,
                             sharpness=spec.sharpness, iters=spec.iters, seed=cfg.seed)


class ResumeError(ValueError):
    """A run folder cannot be resumed (no checkpoint, or a different config); the message says why."""


def config_diff(old: dict, new: dict, prefix: str = "") -> list[str]:
    """Lines ``path: old → new`` for every field that differs between two config dicts."""
    lines = []
    for key in sorted(set(old) | set(new), key=str):
        a, b = old.get(key, "(absent)"), new.get(key, "(absent)")
        path = f"{prefix}{key}"
        if isinstance(a, dict) and isinstance(b, dict):
            lines += config_diff(a, b, path + ".")
        elif a != b:
            lines.append(f"  {path}: {a!r} → {b!r}")
    return lines


def _epochs_grew(old: dict, new: dict) -> bool:
    """Whether ``new`` differs from ``old`` only by a larger ``train.epochs`` (a run extended)."""
    a, b = old.get("train", {}).get("epochs"), new.get("train", {}).get("epochs")
    if not (isinstance(a, int) and isinstance(b, int) and b > a):
        return False
    same = {**new, "train": {**new.get("train", {}), "epochs": a}}
    return same == old


def _deviceless(cfg: dict) -> dict:
    """``cfg`` without ``train.device``: a run may resume on another device (a GPU run on a CPU)."""
    train = cfg.get("train")
    return {**cfg, "train": {k: v for k, v in train.items() if k != "device"}} if isinstance(train, dict) else cfg


def resume_run(run_dir: str | Path, config: Config | dict | None = None, *, verbose: bool = True,
               store: str | Path | bool | None = None) -> RunResult:
    """Continue the interrupted run in ``run_dir`` from its last checkpoint and finish its folder.

    The run's own ``config.yaml`` is used; a ``config`` given as well must resolve to the same
    config, otherwise :class:`ResumeError` lists the differences (a resumed run must be the run
    that was started). The one change allowed is more epochs (``train.epochs`` larger than
    before, without a schedule, whose shape depends on it): the run is extended, and the
    difference is printed. ``train.device`` may differ too, and a device this machine lacks (a
    run trained on a GPU, resumed on a CPU) becomes this machine's default, with a note. On the CPU the final weights equal those of an uninterrupted run bit
    for bit: model, optimizer, schedule and callback states, RNG and data order are restored.

    ``store`` (as in :func:`run_experiment`): the run's row in the results store (found by its
    folder) is updated, so it ends ``finished`` with its whole history.
    """
    from trainlab.experiments.config import load_yaml, on_this_machine
    from trainlab.train.checkpoint import load_checkpoint

    from trainlab.train import distributed

    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file():
        raise ResumeError(f"{run_dir} is not a run folder (no config.yaml)")
    saved_data, moved = on_this_machine(load_yaml(run_dir / "config.yaml"))
    saved = parse_config(saved_data)
    # on many ranks every one reads the folder; rank 0 alone speaks and writes
    group = distributed.init_from_env(saved.train.device)
    main = group is None or group.is_main
    verbose = verbose and main
    if moved and main:
        print(f"resuming {run_dir}: {moved}", file=sys.stderr)
    target = saved
    extended: list[str] = []
    if config is not None:
        given = parse_config(config)
        diff = config_diff(_deviceless(saved.to_dict()), _deviceless(given.to_dict()))
        if diff and not _epochs_grew(_deviceless(saved.to_dict()), _deviceless(given.to_dict())):
            raise ResumeError(f"refusing to resume {run_dir}: the config differs from the run's own config.yaml\n"
                              + "\n".join(diff) + "\nresume without a config (only train.epochs may grow, to "
                              "extend the run), or start a new run")
        if diff and saved.schedule is not None:
            raise ResumeError(f"refusing to extend {run_dir}: its schedule {saved.schedule.name!r} is laid out over "
                              f"train.epochs={saved.train.epochs}; more epochs would change the steps already "
                              "taken. Start a new run with the longer schedule")
        target, extended = given, diff
    path = last_checkpoint_path(saved, run_dir)
    if not path.is_file():
        raise ResumeError(f"{run_dir} has no checkpoint to resume from ({path} is missing)")
    ckpt = load_checkpoint(path)
    stored = ckpt.extra.get("config")
    # an extension interrupted before its first checkpoint: config.yaml already has the new length
    if isinstance(stored, dict):
        stored, now = _deviceless(stored), _deviceless(saved.to_dict())
        if stored != now and not _epochs_grew(stored, now):
            raise ResumeError(f"refusing to resume {run_dir}: its config.yaml differs from the config stored in "
                              f"the checkpoint\n" + "\n".join(config_diff(stored, now)))
    if verbose:
        print(f"resuming {run_dir} after epoch {ckpt.epoch + 1} of {target.train.epochs}")
    if extended and main:  # said even with -q: the run becomes longer than the one started
        print(f"extending {run_dir}:\n" + "\n".join(extended), file=sys.stderr)
    return run_experiment(target, run_dir=run_dir, verbose=verbose, resume_from=ckpt, store=store)


def last_checkpoint_path(cfg: Config, run_dir: str | Path) -> Path:
    """Where a run of ``cfg`` in ``run_dir`` keeps the checkpoint :func:`resume_run` continues from."""
    run_dir = Path(run_dir)
    ckpts = [cb for cb in build_callbacks(cfg, run_dir)
             if type(cb).__name__ == "ModelCheckpoint" and cb.save_last]
    return ckpts[0].last_path if ckpts else run_dir / "checkpoints" / "last.safetensors"


def _batches_per_epoch(cfg: Config, n: int) -> int:
    b = n if cfg.train.batch_size == "full" else min(cfg.train.batch_size, n)
    return n // b if cfg.train.drop_last else -(-n // b)


def final_metrics(model: nn.Module, data: Splits, loss: Loss, device) -> dict[str, float]:
    out: dict[str, float] = {}
    for name, ds in (("train", data.train), ("val", data.val), ("test", data.test),
                     ("shifted_test", getattr(data, "shifted_test", None))):
        if ds is not None:
            for k, v in evaluate(model, ds, loss, device=device).items():
                out[f"{name}_{k}"] = v
    return out


# ---------------------------------------------------------------------------------------------
# the run folder


def _csv_text(records: list[dict]) -> str:
    keys: list[str] = []
    for r in records:
        keys.extend(k for k in r if k not in keys)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=keys)
    w.writeheader()
    w.writerows(records)
    return buf.getvalue()


def report_sections(result: RunResult) -> list[Section]:
    """The sections of a run's report, in order (later features add theirs here)."""
    run_dir = result.run_dir
    records = result.history.records()
    rows = [(k, v) for k, v in result.final.items()]
    rows.append(("epochs run", len(records)))
    rows.append(("wall time (s)", result.wall_time))
    n_params = sum(p.numel() for p in result.model.parameters())
    summary = (f"{result.config.model.kind.upper()} with {n_params:,} parameters on "
               f"{result.config.data.name}, optimizer {result.config.optimizer.name}, "
               f"batch size {result.config.train.batch_size}, seed {result.config.seed}.")
    data = result.extras.get("data")
    return [
        *verdict_sections(result),
        Section("Final numbers", text=[summary], table=(("metric", "value"), rows)),
        *training_sections(records, run_dir, title=result.config.name, stops=result.extras.get("early_stops", ()),
                           scheduled=result.config.schedule is not None, epochs_planned=result.config.train.epochs),
        *prediction_sections(result.model, result.extras.get("loss"), getattr(data, "train", None),
                             getattr(data, "val", None), run_dir),
        *diagnostics_sections(result),
        history_section(records),
        Section("Resolved config", pre=result.config.to_yaml()),
    ]


def verdict_sections(result: RunResult) -> list[Section]:
    """The diagnosis first in the report: the primary verdict with its evidence on the curves, then the rest."""
    import html as _html

    from trainlab.experiments.plots import plot_verdict_evidence

    diagnosis = result.extras.get("verdicts")
    if not diagnosis:
        return []
    primary = diagnosis.primary
    css = "verdicts ok" if primary.kind == "healthy" else "verdicts"
    where = f", layer {primary.layer}" if primary.layer else ""
    text = [f"<b>Primary: {_html.escape(primary.kind)}</b> ({primary.severity}{_html.escape(where)})",
            primary.message, f"Fix: {primary.fix}"]
    figures = []
    path = plot_verdict_evidence(result.history.records(), primary, result.run_dir / "verdict.png")
    if path is not None:
        figures.append((f"evidence for {primary.kind}: the epoch it starts and its threshold", path))
    out = [Section("Verdict", text=text, figures=figures, css_class=css)]
    rest = list(diagnosis)[1:]
    if rest:
        out.append(Section("Other verdicts", text=[f"{v.kind} ({v.severity}): {v.message} Fix: {v.fix}" for v in rest],
                           css_class="verdicts"))
    return out


def diagnostics_sections(result: RunResult) -> list[Section]:
    """Gradient norms per layer, dead/saturated fractions, sparsity, spectra, augmented samples."""
    from trainlab.experiments import plots

    out: list[Section] = []
    run_dir = result.run_dir
    rec = result.extras.get("diagnostics")
    if rec is not None and rec.all_records():
        figs = [("gradient norm of each layer's weights on the probe batch (log scale); a fan spreading "
                 "over orders of magnitude is vanishing or exploding gradients",
                 plots.plot_layer_series(rec.series("layers", "grad_norm"), run_dir / "grad_norms.png",
                                         ylabel="‖∂L/∂W‖", log=True, title="Gradient norm per layer"))]
        ratios = rec.series("layers", "update_ratio")
        if ratios:
            figs.append(("update-to-weight ratio ‖ΔW‖/‖W‖ of the epoch's last step (~1e-3 is typical)",
                         plots.plot_layer_series(ratios, run_dir / "update_ratios.png", ylabel="‖ΔW‖ / ‖W‖",
                                                 log=True, title="Update-to-weight ratio")))
        curv = [(r["epoch"] + 1, r["curvature"]) for r in rec.all_records() if r.get("curvature")]
        if curv:  # diagnostics.curvature: the notes' ill-conditioning monitor
            epochs = [e for e, _ in curv]
            figs.append(("curvature along the gradient (diagnostics.curvature): gᵀg, gᵀHg and the step size "
                         "2gᵀg/gᵀHg above which a gradient step raises the loss; gᵀHg growing faster than gᵀg is "
                         "ill-conditioning",
                         plots.plot_panels([
                             {"title": "gᵀg and gᵀHg", "xlabel": "epoch", "ylabel": "log scale", "logy": True,
                              "series": {"gᵀg": (epochs, [max(c["gTg"], 1e-300) for _, c in curv]),
                                         "|gᵀHg|": (epochs, [max(abs(c["gTHg"]), 1e-300) for _, c in curv])}},
                             {"title": "critical step 2gᵀg/gᵀHg", "xlabel": "epoch", "ylabel": "learning rate",
                              "logy": True, "series": {"critical lr": (epochs, [c["critical_lr"] if math.isfinite(c["critical_lr"]) else float("nan") for _, c in curv])}},
                         ], run_dir / "curvature.png")))
        out.append(Section("Gradient flow", figures=figs))
        units = plots.plot_unit_health(rec.series("activations", "dead_frac"),
                                       rec.series("activations", "saturated_frac"), run_dir / "units.png")
        sparsity = plots.plot_sparsity(rec.series("activations", "zero_frac"), rec.series("layers", "weight_small_frac"),
                                       run_dir / "sparsity.png")
        out.append(Section("Units", text=["Dead: ReLU units that output 0 for every probe sample. Saturated: "
                                          "sigmoid/tanh outputs within 1% of the range from a bound."],
                           figures=[("dead and saturated fractions per layer", units)]))
        out.append(Section("Sparsity", figures=[("activation sparsity (exact zeros) and weight sparsity "
                                                 "(|w| < 1e-3) per layer", sparsity)]))
        if rec.spectrum:
            out.append(Section("Weight spectra", text=[
                "Singular values of each weight matrix before and after training, against the Marchenko–Pastur "
                "law of a random matrix with the initial entry scale. Values beyond the upper edge are "
                "structure learned from the data."],
                figures=[("singular values vs Marchenko–Pastur",
                          plots.plot_spectra(rec.spectrum, run_dir / "spectra.png"))]))
    out.extend(landscape_sections(result))
    augment = result.extras.get("augment")
    grid = getattr(plots, "plot_augmented_grid", None)
    if augment is not None and grid is not None:
        try:
            path = grid(result.extras["augment_sample"], augment, run_dir / "augmented.png")
            out.append(Section("Augmented samples", figures=[("training images (first column) and augmented "
                                                              "versions", path)]))
        except (TypeError, ValueError) as err:  # e.g. data that are not images
            out.append(Section("Augmented samples", text=[f"not drawn: {err}"]))
    return out


def landscape_sections(result: RunResult) -> list[Section]:
    """The ``diagnostics.landscape`` results: line profile, 2-D slice, sharpness."""
    from trainlab.experiments import plots

    land = result.extras.get("landscape")
    if not land or result.run_dir is None:
        return []
    text, figs = [], []
    if "sharpness" in land:
        text.append(f"Sharpness (top Hessian eigenvalue at the trained weights, Lanczos on Hessian-vector "
                    f"products): {land['sharpness']:.4g}. Plain gradient descent is stable at this point only "
                    f"for learning rates below 2/λ_max = {2 / land['sharpness']:.4g}." if land["sharpness"] > 0 else
                    f"Sharpness (top Hessian eigenvalue): {land['sharpness']:.4g} (not a minimum).")
    if "line" in land:
        line = land["line"]
        text.append(f"Along the line from the initial to the trained weights the loss goes from "
                    f"{line['loss_start']:.4g} to {line['loss_end']:.4g}; "
                    + ("it falls monotonically" if line["monotone"] else "it does not fall monotonically")
                    + f" (largest rise above the chord: {line['max_barrier']:.3g}).")
        figs.append(("loss along θ(α) = (1 − α)θ₀ + αθ₁ (Goodfellow, Vinyals & Saxe 2015)",
                     plots.plot_line_profile(line["alphas"], line["losses"], result.run_dir / "landscape_line.png")))
    if "slice" in land:
        sl = land["slice"]
        figs.append(("filter-normalized random 2-D slice around the trained weights (Li et al. 2018)",
                     plots.plot_loss_contour(sl["a"], sl["b"], sl["losses"], result.run_dir / "landscape_slice.png")))
    return [Section("Loss landscape", text=text, figures=figs)]


def write_run_folder(result: RunResult) -> Path:
    """Write metrics, curves, report and weights of ``result`` into ``result.run_dir``."""
    run_dir = result.run_dir
    assert run_dir is not None
    run_dir.mkdir(parents=True, exist_ok=True)
    records = epoch_records(result.history.records())  # files count epochs from 1, as the console does
    atomic_write_bytes(run_dir / "config.yaml", result.config.to_yaml().encode())
    atomic_write_bytes(run_dir / "metrics.csv", _csv_text(records).encode())
    metrics = {"name": result.config.name, "history": records, "final": result.final,
               "wall_time": result.wall_time}
    if "diagnostics" in result.extras:
        metrics["verdicts"] = [v.to_dict() for v in result.extras.get("verdicts", [])]  # epochs from 1 already
        # as in the history: epochs from 1, and 0 for the record taken at initialization (-1 inside)
        summary = result.extras["diagnostics"].summary()
        summary["records"] = [{**r, "epoch": r["epoch"] + 1} if "epoch" in r else r for r in summary["records"]]
        metrics["diagnostics"] = summary
    atomic_write_json(run_dir / "metrics.json", metrics)
    if "landscape" in result.extras:
        atomic_write_json(run_dir / "landscape.json", result.extras["landscape"])
    if "verdicts" in result.extras:
        atomic_write_json(run_dir / "verdicts.json", result.extras["verdicts"].to_dict())
    save_weights(result.model, run_dir / "weights.safetensors", metadata={"name": result.config.name})
    write_report(run_dir / "report.html", f"trainlab run: {result.config.name}", report_sections(result),
                 subtitle=f"{run_dir.name}")
    return run_dir
