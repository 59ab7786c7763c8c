"""Studies: YAML files that reproduce a claim of the notes and end with checked assertions.

A study names a *procedure* from an allow-list (:data:`trainlab.experiments.study_procedures.PROCEDURES`;
nothing in a study file is ever executed as code), gives its parameters, a ``quick`` override (few
epochs, small data: the version the test suite runs) and optionally a ``full`` override, states the
claim in words with the notes it comes from, and lists named assertions with thresholds::

    name: cross-entropy-example
    title: The notes' worked sparse categorical cross-entropy example
    claim: For labels (3, 7, 1, 9) and the notes' four softmax rows the loss is about 0.865.
    notes: ["002: Calculation of Sparse Categorical Cross-Entropy Loss Using Sample MNIST Data"]
    procedure: cross_entropy_example
    params: {labels: [3, 7, 1, 9], probabilities: [[...], ...]}
    quick: {}
    assertions:
      - {name: "loss is 0.865", metric: loss, op: approx, value: 0.865, tol: 0.001}

An assertion compares one number the procedure reports (``metric``) with a threshold (``value``)
or with another reported number (``other``, times ``scale``): ``metric op scale·other``. The
operators are ``<``, ``<=``, ``>``, ``>=``, ``==`` and ``approx`` (``|metric − value| <= tol``).
``quick_value`` replaces ``value`` in quick mode (a two-epoch run cannot reach 99 %, but it can
reach 80 %), and ``modes: [full]`` limits an assertion to the full run.

:func:`run_study` resolves the parameters, runs the procedure, checks every assertion and writes a
run folder: ``study.yaml`` (the resolved study), ``results.json`` (every metric, every assertion
with its numbers and PASS/FAIL, the wall time), the figures as PNG, and a self-contained
``report.html``.

Where study files are found (first match wins): an explicit directory (``trainlab study --dir``),
the environment variable ``TRAINLAB_STUDIES``, the repository's ``studies/`` directory next to the
source tree (an editable install or a checkout), and the copy shipped inside the package
(``trainlab/studies``, present in wheels).
"""
from __future__ import annotations

import copy
import html
import math
import os
import platform
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Callable, Literal

import torch
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from trainlab.experiments.config import ConfigError, _format_errors, check_kwargs
from trainlab.experiments.report import Section, write_report
from trainlab.experiments.runner import fresh_dir
from trainlab.train.checkpoint import atomic_write_bytes, atomic_write_json

Mode = Literal["quick", "full"]

OPS: dict[str, Callable[[float, float], bool]] = {
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
    "==": lambda a, b: a == b,
}


class StudyError(ConfigError):
    """A study file is invalid or cannot be found; the message names the field and the fix."""


# ---------------------------------------------------------------------------------------------
# the study file


