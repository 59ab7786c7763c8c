"""trainlab.load_run and trainlab export: the loaded and the exported model predict what the run's model did."""
import json
import os

import pytest
import torch

import trainlab
from trainlab.experiments.export import ExportError, deployable_copy, export_model, export_run
from trainlab.experiments.load import RunLoadError, load_run
from trainlab.experiments.runner import build_data, run_experiment
from trainlab.nn import MLP, models
from trainlab.train.loop import evaluate

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")

TINY = {"name": "tiny", "seed": 3, "data": {"name": "moons", "n_samples": 240, "noise": 0.2},
        "model": {"kind": "mlp", "hidden": [12, 12], "activation": "tanh", "norm": "batch", "dropout": 0.2},
        "optimizer": {"name": "adam", "lr": 0.02}, "train": {"epochs": 3, "batch_size": 32}}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    torch.set_num_threads(1)
    run_dir = tmp_path_factory.mktemp("runs") / "tiny"
    result = run_experiment(TINY, run_dir=run_dir, verbose=False)
    return result, run_dir


def test_load_run_gives_the_trained_model_config_and_history(trained):
    result, run_dir = trained
    run = trainlab.load_run(run_dir)
    assert not run.model.training  # eval mode: dropout off, batch norm on its running statistics
    assert run.config == result.config
    assert run.history.epoch == result.history.epoch and run.history.history == result.history.history
    X = build_data(run.config).val.X
    result.model.eval()
    with torch.no_grad():
        assert torch.equal(run.model(X), result.model(X))
    # the numbers the run reported are those of the loaded model
    val = evaluate(run.model, build_data(run.config).val, "cross_entropy")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert val["loss"] == pytest.approx(metrics["final"]["val_loss"], rel=1e-6)
    assert val["accuracy"] == metrics["final"]["val_accuracy"]
    labels = run.predict(X.numpy())  # numpy float64 is cast to the model's dtype
    assert labels.dtype == torch.int64 and torch.equal(labels, run.predict_proba(X).argmax(1))
    assert float((labels == build_data(run.config).val.y).double().mean()) == metrics["final"]["val_accuracy"]
    assert torch.equal(run.data().val.X, X)


def test_load_run_refuses_what_is_not_a_finished_run(tmp_path, trained):
    with pytest.raises(RunLoadError, match="no config.yaml"):
        load_run(tmp_path)
    with pytest.raises(RunLoadError, match="is not a folder"):
        load_run(tmp_path / "missing")
    _, run_dir = trained
    partial = tmp_path / "partial"
    partial.mkdir()
    (partial / "config.yaml").write_text((run_dir / "config.yaml").read_text())
    with pytest.raises(RunLoadError, match="trainlab run --resume"):
        load_run(partial)
    wrong = tmp_path / "wrong"
    wrong.mkdir()
    (wrong / "config.yaml").write_text((run_dir / "config.yaml").read_text().replace("  - 12\n  - 12\n", "  - 12\n  - 7\n"))
    (wrong / "weights.safetensors").write_bytes((run_dir / "weights.safetensors").read_bytes())
    with pytest.raises(RunLoadError, match="does not fit the model"):
        load_run(wrong)


def test_torchscript_export_predicts_what_the_loaded_model_predicts(trained, tmp_path):
    _, run_dir = trained
    path = export_run(run_dir, "torchscript", tmp_path / "m.pt")
    scripted = torch.jit.load(str(path))
    run = load_run(run_dir)
    X = build_data(run.config).val.X[:37]  # another batch size than the one traced
    with torch.no_grad():
        assert torch.allclose(scripted(X), run.model(X), atol=1e-6)


def test_onnx_export_predicts_what_the_loaded_model_predicts(trained, tmp_path):
    pytest.importorskip("onnx")
    from onnx.reference import ReferenceEvaluator

    _, run_dir = trained
    path = export_run(run_dir, "onnx")
    assert path == run_dir / "model.onnx"
    run = load_run(run_dir)
    X = build_data(run.config).val.X[:29]
    (out,) = ReferenceEvaluator(str(path)).run(None, {"input": X.numpy()})
    with torch.no_grad():
        assert torch.allclose(torch.from_numpy(out), run.model(X), atol=1e-5)


@pytest.mark.parametrize("activation", sorted(models.ACTIVATIONS))
def test_every_activation_exports_with_the_same_outputs(activation, tmp_path):
    torch.manual_seed(0)
    options = {"activation_kwargs": {"alpha": -1.0}} if activation == "rectifier" else {}
    model = MLP(3, hidden=(6,), out_features=2, activation=activation, **options).eval()
    X = torch.randn(9, 3) * 2
    copy = deployable_copy(model)
    with torch.no_grad():
        assert torch.allclose(copy(X), model(X), atol=1e-6)
    scripted = torch.jit.load(str(export_model(model, X[:2], tmp_path / "m.pt")))
    with torch.no_grad():
        assert torch.allclose(scripted(X), model(X), atol=1e-6)


