"""The diagnosis suite, quick and seeded: each kind fires on its scenario, the healthy controls stay silent."""
import json

import pytest

from trainlab.diagnostics.suite import run_scenario, run_suite, scenarios
from trainlab.diagnostics.verdicts import KINDS

SCENARIOS = {s.name: s for s in scenarios()}


def test_the_suite_covers_every_kind_with_enough_runs():
    assert len(SCENARIOS) >= 12
    assert {s.expected for s in SCENARIOS.values()} == set(KINDS)
    assert all(s.seeds >= 5 for s in SCENARIOS.values())
    assert sum(s.seeds for s in SCENARIOS.values() if s.expected == "healthy") >= 30


@pytest.mark.parametrize("name", sorted(n for n, s in SCENARIOS.items() if s.expected != "healthy"))
def test_each_kind_fires_on_its_scenario(name):
    row = run_scenario(SCENARIOS[name], seed=0)
    assert row["primary"] == SCENARIOS[name].expected, row


@pytest.mark.parametrize("name", sorted(n for n, s in SCENARIOS.items() if s.expected == "healthy"))
@pytest.mark.parametrize("seed", [0, 1])
def test_the_healthy_controls_stay_silent(name, seed):
    row = run_scenario(SCENARIOS[name], seed=seed)
    assert row["kinds"] == ["healthy"], row


def test_suite_result_tables():
    r = run_suite(seeds=1, names=["lr-too-low-sgd", "healthy-circles"])
    assert [row["scenario"] for row in r.rows] == ["healthy-circles", "lr-too-low-sgd"]  # the suite's order
    assert r.false_alarms() == (0, 1) and r.passed()
    pr = r.precision_recall()
    assert pr["lr_too_low"] == {"precision": 1.0, "recall": 1.0, "support": 1}
    text = r.text()
    assert "confusion" in text and "false alarms on healthy runs: 0 of 1" in text
    json.dumps(r.to_dict())
    with pytest.raises(ValueError, match="unknown scenario"):
        run_suite(seeds=1, names=["no-such"])


def test_the_report_leads_with_the_primary_verdict_and_marks_its_evidence(tmp_path):
    import copy

    from trainlab.experiments.runner import run_experiment

    cfg = copy.deepcopy(SCENARIOS["overfitting-tiny-noisy"].config)
    result = run_experiment(cfg, run_dir=tmp_path / "r", verbose=False)
    primary = result.extras["verdicts"].primary
    assert primary.kind == "overfitting" and primary.evidence["mark"]["epoch"] == primary.epoch
    html = (tmp_path / "r" / "report.html").read_text()
    assert html.index("Primary: overfitting") < html.index("Final numbers")
    assert (tmp_path / "r" / "verdict.png").stat().st_size > 0
    assert "evidence for overfitting" in html
    doc = json.loads((tmp_path / "r" / "verdicts.json").read_text())
    assert doc["primary"] == "overfitting" and doc["context"]["epochs_planned"] == 150


def _rows(scenario, expected, primaries):
    return [{"scenario": scenario, "seed": i, "expected": expected, "primary": p, "kinds": [p], "seconds": 0.1}
            for i, p in enumerate(primaries)]


def test_a_quick_suite_does_not_claim_the_goal_it_has_too_few_runs_for():
    from trainlab.diagnostics.suite import SuiteResult

    quick = SuiteResult(_rows("healthy-moons", "healthy", ["healthy"] * 3)
                        + _rows("lr-too-low-sgd", "lr_too_low", ["lr_too_low"]), 1.0)
    assert quick.passed() and not quick.conclusive() and not quick.to_dict()["conclusive"]
    last = quick.text().splitlines()[-1]
    assert "no miss" in last and "too few runs to claim it" in last and not last.endswith("met")
    full = SuiteResult(_rows("healthy-moons", "healthy", ["healthy"] * 30)
                       + _rows("lr-too-low-sgd", "lr_too_low", ["lr_too_low"] * 5), 1.0)
    assert full.passed() and full.conclusive() and full.text().splitlines()[-1].endswith(": met")
    missed = SuiteResult(_rows("lr-too-low-sgd", "lr_too_low", ["lr_too_low", "underfitting"]), 1.0)
    assert not missed.passed() and missed.text().splitlines()[-1].endswith("NOT met")


def test_the_confusion_table_names_every_kind_in_full():
    from trainlab.diagnostics.suite import SuiteResult

    r = SuiteResult(_rows("exploding-deep-large-init", "exploding_gradients", ["exploding_gradients"])
                    + _rows("memorization-random-labels", "memorization", ["memorization", "underfitting"]), 1.0)
    text = r.text()
    head = text[text.index("confusion"):].splitlines()[1:3]
    for kind in ("exploding_gradients", "memorization", "underfitting"):
        first, _, rest = kind.partition("_")
        assert first in head[0].split() and (not rest or rest in head[1].split()), head


@pytest.mark.parametrize("name", ["dying-relus-negative-bias", "vanishing-deep-sigmoid", "exploding-deep-large-init",
                                  "saturation-tanh-large-init"])
def test_a_primary_read_from_the_records_marks_its_evidence_too(name, tmp_path):
    import copy

    from trainlab.experiments.runner import run_experiment

    cfg = copy.deepcopy(SCENARIOS[name].config)
    result = run_experiment(cfg, run_dir=tmp_path / "r", verbose=False)
    primary = result.extras["verdicts"].primary
    assert primary.kind == SCENARIOS[name].expected
    mark = primary.evidence["mark"]
    assert mark["epoch"] == primary.epoch and isinstance(mark["threshold"], float)
    # the curve the verdict read, one point per record, in 1-based epochs (0 = initialization)
    assert [p[0] for p in mark["points"]] == [r["epoch"] + 1 for r in result.extras["diagnostics"].all_records()]
    html = (tmp_path / "r" / "report.html").read_text()
    assert f"evidence for {primary.kind}" in html and (tmp_path / "r" / "verdict.png").stat().st_size > 0
