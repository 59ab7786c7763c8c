"""Experiment configs: a validated, fully resolved description of one run.

A config is YAML (or a dict) with these sections; every technique is named from an allow-list in
:mod:`trainlab.experiments.catalog` and its keyword arguments are checked against the signature of
what it builds, so a typo fails at load time with the field's path and the allowed values::

    name: moons-quickstart
    seed: 0
    data:   {name: moons, n_samples: 1000, noise: 0.2, split: [0.7, 0.3]}
    model:  {kind: mlp, hidden: [64, 64], activation: relu}
    init:   {weight: he_normal, bias: zeros}
    loss:   {name: cross_entropy, label_smoothing: 0.0}
    optimizer: {name: adam, lr: 0.01}
    transforms: [{name: clip_global_norm, max_norm: 1.0}]
    schedule: {name: cosine}
    train:  {epochs: 20, batch_size: 32}       # batch_size: 1 (SGD), k (mini-batch) or full (batch GD)
    callbacks: [{name: early_stopping, patience: 5}]
    augment: [{name: rotation, degrees: 10}]

Unknown keys are rejected everywhere.
"""
from __future__ import annotations

import copy
import functools
import inspect
import math
import typing
from pathlib import Path
from typing import Any, ClassVar, Literal

import yaml
from pydantic import (BaseModel, ConfigDict, Field, PydanticSchemaGenerationError, TypeAdapter, ValidationError,
                      field_validator, model_serializer, model_validator)

from trainlab.experiments import catalog, yamlio
from trainlab.experiments.yamlio import short

MAX_ERRORS = 8  # problems listed in one message; the rest are counted


class ConfigError(ValueError):
    """A config is invalid; the message (one line) names each bad field by its dotted path and how to fix it."""


def _signature_params(fn) -> tuple[list[str], bool]:
    target = fn.__init__ if inspect.isclass(fn) else fn
    sig = inspect.signature(target)
    names, var_kw = [], False
    for p in sig.parameters.values():
        if p.kind is p.VAR_KEYWORD:
            var_kw = True
        elif p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name != "self":
            names.append(p.name)
    return names, var_kw


def check_kwargs(fn, kwargs: dict, fixed: tuple[str, ...] = (), what: str = "") -> None:
    """Raise ``ValueError`` naming any key of ``kwargs`` that ``fn`` does not accept."""
    names, var_kw = _signature_params(fn)
    allowed = [n for n in names if n not in fixed]
    bad = [k for k in kwargs if k in fixed or (k not in allowed and not var_kw)]
    if bad:
        # "@key@" lets the error formatter put the argument into the field path
        raise ValueError(f"@{bad[0]}@not an argument of {what}; allowed: {', '.join(allowed) or '(none)'}")


@functools.cache
def _param_adapters(fn) -> dict[str, tuple[TypeAdapter, str]]:
    """The annotated arguments of ``fn`` (a class means its ``__init__``) as pydantic validators.

    Annotations that pydantic cannot check (a ``torch.dtype``, a ``Schedule`` object) are left to
    the constructor's own checks, which :mod:`trainlab.experiments.validate` runs on dummies.
    """
    target = fn.__init__ if inspect.isclass(fn) else fn
    try:
        hints = typing.get_type_hints(target)
    except Exception:  # an annotation that does not resolve: check each one that does
        hints = {}
        namespace = getattr(inspect.getmodule(target), "__dict__", {})
        for name, ann in getattr(target, "__annotations__", {}).items():
            try:
                hints[name] = eval(ann, namespace) if isinstance(ann, str) else ann  # noqa: S307 (our own source)
            except Exception:
                continue
    out = {}
    for name, ann in hints.items():
        if name == "return":
            continue
        try:
            out[name] = (TypeAdapter(ann), _type_text(ann))
        except (PydanticSchemaGenerationError, TypeError, NameError):
            continue
    return out


def _type_text(ann) -> str:
    text = getattr(ann, "__name__", None) if not typing.get_args(ann) else None
    return text or str(ann).replace("typing.", "").replace("collections.abc.", "")


