"""Data augmentation on batches of images, on the data's device, reproducible by seed.

Every augmentation is a callable ``aug(x, generator=None) -> x`` over a batch: ``(N, C, H, W)``,
``(N, H, W)`` or flat ``(N, D)`` rows (MNIST's 784 columns; a square one-channel image is assumed
unless :class:`Compose` is given ``image_shape``). The output has the input's shape and dtype.
Random parameters are drawn per sample from, in order of precedence, the ``generator`` passed to
the call, the augmentation's own generator (``seed=``), or torch's global RNG (which
:func:`trainlab.fit` seeds): the few numbers per image of a transform from the CPU RNG, per-pixel
noise and elastic fields from the RNG of the data's device.

Geometric augmentations (rotation, shift, zoom, shear, horizontal flip, elastic distortion) are
sampling maps: each says, for a point of its output, where to read its input. :class:`Compose`
chains consecutive ones into a single map — affine maps multiply into one 3×3 matrix per sample,
an elastic field is added to the points — and resamples the image once with
``F.grid_sample`` (bilinear, zeros outside), so a chain of five transforms blurs the image once,
not five times. Pixel augmentations (Gaussian noise) act on values where they sit in the chain.

Coordinates: pixel units with the origin at the image centre, x to the right, y down, and
``align_corners=False`` (pixel centres at half-integers from the border), so a 90° rotation or a
flip maps pixel centres onto pixel centres and reproduces ``torch.rot90`` / ``torch.flip``.

References: P. Y. Simard, D. Steinkraus, J. C. Platt, "Best Practices for Convolutional Neural
Networks Applied to Visual Document Analysis", ICDAR 2003 (elastic distortions; affine
distortions); the Keras ``ImageDataGenerator`` ranges (``rotation_range``, ``width_shift_range``,
``zoom_range``, ``shear_range``, ``horizontal_flip``) that the notes use.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["Augmentation", "Compose", "ElasticDistortion", "GaussianNoise", "HorizontalFlip",
           "Rotation", "Shear", "Shift", "Zoom", "blur_matrix", "elastic_field", "gaussian_kernel1d"]


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------

def _range(value, name: str, *, symmetric_about: float = 0.0, low: float | None = None) -> tuple[float, float]:
    """A number m means U(c − m, c + m) around ``symmetric_about`` c; a pair means U(lo, hi)."""
    if isinstance(value, (list, tuple)):
        if len(value) != 2:
            raise ValueError(f"{name} must be a number or a pair (low, high), got {value!r}")
        lo, hi = float(value[0]), float(value[1])
        if lo > hi:
            raise ValueError(f"{name}: low {lo} is above high {hi}")
    else:
        m = float(value)
        if not m >= 0:  # also rejects NaN
            raise ValueError(f"{name} must be >= 0 (or a pair (low, high)), got {value!r}")
        lo, hi = symmetric_about - m, symmetric_about + m
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError(f"{name} must be finite, got {value!r}")
    if low is not None and lo <= low:
        raise ValueError(f"{name}: values must stay above {low}, got the range ({lo}, {hi})")
    return lo, hi


def _seeded(seed: int | None) -> torch.Generator | None:
    if seed is None:
        return None
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed must be an integer or None, got {seed!r}")
    return torch.Generator().manual_seed(seed)


def _uniform(lo: float, hi: float, n: int, gen) -> np.ndarray:
    """n numbers U(lo, hi) in float64, drawn from ``gen`` (or torch's global CPU RNG).

    A transform's parameters are a few numbers per image: drawing them with torch keeps the
    seeding contract, and the small 3×3 matrix algebra is done in numpy, where it costs
    microseconds instead of a dozen tensor-op dispatches per augmentation.
    """
    u = torch.rand(n, generator=gen, dtype=torch.float64, device=gen.device if gen is not None else "cpu")
    return lo + (hi - lo) * u.cpu().numpy()


def _affine(n: int, a=1.0, b=0.0, c=0.0, d=0.0, e=1.0, f=0.0) -> np.ndarray:
    """(n, 3, 3) float64 matrices [[a, b, c], [d, e, f], [0, 0, 1]]; entries are numbers or (n,) arrays."""
    m = np.zeros((n, 3, 3))
    m[:, 0, 0], m[:, 0, 1], m[:, 0, 2] = a, b, c
    m[:, 1, 0], m[:, 1, 1], m[:, 1, 2] = d, e, f
    m[:, 2, 2] = 1.0
    return m


def gaussian_kernel1d(sigma: float, truncate: float = 4.0, *, device=None,
                      dtype: torch.dtype = torch.float32) -> Tensor:
    """The sampled, normalized Gaussian k_i ∝ exp(−i²/(2σ²)), i = −r..r, r = ⌊truncate·σ + ½⌋.

    The same kernel as ``scipy.ndimage.gaussian_filter`` (whose default ``truncate`` is 4).
    """
    if not sigma > 0:
        raise ValueError(f"sigma must be > 0, got {sigma!r}")
    r = int(truncate * sigma + 0.5)
    i = torch.arange(-r, r + 1, device=device, dtype=torch.float64)
    k = torch.exp(-0.5 * (i / sigma) ** 2)
    return (k / k.sum()).to(dtype)


def blur_matrix(size: int, sigma: float, *, device=None, dtype: torch.dtype = torch.float32) -> Tensor:
    """The (size × size) matrix B with (B u)_i = Σ_j k_{j−i} u_j: a 1-D Gaussian blur of a
    length-``size`` signal with zeros outside it, as one matrix product.

    ``B`` is banded Toeplitz (and symmetric, as k is); a separable 2-D blur of an (H, W) image U is
    B_H · U · B_Wᵀ. For small images this product is several times faster than ``conv2d`` with a
    one-channel kernel and gives the same numbers.
    """
    k = gaussian_kernel1d(sigma, device=device, dtype=torch.float64)
    r = (len(k) - 1) // 2
    i = torch.arange(size, device=device)
    offset = i[None, :] - i[:, None] + r  # j − i + r
    inside = (offset >= 0) & (offset <= 2 * r)
    B = torch.where(inside, k[offset.clamp(0, 2 * r)], torch.zeros((), dtype=torch.float64, device=device))
    return B.to(dtype)


_BLUR_CACHE: dict = {}


def _blur_matrices(height: int, width: int, sigma: float, device, dtype) -> tuple[Tensor, Tensor]:
    key = (height, width, sigma, str(device), dtype)
    if key not in _BLUR_CACHE:
        if len(_BLUR_CACHE) > 16:
            _BLUR_CACHE.clear()
        _BLUR_CACHE[key] = (blur_matrix(height, sigma, device=device, dtype=dtype),
                            blur_matrix(width, sigma, device=device, dtype=dtype))
    return _BLUR_CACHE[key]


def elastic_field(n: int, height: int, width: int, alpha: float, sigma: float, *,
                  generator: torch.Generator | None = None, device=None,
                  dtype: torch.dtype = torch.float32, noise: Tensor | None = None) -> Tensor:
    """Simard's random displacement field, ``(n, 2, height, width)`` in pixels (dx, dy).

        Δ = α · (G_σ ∗ U),  U ~ Uniform(−1, 1) per pixel and per direction,

    where G_σ ∗ is a Gaussian blur of standard deviation σ pixels with zeros outside the image,
    the same numbers as ``scipy.ndimage.gaussian_filter(U, σ, mode="constant")`` (kernel
    truncated at 4σ). Small σ gives nearly independent displacements (a noisy image), large σ
    nearly uniform ones (a shift); Simard et al. use σ = 4, α = 34 on MNIST. ``noise`` replaces U
    (for tests). Farther than the kernel radius from the border, each component has mean 0 and
    standard deviation α·sqrt(1/3)·Σ_i k_i² (1/3 is the variance of U); nearer, the zeros outside
    shrink it.
    """
    device = torch.device(device) if device is not None else torch.device("cpu")
    if noise is None:
        shape = (n, 2, height, width)
        if generator is None:
            noise = torch.empty(shape, device=device, dtype=dtype).uniform_(-1, 1)
        else:
            noise = torch.empty(shape, device=generator.device, dtype=dtype).uniform_(
                -1, 1, generator=generator).to(device)
    B_h, B_w = _blur_matrices(height, width, sigma, noise.device, noise.dtype)
    u = noise.reshape(-1, height, width)
    # separable blur: along rows (x), then along columns (y); α rides on the small W×W matrix
    return (B_h @ (u @ (alpha * B_w.T))).reshape(noise.shape)


# --------------------------------------------------------------------------------------------
# the augmentations
# --------------------------------------------------------------------------------------------

class Augmentation:
    """Base class: a batched augmentation ``aug(x, generator=None) -> x``.

    Subclasses are *affine* (they give a per-sample 3×3 sampling matrix), *elastic* (a
    displacement field) or *pixel* (they change values). Calling one alone is ``Compose([aug])``.
    """

    kind = "pixel"  # "affine" | "elastic" | "pixel"

    def __init__(self, seed: int | None = None):
        self.seed = seed
        self.generator = _seeded(seed)

    @property
    def is_identity(self) -> bool:
        """True when the parameters make this a no-op (zero strength); it is then skipped."""
        return False

    def __call__(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        return Compose([self])(x, generator)

    def _args(self) -> str:
        return ""

    def __repr__(self) -> str:
        seed = f", seed={self.seed}" if self.seed is not None else ""
        return f"{type(self).__name__}({self._args()}{seed})"

    # affine: (n, 3, 3) float64 maps from output points to input points, centred pixel coordinates
    def matrix(self, n: int, height: int, width: int, gen) -> np.ndarray:
        raise NotImplementedError

    # elastic: (n, 2, H, W) displacement in pixels; pixel: the changed batch
    def field(self, n: int, height: int, width: int, gen, device, dtype) -> Tensor:
        raise NotImplementedError

    def apply(self, x: Tensor, gen) -> Tensor:
        raise NotImplementedError


class Rotation(Augmentation):
    """Rotate each image by θ ~ U(−degrees, degrees) (or U(lo, hi) for a pair), counter-clockwise.

    Forward map (y down, so counter-clockwise on screen): u ↦ [[cos θ, sin θ], [−sin θ, cos θ]] u
    about the image centre; θ = 90° gives ``torch.rot90(x, 1, dims=(-2, -1))``.
    Keras: ``rotation_range``; torchvision: ``RandomRotation`` (same sign convention).
    """

    kind = "affine"

    def __init__(self, degrees: float | Sequence[float] = 10.0, *, seed: int | None = None):
        super().__init__(seed)
        self.degrees = degrees
        self.lo, self.hi = _range(degrees, "degrees")

    @property
    def is_identity(self) -> bool:
        return self.lo == self.hi == 0.0

    def _args(self) -> str:
        return f"degrees={self.degrees!r}"

    def matrix(self, n, height, width, gen):
        theta = np.deg2rad(_uniform(self.lo, self.hi, n, gen))
        c, s = np.cos(theta), np.sin(theta)
        # the inverse of the forward rotation: where each output point reads from
        return _affine(n, c, -s, 0.0, s, c, 0.0)


class Shift(Augmentation):
    """Translate each image by (t_x, t_y) = (a·W, b·H) pixels, a ~ U(−width, width), b ~ U(−height, height).

    ``width``/``height`` are fractions of the image size (or (lo, hi) pairs); ``height`` defaults
    to ``width``. Positive moves the content right / down; what moves in is zero.
    Keras: ``width_shift_range`` / ``height_shift_range`` as fractions (Keras also reads values
    ≥ 1 as pixels; here they are always fractions).
    """

    kind = "affine"

    def __init__(self, width: float | Sequence[float] = 0.1, height: float | Sequence[float] | None = None,
                 *, seed: int | None = None):
        super().__init__(seed)
        self.width, self.height = width, height
        self.xr = _range(width, "width")
        self.yr = _range(width if height is None else height, "height")

    @property
    def is_identity(self) -> bool:
        return self.xr == (0.0, 0.0) and self.yr == (0.0, 0.0)

    def _args(self) -> str:
        return f"width={self.width!r}" + (f", height={self.height!r}" if self.height is not None else "")

    def matrix(self, n, height, width, gen):
        tx = _uniform(*self.xr, n, gen) * width
        ty = _uniform(*self.yr, n, gen) * height
        return _affine(n, c=-tx, f=-ty)


class Zoom(Augmentation):
    """Scale each image about its centre by s ~ U(1 − amount, 1 + amount) (or U(lo, hi) for a pair).

    s > 1 enlarges the content. ``isotropic=True`` (default) draws one s for both axes, as
    torchvision's ``RandomAffine(scale=...)``; ``False`` draws s_x and s_y independently, as Keras.
    Note: Keras's ``zoom_range`` factor divides the sampling coordinates, so Keras's z is our 1/s.
    """

    kind = "affine"

    def __init__(self, amount: float | Sequence[float] = 0.1, *, isotropic: bool = True,
                 seed: int | None = None):
        super().__init__(seed)
        self.amount, self.isotropic = amount, isotropic
        self.lo, self.hi = _range(amount, "amount", symmetric_about=1.0, low=0.0)

    @property
    def is_identity(self) -> bool:
        return self.lo == self.hi == 1.0

    def _args(self) -> str:
        return f"amount={self.amount!r}" + ("" if self.isotropic else ", isotropic=False")

    def matrix(self, n, height, width, gen):
        sx = _uniform(self.lo, self.hi, n, gen)
        sy = sx if self.isotropic else _uniform(self.lo, self.hi, n, gen)
        return _affine(n, a=1 / sx, e=1 / sy)


class Shear(Augmentation):
    """Shear each image along x by an angle φ ~ U(−degrees, degrees): x ↦ x + tan(φ)·y.

    With y pointing down, φ > 0 moves lower rows to the right. Keras's ``shear_range`` is also an
    angle in degrees (the notes' ``shear_range=0.1`` is a very small one); torchvision's
    ``RandomAffine(shear=...)`` uses the same tan φ form.
    """

    kind = "affine"

    def __init__(self, degrees: float | Sequence[float] = 10.0, *, seed: int | None = None):
        super().__init__(seed)
        self.degrees = degrees
        self.lo, self.hi = _range(degrees, "degrees")
        if max(abs(self.lo), abs(self.hi)) >= 90:
            raise ValueError(f"shear degrees must stay inside (-90, 90), got {degrees!r}")

    @property
    def is_identity(self) -> bool:
        return self.lo == self.hi == 0.0

    def _args(self) -> str:
        return f"degrees={self.degrees!r}"

    def matrix(self, n, height, width, gen):
        phi = np.deg2rad(_uniform(self.lo, self.hi, n, gen))
        return _affine(n, b=-np.tan(phi))


class HorizontalFlip(Augmentation):
    """Mirror each image left–right with probability ``p`` (default 0.5): x ↦ −x.

    Keras: ``horizontal_flip=True``; torchvision: ``RandomHorizontalFlip(p)``. Digits are not
    mirror-symmetric, so on MNIST this is a *harmful* augmentation (a useful negative example).
    """

    kind = "affine"

    def __init__(self, p: float = 0.5, *, seed: int | None = None):
        super().__init__(seed)
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"p must lie in [0, 1], got {p!r}")
        self.p = float(p)

    @property
    def is_identity(self) -> bool:
        return self.p == 0.0

    def _args(self) -> str:
        return f"p={self.p!r}"

    def matrix(self, n, height, width, gen):
        flip = _uniform(0.0, 1.0, n, gen) < self.p
        return _affine(n, a=np.where(flip, -1.0, 1.0))


class ElasticDistortion(Augmentation):
    """Simard et al.'s elastic distortion: read each output pixel p from p + Δ(p).

        Δ = α · (G_σ ∗ U),  U ~ Uniform(−1, 1)   (see :func:`elastic_field`)

    Args:
        alpha: α, the strength in pixels (default 34, Simard et al. on MNIST).
        sigma: σ, the smoothness in pixels (default 4, Simard et al.); must be > 0.

    Note: like the common re-implementations (and scipy's ``mode="constant"``), the blur treats
    pixels outside the image as zero displacement.
    """

    kind = "elastic"

    def __init__(self, alpha: float = 34.0, sigma: float = 4.0, *, seed: int | None = None):
        super().__init__(seed)
        if not alpha >= 0:
            raise ValueError(f"alpha must be >= 0, got {alpha!r}")
        if not sigma > 0:
            raise ValueError(f"sigma must be > 0, got {sigma!r}")
        self.alpha, self.sigma = float(alpha), float(sigma)

    @property
    def is_identity(self) -> bool:
        return self.alpha == 0.0

    def _args(self) -> str:
        return f"alpha={self.alpha!r}, sigma={self.sigma!r}"

    def field(self, n, height, width, gen, device, dtype):
        return elastic_field(n, height, width, self.alpha, self.sigma, generator=gen, device=device,
                             dtype=dtype)


class GaussianNoise(Augmentation):
    """Add independent Gaussian noise to every value: x ↦ x + std·ε, ε ~ N(0, 1).

    ``clip=(lo, hi)`` clamps the result (e.g. ``(0, 1)`` to stay a valid image); default ``None``
    (no clamp, like Keras's ``GaussianNoise`` layer).
    """

    kind = "pixel"

    def __init__(self, std: float = 0.1, *, clip: Sequence[float] | None = None, seed: int | None = None):
        super().__init__(seed)
        if not std >= 0:
            raise ValueError(f"std must be >= 0, got {std!r}")
        if clip is not None:
            if len(clip) != 2 or not float(clip[0]) < float(clip[1]):
                raise ValueError(f"clip must be a pair (low, high) with low < high, got {clip!r}")
            clip = (float(clip[0]), float(clip[1]))
        self.std, self.clip = float(std), clip

    @property
    def is_identity(self) -> bool:
        return self.std == 0.0 and self.clip is None

    def _args(self) -> str:
        return f"std={self.std!r}" + (f", clip={self.clip!r}" if self.clip is not None else "")

    def apply(self, x, gen):
        if gen is None:
            eps = torch.randn(x.shape, device=x.device, dtype=x.dtype)
        else:
            eps = torch.randn(x.shape, generator=gen, device=gen.device, dtype=x.dtype).to(x.device)
        out = eps.mul_(self.std).add_(x)  # x + std·ε, in ε's buffer
        return out.clamp_(*self.clip) if self.clip is not None else out


# --------------------------------------------------------------------------------------------
# composition: one resampling per run of geometric augmentations
# --------------------------------------------------------------------------------------------

_GRID_CACHE: dict = {}


def _centred_points(height: int, width: int, device, dtype) -> Tensor:
    """(3, H·W) homogeneous pixel centres (x, y, 1), origin at the image centre, row-major.

    With ``align_corners=False`` pixel j of a width-W row sits at x = j + ½ − W/2.
    """
    key = (height, width, str(device), dtype)
    if key not in _GRID_CACHE:
        if len(_GRID_CACHE) > 16:
            _GRID_CACHE.clear()
        xs = torch.arange(width, device=device, dtype=torch.float64) + 0.5 - width / 2
        ys = torch.arange(height, device=device, dtype=torch.float64) + 0.5 - height / 2
        gy, gx = torch.meshgrid(ys, xs, indexing="ij")
        pts = torch.stack([gx.reshape(-1), gy.reshape(-1), torch.ones(height * width, device=device,
                                                                      dtype=torch.float64)])
        _GRID_CACHE[key] = pts.to(dtype)
    return _GRID_CACHE[key]


def _to_grid(P: Tensor, height: int, width: int) -> Tensor:
    """(n, 2, H·W) centred pixel points -> (n, H, W, 2) normalized grid for ``F.grid_sample``."""
    norm = torch.tensor([2 / width, 2 / height], device=P.device, dtype=P.dtype).view(1, 2, 1)
    return (P * norm).view(len(P), 2, height, width).permute(0, 2, 3, 1)  # a view, no copy


def _tensor(a: np.ndarray, device, dtype) -> Tensor:
    return torch.from_numpy(a).to(device=device, dtype=dtype)


def _apply_affine(T: Tensor, P: Tensor) -> Tensor:
    """Map points P (n, 2, H·W) through the affine maps T (n, 3, 3)."""
    return torch.baddbmm(T[:, :2, 2:], T[:, :2, :2], P)


def _warp(x: Tensor, run: list[Augmentation], gens: list) -> Tensor:
    """Resample ``x`` (N, C, H, W) once through the composition of the geometric ops in ``run``.

    The ops are applied to the image in list order, so the sampling map of the whole run is
    G_1 ∘ G_2 ∘ … ∘ G_k (G_i reads op i's input at op i's output points): we build it from the
    last op back to the first. Affine maps multiply (3×3 per sample); an elastic op moves the
    points by its field, read where the points are (exactly on its grid when it is the last op).
    """
    n, _, h, w = x.shape
    dev, dt = x.device, x.dtype
    base = _centred_points(h, w, dev, dt)
    T: np.ndarray | None = None  # pending affine part, (n, 3, 3) float64
    P: Tensor | None = None  # explicit points (n, 2, H·W) once an elastic op is involved
    for op, gen in zip(reversed(run), reversed(gens)):
        if op.kind == "affine":
            M = op.matrix(n, h, w, gen)
            T = M if T is None else M @ T
            continue
        d = op.field(n, h, w, gen, dev, dt)  # (n, 2, H, W), on the op's output pixel grid
        if P is None and T is None:  # the op acts on the output grid itself: no interpolation
            P = base[:2] + d.reshape(n, 2, h * w)
            continue
        if P is None:
            P = base[:2].expand(n, 2, h * w)
        if T is not None:
            P, T = _apply_affine(_tensor(T, dev, dt), P), None
        dP = F.grid_sample(d, _to_grid(P, h, w), mode="bilinear", padding_mode="border",
                           align_corners=False)
        P = P + dP.reshape(n, 2, h * w)
    if P is None:
        # affine only: scale the matrices' rows to normalized units (x·2/W, y·2/H), then one
        # (2n × 3) @ (3 × H·W) product gives every sample's grid
        G = T[:, :2] * np.array([2 / w, 2 / h]).reshape(1, 2, 1)
        grid = torch.mm(_tensor(G.reshape(2 * n, 3), dev, dt), base)
        grid = grid.view(n, 2, h, w).permute(0, 2, 3, 1)
    else:
        if T is not None:
            P = _apply_affine(_tensor(T, dev, dt), P)
        grid = _to_grid(P, h, w)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


class Compose(Augmentation):
    """Apply augmentations in order; each run of geometric ones is a single resampling.

    Args:
        augmentations: the augmentations (nested :class:`Compose` objects are flattened).
        image_shape: ``(C, H, W)`` (or ``(H, W)``) of one image, needed for flat ``(N, D)``
            input that is not a square one-channel image.
        seed: a seed for a generator that drives every member (overrides their own seeds).

    ``Compose([Rotation(10), Shift(0.1), Zoom(0.1)])(x)`` rotates, then shifts, then zooms each
    image; because all three are affine they multiply into one matrix per image and the image is
    interpolated once (sequential calls would interpolate three times and blur more).
    """

    def __init__(self, augmentations: Sequence[Augmentation] = (), *,
                 image_shape: Sequence[int] | None = None, seed: int | None = None):
        super().__init__(seed)
        ops: list[Augmentation] = []
        for a in augmentations:
            if isinstance(a, Compose):
                ops.extend(a.augmentations)
            elif isinstance(a, Augmentation):
                ops.append(a)
            else:
                raise TypeError(f"Compose takes trainlab augmentations, got {type(a).__name__}")
        self.augmentations = ops
        if image_shape is not None:
            image_shape = tuple(int(s) for s in image_shape)
            if len(image_shape) == 2:
                image_shape = (1,) + image_shape
            if len(image_shape) != 3 or min(image_shape) < 1:
                raise ValueError(f"image_shape must be (C, H, W) or (H, W), got {image_shape!r}")
        self.image_shape = image_shape

    def _args(self) -> str:
        return "[" + ", ".join(map(repr, self.augmentations)) + "]"

    @property
    def is_identity(self) -> bool:
        return all(a.is_identity for a in self.augmentations)

    def _as_images(self, x: Tensor) -> Tensor:
        if x.dim() == 4:
            return x
        if x.dim() == 3:
            return x.unsqueeze(1)
        if x.dim() != 2:
            raise ValueError(f"augmentations take (N, C, H, W), (N, H, W) or (N, D) batches; got shape {tuple(x.shape)}")
        d = x.shape[1]
        if self.image_shape is not None:
            c, h, w = self.image_shape
            if c * h * w != d:
                raise ValueError(f"image_shape {self.image_shape} holds {c * h * w} values, but rows have {d}")
            return x.reshape(len(x), c, h, w)
        side = math.isqrt(d)
        if side * side != d:
            raise ValueError(f"rows of {d} values are not a square one-channel image; "
                             "pass Compose(..., image_shape=(C, H, W))")
        return x.reshape(len(x), 1, side, side)

    def __call__(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        if not torch.is_floating_point(x):
            raise TypeError(f"augmentations need floating-point images, got {x.dtype}")
        shared = generator if generator is not None else self.generator

        def gen_of(op: Augmentation):
            return shared if shared is not None else op.generator

        ops = [a for a in self.augmentations if not a.is_identity]
        if not ops or len(x) == 0:
            return x
        shape = x.shape
        with torch.no_grad():
            img = self._as_images(x)
            run: list[Augmentation] = []
            for op in ops:
                if op.kind in ("affine", "elastic"):
                    run.append(op)
                    continue
                if run:
                    img, run = _warp(img, run, [gen_of(a) for a in run]), []
                img = op.apply(img, gen_of(op))
            if run:
                img = _warp(img, run, [gen_of(a) for a in run])
        return img.reshape(shape)
