"""Searches: how the points of a sweep are proposed (here: Optuna's ask-and-tell), not how they run.

Grid and random search expand a sweep file into every point before anything runs
(:func:`~trainlab.experiments.sweep.expand_sweep`). A model-based search proposes each point from the
results so far, so its points exist only as the search goes. ``method: optuna`` hands the proposing
to `Optuna <https://optuna.org>`_ (Akiba et al., 2019, "Optuna: a next-generation hyperparameter
optimization framework")::

    sweep: {method: optuna, samples: 40, sampler: tpe, pruner: median, seed: 0}
    optimizer: {name: sgd, lr: {loguniform: [1.0e-4, 1.0]}, momentum: {uniform: [0.0, 0.99]}}

The markers are those of random search, each an Optuna distribution:

==========================  ==============================================================
``{uniform: [lo, hi]}``     ``FloatDistribution(lo, hi)``
``{loguniform: [lo, hi]}``  ``FloatDistribution(lo, hi, log=True)``
``{int: [lo, hi]}``         ``IntDistribution(lo, hi)`` (both ends included)
``{choice: [...]}``, list   ``CategoricalDistribution``: a value that is a section or a list is
                            chosen by its label (its ``name``/``kind``, else the value written out)
``{grid: [...]}``           refused: a search proposes points, it does not cross values
==========================  ==============================================================

**Conditional spaces** are define-by-run: markers inside a chosen value are suggested only when that
value is chosen, under a name that carries the choice, ``optimizer.lr[sgd]`` (so the sampler models
SGD's and Adam's learning rates apart). The sweep table and the store keep the plain dotted path.

The ``sweep:`` fields: ``samples`` (trials in all; raising it continues the same study), ``sampler``
(``tpe``: :class:`optuna.samplers.TPESampler`, the default; ``random``; ``cmaes``: numbers only),
``pruner`` (``none``, the default; ``median``: :class:`optuna.pruners.MedianPruner`; ``hyperband``:
:class:`optuna.pruners.HyperbandPruner` with ``max_resource = train.epochs``; either may be a
mapping of Optuna's arguments, ``{name: median, n_startup_trials: 2}``), ``seed`` (the
sampler's seed; default ``sample_seed``, 0), ``metric``/``mode`` (what is optimized: the final value
of the metric, as reports rank), ``workers`` (trials in flight at once).

**How it runs.** Each trial is a normal trainlab run: its config is the sweep file with the proposed
values, it is recorded in the results store (``trainlab runs --sweep ID``), and it is trained by the
sweep's executor (local processes, or any :class:`~trainlab.experiments.executor.Executor`). The
search asks up to ``workers`` trials, submits them, tells Optuna each outcome as it comes back, and
asks again, until ``samples`` trials are done. TPE's ``constant_liar`` keeps the trials of one round
apart. With one trial in flight a search is reproducible from its seed.

**The study** lives in ``<sweep folder>/optuna.journal`` (:class:`optuna.storages.JournalStorage`,
study name = the sweep id). Run the same command again and it resumes: finished trials are kept,
trials an interrupted search left running are marked failed (user attribute ``interrupted``) and
asked again, and their store rows removed, so the search ends with exactly ``samples`` trials. A
finished search is not redone. One search process per study at a time.

**Pruning.** With a pruner, every trial's run reports the sweep metric after each epoch
(``trial.report(value, epoch)``, epochs counted from 1) and stops when ``trial.should_prune()``
says so; the run is recorded ``pruned`` with ``info.pruned_epoch``. The process training the trial
opens the journal itself, so a remote executor prunes only where the sweep folder is on a file
system its workers share; elsewhere the epochs are reported by the sweep when the run comes back
(later trials are still judged against them) and nothing is stopped early.
"""
from __future__ import annotations

import copy
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from trainlab.experiments.config import ConfigError, parse_config
from trainlab.experiments.store import config_hash
from trainlab.experiments.sweep import (Axis, SweepError, SweepInterrupted, SweepPlan, SweepResult, SweepSpec,
                                        _exit_on_second_interrupt, _get, _Progress, _restore_sigint, _set, _slug,
                                        find_axes, format_value, format_values, resolve_metric)
from trainlab.train.callbacks import Callback

