"""Verdicts: the four overfitting rules on their synthetic curves, silence on noise, the other kinds, ranking."""
import math
import random

import pytest

from trainlab.diagnostics.verdicts import (KINDS, Diagnosis, Verdict, curve_noise, diagnose, gradient_verdicts,
                                           optimizer_verdicts, overfitting_verdicts, underfitting_verdict,
                                           unit_verdicts)

TRAIN_ACC = [0.7, 0.8, 0.84, 0.86, 0.88, 0.9, 0.91, 0.92, 0.93, 0.935]  # low training error: no underfitting
CURVES = {
    # rule 1: validation loss turns up while training loss keeps falling; accuracy still improves
    1: dict(loss=[1.0, 0.8, 0.66, 0.58, 0.54, 0.52, 0.5, 0.49, 0.48, 0.47],
            val_loss=[1.0, 0.8, 0.65, 0.6, 0.62, 0.66, 0.7, 0.75, 0.8, 0.85],
            val_accuracy=[0.6, 0.7, 0.75, 0.78, 0.8, 0.82, 0.84, 0.86, 0.87, 0.88], first=7),
    # rule 2: both fall, but training loss ends far below validation loss
    2: dict(loss=[0.8, 0.5, 0.3, 0.2, 0.12, 0.08, 0.05, 0.03],
            val_loss=[1.0, 0.8, 0.6, 0.45, 0.35, 0.28, 0.22, 0.18],
            val_accuracy=[0.6, 0.7, 0.75, 0.78, 0.8, 0.82, 0.84, 0.86], first=7),
    # rule 3: validation loss flattens while training loss keeps falling
    3: dict(loss=[1.0, 0.8, 0.7, 0.62, 0.56, 0.52, 0.49, 0.47, 0.45, 0.43],
            val_loss=[1.0, 0.85, 0.75, 0.72, 0.72, 0.7205, 0.721, 0.7205, 0.721, 0.7208],
            val_accuracy=[0.6, 0.7, 0.75, 0.78, 0.8, 0.81, 0.82, 0.83, 0.83, 0.835], first=9),
    # rule 4: training loss flat, validation accuracy stuck while validation loss climbs
    4: dict(loss=[0.5, 0.45, 0.44, 0.44, 0.44, 0.44, 0.44, 0.44],
            val_loss=[0.5, 0.46, 0.45, 0.46, 0.48, 0.5, 0.52, 0.54],
            val_accuracy=[0.7, 0.78, 0.8, 0.8, 0.8, 0.79, 0.8, 0.8], first=6),
}


@pytest.mark.parametrize("rule", [1, 2, 3, 4])
def test_the_four_overfitting_rules_fire_on_their_synthetic_curves(rule):
    c = dict(CURVES[rule])
    first = c.pop("first")
    c["accuracy"] = TRAIN_ACC[: len(c["loss"])]
    found = overfitting_verdicts(c)
    assert [v.evidence["rule"] for v in found] == [rule]
    assert found[0].epoch == first  # 1-based
    assert f"rule {rule}" in found[0].message and f"epoch {first}" in found[0].message
    d = diagnose(c)
    assert d.kinds() == ["overfitting"] and d.primary.severity == "warning"
    assert d.primary.evidence["mark"]["epoch"] == first


def _noise_only(n_epochs, n_val, rng, *, s=0.6, plateau=0.3):
    """A healthy run's curves: both losses follow one decaying curve; validation adds the noise of a
    validation set of ``n_val`` samples (per-sample loss spread ``s``), training a little epoch noise."""
    se = s / math.sqrt(n_val)
    tau = max(n_epochs / 6, 1.0)
    base = [plateau + 0.5 * math.exp(-e / tau) for e in range(n_epochs)]
    loss = [b + rng.gauss(0, 0.003) for b in base]
    val = [b + 0.01 + rng.gauss(0, se) for b in base]
    p = [0.9 - 0.2 * math.exp(-e / tau) for e in range(n_epochs)]
    vacc = [min(1.0, q + rng.gauss(0, math.sqrt(q * (1 - q) / n_val))) for q in p]
    acc = [q + 0.005 for q in p]
    return dict(loss=loss, val_loss=val, accuracy=acc, val_accuracy=vacc), se


