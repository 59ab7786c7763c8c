"""The one-pass native kernels (trainlab.optim.native) compute the readable rules' updates.

They run the fast path's operations in its order without fused multiply-adds, so they agree with
the readable rule to the fast-path tolerance (TOL) and with the foreach path to a few ulp (PyTorch's
own vectorized lerp/addcmul may use a fused multiply-add where the kernels do not). Without a C
compiler the optimizers fall back to the foreach path and compute what it computes.
"""
import pytest
import torch

import trainlab.optim as O
from optim_helpers import TOL, foreach_only, maxdiff, resume_from_state_dicts, trajectory
from trainlab import native_build
from trainlab.optim import native
from trainlab.optim.chain import ChainOptimizer

pytestmark = pytest.mark.skipif(native.kernels() is None, reason=f"no native kernels: {native.native_problem()}")

CASES = [
    (O.SGD, {"lr": 0.05}),
    (O.SGD, {"lr": 0.05, "weight_decay": 0.01, "maximize": True}),
    (O.SGD, {"lr": 0.05, "momentum": 0.9}),
    (O.SGD, {"lr": 0.05, "momentum": 0.9, "dampening": 0.2, "weight_decay": 0.01}),
    (O.SGD, {"lr": 0.05, "momentum": 0.9, "nesterov": True, "maximize": True}),
    (O.Adam, {"lr": 0.01}),
    (O.Adam, {"lr": 0.01, "amsgrad": True, "weight_decay": 0.1}),
    (O.Adam, {"lr": 0.01, "eps_mode": "hat", "eps": 1e-3, "maximize": True}),
    (O.Adam, {"lr": 0.01, "eps_mode": "inside", "eps": 1e-3, "bias_correction": False}),
    (O.AdamW, {"lr": 0.01, "weight_decay": 0.1}),
    (O.AdamW, {"lr": 0.01, "weight_decay": 0.1, "amsgrad": True, "maximize": True}),
    (O.Adagrad, {"lr": 0.1}),
    (O.Adagrad, {"lr": 0.1, "lr_decay": 0.1, "initial_accumulator_value": 0.1, "weight_decay": 0.01}),
    (O.Adagrad, {"lr": 0.1, "eps_placement": "inside", "eps": 1e-4, "include_current": False,
                 "initial_accumulator_value": 0.1}),
    (O.RMSprop, {"lr": 0.01}),
    (O.RMSprop, {"lr": 0.01, "eps_placement": "inside", "eps": 1e-4, "weight_decay": 0.01, "maximize": True}),
]
IDS = [f"{cls.__name__}-{'-'.join(f'{k}={v}' for k, v in kw.items())}" for cls, kw in CASES]


def _refuse(*args, **kwargs):
    raise AssertionError("the step left the native path")


@pytest.fixture
def no_fallback(monkeypatch):
    """Any step the kernels do not take fails: proves the native path ran."""
    monkeypatch.setattr(ChainOptimizer, "_run", _refuse)
    monkeypatch.setattr(ChainOptimizer, "_step_flat", _refuse)


def _native_trajectory(cls, kwargs, dtype, steps, monkeypatch):
    with monkeypatch.context() as m:
        m.setattr(ChainOptimizer, "_run", _refuse)
        m.setattr(ChainOptimizer, "_step_flat", _refuse)
        return trajectory(lambda p: cls(p, **kwargs), dtype, steps)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("cls,kwargs", CASES, ids=IDS)
def test_native_kernels_match_the_readable_rules(cls, kwargs, dtype, monkeypatch):
    fast = _native_trajectory(cls, kwargs, dtype, 40, monkeypatch)
    readable = trajectory(lambda p: cls(p, foreach=False, **kwargs), dtype, 40)
    assert maxdiff(fast, readable) < TOL[dtype]


@pytest.mark.parametrize("cls,kwargs", CASES, ids=IDS)
def test_native_kernels_compute_what_the_foreach_path_computes(cls, kwargs, monkeypatch):
    fast = _native_trajectory(cls, kwargs, torch.float32, 40, monkeypatch)
    foreach = trajectory(lambda p: foreach_only(cls(p, **kwargs)), torch.float32, 40)
    assert maxdiff(fast, foreach) <= 4 * torch.finfo(torch.float32).eps * fast.abs().max().item()


def test_fused_true_on_the_cpu_runs_the_native_kernel(no_fallback):
    a = trajectory(lambda p: O.Adam(p, lr=0.01, fused=True), torch.float64, 10)
    b = trajectory(lambda p: O.Adam(p, lr=0.01), torch.float64, 10)
    assert torch.equal(a, b)


def test_sgd_momentum_buffer_starts_as_the_first_gradient():
    p = torch.nn.Parameter(torch.tensor([1.0, 2.0]))
    opt = O.SGD([p], lr=0.1, momentum=0.9)
    p.grad = torch.tensor([0.5, -1.0])
    opt.step()
    assert torch.equal(opt.state[p]["momentum_buffer"], torch.tensor([0.5, -1.0]))
    assert torch.equal(p.detach(), torch.tensor([1.0, 2.0]) - 0.1 * torch.tensor([0.5, -1.0]))


def test_chains_without_a_kernel_take_the_foreach_path():
    p = [torch.nn.Parameter(torch.ones(2))]
    for opt in (O.SGD(p, lr=0.1, momentum=0.9, momentum_form="ema"), O.RMSprop(p, centered=True),
                O.RMSprop(p, momentum=0.5), O.NAdam(p), O.Adamax(p),
                O.Adam(p).add_transforms(O.ClipByGlobalNorm(1.0))):
        assert native.native_rule(opt.chain()) is None, opt
    assert native.native_rule(O.AdamW(p).chain()) is not None