if TYPE_CHECKING:
    from trainlab.experiments.config import Config

JOURNAL = "optuna.journal"
INSTALL = "pip install 'trainlab[optuna]'"
_PRIMITIVE = (bool, int, float, str, type(None))


def import_optuna(verbose: bool = True):
    """``optuna``, with its per-trial INFO lines silenced (trainlab prints its own progress).

    ``verbose=False`` (``-q``) keeps only its errors. Raises a one-line :class:`ImportError` with the
    install command when the package is missing.
    """
    try:
        import optuna
    except ModuleNotFoundError as err:
        if err.name != "optuna":
            raise
        raise ImportError(f"sweep method optuna needs the optuna package: {INSTALL}", name="optuna") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING if verbose else optuna.logging.ERROR)
    return optuna


# ---------------------------------------------------------------------------------------------
# the search space: markers as Optuna distributions, define-by-run


def _labels(axis: Axis) -> list:
    """The choices Optuna sees for a list/choice axis: the values when they are plain, else labels.

    A section is labelled by its ``name`` (or ``kind``), anything else by the value written out;
    labels that would repeat fall back to ``"<i>: <value>"``.
    """
    values = list(axis.values)
    if all(isinstance(v, _PRIMITIVE) for v in values):
        return values
    labels = [v.get("name", v.get("kind")) if isinstance(v, dict) else None for v in values]
    if not all(isinstance(x, str) for x in labels) or len(set(labels)) < len(labels):
        labels = [format_value(v) for v in values]
    if len(set(labels)) < len(labels):
        labels = [f"{i}: {x}" for i, x in enumerate(labels)]
    return labels


def _branches(axis: Axis) -> bool:
    """Whether the axis chooses between values that may hold markers of their own."""
    return axis.kind in ("list", "choice") and not all(isinstance(v, _PRIMITIVE) for v in axis.values)


def param_name(axis: Axis, chosen: dict) -> str:
    """The Optuna parameter of an axis: its dotted path, plus ``[label]`` per choice it sits inside."""
    quals = [label for path, label in chosen.items() if axis.path[:len(path)] == path and axis.path != path]
    return axis.name + "".join(f"[{q}]" for q in quals)


def _suggest(trial, axis: Axis, name: str):
    if axis.kind == "uniform":
        return trial.suggest_float(name, axis.low, axis.high)
    if axis.kind == "loguniform":
        return trial.suggest_float(name, axis.low, axis.high, log=True)
    if axis.kind == "int":
        return trial.suggest_int(name, int(axis.low), int(axis.high))
    if axis.kind == "grid":
        raise SweepError(f"{axis.name}: {{grid: [...]}} crosses values, which a search cannot; use {{choice: [...]}} "
                         "(the sampler picks one) or run one search per value")
    labels = _labels(axis)
    label = trial.suggest_categorical(name, labels)
    return copy.deepcopy(axis.values[labels.index(label)])


def suggest_config(trial, template: dict) -> tuple[dict, dict]:
    """``(config dict, {dotted path: value})`` for one trial: every marker of ``template`` suggested.

    ``trial`` is an :class:`optuna.trial.Trial` (or anything with its ``suggest_*`` methods).
    Markers inside a chosen value are suggested after it, only when it is chosen.
    """
    data = copy.deepcopy(template)
    resolved: frozenset = frozenset()
    chosen: dict[tuple, Any] = {}
    assigned: dict[str, tuple] = {}
    while True:
        axes = find_axes(data, data, (), resolved)
        if not axes:
            break
        for axis in axes:
            name = param_name(axis, chosen)
            value = _suggest(trial, axis, name)
            if _branches(axis):
                chosen[axis.path] = _label_of(axis, value)
            _set(data, axis.path, value)
            assigned[axis.name] = axis.path
        resolved = resolved | {a.path for a in axes}
    return data, {k: _get(data, path) for k, path in assigned.items()}


def _label_of(axis: Axis, value) -> Any:
    labels = _labels(axis)
    for label, v in zip(labels, axis.values):
        if v == value:
            return label
    return format_value(value)