@pytest.mark.parametrize("n_epochs", [10, 30, 100])
@pytest.mark.parametrize("n_val", [100, 1000, 10000])
def test_noise_only_curves_raise_no_overfitting(n_epochs, n_val):
    rng = random.Random(1000 * n_epochs + n_val)
    alarms = 0
    for _ in range(40):
        h, se = _noise_only(n_epochs, n_val, rng)
        alarms += bool(overfitting_verdicts(h, val_loss_se=se, n_val=n_val))
        assert "overfitting" not in diagnose(h, val_loss_se=se, n_val=n_val).kinds()
    assert alarms == 0


def test_the_old_rules_fired_on_noise_and_the_margin_is_what_silences_them():
    # the moons demo of the issue: validation loss 0.0616 -> 0.0663 on 180 validation samples is noise
    h = dict(loss=[0.29, 0.16, 0.12, 0.1, 0.095, 0.092, 0.09, 0.09],
             val_loss=[0.1, 0.07, 0.065, 0.063, 0.0616, 0.064, 0.066, 0.0663],
             accuracy=[0.9, 0.95, 0.96, 0.965, 0.966, 0.966, 0.966, 0.966],
             val_accuracy=[0.95, 0.97, 0.973, 0.973, 0.973, 0.973, 0.973, 0.973])
    se = 0.2 / math.sqrt(180)  # per-sample losses of a good moons fit spread ~0.2
    assert overfitting_verdicts(h, val_loss_se=se, n_val=180) == []
    assert diagnose(h, val_loss_se=se, n_val=180).primary.kind == "healthy"


def test_curve_noise_ignores_a_trend_and_measures_white_noise():
    assert curve_noise([1.0 - 0.01 * e for e in range(30)]) == pytest.approx(0.0, abs=1e-12)
    rng = random.Random(0)
    sig = [curve_noise([0.5 + rng.gauss(0, 0.02) for _ in range(200)]) for _ in range(20)]
    assert sum(sig) / len(sig) == pytest.approx(0.02, rel=0.1)


def test_a_good_fit_is_healthy_with_its_numbers():
    good = dict(loss=[1.0, 0.6, 0.4, 0.3, 0.25, 0.22, 0.21, 0.205],
                val_loss=[1.0, 0.65, 0.45, 0.34, 0.29, 0.26, 0.25, 0.245],
                accuracy=[0.6, 0.8, 0.88, 0.92, 0.94, 0.95, 0.955, 0.96],
                val_accuracy=[0.6, 0.78, 0.86, 0.9, 0.92, 0.93, 0.935, 0.94])
    d = diagnose(good)
    assert d.kinds() == ["healthy"] and d.primary.severity == "info"
    assert "0.94" in d.primary.message and d.primary.evidence["best_epoch"] == 8


def test_underfitting_suppresses_overfitting_wiggles():
    h = dict(loss=[0.708, 0.706, 0.704, 0.701, 0.698, 0.697, 0.696, 0.695, 0.695, 0.694],
             val_loss=[0.695, 0.693, 0.70, 0.698, 0.699, 0.70, 0.701, 0.7, 0.71, 0.711],
             accuracy=[0.5, 0.52, 0.5, 0.51, 0.53, 0.52, 0.53, 0.52, 0.53, 0.53],
             val_accuracy=[0.5, 0.5, 0.49, 0.5, 0.51, 0.5, 0.5, 0.5, 0.51, 0.5])
    v = diagnose(h)
    assert v.kinds() == ["underfitting"]
    assert "high bias" in v[0].message


