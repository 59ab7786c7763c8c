"""Activation statistics on hand-made inputs; dead units diagnosed, reactivated, and training on."""
import pytest
import torch
from torch import nn

from trainlab.data import moons, split
from trainlab.diagnostics import DiagnosticsRecorder, MaskedLeakyReLU, activation_stats, reactivate_dead_units
from trainlab.nn import MLP
from trainlab.train import fit


def _identity_then(act, width):
    lin = nn.Linear(width, width)
    with torch.no_grad():
        lin.weight.copy_(torch.eye(width))
        lin.bias.zero_()
    return nn.Sequential(lin, act)


def test_saturation_bands_for_sigmoid_and_tanh():
    # σ(z) < 0.01 ⇔ z < −4.595; σ(z) > 0.99 ⇔ z > 4.595
    z = torch.tensor([[-6.0, -4.0, 0.0, 4.0], [5.0, 1.0, -1.0, 10.0]])
    s = activation_stats(_identity_then(nn.Sigmoid(), 4), z)["1"]
    assert s["kind"] == "sigmoid" and s["saturated_frac"] == 3 / 8
    assert s["mean"] == pytest.approx(torch.sigmoid(z).mean().item())
    # |tanh(z)| > 0.98 ⇔ |z| > 2.298
    z = torch.tensor([[-3.0, -2.0, 0.5, 2.5]])
    assert activation_stats(_identity_then(nn.Tanh(), 4), z)["1"]["saturated_frac"] == 2 / 4


def test_dead_fraction_and_activation_sparsity_for_relu_dense_and_conv():
    z = torch.tensor([[-1.0, 2.0, -3.0], [-0.5, -1.0, 4.0], [-2.0, 3.0, -1.0]])  # unit 0 never fires
    s = activation_stats(_identity_then(nn.ReLU(), 3), z)["1"]
    assert s["dead_frac"] == 1 / 3 and s["zero_frac"] == 6 / 9 and "saturated_frac" not in s
    conv = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU())
    with torch.no_grad():
        conv[0].bias[:2] = -100.0  # channels 0 and 1 are negative at every position
    s = activation_stats(conv, torch.randn(5, 1, 6, 6))["1"]
    assert s["dead_frac"] == 0.5
    # a leaky rectifier is never dead (notes 002: dead-neuron risk "mitigated")
    s = activation_stats(_identity_then(nn.LeakyReLU(0.01), 3), z)["1"]
    assert s["kind"] == "leaky" and "dead_frac" not in s and s["zero_frac"] == 0


def _moons():
    return split(moons(600, noise=0.15, seed=1), (0.7, 0.3), seed=1)


def _killed_model():
    torch.manual_seed(0)
    model = MLP(2, (32, 32), 2)
    with torch.no_grad():  # a "too large step" pushed 3/4 of the first layer's units far negative
        model.blocks[0].linear.bias[:24] = -50.0
    return model


@pytest.mark.parametrize("mode", ["reinit", "leaky"])
def test_dead_units_are_diagnosed_reactivated_and_train_on(mode):
    tr, va = _moons()
    model = _killed_model()
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    rec = DiagnosticsRecorder(every=1, probe=256, spectra=False)
    hist = fit(model, tr, va, loss="cross_entropy", optimizer=opt, epochs=2, batch_size=32, seed=0,
               verbose=False, callbacks=[rec])
    found = {v.kind: v for v in rec.verdicts(hist)}
    assert found["dying_relus"].layer == "blocks.0.act"
    assert found["dying_relus"].evidence["dead_frac"] >= 0.75
    # the dead units stay dead on their own: their incoming weights receive no gradient
    w_before = model.blocks[0].linear.weight[:24].clone()
    fit(model, tr, loss="cross_entropy", optimizer=opt, epochs=1, batch_size=32, seed=1, verbose=False)
    assert torch.equal(model.blocks[0].linear.weight[:24], w_before)

    revived = reactivate_dead_units(model, tr.X, mode=mode, optimizer=opt,
                                    generator=torch.Generator().manual_seed(0))
    assert revived["blocks.0.act"] >= 24
    if mode == "leaky":
        assert isinstance(model.blocks[0].act, MaskedLeakyReLU)
        assert int(model.blocks[0].act.mask.sum()) == revived["blocks.0.act"]
    else:
        assert activation_stats(model, tr.X)["blocks.0.act"]["dead_frac"] < 0.1
        assert torch.all(model.blocks[0].linear.bias[:24] == 0.01)
    loss_before = hist["val_loss"][-1]
    rec2 = DiagnosticsRecorder(every=1, probe=256, spectra=False)
    hist2 = fit(model, tr, va, loss="cross_entropy", optimizer=opt, epochs=6, batch_size=32, seed=2,
                verbose=False, callbacks=[rec2])
    assert not torch.equal(model.blocks[0].linear.weight[:24], w_before)  # they learn again
    assert hist2["val_loss"][-1] < loss_before
    assert "dying_relus" not in {v.kind for v in rec2.verdicts(hist2)}


def test_reactivation_resets_a_norm_between_and_optimizer_rows():
    torch.manual_seed(0)
    model = MLP(3, (8,), 2, norm="batch")
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    x = torch.randn(64, 3)
    nn.functional.cross_entropy(model(x), torch.randint(0, 2, (64,))).backward()
    opt.step()
    with torch.no_grad():
        model.blocks[0].norm.bias[:3] = -100.0  # the normalized output of 3 units is always negative
    revived = reactivate_dead_units(model, x, optimizer=opt)
    assert revived == {"blocks.0.act": 3}
    assert torch.all(model.blocks[0].norm.bias[:3] == 0) and torch.all(model.blocks[0].norm.weight[:3] == 1)
    buf = opt.state[model.blocks[0].linear.weight]["momentum_buffer"]
    assert torch.all(buf[:3] == 0) and torch.any(buf[3:] != 0)
    with pytest.raises(ValueError, match="mode"):
        reactivate_dead_units(model, x, mode="revive")
