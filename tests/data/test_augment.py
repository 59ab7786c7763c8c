"""Batched augmentations: exact geometry against torch and hand-written formulas, seeds, statistics."""
import math

import numpy as np
import pytest
import torch
from scipy import ndimage

from trainlab.data.augment import (Compose, ElasticDistortion, GaussianNoise, HorizontalFlip, Rotation, Shear,
                                   Shift, Zoom, blur_matrix, elastic_field, gaussian_kernel1d)
from trainlab.experiments import catalog

ALL = [Rotation(15), Shift(0.1), Zoom(0.1), Shear(10), HorizontalFlip(), ElasticDistortion(), GaussianNoise(0.1)]


def _images(n=6, c=1, h=28, w=28, dtype=torch.float32, seed=0):
    return torch.rand(n, c, h, w, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def _centred(h, w, dtype=torch.float64):
    """Pixel-centre coordinates (x, y), origin at the image centre, shape (H, W) each."""
    ys = torch.arange(h, dtype=dtype) + 0.5 - h / 2
    xs = torch.arange(w, dtype=dtype) + 0.5 - w / 2
    return torch.meshgrid(xs, ys, indexing="xy")


def _ramp(n, h, w, a=0.3, b=-0.7, c=5.0):
    """Images that are the linear function a·x + b·y + c (bilinear interpolation is exact on it)."""
    x, y = _centred(h, w)
    return (a * x + b * y + c).expand(n, 1, h, w).clone(), (a, b, c)


# --------------------------------------------------------------------------------------------
# exact geometry

@pytest.mark.parametrize("dtype, tol", [(torch.float32, 1e-5), (torch.float64, 1e-12)])
def test_rotation_by_90_degrees_is_rot90(dtype, tol):
    # float32 tolerance: the sampling grid itself is rounded to float32 (pixel centres land
    # ~1e-6 pixels off); in float64 the same code is exact to rounding
    x = _images(dtype=dtype)
    for k, deg in ((1, 90), (-1, -90), (2, 180), (1, -270)):
        out = Rotation((deg, deg))(x)
        assert (out - torch.rot90(x, k, dims=(-2, -1))).abs().max() < tol


def test_rotation_180_on_a_rectangular_image():
    x = _images(n=3, c=3, h=10, w=17, dtype=torch.float64)
    assert torch.allclose(Rotation((180, 180))(x), torch.rot90(x, 2, dims=(-2, -1)), atol=1e-12, rtol=0)


@pytest.mark.parametrize("dtype, tol", [(torch.float32, 1e-5), (torch.float64, 1e-12)])
def test_horizontal_flip_is_torch_flip(dtype, tol):
    x = _images(c=2, h=9, w=14, dtype=dtype)
    assert (HorizontalFlip(p=1.0)(x) - x.flip(-1)).abs().max() < tol
    assert torch.equal(HorizontalFlip(p=0.0)(x), x)


def test_integer_shift_moves_pixels_and_fills_zeros():
    x = _images(dtype=torch.float64)
    out = Shift((3 / 28, 3 / 28), (-2 / 28, -2 / 28))(x)  # 3 px right, 2 px up
    ref = torch.zeros_like(x)
    ref[..., :26, 3:] = x[..., 2:, :25]
    assert torch.allclose(out, ref, atol=1e-12, rtol=0)


def _interior(h, w, margin):
    m = torch.zeros(h, w, dtype=torch.bool)
    m[margin:h - margin, margin:w - margin] = True
    return m


_C, _S = math.cos(math.pi / 6), math.sin(math.pi / 6)


@pytest.mark.parametrize("aug, A, t", [
    # each op's forward map u -> A·u + t (pixels, origin at the centre, y down), written by hand
    (Rotation((30, 30)), [[_C, _S], [-_S, _C]], [0, 0]),
    (Zoom((1.25, 1.25)), [[1.25, 0], [0, 1.25]], [0, 0]),
    (Zoom((1.25, 1.25), isotropic=False), [[1.25, 0], [0, 1.25]], [0, 0]),
    (Shear((20, 20)), [[1, math.tan(math.radians(20))], [0, 1]], [0, 0]),
    (Shift((0.125, 0.125), (0.25, 0.25)), [[1, 0], [0, 1]], [0.125 * 32, 0.25 * 24]),
    (HorizontalFlip(1.0), [[-1, 0], [0, 1]], [0, 0]),
    (Compose([Rotation((30, 30)), Shift((0.125, 0.125), (0, 0))]), [[_C, _S], [-_S, _C]], [4, 0]),
])
def test_affine_ops_against_their_formula_on_a_linear_image(aug, A, t):
    # bilinear interpolation reproduces a linear image I(u) = g·u + c exactly, so every output
    # pixel p whose source u = A⁻¹(p − t) lies inside the image must equal g·u + c
    h, w = 24, 32
    img, (a, b, c) = _ramp(1, h, w)
    out = aug(img)[0, 0]
    A, t = torch.tensor(A, dtype=torch.float64), torch.tensor(t, dtype=torch.float64)
    x, y = _centred(h, w)
    u = torch.linalg.solve(A, torch.stack([x - t[0], y - t[1]]).reshape(2, -1)).reshape(2, h, w)
    expected = a * u[0] + b * u[1] + c
    inside = (u[0].abs() < w / 2 - 1) & (u[1].abs() < h / 2 - 1)
    assert inside.float().mean() > 0.4
    assert torch.allclose(out[inside], expected[inside], atol=1e-10, rtol=0)


def test_compose_resamples_once():
    x = _images(dtype=torch.float64)
    there_and_back = Compose([Rotation((30, 30)), Shift((0.1, 0.1)), Shift((-0.1, -0.1)), Rotation((-30, -30))])
    inner = _interior(28, 28, 6)
    # fused: the four maps multiply to the identity and the image is read back exactly
    assert torch.allclose(there_and_back(x)[..., inner], x[..., inner], atol=1e-12, rtol=0)
    # one op after another interpolates four times: visibly blurred
    y = x
    for op in there_and_back.augmentations:
        y = op(y)
    assert (y[..., inner] - x[..., inner]).abs().max() > 0.05


def test_compose_order_matters_as_written():
    # rotate 90° then shift right  ≠  shift right then rotate 90°
    x = _images(dtype=torch.float64)
    rot, shift = Rotation((90, 90)), Shift((4 / 28, 4 / 28), (0, 0))
    a = Compose([rot, shift])(x)
    assert torch.allclose(a, shift(torch.rot90(x, 1, dims=(-2, -1))), atol=1e-12, rtol=0)
    b = Compose([shift, rot])(x)
    assert torch.allclose(b, torch.rot90(shift(x), 1, dims=(-2, -1)), atol=1e-12, rtol=0)
    assert not torch.allclose(a, b)


# --------------------------------------------------------------------------------------------
# identity at zero strength, shapes, dtypes

@pytest.mark.parametrize("aug", [Rotation(0), Rotation((0, 0)), Shift(0), Zoom(0), Zoom((1, 1)), Shear(0),
                                 HorizontalFlip(0), ElasticDistortion(alpha=0), GaussianNoise(0),
                                 Compose([Rotation(0), Shift(0.0), ElasticDistortion(0.0)])])
def test_zero_strength_is_the_identity(aug):
    x = _images()
    assert aug.is_identity
    assert torch.equal(aug(x), x)


def test_identity_through_the_resampling_path():
    # a full turn is not skipped as "zero strength": it goes through the grid and comes back
    x = _images(dtype=torch.float64)
    assert torch.allclose(Rotation((360, 360))(x), x, atol=1e-12, rtol=0)
    x32 = _images()
    assert torch.allclose(Rotation((360, 360))(x32), x32, atol=1e-5, rtol=0)


@pytest.mark.parametrize("aug", ALL + [Compose(ALL)])
def test_shapes_dtypes_and_layouts(aug):
    g = torch.Generator().manual_seed(0)
    x4 = _images(n=5)
    out4 = aug(x4, generator=torch.Generator().manual_seed(1))
    assert out4.shape == x4.shape and out4.dtype == x4.dtype
    flat = x4.reshape(5, 784)
    out_flat = aug(flat, generator=torch.Generator().manual_seed(1))
    assert out_flat.shape == (5, 784)
    assert torch.equal(out_flat, out4.reshape(5, 784))  # flat rows are the same images
    x3 = x4[:, 0]
    assert torch.equal(aug(x3, generator=torch.Generator().manual_seed(1)), out4[:, 0])
    x64 = x4.double()
    assert aug(x64, generator=g).dtype == torch.float64
    assert aug(x4[:0]).shape == (0, 1, 28, 28)


def test_flat_rows_need_a_shape_unless_square():
    rows = torch.rand(4, 3 * 8 * 10)
    with pytest.raises(ValueError, match="image_shape"):
        Rotation(10)(rows)
    out = Compose([Rotation((180, 180))], image_shape=(3, 8, 10))(rows)
    assert torch.allclose(out.reshape(4, 3, 8, 10), torch.rot90(rows.reshape(4, 3, 8, 10), 2, (-2, -1)), atol=1e-5)
    with pytest.raises(ValueError, match="holds 160 values"):
        Compose([Rotation(10)], image_shape=(2, 8, 10))(rows)
    with pytest.raises(TypeError, match="floating-point"):
        Rotation(10)(torch.zeros(2, 1, 4, 4, dtype=torch.uint8))


# --------------------------------------------------------------------------------------------
# reproducibility

@pytest.mark.parametrize("aug_factory", [lambda s: Rotation(20, seed=s), lambda s: ElasticDistortion(seed=s),
                                         lambda s: GaussianNoise(0.2, seed=s), lambda s: Compose(ALL, seed=s)])
def test_reproducible_by_seed(aug_factory):
    x = _images()
    a, b, c = aug_factory(3)(x), aug_factory(3)(x), aug_factory(4)(x)
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)
    aug = aug_factory(None)
    assert torch.equal(aug(x, generator=torch.Generator().manual_seed(7)),
                       aug(x, generator=torch.Generator().manual_seed(7)))
    torch.manual_seed(11)
    d = aug(x)
    torch.manual_seed(11)
    assert torch.equal(aug(x), d)  # global RNG (what fit(seed=...) seeds)


