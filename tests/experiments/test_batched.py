import math
import statistics

import pytest
import torch

from trainlab.experiments import batched, catalog
from trainlab.experiments.batched import (BatchedAdam, BatchedSGD, batch_key, member_correct, member_losses,
                                          probe_optimizer, train_group)
from trainlab.experiments.config import parse_config
from trainlab.experiments.runner import run_experiment
from trainlab.losses import Loss
from trainlab.train.loop import NonFiniteLossError


@pytest.fixture(autouse=True)
def one_thread():
    # tiny matrices: a second thread only adds synchronisation (and the test machine is shared)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def cfg(seed=0, epochs=1, activation="tanh", diagnostics=None, **opt):
    # 457 moons -> 320 training samples -> 10 steps of 32 per epoch
    opt = {"name": "sgd", "lr": 0.1, **opt}
    return parse_config({"seed": seed, "data": {"name": "moons", "n_samples": 457, "noise": 0.2},
                         "model": {"hidden": [16, 16], "activation": activation}, "optimizer": opt,
                         "train": {"epochs": epochs, "batch_size": 32}, "diagnostics": diagnostics})


BLOBS = {"name": "blobs", "n_samples": 457, "n_features": 16, "centers": 3}  # 16 features: 1×4×4 images


def max_param_diff(a, b) -> float:
    return max((p - q).abs().max().item() for p, q in zip(a.parameters(), b.parameters()))


MIXES = {
    "sgd": [dict(momentum=0.9), dict(momentum=0.0, weight_decay=1e-3, lr=0.05),
            dict(momentum=0.5, nesterov=True, lr=0.2), dict(momentum=0.9, dampening=0.1, lr=0.02)],
    "adam": [dict(lr=0.01), dict(lr=0.003, weight_decay=0.01), dict(lr=0.02, betas=[0.8, 0.99], eps=1e-6),
             dict(lr=0.001)],
    "adamw": [dict(lr=0.01), dict(lr=0.003, weight_decay=0.1), dict(lr=0.02, betas=[0.5, 0.9]), dict(lr=0.005)],
}


@pytest.mark.parametrize("name", list(MIXES))
@pytest.mark.parametrize("mode", ["fused", "per_member"])
def test_members_equal_solo_runs_after_ten_steps(name, mode, monkeypatch):
    if name == "adamw":
        monkeypatch.setitem(catalog.OPTIMIZERS, "adamw", catalog.OPTIMIZERS.get("adamw", torch.optim.AdamW))
    cfgs = [cfg(seed=s, **{"name": name, **kw}) for s, kw in enumerate(MIXES[name])]
    outcomes = train_group(cfgs, mode=mode)
    assert [o.info["mode"] for o in outcomes] == [mode] * 4 and all(o.info["batched"] == 4 for o in outcomes)
    for c, o in zip(cfgs, outcomes):
        solo = run_experiment(c, write=False, verbose=False)  # the same 10 steps, alone, through fit
        assert max_param_diff(solo.model, o.result.model) <= 1e-5
        a, b = solo.history.records()[0], o.result.history.records()[0]
        assert set(a) == set(b)
        for k in ("loss", "accuracy", "val_loss", "val_accuracy", "lr"):
            assert b[k] == pytest.approx(a[k], abs=1e-5), k
        for k, v in solo.final.items():
            assert o.result.final[k] == pytest.approx(v, abs=1e-5)


@pytest.mark.parametrize("activation,smoothing,opt", [("relu", 0.1, dict(name="adam", lr=0.01)),
                                                      ("sigmoid", 0.0, dict(momentum=0.9, nesterov=True))])
def test_hand_written_backward_equals_autograd_solo_runs(activation, smoothing, opt):
    # the flat engine: forward, loss and backward by hand, one update over one buffer (3 classes:
    # the softmax and the argmax over more than two logits)
    cfgs = []
    for s, lr in enumerate([0.01, 0.03, 0.1]):
        c = cfg(seed=s, epochs=2, activation=activation, **{**opt, "lr": lr}).model_dump()
        c["data"] = dict(BLOBS)
        c["loss"] = {"name": "cross_entropy", "label_smoothing": smoothing}
        cfgs.append(parse_config(c))
    outcomes = train_group(cfgs)
    assert all(o.info["backward"] == "by hand" and o.info["batched"] == 3 for o in outcomes), outcomes[0].info
    for c, o in zip(cfgs, outcomes):
        solo = run_experiment(c, write=False, verbose=False)  # 20 steps through fit and autograd
        assert max_param_diff(solo.model, o.result.model) <= 1e-5
        for a, b in zip(solo.history.records(), o.result.history.records()):
            for k in ("loss", "accuracy", "val_loss", "val_accuracy"):
                assert b[k] == pytest.approx(a[k], abs=1e-5), k


