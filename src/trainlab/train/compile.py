"""``torch.compile`` as an option: for the model in :func:`trainlab.fit` (``compile=True``, the
config's ``train.compile: true``) and for the optimizers' ``fused=True`` rules.

On the CPU torch's compiler (inductor) writes C++ and builds it with the compiler named by the
``CXX`` environment variable (``g++`` by default); on a GPU it writes Triton kernels. Without one,
:func:`require_compiler` stops with one line that names the fix, before anything is compiled —
instead of inductor's long traceback at the first step.
"""
from __future__ import annotations

import os
import shutil
import sys

import torch
from torch import nn

__all__ = ["CompilerMissingError", "compiler_problem", "require_compiler", "compile_model"]


class CompilerMissingError(RuntimeError, ValueError):
    """``torch.compile`` was asked for but the compiler it needs is not installed.

    Also a ``ValueError``: for this machine, ``compile=True`` / ``fused=True`` is a value it cannot
    take, and the config check reports it as such (naming the field) before anything is built."""


def _cxx_candidates() -> list[str]:
    from torch._inductor import config as inductor_config  # the compiler inductor will search for

    cxx = getattr(inductor_config.cpp, "cxx", None)
    names = [c for c in (cxx if isinstance(cxx, (list, tuple)) else (cxx,)) if c]
    default = os.environ.get("CXX", "clang++" if sys.platform == "darwin" else "g++")
    return names or [default]


def compiler_problem(device: torch.device | str = "cpu") -> str | None:
    """Why ``torch.compile`` cannot build kernels for ``device`` here, or ``None`` when it can."""
    device = torch.device(device)
    if device.type == "cuda":
        try:
            import triton  # noqa: F401
        except ImportError:
            return ("torch.compile on a GPU needs Triton, which is not installed: "
                    "pip install triton (the version your torch build names), or turn compile off")
        return None
    if device.type != "cpu":
        return None  # other backends bring their own compiler (or fail with their own message)
    names = _cxx_candidates()
    if any(shutil.which(n) for n in names):
        return None
    return (f"torch.compile on the CPU needs a C++ compiler and none was found ({', '.join(names)} "
            f"not on PATH): install one (Debian/Ubuntu: apt-get install g++; macOS: xcode-select "
            f"--install), point CXX at it, or turn compile off (train.compile: false, "
            f"fit(compile=False), fused=False)")


def require_compiler(device: torch.device | str = "cpu") -> None:
    """Raise :class:`CompilerMissingError` (one line naming the fix) unless compile can work."""
    problem = compiler_problem(device)
    if problem is not None:
        raise CompilerMissingError(problem)


def compile_model(model: nn.Module, device: torch.device | str = "cpu") -> nn.Module:
    """``model`` with its forward compiled by ``torch.compile`` (in place: the module, its
    parameters and its ``state_dict`` keys stay the same, so checkpoints and the optimizer are
    unaffected). The first steps pay for compiling; later steps run the generated kernels.
    Raises :class:`CompilerMissingError` when no compiler is present."""
    require_compiler(device)
    if getattr(model, "_compiled_call_impl", None) is None:  # compiled once, not per fit call
        model.compile()
    return model