def test_parameters_differ_per_sample_and_per_call():
    x = _images(n=1).expand(8, 1, 28, 28)
    aug = Rotation(30, seed=0)
    out = aug(x)
    assert all(not torch.allclose(out[0], out[i]) for i in range(1, 8))
    assert not torch.equal(aug(x), out)  # the generator advances between batches


def test_compose_seed_overrides_member_seeds():
    x = _images()
    a = Compose([Rotation(20, seed=1), Shift(0.1, seed=2)], seed=5)(x)
    b = Compose([Rotation(20, seed=8), Shift(0.1, seed=9)], seed=5)(x)
    assert torch.equal(a, b)
    c = Compose([Rotation(20, seed=1), Shift(0.1, seed=2)])(x)  # without one, each member's own
    d = Compose([Rotation(20, seed=1), Shift(0.1, seed=2)])(x)
    assert torch.equal(c, d)


# --------------------------------------------------------------------------------------------
# random parameters and statistics

def test_flip_probability():
    n = 4000
    x = _images(n=n, h=4, w=5)
    out = HorizontalFlip(p=0.3, seed=0)(x)
    flipped = (out - x.flip(-1)).flatten(1).abs().amax(1) < 1e-5
    kept = (out - x).flatten(1).abs().amax(1) < 1e-5
    assert torch.all(flipped ^ kept)
    # Binomial(4000, 0.3): mean 1200, sd 29; 4 sd
    assert abs(int(flipped.sum()) - 1200) < 4 * 29


