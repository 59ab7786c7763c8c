"""One-pass native kernels for the optimizer step on the CPU.

The per-tensor fast path (``torch._foreach_*``) and the flat path run a step as several
elementwise ops, each one a pass over memory; on a CPU each op also costs a dispatch per tensor.
PyTorch's ``fused=True`` kernels do the whole rule in one pass. So do these: ``native.c`` holds
Adam/AdamW (every ε mode, AMSGrad), SGD (with and without PyTorch-form momentum, Nesterov),
Adagrad and RMSprop, each written out as the fast path's operations in its order, looping over
the group's tensors in one call — no gradient copy into a flat buffer, no per-tensor dispatch. A
tensor of 32,768 elements or more is split over torch's intra-op threads (OpenMP, sharing the
runtime torch has loaded; ``torch.get_num_threads()`` is read at every step).

The C file is compiled at the first step that can use it (a fraction of a second with the
system's C compiler) and cached, as :mod:`trainlab.native_build` describes. Without a compiler the optimizers take the foreach/flat path as before (``fused=True``
then stops with one line naming the fix). ``TRAINLAB_NATIVE=0`` turns the kernels off.

Numerics: the same operations in the same order as the fast path, on numbers of the tensors' type,
compiled without fused multiply-adds (``-ffp-contract=off``); the scalars (−lr·√c₂/c₁, …) are
computed in Python floats as the fast path computes them. PyTorch's own vectorized kernels may
still differ in the last bit (``lerp`` and ``addcmul`` can use a fused multiply-add there), so the
tests hold the kernels to the fast-path tolerance against the readable rule, and report the
difference to the foreach path (0–2 ulp).
"""
from __future__ import annotations

import ctypes
import math
from pathlib import Path

import torch
from torch import Tensor

from trainlab.native_build import NativeLibrary
from trainlab.optim.transforms import (AddWeightDecay, DecoupledWeightDecay, Momentum, Negate,
                                       ScaleByAdagrad, ScaleByAdam, ScaleByLearningRate, ScaleByRms)

__all__ = ["native_rule", "native_problem", "kernels"]

FLAGS = ["-O3", "-std=c99", "-ffp-contract=off", "-fno-math-errno"]
_TYPES = {torch.float32: "f32", torch.float64: "f64"}


def _declare(lib: ctypes.CDLL) -> None:
    i64, i32, dbl, vp = ctypes.c_int64, ctypes.c_int, ctypes.c_double, ctypes.c_void_p
    # the last argument of each: the threads to split large tensors over
    signatures = {"adam": [i64, vp, vp, vp, vp, vp, vp, dbl, dbl, dbl, dbl, i32, i32, i32, dbl, dbl, i32],
                  "sgd": [i64, vp, vp, vp, vp, dbl, dbl, dbl, i32, i32, i32, i32, dbl, i32],
                  "adagrad": [i64, vp, vp, vp, vp, dbl, dbl, i32, i32, i32, i32, dbl, i32],
                  "rmsprop": [i64, vp, vp, vp, vp, dbl, dbl, dbl, i32, i32, i32, dbl, i32]}
    for suffix in ("f32", "f64"):
        for name, argtypes in signatures.items():
            fn = getattr(lib, f"trainlab_{name}_{suffix}")  # attribute access caches the function object
            fn.argtypes, fn.restype = argtypes, None


LIBRARY = NativeLibrary(Path(__file__).with_name("native.c"), "optim", "the one-pass optimizer kernels", _declare,
                        FLAGS)


def kernels() -> ctypes.CDLL | None:
    """The loaded kernel library, building it at the first call; ``None`` when it cannot be built
    here (:func:`native_problem` says why) or ``TRAINLAB_NATIVE=0``."""
    return LIBRARY.get()


def native_problem() -> str | None:
    """Why :func:`kernels` is ``None`` (one line), or ``None`` when the kernels work."""
    problem = LIBRARY.problem()
    if problem and "need a C compiler" in problem:
        return problem + ", or use fused=False"
    return problem


def _reset() -> None:
    """Forget the loaded library (tests build it again under another environment)."""
    LIBRARY.reset()


def _split_chain(chain) -> tuple[dict, list]:
    """The pre-transforms every kernel knows (sign, weight decay) and the rest of the chain."""
    head = {"negate": 0, "coupled": 0, "lam": 0.0, "decoupled": 0.0}
    rest = []
    for tr in chain:
        if type(tr) is Negate and not rest and not head["coupled"] and not head["decoupled"]:
            head["negate"] = 1
        elif type(tr) is AddWeightDecay and not rest and not head["coupled"]:
            head["coupled"], head["lam"] = 1, tr.weight_decay
        elif type(tr) is DecoupledWeightDecay and not rest and not head["decoupled"]:
            head["decoupled"] = tr.weight_decay
        else:
            rest.append(tr)
    return head, rest