@dataclass
class Param:
    """One parameter of the search space, over every branch: its Optuna name and its axis."""

    name: str
    axis: Axis

    def describe(self) -> str:
        a = self.axis
        if a.kind in ("uniform", "loguniform", "int"):
            return f"{self.name} ~ {a.kind}[{format_value(a.low)}, {format_value(a.high)}]"
        return f"{self.name} ~ choice of {', '.join(map(str, _labels(a)))}"


def search_space(template: dict) -> list[Param]:
    """Every parameter the search may suggest (every branch of every choice), in document order."""
    out: list[Param] = []

    def walk(data: dict, resolved: frozenset, chosen: dict) -> None:
        axes = find_axes(data, data, (), resolved)
        done = resolved | {a.path for a in axes}
        for axis in axes:
            out.append(Param(param_name(axis, chosen), axis))
        for axis in axes:
            if not _branches(axis):
                continue
            for label, value in zip(_labels(axis), axis.values):
                branch = copy.deepcopy(data)
                for other in axes:  # a plain stand-in: only this value's own markers are found
                    _set(branch, other.path, None)
                _set(branch, axis.path, copy.deepcopy(value))
                walk(branch, done, {**chosen, axis.path: label})

    walk(template, frozenset(), {})
    seen, unique = set(), []
    for p in out:
        if p.name not in seen:
            seen.add(p.name)
            unique.append(p)
    return unique


class _Corner:
    """A stand-in trial that picks the ``i``-th value of every choice and alternates the bounds.

    The configs it gives reach every branch and both ends of every range, so a bad space fails
    before the first trial is trained.
    """

    def __init__(self, i: int):
        self.i = i

    def suggest_float(self, name, low, high, log=False):
        return low if self.i % 2 == 0 else high

    def suggest_int(self, name, low, high):
        return low if self.i % 2 == 0 else high

    def suggest_categorical(self, name, choices):
        return choices[min(self.i, len(choices) - 1)]


# ---------------------------------------------------------------------------------------------
# planning a search (what expand_sweep returns for method: optuna)


@dataclass
class SearchPlan(SweepPlan):
    """A sweep whose points are proposed while it runs: the space instead of the points."""

    params: list[Param] = field(default_factory=list)
    example: "Config | None" = None   # a validated config of the space, for the metric's default

    @property
    def metric(self) -> tuple[str, str]:
        return resolve_metric(self.spec, self.example)

    @property
    def sampler(self) -> str:
        return named(self.spec.sampler, "tpe")[0]

    @property
    def sampler_args(self) -> dict:
        return named(self.spec.sampler, "tpe")[1]

    @property
    def pruner(self) -> str:
        return named(self.spec.pruner, "none")[0]

    @property
    def pruner_args(self) -> dict:
        return named(self.spec.pruner, "none")[1]

    @property
    def seed(self) -> int:
        return self.spec.seed if self.spec.seed is not None else self.spec.sample_seed

    def summary(self) -> str:
        metric, mode = self.metric

        def shown(name: str, args: dict) -> str:
            return name + (f"({', '.join(f'{k}={v}' for k, v in args.items())})" if args else "")

        return (f"sweep {self.id}: optuna search, {self.spec.samples} trials ({shown(self.sampler, self.sampler_args)}"
                f" sampler, seed {self.seed}, pruner {shown(self.pruner, self.pruner_args)}), {mode}imizing {metric}"
                + (f" over {', '.join(p.name for p in self.params)}" if self.params else ""))


def plan_search(template: dict, spec: SweepSpec, name: str, sweep_id: str) -> SearchPlan:
    """Check an optuna search's space and configs before anything runs; see the module docstring."""
    import_optuna()
    params = search_space(template)
    for p in params:
        if p.axis.kind == "grid":
            _suggest(None, p.axis, p.name)  # raises, naming the field
    if spec.sampler == "cmaes":
        choices = [p for p in params if p.axis.kind not in ("uniform", "loguniform", "int")]
        if choices:
            raise SweepError(f"sweep.sampler: cmaes proposes numbers only, but {choices[0].axis.name} is a choice; "
                             "use sampler: tpe (or random), or fix that field to one value")
    _check_arguments("sampler", *named(spec.sampler, "tpe"), lambda n, a: build_sampler(n, 0, a))
    _check_arguments("pruner", *named(spec.pruner, "none"), lambda n, a: build_pruner(n, _max_resource(template), a))
    widest = max([2] + [len(p.axis.values) for p in params])
    example = None
    for i in range(widest):
        data, values = suggest_config(_Corner(i), template)
        data["name"] = f"{name}-000"
        try:
            cfg = parse_config(data)
        except ConfigError as err:
            raise SweepError(f"the search space at {format_values(values) or '(no swept values)'}: {err}") from None
        example = example or cfg
    fields = list(dict.fromkeys(p.axis.name for p in params))
    return SearchPlan(sweep_id, name, spec, template, [], fields, 0, params=params, example=example)


