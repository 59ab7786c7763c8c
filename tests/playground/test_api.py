"""The playground's server and live runs without a browser (Starlette's TestClient over the real app)."""
from __future__ import annotations

import json

import pytest

pytest.importorskip("starlette")
pytest.importorskip("httpx")

import warnings  # noqa: E402

import torch  # noqa: E402

with warnings.catch_warnings():  # starlette 1.10 asks for httpx2; the test client works with httpx
    warnings.simplefilter("ignore", DeprecationWarning)
    from starlette.testclient import TestClient  # noqa: E402

from trainlab.experiments.config import parse_config  # noqa: E402
from trainlab.experiments.runner import run_experiment  # noqa: E402
from trainlab.playground.server import create_app  # noqa: E402
from trainlab.playground.live import DEFAULTS, SettingsError, config_from_settings  # noqa: E402

FAST = {"n": 120, "epochs": 3, "batch_size": "20"}


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    root = tmp_path_factory.mktemp("api")
    with TestClient(create_app(runs_root=root / "runs", upload_dir=root / "uploads")) as c:
        c.root = root
        yield c


def until(ws, pred, limit=20000):
    for _ in range(limit):
        m = ws.receive_json()
        if m.get("type") == "error" and not pred(m):
            raise AssertionError(m["message"])
        if pred(m):
            return m
    raise AssertionError("no such message")


def frame(m):
    return m["type"] == "frame"


def test_every_default_setting_makes_a_valid_config():
    cfg = parse_config(config_from_settings(DEFAULTS))
    assert cfg.data.name == "moons" and cfg.model.kwargs["hidden"] == [8, 8]
    assert cfg.train.batch_size == 10 and cfg.optimizer.kwargs["lr"] == 0.1


@pytest.mark.parametrize("settings", [
    {"data": "blobs", "classes": 4}, {"data": "line", "n": 8}, {"data": "sine"}, {"data": "ripple"},
    {"features": "x1^2,x2^2,x1*x2", "activation": "relu,maxout", "init_weight": "zeros", "init_bias": "constant",
     "init_options": "value: 0.1", "norm": "batch", "dropout": 0.2, "dropout_kind": "dropconnect", "residual": True},
    {"loss": "bce", "optimizer": "sgd", "optimizer_options": "momentum: 0.9, nesterov: true", "schedule": "cosine",
     "l1": 1e-4, "l2": 1e-3, "decay": 1e-3, "clip": 1.0, "batch_size": "full", "label_smoothing": 0.0},
    {"loss": "cross_entropy", "label_smoothing": 0.1, "optimizer": "adamw", "schedule": "step",
     "schedule_options": "step_size: 2, gamma: 0.5"},
])
def test_page_settings_are_configs(settings):
    parse_config(config_from_settings({**DEFAULTS, **settings}))


@pytest.mark.parametrize("settings, words", [
    ({"hidden": "8,x"}, "hidden"), ({"hidden": ",".join(["4"] * 9)}, "up to 8 layers"),
    ({"lr": "fast"}, "lr"), ({"nope": 1}, "unknown setting"), ({"data": "csv"}, "upload"),
    ({"optimizer_options": "momentum: [1"}, "optimizer_options"),
])
def test_bad_settings_say_which_and_why(settings, words):
    with pytest.raises(SettingsError, match=words):
        config_from_settings(settings)


def test_play_live_lr_rewind_and_the_config_reproduces_the_run(client, tmp_path):
    with client.websocket_connect("/ws") as ws:
        ws.send_json({"type": "init", "settings": FAST})
        f0 = until(ws, frame)
        assert f0["step"] == 0 and "points" in f0 and len(f0["units"]) == 2
        ws.send_json({"type": "step", "n": 5})
        f = until(ws, lambda m: frame(m) and m["step"] == 5)
        ws.send_json({"type": "settings", "settings": {**FAST, "lr": 0.37}})
        assert until(ws, lambda m: m["type"] == "settings")["live"] is True
        ws.send_json({"type": "step"})
        f = until(ws, lambda m: frame(m) and m["step"] == 6)
        assert f["lr"] == pytest.approx(0.37)  # applied without a reset: the step count went on
        ws.send_json({"type": "rewind"})
        r = until(ws, frame)
        assert r["step"] == 0 and r["checksum"] == f0["checksum"]
        # the copied config (at its original lr) trains under run_experiment to the same numbers
        ws.send_json({"type": "settings", "settings": FAST})
        ws.send_json({"type": "play"})
        last = until(ws, lambda m: frame(m) and m["state"] == "done")
        ws.send_json({"type": "config"})
        text = until(ws, lambda m: m["type"] == "config")["yaml"]
    import yaml
    result = run_experiment(yaml.safe_load(text), write=False, verbose=False)
    assert result.final["val_loss"] == pytest.approx(last["test_loss"], rel=1e-6)
    assert result.final["train_loss"] == pytest.approx(last["train_loss"], rel=1e-6)


def test_save_run_writes_a_run_folder(client):
    with client.websocket_connect("/ws") as ws:
        ws.send_json({"type": "init", "settings": {**FAST, "epochs": 2}})
        ws.send_json({"type": "play"})
        until(ws, lambda m: frame(m) and m["state"] == "done")
        ws.send_json({"type": "save"})
        saved = until(ws, lambda m: m["type"] == "saved")
    from pathlib import Path
    run = Path(saved["path"])
    for name in ("config.yaml", "metrics.json", "report.html", "verdicts.json", "weights.safetensors"):
        assert (run / name).is_file(), name
    assert len(json.loads((run / "metrics.json").read_text())["history"]) == 2