def test_rotation_angles_are_uniform_in_range():
    # read each sample's angle back from a ramp image: out = a·(R⁻¹p)_x + c, so the gradient of
    # the output is (a cos θ, −a sin θ)
    n = 3000
    img, _ = _ramp(n, 16, 16, a=1.0, b=0.0, c=0.0)
    out = Rotation((-20, 40), seed=0)(img.float())[:, 0].double()
    gx = (out[:, 8, 9] - out[:, 8, 7]) / 2
    gy = (out[:, 9, 8] - out[:, 7, 8]) / 2
    theta = torch.rad2deg(torch.atan2(-gy, gx))
    assert theta.min() > -20.01 and theta.max() < 40.01
    # Uniform(−20, 40): mean 10, sd 60/√12 ≈ 17.3; the sample mean has sd 0.32
    assert abs(theta.mean().item() - 10) < 4 * 0.32
    assert abs(theta.std().item() - 60 / math.sqrt(12)) < 0.6


def test_gaussian_noise_statistics_and_clip():
    x = torch.full((200, 1, 28, 28), 0.5)
    d = GaussianNoise(0.2, seed=0)(x) - x
    n = d.numel()
    assert abs(d.mean().item()) < 4 * 0.2 / math.sqrt(n)
    assert abs(d.std().item() - 0.2) < 0.002
    clipped = GaussianNoise(1.0, clip=(0, 1), seed=0)(x)
    assert clipped.min() == 0 and clipped.max() == 1


