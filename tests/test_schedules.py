"""Learning-rate schedules: values against torch.optim.lr_scheduler, composition, rules, fit callbacks."""
import math

import pytest
import torch

from trainlab import fit, schedules as S
from trainlab.train.callbacks import Callback, LearningRateScheduler, ReduceLROnPlateau


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def torch_lrs(make_scheduler, n, lr=0.1):
    """The lr torch's scheduler gives at t = 0 … n − 1 (read before each scheduler.step())."""
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    sched = make_scheduler(opt)
    out = []
    for _ in range(n):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


LR = torch.optim.lr_scheduler
CASES = [
    ("step", S.StepDecay(0.1, step_size=7, gamma=0.5), lambda o: LR.StepLR(o, 7, 0.5), 40),
    ("multistep", S.MultiStepDecay(0.1, [5, 12, 13], 0.3), lambda o: LR.MultiStepLR(o, [5, 12, 13], 0.3), 30),
    ("exponential", S.Exponential(0.1, 0.93), lambda o: LR.ExponentialLR(o, 0.93), 40),
    ("polynomial", S.Polynomial(0.1, 20, power=2.0), lambda o: LR.PolynomialLR(o, 20, 2.0), 30),
    ("cosine", S.Cosine(0.1, 25, min_lr=0.01), lambda o: LR.CosineAnnealingLR(o, 25, 0.01), 26),
    ("restarts", S.CosineRestarts(0.1, 6, 1, 0.001), lambda o: LR.CosineAnnealingWarmRestarts(o, 6, 1, 0.001), 40),
    ("restarts-mult", S.CosineRestarts(0.1, 3, 2, 0.0), lambda o: LR.CosineAnnealingWarmRestarts(o, 3, 2), 50),
    ("warmup", S.Warmup(S.Constant(0.1), 8, start_factor=0.25), lambda o: LR.LinearLR(o, 0.25, 1.0, 8), 20),
    ("one-cycle", S.OneCycle(0.1, 50), lambda o: LR.OneCycleLR(o, 0.1, 50, cycle_momentum=False), 50),
    ("one-cycle-linear", S.OneCycle(0.1, 40, pct_start=0.25, anneal="linear", div_factor=10),
     lambda o: LR.OneCycleLR(o, 0.1, 40, pct_start=0.25, anneal_strategy="linear", div_factor=10,
                             cycle_momentum=False), 40),
    ("one-cycle-3", S.OneCycle(0.1, 60, three_phase=True),
     lambda o: LR.OneCycleLR(o, 0.1, 60, three_phase=True, cycle_momentum=False), 60),
]


@pytest.mark.parametrize("name,ours,theirs,n", CASES, ids=[c[0] for c in CASES])
def test_matches_torch_scheduler(name, ours, theirs, n):
    assert ours.values(n) == pytest.approx(torch_lrs(theirs, n), rel=1e-12, abs=1e-15)


def test_cosine_holds_its_minimum_after_the_horizon():
    s = S.Cosine(0.1, 10, min_lr=0.02)
    assert s(10) == pytest.approx(0.02) and s(25) == pytest.approx(0.02)


def test_inverse_time_is_scikit_learns_invscaling():
    s = S.InverseTime(0.5, rate=1.0, power=0.25)
    assert [s(t) for t in range(5)] == pytest.approx([0.5 / (t + 1) ** 0.25 for t in range(5)])
    keras = S.InverseTime(0.1, rate=0.5 / 10, power=1.0)   # Keras InverseTimeDecay(0.1, 10, 0.5)
    assert keras(30) == pytest.approx(0.1 / (1 + 0.5 * 30 / 10))


def test_warmup_then_any_schedule_and_join():
    inner = S.Cosine(0.2, 10)
    w = S.Warmup(inner, warmup_steps=4)
    assert w.values(5) == pytest.approx([0.0, 0.05, 0.1, 0.15, 0.2])
    assert [w(4 + t) for t in range(11)] == pytest.approx(inner.values(11))
    j = S.Join([S.Constant(0.3), S.Exponential(0.1, 0.5)], boundaries=[3])
    assert j.values(6) == pytest.approx([0.3, 0.3, 0.3, 0.1, 0.05, 0.025])


