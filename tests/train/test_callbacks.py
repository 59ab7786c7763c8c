"""Callbacks tested the Keras way: a made-up sequence of monitored values drives a real fit."""
import csv
import math

import pytest
import torch

from trainlab.nn import MLP
from trainlab.train import Callback, NonFiniteLossError, fit
from trainlab.train.callbacks import CSVLogger, EarlyStopping, ModelCheckpoint, TensorBoard, TerminateOnNaN
from trainlab.train.checkpoint import load_checkpoint, nonfinite_entries

X = torch.randn(32, 2, generator=torch.Generator().manual_seed(0))
Y = (X[:, 0] > 0).long()


class Feed(Callback):
    """Overwrites logs[key] with values[epoch] before the other callbacks see them, and keeps a
    copy of the weights after every epoch."""

    order = -10

    def __init__(self, values, key="val_loss"):
        self.values, self.key, self.snapshots = values, key, []

    def on_epoch_end(self, epoch, logs):
        logs[self.key] = self.values[epoch]
        self.snapshots.append({k: v.clone() for k, v in self.loop.model.state_dict().items()})


def _fit(callbacks, epochs, loss="cross_entropy"):
    torch.manual_seed(0)
    model = MLP(2, (8,), 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    hist = fit(model, (X, Y), (X, Y), loss=loss, optimizer=opt, epochs=epochs, batch_size=8, seed=0,
               verbose=False, callbacks=callbacks)
    return model, hist


def _same(model, snapshot):
    return all(torch.equal(v, snapshot[k]) for k, v in model.state_dict().items())


def test_early_stopping_stops_after_patience_and_restores_best():
    feed = Feed([0.5, 0.4, 0.45, 0.41, 0.42, 0.43, 0.1, 0.1])
    es = EarlyStopping(patience=2, restore_best_weights=True)
    model, hist = _fit([feed, es], epochs=8)
    assert es.stopped_epoch == 4 and len(hist.epoch) == 4  # epochs count from 1
    assert es.best_epoch == 2 and es.best == 0.4
    assert _same(model, feed.snapshots[1]) and not _same(model, feed.snapshots[3])


def test_early_stopping_restores_best_weights_also_without_a_stop():
    feed = Feed([0.5, 0.3, 0.2, 0.25, 0.26])
    es = EarlyStopping(patience=10, restore_best_weights=True)
    model, hist = _fit([feed, es], epochs=5)
    assert es.stopped_epoch == 0 and len(hist.epoch) == 5
    assert _same(model, feed.snapshots[2])


def test_early_stopping_without_restore_keeps_last_weights():
    feed = Feed([0.5, 0.3, 0.4, 0.4])
    model, _ = _fit([feed, EarlyStopping(patience=1)], epochs=4)
    assert _same(model, feed.snapshots[2])


def test_min_delta_counts_small_changes_as_no_improvement():
    values = [1.0, 0.95, 0.91, 0.88, 0.86, 0.85]  # improvements of 0.05, 0.04, 0.03, ...
    es = EarlyStopping(patience=1, min_delta=0.045)
    _, hist = _fit([Feed(values), es], epochs=6)
    assert es.stopped_epoch == 3 and es.best_epoch == 2
    es = EarlyStopping(patience=1, min_delta=0.0)
    _, hist = _fit([Feed(values), es], epochs=6)
    assert es.stopped_epoch == 0 and len(hist.epoch) == 6


def test_mode_auto_maximizes_accuracy_and_explicit_modes():
    values = [0.5, 0.7, 0.6, 0.65, 0.9]
    es = EarlyStopping(monitor="val_accuracy", patience=2)
    assert es.mode == "max"
    _fit([Feed(values, "val_accuracy"), es], epochs=5)
    assert es.stopped_epoch == 4 and es.best == 0.7
    es = EarlyStopping(monitor="val_accuracy", patience=2, mode="min")
    _fit([Feed(values, "val_accuracy"), es], epochs=5)
    assert es.stopped_epoch == 3 and es.best == 0.5
    with pytest.raises(ValueError, match="mode='min' or mode='max'"):
        EarlyStopping(monitor="score")
    with pytest.raises(ValueError, match="patience"):
        EarlyStopping(patience=-1)


def test_baseline_must_be_beaten_before_the_wait_resets():
    values = [0.2, 0.3, 0.3, 0.3, 0.3]
    es = EarlyStopping(monitor="val_accuracy", patience=2, baseline=0.5)
    _fit([Feed(values, "val_accuracy"), es], epochs=5)
    assert es.stopped_epoch == 3
    es = EarlyStopping(monitor="val_accuracy", patience=2)
    _fit([Feed(values, "val_accuracy"), es], epochs=5)
    assert es.stopped_epoch == 4


def test_start_from_epoch_ignores_the_warm_up():
    values = [0.1, 0.9, 0.8, 0.7, 0.75, 0.76]
    es = EarlyStopping(patience=1, start_from_epoch=2)
    _fit([Feed(values), es], epochs=6)
    assert es.best_epoch == 4 and es.stopped_epoch == 5
    es = EarlyStopping(patience=1)
    _fit([Feed(values), es], epochs=6)
    assert es.stopped_epoch == 2


def test_missing_monitor_warns_once():
    es = EarlyStopping(monitor="val_nope_loss", patience=0)
    with pytest.warns(UserWarning, match="val_nope_loss"):
        _, hist = _fit([es], epochs=3)
    assert len(hist.epoch) == 3


def test_model_checkpoint_best_last_and_every_n(tmp_path):
    values = [0.9, 0.5, 0.7, 0.4, 0.6, 0.8]
    feed = Feed(values)
    mc = ModelCheckpoint(tmp_path, save_best=True, every_n_epochs=2)
    _fit([mc, feed], epochs=6)  # listed first, but checkpoints run after every other callback
    assert load_checkpoint(tmp_path / "last.safetensors").epoch == 5
    best = load_checkpoint(tmp_path / "best.safetensors")
    assert best.epoch == 3 and mc.best == 0.4
    assert all(torch.equal(v, feed.snapshots[3][k]) for k, v in best.model.items())
    assert sorted(p.name for p in tmp_path.glob("epoch-*")) == [
        "epoch-0002.safetensors", "epoch-0004.safetensors", "epoch-0006.safetensors"]
    # the history inside the checkpoint already holds that epoch's (fed) value
    hist_state = next(c["state"] for c in best.callbacks if c["type"] == "History")
    assert hist_state["history"]["val_loss"] == values[:4]
    with pytest.raises(ValueError, match="write nothing"):
        ModelCheckpoint(tmp_path, save_last=False)


def test_terminate_on_nan_stops_and_no_nan_checkpoint_is_written(tmp_path):
    feed = Feed([0.5, 0.4, float("nan"), 0.3, 0.2])
    ton = TerminateOnNaN()
    mc = ModelCheckpoint(tmp_path)
    with pytest.warns(UserWarning, match="not writing a checkpoint"):
        _, hist = _fit([feed, ton, mc], epochs=5)
    assert ton.stopped_epoch == 2 and "val_loss is nan" in ton.reason and len(hist.epoch) == 3
    assert mc.skipped == [2]
    assert load_checkpoint(tmp_path / "last.safetensors").epoch == 1


class NanLoss:
    """cross-entropy that turns NaN at a chosen call (a diverging step)."""

    def __init__(self, at):
        self.at, self.calls = at, 0

    def __call__(self, z, y):
        self.calls += 1
        loss = torch.nn.functional.cross_entropy(z, y)
        return loss * float("nan") if self.calls >= self.at else loss


def test_nan_training_loss_raises_with_epoch_and_step_and_keeps_last_good_checkpoint(tmp_path):
    with pytest.raises(NonFiniteLossError) as err:
        _fit([TerminateOnNaN(), ModelCheckpoint(tmp_path)], epochs=5, loss=NanLoss(at=13))  # 4 steps + 1 validation call per epoch
    assert (err.value.epoch, err.value.step) == (2, 2)
    assert "epoch 3, step 3" in str(err.value)
    ck = load_checkpoint(tmp_path / "last.safetensors")
    assert ck.epoch == 1 and nonfinite_entries(ck) == []


def test_terminate_on_nan_checks_weights_and_batch_losses():
    class Poison(Callback):
        def on_epoch_end(self, epoch, logs):
            if epoch == 1:
                with torch.no_grad():
                    self.loop.model.out.bias.fill_(math.inf)

    ton = TerminateOnNaN()
    _, hist = _fit([Poison(), ton], epochs=4)
    assert ton.stopped_epoch == 1 and "out.bias" in ton.reason and len(hist.epoch) == 2

    class Loop:  # a loop that reports non-finite batch losses instead of raising
        epoch, stop_training = 0, False

    ton = TerminateOnNaN()
    ton.set_loop(Loop())
    ton.on_batch_end(0, {"loss": 0.3})
    assert not ton.loop.stop_training
    ton.on_batch_end(1, {"loss": float("inf")})
    assert ton.loop.stop_training and ton.stopped_epoch == 0


def test_csv_logger_writes_rows_and_appends(tmp_path):
    path = tmp_path / "log.csv"
    _fit([CSVLogger(path)], epochs=3)
    rows = list(csv.DictReader(path.open()))
    assert [r["epoch"] for r in rows] == ["1", "2", "3"]
    assert {"loss", "accuracy", "val_loss", "val_accuracy", "lr", "time"} <= set(rows[0])
    assert all(math.isfinite(float(r["val_loss"])) for r in rows)
    _fit([CSVLogger(path, append=True)], epochs=2)
    rows = list(csv.DictReader(path.open()))
    assert [r["epoch"] for r in rows] == ["1", "2", "3", "1", "2"]
    _fit([CSVLogger(path, separator=";")], epochs=1)
    assert path.read_text().splitlines()[0].startswith("epoch;loss;")


def test_tensorboard_writes_event_files(tmp_path):
    pytest.importorskip("tensorboard")
    _fit([TensorBoard(tmp_path / "tb")], epochs=2)
    assert list((tmp_path / "tb").glob("events.out.tfevents.*"))


def test_callbacks_from_configs_write_into_the_run_folder(tmp_path):
    from trainlab.experiments import catalog
    from trainlab.experiments.config import ConfigError, parse_config

    mc = catalog.build_callback("model_checkpoint", {"save_best": True}, run_dir=tmp_path)
    assert isinstance(mc, ModelCheckpoint) and mc.dirpath == tmp_path / "checkpoints"
    log = catalog.build_callback("csv_logger", {"filename": "logs/a.csv"}, run_dir=tmp_path)
    assert log.filename == tmp_path / "logs" / "a.csv"
    with pytest.raises(ValueError, match="needs a run folder"):
        catalog.build_callback("csv_logger", {}, run_dir=None)
    cfg = parse_config({"callbacks": [{"name": "early_stopping", "patience": 2, "restore_best_weights": True},
                                      {"name": "terminate_on_nan"}]})
    assert [c.name for c in cfg.callbacks] == ["early_stopping", "terminate_on_nan"]
    with pytest.raises(ConfigError, match="callbacks.0.patiense"):
        parse_config({"callbacks": [{"name": "early_stopping", "patiense": 2}]})
