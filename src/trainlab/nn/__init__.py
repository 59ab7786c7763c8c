"""Layers and model builders: activations, dropout, normalization, maxout, residual and recurrent
layers, max-pooling, transfer-learning helpers, and the MLP/CNN builders."""
from trainlab.nn.activations import (ELU, GELU, SELU, GeneralizedRectifier, LeakyReLU, LogSoftmax, PReLU, ReLU,
                                     Sigmoid, SiLU, Softmax, Tanh, elu, gelu, generalized_rectifier, leaky_relu,
                                     log_softmax, prelu, relu, selu, sigmoid, silu, softmax, tanh)
from trainlab.nn.dropout import DropConnect, Dropout
from trainlab.nn.fastpath import fast_layers, readable_layers, set_fast_layers
from trainlab.nn.layers import Maxout, MaxoutPool, Residual
from trainlab.nn.models import CNN, MLP, Block, ResidualBlock, conv_output_size
from trainlab.nn.pooling import MaxPool2d
from trainlab.nn.normalization import BatchNorm1d, BatchNorm2d, LayerNorm, WeightNorm, remove_weight_norm, weight_norm
from trainlab.nn.recurrent import (GRU, LSTM, RNN, Bidirectional, ElmanRNN, OutputRecurrentRNN, SequenceModel,
                                   SequenceToFixed, clip_grad_norm_, hidden_gradient_norms, state_gradient_norms)
from trainlab.nn.transfer import (PretrainedMismatchError, freeze, frozen_parameter_names, load_pretrained,
                                  save_pretrained, trainable_parameters, unfreeze)

__all__ = [
    "CNN", "MLP", "Block", "ResidualBlock", "conv_output_size",
    "Sigmoid", "Tanh", "ReLU", "GeneralizedRectifier", "LeakyReLU", "PReLU", "ELU", "SELU", "GELU", "SiLU",
    "Softmax", "LogSoftmax", "sigmoid", "tanh", "relu", "generalized_rectifier", "leaky_relu", "prelu", "elu",
    "selu", "gelu", "silu", "softmax", "log_softmax",
    "Dropout", "DropConnect", "Maxout", "MaxoutPool", "MaxPool2d", "Residual",
    "BatchNorm1d", "BatchNorm2d", "LayerNorm", "WeightNorm", "weight_norm", "remove_weight_norm",
    "ElmanRNN", "OutputRecurrentRNN", "SequenceToFixed", "Bidirectional", "clip_grad_norm_", "hidden_gradient_norms",
    "RNN", "LSTM", "GRU", "SequenceModel", "state_gradient_norms",
    "freeze", "unfreeze", "trainable_parameters", "frozen_parameter_names", "load_pretrained", "save_pretrained",
    "PretrainedMismatchError",
    "fast_layers", "set_fast_layers", "readable_layers",
]