class Assertion(BaseModel):
    """One named check: ``metric op value`` or ``metric op scale·other``."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1)
    metric: str = Field(min_length=1, description="a number the procedure reports")
    op: Literal["<", "<=", ">", ">=", "==", "approx"]
    value: float | None = Field(default=None, description="the threshold")
    other: str | None = Field(default=None, description="compare with this reported number instead")
    scale: float = Field(default=1.0, description="multiplies `other`")
    tol: float | None = Field(default=None, ge=0, description="for op approx: |metric - value| <= tol")
    quick_value: float | None = Field(default=None, description="the threshold in quick mode")
    modes: list[Mode] = Field(default_factory=lambda: ["quick", "full"])

    @model_validator(mode="after")
    def _one_reference(self):
        if (self.value is None) == (self.other is None):
            raise ValueError("give exactly one of `value` (a threshold) or `other` (a metric to compare with)")
        if self.op == "approx":
            if self.tol is None:
                raise ValueError("op approx needs `tol` (the allowed absolute difference)")
        elif self.tol is not None:
            raise ValueError("`tol` only applies to op approx")
        if self.quick_value is not None and self.value is None:
            raise ValueError("`quick_value` replaces `value`; it cannot be used with `other`")
        if not self.modes:
            raise ValueError("`modes` must list quick, full or both")
        return self

    def threshold(self, mode: Mode) -> float | None:
        if mode == "quick" and self.quick_value is not None:
            return self.quick_value
        return self.value


class Study(BaseModel):
    """A study file, validated. ``params`` are checked against the procedure's signature."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")
    title: str = Field(min_length=1)
    claim: str = Field(min_length=1, description="the claim of the notes, in words")
    notes: list[str] = Field(min_length=1, description="where in the notes the claim comes from")
    procedure: str
    seed: int = 0
    params: dict[str, Any] = Field(default_factory=dict)
    quick: dict[str, Any] = Field(default_factory=dict, description="overrides of params for --quick")
    full: dict[str, Any] = Field(default_factory=dict, description="overrides of params for the full run")
    assertions: list[Assertion] = Field(min_length=1)
    threads: int | dict[Mode, int] | None = Field(default=None, description=(
        "torch CPU threads while the study runs, or one count per mode ({quick: 1, full: 2}); 1 suits "
        "toy nets: small ops gain nothing from more threads and suffer most when the cores are shared; "
        "default: leave torch's setting"))
    runtime: dict[str, str] = Field(default_factory=dict,
                                    description="expected wall time per mode, e.g. {quick: 5 s, full: 2 min}")

    @field_validator("threads")
    @classmethod
    def _positive_threads(cls, v):
        counts = v.values() if isinstance(v, dict) else [] if v is None else [v]
        if any(n < 1 for n in counts):
            raise ValueError(f"threads must be >= 1, got {v}")
        return v

    @field_validator("procedure")
    @classmethod
    def _known(cls, v):
        from trainlab.experiments.study_procedures import PROCEDURES

        if v not in PROCEDURES:
            raise ValueError(f"unknown procedure {v!r}; allowed: {', '.join(sorted(PROCEDURES))}")
        return v

    @model_validator(mode="after")
    def _check_params(self):
        from trainlab.experiments.study_procedures import PROCEDURES

        fn = PROCEDURES[self.procedure]
        for section in ("params", "quick", "full"):
            try:
                check_kwargs(fn, getattr(self, section), fixed=("ctx",), what=f"procedure {self.procedure!r}")
            except ValueError as err:
                # config.py's "@key@message" marker puts the key into the field path: params.key
                raise ValueError(f"@{section}.{str(err)[1:]}") from None
        names = [a.name for a in self.assertions]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"assertion names must be unique; repeated: {', '.join(sorted(dup))}")
        return self

    def resolved_params(self, mode: Mode) -> dict[str, Any]:
        """``params`` with the ``quick`` (or ``full``) override merged in (nested dicts merge)."""
        return deep_merge(self.params, self.quick if mode == "quick" else self.full)


def deep_merge(base: dict, override: dict) -> dict:
    """A copy of ``base`` with ``override`` applied; dicts merge key by key, anything else replaces."""
    out = copy.deepcopy(base)
    for k, v in override.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def parse_study(data: dict, source: str = "study") -> Study:
    """Validate a dict (loaded YAML) into a :class:`Study`; errors name each field by its path."""
    if not isinstance(data, dict):
        raise StudyError(f"{source}: a study must be a mapping, got {type(data).__name__}")
    try:
        return Study.model_validate(data)
    except ValidationError as err:
        raise StudyError(f"{source}: " + _format_errors(err).replace("invalid config", "invalid study", 1)) from None