def coerce_kwargs(fn, kwargs: dict, what: str = "") -> dict:
    """``kwargs`` checked against ``fn``'s annotations and converted (``1e3`` → 1000 for an ``int``).

    Raises ``ValueError`` (``@key@``-prefixed, for the field path) naming the value and the type
    the argument takes. A YAML ``true`` is never taken for a number.
    """
    adapters = _param_adapters(fn)
    out = dict(kwargs)
    for key, value in kwargs.items():
        if key not in adapters:
            continue
        adapter, text = adapters[key]
        try:
            out[key] = adapter.validate_python(value, strict=True if isinstance(value, bool) else None)
        except ValidationError as err:
            e = err.errors()[0]
            inner = ".".join(str(p) for p in e["loc"] if not isinstance(p, str) or not p.startswith("function"))
            where = f"{key}.{inner}" if inner and all(str(p).isdigit() for p in e["loc"]) else key
            raise ValueError(f"@{where}@{e['msg']} (got {short(value)}); {what} takes {key}: {text}") from None
        if isinstance(out[key], float) and math.isnan(out[key]):
            raise ValueError(f"@{key}@nan is not a value {what} can use; give a number")
    return out


def _admits_bool(ann) -> bool:
    return ann is bool or ann is Any or any(_admits_bool(a) for a in typing.get_args(ann))


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    @model_validator(mode="before")
    @classmethod
    def _no_bools_for_numbers(cls, data):
        # pydantic's lax mode reads true as 1; in a config `epochs: yes` is a slip, not a number
        if isinstance(data, dict):
            for key, value in data.items():
                field = cls.model_fields.get(key) if isinstance(key, str) else None
                if isinstance(value, bool) and field is not None and not _admits_bool(field.annotation):
                    raise ValueError(f"@{key}@expected {_type_text(field.annotation)}, got {value} "
                                     "(true/false/yes/no are booleans in YAML)")
        return data


class Spec(BaseModel):
    """``{name: <allow-listed name>, **kwargs}``: one technique and its keyword arguments."""

    model_config = ConfigDict(extra="allow")
    table: ClassVar[str] = ""           # the catalog table that lists the allowed names
    fixed: ClassVar[tuple[str, ...]] = ()  # arguments the runner supplies itself
    name: str

    @property
    def kwargs(self) -> dict[str, Any]:
        return dict(self.model_extra or {})

    @model_validator(mode="after")
    def _check_name_and_args(self):
        options = getattr(catalog, self.table)
        if self.name not in options:
            raise ValueError(f"unknown name {short(self.name)}; allowed: {', '.join(sorted(options)) or '(none yet)'}")
        check_kwargs(options[self.name], self.kwargs, self.fixed, what=repr(self.name))
        self.__pydantic_extra__.update(coerce_kwargs(options[self.name], self.kwargs, what=repr(self.name)))
        return self


class DataSpec(Spec):
    table: ClassVar[str] = "DATASETS"
    fixed: ClassVar[tuple[str, ...]] = ("seed",)
    split: list[float] | None = Field(
        default=None, description="train/val[/test] fractions for sets without their own split; "
                                  "default [0.7, 0.3] (the notes' 70/30)")
    input_features: list[str] | None = Field(
        default=None, description="input columns computed from the raw inputs (trainlab.data.features), e.g. "
                                  "[x1, x2, x1^2, x2^2, x1*x2, sin(x1)]; default: the raw inputs")

    test_shift: list["AugmentSpec"] | None = Field(
        default=None, description="augmentations applied once, seeded, to a copy of the test split: a "
                                  "covariate shift (production data drawn unlike the training data); its "
                                  "numbers are reported as shifted_test_*, beside the unshifted test_*")

    @field_validator("input_features")
    @classmethod
    def _known_features(cls, v):
        if v is not None:
            from trainlab.data.features import check_feature_names
            check_feature_names(v)
        return v

    @model_serializer(mode="wrap")
    def _drop_unset_features(self, handler):
        # without input features the resolved config stays as it was before the field existed,
        # so older run folders still resume and compare equal
        out = handler(self)
        if isinstance(out, dict) and out.get("input_features") is None:
            out.pop("input_features", None)
        if isinstance(out, dict) and not out.get("test_shift"):  # the same for runs without a shifted test set
            out.pop("test_shift", None)
        return out


TRANSFER_KEYS = ("pretrained", "freeze")  # model keys that are not arguments of the builder


