"""The loss landscape: lines, 2-D slices, sharpness (top Hessian eigenvalue) and curvature along g.

Notes 002 describe the surface a network descends as non-convex, with local minima that are about
as good as the global one, ill-conditioned valleys and saddle points. These tools look at it:

* :func:`line_profile` — the loss along θ(α) = (1 − α)·θ₀ + α·θ₁, e.g. from the initialization to
  the trained weights (Goodfellow, Vinyals & Saxe 2015, "Qualitatively characterizing neural
  network optimization problems").
* :func:`filter_normalized_slice` — the loss on the plane θ* + a·δ + b·η through a point θ*, with
  random directions δ, η normalized filter by filter to the weights' own norms (Li, Xu, Taylor,
  Studer & Goldstein 2018, "Visualizing the loss landscape of neural nets").
* :func:`hessian_top_eigenvalue` — the largest eigenvalue of the Hessian ∇²L (the "sharpness" of
  a minimum, Keskar et al. 2017), by power iteration or by Lanczos on Hessian-vector products
  Hv = ∇(∇L·v) (Pearlmutter 1994): the Hessian itself is never formed.
* :func:`gradient_curvature` — gᵀHg/‖g‖², the curvature along the gradient: Goodfellow, Bengio &
  Courville (2016, §8.2.1, notes 002) write a step −εg as L(θ − εg) ≈ L(θ) − ε gᵀg + ½ε² gᵀHg,
  so the step raises the loss once ½ε² gᵀHg > ε gᵀg, i.e. for ε > 2/(gᵀHg/‖g‖²): the
  ill-conditioning monitor.

Every function evaluates ``loss_fn(model(x), y)`` on ``data`` — an ``(x, y)`` pair or a list of
such batches (the loss is then the size-weighted mean) — with the model in eval mode (no dropout
noise, batch norm on its running statistics) and leaves the model's parameters and mode as they
were.
"""
from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Callable, Sequence

import torch
from torch import Tensor, nn
from torch.nn.utils import parameters_to_vector, vector_to_parameters

def _params(model: nn.Module) -> list[nn.Parameter]:
    return [p for p in model.parameters() if p.requires_grad]


def _batches(data) -> list[tuple[Tensor, Tensor]]:
    if isinstance(data, tuple) and len(data) == 2 and isinstance(data[0], Tensor):
        return [data]
    if hasattr(data, "X") and hasattr(data, "y"):  # a trainlab Dataset
        return [(data.X, data.y)]
    return list(data)


@contextmanager
def _evaluating(model: nn.Module):
    """Eval mode and the parameters put back afterwards, whatever the caller does in between."""
    was_training = model.training
    saved = parameters_to_vector(_params(model)).detach().clone()
    model.eval()
    try:
        yield
    finally:
        with torch.no_grad():
            vector_to_parameters(saved, _params(model))
        model.train(was_training)


def _loss(model: nn.Module, loss_fn: Callable, batches: list, *, create_graph: bool = False) -> Tensor:
    """The size-weighted mean loss over the batches (a graph when ``create_graph``)."""
    n = sum(len(x) for x, _ in batches)
    total = 0.0
    with torch.set_grad_enabled(create_graph):
        for x, y in batches:
            total = total + loss_fn(model(x), y) * (len(x) / n)
    return total


def flat_parameters(model: nn.Module) -> Tensor:
    """The trainable parameters of ``model`` as one detached vector (module order)."""
    return parameters_to_vector(_params(model)).detach().clone()


def loss_at(model: nn.Module, loss_fn: Callable, data, theta: Tensor) -> float:
    """L(θ): the loss with the parameters set to the flat vector ``theta`` (restored afterwards)."""
    batches = _batches(data)
    with _evaluating(model), torch.no_grad():
        vector_to_parameters(theta, _params(model))
        return float(_loss(model, loss_fn, batches))