def load_study(path: str | Path) -> Study:
    """Read and validate one study file; its ``name`` must match the file name."""
    path = Path(path)
    if not path.is_file():
        raise StudyError(f"study file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise StudyError(f"{path} is not valid YAML: {err}") from None
    study = parse_study(data, str(path.name))
    if study.name != path.stem:
        raise StudyError(f"{path.name}: name {study.name!r} must match the file name {path.stem!r}")
    return study


# ---------------------------------------------------------------------------------------------
# finding study files


def _repo_studies_dir() -> Path:
    # src/trainlab/experiments/studies.py -> the repository root holds studies/
    return Path(__file__).resolve().parents[3] / "studies"


def study_dirs(directory: str | Path | None = None) -> list[Path]:
    """The directories searched for study files, in order (only those that exist)."""
    candidates: list[Path] = []
    if directory is not None:
        d = Path(directory)
        if not d.is_dir():
            raise StudyError(f"study directory {d} does not exist")
        return [d]
    if os.environ.get("TRAINLAB_STUDIES"):
        candidates.append(Path(os.environ["TRAINLAB_STUDIES"]))
    candidates.append(_repo_studies_dir())
    try:
        packaged = resources.files("trainlab") / "studies"
        candidates.append(Path(str(packaged)))
    except (ModuleNotFoundError, TypeError):
        pass
    seen, out = set(), []
    for d in candidates:
        if d.is_dir() and d.resolve() not in seen:
            seen.add(d.resolve())
            out.append(d)
    return out


def list_studies(directory: str | Path | None = None) -> dict[str, Path]:
    """Study name -> file, from the first directory of :func:`study_dirs` that has any."""
    for d in study_dirs(directory):
        files = sorted(d.glob("*.yaml"))
        if files:
            return {p.stem: p for p in files}
    return {}


def find_study(name: str, directory: str | Path | None = None) -> Path:
    """The file of study ``name`` (or ``name`` itself when it is a path to a YAML file)."""
    as_path = Path(name)
    if as_path.suffix in (".yaml", ".yml") and as_path.is_file():
        return as_path
    found = list_studies(directory)
    if name not in found:
        where = ", ".join(str(d) for d in study_dirs(directory)) or "(no study directory found)"
        raise StudyError(f"unknown study {name!r}; known: {', '.join(sorted(found)) or '(none)'} "
                         f"(searched {where}; use --dir DIR for another directory)")
    return found[name]


# ---------------------------------------------------------------------------------------------
# running


@dataclass
class StudyContext:
    """What a procedure gets besides its parameters: where to write, the seed, the mode."""

    out_dir: Path
    seed: int = 0
    mode: Mode = "full"
    verbose: bool = False

    @property
    def quick(self) -> bool:
        return self.mode == "quick"

    def log(self, msg: str) -> None:
        if self.verbose:
            print(f"  {msg}", flush=True)

    def path(self, name: str) -> Path:
        """A file in the run folder (figures and data a procedure writes)."""
        self.out_dir.mkdir(parents=True, exist_ok=True)
        return self.out_dir / name


@dataclass
class Outcome:
    """What a procedure returns: named numbers (the assertions read these), report sections, data."""

    metrics: dict[str, float]
    sections: list[Section] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)  # JSON-able extras written to results.json


@dataclass
class Check:
    """The outcome of one assertion."""

    name: str
    expression: str
    actual: float | None
    reference: float | None
    passed: bool | None  # None: not checked in this mode
    note: str = ""

    @property
    def status(self) -> str:
        return {True: "PASS", False: "FAIL", None: "SKIP"}[self.passed]


@dataclass
class StudyResult:
    study: Study
    mode: Mode
    params: dict[str, Any]
    metrics: dict[str, float]
    checks: list[Check]
    wall_time: float
    run_dir: Path | None = None
    threads: int | None = None  # torch threads the procedure ran with

    @property
    def passed(self) -> bool:
        return all(c.passed is not False for c in self.checks)


