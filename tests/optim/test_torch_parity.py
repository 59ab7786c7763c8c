"""Our PyTorch-compatible optimizers follow torch.optim's trajectories.

For every hyperparameter combination PyTorch's own optimizer tests use on the CPU
(``torch/testing/_internal/common_optimizers.py``, ``optim_inputs_func_*``), both run 100
mini-batch steps on the same small MLP from the same start; the parameters must agree to 1e-6 in
float32 and 1e-12 in float64. Continuing after a state-dict reload must give exactly the same
trajectory as not reloading.

Ours run their per-tensor fast path here (``TRAINLAB_NATIVE=0``): it does torch's operations with
torch's kernels, so it reproduces torch's roundings. The one-pass native kernels compute the same
rule without fused multiply-adds, while torch's vectorized ``addcmul``/``addcdiv`` contract into
them or not depending on the CPU they dispatch to; over 100 steps of this small tanh net that
last-bit difference grows past 1e-6 on some CPUs (RMSprop float32: 1.19e-6 on an AVX2 machine, 0
for the per-tensor path). ``tests/optim/test_native.py`` holds the kernels to our own rules instead.
"""
import pytest
import torch

import trainlab.optim as ours
from optim_helpers import TOL, flat, maxdiff, problem, roundtrip, trajectory

# the CPU entries of torch's optim_inputs_func_* (CUDA-only ``capturable`` entries left out)
CASES = {
    "SGD": [{}, {"lr": 1e-2}, {"lr": torch.tensor(0.001)}, {"weight_decay": 0.5}, {"momentum": 0.9},
            {"weight_decay": 0.1, "maximize": True}, {"momentum": 0.9, "dampening": 0.5},
            {"momentum": 0.9, "weight_decay": 0.1}, {"momentum": 0.9, "nesterov": True, "weight_decay": 0.1}],
    "Adam": [{}, {"lr": 0.01}, {"weight_decay": 0.1}, {"weight_decay": 0.1, "maximize": True},
             {"weight_decay": 0.1, "amsgrad": True}],
    "AdamW": [{}, {"lr": 0.01}, {"weight_decay": 0.1}, {"weight_decay": 0.1, "maximize": True},
              {"weight_decay": 0.1, "amsgrad": True}],
    "Adagrad": [{}, {"weight_decay": 0.1}, {"weight_decay": 0.1, "maximize": True}, {"lr": 0.1},
                {"initial_accumulator_value": 0.1, "weight_decay": 0.1},
                {"lr": 0.1, "lr_decay": 0.5, "weight_decay": 0.1}, {"lr": torch.tensor(0.001)}],
    "Adadelta": [{}, {"lr": 0.01}, {"weight_decay": 0.1}, {"maximize": True},
                 {"weight_decay": 0.1, "maximize": True}, {"rho": 0.95, "weight_decay": 0.9}],
    "RMSprop": [{}, {"lr": 1e-3}, {"weight_decay": 0.1}, {"maximize": True},
                {"weight_decay": 0.1, "centered": True}, {"maximize": True, "weight_decay": 0.1},
                {"weight_decay": 0.1, "centered": True, "momentum": 0.1},
                {"weight_decay": 0.1, "centered": True, "momentum": 0.1, "maximize": True}],
    "Adamax": [{}, {"lr": 0.1}, {"weight_decay": 0.1}, {"maximize": True},
               {"weight_decay": 0.1, "maximize": True}],
    "NAdam": [{}, {"lr": 1e-3}, {"momentum_decay": 6e-3}, {"weight_decay": 0.1},
              {"weight_decay": 0.1, "momentum_decay": 6e-3},
              {"weight_decay": 0.1, "momentum_decay": 6e-3, "decoupled_weight_decay": True},
              {"weight_decay": 0.1, "maximize": True}],
    "Rprop": [{}, {"lr": 2e-4}, {"etas": (0.5, 1.5)}, {"step_sizes": (2e-6, 100)}, {"maximize": True}],
    "LBFGS": [{}, {"lr": 0.01}, {"lr": torch.tensor(0.001)}, {"tolerance_grad": 1e-6},
              {"line_search_fn": "strong_wolfe"}],
}
PARAMS = [(name, kw) for name, kws in CASES.items() for kw in kws]
IDS = [f"{name}-{'-'.join(f'{k}={v}' for k, v in kw.items()) or 'default'}" for name, kw in PARAMS]
DTYPES = [torch.float32, torch.float64]