# ---------------------------------------------------------------------------------------------
# samplers, pruners, storage


def named(value, default: str) -> tuple[str, dict]:
    """``(name, arguments)`` of a ``sweep.sampler``/``sweep.pruner`` value (a name or a mapping)."""
    if value is None:
        return default, {}
    if isinstance(value, dict):
        return value["name"], {k: v for k, v in value.items() if k != "name"}
    return value, {}


def _classes() -> dict[str, Any]:
    optuna = import_optuna()
    return {"tpe": optuna.samplers.TPESampler, "random": optuna.samplers.RandomSampler,
            "cmaes": optuna.samplers.CmaEsSampler, "none": optuna.pruners.NopPruner,
            "median": optuna.pruners.MedianPruner, "hyperband": optuna.pruners.HyperbandPruner}


def _check_arguments(key: str, name: str, args: dict, build: Callable) -> None:
    """Refuse an argument Optuna's class does not take, or a value it rejects, naming ``sweep.<key>.<arg>``."""
    import inspect

    cls = _classes()[name]
    params = inspect.signature(cls.__init__).parameters
    allowed = [p for p, v in params.items() if p not in ("self", "seed")
               and v.kind in (v.KEYWORD_ONLY, v.POSITIONAL_OR_KEYWORD)]
    plain = [p for p in allowed if params[p].default is None or isinstance(params[p].default, (bool, int, float, str))]
    for arg in args:
        if arg not in allowed:
            raise SweepError(f"sweep.{key}.{arg}: not an argument of optuna's {cls.__name__}; allowed: "
                             f"{', '.join(plain) or '(none)'}")
    try:
        build(name, args)
    except (TypeError, ValueError) as err:
        shown = ", ".join(f"{k}={v!r}" for k, v in args.items())
        raise SweepError(f"sweep.{key}: optuna's {cls.__name__}({shown}) refuses it: {err}") from None


def build_sampler(name: str, seed: int | None, args: dict | None = None):
    """The Optuna sampler ``name`` (tpe | random | cmaes), seeded; ``args`` go to its constructor."""
    cls = _classes()[name]
    if name == "cmaes":
        try:
            import cmaes  # noqa: F401  (optuna's CmaEsSampler fails late without it)
        except ModuleNotFoundError:
            raise ImportError(f"sweep.sampler cmaes needs the cmaes package: {INSTALL}", name="cmaes") from None
    return cls(seed=seed, **(args or {}))


def build_pruner(name: str, max_resource: int | str = "auto", args: dict | None = None):
    """The Optuna pruner ``name`` (none | median | hyperband); ``args`` go to its constructor.

    Optuna's defaults otherwise (``median``: no pruning during the first 5 trials). Hyperband's
    resource is the epoch: ``min_resource=1``, ``max_resource`` the config's ``train.epochs``
    (``"auto"`` when the epochs are swept), ``reduction_factor=3``.
    """
    cls = _classes()[name]
    if name == "hyperband":
        return cls(**{"min_resource": 1, "max_resource": max_resource, **(args or {})})
    return cls(**(args or {}))


def open_storage(journal: str | Path):
    """Optuna's journal storage in the file ``journal`` (created when missing)."""
    import_optuna()
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend
    return JournalStorage(JournalFileBackend(str(journal)))


def _max_resource(template: dict) -> int | str:
    epochs = (template.get("train") or {}).get("epochs") if isinstance(template.get("train"), dict) else None
    return epochs if isinstance(epochs, int) and not isinstance(epochs, bool) else "auto"


# ---------------------------------------------------------------------------------------------
# pruning, in the process that trains the trial