class _Operands:
    """The pointer arrays one kernel call takes, for a group's parameters and their states.

    Parameters and states keep their memory from step to step, so their arrays are built (and the
    tensors checked: dense, contiguous, CPU, one float dtype, the parameter's shape) only when
    their addresses change; the gradients, new tensors each step, are checked and pointed to each
    call. A gradient always has its parameter's dtype, device and shape (autograd and the
    ``.grad`` setter enforce it), so only its layout and contiguity are left to check.
    """

    __slots__ = ("key", "arrays", "sizes", "fn")

    def __init__(self):
        self.key, self.arrays, self.sizes, self.fn = None, None, None, None

    def get(self, name: str, params: list[Tensor], state_lists: list[list]):
        """``(kernel, grads array, [params array, *state arrays], sizes)`` or ``None`` when a
        tensor does not qualify (the caller takes the foreach path)."""
        grads = [p.grad for p in params]
        for g in grads:
            if g.layout is not torch.strided or not g.is_contiguous():
                return None
        try:
            key = tuple(t.data_ptr() for t in params) + tuple(t.data_ptr() for ts in state_lists for t in ts)
        except AttributeError:  # a state that is not a tensor (None, a number)
            return None
        if key != self.key:
            if not self._check(params, state_lists):
                self.key = None
                return None
            n = len(params)
            self.arrays = [(ctypes.c_void_p * n)(*key[i * n:(i + 1) * n]) for i in range(1 + len(state_lists))]
            self.sizes = (ctypes.c_int64 * n)(*[p.numel() for p in params])
            self.fn = getattr(kernels(), f"trainlab_{name}_{_TYPES[params[0].dtype]}")
            self.key = key
        return self.fn, (ctypes.c_void_p * len(grads))(*[g.data_ptr() for g in grads]), self.arrays, self.sizes

    @staticmethod
    def _check(params: list[Tensor], state_lists: list[list]) -> bool:
        dtype = params[0].dtype
        if dtype not in _TYPES:
            return False
        for i, p in enumerate(params):
            for t in [p] + [ts[i] for ts in state_lists]:
                if (not isinstance(t, Tensor) or t.dtype != dtype or t.device.type != "cpu"
                        or t.layout is not torch.strided or not t.is_contiguous() or t.shape != p.shape):
                    return False
        return True


def native_rule(chain):
    """A callable ``(params, states, info) -> bool`` that runs ``chain`` as one native kernel
    call, or ``None`` when no kernel covers the chain. The callable returns False (nothing done)
    when this step's tensors do not qualify (another dtype or device, not contiguous, sparse) or
    the kernels are not available; the caller then takes the foreach path."""
    head, rest = _split_chain(chain)
    tail = rest[-1] if rest else None
    if type(tail) is not ScaleByLearningRate:
        return None
    body = rest[:-1]
    ops = _Operands()
    sign_decay = (head["negate"], head["coupled"], head["lam"])

    if len(body) == 1 and type(body[0]) is ScaleByAdam and tail.decay == 0:
        adam = body[0]
        keys = [adam.prefix + "exp_avg", adam.prefix + "exp_avg_sq"]
        if adam.amsgrad:
            keys.append(adam.prefix + "max_exp_avg_sq")
        inside = int(adam.eps_mode == "inside")  # "outside" and "hat" differ only in eps_term

        def adam_step(params, states, info) -> bool:
            got = kernels() and ops.get("adam", params, [[st.get(k) for st in states] for k in keys])
            if not got:
                return False
            fn, grads, (ps, m, v, *vmax), sizes = got
            c1, c2 = adam._corrections(info.t)
            eps_term = {"outside": adam.eps * math.sqrt(c2), "inside": adam.eps * c2, "hat": adam.eps}[adam.eps_mode]
            fn(len(params), ps, grads, m, v, vmax[0] if vmax else None, sizes, adam.b1, adam.b2, eps_term,
               (math.sqrt(c2) / c1) * -info.lr, inside, *sign_decay, 1 - info.lr * head["decoupled"],
               torch.get_num_threads())
            return True
        return adam_step

    if head["decoupled"]:
        return None
    if (len(body) <= 1 and tail.decay == 0
            and (not body or (type(body[0]) is Momentum and body[0].form == "pytorch"))):
        mom = body[0] if body else None
        key = mom.prefix + "momentum_buffer" if mom else None

        def sgd_step(params, states, info) -> bool:
            bufs = [st.get(key) for st in states] if mom else []
            first = bool(mom) and any(b is None for b in bufs)
            if first:
                if not all(b is None for b in bufs):
                    return False  # some buffers exist, some not (a param group grown mid-training)
                bufs = [torch.empty_like(p, memory_format=torch.contiguous_format) for p in params]
            got = kernels() and ops.get("sgd", params, [bufs] if mom else [])
            if not got:
                return False
            fn, grads, (ps, *buf), sizes = got
            fn(len(params), ps, grads, buf[0] if mom else None, sizes, mom.momentum if mom else 0.0,
               mom.dampening if mom else 0.0, -info.lr, int(bool(mom and mom.nesterov)), int(first), *sign_decay,
               torch.get_num_threads())
            if first:
                for st, b in zip(states, bufs):
                    st[key] = b
            return True
        return sgd_step

    if len(body) == 1 and type(body[0]) is ScaleByAdagrad:
        ada = body[0]
        key = ada.prefix + "sum"

        def adagrad_step(params, states, info) -> bool:
            got = kernels() and ops.get("adagrad", params, [[st.get(key) for st in states]])
            if not got:
                return False
            fn, grads, (ps, sums), sizes = got
            fn(len(params), ps, grads, sums, sizes, ada.eps, -tail.rate(info), int(ada.eps_placement == "inside"),
               int(ada.include_current), *sign_decay, torch.get_num_threads())
            return True
        return adagrad_step

    if len(body) == 1 and type(body[0]) is ScaleByRms and not body[0].centered and tail.decay == 0:
        rms = body[0]
        key = rms.prefix + "square_avg"

        def rmsprop_step(params, states, info) -> bool:
            got = kernels() and ops.get("rmsprop", params, [[st.get(key) for st in states]])
            if not got:
                return False
            fn, grads, (ps, avgs), sizes = got
            fn(len(params), ps, grads, avgs, sizes, rms.alpha, rms.eps, -info.lr, int(rms.eps_placement == "inside"),
               *sign_decay, torch.get_num_threads())
            return True
        return rmsprop_step
    return None
