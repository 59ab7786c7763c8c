"""Files that cannot execute code: weights as safetensors, everything else as JSON, written atomically.

An atomic write goes to a temporary file in the destination's folder, is flushed and fsync'ed, and
then renamed over the destination (``os.replace`` is atomic on POSIX and Windows), so a crash
mid-write leaves the previous file intact; the temporary a killed writer leaves behind is removed
by the next write or load in that folder. Files get the mode the umask gives any new file.
Nothing here uses pickle.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import re
import secrets
import socket
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as _st_load
from safetensors.torch import load_file, save
from torch import Tensor, nn

if TYPE_CHECKING:
    from trainlab.train.loop import Loop


_HOST = hashlib.sha1(socket.gethostname().encode()).hexdigest()[:8]
# ``.<name>.<pid>-<host>.<random>.tmp``: the writer's pid and host let a later writer or reader
# in the same folder tell a temporary of a dead process (kill -9 mid-write) from one in flight
_TEMP = re.compile(r"^\..+\.(?P<pid>[0-9]+)-(?P<host>[0-9a-f]{8})\.[0-9a-f]+\.tmp$")


def _pid_alive(pid: int) -> bool:
    if os.name == "nt":  # os.kill(pid, 0) would send CTRL_C_EVENT there; keep everything
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: it exists but belongs to someone else
        return True
    return True


def remove_stale_temporaries(folder: str | Path) -> list[Path]:
    """Delete the temporaries that writers on this host left in ``folder`` when they died
    mid-write (their pid is gone); return the paths removed. Files of live writers stay."""
    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        m = _TEMP.match(entry.name)
        if m is None or m["host"] != _HOST:
            continue
        pid = int(m["pid"])
        if pid == os.getpid() or _pid_alive(pid):
            continue
        try:
            os.unlink(entry.path)
            removed.append(Path(entry.path))
        except OSError:  # a read-only folder, or another process removed it first
            pass
    return removed


def _open_temporary(path: Path) -> tuple[int, Path]:
    # os.open with mode 0o666 lets the kernel apply the umask, as for any file the user creates
    # (mkstemp would force 0600 onto the published file)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        tmp = path.parent / f".{path.name}.{os.getpid()}-{_HOST}.{secrets.token_hex(6)}.tmp"
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"could not create a temporary file beside {path}")


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see either the old file or the whole new one.

    The file gets the permissions the umask gives any new file; stale temporaries of writers
    that died in this folder are removed first.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path.parent)
    fd, tmp = _open_temporary(path)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    try:  # make the rename itself durable
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass


def atomic_write_json(path: str | Path, obj) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode())


def save_weights(model: nn.Module, path: str | Path, metadata: dict[str, str] | None = None) -> None:
    """Save ``model.state_dict()`` (parameters and buffers) as a safetensors file, atomically."""
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    atomic_write_bytes(path, save(tensors, metadata=metadata))


def load_weights(model: nn.Module, path: str | Path, strict: bool = True) -> nn.Module:
    """Load a safetensors file written by :func:`save_weights` (or a full checkpoint) into ``model``."""
    path = Path(path)
    with open(path, "rb") as f:
        head = f.read(8)
        n = struct.unpack("<Q", head)[0] if len(head) == 8 else 0
        is_ckpt = 0 < n <= _MAX_HEADER and b'"trainlab-checkpoint"' in f.read(n)
    try:
        if is_ckpt:
            try:
                state = load_checkpoint(path).model
            except _OldVersion:  # no digest to check, but its weights are plain tensors all the same
                state = {k.removeprefix("model."): v for k, v in load_file(str(path)).items()
                         if k.startswith("model.")}
        else:
            state = load_file(str(path))
    except (SafetensorError, OSError) as err:
        raise CheckpointError(f"{path} is not a safetensors weights file: {err}") from None
    try:
        model.load_state_dict(state, strict=strict)
    except RuntimeError as err:
        raise CheckpointError(f"the weights in {path} do not fit this model: {err}") from None
    return model


# =============================================================================================
# Full checkpoints: everything a run needs to continue exactly where it stopped.
#
# One checkpoint is ONE safetensors file, so a single atomic rename publishes a consistent
# snapshot (weights, optimizer, RNG and callback states can never come from different epochs).
# Tensors live in the safetensors body; everything else (optimizer scalars, loop position,
# callback states, run metadata) is a JSON tree stored in the header's ``__metadata__``, with
# ``{"__tensor__": key}`` placeholders pointing at tensors. Loading parses the header ourselves
# (length, JSON, format tag) before handing the bytes to safetensors, so a pickle, a zip written
# by ``torch.save``, a truncated file or a hand-edited header is refused with a clear error and
# nothing in it is ever executed. The metadata carries a SHA-256 digest of the JSON tree and of
# every tensor (name, dtype, shape, bytes), checked on load, so a flipped bit anywhere is caught;
# then the tree's structure is checked, so a crafted file with a valid digest is refused too.
# =============================================================================================


CHECKPOINT_FORMAT = "trainlab-checkpoint"
CHECKPOINT_VERSION = 2  # 2: the metadata carries a digest of the state and the tensors
_MAX_HEADER = 100 * 2**20  # the safetensors reference implementation refuses larger headers too
_MAX_DEPTH = 100  # real states nest a dozen levels; deeper is a crafted file


class CheckpointError(ValueError):
    """A checkpoint file is missing, corrupt, crafted, or does not fit the run it is loaded into."""


class _OldVersion(CheckpointError):
    """Internal: a checkpoint of a version this trainlab cannot resume (its weights still load)."""


class _Malformed(Exception):
    """Internal: what is wrong with a checkpoint's state tree (wrapped into CheckpointError)."""


