"""The MLP/CNN builders with trainlab's layers: tables, residual blocks, maxout, DropConnect, weight norm."""
import pytest
import torch
from torch import nn

from trainlab import fit
from trainlab.data import toy
from trainlab.nn import CNN, MLP, activations as A, models
from trainlab.nn import BatchNorm1d, BatchNorm2d, DropConnect, Dropout, LayerNorm, MaxoutPool, Residual, ResidualBlock


def test_tables_point_to_trainlab_layers():
    for name, factory in models.ACTIVATIONS.items():
        module = models.make_activation(name, 8, **({"alpha": 0.5} if name == "rectifier" else {}))
        assert name == "identity" or type(module).__module__.startswith("trainlab."), name
    assert models.NORMS["batch"] is BatchNorm1d and models.NORMS["layer"] is LayerNorm
    assert models.DROPOUTS["dropout"] is Dropout and models.DROPOUTS["dropconnect"] is DropConnect


@pytest.mark.parametrize("name", sorted(models.ACTIVATIONS))
def test_every_activation_builds_a_working_mlp(name):
    kwargs = {"alpha": -1.0} if name == "rectifier" else {}
    m = MLP(3, (8, 4), 2, activation=name, activation_kwargs=kwargs)
    y = m(torch.randn(5, 3))
    y.sum().backward()
    assert y.shape == (5, 2) and all(p.grad is not None for p in m.parameters())


def test_activation_options_and_per_unit_prelu():
    m = MLP(3, (6,), 2, activation="leaky_relu", activation_kwargs={"negative_slope": 0.3})   # Keras' slope
    assert m.blocks[0].act.negative_slope == 0.3
    m = MLP(3, (6, 5), 2, activation="prelu_unit")
    assert [b.act.weight.shape for b in m.blocks] == [(6,), (5,)]
    with pytest.raises(ValueError, match="does not take"):
        MLP(3, (6,), 2, activation="relu", activation_kwargs={"slope": 1})
    with pytest.raises(ValueError, match="unknown activation"):
        models.make_activation("swish7")


def test_maxout_activation_widens_the_linear_layer():
    m = MLP(4, (5,), 2, activation="maxout", activation_kwargs={"k": 3}, norm="batch")
    block = m.blocks[0]
    assert isinstance(block.act, MaxoutPool) and block.linear.out_features == 15 and block.norm.num_features == 15
    x = torch.randn(7, 4)
    h = block(x)
    assert h.shape == (7, 5)
    with torch.no_grad():
        block.eval()
        z = block.norm(block.linear(x))
        torch.testing.assert_close(block(x), z.view(7, 5, 3).amax(-1))
    with pytest.raises(ValueError, match="MLP"):
        CNN((1, 8, 8), (2,), hidden=4, classes=2, activation="maxout")


def test_residual_blocks_identity_and_projection():
    m = MLP(4, (4, 6), 2, residual=True, activation="tanh")
    b0, b1 = m.blocks
    assert isinstance(b0, ResidualBlock) and isinstance(b0.shortcut, nn.Identity)
    assert isinstance(b1.shortcut, nn.Linear) and b1.shortcut.weight.shape == (6, 4) and b1.shortcut.bias is None
    x = torch.randn(3, 4)
    torch.testing.assert_close(b0(x), torch.tanh(b0.linear(x)) + x)
    torch.testing.assert_close(b1(x), torch.tanh(b1.linear(x)) + b1.shortcut(x))
    r = Residual(nn.Linear(3, 5), 3, 5)
    torch.testing.assert_close(r(torch.ones(1, 3)), r.body(torch.ones(1, 3)) + r.shortcut(torch.ones(1, 3)))
    m = MLP(4, (4, 4), 2, residual=[True, False])
    assert isinstance(m.blocks[0], ResidualBlock) and not isinstance(m.blocks[1], ResidualBlock)


def test_residual_connections_keep_first_layer_gradients_alive_in_deep_sigmoid_nets():
    """Notes 002: residual connections let gradients reach early layers of deep nets."""
    torch.manual_seed(0)
    x = torch.randn(64, 16)
    y = torch.randint(0, 2, (64,))
    norms = {}
    for residual in (False, True):
        torch.manual_seed(1)
        m = MLP(16, (16,) * 20, 2, activation="sigmoid", residual=residual)
        nn.functional.cross_entropy(m(x), y).backward()
        norms[residual] = m.blocks[0].linear.weight.grad.norm().item()
    assert norms[True] > 1e3 * norms[False]


def test_dropout_kinds_in_the_mlp():
    m = MLP(4, (6, 6), 2, dropout=0.5, dropout_kind="dropconnect")
    assert all(isinstance(b.linear, DropConnect) and not hasattr(b, "dropout") for b in m.blocks)
    assert m.blocks[0].linear.p == 0.5
    m = MLP(4, (6, 6), 2, dropout=[0.2, 0.0], dropout_kind="classic")
    assert m.blocks[0].dropout.mode == "classic" and not hasattr(m.blocks[1], "dropout")
    m = MLP(4, (6, 6), 2, dropout=0.3, dropout_kind=["dropout", "dropconnect"])
    assert isinstance(m.blocks[0].dropout, Dropout) and isinstance(m.blocks[1].linear, DropConnect)
    with pytest.raises(ValueError, match="unknown dropout kind"):
        MLP(4, (6,), 2, dropout=0.3, dropout_kind="gaussian")


def test_norms_in_the_mlp_including_weight_norm():
    m = MLP(4, (6, 5), 2, norm=["weight", "layer"])
    assert nn.utils.parametrize.is_parametrized(m.blocks[0].linear, "weight")
    assert isinstance(m.blocks[1].norm, LayerNorm)
    m = MLP(4, (6,), 2, norm="batch_keras")
    assert m.blocks[0].norm.momentum == pytest.approx(0.01) and m.blocks[0].norm.eps == 1e-3
    with pytest.raises(ValueError, match="unknown norm"):
        MLP(4, (6,), 2, norm="group")


def test_cnn_uses_trainlab_batch_norm_and_activations():
    m = CNN((1, 12, 12), (4, 8), hidden=16, classes=3, norm="batch", activation="elu")
    kinds = {type(l) for l in m.features}
    assert BatchNorm2d in kinds and A.ELU in kinds
    assert m(torch.randn(2, 144)).shape == (2, 3)


def test_mlp_with_our_layers_trains_on_moons():
    torch.manual_seed(0)
    data = toy.moons(400, noise=0.1, seed=0)
    m = MLP(2, (32, 32), 2, activation="leaky_relu", norm="batch", dropout=0.1, residual=True)
    opt = torch.optim.Adam(m.parameters(), lr=0.01)
    h = fit(m, data, loss="cross_entropy", optimizer=opt, epochs=15, batch_size=32, seed=0, verbose=False)
    assert h.history["accuracy"][-1] > 0.95