def line_profile(model: nn.Module, loss_fn: Callable, data, theta0: Tensor, theta1: Tensor,
                 alphas: Sequence[float] | Tensor | None = None) -> dict:
    """The loss along the straight line θ(α) = (1 − α)·θ₀ + α·θ₁.

    Goodfellow, Vinyals & Saxe (2015) found that for many networks this line from the
    initialization θ₀ to the trained θ₁ descends monotonically, without a barrier: a 1-D view that
    hides the non-convexity a 2-D slice shows. α < 0 and α > 1 extrapolate past the ends.

    Args:
        theta0, theta1: flat parameter vectors (:func:`flat_parameters`).
        alphas: the points; default 51 values from −0.25 to 1.25.

    Returns ``{"alphas", "losses", "loss_start" (L(θ₀)), "loss_end" (L(θ₁)), "max_barrier",
    "monotone"}``: the barrier is the largest rise of the loss above the chord between the ends,
    max over α in [0, 1] of L(θ(α)) − ((1 − α)·L(θ₀) + α·L(θ₁)) (0 or below: no barrier, the
    loss is convex-like along the line); ``monotone``: the loss never rises by more than 1e-6
    between consecutive points in [0, 1].
    """
    if alphas is None:
        alphas = torch.linspace(-0.25, 1.25, 61, dtype=torch.float64)
    alphas = [round(float(a), 12) for a in alphas]
    theta0, theta1 = theta0.detach(), theta1.detach()
    if theta0.shape != theta1.shape:
        raise ValueError(f"theta0 and theta1 differ in size: {theta0.numel()} vs {theta1.numel()}")
    batches = _batches(data)
    losses = []
    with _evaluating(model), torch.no_grad():
        for a in alphas:
            vector_to_parameters((1 - a) * theta0 + a * theta1, _params(model))
            losses.append(float(_loss(model, loss_fn, batches)))
    inside = [(a, l) for a, l in zip(alphas, losses) if 0.0 <= a <= 1.0]
    l0 = loss_at(model, loss_fn, batches, theta0)
    l1 = loss_at(model, loss_fn, batches, theta1)
    barrier = max((l - ((1 - a) * l0 + a * l1) for a, l in inside), default=0.0)
    monotone = all(b[1] <= a[1] + 1e-6 for a, b in zip(inside[:-1], inside[1:]))
    return {"alphas": alphas, "losses": losses, "loss_start": l0, "loss_end": l1,
            "max_barrier": barrier, "monotone": monotone}


def filter_normalized_direction(model: nn.Module, generator: torch.Generator | None = None) -> Tensor:
    """A random direction d with each filter scaled to the norm of the same filter of the weights.

    Li et al. (2018, §4): draw d ~ N(0, I) shaped like θ; for every weight tensor and every filter
    i (row i of a linear layer, output channel i of a convolution) set
    d_i ← d_i / ‖d_i‖ · ‖θ_i‖. Directions are then comparable across layers and networks whatever
    the scale of their weights (scale invariance under ReLU/BN). One-dimensional parameters
    (biases, batch-norm γ and β) get direction 0, as in the paper's ``ignore biasbn`` setting.
    """
    parts = []
    for p in _params(model):
        w = p.detach()
        if w.dim() <= 1:
            parts.append(torch.zeros_like(w).flatten())
            continue
        d = torch.randn(w.shape, generator=generator, dtype=w.dtype).to(w.device)
        rows_d, rows_w = d.reshape(len(d), -1), w.reshape(len(w), -1)
        scale = rows_w.norm(dim=1, keepdim=True) / rows_d.norm(dim=1, keepdim=True).clamp_min(1e-12)
        parts.append((rows_d * scale).flatten())
    return torch.cat(parts)


def filter_normalized_slice(model: nn.Module, loss_fn: Callable, data, *, steps: int = 21, span: float = 1.0,
                            center: Tensor | None = None, directions: tuple[Tensor, Tensor] | None = None,
                            generator: torch.Generator | None = None) -> dict:
    """The loss on a 2-D plane through ``center``: L(θ* + a·δ + b·η) on a ``steps × steps`` grid.

    Li et al. (2018): δ and η are :func:`filter_normalized_direction` s (two independent draws;
    in high dimension they are nearly orthogonal), a and b run over [−span, span]. The contour
    plot of the result shows whether the minimum is wide or sharp and how convex its basin is.

    Args:
        steps: grid points per axis (odd puts θ* at the centre); span: half-width of the grid.
        center: the flat parameters θ* (default: the model's current parameters).
        directions: ``(δ, η)`` to use instead of random ones.

    Returns ``{"a": [...], "b": [...], "losses": [[L(a_j, b_i) for j] for i], "center_loss"}``:
    rows follow b, columns follow a.
    """
    if steps < 2:
        raise ValueError(f"steps must be at least 2, got {steps}")
    if not span > 0:
        raise ValueError(f"span must be positive, got {span}")
    center = flat_parameters(model) if center is None else center.detach()
    if directions is None:
        directions = (filter_normalized_direction(model, generator), filter_normalized_direction(model, generator))
    delta, eta = directions
    grid = [round(float(v), 12) for v in torch.linspace(-span, span, steps, dtype=torch.float64)]
    batches = _batches(data)
    losses = []
    with _evaluating(model), torch.no_grad():
        for b in grid:
            row = []
            for a in grid:
                vector_to_parameters(center + a * delta + b * eta, _params(model))
                row.append(float(_loss(model, loss_fn, batches)))
            losses.append(row)
        vector_to_parameters(center, _params(model))
        center_loss = float(_loss(model, loss_fn, batches))
    return {"a": grid, "b": grid, "losses": losses, "center_loss": center_loss}


