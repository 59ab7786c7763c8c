"""``fused=True``: the readable rule compiled into one kernel over the flat buffers.

It runs the same operations in the same order as the readable rule; the C++ compiler may
contract a·b + c into one fused multiply-add, so the bound is the fast-path tolerance (TOL), not
bit equality (in practice 0–2 ulp). Each configuration compiles once (seconds), so the full matrix
is marked slow and the default suite runs one.
"""
import pytest
import torch

import trainlab.optim as O
from optim_helpers import TOL, maxdiff, trajectory

CASES = [
    (O.Adam, {"lr": 0.01}),
    (O.Adam, {"lr": 0.01, "amsgrad": True, "weight_decay": 0.1}),
    (O.Adam, {"lr": 0.01, "eps_mode": "hat", "eps": 1e-3, "maximize": True}),
    (O.Adam, {"lr": 0.01, "eps_mode": "inside", "eps": 1e-3, "bias_correction": False}),
    (O.AdamW, {"lr": 0.01, "weight_decay": 0.1}),
    (O.SGD, {"lr": 0.05, "momentum": 0.9, "dampening": 0.2, "weight_decay": 0.01}),
    (O.SGD, {"lr": 0.05, "momentum": 0.9, "nesterov": True}),
]
IDS = [f"{cls.__name__}-{'-'.join(f'{k}={v}' for k, v in kw.items())}" for cls, kw in CASES]


def _check(cls, kwargs, dtype, steps=40):
    fused = trajectory(lambda p: cls(p, fused=True, **kwargs), dtype, steps)
    readable = trajectory(lambda p: cls(p, foreach=False, **kwargs), dtype, steps)
    assert maxdiff(fused, readable) < TOL[dtype]


def test_fused_adam_matches_the_readable_rule():
    _check(O.Adam, {"lr": 0.01}, torch.float64)


@pytest.mark.slow
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("cls,kwargs", CASES, ids=IDS)
def test_fused_rules_match_the_readable_rules(cls, kwargs, dtype):
    _check(cls, kwargs, dtype)


def test_fused_chains_it_does_not_cover_take_the_flat_path():
    from trainlab.optim.fused import fused_rule
    opt = O.SGD([torch.nn.Parameter(torch.ones(2))], lr=0.1, momentum=0.9, momentum_form="ema")
    assert fused_rule(opt.chain()) is None
    opt = O.Adam([torch.nn.Parameter(torch.ones(2))], eps_mode="hat")
    assert fused_rule(opt.chain()) is not None


def test_fused_without_foreach_is_refused():
    with pytest.raises(ValueError, match="fused=True and foreach=False"):
        O.Adam([torch.nn.Parameter(torch.ones(2))], fused=True, foreach=False)


def test_fused_without_a_cxx_compiler_says_so_in_one_line():
    from torch._inductor import config as inductor_config

    from trainlab.train.compile import CompilerMissingError
    with inductor_config.patch({"cpp.cxx": (None, "no-such-compiler++")}), \
            pytest.raises(CompilerMissingError, match="needs a C\\+\\+ compiler.*no-such-compiler\\+\\+") as e:
        O.Adam([torch.nn.Parameter(torch.ones(2))], fused=True)
    assert "\n" not in str(e.value) and "apt-get install g++" in str(e.value)


@pytest.mark.slow
@pytest.mark.parametrize("cls,kwargs", CASES, ids=IDS)
def test_fused_rules_compute_what_the_flat_path_computes(cls, kwargs):
    # the same operations in the same order; a compiler's fused multiply-add may move the last bit
    fused = trajectory(lambda p: cls(p, fused=True, **kwargs), torch.float32, 40)
    flat = trajectory(lambda p: cls(p, **kwargs), torch.float32, 40)
    assert maxdiff(fused, flat) <= 4 * torch.finfo(torch.float32).eps * fused.abs().max().item()