class TrialPruning(Callback):
    """Report ``metric`` to an Optuna trial after every epoch; stop training when it should be pruned.

    Optuna's ``trial.report(value, step)`` with ``step`` the 1-based epoch, then
    ``trial.should_prune()`` (the study's pruner decides); a pruned run finishes its epoch and ends.
    ``pruned_epoch`` is the epoch it stopped after (0: not pruned). Epochs whose metric is missing
    or not finite are not reported. The equivalent of ``optuna.integration``'s pruning callbacks.
    """

    def __init__(self, trial, metric: str):
        self.trial, self.metric = trial, metric
        self.pruned_epoch = 0

    def on_train_begin(self, logs) -> None:
        self.pruned_epoch = 0

    def on_epoch_end(self, epoch: int, logs) -> None:
        value = logs.get(self.metric)
        if not isinstance(value, (int, float)) or not math.isfinite(value):
            return
        self.trial.report(float(value), epoch + 1)
        if self.trial.should_prune():
            self.pruned_epoch = epoch + 1
            self.loop.stop_training = True


def pruning_callback(data: dict) -> TrialPruning | None:
    """The :class:`TrialPruning` a :class:`~trainlab.experiments.executor.RunSpec`'s ``pruning`` describes.

    ``data``: ``journal`` (path), ``study`` (name), ``trial_id``, ``metric``, ``pruner``,
    ``max_resource``. ``None`` when the journal is not a file here (a worker on another machine).
    """
    if not Path(data["journal"]).is_file():
        return None
    optuna = import_optuna(verbose=False)
    study = optuna.load_study(study_name=data["study"], storage=open_storage(data["journal"]),
                              sampler=optuna.samplers.RandomSampler(),
                              pruner=build_pruner(data["pruner"], data.get("max_resource", "auto"),
                                                  data.get("pruner_args")))
    return TrialPruning(optuna.trial.Trial(study, int(data["trial_id"])), data["metric"])


# ---------------------------------------------------------------------------------------------
# running a search


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _frozen(study, number: int):
    trials = study.get_trials(deepcopy=False)
    return next(t for t in trials if t.number == number)


def _tell(study, number: int, status: str, final: dict, history: list[dict], metric: str, report: bool = True):
    """Tell Optuna how trial ``number`` ended (from its run's status and numbers); returns the state.

    The value is the final ``metric``; a run without a finite one fails. With ``report`` (a search
    with a pruner), epochs the worker could not report (no shared journal) are reported here first,
    so the pruner judges later trials by them.
    """
    import optuna
    from optuna.trial import TrialState

    frozen = _frozen(study, number)
    if report and status in ("finished", "pruned") and not frozen.intermediate_values:
        trial = optuna.trial.Trial(study, frozen._trial_id)
        for epoch, record in enumerate(history, 1):
            if _finite(record.get(metric)):
                trial.report(float(record[metric]), epoch)
    if status == "finished" and _finite(final.get(metric)):
        study.tell(number, float(final[metric]))
        return TrialState.COMPLETE
    if status == "pruned":
        study.tell(number, state=TrialState.PRUNED)
        return TrialState.PRUNED
    study.tell(number, state=TrialState.FAIL)
    return TrialState.FAIL


def _abandon(study, trial_ids: dict[int, int]) -> None:
    """Mark trials ``{number: trial id}`` failed and ``interrupted``: a resumed search asks again."""
    import optuna
    from optuna.trial import TrialState

    for number, trial_id in trial_ids.items():
        try:
            optuna.trial.Trial(study, trial_id).set_user_attr("interrupted", True)
            study.tell(number, state=TrialState.FAIL, skip_if_finished=True)
        except Exception:  # already finished (told in between): nothing to undo
            pass


