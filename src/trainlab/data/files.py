"""Your own data from a file: a CSV table or a numpy ``.npz`` archive, as a :class:`Dataset`.

Both loaders are strict and bounded: the file's size is checked before it is read, every value
is checked (a number, finite, rows of one length), and anything malformed raises one
:class:`DataFileError` naming the file, the line or key, and the problem. An ``.npz`` is read
without pickle: arrays of Python objects are refused, and each array's header is checked
against the archive before its data is read, so a crafted archive cannot make us allocate more
than it holds.

The target decides the task (``task="auto"``): integer (or boolean) targets, or non-numeric
CSV labels, make a classification set with ``torch.long`` class indices; floating targets a
regression set with float targets of shape ``(n, 1)`` (or ``(n, k)``). Features are float32.
The runner splits the returned set like any other (``data.split``, default 70/30, seeded).
"""
from __future__ import annotations

import csv
import io
import math
import os
import zipfile
import zlib
from pathlib import Path

import numpy as np
import torch

from trainlab.data.dataset import Dataset

__all__ = ["DataFileError", "MAX_FILE_BYTES", "load_csv", "load_npz"]

MAX_FILE_BYTES = 2**31  # 2 GiB: the default cap on a file's size (and an npz member's)
_TASKS = ("auto", "classification", "regression")


class DataFileError(ValueError):
    """A CSV or NPZ data file is malformed; the message names the file, where, and what is wrong."""


# ---- argument checks (before any file is touched) -----------------------------------------------

def _check_path(path) -> Path:
    if isinstance(path, bool) or not isinstance(path, (str, os.PathLike)) or not str(path):
        raise ValueError(f"path must be the name of a file, got {path!r}")
    return Path(path)


def _check_common(task, limit, max_bytes) -> None:
    if task not in _TASKS:
        raise ValueError(f"task must be one of {', '.join(_TASKS)}, got {task!r}")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"limit must be null or an integer >= 1 (the number of samples kept), got {limit!r}")
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 1:
        raise ValueError(f"max_bytes must be an integer >= 1, got {max_bytes!r}")


