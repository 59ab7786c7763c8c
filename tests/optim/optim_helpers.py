"""Shared helpers for the optimizer tests: a tiny MLP problem and trajectory runners."""
from __future__ import annotations

import copy
import io

import torch
import torch.nn.functional as F

TOL = {torch.float32: 1e-6, torch.float64: 1e-12}


def problem(dtype=torch.float32, seed=0):
    """A 4-8-3 tanh MLP and 32 samples of a 3-class problem (fixed by ``seed``)."""
    g = torch.Generator().manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    model = model.to(dtype)
    X = torch.randn(32, 4, generator=g).to(dtype)
    y = torch.randint(0, 3, (32,), generator=g)
    return model, X, y


def flat(model) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


def make_closure(model, opt, X, y, i, batch=8, backward_kwarg=False):
    lo = (i * batch) % len(X)
    xb, yb = X[lo:lo + batch], y[lo:lo + batch]

    def closure(backward=True):
        if backward:
            opt.zero_grad()
        loss = F.cross_entropy(model(xb), yb)
        if backward:
            loss.backward()
        return loss

    if backward_kwarg:
        return closure
    return lambda: closure()


def trajectory(make_opt, dtype=torch.float32, steps=100, seed=0, model=None, opt=None, start=0,
               record=False, batch=8):
    """Run ``steps`` mini-batch steps; return (flat params at the end[, list of flat params])."""
    if model is None:
        model, X, y = problem(dtype, seed)
    else:
        _, X, y = problem(dtype, seed)
    opt = make_opt(model.parameters()) if opt is None else opt
    path = []
    for i in range(start, start + steps):
        opt.step(make_closure(model, opt, X, y, i, batch=batch, backward_kwarg=True))
        if record:
            path.append(flat(model))
    return (flat(model), path) if record else flat(model)


def roundtrip(state_dict):
    """What saving to disk and loading back gives (a deep copy through torch.save)."""
    buf = io.BytesIO()
    torch.save(state_dict, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=False)


def resume_from_state_dicts(make_opt, dtype=torch.float64, steps=10):
    """(a straight run of 2·``steps`` steps, the same run saved after ``steps`` and resumed from
    its state dicts in a fresh model and optimizer, the first run's model and optimizer, the saved
    optimizer state): the flat params at the end of each run, and what tests load further."""
    straight = trajectory(make_opt, dtype, 2 * steps)
    model, X, y = problem(dtype)
    opt = make_opt(model.parameters())
    trajectory(None, dtype, steps, model=model, opt=opt)
    saved_model, saved_opt = roundtrip(model.state_dict()), roundtrip(opt.state_dict())
    model2, _, _ = problem(dtype, seed=5)
    model2.load_state_dict(saved_model)
    opt2 = make_opt(model2.parameters())
    opt2.load_state_dict(saved_opt)
    resumed = trajectory(None, dtype, steps, model=model2, opt=opt2, start=steps)
    return straight, resumed, (model, opt), saved_opt


def foreach_only(opt):
    """``opt`` with the one-pass native kernels off: its steps take the foreach (or flat) path."""
    opt.native = False
    return opt


def maxdiff(a, b) -> float:
    return (a - b).abs().max().item()


__all__ = ["TOL", "problem", "flat", "make_closure", "trajectory", "roundtrip", "resume_from_state_dicts", "foreach_only", "maxdiff", "copy"]
