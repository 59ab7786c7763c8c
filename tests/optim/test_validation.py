"""Hyperparameters are validated at construction with messages that say what is wrong."""
import pytest
import torch

import trainlab.optim as O

P = [torch.nn.Parameter(torch.ones(2))]

BAD = [
    (O.SGD, {"lr": -0.1}, "Invalid learning rate"),
    (O.SGD, {"momentum": -0.5}, "Invalid momentum value"),
    (O.SGD, {"momentum": 1.0}, "Invalid momentum value"),
    (O.SGD, {"nesterov": True}, "Nesterov momentum requires a momentum and zero dampening"),
    (O.SGD, {"momentum": 0.9, "momentum_form": "heavy"}, "momentum_form"),
    (O.SGD, {"momentum": 0.9, "momentum_form": "ema", "dampening": 0.1}, "dampening applies"),
    (O.SGD, {"nesterov_form": "sutskever"}, "nesterov_form"),
    (O.SGD, {"weight_decay": -1}, "Invalid weight_decay value"),
    (O.Adam, {"betas": (1.0, 0.0)}, "Invalid beta parameter at index 0"),
    (O.Adam, {"betas": (0.9, 1.0)}, "Invalid beta parameter at index 1"),
    (O.Adam, {"betas": 0.9}, "betas must be a pair"),
    (O.Adam, {"eps": -1e-8}, "Invalid epsilon value"),
    (O.Adam, {"eps_mode": "under"}, "eps_mode"),
    (O.Adamax, {"betas": (0.0, 1.0)}, "Invalid beta parameter at index 1"),
    (O.NAdam, {"momentum_decay": -0.2}, "Invalid momentum_decay value"),
    (O.Adagrad, {"lr_decay": -0.5}, "Invalid lr_decay value"),
    (O.Adagrad, {"eps_placement": "between"}, "eps_placement"),
    (O.Adadelta, {"rho": 1.1}, "Invalid rho value"),
    (O.RMSprop, {"momentum": -1.0}, "Invalid momentum value"),
    (O.RMSprop, {"alpha": 2.0}, "Invalid alpha value"),
    (O.Rprop, {"etas": (1.0, 0.5)}, "Invalid eta values: 1.0, 0.5"),
    (O.Rprop, {"step_sizes": (1.0, 0.1)}, "step_sizes"),
    (O.DeltaBarDelta, {"phi": 1.5}, "Invalid phi value"),
    (O.DeltaBarDelta, {"theta": 1.0}, "Invalid theta value"),
    (O.LBFGS, {"history_size": 0}, "Invalid history_size value"),
    (O.LBFGS, {"line_search_fn": "wolfe"}, "line_search_fn"),
    (O.Newton, {"damping": -1.0}, "Invalid damping value"),
    (O.NonlinearCG, {"beta": "hestenes"}, "beta"),
    (O.NonlinearCG, {"restart": 0}, "Invalid restart value"),
]


@pytest.mark.parametrize("cls,kwargs,message", BAD, ids=[f"{c.__name__}-{m}" for c, _, m in BAD])
def test_bad_hyperparameters_fail_early(cls, kwargs, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        cls(P, **kwargs)


TRANSFORMS_BAD = [
    (lambda: O.ClipByValue(0.0), "clip_value"), (lambda: O.ClipByGlobalNorm(-1.0), "max_norm"),
    (lambda: O.ClipByNorm(1.0, norm_type=0), "norm_type"), (lambda: O.L1Penalty(-1e-3), "weight"),
    (lambda: O.ElasticNet(1e-3, l1_ratio=1.5), "l1_ratio"), (lambda: O.Lookahead(k=0), "Invalid k value"),
    (lambda: O.Lookahead(alpha=1.5), "alpha"), (lambda: O.AddNoise(eta=-1.0), "eta"),
    (lambda: O.ScaleByAdam(b1=1.0), "beta"), (lambda: O.Momentum(0.9, form="heavy"), "momentum_form"),
]


@pytest.mark.parametrize("make,message", TRANSFORMS_BAD, ids=[m for _, m in TRANSFORMS_BAD])
def test_bad_transform_arguments_fail_early(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_newton_refuses_a_model_past_its_size_limit_and_says_what_to_use():
    big = torch.nn.Parameter(torch.zeros(100, 60))
    with pytest.raises(ValueError, match="6000 parameters, above max_params=5000.*LBFGS or NonlinearCG"):
        O.Newton([big])
    O.Newton([big], max_params=6000)  # an explicit, larger limit is accepted
