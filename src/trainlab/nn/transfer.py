"""Transfer learning: freeze layers, train the rest, load pretrained weights (notes 000).

The notes' example: a net trained on digits keeps its first layers ("what we universally know
about the data") frozen and retrains only the last ones for letters. Here:

* :func:`freeze` / :func:`unfreeze` switch ``requires_grad`` off/on for chosen layers; frozen
  batch-norm layers also stop updating their running statistics (they run in inference mode,
  as Keras does for a non-trainable ``BatchNormalization``).
* :func:`trainable_parameters` is what to hand the optimizer, so frozen parameters are not even
  in its parameter groups (no momentum, no weight decay can move them).
* :func:`load_pretrained` / :func:`save_pretrained` move weights through safetensors files, with
  an error that names each mismatched tensor and both shapes.
"""
from __future__ import annotations

import os
from typing import Mapping, Sequence

import torch
from torch import Tensor, nn

__all__ = ["freeze", "unfreeze", "trainable_parameters", "frozen_parameter_names", "load_pretrained",
           "save_pretrained", "PretrainedMismatchError"]

_NORM_TYPES = (nn.modules.batchnorm._BatchNorm,)
_HOOK_ATTR = "_trainlab_frozen_stats_hook"


def _norm_types() -> tuple[type, ...]:
    from trainlab.nn.normalization import _BatchNorm  # local import: normalization imports nothing from here
    return _NORM_TYPES + (_BatchNorm,)


def _select(model: nn.Module, layers) -> list[tuple[str, nn.Module]]:
    """Resolve ``layers`` to (name, module) pairs.

    ``layers`` may be None (the whole model), a module, a qualified name ("blocks.0"), an int
    (the i-th direct child, negative counts from the end), or a list of these.
    """
    if layers is None:
        return [("", model)]
    if isinstance(layers, (str, int, nn.Module)):
        layers = [layers]
    children = list(model.named_children())
    named = dict(model.named_modules())
    by_id = {id(m): n for n, m in named.items()}
    out = []
    for item in layers:
        if isinstance(item, nn.Module):
            if id(item) not in by_id:
                raise ValueError(f"{type(item).__name__} module is not part of this model")
            out.append((by_id[id(item)], item))
        elif isinstance(item, bool) or not isinstance(item, (int, str)):
            raise TypeError(f"layers are given as names, child indices or modules, got {item!r}")
        elif isinstance(item, int):
            if not -len(children) <= item < len(children):
                raise IndexError(f"the model has {len(children)} direct children, no index {item}")
            out.append(children[item])
        else:
            if item not in named:
                options = ", ".join(n for n in named if n and n.count(".") <= 1)
                raise ValueError(f"no layer named {item!r}; layers include: {options}")
            out.append((item, named[item]))
    return out


def _freeze_stats_hook(module: nn.Module, args) -> None:
    # runs before each forward: a frozen normalization layer uses (and keeps) its running statistics
    module.training = False


def freeze(model: nn.Module, layers=None, *, norm_stats: bool = True) -> list[str]:
    """Stop training ``layers`` of ``model``: their parameters get ``requires_grad = False``.

    Args:
        model: the network.
        layers: which part: None (everything), a qualified name like ``"blocks.0"``, an index of
            a direct child (``0`` = first, ``-1`` = last), a module, or a list of these.
        norm_stats: also freeze the running mean/variance of batch-norm layers inside ``layers``
            (they then normalize with the stored statistics even in training mode). Default True,
            as Keras; PyTorch's ``requires_grad_(False)`` alone would keep updating them.

    Returns the names of the parameters frozen. Build the optimizer over
    :func:`trainable_parameters` afterwards.
    """
    frozen = []
    norm_types = _norm_types()
    for prefix, module in _select(model, layers):
        for name, p in module.named_parameters():
            p.requires_grad_(False)
            frozen.append(f"{prefix}.{name}" if prefix else name)
        if norm_stats:
            for m in module.modules():
                if isinstance(m, norm_types) and getattr(m, _HOOK_ATTR, None) is None:
                    setattr(m, _HOOK_ATTR, m.register_forward_pre_hook(_freeze_stats_hook))
    return frozen