def evaluate_assertion(a: Assertion, metrics: dict[str, float], mode: Mode) -> Check:
    """Check ``a`` against the reported ``metrics`` (a missing metric fails, naming what exists)."""
    ref_text = f"{a.scale:g}·{a.other}" if a.other is not None and a.scale != 1 else (a.other or "")
    if mode not in a.modes:
        threshold = a.threshold(mode)
        expr = f"{a.metric} {a.op} {ref_text or threshold}"
        return Check(a.name, expr, metrics.get(a.metric), None, None, f"checked in {', '.join(a.modes)} mode only")
    if a.metric not in metrics:
        return Check(a.name, a.metric, None, None, False,
                     f"the procedure reported no metric {a.metric!r}; it reported: {', '.join(sorted(metrics))}")
    actual = float(metrics[a.metric])
    if a.other is not None:
        if a.other not in metrics:
            return Check(a.name, a.other, actual, None, False,
                         f"the procedure reported no metric {a.other!r}; it reported: {', '.join(sorted(metrics))}")
        reference = a.scale * float(metrics[a.other])
    else:
        reference = float(a.threshold(mode))
    if a.op == "approx":
        expr = f"|{a.metric} − {ref_text or f'{reference:g}'}| ≤ {a.tol:g}"
        ok = math.isfinite(actual) and abs(actual - reference) <= a.tol
    else:
        expr = f"{a.metric} {a.op} {ref_text or f'{reference:g}'}"
        ok = OPS[a.op](actual, reference)
    # NaN compares False everywhere, so a diverged run can never pass by accident
    return Check(a.name, expr, actual, reference, bool(ok))


def default_study_dir(name: str, mode: Mode, root: str | Path = "runs") -> Path:
    return fresh_dir(f"study-{name}{'-quick' if mode == 'quick' else ''}", root)


def run_study(study: str | Path | Study, *, quick: bool = False, out: str | Path | None = None,
              directory: str | Path | None = None, verbose: bool = False,
              overrides: dict[str, Any] | None = None, threads: int | None = None) -> StudyResult:
    """Run a study (by name, file or :class:`Study`), check its assertions, write its run folder.

    Args:
        study: a study name (looked up with :func:`find_study`), a YAML path, or a :class:`Study`.
        quick: run the ``quick`` version (small data, few epochs) instead of the full one.
        out: the run folder; default ``runs/study-<name>[-quick]-<timestamp>``.
        directory: where to look the name up (see :func:`study_dirs`).
        verbose: print progress.
        overrides: parameters merged over the resolved ones (checked against the procedure).
        threads: torch threads while it runs, instead of the study file's ``threads``.
    """
    from trainlab.experiments.study_procedures import PROCEDURES

    if threads is not None and threads < 1:
        raise StudyError(f"threads must be >= 1, got {threads}")
    if not isinstance(study, Study):
        study = load_study(find_study(str(study), directory))
    mode: Mode = "quick" if quick else "full"
    params = study.resolved_params(mode)
    if overrides:
        params = deep_merge(params, overrides)
    fn = PROCEDURES[study.procedure]
    try:
        check_kwargs(fn, params, fixed=("ctx",), what=f"procedure {study.procedure!r}")
    except ValueError as err:
        raise StudyError(f"{study.name}: {str(err).lstrip('@').replace('@', ': ', 1)}") from None
    run_dir = Path(out) if out is not None else default_study_dir(study.name, mode)
    run_dir.mkdir(parents=True, exist_ok=True)
    if verbose:
        print(f"study {study.name} ({mode}): {study.title}", flush=True)
    ctx = StudyContext(run_dir, seed=study.seed, mode=mode, verbose=verbose)
    torch.manual_seed(study.seed)
    wanted = threads if threads is not None else (
        study.threads.get(mode) if isinstance(study.threads, dict) else study.threads)
    threads = torch.get_num_threads()
    if wanted is not None:
        torch.set_num_threads(wanted)
    used_threads = torch.get_num_threads()
    t0 = time.perf_counter()
    try:
        outcome = fn(ctx, **params)
    finally:
        torch.set_num_threads(threads)
    wall = time.perf_counter() - t0
    metrics = {k: float(v) for k, v in outcome.metrics.items()}
    checks = [evaluate_assertion(a, metrics, mode) for a in study.assertions]
    result = StudyResult(study, mode, params, metrics, checks, wall, run_dir, used_threads)
    _write_study_folder(result, outcome)
    if verbose:
        for c in checks:
            print(f"  {c.status}  {c.name}: {_check_numbers(c)}", flush=True)
        print(f"study {study.name}: {'PASS' if result.passed else 'FAIL'} in {wall:.1f} s; "
              f"report: {run_dir / 'report.html'}", flush=True)
    return result