def test_underfitting_is_both_errors_high_and_says_when_more_epochs_help():
    under = dict(loss=[0.69, 0.68, 0.68, 0.67], val_loss=[0.69, 0.69, 0.68, 0.68],
                 accuracy=[0.5, 0.55, 0.56, 0.57], val_accuracy=[0.5, 0.52, 0.55, 0.55])
    v = diagnose(under)
    assert v.kinds() == ["underfitting"] and v[0].epoch == 4
    # low training error, high validation error is not underfitting (it is variance)
    assert underfitting_verdict(dict(loss=[0.1], val_loss=[0.9], accuracy=[0.99], val_accuracy=[0.6])) is None
    # without accuracies: compared with a trivial predictor's loss
    assert underfitting_verdict(dict(loss=[0.6], val_loss=[0.62]), baseline_loss=math.log(2)) is not None
    assert underfitting_verdict(dict(loss=[0.1], val_loss=[0.12]), baseline_loss=math.log(2)) is None
    # stopped by early stopping at epoch 7 of 60: "more epochs" would be wrong advice
    flat = dict(loss=[0.66, 0.62, 0.6, 0.6, 0.6, 0.6, 0.6], val_loss=[0.64, 0.61, 0.6, 0.6, 0.6, 0.6, 0.6],
                accuracy=[0.6, 0.65, 0.66, 0.66, 0.66, 0.66, 0.66], val_accuracy=[0.6, 0.65, 0.66, 0.66, 0.66, 0.66, 0.66])
    u = underfitting_verdict(flat, epochs_planned=60)
    assert u.evidence["stopped_early"] and "will not help" in u.fix and "epoch 7 of 60" in u.fix
    falling = dict(loss=[0.69, 0.66, 0.63, 0.6, 0.57, 0.54], val_loss=[0.69, 0.66, 0.63, 0.6, 0.57, 0.54],
                   accuracy=[0.5, 0.55, 0.6, 0.65, 0.7, 0.72], val_accuracy=[0.5, 0.55, 0.6, 0.65, 0.7, 0.72])
    assert underfitting_verdict(falling, epochs_planned=6).fix.startswith("Train longer")


def _rec(epoch, grads, acts=None, ratio=None):
    layers = {f"l{i}": {"grad_norm": g} for i, g in enumerate(grads)}
    if ratio is not None:
        for row in layers.values():
            row["update_ratio"] = ratio
    return {"epoch": epoch, "layers": layers, "activations": acts or {}}


def test_gradient_verdicts_from_records():
    v = gradient_verdicts([_rec(-1, [1e-6, 1e-4, 1e-1]), _rec(0, [1e-5, 1e-3, 1e-1])])
    assert [x.kind for x in v] == ["vanishing_gradients"] and v[0].epoch == 0 and v[0].layer == "l0"
    assert "5.0 orders of magnitude" in v[0].message and "at initialization" in v[0].message
    assert v[0].evidence["records_vanishing"] == 2
    assert gradient_verdicts([_rec(0, [0.1, 0.2, 0.3]), _rec(1, [0.2, 0.1, 0.3])]) == []
    v = gradient_verdicts([_rec(0, [0.1, 0.2, 0.3]), _rec(1, [float("nan"), 0.1, 0.3])])
    assert [x.rule for x in v] == ["non-finite gradient"] and v[0].epoch == 2
    v = gradient_verdicts([_rec(0, [500.0, 20.0, 1.0])])
    assert [x.rule for x in v] == ["first layer far above last"]
    v = gradient_verdicts([_rec(0, [0.1, 0.1, 0.1]), _rec(3, [300.0, 200.0, 150.0])])
    assert [x.rule for x in v] == ["gradient norm growth"] and v[0].epoch == 4
    # the backward signal ‖∂L/∂a‖ growing towards the input, while weight gradients look balanced
    acts = {"a0": {"kind": "relu", "grad_out_norm": 900.0}, "a1": {"kind": "relu", "grad_out_norm": 30.0},
            "a2": {"kind": "relu", "grad_out_norm": 2.0}}
    v = gradient_verdicts([_rec(-1, [1.0, 1.0, 1.0], acts)])
    assert [x.rule for x in v] == ["backward signal grows with depth"] and v[0].layer == "a0"
    # a layer without a gradient (unused in the forward pass) is not evidence of anything
    assert gradient_verdicts([_rec(0, [0.1, None, 0.2])]) == []