def _batch(name):
    # L-BFGS is a full-batch method: on 8-sample batches with lr = 1 it diverges (torch's too)
    return 32 if name == "LBFGS" else 8


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("name,kwargs", PARAMS, ids=IDS)
def test_follows_torch_trajectory(name, kwargs, dtype, float64_default, monkeypatch):
    monkeypatch.setenv("TRAINLAB_NATIVE", "0")  # the per-tensor path: torch's kernels (see the module doc)
    # torch keeps a few scalars (NAdam's mu_product) in the default dtype: match it to the run's
    torch.set_default_dtype(dtype)
    ref, ref_path = trajectory(lambda p: getattr(torch.optim, name)(p, **kwargs), dtype, 100, record=True,
                               batch=_batch(name))
    got, got_path = trajectory(lambda p: getattr(ours, name)(p, **kwargs), dtype, 100, record=True,
                               batch=_batch(name))
    assert len(got_path) >= 100
    assert maxdiff(got, ref) < TOL[dtype]
    # not only the end point: the whole path
    assert max(maxdiff(a, b) for a, b in zip(got_path, ref_path)) < TOL[dtype]
    # and the run actually moved (a test that cannot fail is a defect)
    assert maxdiff(got_path[-1], got_path[0]) > 1e-4 or name == "LBFGS" and "lr" in kwargs


@pytest.mark.parametrize("name,kwargs", [
    ("SGD", {"momentum": 0.9, "nesterov": True, "weight_decay": 0.1}), ("SGD", {"momentum": 0.9, "dampening": 0.5}),
    ("Adam", {"weight_decay": 0.1, "amsgrad": True}), ("AdamW", {}), ("Adagrad", {"lr_decay": 0.5}),
    ("Adadelta", {}), ("RMSprop", {"centered": True, "momentum": 0.1}), ("Adamax", {}),
    ("NAdam", {"weight_decay": 0.1, "decoupled_weight_decay": True}), ("Rprop", {}),
    ("LBFGS", {"line_search_fn": "strong_wolfe"}), ("LBFGS", {}),
    ("DeltaBarDelta", {}), ("NonlinearCG", {}), ("Newton", {"damping": 1.0, "lr": 0.5}),
])
def test_reload_continues_the_same_trajectory(name, kwargs):
    cls = getattr(ours, name)
    straight = trajectory(lambda p: cls(p, **kwargs), torch.float64, 40)
    # 20 steps, save, rebuild everything from the saved states, 20 more steps
    model, _, _ = problem(torch.float64)
    opt = cls(model.parameters(), **kwargs)
    trajectory(None, torch.float64, 20, model=model, opt=opt)
    saved_model, saved_opt = roundtrip(model.state_dict()), roundtrip(opt.state_dict())
    model2, _, _ = problem(torch.float64, seed=1)  # different weights, overwritten by the load
    model2.load_state_dict(saved_model)
    opt2 = cls(model2.parameters(), **kwargs)
    opt2.load_state_dict(saved_opt)
    resumed = trajectory(None, torch.float64, 20, model=model2, opt=opt2, start=20)
    assert torch.equal(resumed, straight)
    # the original optimizer keeps going unaffected by the copy (no shared buffers)
    trajectory(None, torch.float64, 20, model=model, opt=opt, start=20)
    assert torch.equal(flat(model), straight)


@pytest.mark.parametrize("name,kwargs", [("SGD", {"momentum": 0.9}), ("Adam", {"amsgrad": True}),
                                         ("RMSprop", {"centered": True}), ("Adagrad", {})])
def test_loads_a_torch_state_dict(name, kwargs):
    """State keys are torch's: a torch.optim state dict continues in ours as in torch."""
    model_t, _, _ = problem(torch.float64)
    opt_t = getattr(torch.optim, name)(model_t.parameters(), **kwargs)
    trajectory(None, torch.float64, 10, model=model_t, opt=opt_t)
    model_o, _, _ = problem(torch.float64)
    model_o.load_state_dict(model_t.state_dict())
    opt_o = getattr(ours, name)(model_o.parameters(), **kwargs)
    opt_o.load_state_dict(roundtrip(opt_t.state_dict()))
    ref = trajectory(None, torch.float64, 10, model=model_t, opt=opt_t, start=10)
    got = trajectory(None, torch.float64, 10, model=model_o, opt=opt_o, start=10)
    assert maxdiff(got, ref) < 1e-12