def _reconcile(study, db, metric: str, retry_failed: bool, report: bool) -> list:
    """Bring a loaded study and the store together; return the trials that count, by number.

    A trial left running by an interrupted search is told from its store row when the run had
    finished (recorded, not yet told), else abandoned; rows of abandoned trials that never finished
    are removed. Counted: every finished trial but the abandoned ones (and the failed ones with
    ``retry_failed``).
    """
    from optuna.trial import TrialState

    running = {}
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING, TrialState.WAITING)):
        rec = _record(db, t.user_attrs.get("run_id"))
        if rec is not None and rec.status in ("finished", "failed", "pruned"):
            _tell(study, t.number, rec.status, rec.final, db.history(rec.id), metric, report)
        else:
            running[t.number] = t._trial_id
    _abandon(study, running)
    counted, dropped = [], []
    for t in study.get_trials(deepcopy=False):
        if t.user_attrs.get("interrupted") or (retry_failed and t.state == TrialState.FAIL):
            dropped.append(t.user_attrs.get("run_id"))
        elif t.state.is_finished():
            counted.append(t)
    stale = [rid for rid in dropped if (rec := _record(db, rid)) is not None
             and rec.status in ("queued", "running", "interrupted")
             and (rec.info or {}).get("sweep") == study.study_name]
    if stale:
        db.delete_runs(stale)
    return sorted(counted, key=lambda t: t.number)


def _record(db, run_id: str | None):
    if not run_id:
        return None
    try:
        rec = db.get_runs([run_id])[0]
    except KeyError:
        return None
    return rec if rec.id == run_id else None


