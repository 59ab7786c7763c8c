"""One live training run of the playground: a config, its model, stepped by the real fit loop.

A page's settings are a flat mapping (what the URL carries); :func:`config_from_settings` turns
them into a config dict, which :func:`~trainlab.experiments.config.parse_config` validates like
any config file. The live run then builds data, model and optimizer with the runner's
:func:`~trainlab.experiments.runner.build_training` and trains with
:func:`~trainlab.train.loop.fit` in a worker thread; a callback at every batch boundary pauses,
steps, applies live changes and publishes frames (decision boundary, losses, weights, gradient
norms, dead/saturated units, update ratios, verdicts). So what the page shows is what
``trainlab run`` computes on the copied config.

Live changes (applied between two steps, weights kept): the learning rate (the optimizer's state
is kept), the optimizer, its options and the regularization (the optimizer is rebuilt: its state
restarts), the schedule, the batch size (from the next epoch), the epochs and label smoothing.
Any other setting (data, features, layers, initialization, loss, seed) rebuilds the run.

Race mode trains two live runs in two threads of one process, and torch's global RNG is one per
process: each run holds it (:data:`~trainlab.train.rng.GLOBAL_RNG_LOCK`) from the start of its
build to its first frame, and again through each step with its own generator state swapped in.
So neither run's draws land inside the other's build (both start from the same weights) and each
run draws what it would draw alone (dropout masks included): what ``trainlab run`` draws.
"""
from __future__ import annotations

import base64
import hashlib
import math
import threading
import time
from pathlib import Path
from typing import Callable

import torch
import yaml
from torch import Tensor, nn

from trainlab.data.batches import resolve_batch_size
from trainlab.data.dataset import Dataset
from trainlab.experiments import catalog
from trainlab.experiments.config import ConfigError, parse_config
from trainlab.train.callbacks import Callback, History
from trainlab.train.loop import NonFiniteLossError, evaluate, fit
from trainlab.train.rng import GLOBAL_RNG_LOCK

#: the largest network the page accepts: hidden layers, units per layer (the frame rate falls
#: with the number of units drawn; at these bounds a frame still takes a few milliseconds)
MAX_LAYERS, MAX_UNITS = 8, 64
GRID = 64          # the decision boundary is a GRID × GRID image (one batched forward pass)
UNIT_GRID = 32     # each hidden unit's heatmap: every second grid point
CURVE_POINTS = 200  # a 1-D regression curve
FRAME_INTERVAL = 1 / 40  # at most ~40 frames per second while playing (the goal: 30 at the page)
VERDICT_INTERVAL = 0.5   # seconds between live diagnoses

DATASETS = ("moons", "circles", "spirals", "xor", "blobs", "line", "sine", "ripple", "csv")
REGRESSION = frozenset({"line", "sine", "ripple"})

DEFAULTS: dict = {
    "data": "moons", "n": 400, "noise": 0.15, "classes": 3, "train_ratio": 0.7, "seed": 0,
    "features": "x1,x2", "csv": "",
    "hidden": "8,8", "activation": "tanh", "norm": "none", "dropout": 0.0, "dropout_kind": "dropout",
    "residual": False, "init_weight": "auto", "init_bias": "zeros", "init_options": "",
    "loss": "auto", "label_smoothing": 0.0,
    "optimizer": "sgd", "lr": 0.1, "optimizer_options": "", "schedule": "none", "schedule_options": "",
    "batch_size": "10", "epochs": 200, "l1": 0.0, "l2": 0.0, "decay": 0.0, "clip": 0.0,
}

#: settings that change without a rebuild (the config paths they touch are listed in LIVE_PATHS)
LIVE = frozenset({"optimizer", "lr", "optimizer_options", "schedule", "schedule_options", "batch_size",
                  "epochs", "l1", "l2", "decay", "clip", "label_smoothing"})


class SettingsError(ValueError):
    """A page setting cannot be used; the message names the setting and the fix."""


# ---------------------------------------------------------------------------------------------
# settings -> config


def _options(text, what: str) -> dict:
    """``"momentum: 0.9, nesterov: true"`` (a YAML flow mapping without braces) as a dict."""
    text = str(text or "").strip()
    if not text:
        return {}
    try:
        value = yaml.safe_load("{" + text + "}" if not text.startswith("{") else text)
    except yaml.YAMLError as err:
        raise SettingsError(f"{what}: {text!r} is not 'key: value, ...' ({str(err).splitlines()[0]})") from None
    if not isinstance(value, dict):
        raise SettingsError(f"{what}: give 'key: value, ...', got {text!r}")
    return value