def hvp(model: nn.Module, loss_fn: Callable, data, v: Tensor) -> Tensor:
    """The Hessian-vector product H·v = ∇_θ (∇_θ L · v), by double backward (Pearlmutter 1994).

    ``v`` is a flat vector the size of the trainable parameters; so is the result. The model's
    current mode is used (the public functions put it in eval mode first).
    """
    params = _params(model)
    loss = _loss(model, loss_fn, _batches(data), create_graph=True)
    grads = torch.autograd.grad(loss, params, create_graph=True)
    g = torch.cat([t.reshape(-1) for t in grads])
    hv = torch.autograd.grad(g @ v.to(g.dtype), params, allow_unused=True)
    return torch.cat([(h if h is not None else torch.zeros_like(p)).reshape(-1)
                      for h, p in zip(hv, params)]).detach()


def _lanczos_top(matvec: Callable[[Tensor], Tensor], v0: Tensor, iters: int, tol: float) -> tuple[float, Tensor]:
    """Largest eigenvalue of a symmetric operator by Lanczos with full reorthogonalization.

    The k × k tridiagonal T_k = Qᵀ A Q has Ritz values that converge to A's extreme eigenvalues
    first (Golub & Van Loan, §10.1); full reorthogonalization keeps Q orthonormal in floating
    point. Stops when the top Ritz value moves less than ``tol`` (relative) or the Krylov space
    is exhausted. Returns the top Ritz value and its Ritz vector.
    """
    n = v0.numel()
    q = v0 / v0.norm()
    Q, alphas, betas = [q], [], []
    top, prev = math.nan, math.nan
    for k in range(min(iters, n)):
        w = matvec(Q[-1])
        a = float(w @ Q[-1])
        alphas.append(a)
        basis = torch.stack(Q)
        w = w - basis.T @ (basis @ w)           # full reorthogonalization (twice is enough: Kahan)
        w = w - basis.T @ (basis @ w)
        T = torch.diag(torch.tensor(alphas, dtype=torch.float64))
        if betas:
            off = torch.tensor(betas, dtype=torch.float64)
            T = T + torch.diag(off, 1) + torch.diag(off, -1)
        evals, evecs = torch.linalg.eigh(T)
        top = float(evals[-1])
        b = float(w.norm())
        if b <= 1e-12 * max(1.0, abs(top)) or (k > 0 and abs(top - prev) <= tol * max(1.0, abs(top))):
            break
        prev = top
        betas.append(b)
        Q.append(w / b)
    basis = torch.stack(Q[:len(alphas)])
    vec = basis.T @ evecs[:, -1].to(basis.dtype)
    return top, vec / vec.norm()