def test_each_member_has_its_own_init_and_data_order():
    outcomes = train_group([cfg(seed=0, lr=0.0), cfg(seed=1, lr=0.0)])  # lr 0: the initial weights
    w0, w1 = (o.result.model.blocks[0].linear.weight for o in outcomes)
    assert not torch.equal(w0, w1)
    # a member with another seed than its solo run would differ; with its own it is the solo model
    solo1 = run_experiment(cfg(seed=1, lr=0.0), write=False, verbose=False)
    assert torch.equal(solo1.model.blocks[0].linear.weight, w1)


def test_final_accuracy_matches_solo_runs_within_seed_noise():
    seeds = [0, 1, 2, 3]
    cfgs = [cfg(seed=s, epochs=8, activation="relu", momentum=0.9, lr=0.05) for s in seeds]
    outcomes = train_group(cfgs)
    assert {o.info["mode"] for o in outcomes} == {"fused"}
    solo = [run_experiment(c, write=False, verbose=False).final["val_accuracy"] for c in cfgs]
    noise = statistics.stdev(solo)  # how much the accuracy moves from one seed to the next
    assert noise > 0
    for s, o in zip(solo, outcomes):
        assert abs(o.result.final["val_accuracy"] - s) <= noise / 2
    assert statistics.fmean(solo) > 0.8


def test_fused_rules_follow_the_formula_for_one_step():
    # two members, one row each: p = [1, -2], g = [0.5, 0.25]
    p = torch.tensor([[[1.0, -2.0]], [[1.0, -2.0]]], dtype=torch.float64)
    g = torch.tensor([[[0.5, 0.25]], [[0.5, 0.25]]], dtype=torch.float64)
    sgd = BatchedSGD([{"lr": 0.1, "momentum": 0.9, "weight_decay": 0.01},
                      {"lr": 0.2, "momentum": 0.0, "weight_decay": 0.0}], p)
    q = p.clone()
    sgd.step([q], [g])
    assert q[0, 0].tolist() == pytest.approx([1 - 0.1 * (0.5 + 0.01 * 1), -2 - 0.1 * (0.25 + 0.01 * -2)], abs=1e-15)
    assert q[1, 0].tolist() == pytest.approx([1 - 0.2 * 0.5, -2 - 0.2 * 0.25], abs=1e-15)
    adam = BatchedAdam([{"lr": 0.1, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.0},
                        {"lr": 0.1, "betas": (0.5, 0.9), "eps": 1e-8, "weight_decay": 0.5}], p, decoupled=True)
    q = p.clone()
    adam.step([q], [g])
    # step 1: m_hat = g, v_hat = g^2, so p - lr * g / (|g| + eps) (after AdamW's decay for member 1)
    for k, (lr, wd) in enumerate([(0.1, 0.0), (0.1, 0.5)]):
        want = [(x * (1 - lr * wd)) - lr * gx / (abs(gx) + 1e-8) for x, gx in ((1.0, 0.5), (-2.0, 0.25))]
        assert q[k, 0].tolist() == pytest.approx(want, abs=1e-12)


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, 1e-6)])
def test_fused_rules_match_pytorch_for_many_steps(dtype, tol):
    g = torch.Generator().manual_seed(0)
    settings = {
        (torch.optim.SGD, "sgd"): [dict(lr=0.1, momentum=0.9), dict(lr=0.05, momentum=0.9, nesterov=True),
                                   dict(lr=0.02, weight_decay=0.1), dict(lr=0.1, momentum=0.5, dampening=0.3)],
        (torch.optim.Adam, "adam"): [dict(lr=0.01), dict(lr=0.1, betas=(0.8, 0.9), weight_decay=0.1),
                                     dict(lr=0.003, eps=1e-4)],
        (torch.optim.AdamW, "adamw"): [dict(lr=0.01), dict(lr=0.05, weight_decay=0.5)],
        (torch.optim.Adam, "adam_ams"): [dict(lr=0.01, amsgrad=True), dict(lr=0.1, amsgrad=True, betas=(0.5, 0.6))],
    }
    for (cls, rule), kws in settings.items():
        M = len(kws)
        w0 = torch.randn(M, 3, 4, generator=g, dtype=dtype)
        b0 = torch.randn(M, 1, 4, generator=g, dtype=dtype)
        solo = [[w0[k].clone().requires_grad_(), b0[k, 0].clone().requires_grad_()] for k in range(M)]
        opts = [cls(ps, **kw) for ps, kw in zip(solo, kws)]
        make = {"sgd": lambda gr, like: BatchedSGD(gr, like), "adamw": lambda gr, like: BatchedAdam(gr, like, True)}
        fused = make.get(rule, lambda gr, like: BatchedAdam(gr, like, False))([o.param_groups[0] for o in opts], w0)
        W, B = w0.clone(), b0.clone()
        for _ in range(25):
            gw = torch.randn(M, 3, 4, generator=g, dtype=dtype)
            gb = torch.randn(M, 1, 4, generator=g, dtype=dtype)
            for k, (o, (w, b)) in enumerate(zip(opts, solo)):
                w.grad, b.grad = gw[k].clone(), gb[k, 0].clone()
                o.step()
            fused.step([W, B], [gw, gb])
        for k, (w, b) in enumerate(solo):
            assert torch.allclose(W[k], w.detach(), rtol=tol, atol=tol), (rule, k)
            assert torch.allclose(B[k, 0], b.detach(), rtol=tol, atol=tol), (rule, k)


