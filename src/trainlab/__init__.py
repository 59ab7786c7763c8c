"""trainlab: a laboratory for the techniques that make neural networks train well.

The building blocks (``trainlab.data``, ``trainlab.nn``, ``trainlab.init``, ``trainlab.optim``,
``trainlab.schedules``, ``trainlab.losses``) are plain PyTorch: modules are ``nn.Module``s and
optimizers are ``torch.optim.Optimizer``s. ``trainlab.fit`` trains any model with diagnostics;
``trainlab.experiments`` runs configs, sweeps and studies. ``trainlab.load_run`` reads a run folder
back (the trained model, its config and history); ``trainlab.report`` writes the HTML report of a
model trained from Python; ``trainlab.diagnose`` turns a run into ranked verdicts.

Everything here is imported on first use (PEP 562): importing torch costs over a second, and
``trainlab --help`` or ``--version`` must not pay it. ``import trainlab; trainlab.optim.Adam``
and ``from trainlab import fit`` work as if the package had imported them eagerly.
"""
import importlib as _importlib

__version__ = "0.1.0"

# public name -> the module that defines it
_ATTRIBUTES = {
    "Callback": "trainlab.train.callbacks",
    "History": "trainlab.train.callbacks",
    "NonFiniteLossError": "trainlab.train.loop",
    "diagnose": "trainlab.diagnostics.verdicts",
    "evaluate": "trainlab.train.loop",
    "fit": "trainlab.train.loop",
    "load_run": "trainlab.experiments.load",
    "report": "trainlab.experiments.report",
}
# subpackages and modules reachable as attributes after a bare ``import trainlab``
_SUBMODULES = ("data", "diagnostics", "experiments", "init", "losses", "nn", "optim", "schedules", "train")

__all__ = [*_ATTRIBUTES, "__version__"]


def __getattr__(name: str):
    if name in _ATTRIBUTES:
        value = getattr(_importlib.import_module(_ATTRIBUTES[name]), name)
    elif name in _SUBMODULES:
        value = _importlib.import_module(f"{__name__}.{name}")
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_ATTRIBUTES, *_SUBMODULES})