class ModelSpec(Section):
    """``kind`` picks the builder; the other keys are its arguments (sizes come from the data).

    Transfer learning adds two keys of its own: ``pretrained: RUN_DIR`` (start from the final
    weights of another run folder; an output layer whose shape differs is replaced by a fresh
    one; the folder is checked when the run starts) and ``freeze: [layer names or child
    indices]`` (those layers are not trained). Both are written into the resolved config only
    when given.
    ``sync: true`` (not a builder argument) synchronizes the model's batch norms over the ranks
    when many processes train it (``trainlab run --nproc N``; see docs/training.md).
    """

    model_config = ConfigDict(extra="allow")
    kind: str = "mlp"

    @property
    def kwargs(self) -> dict[str, Any]:
        return {k: v for k, v in (self.model_extra or {}).items() if k not in TRANSFER_KEYS and k != "sync"}

    @property
    def sync(self) -> bool:
        return bool((self.model_extra or {}).get("sync", False))

    @property
    def pretrained_dir(self) -> str | None:
        return (self.model_extra or {}).get("pretrained")

    @property
    def freeze_layers(self) -> list:
        value = (self.model_extra or {}).get("freeze")
        return [] if value is None else list(value) if isinstance(value, list) else [value]

    @model_validator(mode="after")
    def _check_transfer(self):
        extra = self.model_extra or {}
        p = extra.get("pretrained")
        if p is not None and (not isinstance(p, str) or not p.strip()):
            raise ValueError(f"@pretrained@must be the path of a run folder (a string), got {short(p)}")
        f = extra.get("freeze")
        items = f if isinstance(f, list) else [f] if f is not None else []
        if any(isinstance(i, bool) or not isinstance(i, (str, int)) for i in items):
            raise ValueError(f"@freeze@must list layer names (e.g. blocks.0) or indices of the model's children "
                             f"(0 = first, -1 = last), got {short(f)}")
        return self

    @model_validator(mode="after")
    def _check(self):
        if not isinstance((self.model_extra or {}).get("sync", False), bool):
            raise ValueError(f"@sync@must be true or false (synchronized batch norm), got "
                             f"{short((self.model_extra or {})['sync'])}")
        if self.kind not in catalog.MODELS:
            raise ValueError(f"unknown model kind {short(self.kind)}; allowed: {', '.join(sorted(catalog.MODELS))}")
        check_kwargs(catalog.MODELS[self.kind], self.kwargs,
                     ("in_features", "out_features", "in_shape", "classes"), what=f"model kind {self.kind!r}")
        self.__pydantic_extra__.update(coerce_kwargs(catalog.MODELS[self.kind], self.kwargs,
                                                     what=f"model kind {self.kind!r}"))
        return self


class InitSpec(Section):
    """Weight and bias initialization applied to every layer (``None`` keeps PyTorch's default)."""

    model_config = ConfigDict(extra="allow")
    weight: str | None = None
    bias: str | None = None

    @property
    def kwargs(self) -> dict[str, Any]:
        return dict(self.model_extra or {})

    @model_validator(mode="after")
    def _check(self):
        for field, table in (("weight", catalog.WEIGHT_INITS), ("bias", catalog.BIAS_INITS)):
            value = getattr(self, field)
            if value is not None and value not in table:
                raise ValueError(f"@{field}@unknown initializer {short(value)}; "
                                 f"allowed: {', '.join(sorted(table)) or '(none yet)'}")
        return self


class LossSpec(Section):
    name: Literal["mse", "bce", "cross_entropy", "gaussian_nll"] | None = Field(
        default=None, description="default: cross_entropy for classification data, mse for regression; "
                                  "gaussian_nll: regression with a learned variance (model.log_var_init)")
    label_smoothing: float = Field(default=0.0, ge=0.0, le=1.0)


class OptimizerSpec(Spec):
    table: ClassVar[str] = "OPTIMIZERS"
    fixed: ClassVar[tuple[str, ...]] = ("params",)


class TransformSpec(Spec):
    table: ClassVar[str] = "TRANSFORMS"


class ScheduleSpec(Spec):
    table: ClassVar[str] = "SCHEDULES"
    fixed: ClassVar[tuple[str, ...]] = ("optimizer",)


class CallbackSpec(Spec):
    table: ClassVar[str] = "CALLBACKS"


class AugmentSpec(Spec):
    table: ClassVar[str] = "AUGMENTATIONS"


