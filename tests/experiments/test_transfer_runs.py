"""Transfer learning from configs: data.classes, model.pretrained (another run folder), model.freeze."""

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from trainlab.data import mnist
from trainlab.experiments.config import ConfigError, parse_config
from trainlab.experiments.runner import PretrainedRunError, run_experiment


def _write_fake_mnist(root):
    # 60,000 + 10,000 images whose label is i mod 10, and a pixel that tells the classes apart
    root.mkdir(parents=True, exist_ok=True)
    for (stem_x, stem_y), n in (((mnist.TRAIN_IMAGES, mnist.TRAIN_LABELS), 60_000),
                                ((mnist.TEST_IMAGES, mnist.TEST_LABELS), 10_000)):
        labels = (np.arange(n) % 10).astype(np.uint8)
        images = np.zeros((n, 28, 28), dtype=np.uint8)
        images[np.arange(n), labels, labels] = 255
        mnist.write_idx(root / stem_x, images)
        mnist.write_idx(root / stem_y, labels)
    return root


@pytest.fixture(scope="module")
def fake_root(tmp_path_factory):
    return _write_fake_mnist(tmp_path_factory.mktemp("fake_mnist"))


def _cfg(root, classes, **model):
    return {"name": "t", "seed": 0,
            "data": {"name": "mnist", "source": "idx", "root": str(root), "classes": classes, "limit": 300,
                     "val_size": 1000},
            "model": {"kind": "mlp", "hidden": [16, 8], **model}, "optimizer": {"name": "adam", "lr": 0.01},
            "train": {"epochs": 3, "batch_size": 16}, "diagnostics": None}


def test_classes_keep_and_relabel_every_part(fake_root):
    train, val, test = mnist.load_mnist("idx", root=fake_root, classes=[7, 2, 9], val_size=1000, limit=50)
    assert len(train) == 50 and train.classes == 3
    for ds in (train, val, test):
        assert set(ds.y.tolist()) == {0, 1, 2}
        # relabelled in the order given: 7 → 0, 2 → 1, 9 → 2 (the pixel at (label, label) says which)
        original = ds.X.reshape(len(ds), 28, 28).diagonal(dim1=1, dim2=2).argmax(1)
        assert torch.equal(torch.tensor([7, 2, 9])[ds.y], original)
    for bad in ([3], [1, 1], [0, 10], "5"):
        with pytest.raises(ValueError, match="classes"):
            mnist.load_mnist("idx", root=fake_root, classes=bad)


def test_pretrain_on_digits_0_4_then_transfer_to_6_9_frozen(fake_root, tmp_path):
    first = run_experiment(_cfg(fake_root, [0, 1, 2, 3, 4]), run_dir=tmp_path / "digits", verbose=False)
    assert first.final["val_accuracy"] > 0.9
    cfg = _cfg(fake_root, [6, 7, 8, 9], pretrained=str(tmp_path / "digits"), freeze=["blocks.0"])
    second = run_experiment(cfg, run_dir=tmp_path / "transfer", verbose=False)
    before = load_file(str(tmp_path / "digits" / "weights.safetensors"))
    after = load_file(str(tmp_path / "transfer" / "weights.safetensors"))
    # the frozen first layer is the pretrained one bit for bit; the second trained on; the head is new (4 classes)
    for name in ("blocks.0.linear.weight", "blocks.0.linear.bias"):
        assert torch.equal(before[name], after[name])
    assert not torch.equal(before["blocks.1.linear.weight"], after["blocks.1.linear.weight"])
    assert before["out.weight"].shape == (5, 8) and after["out.weight"].shape == (4, 8)
    losses = second.history.history["loss"]
    assert losses[-1] < losses[0]  # the unfrozen layers train
    # the run folder records where it came from
    text = (tmp_path / "transfer" / "config.yaml").read_text()
    assert "pretrained:" in text and "digits" in text and "blocks.0" in text
    # the transfer run loads, and resumes, without its source run
    import shutil

    from trainlab.experiments.load import load_run
    from trainlab.experiments.runner import resume_run
    shutil.rmtree(tmp_path / "digits")
    loaded = load_run(tmp_path / "transfer")
    assert torch.equal(loaded.model.state_dict()["blocks.0.linear.weight"], after["blocks.0.linear.weight"])
    cfg["train"]["epochs"] = 4  # extend by one epoch: the frozen layer stays the pretrained one
    resume_run(tmp_path / "transfer", cfg, verbose=False)
    again = load_file(str(tmp_path / "transfer" / "weights.safetensors"))
    assert torch.equal(again["blocks.0.linear.weight"], before["blocks.0.linear.weight"])


def test_transfer_errors_are_typed_and_name_the_field(fake_root, tmp_path):
    # the source folder is checked when a run starts (a finished run's config loads without it)
    with pytest.raises(PretrainedRunError, match=r"model.pretrained=.*no such folder"):
        run_experiment(_cfg(fake_root, [0, 1], pretrained=str(tmp_path / "missing")), run_dir=tmp_path / "o1")
    (tmp_path / "not-a-run").mkdir()
    with pytest.raises(ConfigError, match="not a run folder"):
        run_experiment(_cfg(fake_root, [0, 1], pretrained=str(tmp_path / "not-a-run")), run_dir=tmp_path / "o2")
    assert not (tmp_path / "o1").exists() and not (tmp_path / "o2").exists()
    with pytest.raises(ConfigError, match=r"model.freeze=.*no layer named 'encoder'"):
        parse_config(_cfg(fake_root, [0, 1], freeze=["encoder"]))
    with pytest.raises(ConfigError, match="model.freeze"):
        parse_config(_cfg(fake_root, [0, 1], freeze=[{"a": 1}]))
    with pytest.raises(ConfigError, match="data.classes"):
        parse_config(_cfg(fake_root, [4]))
    # a pretrained run of another architecture: a typed error naming the tensors, before any folder is made
    run_experiment(_cfg(fake_root, [0, 1]), run_dir=tmp_path / "small", verbose=False)
    wide = _cfg(fake_root, [0, 1], pretrained=str(tmp_path / "small"))
    wide["model"]["hidden"] = [32, 8]
    with pytest.raises(PretrainedRunError, match=r"blocks.0.linear.weight: pretrained \[16, 784\] vs model \[32, 784\]"):
        run_experiment(wide, run_dir=tmp_path / "wide", verbose=False)
    assert not (tmp_path / "wide").exists()
