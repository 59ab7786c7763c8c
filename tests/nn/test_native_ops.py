"""trainlab's C++ layer-norm operator (trainlab.nn.native_ops.cpp) against the Python Function it
stands in for, and the build of operator libraries (native_build.TorchOpLibrary).

The operator calls the same two C kernels as normalization._LayerNormFn, with the same arguments,
so every output and gradient must equal that path's to the last bit (torch.equal); the Function
itself is proven against the readable form and torch.nn.LayerNorm in test_native_norm.py.
"""
import pytest
import torch
from torch import nn

import trainlab.nn as tn
from trainlab import native_build
from trainlab.nn import native_layers, normalization
from trainlab.nn.native_layers import OPS

pytestmark = pytest.mark.skipif(OPS.problem() is not None, reason=f"no operator: {OPS.problem()}")

NODE = "torch::autograd::CppNode<trainlab::LayerNormFunction>"


class _NoOperators:
    DTYPES = ()

    def get(self):
        return None


def _data(shape, dtype, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return (torch.randn(shape, generator=gen, dtype=torch.float64) * 3 + 1).to(dtype), \
        torch.randn(shape, generator=gen, dtype=torch.float64).to(dtype)


def _layer(normalized, kwargs, dtype, seed=1):
    layer = tn.LayerNorm(normalized, **kwargs).to(dtype)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in layer.parameters():
            p.copy_(torch.rand(p.shape, generator=gen, dtype=p.dtype) + 0.5)
    return layer


def _run(layer, x, g, *, x_grad=True, expanded=False):
    """Output, grad_fn's name, input gradient and parameter gradients of one forward + backward."""
    x = x.clone().requires_grad_(x_grad)
    layer.zero_grad(set_to_none=True)
    y = layer(x)
    name = y.grad_fn.name() if y.grad_fn is not None else None
    if y.requires_grad:
        y.sum().backward() if expanded else y.backward(g)
    return name, [y.detach(), x.grad] + [p.grad for p in layer.parameters()]


def _both(monkeypatch, layer, x, g, **kw):
    """(operator's run, Python Function's run) of the same layer on the same data."""
    ours = _run(layer, x, g, **kw)
    with monkeypatch.context() as m:
        m.setattr(normalization, "_OPS", _NoOperators())
        python = _run(layer, x, g, **kw)
    return ours, python


def _assert_equal(a, b):
    assert len(a) == len(b)
    for i, (s, t) in enumerate(zip(a, b)):
        assert (s is None) == (t is None), i
        if s is not None:
            assert torch.equal(s, t), (i, float((s - t).abs().max()))


CASES = [((128, 256), 256), ((3, 257), 257), ((257, 3), 3), ((1, 1), 1), ((5, 1), 1), ((257,), 257),
         ((4, 3, 5), (3, 5)), ((2, 3, 4, 5), 5), ((0, 6), 6)]
KWARGS = [{}, {"bias": False}, {"elementwise_affine": False}]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("kwargs", KWARGS, ids=["affine", "no-bias", "no-affine"])
@pytest.mark.parametrize("shape,normalized", CASES, ids=[str(s) for s, _ in CASES])
def test_the_operator_equals_the_python_function_to_the_last_bit(monkeypatch, shape, normalized, kwargs, dtype):
    layer = _layer(normalized, kwargs, dtype)
    x, g = _data(shape, dtype)
    (node, ours), (other, python) = _both(monkeypatch, layer, x, g)
    assert node == NODE and other != NODE
    _assert_equal(ours, python)


@pytest.mark.parametrize("which", ["input", "parameters", "nothing"])
def test_only_the_wanted_gradients(monkeypatch, which):
    layer = _layer(7, {}, torch.float64)
    for p in layer.parameters():
        p.requires_grad_(which == "parameters")
    x, g = _data((9, 7), torch.float64)
    (node, ours), (_, python) = _both(monkeypatch, layer, x, g, x_grad=which == "input")
    assert node == (None if which == "nothing" else NODE)
    _assert_equal(ours, python)
    assert (ours[1] is None) == (which != "input")


def test_an_expanded_output_gradient_and_two_threads(monkeypatch):
    """y.sum().backward() hands the node a stride-0 gradient; a large tensor is split over threads."""
    layer = _layer(1024, {}, torch.float32)
    x, g = _data((64, 1024), torch.float32)
    before = torch.get_num_threads()
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            (node, ours), (_, python) = _both(monkeypatch, layer, x, g, expanded=True)
            assert node == NODE
            _assert_equal(ours, python)
    finally:
        torch.set_num_threads(before)


def test_training_steps_equal_the_python_function(monkeypatch):
    """An MLP with layer norm trained a few Adam steps: the same weights by either path."""
    from trainlab.optim import Adam

    def train():
        torch.manual_seed(0)
        model = tn.MLP(12, (32, 32), 3, norm="layer")
        opt = Adam(model.parameters(), lr=1e-2)
        gen = torch.Generator().manual_seed(1)
        x, y = torch.randn(64, 12, generator=gen), torch.randint(0, 3, (64,), generator=gen)
        for _ in range(5):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
        return [p.detach().clone() for p in model.parameters()]

    ours = train()
    monkeypatch.setattr(normalization, "_OPS", _NoOperators())
    _assert_equal(ours, train())


def test_double_backward_differentiates_the_readable_form():
    """create_graph=True: the C++ backward differentiates μ, σ², (x − μ)/√(σ² + ε)·γ + β."""
    layer = _layer(4, {}, torch.float64)
    x = torch.randn(6, 4, dtype=torch.float64, requires_grad=True)
    assert layer(x).grad_fn.name() == NODE
    assert torch.autograd.gradgradcheck(lambda x: layer(x), (x,))
    g = torch.randn(6, 4, dtype=torch.float64)
    results = []
    for readable in (False, True):
        with tn.readable_layers(readable):
            xi = x.detach().clone().requires_grad_()
            (gx,) = torch.autograd.grad(layer(xi), xi, g, create_graph=True)
            results.append(torch.autograd.grad(gx.square().sum(), [xi, layer.weight]))
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def _fallbacks():
    x, _ = _data((8, 6), torch.float64)
    return {
        "non-contiguous input": (tn.LayerNorm(8).double(), x.t()),
        "float16": (tn.LayerNorm(6).half(), x.half()),
        "parameters of another dtype": (tn.LayerNorm(6).float(), x),
    }


@pytest.mark.parametrize("case", list(_fallbacks()))
def test_inputs_the_kernels_do_not_take_go_to_the_python_function(case):
    layer, x = _fallbacks()[case]
    assert layer(x.clone().requires_grad_()).grad_fn.name() != NODE


def test_vmap_compile_and_trainlab_native_0_take_the_python_function(monkeypatch):
    layer = _layer(6, {}, torch.float64)
    x, _ = _data((4, 5, 6), torch.float64)
    with pytest.raises(RuntimeError, match="setup_context"):  # under vmap the Function answers, as before
        torch.func.vmap(layer)(x)  # (the batched trainer gives layer norm a forward of its own)
    with monkeypatch.context() as m:
        m.setattr(native_layers, "_compiling", lambda: True)
        assert layer(x.requires_grad_()).grad_fn.name() != NODE
    monkeypatch.setenv("TRAINLAB_NATIVE", "0")
    assert layer(x).grad_fn.name() != NODE
    assert "TRAINLAB_NATIVE=0" in OPS.problem()
    monkeypatch.delenv("TRAINLAB_NATIVE")
    assert layer(x).grad_fn.name() == NODE


def test_the_operator_refuses_what_its_kernels_do_not_take():
    op = OPS.get()
    x = torch.randn(8, 6, dtype=torch.float64)
    with pytest.raises(RuntimeError, match="contiguous CPU tensor"):
        op(x.t(), None, None, 1e-5, 1)
    with pytest.raises(RuntimeError, match="float32 or float64"):
        op(x.half(), None, None, 1e-5, 1)
    with pytest.raises(RuntimeError, match="of x's dtype"):
        op(x, torch.ones(6), None, 1e-5, 1)
    with pytest.raises(RuntimeError, match="k = 3"):
        op(x, None, None, 1e-5, 3)


# ---- the operator library's build -------------------------------------------------------------------

def _library(tmp_path, source="int x;\n", name="test-ops"):
    path = tmp_path / "ops.cpp"
    path.write_text(source)
    loaded = []
    lib = native_build.TorchOpLibrary(path, name, "the test operators", loaded.append, ["-O0"])
    return lib, loaded


def test_the_first_use_builds_once_says_so_and_later_uses_load_the_cache(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TRAINLAB_CACHE_DIR", str(tmp_path / "cache"))
    if native_build.cxx_compiler() is None:
        pytest.skip("no C++ compiler")
    lib, loaded = _library(tmp_path)
    compiles = []
    real = native_build._compile
    monkeypatch.setattr(native_build, "_compile", lambda *a: (compiles.append(a), real(*a)))
    monkeypatch.setattr(native_build.TorchOpLibrary, "_loaded", {})
    monkeypatch.setattr(torch.ops, "load_library", lambda path: None)  # the test library registers nothing
    assert lib.get() is not None and loaded and lib.problem() is None
    assert len(compiles) == 1
    assert capsys.readouterr().err.count("trainlab: compiling the test operators") == 1
    built = list((tmp_path / "cache" / "native").glob("test-ops-*.so"))
    assert len(built) == 1 and not list(built[0].parent.glob("*.partial"))
    # another process (a fresh library object, nothing loaded): the cached file, no compiler run
    monkeypatch.setattr(native_build.TorchOpLibrary, "_loaded", {})
    again, _ = _library(tmp_path)
    assert again.get() is not None and len(compiles) == 1 and "compiling" not in capsys.readouterr().err


def test_a_failure_to_load_or_bind_is_the_problem_and_is_not_retried(tmp_path, monkeypatch):
    monkeypatch.setenv("TRAINLAB_CACHE_DIR", str(tmp_path / "cache"))
    if native_build.cxx_compiler() is None:
        pytest.skip("no C++ compiler")
    calls = []

    def refuse(lib):
        calls.append(lib)
        raise RuntimeError("no such symbol")

    path = tmp_path / "ops.cpp"
    path.write_text("int x;\n")
    lib = native_build.TorchOpLibrary(path, "test-ops", "the test operators", refuse, ["-O0"])
    monkeypatch.setattr(native_build.TorchOpLibrary, "_loaded", {})
    monkeypatch.setattr(torch.ops, "load_library", lambda path: None)
    assert lib.get() is None and lib.get() is None and len(calls) == 1
    assert lib.problem() == "the test operators could not be loaded: RuntimeError: no such symbol"


def test_an_operator_library_that_does_not_compile_says_why(tmp_path, monkeypatch):
    monkeypatch.setenv("TRAINLAB_CACHE_DIR", str(tmp_path / "cache"))
    if native_build.cxx_compiler() is None:
        pytest.skip("no C++ compiler")
    monkeypatch.setattr(native_build.TorchOpLibrary, "_loaded", {})
    lib, loaded = _library(tmp_path, source="int x = ;\n")
    problem = lib.problem()
    assert problem.startswith("the test operators could not be built: ") and "error" in problem, problem
    assert "\n" not in problem and lib.get() is None and not loaded
    assert not list((tmp_path / "cache" / "native").glob("*.partial"))  # no half-written file left


def test_without_a_cxx_compiler_the_operators_are_off_with_a_fix(tmp_path, monkeypatch):
    monkeypatch.setattr(native_build, "cxx_compiler", lambda: None)
    monkeypatch.setattr(native_build.TorchOpLibrary, "_loaded", {})
    lib, _ = _library(tmp_path)
    assert lib.get() is None
    assert "need a C++ compiler" in lib.problem() and "set CXX" in lib.problem()