DataSpec.model_rebuild()  # data.test_shift names AugmentSpec, defined after DataSpec


class TrainSpec(Section):
    epochs: int = Field(default=20, ge=1)
    batch_size: int | Literal["full"] = Field(
        default=32, description="1 = stochastic GD, k = mini-batch GD, 'full' = batch GD")
    shuffle: bool = True
    drop_last: bool = False
    device: str | None = Field(default=None, description="cpu, cuda, cuda:1 ...; default: cuda if present")
    compile: bool = Field(default=False, description="compile the model with torch.compile (needs a "
                          "C++ compiler on the CPU, Triton on a GPU)")

    @field_validator("batch_size")
    @classmethod
    def _positive(cls, v):
        if isinstance(v, int) and v < 1:
            raise ValueError("batch_size must be >= 1 or 'full'")
        return v


class SliceSpec(Section):
    """The 2-D filter-normalized slice of :func:`trainlab.diagnostics.landscape.filter_normalized_slice`:
    a ``steps × steps`` grid over [−span, span]² around the trained weights."""

    steps: int = Field(default=21, ge=2, le=101)
    span: float = Field(default=1.0, gt=0)


class LandscapeSpec(Section):
    """The loss landscape after training (:mod:`trainlab.diagnostics.landscape`), written to
    ``landscape.json`` and the report.

    ``line``: the loss from the initial to the trained weights (Goodfellow et al. 2015);
    ``slice``: a filter-normalized 2-D slice around the trained weights (Li et al. 2018;
    ``true`` for the defaults, steps 21 and span 1); ``sharpness``: the top Hessian eigenvalue at
    the trained weights (Lanczos on Hessian-vector products, at most ``iters`` products);
    ``samples``: how many training samples the losses are computed on.
    """

    line: bool = True
    slice: SliceSpec | None = None
    sharpness: bool = True
    samples: int = Field(default=512, ge=1)
    iters: int = Field(default=30, ge=1)

    @model_validator(mode="before")
    @classmethod
    def _no_bools_for_numbers(cls, data):
        # `slice: true` asks for the default slice and `slice: false` for none; other booleans are slips
        if isinstance(data, dict) and isinstance(data.get("slice"), bool):
            data = {**data, "slice": {} if data["slice"] else None}
        return Section._no_bools_for_numbers.__func__(cls, data)


class DiagnosticsSpec(Section):
    """The diagnostics recorder (:class:`trainlab.diagnostics.DiagnosticsRecorder`) of a run.

    ``every``: record after every ``every``-th epoch (0: only before training and at the end);
    ``probe``: probe batch size; ``spectra``: Marchenko–Pastur views of the weights;
    ``thresholds``: overrides of the verdicts' thresholds (see :func:`trainlab.diagnostics.diagnose`);
    ``curvature``: also record gᵀg, gᵀHg and gᵀHg/gᵀg on the probe batch (the ill-conditioning
    monitor, :func:`trainlab.diagnostics.landscape.gradient_curvature`); ``landscape``: line,
    slice and sharpness after training (:class:`LandscapeSpec`).
    Set the whole section to ``null`` to switch diagnostics off.
    """

    every: int = Field(default=1, ge=0)
    probe: int = Field(default=256, ge=1)
    spectra: bool = True
    thresholds: dict[str, float] = Field(default_factory=dict)
    curvature: bool = False
    landscape: LandscapeSpec | None = None

    @field_validator("thresholds")
    @classmethod
    def _known_thresholds(cls, v):
        from trainlab.diagnostics.verdicts import threshold_names
        bad = sorted(set(v) - set(threshold_names()))
        if bad:
            raise ValueError(f"unknown threshold {short(bad[0])}; allowed: {', '.join(threshold_names())}")
        return v


class EnsembleSpec(Section):
    """Train ``members`` models and average their predicted probabilities.

    Member ``i`` uses ``seeds[i]`` (default: the config's seed + i) and, optionally, the dotted
    overrides ``overrides[i]`` (e.g. ``{model.hidden: [128]}``); every member trains on the same
    data, so ``data.*`` cannot be overridden.
    """

    members: int = Field(default=3, ge=2)
    seeds: list[int] | None = None
    overrides: list[dict[str, Any]] = Field(default_factory=list)

    @model_validator(mode="after")
    def _check(self):
        if self.seeds is not None and len(self.seeds) != self.members:
            raise ValueError(f"@seeds@lists {len(self.seeds)} seeds for {self.members} members")
        if len(self.overrides) > self.members:
            raise ValueError(f"@overrides@lists {len(self.overrides)} overrides for {self.members} members")
        for i, o in enumerate(self.overrides):
            for key in o:
                if key.split(".")[0] in ("data", "ensemble", "seed", "name"):
                    raise ValueError(f"@overrides.{i}.{key}@members share the data, seed list and name; "
                                     "only model, init, loss, optimizer, training and callback fields may differ")
        return self