def test_member_losses_and_counts_equal_the_loss_on_each_member():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(3, 7, 4, generator=g)
    y = torch.randint(0, 4, (3, 7), generator=g)
    for loss in (Loss("cross_entropy"), Loss("cross_entropy", label_smoothing=0.1)):
        per = member_losses(loss, z, y)
        for k in range(3):
            assert per[k].item() == pytest.approx(loss(z[k], y[k]).item(), abs=1e-6)
            assert member_correct(loss, z, y)[k].item() == loss.correct(z[k], y[k]).item()
    zb, yb = torch.randn(3, 7, 1, generator=g), torch.randint(0, 2, (3, 7), generator=g)
    zr, yr = torch.randn(3, 7, 2, generator=g), torch.randn(3, 7, 2, generator=g)
    for loss, zz, yy in ((Loss("bce"), zb, yb), (Loss("mse"), zr, yr)):
        per = member_losses(loss, zz, yy)
        for k in range(3):
            assert per[k].item() == pytest.approx(loss(zz[k], yy[k]).item(), abs=1e-6)
    assert member_correct(Loss("mse"), zr, yr) is None


def test_probe_accepts_the_catalog_optimizers_and_refuses_a_different_rule(monkeypatch):
    assert probe_optimizer(cfg(momentum=0.9)) == ("sgd", 1)
    assert probe_optimizer(cfg(name="adam", lr=0.01)) == ("adam", 1)

    class EpsInsideAdam(torch.optim.Adam):
        """Adam with ε inside the square root: same param-group keys, other numbers."""

        @torch.no_grad()
        def step(self, closure=None):
            with torch.enable_grad():
                loss = closure() if closure is not None else None
            for group in self.param_groups:
                b1, b2 = group["betas"]
                for p in group["params"]:
                    st = self.state[p]
                    if not st:
                        st["t"], st["m"], st["v"] = 0, torch.zeros_like(p), torch.zeros_like(p)
                    st["t"] += 1
                    st["m"].mul_(b1).add_(p.grad, alpha=1 - b1)
                    st["v"].mul_(b2).addcmul_(p.grad, p.grad, value=1 - b2)
                    m_hat = st["m"] / (1 - b1 ** st["t"])
                    v_hat = st["v"] / (1 - b2 ** st["t"])
                    p.sub_(group["lr"] * m_hat / (v_hat + group["eps"]).sqrt())
            return loss

    monkeypatch.setitem(catalog.OPTIMIZERS, "eps_inside", EpsInsideAdam)
    batched._probe_cache.clear()
    c = [cfg(seed=s, name="eps_inside", lr=0.01, eps=1e-3) for s in (0, 1)]
    assert probe_optimizer(c[0]) == (None, 1)
    outcomes = train_group(c)  # falls back to each member's own optimizer, still exact
    assert [o.info["mode"] for o in outcomes] == ["per_member"] * 2
    solo = run_experiment(c[1], write=False, verbose=False)
    assert max_param_diff(solo.model, outcomes[1].result.model) <= 1e-5
    with pytest.raises(ValueError, match="no fused rule"):
        train_group(c, mode="fused")


def test_optimizers_that_reevaluate_the_loss_train_alone(monkeypatch):
    class TwiceSGD(torch.optim.SGD):
        def step(self, closure=None):
            closure()
            return super().step(closure)

    monkeypatch.setitem(catalog.OPTIMIZERS, "twice", TwiceSGD)
    batched._probe_cache.clear()
    outcomes = train_group([cfg(seed=s, name="twice", lr=0.1) for s in (0, 1)])
    assert all(o.info["batched"] == 1 and "closure 2 times" in o.info["reason"] for o in outcomes)
    assert all(o.error is None for o in outcomes)


def test_runs_that_cannot_be_batched_train_alone_with_a_reason():
    aug = parse_config({**cfg().to_dict(), "data": BLOBS, "model": {"hidden": [16]},
                        "augment": [{"name": "noise", "std": 0.1}]})
    assert batch_key(aug) is None
    cnn_like = parse_config({**cfg().to_dict(), "callbacks": []})
    assert batch_key(cnn_like) == batch_key(cfg(seed=5, lr=0.3))  # seed and lr may differ in a batch
    outcomes = train_group([aug, cfg(seed=1)])
    assert outcomes[0].info["batched"] == 1 and "augmentation" in outcomes[0].info["reason"]
    assert outcomes[1].info["batched"] == 1 and "no other run" in outcomes[1].info["reason"]
    assert all(o.error is None for o in outcomes)


