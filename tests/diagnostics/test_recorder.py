"""The recorder: when it records, what it stores, and that it never changes the run."""
import json

import torch

from trainlab.data import moons, split
from trainlab.diagnostics import DiagnosticsRecorder
from trainlab.nn import MLP
from trainlab.train import fit


def _fit(callbacks, epochs=5):
    tr, va = split(moons(200, noise=0.2, seed=0), (0.7, 0.3), seed=0)
    torch.manual_seed(0)
    model = MLP(2, (16, 16), 2, dropout=0.2)  # dropout: the recorder must not shift the RNG
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    hist = fit(model, tr, va, loss="cross_entropy", optimizer=opt, epochs=epochs, batch_size=16, seed=0,
               verbose=False, callbacks=callbacks)
    return model, hist


def test_recording_does_not_change_training_bit_for_bit():
    ref, _ = _fit([])
    model, _ = _fit([DiagnosticsRecorder(every=1, probe=64)])
    assert all(torch.equal(a, b) for a, b in zip(ref.state_dict().values(), model.state_dict().values()))


def test_schedule_contents_and_state():
    rec = DiagnosticsRecorder(every=2, probe=32)
    _fit([rec], epochs=5)
    assert [r["epoch"] for r in rec.all_records()] == [-1, 1, 3, 4]  # init, every 2nd, and the last
    r = rec.records[0]
    assert set(r["layers"]) == {"blocks.0.linear", "blocks.1.linear", "out"}
    assert set(r["activations"]) == {"blocks.0.act", "blocks.1.act"}
    row = r["layers"]["blocks.0.linear"]
    assert {"grad_norm", "weight_norm", "update_ratio", "weight_zero_frac", "weight_small_frac"} <= set(row)
    assert 0 < row["update_ratio"] < 1
    assert "update_ratio" not in rec.initial["layers"]["out"]  # no step before training
    spec = rec.spectrum["blocks.1.linear"]
    assert spec["final"]["sigma"] == spec["initial"]["sigma"]  # the trained layer against its initial law
    summary = json.loads(json.dumps(rec.summary()))  # JSON-able
    assert "singular_values" not in summary["spectra"]["blocks.1.linear"]["initial"]
    fresh = DiagnosticsRecorder()
    fresh.load_state_dict(json.loads(json.dumps(rec.state_dict())))
    assert fresh.all_records() == rec.all_records()
    assert rec.series("activations", "dead_frac")["blocks.0.act"][0][0] == -1


def test_constant_weights_are_left_out_of_the_spectra():
    rec = DiagnosticsRecorder(every=1, probe=16)
    tr = moons(64, seed=0)
    model = MLP(2, (8,), 2)
    torch.nn.init.zeros_(model.blocks[0].linear.weight)  # zero init: no random-matrix law applies
    fit(model, tr, loss="cross_entropy", optimizer=torch.optim.SGD(model.parameters(), lr=0.1), epochs=1,
        verbose=False, callbacks=[rec])
    assert "blocks.0.linear" not in rec.spectrum and "out" in rec.spectrum


def test_works_on_a_cnn_without_knowing_its_layout():
    from trainlab.nn.models import CNN

    g = torch.Generator().manual_seed(0)
    X, y = torch.rand(48, 1, 8, 8, generator=g), torch.randint(0, 3, (48,), generator=g)
    torch.manual_seed(0)
    model = CNN(in_shape=(1, 8, 8), channels=(4,), hidden=16, classes=3)
    rec = DiagnosticsRecorder(every=1, probe=32)
    fit(model, (X, y), loss="cross_entropy", optimizer=torch.optim.SGD(model.parameters(), lr=0.05), epochs=1,
        batch_size=16, verbose=False, callbacks=[rec])
    layers = rec.records[-1]["layers"]
    assert len(layers) == 3 and any(name.startswith("features") for name in layers)  # conv, dense, out
    conv = next(n for n in layers if n.startswith("features"))
    assert layers[conv]["grad_norm"] > 0 and rec.spectrum[conv]["initial"]["shape"] == [4, 9]  # (out, in·k·k)
    acts = rec.records[-1]["activations"]
    assert len(acts) == 2 and all(0 <= a["dead_frac"] <= 1 for a in acts.values())