def run_search(plan: SearchPlan, db, out: Path, executor=None, *, rerun: bool = False, retry_failed: bool = False,
               report: bool = True, verbose: bool = True, on_outcome: Callable | None = None) -> SweepResult:
    """Run (or resume) an optuna search; what :func:`~trainlab.experiments.sweep.run_sweep` does for one.

    Raises:
        SweepInterrupted: on Ctrl-C, after cancelling the trials in flight (marked ``interrupted``
            in the store, failed and ``interrupted`` in the study: a resumed search asks again).
    """
    from optuna.trial import TrialState

    from trainlab.experiments.executor import LocalExecutor, RunSpec
    from trainlab.experiments.sweep import write_sweep_report

    t0 = time.perf_counter()
    optuna = import_optuna(verbose)
    spec = plan.spec
    metric, mode = plan.metric
    out.mkdir(parents=True, exist_ok=True)
    journal = out / JOURNAL
    if rerun and journal.exists():  # a fresh study (the old trials' runs stay in the store)
        journal.unlink()
    max_resource = _max_resource(plan.template)
    study = optuna.create_study(study_name=plan.id, storage=open_storage(journal), load_if_exists=True,
                                sampler=build_sampler(plan.sampler, plan.seed, plan.sampler_args),
                                pruner=build_pruner(plan.pruner, max_resource, plan.pruner_args),
                                direction="maximize" if mode == "max" else "minimize")
    asked = len(study.get_trials(deepcopy=False))
    if asked:  # a sampler seeded as before would draw its first points again: continue from a seed of its own
        study.sampler = build_sampler(plan.sampler, plan.seed + asked, plan.sampler_args)
    pruned = plan.pruner != "none"
    counted = _reconcile(study, db, metric, retry_failed, pruned)
    points = [(t.number, t.user_attrs.get("run_id", ""), t.user_attrs.get("values", {})) for t in counted]
    spec_record = {"template": plan.template, "sweep": spec.model_dump(mode="json"), "fields": plan.fields}
    db.add_sweep(plan.id, plan.name, spec_record, points, out)
    result = SweepResult(plan, db.path, out, [rid for _, rid, _ in points], skipped=len(points))
    if verbose:
        print(plan.summary(), file=sys.stderr)
        if points:
            print(f"{len(points)} trial(s) already in {journal}: not rerun", file=sys.stderr)
    done_status = ("finished",) if retry_failed else ("finished", "failed")
    in_flight = max(1, int(getattr(executor, "workers", None) or spec.workers or 1))
    if executor is None:
        executor = LocalExecutor(spec.workers, batched=spec.batched, keep_workers=True)
    progress = _Progress(spec.samples, len(points), verbose)
    store_path = str(db.path.resolve())
    pending: dict[str, tuple] = {}   # run id -> (trial, values)

    def told(number: int, rid: str, values: dict, state, text: str) -> None:
        points.append((number, rid, values))
        result.run_ids.append(rid)
        progress.update(f"trial {number}: {format_values(values) or '(base)'}  {text}")

    try:
        with executor:
            while len(points) < spec.samples:
                for _ in range(min(in_flight, spec.samples - len(points))):
                    trial = study.ask()
                    data, values = suggest_config(trial, plan.template)
                    data["name"] = f"{plan.name}-{trial.number:03d}"
                    try:
                        cfg = parse_config(data)
                    except ConfigError as err:
                        _abandon(study, {trial.number: trial._trial_id})
                        raise SweepError(f"trial {trial.number} ({format_values(values)}): {err}") from None
                    config = cfg.to_dict()
                    found = None if rerun else db.find_by_hash(config_hash(config), status=done_status)
                    rid = found.id if found is not None else _slug(f"{plan.id}-{trial.number:04d}")
                    trial.set_user_attr("run_id", rid)
                    trial.set_user_attr("values", values)
                    if found is not None:  # the same config was trained before: its numbers are the answer
                        state = _tell(study, trial.number, found.status, found.final, db.history(found.id), metric,
                                      pruned)
                        told(trial.number, rid, values, state, f"{state.name.lower()} (in the store: {rid})")
                        result.skipped += 1
                        continue
                    run_dir = str(out / "runs" / rid) if spec.write_runs else None
                    pruning = None if not pruned else {
                        "journal": str(journal.resolve()), "study": plan.id, "trial_id": trial._trial_id,
                        "metric": metric, "pruner": plan.pruner, "pruner_args": plan.pruner_args,
                        "max_resource": max_resource}
                    db.add_run(rid, config, status="queued", run_dir=run_dir,
                               info={"sweep": plan.id, "point": trial.number, "trial": trial.number})
                    pending[rid] = (trial, values, RunSpec(rid, config, run_dir, store=store_path, pruning=pruning))
                if not pending:
                    continue
                db.add_sweep(plan.id, plan.name, spec_record,
                             points + [(t.number, rid, v) for rid, (t, v, _) in pending.items()], out)
                executor.submit([s for _, _, s in pending.values()])
                for o in executor.results():
                    info = {**o.info, "sweep": plan.id, "point": pending[o.run_id][0].number,
                            "trial": pending[o.run_id][0].number}
                    db.finish_run(o.run_id, history=o.history, final=o.final, wall_time=o.wall_time,
                                  status=o.status, error=o.error, diagnostics=o.diagnostics, info=info,
                                  run_dir=o.run_dir)
                    trial, values, _ = pending.pop(o.run_id)
                    state = _tell(study, trial.number, o.status, o.final, o.history, metric, pruned)
                    result.ran += 1
                    result.failed += o.status == "failed"
                    if o.status == "pruned":
                        text = f"pruned after epoch {o.info.get('pruned_epoch', len(o.history))}"
                    elif state == TrialState.COMPLETE:
                        text = f"{metric} {o.final[metric]:.4f}"
                    else:
                        text = f"FAILED: {(o.error or f'no finite {metric}').splitlines()[0][:80]}"
                    told(trial.number, o.run_id, values, state, f"{text}  ({o.wall_time:.2f} s)")
                    if on_outcome is not None:
                        on_outcome(o)
                if pending:  # an executor that lost runs: say so rather than pretend
                    lost = sorted(pending)
                    db.set_status(lost, "failed", error="the executor returned no outcome for this run")
                    for rid in lost:
                        trial, values, _ = pending.pop(rid)
                        state = _tell(study, trial.number, "failed", {}, [], metric)
                        told(trial.number, rid, values, state, "FAILED: no outcome")
                        result.failed += 1
    except KeyboardInterrupt:
        previous = _exit_on_second_interrupt(executor)
        try:
            executor.shutdown(cancel=True)
            if pending:
                db.set_status(sorted(pending), "interrupted", error="KeyboardInterrupt: the search was interrupted",
                              only=("running", "queued"))
                _abandon(study, {t.number: t._trial_id for t, _, _ in pending.values()})
            progress.close()
        finally:
            _restore_sigint(previous)
        raise SweepInterrupted(plan.id, len(points), spec.samples) from None
    progress.close()
    db.add_sweep(plan.id, plan.name, spec_record, points, out)
    if report:
        result.report = write_sweep_report(db, plan.id, out)
        if verbose:
            print(f"report: {result.report}", file=sys.stderr)
    result.wall_time = time.perf_counter() - t0
    return result