def test_gaussian_kernel_and_blur_matrix_match_scipy():
    k = gaussian_kernel1d(2.5, dtype=torch.float64)
    assert len(k) == 2 * int(4 * 2.5 + 0.5) + 1 and abs(k.sum().item() - 1) < 1e-15
    impulse = np.zeros(41)
    impulse[20] = 1
    np.testing.assert_allclose(k.numpy(), ndimage.gaussian_filter1d(impulse, 2.5)[10:31], atol=1e-15)
    B = blur_matrix(12, 1.5, dtype=torch.float64)
    v = torch.rand(12, dtype=torch.float64)
    np.testing.assert_allclose((B @ v).numpy(), ndimage.gaussian_filter1d(v.numpy(), 1.5, mode="constant"),
                               atol=1e-14)


@pytest.mark.parametrize("sigma", [1.0, 4.0])
def test_elastic_field_is_a_blurred_uniform_field(sigma):
    g = torch.Generator().manual_seed(0)
    u = torch.rand(2, 2, 28, 28, generator=g, dtype=torch.float64) * 2 - 1
    f = elastic_field(2, 28, 28, alpha=3.0, sigma=sigma, noise=u)
    ref = 3.0 * np.stack([[ndimage.gaussian_filter(u[i, j].numpy(), sigma, mode="constant") for j in range(2)]
                          for i in range(2)])
    np.testing.assert_allclose(f.numpy(), ref, atol=1e-12)


def test_elastic_field_statistics():
    sigma, alpha, size = 2.0, 5.0, 48
    k = gaussian_kernel1d(sigma, dtype=torch.float64)
    r = (len(k) - 1) // 2
    f = elastic_field(400, size, size, alpha, sigma, generator=torch.Generator().manual_seed(0),
                      dtype=torch.float64)
    assert f.shape == (400, 2, size, size)
    inner = f[:, :, r:size - r, r:size - r]  # away from the zero padding the field is stationary
    # Var = α² · Var(U) · (Σ k_i²)² with Var(U) = 1/3 for U ~ Uniform(−1, 1)
    sd = alpha * math.sqrt(1 / 3) * (k ** 2).sum().item()
    assert abs(inner.mean().item()) < 0.02 * sd
    assert abs(inner.std().item() / sd - 1) < 0.03
    # neighbours are correlated by the kernel's overlap: ρ(1) = Σ k_i k_{i+1} / Σ k_i²
    rho = ((k[1:] * k[:-1]).sum() / (k ** 2).sum()).item()
    a, b = inner[..., :, :-1].reshape(-1), inner[..., :, 1:].reshape(-1)
    assert abs(torch.corrcoef(torch.stack([a, b]))[0, 1].item() - rho) < 0.02
    # x and y displacements are independent
    assert abs(torch.corrcoef(torch.stack([inner[:, 0].reshape(-1), inner[:, 1].reshape(-1)]))[0, 1]) < 0.03


