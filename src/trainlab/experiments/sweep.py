"""Sweeps: one config file that stands for many runs (grid or random search, repeated seeds).

A sweep file is a normal config (see :mod:`trainlab.experiments.config`) in which fields may hold
several values, plus a ``sweep:`` section that says how to combine them::

    name: lr-batch
    data: {name: moons, n_samples: 1000, noise: 0.2}
    model: {kind: mlp, hidden: [64, 64]}
    optimizer: {name: sgd, momentum: 0.9, lr: [0.001, 0.01, 0.05, 0.1]}   # a plain list: 4 values
    train.batch_size: [16, 32, 128]                                       # a dotted key works too
    sweep: {method: grid, seeds: [0, 1, 2]}                               # 4 x 3 points x 3 seeds

What a field may hold (``path`` is the dotted path of the field):

``[a, b, c]``
    A plain list: the values of the field. In a grid every value is crossed with every other
    field's values; in random search one is drawn per sample.
``{grid: [a, b, c]}``
    Explicit values, always crossed with everything else (also in random search, so
    "for each optimizer, 20 random learning rates" is ``{grid: [...]}`` plus distributions).
``{choice: [a, b, c]}``
    Like a plain list (crossed in a grid, drawn uniformly in random search).
``{uniform: [lo, hi]}``, ``{loguniform: [lo, hi]}``, ``{int: [lo, hi]}``
    Distributions for random search: uniform on [lo, hi], uniform in log space (lo > 0; for
    learning rates and weight decays), a uniform integer in lo..hi inclusive. A grid refuses them.

A marker is a mapping with exactly one of these keys; any other mapping is config.

**Fields that hold a list by nature.** ``model.hidden: [64, 32]`` and ``data.split: [0.7, 0.3]``
are one value each, not two. The rule: a field holds a list by nature when its declaration says so
(the config schema: ``data.split``, ``transforms``, ``callbacks``, ``augment``; for the arguments of
an allow-listed technique, a list/tuple/Sequence annotation or a list/tuple default: ``hidden``,
Adam's ``betas``). For such a field a plain list is its value, and a list *of lists* is a sweep:
``model.hidden: [[64], [64, 64], [128, 64, 32]]``. For every other field a plain list is a sweep,
and an item may itself be a list: ``model.activation: [relu, [relu, tanh]]`` tries one activation
everywhere and then one per layer (a single per-layer choice is ``[[relu, tanh]]``). When in doubt,
``{grid: [...]}`` is never ambiguous, and ``trainlab sweep FILE --dry-run`` prints every run.

**Conditional sweeps.** A swept value may contain sweeps itself; they are expanded for that value
only::

    optimizer: [{name: sgd, lr: [0.01, 0.1], momentum: 0.9}, {name: adam, lr: 0.001}]   # 3 runs

The ``sweep:`` section (:class:`SweepSpec`): ``method`` (grid | random), ``samples`` (random
search: draws per combination of ``{grid: ...}`` values), ``seeds`` (list) or ``repeats`` (n seeds
counting up from the config's seed): every point is trained once per seed, and reports average
over them, ``sample_seed`` (the random-search RNG, so the same file gives the same runs), ``metric``
and ``mode`` (what reports rank by; default val_accuracy/max, or val_loss/min for regression),
``batched`` and ``workers`` (how the local executor runs them), ``write_runs`` (also write a full
run folder per run), ``max_runs`` (a guard against accidentally huge grids), ``executor`` (``local``,
or ``ray``: every task a Ray task, see :mod:`trainlab.experiments.executors.ray`) and ``address``
(the Ray cluster: ``auto`` or ``HOST:PORT``; none starts a local Ray instance), ``gpus`` (the GPUs
each Ray task asks for).

Every expanded config is validated with :func:`~trainlab.experiments.config.parse_config` before
anything runs; an error names the sweep point, its values and the field.
"""
from __future__ import annotations

import copy
import hashlib
import inspect
import itertools
import math
import random
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal, Sequence

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from trainlab.experiments import catalog
from trainlab.experiments.config import Config, ConfigError, apply_overrides, load_yaml, parse_config, unknown_field
from trainlab.experiments.store import canonical_json, config_hash

MARKERS = ("grid", "choice", "uniform", "loguniform", "int")
DISTRIBUTIONS = ("uniform", "loguniform", "int")
# execution settings: they change how a sweep runs, not what it computes (not part of its id)
_EXECUTION_FIELDS = ("batched", "workers", "write_runs", "max_runs", "executor", "address", "gpus")


class SweepError(ConfigError):
    """A sweep file is invalid; the message names the field (and the sweep point) at fault."""