# ---------------------------------------------------------------------------------------------
# the report: Optuna's views, drawn by trainlab's plots


def load_study(journal: str | Path, sweep_id: str):
    """The study of a search from its journal (``None`` when there is no journal)."""
    if not Path(journal).is_file():
        return None
    optuna = import_optuna(verbose=False)
    return optuna.load_study(study_name=sweep_id, storage=open_storage(journal))


def importances(study) -> dict[str, float]:
    """Parameter importances (fANOVA, :func:`optuna.importance.get_param_importances`), summing to 1.

    Over the parameters every complete trial has (a conditional one counts where it exists in all);
    empty with fewer than two complete trials or a single-valued space.
    """
    import optuna
    from optuna.trial import TrialState

    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if len(complete) < 2:
        return {}
    try:
        try:
            evaluator = optuna.importance.FanovaImportanceEvaluator(seed=0)
        except ImportError:  # fANOVA's random forest is scikit-learn's; PED-ANOVA needs numpy only
            evaluator = optuna.importance.PedAnovaImportanceEvaluator()
        return dict(optuna.importance.get_param_importances(study, evaluator=evaluator))
    except (RuntimeError, ValueError, ZeroDivisionError):  # e.g. no parameter present in every trial
        return {}


def search_section(store, sweep_id: str, out: Path, metric: str, mode: str):
    """The report's "Search" section: best value over trials, importances, slices (or ``None``)."""
    from optuna.trial import TrialState

    from trainlab.experiments import plots
    from trainlab.experiments.report import Section

    info = store.sweep(sweep_id)
    folder = Path(info["out_dir"]) if info.get("out_dir") else Path(out)
    study = load_study(folder / JOURNAL, info["id"])
    if study is None:
        return None
    trials = [t for t in study.get_trials(deepcopy=False) if not t.user_attrs.get("interrupted")
              and t.state.is_finished()]
    if not trials:
        return None
    states = {s: sum(t.state == s for t in trials) for s in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)}
    text = [f"{len(trials)} trials: {states[TrialState.COMPLETE]} complete, {states[TrialState.PRUNED]} pruned, "
            f"{states[TrialState.FAIL]} failed; study {study.study_name} in {folder / JOURNAL}."]
    figures = []
    numbers = [t.number for t in trials]
    values = [t.value if t.state == TrialState.COMPLETE else math.nan for t in trials]
    pruned = [(t.number, t.intermediate_values[max(t.intermediate_values)]) for t in trials
              if t.state == TrialState.PRUNED and t.intermediate_values]
    path = plots.plot_search_history(numbers, values, out / "search-history.png", ylabel=metric,
                                     higher_is_better=mode == "max", pruned=pruned)
    figures.append((f"{metric} per trial and the best so far" + (", a grey cross per pruned trial at its last "
                                                                "reported value" if pruned else ""), path))
    imp = importances(study)
    if imp:
        path = plots.plot_importances(imp, out / "search-importances.png", title=f"importance for {metric}")
        figures.append(("parameter importances (fANOVA over the complete trials)", path))
        text.append("Most important: " + ", ".join(f"{k} {v:.2f}" for k, v in list(imp.items())[:3]) + ".")
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    panels = []
    for name in sorted({p for t in complete for p in t.params}, key=lambda p: -imp.get(p, 0.0)):
        have = [t for t in complete if name in t.params]
        dist = have[0].distributions[name]
        log = bool(getattr(dist, "log", False))
        categorical = type(dist).__name__ == "CategoricalDistribution"
        panels.append({"name": name, "x": [t.params[name] for t in have], "y": [t.value for t in have],
                       "trial": [t.number for t in have], "log": log, "categorical": categorical})
    if panels:
        path = plots.plot_slices(panels[:8], out / "search-slices.png", ylabel=metric)
        figures.append((f"{metric} against each parameter, one dot per complete trial (darker: later)", path))
    best = study.best_trial if states[TrialState.COMPLETE] else None
    if best is not None:
        text.append(f"Best trial: {best.number} with {metric} {best.value:.4f} ("
                    + ", ".join(f"{k}={format_value(v)}" for k, v in best.params.items()) + ").")
    return Section("Search", text=text, figures=figures)
