"""model.norm_position: batch norm before (default) or after the nonlinearity, in MLP and CNN blocks."""
import pytest
import torch

from trainlab.experiments.config import ConfigError, parse_config
from trainlab.nn.models import CNN, MLP


def test_mlp_blocks_put_the_norm_before_or_after_the_activation():
    before = MLP(4, (8, 8), 2, norm="batch")
    after = MLP(4, (8, 8), 2, norm="batch", norm_position="after", dropout=0.1)
    assert list(before.blocks[0]._modules) == ["linear", "norm", "act"]
    assert list(after.blocks[0]._modules) == ["linear", "act", "norm", "dropout"]


def test_norm_after_the_activation_computes_bn_of_the_activation():
    torch.manual_seed(0)
    m = MLP(4, (16,), 3, norm="batch", norm_position="after").train()
    x = torch.randn(32, 4)
    a = torch.relu(m.blocks[0].linear(x))
    expected = (a - a.mean(0)) / torch.sqrt(a.var(0, unbiased=False) + 1e-5)
    torch.testing.assert_close(m.blocks[0](x), expected, atol=1e-5, rtol=1e-5)


def test_norm_after_maxout_normalizes_its_outputs_not_the_pieces():
    m = MLP(4, (6,), 2, activation="maxout", activation_kwargs={"k": 3}, norm="layer", norm_position="after")
    assert m.blocks[0].linear.out_features == 18 and m.blocks[0].norm.normalized_shape == (6,)
    assert m(torch.randn(5, 4)).shape == (5, 2)


def test_cnn_norm_after_keeps_the_conv_bias():
    before = CNN(channels=(4,), hidden=8, norm="batch")
    after = CNN(channels=(4,), hidden=8, norm="batch", norm_position="after")
    assert [type(m).__name__ for m in after.features] == ["Conv2d", "ReLU", "BatchNorm2d", "MaxPool2d"]
    assert before.features[0].bias is None and after.features[0].bias is not None
    assert after(torch.randn(3, 784)).shape == (3, 10)


@pytest.mark.parametrize("model, message", [
    ({"kind": "mlp", "norm": "batch", "norm_position": "middle"}, "model.norm_position: Input should be 'before' or 'after'"),
    ({"kind": "mlp", "norm": "weight", "norm_position": "after"}, "reparametrizes the linear layer and has no position"),
])
def test_bad_norm_positions_fail_with_the_field(model, message):
    with pytest.raises(ConfigError, match=message):
        parse_config({"model": model})


def test_config_reaches_the_option():
    cfg = parse_config({"model": {"kind": "cnn", "norm": "batch", "norm_position": "after"}, "data": {"name": "mnist"}})
    assert cfg.model.kwargs["norm_position"] == "after"
