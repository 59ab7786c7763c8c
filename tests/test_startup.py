"""The command line imports torch's compiler (torch._dynamo, ~1.3 s) only when something compiles (trainlab._startup)."""
import subprocess
import sys

import pytest


def _python(code: str, cwd) -> subprocess.CompletedProcess:
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=cwd)
    assert res.returncode == 0, res.stderr
    return res


def test_a_run_from_the_command_line_never_imports_torchs_compiler(tmp_path):
    _python("""
import sys
from trainlab.cli import main
assert main(["run", "--epochs", "2", "--no-store", "-q", "--out", "r"]) == 0
assert "torch._dynamo" not in sys.modules, "the run imported torch._dynamo"
""", tmp_path)
    assert (tmp_path / "r" / "weights.safetensors").is_file()


def test_the_deferred_methods_become_torchs_own_once_torchs_compiler_is_imported(tmp_path):
    _python("""
import sys
from trainlab import _startup
_startup.install()
import torch
import trainlab.optim
w = torch.nn.Parameter(torch.ones(3))
opt = trainlab.optim.SGD([w], lr=0.1, momentum=0.9)  # torch's own optimizers' step imports torch._dynamo itself
w.grad = torch.ones(3)
opt.step()
state = opt.state_dict()
opt.load_state_dict(state)
opt.zero_grad()
assert "torch._dynamo" not in sys.modules
fns = [getattr(torch.optim.Optimizer, n).__wrapped__ for n in ("add_param_group", "zero_grad", "state_dict", "load_state_dict")]
assert all(getattr(f.__dynamo_disable, "trainlab_until_dynamo", False) for f in fns)
import torch._dynamo
opt.zero_grad()
opt.load_state_dict(opt.state_dict())
for f in fns[1:]:  # called since: torch's own disabled versions now
    assert getattr(f.__dynamo_disable, "_torchdynamo_disable", False), f
assert torch.equal(w, torch.full((3,), 0.9))
""", tmp_path)


def test_compiling_after_the_deferral_trains_as_eager(tmp_path):
    pytest.importorskip("torch._inductor")
    from trainlab.train.compile import compiler_problem
    if compiler_problem("cpu"):
        pytest.skip(compiler_problem("cpu"))
    _python("""
from trainlab import _startup
_startup.install()
import torch
import trainlab
X = torch.randn(64, 4, generator=torch.Generator().manual_seed(0))
y = (X[:, 0] > 0).long()
runs = []
for compile in (False, True):
    torch.manual_seed(0)
    model = trainlab.nn.MLP(4, (16,), 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    h = trainlab.fit(model, (X, y), loss="cross_entropy", optimizer=opt, epochs=2, batch_size=16,
                     verbose=False, device="cpu", seed=0, compile=compile)
    runs.append(h.history["loss"])
assert max(abs(a - b) / abs(b) for a, b in zip(*runs)) < 1e-5, runs
""", tmp_path)