def _number(s: dict, key: str, cast=float, lo: float | None = None, hi: float | None = None):
    raw = s.get(key, DEFAULTS[key])
    try:
        value = cast(raw)
    except (TypeError, ValueError):
        raise SettingsError(f"{key}: {raw!r} is not a number") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise SettingsError(f"{key}: {raw!r} is not a finite number")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise SettingsError(f"{key}: {raw!r} must lie in [{lo}, {hi}]")
    return value


def _flag(value) -> bool:
    return str(value).lower() in ("1", "true", "yes", "on")


def _list(text) -> list[str]:
    return [p.strip() for p in str(text).split(",") if p.strip()]


def normalize(settings: dict | None) -> dict:
    """``settings`` with every missing key at its default and unknown keys refused."""
    settings = dict(settings or {})
    unknown = sorted(set(settings) - set(DEFAULTS))
    if unknown:
        raise SettingsError(f"unknown setting {unknown[0]!r}; known: {', '.join(DEFAULTS)}")
    return {**DEFAULTS, **settings}


def config_from_settings(settings: dict, uploads: dict[str, Path] | None = None) -> dict:
    """The config dict (as a YAML file would hold it) of the page's flat ``settings``."""
    s = normalize(settings)
    name = s["data"]
    if name not in DATASETS:
        raise SettingsError(f"data: unknown data set {name!r}; choose one of {', '.join(DATASETS)}")
    n = _number(s, "n", int, 4, 5000)
    noise = _number(s, "noise", float, 0.0, 5.0)
    if name in ("moons", "circles", "spirals", "xor", "sine", "ripple"):
        data = {"name": name, "n_samples": n, "noise": noise}
        if name == "spirals":
            data["classes"] = _number(s, "classes", int, 2, 10)
    elif name == "blobs":
        data = {"name": "blobs", "n_samples": n, "centers": _number(s, "classes", int, 2, 10),
                "cluster_std": noise * 2, "box": 2.0}
    elif name == "line":
        data = {"name": "line", "n_points": n, "noise": noise}
    else:
        key = str(s["csv"])
        path = (uploads or {}).get(key)
        if path is None:
            raise SettingsError("data: csv needs an uploaded file; choose a CSV file first")
        data = {"name": "csv", "path": str(path), "target": "label"}
    ratio = _number(s, "train_ratio", float, 0.1, 0.9)
    data["split"] = [ratio, round(1 - ratio, 10)]
    raw = ["x1"] if name in ("line", "sine") else ["x1", "x2"]
    features = _list(s["features"]) or raw
    if name in ("line", "sine"):
        features = [f for f in features if "2" not in f] or raw  # 1-D inputs: the x1 columns only
    if features != raw:
        data["input_features"] = features

    hidden = []
    for h in _list(s["hidden"]):
        try:
            hidden.append(int(h))
        except ValueError:
            raise SettingsError(f"hidden: {h!r} is not a number of units; give sizes like '8,8'") from None
    if len(hidden) > MAX_LAYERS or any(h < 1 or h > MAX_UNITS for h in hidden):
        raise SettingsError(f"hidden: {s['hidden']!r}; the playground takes up to {MAX_LAYERS} layers of "
                            f"1..{MAX_UNITS} units (train bigger nets with 'trainlab run')")
    acts = _list(s["activation"]) or ["tanh"]
    model: dict = {"kind": "mlp", "hidden": hidden,
                   "activation": acts[0] if len(acts) == 1 else (acts + acts[-1:] * len(hidden))[:len(hidden)]}
    if s["norm"] not in ("none", "", None):
        model["norm"] = s["norm"]
    p = _number(s, "dropout", float, 0.0, 0.95)
    if p > 0:
        model["dropout"], model["dropout_kind"] = p, s["dropout_kind"]
    if _flag(s["residual"]):
        model["residual"] = True

    init: dict = {"weight": None if s["init_weight"] in ("default", "", None) else s["init_weight"],
                  "bias": None if s["init_bias"] in ("default", "", None) else s["init_bias"]}
    init.update(_options(s["init_options"], "init_options"))
    loss: dict = {"label_smoothing": _number(s, "label_smoothing", float, 0.0, 1.0)}
    if s["loss"] not in ("auto", "", None):
        loss["name"] = s["loss"]

    optimizer = {"name": s["optimizer"], **_options(s["optimizer_options"], "optimizer_options"),
                 "lr": _number(s, "lr", float, 0.0, 1e9)}
    transforms = []
    l1, l2 = _number(s, "l1", float, 0.0), _number(s, "l2", float, 0.0)
    if l1 > 0:
        transforms.append({"name": "l1", "weight": l1})
    if l2 > 0:
        transforms.append({"name": "l2", "weight": l2})
    if _number(s, "decay", float, 0.0) > 0:
        transforms.append({"name": "decoupled_weight_decay", "weight_decay": _number(s, "decay", float)})
    if _number(s, "clip", float, 0.0) > 0:
        transforms.append({"name": "clip_global_norm", "max_norm": _number(s, "clip", float)})
    schedule = None
    if s["schedule"] not in ("none", "", None):
        schedule = {"name": s["schedule"], **_options(s["schedule_options"], "schedule_options")}
    bs = str(s["batch_size"]).strip()
    batch = "full" if bs in ("full", "all") else _number(s, "batch_size", int, 1)
    return {"name": f"playground-{name}", "seed": _number(s, "seed", int, 0, 2**31 - 1), "data": data,
            "model": model, "init": init, "loss": loss, "optimizer": optimizer, "transforms": transforms,
            "schedule": schedule,
            "train": {"epochs": _number(s, "epochs", int, 1, 100000), "batch_size": batch}}


