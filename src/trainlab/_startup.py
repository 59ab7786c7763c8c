"""The command line's start-up: torch's compiler (``torch._dynamo``) is imported only when something compiles.

A few methods of ``torch.optim.Optimizer`` (``add_param_group``, ``zero_grad``, ``state_dict``,
``load_state_dict``) are wrapped by ``torch._disable_dynamo``, which imports ``torch._dynamo`` at
their first call so that they are never traced by ``torch.compile``. That import takes ~1.3 s, a
third of a short ``trainlab run``, and buys nothing in a process that never compiles: without
``torch._dynamo`` imported nothing can be tracing. :func:`defer_dynamo_import` gives each such
method a stand-in for the disabled version torch caches on first use: while ``torch._dynamo`` is
not imported it calls the method as it is; once it is (``torch.compile``, ``train.compile: true``,
``fused=True``), it builds torch's own disabled version, caches it where torch looks, and calls
that from then on. So the methods behave as torch's own, compiled or not. (The ``step`` of
torch's own optimizers imports ``torch._dynamo`` itself; trainlab's optimizers, which the command
line builds, do not.)

Only the command line installs this (:func:`install`, from ``trainlab.cli``); ``import trainlab``
leaves torch as it is.
"""
from __future__ import annotations

import importlib.abc
import importlib.util
import sys

_MODULE = "torch.optim.optimizer"


def defer_dynamo_import(cls) -> int:
    """Give the ``_disable_dynamo``-wrapped methods of ``cls`` the lazy stand-in; returns how many.

    A method is recognized by the code object of torch's wrapper, so anything torch wraps
    differently (another torch version) is left alone.
    """
    import torch

    marker = torch._disable_dynamo(lambda: None).__code__
    done = 0
    for attr in vars(cls).values():
        wrapper = getattr(attr, "__func__", attr)
        fn = getattr(wrapper, "__wrapped__", None)
        if getattr(wrapper, "__code__", None) is not marker or fn is None:
            continue
        if getattr(fn, "__dynamo_disable", None) is None:
            fn.__dynamo_disable = _until_dynamo(fn, _recursive(wrapper))
        done += 1
    return done


def _recursive(wrapper) -> bool:
    """The ``recursive`` argument torch's wrapper was made with (its closure holds it)."""
    names = wrapper.__code__.co_freevars
    cells = dict(zip(names, wrapper.__closure__ or ()))
    cell = cells.get("recursive")
    return True if cell is None else bool(cell.cell_contents)


def _until_dynamo(fn, recursive: bool):
    def call(*args, **kwargs):
        if "torch._dynamo" not in sys.modules:  # nothing can be tracing: the method as it is
            return fn(*args, **kwargs)
        import torch._dynamo

        disabled = torch._dynamo.disable(fn, recursive, wrapping=False)
        fn.__dynamo_disable = disabled  # torch's own, where torch's wrapper looks from now on
        return disabled(*args, **kwargs)

    call.trainlab_until_dynamo = True
    return call


class _AfterOptimizerImport(importlib.abc.MetaPathFinder):
    """Runs :func:`defer_dynamo_import` on ``Optimizer`` right after ``torch.optim.optimizer`` loads."""

    def find_spec(self, fullname, path, target=None):
        if fullname != _MODULE:
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        loader, run = spec.loader, spec.loader.exec_module

        def exec_module(module):
            run(module)
            try:
                defer_dynamo_import(module.Optimizer)
            except Exception:  # noqa: BLE001 (a torch without these internals keeps its own behaviour)
                pass

        loader.exec_module = exec_module
        return spec


def install() -> None:
    """Defer ``torch._dynamo``'s import in this process (see the module's docstring)."""
    if _MODULE in sys.modules:
        defer_dynamo_import(sys.modules[_MODULE].Optimizer)
    elif not any(isinstance(f, _AfterOptimizerImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _AfterOptimizerImport())