def test_a_diverging_member_fails_like_its_solo_run_and_spares_the_others():
    cfgs = [cfg(seed=0, lr=1e6, momentum=0.9, activation="relu"), cfg(seed=1, lr=0.05, momentum=0.9, activation="relu"),
            cfg(seed=2, lr=0.1, activation="relu")]
    outcomes = train_group(cfgs)
    with pytest.raises(NonFiniteLossError) as solo_err:
        run_experiment(cfgs[0], write=False, verbose=False)
    err = outcomes[0].error
    assert isinstance(err, NonFiniteLossError) and outcomes[0].result is None
    assert (err.epoch, err.step, err.global_step) == (solo_err.value.epoch, solo_err.value.step,
                                                      solo_err.value.global_step)
    for c, o in zip(cfgs[1:], outcomes[1:]):
        assert o.error is None
        assert max_param_diff(run_experiment(c, write=False, verbose=False).model, o.result.model) <= 1e-5


def test_diagnostics_of_members_equal_those_of_solo_runs():
    cfgs = [cfg(seed=s, epochs=2, lr=0.1, momentum=0.9, diagnostics={"every": 1, "probe": 64}) for s in (0, 1)]
    outcomes = train_group(cfgs)
    solo = run_experiment(cfgs[1], write=False, verbose=False)
    a, b = solo.extras["diagnostics"].all_records(), outcomes[1].result.extras["diagnostics"].all_records()
    assert [(r["epoch"], r["step"]) for r in a] == [(r["epoch"], r["step"]) for r in b] == [(-1, 0), (0, 10), (1, 20)]
    for ra, rb in zip(a, b):
        for layer, row in ra["layers"].items():
            for key, v in row.items():
                if isinstance(v, float) and math.isfinite(v):
                    assert rb["layers"][layer][key] == pytest.approx(v, rel=1e-4, abs=1e-7), (layer, key)
    assert [v.kind for v in solo.extras["verdicts"]] == [v.kind for v in outcomes[1].result.extras["verdicts"]]


# --- any model, through torch.func ------------------------------------------------------------

def vcfg(seed, model, data=None, epochs=2, **extra):
    # 320 training samples -> 10 steps of 32 per epoch
    return parse_config({"seed": seed, "data": data or {"name": "moons", "n_samples": 457, "noise": 0.2},
                         "model": model, "optimizer": {"name": "sgd", "lr": 0.1, "momentum": 0.9},
                         "train": {"epochs": epochs, "batch_size": 32}, "diagnostics": None, **extra})


def assert_equals_solo(c, o, tol=1e-6):
    """Parameters, buffers (running statistics), history and final numbers of a member equal
    those of its solo run to ``tol`` (relative to the value where it exceeds 1)."""
    assert o.error is None, o.error
    solo = run_experiment(c, write=False, verbose=False)
    a, b = solo.model.state_dict(), o.result.model.state_dict()
    assert list(a) == list(b)
    for k in a:
        assert torch.allclose(a[k].double(), b[k].double(), rtol=tol, atol=tol), (k, (a[k] - b[k]).abs().max())
    ha, hb = solo.history.records(), o.result.history.records()
    assert len(ha) == len(hb)
    for ra, rb in zip(ha, hb):
        assert set(ra) == set(rb)
        for key in ra:
            if key != "time":
                assert rb[key] == pytest.approx(ra[key], rel=1e-5, abs=1e-6), key
    for k, v in solo.final.items():
        assert o.result.final[k] == pytest.approx(v, rel=1e-5, abs=1e-6), k
    return solo


MODELS = {
    "batch_norm": ({"hidden": [16, 16], "norm": "batch"}, None),
    "layer_norm": ({"hidden": [16, 16], "norm": "layer", "activation": "tanh"}, None),
    "residual": ({"hidden": [16, 16], "residual": True, "activation": "gelu"}, None),
    "dropout": ({"hidden": [16, 16], "dropout": 0.3}, None),
    "cnn": ({"kind": "cnn", "channels": [4], "hidden": 8, "norm": "batch", "dropout": 0.2}, BLOBS),
}