class Config(Section):
    """One experiment, fully described."""

    name: str = "run"
    seed: int = 0
    data: DataSpec = Field(default_factory=lambda: DataSpec(name="moons"))
    model: ModelSpec = Field(default_factory=ModelSpec)
    init: InitSpec = Field(default_factory=InitSpec)
    loss: LossSpec = Field(default_factory=LossSpec)
    optimizer: OptimizerSpec = Field(default_factory=lambda: OptimizerSpec(name="adam"))
    transforms: list[TransformSpec] = Field(default_factory=list)
    schedule: ScheduleSpec | None = None
    train: TrainSpec = Field(default_factory=TrainSpec)
    callbacks: list[CallbackSpec] = Field(default_factory=list)
    augment: list[AugmentSpec] = Field(default_factory=list)
    diagnostics: DiagnosticsSpec | None = Field(default_factory=DiagnosticsSpec)
    ensemble: EnsembleSpec | None = None

    @model_validator(mode="after")
    def _check_ensemble_members(self):
        if self.ensemble is not None:
            from trainlab.experiments.ensemble import member_configs
            try:
                member_configs(self)  # each member's config must validate too
            except ConfigError as err:
                raise ValueError(str(err)) from None
        return self

    def to_dict(self) -> dict:
        """Plain data (JSON/YAML-able) with every default filled in: the resolved config."""
        return self.model_dump(mode="json")

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


def join_problems(problems: list[str], title: str = "invalid config") -> str:
    """One line: ``title: a: ... | b: ...``, at most :data:`MAX_ERRORS` problems (then a count)."""
    shown = [yamlio.clip(p, 600) for p in problems[:MAX_ERRORS]]
    more = f" | and {len(problems) - MAX_ERRORS} more" if len(problems) > MAX_ERRORS else ""
    return f"{title}: " + " | ".join(shown) + more


def _model_in(annotation) -> type[BaseModel] | None:
    """The pydantic model a field's annotation holds (through Optional, unions, lists), or None."""
    todo = [annotation]
    while todo:
        a = todo.pop(0)
        if isinstance(a, type) and issubclass(a, BaseModel):
            return a
        todo.extend(typing.get_args(a))
    return None


def unknown_field(model: type[BaseModel], loc: tuple) -> str:
    """The message for an unknown key at ``loc`` under ``model``: the closest field name the mapping
    there has ("did you mean 'batch_size'?"), or to remove it."""
    import difflib

    cls: type[BaseModel] | None = model
    for part in loc[:-1]:
        if isinstance(part, int):  # an item of a list: the model is the list's item model already
            continue
        field = cls.model_fields.get(str(part)) if cls is not None else None
        cls = _model_in(field.annotation) if field is not None else None
    if cls is not None and loc:
        names = [*cls.model_fields, *(f.alias for f in cls.model_fields.values() if f.alias)]
        close = difflib.get_close_matches(str(loc[-1]), names, n=1, cutoff=0.7)
        if close:
            return f"unknown field; did you mean {close[0]!r}? (else remove it)"
    return "unknown field; remove it or check its spelling"


def _format_errors(err: ValidationError) -> str:
    problems = []
    for e in err.errors():
        path = ".".join(str(p) for p in e["loc"] if not str(p).startswith("function-after"))
        msg = e["msg"].removeprefix("Value error, ")
        if msg.startswith("@"):
            key, msg = msg[1:].split("@", 1)
            path = f"{path}.{key}" if path else key
        if e["type"] == "extra_forbidden":
            msg = unknown_field(Config, tuple(p for p in e["loc"] if not str(p).startswith("function-after")))
        if (e["type"] in ("literal_error", "greater_than_equal", "greater_than", "less_than_equal", "less_than")
                or e["type"].endswith("_parsing") or e["type"].endswith("_type")
                or e["type"].endswith("fractional_part")):
            msg += f" (got {short(e.get('input'))})"
        problems.append(f"{path or '(top level)'}: {' '.join(msg.split())}")
    return join_problems(problems)


