"""The playground in a real browser: headless Chromium driven by Playwright, one server and one
browser for the module (see conftest.py). Every wait is for a condition on the page."""
from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest
import yaml

FAST = "n=120&batch_size=20"
TIMEOUT = 30_000


@pytest.fixture(scope="module")
def context(browser, server):
    ctx = browser.new_context(viewport={"width": 1440, "height": 900},
                              permissions=["clipboard-read", "clipboard-write"], base_url=server[0])
    ctx.set_default_timeout(TIMEOUT)
    yield ctx
    ctx.close()


@pytest.fixture
def page(context):
    p = context.new_page()
    errors: list[str] = []
    p.on("pageerror", lambda e: errors.append(str(e)))
    yield p
    p.close()
    assert not errors, errors


def tid(name: str) -> str:
    return f'[data-testid="{name}"]'


def open_page(page, query: str = FAST):
    page.goto("/?" + query)
    page.wait_for_function("Number(document.body.dataset.frames) > 0")


def iteration(page) -> int:
    return int(page.inner_text(tid("iteration")))


def wait_steps(page, n: int):
    page.wait_for_function(f"Number(document.querySelector('{tid('iteration')}').textContent) >= {n}")


def value(page, name: str) -> float:
    return float(page.get_attribute(tid(name), "data-value"))


def set_setting(page, key: str, text: str):
    page.fill(tid(f"set-{key}"), text)
    page.dispatch_event(tid(f"set-{key}"), "change")


def test_play_trains_and_the_boundary_changes_and_rewind_restores_the_init(page):
    open_page(page)
    assert page.is_visible(tid("boundary")) and iteration(page) == 0
    start_loss = value(page, "test-loss")
    start_pixels = page.eval_on_selector(tid("boundary"), "c => c.toDataURL()")
    start_weights = page.get_attribute(tid("checksum"), "data-value")
    page.click(tid("play"))
    wait_steps(page, 150)
    page.click(tid("play"))  # pause
    page.wait_for_function(f"document.querySelector('{tid('state')}').textContent === 'paused'")
    page.wait_for_function(f"Number(document.querySelector('{tid('test-loss')}').dataset.value) < {start_loss}")
    assert page.eval_on_selector(tid("boundary"), "c => c.toDataURL()") != start_pixels
    assert page.get_attribute(tid("checksum"), "data-value") != start_weights
    page.click(tid("rewind"))
    page.wait_for_function(f"document.querySelector('{tid('iteration')}').textContent === '0'")
    page.wait_for_function(f"document.querySelector('{tid('checksum')}').dataset.value === '{start_weights}'")


def test_changing_the_lr_live_takes_effect_without_a_reset(page):
    open_page(page)
    page.click(tid("step"))
    wait_steps(page, 1)
    for _ in range(4):
        page.click(tid("step"))
    wait_steps(page, 5)
    set_setting(page, "lr", "0.0123")
    page.click(tid("step"))
    page.wait_for_function(f"document.querySelector('{tid('lr-now')}').textContent === '0.0123'")
    assert iteration(page) >= 6  # the step counter went on: no reset
    assert "lr=0.0123" in page.url


def test_a_url_round_trip_restores_every_setting(page, context):
    open_page(page)
    changes = {"data": "circles", "hidden": "4,6", "activation": "relu,tanh", "optimizer": "adam", "lr": "0.02",
               "batch_size": "full", "l2": "0.001", "init_weight": "he_normal", "norm": "layer", "seed": "3"}
    for key, text in changes.items():
        if key in ("data", "optimizer", "init_weight", "norm"):
            page.select_option(tid(f"set-{key}"), text)
        else:
            set_setting(page, key, text)
    page.check(tid("feature-x1*x2"))
    query = parse_qs(urlparse(page.url).query)
    assert {k: query[k][0] for k in changes} == changes and query["features"] == ["x1,x2,x1*x2"]
    before = page.eval_on_selector_all("[data-setting]", "els => els.map(e => [e.dataset.setting, e.type === 'checkbox' ? e.checked : e.value])")
    other = context.new_page()
    other.goto(page.url)
    other.wait_for_function("Number(document.body.dataset.frames) > 0")
    after = other.eval_on_selector_all("[data-setting]", "els => els.map(e => [e.dataset.setting, e.type === 'checkbox' ? e.checked : e.value])")
    assert after == before
    assert other.is_checked(tid("feature-x1*x2"))
    other.close()