def unfreeze(model: nn.Module, layers=None) -> list[str]:
    """Undo :func:`freeze` for ``layers`` (same forms); returns the parameter names unfrozen.

    Remember to rebuild (or add a parameter group to) the optimizer: parameters that were left
    out of it stay untrained otherwise.
    """
    thawed = []
    for prefix, module in _select(model, layers):
        for name, p in module.named_parameters():
            p.requires_grad_(True)
            thawed.append(f"{prefix}.{name}" if prefix else name)
        for m in module.modules():
            handle = getattr(m, _HOOK_ATTR, None)
            if handle is not None:
                handle.remove()
                setattr(m, _HOOK_ATTR, None)
                m.training = model.training
    return thawed


def trainable_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The parameters with ``requires_grad`` — hand these to the optimizer after :func:`freeze`."""
    return [p for p in model.parameters() if p.requires_grad]


def frozen_parameter_names(model: nn.Module) -> list[str]:
    """Names of the parameters that do not require gradients."""
    return [n for n, p in model.named_parameters() if not p.requires_grad]


class PretrainedMismatchError(ValueError):
    """Pretrained weights do not fit the model; ``mismatched`` lists (name, file shape, model shape)."""

    def __init__(self, message: str, mismatched=(), missing=(), unexpected=()):
        super().__init__(message)
        self.mismatched, self.missing, self.unexpected = list(mismatched), list(missing), list(unexpected)


def save_pretrained(model: nn.Module, path: str | os.PathLike) -> None:
    """Write the model's state (parameters and buffers) to a safetensors file."""
    from safetensors.torch import save_file

    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(state, os.fspath(path))


def _read(source) -> Mapping[str, Tensor]:
    if isinstance(source, Mapping):
        return source
    from safetensors.torch import load_file

    path = os.fspath(source)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no pretrained weights file at {path!r}")
    return load_file(path)


def load_pretrained(model: nn.Module, source, *, strict: bool = True, exclude: Sequence[str] = (),
                    prefix: str = "") -> dict[str, list[str]]:
    """Copy pretrained weights into ``model`` (a compatible architecture).

    Args:
        model: the network to fill.
        source: a path to a ``.safetensors`` file, or a mapping name → tensor (a state dict).
        strict: every model tensor (outside ``exclude``) must be in the file and every file
            tensor in the model; otherwise only the names present in both are loaded.
        exclude: name prefixes to leave alone (e.g. ``("out.",)`` to keep a new output layer
            when the task changes, as in the notes' digits → letters example).
        prefix: prepended to the file's names before matching (to load a sub-network's file into
            a part of a bigger model, e.g. ``"encoder."``).

    Returns ``{"loaded": [...], "missing": [...], "unexpected": [...]}``.

    Raises:
        PretrainedMismatchError: a tensor's shape differs (the message names every such tensor
            with the file's and the model's shape), or, with ``strict``, names are missing or
            unexpected.
    """
    state = {prefix + k: v for k, v in _read(source).items()}
    own = model.state_dict()
    skip = lambda name: any(name.startswith(e) for e in exclude)
    mismatched = [(k, tuple(v.shape), tuple(own[k].shape)) for k, v in state.items()
                  if k in own and not skip(k) and tuple(v.shape) != tuple(own[k].shape)]
    missing = [k for k in own if k not in state and not skip(k)]
    unexpected = [k for k in state if k not in own and not skip(k)]
    problems = []
    if mismatched:
        problems.append("shape mismatch: " + "; ".join(
            f"{k}: pretrained {list(a)} vs model {list(b)}" for k, a, b in mismatched))
    if strict and missing:
        problems.append(f"missing from the pretrained weights: {', '.join(missing)}")
    if strict and unexpected:
        problems.append(f"not in the model: {', '.join(unexpected)}")
    if problems:
        hint = (" (pass exclude=('<layer>.',) to skip layers that changed, or strict=False to load the "
                "tensors present in both)")
        raise PretrainedMismatchError("cannot load pretrained weights: " + " | ".join(problems) + hint,
                                      mismatched, missing, unexpected)
    loaded = []
    with torch.no_grad():
        for k, v in state.items():
            if k in own and not skip(k):
                own[k].copy_(v)
                loaded.append(k)
    return {"loaded": loaded, "missing": missing, "unexpected": unexpected}
