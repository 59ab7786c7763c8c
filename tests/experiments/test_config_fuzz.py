"""Seeded config fuzzing: hostile mutants must raise ConfigError (or be valid), quickly and in little memory."""
import copy
import math
import random
import resource
import time

import pytest
import yaml

from trainlab.experiments.config import Config, ConfigError, apply_overrides, load_config, parse_config

BASE = {
    "name": "fuzz", "seed": 1,
    "data": {"name": "spirals", "n_samples": 300, "noise": 0.1, "classes": 3, "split": [0.7, 0.3]},
    "model": {"kind": "mlp", "hidden": [16, 8], "activation": "tanh", "dropout": 0.1, "norm": "batch"},
    "init": {"weight": "he_normal", "bias": "zeros"},
    "loss": {"name": "cross_entropy", "label_smoothing": 0.1},
    "optimizer": {"name": "adam", "lr": 0.01, "betas": [0.9, 0.99], "weight_decay": 1e-4},
    "transforms": [{"name": "clip_global_norm", "max_norm": 1.0}],
    "schedule": {"name": "cosine"},
    "train": {"epochs": 3, "batch_size": 32, "shuffle": True},
    "callbacks": [{"name": "early_stopping", "patience": 2}],
    "augment": [{"name": "noise", "std": 0.01}],
    "diagnostics": {"every": 1, "probe": 64},
}

WRONG_TYPES = ["x", "", "relu", [], {}, [1, "a"], {"q": 1}, True, None, [[1]]]
HUGE = [1e12, 10**30, 1e308, -1e12, -1, 0, float("inf"), float("-inf"), float("nan"), 2**63, [1e12], [10**30]]
UNKNOWN = ["bogus", "Adam", "adam ", "../x", "\x00", "relu\n"]


def _paths(node, prefix=()):
    yield prefix
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _paths(v, prefix + (i,))


def _set(data, path, value):
    node = data
    for p in path[:-1]:
        node = node[p]
    node[path[-1]] = value


def _deep(depth, kind):
    node = 1
    for _ in range(depth):
        node = {"a": node} if kind == "dict" else [node]
    return node


def _shared(levels=9, width=9):
    node = ["lol"] * width
    for _ in range(levels):
        node = [node] * width  # the Python shape of a YAML alias bomb: one object used many times
    return node


