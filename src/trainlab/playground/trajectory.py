"""The playground's optimizer-trajectory mode: paths on Rosenbrock, Beale, a saddle, a quadratic.

The paths come from :func:`trainlab.experiments.trajectories.run_optimizer` (what
``trainlab trajectories`` runs); the page draws them over the function's contours.
"""
from __future__ import annotations

import math

import torch

from trainlab.experiments import trajectories
from trainlab.playground.live import SettingsError, _b64

MAX_PATHS, MAX_STEPS = 6, 5000
CONTOUR = 96


def trajectory_message(msg: dict) -> dict:
    """``{"type": "trajectory", function, bounds, image, paths: [{label, path, final, steps_to_tol, stopped}]}``.

    ``msg`` holds ``function`` (a name in ``trajectories.FUNCTIONS``), ``optimizers`` (specs as
    ``trainlab trajectories -o`` takes them: ``adam:lr=0.05``, presets ``gd``, ``momentum`` ...)
    and optionally ``steps``.
    """
    name = msg.get("function", "rosenbrock")
    if name not in trajectories.FUNCTIONS:
        raise SettingsError(f"function: unknown test function {name!r}; choose one of "
                            f"{', '.join(trajectories.FUNCTIONS)}")
    fn = trajectories.FUNCTIONS[name]
    specs = [s for s in (msg.get("optimizers") or ["gd", "momentum", "adam"]) if str(s).strip()][:MAX_PATHS]
    steps = msg.get("steps")
    steps = None if steps in (None, "") else max(1, min(int(steps), MAX_STEPS))
    (x0, x1), (y0, y1) = fn.bounds
    xs = torch.linspace(x0, x1, CONTOUR, dtype=torch.float64)
    ys = torch.linspace(y1, y0, CONTOUR, dtype=torch.float64)
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    f = fn.f(torch.stack([gx, gy]))
    shade = torch.log1p(f - f.min()) if fn.log_levels else f - f.min()
    shade = shade / shade.max().clamp_min(1e-12)
    paths = []
    for spec in specs:
        label = str(spec).strip()
        opt_name, kwargs = trajectories.parse_spec(label)
        make = trajectories.resolve_optimizer((opt_name, kwargs) if kwargs else opt_name, fn)
        t = trajectories.run_optimizer(fn, make, label=label, steps=steps)
        path = [[round(float(a), 5), round(float(b), 5)] for a, b in t.path.tolist()
                if math.isfinite(a) and math.isfinite(b)]
        paths.append({"label": label, "path": path, "final": float(t.final_loss) if math.isfinite(t.final_loss)
                      else None, "steps_to_tol": t.steps_to_tol, "stopped": t.stopped})
    return {"type": "trajectory", "function": name, "description": fn.description,
            "bounds": [x0, x1, y0, y1], "image": _b64(shade.float()), "size": CONTOUR,
            "minimum": fn.minimum, "paths": paths}