def live_only(old: dict, new: dict) -> bool:
    """Whether ``new`` differs from ``old`` in live settings only (no rebuild needed)."""
    return all(old.get(k, DEFAULTS[k]) == new.get(k, DEFAULTS[k]) for k in DEFAULTS if k not in LIVE)


# ---------------------------------------------------------------------------------------------
# the worker's pieces


class SwappableOptimizer(torch.optim.Optimizer):
    """An optimizer that forwards to ``inner``, which can be replaced between two steps.

    The fit loop holds one optimizer for its whole run; changing the optimizer (or its
    regularization chain) live swaps what this one forwards to, so the weights stay and the
    loop never notices. ``param_groups`` and ``state`` are the inner optimizer's.
    """

    def __init__(self, inner: torch.optim.Optimizer):  # noqa: super().__init__ would copy the groups
        self.inner = inner
        self.defaults = inner.defaults
        self._optimizer_step_pre_hooks: dict = {}
        self._optimizer_step_post_hooks: dict = {}

    @property
    def param_groups(self):  # type: ignore[override]
        return self.inner.param_groups

    @property
    def state(self):  # type: ignore[override]
        return self.inner.state

    def step(self, closure=None):  # type: ignore[override]
        return self.inner.step(closure)

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.inner.zero_grad(set_to_none=set_to_none)

    def state_dict(self):
        return self.inner.state_dict()

    def load_state_dict(self, state_dict) -> None:
        self.inner.load_state_dict(state_dict)

    def __repr__(self) -> str:
        return f"Swappable({self.inner!r})"


class _ScheduleSlot(Callback):
    """Forwards every hook to the current learning-rate schedule callback (``None``: no schedule)."""

    def __init__(self, schedule: Callback | None):
        self.schedule = schedule

    def set_loop(self, loop) -> None:
        self.loop = loop
        if self.schedule is not None:
            self.schedule.set_loop(loop)

    def replace(self, schedule: Callback | None) -> None:
        self.schedule = schedule
        if schedule is not None:
            schedule.set_loop(self.loop)
            schedule.on_train_begin({})
            schedule.on_epoch_begin(self.loop.epoch, {})

    def on_train_begin(self, logs):
        if self.schedule is not None:
            self.schedule.on_train_begin(logs)

    def on_epoch_begin(self, epoch, logs):
        if self.schedule is not None:
            self.schedule.on_epoch_begin(epoch, logs)

    def on_batch_begin(self, batch, logs):
        if self.schedule is not None:
            self.schedule.on_batch_begin(batch, logs)

    def on_batch_end(self, batch, logs):
        if self.schedule is not None:
            self.schedule.on_batch_end(batch, logs)

    def on_epoch_end(self, epoch, logs):
        if self.schedule is not None:
            self.schedule.on_epoch_end(epoch, logs)


class _Stop(Exception):
    """Raised inside the loop to end the worker (rebuild, rewind, close)."""


def _b64(values: Tensor) -> str:
    """A tensor of values in [0, 1] as base64 bytes 0..255 (what the page's canvases read)."""
    q = (values.clamp(0, 1) * 255).round().to(torch.uint8).contiguous()
    return base64.b64encode(q.numpy().tobytes()).decode()


def _finite(x) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


def _layer_weight(layer: nn.Module) -> Tensor:
    return layer.weight.detach()


# ---------------------------------------------------------------------------------------------
# the live run