def parse_config(data: dict | Config | None = None) -> Config:
    """Validate a dict (e.g. loaded YAML) into a :class:`Config`; ``None`` gives the defaults.

    Beyond the schema, every technique is built on a tiny dummy (the optimizer on one parameter,
    the model on the meta device, the data generator on a few samples) so that its constructor's
    own checks run now, and sizes that would not fit in memory are refused (see
    :func:`trainlab.experiments.validate.check_config`): nothing has been created when this fails.
    """
    if isinstance(data, Config):
        return data
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"a config must be a mapping of sections, got {type(data).__name__} {short(data)}")
    try:
        yamlio.check_expansion(data)
    except yamlio.YamlError as err:
        raise ConfigError(str(err)) from None
    try:
        cfg = Config.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_format_errors(err)) from None
    from trainlab.experiments.validate import check_config
    check_config(cfg)
    return cfg


def load_yaml(path: str | Path) -> dict:
    """A config file as a dict (YAML 1.2 numbers, no duplicate keys, bounded aliases; see :mod:`yamlio`).

    An empty file is an error: a config that says nothing is more likely a wrong path than intended.
    """
    try:
        data = yamlio.load_file(path)
    except yamlio.YamlError as err:
        raise ConfigError(str(err)) from None
    if data is None:
        raise ConfigError(f"config file {path} is empty; write at least one section (e.g. 'optimizer: "
                          "{name: adam}'), or run without a file for the quickstart")
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must be a mapping of sections (name:, data:, model:, ...), "
                          f"got {type(data).__name__} {short(data)}")
    return data


def on_this_machine(data: dict) -> tuple[dict, str | None]:
    """A saved run's config with a ``train.device`` this machine lacks replaced by its default, and a note.

    The device says where the arithmetic runs, not what the run is: a run trained on a GPU must still
    load, export and resume on a machine without one (a new config naming an absent device is still
    refused, by :func:`parse_config`).
    """
    from trainlab.experiments.validate import check_device
    from trainlab.train.loop import default_device

    train = data.get("train")
    device = train.get("device") if isinstance(train, dict) else None
    if not isinstance(device, str) or check_device(device) is None:
        return data, None
    here = default_device().type
    return ({**data, "train": {**train, "device": None}},
            f"train.device={device!r} is not on this machine; using {here}")


