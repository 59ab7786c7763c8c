"""Gradient and weight measurements against hand formulas; the vanishing-gradient diagnosis."""
import math

import torch
from torch import nn

from trainlab.data import moons, split
from trainlab.diagnostics import DiagnosticsRecorder, grad_norms, update_ratios, weight_layers, weight_stats
from trainlab.diagnostics.gradients import probe_gradients, snapshot_weights
from trainlab.nn import MLP
from trainlab.train import fit


def test_grad_norm_matches_the_hand_formula():
    torch.manual_seed(0)
    lin = nn.Linear(3, 2, bias=False)
    x = torch.randn(5, 3)
    lin(x).sum().backward()
    # d/dW_ij of Σ_n Σ_i (W x_n)_i = Σ_n x_nj for every row i, so ‖G‖ = √2·‖Σ_n x_n‖
    expected = math.sqrt(2) * x.sum(0).norm().item()
    assert math.isclose(grad_norms(lin)["Linear"], expected, rel_tol=1e-6)


def test_update_ratio_of_one_sgd_step():
    torch.manual_seed(0)
    model = MLP(4, (6,), 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    before = snapshot_weights(model)
    nn.functional.cross_entropy(model(torch.randn(8, 4)), torch.randint(0, 2, (8,))).backward()
    g = {name: m.weight.grad.norm().item() for name, m in weight_layers(model)}
    opt.step()
    for name, r in update_ratios(model, before).items():  # ΔW = −lr·G
        assert math.isclose(r, 0.05 * g[name] / before[name].norm().item(), rel_tol=1e-5)


def test_weight_sparsity_counts_exact_zeros_and_small_entries():
    lin = nn.Linear(4, 5)
    with torch.no_grad():
        lin.weight.fill_(0.5)
        lin.weight[0, :2] = 0.0      # 2 exact zeros
        lin.weight[1, :3] = 1e-4     # 3 small entries
    s = weight_stats(lin, tol=1e-3)["Linear"]
    assert s["weight_zero_frac"] == 2 / 20 and s["weight_small_frac"] == 5 / 20
    assert math.isclose(s["weight_norm"], lin.weight.norm().item(), rel_tol=1e-6)


def test_probe_changes_neither_gradients_nor_rng_nor_batchnorm():
    torch.manual_seed(0)
    model = MLP(3, (8,), 2, norm="batch", dropout=0.5)
    x, y = torch.randn(16, 3), torch.randint(0, 2, (16,))
    nn.functional.cross_entropy(model(x), y).backward()
    grads = [p.grad.clone() for p in model.parameters()]
    stats = model.blocks[0].norm.running_mean.clone()
    rng = torch.get_rng_state()
    loss, norms = probe_gradients(model, x, y, nn.functional.cross_entropy)
    assert loss > 0 and all(v > 0 for v in norms.values())
    assert all(torch.equal(p.grad, g) for p, g in zip(model.parameters(), grads))
    assert torch.equal(model.blocks[0].norm.running_mean, stats) and torch.equal(torch.get_rng_state(), rng)
    assert model.training


def _deep(activation, init):
    torch.manual_seed(0)
    model = MLP(2, [32] * 10, 2, activation=activation)
    for name, p in model.named_parameters():
        if p.dim() == 2:
            init(p)
        else:
            nn.init.zeros_(p)
    return model


def _diagnose(model):
    tr, va = split(moons(400, noise=0.2, seed=0), (0.7, 0.3), seed=0)
    rec = DiagnosticsRecorder(every=1, probe=128, spectra=False)
    hist = fit(model, tr, va, loss="cross_entropy", optimizer=torch.optim.SGD(model.parameters(), lr=0.05),
               epochs=2, batch_size=32, seed=0, verbose=False, callbacks=[rec])
    return rec, {v.kind: v for v in rec.verdicts(hist)}


def test_deep_sigmoid_with_small_init_has_vanishing_gradients_relu_he_does_not():
    rec, found = _diagnose(_deep("sigmoid", lambda w: nn.init.normal_(w, 0.0, 0.1)))
    v = found["vanishing_gradients"]
    assert v.epoch == 0 and v.evidence["ratio"] < 1e-6  # 0: at initialization
    assert v.layer == v.evidence["first_layer"] == "blocks.0.linear" and v.evidence["last_layer"] == "out"
    assert v.evidence["records_vanishing"] == len(rec.all_records()) == 3
    # the profile decays layer by layer towards the input
    profile = list(v.evidence["profile"].values())
    assert all(a < b for a, b in zip(profile[:-1], profile[1:]))

    rec, found = _diagnose(_deep("relu", lambda w: nn.init.kaiming_normal_(w, nonlinearity="relu")))
    assert "vanishing_gradients" not in found and "exploding_gradients" not in found
    first = rec.series("layers", "grad_norm")["blocks.0.linear"]
    last = rec.series("layers", "grad_norm")["out"]
    assert all(0.01 < f / l < 100 for (_, f), (_, l) in zip(first, last))
