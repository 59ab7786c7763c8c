"""Optimizers on 2-D test functions: their paths, steps to tolerance, and the notes' claims as numbers.

The notes describe how the optimizers behave on hard landscapes (notes 000, 002, 004): plain
gradient descent zig-zags and crawls in the "banana-shaped valley" and stalls at saddle points;
momentum smooths the zig-zag; Nesterov's look-ahead overshoots less; Adagrad's step dies while
RMSprop keeps moving. :func:`run` puts chosen optimizers on one function from one start and
returns each :class:`Trajectory` (path, losses and the measures those claims are about);
:func:`table` prints them side by side and :func:`notes_claims` checks the claims.
``trainlab trajectories`` does the same from the command line and draws the paths on a contour
plot (:func:`trainlab.experiments.plots.plot_trajectories`).

Optimizers are named as in configs (``catalog.OPTIMIZERS`` with keyword arguments) or by preset:
``gd``, ``momentum`` (EMA form, β = 0.9 — the notes' v = βv + (1 − β)g, so its steps have the
same size as GD's and the comparison is fair), ``nesterov`` (the same with the true look-ahead of
Goodfellow Alg. 8.3), ``adagrad``, ``rmsprop``, ``adam``, ``nadam`` (at Adam's learning rate).
Each function carries a learning rate per preset (:attr:`TestFunction.lrs`), chosen so that every
method makes progress.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

import torch
from torch import Tensor

__all__ = ["TestFunction", "FUNCTIONS", "PRESETS", "Trajectory", "run", "run_optimizer", "table",
           "notes_claims", "Claim", "resolve_function", "resolve_optimizer"]


def _rosenbrock(v: Tensor) -> Tensor:
    x, y = v[0], v[1]
    return (1 - x) ** 2 + 100 * (y - x ** 2) ** 2


def _beale(v: Tensor) -> Tensor:
    x, y = v[0], v[1]
    return (1.5 - x + x * y) ** 2 + (2.25 - x + x * y ** 2) ** 2 + (2.625 - x + x * y ** 3) ** 2


def _saddle(v: Tensor) -> Tensor:
    return v[0] ** 2 - v[1] ** 2


def _ill_conditioned(v: Tensor) -> Tensor:
    # curvatures 1 and 50: a long, narrow valley along x
    return 0.5 * (v[0] ** 2 + 50 * v[1] ** 2)


@dataclass(frozen=True)
class TestFunction:
    """A 2-D test function with a start, its minimum (``None`` when unbounded below) and plot bounds.

    ``f`` maps a tensor whose first axis holds (x, y) to f(x, y) (so it also evaluates a grid of
    shape (2, H, W) at once); ``lrs`` is the learning rate of each preset on this function;
    ``steps`` the default number of steps; ``escape`` (saddle only): the path has escaped once
    f ≤ −escape.
    """

    __test__ = False  # not a pytest class

    name: str
    f: Callable[[Tensor], Tensor]
    start: tuple[float, float]
    minimum: tuple[float, float] | None
    bounds: tuple[tuple[float, float], tuple[float, float]]
    lrs: Mapping[str, float]
    steps: int
    description: str
    log_levels: bool = True
    escape: float | None = None

    def value(self, xy: Sequence[float] | Tensor) -> float:
        return float(self.f(torch.as_tensor(xy, dtype=torch.float64)))

    @property
    def f_min(self) -> float | None:
        return None if self.minimum is None else self.value(self.minimum)

    def done(self, xy: Tensor, fx: float, tol: float) -> bool:
        """Reached: f − f* ≤ tol (or, for the saddle, escaped: f ≤ −escape)."""
        if self.minimum is None:
            return fx <= -(self.escape or 1.0)
        return fx - self.f_min <= tol


FUNCTIONS: dict[str, TestFunction] = {
    "rosenbrock": TestFunction(
        "rosenbrock", _rosenbrock, (-1.2, 1.0), (1.0, 1.0), ((-2.0, 2.0), (-1.0, 3.0)),
        {"gd": 1.5e-3, "momentum": 1.5e-3, "nesterov": 1.5e-3, "adagrad": 0.5, "rmsprop": 1e-2, "adam": 5e-2, "nadam": 5e-2},
        3000, "(1 − x)² + 100(y − x²)²: the notes' banana-shaped valley; minimum 0 at (1, 1)"),
    "beale": TestFunction(
        "beale", _beale, (1.0, 1.5), (3.0, 0.5), ((-1.0, 4.5), (-1.5, 2.0)),
        {"gd": 1e-2, "momentum": 1e-2, "nesterov": 1e-2, "adagrad": 0.5, "rmsprop": 1e-2, "adam": 5e-2, "nadam": 5e-2},
        3000, "Beale's function: flat plateaus and steep walls; minimum 0 at (3, 0.5)"),
    "saddle": TestFunction(
        "saddle", _saddle, (1.0, 1e-3), None, ((-1.5, 1.5), (-1.5, 1.5)),
        # the momentum presets at 10× GD's lr: PyTorch's momentum 0.9 at lr 0.01 (see module docs)
        {"gd": 1e-2, "momentum": 1e-1, "nesterov": 1e-1, "adagrad": 1e-2, "rmsprop": 1e-2, "adam": 1e-2, "nadam": 1e-2},
        500, "x² − y²: a saddle at 0; the start sits almost on the attracting x-axis", log_levels=False,
        escape=1.0),
    "quadratic": TestFunction(
        "quadratic", _ill_conditioned, (-4.0, 1.0), (0.0, 0.0), ((-4.5, 4.5), (-1.5, 1.5)),
        {"gd": 3.6e-2, "momentum": 3.6e-2, "nesterov": 3.6e-2, "adagrad": 0.5, "rmsprop": 5e-2, "adam": 5e-2, "nadam": 5e-2},
        300, "½(x² + 50y²): an ill-conditioned bowl (condition number 50); GD at lr·50 = 1.8 zig-zags"),
}

#: preset label -> (catalog optimizer name, keyword arguments other than lr)
PRESETS: dict[str, tuple[str, dict]] = {
    "gd": ("sgd", {}),
    "momentum": ("sgd", {"momentum": 0.9, "momentum_form": "ema"}),
    "nesterov": ("sgd", {"momentum": 0.9, "momentum_form": "ema", "nesterov": True,
                         "nesterov_form": "lookahead"}),
    "adagrad": ("adagrad", {}),
    "rmsprop": ("rmsprop", {}),
    "adam": ("adam", {}),
    # Dozat's NAdam at Adam's learning rate: the notes' "slightly faster, less overshoot" (004)
    "nadam": ("nadam", {}),
}


def resolve_function(function: str | TestFunction) -> TestFunction:
    if isinstance(function, TestFunction):
        return function
    if function not in FUNCTIONS:
        raise ValueError(f"unknown test function {function!r}; choose one of {', '.join(FUNCTIONS)}")
    return FUNCTIONS[function]


def resolve_optimizer(spec, function: TestFunction) -> Callable[[list[Tensor]], torch.optim.Optimizer]:
    """An optimizer factory from a preset name, ``(catalog name, kwargs)`` or a callable(params)."""
    from trainlab.experiments import catalog

    if callable(spec) and not isinstance(spec, str):
        return spec
    if isinstance(spec, str):
        if spec in PRESETS:
            name, kwargs = PRESETS[spec]
            kwargs = {**kwargs, "lr": function.lrs[spec]}
        else:
            name, kwargs = spec, {}
    else:
        name, kwargs = spec
        kwargs = dict(kwargs)
    if name in PRESETS and name not in catalog.OPTIMIZERS:
        base, extra = PRESETS[name]
        kwargs = {**extra, "lr": function.lrs[name], **kwargs}
        name = base
    if name not in catalog.OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; use a preset ({', '.join(PRESETS)}) or a name from "
                         f"{', '.join(sorted(catalog.OPTIMIZERS))}")
    return lambda params: catalog.build_optimizer(params, name, kwargs, [])


@dataclass
class Trajectory:
    """One optimizer's path on one function.

    ``path`` is (T + 1, 2) (the start, then the point after each step); ``losses`` f along it;
    ``evaluations`` the number of function evaluations (line searches and look-aheads cost extra);
    ``steps_to_tol`` the first step at which the function counts as reached (``None`` if never);
    ``stopped`` why the run ended early ("diverged", "left the plot") or ``""``.
    """

    label: str
    function: str
    path: Tensor
    losses: Tensor
    evaluations: int
    steps_to_tol: int | None
    stopped: str = ""
    extras: dict = field(default_factory=dict)

    @property
    def steps(self) -> Tensor:
        """The (T, 2) displacement of every step."""
        return self.path[1:] - self.path[:-1]

    def step_lengths(self) -> Tensor:
        return self.steps.norm(dim=1)

    def reversals(self) -> int:
        """Steps that turn back by more than 90° from the previous one: the zig-zag count."""
        d = self.steps
        return int(((d[1:] * d[:-1]).sum(dim=1) < 0).sum())

    def overshoot(self, minimum: Sequence[float] | None = None) -> float:
        """How far the path swings past the minimum, relative to where it started (max over the
        two coordinates of the largest excursion beyond x*, divided by |x₀ − x*|)."""
        fn = FUNCTIONS.get(self.function)
        minimum = minimum if minimum is not None else (fn.minimum if fn else None)
        if minimum is None:
            return float("nan")
        m = torch.tensor(minimum, dtype=self.path.dtype)
        x0, worst = self.path[0], 0.0
        for i in range(2):
            gap = float(x0[i] - m[i])
            if gap != 0.0:
                beyond = (-(self.path[:, i] - m[i]) * math.copysign(1.0, gap)).clamp(min=0).max()
                worst = max(worst, float(beyond) / abs(gap))
        return worst

    def step_ratio(self, k: int = 10) -> float:
        """Mean length of the last k steps over that of the first k: ≪ 1 when the steps die."""
        lengths = self.step_lengths()
        if len(lengths) < 2 * k:
            k = max(len(lengths) // 2, 1)
        first = float(lengths[:k].mean())
        return float(lengths[-k:].mean()) / first if first > 0 else float("nan")

    @property
    def final(self) -> Tensor:
        return self.path[-1]

    @property
    def final_loss(self) -> float:
        return float(self.losses[-1])


def run_optimizer(function: str | TestFunction, make_optimizer, *, label: str = "", start=None,
                  steps: int | None = None, tol: float = 1e-6, stop_at_tol: bool = False) -> Trajectory:
    """Run one optimizer from ``start`` (default: the function's) for ``steps`` steps.

    ``make_optimizer`` is a preset name, ``(catalog name, kwargs)`` or ``callable(params)``. Every
    step goes through a closure (so L-BFGS, CG, Newton and the true Nesterov look-ahead work); the
    run stops early if f becomes non-finite or the point leaves 100× the plot box, and with
    ``stop_at_tol`` once the tolerance is reached.
    """
    fn = resolve_function(function)
    factory = resolve_optimizer(make_optimizer, fn)
    steps = fn.steps if steps is None else steps
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    xy = torch.nn.Parameter(torch.tensor(start if start is not None else fn.start, dtype=torch.float64))
    opt = factory([xy])
    evaluations = 0

    def closure(backward: bool = True):
        nonlocal evaluations
        evaluations += 1
        if backward:
            opt.zero_grad()
        loss = fn.f(xy)
        if backward:
            loss.backward()
        return loss

    span = max(hi - lo for lo, hi in fn.bounds)
    path, losses = [xy.detach().clone()], [fn.value(xy.detach())]
    reached = 0 if fn.done(path[0], losses[0], tol) else None
    stopped = ""
    for t in range(1, steps + 1):
        opt.step(closure)
        point = xy.detach().clone()
        value = fn.value(point)
        if not (math.isfinite(value) and torch.isfinite(point).all()):
            stopped = "diverged"
            break
        path.append(point)
        losses.append(value)
        if reached is None and fn.done(point, value, tol):
            reached = t
            if stop_at_tol:
                break
        if point.abs().max() > 100 * span:
            stopped = "left the plot"
            break
    return Trajectory(label or (make_optimizer if isinstance(make_optimizer, str) else "optimizer"), fn.name,
                      torch.stack(path), torch.tensor(losses, dtype=torch.float64), evaluations, reached, stopped)


def run(function: str | TestFunction, optimizers: Sequence | Mapping | None = None, *, start=None,
        steps: int | None = None, tol: float = 1e-6) -> dict[str, Trajectory]:
    """Run several optimizers from one start on one function; ``{label: Trajectory}``.

    ``optimizers``: preset names, or a mapping label → preset / ``(name, kwargs)`` / callable.
    Default: all presets.
    """
    fn = resolve_function(function)
    if optimizers is None:
        optimizers = list(PRESETS)
    items = optimizers.items() if isinstance(optimizers, Mapping) else [(o, o) for o in optimizers]
    return {label: run_optimizer(fn, spec, label=label, start=start, steps=steps, tol=tol)
            for label, spec in items}


def table(results: Mapping[str, Trajectory], tol: float = 1e-6) -> str:
    """A text table: final f, distance to the minimum, steps to tolerance (or to escape), zig-zags,
    overshoot, late/early step length, function evaluations."""
    if not results:
        return "(no trajectories)"
    first = next(iter(results.values()))
    fn = FUNCTIONS.get(first.function)
    saddle = fn is not None and fn.minimum is None
    reach = "steps to escape" if saddle else f"steps to f−f*≤{tol:g}"
    header = ["optimizer", "final f", "dist to min", reach, "reversals", "overshoot", "step ratio", "evals"]
    rows = []
    for label, tr in results.items():
        dist = "—" if saddle or fn is None else f"{float((tr.final - torch.tensor(fn.minimum, dtype=tr.final.dtype)).norm()):.3g}"
        reached = str(tr.steps_to_tol) if tr.steps_to_tol is not None else f"> {len(tr.losses) - 1}"
        if tr.stopped == "diverged":
            reached += " (diverged)"
        rows.append([label, f"{tr.final_loss:.3g}", dist, reached, str(tr.reversals()),
                     "—" if saddle else f"{tr.overshoot():.3f}", f"{tr.step_ratio():.2g}", str(tr.evaluations)])
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    return "\n".join([line(header), line(["-" * w for w in widths])] + [line(r) for r in rows])


@dataclass
class Claim:
    """A claim of the notes, whether the measured trajectories bear it out, and the numbers."""

    text: str
    holds: bool
    evidence: str
    source: str


def notes_claims(scale: float = 1.0) -> list[Claim]:
    """Run the presets where the notes make their claims and check each one.

    ``scale`` shortens the runs (e.g. 0.5 for half the steps). Returns one :class:`Claim` each for:
    momentum oscillates less in the valley; NAG overshoots less than momentum; Adagrad's step dies
    while RMSprop keeps moving; plain GD crawls at the saddle.
    """
    def steps(fn):
        return max(int(FUNCTIONS[fn].steps * scale), 20)

    claims = []
    valley = {name: run("quadratic", [name], steps=steps("quadratic"))[name] for name in ("gd", "momentum", "nesterov")}
    banana = run("rosenbrock", ["gd", "momentum", "adagrad", "rmsprop"], steps=steps("rosenbrock"))
    rev_q = {k: v.reversals() for k, v in valley.items()}
    rev_r = {k: banana[k].reversals() for k in ("gd", "momentum")}
    claims.append(Claim(
        "momentum oscillates less in the valley than plain gradient descent",
        rev_q["momentum"] < rev_q["gd"] and rev_r["momentum"] < rev_r["gd"],
        f"direction reversals — ill-conditioned quadratic: gd {rev_q['gd']}, momentum {rev_q['momentum']}; "
        f"Rosenbrock: gd {rev_r['gd']}, momentum {rev_r['momentum']}",
        "notes 000 (banana-shaped valleys), 004 (smooth out oscillations)"))
    over = {k: v.overshoot() for k, v in valley.items()}
    claims.append(Claim(
        "Nesterov's look-ahead overshoots less than momentum",
        over["nesterov"] < over["momentum"],
        f"swing past the minimum (fraction of the start distance) on the quadratic: momentum "
        f"{over['momentum']:.3f}, nesterov {over['nesterov']:.3f}",
        "notes 002 (less overshooting), 004 (NAG dampens)"))
    ratio = {k: banana[k].step_ratio() for k in ("adagrad", "rmsprop")}
    claims.append(Claim(
        "Adagrad's step dies while RMSprop keeps moving",
        ratio["adagrad"] < 0.01 and ratio["rmsprop"] > 0.1,
        f"last/first step length on Rosenbrock: adagrad {ratio['adagrad']:.2g} (final f "
        f"{banana['adagrad'].final_loss:.3g}), rmsprop {ratio['rmsprop']:.2g}",
        "notes 001, 003, 004 (learning rate shrinks / dies; RMSprop fixes it)"))
    saddle = run("saddle", ["gd", "momentum", "rmsprop", "adam"], steps=steps("saddle"))
    esc = {k: v.steps_to_tol for k, v in saddle.items()}
    others = [v for k, v in esc.items() if k != "gd"]
    gd_steps = esc["gd"] if esc["gd"] is not None else math.inf
    claims.append(Claim(
        "plain gradient descent crawls at the saddle",
        all(v is not None and v < gd_steps for v in others),
        "steps to escape x² − y² from (1, 0.001): " + ", ".join(
            f"{k} {v if v is not None else '> ' + str(steps('saddle'))}" for k, v in esc.items()),
        "notes 000 (stuck in saddle points), 002/003 (saddle point problem)"))
    return claims


# ------------------------------------------------------------------------------------------------
# command line
# ------------------------------------------------------------------------------------------------

def parse_spec(spec: str):
    """``"adam:lr=0.1,amsgrad=true"`` → ``("adam", {"lr": 0.1, "amsgrad": True})`` (values as YAML)."""
    import yaml

    name, _, rest = spec.partition(":")
    kwargs = {}
    for item in filter(None, rest.split(",")):
        key, eq, value = item.partition("=")
        if not eq:
            raise ValueError(f"optimizer argument {item!r} in {spec!r} is not key=value")
        kwargs[key.strip()] = yaml.safe_load(value)
    return name.strip(), kwargs


def cli_trajectories(args) -> int:
    """``trainlab trajectories``: tables (and PNGs) per function; with ``--claims`` the verdicts."""
    from pathlib import Path

    if args.claims:
        ok = True
        for c in notes_claims():
            ok &= c.holds
            print(f"[{'PASS' if c.holds else 'FAIL'}] {c.text}\n       {c.evidence}\n       ({c.source})")
        return 0 if ok else 1
    functions = args.function or list(FUNCTIONS)
    start = tuple(float(v) for v in args.start.split(",")) if args.start else None
    if start is not None and len(start) != 2:
        raise SystemExit(f"--start takes two numbers X,Y, got {args.start!r}")
    for name in functions:
        fn = resolve_function(name)
        specs = {}
        for spec in args.optimizer or list(PRESETS):
            label, kwargs = parse_spec(spec)
            if label in PRESETS:
                base, extra = PRESETS[label]
                specs[spec] = (base, {**extra, "lr": fn.lrs[label], **kwargs})
            else:
                specs[spec] = (label, kwargs)
        results = run(fn, specs, start=start, steps=args.steps, tol=args.tol)
        print(f"\n{fn.name}: {fn.description}\nstart {tuple(results[next(iter(results))].path[0].tolist())}")
        print(table(results, args.tol))
        if not args.no_plot:
            from trainlab.experiments.plots import plot_trajectories
            out = plot_trajectories(results, Path(args.out) / f"{fn.name}.png")
            print(f"plot: {out}")
    return 0
