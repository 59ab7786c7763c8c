"""Building and loading trainlab's native code: C kernels (the optimizers' one-pass steps, the
layers' fused passes) and C++ torch operators (layer norm's autograd node).

A kernel library is one C file next to the Python module that uses it. It is compiled at its first
use with the system's C compiler (``$CC``, else ``cc``, ``gcc`` or ``clang``) into
``$TRAINLAB_CACHE_DIR/native`` (default ``~/.cache/trainlab/native``), under a name keyed by the
source, the compiler and the flags, written atomically (a concurrent build leaves one complete
file), and loaded with :mod:`ctypes`. Without a compiler, or with ``TRAINLAB_NATIVE=0``, a library
is ``None`` and its users take their torch-op paths; :meth:`NativeLibrary.problem` says why in one
line.

An operator library (:class:`TorchOpLibrary`) is one C++ file that registers operators with
torch's dispatcher (``TORCH_LIBRARY``), compiled with the C++ compiler (``$CXX``, else ``c++``,
``g++`` or ``clang++``) against the installed torch's headers and libraries, cached the same way
(the key adds torch's version and place), and loaded with ``torch.ops.load_library``. Compiling
against torch's headers takes ~15 s, which the first use on a machine pays (said on stderr);
``python -m trainlab.native_build`` (run by ``make install``) builds everything ahead.
"""
from __future__ import annotations

import contextlib
import ctypes
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Callable

__all__ = ["NativeLibrary", "TorchOpLibrary", "compiler", "cxx_compiler", "cache_dir"]

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


def cxx_compiler() -> str | None:
    """The C++ compiler to build with: ``$CXX``, else the first of c++, g++, clang++ on the PATH."""
    for name in ([os.environ["CXX"]] if os.environ.get("CXX") else []) + ["c++", "g++", "clang++"]:
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


class _Library:
    """What a native library is to its users, whatever builds it: :meth:`get` builds and loads it
    at the first call (:meth:`_open`, which records why it cannot) and hands it out after."""

    what: str

    def _open(self) -> ctypes.CDLL | None:
        raise NotImplementedError

    def get(self) -> ctypes.CDLL | None:
        """The loaded library, built at the first call; ``None`` when it cannot be built or used here
        (:meth:`problem` says why) or with ``TRAINLAB_NATIVE=0``."""
        if turned_off():
            return None
        if not self._tried:
            self._tried = True
            self._lib = self._open()
        return self._lib

    def problem(self) -> str | None:
        """Why :meth:`get` is ``None`` (one line), or ``None`` when the library works."""
        if turned_off():
            return f"{self.what} are turned off (TRAINLAB_NATIVE=0)"
        self.get()
        return self._problem

    def reset(self) -> None:
        """Forget the loaded library (tests build it again under another environment)."""
        self._lib: ctypes.CDLL | None = None
        self._problem: str | None = None
        self._tried = False


class NativeLibrary(_Library):
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
        self.reset()

    def build(self, cc: str) -> Path:
        source = self.source.read_bytes()
        extra = _cpu_signature() if "-march=native" in self.flags else ""
        key = hashlib.sha256(source + " ".join([cc, *self.flags, *OPENMP, sys.platform, extra]).encode()).hexdigest()[:16]
        target = cache_dir() / "native" / f"{self.name}-{key}.so"
        if target.exists():
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(suffix=".so.partial", dir=target.parent)
        os.close(fd)
        # without OpenMP if the compiler lacks it; without the CPU's own flags if it rejects them
        portable = [f for f in self.flags if f not in CPU_FLAGS]
        variants = [(self.flags, OPENMP), (self.flags, [])]
        if portable != self.flags:
            variants += [(portable, OPENMP), (portable, [])]
        _compile([cc, "-shared", "-fPIC"], tmp, target, self.source,
                 [[*flags, *omp, "-o", tmp, str(self.source), "-lm"] for flags, omp in variants])
        return target

    def _open(self) -> ctypes.CDLL | None:
        cc = compiler()
        if cc is None:
            self._problem = (f"{self.what} need a C compiler, and none was found (looked for $CC, cc, gcc, "
                             "clang): apt-get install gcc, or set CC")
            return None
        try:
            lib = ctypes.CDLL(str(self.build(cc)))
            self.declare(lib)
        except (OSError, subprocess.SubprocessError) as err:
            self._problem = f"{self.what} could not be built: {err}"
            return None
        return lib


def _compile(command: list[str], tmp: str, target: Path, source: Path, attempts: list[list[str]]) -> None:
    """Run ``command + attempt`` for each attempt until one succeeds, then move ``tmp`` onto
    ``target`` (atomic: a concurrent build leaves one complete file); OSError with the compiler's
    first line when none does."""
    try:
        for extra in attempts:
            done = subprocess.run([*command, *extra], capture_output=True, text=True, timeout=600)
            if done.returncode == 0:
                break
        else:
            lines = done.stderr.strip().splitlines() or ["(no message)"]
            first = next((line for line in lines if "error" in line), lines[0])  # not "In file included from"
            raise OSError(f"{os.path.basename(command[0])} failed on {source.name}: {first}")
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


