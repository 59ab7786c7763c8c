import io

import pytest
import torch
from torch import nn

import trainlab
from trainlab.data import line, moons, split
from trainlab.losses import Loss
from trainlab.nn import MLP
from trainlab.train import Callback, NonFiniteLossError, ProgressLogger, evaluate, fit


def _moons_model(seed=0):
    torch.manual_seed(seed)
    return MLP(2, (32, 32), 2)


def test_fit_reaches_accuracy_on_moons():
    tr, va = split(moons(600, noise=0.15, seed=0), (0.7, 0.3), seed=0)
    model = _moons_model()
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    hist = fit(model, tr, va, loss="cross_entropy", optimizer=opt, epochs=25, batch_size=32, seed=0,
               verbose=False)
    assert hist["val_accuracy"][-1] >= 0.95
    assert hist["loss"][-1] < hist["loss"][0] / 3
    assert set(hist.history) >= {"loss", "accuracy", "val_loss", "val_accuracy", "lr", "time"}
    assert len(hist.epoch) == 25
    # the history's final validation numbers are what evaluate() reports
    ev = evaluate(model, va, "cross_entropy")
    assert ev["accuracy"] == pytest.approx(hist["val_accuracy"][-1])
    assert ev["loss"] == pytest.approx(hist["val_loss"][-1], rel=1e-5)


def _train_once(seed):
    tr = moons(300, noise=0.2, seed=1)
    model = _moons_model(seed)
    model.blocks[0].add_module("dropout", nn.Dropout(0.2))  # randomness inside the step too
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    hist = fit(model, tr, loss="cross_entropy", optimizer=opt, epochs=3, batch_size=16, seed=seed,
               verbose=False)
    return model, hist


def test_seed_makes_a_cpu_run_bit_for_bit_reproducible():
    m1, h1 = _train_once(7)
    m2, h2 = _train_once(7)
    m3, _ = _train_once(8)
    for (k, a), b in zip(m1.state_dict().items(), m2.state_dict().values()):
        assert torch.equal(a, b), k
    assert h1["loss"] == h2["loss"]
    assert not torch.equal(m1.out.weight, m3.out.weight)


def test_nan_loss_stops_with_epoch_and_step():
    X = torch.randn(64, 2)
    y = torch.randint(0, 2, (64,))
    X[40] = float("nan")  # sample 40 poisons the batch it lands in
    model = _moons_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(NonFiniteLossError) as info:
        fit(model, (X, y), loss="cross_entropy", optimizer=opt, epochs=3, batch_size=8, shuffle=False,
            verbose=False)
    err = info.value
    assert (err.epoch, err.step, err.global_step) == (0, 5, 5)
    assert "epoch 1, step 6" in str(err)


def test_head_loss_mismatch_is_a_clear_error():
    model = MLP(2, (4,), 1, head="linear")
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="pairs with"):
        fit(model, moons(20), loss="cross_entropy", optimizer=opt, epochs=1, verbose=False)


def test_regression_on_the_notes_line_with_batch_gd():
    ds = line()
    torch.manual_seed(0)
    model = MLP(1, (), 1, head="linear")  # y = w x + b
    opt = torch.optim.SGD(model.parameters(), lr=0.02)
    hist = fit(model, ds, loss="mse", optimizer=opt, epochs=400, batch_size="full", verbose=False)
    assert hist["loss"][-1] < 1e-3
    assert model.out.weight.item() == pytest.approx(2.0, abs=0.05)
    assert "accuracy" not in hist


def test_closure_optimizers_work_inside_fit():
    tr = moons(200, noise=0.1, seed=0)
    model = _moons_model()
    opt = torch.optim.LBFGS(model.parameters(), lr=0.5, max_iter=5)
    hist = fit(model, tr, loss="cross_entropy", optimizer=opt, epochs=5, batch_size="full", verbose=False)
    assert hist["loss"][-1] < hist["loss"][0]


class _StopAfter(Callback):
    def __init__(self, n):
        self.n, self.calls = n, []

    def on_epoch_end(self, epoch, logs):
        self.calls.append(("epoch_end", epoch, round(logs["loss"], 6)))
        if epoch + 1 >= self.n:
            self.loop.stop_training = True

    def on_batch_end(self, batch, logs):
        self.calls.append(("batch_end", batch))