class SweepSpec(BaseModel):
    """The ``sweep:`` section of a sweep file."""

    model_config = ConfigDict(extra="forbid")
    method: Literal["grid", "random", "optuna"] = "grid"
    samples: int | None = Field(default=None, ge=1, description="random search: draws (per {grid:} combination); "
                                "optuna: trials")
    seeds: list[int] | None = Field(default=None, min_length=1, description="train every point once per seed")
    repeats: int | None = Field(default=None, ge=1, description="seeds = seed, seed+1, ..., seed+repeats-1")
    sample_seed: int = Field(default=0, description="seed of the random-search draws")
    metric: str | None = Field(default=None, description="what reports rank by (default val_accuracy or val_loss)")
    mode: Literal["min", "max"] | None = None
    batched: bool = Field(default=True, description="train runs sharing architecture and data as one model")
    workers: int | None = Field(default=None, ge=0, description="worker processes (0: in this process)")
    write_runs: bool = Field(default=False, description="also write a run folder per run")
    max_runs: int = Field(default=10_000, ge=1)
    # method: optuna (trainlab.experiments.search); None elsewhere, so grid and random ids stay as they were
    # a name, or a mapping {name: ..., <argument of Optuna's class>: value} (checked in search.plan_search)
    sampler: str | dict | None = Field(default=None, description="optuna: how trials are proposed: tpe "
                                       "(default), random, cmaes")
    pruner: str | dict | None = Field(default=None, description="optuna: which trials stop early: none "
                                      "(default), median, hyperband")
    seed: int | None = Field(default=None, description="optuna: the sampler's seed (default sample_seed)")
    executor: Literal["local", "ray"] = Field(default="local", description="where the runs train: local "
                                              "worker processes, or Ray tasks (pip install 'trainlab[ray]')")
    address: str | None = Field(default=None, description="ray: the cluster (auto or HOST:PORT of its head); "
                                                          "none: a new local Ray instance")
    gpus: float | None = Field(default=None, ge=0, description="ray: GPUs each task asks for (default: 1 when "
                                                               "train.device names cuda, else 0)")

    @model_validator(mode="after")
    def _check(self):
        # "@field@" puts the field into the error's path (as in config.py)
        if self.method == "random" and self.samples is None:
            raise ValueError("@samples@method random needs samples: N (how many configurations to draw)")
        if self.method == "grid" and self.samples is not None:
            raise ValueError("@samples@applies to method: random; a grid runs every combination")
        if self.method == "optuna":
            for key, allowed in (("sampler", SAMPLERS), ("pruner", PRUNERS)):
                _check_named(key, getattr(self, key), allowed)
            if self.samples is None:
                raise ValueError("@samples@method optuna needs samples: N (how many trials the search runs)")
            if self.seeds is not None or self.repeats is not None:
                key = "seeds" if self.seeds is not None else "repeats"
                raise ValueError(f"@{key}@an optuna trial is one run; set the training seed in the config "
                                 "(seed: S) and remove sweep.seeds/repeats")
        else:
            for key in ("sampler", "pruner", "seed"):
                if getattr(self, key) is not None:
                    raise ValueError(f"@{key}@applies to method: optuna"
                                     + ("; random search draws with sample_seed" if key == "seed" else
                                        "; set method: optuna or remove it"))
        if self.seeds is not None and self.repeats is not None:
            raise ValueError("@repeats@give seeds (a list) or repeats (a count), not both")
        if self.address is not None:
            from trainlab.experiments.executors.ray import address_problem
            if self.executor != "ray":
                raise ValueError(f"@address@{self.address!r} applies to executor: ray; add executor: ray or "
                                 "remove the address")
            problem = address_problem(self.address)
            if problem is not None:
                raise ValueError(f"@address@{self.address!r} {problem}")
        if self.gpus is not None and self.executor != "ray":
            raise ValueError("@gpus@applies to executor: ray (the GPUs each Ray task asks for); add executor: ray "
                             "or remove it")
        return self


SAMPLERS = ("tpe", "random", "cmaes")
PRUNERS = ("none", "median", "hyperband")


def _check_named(key: str, value, allowed: Sequence[str]) -> None:
    """``sweep.sampler`` / ``sweep.pruner``: a name of ``allowed``, or ``{name: ..., arg: scalar, ...}``."""
    if value is None:
        return
    name = value.get("name") if isinstance(value, dict) else value
    if not isinstance(name, str):
        raise ValueError(f"@{key}@a mapping needs name: {' | '.join(allowed)} (and the arguments to change)")
    if name not in allowed:
        raise ValueError(f"@{key}@unknown {key} {name!r}; one of {', '.join(allowed)}")
    for arg, v in (value.items() if isinstance(value, dict) else ()):
        if arg == "seed":
            raise ValueError(f"@{key}.seed@the sampler's seed is sweep.seed")
        if not (v is None or isinstance(v, (bool, int, float, str))):
            raise ValueError(f"@{key}.{arg}@must be a number, a string or a boolean, got {v!r}")


@dataclass(frozen=True)
class Axis:
    """One swept field: where it is, how it is swept, and its values or bounds."""

    path: tuple
    kind: str                      # "list" (a plain list) or one of MARKERS
    values: tuple = ()             # list, grid, choice
    low: float | None = None       # uniform, loguniform, int
    high: float | None = None

    @property
    def name(self) -> str:
        return dotted(self.path)

    def draw(self, rng: random.Random):
        if self.kind in ("list", "grid", "choice"):
            return copy.deepcopy(self.values[rng.randrange(len(self.values))])
        if self.kind == "uniform":
            return rng.uniform(self.low, self.high)
        if self.kind == "loguniform":
            return math.exp(rng.uniform(math.log(self.low), math.log(self.high)))
        return rng.randint(int(self.low), int(self.high))


@dataclass
class Point:
    """One run of a sweep: its position, its swept values, the validated config, its hash."""

    index: int
    values: dict[str, Any]
    config: Config
    hash: str

    def label(self, skip: Sequence[str] = ()) -> str:
        """``optimizer.lr=0.01, seed=1``: the swept values (a swept section without its swept keys)."""
        return format_values(self.values, skip) or "(base)"


@dataclass
class SweepPlan:
    """A sweep file expanded: the spec, the axes, every point (deduplicated by config hash)."""

    id: str
    name: str
    spec: SweepSpec
    template: dict
    points: list[Point]
    fields: list[str] = field(default_factory=list)   # swept paths in order of appearance, seed last
    duplicates: int = 0

    @property
    def metric(self) -> tuple[str, str]:
        """``(metric, mode)`` reports rank by."""
        return resolve_metric(self.spec, self.points[0].config if self.points else None)

    def summary(self) -> str:
        seeds = sorted({p.config.seed for p in self.points})
        parts = [f"sweep {self.id}: {len(self.points)} runs ({self.spec.method}"]
        parts.append(f", {len(seeds)} seed{'s' if len(seeds) != 1 else ''}" if len(seeds) > 1 else "")
        parts.append(f", {self.duplicates} duplicate point(s) merged)" if self.duplicates else ")")
        if self.fields:
            parts.append(f" over {', '.join(self.fields)}")
        return "".join(parts)


def resolve_metric(spec: SweepSpec, cfg: Config | None) -> tuple[str, str]:
    if spec.metric is not None:
        metric = spec.metric
    elif cfg is not None and cfg.loss.name == "mse":
        metric = "val_loss"
    else:
        metric = "val_accuracy"
    mode = spec.mode or ("max" if re.search(r"acc|auc|f1|precision|recall|score", metric) else "min")
    return metric, mode


def format_values(values: dict, skip: Sequence[str] = ()) -> str:
    parts = []
    for k, v in values.items():
        if k in skip:
            continue
        if isinstance(v, dict):  # keys swept on their own are shown on their own
            v = {kk: vv for kk, vv in v.items() if f"{k}.{kk}" not in values}
        parts.append(f"{k}={format_value(v)}")
    return ", ".join(parts)


def dotted(path: Sequence) -> str:
    return ".".join(str(p) for p in path)


def format_value(v) -> str:
    """A short, readable rendering of a swept value (4 significant digits for floats)."""
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k}: {format_value(x)}" for k, x in v.items()) + "}"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(format_value(x) for x in v) + "]"
    return str(v)


# ---------------------------------------------------------------------------------------------
# the schema: which fields hold a list by nature

