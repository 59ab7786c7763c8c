"""The diagnosis suite as a benchmark: how often the primary verdict names the problem a run was built to have.

Runs every scenario of :mod:`trainlab.diagnostics.suite` (13 scenarios: 10 problems with 5 seeds
each, 3 healthy controls with 10 seeds each, 80 small runs on toy sets and MNIST subsets) with
one torch thread, then prints the confusion table (expected kind × primary verdict), precision
and recall per kind and the false-alarm rate on the healthy runs, and whether the goal holds:
every scenario right on ≥ 95 % of its seeds, ≤ 2 % false alarms over ≥ 30 healthy runs.

    python benchmarks/bench_diagnosis.py                  # the full suite (40–100 s on one core)
    python benchmarks/bench_diagnosis.py --quick          # one seed per scenario
    python benchmarks/bench_diagnosis.py --json out.json  # also write every run's row
    python benchmarks/bench_diagnosis.py --first-seed 1000  # seeds the thresholds never saw
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from trainlab.diagnostics.suite import run_suite


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="one seed per scenario")
    p.add_argument("--seeds", type=int, help="seeds per scenario (default: each scenario's own)")
    p.add_argument("--scenario", action="append", help="only this scenario (repeatable)")
    p.add_argument("--first-seed", type=int, default=0,
                   help="first seed (default 0; e.g. 1000 for seeds the thresholds were not tuned on)")
    p.add_argument("--json", metavar="FILE", help="write the rows and tables as JSON")
    p.add_argument("-v", "--verbose", action="store_true", help="one line per run")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    seeds = args.seeds if args.seeds is not None else (1 if args.quick else None)
    result = run_suite(seeds=seeds, names=args.scenario, verbose=args.verbose, first_seed=args.first_seed)
    print(result.text())
    out = result.to_dict()
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
