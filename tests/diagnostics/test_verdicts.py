"""Synthetic curves trigger exactly the overfitting rule they were drawn for, and nothing else."""
import math

import pytest

from trainlab.diagnostics.verdicts import (diagnose, gradient_verdicts, overfitting_verdicts, underfitting_verdict,
                                           unit_verdicts)

CURVES = {
    # rule 1: validation loss turns up while training loss keeps falling; accuracy still improves
    1: dict(loss=[1.0, 0.8, 0.66, 0.58, 0.54, 0.52, 0.5, 0.49],
            val_loss=[1.0, 0.8, 0.65, 0.6, 0.62, 0.66, 0.7, 0.75],
            val_accuracy=[0.6, 0.7, 0.75, 0.78, 0.8, 0.82, 0.84, 0.86], first=4),
    # rule 2: both fall, but training loss ends far below validation loss
    2: dict(loss=[0.8, 0.5, 0.3, 0.2, 0.12, 0.08, 0.05, 0.03],
            val_loss=[1.0, 0.8, 0.6, 0.45, 0.35, 0.28, 0.22, 0.18],
            val_accuracy=[0.6, 0.7, 0.75, 0.78, 0.8, 0.82, 0.84, 0.86], first=4),
    # rule 3: validation loss flattens while training loss keeps falling
    3: dict(loss=[1.0, 0.8, 0.7, 0.62, 0.56, 0.52, 0.49, 0.47],
            val_loss=[1.0, 0.85, 0.75, 0.72, 0.72, 0.7205, 0.721, 0.7205],
            val_accuracy=[0.6, 0.7, 0.75, 0.78, 0.8, 0.81, 0.82, 0.83], first=6),
    # rule 4: training loss flat, validation accuracy stuck while validation loss climbs
    4: dict(loss=[0.5, 0.45, 0.44, 0.44, 0.44, 0.44, 0.44, 0.44],
            val_loss=[0.5, 0.46, 0.45, 0.46, 0.48, 0.5, 0.52, 0.54],
            val_accuracy=[0.7, 0.78, 0.8, 0.8, 0.8, 0.79, 0.8, 0.8], first=5),
}


@pytest.mark.parametrize("rule", [1, 2, 3, 4])
def test_each_curve_triggers_exactly_its_rule(rule):
    c = dict(CURVES[rule])
    first = c.pop("first")
    c["accuracy"] = [0.7, 0.8, 0.84, 0.86, 0.88, 0.9, 0.91, 0.92]  # low training error: no underfitting
    found = overfitting_verdicts(c)
    assert [v.evidence["rule"] for v in found] == [rule]
    assert found[0].epoch == first
    assert f"rule {rule}" in found[0].message and f"epoch {first + 1}" in found[0].message
    # and the whole diagnosis adds nothing else
    assert [v.kind for v in diagnose(c)] == ["overfitting"]


def test_a_good_fit_triggers_nothing():
    good = dict(loss=[1.0, 0.6, 0.4, 0.3, 0.25, 0.22, 0.21, 0.205],
                val_loss=[1.0, 0.65, 0.45, 0.34, 0.29, 0.26, 0.25, 0.245],
                accuracy=[0.6, 0.8, 0.88, 0.92, 0.94, 0.95, 0.955, 0.96],
                val_accuracy=[0.6, 0.78, 0.86, 0.9, 0.92, 0.93, 0.935, 0.94])
    assert diagnose(good) == []


def test_underfitting_suppresses_overfitting_wiggles():
    # a model that learns nothing: validation loss wiggles (rule 3's shape) around chance level
    h = dict(loss=[0.708, 0.706, 0.704, 0.701, 0.698], val_loss=[0.695, 0.693, 0.70, 0.698, 0.699],
             accuracy=[0.5, 0.52, 0.5, 0.51, 0.53], val_accuracy=[0.5, 0.5, 0.49, 0.5, 0.51])
    assert [v.evidence["rule"] for v in overfitting_verdicts(h)] == [3]
    v = diagnose(h)
    assert [x.kind for x in v] == ["underfitting"] and v[0].evidence["suppressed_overfitting_rules"] == [3]
    assert "bias, not variance" in v[0].message


def test_underfitting_is_both_errors_high():
    under = dict(loss=[0.69, 0.68, 0.68, 0.67], val_loss=[0.69, 0.69, 0.68, 0.68],
                 accuracy=[0.5, 0.55, 0.56, 0.57], val_accuracy=[0.5, 0.52, 0.55, 0.55])
    v = diagnose(under)
    assert [x.kind for x in v] == ["underfitting"] and v[0].epoch == 3
    assert "high bias" in v[0].message
    # low training error, high validation error is not underfitting (it is variance)
    assert underfitting_verdict(dict(loss=[0.1], val_loss=[0.9], accuracy=[0.99], val_accuracy=[0.6])) is None
    # without accuracies: compared with a trivial predictor's loss
    assert underfitting_verdict(dict(loss=[0.6], val_loss=[0.62]), baseline_loss=math.log(2)) is not None
    assert underfitting_verdict(dict(loss=[0.1], val_loss=[0.12]), baseline_loss=math.log(2)) is None


def _rec(epoch, grads, acts=None):
    return {"epoch": epoch, "layers": {f"l{i}": {"grad_norm": g} for i, g in enumerate(grads)},
            "activations": acts or {}}


def test_gradient_verdicts_from_records():
    v = gradient_verdicts([_rec(-1, [1e-6, 1e-4, 1e-1]), _rec(0, [1e-5, 1e-3, 1e-1])])
    assert [x.kind for x in v] == ["vanishing_gradients"] and v[0].epoch == -1
    assert "5.0 orders of magnitude" in v[0].message and "at initialization" in v[0].message
    assert v[0].evidence["records_vanishing"] == 2
    assert gradient_verdicts([_rec(0, [0.1, 0.2, 0.3]), _rec(1, [0.2, 0.1, 0.3])]) == []
    v = gradient_verdicts([_rec(0, [0.1, 0.2, 0.3]), _rec(1, [float("nan"), 0.1, 0.3])])
    assert [x.rule for x in v] == ["non-finite gradient"] and v[0].epoch == 1
    v = gradient_verdicts([_rec(0, [500.0, 20.0, 1.0])])
    assert [x.rule for x in v] == ["first layer far above last"]
    v = gradient_verdicts([_rec(0, [0.1, 0.1, 0.1]), _rec(3, [300.0, 200.0, 150.0])])
    assert [x.rule for x in v] == ["gradient norm growth"] and v[0].epoch == 3
    # a layer without a gradient (unused in the forward pass) is not evidence of anything
    assert gradient_verdicts([_rec(0, [0.1, None, 0.2])]) == []


def test_unit_verdicts_thresholds():
    recs = [_rec(0, [1, 1], {"a": {"kind": "relu", "dead_frac": 0.3}}),
            _rec(1, [1, 1], {"a": {"kind": "relu", "dead_frac": 0.7},
                             "s": {"kind": "sigmoid", "saturated_frac": 0.9}})]
    v = unit_verdicts(recs)
    assert [(x.kind, x.epoch) for x in v] == [("dying_relus", 1), ("saturation", 1)]
    assert "70%" in v[0].message
    assert unit_verdicts(recs, dead_threshold=0.8, saturation_threshold=0.95) == []
    with pytest.raises(TypeError, match="unknown threshold"):
        diagnose({}, recs, dead_treshold=0.1)
