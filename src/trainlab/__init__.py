"""trainlab: a laboratory for the techniques that make neural networks train well.

The building blocks (``trainlab.data``, ``trainlab.nn``, ``trainlab.init``, ``trainlab.optim``,
``trainlab.schedules``, ``trainlab.losses``) are plain PyTorch: modules are ``nn.Module``s and
optimizers are ``torch.optim.Optimizer``s. ``trainlab.fit`` trains any model with diagnostics;
``trainlab.diagnose`` turns a run into ranked verdicts; ``trainlab.experiments`` runs configs,
sweeps and studies.
"""
from trainlab.train.callbacks import Callback, History
from trainlab.train.loop import NonFiniteLossError, evaluate, fit
from trainlab.diagnostics.verdicts import diagnose

__version__ = "0.1.0"
__all__ = ["Callback", "History", "NonFiniteLossError", "diagnose", "evaluate", "fit", "__version__"]