_LIST_SECTIONS = {"transforms": "TRANSFORMS", "callbacks": "CALLBACKS", "augment": "AUGMENTATIONS"}
_SPEC_SECTIONS = {"data": ("DATASETS", "name", None), "model": ("MODELS", "kind", "mlp"),
                  "optimizer": ("OPTIMIZERS", "name", None), "schedule": ("SCHEDULES", "name", None)}
_LISTY = re.compile(r"\b(list|tuple|List|Tuple|Sequence|Iterable)\b")


def _param_is_listy(fn, arg: str) -> bool:
    try:
        target = fn.__init__ if inspect.isclass(fn) else fn
        param = inspect.signature(target).parameters.get(arg)
    except (TypeError, ValueError):
        return False
    if param is None:
        return False
    if isinstance(param.default, (list, tuple)):
        return True
    ann = param.annotation
    if ann is inspect.Parameter.empty:
        return False
    return bool(_LISTY.search(ann if isinstance(ann, str) else str(ann)))


def holds_list(path: tuple, root: dict) -> bool:
    """Whether the field at ``path`` holds a list by nature (see the module docstring)."""
    if len(path) == 1:
        return path[0] in _LIST_SECTIONS
    if path == ("data", "split"):
        return True
    section = path[0]
    if section in _SPEC_SECTIONS and len(path) == 2:
        table, key, default = _SPEC_SECTIONS[section]
        node = root.get(section)
        name = node.get(key, default) if isinstance(node, dict) else default
        fn = getattr(catalog, table).get(name) if isinstance(name, str) else None
        return fn is not None and _param_is_listy(fn, str(path[1]))
    if section in _LIST_SECTIONS and len(path) == 3 and isinstance(path[1], int):
        items = root.get(section)
        item = items[path[1]] if isinstance(items, list) and path[1] < len(items) else None
        name = item.get("name") if isinstance(item, dict) else None
        fn = getattr(catalog, _LIST_SECTIONS[section]).get(name) if isinstance(name, str) else None
        return fn is not None and _param_is_listy(fn, str(path[2]))
    return False


# ---------------------------------------------------------------------------------------------
# finding and checking the axes


def _marker(node) -> str | None:
    if isinstance(node, dict) and len(node) == 1:
        key = next(iter(node))
        if key in MARKERS:
            return key
    return None


def _make_axis(path: tuple, kind: str, arg) -> Axis:
    where = dotted(path)
    if kind in ("grid", "choice"):
        if not isinstance(arg, list) or not arg:
            raise SweepError(f"{where}: {{{kind}: ...}} needs a non-empty list of values, got {arg!r}")
        return Axis(path, kind, tuple(arg))
    if not (isinstance(arg, list) and len(arg) == 2 and all(isinstance(x, (int, float)) and not isinstance(x, bool)
                                                           for x in arg)):
        raise SweepError(f"{where}: {{{kind}: [low, high]}} needs two numbers, got {arg!r}")
    low, high = arg
    if not low <= high:
        raise SweepError(f"{where}: {{{kind}: [{low}, {high}]}} needs low <= high")
    if kind == "loguniform" and low <= 0:
        raise SweepError(f"{where}: {{loguniform: [{low}, {high}]}} needs low > 0 (it draws log(value))")
    if kind == "int" and not (float(low).is_integer() and float(high).is_integer()):
        raise SweepError(f"{where}: {{int: [{low}, {high}]}} needs integer bounds")
    return Axis(path, kind, (), float(low) if kind != "int" else int(low), float(high) if kind != "int" else int(high))


def find_axes(node, root: dict, path: tuple = (), resolved: frozenset = frozenset()) -> list[Axis]:
    """Every swept field under ``node`` in document order (not looking inside swept values)."""
    kind = _marker(node)
    if kind is not None:
        return [_make_axis(path, kind, node[kind])]
    if isinstance(node, dict):
        out = []
        for key, value in node.items():
            out += find_axes(value, root, (*path, key), resolved)
        return out
    if isinstance(node, list):
        if path and path not in resolved:
            if holds_list(path, root):
                if node and all(isinstance(x, list) for x in node):
                    return [Axis(path, "list", tuple(node))]
            else:
                if not node:
                    raise SweepError(f"{dotted(path)}: an empty list sweeps over nothing; give at least one value")
                return [Axis(path, "list", tuple(node))]
        out = []
        for i, item in enumerate(node):  # a list value: look for markers / sections inside its items
            if isinstance(item, (dict, list)):
                out += find_axes(item, root, (*path, i), resolved)
        return out
    return []


def _get(data, path: tuple):
    node = data
    for part in path:
        node = node[part]
    return copy.deepcopy(node)


def _set(data, path: tuple, value) -> None:
    node = data
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value


def expand_dotted_keys(data: dict) -> dict:
    """Top-level keys like ``optimizer.lr`` are set by path (after the nested sections)."""
    out = {k: copy.deepcopy(v) for k, v in data.items() if "." not in str(k)}
    for key, value in data.items():
        if "." not in str(key):
            continue
        parts = key.split(".")
        node = out
        for i, part in enumerate(parts[:-1]):
            nxt = parts[i + 1]
            if isinstance(node, list):
                if not part.isdigit() or int(part) >= len(node):
                    raise SweepError(f"{key}: {'.'.join(parts[:i + 1])} is a list; index it with 0..{len(node) - 1}")
                node = node[int(part)]
                continue
            if not isinstance(node, dict):
                raise SweepError(f"{key}: {'.'.join(parts[:i])} is not a section")
            if node.get(part) is None:
                node[part] = [] if nxt.isdigit() else {}
            node = node[part]
        last = parts[-1]
        if isinstance(node, list):
            if not last.isdigit() or int(last) >= len(node):
                raise SweepError(f"{key}: index {last!r} is out of range")
            node[int(last)] = copy.deepcopy(value)
        elif isinstance(node, dict):
            node[last] = copy.deepcopy(value)
        else:
            raise SweepError(f"{key}: {'.'.join(parts[:-1])} is not a section")
    return out


# ---------------------------------------------------------------------------------------------
# expansion