def _fmt(v: float | None) -> str:
    if v is None:
        return "–"
    if v != 0 and (abs(v) < 1e-3 or abs(v) >= 1e5):
        return f"{v:.3e}"
    return f"{v:.4f}"


def _check_numbers(c: Check) -> str:
    text = f"{c.expression} (measured {_fmt(c.actual)}"
    if c.reference is not None:
        text += f", reference {_fmt(c.reference)}"
    text += ")"
    return text + (f" — {c.note}" if c.note else "")


def _machine(threads: int | None = None) -> str:
    threads = threads if threads is not None else torch.get_num_threads()
    return f"{platform.machine()}, {os.cpu_count()} CPU cores, torch {torch.__version__}, {threads} torch threads"


def _write_study_folder(result: StudyResult, outcome: Outcome) -> None:
    study, run_dir = result.study, result.run_dir
    assert run_dir is not None
    resolved = study.model_dump(mode="json")
    resolved["resolved_params"] = result.params
    resolved["mode"] = result.mode
    atomic_write_bytes(run_dir / "study.yaml", yaml.safe_dump(resolved, sort_keys=False).encode())
    atomic_write_json(run_dir / "results.json", {
        "study": study.name, "mode": result.mode, "passed": result.passed, "wall_time": result.wall_time,
        "machine": _machine(result.threads),
        "assertions": [{"name": c.name, "expression": c.expression, "actual": c.actual,
                        "reference": c.reference, "status": c.status, "note": c.note} for c in result.checks],
        "metrics": result.metrics, "params": result.params, "data": outcome.data,
    })
    verdict = "PASS" if result.passed else "FAIL"
    counts = (f"{sum(c.passed is True for c in result.checks)} of {len(result.checks)} assertions pass"
              + (f", {sum(c.passed is None for c in result.checks)} not checked in {result.mode} mode"
                 if any(c.passed is None for c in result.checks) else ""))
    head = Section(
        f"Verdict: {verdict}",
        text=[f"<b class='{verdict.lower()}'>{verdict}</b>: {html.escape(counts)}.",
              f"Claim: {study.claim.strip()}",
              "From the notes: " + "; ".join(study.notes),
              f"Mode: {result.mode}; wall time {result.wall_time:.1f} s on {_machine(result.threads)}.",
              _checks_table(result.checks)],
        css_class="ok" if result.passed else "verdicts")
    numbers = Section("Every reported number", table=(("metric", "value"),
                                                      [(k, v) for k, v in sorted(result.metrics.items())]))
    setup = Section("Resolved study", pre=yaml.safe_dump(resolved, sort_keys=False))
    write_report(run_dir / "report.html", f"trainlab study: {study.title}",
                 [head, *outcome.sections, numbers, setup], subtitle=f"{study.name} ({result.mode})")


def _checks_table(checks: list[Check]) -> str:
    # raw HTML (the report passes text starting with "<" through) so the status can carry a colour
    header = ("status", "assertion", "check", "measured", "reference", "note")
    out = ["<table><tr>" + "".join(f"<th>{h}</th>" for h in header) + "</tr>"]
    for c in checks:
        cells = [f"<span class='{c.status.lower()}'>{c.status}</span>"] + [
            html.escape(str(v)) for v in (c.name, c.expression, _fmt(c.actual), _fmt(c.reference), c.note)]
        out.append("<tr>" + "".join(f"<td>{v}</td>" for v in cells) + "</tr>")
    return "".join(out) + "</table>"
