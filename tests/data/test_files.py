"""Own data from CSV and NPZ files: what loads, how, and one clear error for every malformed file."""
import struct
import tracemalloc
import zipfile

import numpy as np
import pytest
import torch

from trainlab.data import DataFileError, load_csv, load_npz

# --------------------------------------------------------------------------------------------
# CSV


def _csv(tmp_path, text, name="f.csv", encoding="utf-8"):
    p = tmp_path / name
    p.write_bytes(text.encode(encoding))
    return p


def test_csv_classification_regression_names_subsets_and_limit(tmp_path):
    p = _csv(tmp_path, "x1,x2,label\n0.5,1,0\n-1e-3,2.5,2\n\n3,4,1\n")  # -1e-3: YAML-style exponents too
    ds = load_csv(p)
    assert ds.X.dtype == torch.float32 and torch.equal(ds.X, torch.tensor([[0.5, 1.0], [-1e-3, 2.5], [3.0, 4.0]]))
    assert ds.y.dtype == torch.long and ds.y.tolist() == [0, 2, 1] and ds.classes == 3
    assert load_csv(p, features=["x2"]).X.tolist() == [[1.0], [2.5], [4.0]]
    assert len(load_csv(p, limit=2)) == 2
    reg = load_csv(p, "x2", task="regression")
    assert reg.y.dtype == torch.float32 and reg.y.shape == (3, 1) and reg.X.shape == (3, 2)
    assert not reg.is_classification
    # label names become class indices in sorted order; a byte-order mark and spaces are fine
    names = _csv(tmp_path, "\ufeff a ; species \n1;setosa\n2;virginica\n3;setosa\n", "n.csv")
    ds = load_csv(names, "species", delimiter=";")
    assert ds.y.tolist() == [0, 1, 0] and ds.X.tolist() == [[1.0], [2.0], [3.0]]
    # float targets are regression in auto mode
    assert not load_csv(_csv(tmp_path, "a,t\n1,0.5\n2,1.5\n", "r.csv"), "t").is_classification


@pytest.mark.parametrize("text, message", [
    ("", "is empty"),
    ("a,label\n", "not followed by any data row"),
    ("a,b\n1,2\n", "no target column 'label'; the columns are a, b"),
    ("a,label\n1,0\n2\n", r"line 3: 1 fields, the header has 2"),
    ("a,label\n1,0\nabc,1\n", r"line 3, column 'a': 'abc' is not a number"),
    ("a,label\n1,0\n,1\n", r"line 3, column 'a': a missing value"),
    ("a,label\n1,0\nnan,1\n", r"line 3, column 'a': 'nan' is not a finite number"),
    ("a,label\n1,0\n2,-1\n", "label -1 .* is negative"),
    ("a,a,label\n1,2,0\n", "names 'a' twice"),
    ("a,label\n1,0\n2,\n", "line 3: the target is missing"),
    ('a,label\n"1,0\n', "line"),  # an unterminated quote
])
def test_malformed_csv_files_raise_one_clear_error(tmp_path, text, message):
    p = _csv(tmp_path, text)
    with pytest.raises(DataFileError, match=message) as e:
        load_csv(p)
    assert str(p) in str(e.value)
    assert isinstance(e.value, ValueError)


def test_csv_encoding_size_and_task_errors(tmp_path):
    p = _csv(tmp_path, "a,label\n1,é\n", encoding="latin-1")
    with pytest.raises(DataFileError, match="not UTF-8"):
        load_csv(p)
    p = _csv(tmp_path, "a,label\n" + "1,0\n" * 1000, "big.csv")
    with pytest.raises(DataFileError, match="more than the 100 allowed"):
        load_csv(p, max_bytes=100)
    with pytest.raises(DataFileError, match="regression needs numeric targets"):
        load_csv(_csv(tmp_path, "a,label\n1,cat\n", "c.csv"), task="regression")
    with pytest.raises(DataFileError, match="not a whole number"):
        load_csv(_csv(tmp_path, "a,label\n1,0.5\n", "h.csv"), task="classification")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_csv(tmp_path / "missing.csv")