def test_callbacks_see_hooks_and_can_stop():
    cb = _StopAfter(2)
    model = _moons_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    hist = fit(model, moons(40), loss="cross_entropy", optimizer=opt, epochs=10, batch_size=20,
               callbacks=[cb], verbose=False)
    assert len(hist.epoch) == 2
    assert [c[0] for c in cb.calls] == ["batch_end", "batch_end", "epoch_end"] * 2
    assert cb.loop.step == 4


def test_progress_lines_and_silence(capsys):
    model = _moons_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    buf = io.StringIO()
    fit(model, moons(40), loss="cross_entropy", optimizer=opt, epochs=2, batch_size=20,
        callbacks=[ProgressLogger(stream=buf, bar=False)])
    lines = buf.getvalue().strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith("epoch 1/2") and "loss" in lines[0]
    fit(model, moons(40), loss="cross_entropy", optimizer=opt, epochs=2, verbose=False)
    assert capsys.readouterr().err == ""


def test_fit_accepts_plain_callable_loss_and_bce_head():
    ds = moons(200, noise=0.1, seed=0)
    torch.manual_seed(0)
    model = MLP(2, (16,), 1, head="sigmoid")
    opt = torch.optim.Adam(model.parameters(), lr=0.02)
    hist = fit(model, ds, loss="bce", optimizer=opt, epochs=30, batch_size=50, verbose=False)
    assert hist["accuracy"][-1] > 0.85
    model2 = _moons_model()
    opt2 = torch.optim.Adam(model2.parameters(), lr=0.02)
    hist2 = fit(model2, ds, loss=Loss("cross_entropy"), optimizer=opt2, epochs=5, verbose=False)
    assert "accuracy" in hist2
    hist3 = fit(model2, ds, loss=nn.functional.cross_entropy, optimizer=opt2, epochs=1, verbose=False)
    assert "accuracy" in hist3  # integer targets and multi-column logits: argmax accuracy


def test_bad_arguments():
    model = _moons_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(TypeError, match="optimizer"):
        fit(model, moons(20), loss="cross_entropy", optimizer="adam", epochs=1)
    with pytest.raises(ValueError, match="epochs"):
        fit(model, moons(20), loss="cross_entropy", optimizer=opt, epochs=-1)
    with pytest.raises(ValueError, match="unknown loss"):
        fit(model, moons(20), loss="hinge", optimizer=opt, epochs=1)
    assert trainlab.fit is fit


def test_fit_and_evaluate_take_numpy_arrays_like_scikit_learn_and_keras():
    import numpy as np

    from trainlab.train import evaluate

    rng = np.random.default_rng(0)
    X = rng.standard_normal((120, 2))  # float64, as numpy makes them
    y = (X[:, 0] * X[:, 1] > 0).astype(np.int32)
    torch.manual_seed(0)
    model = MLP(2, (16,), 2)
    hist = fit(model, (X[:90], y[:90]), (X[90:], y[90:]), loss="cross_entropy",
               optimizer=torch.optim.Adam(model.parameters(), lr=0.05), epochs=30, batch_size=30, seed=0,
               verbose=False)
    assert hist["val_accuracy"][-1] > 0.8
    assert evaluate(model, (X[90:], y[90:]))["accuracy"] == pytest.approx(hist["val_accuracy"][-1])
    # a float64 model gets float64 inputs; floating targets follow the model's dtype (regression)
    reg = MLP(2, (8,), 1, head="linear").double()
    fit(reg, (X, X[:, :1] * 2.0), loss="mse", optimizer=torch.optim.SGD(reg.parameters(), lr=0.05),
        epochs=2, verbose=False)
    with pytest.raises(TypeError, match="LabelEncoder"):
        fit(model, (X, np.array(["a", "b"] * 60)), loss="cross_entropy",
            optimizer=torch.optim.SGD(model.parameters(), lr=0.1), epochs=1, verbose=False)


