"""Fast paths of the layers, and the switch back to their readable formulas.

Every activation and normalization layer has two implementations, and the tests prove them equal:

* the **readable form**: the formula as written in the docs (``1/(1 + e^(−z))``,
  ``(x − μ)/√(σ² + ε)·γ + β``, ...) in tensor ops, differentiated by autograd. It is the
  documentation of the layer, and the reference the fast path is tested against.
* the **fast path** (the default): a ``torch.autograd.Function`` whose forward evaluates the
  same formula and whose backward is the closed-form derivative, in as few fused elementwise ops
  and saved tensors as possible. At MNIST-MLP sizes (128 × 256 values) an elementwise op costs
  ~5 µs, mostly fixed overhead, so the number of ops — not the arithmetic — sets the speed.

Switch::

    import trainlab.nn as tn
    tn.set_fast_layers(False)          # every layer computes its readable form from now on
    with tn.readable_layers():         # the same, for a block only
        loss = model(x).sum()

The switch is read at each call (a module attribute, no cost to speak of), so it applies to
models already built.
"""
from __future__ import annotations

import contextlib
from typing import Callable, Iterator

import torch

__all__ = ["fast_layers", "set_fast_layers", "readable_layers", "function_apply"]


class _Switch:
    fast = True


SWITCH = _Switch()


def fast_layers() -> bool:
    """True when the layers use their fast paths (the default), False for the readable forms."""
    return SWITCH.fast


def set_fast_layers(enabled: bool) -> bool:
    """Use the fast paths (``True``, the default) or the readable forms (``False``); returns the
    previous setting."""
    if not isinstance(enabled, bool):
        raise TypeError(f"set_fast_layers takes True or False, got {enabled!r}")
    previous, SWITCH.fast = SWITCH.fast, enabled
    return previous


@contextlib.contextmanager
def readable_layers(readable: bool = True) -> Iterator[None]:
    """Within the block, every layer computes its readable form (``readable=False``: its fast path)."""
    previous = set_fast_layers(not readable)
    try:
        yield
    finally:
        set_fast_layers(previous)


transforms_active = torch._C._are_functorch_transforms_active  # vmap, grad, ...: True inside one


def function_apply(function_cls: type[torch.autograd.Function]) -> Callable:
    """``function_cls.apply`` with less per-call overhead, for the layers' fast paths.

    ``torch.autograd.Function.apply`` is a Python method that inspects its arguments for
    functorch before calling the C++ apply, and the backward node looks the user's backward up
    on each call: together ~3 µs, about 10 % of a ReLU's forward + backward at 128 × 256. The
    returned function calls the C++ apply directly unless a functorch transform (``vmap``,
    ``grad``, ...) is active, where it defers to the full ``apply`` and so behaves exactly as
    before; and the backward node calls ``function_cls.backward`` directly (the Functions here
    define ``backward``, never ``vjp``).
    """
    c_apply = super(torch.autograd.Function, function_cls).apply  # torch._C._FunctionBase.apply, bound
    full_apply = function_cls.apply
    function_cls._backward_cls.apply = function_cls.backward

    def apply(*args):
        if transforms_active():
            return full_apply(*args)
        return c_apply(*args)

    apply.__doc__ = f"{function_cls.__name__}.apply (see trainlab.nn.fastpath.function_apply)"
    return apply
