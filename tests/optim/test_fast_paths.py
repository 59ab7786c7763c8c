"""The ``torch._foreach_*`` fast paths compute the same updates as the readable per-tensor rules.

The one-pass native kernels, which take most of these steps by default, are turned off here
(``foreach_only``); test_native.py holds them to the same bounds."""
import pytest
import torch

import trainlab.optim as O
from optim_helpers import TOL, foreach_only, maxdiff, trajectory

CASES = [
    (O.SGD, {"lr": 0.05}), (O.SGD, {"lr": 0.05, "momentum": 0.9, "dampening": 0.2, "weight_decay": 0.01}),
    (O.SGD, {"lr": 0.05, "momentum": 0.9, "nesterov": True}),
    (O.SGD, {"lr": 0.05, "momentum": 0.9, "momentum_form": "ema"}),
    (O.SGD, {"lr": 0.05, "momentum": 0.9, "momentum_form": "ema", "nesterov": True}),
    (O.SGD, {"lr": 0.05, "momentum": 0.9, "momentum_form": "velocity", "nesterov": True}),
    (O.SGD, {"lr": 0.05, "momentum": 0.9, "nesterov": True, "nesterov_form": "lookahead"}),
    (O.Adam, {"lr": 0.01}), (O.Adam, {"lr": 0.01, "amsgrad": True, "weight_decay": 0.1}),
    (O.Adam, {"lr": 0.01, "eps_mode": "hat", "eps": 1e-3}), (O.Adam, {"lr": 0.01, "eps_mode": "inside", "eps": 1e-3}),
    (O.Adam, {"lr": 0.01, "bias_correction": False, "maximize": True}), (O.AdamW, {"lr": 0.01, "weight_decay": 0.1}),
    (O.Adamax, {"lr": 0.01}), (O.NAdam, {"lr": 0.01, "weight_decay": 0.1, "decoupled_weight_decay": True}),
    (O.Adagrad, {"lr": 0.1, "lr_decay": 0.1, "initial_accumulator_value": 0.1}),
    (O.Adagrad, {"lr": 0.1, "eps_placement": "inside", "eps": 1e-4}),
    (O.RMSprop, {"lr": 0.01, "centered": True, "momentum": 0.5}),
    (O.RMSprop, {"lr": 0.01, "eps_placement": "inside", "eps": 1e-4}),
    (O.Adadelta, {"weight_decay": 0.01}),
]
IDS = [f"{cls.__name__}-{'-'.join(f'{k}={v}' for k, v in kw.items())}" for cls, kw in CASES]


def _transforms():
    return [O.ClipByGlobalNorm(0.5), O.L1Penalty(1e-3), O.ElasticNet(1e-3, 0.3), O.ClipByValue(0.2),
            O.ClipByNorm(0.3), O.AddNoise(0.01, seed=3), O.L1Proximal(1e-3), O.Lookahead(3, 0.5)]


@pytest.mark.parametrize("cls,kwargs", CASES, ids=IDS)
def test_fast_path_matches_readable_rule(cls, kwargs):
    fast = trajectory(lambda p: foreach_only(cls(p, foreach=True, **kwargs)), torch.float64, 60)
    slow = trajectory(lambda p: cls(p, foreach=False, **kwargs), torch.float64, 60)
    assert maxdiff(fast, slow) < TOL[torch.float64]


@pytest.mark.parametrize("cls,kwargs", [CASES[1], CASES[8], CASES[17]], ids=[IDS[1], IDS[8], IDS[17]])
def test_fast_path_matches_readable_rule_in_float32(cls, kwargs):
    fast = trajectory(lambda p: foreach_only(cls(p, foreach=True, **kwargs)), torch.float32, 100)
    slow = trajectory(lambda p: cls(p, foreach=False, **kwargs), torch.float32, 100)
    assert maxdiff(fast, slow) < TOL[torch.float32]


def test_fast_path_with_every_transform_in_the_chain():
    def make(foreach):
        return lambda p: foreach_only(O.Adam(p, lr=0.01, foreach=foreach).add_transforms(*_transforms()))
    assert maxdiff(trajectory(make(True), torch.float64, 40), trajectory(make(False), torch.float64, 40)) < 1e-12