def test_batch_loss_is_read_only_for_callbacks_that_read_it():
    class Reads(Callback):
        def __init__(self):
            self.losses = []

        def on_batch_end(self, batch, logs):
            self.losses.append(logs["loss"])

    class Counts(Callback):
        reads_batch_loss = False  # the loop then reads nothing from the device per step

        def __init__(self):
            self.logs = []

        def on_batch_end(self, batch, logs):
            self.logs.append(dict(logs))

    def run(cb):
        torch.manual_seed(0)
        model = _moons_model()
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        return fit(model, moons(40), loss="cross_entropy", optimizer=opt, epochs=2, batch_size=20, seed=0,
                   callbacks=[cb], verbose=False)

    reads, counts = Reads(), Counts()
    h1, h2 = run(reads), run(counts)
    import trainlab.train.loop as loop_module

    try:  # the deferred (GPU) path gives the same history
        loop_module.READ_CPU_LOSS_EACH_STEP = False
        h3 = run(Counts())
    finally:
        loop_module.READ_CPU_LOSS_EACH_STEP = True
    assert h3["loss"] == pytest.approx(h1["loss"], rel=1e-12) and h3["accuracy"] == h1["accuracy"]
    assert len(reads.losses) == 4 and all(type(v) is float for v in reads.losses)
    assert counts.logs == [{"batch": b, "size": 20} for b in (0, 1)] * 2
    # the epoch loss is the size-weighted mean of the batch losses, read once per epoch
    assert h1["loss"] == h2["loss"]
    assert h1["loss"][0] == pytest.approx(sum(reads.losses[:2]) / 2, rel=1e-12)


@pytest.mark.parametrize("each_step", [True, False])
def test_nan_is_reported_at_the_step_where_it_appeared(each_step, monkeypatch):
    # each_step=False is the GPU's way, run on the CPU: the losses stay tensors and are checked
    # once at the epoch end, which names the same epoch and step
    import trainlab.train.loop as loop_module

    monkeypatch.setattr(loop_module, "READ_CPU_LOSS_EACH_STEP", each_step)
    X = torch.randn(64, 2)
    y = torch.randint(0, 2, (64,))
    X[17] = float("inf")
    model = _moons_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(NonFiniteLossError) as info:
        fit(model, (X, y), loss="cross_entropy", optimizer=opt, epochs=2, batch_size=8, shuffle=False,
            callbacks=[ProgressLogger(stream=io.StringIO(), bar=False)])
    assert (info.value.epoch, info.value.step, info.value.global_step) == (0, 2, 2)


def test_train_and_eval_switches_respect_a_train_override_and_restore_the_mode():
    import torch.nn.functional as F
    from trainlab.train.loop import evaluate

    class FrozenNorm(torch.nn.Module):  # keeps its batch norm in eval mode, as fine-tuning code does
        def __init__(self):
            super().__init__()
            self.lin, self.bn, self.out = torch.nn.Linear(2, 8), torch.nn.BatchNorm1d(8), torch.nn.Linear(8, 2)

        def train(self, mode: bool = True):
            super().train(mode)
            self.bn.eval()
            return self

        def forward(self, x):
            return self.out(self.bn(self.lin(x)))

    X, y = torch.randn(64, 2), torch.randint(0, 2, (64,))
    plain = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.Dropout(0.5), torch.nn.Linear(8, 2))
    for model in (plain, FrozenNorm()):
        for mode in (True, False):
            model.train(mode)
            before = [m.training for m in model.modules()]
            evaluate(model, (X, y), F.cross_entropy)
            assert [m.training for m in model.modules()] == before
    frozen = FrozenNorm()
    seen = []

    class Spy(trainlab.train.callbacks.Callback):
        def on_batch_begin(self, batch, logs=None):
            seen.append((frozen.training, frozen.bn.training))

    trainlab.fit(frozen, (X, y), (X, y), loss=F.cross_entropy, optimizer=torch.optim.SGD(frozen.parameters(), lr=0.1),
                 epochs=2, batch_size=32, callbacks=[Spy()], verbose=False)
    assert seen and all(s == (True, False) for s in seen), seen[:3]  # training, with the frozen norm


def test_manual_seed_leaves_the_global_rng_as_torch_manual_seed_does():
    from trainlab.train.loop import manual_seed

    manual_seed(11)
    ours = (torch.rand(4), torch.randn(3), torch.randint(0, 100, (5,)))
    torch.manual_seed(11)
    theirs = (torch.rand(4), torch.randn(3), torch.randint(0, 100, (5,)))
    assert all(torch.equal(a, b) for a, b in zip(ours, theirs))
    assert torch.initial_seed() == 11