def _check_name(value, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{what} must be a non-empty name, got {value!r}")
    return value


def _open_checked(path: Path, max_bytes: int) -> int:
    """The file's size, after checking it exists and is not larger than ``max_bytes``."""
    if not path.is_file():
        what = "is a folder, not a file" if path.is_dir() else "does not exist"
        raise FileNotFoundError(f"data file {path} {what} (a relative path is relative to the folder "
                                "trainlab runs in)")
    size = path.stat().st_size
    if size > max_bytes:
        raise DataFileError(f"{path}: {size} bytes is more than the {max_bytes} allowed (max_bytes)")
    if size == 0:
        raise DataFileError(f"{path}: the file is empty")
    return size


def _targets(y: np.ndarray, task: str, path: Path, where: str) -> torch.Tensor:
    """Class indices (long) or regression targets (float32, at least 2-D) from numeric ``y``."""
    if task == "auto":
        task = "classification" if y.dtype.kind in "biu" else "regression"
    if task == "regression":
        out = torch.from_numpy(np.ascontiguousarray(y, dtype=np.float32))
        return out.reshape(len(out), -1) if out.dim() == 1 else out
    if y.ndim != 1:
        raise DataFileError(f"{path}: {where}: class labels must be one per sample (1-D), found shape {y.shape}")
    if y.dtype.kind == "f":
        whole = np.isfinite(y) & (y == np.round(y))
        if not whole.all():
            i = int(np.argmin(whole))
            raise DataFileError(f"{path}: {where}: label {y[i]!r} (sample {i}) is not a whole number; "
                                "use task: regression for continuous targets")
    y = y.astype(np.int64)
    if len(y) and y.min() < 0:
        i = int(np.argmin(y))
        raise DataFileError(f"{path}: {where}: label {int(y[i])} (sample {i}) is negative; class labels "
                            "are 0, 1, 2, ...")
    return torch.from_numpy(y)


# ---- CSV ------------------------------------------------------------------------------------------

def _number(text: str, path: Path, line: int, column: str) -> float:
    try:
        v = float(text)
    except ValueError:
        what = "a missing value" if not text.strip() else f"{text[:40]!r} is not a number"
        raise DataFileError(f"{path} line {line}, column {column!r}: {what}") from None
    if not math.isfinite(v):
        raise DataFileError(f"{path} line {line}, column {column!r}: {text.strip()!r} is not a finite number")
    return v


def load_csv(path: str | os.PathLike, target: str = "label", *, features: list[str] | None = None,
             task: str = "auto", delimiter: str = ",", limit: int | None = None,
             max_bytes: int = MAX_FILE_BYTES) -> Dataset:
    """A CSV table with a header row as a :class:`Dataset`: one column is the target, the others
    (or those in ``features``) the features.

    Args:
        path: the file (UTF-8, a byte-order mark is allowed). A config's relative path is taken
            relative to the directory trainlab runs in.
        target: the name of the target column.
        features: the feature columns, in order; default every column but the target.
        task: ``"auto"`` (integer labels or names → classification, other numbers →
            regression), ``"classification"`` or ``"regression"``. Names (``cat``, ``dog``)
            become class indices in sorted order.
        delimiter: the field separator.
        limit: keep only the first ``limit`` data rows.
        max_bytes: refuse larger files (default 2 GiB).

    Raises:
        DataFileError: the file is malformed; the message names the line and column.
    """
    path = _check_path(path)
    _check_name(target, "target")
    if features is not None:
        if (not isinstance(features, (list, tuple)) or not features
                or not all(isinstance(f, str) and f for f in features) or len(set(features)) != len(features)):
            raise ValueError(f"features must be null or a list of distinct column names, got {features!r}")
        if target in features:
            raise ValueError(f"features must not contain the target column {target!r}")
    if not isinstance(delimiter, str) or len(delimiter) != 1 or delimiter in "\"\r\n":
        raise ValueError(f"delimiter must be one character (not a quote or newline), got {delimiter!r}")
    _check_common(task, limit, max_bytes)
    _open_checked(path, max_bytes)
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = csv.reader(f, delimiter=delimiter, strict=True)
            header = next(rows, None)
            if header is None:
                raise DataFileError(f"{path}: the file is empty")
            header = [h.strip() for h in header]
            dup = sorted({h for h in header if header.count(h) > 1})
            if dup:
                raise DataFileError(f"{path} line 1: the header names {', '.join(map(repr, dup[:5]))} twice")
            shown = ", ".join(header[:20]) + (", ..." if len(header) > 20 else "")
            if target not in header:
                raise DataFileError(f"{path} line 1: no target column {target!r}; the columns are {shown}")
            wanted = features if features is not None else [h for h in header if h != target]
            missing = [c for c in wanted if c not in header]
            if missing:
                raise DataFileError(f"{path} line 1: no column {missing[0]!r}; the columns are {shown}")
            if not wanted:
                raise DataFileError(f"{path} line 1: there is no feature column besides {target!r}")
            cols = [header.index(c) for c in wanted]
            t = header.index(target)
            X: list[list[float]] = []
            labels: list[str] = []
            lines: list[int] = []
            for row in rows:
                line = rows.line_num
                if not row or all(not c.strip() for c in row):
                    continue  # a blank line
                if len(row) != len(header):
                    raise DataFileError(f"{path} line {line}: {len(row)} fields, the header has {len(header)}")
                X.append([_number(row[c], path, line, header[c]) for c in cols])
                labels.append(row[t].strip())
                lines.append(line)
                if limit is not None and len(X) >= limit:
                    break
    except UnicodeDecodeError as e:
        raise DataFileError(f"{path}: not UTF-8 text (byte {e.start}); save the file as UTF-8") from None
    except csv.Error as e:
        raise DataFileError(f"{path} line {rows.line_num}: {e}") from None
    if not X:
        raise DataFileError(f"{path}: the header is not followed by any data row")
    y = _csv_targets(labels, lines, task, path)
    return Dataset(torch.tensor(X, dtype=torch.float32), y, f"csv:{path.name}")


def _csv_targets(labels: list[str], lines: list[int], task: str, path: Path) -> torch.Tensor:
    def all_parse(kind) -> bool:
        try:
            for v in labels:
                kind(v)
        except ValueError:
            return False
        return True

    where = "the target column"
    if task != "regression" and all_parse(int):
        return _targets(np.array([int(v) for v in labels], dtype=np.int64), task, path, where)
    if all_parse(float):
        values = np.array([float(v) for v in labels], dtype=np.float64)
        bad = ~np.isfinite(values)
        if bad.any():
            i = int(np.argmax(bad))
            raise DataFileError(f"{path} line {lines[i]}: target {labels[i]!r} is not a finite number")
        return _targets(values, task, path, where)
    if task == "regression":
        i = next(i for i, v in enumerate(labels) if _not_float(v))
        raise DataFileError(f"{path} line {lines[i]}: target {labels[i][:40]!r} is not a number; "
                            "regression needs numeric targets")
    if any(not v for v in labels):
        i = labels.index("")
        raise DataFileError(f"{path} line {lines[i]}: the target is missing")
    names = sorted(set(labels))  # class names: indices in sorted order
    index = {n: i for i, n in enumerate(names)}
    return torch.tensor([index[v] for v in labels], dtype=torch.long)


def _not_float(v: str) -> bool:
    try:
        float(v)
    except ValueError:
        return True
    return False


# ---- NPZ ------------------------------------------------------------------------------------------

def _read_npy(zf: zipfile.ZipFile, info: zipfile.ZipInfo, path: Path, key: str, max_bytes: int) -> np.ndarray:
    if info.file_size > max_bytes:
        raise DataFileError(f"{path}: array {key!r} is {info.file_size} bytes, more than the {max_bytes} allowed")
    fmt = np.lib.format
    with zf.open(info) as f:
        try:
            version = fmt.read_magic(f)
            if version == (1, 0):
                shape, fortran, dtype = fmt.read_array_header_1_0(f)
            elif version == (2, 0):
                shape, fortran, dtype = fmt.read_array_header_2_0(f)
            else:
                raise ValueError(f"unsupported .npy version {version}")
        except (ValueError, SyntaxError, EOFError) as e:
            raise DataFileError(f"{path}: array {key!r} is not a valid .npy array ({str(e)[:120]})") from None
        if dtype.hasobject:
            raise DataFileError(f"{path}: array {key!r} holds Python objects, which would need pickle; "
                                "trainlab never unpickles data files (save numeric arrays)")
        if dtype.kind not in "biuf":
            raise DataFileError(f"{path}: array {key!r} has dtype {dtype}; features and targets must be numbers")
        n_bytes = math.prod(shape) * dtype.itemsize
        if n_bytes > info.file_size:  # checked before reading: a header cannot make us allocate more
            raise DataFileError(f"{path}: array {key!r} announces shape {shape} ({n_bytes} bytes) but holds "
                                f"{info.file_size} bytes (truncated or crafted)")
        data = f.read(n_bytes + 1)
    if len(data) != n_bytes:
        raise DataFileError(f"{path}: array {key!r} of shape {shape} needs {n_bytes} data bytes, "
                            f"found {len(data) if len(data) < n_bytes else 'more'}")
    return np.frombuffer(data, dtype=dtype).reshape(shape, order="F" if fortran else "C")


def load_npz(path: str | os.PathLike, features: str = "X", targets: str = "y", *, task: str = "auto",
             limit: int | None = None, max_bytes: int = MAX_FILE_BYTES) -> Dataset:
    """Two arrays of a numpy ``.npz`` archive (``np.savez`` or ``np.savez_compressed``) as a
    :class:`Dataset`: ``features`` of shape ``(n, ...)`` and ``targets`` of ``n`` labels or values.

    Args:
        path: the archive. A config's relative path is taken relative to the directory trainlab
            runs in.
        features, targets: the keys of the two arrays (default ``X`` and ``y``, as in
            ``np.savez(f, X=X, y=y)``).
        task: ``"auto"`` (integer or boolean targets → classification, floating → regression),
            ``"classification"`` (whole-number floats are accepted) or ``"regression"``.
        limit: keep only the first ``limit`` samples.
        max_bytes: refuse larger archives and arrays (default 2 GiB).

    Raises:
        DataFileError: the archive is malformed or crafted, a key is missing, an array holds
            Python objects, or the shapes do not fit; the message names the key.
    """
    path = _check_path(path)
    _check_name(features, "features")
    _check_name(targets, "targets")
    if features == targets:
        raise ValueError(f"features and targets must be different keys, both are {features!r}")
    _check_common(task, limit, max_bytes)
    _open_checked(path, max_bytes)
    try:
        with zipfile.ZipFile(path) as zf:
            members = {(n[:-4] if n.endswith(".npy") else n): zf.getinfo(n) for n in zf.namelist()}
            for key in (features, targets):
                if key not in members:
                    keys = ", ".join(sorted(members)[:20]) or "(none)"
                    raise DataFileError(f"{path}: no array {key!r}; the archive holds {keys}")
            X = _read_npy(zf, members[features], path, features, max_bytes)
            y = _read_npy(zf, members[targets], path, targets, max_bytes)
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError) as e:
        raise DataFileError(f"{path}: not a valid .npz archive ({str(e)[:120]})") from None
    except io.UnsupportedOperation as e:
        raise DataFileError(f"{path}: not a readable .npz archive ({e})") from None
    if X.ndim < 2:
        raise DataFileError(f"{path}: array {features!r} has shape {X.shape}; features need one row per sample "
                            "(n, d) — for one feature save X.reshape(-1, 1)")
    if y.ndim == 0 or len(y) != len(X):
        raise DataFileError(f"{path}: {features!r} has {len(X)} samples but {targets!r} has shape {y.shape}")
    if limit is not None:
        X, y = X[:limit], y[:limit]
    for key, a in ((features, X), (targets, y)):
        if a.dtype.kind == "f" and not np.isfinite(a).all():
            i = int(np.argmin(np.isfinite(a).reshape(len(a), -1).all(1)))
            raise DataFileError(f"{path}: array {key!r} holds NaN or infinite values (first in sample {i})")
    Xt = torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32))
    return Dataset(Xt, _targets(np.asarray(y), task, path, f"array {targets!r}"), f"npz:{path.name}")
