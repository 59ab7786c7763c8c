"""Files that cannot execute code: weights as safetensors, everything else as JSON, written atomically.

An atomic write goes to a temporary file in the destination's folder, is flushed and fsync'ed, and
then renamed over the destination (``os.replace`` is atomic on POSIX and Windows), so a crash
mid-write leaves the previous file intact. Nothing here uses pickle.
"""
from __future__ import annotations

import json
import math
import os
import struct
import tempfile
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


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see either the old file or the whole new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
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
    if is_ckpt:
        state = load_checkpoint(path).model
    else:
        try:
            state = load_file(str(path))
        except (SafetensorError, OSError) as err:
            raise CheckpointError(f"{path} is not a safetensors weights file: {err}") from None
    model.load_state_dict(state, strict=strict)
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
# nothing in it is ever executed.
# =============================================================================================

CHECKPOINT_FORMAT = "trainlab-checkpoint"
CHECKPOINT_VERSION = 1
_MAX_HEADER = 100 * 2**20  # the safetensors reference implementation refuses larger headers too


class CheckpointError(ValueError):
    """A checkpoint file is missing, corrupt, crafted, or does not fit the run it is loaded into."""


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
    """

    model: dict[str, Tensor]
    optimizer: dict | None = None
    callbacks: list[dict] = field(default_factory=list)
    rng: dict = field(default_factory=dict)
    loop: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)

    @property
    def epoch(self) -> int:
        """The last finished epoch (0-based); training resumes at ``epoch + 1``."""
        return int(self.loop.get("epoch", -1))


# ---- a JSON tree with tensor placeholders ---------------------------------------------------------

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
            if not (k is None or isinstance(k, (bool, int, float, str))):
                raise CheckpointError(f"cannot store a dict key of type {type(k).__name__} at {path}")
        # torch's optimizer state is keyed by integers, which JSON objects cannot hold
        return {"__dict__": [[k, _encode(v, f"{path}.{k}", tensors)] for k, v in obj.items()]}
    if isinstance(obj, (torch.dtype, torch.device)):
        return {"__torch__": str(obj)}
    raise CheckpointError(f"cannot store an object of type {type(obj).__name__} at {path or 'the top'} in a "
                          "checkpoint (only tensors, numbers, strings, lists, tuples and dicts)")


def _decode(obj: Any, tensors: dict[str, Tensor]) -> Any:
    if isinstance(obj, list):
        return [_decode(v, tensors) for v in obj]
    if not isinstance(obj, dict):
        return obj
    if len(obj) == 1:
        (tag, value), = obj.items()
        if tag == "__tensor__":
            if not isinstance(value, str) or value not in tensors:
                raise CheckpointError(f"corrupt checkpoint: it refers to a tensor {value!r} that it does not hold")
            return tensors[value]
        if tag == "__tuple__":
            return tuple(_decode(v, tensors) for v in value)
        if tag == "__dict__":
            return {k: _decode(v, tensors) for k, v in value}
        if tag == "__torch__":
            if value.startswith("torch."):
                dtype = getattr(torch, value.removeprefix("torch."), None)
                if isinstance(dtype, torch.dtype):
                    return dtype
                raise CheckpointError(f"corrupt checkpoint: unknown dtype {value!r}")
            return torch.device(value)
    return {k: _decode(v, tensors) for k, v in obj.items()}


# ---- files ------------------------------------------------------------------------------------

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
        "model_keys": list(ckpt.model),
    }
    meta = {"format": CHECKPOINT_FORMAT, "version": str(CHECKPOINT_VERSION), "state": json.dumps(tree)}
    return save(tensors, metadata=meta)


def save_checkpoint(path: str | Path, ckpt: Checkpoint) -> Path:
    """Write ``ckpt`` to ``path`` atomically (temp file in the same folder, fsync, rename).

    A crash (even SIGKILL) at any moment leaves either the previous file or the complete new
    one at ``path``; at worst a stray ``.<name>.*.tmp`` file stays behind, which loading ignores.
    """
    path = Path(path)
    atomic_write_bytes(path, checkpoint_bytes(ckpt))
    return path


def _read_header(data: bytes, path: Path) -> dict:
    def refuse(why: str) -> CheckpointError:
        return CheckpointError(f"{path} is not a trainlab checkpoint: {why}. trainlab only reads safetensors "
                               "files it wrote itself and never unpickles anything")

    if len(data) < 8:
        raise refuse("the file is shorter than a safetensors header (empty or truncated)")
    if data[:1] == b"\x80" or data[:2] == b"PK":
        raise refuse("it looks like a pickle or a zip archive written by torch.save")
    (n,) = struct.unpack("<Q", data[:8])
    if n > _MAX_HEADER or 8 + n > len(data):
        raise refuse(f"its header claims {n} bytes but the file has {len(data)} (truncated or not safetensors)")
    try:
        header = json.loads(data[8 : 8 + n].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise refuse("its header is not valid JSON") from None
    if not isinstance(header, dict):
        raise refuse("its header is not a JSON object")
    meta = header.get("__metadata__")
    if not isinstance(meta, dict) or meta.get("format") != CHECKPOINT_FORMAT:
        raise refuse("its metadata carries no trainlab-checkpoint tag (for plain weights use load_weights)")
    if meta.get("version") != str(CHECKPOINT_VERSION):
        raise refuse(f"unsupported checkpoint version {meta.get('version')!r} (this trainlab reads "
                     f"version {CHECKPOINT_VERSION})")
    return meta


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Read a checkpoint written by :func:`save_checkpoint`; refuse anything else.

    Raises:
        CheckpointError: the file is missing, truncated, corrupt, not safetensors (e.g. a pickle),
            or not a trainlab checkpoint. No byte of it is ever executed.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    data = path.read_bytes()
    meta = _read_header(data, path)
    try:
        tensors = _st_load(data)
    except (SafetensorError, ValueError, RuntimeError) as err:
        raise CheckpointError(f"{path} is a corrupt checkpoint: {err}") from None
    try:
        tree = json.loads(meta["state"])
        model_keys = tree["model_keys"]
        model = {k: tensors[f"model.{k}"] for k in model_keys}
        return Checkpoint(
            model=model,
            optimizer=_decode(tree["optimizer"], tensors),
            callbacks=_decode(tree["callbacks"], tensors),
            rng=_decode(tree["rng"], tensors),
            loop=_decode(tree["loop"], tensors),
            extra=_decode(tree["extra"], tensors),
        )
    except CheckpointError:
        raise
    except (KeyError, TypeError, ValueError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{path} is a corrupt checkpoint: its state record is malformed ({err!r})") from None


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
    )


def restore(loop: "Loop", ckpt: Checkpoint) -> int:
    """Put ``ckpt`` into ``loop`` (model, optimizer, callbacks, RNG, position); return the next epoch.

    Callbacks are matched to their saved states by class name and order of appearance; a
    stateful callback without a saved state (or a saved state without its callback) is an error,
    because the resumed run would silently differ from the original.
    """
    spe = ckpt.loop.get("steps_per_epoch")
    if spe is not None and spe != loop.steps_per_epoch:
        raise CheckpointError(f"the checkpoint was taken with {spe} steps per epoch but this run has "
                              f"{loop.steps_per_epoch}: the training data or batch size changed")
    try:
        loop.model.load_state_dict(ckpt.model, strict=True)
    except RuntimeError as err:
        raise CheckpointError(f"the checkpoint's weights do not fit this model: {err}") from None
    if ckpt.optimizer is not None:
        try:
            loop.optimizer.load_state_dict(ckpt.optimizer)
        except (ValueError, KeyError, RuntimeError) as err:
            raise CheckpointError(f"the checkpoint's optimizer state does not fit this optimizer "
                                  f"({type(loop.optimizer).__name__}): {err}") from None
    saved: dict[str, list[dict]] = {}
    for entry in ckpt.callbacks:
        saved.setdefault(entry["type"], []).append(entry["state"])
    for cb in loop.callbacks.callbacks:
        name = type(cb).__name__
        queue = saved.get(name, [])
        if queue:
            state = queue.pop(0)
            if state:
                cb.load_state_dict(state)
        elif cb.state_dict():
            raise CheckpointError(f"the checkpoint holds no state for the callback {name}; resume with the "
                                  "callbacks of the original run")
    leftover = [name for name, q in saved.items() if any(q)]
    if leftover:
        raise CheckpointError(f"the checkpoint holds state for callbacks this run lacks: {', '.join(leftover)}; "
                              "resume with the callbacks of the original run")
    torch.set_rng_state(ckpt.rng["torch"])
    loop.generator.set_state(ckpt.rng["data"])
    if "cuda" in ckpt.rng and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(ckpt.rng["cuda"])
    gens = _augment_generators(getattr(loop, "augment", None))
    saved_gens = ckpt.rng.get("augment", [])
    if len(gens) != len(saved_gens):
        raise CheckpointError(f"the checkpoint holds {len(saved_gens)} augmentation generator states but this "
                              f"run's augmentation has {len(gens)}: the augmentation changed")
    for g, state in zip(gens, saved_gens):
        g.set_state(state)
    loop.step = int(ckpt.loop.get("step", 0))
    loop.epoch = ckpt.epoch
    return ckpt.epoch + 1