@pytest.mark.parametrize("kwargs, message", [
    ({"path": ""}, "path"), ({"path": 3}, "path"), ({"target": ""}, "target"),
    ({"features": []}, "features"), ({"features": ["a", "a"]}, "features"), ({"features": ["label"]}, "target"),
    ({"task": "clustering"}, "task"), ({"delimiter": ",,"}, "delimiter"), ({"limit": 0}, "limit"),
    ({"limit": 2.5}, "limit"), ({"max_bytes": 0}, "max_bytes"),
])
def test_csv_arguments_are_checked_before_reading(tmp_path, kwargs, message):
    args = {"path": tmp_path / "never-read.csv", **kwargs}
    with pytest.raises(ValueError, match=message):
        load_csv(**args)


# --------------------------------------------------------------------------------------------
# NPZ


def test_npz_plain_and_compressed_with_keys_task_and_limit(tmp_path):
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((20, 3)), rng.integers(0, 4, 20)
    for save in (np.savez, np.savez_compressed):
        p = tmp_path / f"{save.__name__}.npz"
        save(p, X=X, y=y, images=rng.random((20, 1, 4, 4)), t=rng.standard_normal(20))
        ds = load_npz(p)
        assert ds.X.dtype == torch.float32 and torch.allclose(ds.X, torch.from_numpy(X).float())
        assert ds.y.dtype == torch.long and ds.y.tolist() == y.tolist()
        img = load_npz(p, "images", "t", limit=5)
        assert img.X.shape == (5, 1, 4, 4) and img.y.shape == (5, 1) and not img.is_classification
    np.savez(tmp_path / "b.npz", X=X, y=y > 0)
    assert load_npz(tmp_path / "b.npz").y.tolist() == (y > 0).astype(int).tolist()
    np.savez(tmp_path / "f.npz", X=X, y=y.astype(float))
    assert load_npz(tmp_path / "f.npz", task="classification").y.tolist() == y.tolist()
    np.savez(tmp_path / "fortran.npz", X=np.asfortranarray(X), y=y)
    assert torch.equal(load_npz(tmp_path / "fortran.npz").X, torch.from_numpy(X).float())


def test_npz_object_arrays_are_refused_without_unpickling(tmp_path):
    class Boom:
        def __reduce__(self):
            return (open, (str(tmp_path / "pwned"), "w"))

    p = tmp_path / "evil.npz"
    np.savez(p, X=np.zeros((2, 2)), y=np.array([Boom(), Boom()], dtype=object))
    with pytest.raises(DataFileError, match="Python objects"):
        load_npz(p)
    assert not (tmp_path / "pwned").exists()


def _npy_header(shape, descr="<f8"):
    d = repr({"descr": descr, "fortran_order": False, "shape": tuple(shape)}).encode()
    d += b" " * (-(10 + len(d) + 1) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(d)) + d


