"""trainlab: a laboratory for the techniques that make neural networks train well.

The building blocks (``trainlab.data``, ``trainlab.nn``, ``trainlab.init``, ``trainlab.optim``,
``trainlab.schedules``, ``trainlab.losses``) are plain PyTorch: modules are ``nn.Module``s and
optimizers are ``torch.optim.Optimizer``s. ``trainlab.fit`` trains any model with diagnostics;
``trainlab.experiments`` runs configs, sweeps and studies. ``trainlab.load_run`` reads a run folder
back (the trained model, its config and history); ``trainlab.report`` writes the HTML report of a
model trained from Python.
"""
from trainlab.train.callbacks import Callback, History
from trainlab.train.loop import NonFiniteLossError, evaluate, fit
from trainlab.experiments.load import load_run  # noqa: E402  (after the training names it uses)
from trainlab.experiments.report import report  # noqa: E402

__version__ = "0.1.0"
__all__ = ["Callback", "History", "NonFiniteLossError", "evaluate", "fit", "load_run", "report", "__version__"]