def test_a_diverging_lr_gives_the_diverging_verdict_and_the_server_goes_on(client):
    with client.websocket_connect("/ws") as ws:
        ws.send_json({"type": "init", "settings": {**FAST, "lr": 1e6, "epochs": 50}})
        ws.send_json({"type": "play"})
        v = until(ws, lambda m: m["type"] == "verdicts" and m.get("primary") == "diverging")
        assert "learning rate" in v["items"][0]["fix"].lower()
        ws.send_text("not json")
        assert "JSON" in until(ws, lambda m: m["type"] == "error")["message"]
        ws.send_json({"type": "settings", "settings": {**FAST, "lr": 0.1}})
        ws.send_json({"type": "rewind"})
        assert until(ws, lambda m: frame(m) and "points" in m)["step"] == 0
    assert client.get("/api/options").status_code == 200


def test_csv_upload_is_validated(client):
    bad = client.post("/api/upload", content=b"x1,x2,label\n1,2,0\n3,oops,1\n")
    assert bad.status_code == 400 and "line 3" in bad.json()["error"]
    three = client.post("/api/upload", content=b"a,b,c,label\n" + b"1,2,3,0\n" * 12)
    assert three.status_code == 400 and "3 feature columns" in three.json()["error"]
    rows = "x1,x2,label\n" + "".join(f"{i % 7 / 7},{i % 5 / 5},{i % 2}\n" for i in range(40))
    ok = client.post("/api/upload", content=rows.encode())
    assert ok.status_code == 200 and ok.json()["rows"] == 40
    with client.websocket_connect("/ws") as ws:
        ws.send_json({"type": "init", "settings": {**FAST, "data": "csv", "csv": ok.json()["id"]}})
        f = until(ws, frame)
        assert len(f["points"]["train"]) == 28


def test_trajectory_mode_runs_the_trajectories_functions(client):
    with client.websocket_connect("/ws") as ws:
        ws.send_json({"type": "trajectory", "function": "rosenbrock", "optimizers": ["gd", "adam:lr=0.05"],
                      "steps": 200})
        m = until(ws, lambda m: m["type"] == "trajectory")
    assert [p["label"] for p in m["paths"]] == ["gd", "adam:lr=0.05"]
    assert all(len(p["path"]) == 201 for p in m["paths"])


def test_only_its_own_assets_are_served(client):
    assert client.get("/").status_code == 200
    assert client.get("/static/app.js").status_code == 200
    assert client.get("/static/../live.py").status_code == 404
    assert client.get("/etc/passwd").status_code == 404


def test_page_features_become_data_input_features():
    torch.manual_seed(0)
    cfg = parse_config(config_from_settings({**DEFAULTS, "features": "x1,x2,x1*x2"}))
    assert cfg.data.input_features == ["x1", "x2", "x1*x2"]


def test_the_cli_names_the_extra_when_the_server_packages_are_missing(monkeypatch, capsys):
    import sys

    from trainlab import cli

    monkeypatch.setitem(sys.modules, "uvicorn", None)  # import uvicorn now raises ModuleNotFoundError
    assert cli.main(["playground", "--no-browser"]) == 1
    err = capsys.readouterr().err.strip()
    assert err == "trainlab playground: the playground needs uvicorn: pip install 'trainlab[playground]'"


def test_a_failing_build_is_told_and_the_page_can_go_on(client):
    rows = "x1,x2,label\n" + "".join(f"{i / 40},{i % 3 / 3},{i % 2}\n" for i in range(40))
    up = client.post("/api/upload", content=rows.encode()).json()
    path = client.root / "uploads" / f"{up['id']}.csv"
    path.unlink()  # the file went away after the upload: the worker's build fails
    settings = {**FAST, "data": "csv", "csv": up["id"]}
    with client.websocket_connect("/ws") as ws:
        ws.send_json({"type": "init", "settings": settings})
        assert "a.csv" not in until(ws, lambda m: m["type"] == "error")["message"]
        path.write_text(rows)
        ws.send_json({"type": "settings", "settings": {**settings, "lr": 0.2}})  # after a failed build: rebuilt
        assert until(ws, lambda m: frame(m) and "points" in m)["step"] == 0


def test_a_schedule_switched_on_live_scales_the_configured_lr_at_the_runs_present_epoch(client):
    settings = {**FAST, "epochs": 50, "lr": 0.2}
    with client.websocket_connect("/ws") as ws:
        ws.send_json({"type": "init", "settings": settings})
        ws.send_json({"type": "step", "n": 18})  # 6 steps an epoch (120 · 0.7 / 20): into the 4th epoch
        until(ws, lambda m: frame(m) and m["step"] == 18)
        ws.send_json({"type": "settings", "settings": {**settings, "schedule": "exponential",
                                                       "schedule_options": "gamma: 0.5"}})
        ws.send_json({"type": "step"})
        f = until(ws, lambda m: frame(m) and m["step"] == 19)
    # set when the schedule came in (epoch index 3), before the next epoch begins: lr · γ³
    assert f["lr"] == pytest.approx(0.2 * 0.5 ** 3)