def test_a_crafted_npz_cannot_make_us_allocate_what_it_does_not_hold(tmp_path):
    p = tmp_path / "crafted.npz"
    with zipfile.ZipFile(p, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("X.npy", _npy_header((10**6, 10**4)) + bytes(64))  # announces 80 GB
        z.writestr("y.npy", _npy_header((10**6,), "<i8") + bytes(8))
    tracemalloc.start()
    try:
        with pytest.raises(DataFileError, match="announces shape .* but holds"):
            load_npz(p)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 2 << 20


@pytest.mark.parametrize("arrays, message", [
    ({"X": np.zeros((3, 2))}, r"no array 'y'; the archive holds X"),
    ({"X": np.zeros(3), "y": np.zeros(3, int)}, "features need one row per sample"),
    ({"X": np.zeros((3, 2)), "y": np.zeros(4, int)}, "'X' has 3 samples but 'y' has shape"),
    ({"X": np.array([[1.0, np.nan]]), "y": np.zeros(1, int)}, "NaN or infinite values"),
    ({"X": np.array([["a", "b"]]), "y": np.zeros(1, int)}, "must be numbers"),
    ({"X": np.zeros((2, 2)), "y": np.array([0, -3])}, "label -3 .* is negative"),
])
def test_malformed_npz_contents_raise_one_clear_error(tmp_path, arrays, message):
    p = tmp_path / "m.npz"
    np.savez(p, **arrays)
    with pytest.raises(DataFileError, match=message) as e:
        load_npz(p)
    assert str(p) in str(e.value)


def test_npz_that_is_not_an_archive_or_is_truncated(tmp_path):
    (tmp_path / "text.npz").write_text("hello")
    with pytest.raises(DataFileError, match="not a valid .npz archive"):
        load_npz(tmp_path / "text.npz")
    np.savez(tmp_path / "ok.npz", X=np.zeros((50, 50)), y=np.zeros(50, int))
    raw = (tmp_path / "ok.npz").read_bytes()
    (tmp_path / "cut.npz").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DataFileError):
        load_npz(tmp_path / "cut.npz")
    (tmp_path / "empty.npz").write_bytes(b"")
    with pytest.raises(DataFileError, match="empty"):
        load_npz(tmp_path / "empty.npz")
    with pytest.raises(ValueError, match="different keys"):
        load_npz(tmp_path / "ok.npz", "X", "X")


# --------------------------------------------------------------------------------------------
# through configs and the command line


def test_a_config_trains_on_a_csv_file_with_the_usual_split(tmp_path, monkeypatch):
    from trainlab.experiments.config import parse_config
    from trainlab.experiments.runner import build_data, run_experiment

    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(1)
    X = rng.standard_normal((100, 2))
    rows = "\n".join(f"{a},{b},{int(a * b > 0)}" for a, b in X)
    (tmp_path / "f.csv").write_text("a,b,label\n" + rows + "\n")
    np.savez(tmp_path / "f.npz", X=X, y=(X[:, 0] > 0).astype(int))
    cfg = {"name": "own", "seed": 0, "data": {"name": "csv", "path": "f.csv", "target": "label"},
           "model": {"kind": "mlp", "hidden": [8]}, "optimizer": {"name": "adam", "lr": 0.05},
           "train": {"epochs": 2, "batch_size": 32}}
    splits = build_data(parse_config(cfg))
    assert (len(splits.train), len(splits.val)) == (70, 30)
    res = run_experiment(cfg, verbose=False)
    assert len(res.history.epoch) == 2
    res = run_experiment({**cfg, "data": {"name": "npz", "path": "f.npz", "split": [0.8, 0.2]}}, verbose=False)
    assert len(res.history.epoch) == 2


def test_cli_runs_a_csv_config_and_reports_a_malformed_file_in_one_line(cli, tmp_path):
    (tmp_path / "f.csv").write_text("a,b,label\n" + "".join(f"{i % 7},{i % 3},{i % 2}\n" for i in range(40)))
    (tmp_path / "bad.csv").write_text("a,b,label\n1,2,0\n3,x,1\n")
    base = ("name: own\ndata: {name: csv, path: %s, target: label}\nmodel: {kind: mlp, hidden: [4]}\n"
            "train: {epochs: 1, batch_size: 8}\n")
    (tmp_path / "ok.yaml").write_text(base % "f.csv")
    (tmp_path / "bad.yaml").write_text(base % "bad.csv")
    res = cli("run", "ok.yaml", "--out", "r", "-q")
    assert res.returncode == 0, res.stderr
    res = cli("run", "bad.yaml", "--out", "r2", "-q")
    assert res.returncode != 0
    assert "bad.csv line 3, column 'b': 'x' is not a number" in res.stderr
    assert "Traceback" not in res.stderr and len(res.stderr.strip().splitlines()) == 1
