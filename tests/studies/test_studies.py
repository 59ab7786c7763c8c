"""The study machinery: validation with field paths, assertion arithmetic, lookup, CLI."""
import json
import math

import pytest
import yaml

from trainlab.cli import main
from trainlab.experiments.studies import (
    Assertion, StudyError, deep_merge, evaluate_assertion, find_study, load_study, parse_study, run_study,
)

CE = {
    "name": "tiny", "title": "t", "claim": "the formula gives 0.865", "notes": ["002"],
    "procedure": "cross_entropy_example",
    "params": {"labels": [1], "probabilities": [[0.3, 0.7]]},
    "assertions": [{"name": "loss", "metric": "formula_loss", "op": "approx", "value": 0.3567, "tol": 1e-3}],
}


def _with(**changes):
    data = json.loads(json.dumps(CE))
    data.update(changes)
    return data


def test_a_valid_study_parses():
    study = parse_study(CE)
    assert study.procedure == "cross_entropy_example" and study.assertions[0].op == "approx"


@pytest.mark.parametrize("changes, path_and_message", [
    ({"procedure": "exec"}, "procedure: unknown procedure 'exec'; allowed:"),
    ({"params": {"labels": [1], "probabilities": [[1.0]], "lables": 2}}, "params.lables: not an argument"),
    ({"quick": {"epochs": 2}}, "quick.epochs: not an argument"),
    ({"colour": "red"}, "colour: unknown field"),
    ({"name": "Bad Name"}, "name: String should match pattern"),
    ({"assertions": []}, "assertions: List should have at least 1 item"),
    ({"threads": 0}, "threads: threads must be >= 1"),
    ({"threads": {"quick": 1, "full": 0}}, "threads: threads must be >= 1"),
    ({"assertions": [{"name": "x", "metric": "m", "op": "<"}]}, "give exactly one of `value`"),
    ({"assertions": [{"name": "x", "metric": "m", "op": "approx", "value": 1}]}, "op approx needs `tol`"),
    ({"assertions": [{"name": "x", "metric": "m", "op": "=~", "value": 1}]}, "assertions.0.op"),
    ({"assertions": [{"name": "x", "metric": "m", "op": "<", "value": 1},
                     {"name": "x", "metric": "m", "op": ">", "value": 0}]}, "assertion names must be unique"),
])
def test_invalid_studies_fail_with_the_field_path(changes, path_and_message):
    with pytest.raises(StudyError) as err:
        parse_study(_with(**changes))
    assert path_and_message in str(err.value)


def test_file_name_must_match_and_yaml_errors_are_clear(tmp_path):
    path = tmp_path / "other.yaml"
    path.write_text(yaml.safe_dump(CE))
    with pytest.raises(StudyError, match="must match the file name"):
        load_study(path)
    bad = tmp_path / "tiny.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(StudyError, match="not valid YAML"):
        load_study(bad)
    with pytest.raises(StudyError, match="unknown study 'nope'"):
        find_study("nope", tmp_path)


@pytest.mark.parametrize("op, value, actual, expected", [
    ("<", 1.0, 0.5, True), ("<", 1.0, 1.0, False), ("<=", 1.0, 1.0, True), (">", 1.0, 1.0, False),
    (">=", 1.0, 1.0, True), ("==", 3.0, 3.0, True), ("==", 3.0, 3.0000001, False),
    (">", 1.0, math.nan, False), ("<", 1.0, math.nan, False),
])
def test_assertion_operators(op, value, actual, expected):
    check = evaluate_assertion(Assertion(name="a", metric="m", op=op, value=value), {"m": actual}, "full")
    assert check.passed is expected


def test_approx_other_scale_quick_value_and_modes():
    m = {"a": 0.8644, "b": 2.0, "c": 0.9}
    assert evaluate_assertion(Assertion(name="x", metric="a", op="approx", value=0.865, tol=0.001), m, "full").passed
    assert not evaluate_assertion(Assertion(name="x", metric="a", op="approx", value=0.865, tol=0.0005), m,
                                  "full").passed
    # metric op scale * other: 0.8644 < 0.5 * 2.0
    check = evaluate_assertion(Assertion(name="x", metric="a", op="<", other="b", scale=0.5), m, "full")
    assert check.passed and check.reference == 1.0
    assert not evaluate_assertion(Assertion(name="x", metric="a", op="<", other="b", scale=0.4), m, "full").passed
    a = Assertion(name="x", metric="c", op=">=", value=0.99, quick_value=0.8)
    assert evaluate_assertion(a, m, "quick").passed and not evaluate_assertion(a, m, "full").passed
    only_full = Assertion(name="x", metric="c", op=">=", value=0.99, modes=["full"])
    assert evaluate_assertion(only_full, m, "quick").passed is None
    missing = evaluate_assertion(Assertion(name="x", metric="zzz", op=">", value=0), m, "full")
    assert missing.passed is False and "no metric 'zzz'" in missing.note


def test_deep_merge_merges_nested_dicts_and_replaces_the_rest():
    base = {"data": {"name": "moons", "n_samples": 1000}, "epochs": 40, "hidden": [64, 32]}
    out = deep_merge(base, {"data": {"n_samples": 200}, "hidden": [8]})
    assert out == {"data": {"name": "moons", "n_samples": 200}, "epochs": 40, "hidden": [8]}
    assert base["data"]["n_samples"] == 1000


def test_a_failing_assertion_is_reported_as_fail_with_numbers(tmp_path):
    data = _with(assertions=[{"name": "wrong on purpose", "metric": "formula_loss", "op": "<", "value": 0.1}])
    result = run_study(parse_study(data), out=tmp_path)
    assert not result.passed
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["passed"] is False and saved["assertions"][0]["status"] == "FAIL"
    assert saved["assertions"][0]["actual"] == pytest.approx(-math.log(0.7))
    html = (tmp_path / "report.html").read_text()
    assert "Verdict: FAIL" in html and "<span class='fail'>FAIL</span>" in html


def test_cli_list_run_and_exit_status(tmp_path, capsys):
    assert main(["study", "--list"]) == 0
    listed = capsys.readouterr().out
    assert "cross-entropy-example" in listed and "gd-line" in listed
    assert main(["study", "cross-entropy-example", "--quick", "--out", str(tmp_path / "ok")]) == 0
    assert "PASS" in capsys.readouterr().out
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(_with(assertions=[
        {"name": "fails", "metric": "formula_loss", "op": ">", "value": 5}])))
    assert main(["study", str(path), "--out", str(tmp_path / "bad")]) == 1
    assert main(["study", "no-such-study"]) == 2
    assert "unknown study 'no-such-study'" in capsys.readouterr().err
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "tiny.yaml").write_text(yaml.safe_dump(CE))
    assert main(["study", "--list", "--dir", str(tmp_path / "d")]) == 0
    assert capsys.readouterr().out.splitlines()[1].startswith("tiny ")  # after the header line