def test_copy_as_config_runs_under_trainlab_run_to_the_same_final_loss(page, cli, tmp_path):
    open_page(page, FAST + "&epochs=3&optimizer=adam&lr=0.01")
    page.click(tid("play"))
    page.wait_for_function(f"document.querySelector('{tid('state')}').textContent === 'done'")
    page.wait_for_function(f"document.querySelector('{tid('iteration')}').textContent === '15'")
    final = value(page, "test-loss")
    page.click(tid("copy-config"))
    page.wait_for_function(f"document.querySelector('{tid('config-yaml')}').textContent.length > 0")
    text = page.inner_text(tid("config-yaml"))
    assert page.evaluate("navigator.clipboard.readText()") == text
    (tmp_path / "pg.yaml").write_text(text)
    out = cli("run", "pg.yaml", "--out", "run")
    assert out.returncode == 0, out.stderr
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert yaml.safe_load(text)["train"]["epochs"] == 3
    assert metrics["final"]["val_loss"] == pytest.approx(final, rel=1e-5)


def test_a_bad_csv_shows_an_error(page, tmp_path):
    open_page(page)
    bad = tmp_path / "bad.csv"
    bad.write_text("x1,x2,label\n0.1,0.2,0\n0.3,oops,1\n")
    page.set_input_files(tid("csv-file"), str(bad))
    page.wait_for_selector(f"{tid('error')}:not([hidden])")
    assert "line 3" in page.inner_text(tid("error"))
    page.click(tid("step"))  # the page and its run go on
    wait_steps(page, 1)


def test_a_diverging_lr_shows_the_diverging_verdict(page):
    open_page(page, FAST + "&lr=1000000")
    page.click(tid("play"))
    page.wait_for_selector(f"{tid('verdicts')} li[data-kind=diverging]")
    assert "learning rate" in page.inner_text(tid("verdicts")).lower()


def test_screenshot_for_the_docs(page, server):
    """Writes docs/images/playground.png when TRAINLAB_SCREENSHOT is set (``make`` does not)."""
    import os
    target = os.environ.get("TRAINLAB_SCREENSHOT")
    if not target:
        pytest.skip("set TRAINLAB_SCREENSHOT=docs/images/playground.png to refresh the README's screenshot")
    open_page(page, "data=spirals&classes=2&noise=0.02&n=500&hidden=16,16&activation=tanh&optimizer=adam&lr=0.03")
    page.set_default_timeout(180_000)  # a picture of a run that has learned: some thousand steps
    page.click(tid("play"))
    wait_steps(page, 4000)
    page.click(tid("play"))
    page.wait_for_function(f"document.querySelector('{tid('state')}').textContent === 'paused'")
    Path(target).parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=target, full_page=True)


def test_race_mode_trains_two_runs_from_one_initialization(page):
    open_page(page, FAST + "&race=1&b_optimizer=adam&b_lr=0.01")
    for name in ("train-loss", "train-loss-b"):  # A's and B's first frames arrive in either order
        page.wait_for_function(f"document.querySelector('{tid(name)}').textContent !== '–'")
    a0, b0 = page.inner_text(tid("train-loss")), page.inner_text(tid("train-loss-b"))
    assert a0 == b0  # the same data and initial weights: the same loss before the first step
    for _ in range(3):
        page.click(tid("step"))
    wait_steps(page, 3)
    page.wait_for_function(f"document.querySelector('{tid('train-loss-b')}').textContent !== '{b0}'")


def test_trajectory_mode_draws_the_optimizers_paths(page):
    open_page(page, FAST + "&mode=trajectory")
    assert page.is_visible(tid("t-canvas")) and not page.is_visible(tid("boundary"))
    page.fill(tid("t-optimizers"), "gd\nadam:lr=0.05")
    page.fill(tid("t-steps"), "300")
    page.click(tid("t-run"))
    page.wait_for_function(f"document.querySelectorAll('{tid('t-table')} tr').length === 3")
    assert "adam:lr=0.05" in page.inner_text(tid("t-table"))