class LiveRun:
    """A live run: build it from settings, then play / pause / step / rewind / reset / change it.

    ``emit(message)`` is called (from any thread) with the JSON-able messages for the page:
    ``frame``, ``verdicts``, ``status``, ``error``, ``config``, ``saved``. ``uploads`` maps an
    uploaded CSV's id to its file.
    """

    def __init__(self, emit: Callable[[dict], None], uploads: dict[str, Path] | None = None,
                 runs_root: str | Path = "runs"):
        self.emit = emit
        self.uploads = uploads if uploads is not None else {}
        self.runs_root = Path(runs_root)
        self.cond = threading.Condition()
        self.thread: threading.Thread | None = None
        self.settings: dict = dict(DEFAULTS)
        self.cfg = None
        self.running = False
        self.pending_steps = 0
        self.stop = False
        self.state = "idle"
        self.tasks: list[Callable[[], None]] = []
        self.last_frame: dict | None = None
        self.step_count = 0
        self.rng_state: Tensor | None = None  # this run's global-RNG state between its steps
        self._rng_held = False

    # ---- commands (called from the server's threads) ----------------------------------------

    def handle(self, msg: dict) -> None:
        """Run one command from the page; any failure becomes an ``error`` message."""
        kind = msg.get("type")
        try:
            if kind == "init":
                self.build(msg.get("settings") or {})
            elif kind == "settings":
                self.update(msg.get("settings") or {})
            elif kind == "play":
                self.play()
            elif kind == "pause":
                self.pause()
            elif kind == "step":
                self.step(int(msg.get("n", 1)))
            elif kind == "rewind":
                self.build(self.settings, keep_running=False)
            elif kind == "reset":
                s = dict(self.settings)
                s["seed"] = int(s.get("seed", 0)) + 1
                self.build(s, keep_running=False, reset=True)
            elif kind == "config":
                self.emit({"type": "config", "yaml": self.config_yaml()})
            elif kind == "save":
                self.run_in_worker(self.save_run)
            elif kind == "trajectory":
                from trainlab.playground.trajectory import trajectory_message
                self.emit(trajectory_message(msg))
            else:
                raise SettingsError(f"unknown command {kind!r}")
        except (SettingsError, ConfigError, ValueError, TypeError, OSError) as err:
            self.emit({"type": "error", "message": _one_line(err)})
        except Exception as err:  # noqa: BLE001 (whatever a command meets, the page hears of it and the server goes on)
            self.emit({"type": "error", "message": f"{kind}: {_one_line(err)}"})

    def build(self, settings: dict, keep_running: bool | None = None, reset: bool = False) -> None:
        """(Re)build the run from ``settings``; nothing changes when they do not validate."""
        settings = normalize(settings)
        cfg = parse_config(config_from_settings(settings, self.uploads))
        was = self.running if keep_running is None else keep_running
        self.close()
        self.settings, self.cfg = settings, cfg
        self.stop, self.running, self.pending_steps = False, was, 0
        self.state = "running" if was else "paused"
        ready = threading.Event()
        self.thread = threading.Thread(target=self._work, args=(cfg, ready), daemon=True,
                                       name="trainlab-playground")
        self.thread.start()
        ready.wait(30)
        self.emit({"type": "settings", "settings": self.settings, "reset": reset})

    def update(self, settings: dict) -> None:
        """Apply new settings: live ones between two steps, others by rebuilding."""
        new = normalize(settings)
        if self.cfg is None or not live_only(self.settings, new) or self.state in ("diverged", "error"):
            self.build(new)
            return
        cfg = parse_config(config_from_settings(new, self.uploads))  # refuse before anything changes
        self.settings = new
        self.run_in_worker(lambda: self._apply_live(cfg))
        self.emit({"type": "settings", "settings": self.settings, "live": True})

    def play(self) -> None:
        with self.cond:
            if self.state == "done":
                self.emit({"type": "status", "state": "done", "message":
                           f"the run has trained its {self.cfg.train.epochs} epochs; raise 'epochs' to go on"})
                return
            self.running = True
            if self.state == "paused":
                self.state = "running"
            self.cond.notify_all()
        self._status()

    def pause(self) -> None:
        with self.cond:
            self.running = False
            if self.state == "running":
                self.state = "paused"
            self.cond.notify_all()
        self._status()

    def step(self, n: int = 1) -> None:
        with self.cond:
            self.running = False
            if self.state == "running":
                self.state = "paused"
            self.pending_steps += max(1, min(int(n), 10000))
            self.cond.notify_all()

    def run_in_worker(self, task: Callable[[], None]) -> None:
        """Run ``task`` in the worker between two steps (or here, when no worker runs)."""
        with self.cond:
            alive = self.thread is not None and self.thread.is_alive() and self.state not in ("diverged",)
            if alive:
                self.tasks.append(task)
                self.cond.notify_all()
                return
        task()

    def close(self) -> None:
        """Stop the worker (it ends at the next batch boundary) and wait for it."""
        t = self.thread
        if t is None:
            return
        with self.cond:
            self.stop = True
            self.cond.notify_all()
        if t is not threading.current_thread():
            t.join(30)
        self.thread = None

    def config_yaml(self) -> str:
        """The YAML ``trainlab run`` accepts and that reproduces this run (every default filled in)."""
        return self.cfg.to_yaml()

    # ---- the worker -------------------------------------------------------------------------

    def _take_rng(self) -> None:
        """Hold the global RNG (a step, or the build up to the first frame), with this run's state in it."""
        GLOBAL_RNG_LOCK.acquire()
        self._rng_held = True
        if self.rng_state is not None:
            torch.set_rng_state(self.rng_state)

    def _give_rng(self) -> None:
        """Keep this run's state and let the other run (race mode) draw."""
        if self._rng_held:
            self.rng_state = torch.get_rng_state()
            self._rng_held = False
            GLOBAL_RNG_LOCK.release()

    def _work(self, cfg, ready: threading.Event) -> None:
        self.rng_state = None
        self._take_rng()  # given back by _Watch.on_train_begin, or below when the run ends first
        try:
            self._build_and_train(cfg, ready)
        finally:
            self._give_rng()
            ready.set()

    def _build_and_train(self, cfg, ready: threading.Event) -> None:
        from trainlab.diagnostics import DiagnosticsRecorder
        from trainlab.experiments.runner import _batches_per_epoch, build_data, build_training

        try:
            torch.set_num_threads(1)  # a small net: threads cost more than they give
            device = torch.device("cpu")
            data, loss, model, inner = build_training(cfg, device)
            raw_cfg = cfg.model_copy(deep=True)
            raw_cfg.data.input_features = None
            self.raw = build_data(raw_cfg) if cfg.data.input_features is not None else data
            self.data, self.loss, self.model = data, loss, model
            self.optimizer = SwappableOptimizer(inner)
            self.history = History()
            self.steps_per_epoch = _batches_per_epoch(cfg, len(data.train))
            self.schedule = _ScheduleSlot(self._make_schedule(cfg))
            d = cfg.diagnostics
            # recorded at most every ~100 steps here: the records feed the live verdicts, and a
            # record costs several training steps (the copied config keeps its own `every`)
            every = max(d.every, math.ceil(100 / self.steps_per_epoch)) if d.every else 0
            self.recorder = DiagnosticsRecorder(every=every, probe=d.probe, spectra=d.spectra, seed=cfg.seed)
            self.watch = _Watch(self)
            self._prepare_grid()
            self.step_count, self.epochs_done = 0, 0
            self.stopped: NonFiniteLossError | None = None
            self.init_checksum = _checksum(model)
            self.verdict_time = 0.0
            self._sent_points = False
        except Exception as err:  # noqa: BLE001 (a build failure is told to the page)
            self.state = "error"
            self.emit({"type": "error", "message": _one_line(err)})
            ready.set()
            return
        ready.set()
        try:
            fit(model, data.train, data.val, loss=loss, optimizer=self.optimizer, epochs=cfg.train.epochs,
                batch_size=cfg.train.batch_size, callbacks=[self.history, self.schedule, self.recorder, self.watch],
                device=device, seed=cfg.seed, verbose=False, shuffle=cfg.train.shuffle,
                drop_last=cfg.train.drop_last)
            self.state = "done"
            self.running = False
            self._publish(force=True)
            self._verdicts()
            self._status()
            self._serve_until_stopped()
        except _Stop:
            return
        except NonFiniteLossError as err:
            self.stopped = err
            self.state, self.running = "diverged", False
            self._publish(force=True)
            self._verdicts()
            self.emit({"type": "status", "state": "diverged", "message": _one_line(err)})
        except Exception as err:  # noqa: BLE001 (the server survives any training failure)
            self.state, self.running = "error", False
            self.emit({"type": "error", "message": _one_line(err)})

    def _serve_until_stopped(self) -> None:
        """After the last epoch: run tasks (save, live changes) until a rebuild stops the worker."""
        while True:
            with self.cond:
                while not self.stop and not self.tasks:
                    self.cond.wait(0.5)
                if self.stop:
                    raise _Stop
                tasks, self.tasks = self.tasks, []
            for t in tasks:
                self._run_task(t)

    def _run_task(self, task) -> None:
        try:
            task()
        except Exception as err:  # noqa: BLE001
            self.emit({"type": "error", "message": _one_line(err)})

    def _gate(self) -> None:
        """Called before every step: run tasks, then wait until playing or a step is asked for."""
        with self.cond:
            while True:
                if self.stop:
                    raise _Stop
                if self.tasks:
                    tasks, self.tasks = self.tasks, []
                    self.cond.release()
                    try:
                        for t in tasks:
                            self._run_task(t)
                    finally:
                        self.cond.acquire()
                    continue
                if self.running:
                    return
                if self.pending_steps > 0:
                    self.pending_steps -= 1
                    self.single = True
                    return
                self.cond.wait(0.5)

    def _make_schedule(self, cfg):
        if cfg.schedule is None:
            return None
        return catalog.build_schedule(self.optimizer, cfg.schedule.name, cfg.schedule.kwargs,
                                      steps_per_epoch=self.steps_per_epoch, epochs=cfg.train.epochs)

    def _apply_live(self, cfg) -> None:
        old = self.cfg
        same_rule = (old.optimizer.name == cfg.optimizer.name
                     and {k: v for k, v in old.optimizer.kwargs.items() if k != "lr"}
                     == {k: v for k, v in cfg.optimizer.kwargs.items() if k != "lr"}
                     and [t.model_dump() for t in old.transforms] == [t.model_dump() for t in cfg.transforms])
        if same_rule:
            for g in self.optimizer.param_groups:  # the optimizer's state (moments, ...) is kept
                g["lr"] = float(cfg.optimizer.kwargs["lr"])
        else:
            params = [p for p in self.model.parameters() if p.requires_grad]
            self.optimizer.inner = catalog.build_optimizer(params, cfg.optimizer.name, cfg.optimizer.kwargs,
                                                           [(t.name, t.kwargs) for t in cfg.transforms])
        schedule_changed = ((old.schedule is None) != (cfg.schedule is None)
                            or (cfg.schedule is not None and old.schedule.model_dump() != cfg.schedule.model_dump())
                            or old.optimizer.kwargs.get("lr") != cfg.optimizer.kwargs.get("lr")
                            or old.train.epochs != cfg.train.epochs)
        if schedule_changed and (old.schedule is not None or cfg.schedule is not None):
            # a schedule scales from the configured lr (not from where the old one had decayed it)
            # and, reading the loop's epoch and step, goes on at the run's present point
            for g in self.optimizer.param_groups:
                g["lr"] = float(cfg.optimizer.kwargs["lr"])
            self.schedule.replace(self._make_schedule(cfg))
        loop = self.watch.loop
        loop.train.batch_size = resolve_batch_size(cfg.train.batch_size, loop.train.n)  # from the next epoch
        self.loss.label_smoothing = cfg.loss.label_smoothing
        if cfg.train.epochs != old.train.epochs:
            if cfg.train.epochs <= self.epochs_done:
                loop.stop_training = True
            elif cfg.train.epochs > loop.epochs:
                self.emit({"type": "status", "state": self.state, "message":
                           "more epochs than the run started with: rewind to train that long"})
        self.cfg = cfg

    # ---- frames -----------------------------------------------------------------------------

    def _prepare_grid(self) -> None:
        X = torch.cat([self.raw.train.X] + ([self.raw.val.X] if self.raw.val is not None else []))
        self.one_d = X.shape[1] == 1
        lo, hi = X.min(0).values, X.max(0).values
        pad = (hi - lo).clamp_min(1e-3) * 0.15
        lo, hi = lo - pad, hi + pad
        if not self.one_d:  # one scale on both axes, so circles look round
            half = float((hi - lo).max()) / 2
            mid = (lo + hi) / 2
            lo, hi = mid - half, mid + half
        self.bounds = [float(v) for v in torch.stack([lo, hi], 1).reshape(-1)]
        if self.one_d:
            grid = torch.linspace(float(lo[0]), float(hi[0]), CURVE_POINTS).unsqueeze(1)
        else:
            xs = torch.linspace(float(lo[0]), float(hi[0]), GRID)
            ys = torch.linspace(float(hi[1]), float(lo[1]), GRID)  # image rows top-down
            gy, gx = torch.meshgrid(ys, xs, indexing="ij")
            grid = torch.stack([gx.reshape(-1), gy.reshape(-1)], 1)
        self.grid_raw = grid
        if self.cfg.data.input_features is not None:
            from trainlab.data.features import expand_features
            grid = expand_features(Dataset(grid, torch.zeros(len(grid))), self.cfg.data.input_features).X
        self.grid = grid.to(self.data.train.X.dtype)
        ytr = self.data.train.y
        self.classification = self.data.train.is_classification
        self.classes = self.data.train.classes or 0
        if not self.classification:
            self.y_range = (float(ytr.min()), float(ytr.max()) if float(ytr.max()) > float(ytr.min())
                            else float(ytr.min()) + 1)
        # the points to draw (raw inputs): [x1, x2 or y, label or target]
        self.points = {part: self._points(getattr(self.raw, part)) for part in ("train", "val")
                       if getattr(self.raw, part) is not None}

    def _points(self, ds: Dataset) -> list[list[float]]:
        if self.one_d:
            cols = [ds.X[:, 0], ds.y.reshape(-1).float()]
        else:
            cols = [ds.X[:, 0], ds.X[:, 1], ds.y.reshape(-1).float()]
        return torch.stack(cols, 1).round(decimals=4).tolist()

    def _hidden_and_output(self, X: Tensor) -> tuple[list[Tensor], Tensor]:
        """The activation output of every hidden block and the model's output, in eval mode."""
        acts: list[Tensor] = []
        hooks = [b.act.register_forward_hook(lambda m, i, o: acts.append(o.detach())) for b in self.model.blocks]
        was = self.model.training
        self.model.eval()
        try:
            with torch.no_grad():
                z = self.model(X)
        finally:
            for h in hooks:
                h.remove()
            self.model.train(was)
        return acts, z

    def _field(self, z: Tensor) -> dict:
        """The output over the grid: class-1 probability, class and confidence, or the prediction."""
        head = getattr(self.model, "head", "linear")
        if self.one_d:
            if self.classification:
                z = torch.sigmoid(z[:, 0]) if z.shape[1] == 1 else torch.softmax(z, 1)[:, 1]
            return {"curve": [_finite(v) for v in z.reshape(-1).tolist()]}
        if not self.classification:
            lo, hi = self.y_range
            return {"grid": _b64((z[:, 0] - lo) / (hi - lo)), "range": [lo, hi]}
        if z.shape[1] == 1:
            p = torch.sigmoid(z[:, 0]) if head == "sigmoid" else z[:, 0].clamp(0, 1)
            return {"grid": _b64(torch.nan_to_num(p, 0.5))}
        if z.shape[1] == 2:  # softmax's class-1 probability is σ(z₁ − z₀)
            return {"grid": _b64(torch.nan_to_num(torch.sigmoid(z[:, 1] - z[:, 0]), 0.5))}
        probs = torch.nan_to_num(torch.softmax(z, 1), 0.5)
        conf, cls = probs.max(1)
        return {"grid": _b64(conf), "grid_class": _b64(cls.float() / 255)}

    def _frame(self) -> dict:
        """Everything the page draws, from one batched forward pass in eval mode (no gradients)
        over the grid, the training inputs and the test inputs together."""
        model, data = self.model, self.data
        parts = [self.grid, data.train.X] + ([data.val.X] if data.val is not None else [])
        acts, z = self._hidden_and_output(torch.cat(parts))
        n_grid, n_train = len(self.grid), len(data.train)
        frame = {"type": "frame", "step": self.step_count, "epoch": self.epochs_done, "state": self.state,
                 "lr": float(self.optimizer.param_groups[0]["lr"]), "checksum": _checksum(model)}
        frame.update(self._field(z[:n_grid]))
        with torch.no_grad():
            for name, ds, zz in (("train", data.train, z[n_grid:n_grid + n_train]),
                                 ("test", data.val, z[n_grid + n_train:])):
                if ds is None:
                    continue
                frame[f"{name}_loss"] = _finite(self.loss(zz, ds.y))
                correct = self.loss.correct(zz, ds.y) if self.loss.is_classification else None
                frame[f"{name}_acc"] = None if correct is None else int(correct) / max(len(ds), 1)
        # per-unit heatmaps over the grid, each layer scaled by its largest magnitude
        units = []
        for a in acts:
            if self.one_d:
                units.append([])
                continue
            img = a[:n_grid].reshape(GRID, GRID, -1)[::2, ::2].permute(2, 0, 1).reshape(a.shape[1], -1)
            img = torch.nan_to_num(img)
            scale = float(img.abs().max()) or 1.0
            q = (((img / scale + 1) / 2).clamp(0, 1) * 255).round().to(torch.uint8).numpy()
            units.append([base64.b64encode(row.tobytes()).decode() for row in q])
        frame["units"] = units
        frame["weights"] = [torch.nan_to_num(_layer_weight(l)).round(decimals=3).tolist() for l in _layers(model)]
        frame["grad_norms"] = [_grad_norm(b) for b in model.blocks] + [_grad_norm(model.out)]
        frame["update_ratios"] = self.watch.ratios
        frame.update(self._unit_health([a[n_grid:n_grid + n_train] for a in acts]))
        frame["widths"] = [data.train.n_features] + [len(w) for w in frame["weights"]]
        return frame

    def _unit_health(self, acts: list[Tensor]) -> dict:
        """Dead units (ReLU-like: zero on every training input) and saturated ones (sigmoid/tanh:
        in the flat 1 % band on most training inputs), as in :mod:`trainlab.diagnostics.neurons`."""
        from trainlab.diagnostics.layers import BOUNDS, activation_kind

        dead, saturated = [], []
        for block, a in zip(self.model.blocks, acts):
            kind = activation_kind(block.act)
            if a.dim() != 2:
                a = a.reshape(len(a), -1)
            dead.append((a == 0).all(0).tolist() if kind == "relu" else [False] * a.shape[1])
            if kind in BOUNDS:
                lo, hi = BOUNDS[kind]
                band = 0.01 * (hi - lo)
                saturated.append((((a < lo + band) | (a > hi - band)).float().mean(0) > 0.5).tolist())
            else:
                saturated.append([False] * a.shape[1])
        return {"dead": dead, "saturated": saturated}

    def _publish(self, force: bool = False) -> None:
        frame = self._frame()
        frame["state"] = self.state
        if not self._sent_points:  # the data and the plot's bounds travel once per build
            frame["points"], frame["bounds"] = self.points, self.bounds
            self._sent_points = True
        self.last_frame = frame
        self.emit(frame)

    def _verdicts(self) -> None:
        from trainlab.diagnostics.verdicts import diagnose_run
        from trainlab.experiments.runner import RunResult

        cfg = self.cfg
        if self.state not in ("done", "diverged"):  # a run in progress has not stopped early
            cfg = cfg.model_copy(deep=True)
            cfg.train.epochs = max(1, self.epochs_done)
        result = RunResult(cfg, self.model, self.history, {}, 0.0)
        result.extras["diagnostics"] = self.recorder
        try:
            diagnosis = diagnose_run(result, self.loss, self.data, stopped=self.stopped)
        except Exception as err:  # noqa: BLE001 (a diagnosis that cannot be made yet is not an error)
            self.emit({"type": "verdicts", "items": [], "note": _one_line(err)})
            return
        items = [{k: v.to_dict().get(k) for k in ("kind", "severity", "message", "fix")} for v in diagnosis]
        self.emit({"type": "verdicts", "items": items, "primary": items[0]["kind"] if items else None})

    def _status(self) -> None:
        self.emit({"type": "status", "state": self.state})

    # ---- saving -----------------------------------------------------------------------------

    def save_run(self) -> None:
        """Write a normal run folder (config, metrics, curves, report, weights, verdicts) of the run so far."""
        from trainlab.diagnostics.verdicts import diagnose_run
        from trainlab.experiments.report import early_stops
        from trainlab.experiments.runner import RunResult, default_run_dir, final_metrics, write_run_folder
        from trainlab.train.checkpoint import atomic_write_bytes

        if not self.history.records():
            raise SettingsError("save run: no epoch has finished yet; train at least one epoch first")
        run_path = default_run_dir(self.cfg, self.runs_root)
        atomic_write_bytes(run_path / "config.yaml", self.cfg.to_yaml().encode())
        final = final_metrics(self.model, self.data, self.loss, torch.device("cpu"))
        result = RunResult(self.cfg, self.model, self.history, final, 0.0, run_path)
        result.extras.update(data=self.data, loss=self.loss, early_stops=early_stops([]), diagnostics=self.recorder)
        result.extras["verdicts"] = diagnose_run(result, self.loss, self.data, stopped=self.stopped)
        write_run_folder(result)
        self.emit({"type": "saved", "path": str(run_path), "report": str(run_path / "report.html")})


