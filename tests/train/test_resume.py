"""Resume: an interrupted-and-resumed CPU run ends with exactly the weights of an uninterrupted one."""
import copy

import pytest
import torch
from torch import nn

from trainlab.data import moons, split
from trainlab.nn import MLP
from trainlab.train import fit
from trainlab.train.callbacks import Callback, CSVLogger, EarlyStopping, ModelCheckpoint
from trainlab.train.checkpoint import CheckpointError, load_checkpoint

EPOCHS = 6


class Crash(Exception):
    pass


class CrashAfter(Callback):
    """Raises at the end of ``epoch`` after the checkpoint was written (a stand-in for a kill)."""

    order = 200  # after ModelCheckpoint

    def __init__(self, epoch):
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs):
        if epoch == self.epoch:
            raise Crash


def _setup():
    tr, va = split(moons(240, noise=0.25, seed=3), (0.7, 0.3), seed=3)
    torch.manual_seed(11)
    # dropout: the global RNG matters inside steps; Adam: the optimizer state matters
    model = MLP(2, (16, 16), 2, dropout=0.2)
    opt = torch.optim.Adam(model.parameters(), lr=0.02)
    return tr, va, model, opt


def _callbacks(tmp, extra=()):
    return [EarlyStopping(patience=100, restore_best_weights=False),
            CSVLogger(tmp / "log.csv"), ModelCheckpoint(tmp / "ckpt"), *extra]


def _run(tmp, crash_at=None, resume=False):
    tr, va, model, opt = _setup()
    cbs = _callbacks(tmp, [CrashAfter(crash_at)] if crash_at is not None else [])
    hist = fit(model, tr, va, loss="cross_entropy", optimizer=opt, epochs=EPOCHS, batch_size=16, seed=5,
               verbose=False, callbacks=cbs,
               resume_from=(tmp / "ckpt" / "last.safetensors") if resume else None)
    return model, opt, hist


def test_resume_equals_uninterrupted_bit_for_bit(tmp_path):
    ref_model, ref_opt, ref_hist = _run(tmp_path / "ref")
    with pytest.raises(Crash):
        _run(tmp_path / "cut", crash_at=2)
    assert load_checkpoint(tmp_path / "cut" / "ckpt" / "last.safetensors").epoch == 2
    torch.manual_seed(999)  # the resumed process starts from an unrelated RNG state
    model, opt, hist = _run(tmp_path / "cut", resume=True)
    for (k, a), (_, b) in zip(ref_model.state_dict().items(), model.state_dict().items()):
        assert torch.equal(a, b), k
    for pa, pb in zip(ref_opt.state.values(), opt.state.values()):
        for key in pa:
            assert torch.equal(pa[key], pb[key]), key
    assert hist.history == ref_hist.history or all(
        hist[k] == ref_hist[k] for k in ref_hist.history if k != "time")
    assert hist.epoch == list(range(EPOCHS))
    # the CSV log continues where the checkpoint left off, with no duplicate rows
    ref_rows = (tmp_path / "ref" / "log.csv").read_text().splitlines()
    rows = (tmp_path / "cut" / "log.csv").read_text().splitlines()
    assert len(rows) == len(ref_rows) == EPOCHS + 1
    strip = lambda r: [c for i, c in enumerate(r.split(",")) if i != r.count(",")]  # noqa: E731 (drop time)
    assert [strip(r) for r in rows] == [strip(r) for r in ref_rows]


def test_resume_with_other_model_or_callbacks_is_refused(tmp_path):
    with pytest.raises(Crash):
        _run(tmp_path, crash_at=1)
    ckpt = tmp_path / "ckpt" / "last.safetensors"
    tr, va, _, _ = _setup()
    other = MLP(2, (8,), 2)
    with pytest.raises(CheckpointError, match="do not fit this model"):
        fit(other, tr, va, loss="cross_entropy", optimizer=torch.optim.Adam(other.parameters()), epochs=EPOCHS,
            verbose=False, callbacks=_callbacks(tmp_path), resume_from=ckpt, batch_size=16)
    _, _, model, opt = _setup()
    with pytest.raises(CheckpointError, match="callbacks"):
        fit(model, tr, va, loss="cross_entropy", optimizer=opt, epochs=EPOCHS, batch_size=16, verbose=False,
            callbacks=[ModelCheckpoint(tmp_path / "ckpt")], resume_from=ckpt)
    _, _, model, opt = _setup()
    with pytest.raises(CheckpointError, match="steps per epoch"):
        fit(model, tr, va, loss="cross_entropy", optimizer=opt, epochs=EPOCHS, batch_size=32, verbose=False,
            callbacks=_callbacks(tmp_path), resume_from=ckpt)