def _resolve(template: dict, spec: SweepSpec, rng: random.Random, resolved: frozenset = frozenset(),
             assigned: dict | None = None) -> list[tuple[dict, dict]]:
    """All ``(config dict, {path: value})`` pairs the template stands for (one draw in random mode)."""
    assigned = dict(assigned or {})
    axes = find_axes(template, template, (), resolved)
    if not axes:  # record what each swept field finally holds (a swept section may hold sweeps)
        return [(template, {k: _get(template, path) for k, path in assigned.items()})]
    if spec.method == "grid":
        bad = [a for a in axes if a.kind in DISTRIBUTIONS]
        if bad:
            raise SweepError(f"{bad[0].name}: {{{bad[0].kind}: ...}} is a distribution; set sweep.method: random "
                             "(with sweep.samples) or list the values")
        crossed, drawn = axes, []
    else:
        crossed = [a for a in axes if a.kind == "grid"]
        drawn = [a for a in axes if a.kind != "grid"]
    out = []
    for combo in itertools.product(*(a.values for a in crossed)):
        data = copy.deepcopy(template)
        values = dict(assigned)
        for axis, value in zip(crossed, combo):
            _set(data, axis.path, copy.deepcopy(value))
            values[axis.name] = axis.path
        for axis in drawn:
            _set(data, axis.path, axis.draw(rng))
            values[axis.name] = axis.path
        done = resolved | {a.path for a in axes}
        out += _resolve(data, spec, rng, frozenset(done), values)
    return out


def expand_sweep(data: dict, overrides: Sequence[str] = (), *, dropped: list | None = None) -> SweepPlan:
    """Expand a sweep file (a dict, e.g. loaded YAML) into validated, deduplicated points.

    ``overrides`` are ``path=value`` strings applied first (as ``trainlab sweep --set``); a list
    value there adds a sweep, e.g. ``optimizer.lr=[0.01,0.1]``. Arguments a technique switch drops
    are described in ``dropped`` (see :func:`~trainlab.experiments.config.apply_overrides`).
    """
    if not isinstance(data, dict):
        raise SweepError(f"a sweep file must be a mapping of sections, got {type(data).__name__}")
    data = apply_overrides(data, list(overrides), dropped=dropped)
    raw_spec = data.pop("sweep", None) or {}
    if not isinstance(raw_spec, dict):
        raise SweepError(f"sweep: must be a mapping (method, samples, seeds, ...), got {raw_spec!r}")
    try:
        spec = SweepSpec.model_validate(raw_spec)
    except ValidationError as err:
        lines = []
        for e in err.errors():
            where = ".".join(["sweep", *(str(p) for p in e["loc"])])
            msg = unknown_field(SweepSpec, tuple(e["loc"])) if e["type"] == "extra_forbidden" else \
                e["msg"].removeprefix("Value error, ")
            if msg.startswith("@"):
                key, msg = msg[1:].split("@", 1)
                where = f"{where}.{key}"
            if e["type"] == "literal_error":  # say what was given, not only what is allowed
                msg = f"{msg}, got {e['input']!r}"
            lines.append(f"  {where}: {msg}")
        raise SweepError("invalid sweep section:\n" + "\n".join(lines)) from None
    template = expand_dotted_keys(data)
    name = str(template.get("name", "sweep"))
    if spec.seeds is not None or spec.repeats is not None:
        if any(a.path == ("seed",) for a in find_axes(template, template)):
            raise SweepError("seed: swept twice (in the config and by sweep.seeds/repeats); keep one")
        base = int(template.get("seed", 0)) if not isinstance(template.get("seed", 0), (list, dict)) else 0
        seeds = list(spec.seeds) if spec.seeds is not None else [base + i for i in range(spec.repeats)]
    else:
        seeds = None
    if spec.method == "optuna":  # trials are proposed while the search runs, not expanded here
        from trainlab.experiments.search import plan_search
        return plan_search(template, spec, name, _sweep_id(name, template, spec))
    rng = random.Random(spec.sample_seed)
    pairs = []
    for _ in range(spec.samples if spec.method == "random" else 1):
        pairs += _resolve(template, spec, rng)
    if seeds is not None:
        seeded = []
        for cfg_data, values in pairs:
            for s in seeds:
                d = copy.deepcopy(cfg_data)
                d["seed"] = s
                seeded.append((d, {**values, "seed": s}))
        pairs = seeded
    if len(pairs) > spec.max_runs:
        raise SweepError(f"the sweep expands to {len(pairs)} runs, more than sweep.max_runs={spec.max_runs}; "
                         "use method: random with samples, or raise max_runs")
    fields: list[str] = []
    for _, values in pairs:
        fields.extend(k for k in values if k not in fields)
    if "seed" in fields:  # seeds are repeats: list them last
        fields.remove("seed")
        fields.append("seed")
    points, seen, dupes = [], set(), 0
    for i, (cfg_data, values) in enumerate(pairs):
        cfg_data["name"] = f"{name}-{len(points):03d}"
        try:
            cfg = parse_config(cfg_data)
        except ConfigError as err:
            label = format_values(values) or "(no swept values)"
            raise SweepError(f"sweep point {i + 1} of {len(pairs)} ({label}): {err}") from None
        h = config_hash(cfg.to_dict())
        if h in seen:
            dupes += 1
            continue
        seen.add(h)
        points.append(Point(len(points), values, cfg, h))
    return SweepPlan(_sweep_id(name, template, spec), name, spec, template, points, fields, dupes)


def _sweep_id(name: str, template: dict, spec: SweepSpec) -> str:
    """``<name>-<hash of the template and the spec>``, without the execution settings.

    The optuna fields are left out while unset (grid and random ids stay what they were); an
    optuna search leaves out ``samples`` too, so raising it continues the same study.
    """
    exclude = set(_EXECUTION_FIELDS) | {k for k in ("sampler", "pruner", "seed") if getattr(spec, k) is None}
    if spec.method == "optuna":
        exclude.add("samples")
    ident = {"template": template, "spec": spec.model_dump(exclude=exclude)}
    return f"{_slug(name)}-{hashlib.sha256(canonical_json(ident).encode()).hexdigest()[:8]}"


def load_sweep(path: str | Path, overrides: Sequence[str] = (), *, dropped: list | None = None) -> SweepPlan:
    """Read a YAML sweep file, apply ``path=value`` overrides, expand and validate it."""
    return expand_sweep(load_yaml(path), overrides, dropped=dropped)


