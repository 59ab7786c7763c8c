import pytest
import torch

from trainlab.nn import CNN, MLP, conv_output_size


@pytest.mark.parametrize("n,f,s,p,expected", [(28, 3, 1, 1, 28), (28, 3, 1, 0, 26), (28, 2, 2, 0, 14),
                                               (32, 5, 1, 0, 28), (7, 3, 2, 1, 4), (227, 11, 4, 0, 55)])
def test_conv_output_size_matches_the_notes_formula(n, f, s, p, expected):
    assert conv_output_size(n, f, s, p) == expected == (n + 2 * p - f) // s + 1


def test_conv_output_size_agrees_with_torch():
    for n, f, s, p, d in [(28, 3, 1, 1, 1), (15, 4, 3, 2, 1), (20, 3, 2, 1, 2)]:
        conv = torch.nn.Conv2d(1, 1, f, stride=s, padding=p, dilation=d)
        assert conv(torch.zeros(1, 1, n, n)).shape[-1] == conv_output_size(n, f, s, p, d)
    with pytest.raises(ValueError, match="does not fit"):
        conv_output_size(2, 5)


def test_mlp_spec_and_slots():
    m = MLP(784, (64, 32), 10, activation=["relu", "tanh"], norm=[None, "batch"], dropout=[0.0, 0.5])
    assert [type(b.act).__name__ for b in m.blocks][1].lower().startswith("tanh")
    assert not hasattr(m.blocks[0], "norm") and hasattr(m.blocks[1], "norm")
    assert hasattr(m.blocks[1], "dropout") and not hasattr(m.blocks[0], "dropout")
    assert m(torch.randn(5, 1, 28, 28)).shape == (5, 10)
    assert MLP(3, (), 1, head="linear")(torch.randn(2, 3)).shape == (2, 1)


def test_mlp_validation():
    with pytest.raises(ValueError, match="sigmoid head"):
        MLP(2, (4,), 2, head="sigmoid")
    with pytest.raises(ValueError, match="unknown activation"):
        MLP(2, (4,), 2, activation="relu6x")
    with pytest.raises(ValueError, match="lists 1 values for 2"):
        MLP(2, (4, 4), 2, activation=["relu"])


def test_cnn_sizes_its_dense_layer():
    m = CNN((1, 28, 28), (8, 16), hidden=32, classes=10)
    assert m.flat_features == 16 * 7 * 7
    assert m(torch.randn(3, 784)).shape == (3, 10)
    assert m(torch.randn(3, 1, 28, 28)).shape == (3, 10)
    m2 = CNN((3, 32, 32), (4,), kernel=5, padding=0, pool=2, hidden=8, classes=4)
    assert m2.flat_features == 4 * 14 * 14