def test_unit_verdicts_thresholds_and_persistence():
    recs = [_rec(0, [1, 1], {"a": {"kind": "relu", "dead_frac": 0.3}}),
            _rec(1, [1, 1], {"a": {"kind": "relu", "dead_frac": 0.8},
                             "s": {"kind": "sigmoid", "saturated_frac": 0.9}})]
    v = unit_verdicts(recs)
    assert [(x.kind, x.epoch, x.layer) for x in v] == [("dying_relus", 2, "a"), ("saturation", 2, "s")]
    assert "80%" in v[0].message
    assert unit_verdicts(recs, dead_threshold=0.85, saturation_threshold=0.95) == []
    with pytest.raises(TypeError, match="unknown threshold"):
        diagnose({}, recs, dead_treshold=0.1)


def test_diverging_ranks_first_and_absorbs_the_gradient_growth_it_causes():
    h = dict(loss=[0.7, 5.0, 80.0, 1e4], val_loss=[0.7, 6.0, 90.0, 2e4])
    recs = [_rec(-1, [0.1, 0.1, 0.1]), _rec(0, [0.1, 0.1, 0.1]), _rec(2, [300.0, 200.0, 150.0])]
    d = diagnose(h, recs, baseline_loss=math.log(2))
    assert d.primary.kind == "diverging" and d.primary.severity == "error" and d.primary.epoch == 3
    assert "exploding_gradients" not in d.kinds() and "exploding_gradients" in d.primary.evidence
    assert "underfitting" not in d.kinds()
    # a run stopped on NaN: diverging at the epoch it stopped in
    d = diagnose(dict(loss=[0.7, 0.6]), stopped={"epoch": 3, "step": 5, "value": "nan"})
    assert d.primary.kind == "diverging" and d.primary.epoch == 3 and "step 5 of epoch 3" in d.primary.message


def test_a_nan_stop_diverges_from_where_the_loss_first_blew_up():
    # SGD at lr 200, full batch: 0.74 -> 474 at epoch 2, NaN in epoch 6; the backward signal's growth
    # at epoch 2 is the divergence's consequence, not a second cause ranked above it
    h = dict(loss=[0.74, 473.5, 4e11, 2.7e21, 1e28], val_loss=[489.0, 3.8e11, 3.2e21, 9.3e27, float("nan")])
    acts = {"a0": {"kind": "relu", "grad_out_norm": 7.2e6}, "a1": {"kind": "relu", "grad_out_norm": 848.0}}
    recs = [_rec(-1, [0.1, 0.1]), _rec(0, [0.1, 0.1]), _rec(1, [5e3, 3e3], acts)]
    d = diagnose(h, recs, baseline_loss=math.log(2), stopped={"epoch": 6, "step": 1, "value": "nan"})
    assert d.primary.kind == "diverging" and d.primary.epoch == 2 and d.primary.evidence["mark"]["epoch"] == 2
    assert "exploding_gradients" not in d.kinds() and "exploding_gradients" in d.primary.evidence
    assert "step 1 of epoch 6" in d.primary.message and "474" in d.primary.message
    # a loss that goes straight to NaN still diverges at the epoch it did
    d = diagnose(dict(loss=[0.74, 0.7]), stopped={"epoch": 3, "step": 2, "value": "nan"})
    assert d.primary.epoch == 3