class TorchOpLibrary(_Library):
    """One C++ file of torch operators, compiled against the installed torch at its first use and
    loaded with ``torch.ops.load_library``.

    Args:
        source: the C++ file.
        name: the prefix of the built file's name (``ops`` → ``ops-<key>.so``).
        what: the operators in words, for the one-line problem.
        on_load: called with the library (as a :class:`ctypes.CDLL`) once torch has loaded it; what
            it raises makes the library unusable, and :meth:`problem` says why.
        flags: C++ compiler flags (``-shared -fPIC``, the C++ standard, torch's include and library
            paths and ABI flag are added).

    The first :meth:`get` of a process builds the library unless the cache has it: ~15 s, said in
    one line on stderr, once per machine (a file lock makes concurrent processes wait for one
    build, then load it). Operators registered with torch stay registered for the life of the
    process, so a library is loaded at most once per process and name, whatever :meth:`reset` or
    the cache directory say later.
    """

    _loaded: dict[str, ctypes.CDLL] = {}  # name → the library torch has loaded in this process

    def __init__(self, source: Path, name: str, what: str, on_load: Callable[[ctypes.CDLL], None], flags: list[str]):
        self.source, self.name, self.what, self.on_load, self.flags = source, name, what, on_load, flags
        self.reset()

    def _command(self, cxx: str) -> tuple[list[str], str]:
        """The compile command without output, source and standard, and what the cache key adds."""
        import torch

        root = Path(torch.__file__).resolve().parent
        abi = int(getattr(torch._C, "_GLIBCXX_USE_CXX11_ABI", True))
        includes = [f"-I{root / 'include'}", f"-I{root / 'include' / 'torch' / 'csrc' / 'api' / 'include'}"]
        command = [cxx, "-shared", "-fPIC", *self.flags, f"-D_GLIBCXX_USE_CXX11_ABI={abi}", *includes]
        return command, f"{torch.__version__} {root} {sys.platform}"

    def _target(self, cxx: str) -> Path:
        """Where the build for this source, compiler, flags and torch lies in the cache."""
        command, extra = self._command(cxx)
        key = hashlib.sha256(self.source.read_bytes() + " ".join([*command, extra]).encode()).hexdigest()[:16]
        return cache_dir() / "native" / f"{self.name}-{key}.so"

    def build(self, cxx: str) -> Path:
        """Compile the library (or find it in the cache); its path."""
        import torch

        target = self._target(cxx)
        if target.exists():
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        with _exclusive(target.with_name(target.name + ".lock")):  # one build at a time on this machine
            if target.exists():  # another process built it while this one waited
                return target
            print(f"trainlab: compiling {self.what} for this torch (once; about 15 s)", file=sys.stderr, flush=True)
            command, _ = self._command(cxx)
            fd, tmp = tempfile.mkstemp(suffix=".so.partial", dir=target.parent)
            os.close(fd)
            libdir = Path(torch.__file__).resolve().parent / "lib"
            link = ["-o", tmp, str(self.source), f"-L{libdir}", "-ltorch", "-ltorch_cpu", "-lc10"]
            _compile(command, tmp, target, self.source,
                     [["-std=c++20", *link], ["-std=c++17", *link]])  # torch's headers want C++20, older ones 17
        return target

    def _open(self) -> ctypes.CDLL | None:
        try:
            return self._open_or_raise()
        except Exception as err:  # noqa: BLE001 - loading or binding failed: off, with the reason
            self._problem = f"{self.what} could not be loaded: {type(err).__name__}: {err}"
            return None

    def _open_or_raise(self) -> ctypes.CDLL | None:
        lib = self._loaded.get(self.name)
        if lib is None:
            import torch

            cxx = cxx_compiler()
            if cxx is None:
                self._problem = (f"{self.what} need a C++ compiler, and none was found (looked for $CXX, c++, "
                                 "g++, clang++): apt-get install g++, or set CXX")
                return None
            try:
                path = self.build(cxx)
            except (OSError, subprocess.SubprocessError) as err:
                self._problem = f"{self.what} could not be built: {err}"
                return None
            torch.ops.load_library(str(path))
            lib = self._loaded[self.name] = ctypes.CDLL(str(path))
        self.on_load(lib)
        return lib


@contextlib.contextmanager
def _exclusive(path: Path):
    """Hold an exclusive lock on ``path`` (created if missing) for the block: processes that build
    the same library wait for each other (POSIX ``flock``; elsewhere no lock, and a concurrent
    build still leaves one complete file)."""
    try:
        import fcntl
    except ImportError:  # not POSIX
        yield
        return
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def build_all() -> dict[str, str | None]:
    """Build (or find in the cache) every kernel and operator library trainlab has; ``what →
    problem`` (``None`` where it works). ``python -m trainlab.native_build`` runs it, so a first
    training run does not pay the builds."""
    from trainlab.nn import native_layers, native_softmax
    from trainlab.optim import native

    libraries = [native.LIBRARY, native_softmax.LIBRARY, native_layers.NORM.library, native_layers.POOL.library,
                 native_layers.OPS.library]
    return {lib.what: lib.problem() for lib in libraries}


if __name__ == "__main__":
    for what, problem in build_all().items():
        print(f"{what}: {problem or 'built'}")
