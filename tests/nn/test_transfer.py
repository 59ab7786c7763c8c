"""Transfer learning: freezing, the optimizer leaving frozen parameters out, pretrained safetensors."""
import pytest
import torch

from trainlab import fit
from trainlab.data import toy
from trainlab.nn import (MLP, PretrainedMismatchError, freeze, frozen_parameter_names, load_pretrained,
                         save_pretrained, trainable_parameters, unfreeze)


def _snapshot(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_freeze_by_name_index_and_module():
    m = MLP(2, (8, 8), 2)
    assert freeze(m, "blocks.0") == ["blocks.0.linear.weight", "blocks.0.linear.bias"]
    assert frozen_parameter_names(m) == ["blocks.0.linear.weight", "blocks.0.linear.bias"]
    freeze(m, m.out)
    assert not m.out.weight.requires_grad
    unfreeze(m)
    freeze(m, 0)                       # the first direct child: all hidden blocks
    assert all(not p.requires_grad for p in m.blocks.parameters()) and m.out.weight.requires_grad
    unfreeze(m, [0])
    assert frozen_parameter_names(m) == []
    with pytest.raises(ValueError, match="no layer named"):
        freeze(m, "blocks.7")
    with pytest.raises(IndexError):
        freeze(m, 5)


@pytest.mark.parametrize("whole_model_in_optimizer", [False, True])
def test_frozen_parameters_do_not_change_during_fit(whole_model_in_optimizer):
    torch.manual_seed(0)
    data = toy.moons(200, seed=1)
    m = MLP(2, (16, 16), 2, norm="batch", dropout=0.1)
    freeze(m, ["blocks.0", "blocks.1.linear"])
    before = _snapshot(m)
    params = m.parameters() if whole_model_in_optimizer else trainable_parameters(m)
    # momentum and weight decay would move a parameter that sits in the optimizer with a gradient
    opt = torch.optim.SGD(params, lr=0.1, momentum=0.9, weight_decay=0.01)
    if not whole_model_in_optimizer:
        in_opt = {id(p) for g in opt.param_groups for p in g["params"]}
        assert not any(id(p) in in_opt for p in m.parameters() if not p.requires_grad)
    fit(m, data, loss="cross_entropy", optimizer=opt, epochs=3, batch_size=32, seed=0, verbose=False)
    after = m.state_dict()
    for name in before:
        frozen = name.startswith(("blocks.0.", "blocks.1.linear."))
        if frozen:
            assert torch.equal(before[name], after[name]), name      # incl. blocks.0.norm running stats
        elif name.endswith(("weight", "bias")):
            assert not torch.equal(before[name], after[name]), name
    assert not torch.equal(before["blocks.1.norm.running_mean"], after["blocks.1.norm.running_mean"])


def test_frozen_batch_norm_uses_its_stored_statistics_until_unfrozen():
    m = MLP(3, (4,), 2, norm="batch")
    freeze(m, "blocks.0.norm")
    norm = m.blocks[0].norm
    m.train()
    m(torch.randn(16, 3) * 5 + 2)
    assert torch.equal(norm.running_mean, torch.zeros(4)) and int(norm.num_batches_tracked) == 0
    unfreeze(m, "blocks.0.norm")
    m.train()
    m(torch.randn(16, 3) * 5 + 2)
    assert int(norm.num_batches_tracked) == 1
    freeze(m, "blocks.0.norm", norm_stats=False)   # PyTorch's plain requires_grad_(False) behaviour
    m(torch.randn(16, 3))
    assert int(norm.num_batches_tracked) == 2


def test_save_and_load_pretrained_round_trip(tmp_path):
    torch.manual_seed(1)
    src = MLP(4, (8, 6), 3, norm="batch")
    src(torch.randn(10, 4))            # running statistics are part of the pretrained state
    path = tmp_path / "digits.safetensors"
    save_pretrained(src, path)
    dst = MLP(4, (8, 6), 3, norm="batch")
    report = load_pretrained(dst, path)
    assert sorted(report["loaded"]) == sorted(src.state_dict()) and not report["missing"]
    for k, v in src.state_dict().items():
        assert torch.equal(v, dst.state_dict()[k])


def test_mismatch_error_names_tensor_and_shapes(tmp_path):
    torch.manual_seed(2)
    path = tmp_path / "digits.safetensors"
    save_pretrained(MLP(4, (8, 6), 10), path)
    letters = MLP(4, (8, 6), 26)     # the notes' digits → letters: the output layer changes
    with pytest.raises(PretrainedMismatchError) as err:
        load_pretrained(letters, path)
    msg = str(err.value)
    assert "out.weight: pretrained [10, 6] vs model [26, 6]" in msg and "out.bias: pretrained [10] vs model [26]" in msg
    assert ("out.weight", (10, 6), (26, 6)) in err.value.mismatched
    before_out = letters.out.weight.detach().clone()
    report = load_pretrained(letters, path, exclude=("out.",))
    assert set(report["loaded"]) == {"blocks.0.linear.weight", "blocks.0.linear.bias", "blocks.1.linear.weight",
                                     "blocks.1.linear.bias"}
    assert torch.equal(letters.out.weight, before_out)
    # then freeze what was transferred and train only the new head
    freeze(letters, "blocks")
    assert [n for n, p in letters.named_parameters() if p.requires_grad] == ["out.weight", "out.bias"]


def test_strict_names_and_prefix(tmp_path):
    path = tmp_path / "w.safetensors"
    save_pretrained(MLP(4, (8,), 2), path)
    wider = MLP(4, (8, 8), 2)
    with pytest.raises(PretrainedMismatchError, match="missing from the pretrained weights: blocks.1"):
        load_pretrained(wider, path, exclude=("out.",))
    report = load_pretrained(wider, path, strict=False, exclude=("out.",))
    assert "blocks.1.linear.weight" in report["missing"]
    holder = torch.nn.Module()
    holder.encoder = MLP(4, (8,), 2)
    assert len(load_pretrained(holder, path, prefix="encoder.")["loaded"]) == 4
    with pytest.raises(FileNotFoundError):
        load_pretrained(wider, tmp_path / "nope.safetensors")