def test_elastic_distortion_reads_each_pixel_from_p_plus_delta():
    # on a linear image the warped output is exactly I(p + Δ(p)) where p + Δ(p) stays inside
    h = w = 28
    img, (a, b, c) = _ramp(3, h, w)
    aug = ElasticDistortion(alpha=6.0, sigma=3.0, seed=5)
    out = aug(img)[:, 0]
    d = elastic_field(3, h, w, 6.0, 3.0, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    x, y = _centred(h, w)
    sx, sy = x + d[:, 0], y + d[:, 1]
    expected = a * sx + b * sy + c
    inside = (sx.abs() < w / 2 - 1) & (sy.abs() < h / 2 - 1)
    assert inside.float().mean() > 0.5
    assert torch.allclose(out[inside], expected[inside], atol=1e-10, rtol=0)


def test_elastic_before_an_affine_map_is_read_where_the_points_land():
    # elastic, then rotate 90°: the fused map reads the field at the rotated points. A 90° turn
    # maps pixel centres onto pixel centres, so this must equal the two steps done one after the
    # other (elastic warp, then the exact torch.rot90)
    x = _images(dtype=torch.float64)
    fused = Compose([ElasticDistortion(alpha=8.0, sigma=3.0, seed=0), Rotation((90, 90))])(x)
    steps = torch.rot90(ElasticDistortion(alpha=8.0, sigma=3.0, seed=0)(x), 1, dims=(-2, -1))
    assert (fused - x.rot90(1, dims=(-2, -1))).abs().max() > 0.1  # the distortion is visible
    assert torch.allclose(fused, steps, atol=1e-9, rtol=0)
    # and the other order: rotate, then distort on the rotated image's grid
    fused = Compose([Rotation((90, 90)), ElasticDistortion(alpha=8.0, sigma=3.0, seed=0)])(x)
    steps = ElasticDistortion(alpha=8.0, sigma=3.0, seed=0)(torch.rot90(x, 1, dims=(-2, -1)))
    assert torch.allclose(fused, steps, atol=1e-9, rtol=0)


# --------------------------------------------------------------------------------------------
# validation and configs

@pytest.mark.parametrize("build, message", [
    (lambda: Rotation(-1), ">= 0"), (lambda: Rotation((10, -10)), "above high"),
    (lambda: Rotation(float("nan")), ">= 0"), (lambda: Shift((0.1, 0.2, 0.3)), "pair"),
    (lambda: Zoom(1.0), "above 0"), (lambda: Zoom((0, 2)), "above 0"),
    (lambda: Shear(90), "inside \\(-90, 90\\)"), (lambda: HorizontalFlip(1.5), r"\[0, 1\]"),
    (lambda: ElasticDistortion(alpha=-1), "alpha"), (lambda: ElasticDistortion(sigma=0), "sigma"),
    (lambda: GaussianNoise(-0.1), "std"), (lambda: GaussianNoise(0.1, clip=(1, 0)), "clip"),
    (lambda: Rotation(10, seed=1.5), "seed"), (lambda: Compose([lambda x: x]), "Compose takes"),
    (lambda: Compose([], image_shape=(1, 2, 3, 4)), "image_shape"),
])
def test_bad_hyperparameters_fail_early(build, message):
    with pytest.raises((ValueError, TypeError), match=message):
        build()


def test_catalog_builds_augmentations_from_configs():
    assert set(catalog.AUGMENTATIONS) == {"rotation", "shift", "zoom", "shear", "hflip", "noise", "elastic"}
    aug = catalog.build_augment([("rotation", {"degrees": [90, 90]}), ("noise", {"std": 0.0})])
    assert isinstance(aug, Compose) and len(aug.augmentations) == 2
    x = _images()
    assert torch.allclose(aug(x), torch.rot90(x, 1, dims=(-2, -1)), atol=1e-5)
    assert catalog.build_augment([]) is None
    assert "Rotation(degrees=[90, 90])" in repr(aug)