def load_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Read a YAML config, apply ``key.path=value`` overrides, validate."""
    return parse_config(apply_overrides(load_yaml(path), overrides))


def parse_value(raw: str, where: str = "--set") -> Any:
    """A ``--set`` value: YAML with the config-file rules; text that is not YAML stays a string."""
    try:
        value = yaml.load(raw, Loader=yamlio.ConfigLoader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.constructor.ConstructorError as err:  # a duplicate key: a rule, not a syntax slip
        raise ConfigError(f"{where}: {' '.join(str(err.problem).split())}") from None
    except (yaml.YAMLError, RecursionError):
        return raw
    try:
        yamlio.check_expansion(value, where)
    except yamlio.YamlError as err:
        raise ConfigError(str(err)) from None
    return value


def _technique_table(parents: tuple, key: str):
    """``(table, fixed arguments, keys the section itself owns)`` when ``parents + (key,)`` picks a
    technique (``optimizer.name``, ``callbacks.0.name``, ``model.kind``, ``schedule.then.name``);
    else ``None``: the top-level ``name`` is a label and picks nothing."""
    if not parents:
        return None
    head = parents[0]
    if key == "kind":
        return (catalog.MODELS, ("in_features", "out_features", "in_shape", "classes"), ("kind", *TRANSFER_KEYS)) \
            if parents == ("model",) else None
    if key != "name":
        return None
    if parents == ("data",):
        return catalog.DATASETS, ("seed",), ("name", "split")
    if parents == ("optimizer",):
        return catalog.OPTIMIZERS, ("params",), ("name",)
    if head == "schedule" and (len(parents) == 1 or parents[-1] == "then" or parents[-2:-1] == ("schedules",)):
        return catalog.SCHEDULES, ("optimizer",), ("name",)
    tables = {"transforms": catalog.TRANSFORMS, "callbacks": catalog.CALLBACKS, "augment": catalog.AUGMENTATIONS}
    if len(parents) == 2 and head in tables and isinstance(parents[1], int):
        return tables[head], (), ("name",)
    return None


def _switch_technique(node: dict, parents: tuple, key: str, value, dropped: list | None) -> None:
    """Setting a technique keeps the arguments the new one accepts and drops (and reports) the rest."""
    found = _technique_table(parents, key)
    old = node.get(key)
    if found is None or old is None or old == value:
        return
    table, fixed, own = found
    names = [value] if isinstance(value, str) else value if isinstance(value, list) else None
    if not names or not all(isinstance(n, str) and n in table for n in names):
        return  # an unknown name: validation names it; nothing to decide here
    accepted = None
    for n in names:
        params, var_kw = _signature_params(table[n])
        if not var_kw:
            ok = {p for p in params if p not in fixed}
            accepted = ok if accepted is None else accepted & ok
    if accepted is None:
        return
    gone = [k for k in node if k not in own and k not in accepted]
    for k in gone:
        del node[k]
    if gone and dropped is not None:
        where = ".".join(map(str, parents))
        kept = [k for k in node if k not in own]
        dropped.append(f"{where}.{key}={short(value)} dropped {', '.join(f'{where}.{k}' for k in gone)} "
                       f"(not accepted by {' / '.join(map(repr, names))})"
                       + (f"; kept {', '.join(kept)}" if kept else ""))


def apply_overrides(data: dict, overrides: list[str] | tuple[str, ...], *, dropped: list | None = None) -> dict:
    """Set dotted paths: ``optimizer.lr=0.01``, ``model.hidden=[64,32]``, ``callbacks.0.patience=3``.

    Values are parsed as YAML with the config-file rules (:func:`parse_value`). A list index may be
    at most the list's length (which appends). Setting a technique (``optimizer.name``,
    ``callbacks.0.name``, ``model.kind``, ...) to another one keeps the arguments the new one
    accepts and drops the others; each drop is described in ``dropped`` (when a list is given) so
    the command line can say so. The top-level ``name`` is a label: it changes nothing else.
    Raises :class:`ConfigError` naming the override. The input is not modified.
    """
    data = copy.deepcopy(data)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {short(item)} must look like key.path=value")
        key, raw = item.split("=", 1)
        key = key.strip()
        where = f"--set {yamlio.clip(key, 60)}"
        if len(raw) > yamlio.MAX_STRING or len(key) > 1000:
            raise ConfigError(f"{where}: a value of {len(raw):,} characters; a --set value is at most "
                              f"{yamlio.MAX_STRING:,} (put large values in the config file)")
        value = parse_value(raw, where)
        parts: list = key.split(".")
        if not all(parts) or len(parts) > yamlio.MAX_DEPTH:
            raise ConfigError(f"{where}: a path is names joined by dots, e.g. optimizer.lr or callbacks.0.patience")
        node: Any = data
        for i, part in enumerate(parts):
            here = ".".join(map(str, parts[:i + 1]))
            last = i == len(parts) - 1
            if isinstance(node, list):  # (a dict or a list: checked below before descending further)
                if not part.isdigit() or int(part) > len(node):
                    raise ConfigError(f"{where}: {'.'.join(map(str, parts[:i])) or '(top level)'} is a list of "
                                      f"{len(node)}; use an index 0..{len(node)} ({len(node)} appends), got {short(part)}")
                idx = parts[i] = int(part)
                if idx == len(node):
                    node.append(None if last else {})
                if last:
                    node[idx] = value
                    break
                if node[idx] is None:
                    node[idx] = [] if parts[i + 1].isdigit() else {}
                node = node[idx]
            elif isinstance(node, dict):
                if last:
                    _switch_technique(node, tuple(parts[:i]), part, value, dropped)
                    node[part] = value
                    break
                if node.get(part) is None:
                    node[part] = [] if parts[i + 1].isdigit() else {}
                node = node[part]
            if not isinstance(node, (dict, list)):  # more path to go, but this is a single value
                raise ConfigError(f"{where}: {here} is {short(node)}, a single value without fields; "
                                  f"set {here}=VALUE itself")
    return data
