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
import inspect
from pathlib import Path
from typing import Any, ClassVar, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from trainlab.experiments import catalog


class ConfigError(ValueError):
    """A config is invalid; the message lists each bad field by its dotted path and how to fix it."""


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


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


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
            raise ValueError(f"unknown name {self.name!r}; allowed: {', '.join(sorted(options)) or '(none yet)'}")
        check_kwargs(options[self.name], self.kwargs, self.fixed, what=repr(self.name))
        return self


class DataSpec(Spec):
    table: ClassVar[str] = "DATASETS"
    fixed: ClassVar[tuple[str, ...]] = ("seed",)
    split: list[float] | None = Field(
        default=None, description="train/val[/test] fractions for sets without their own split; "
                                  "default [0.7, 0.3] (the notes' 70/30)")


class ModelSpec(Section):
    """``kind`` picks the builder; the other keys are its arguments (sizes come from the data)."""

    model_config = ConfigDict(extra="allow")
    kind: str = "mlp"

    @property
    def kwargs(self) -> dict[str, Any]:
        return dict(self.model_extra or {})

    @model_validator(mode="after")
    def _check(self):
        if self.kind not in catalog.MODELS:
            raise ValueError(f"unknown model kind {self.kind!r}; allowed: {', '.join(sorted(catalog.MODELS))}")
        check_kwargs(catalog.MODELS[self.kind], self.kwargs,
                     ("in_features", "out_features", "in_shape", "classes"), what=f"model kind {self.kind!r}")
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
                raise ValueError(f"{field}: unknown initializer {value!r}; "
                                 f"allowed: {', '.join(sorted(table)) or '(none yet)'}")
        return self


class LossSpec(Section):
    name: Literal["mse", "bce", "cross_entropy"] | None = Field(
        default=None, description="default: cross_entropy for classification data, mse for regression")
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


class TrainSpec(Section):
    epochs: int = Field(default=20, ge=0)
    batch_size: int | Literal["full"] = Field(
        default=32, description="1 = stochastic GD, k = mini-batch GD, 'full' = batch GD")
    shuffle: bool = True
    drop_last: bool = False
    device: str | None = Field(default=None, description="cpu, cuda, cuda:1 ...; default: cuda if present")

    @field_validator("batch_size")
    @classmethod
    def _positive(cls, v):
        if isinstance(v, int) and v < 1:
            raise ValueError("batch_size must be >= 1 or 'full'")
        return v


class DiagnosticsSpec(Section):
    """The diagnostics recorder (:class:`trainlab.diagnostics.DiagnosticsRecorder`) of a run.

    ``every``: record after every ``every``-th epoch (0: only before training and at the end);
    ``probe``: probe batch size; ``spectra``: Marchenko–Pastur views of the weights;
    ``thresholds``: overrides of the verdicts' thresholds (see :func:`trainlab.diagnostics.diagnose`).
    Set the whole section to ``null`` to switch diagnostics off.
    """

    every: int = Field(default=1, ge=0)
    probe: int = Field(default=256, ge=1)
    spectra: bool = True
    thresholds: dict[str, float] = Field(default_factory=dict)

    @field_validator("thresholds")
    @classmethod
    def _known_thresholds(cls, v):
        from trainlab.diagnostics.verdicts import threshold_names
        bad = sorted(set(v) - set(threshold_names()))
        if bad:
            raise ValueError(f"unknown threshold {bad[0]!r}; allowed: {', '.join(threshold_names())}")
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


def _format_errors(err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        path = ".".join(str(p) for p in e["loc"] if not str(p).startswith("function-after"))
        msg = e["msg"].removeprefix("Value error, ")
        if msg.startswith("@"):
            key, msg = msg[1:].split("@", 1)
            path = f"{path}.{key}" if path else key
        if e["type"] == "extra_forbidden":
            msg = "unknown field; remove it or check its spelling"
        if e["type"] == "literal_error" or e["type"].endswith("_parsing") or e["type"].endswith("_type"):
            msg += f" (got {e.get('input')!r})"
        lines.append(f"  {path or '(top level)'}: {msg}")
    return "invalid config:\n" + "\n".join(lines)


def parse_config(data: dict | Config | None = None) -> Config:
    """Validate a dict (e.g. loaded YAML) into a :class:`Config`; ``None`` gives the defaults."""
    if isinstance(data, Config):
        return data
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"a config must be a mapping of sections, got {type(data).__name__}")
    try:
        return Config.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_format_errors(err)) from None


def load_yaml(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"{path} is not valid YAML: {err}") from None
    return data or {}


def load_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Read a YAML config, apply ``key.path=value`` overrides, validate."""
    return parse_config(apply_overrides(load_yaml(path), overrides))


def apply_overrides(data: dict, overrides: list[str] | tuple[str, ...]) -> dict:
    """Set dotted paths: ``optimizer.lr=0.01``, ``model.hidden=[64,32]``, ``callbacks.0.patience=3``.

    Values are parsed as YAML (numbers, lists, null, strings). Setting a section's ``name``
    (or the model's ``kind``) to a different technique replaces that section's other arguments.
    """
    data = copy.deepcopy(data)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like key.path=value")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError:
            value = raw
        parts = key.strip().split(".")
        node: Any = data
        for i, part in enumerate(parts[:-1]):
            nxt = parts[i + 1]
            if isinstance(node, list):
                idx = int(part)
                while len(node) <= idx:
                    node.append({})
                node = node[idx]
                continue
            if node.get(part) is None:
                node[part] = [] if nxt.isdigit() else {}
            node = node[part]
        last = parts[-1]
        if isinstance(node, list):
            idx = int(last)
            while len(node) <= idx:
                node.append({})
            node[idx] = value
        else:
            if last in ("name", "kind") and node.get(last) not in (None, value):
                for k in [k for k in node if k not in ("name", "kind", "split")]:
                    del node[k]
            node[last] = value
    return data
