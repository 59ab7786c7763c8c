"""Run every ``benchmarks/bench_*.py`` in turn and say which finished.

Each benchmark runs in its own process (so one's threads, caches and imports do not disturb the
next), with its output shown as it comes. ``--quick`` is passed through to every benchmark (each
then does a few steps: a smoke test). Exit status: 0 when all finished, 1 otherwise.

    python benchmarks/run_all.py                 # every benchmark, full size
    python benchmarks/run_all.py --quick         # smoke-test every benchmark
    python benchmarks/run_all.py --only mnist    # the benchmarks whose file name contains "mnist"
    python benchmarks/run_all.py --list
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def benchmarks(only: str | None = None) -> list[Path]:
    """The benchmark scripts, in name order (optionally those whose name contains ``only``)."""
    found = sorted(HERE.glob("bench_*.py"))
    return [p for p in found if only is None or only in p.stem]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="pass --quick to every benchmark")
    p.add_argument("--only", help="run the benchmarks whose file name contains this")
    p.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    args = p.parse_args(argv)
    scripts = benchmarks(args.only)
    if args.list:
        for s in scripts:
            print(s.name)
        return 0
    if not scripts:
        print(f"no benchmark matches {args.only!r}", file=sys.stderr)
        return 1
    results = []
    for script in scripts:
        print(f"\n=== {script.name}{' --quick' if args.quick else ''} ===", flush=True)
        t0 = time.perf_counter()
        code = subprocess.call([sys.executable, str(script)] + (["--quick"] if args.quick else []))
        results.append((script.name, code, time.perf_counter() - t0))
    print("\n=== summary ===")
    for name, code, seconds in results:
        print(f"{name:40s}{'ok' if code == 0 else f'FAILED (exit {code})':>18s}{seconds:9.1f} s")
    return 0 if all(code == 0 for _, code, _ in results) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