def test_missing_lr_or_horizon_is_bound_from_the_run():
    s = S.Cosine()
    with pytest.raises(ValueError, match="no lr or total_steps yet"):
        s(0)
    bound = s.bind(lr=0.4, total_steps=8)
    assert bound(0) == 0.4 and bound(8) == pytest.approx(0.0) and s.lr is None   # bind copies
    assert S.Cosine(0.1, 5).bind(lr=9.0, total_steps=99).values(1) == [0.1]      # given values win
    w = S.Warmup(S.Cosine(), 3).bind(lr=1.0, total_steps=13)
    assert w.then.total_steps == 10                                             # the rest of the run


def test_bad_arguments_fail_early():
    with pytest.raises(ValueError, match="step_size"):
        S.StepDecay(0.1, step_size=0)
    with pytest.raises(ValueError, match="unit"):
        S.Cosine(0.1, 10, unit="batch")
    with pytest.raises(ValueError, match="pct_start"):
        S.OneCycle(0.1, 10, pct_start=1.0)
    with pytest.raises(ValueError, match="boundary"):
        S.Join([S.Constant(0.1)], boundaries=[3])
    with pytest.raises(TypeError, match="step → lr"):
        S.Warmup(S.ReduceOnPlateau(0.1))


# ---- stateful rules -------------------------------------------------------------------------------

METRICS = [1.0, 0.9, 0.91, 0.9, 0.95, 0.9, 0.899, 0.8, 0.8, 0.81, 0.82, 0.83, 0.8, 0.79, 0.79, 0.79, 0.79,
           0.795, 0.8, 0.8, 0.8, 0.78] + [0.78] * 12   # the flat tail outlasts the default patience


@pytest.mark.parametrize("kwargs", [
    {}, {"patience": 2}, {"patience": 1, "cooldown": 2}, {"patience": 0, "min_lr": 0.02},
    {"mode": "max", "patience": 1}, {"threshold_mode": "abs", "threshold": 0.005, "patience": 1},
    {"factor": 0.5, "patience": 1, "threshold": 0.02},
], ids=lambda kw: ",".join(f"{k}={v}" for k, v in kw.items()) or "default")
def test_plateau_rule_makes_torchs_decisions(kwargs):
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    theirs = LR.ReduceLROnPlateau(opt, **{k: v for k, v in kwargs.items()})
    rule = S.ReduceOnPlateau(0.1, **kwargs)
    changed = False
    for m in METRICS:
        theirs.step(m)
        assert rule.observe(m) == pytest.approx(opt.param_groups[0]["lr"], rel=1e-12)
        changed |= rule.current != 0.1
    assert changed  # the sequence does trigger reductions


def test_adaptive_divides_by_five_after_patience_and_then_stops():
    """scikit-learn: no improvement by tol for more than n_iter_no_change epochs → lr / 5."""
    rule = S.Adaptive(0.1, patience=2, tol=1e-3)
    seq = [1.0, 0.5, 0.4999, 0.4998, 0.4997,   # 3 epochs without a 1e-3 improvement → ÷5 at the 3rd
           0.3, 0.2999, 0.2999, 0.2999]        # improvement resets; then 3 more → ÷5 again
    lrs = [rule.observe(v) for v in seq]
    assert lrs == pytest.approx([0.1, 0.1, 0.1, 0.1, 0.02, 0.02, 0.02, 0.02, 0.004])
    tiny = S.Adaptive(1e-6, patience=0)
    tiny.observe(1.0)
    tiny.observe(1.0)
    assert tiny.stop and tiny.current == 1e-6


def test_rule_state_round_trips():
    rule = S.ReduceOnPlateau(0.1, patience=1)
    for m in METRICS[:8]:
        rule.observe(m)
    copy = S.ReduceOnPlateau(0.1, patience=1)
    copy.load_state_dict(rule.state_dict())
    assert [copy.observe(m) for m in METRICS[8:]] == [rule.observe(m) for m in METRICS[8:]]


# ---- adapters to plain PyTorch ------------------------------------------------------------------

def test_torch_adapter_keeps_group_ratios():
    a, b = torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([{"params": [a]}, {"params": [b], "lr": 0.05}], lr=0.1)
    sched = S.as_lr_scheduler(opt, S.Cosine(total_steps=10))
    assert isinstance(sched, torch.optim.lr_scheduler.LRScheduler)
    seen = []
    for _ in range(5):
        seen.append([g["lr"] for g in opt.param_groups])
        opt.step()
        sched.step()
    want = S.Cosine(0.1, 10).values(5)
    assert [s[0] for s in seen] == pytest.approx(want)
    assert [s[1] for s in seen] == pytest.approx([w / 2 for w in want])


