"""Run every ``benchmarks/bench_*.py`` in turn, then print one summary table of ratios vs goals.

Each benchmark runs in its own process (so one's threads, caches and imports do not disturb the
next), with its output shown as it comes. ``--quick`` is passed through to every benchmark (each
then does a few steps: a smoke test); ``--device`` and ``--threads`` are passed to the benchmarks
that accept them. Exit status: 0 when all finished, 1 otherwise (a missed goal is reported in the
table, not as a failure: timings depend on the machine and its load).

The ratio protocol. A benchmark reports each of its measured ratios as one line on stdout::

    RATIO <name> <value> <op> <goal>

``name`` is a dotted word without spaces (``sweep.moons32_batched_vs_plain``), ``value`` the
measured ratio, ``op`` one of ``<=``, ``<``, ``>=``, ``>`` and ``goal`` a number: the goal holds
when ``value op goal``. Any other output is free-form. Every ``RATIO`` line of every benchmark
becomes one row of the summary table (name, measured, goal, ok). ``--markdown FILE`` also writes
the table as Markdown (the form ``docs/benchmarks.md`` keeps).

    python benchmarks/run_all.py                 # every benchmark, full size
    python benchmarks/run_all.py --quick         # smoke-test every benchmark
    python benchmarks/run_all.py --only mnist    # the benchmarks whose file name contains "mnist"
    python benchmarks/run_all.py --list
"""
from __future__ import annotations

import argparse
import operator
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import NamedTuple

HERE = Path(__file__).resolve().parent
RATIO_LINE = re.compile(r"^RATIO\s+(\S+)\s+(\S+)\s+(<=|>=|<|>)\s+(\S+)\s*$")
OPS = {"<=": operator.le, "<": operator.lt, ">=": operator.ge, ">": operator.gt}


class Ratio(NamedTuple):
    """One ``RATIO`` line: ``value op goal`` is the goal."""

    bench: str
    name: str
    value: float
    op: str
    goal: float

    @property
    def ok(self) -> bool:
        return OPS[self.op](self.value, self.goal)


def parse_ratio(line: str, bench: str = "") -> Ratio | None:
    """The :class:`Ratio` of a ``RATIO <name> <value> <op> <goal>`` line, or ``None`` for any other line."""
    m = RATIO_LINE.match(line.strip())
    if m is None:
        return None
    try:
        return Ratio(bench, m.group(1), float(m.group(2)), m.group(3), float(m.group(4)))
    except ValueError:
        return None


def benchmarks(only: str | None = None) -> list[Path]:
    """The benchmark scripts, in name order (optionally those whose name contains ``only``)."""
    found = sorted(HERE.glob("bench_*.py"))
    return [p for p in found if only is None or only in p.stem]


def _accepts(script: Path, flag: str) -> bool:
    return f'"{flag}"' in script.read_text(encoding="utf-8")


def run(script: Path, args: list[str]) -> tuple[int, list[Ratio]]:
    """Run one benchmark, echoing its output; returns its exit status and its ratios."""
    ratios: list[Ratio] = []
    proc = subprocess.Popen([sys.executable, str(script)] + args, stdout=subprocess.PIPE, text=True, bufsize=1)
    assert proc.stdout is not None
    for line in proc.stdout:
        sys.stdout.write(line)
        sys.stdout.flush()
        r = parse_ratio(line, script.stem)
        if r is not None:
            ratios.append(r)
    return proc.wait(), ratios


def table(ratios: list[Ratio]) -> list[str]:
    """The summary table as text lines."""
    lines = [f"{'benchmark':22s} {'ratio':42s} {'measured':>9s} {'goal':>9s}  ok"]
    for r in ratios:
        lines.append(f"{r.bench:22s} {r.name:42s} {r.value:9.3f} {r.op + ' ' + format(r.goal, 'g'):>9s}  "
                     f"{'yes' if r.ok else 'NO'}")
    return lines


def markdown(ratios: list[Ratio]) -> str:
    rows = ["| benchmark | ratio | measured | goal | ok |", "|---|---|---:|---:|:---:|"]
    rows += [f"| {r.bench} | `{r.name}` | {r.value:.3f} | {r.op} {r.goal:g} | {'yes' if r.ok else 'no'} |"
             for r in ratios]
    return "\n".join(rows) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="pass --quick to every benchmark")
    p.add_argument("--only", help="run the benchmarks whose file name contains this")
    p.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    p.add_argument("--device", help="pass --device to the benchmarks that take it (cpu, cuda)")
    p.add_argument("--threads", type=int, help="pass --threads to the benchmarks that take it")
    p.add_argument("--markdown", help="also write the summary table as Markdown to this file")
    args = p.parse_args(argv)
    scripts = benchmarks(args.only)
    if args.list:
        for s in scripts:
            print(s.name)
        return 0
    if not scripts:
        print(f"no benchmark matches {args.only!r}", file=sys.stderr)
        return 1
    results, ratios = [], []
    for script in scripts:
        extra = ["--quick"] if args.quick else []
        if args.device and _accepts(script, "--device"):
            extra += ["--device", args.device]
        if args.threads and _accepts(script, "--threads"):
            extra += ["--threads", str(args.threads)]
        print(f"\n=== {script.name} {' '.join(extra)} ===", flush=True)
        t0 = time.perf_counter()
        code, found = run(script, extra)
        ratios += found
        results.append((script.name, code, time.perf_counter() - t0))
    print("\n=== summary ===")
    for name, code, seconds in results:
        print(f"{name:40s}{'ok' if code == 0 else f'FAILED (exit {code})':>18s}{seconds:9.1f} s")
    print("\n=== ratios vs goals ===")
    if ratios:
        print("\n".join(table(ratios)))
    else:
        print("(no benchmark printed a RATIO line)")
    if args.markdown:
        Path(args.markdown).write_text(markdown(ratios), encoding="utf-8")
    return 0 if all(code == 0 for _, code, _ in results) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
