import math

import pytest
import torch

from trainlab.data import Batches, Dataset, blobs, circles, line, moons, spirals, split, xor


@pytest.mark.parametrize("gen", [moons, circles, spirals, xor, blobs])
def test_generators_shapes_dtypes_and_seed(gen):
    a = gen(n_samples=301, seed=3)
    b = gen(n_samples=301, seed=3)
    c = gen(n_samples=301, seed=4)
    assert a.X.shape == (301, 2) and a.X.dtype == torch.float32
    assert a.y.shape == (301,) and a.y.dtype == torch.long
    assert torch.equal(a.X, b.X) and torch.equal(a.y, b.y)
    assert not torch.equal(a.X, c.X)
    assert a.is_classification and a.classes >= 2


def test_moons_geometry_without_noise():
    ds = moons(200, noise=0.0, seed=0)
    upper, lower = ds.X[ds.y == 0], ds.X[ds.y == 1]
    # upper moon lies on the unit circle, lower moon on the circle of radius 1 around (1, 0.5)
    assert torch.allclose(upper.norm(dim=1), torch.ones(len(upper)), atol=1e-6)
    assert torch.allclose((lower - torch.tensor([1.0, 0.5])).norm(dim=1), torch.ones(len(lower)), atol=1e-6)
    assert len(upper) == len(lower) == 100


def test_circles_radii_and_noise_level():
    ds = circles(400, noise=0.0, factor=0.3, seed=0)
    r = ds.X.norm(dim=1)
    assert torch.allclose(r[ds.y == 0], torch.ones(200), atol=1e-6)
    assert torch.allclose(r[ds.y == 1], torch.full((200,), 0.3), atol=1e-6)
    noisy = circles(20000, noise=0.1, seed=1)
    clean = circles(20000, noise=0.0, seed=1)
    # same permutation draw order is not guaranteed, so compare the radial spread instead
    spread = (noisy.X.norm(dim=1)[noisy.y == 0] - 1).std()
    assert abs(spread.item() - 0.1) < 0.01
    assert clean.X.norm(dim=1)[clean.y == 0].std() < 1e-6


def test_xor_labels_follow_sign_product():
    ds = xor(500, seed=2)
    assert torch.equal(ds.y, (ds.X[:, 0] * ds.X[:, 1] < 0).long())


def test_line_is_the_notes_toy_set():
    ds = line()
    assert ds.X.squeeze(1).tolist() == [1, 2, 3, 4, 5, 6]
    assert ds.y.squeeze(1).tolist() == [2, 4, 6, 8, 10, 12]
    assert not ds.is_classification


def test_bad_generator_arguments_are_clear():
    with pytest.raises(ValueError, match="n_samples"):
        moons(1)
    with pytest.raises(ValueError, match="noise"):
        moons(100, noise=-1)
    with pytest.raises(ValueError, match="factor"):
        circles(100, factor=1.5)


def test_split_fractions_seed_and_disjointness():
    ds = Dataset(torch.arange(100).float().unsqueeze(1), torch.arange(100))
    tr, va = split(ds, (0.7, 0.3), seed=1)
    assert len(tr) == 70 and len(va) == 30
    ids = torch.cat([tr.y, va.y]).sort().values
    assert torch.equal(ids, torch.arange(100))  # a partition: nothing lost, nothing repeated
    tr2, _ = split(ds, (0.7, 0.3), seed=1)
    tr3, _ = split(ds, (0.7, 0.3), seed=2)
    assert torch.equal(tr.y, tr2.y) and not torch.equal(tr.y, tr3.y)
    a, b, c = split(ds, (0.6, 0.2, 0.2), seed=0)
    assert (len(a), len(b), len(c)) == (60, 20, 20)
    with pytest.raises(ValueError, match="sum"):
        split(ds, (0.5, 0.3))


@pytest.mark.parametrize("batch_size,drop_last", [(1, False), (7, False), (7, True), ("full", False), (32, False)])
def test_every_sample_exactly_once_per_epoch(batch_size, drop_last):
    n = 50
    ds = Dataset(torch.arange(n).float().unsqueeze(1), torch.arange(n))
    batches = Batches(ds, batch_size, drop_last=drop_last, generator=torch.Generator().manual_seed(0))
    for _ in range(2):
        seen = torch.cat([yb for _, yb in batches])
        size = n if batch_size == "full" else batch_size
        expected = (n // size) * size if drop_last else n
        assert len(seen) == expected
        assert len(seen.unique()) == len(seen)  # no sample twice
        if not drop_last:
            assert torch.equal(seen.sort().values, torch.arange(n))
    assert len(batches) == (n // size if drop_last else math.ceil(n / size))


def test_batches_x_and_y_stay_aligned_and_order_changes():
    ds = Dataset(torch.arange(40).float().unsqueeze(1) * 10, torch.arange(40))
    batches = Batches(ds, 8, generator=torch.Generator().manual_seed(0))
    orders = []
    for _ in range(2):
        ys = []
        for xb, yb in batches:
            assert torch.equal(xb.squeeze(1), yb.float() * 10)
            ys.append(yb)
        orders.append(torch.cat(ys))
    assert not torch.equal(orders[0], orders[1])


def test_batch_size_validation():
    ds = Dataset(torch.zeros(4, 1), torch.zeros(4, dtype=torch.long))
    for bad in (0, -1, "half", 2.5, True):
        with pytest.raises(ValueError, match="batch_size"):
            Batches(ds, bad)


def test_input_features_are_the_formulas_of_the_raw_inputs():
    from trainlab.data.features import expand_features
    from trainlab.data.toy import circles, ripple, sine

    ds = circles(50, seed=1)
    out = expand_features(ds, ["x1", "x2^2", "x1*x2", "sin(x1)", "cos(x2)"])
    x1, x2 = ds.X[:, 0], ds.X[:, 1]
    expected = torch.stack([x1, x2 ** 2, x1 * x2, torch.sin(x1), torch.cos(x2)], 1)
    assert torch.equal(out.X, expected) and torch.equal(out.y, ds.y)
    with pytest.raises(ValueError, match="need 2 input columns"):
        expand_features(sine(20), ["x2"])
    with pytest.raises(ValueError, match="unknown feature"):
        expand_features(ds, ["x3"])
    r = ripple(30, noise=0.0, seed=2)
    assert torch.allclose(r.y[:, 0], torch.sin(math.pi * r.X[:, 0]) * torch.cos(math.pi * r.X[:, 1]))
    s = sine(30, noise=0.0)
    assert torch.allclose(s.y, torch.sin(s.X)) and s.X.abs().max() <= math.pi


def test_config_input_features_reach_the_model_and_are_absent_otherwise():
    from trainlab.experiments.config import parse_config
    from trainlab.experiments.runner import build_data

    cfg = parse_config({"data": {"name": "circles", "n_samples": 40, "input_features": ["x1^2", "x2^2"]}})
    assert build_data(cfg).train.X.shape[1] == 2 and (build_data(cfg).train.X >= 0).all()
    assert "input_features" not in parse_config({}).to_dict()["data"]  # older resolved configs stay equal