@dataclass
class Checkpoint:
    """A snapshot of a run at an epoch boundary.

    Attributes:
        model: ``model.state_dict()`` (parameters and buffers), on the CPU.
        optimizer: ``optimizer.state_dict()`` (tensors and scalars), or ``None``.
        callbacks: one ``{"type": class name, "state": cb.state_dict()}`` per callback, in order.
        rng: ``{"torch": global CPU RNG state, "data": data-order generator state,
            "cuda": [per-device states]}`` (``cuda`` only when a GPU was present).
        loop: ``{"epoch": last finished epoch (0-based), "step": global steps, "epochs": planned
            epochs, "steps_per_epoch": ..., "stop_training": bool}``.
        extra: free JSON-able metadata (the runner stores the resolved config here).
        run: what the run was trained with (optimizer class and hyperparameters, seed, batch
            size, a digest of the data); ``fit(resume_from=...)`` refuses a run that differs.
    """

    model: dict[str, Tensor]
    optimizer: dict | None = None
    callbacks: list[dict] = field(default_factory=list)
    rng: dict = field(default_factory=dict)
    loop: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)
    run: dict = field(default_factory=dict)
    source: str | None = field(default=None, compare=False, repr=False)  # the file it was read from

    @property
    def epoch(self) -> int:
        """The last finished epoch (0-based); training resumes at ``epoch + 1``."""
        return int(self.loop.get("epoch", -1))


# ---- a JSON tree with tensor placeholders ---------------------------------------------------------

_SCALARS = (bool, int, float, str)


