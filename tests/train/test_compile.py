"""Compile as an option: fit(compile=True), train.compile in the config, fused optimizers — and one
clear line when the compiler torch.compile needs is missing."""
import pytest
import torch

import trainlab
from trainlab.experiments.config import ConfigError, parse_config
from trainlab.train.compile import CompilerMissingError, compiler_problem


@pytest.fixture
def no_cxx():
    from torch._inductor import config as inductor_config
    with inductor_config.patch({"cpp.cxx": (None, "no-such-compiler++")}):
        yield


def _data(n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, 4, generator=g)
    return X, (X[:, 0] > 0).long()


def test_compiler_problem_names_the_fix(no_cxx):
    msg = compiler_problem("cpu")
    assert "needs a C++ compiler" in msg and "no-such-compiler++" in msg and "train.compile: false" in msg
    assert "\n" not in msg


def test_fit_compile_without_a_compiler_stops_before_training(no_cxx):
    model = trainlab.nn.MLP(4, (8,), 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    before = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(CompilerMissingError, match="needs a C\\+\\+ compiler"):
        trainlab.fit(model, _data(), loss="cross_entropy", optimizer=opt, epochs=1, verbose=False,
                     device="cpu", compile=True)
    assert all(torch.equal(a, p) for a, p in zip(before, model.parameters()))


def test_train_compile_is_validated_in_the_config(no_cxx):
    with pytest.raises(ConfigError) as e:
        parse_config({"train": {"compile": True, "device": "cpu"}})
    assert "train.compile=true" in str(e.value) and "needs a C++ compiler" in str(e.value)
    with pytest.raises(ConfigError, match="train.compile"):
        parse_config({"train": {"compile": "often"}})
    assert parse_config({}).train.compile is False
    with pytest.raises(ConfigError) as e:
        parse_config({"optimizer": {"name": "adam", "fused": True}})
    assert "optimizer.fused=True" in str(e.value) and "needs a C++ compiler" in str(e.value)


@pytest.mark.slow
def test_fit_compile_trains_like_eager():
    runs = []
    for compile in (False, True):
        torch.manual_seed(0)
        model = trainlab.nn.MLP(4, (16,), 2)
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        h = trainlab.fit(model, _data(), loss="cross_entropy", optimizer=opt, epochs=3, batch_size=16,
                         verbose=False, device="cpu", seed=0, compile=compile)
        runs.append(h.history["loss"])
    assert runs[0] == pytest.approx(runs[1], rel=1e-5)
