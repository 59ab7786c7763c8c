"""Optimizers on 2-D test functions: the functions, the measures, the notes' claims, the CLI and plot."""
import math

import pytest
import torch

from trainlab.experiments import trajectories as T


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.mark.parametrize("name", ["rosenbrock", "beale", "quadratic"])
def test_each_function_has_its_stated_minimum(name):
    fn = T.FUNCTIONS[name]
    xy = torch.tensor(fn.minimum, dtype=torch.float64, requires_grad=True)
    value = fn.f(xy)
    value.backward()
    assert value.item() == pytest.approx(0.0, abs=1e-12)
    assert xy.grad.abs().max() < 1e-10
    # a grid of shape (2, H, W) evaluates pointwise (what the contour plot relies on)
    grid = torch.stack(torch.meshgrid(torch.linspace(-1, 1, 3), torch.linspace(-1, 1, 4), indexing="xy")).double()
    assert fn.f(grid).shape == (4, 3)
    assert fn.f(grid)[1, 2].item() == pytest.approx(fn.value(grid[:, 1, 2]))


def test_the_saddle_is_a_saddle():
    fn = T.FUNCTIONS["saddle"]
    H = torch.autograd.functional.hessian(lambda v: fn.f(v), torch.zeros(2, dtype=torch.float64))
    assert torch.linalg.eigvalsh(H).tolist() == pytest.approx([-2.0, 2.0])


def test_a_run_records_the_path_and_the_first_step_within_tolerance():
    tr = T.run_optimizer("quadratic", "gd", steps=50, tol=1e-3)
    assert tr.path.shape == (51, 2) and tr.path[0].tolist() == [-4.0, 1.0]
    fn = T.FUNCTIONS["quadratic"]
    values = [fn.value(p) for p in tr.path]
    assert tr.losses.tolist() == pytest.approx(values)
    first = next(i for i, v in enumerate(values) if v <= 1e-3) if min(values) <= 1e-3 else None
    assert tr.steps_to_tol == first
    assert tr.evaluations == 50


def test_measures_on_a_path_built_by_hand():
    path = torch.tensor([[2.0, 0.0], [1.0, 1.0], [0.5, -1.0], [-0.5, -0.5], [-0.2, 0.1], [0.0, 0.0]],
                        dtype=torch.float64)
    tr = T.Trajectory("hand", "quadratic", path, torch.zeros(6, dtype=torch.float64), 5, None)
    # steps (-1,1), (-0.5,-2), (-1,0.5), (0.3,0.6), (0.2,-0.1): consecutive dot products -1.5, -0.5, 0, 0
    d = [(-1, 1), (-0.5, -2), (-1, 0.5), (0.3, 0.6), (0.2, -0.1)]
    dots = [d[i][0] * d[i + 1][0] + d[i][1] * d[i + 1][1] for i in range(4)]
    assert tr.reversals() == sum(x < 0 for x in dots) == 2
    # x: start 2 → min 0, swings to −0.5: 0.25; y: start 0 = minimum, ignored
    assert tr.overshoot() == pytest.approx(0.25)
    assert tr.step_ratio(k=2) == pytest.approx(
        (math.hypot(0.3, 0.6) + math.hypot(0.2, 0.1)) / (math.hypot(1, 1) + math.hypot(0.5, 2)))


def test_the_notes_claims_hold_on_the_presets():
    claims = {c.text: c for c in T.notes_claims(scale=0.3)}
    assert len(claims) == 4
    for c in claims.values():
        assert c.holds, f"{c.text}: {c.evidence}"


def test_claims_measure_what_they_say():
    """The numbers behind the claims, from the full-length runs of the two cheap functions."""
    valley = T.run("quadratic", ["gd", "momentum", "nesterov"])
    assert valley["gd"].reversals() >= 2 * valley["momentum"].reversals() > 0
    assert valley["nesterov"].overshoot() < 0.6 * valley["momentum"].overshoot()
    saddle = T.run("saddle", ["gd", "adagrad", "rmsprop"], steps=400)
    assert saddle["gd"].steps_to_tol > 300 and saddle["rmsprop"].steps_to_tol < 40
    assert saddle["adagrad"].steps_to_tol is None     # its step dies before it escapes


def test_closure_methods_and_any_catalog_optimizer_can_be_named():
    res = T.run("rosenbrock", {"lbfgs": ("lbfgs", {"line_search_fn": "strong_wolfe"}),
                               "cg": ("nonlinear_cg", {}), "newton": ("newton", {"damping": 1e-3}),
                               "adam fast": "adam"}, steps=40)
    for label in ("lbfgs", "cg", "newton"):
        assert res[label].final_loss < 1e-8, label
    assert res["lbfgs"].evaluations > 40          # line searches cost evaluations
    with pytest.raises(ValueError, match="unknown optimizer"):
        T.run("quadratic", ["sgdd"])
    with pytest.raises(ValueError, match="unknown test function"):
        T.run("himmelblau", ["gd"])


def test_divergence_is_reported_not_hidden():
    tr = T.run_optimizer("quadratic", ("sgd", {"lr": 0.1}), steps=200)   # lr·50 = 5 > 2: diverges
    assert tr.stopped in ("diverged", "left the plot") and len(tr.path) < 201


def test_table_lists_every_optimizer_with_its_measures():
    res = T.run("saddle", ["gd", "adam"], steps=100)
    text = T.table(res)
    assert "steps to escape" in text and "gd" in text and "adam" in text
    assert "> 100" in text  # gd has not escaped after 100 steps


def test_parse_spec():
    assert T.parse_spec("adam:lr=0.1,amsgrad=true") == ("adam", {"lr": 0.1, "amsgrad": True})
    assert T.parse_spec("gd") == ("gd", {})
    with pytest.raises(ValueError, match="key=value"):
        T.parse_spec("adam:lr")


def test_cli_prints_tables_and_writes_the_plot(tmp_path, capsys):
    from trainlab.cli import main
    assert main(["trajectories", "-f", "quadratic", "-o", "gd", "-o", "adam:lr=0.1", "--steps", "60",
                 "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "quadratic" in out and "adam:lr=0.1" in out
    png = tmp_path / "quadratic.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