def mutant(rng: random.Random) -> tuple[str, dict | str, tuple]:
    """(kind, config dict or YAML text, the path changed): one hostile change to BASE."""
    data = copy.deepcopy(BASE)
    paths = [p for p in _paths(data) if p]
    path = rng.choice(paths)
    kind = rng.choice(["type", "huge", "unknown", "deep", "alias", "long", "key", "yaml"])
    if kind == "type":
        _set(data, path, copy.deepcopy(rng.choice(WRONG_TYPES)))
    elif kind == "huge":
        _set(data, path, copy.deepcopy(rng.choice(HUGE)))
    elif kind == "unknown":
        # technique names (the top-level name is a label: any text is fine there)
        named = [p for p in paths if len(p) > 1 and p[-1] in ("name", "kind", "activation", "weight", "bias", "norm")]
        path = rng.choice(named)
        _set(data, path, rng.choice(UNKNOWN))
    elif kind == "deep":
        _set(data, path, _deep(rng.choice([70, 300, 2000]), rng.choice(["dict", "list"])))
    elif kind == "alias":
        _set(data, path, _shared())
    elif kind == "long":
        _set(data, path, "x" * rng.choice([10**4 + 1, 10**6]))
    elif kind == "key":
        sections = [p for p in _paths(data) if isinstance(_get(data, p), dict)]
        path = rng.choice(sections) + (rng.choice(["colour", "lrr", "x" * 1000, "1"]),)
        _get(data, path[:-1])[path[-1]] = 1
    else:  # a YAML-level attack: alias bomb, self-reference, duplicate key or deep flow nesting
        text = yaml.safe_dump(data, sort_keys=False)
        attack = rng.choice(["bomb", "loop", "dup", "nest"])
        if attack == "bomb":
            lines = ['l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
            lines += [f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]" for i in range(1, 10)]
            text += "\n".join(lines) + "\n"
        elif attack == "loop":
            text += "loop: &me {self: *me}\n"
        elif attack == "dup":
            text += "optimizer: {name: sgd}\n"
        else:
            text += "deep: " + "[" * 5000 + "]" * 5000 + "\n"
        return "yaml", text, ()
    return kind, data, path


def _get(data, path):
    for p in path:
        data = data[p]
    return data


def _maxrss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def test_hundreds_of_mutants_raise_config_error_quickly(tmp_path):
    parse_config(BASE)  # the base is valid (and the imports are warm)
    rng = random.Random(20261201)
    rss_before = _maxrss_mib()
    refused, valid, slowest = {}, {}, 0.0
    for i in range(400):
        kind, m, path = mutant(rng)
        start = time.perf_counter()
        try:
            if isinstance(m, str):
                (tmp_path / f"m{i}.yaml").write_text(m)
                load_config(tmp_path / f"m{i}.yaml")
            elif i % 2 or kind in ("deep", "alias", "long"):
                parse_config(m)
            else:  # the same change arriving through --set
                value = yaml.safe_dump(_get(m, path), default_flow_style=True, width=10**9).strip()
                if value.endswith("\n..."):
                    value = value[:-4].strip()
                parse_config(apply_overrides(BASE, [".".join(map(str, path)) + "=" + value]))
            valid[kind] = valid.get(kind, 0) + 1
        except ConfigError as err:
            refused[kind] = refused.get(kind, 0) + 1
            assert len(str(err)) < 4000 and "\n" not in str(err), str(err)[:500]
        except Exception as err:  # noqa: BLE001 (the point: nothing but ConfigError escapes)
            pytest.fail(f"mutant {i} ({kind}) raised {type(err).__name__}: {str(err)[:300]}")
        elapsed = time.perf_counter() - start
        slowest = max(slowest, elapsed)
        assert elapsed < 5.0, f"mutant {i} ({kind}) took {elapsed:.1f} s"
    assert _maxrss_mib() - rss_before < 400, "the mutants cost more than 400 MiB"
    total_refused = sum(refused.values())
    # hostile structure is always refused; a wrong value is refused unless it happens to be a valid one
    for kind in ("deep", "alias", "long", "yaml", "unknown", "key"):
        assert valid.get(kind, 0) == 0, (kind, valid)
    assert total_refused >= 0.85 * 400, (refused, valid)


def test_mutants_that_pass_validation_build(tmp_path):
    """What validation lets through must build: data, model, optimizer, schedule, callbacks, augmentation."""
    import torch

    from trainlab.experiments import catalog
    from trainlab.experiments.runner import build_callbacks, build_training

    rng = random.Random(7)
    accepted = []
    while len(accepted) < 25:
        kind, m, _ = mutant(rng)
        if isinstance(m, dict):
            try:
                accepted.append(parse_config(m))
            except ConfigError:
                pass
    for cfg in accepted:
        data, loss, model, optimizer = build_training(cfg, torch.device("cpu"))
        if cfg.schedule is not None:
            catalog.build_schedule(optimizer, cfg.schedule.name, cfg.schedule.kwargs, steps_per_epoch=3,
                                   epochs=cfg.train.epochs)
        build_callbacks(cfg, tmp_path)
        catalog.build_augment([(a.name, a.kwargs) for a in cfg.augment])
        assert loss(model(data.train.X[:4]), data.train.y[:4]).isfinite()
        for value in (cfg.optimizer.kwargs.get("lr"), cfg.data.kwargs.get("noise")):
            assert not (isinstance(value, float) and math.isnan(value))