def test_resuming_a_finished_or_stopped_run_trains_no_more(tmp_path):
    tr, va, model, opt = _setup()
    fit(model, tr, va, loss="cross_entropy", optimizer=opt, epochs=3, batch_size=16, seed=1, verbose=False,
        callbacks=[ModelCheckpoint(tmp_path)])
    before = {k: v.clone() for k, v in model.state_dict().items()}
    _, _, model2, opt2 = _setup()
    hist = fit(model2, tr, va, loss="cross_entropy", optimizer=opt2, epochs=3, batch_size=16, verbose=False,
               callbacks=[ModelCheckpoint(tmp_path)], resume_from=tmp_path / "last.safetensors")
    assert hist.epoch == [0, 1, 2]
    for k, v in model2.state_dict().items():
        assert torch.equal(v, before[k])


# ---- through the runner and the command line ------------------------------------------------------

RUN_CFG = {"name": "resume", "seed": 3,
           "data": {"name": "moons", "n_samples": 240, "noise": 0.25},
           "model": {"kind": "mlp", "hidden": [16, 16], "dropout": 0.1},
           "optimizer": {"name": "adam", "lr": 0.02},
           "train": {"epochs": 5, "batch_size": 16},
           "callbacks": [{"name": "early_stopping", "patience": 50}, {"name": "csv_logger"}],
           "diagnostics": {"every": 1, "probe": 64}}


def test_runner_and_cli_resume_equal_uninterrupted_and_refuse_a_changed_config(tmp_path, capsys):
    from trainlab.cli import main
    from trainlab.experiments.runner import ResumeError, resume_run, run_experiment
    from trainlab.train.checkpoint import load_weights

    ref = run_experiment(RUN_CFG, run_dir=tmp_path / "ref", verbose=False)
    with pytest.raises(Crash):
        run_experiment(RUN_CFG, run_dir=tmp_path / "cut", verbose=False, callbacks=(CrashAfter(1),))
    assert not (tmp_path / "cut" / "metrics.json").exists()
    with pytest.raises(ResumeError, match="optimizer.lr: 0.02 → 0.5"):
        resume_run(tmp_path / "cut", {**RUN_CFG, "optimizer": {"name": "adam", "lr": 0.5}}, verbose=False)
    # fewer epochs is a different run (a longer one is an extension, tested in tests/experiments)
    assert main(["run", "--resume", str(tmp_path / "cut"), "--set", "train.epochs=3", "-q"]) == 2
    assert "train.epochs: 5 → 3" in capsys.readouterr().err
    assert main(["run", "--resume", str(tmp_path / "cut"), "-q"]) == 0
    resumed = copy.deepcopy(ref.model)
    load_weights(resumed, tmp_path / "cut" / "weights.safetensors")
    for (k, a), b in zip(ref.model.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), k
    import json
    m_ref = json.loads((tmp_path / "ref" / "metrics.json").read_text())
    m_cut = json.loads((tmp_path / "cut" / "metrics.json").read_text())
    assert [r["val_loss"] for r in m_cut["history"]] == [r["val_loss"] for r in m_ref["history"]]
    assert m_cut["diagnostics"]["records"] == m_ref["diagnostics"]["records"]
    assert (tmp_path / "cut" / "log.csv").read_text().count("\n") == 6
    with pytest.raises(ResumeError, match="no config.yaml"):
        resume_run(tmp_path / "nothing", verbose=False)


def test_resume_restores_a_seeded_augmentation_generator(tmp_path):
    from trainlab.data.augment import Compose, GaussianNoise, Shift

    g = torch.Generator().manual_seed(0)
    X, y = torch.rand(96, 16, generator=g), torch.randint(0, 3, (96,), generator=g)  # 4×4 "images"

    def run(crash_at=None, resume=False):
        torch.manual_seed(1)
        model = MLP(16, (12,), 3)
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        aug = Compose([Shift(0.2, seed=5), GaussianNoise(0.1, seed=6)])
        cbs = [ModelCheckpoint(tmp_path)] + ([CrashAfter(crash_at)] if crash_at is not None else [])
        fit(model, (X, y), loss="cross_entropy", optimizer=opt, epochs=4, batch_size=16, seed=2, verbose=False,
            callbacks=cbs, augment=aug, resume_from=tmp_path / "last.safetensors" if resume else None)
        return model

    ref = run()
    with pytest.raises(Crash):
        run(crash_at=1)
    assert len(load_checkpoint(tmp_path / "last.safetensors").rng["augment"]) == 2
    resumed = run(resume=True)
    assert all(torch.equal(a, b) for a, b in zip(ref.state_dict().values(), resumed.state_dict().values()))


# ---- a resume is checked completely before anything changes --------------------------------------

def _crashed(tmp):
    with pytest.raises(Crash):
        _run(tmp, crash_at=1)
    return tmp / "ckpt" / "last.safetensors"


def _resume_with(tmp, **over):
    tr, va, model, opt = _setup()
    args = dict(loss="cross_entropy", optimizer=opt, epochs=EPOCHS, batch_size=16, seed=5, verbose=False,
                callbacks=_callbacks(tmp), resume_from=tmp / "ckpt" / "last.safetensors")
    data = over.pop("data", (tr, va))
    args.update(over)
    return fit(model, *data, **args)