@pytest.mark.parametrize("name", list(MODELS))
def test_any_model_batches_and_members_equal_their_solo_runs(name):
    model, data = MODELS[name]
    cfgs = [vcfg(s, model, data) for s in range(3)]
    outcomes = train_group(cfgs, batch_convs_on_cpu=True)  # 20 steps each
    assert all(o.info.get("engine") == "vmap" and o.info["batched"] == 3 for o in outcomes), outcomes[0].info
    assert all(o.info["peak_memory_bytes"] > 0 for o in outcomes)
    for c, o in zip(cfgs, outcomes):
        assert_equals_solo(c, o)
    if name == "batch_norm":  # each member has its own running statistics
        rm = [o.result.model.blocks[0].norm.running_mean for o in outcomes]
        assert not torch.equal(rm[0], rm[1])


def test_per_member_schedules_and_optimizers():
    cfgs = [vcfg(0, {"hidden": [16]}, schedule={"name": "cosine", "unit": "step"}),
            vcfg(1, {"hidden": [16]}, schedule={"name": "cosine", "unit": "step", "min_lr": 0.01}),
            vcfg(2, {"hidden": [16]}, schedule={"name": "step", "step_size": 1, "gamma": 0.5})]
    cfgs[2] = parse_config({**cfgs[2].to_dict(), "optimizer": {"name": "sgd", "lr": 0.3, "momentum": 0.5}})
    outcomes = train_group(cfgs)
    assert {o.info["mode"] for o in outcomes} == {"fused"} and outcomes[0].info["batched"] == 3
    for c, o in zip(cfgs, outcomes):
        solo = assert_equals_solo(c, o)
        assert solo.history["lr"] == pytest.approx(o.result.history["lr"], abs=0)
    adam = [vcfg(s, {"hidden": [16], "norm": "layer"}, optimizer={"name": "adam", "lr": 0.01 * (s + 1)},
                 schedule={"name": "step", "step_size": 1, "gamma": 0.5}) for s in range(2)]
    for c, o in zip(adam, train_group(adam)):
        assert_equals_solo(c, o)


def test_early_stopping_per_member_freezes_the_stopped_ones():
    es = {"name": "early_stopping", "patience": 1}
    cfgs = [vcfg(0, {"hidden": [16]}, epochs=8, callbacks=[{**es, "restore_best_weights": True}]),
            vcfg(1, {"hidden": [16]}, epochs=8, callbacks=[es]),
            vcfg(2, {"hidden": [16], "norm": "batch"}, epochs=8, callbacks=[es])]
    cfgs = [parse_config({**c.to_dict(), "optimizer": {"name": "sgd", "lr": lr}}) for c, lr in zip(cfgs, (0.5, 0.01, 3.0))]
    cfgs[2] = parse_config({**cfgs[2].to_dict(), "model": {"hidden": [16]}})
    outcomes = train_group(cfgs)
    assert outcomes[0].info["batched"] == 3
    lengths = []
    for c, o in zip(cfgs, outcomes):
        solo = assert_equals_solo(c, o)
        lengths.append(len(o.result.history.epoch))
        stops_a, stops_b = solo.extras["early_stops"], o.result.extras["early_stops"]
        assert [(s["stopped_epoch"], s["best_epoch"]) for s in stops_a] == [(s["stopped_epoch"], s["best_epoch"]) for s in stops_b]
    assert min(lengths) < 8  # some member stopped early while the others went on


def test_per_member_mode_and_memory_chunks():
    cfgs = [vcfg(s, {"hidden": [16], "norm": "batch"}) for s in range(3)]
    data, train = batched.member_bytes(batched.prepare_member(cfgs[0]))
    outcomes = train_group(cfgs, mode="per_member", memory_budget=2 * (data + train))  # two members per batch
    assert [o.info["batched"] for o in outcomes] == [2, 2, 1] or [o.info["batched"] for o in outcomes][:2] == [2, 2]
    assert [o.info["mode"] for o in outcomes][:2] == ["per_member"] * 2
    for c, o in zip(cfgs, outcomes):
        assert_equals_solo(c, o)


def test_models_that_do_not_run_under_vmap_train_alone():
    from trainlab.experiments.batched import why_not_batchable
    from trainlab.nn import MLP

    assert why_not_batchable(MLP(2, (8,), 2)) is None
    assert why_not_batchable(MLP(2, (8,), 2, norm="batch", dropout=0.5, residual=True)) is None
    assert "DropConnect" in why_not_batchable(MLP(2, (8,), 2, dropout=0.5, dropout_kind="dropconnect"))
    assert "reparametrized" in why_not_batchable(MLP(2, (8,), 2, norm="weight"))

    class Odd(torch.nn.Module):  # a forward that reads one member's numbers on the host
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(2, 2)

        def forward(self, x):
            return self.lin(x) * float(x.abs().max())

    assert "does not run under vmap" in why_not_batchable(Odd(), torch.randn(4, 2))


