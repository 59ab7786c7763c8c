"""Training: the fit loop, callbacks and checkpoints."""
from trainlab.train.callbacks import Callback, History, ProgressLogger
from trainlab.train.loop import Loop, NonFiniteLossError, default_device, evaluate, fit

__all__ = ["Callback", "History", "Loop", "NonFiniteLossError", "ProgressLogger", "default_device",
           "evaluate", "fit"]