def test_learning_rate_verdicts_replace_underfitting():
    rng = random.Random(0)
    high = dict(loss=[0.69] + [0.6 + rng.uniform(-0.2, 0.2) for _ in range(19)],
                accuracy=[0.55] * 20, val_loss=[0.7] * 20, val_accuracy=[0.55] * 20)
    recs = [_rec(e, [0.1, 0.1], ratio=0.05) for e in range(-1, 20)]
    d = diagnose(high, recs, baseline_loss=math.log(2))
    assert d.primary.kind == "lr_too_high" and "underfitting" not in d.kinds()
    low = dict(loss=[0.7 - 0.001 * e for e in range(20)], accuracy=[0.5] * 20,
               val_loss=[0.7 - 0.001 * e for e in range(20)], val_accuracy=[0.5] * 20)
    recs = [_rec(e, [0.1, 0.1], ratio=1e-6) for e in range(-1, 20)]
    d = diagnose(low, recs, baseline_loss=math.log(2))
    assert d.kinds() == ["lr_too_low"] and "Raise the learning rate" in d.primary.fix
    assert optimizer_verdicts(low, [_rec(e, [0.1, 0.1], ratio=1e-3) for e in range(20)],
                              baseline_loss=math.log(2)) == []


def test_without_diagnostics_underfitting_does_not_vouch_for_the_optimizer():
    # SGD at lr 1e-5 with diagnostics off: no update ratios, so lr_too_low cannot be told from a small
    # model, and "an optimizer that works" would be a claim nothing checked
    low = dict(loss=[0.743 - 0.0004 * e for e in range(8)], accuracy=[0.14] * 8,
               val_loss=[0.745 - 0.0004 * e for e in range(8)], val_accuracy=[0.13] * 8)
    d = diagnose(low, baseline_loss=math.log(2))
    assert d.kinds() == ["underfitting"]
    assert "optimizer that works" not in d.primary.message and "not recorded" in d.primary.message
    assert "learning rate" in d.primary.fix and d.primary.evidence["optimizer_checked"] is False
    d = diagnose(low, [_rec(e, [0.1, 0.1], ratio=1e-3) for e in range(-1, 8)], baseline_loss=math.log(2))
    assert d.kinds() == ["underfitting"] and "optimizer that works" in d.primary.message
    assert d.primary.evidence["optimizer_checked"] is True


def test_memorization_with_chance_level_validation():
    h = dict(loss=[2.3, 2.0, 1.5, 1.0, 0.6, 0.3], val_loss=[2.3, 2.4, 2.6, 2.9, 3.3, 3.8],
             accuracy=[0.1, 0.25, 0.45, 0.65, 0.85, 0.95], val_accuracy=[0.1, 0.09, 0.11, 0.1, 0.1, 0.09])
    d = diagnose(h, chance_accuracy=0.11, n_val=500, baseline_loss=math.log(10))
    assert d.primary.kind == "memorization" and d.primary.epoch == 4
    assert "overfitting" in d.kinds()  # still told, ranked after memorization
    assert "memorization" not in diagnose(h).kinds()  # without the chance level there is no claim


def test_the_contract():
    d = diagnose(dict(CURVES[1], accuracy=TRAIN_ACC))
    out = d.to_dict()
    assert out["primary"] == "overfitting"
    assert all(set(v) == {"kind", "severity", "epoch", "layer", "message", "fix", "evidence"} for v in out["verdicts"])
    assert all(v["kind"] in KINDS and v["severity"] in ("error", "warning", "info") for v in out["verdicts"])
    assert [Verdict.from_dict(v).to_dict() for v in out["verdicts"]] == out["verdicts"]
    assert Diagnosis([]).primary is None
    with pytest.raises(ValueError, match="unknown verdict kind"):
        Verdict("overfit", 1, "m", "f")


def test_random_labels_half_memorized_are_memorization_not_underfitting():
    # the CNN on random labels: training error 0.42, validation error 0.91
    h = dict(loss=[2.3, 2.2, 2.0, 1.8, 1.6, 1.4], val_loss=[2.3, 2.35, 2.45, 2.6, 2.8, 3.0],
             accuracy=[0.1, 0.15, 0.25, 0.38, 0.5, 0.58], val_accuracy=[0.1, 0.1, 0.09, 0.1, 0.09, 0.09])
    d = diagnose(h, chance_accuracy=0.1, n_val=1000, baseline_loss=math.log(10))
    assert d.primary.kind == "memorization" and "underfitting" not in d.kinds() and "overfitting" in d.kinds()