def _slug(name: str) -> str:
    """``name`` as part of one folder or file name; the run folders' rule (``runner.slug``): a name
    such as ``../../x`` must not give a hidden ``..-..-x`` folder."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", str(name)).strip("-.")[:80].rstrip("-.") or "sweep"


# ---------------------------------------------------------------------------------------------
# running a sweep


class SweepInterrupted(KeyboardInterrupt):
    """The sweep was interrupted; finished runs are in the store and a rerun resumes after them."""

    def __init__(self, sweep_id: str, done: int, total: int, command: str | None = None):
        self.sweep_id, self.done, self.total = sweep_id, done, total
        how = f"resume with: {command}" if command else "run the same command again to resume"
        super().__init__(f"sweep {sweep_id} interrupted: {done} of {total} runs done; {how} "
                         "(finished runs are not rerun)")


@dataclass
class SweepResult:
    """What :func:`run_sweep` did: which run each point maps to, and what ran now."""

    plan: SweepPlan
    store_path: Path
    out_dir: Path
    run_ids: list[str]          # per point, in point order
    ran: int = 0                # runs trained now
    skipped: int = 0            # runs found finished (or failed) in the store
    failed: int = 0             # runs that failed now
    report: Path | None = None
    wall_time: float = 0.0

    @property
    def id(self) -> str:
        return self.plan.id


def run_id_for(plan: SweepPlan, point: Point) -> str:
    """A run's id in the store: the sweep name and the start of its config hash (stable on resume)."""
    return f"{_slug(plan.name)}-{point.hash[:10]}"