def test_tensors_the_kernels_do_not_take_fall_back_to_the_same_numbers():
    # half precision and a non-contiguous parameter: the foreach path takes the step
    for make in (lambda: torch.nn.Parameter(torch.randn(4, 3, dtype=torch.bfloat16)),
                 lambda: torch.nn.Parameter(torch.randn(3, 4).t())):
        torch.manual_seed(0)
        p, q = make(), None
        q = torch.nn.Parameter(p.detach().clone())
        a, b = O.Adam([p], lr=0.1), foreach_only(O.Adam([q], lr=0.1))
        for _ in range(3):
            p.grad = torch.ones_like(p)
            q.grad = torch.ones_like(q)
            a.step()
            b.step()
        assert torch.equal(p, q)


def test_resume_from_a_state_dict_matches_an_uninterrupted_run():
    straight, resumed, _, _ = resume_from_state_dicts(lambda p: O.Adam(p, lr=0.01, amsgrad=True))
    assert torch.equal(resumed, straight)


def test_without_a_compiler_the_optimizers_fall_back(monkeypatch, tmp_path):
    monkeypatch.setenv("TRAINLAB_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(native_build, "compiler", lambda: None)
    native._reset()
    try:
        assert native.kernels() is None
        problem_line = native.native_problem()
        assert "need a C compiler" in problem_line and "\n" not in problem_line
        a = trajectory(lambda p: O.SGD(p, lr=0.05, momentum=0.9), torch.float64, 10)
        b = trajectory(lambda p: foreach_only(O.SGD(p, lr=0.05, momentum=0.9)), torch.float64, 10)
        assert torch.equal(a, b)
        assert list(tmp_path.iterdir()) == []
    finally:
        native._reset()


def test_the_library_is_built_once_into_the_cache_atomically(monkeypatch, tmp_path):
    monkeypatch.setenv("TRAINLAB_CACHE_DIR", str(tmp_path))
    native._reset()
    try:
        assert native.kernels() is not None
        built = list((tmp_path / "native").iterdir())
        assert len(built) == 1 and built[0].suffix == ".so"  # no temporary file left behind
        stamp = built[0].stat().st_mtime_ns
        native._reset()
        assert native.kernels() is not None and built[0].stat().st_mtime_ns == stamp  # reused, not rebuilt
    finally:
        native._reset()


def test_trainlab_native_0_turns_the_kernels_off(monkeypatch):
    monkeypatch.setenv("TRAINLAB_NATIVE", "0")
    assert native.kernels() is None and "TRAINLAB_NATIVE=0" in native.native_problem()
    p = torch.nn.Parameter(torch.ones(3))
    p.grad = torch.ones(3)
    O.Adam([p], lr=0.1).step()  # the foreach path
    assert torch.allclose(p.detach(), torch.full((3,), 0.9))


@pytest.mark.parametrize("cls,kwargs", [CASES[3], CASES[6], CASES[12]], ids=[IDS[3], IDS[6], IDS[12]])
def test_large_tensors_split_over_threads_give_the_same_numbers(cls, kwargs):
    # tensors above the kernels' threshold are split over torch's intra-op threads (OpenMP);
    # an elementwise rule gives the same bits whatever the split
    before = torch.get_num_threads()
    finals = []
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            g = torch.Generator().manual_seed(0)
            p = torch.nn.Parameter(torch.randn(300, 400, generator=g))
            opt = cls([p], **kwargs)
            for _ in range(5):
                p.grad = torch.randn(p.shape, generator=g)
                opt.step()
            finals.append(p.detach().clone())
    finally:
        torch.set_num_threads(before)
    assert torch.equal(finals[0], finals[1])


def test_build_all_names_every_kernel_library():
    built = native_build.build_all()
    assert len(built) == 5 and all(v is None for v in built.values()), built


def test_turned_off_follows_the_environment_at_once(monkeypatch):
    monkeypatch.delenv("TRAINLAB_NATIVE", raising=False)
    assert native_build.turned_off() is False
    for value, off in (("0", True), ("1", False), ("", False)):
        monkeypatch.setenv("TRAINLAB_NATIVE", value)
        assert native_build.turned_off() is off
    monkeypatch.delenv("TRAINLAB_NATIVE")
    assert native_build.turned_off() is False


def test_a_compiler_that_rejects_the_cpus_own_flags_builds_without_them(tmp_path, monkeypatch):
    import ctypes
    import shutil

    real = native_build.compiler()
    if real is None:
        pytest.skip("no C compiler")
    cc = tmp_path / "picky-cc"  # rejects -march=native and -mprefer-vector-width=512, as some compilers do
    cc.write_text("#!/bin/sh\nfor a in \"$@\"; do case \"$a\" in -march=native|-mprefer-vector-width=*) "
                  "echo \"picky-cc: unknown option $a\" >&2; exit 1;; esac; done\n"
                  f"exec {shutil.which(real) or real} \"$@\"\n")
    cc.chmod(0o755)
    source = tmp_path / "twice.c"
    source.write_text("double trainlab_twice(double x) { return 2 * x; }\n")
    monkeypatch.setenv("TRAINLAB_CACHE_DIR", str(tmp_path / "cache"))
    lib = native_build.NativeLibrary(source, "twice", "a test kernel", lambda lib: None,
                                     ["-O2", *sorted(native_build.CPU_FLAGS)])
    built = ctypes.CDLL(str(lib.build(str(cc))))
    built.trainlab_twice.restype, built.trainlab_twice.argtypes = ctypes.c_double, [ctypes.c_double]
    assert built.trainlab_twice(1.5) == 3.0