def test_plateau_adapter_matches_torch():
    opt_a = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    opt_b = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    ours = S.as_lr_scheduler(opt_a, S.ReduceOnPlateau(patience=1))
    theirs = LR.ReduceLROnPlateau(opt_b, patience=1)
    for m in METRICS:
        ours.step(m)
        theirs.step(m)
        assert opt_a.param_groups[0]["lr"] == pytest.approx(opt_b.param_groups[0]["lr"])


# ---- in the fit loop ----------------------------------------------------------------------------

def _data(n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, 3, generator=g)
    return X, (X[:, 0] > 0).long()


class _LrPerBatch(Callback):
    def __init__(self):
        self.lrs = []

    def on_batch_begin(self, batch, logs):
        # runs after the scheduler's on_batch_begin (callbacks run in order)
        self.lrs.append(self.loop.optimizer.param_groups[0]["lr"])


def test_epoch_schedule_in_fit():
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.2)
    h = fit(model, _data(), loss="cross_entropy", optimizer=opt, epochs=6, batch_size=16, verbose=False, seed=0,
            callbacks=[LearningRateScheduler(S.StepDecay(step_size=2, gamma=0.5))])
    assert h["lr"] == pytest.approx([0.2, 0.2, 0.1, 0.1, 0.05, 0.05])


def test_step_schedule_in_fit_binds_lr_and_horizon_from_the_run():
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.3)
    probe = _LrPerBatch()
    fit(model, _data(), loss="cross_entropy", optimizer=opt, epochs=3, batch_size=16, verbose=False, seed=0,
        callbacks=[LearningRateScheduler(S.Warmup(S.Cosine(unit="step"), warmup_steps=4)), probe])
    want = S.Warmup(S.Cosine(0.3, total_steps=12 - 4, unit="step"), 4).values(12)
    assert probe.lrs == pytest.approx(want)


class _FlatValLoss(Callback):
    """Reports a constant val_loss, so the plateau logic is what the test sees."""

    def on_epoch_end(self, epoch, logs):
        logs["val_loss"] = 1.0


def test_reduce_on_plateau_callback_in_fit():
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.4)
    h = fit(model, _data(), loss="cross_entropy", optimizer=opt, epochs=6, batch_size=64, verbose=False, seed=0,
            callbacks=[_FlatValLoss(), ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=1)])
    # epoch 0 sets the best; bad epochs 1, 2 > patience → halve (from epoch 3); again after 4, 5
    assert h["lr"] == pytest.approx([0.4, 0.4, 0.4, 0.2, 0.2, 0.1])
    with pytest.raises(KeyError, match="val_loss.*not in the epoch logs"):
        fit(model, _data(), loss="cross_entropy", optimizer=opt, epochs=1, verbose=False,
            callbacks=[ReduceLROnPlateau(monitor="val_loss")])


def test_adaptive_rule_stops_training_like_scikit_learn():
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.SGD(model.parameters(), lr=1e-9)   # the loss cannot improve by tol
    h = fit(model, _data(), loss="cross_entropy", optimizer=opt, epochs=30, batch_size=64, verbose=False, seed=0,
            callbacks=[LearningRateScheduler(S.Adaptive(patience=2))])
    # epoch 0 sets the best; epochs 1–3 fail to improve by tol; 3 > patience triggers, and with
    # lr already ≤ 1e-6 scikit-learn's rule stops: four epochs in all
    assert len(h["loss"]) == 4


def test_scheduler_callback_state_round_trips():
    cb = LearningRateScheduler(S.ReduceOnPlateau(patience=1))
    cb.base_lrs = [0.1]
    cb.schedule = cb.schedule.bind(lr=0.1)
    for m in METRICS[:6]:
        cb.schedule.observe(m)
    other = LearningRateScheduler(S.ReduceOnPlateau(patience=1).bind(lr=0.1))
    other.load_state_dict(cb.state_dict())
    assert other.schedule.state_dict() == cb.schedule.state_dict() and other.base_lrs == [0.1]


def test_config_schedule_drives_the_run():
    from trainlab.experiments.config import parse_config
    from trainlab.experiments.runner import run_experiment
    cfg = parse_config({"data": {"name": "moons", "n_samples": 100}, "model": {"kind": "mlp", "hidden": [4]},
                        "optimizer": {"name": "sgd", "lr": 0.2}, "schedule": {"name": "cosine"},
                        "train": {"epochs": 4, "batch_size": 32}, "diagnostics": None})
    r = run_experiment(cfg, write=False, verbose=False)
    assert r.history["lr"] == pytest.approx(S.Cosine(0.2, 4).values(4))