class _Progress:
    """Overall progress: a tqdm bar on a terminal, else one line per finished run."""

    def __init__(self, total: int, done: int, enabled: bool, stream=None):
        self.total, self.done, self.enabled = total, done, enabled
        self.stream = stream if stream is not None else sys.stderr
        self.bar = None
        if enabled and getattr(self.stream, "isatty", lambda: False)():
            from tqdm.auto import tqdm
            self.bar = tqdm(total=total, initial=done, file=self.stream, desc="sweep", unit="run")

    def update(self, text: str) -> None:
        self.done += 1
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix_str(text[:60])
        else:
            width = len(str(self.total))
            print(f"[{self.done:>{width}}/{self.total}] {text}", file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def run_sweep(sweep: SweepPlan | dict, *, store=None, out_dir: str | Path | None = None, executor=None,
              rerun: bool = False, retry_failed: bool = False, report: bool = True, verbose: bool = True,
              on_outcome: Callable | None = None) -> SweepResult:
    """Run every point of a sweep that the store does not hold yet, record it, write the report.

    Args:
        sweep: a :class:`SweepPlan` or a sweep file's dict (expanded with :func:`expand_sweep`).
        store: a :class:`~trainlab.experiments.store.Store` or a path (default: the default store).
        out_dir: the sweep's folder (report, figures, run folders with ``write_runs``); default
            ``<store folder>/sweeps/<sweep id>``.
        executor: an :class:`~trainlab.experiments.executor.Executor` (default: a
            :class:`~trainlab.experiments.executor.LocalExecutor`, or with ``sweep.executor: ray`` a
            :class:`~trainlab.experiments.executors.ray.RayExecutor`, configured by the sweep section).
        rerun: train every point again, even those the store has finished.
        retry_failed: train again the points whose run failed (a diverged loss fails the same way
            again, so failed runs count as done by default).
        report: write ``report.html`` (with its figures) into ``out_dir`` at the end.
        verbose: print the plan and overall progress to stderr.
        on_outcome: called with each :class:`~trainlab.experiments.executor.RunOutcome` once stored.

    A point whose config hash (see :func:`~trainlab.experiments.store.config_hash`) has a finished
    run in the store is not trained again, whichever sweep or ``trainlab run`` produced it.

    Raises:
        SweepInterrupted: on Ctrl-C (a ``KeyboardInterrupt``), after cancelling the runs in flight
            and marking them ``interrupted`` in the store.
    """
    from trainlab.experiments.executor import RunSpec
    from trainlab.experiments.store import Store

    t0 = time.perf_counter()
    plan = sweep if isinstance(sweep, SweepPlan) else expand_sweep(sweep)
    if executor is None:  # before the store is touched: a missing Ray fails here
        from trainlab.experiments.executors import make_executor
        executor = make_executor(plan.spec.executor, address=plan.spec.address, workers=plan.spec.workers,
                                 batched=plan.spec.batched, gpus=plan.spec.gpus,
                                 keep_workers=plan.spec.method == "optuna")
    own_store = not isinstance(store, Store)
    db = Store(store) if own_store else store
    try:
        out = Path(out_dir) if out_dir is not None else db.path.parent / "sweeps" / plan.id
        if plan.spec.method == "optuna":  # points proposed as it runs: trainlab.experiments.search
            from trainlab.experiments.search import run_search
            return run_search(plan, db, out, executor, rerun=rerun, retry_failed=retry_failed, report=report,
                              verbose=verbose, on_outcome=on_outcome)
        done_status = ("finished",) if retry_failed else ("finished", "failed")
        run_ids, pending = [], []
        for point in plan.points:
            found = None if rerun else db.find_by_hash(point.hash, status=done_status)
            if found is not None:
                run_ids.append(found.id)
                continue
            rid = run_id_for(plan, point)
            run_ids.append(rid)
            run_dir = str(out / "runs" / rid) if plan.spec.write_runs else None
            pending.append((point, RunSpec(rid, point.config.to_dict(), run_dir, store=str(db.path.resolve()))))
        spec_record = {"template": plan.template, "sweep": plan.spec.model_dump(mode="json"), "fields": plan.fields}
        db.add_sweep(plan.id, plan.name, spec_record,
                     [(p.index, rid, p.values) for p, rid in zip(plan.points, run_ids)], out)
        for point, spec in pending:
            db.add_run(spec.run_id, spec.config, status="queued", run_dir=spec.run_dir,
                       info={"sweep": plan.id, "point": point.index})
        result = SweepResult(plan, db.path, out, run_ids, skipped=len(plan.points) - len(pending))
        if verbose:
            print(plan.summary(), file=sys.stderr)
            if result.skipped:
                print(f"{result.skipped} run(s) already in {db.path}: not rerun", file=sys.stderr)
        labels = {spec.run_id: p.label() for p, spec in pending}
        metric, _ = plan.metric
        progress = _Progress(len(plan.points), result.skipped, verbose)
        remaining = {spec.run_id for _, spec in pending}
        try:
            if pending:
                with executor:
                    executor.submit([spec for _, spec in pending])
                    for o in executor.results():
                        db.finish_run(o.run_id, history=o.history, final=o.final, wall_time=o.wall_time,
                                      status=o.status, error=o.error, diagnostics=o.diagnostics, info=o.info,
                                      run_dir=o.run_dir)
                        remaining.discard(o.run_id)
                        result.ran += 1
                        result.failed += o.status == "failed"
                        value = o.final.get(metric)
                        how = f"batched x{o.info['batched']}" if o.info.get("batched", 1) > 1 else "alone"
                        shown = (f"{metric} {value:.4f}" if isinstance(value, (int, float)) else
                                 f"FAILED: {(o.error or '').splitlines()[0][:80]}")
                        progress.update(f"{labels.get(o.run_id, o.run_id)}  {shown}  ({how}, {o.wall_time:.2f} s)")
                        if on_outcome is not None:
                            on_outcome(o)
        except KeyboardInterrupt:
            previous = _exit_on_second_interrupt(executor)
            try:
                executor.shutdown(cancel=True)
                if remaining:  # the runs in flight; those never started stay queued
                    db.set_status(sorted(remaining), "interrupted", error="KeyboardInterrupt: the sweep was "
                                  "interrupted", only=getattr(executor, "interrupt_from", ("running",)))
                progress.close()
            finally:
                _restore_sigint(previous)
            raise SweepInterrupted(plan.id, len(plan.points) - len(remaining), len(plan.points)) from None
        progress.close()
        if remaining:  # an executor that lost runs: say so rather than pretend
            db.set_status(sorted(remaining), "failed", error="the executor returned no outcome for this run")
            result.failed += len(remaining)
        if report:
            result.report = write_sweep_report(db, plan.id, out)
            if verbose:
                print(f"report: {result.report}", file=sys.stderr)
        result.wall_time = time.perf_counter() - t0
        return result
    finally:
        if own_store:
            db.close()


def _exit_on_second_interrupt(executor):
    """Until restored, a second Ctrl-C kills the workers and exits with 130 at once.

    Cleaning up after the first one (terminating workers, writing the store) takes a moment;
    a user who presses Ctrl-C again wants out now, not a traceback from inside that cleanup.
    """
    import os
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return None
    pids = list(getattr(executor, "worker_pids", lambda: [])())

    def now(signum, frame):
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        os._exit(130)

    return signal.signal(signal.SIGINT, now)


def _second_interrupt_exits():
    """For the command line: the first Ctrl-C interrupts (cleanly), any later one exits with 130 at once.

    Returns the handler it replaced (for :func:`_restore_sigint`).
    """
    import os
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return None
    pressed = []

    def handler(signum, frame):
        if pressed:
            os._exit(130)
        pressed.append(signum)
        raise KeyboardInterrupt

    return signal.signal(signal.SIGINT, handler)


def _restore_sigint(previous) -> None:
    import signal

    if previous is not None:
        signal.signal(signal.SIGINT, previous)


# ---------------------------------------------------------------------------------------------
# the sweep report


@dataclass
class _Row:
    idx: int
    run_id: str
    values: dict
    status: str
    history: list[dict]
    final: dict
    wall_time: float | None
    error: str | None
    info: dict = field(default_factory=dict)


def _metric_series(history: list[dict], metric: str) -> list[float]:
    return [r[metric] for r in history if isinstance(r.get(metric), (int, float))]


def _final_value(row: _Row, metric: str) -> float:
    v = row.final.get(metric)
    if isinstance(v, (int, float)) and v is not None:
        return float(v)
    series = _metric_series(row.history, metric)
    return series[-1] if series else math.nan


def _best(series: list[float], mode: str) -> tuple[float, int]:
    """Best value and its epoch (1-based), ignoring NaN."""
    pairs = [(v, i) for i, v in enumerate(series) if not math.isnan(v)]
    if not pairs:
        return math.nan, 0
    v, i = (max if mode == "max" else min)(pairs, key=lambda p: p[0])
    return v, i + 1


def _mean_std(xs: list[float]) -> tuple[float, float]:
    xs = [x for x in xs if not math.isnan(x)]
    if not xs:
        return math.nan, math.nan
    mean = sum(xs) / len(xs)
    var = sum((x - mean) ** 2 for x in xs) / (len(xs) - 1) if len(xs) > 1 else 0.0
    return mean, math.sqrt(var)


def sweep_table(store, sweep_id: str) -> dict:
    """The sweep's numbers as plain data: per run and per point group (seeds averaged).

    Returns ``{"metric", "mode", "fields", "runs": [...], "groups": [...]}``; a group is the set of
    runs that differ only in their seed, with ``mean``/``std`` of the metric over them, sorted best
    first.
    """
    info = store.sweep(sweep_id)
    spec = SweepSpec.model_validate(info["spec"].get("sweep", {}))
    fields = list(info["spec"].get("fields", []))
    rows = []
    records = {r.id: r for r in store.get_runs(sorted({p["run_id"] for p in info["points"]}))} \
        if info["points"] else {}
    for p in info["points"]:
        rec = records[p["run_id"]]
        rows.append(_Row(p["idx"], rec.id, p["point"], rec.status, store.history(rec.id), rec.final,
                         rec.wall_time, rec.error, rec.info or {}))
    first_cfg = parse_config(records[rows[0].run_id].config) if rows else None
    metric, mode = resolve_metric(spec, first_cfg)
    runs = []
    for r in rows:
        series = _metric_series(r.history, metric)
        best, best_epoch = _best(series, mode)
        runs.append({"idx": r.idx, "run_id": r.run_id, "values": r.values, "status": r.status,
                     "final": _final_value(r, metric), "best": best, "best_epoch": best_epoch,
                     "epochs": len(r.history), "wall_time": r.wall_time, "error": r.error, "history": r.history,
                     "pruned_epoch": r.info.get("pruned_epoch") if r.status == "pruned" else None})
    groups: dict[str, dict] = {}
    for run in runs:
        key_values = {k: v for k, v in run["values"].items() if k != "seed"}
        g = groups.setdefault(canonical_json(key_values), {"values": key_values, "runs": []})
        g["runs"].append(run)
    out_groups = []
    for g in groups.values():
        finals = [r["final"] for r in g["runs"] if r["status"] == "finished"]
        mean, std = _mean_std(finals)
        times = [r["wall_time"] for r in g["runs"] if r["wall_time"] is not None]
        out_groups.append({"values": g["values"], "label": format_values(g["values"]) or "(base)",
                           "n": len(g["runs"]), "finished": len(finals), "mean": mean, "std": std,
                           "wall_time": sum(times) / len(times) if times else math.nan, "runs": g["runs"]})
    sign = -1 if mode == "max" else 1
    out_groups.sort(key=lambda g: (math.isnan(g["mean"]), sign * g["mean"] if not math.isnan(g["mean"]) else 0))
    return {"id": info["id"], "name": info["name"], "metric": metric, "mode": mode, "fields": fields,
            "spec": spec, "template": info["spec"].get("template", {}), "runs": runs, "groups": out_groups}


def _discrete(values: list) -> list:
    out = []
    for v in values:
        if not any(canonical_json(v) == canonical_json(u) for u in out):
            out.append(v)
    try:
        return sorted(out)
    except TypeError:
        return out


def _diverged(run: dict) -> bool:
    """Whether a run failed because its loss became NaN/Inf (figures mark it)."""
    return run["status"] == "failed" and "NonFiniteLoss" in (run.get("error") or "")


def _continuous(values: list, method: str) -> bool:
    """A numeric field best shown as a scatter: drawn from a distribution, or with many values."""
    if not values or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return False
    distinct = len(_discrete(values))
    drawn = method in ("random", "optuna") and any(isinstance(v, float) and not v.is_integer() for v in values)
    return distinct > 15 or (drawn and distinct > 2)


def write_sweep_report(store, sweep_id: str, out_dir: str | Path) -> Path:
    """Write ``report.html`` (self-contained) and its PNG figures for a sweep into ``out_dir``.

    Figures: every run's validation curves overlaid (one colour per point, seeds in one colour);
    the metric over every pair of swept fields with few values as a heatmap (mean over seeds, the
    best over any other swept field); the metric per point as bars with ±1 standard deviation over
    seeds as error bars; the metric against each numeric swept field with many values (random search).
    """
    import yaml

    from trainlab.experiments import plots
    from trainlab.experiments.report import Section, write_report

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t = sweep_table(store, sweep_id)
    metric, mode, runs, groups = t["metric"], t["mode"], t["runs"], t["groups"]
    fields = [f for f in t["fields"] if f != "seed"]
    n_seeds = max((g["n"] for g in groups), default=1)
    by_status: dict[str, int] = {}
    for r in runs:
        by_status[r["status"]] = by_status.get(r["status"], 0) + 1
    total_time = sum(r["wall_time"] or 0.0 for r in runs)
    sections = []

    summary = [f"{len(runs)} runs ({', '.join(f'{n} {s}' for s, n in sorted(by_status.items()))}), "
               f"{t['spec'].method} search over {', '.join(t['fields']) or 'nothing'}; "
               f"ranked by {metric} ({'higher' if mode == 'max' else 'lower'} is better) at the end of training.",
               f"Training time summed over runs: {total_time:.1f} s (a batched run counts its share of its batch)."]
    best = next((g for g in groups if not math.isnan(g["mean"])), None)
    if best is not None:
        spread = f" ± {best['std']:.4f} over {best['finished']} seeds" if best["finished"] > 1 else ""
        summary.append(f"Best: {best['label']} with {metric} {best['mean']:.4f}{spread}.")
    header = [*fields, "seeds", f"{metric} mean", "std", "time (s)"]
    table_rows = [[*(format_value(g["values"].get(f, "")) for f in fields), f"{g['finished']}/{g['n']}",
                   g["mean"], g["std"], g["wall_time"]] for g in groups]
    sections.append(Section("Summary", text=summary, table=(header, table_rows)))

    figures = []
    curve_runs = [(g["label"], i, r["history"], _diverged(r)) for i, g in enumerate(groups) for r in g["runs"]
                  if r["history"]]
    if curve_runs:
        keys = [k for k in (metric, "val_loss", "loss") if any(k in run[2][0] for run in curve_runs)]
        keys = list(dict.fromkeys(keys))[:2]
        if keys:
            path = plots.plot_overlaid_curves(curve_runs, keys, out / "curves.png", title=t["name"])
            figures.append((f"{' and '.join(keys)} per epoch, every run (one colour per point, its seeds alike)", path))
    continuous = [f for f in fields if _continuous([r["values"].get(f) for r in runs], t["spec"].method)]
    discrete = [f for f in fields if f not in continuous and 1 < len(_discrete([r["values"].get(f) for r in runs])) <= 15]
    for a, b in list(itertools.combinations(discrete, 2))[:3]:
        xs = _discrete([r["values"].get(a) for r in runs])
        ys = _discrete([r["values"].get(b) for r in runs])
        grid = [[math.nan] * len(xs) for _ in ys]
        for g in groups:
            if math.isnan(g["mean"]):
                continue
            i = next(i for i, v in enumerate(ys) if canonical_json(v) == canonical_json(g["values"].get(b)))
            j = next(j for j, v in enumerate(xs) if canonical_json(v) == canonical_json(g["values"].get(a)))
            cur = grid[i][j]
            better = math.isnan(cur) or (g["mean"] > cur if mode == "max" else g["mean"] < cur)
            grid[i][j] = g["mean"] if better else cur
        name = f"heatmap-{_slug(a)}-{_slug(b)}.png"
        path = plots.plot_heatmap(grid, [format_value(x) for x in xs], [format_value(y) for y in ys],
                                  out / name, xlabel=a, ylabel=b, title=f"{metric} (mean over seeds)",
                                  higher_is_better=mode == "max")
        others = [f for f in fields if f not in (a, b)]
        caption = f"{metric} over {a} × {b}" + (f", best over {', '.join(others)}" if others else "")
        figures.append((caption, path))
    bar_groups = [g for g in groups if not math.isnan(g["mean"])][:30]
    if bar_groups:
        path = plots.plot_error_bars([g["label"] for g in bar_groups], [g["mean"] for g in bar_groups],
                                     [g["std"] for g in bar_groups], out / "bars.png", ylabel=metric,
                                     title=f"{metric}: mean ± std over seeds" if n_seeds > 1 else metric)
        figures.append((f"{metric} per point{' (best 30)' if len(groups) > 30 else ''}"
                        + (", error bars: ±1 std over seeds" if n_seeds > 1 else ""), path))
    for f in continuous:
        pts = [(r["values"][f], r["final"]) for r in runs if not math.isnan(r["final"])]
        lost = [r["values"][f] for r in runs if math.isnan(r["final"]) and _diverged(r)]
        xs_all = [v for v, _ in pts] + lost
        if not xs_all:
            continue
        logx = all(v > 0 for v in xs_all) and max(xs_all) / min(xs_all) > 50
        path = plots.plot_scatter([p[0] for p in pts], [p[1] for p in pts], out / f"scatter-{_slug(f)}.png",
                                  xlabel=f, ylabel=metric, logx=logx, diverged=lost)
        figures.append((f"{metric} against {f}, one dot per run" + (", a red cross per diverged run" if lost else ""),
                        path))
    if figures:
        sections.append(Section("Figures", figures=figures))
    if t["spec"].method == "optuna":  # the study's own views: history, importances, slices
        from trainlab.experiments.search import search_section
        search = search_section(store, sweep_id, out, metric, mode)
        if search is not None:
            sections.append(search)

    run_header = ["#", "run", *t["fields"], "status", f"final {metric}", f"best {metric}", "best epoch",
                  "epochs", "time (s)"]
    run_rows = [[r["idx"], r["run_id"], *(format_value(r["values"].get(f, "")) for f in t["fields"]),
                 f"pruned after epoch {r['pruned_epoch']}" if r["pruned_epoch"] else r["status"],
                 r["final"], r["best"], r["best_epoch"] or "", r["epochs"],
                 r["wall_time"] if r["wall_time"] is not None else ""] for r in runs]
    sections.append(Section("Runs", text=["Ids are those of the results store: 'trainlab compare ID ID ...' puts "
                                          "runs side by side."], table=(run_header, run_rows)))
    errors = [(r["run_id"], (r["error"] or "").splitlines()[0]) for r in runs if r["status"] == "failed"]
    if errors:
        sections.append(Section("Failed runs", table=(("run", "error"), errors)))
    sweep_file = {**t["template"], "sweep": t["spec"].model_dump(exclude_defaults=True)}
    sections.append(Section("Sweep file", pre=yaml.safe_dump(sweep_file, sort_keys=False)))
    return write_report(out / "report.html", f"trainlab sweep: {t['name']}", sections,
                        subtitle=f"sweep {t['id']} · store {store.path}")


# ---------------------------------------------------------------------------------------------
# the command line: trainlab sweep


def _resume_command(args) -> str:
    """The ``trainlab sweep`` command that continues this one (without ``--rerun``)."""
    import shlex

    parts = ["trainlab", "sweep", str(args.config)]
    for item in args.set or []:
        parts += ["--set", item]
    for flag in ("store", "out", "workers", "threads", "executor", "address", "gpus"):
        value = getattr(args, flag, None)
        if value is not None:
            parts += [f"--{flag}", str(value)]
    for flag in ("no_batch", "retry_failed", "quiet"):
        if getattr(args, flag, False):
            parts.append("-q" if flag == "quiet" else f"--{flag.replace('_', '-')}")
    return shlex.join(parts)


def _cli_executor(args, plan: SweepPlan, workers: int | None, batched: bool):
    """The executor ``--executor``/``--address`` (else ``sweep.executor``/``sweep.address``) name.

    ``--address`` alone means Ray. Returns ``None`` after printing the usage error. Creating a Ray
    executor imports Ray, so a missing package is reported before the store is touched.
    """
    from trainlab.experiments.executors import make_executor

    name = getattr(args, "executor", None)
    address = getattr(args, "address", None)
    if address is not None:
        from trainlab.experiments.executors.ray import address_problem
        if name == "local":
            print(f"trainlab sweep: --address {address}: applies to --executor ray; drop one of them", file=sys.stderr)
            return None
        problem = address_problem(address)
        if problem is not None:
            print(f"trainlab sweep: --address {address!r} {problem}", file=sys.stderr)
            return None
        name = "ray"
    name = name or plan.spec.executor
    if address is None and name == plan.spec.executor:
        address = plan.spec.address
    gpus = getattr(args, "gpus", None)
    if gpus is not None and not gpus >= 0:
        print(f"trainlab sweep: --gpus {gpus}: must be >= 0 (GPUs per task; fractions share a GPU)", file=sys.stderr)
        return None
    if gpus is not None and name != "ray":
        print(f"trainlab sweep: --gpus {gpus:g}: applies to --executor ray (the GPUs each Ray task asks for)",
              file=sys.stderr)
        return None
    return make_executor(name, address=address, workers=workers, batched=batched,
                         threads=getattr(args, "threads", None),
                         gpus=gpus if gpus is not None else plan.spec.gpus,
                         keep_workers=plan.spec.method == "optuna")


def cli_sweep(args) -> int:
    """``trainlab sweep CONFIG``: expand, run (resuming), record, report."""
    from trainlab.experiments.batched import keep_freed_memory
    from trainlab.experiments.executor import RunSpec, plan_tasks

    try:
        dropped: list[str] = []
        plan = load_sweep(args.config, list(args.set or []), dropped=dropped)
        for line in dropped:  # a technique switch in --set: say what it dropped
            print(f"trainlab sweep: note: {line}", file=sys.stderr)
    except ConfigError as err:
        print(f"trainlab sweep: {err}", file=sys.stderr)
        return 2
    batched = plan.spec.batched and not args.no_batch
    if args.dry_run and plan.spec.method == "optuna":  # nothing to list before the search runs
        print(plan.summary())
        for p in plan.params:
            print(f"  {p.describe()}")
        return 0
    if args.dry_run:
        print(plan.summary())
        width = len(str(len(plan.points)))
        for p in plan.points:
            print(f"  {p.index:>{width}}  {p.hash[:10]}  {p.label()}")
        tasks = plan_tasks([RunSpec(str(p.index), p.config.to_dict()) for p in plan.points], batched=batched)
        sizes = sorted((len(t) for t in tasks if t.batched), reverse=True)
        alone = sum(1 for t in tasks if not t.batched)
        print(f"training: {len(sizes)} batched model(s) of {', '.join(map(str, sizes)) or '-'} runs, "
              f"{alone} run(s) alone")
        return 0
    workers = args.workers if args.workers is not None else plan.spec.workers
    executor = _cli_executor(args, plan, workers, batched)
    if executor is None:
        return 2
    keep_freed_memory()  # this process trains batched models when it runs a single task
    previous = _second_interrupt_exits()
    try:
        result = run_sweep(plan, store=args.store, out_dir=args.out, executor=executor,
                           rerun=args.rerun, retry_failed=args.retry_failed, verbose=not args.quiet)
    except SweepInterrupted as err:
        err = SweepInterrupted(err.sweep_id, err.done, err.total, _resume_command(args))
        print(f"\ntrainlab sweep: {err}", file=sys.stderr)
        return 130
    finally:  # main() may be called from Python (tests, a notebook): leave its Ctrl-C as it was
        _restore_sigint(previous)
    if args.quiet:
        print(result.report if result.report is not None else result.out_dir)
    else:
        print(f"{result.ran} run(s) trained ({result.failed} failed), {result.skipped} already in the store; "
              f"{result.wall_time:.1f} s")
        if result.report is not None:
            print(f"report: {result.report}")
    return 0 if result.failed < len(result.run_ids) or not result.run_ids else 1
