"""Every optimizer, variant and transform is reachable by name from configs (catalog builders)."""
import pytest
import torch

import trainlab.optim as O
from trainlab.experiments import catalog


def _params():
    return [torch.nn.Parameter(torch.ones(3))]


def test_every_optimizer_name_builds_our_optimizer():
    for name, cls in catalog.OPTIMIZERS.items():
        opt = catalog.build_optimizer(_params(), name, {}, [])
        assert type(opt) is cls and cls.__module__.startswith("trainlab.optim")


def test_variants_are_options_and_transforms_are_chained_in_order():
    opt = catalog.build_optimizer(_params(), "adam", {"lr": 0.01, "eps_mode": "hat", "amsgrad": True},
                                  [("clip_global_norm", {"max_norm": 1.0}), ("l1", {"weight": 1e-4}),
                                   ("l1_proximal", {"weight": 1e-3}), ("lookahead", {"k": 5})])
    kinds = [type(t).__name__ for t in opt.chain()]
    assert kinds == ["ClipByGlobalNorm", "L1Penalty", "ScaleByAdam", "ScaleByLearningRate", "L1Proximal", "Lookahead"]
    assert opt.chain()[2].eps_mode == "hat" and opt.chain()[2].amsgrad


def test_every_transform_name_builds():
    for name, cls in catalog.TRANSFORMS.items():
        kwargs = {"clip_value": {"clip_value": 1.0}, "clip_norm": {"max_norm": 1.0},
                  "clip_global_norm": {"max_norm": 1.0}, "l1": {"weight": 1e-3}, "l1_proximal": {"weight": 1e-3},
                  "l2": {"weight": 1e-3}, "elastic_net": {"weight": 1e-3}, "weight_decay": {"weight_decay": 1e-3},
                  "decoupled_weight_decay": {"weight_decay": 1e-3}}.get(name, {})
        opt = catalog.build_optimizer(_params(), "sgd", {"lr": 0.1}, [(name, kwargs)])
        assert isinstance(opt.chain()[0 if not cls.post else -1], cls)


def test_noise_without_seed_is_seeded_from_the_run():
    def draw():
        torch.manual_seed(7)
        opt = catalog.build_optimizer(_params(), "sgd", {"lr": 1.0}, [("noise", {})])
        p = opt.param_groups[0]["params"][0]
        p.grad = torch.zeros(3)
        opt.step()
        return p.detach().clone()
    assert torch.equal(draw(), draw())


def test_errors_name_the_allowed_values():
    with pytest.raises(ValueError, match="unknown optimizer 'adamm'.*adam"):
        catalog.build_optimizer(_params(), "adamm", {}, [])
    with pytest.raises(ValueError, match="unknown transform 'clip'.*clip_global_norm"):
        catalog.build_optimizer(_params(), "sgd", {"lr": 0.1}, [("clip", {})])
    with pytest.raises(ValueError, match="evaluates the loss itself"):
        catalog.build_optimizer(_params(), "lbfgs", {}, [("clip_value", {"clip_value": 1.0})])


def test_gradient_descent_kinds_are_one_sgd_selected_by_batch_size():
    """batch / mini-batch / stochastic GD: train.batch_size full / k / 1 with optimizer sgd."""
    from trainlab.experiments.config import parse_config
    from trainlab.experiments.runner import run_experiment
    steps = {}
    for bs in ("full", 2, 1):
        cfg = parse_config({"data": {"name": "line", "n_points": 6, "split": [1.0]}, "model": {"kind": "mlp", "hidden": []},
                            "optimizer": {"name": "sgd", "lr": 0.01}, "train": {"epochs": 1, "batch_size": bs},
                            "diagnostics": None})
        counter = _StepCounter()
        run_experiment(cfg, write=False, verbose=False, callbacks=[counter])
        steps[bs] = counter.steps
    assert steps == {"full": 1, 2: 3, 1: 6}   # notes 002: 1, 3 and 6 updates per epoch on 6 points


class _StepCounter(__import__("trainlab").Callback):
    steps = 0

    def on_batch_end(self, batch, logs):
        self.steps += 1
