"""The diagnosis suite as a study: runs with a known problem, and how often the verdicts name it."""
from __future__ import annotations

from trainlab.experiments.report import Section
from trainlab.experiments.studies import Outcome, StudyContext


def diagnosis_suite(ctx: StudyContext, *, seeds: int | None = None, scenarios: list[str] | None = None) -> Outcome:
    """Every scenario of :mod:`trainlab.diagnostics.suite` over its seeds (or ``seeds`` each).

    Metrics: ``min_scenario_rate`` (the worst scenario's share of seeds whose primary verdict is
    the expected kind), ``false_alarm_rate`` and ``healthy_runs`` (healthy controls whose primary
    verdict is not ``healthy``), and ``<scenario>.rate`` for each scenario.
    """
    from trainlab.diagnostics.suite import run_suite

    result = run_suite(seeds=seeds, names=scenarios, progress=lambda r: ctx.log(
        f"{r['scenario']} seed {r['seed']}: {r['primary']} (expected {r['expected']})"))
    per = result.per_scenario()
    fa, nh = result.false_alarms()
    metrics: dict[str, float] = {"min_scenario_rate": min(s["rate"] for s in per), "runs": len(result.rows),
                                 "healthy_runs": nh, "false_alarm_rate": fa / nh if nh else 0.0}
    for s in per:
        metrics[f"{s['scenario']}.rate"] = s["rate"]
    expected, got, table = result.confusion()
    pr = result.precision_recall()
    sections = [
        Section("Scenarios", table=(("scenario", "expected", "right", "runs", "primary verdicts"),
                                    [(s["scenario"], s["expected"], s["right"], s["runs"],
                                      ", ".join(f"{k} {v}" for k, v in sorted(s["primaries"].items())))
                                     for s in per])),
        Section("Confusion (rows: expected kind, columns: primary verdict)",
                table=(("expected", *got), [(e, *(table.get((e, g), 0) for g in got)) for e in expected])),
        Section("Precision and recall per kind", text=[f"False alarms on healthy runs: {fa} of {nh}."],
                table=(("kind", "precision", "recall", "runs"),
                       [(k, "-" if v["precision"] is None else v["precision"],
                         "-" if v["recall"] is None else v["recall"], v["support"]) for k, v in pr.items()])),
    ]
    return Outcome(metrics, sections, data={"rows": result.rows})
