"""The flat path (one buffer per state and group) computes bit for bit what the per-tensor
``torch._foreach_*`` path computes, and stays a well-behaved ``torch.optim.Optimizer``."""
import pytest
import torch

import trainlab.optim as O
from optim_helpers import TOL, maxdiff, problem, resume_from_state_dicts, trajectory
from test_fast_paths import CASES, IDS


def _flat(make):
    def build(params):
        opt = make(params)
        opt.flat_min_tensors = 2  # the test problem has 4 tensors: take the flat path anyway
        opt.native = False  # not the one-pass kernels (test_native.py), which would take these steps
        return opt
    return build


def _no_flat(make):
    def build(params):
        opt = make(params)
        opt.native = False
        for g in opt.param_groups:
            g["flat"] = False
        return opt
    return build


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("cls,kwargs", CASES, ids=IDS)
def test_flat_path_is_bit_identical_to_the_per_tensor_fast_path(cls, kwargs, dtype):
    make = lambda p: cls(p, foreach=True, **kwargs)  # noqa: E731
    flat, flat_path = trajectory(_flat(make), dtype, 30, record=True)
    per_tensor, per_tensor_path = trajectory(_no_flat(make), dtype, 30, record=True)
    for a, b in zip(flat_path, per_tensor_path):
        assert torch.equal(a, b)


def test_flat_path_is_taken_and_the_tensors_are_views():
    model, X, y = problem()
    opt = O.Adam(model.parameters(), lr=0.01)
    opt.flat_min_tensors, opt.native = 2, False
    assert opt.flat_buffers == {}
    trajectory(None, steps=2, model=model, opt=opt)
    bufs = opt.flat_buffers[0]
    n = sum(p.numel() for p in model.parameters())
    assert bufs["param"].numel() == n and set(bufs) == {"param", "grad", "exp_avg", "exp_avg_sq"}
    for p in model.parameters():
        assert p.untyped_storage().data_ptr() == bufs["param"].untyped_storage().data_ptr()
        assert opt.state[p]["exp_avg"].untyped_storage().data_ptr() == bufs["exp_avg"].untyped_storage().data_ptr()


def test_groups_of_few_tensors_take_the_per_tensor_path_unless_fused():
    model, X, y = problem()
    opt = O.Adam(model.parameters(), lr=0.01)  # 4 tensors < flat_min_tensors
    trajectory(None, steps=2, model=model, opt=opt)
    assert opt.flat_buffers == {}


def test_not_elementwise_chains_and_missing_grads_take_the_per_tensor_path():
    model, X, y = problem()
    opt = O.Adam(model.parameters(), lr=0.01).add_transforms(O.ClipByGlobalNorm(1.0))
    opt.flat_min_tensors = 2
    trajectory(None, steps=2, model=model, opt=opt)
    assert opt.flat_buffers == {}
    model, X, y = problem()
    opt = O.SGD(model.parameters(), lr=0.1, momentum=0.9)
    opt.flat_min_tensors = 2
    ps = list(model.parameters())
    for p in ps:
        p.grad = torch.ones_like(p)
    ps[1].grad = None
    opt.step()
    assert opt.flat_buffers == {}
    ps[1].grad = torch.ones_like(ps[1])
    opt.step()  # every grad present, but the steps differ: per cohort, per tensor
    assert opt.flat_buffers == {}


def test_state_dict_round_trip_and_resume_match_an_uninterrupted_run():
    straight, resumed, (model, opt), saved_opt = resume_from_state_dicts(_flat(lambda p: O.Adam(p, lr=0.01, amsgrad=True)))
    assert torch.equal(resumed, straight)
    # loading into the running optimizer (its state no longer the flat views) rebuilds the buffers
    opt.load_state_dict(saved_opt)
    again = trajectory(None, torch.float64, 10, model=model, opt=opt, start=10)
    assert torch.equal(again, straight)


def test_add_param_group_and_model_to_rebuild_the_flat_buffers():
    model, X, y = problem(torch.float64)
    opt = O.SGD(list(model.parameters())[:2], lr=0.1, momentum=0.9)
    opt.flat_min_tensors, opt.native = 2, False
    trajectory(None, torch.float64, 3, model=model, opt=opt)
    opt.add_param_group({"params": list(model.parameters())[2:]})
    trajectory(None, torch.float64, 3, model=model, opt=opt, start=3)
    assert set(opt.flat_buffers) == {0, 1}
    # the same six steps with the per-tensor path
    model_b, _, _ = problem(torch.float64)
    opt_b = O.SGD(list(model_b.parameters())[:2], lr=0.1, momentum=0.9)
    opt_b.native, opt_b.param_groups[0]["flat"] = False, False
    trajectory(None, torch.float64, 3, model=model_b, opt=opt_b)
    opt_b.add_param_group({"params": list(model_b.parameters())[2:], "flat": False})
    trajectory(None, torch.float64, 3, model=model_b, opt=opt_b, start=3)
    for p, q in zip(model.parameters(), model_b.parameters()):
        assert torch.equal(p, q)


def test_flat_path_matches_the_readable_rule():
    # the per-tensor fast path agrees with the readable rule to TOL (test_fast_paths: lerp for the
    # moving averages, the bias corrections folded into one scalar); the flat path inherits it
    for cls, kwargs in CASES[:3] + CASES[7:9]:
        fast = trajectory(_flat(lambda p: cls(p, **kwargs)), torch.float64, 30)
        slow = trajectory(lambda p: cls(p, foreach=False, **kwargs), torch.float64, 30)
        assert maxdiff(fast, slow) < TOL[torch.float64]
