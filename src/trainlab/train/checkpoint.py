"""Files that cannot execute code: weights as safetensors, everything else as JSON, written atomically.

An atomic write goes to a temporary file in the destination's folder, is flushed and fsync'ed, and
then renamed over the destination (``os.replace`` is atomic on POSIX and Windows), so a crash
mid-write leaves the previous file intact. Nothing here uses pickle.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file, save
from torch import nn


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
    """Load a safetensors file written by :func:`save_weights` into ``model``."""
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    state = load_file(str(path), device=str(device))
    model.load_state_dict(state, strict=strict)
    return model