def test_a_refused_resume_leaves_the_csv_log_as_it_was(tmp_path):
    _crashed(tmp_path)
    log = tmp_path / "log.csv"
    before = log.read_text()
    assert before.count("\n") == 3  # header and two epochs
    _, _, model, _ = _setup()
    for over in ({"optimizer": torch.optim.Adam(model.parameters(), lr=0.5)},
                 {"callbacks": _callbacks(tmp_path, [EarlyStopping(monitor="loss")])},
                 {"batch_size": 32}):
        with pytest.raises(CheckpointError):
            _resume_with(tmp_path, **over)
        assert log.read_text() == before


def test_fit_refuses_another_optimizer_lr_seed_or_data_naming_what_differs(tmp_path):
    ckpt = _crashed(tmp_path)
    tr, va, model, _ = _setup()
    cases = [
        ({"optimizer": torch.optim.SGD(model.parameters(), lr=0.02)},
         "optimizer: torch.optim.adam.Adam → torch.optim.sgd.SGD"),
        ({"optimizer": torch.optim.Adam(model.parameters(), lr=0.5)}, "optimizer.lr: 0.02 → 0.5"),
        ({"optimizer": torch.optim.Adam(model.parameters(), lr=0.02, betas=(0.5, 0.9))},
         r"optimizer.betas: \[0.9, 0.999\] → \[0.5, 0.9\]"),
        ({"seed": 6}, "seed: 5 → 6"),
        ({"data": ((tr.X + 1, tr.y), va)}, "train data: same number of samples, different values"),
        ({"data": (tr, None)}, "val data: given → none"),
    ]
    for over, message in cases:
        with pytest.raises(CheckpointError, match=message) as err:
            _resume_with(tmp_path, **over)
        assert str(ckpt) in str(err.value)
    _resume_with(tmp_path)  # the same run resumes
    _resume_with(tmp_path, seed=None)  # no seed given: the checkpoint's RNG state decides


def test_a_malformed_callback_state_is_refused_before_the_log_is_touched(tmp_path):
    from trainlab.train.checkpoint import save_checkpoint

    path = _crashed(tmp_path)
    ck = load_checkpoint(path)
    for entry in ck.callbacks:
        if entry["type"] == "EarlyStopping":
            del entry["state"]["wait"]
    save_checkpoint(path, ck)
    before = (tmp_path / "log.csv").read_text()
    with pytest.raises(CheckpointError, match="EarlyStopping does not load"):
        _resume_with(tmp_path)
    assert (tmp_path / "log.csv").read_text() == before


def test_cli_refused_resume_is_one_line_and_leaves_the_run_log_intact(tmp_path, cli):
    from trainlab.experiments.runner import run_experiment
    from trainlab.train.checkpoint import save_checkpoint

    with pytest.raises(Crash):
        run_experiment(RUN_CFG, run_dir=tmp_path / "cut", verbose=False, callbacks=(CrashAfter(1),))
    path = tmp_path / "cut" / "checkpoints" / "last.safetensors"
    ck = load_checkpoint(path)
    for entry in ck.callbacks:
        if entry["type"] == "EarlyStopping":
            entry["state"]["best"] = "not a number"
    save_checkpoint(path, ck)
    log = tmp_path / "cut" / "log.csv"
    before = log.read_text()
    res = cli("run", "--resume", "cut", "-q")
    assert res.returncode != 0
    assert "EarlyStopping does not load" in res.stderr and str(path.name) in res.stderr
    assert "Traceback" not in res.stderr and len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert log.read_text() == before


def test_trying_saved_states_before_a_resume_leaves_a_plateau_schedule_exact(tmp_path):
    """check_resume tries each saved state on a copy of its callback; the real ones (a plateau
    schedule that lowered the lr, early stopping) must end exactly as in the uninterrupted run."""
    from trainlab.train.callbacks import ReduceLROnPlateau

    def run(tmp, crash_at=None, resume=False):
        tr, va, model, opt = _setup()
        cbs = [ReduceLROnPlateau(monitor="loss", patience=0, factor=0.5, min_delta=10.0),
               EarlyStopping(patience=100), ModelCheckpoint(tmp)]
        if crash_at is not None:
            cbs.append(CrashAfter(crash_at))
        hist = fit(model, tr, va, loss="cross_entropy", optimizer=opt, epochs=EPOCHS, batch_size=16, seed=5,
                   verbose=False, callbacks=cbs, resume_from=tmp / "last.safetensors" if resume else None)
        return model, hist

    ref, ref_hist = run(tmp_path / "ref")
    assert ref_hist["lr"][-1] < ref_hist["lr"][0]  # the schedule really acted
    with pytest.raises(Crash):
        run(tmp_path / "cut", crash_at=2)
    model, hist = run(tmp_path / "cut", resume=True)
    assert hist["lr"] == ref_hist["lr"]
    assert all(torch.equal(a, b) for a, b in zip(ref.state_dict().values(), model.state_dict().values()))