@pytest.mark.parametrize("norm", sorted(models.NORMS))
@pytest.mark.parametrize("dropout_kind", sorted(models.DROPOUTS))
def test_normalized_and_dropout_models_export_with_the_same_outputs(norm, dropout_kind, tmp_path):
    torch.manual_seed(0)
    model = MLP(3, hidden=(6, 5), out_features=2, norm=norm, dropout=0.3, dropout_kind=dropout_kind)
    X = torch.randn(9, 3)
    trainlab.fit(model, (X, torch.randint(0, 2, (9,))), loss="cross_entropy", epochs=1, verbose=False,
                 optimizer=torch.optim.SGD(model.parameters(), lr=0.1), seed=0)  # running statistics move
    model.eval()
    scripted = torch.jit.load(str(export_model(model, X[:2], tmp_path / "m.pt")))
    with torch.no_grad():
        assert torch.allclose(scripted(X), model(X), atol=1e-6)


@pytest.mark.parametrize("norm", [None, "batch"])
def test_cnn_exports_with_the_same_outputs_for_flat_and_image_inputs(norm, tmp_path):
    from trainlab.experiments import catalog

    torch.manual_seed(0)
    model = catalog.MODELS["cnn"](in_shape=(1, 8, 8), channels=(4,), hidden=8, classes=3, norm=norm,
                                  dropout=0.2).eval()
    for X in (torch.rand(5, 1, 8, 8), torch.rand(5, 64)):
        scripted = torch.jit.load(str(export_model(model, X[:2], tmp_path / "c.pt")))
        with torch.no_grad():
            assert torch.allclose(scripted(X), model(X), atol=1e-6)


def test_missing_onnx_is_one_clear_error(monkeypatch, trained):
    from trainlab.experiments import export

    monkeypatch.setattr(export, "onnx_available", lambda: False)
    with pytest.raises(ExportError, match="pip install onnx"):
        export_run(trained[1], "onnx")
    with pytest.raises(ExportError, match="allowed: torchscript, onnx"):
        export_run(trained[1], "tflite")


def test_cli_export(cli, tmp_path):
    (tmp_path / "exp.yaml").write_text(
        "name: e\ndata: {name: moons, n_samples: 120}\nmodel: {hidden: [6]}\ntrain: {epochs: 1}\n")
    assert cli("run", "exp.yaml", "--out", "r", "-q", "--no-store").returncode == 0
    res = cli("export", "r")
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == os.path.join("r", "model.pt") and (tmp_path / "r" / "model.pt").is_file()
    res = cli("export", "nowhere")
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and "nowhere is not a folder" in res.stderr
    # without the onnx package: one line naming the fix (a stand-in 'onnx' that cannot be imported)
    shadow = tmp_path / "shadow" / "onnx"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('not installed')\n")
    env = {"PYTHONPATH": os.pathsep.join(p for p in (str(shadow.parent), os.environ.get("PYTHONPATH")) if p)}
    res = cli("export", "r", "--format", "onnx", env=env)
    assert res.returncode == 1 and res.stderr == "trainlab export: exporting to ONNX needs the onnx package: " \
                                                 "pip install onnx\n"


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_a_run_trained_on_a_gpu_loads_exports_and_resumes_on_a_machine_without_one(cli, tmp_path):
    from trainlab.train.checkpoint import load_checkpoint, save_checkpoint

    (tmp_path / "exp.yaml").write_text("name: g\ndata: {name: moons, n_samples: 120}\nmodel: {hidden: [6]}\n"
                                       "train: {epochs: 2, device: cpu}\n")
    assert cli("run", "exp.yaml", "--out", "r", "-q").returncode == 0
    before = trainlab.load_run(tmp_path / "r")
    # the folder as a GPU machine writes it: config.yaml and the checkpoint's config name cuda
    config = tmp_path / "r" / "config.yaml"
    config.write_text(config.read_text().replace("device: cpu", "device: cuda"))
    last = tmp_path / "r" / "checkpoints" / "last.safetensors"
    ckpt = load_checkpoint(last)
    ckpt.extra["config"]["train"]["device"] = "cuda"
    save_checkpoint(last, ckpt)

    run = trainlab.load_run(tmp_path / "r")
    assert next(run.model.parameters()).device.type == "cpu"
    X = torch.tensor([[0.0, 0.5], [1.5, -0.3]])
    assert torch.equal(run.predict(X), before.predict(X))
    res = cli("export", "r")
    assert res.returncode == 0, res.stderr
    res = cli("run", "--resume", "r", "--epochs", "3", "-q")
    assert res.returncode == 0, res.stderr
    assert "train.device='cuda' is not on this machine; using cpu" in res.stderr
    assert len(json.loads((tmp_path / "r" / "metrics.json").read_text())["history"]) == 3
    res = cli("run", "--resume", "r", "--epochs", "4", "--device", "cpu", "-q")
    assert res.returncode == 0, res.stderr


def test_exporting_a_diverged_run_says_its_weights_are_not_finite(cli, tmp_path):
    res = cli("run", "--out", "nan", "--optimizer", "sgd", "--lr", "1e6", "--set", "data.n_samples=120",
              "--epochs", "2", "--no-store", "-q")
    assert res.returncode == 1 and (tmp_path / "nan" / "weights.safetensors").is_file()
    res = cli("export", "nan")
    assert res.returncode == 1 and res.stderr.count("\n") == 1
    assert "weights hold NaN or Inf (the training diverged)" in res.stderr and "report" not in res.stderr
    assert not (tmp_path / "nan" / "model.pt").exists()