def hessian_top_eigenvalue(model: nn.Module, loss_fn: Callable, data, *, method: str = "lanczos",
                           iters: int = 100, tol: float = 1e-10, generator: torch.Generator | None = None,
                           return_vector: bool = False):
    """The largest eigenvalue λ_max of the Hessian of the loss: the sharpness of the point.

    Only Hessian-vector products (:func:`hvp`) are used. ``method``:

    * ``"lanczos"`` (default): the top Ritz value of a Lanczos run with full reorthogonalization;
      the *algebraically* largest eigenvalue, converging in far fewer products than power
      iteration when the top eigenvalues are close.
    * ``"power"``: v ← Hv/‖Hv‖, λ = vᵀHv; converges to the eigenvalue of largest *magnitude*, which
      is λ_max at a minimum (H ⪰ 0) but can be a negative eigenvalue at a saddle. The rate is
      |λ₂/λ₁| per iteration.

    Args:
        iters: most Hessian-vector products; tol: relative change of the estimate to stop at.
        generator: draws the start vector.
        return_vector: also return the (unit) eigenvector estimate.

    Returns λ_max as a float (and the vector, with ``return_vector``).
    """
    if method not in ("lanczos", "power"):
        raise ValueError(f"method must be 'lanczos' or 'power', got {method!r}")
    if iters < 1:
        raise ValueError(f"iters must be at least 1, got {iters}")
    batches = _batches(data)
    with _evaluating(model):
        params = _params(model)
        n = sum(p.numel() for p in params)
        dtype, device = params[0].dtype, params[0].device
        v = torch.randn(n, generator=generator, dtype=dtype).to(device)
        matvec = lambda u: hvp(model, loss_fn, batches, u)
        if method == "lanczos":
            lam, v = _lanczos_top(matvec, v, iters, tol)
        else:
            v = v / v.norm()
            lam = math.nan
            for _ in range(iters):
                hv = matvec(v)
                new = float(v @ hv)
                norm = hv.norm()
                if float(norm) == 0.0:
                    lam = 0.0
                    break
                v = hv / norm
                if math.isfinite(lam) and abs(new - lam) <= tol * max(1.0, abs(new)):
                    lam = new
                    break
                lam = new
    return (lam, v) if return_vector else lam


def gradient_curvature(model: nn.Module, loss_fn: Callable, data) -> dict:
    """The curvature along the gradient, the notes' ill-conditioning monitor.

    With g = ∇L and H = ∇²L, a gradient step of size ε changes the loss by
    ΔL ≈ −ε gᵀg + ½ ε² gᵀHg (second-order Taylor; Goodfellow et al. 2016 §8.2.1). Returns
    ``{"gTg": gᵀg, "gTHg": gᵀHg, "curvature": gᵀHg/gᵀg, "critical_lr": 2·gᵀg/gᵀHg}``:
    ``curvature`` lies between H's extreme eigenvalues; a step larger than ``critical_lr``
    (∞ when gᵀHg ≤ 0) *increases* the loss to second order. Ill-conditioning shows as gᵀHg
    growing faster than gᵀg during training (the gradient norm rising while the loss falls).
    """
    batches = _batches(data)
    with _evaluating(model):
        params = _params(model)
        loss = _loss(model, loss_fn, batches, create_graph=True)
        grads = torch.autograd.grad(loss, params, create_graph=True)
        g = torch.cat([t.reshape(-1) for t in grads])
        hg = torch.autograd.grad(g @ g.detach(), params, allow_unused=True)
        hg = torch.cat([(h if h is not None else torch.zeros_like(p)).reshape(-1) for h, p in zip(hg, params)])
        gtg = float(g.detach() @ g.detach())
        gthg = float(g.detach() @ hg.detach())
    curvature = gthg / gtg if gtg > 0 else math.nan
    critical = 2 * gtg / gthg if gthg > 0 else math.inf
    return {"gTg": gtg, "gTHg": gthg, "curvature": curvature, "critical_lr": critical}


def landscape_summary(model: nn.Module, loss_fn: Callable, data, theta0: Tensor | None = None, *,
                      line: bool = True, slice: dict | None = None, sharpness: bool = True, iters: int = 30,
                      seed: int = 0) -> dict:
    """What a run's ``diagnostics.landscape`` section asks for, at the model's current weights θ₁.

    ``line``: :func:`line_profile` from ``theta0`` to θ₁ (skipped without ``theta0``); ``slice``:
    ``{steps, span}`` for :func:`filter_normalized_slice` (``None``: none); ``sharpness``:
    :func:`hessian_top_eigenvalue` by Lanczos with at most ``iters`` products. Random directions
    and start vectors come from a generator seeded with ``seed``. JSON-able.
    """
    g = torch.Generator().manual_seed(seed)
    out: dict = {}
    if line and theta0 is not None:
        out["line"] = line_profile(model, loss_fn, data, theta0, flat_parameters(model))
    if slice is not None:
        out["slice"] = filter_normalized_slice(model, loss_fn, data, steps=slice.get("steps", 21),
                                               span=slice.get("span", 1.0), generator=g)
    if sharpness:
        out["sharpness"] = hessian_top_eigenvalue(model, loss_fn, data, iters=iters, tol=1e-6, generator=g)
    return out