def test_cnns_on_the_cpu_train_alone_unless_asked():
    model, data = MODELS["cnn"]
    cfgs = [vcfg(s, model, data, epochs=1) for s in range(2)]
    assert batch_key(cfgs[0]) is None  # a sweep's executor gives each its own task (its own worker)
    outcomes = train_group(cfgs)
    assert all(o.info["batched"] == 1 and "convolutions on the CPU" in o.info["reason"] for o in outcomes)


def test_diagnostics_of_vmapped_members_equal_those_of_solo_runs():
    cfgs = [vcfg(s, {"hidden": [16, 16], "norm": "batch", "dropout": 0.2}, diagnostics={"every": 1, "probe": 64})
            for s in (0, 1)]
    outcomes = train_group(cfgs)
    assert outcomes[1].info["engine"] == "vmap"
    solo = assert_equals_solo(cfgs[1], outcomes[1])
    a, b = solo.extras["diagnostics"].all_records(), outcomes[1].result.extras["diagnostics"].all_records()
    assert [(r["epoch"], r["step"]) for r in a] == [(r["epoch"], r["step"]) for r in b] == [(-1, 0), (0, 10), (1, 20)]
    for ra, rb in zip(a, b):
        for layer, row in ra["layers"].items():
            for key, v in row.items():
                if isinstance(v, float) and math.isfinite(v):
                    assert rb["layers"][layer][key] == pytest.approx(v, rel=1e-4, abs=1e-7), (layer, key)
    assert [v.kind for v in solo.extras["verdicts"]] == [v.kind for v in outcomes[1].result.extras["verdicts"]]


@pytest.mark.parametrize("k", [2, 3])
@pytest.mark.parametrize("size", [(11, 13), (12, 12)])  # strided views; rows of k-tuples (divisible)
def test_evaluation_max_pool_gives_max_pool2d_exactly(k, size):
    # the vmap base's max-pool (eval mode, no gradients): maxima of strided views
    from torch import nn
    base, _ = batched._vmap_base(nn.Sequential(nn.MaxPool2d(k)))
    x = torch.randn(3, 4, *size)
    base.eval()
    with torch.no_grad():
        assert torch.equal(base(x), torch.nn.functional.max_pool2d(x, k))
    base.train()  # training: max_pool2d itself (its gradient goes to one entry per window)
    assert torch.equal(base(x), torch.nn.functional.max_pool2d(x, k))


@pytest.mark.parametrize("activation", ["relu", "tanh"])
@pytest.mark.parametrize("negative_gamma", [False, True])
def test_pool_first_evaluation_gives_the_models_numbers_exactly(activation, negative_gamma, monkeypatch):
    # eval mode: conv → batch norm → activation → max-pool stages pool first (the same numbers,
    # bit for bit); a γ < 0 (batch norm then decreases in its input) keeps the written order
    from torch.func import functional_call

    from trainlab.nn.normalization import _BatchNorm
    torch.manual_seed(0)
    model = catalog.MODELS["cnn"](in_shape=(1, 12, 12), channels=[4, 6], hidden=8, classes=3, norm="batch",
                                  activation=activation)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, _BatchNorm):
                m.running_mean.normal_()
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_()
        if negative_gamma:
            model.features[1].weight[0] = -0.7
    model.eval()
    base, _ = batched._vmap_base(model, pool_first=True)
    base.eval()
    taken = []
    stage = batched._pool_first_stage
    monkeypatch.setattr(batched, "_pool_first_stage", lambda mods: taken.append(stage(mods)) or taken[-1])
    state = {**dict(model.named_parameters()), **dict(model.named_buffers())}
    x = torch.randn(5, 144)
    with torch.no_grad():
        assert torch.equal(functional_call(base, state, (x,)), model(x))
    assert taken.count(True) == (1 if negative_gamma else 2)  # the first stage's γ has the negative entry


def test_training_pools_before_relu_with_the_same_outputs_and_gradients():
    # relu → max-pool runs as max-pool → relu on the base copy: same outputs, same gradients
    # (inputs with exact zeros and ties, where the gradient's routing could differ)
    from torch import nn
    from torch.func import functional_call
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
    base, _ = batched._vmap_base(model)
    x = torch.randn(4, 1, 8, 8).round()  # many equal values after the convolution's rounding
    with torch.no_grad():
        model[0].weight.copy_(model[0].weight.round())
        model[0].bias.zero_()
    params = {k: v.detach().clone().requires_grad_() for k, v in model.named_parameters()}
    ya, yb = model(x), functional_call(base, params, (x,))
    assert torch.equal(ya, yb)
    g = torch.randn_like(ya)
    ya.backward(g)
    yb.backward(g)
    for k, p in model.named_parameters():
        assert torch.equal(p.grad, params[k].grad), k