def _encode(obj: Any, path: str, tensors: dict[str, Tensor]) -> Any:
    if isinstance(obj, Tensor):
        key = f"state.{len(tensors)}"
        # clone: safetensors refuses tensors sharing storage, and the snapshot must not alias
        # live training tensors
        tensors[key] = obj.detach().to("cpu").clone().contiguous()
        return {"__tensor__": key}
    if obj is None or isinstance(obj, (bool, int, str)):
        return obj
    if isinstance(obj, float):
        return obj  # json writes nan/inf as NaN/Infinity and reads them back
    if isinstance(obj, tuple):
        return {"__tuple__": [_encode(v, f"{path}[{i}]", tensors) for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [_encode(v, f"{path}[{i}]", tensors) for i, v in enumerate(obj)]
    if isinstance(obj, dict):
        if all(isinstance(k, str) and not k.startswith("__") for k in obj):
            return {k: _encode(v, f"{path}.{k}", tensors) for k, v in obj.items()}
        for k in obj:
            if not (k is None or isinstance(k, _SCALARS)):
                raise CheckpointError(f"cannot store a dict key of type {type(k).__name__} at {path}")
        # torch's optimizer state is keyed by integers, which JSON objects cannot hold
        return {"__dict__": [[k, _encode(v, f"{path}.{k}", tensors)] for k, v in obj.items()]}
    if isinstance(obj, (torch.dtype, torch.device)):
        return {"__torch__": str(obj)}
    raise CheckpointError(f"cannot store an object of type {type(obj).__name__} at {path or 'the top'} in a "
                          "checkpoint (only tensors, numbers, strings, lists, tuples and dicts)")


def _decode(obj: Any, tensors: dict[str, Tensor], where: str, used: set[str], depth: int = 0) -> Any:
    """The inverse of :func:`_encode`; anything :func:`_encode` cannot have written is refused."""
    if depth > _MAX_DEPTH:
        raise _Malformed(f"{where} is nested deeper than {_MAX_DEPTH} levels")
    if isinstance(obj, list):
        return [_decode(v, tensors, f"{where}[{i}]", used, depth + 1) for i, v in enumerate(obj)]
    if not isinstance(obj, dict):
        return obj  # json only gives None, bool, int, float and str here
    if not any(k.startswith("__") for k in obj):
        return {k: _decode(v, tensors, f"{where}.{k}", used, depth + 1) for k, v in obj.items()}
    if len(obj) != 1:
        raise _Malformed(f"{where} mixes a tag with other keys ({', '.join(sorted(obj)[:4])})")
    (tag, value), = obj.items()
    if tag == "__tensor__":
        if not isinstance(value, str) or not value.startswith("state.") or value not in tensors:
            raise _Malformed(f"{where} refers to a tensor {_short(value)} that the file does not hold")
        used.add(value)
        return tensors[value]
    if tag == "__tuple__":
        if not isinstance(value, list):
            raise _Malformed(f"{where}: a tuple must be stored as a list, found {type(value).__name__}")
        return tuple(_decode(v, tensors, f"{where}[{i}]", used, depth + 1) for i, v in enumerate(value))
    if tag == "__dict__":
        if not isinstance(value, list) or not all(isinstance(p, list) and len(p) == 2 for p in value):
            raise _Malformed(f"{where}: a dict must be stored as a list of [key, value] pairs")
        out = {}
        for k, v in value:
            if not (k is None or isinstance(k, _SCALARS)):
                raise _Malformed(f"{where}: a dict key must be a number, string or null, found {type(k).__name__}")
            if k in out:  # also True after 1: they are the same key to Python
                raise _Malformed(f"{where}: the key {_short(k)} appears twice")
            out[k] = _decode(v, tensors, f"{where}.{k}", used, depth + 1)
        return out
    if tag == "__torch__":
        if not isinstance(value, str):
            raise _Malformed(f"{where}: a dtype or device must be a string, found {_short(value)}")
        if value.startswith("torch."):
            dtype = getattr(torch, value.removeprefix("torch."), None)
            if isinstance(dtype, torch.dtype):
                return dtype
            raise _Malformed(f"{where}: unknown dtype {_short(value)}")
        try:
            return torch.device(value)
        except (RuntimeError, ValueError, TypeError):
            raise _Malformed(f"{where}: unknown device {_short(value)}") from None
    raise _Malformed(f"{where}: unknown tag {_short(tag)}")


def _short(value: Any, limit: int = 60) -> str:
    """``repr`` cut to ``limit`` characters, so a crafted value never floods a message."""
    small = isinstance(value, (list, tuple)) and len(value) <= 8 and all(
        v is None or isinstance(v, _SCALARS) for v in value)
    if isinstance(value, (dict, list, tuple)) and not small:  # never repr a crafted structure whole
        return f"a {type(value).__name__} of {len(value)} items"
    text = repr(value[: limit + 1] if isinstance(value, str) else value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# ---- files ------------------------------------------------------------------------------------

def _digest(state: str, tensors: dict[str, Tensor]) -> str:
    """SHA-256 over the state JSON and every tensor's name, dtype, shape and bytes, in name order."""
    h = hashlib.sha256()

    def part(b: bytes) -> None:  # length-prefixed, so no two different inputs hash alike
        h.update(struct.pack("<Q", len(b)))
        h.update(b)

    part(state.encode("utf-8"))
    for name in sorted(tensors):
        t = tensors[name]
        part(json.dumps([name, str(t.dtype), list(t.shape)]).encode())
        flat = t.detach().to("cpu").contiguous().reshape(-1)
        part(flat.view(torch.uint8).numpy().tobytes() if flat.numel() else b"")
    return h.hexdigest()


def checkpoint_bytes(ckpt: Checkpoint) -> bytes:
    """The safetensors bytes of ``ckpt`` (what :func:`save_checkpoint` writes)."""
    tensors: dict[str, Tensor] = {}
    for name, t in ckpt.model.items():
        tensors[f"model.{name}"] = t.detach().to("cpu").clone().contiguous()
    tree = {
        "optimizer": _encode(ckpt.optimizer, "optimizer", tensors),
        "callbacks": _encode(ckpt.callbacks, "callbacks", tensors),
        "rng": _encode(ckpt.rng, "rng", tensors),
        "loop": _encode(ckpt.loop, "loop", tensors),
        "extra": _encode(ckpt.extra, "extra", tensors),
        "run": _encode(ckpt.run, "run", tensors),
        "model_keys": list(ckpt.model),
    }
    state = json.dumps(tree)
    meta = {"format": CHECKPOINT_FORMAT, "version": str(CHECKPOINT_VERSION), "state": state,
            "digest": _digest(state, tensors)}
    return save(tensors, metadata=meta)


def save_checkpoint(path: str | Path, ckpt: Checkpoint) -> Path:
    """Write ``ckpt`` to ``path`` atomically (temp file in the same folder, fsync, rename).

    A crash (even SIGKILL) at any moment leaves either the previous file or the complete new
    one at ``path``; the dead writer's ``.<name>.<pid>-<host>.*.tmp`` file is removed by the
    next write or load in that folder.
    """
    path = Path(path)
    atomic_write_bytes(path, checkpoint_bytes(ckpt))
    return path


def _read_header(data: bytes, path: Path) -> dict:
    def refuse(why: str, cls=CheckpointError) -> CheckpointError:
        return cls(f"{path} is not a trainlab checkpoint: {why}. trainlab only reads safetensors "
                   "files it wrote itself and never unpickles anything")

    if len(data) < 8:
        raise refuse("the file is shorter than a safetensors header (empty or truncated)")
    (n,) = struct.unpack("<Q", data[:8])
    problem = header = None
    if n > _MAX_HEADER or 8 + n > len(data):
        problem = f"its header claims {n} bytes but the file has {len(data)} (truncated or not safetensors)"
    else:
        try:
            header = json.loads(data[8 : 8 + n].decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            problem = "its header is not valid JSON"
    if problem is not None:
        # sniffed only now: the first bytes of an intact file are its header length, whose low
        # byte can be 0x80 (a pickle's first byte) or spell 'PK' (a zip's)
        if data[:1] == b"\x80" or data[:2] == b"PK":
            problem = "it looks like a pickle or a zip archive written by torch.save"
        raise refuse(problem)
    if not isinstance(header, dict):
        raise refuse("its header is not a JSON object")
    meta = header.get("__metadata__")
    if not isinstance(meta, dict) or meta.get("format") != CHECKPOINT_FORMAT:
        raise refuse("its metadata carries no trainlab-checkpoint tag (for plain weights use load_weights)")
    if meta.get("version") != str(CHECKPOINT_VERSION):
        raise refuse(f"unsupported checkpoint version {_short(meta.get('version'))} (this trainlab reads "
                     f"version {CHECKPOINT_VERSION})", _OldVersion if meta.get("version") == "1" else CheckpointError)
    if not isinstance(meta.get("state"), str) or not isinstance(meta.get("digest"), str):
        raise refuse("its metadata lacks the state record or its digest")
    return meta


def _is_int(v: Any, low: int) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= low


def _check_rng_state(t: Any, where: str) -> None:
    if not (isinstance(t, Tensor) and t.dtype == torch.uint8 and t.dim() == 1):
        raise _Malformed(f"{where} is not an RNG state (a 1-D uint8 tensor)")


def _check_tree(tree: dict, tensors: dict[str, Tensor], used: set[str]) -> Checkpoint:
    """Decode the state tree and check the structure restore relies on; raise :class:`_Malformed`."""
    if not isinstance(tree, dict):
        raise _Malformed("the state record is not a JSON object")
    missing = [k for k in ("optimizer", "callbacks", "rng", "loop", "extra", "run", "model_keys") if k not in tree]
    if missing:
        raise _Malformed(f"the state record lacks {', '.join(missing)}")
    keys = tree["model_keys"]
    if not (isinstance(keys, list) and all(isinstance(k, str) for k in keys)) or len(set(keys)) != len(keys):
        raise _Malformed("model_keys is not a list of distinct names")
    absent = [k for k in keys if f"model.{k}" not in tensors]
    if absent:
        raise _Malformed(f"the weights {', '.join(map(_short, absent[:3]))} are listed but not stored")
    used.update(f"model.{k}" for k in keys)
    part = {k: _decode(tree[k], tensors, k, used) for k in ("optimizer", "callbacks", "rng", "loop", "extra", "run")}
    stray = sorted(set(tensors) - used)
    if stray:
        raise _Malformed(f"it holds tensors nothing refers to ({', '.join(map(_short, stray[:3]))})")
    for k in ("rng", "loop", "extra", "run"):
        if not isinstance(part[k], dict):
            raise _Malformed(f"{k} is not a mapping")
    opt = part["optimizer"]
    if opt is not None:
        if not (isinstance(opt, dict) and isinstance(opt.get("state"), dict)
                and isinstance(opt.get("param_groups"), list)):
            raise _Malformed("optimizer is not a torch optimizer state (state and param_groups)")
        ids: list = []
        for i, g in enumerate(opt["param_groups"]):
            if not (isinstance(g, dict) and isinstance(g.get("params"), list)
                    and all(_is_int(p, 0) for p in g["params"])):
                raise _Malformed(f"optimizer.param_groups[{i}] has no list of parameter ids")
            ids += g["params"]
        if len(set(ids)) != len(ids):
            raise _Malformed("optimizer.param_groups name a parameter twice")
        for k, v in opt["state"].items():
            if k not in ids or isinstance(k, bool) or not isinstance(v, dict):
                raise _Malformed(f"optimizer.state.{_short(k)} is not the state of one of its parameters")
    cbs = part["callbacks"]
    if not isinstance(cbs, list) or not all(
            isinstance(c, dict) and isinstance(c.get("type"), str) and isinstance(c.get("state"), dict) for c in cbs):
        raise _Malformed("callbacks is not a list of {type, state} records")
    rng = part["rng"]
    for k in ("torch", "data"):
        if k in rng:
            _check_rng_state(rng[k], f"rng.{k}")
    for k in ("cuda", "augment"):
        if k in rng:
            if not isinstance(rng[k], list):
                raise _Malformed(f"rng.{k} is not a list of RNG states")
            for i, t in enumerate(rng[k]):
                _check_rng_state(t, f"rng.{k}[{i}]")
    lp = part["loop"]
    for k, low in (("epoch", -1), ("step", 0), ("epochs", 0), ("steps_per_epoch", 1)):
        if k in lp and not _is_int(lp[k], low):
            raise _Malformed(f"loop.{k} is {_short(lp[k])}, not an integer >= {low}")
    if "stop_training" in lp and not isinstance(lp["stop_training"], bool):
        raise _Malformed(f"loop.stop_training is {_short(lp['stop_training'])}, not true/false")
    model = {k: tensors[f"model.{k}"] for k in keys}
    return Checkpoint(model=model, **part)


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Read a checkpoint written by :func:`save_checkpoint`; refuse anything else.

    The header, the digest of the state and the tensors, and the structure of the state are
    all checked before anything is returned.

    Raises:
        CheckpointError: the file is missing, truncated, corrupt (its digest does not match),
            not safetensors (e.g. a pickle), not a trainlab checkpoint, or crafted. The message
            names the file and the problem. No byte of it is ever executed.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    remove_stale_temporaries(path.parent)
    try:
        data = path.read_bytes()
    except OSError as err:
        raise CheckpointError(f"checkpoint {path} cannot be read: {err.strerror or err}") from None
    meta = _read_header(data, path)
    try:
        tensors = _st_load(data)
    except (SafetensorError, ValueError, RuntimeError, TypeError, OverflowError) as err:
        raise CheckpointError(f"{path} is a corrupt checkpoint: {_short(str(err), 200)}") from None
    try:
        digest = _digest(meta["state"], tensors)
    except (RuntimeError, TypeError) as err:  # e.g. a dtype numpy cannot view as bytes
        raise CheckpointError(f"{path} is a corrupt checkpoint: {_short(str(err), 200)}") from None
    if digest != meta["digest"]:
        raise CheckpointError(f"{path} is a corrupt checkpoint: its contents do not match the digest it was "
                              "written with (a damaged copy or a disk error); use an earlier checkpoint")
    try:
        ckpt = _check_tree(json.loads(meta["state"]), tensors, set())
        ckpt.source = str(path)
        return ckpt
    except _Malformed as err:
        raise CheckpointError(f"{path} is a corrupt checkpoint: {err}") from None
    except (ValueError, RecursionError) as err:  # JSON errors are ValueErrors
        raise CheckpointError(f"{path} is a corrupt checkpoint: its state record is malformed "
                              f"({_short(str(err) or type(err).__name__, 120)})") from None
def nonfinite_entries(ckpt: Checkpoint) -> list[str]:
    """Names of the model and optimizer tensors holding NaN or ±Inf (empty when all are finite)."""
    bad = [f"model.{k}" for k, t in ckpt.model.items()
           if t.is_floating_point() and not bool(torch.isfinite(t).all())]

    def walk(obj, where):
        if isinstance(obj, Tensor):
            if obj.is_floating_point() and not bool(torch.isfinite(obj).all()):
                bad.append(where)
        elif isinstance(obj, dict):
            for k, v in obj.items():
                walk(v, f"{where}.{k}")
        elif isinstance(obj, (list, tuple)):
            for i, v in enumerate(obj):
                walk(v, f"{where}[{i}]")
        elif isinstance(obj, float) and not math.isfinite(obj) and where.startswith("optimizer.state"):
            bad.append(where)

    walk(ckpt.optimizer, "optimizer")
    return bad


# ---- capturing and restoring a running fit ----------------------------------------------------

def _augment_generators(augment) -> list[torch.Generator]:
    """The private generators of an augmentation (and of the members of a composition), in order;
    augmentations drawing from torch's global RNG are covered by the global RNG state."""
    if augment is None:
        return []
    found: list[torch.Generator] = []
    for obj in [augment, *getattr(augment, "augmentations", [])]:
        g = getattr(obj, "generator", None)
        if isinstance(g, torch.Generator) and all(g is not f for f in found):
            found.append(g)
    return found


def _plain(v: Any) -> Any:
    """``v`` as a JSON scalar or a list of scalars, or ``None`` when it is neither."""
    if v is None or isinstance(v, _SCALARS):
        return v
    if isinstance(v, (tuple, list)) and all(x is None or isinstance(x, _SCALARS) for x in v):
        return list(v)
    return None


def _data_record(ds) -> dict:
    h = hashlib.sha256()
    for t in (ds.X, ds.y):
        flat = t.detach().to("cpu").contiguous().reshape(-1)
        h.update(json.dumps([str(t.dtype), list(t.shape)]).encode())
        if flat.numel():
            h.update(flat.view(torch.uint8).numpy())
    return {"samples": len(ds), "sha256": h.hexdigest()}


def run_record(loop: "Loop") -> dict:
    """What the run in ``loop`` is trained with, as checkpoints record it and resuming compares.

    The optimizer's class and constructor hyperparameters (``optimizer.defaults``; a schedule
    changes the param groups' lr, not these), the seed, the batching, and a SHA-256 of the
    training and validation tensors. Computed once per fit (hashing the data costs about a
    second per GB).
    """
    cached = getattr(loop, "_run_record", None)
    if cached is not None:
        return cached
    opt = loop.optimizer
    hyper = {}
    for k, v in sorted(opt.defaults.items()):
        p = _plain(v)
        if p is not None or v is None:
            hyper[k] = p
    train = loop.train
    record = {
        "optimizer": f"{type(opt).__module__}.{type(opt).__qualname__}",
        "hyperparameters": hyper,
        "seed": getattr(loop, "seed", None),
        "batch_size": getattr(train, "batch_size", None),
        "shuffle": getattr(train, "shuffle", None),
        "drop_last": getattr(train, "drop_last", None),
        "train": _data_record(train.data),
        "val": _data_record(loop.val) if loop.val is not None else None,
    }
    try:
        loop._run_record = record
    except AttributeError:
        pass
    return record


def _run_differences(saved: dict, now: dict) -> list[str]:
    """Lines ``what: checkpoint → this run`` for everything recorded that differs."""
    lines = []
    if "optimizer" in saved and saved["optimizer"] != now["optimizer"]:
        lines.append(f"optimizer: {saved['optimizer']} → {now['optimizer']}")
    elif isinstance(saved.get("hyperparameters"), dict):
        old, new = saved["hyperparameters"], now["hyperparameters"]
        for k in sorted(set(old) | set(new)):
            a, b = old.get(k, "(absent)"), new.get(k, "(absent)")
            if a != b and not (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b)):
                lines.append(f"optimizer.{k}: {_short(a)} → {_short(b)}")
    if now["seed"] is not None and "seed" in saved and saved["seed"] != now["seed"]:
        lines.append(f"seed: {_short(saved['seed'])} → {now['seed']}")  # no seed given: the saved RNG decides
    for k in ("batch_size", "shuffle", "drop_last"):
        if k in saved and saved[k] != now[k]:
            lines.append(f"{k}: {_short(saved[k])} → {_short(now[k])}")
    for k in ("train", "val"):
        if k not in saved or saved[k] == now[k]:
            continue
        a, b = saved[k], now[k]
        if a is None or b is None:
            lines.append(f"{k} data: {'none' if a is None else 'given'} → {'none' if b is None else 'given'}")
        elif isinstance(a, dict) and a.get("samples") != b["samples"]:
            lines.append(f"{k} data: {_short(a.get('samples'))} samples → {b['samples']}")
        else:
            lines.append(f"{k} data: same number of samples, different values")
    return lines


def capture(loop: "Loop", extra: dict | None = None) -> Checkpoint:
    """Snapshot ``loop`` (a :class:`trainlab.train.loop.Loop`) at the end of its current epoch."""
    rng: dict[str, Any] = {"torch": torch.get_rng_state(), "data": loop.generator.get_state()}
    if torch.cuda.is_available():
        rng["cuda"] = list(torch.cuda.get_rng_state_all())
    gens = _augment_generators(getattr(loop, "augment", None))
    if gens:
        rng["augment"] = [g.get_state() for g in gens]
    return Checkpoint(
        model=dict(loop.model.state_dict()),
        optimizer=loop.optimizer.state_dict(),
        callbacks=[{"type": type(cb).__name__, "state": cb.state_dict()} for cb in loop.callbacks.callbacks],
        rng=rng,
        loop={"epoch": loop.epoch, "step": loop.step, "epochs": loop.epochs,
              "steps_per_epoch": loop.steps_per_epoch, "stop_training": bool(loop.stop_training)},
        extra=dict(extra or {}),
        run=run_record(loop),
    )


def _kind(v: Any) -> str:
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, (int, float)):
        return "number"
    if isinstance(v, Tensor):
        return "tensor"
    if isinstance(v, (tuple, list)):
        return f"sequence ({', '.join(_kind(x) for x in v)})"
    return type(v).__name__


def _try_hyperparameters(opt: torch.optim.Optimizer, group: dict, saved: dict, i: int) -> None:
    """Build a throw-away optimizer of the same class with the saved group's hyperparameters, so
    that the class's own checks (``0 <= beta < 1``, ``lr >= 0``...) judge them."""
    def build(values: dict):
        kwargs = {k: values[k] for k in opt.defaults if k in values}
        return type(opt)([torch.zeros(1, requires_grad=True)], **kwargs)

    try:
        build(group)
    except Exception:  # noqa: BLE001 — a class that cannot be rebuilt this way is not tried
        return
    try:
        build(saved)
    except Exception as err:  # noqa: BLE001 — its constructor says what is wrong
        raise CheckpointError(f"param group {i} holds hyperparameters {type(opt).__name__} refuses "
                              f"({_short(str(err), 120)})") from None


def _check_optimizer(loop: "Loop", state: dict) -> None:
    groups = loop.optimizer.param_groups
    saved = state["param_groups"]
    if len(saved) != len(groups):
        raise CheckpointError(f"{len(saved)} param groups → {len(groups)}: the optimizer's parameters changed")
    params: dict[int, Tensor] = {}
    for i, (g, s) in enumerate(zip(groups, saved)):
        if len(g["params"]) != len(s["params"]):
            raise CheckpointError(f"param group {i} holds {len(s['params'])} parameters → {len(g['params'])}")
        params.update(zip(s["params"], g["params"]))
        for k, v in g.items():
            if k in ("params", "param_names"):
                continue
            if k not in s:
                raise CheckpointError(f"param group {i} lacks {k!r}")
            if _kind(s[k]) != _kind(v) and s[k] is not None and v is not None:
                raise CheckpointError(f"param group {i}: {k} is {_short(s[k])}, where this optimizer has "
                                      f"a {_kind(v)}")
            # flags pick the algorithm (amsgrad, nesterov...) and with it the state it keeps;
            # numbers may legitimately differ (a schedule moves lr)
            if isinstance(v, (bool, str)) and s[k] != v:
                raise CheckpointError(f"param group {i}: {k} is {_short(s[k])} in the checkpoint but "
                                      f"{_short(v)} in this optimizer")
        _try_hyperparameters(loop.optimizer, g, s, i)
    for pid, entry in state["state"].items():
        p = params[pid]
        for k, v in entry.items():
            if isinstance(v, Tensor) and v.dim() == p.dim() and v.dim() > 0 and v.shape != p.shape:
                raise CheckpointError(f"the state {k} of parameter {pid} has shape {tuple(v.shape)}, the "
                                      f"parameter {tuple(p.shape)}")


def _deep_copy(cb, loop: "Loop"):
    """A copy of ``cb`` sharing the run's big objects, to try a saved state on; ``None`` if it
    cannot be copied."""
    import copy
    memo = {id(o): o for o in (loop, loop.model, loop.optimizer, getattr(loop, "train", None),
                               getattr(loop, "val", None)) if o is not None}
    try:
        return copy.deepcopy(cb, memo)
    except Exception:  # noqa: BLE001 — any callback type may refuse copying; the trial is skipped
        return None


def _match_callbacks(loop: "Loop", ckpt: Checkpoint) -> list[tuple[Any, dict | None]]:
    saved: dict[str, list[dict]] = {}
    for entry in ckpt.callbacks:
        saved.setdefault(entry["type"], []).append(entry["state"])
    pairs = []
    for cb in loop.callbacks.callbacks:
        name = type(cb).__name__
        queue = saved.get(name, [])
        if queue:
            pairs.append((cb, queue.pop(0)))
        elif cb.state_dict():
            raise CheckpointError(f"the checkpoint holds no state for the callback {name}; resume with the "
                                  "callbacks of the original run")
        else:
            pairs.append((cb, None))
    leftover = [name for name, q in saved.items() if any(q)]
    if leftover:
        raise CheckpointError(f"the checkpoint holds state for callbacks this run lacks: {', '.join(leftover)}; "
                              "resume with the callbacks of the original run")
    return pairs


def check_resume(loop: "Loop", ckpt: Checkpoint) -> None:
    """Check that ``ckpt`` fits ``loop`` completely, changing nothing; raise :class:`CheckpointError`.

    Run before any callback, so that a refused resume leaves every file of the run (a CSV log,
    say) as it was: the loop position, the model's keys and shapes, the optimizer's class,
    hyperparameters and state, what the run was trained with (:func:`run_record`), the
    callbacks (each saved state is tried on a copy of its callback), and the RNG states.
    """
    where = ckpt.source or "the checkpoint"

    def refuse(why: str) -> CheckpointError:
        return CheckpointError(f"cannot resume from {where}: {why}")

    spe = ckpt.loop.get("steps_per_epoch")
    if spe is not None and spe != loop.steps_per_epoch:
        raise refuse(f"the checkpoint was taken with {spe} steps per epoch but this run has "
                     f"{loop.steps_per_epoch}: the training data or batch size changed")
    own = loop.model.state_dict()
    problems = [f"missing {k}" for k in own if k not in ckpt.model]
    problems += [f"unexpected {k}" for k in ckpt.model if k not in own]
    problems += [f"{k}: saved {tuple(ckpt.model[k].shape)}, model {tuple(v.shape)}"
                 for k, v in own.items() if k in ckpt.model and ckpt.model[k].shape != v.shape]
    if problems:
        raise refuse(f"the checkpoint's weights do not fit this model ({'; '.join(problems[:6])})")
    differences = _run_differences(ckpt.run, run_record(loop)) if ckpt.run else []
    if differences:
        raise refuse("this run differs from the one that wrote it:\n  " + "\n  ".join(differences)
                     + "\npass the original optimizer, seed and data, or start a new run")
    if ckpt.optimizer is not None:
        try:
            _check_optimizer(loop, ckpt.optimizer)
        except CheckpointError as err:
            raise refuse(f"the checkpoint's optimizer state does not fit this optimizer "
                         f"({type(loop.optimizer).__name__}): {err}") from None
    try:
        pairs = _match_callbacks(loop, ckpt)
    except CheckpointError as err:
        raise refuse(str(err)) from None
    for k in ("torch", "data"):
        if k not in ckpt.rng:
            raise refuse(f"it holds no rng.{k} state")
    for k, state in [("torch", ckpt.rng["torch"]), ("data", ckpt.rng["data"])] + [
            (f"augment[{i}]", s) for i, s in enumerate(ckpt.rng.get("augment", []))]:
        try:
            torch.Generator().set_state(state)
        except (RuntimeError, TypeError, ValueError):
            raise refuse(f"rng.{k} is not a valid CPU generator state") from None
    gens = _augment_generators(getattr(loop, "augment", None))
    saved_gens = ckpt.rng.get("augment", [])
    if len(gens) != len(saved_gens):
        raise refuse(f"the checkpoint holds {len(saved_gens)} augmentation generator states but this "
                     f"run's augmentation has {len(gens)}: the augmentation changed")
    for cb, state in pairs:
        if not state:
            continue
        trial = _deep_copy(cb, loop)
        if trial is None:
            continue
        try:
            trial.load_state_dict(state)
        except Exception as err:  # noqa: BLE001 — a callback's own code says what it cannot read
            raise refuse(f"the saved state of the callback {type(cb).__name__} does not load "
                         f"({type(err).__name__}: {_short(str(err), 120)})") from None


def restore(loop: "Loop", ckpt: Checkpoint, *, checked: bool = False) -> int:
    """Put ``ckpt`` into ``loop`` (model, optimizer, callbacks, RNG, position); return the next epoch.

    Everything is checked first (:func:`check_resume`; ``checked=True`` when that already ran).
    Callbacks are matched to their saved states by class name and order of appearance; a
    stateful callback without a saved state (or a saved state without its callback) is an error,
    because the resumed run would silently differ from the original.
    """
    if not checked:
        check_resume(loop, ckpt)
    where = ckpt.source or "the checkpoint"
    try:
        loop.model.load_state_dict(ckpt.model, strict=True)
    except RuntimeError as err:
        raise CheckpointError(f"cannot resume from {where}: the checkpoint's weights do not fit this model: "
                              f"{err}") from None
    if ckpt.optimizer is not None:
        try:
            loop.optimizer.load_state_dict(ckpt.optimizer)
        except (ValueError, KeyError, RuntimeError, TypeError) as err:
            raise CheckpointError(f"cannot resume from {where}: the checkpoint's optimizer state does not fit "
                                  f"this optimizer ({type(loop.optimizer).__name__}): {err}") from None
    for cb, state in _match_callbacks(loop, ckpt):
        if state:
            cb.load_state_dict(state)
    torch.set_rng_state(ckpt.rng["torch"])
    loop.generator.set_state(ckpt.rng["data"])
    if "cuda" in ckpt.rng and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(ckpt.rng["cuda"])
    for g, state in zip(_augment_generators(getattr(loop, "augment", None)), ckpt.rng.get("augment", [])):
        g.set_state(state)
    loop.step = int(ckpt.loop.get("step", 0))
    loop.epoch = ckpt.epoch
    return ckpt.epoch + 1
