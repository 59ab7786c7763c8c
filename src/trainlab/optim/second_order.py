"""Methods that use curvature: Newton's method, nonlinear conjugate gradients and L-BFGS (notes 002).

All three see the parameters as one flat vector θ ∈ ℝⁿ and need a closure, because they evaluate
the loss more than once per step (line searches) or need its graph (the Hessian):

* :class:`LBFGS` and :class:`NonlinearCG` take the usual closure (zero grads, forward, backward,
  return the loss), like ``torch.optim.LBFGS``;
* :class:`Newton` calls ``closure(backward=False)`` and expects the loss *with its graph* (it
  differentiates twice). trainlab's fit loop passes such a closure.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor

from trainlab.optim.chain import check_choice, check_lr, check_range

__all__ = ["Newton", "NonlinearCG", "LBFGS", "strong_wolfe", "CG_BETAS"]


# ------------------------------------------------------------------------------------------------
# the flat view of the parameters
# ------------------------------------------------------------------------------------------------

class _Flat:
    """The parameters of one group seen as a single vector (gradient gathered, steps scattered)."""

    def __init__(self, params: list[Tensor], who: str):
        for p in params:
            if torch.is_complex(p):
                raise RuntimeError(f"{who} supports real parameters only (got a {p.dtype} parameter)")
        self.params = params
        self.numel = sum(p.numel() for p in params)

    def grad(self) -> Tensor:
        views = []
        for p in self.params:
            if p.grad is None:
                views.append(p.new_zeros(p.numel()))
            elif p.grad.is_sparse:
                views.append(p.grad.to_dense().view(-1))
            else:
                views.append(p.grad.view(-1))
        return torch.cat(views, 0)

    def add_(self, t, d: Tensor) -> None:
        """θ ← θ + t·d."""
        offset = 0
        for p in self.params:
            n = p.numel()
            p.add_(d[offset:offset + n].view_as(p), alpha=t)
            offset += n

    def clone(self) -> list[Tensor]:
        return [p.clone(memory_format=torch.contiguous_format) for p in self.params]

    def set_(self, values: list[Tensor]) -> None:
        for p, v in zip(self.params, values):
            p.copy_(v)

    def at(self, closure, x: list[Tensor], t, d: Tensor) -> tuple[float, Tensor]:
        """Loss and flat gradient at x + t·d; the parameters are put back to x afterwards."""
        self.add_(t, d)
        loss = float(closure())
        g = self.grad()
        self.set_(x)
        return loss, g


def _with_grad(closure: Callable) -> Callable:
    return torch.enable_grad()(closure)


# ------------------------------------------------------------------------------------------------
# line searches
# ------------------------------------------------------------------------------------------------

def _cubic_minimizer(x1, f1, g1, x2, f2, g2, bounds=None):
    """Minimizer of the cubic through (x₁, f₁, f′₁) and (x₂, f₂, f′₂), clipped to ``bounds``
    (Nocedal & Wright eq. 3.59); the midpoint when the cubic has no minimizer."""
    lo, hi = bounds if bounds is not None else ((x1, x2) if x1 <= x2 else (x2, x1))
    d1 = g1 + g2 - 3 * (f1 - f2) / (x1 - x2)
    d2_square = d1 ** 2 - g1 * g2
    if d2_square >= 0:
        d2 = d2_square.sqrt() if isinstance(d2_square, Tensor) else math.sqrt(d2_square)
        if x1 <= x2:
            x = x2 - (x2 - x1) * ((g2 + d2 - d1) / (g2 - g1 + 2 * d2))
        else:
            x = x1 - (x1 - x2) * ((g1 + d2 - d1) / (g1 - g2 + 2 * d2))
        return min(max(x, lo), hi)
    return (lo + hi) / 2.0


def strong_wolfe(evaluate: Callable, t, d: Tensor, f: float, g: Tensor, gtd, c1: float = 1e-4,
                 c2: float = 0.9, tolerance_change: float = 1e-9, max_ls: int = 25):
    """A step t along d satisfying the strong Wolfe conditions (Nocedal & Wright, Alg. 3.5/3.6).

    Sufficient decrease f(θ + td) ≤ f + c₁·t·gᵀd and curvature |∇f(θ + td)ᵀd| ≤ c₂·|gᵀd|. Phase 1
    grows t (cubic extrapolation) until a bracket is found; phase 2 zooms into it with cubic
    interpolation. ``evaluate(t) -> (loss, flat_grad)``. Returns ``(f_new, g_new, t, evaluations)``.
    The same procedure and constants as ``torch.optim.LBFGS`` (after minFunc), so trajectories agree.
    """
    d_norm = d.abs().max()
    g = g.clone(memory_format=torch.contiguous_format)
    f_new, g_new = evaluate(t)
    evals = 1
    gtd_new = g_new.dot(d)

    # phase 1: bracket
    t_prev, f_prev, g_prev, gtd_prev = 0, f, g, gtd
    done = False
    it = 0
    while it < max_ls:
        if f_new > (f + c1 * t * gtd) or (it > 1 and f_new >= f_prev):
            bracket, bracket_f = [t_prev, t], [f_prev, f_new]
            bracket_g, bracket_gtd = [g_prev, g_new.clone(memory_format=torch.contiguous_format)], [gtd_prev, gtd_new]
            break
        if abs(gtd_new) <= -c2 * gtd:
            bracket, bracket_f, bracket_g = [t], [f_new], [g_new]
            done = True
            break
        if gtd_new >= 0:
            bracket, bracket_f = [t_prev, t], [f_prev, f_new]
            bracket_g, bracket_gtd = [g_prev, g_new.clone(memory_format=torch.contiguous_format)], [gtd_prev, gtd_new]
            break
        # extrapolate, at least 1% further and at most 10× (minFunc's safeguards)
        lo, hi = t + 0.01 * (t - t_prev), t * 10
        t_next = _cubic_minimizer(t_prev, f_prev, gtd_prev, t, f_new, gtd_new, bounds=(lo, hi))
        t_prev, f_prev, g_prev, gtd_prev = t, f_new, g_new.clone(memory_format=torch.contiguous_format), gtd_new
        t = t_next
        f_new, g_new = evaluate(t)
        evals += 1
        gtd_new = g_new.dot(d)
        it += 1
    if it == max_ls:
        bracket, bracket_f, bracket_g = [0, t], [f, f_new], [g, g_new]

    # phase 2: zoom
    insufficient = False
    low, high = (0, 1) if bracket_f[0] <= bracket_f[-1] else (1, 0)
    while not done and it < max_ls:
        if abs(bracket[1] - bracket[0]) * d_norm < tolerance_change:
            break
        t = _cubic_minimizer(bracket[0], bracket_f[0], bracket_gtd[0], bracket[1], bracket_f[1], bracket_gtd[1])
        # keep t away from the bracket's ends (a point too close to an end makes little progress)
        margin = 0.1 * (max(bracket) - min(bracket))
        if min(max(bracket) - t, t - min(bracket)) < margin:
            if insufficient or t >= max(bracket) or t <= min(bracket):
                t = max(bracket) - margin if abs(t - max(bracket)) < abs(t - min(bracket)) else min(bracket) + margin
                insufficient = False
            else:
                insufficient = True
        else:
            insufficient = False
        f_new, g_new = evaluate(t)
        evals += 1
        gtd_new = g_new.dot(d)
        it += 1
        if f_new > (f + c1 * t * gtd) or f_new >= bracket_f[low]:
            bracket[high], bracket_f[high] = t, f_new
            bracket_g[high] = g_new.clone(memory_format=torch.contiguous_format)
            bracket_gtd[high] = gtd_new
            low, high = (0, 1) if bracket_f[0] <= bracket_f[1] else (1, 0)
        else:
            if abs(gtd_new) <= -c2 * gtd:
                done = True
            elif gtd_new * (bracket[high] - bracket[low]) >= 0:
                bracket[high], bracket_f[high] = bracket[low], bracket_f[low]
                bracket_g[high], bracket_gtd[high] = bracket_g[low], bracket_gtd[low]
            bracket[low], bracket_f[low] = t, f_new
            bracket_g[low] = g_new.clone(memory_format=torch.contiguous_format)
            bracket_gtd[low] = gtd_new
    return bracket_f[low], bracket_g[low], bracket[low], evals


def secant_search(evaluate: Callable, t: float, f: float, gtd: float, tol: float = 1e-6,
                  max_ls: int = 25, c1: float = 1e-4):
    """An (almost) exact line search: secant iterations on φ′(t) = ∇f(θ + td)ᵀd until
    |φ′(t)| ≤ tol·|φ′(0)|.

    On a quadratic φ′ is linear and one secant step lands on the exact minimizer along d — what
    conjugate gradients need to finish an n-dimensional quadratic in n steps. Where φ′ does not grow
    (negative curvature along d) the step is doubled. If the final point fails the sufficient-decrease
    test, the best point evaluated is returned. Returns ``(f_new, g_new, t, evaluations)``.
    """
    t_a, dphi_a = 0.0, gtd
    f_b, g_b = evaluate(t)
    evals, t_b = 1, t
    dphi_b = float(g_b.dot(evaluate.d))
    best = (f_b, g_b, t_b)
    while evals < max_ls and abs(dphi_b) > tol * abs(gtd):
        if dphi_b - dphi_a <= 0:
            t_next = 2 * t_b if dphi_b < 0 else 0.5 * (t_a + t_b)
        else:
            t_next = t_b - dphi_b * (t_b - t_a) / (dphi_b - dphi_a)
        if not math.isfinite(t_next) or t_next <= 0:
            break
        t_a, dphi_a = t_b, dphi_b
        t_b = t_next
        f_b, g_b = evaluate(t_b)
        evals += 1
        dphi_b = float(g_b.dot(evaluate.d))
        if f_b < best[0]:
            best = (f_b, g_b, t_b)
    if not f_b <= f + c1 * t_b * gtd:
        f_b, g_b, t_b = best
    return f_b, g_b, t_b, evals


# ------------------------------------------------------------------------------------------------
# L-BFGS
# ------------------------------------------------------------------------------------------------

class LBFGS(torch.optim.Optimizer):
    """Limited-memory BFGS (Nocedal 1980; Liu & Nocedal 1989), as ``torch.optim.LBFGS``.

    Keeps the last m pairs sₖ = θₖ₊₁ − θₖ, yₖ = gₖ₊₁ − gₖ and applies the inverse-Hessian
    approximation by the two-loop recursion (Nocedal & Wright Alg. 7.4), initial scaling
    H₀ = (sᵀy / yᵀy)·I. One ``step(closure)`` runs up to ``max_iter`` iterations::

        d = −H·g;  t = lr (first iteration: min(1, 1/‖g‖₁)·lr), or a strong-Wolfe line search
        θ ← θ + t·d

    Args: ``lr`` (1), ``max_iter`` (20), ``max_eval`` (max_iter·5/4), ``tolerance_grad`` (1e-7, on
    max|g|), ``tolerance_change`` (1e-9, on loss and step changes), ``history_size`` m (100),
    ``line_search_fn`` (None or ``"strong_wolfe"``). One param group only; needs a closure.
    Same algorithm, tolerances and state keys as PyTorch (the tests compare trajectories).
    """

    def __init__(self, params, lr: float = 1, max_iter: int = 20, max_eval: int | None = None,
                 tolerance_grad: float = 1e-7, tolerance_change: float = 1e-9,
                 history_size: int = 100, line_search_fn: str | None = None):
        check_lr(lr)
        if isinstance(max_iter, bool) or not isinstance(max_iter, int) or max_iter < 1:
            raise ValueError(f"Invalid max_iter value: {max_iter!r} (must be an integer >= 1)")
        if max_eval is None:
            max_eval = max_iter * 5 // 4
        if isinstance(history_size, bool) or not isinstance(history_size, int) or history_size < 1:
            raise ValueError(f"Invalid history_size value: {history_size!r} (must be an integer >= 1)")
        check_choice("line_search_fn", line_search_fn, (None, "strong_wolfe"))
        super().__init__(params, dict(lr=lr, max_iter=max_iter, max_eval=max_eval,
                                      tolerance_grad=tolerance_grad, tolerance_change=tolerance_change,
                                      history_size=history_size, line_search_fn=line_search_fn))
        if len(self.param_groups) != 1:
            raise ValueError("LBFGS doesn't support per-parameter options (parameter groups)")
        self._flat = _Flat(self.param_groups[0]["params"], "LBFGS")

    @staticmethod
    def two_loop(g: Tensor, s_list: list[Tensor], y_list: list[Tensor], rho: list, h0, alpha: list) -> Tensor:
        """d = −H·g by the two-loop recursion (Nocedal & Wright Alg. 7.4); ``alpha`` is scratch."""
        q = g.neg()
        for i in range(len(s_list) - 1, -1, -1):
            alpha[i] = s_list[i].dot(q) * rho[i]
            q.add_(y_list[i], alpha=-alpha[i])
        r = torch.mul(q, h0)
        for i in range(len(s_list)):
            beta = y_list[i].dot(r) * rho[i]
            r.add_(s_list[i], alpha=alpha[i] - beta)
        return r

    @torch.no_grad()
    def step(self, closure=None):
        """Up to ``max_iter`` L-BFGS iterations; returns the loss at the starting point."""
        if closure is None:
            raise RuntimeError("LBFGS needs a closure: optimizer.step(closure)")
        closure = _with_grad(closure)
        group = self.param_groups[0]
        lr = float(group["lr"])
        max_iter, max_eval = group["max_iter"], group["max_eval"]
        tol_grad, tol_change = group["tolerance_grad"], group["tolerance_change"]
        flat = self._flat
        state = self.state[flat.params[0]]
        state.setdefault("func_evals", 0)
        state.setdefault("n_iter", 0)

        orig_loss = closure()
        loss = float(orig_loss)
        evals = 1
        state["func_evals"] += 1
        g = flat.grad()
        if g.abs().max() <= tol_grad:  # already optimal
            return orig_loss

        d, t = state.get("d"), state.get("t")
        s_list, y_list, rho = state.get("old_stps"), state.get("old_dirs"), state.get("ro")
        h0, g_prev, loss_prev = state.get("H_diag"), state.get("prev_flat_grad"), state.get("prev_loss")

        n_iter = 0
        while n_iter < max_iter:
            n_iter += 1
            state["n_iter"] += 1
            if state["n_iter"] == 1:
                d = g.neg()
                s_list, y_list, rho = [], [], []
                h0 = 1
            else:
                y = g.sub(g_prev)
                s = d.mul(t)
                ys = y.dot(s)
                if ys > 1e-10:  # keep only pairs with positive curvature (H stays positive definite)
                    if len(s_list) == group["history_size"]:
                        s_list.pop(0), y_list.pop(0), rho.pop(0)
                    s_list.append(s)
                    y_list.append(y)
                    rho.append(1.0 / ys)
                    h0 = ys / y.dot(y)
                if "al" not in state:
                    state["al"] = [None] * group["history_size"]
                d = self.two_loop(g, s_list, y_list, rho, h0, state["al"])

            if g_prev is None:
                g_prev = g.clone(memory_format=torch.contiguous_format)
            else:
                g_prev.copy_(g)
            loss_prev = loss

            t = min(1.0, 1.0 / g.abs().sum()) * lr if state["n_iter"] == 1 else lr
            gtd = g.dot(d)
            if gtd > -tol_change:  # not a descent direction any more
                break

            ls_evals = 0
            if group["line_search_fn"] == "strong_wolfe":
                x0 = flat.clone()
                loss, g, t, ls_evals = strong_wolfe(lambda tt: flat.at(closure, x0, tt, d), t, d,
                                                    loss, g, gtd, max_ls=max_eval - evals)
                flat.add_(t, d)
                opt_cond = g.abs().max() <= tol_grad
            else:
                flat.add_(t, d)
                opt_cond = False
                if n_iter != max_iter:
                    loss = float(closure())
                    g = flat.grad()
                    opt_cond = g.abs().max() <= tol_grad
                    ls_evals = 1
            evals += ls_evals
            state["func_evals"] += ls_evals

            if n_iter == max_iter or evals >= max_eval or opt_cond:
                break
            if d.mul(t).abs().max() <= tol_change:
                break
            if abs(loss - loss_prev) < tol_change:
                break

        state.update(d=d, t=t, old_dirs=y_list, old_stps=s_list, ro=rho, H_diag=h0,
                     prev_flat_grad=g_prev, prev_loss=loss_prev)
        return orig_loss


# ------------------------------------------------------------------------------------------------
# Newton
# ------------------------------------------------------------------------------------------------

class Newton(torch.optim.Optimizer):
    """Newton's method with damping: θ ← θ − lr·(H + λI)⁻¹·g, with the full Hessian H.

    From the second-order Taylor model J(θ + δ) ≈ J + gᵀδ + ½δᵀHδ, whose minimizer is δ = −H⁻¹g:
    on a quadratic with positive-definite H one step with lr = 1 lands on the minimum (notes 002,
    Goodfellow 8.6.1). Far from a minimum H can be indefinite and Newton is attracted to saddle
    points; the damping λ (Levenberg–Marquardt style, the regularized step of Goodfellow 8.6.1)
    shifts the eigenvalues.

    The Hessian is built from a double backward pass, all n rows at once by
    ``torch.autograd.grad(..., is_grads_batched=True)`` (vmap from torch.func); it costs n² memory and
    an n×n solve, so the group may hold at most ``max_params`` values (default 5000).

    Args: ``lr`` (1.0), ``damping`` λ (0.0), ``max_params`` (5000).
    Needs ``closure(backward=False)`` returning the loss with its graph (trainlab's fit passes one).
    No framework ships it (PyTorch gives ``torch.func.hessian`` only).
    """

    def __init__(self, params, lr: float = 1.0, damping: float = 0.0, max_params: int = 5000):
        check_lr(lr)
        check_range("damping", damping, 0.0, math.inf, hi_open=False)
        if isinstance(max_params, bool) or not isinstance(max_params, int) or max_params < 1:
            raise ValueError(f"Invalid max_params value: {max_params!r} (must be an integer >= 1)")
        super().__init__(params, dict(lr=lr, damping=damping, max_params=max_params))
        for group in self.param_groups:
            n = sum(p.numel() for p in group["params"])
            if n > group["max_params"]:
                raise ValueError(
                    f"Newton builds the full {n}×{n} Hessian ({n * n * 4 / 2**20:.0f} MiB in float32) "
                    f"and solves with it each step; this group has {n} parameters, above max_params="
                    f"{group['max_params']}. Use LBFGS or NonlinearCG for a model this size, or raise "
                    f"max_params if you really mean it.")
            _Flat(group["params"], "Newton")

    @staticmethod
    def hessian(loss: Tensor, params: list[Tensor]) -> tuple[Tensor, Tensor]:
        """(g, H): the flat gradient and the n×n Hessian of ``loss`` w.r.t. ``params``."""
        grads = torch.autograd.grad(loss, params, create_graph=True, allow_unused=True)
        g = torch.cat([(gi if gi is not None else torch.zeros_like(p)).reshape(-1)
                       for gi, p in zip(grads, params)])
        n = g.numel()
        if not g.requires_grad:  # the loss is linear in θ: H = 0
            return g.detach(), g.new_zeros(n, n)
        eye = torch.eye(n, dtype=g.dtype, device=g.device)
        try:
            rows = torch.autograd.grad(g, params, grad_outputs=eye, is_grads_batched=True,
                                       retain_graph=True, allow_unused=True)
        except RuntimeError:
            # some ops have no batching rule: fall back to one backward pass per row
            rows = [torch.stack(r) for r in zip(*[
                torch.autograd.grad(g[i], params, retain_graph=True, allow_unused=True) for i in range(n)])]
        cols = [(r if r is not None else torch.zeros(n, *p.shape, dtype=g.dtype, device=g.device)).reshape(n, -1)
                for r, p in zip(rows, params)]
        H = torch.cat(cols, dim=1)
        return g.detach(), (H + H.T) / 2  # symmetrise away the rounding

    @torch.no_grad()
    def step(self, closure=None):
        """One Newton step per group; returns the loss before the step."""
        if closure is None:
            raise RuntimeError("Newton needs a closure: optimizer.step(closure)")
        with torch.enable_grad():
            try:
                loss = closure(backward=False)
            except TypeError as e:
                raise TypeError(
                    "Newton needs a closure that accepts backward=False and then returns the loss with "
                    "its graph (it differentiates twice). trainlab's fit passes one; write yours as "
                    "`def closure(backward=True): ...; if backward: loss.backward(); return loss`") from e
            for group in self.param_groups:
                params = group["params"]
                g, H = self.hessian(loss, params)
                n = g.numel()
                H = H + group["damping"] * torch.eye(n, dtype=H.dtype, device=H.device)
                try:
                    delta = torch.linalg.solve(H, g)
                except RuntimeError as e:  # torch.linalg.LinAlgError subclasses RuntimeError
                    raise RuntimeError(f"Newton: the (damped) Hessian is singular ({e}); set damping > 0") from e
                with torch.no_grad():
                    _Flat(params, "Newton").add_(-float(group["lr"]), delta)
                for p, gi in zip(params, g.split([p.numel() for p in params])):
                    p.grad = gi.view_as(p).clone()
        return loss.detach()


# ------------------------------------------------------------------------------------------------
# nonlinear conjugate gradients
# ------------------------------------------------------------------------------------------------

CG_BETAS = ("fletcher_reeves", "polak_ribiere", "polak_ribiere_plus")


class NonlinearCG(torch.optim.Optimizer):
    """Nonlinear conjugate gradients: each direction is conjugate to the previous one.

    ::

        d₀ = −g₀
        βₖ = gₖᵀgₖ / gₖ₋₁ᵀgₖ₋₁                    (Fletcher–Reeves)
        βₖ = gₖᵀ(gₖ − gₖ₋₁) / gₖ₋₁ᵀgₖ₋₁          (Polak–Ribière; "+" clips at 0)
        dₖ = −gₖ + βₖ·dₖ₋₁                         (restart dₖ = −gₖ every ``restart`` steps or
                                                   when dₖ is not a descent direction)
        θ ← θ + tₖ·dₖ,   tₖ from a line search along dₖ

    With an exact line search on a quadratic ½θᵀAθ − bᵀθ the directions satisfy dₖᵀA dⱼ = 0
    (notes 002: "conjugate directions dᵀHd′ = 0", so no step undoes an earlier one) and the method
    reaches the minimum in at most n steps. One ``step(closure)`` is one CG iteration.

    Args: ``lr`` — scales the first trial step of each line search (1.0); ``beta`` one of
    ``"polak_ribiere_plus"`` (default), ``"polak_ribiere"``, ``"fletcher_reeves"``; ``restart``
    (None = n, the number of parameters); ``line_search``: ``"secant"`` (near-exact, the default) or
    ``"strong_wolfe"`` (c₂ = 0.1, as Nocedal & Wright advise for CG); ``max_ls`` (25);
    ``line_search_tol`` (1e-6, for the secant search).
    Reference: Fletcher & Reeves 1964; Polak & Ribière 1969; Goodfellow et al. 8.6.2; Nocedal &
    Wright ch. 5. No framework ships it for PyTorch models.
    """

    def __init__(self, params, lr: float = 1.0, beta: str = "polak_ribiere_plus",
                 restart: int | None = None, line_search: str = "secant", max_ls: int = 25,
                 line_search_tol: float = 1e-6):
        check_lr(lr)
        check_choice("beta", beta, CG_BETAS)
        check_choice("line_search", line_search, ("secant", "strong_wolfe"))
        if restart is not None and (isinstance(restart, bool) or not isinstance(restart, int) or restart < 1):
            raise ValueError(f"Invalid restart value: {restart!r} (an integer >= 1, or None for n)")
        if isinstance(max_ls, bool) or not isinstance(max_ls, int) or max_ls < 1:
            raise ValueError(f"Invalid max_ls value: {max_ls!r} (must be an integer >= 1)")
        check_range("line_search_tol", line_search_tol, 0.0, 1.0, lo_open=True)
        super().__init__(params, dict(lr=lr, beta=beta, restart=restart, line_search=line_search,
                                      max_ls=max_ls, line_search_tol=line_search_tol))
        if len(self.param_groups) != 1:
            raise ValueError("NonlinearCG doesn't support per-parameter options (parameter groups)")
        self._flat = _Flat(self.param_groups[0]["params"], "NonlinearCG")

    def _beta(self, kind: str, g: Tensor, g_prev: Tensor) -> float:
        denom = float(g_prev.dot(g_prev))
        if denom == 0.0:
            return 0.0
        if kind == "fletcher_reeves":
            return float(g.dot(g)) / denom
        beta = float(g.dot(g - g_prev)) / denom
        return max(beta, 0.0) if kind == "polak_ribiere_plus" else beta

    @torch.no_grad()
    def step(self, closure=None):
        """One CG iteration (direction + line search); returns the loss at the starting point."""
        if closure is None:
            raise RuntimeError("NonlinearCG needs a closure: optimizer.step(closure)")
        closure = _with_grad(closure)
        group = self.param_groups[0]
        flat = self._flat
        state = self.state[flat.params[0]]
        orig_loss = closure()
        loss = float(orig_loss)
        g = flat.grad()
        k = state.get("k", 0)
        restart = group["restart"] or flat.numel
        if k % restart == 0 or "d" not in state:
            d = g.neg()
        else:
            d = -g + self._beta(group["beta"], g, state["g"]) * state["d"]
            if float(g.dot(d)) >= 0:  # lost descent (possible with FR/PR): restart
                d = g.neg()
        gtd = float(g.dot(d))
        if gtd == 0.0:  # zero gradient: at a stationary point
            state.update(k=k + 1, g=g, d=d, t=0.0, gtd=gtd)
            return orig_loss
        lr = float(group["lr"])
        if "t" in state and state.get("gtd", 0.0) != 0.0 and state["t"] > 0:
            t0 = state["t"] * state["gtd"] / gtd  # Nocedal & Wright eq. 3.60
        else:
            t0 = min(1.0, 1.0 / float(g.abs().sum())) * lr
        x0 = flat.clone()

        def evaluate(tt):
            return flat.at(closure, x0, tt, d)

        evaluate.d = d
        if group["line_search"] == "secant":
            _, _, t, _ = secant_search(evaluate, t0, loss, gtd, tol=group["line_search_tol"],
                                       max_ls=group["max_ls"])
        else:
            _, _, t, _ = strong_wolfe(evaluate, t0, d, loss, g, g.dot(d), c2=0.1, max_ls=group["max_ls"])
            t = float(t)
        flat.add_(t, d)
        state.update(k=k + 1, g=g, d=d, t=t, gtd=gtd)
        return orig_loss