@pytest.mark.parametrize("draws", [False, True])
def test_members_of_one_data_section_and_seed_share_its_loading(draws, monkeypatch):
    # members with the same data section and seed load it once; a loader that draws from the
    # global RNG loads for every member (the model's init must see the solo run's stream)
    calls = []
    moons = catalog.DATASETS["moons"]

    def loader(**kw):
        calls.append(kw["seed"] if "seed" in kw else None)
        if draws:
            torch.rand(1)
        return moons(**kw)
    loader.__signature__ = __import__("inspect").signature(moons)
    monkeypatch.setitem(catalog.DATASETS, "moons", loader)
    cfgs = [cfg(seed=0, lr=0.1), cfg(seed=0, lr=0.05), cfg(seed=1)]
    loaded = {}
    shared = [batched.prepare_member(c, loaded) for c in cfgs]
    n_shared = len(calls)
    alone = [batched.prepare_member(c) for c in cfgs]
    assert n_shared == (len(cfgs) + 1 if draws else 2)  # drawing: one probe, then every member in its stream
    for a, b in zip(shared, alone):
        assert torch.equal(a.data.train.X, b.data.train.X) and torch.equal(a.data.val.y, b.data.val.y)
        for p, q in zip(a.model.state_dict().values(), b.model.state_dict().values()):
            assert torch.equal(p, q)


@pytest.mark.parametrize("layout", ["conv (members second)", "linear (members first)"])
def test_batch_norm_under_vmap_runs_the_solo_kernels_with_the_same_results(layout, monkeypatch):
    """The base copy's batch norm under vmap: on the CPU one fused-kernel call over the physical
    (N, M·C, S) tensor of a batched convolution, or one per member after a batched linear layer;
    values, statistics and gradients as the generated rule's (float64, 1e-12), and each member's
    as its own solo kernel's, bit for bit."""
    from torch.func import vmap

    from trainlab.nn import native_layers
    from trainlab.nn.normalization import BatchNorm1d, BatchNorm2d
    if native_layers.NORM.for_dtype(torch.float64) is None:
        pytest.skip("no kernels")
    m, c = 3, 4
    gen = torch.Generator().manual_seed(0)
    conv = layout.startswith("conv")
    h = torch.randn((m, 5, c, 6, 6) if conv else (m, 6, c), dtype=torch.float64, generator=gen) * 2 + 1
    dims, shape, solo_cls = ((0, 2, 3), (1, c, 1, 1), BatchNorm2d) if conv else ((0,), (1, c), BatchNorm1d)
    # a batched convolution's output has the members second, physically; a batched product's first
    physical, in_dim = (h.movedim(0, 1).contiguous(), 1) if conv else (h, 0)
    gamma = (torch.rand(m, c, dtype=torch.float64, generator=gen) + 0.5).requires_grad_()
    beta = torch.randn(m, c, dtype=torch.float64, generator=gen).requires_grad_()
    g = torch.randn(h.shape, dtype=torch.float64, generator=gen)

    def run():
        xs = physical.clone().requires_grad_()
        gamma.grad = beta.grad = None
        y, mu, var = vmap(lambda xx, ga, be: batched._BatchNormVmapped.apply(xx, ga, be, 1e-5, dims, shape),
                          in_dims=(in_dim, 0, 0))(xs, gamma, beta)
        y.backward(g)
        return [y.detach(), mu, var, xs.grad.movedim(in_dim, 0), gamma.grad, beta.grad]

    calls = []
    real = batched._BatchNormMembers.forward
    monkeypatch.setattr(batched._BatchNormMembers, "forward",
                        staticmethod(lambda ctx, *a: calls.append(a[4]) or real(ctx, *a)))
    kernel = run()
    assert calls and calls[0][4] == (not conv)
    with monkeypatch.context() as mp:
        mp.setattr(native_layers.NORM, "for_dtype", lambda dtype: None)
        generated = run()
    for a, b in zip(kernel, generated):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    for k in range(m):  # member k alone through the solo layer (its kernel): the same numbers exactly
        bn = solo_cls(c).double()
        with torch.no_grad():
            bn.weight.copy_(gamma[k])
            bn.bias.copy_(beta[k])
        xs = h[k].clone().requires_grad_()
        y = bn(xs)
        y.backward(g[k])
        assert torch.equal(y.detach(), kernel[0][k]) and torch.equal(xs.grad, kernel[3][k])
        assert torch.equal(bn.weight.grad, kernel[4][k]) and torch.equal(bn.bias.grad, kernel[5][k])


