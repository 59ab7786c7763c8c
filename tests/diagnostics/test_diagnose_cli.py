"""`trainlab diagnose` and the verdicts.json contract, through the real entry point."""
import json

from trainlab.diagnostics.verdicts import KINDS

FAST = ["--set", "data.n_samples=300", "--epochs", "6", "--no-store", "-q"]


def _check_contract(doc):
    assert doc["primary"] == doc["verdicts"][0]["kind"]
    for v in doc["verdicts"]:
        assert set(v) == {"kind", "severity", "epoch", "layer", "message", "fix", "evidence"}
        assert v["kind"] in KINDS and v["severity"] in ("error", "warning", "info")


def test_a_run_folder_has_verdicts_and_diagnose_recomputes_them(cli, tmp_path):
    res = cli("run", "--out", "r", *FAST)
    assert res.returncode == 0, res.stderr
    written = json.loads((tmp_path / "r" / "verdicts.json").read_text())
    _check_contract(written)
    res = cli("diagnose", "r", "--json")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout) == written  # recomputed from metrics.json: the same document
    res = cli("diagnose", "r")
    assert res.returncode == 0 and res.stdout.startswith(f"[primary] ") and written["primary"] in res.stdout
    html = (tmp_path / "r" / "report.html").read_text()
    assert html.index("Primary: ") < html.index("Final numbers")


def test_a_finished_run_ends_its_output_with_the_primary_verdict_and_its_fix(cli, tmp_path):
    res = cli("run", "--out", "slow", "--lr", "0.00001", "--epochs", "3", "--no-store")
    assert res.returncode == 0, res.stderr
    written = json.loads((tmp_path / "slow" / "verdicts.json").read_text())
    primary = written["verdicts"][0]
    assert primary["kind"] == "lr_too_low"
    lines = res.stdout.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("verdict:"))
    assert lines[at] == f"verdict:    lr_too_low (warning): {primary['message']}"
    assert lines[at + 1] == f"fix:        {primary['fix']}"


def test_a_run_that_stops_on_nan_still_writes_its_folder_and_verdicts(cli, tmp_path):
    res = cli("run", "--out", "nan", "--optimizer", "sgd", "--lr", "1e6", *FAST)
    assert res.returncode == 1
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "became nan" in lines[0] and "verdicts.json" in lines[0]
    doc = json.loads((tmp_path / "nan" / "verdicts.json").read_text())
    _check_contract(doc)
    assert doc["primary"] == "diverging" and doc["verdicts"][0]["severity"] == "error"
    assert "0 epoch(s)" not in lines[0]
    assert (tmp_path / "nan" / "report.html").is_file() and (tmp_path / "nan" / "metrics.json").is_file()
    # the stop is told in 1-based epochs and steps everywhere, as in the message and on stderr
    v = doc["verdicts"][0]
    stop = v["evidence"]["stopped"]
    assert stop == doc["context"]["stopped"] and stop["epoch"] == v["epoch"] == 1
    assert f"step {stop['step']} of epoch 1" in v["message"] and f"step {stop['step']} of that epoch" in lines[0]
    res = cli("diagnose", "nan")
    assert res.returncode == 0 and "diverging" in res.stdout.splitlines()[0]
    assert f"step {stop['step']} of epoch 1" in res.stdout
    res = cli("diagnose", "nan", "--json")
    assert res.returncode == 0 and json.loads(res.stdout) == doc


def test_diagnose_recomputes_verdicts_read_from_the_records_exactly(cli, tmp_path):
    # lr_too_low reads the update ratios of the records, whose epochs the file counts from 1
    res = cli("run", "--out", "low", "--optimizer", "sgd", "--lr", "1e-5", *FAST)
    assert res.returncode == 0, res.stderr
    doc = json.loads((tmp_path / "low" / "verdicts.json").read_text())
    assert doc["primary"] == "lr_too_low"
    res = cli("diagnose", "low", "--json")
    assert res.returncode == 0 and json.loads(res.stdout) == doc
    # dying_relus carries the dead fraction it read, per record, as its evidence curve
    res = cli("run", "--out", "dead", "--set", "init={weight: he_normal, bias: constant, value: -3.0}", *FAST)
    assert res.returncode == 0, res.stderr
    doc = json.loads((tmp_path / "dead" / "verdicts.json").read_text())
    assert doc["primary"] == "dying_relus" and doc["verdicts"][0]["evidence"]["mark"]["points"][0][0] == 0
    res = cli("diagnose", "dead", "--json")
    assert res.returncode == 0 and json.loads(res.stdout) == doc


def test_diagnose_errors_are_one_line(cli):
    res = cli("diagnose", "missing")
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1
    assert "not a run folder" in res.stderr
    res = cli("diagnose")
    assert res.returncode == 2 and "RUN_DIR" in res.stderr
    res = cli("diagnose", "--suite", "--scenario", "nope")
    assert res.returncode == 2 and "unknown scenario" in res.stderr and len(res.stderr.strip().splitlines()) == 1


def test_diagnose_suite_quick_scenario(cli):
    res = cli("diagnose", "--suite", "--scenario", "lr-too-low-sgd", "--seeds", "1")
    assert res.returncode == 0, res.stderr
    assert "lr-too-low-sgd" in res.stdout and "false alarms" in res.stdout
    res = cli("diagnose", "--list-scenarios")
    assert res.returncode == 0 and len(res.stdout.splitlines()) >= 12
