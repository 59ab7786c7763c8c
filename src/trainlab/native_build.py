"""Building and loading trainlab's C kernels (the optimizers' one-pass steps, the layers' fused passes).

A kernel library is one C file next to the Python module that uses it. It is compiled at its first
use with the system's C compiler (``$CC``, else ``cc``, ``gcc`` or ``clang``) into
``$TRAINLAB_CACHE_DIR/native`` (default ``~/.cache/trainlab/native``), under a name keyed by the
source, the compiler and the flags, written atomically (a concurrent build leaves one complete
file), and loaded with :mod:`ctypes`. Without a compiler, or with ``TRAINLAB_NATIVE=0``, a library
is ``None`` and its users take their torch-op paths; :meth:`NativeLibrary.problem` says why in one
line.
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Callable

__all__ = ["NativeLibrary", "compiler", "cache_dir"]

# OpenMP splits large tensors over torch's intra-op threads; a compiler without it builds the
# single-threaded kernels. At run time the library shares the libgomp torch has loaded.
OPENMP = ["-fopenmp"]


# TRAINLAB_NATIVE is read at every kernel call (so setting it takes effect at once), and a layer's
# fast path makes several calls: os.environ.get costs ~1.5 µs here, a look-up in the mapping's own
# dict of encoded keys ~0.1 µs. That dict is what os.environ reads and writes (setenv, monkeypatch).
_ENV_DATA = getattr(os.environ, "_data", None)
_ENV_KEY = os.environ.encodekey("TRAINLAB_NATIVE") if hasattr(os.environ, "encodekey") else None


def turned_off() -> bool:
    """True when ``TRAINLAB_NATIVE=0`` is set: every kernel library is off."""
    if _ENV_DATA is not None and _ENV_KEY is not None and _ENV_KEY not in _ENV_DATA:
        return False  # not set at all: the common case, without decoding anything
    return os.environ.get("TRAINLAB_NATIVE", "1") == "0"


def compiler() -> str | None:
    """The C compiler to build with: ``$CC``, else the first of cc, gcc, clang on the PATH."""
    for name in ([os.environ["CC"]] if os.environ.get("CC") else []) + ["cc", "gcc", "clang"]:
        path = shutil.which(name)
        if path:
            return path
    return None


def cache_dir() -> Path:
    """``$TRAINLAB_CACHE_DIR``, else ``$XDG_CACHE_HOME/trainlab``, else ``~/.cache/trainlab``."""
    root = os.environ.get("TRAINLAB_CACHE_DIR")
    if root:
        return Path(root)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "trainlab"


# flags for this CPU alone, dropped when a compiler rejects them: its instructions, and on a CPU with
# AVX-512 its full vector width (GCC otherwise prefers 256-bit vectors there, where torch's own
# kernels use 512: softmax 1.31× against 1.19× torch's time with them, measured)
CPU_FLAGS = frozenset({"-march=native", "-mprefer-vector-width=512"})


def _cpu_signature() -> str:
    """What ``-march=native`` depends on: the CPU's model and feature flags (Linux), else the platform."""
    try:
        with open("/proc/cpuinfo") as f:
            lines = [ln for ln in f if ln.startswith(("model name", "flags"))][:2]
        return "".join(lines)
    except OSError:
        import platform
        return platform.machine() + platform.processor()


class NativeLibrary:
    """One C source compiled on first use and loaded with ctypes.

    Args:
        source: the C file.
        name: the prefix of the built file's name (``optim`` → ``optim-<key>.so``).
        what: the kernels in words, for the one-line problem ("the one-pass optimizer kernels").
        declare: sets ``argtypes``/``restype`` of the library's functions once it is loaded.
        flags: compiler flags (``-shared -fPIC`` are added; with ``-march=native`` also the rest of
            :data:`CPU_FLAGS`). With ``-march=native`` the CPU's
            model and flags enter the cache key, so a shared cache never serves another CPU's build;
            a compiler that rejects it builds without it. A compiler without OpenMP builds the
            single-threaded kernels.
    """

    def __init__(self, source: Path, name: str, what: str, declare: Callable[[ctypes.CDLL], None],
                 flags: list[str]):
        if "-march=native" in flags:  # and all of an AVX-512 CPU's vector width (CPU_FLAGS)
            flags = [*flags, *sorted(CPU_FLAGS - set(flags))]
        self.source, self.name, self.what, self.declare, self.flags = source, name, what, declare, flags
        self._lib: ctypes.CDLL | None = None
        self._problem: str | None = None
        self._tried = False

    def build(self, cc: str) -> Path:
        source = self.source.read_bytes()
        extra = _cpu_signature() if "-march=native" in self.flags else ""
        key = hashlib.sha256(source + " ".join([cc, *self.flags, *OPENMP, sys.platform, extra]).encode()).hexdigest()[:16]
        target = cache_dir() / "native" / f"{self.name}-{key}.so"
        if target.exists():
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(suffix=".so", dir=target.parent)
        os.close(fd)
        try:
            # without OpenMP if the compiler lacks it; without the CPU's own flags if it rejects them
            portable = [f for f in self.flags if f not in CPU_FLAGS]
            attempts = [(self.flags, OPENMP), (self.flags, [])]
            if portable != self.flags:
                attempts += [(portable, OPENMP), (portable, [])]
            for flags, omp in attempts:
                done = subprocess.run([cc, "-shared", "-fPIC", *flags, *omp, "-o", tmp, str(self.source), "-lm"],
                                      capture_output=True, text=True, timeout=300)
                if done.returncode == 0:
                    break
            else:
                first = (done.stderr.strip().splitlines() or ["(no message)"])[0]
                raise OSError(f"{os.path.basename(cc)} failed on {self.source.name}: {first}")
            os.replace(tmp, target)  # atomic: a concurrent build leaves one complete file
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return target

    def get(self) -> ctypes.CDLL | None:
        """The loaded library, building it at the first call; ``None`` when it cannot be built here
        (:meth:`problem` says why) or ``TRAINLAB_NATIVE=0``."""
        if turned_off():
            return None
        if not self._tried:
            self._tried = True
            cc = compiler()
            if cc is None:
                self._problem = (f"{self.what} need a C compiler, and none was found (looked for $CC, cc, gcc, "
                                 "clang): apt-get install gcc, or set CC")
            else:
                try:
                    lib = ctypes.CDLL(str(self.build(cc)))
                    self.declare(lib)
                    self._lib = lib
                except (OSError, subprocess.SubprocessError) as err:
                    self._problem = f"{self.what} could not be built: {err}"
        return self._lib

    def problem(self) -> str | None:
        """Why :meth:`get` is ``None`` (one line), or ``None`` when the library works."""
        if turned_off():
            return f"{self.what} are turned off (TRAINLAB_NATIVE=0)"
        self.get()
        return self._problem

    def reset(self) -> None:
        """Forget the loaded library (tests build it again under another environment)."""
        self._lib, self._problem, self._tried = None, None, False


def build_all() -> dict[str, str | None]:
    """Build (or find in the cache) every kernel library trainlab has; ``what → problem`` (``None``
    where it works). ``python -m trainlab.native_build`` runs it, so a first training run does not
    pay the builds."""
    from trainlab.nn import native_layers, native_softmax
    from trainlab.optim import native

    libraries = [native.LIBRARY, native_softmax.LIBRARY, native_layers.NORM.library]
    return {lib.what: lib.problem() for lib in libraries}


if __name__ == "__main__":
    for what, problem in build_all().items():
        print(f"{what}: {problem or 'built'}")