def test_batch_norm_under_vmap_with_a_graph_of_the_gradient():
    """create_graph=True through the kernel path: second derivatives of the formula itself (the
    plain ops under vmap, differentiated by autograd)."""
    from torch.func import vmap

    from trainlab.nn import native_layers
    if native_layers.NORM.for_dtype(torch.float64) is None:
        pytest.skip("no kernels")
    gen = torch.Generator().manual_seed(1)
    w = torch.randn(2, 3, 5, dtype=torch.float64, generator=gen)
    x = torch.randn(2, 6, 5, dtype=torch.float64, generator=gen).requires_grad_()
    gamma = (torch.rand(2, 3, dtype=torch.float64, generator=gen) + 0.5).requires_grad_()

    def formula(h, ga):
        mu = h.mean(0, keepdim=True)
        return (h - mu) / ((h - mu).square().mean(0, keepdim=True) + 1e-5).sqrt() * ga

    def second(bn):
        y = vmap(lambda xx, ww, ga: bn(xx @ ww.t(), ga))(x, w, gamma)
        (gx,) = torch.autograd.grad(y.sin().sum(), x, create_graph=True)
        return torch.autograd.grad(gx.square().sum(), [x, gamma])

    calls = []
    real = batched._BatchNormMembers.backward

    def spy(ctx, *g):
        calls.append(torch.is_grad_enabled())
        return real(ctx, *g)

    from unittest import mock
    with mock.patch.object(batched._BatchNormMembers, "backward", staticmethod(spy)):
        ours = second(lambda h, ga: batched._BatchNormVmapped.apply(h, ga, None, 1e-5, (0,), (1, 3))[0])
    assert calls[0] is True  # the first backward builds a graph (the second goes through the node again)
    for a, b in zip(ours, second(formula)):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_max_pool_under_vmap_runs_the_kernels_with_torchs_values_and_gradients(monkeypatch):
    """The base copy's max-pool under vmap: the fused C kernels on the physical tensor (members
    first or second), values and gradients torch's bit for bit, ties included."""
    from torch.func import vmap

    from trainlab.nn import native_layers, pooling
    if native_layers.POOL.for_dtype(torch.float32) is None:
        pytest.skip("no kernels")
    calls = []
    real = pooling._MaxPoolFn.forward
    monkeypatch.setattr(pooling._MaxPoolFn, "forward", staticmethod(lambda ctx, *a: calls.append(1) or real(ctx, *a)))
    gen = torch.Generator().manual_seed(0)
    h = torch.randn(3, 4, 2, 8, 8, generator=gen).mul(2).round()  # (members, N, C, H, W), with ties
    g = torch.randn(3, 4, 2, 4, 4, generator=gen)
    for physical, in_dim in ((h.clone(), 0), (h.movedim(0, 1).contiguous(), 1)):
        xs = physical.clone().requires_grad_()
        y = vmap(lambda t: batched._MaxPoolVmapped.apply(t, 2), in_dims=in_dim)(xs)
        y.backward(g)
        ref_x = h.clone().requires_grad_()
        ref = torch.stack([torch.nn.functional.max_pool2d(ref_x[k], 2) for k in range(3)])
        ref.backward(g)
        assert torch.equal(y, ref) and torch.equal(xs.grad.movedim(in_dim, 0), ref_x.grad)
    assert len(calls) == 2


def test_the_batching_rules_under_outer_transforms_and_second_derivatives():
    """Nested vmap, grad of vmap, and a graph of the gradient through the batched max-pool: the
    rules leave the kernels to plain tensors and agree with torch's ops."""
    from torch.func import grad, vmap

    gen = torch.Generator().manual_seed(3)
    x = torch.randn(2, 3, 4, 2, 6, 6, dtype=torch.float64, generator=gen)
    pool = lambda t: batched._MaxPoolVmapped.apply(t, 2)  # noqa: E731
    torch.testing.assert_close(vmap(vmap(pool))(x), torch.nn.functional.max_pool2d(x.flatten(0, 2), 2).view(2, 3, 4, 2, 3, 3))
    g = grad(lambda t: vmap(pool)(t).square().sum())(x[0])
    xr = x[0].clone().requires_grad_()
    torch.nn.functional.max_pool2d(xr.flatten(0, 1), 2).square().sum().backward()
    torch.testing.assert_close(g, xr.grad)
    w = torch.rand(3, 2, dtype=torch.float64, generator=gen) + 0.5
    bn = lambda t, ww: batched._BatchNormVmapped.apply(t, ww, None, 1e-5, (0, 2, 3), (1, 2, 1, 1))[0]  # noqa: E731
    assert vmap(vmap(bn, in_dims=(0, None)), in_dims=(0, None))(x[:, :, :, :, :, :], w[0]).shape == x.shape
    xs = x[0].clone().requires_grad_()
    (gx,) = torch.autograd.grad(vmap(pool)(xs).pow(3).sum(), xs, create_graph=True)
    (gg,) = torch.autograd.grad(gx.sum(), xs)
    xr = x[0].clone().requires_grad_()
    (gx_ref,) = torch.autograd.grad(torch.nn.functional.max_pool2d(xr.flatten(0, 1), 2).pow(3).sum(), xr,
                                    create_graph=True)
    torch.testing.assert_close(gg, torch.autograd.grad(gx_ref.sum(), xr)[0])