class _Watch(Callback):
    """The playground's hook into the fit loop: gate each step, count, publish frames and verdicts."""

    def __init__(self, live: LiveRun):
        self.s = live
        self.last = 0.0
        self.ratios: list[float | None] = []
        self._before: list[Tensor] | None = None
        self._measure = True

    def on_train_begin(self, logs):
        self.s.single = False
        self.s._give_rng()  # built, seeded and recorded at initialization: the other run may draw
        self.s._publish(force=True)

    def on_batch_begin(self, batch, logs):
        s = self.s
        s.single = False
        s._gate()
        s._take_rng()
        if self._measure:  # the update-to-weight ratio of this one step
            self._before = [_layer_weight(l).clone() for l in _layers(s.model)]

    def on_batch_end(self, batch, logs):
        s = self.s
        s._give_rng()
        s.step_count += 1
        if self._before is not None:
            self.ratios = [_finite((_layer_weight(l) - w0).norm() / w0.norm().clamp_min(1e-12))
                           for l, w0 in zip(_layers(s.model), self._before)]
            self._before, self._measure = None, False
        now = time.perf_counter()
        if s.single or now - self.last >= FRAME_INTERVAL:
            self.last = now
            s._publish()
            self._measure = True

    def on_epoch_end(self, epoch, logs):
        s = self.s
        s.epochs_done = epoch + 1
        now = time.perf_counter()
        if now - s.verdict_time >= VERDICT_INTERVAL or epoch + 1 == self.loop.epochs:
            s.verdict_time = now
            s._verdicts()


def _layers(model) -> list[nn.Module]:
    return [b.linear for b in model.blocks] + [model.out]


def _grad_norm(module: nn.Module) -> float | None:
    grads = [p.grad for p in module.parameters() if p.grad is not None]
    if not grads:
        return None
    return _finite(torch.sqrt(sum((g.double() ** 2).sum() for g in grads)))


def _checksum(model: nn.Module) -> str:
    """A short digest of every parameter's bytes: equal digests, equal weights."""
    h = hashlib.sha256()
    for p in model.state_dict().values():
        h.update(p.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:12]


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    return text[:900]
