"""trainlab.optim: every optimizer of the notes, built from small gradient transformations.

All optimizers are ``torch.optim.Optimizer`` subclasses. The PyTorch-compatible ones keep torch's
names, arguments and defaults (and follow torch's trajectories); the notes' variants are named
options; the rest no framework ships.

=====================  ==========================================================================
module                 contents
=====================  ==========================================================================
``sgd``                SGD (momentum forms: pytorch / ema / velocity; Nesterov: pytorch / lookahead)
``adaptive``           Adagrad, RMSprop, Adadelta
``adam``               Adam (AMSGrad, bias correction switch, ε placement), AdamW, Adamax, NAdam
``heuristics``         Rprop, DeltaBarDelta
``second_order``       Newton, NonlinearCG, LBFGS
``transforms``         the building blocks (momentum, moments, penalties, noise, lookahead, …)
``clipping``           clipping by value / norm / global norm (transforms and functions)
``ewma``               the exponentially weighted moving average and its weights (1 − β)·β^k
``chain``              the shell: ChainOptimizer, Chain, Transform
=====================  ==========================================================================

Batch, mini-batch and stochastic gradient descent are ``SGD`` with ``batch_size`` "full", k and 1
in :func:`trainlab.fit`.
"""
from trainlab.optim.adam import Adam, Adamax, AdamW, NAdam
from trainlab.optim.adaptive import Adadelta, Adagrad, RMSprop
from trainlab.optim.chain import Chain, ChainOptimizer, StepInfo, Transform
from trainlab.optim.clipping import (ClipByGlobalNorm, ClipByNorm, ClipByValue, clip_grad_norm_,
                                     clip_grad_value_, global_norm)
from trainlab.optim.ewma import ewma, ewma_weights
from trainlab.optim.heuristics import DeltaBarDelta, Rprop
from trainlab.optim.second_order import LBFGS, Newton, NonlinearCG
from trainlab.optim.sgd import SGD
from trainlab.optim.transforms import (AddNoise, AddWeightDecay, DecoupledWeightDecay, ElasticNet,
                                       L1Penalty, L1Proximal, L2Penalty, Lookahead, Momentum,
                                       Negate, ScaleByAdadelta, ScaleByAdagrad, ScaleByAdam,
                                       ScaleByAdamax, ScaleByLearningRate, ScaleByNadam,
                                       ScaleByRms)

__all__ = [
    "SGD", "Adagrad", "RMSprop", "Adadelta", "Adam", "AdamW", "Adamax", "NAdam", "Rprop",
    "DeltaBarDelta", "Newton", "NonlinearCG", "LBFGS",
    "Chain", "ChainOptimizer", "StepInfo", "Transform",
    "Negate", "ScaleByLearningRate", "AddWeightDecay", "DecoupledWeightDecay", "L2Penalty",
    "L1Penalty", "ElasticNet", "L1Proximal", "Momentum", "ScaleByRms", "ScaleByAdagrad",
    "ScaleByAdadelta", "ScaleByAdam", "ScaleByAdamax", "ScaleByNadam", "AddNoise", "Lookahead",
    "ClipByValue", "ClipByNorm", "ClipByGlobalNorm", "clip_grad_norm_", "clip_grad_value_",
    "global_norm", "ewma", "ewma_weights",
]
