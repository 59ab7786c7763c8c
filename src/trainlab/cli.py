"""The ``trainlab`` command line.

Each subcommand is a function ``cmd_<name>(args) -> int`` registered in :func:`build_parser`;
adding one is a parser block there and its function here.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

QUICKSTART = {
    "name": "quickstart-moons",
    "seed": 0,
    "data": {"name": "moons", "n_samples": 2000, "noise": 0.2, "split": [0.7, 0.3]},
    "model": {"kind": "mlp", "hidden": [64, 64], "activation": "relu"},
    "optimizer": {"name": "adam", "lr": 0.01},
    "train": {"epochs": 30, "batch_size": 32},
}

# convenience flags of `trainlab run` -> the config path they set
RUN_SHORTCUTS = {
    "dataset": "data.name",
    "epochs": "train.epochs",
    "batch_size": "train.batch_size",
    "optimizer": "optimizer.name",
    "lr": "optimizer.lr",
    "activation": "model.activation",
    "hidden": "model.hidden",
    "seed": "seed",
    "name": "name",
    "device": "train.device",
}


def _shortcut_value(flag: str, value) -> str:
    """The YAML text a shortcut flag stands for (``--hidden 32,32`` is the list ``[32, 32]``)."""
    if flag == "hidden":
        text = str(value).strip()
        if text and not text.startswith("[") and all(p.strip().isdigit() for p in text.split(",")):
            return "[" + text + "]"
    return str(value)


def _shortcut_overrides(args) -> list[str]:
    out = []
    for flag, path in RUN_SHORTCUTS.items():
        value = getattr(args, flag, None)
        if value is not None:
            out.append(f"{path}={_shortcut_value(flag, value)}")
    return out


def report_dropped(command: str, dropped: list[str]) -> None:
    """Say on stderr which arguments a technique switch dropped (nothing is dropped silently)."""
    for line in dropped:
        print(f"trainlab {command}: note: {line}", file=sys.stderr)


def cmd_run(args) -> int:
    from trainlab.experiments.config import ConfigError, apply_overrides, load_yaml, parse_config
    from trainlab.experiments.runner import ResumeError, resume_run, run_experiment

    overrides = _shortcut_overrides(args) + list(args.set or [])
    if getattr(args, "resume", None):
        # the run's own config; a CONFIG or overrides given as well must not change it
        try:
            cfg = None
            if args.config or overrides:
                base = load_yaml(args.config) if args.config else load_yaml(Path(args.resume) / "config.yaml")
                dropped: list[str] = []
                cfg = parse_config(apply_overrides(base, overrides, dropped=dropped))
                report_dropped("run", dropped)
            result = resume_run(args.resume, cfg, verbose=not args.quiet)
        except (ConfigError, ResumeError) as err:
            print(f"trainlab run: {err}", file=sys.stderr)
            return 2
        except (ValueError, FloatingPointError) as err:
            print(f"trainlab run: {err}", file=sys.stderr)
            return 1
        print(result.run_dir if args.quiet else
              "final: " + "  ".join(f"{k} {v:.4f}" for k, v in result.final.items()))
        return 0
    try:
        data = load_yaml(args.config) if args.config else dict(QUICKSTART)
        dropped = []
        data = apply_overrides(data, overrides, dropped=dropped)
        report_dropped("run", dropped)
        cfg = parse_config(data)
    except ConfigError as err:
        print(f"trainlab run: {err}", file=sys.stderr)
        return 2
    if not args.config and not args.quiet:
        print("trainlab quickstart: an MLP on the two-moons data set (embedded, no download)")
    try:
        if cfg.ensemble is not None:
            from trainlab.experiments.ensemble import run_ensemble
            ens = run_ensemble(cfg, run_dir=args.out, verbose=not args.quiet)
            print(ens.run_dir if args.quiet else
                  "ensemble: " + "  ".join(f"{k} {v:.4f}" for k, v in ens.ensemble.items()))
            return 0
        from trainlab.experiments.runner import default_run_dir
        from trainlab.experiments.store import RunRecording
        run_dir = Path(args.out) if args.out else default_run_dir(cfg)
        if args.no_store:
            result = run_experiment(cfg, run_dir=run_dir, verbose=not args.quiet)
        else:  # the run also goes into the results store ('trainlab runs', 'trainlab compare')
            with RunRecording(args.store, cfg.to_dict(), run_dir) as recording:
                result = run_experiment(cfg, run_dir=run_dir, verbose=not args.quiet)
                recording.finish(result)
    except (ValueError, FloatingPointError) as err:
        print(f"trainlab run: {err}", file=sys.stderr)
        return 1
    if args.quiet:
        print(result.run_dir)
    else:
        print("final: " + "  ".join(f"{k} {v:.4f}" for k, v in result.final.items()))
    return 0


def _list_tables() -> dict:
    from trainlab.experiments import catalog
    from trainlab.nn import models

    return {
        "datasets": catalog.DATASETS, "models": catalog.MODELS, "optimizers": catalog.OPTIMIZERS,
        "transforms": catalog.TRANSFORMS, "schedules": catalog.SCHEDULES,
        "weight-inits": catalog.WEIGHT_INITS, "bias-inits": catalog.BIAS_INITS,
        "callbacks": catalog.CALLBACKS, "augmentations": catalog.AUGMENTATIONS,
        "activations": models.ACTIVATIONS, "norms": models.NORMS, "dropouts": models.DROPOUTS,
    }


def cmd_list(args) -> int:
    from trainlab.experiments.catalog import describe

    tables = _list_tables()
    if args.what is None:
        for name, table in tables.items():
            print(f"{name}: {', '.join(sorted(table)) or '(none)'}")
        print("'trainlab list NAME' (a table or a technique) shows the arguments and defaults")
        return 0
    if args.what in tables:
        entries = sorted(tables[args.what].items())
        width = max((len(k) for k, _ in entries), default=0)
        print(f"{args.what}:")
        for key, fn in entries:
            print(f"  {key:<{width}}  {describe(fn, args.what)}")
        return 0
    found = [(table, fn) for table, entries in tables.items() for key, fn in entries.items() if key == args.what]
    if not found:
        names = sorted(tables)
        print(f"trainlab list: {args.what!r} is neither a table ({', '.join(names)}) nor a name in one; "
              "run 'trainlab list' for every name", file=sys.stderr)
        return 2
    for table, fn in found:
        print(f"{args.what} ({table}): {describe(fn, table)}")
    return 0


def cmd_study(args) -> int:
    from trainlab.experiments.studies import StudyError, list_studies, load_study, run_study

    try:
        if args.list or not args.name:
            found = list_studies(args.dir)
            if not found:
                print("trainlab study: no study files found (use --dir DIR)", file=sys.stderr)
                return 2
            width = max(len(n) for n in found)
            for name, path in found.items():
                study = load_study(path)
                print(f"{name:<{width}}  {study.title}")
            return 0
        result = run_study(args.name, quick=args.quick, out=args.out, directory=args.dir, verbose=True)
    except StudyError as err:
        print(f"trainlab study: {err}", file=sys.stderr)
        return 2
    return 0 if result.passed else 1


def build_parser() -> argparse.ArgumentParser:
    from trainlab import __version__

    parser = argparse.ArgumentParser(
        prog="trainlab",
        description="trainlab: a laboratory for the techniques that make neural networks train well.",
        epilog="Run 'trainlab COMMAND --help' for the options of a command.")
    parser.add_argument("--version", action="version", version=f"trainlab {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser(
        "run", help="train one experiment (without CONFIG: the built-in quickstart on moons)",
        description="Train the experiment a YAML config describes and write its run folder (resolved "
                    "config, metrics CSV/JSON, curves PNG, HTML report, weights as safetensors). Without "
                    "CONFIG, runs the built-in quickstart: an MLP on the two-moons set, under a minute. "
                    "Any config field can be set with --set path=value; 'trainlab list' shows the names "
                    "each field accepts.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  trainlab run\n  trainlab run exp.yaml --set optimizer.lr=0.05 --epochs 10\n"
               "  trainlab run --optimizer sgd --set optimizer.momentum=0.9 --batch-size full")
    p.add_argument("config", nargs="?", help="YAML config file (default: the quickstart)")
    p.add_argument("--set", action="append", metavar="PATH=VALUE",
                   help="override a config field by dotted path, e.g. optimizer.lr=0.01, "
                        "model.hidden=[64,32], callbacks.0.patience=3 (repeatable; values parse as YAML)")
    p.add_argument("--out", metavar="DIR", help="run folder (default: runs/<name>-<timestamp>)")
    p.add_argument("--dataset", help="data.name (see 'trainlab list datasets')")
    p.add_argument("--epochs", type=int, help="train.epochs")
    p.add_argument("--batch-size", dest="batch_size",
                   help="train.batch_size: 1 (stochastic GD), k (mini-batch GD) or full (batch GD)")
    p.add_argument("--optimizer", help="optimizer.name (see 'trainlab list optimizers')")
    p.add_argument("--lr", type=float, help="optimizer.lr")
    p.add_argument("--activation", help="model.activation (see 'trainlab list activations')")
    p.add_argument("--hidden", help="model.hidden, e.g. [64,32]")
    p.add_argument("--seed", type=int, help="seed (initialization, data order, dropout)")
    p.add_argument("--name", help="run name")
    p.add_argument("--device", help="train.device: cpu, cuda, ... (default: cuda if present)")
    p.add_argument("-q", "--quiet", action="store_true", help="no per-epoch lines; print the run folder only")
    p.add_argument("--store", metavar="FILE",
                   help="results store the run is recorded in (default: $TRAINLAB_STORE or runs/trainlab.sqlite)")
    p.add_argument("--no-store", action="store_true", help="do not record the run in the results store")
    p.add_argument("--resume", metavar="RUN_DIR",
                   help="continue the interrupted run in RUN_DIR from its last checkpoint (same config: a "
                        "CONFIG or --set that changes it is refused with the differences)")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("list", help="list the names configs accept (datasets, optimizers, ...) and their arguments",
                       description="List the allow-listed names each config field accepts; with NAME, the "
                                   "arguments and defaults of a table's techniques or of one technique.")
    p.add_argument("what", nargs="?", metavar="NAME",
                   help="a table (datasets, models, optimizers, transforms, schedules, weight-inits, bias-inits, "
                        "callbacks, augmentations, activations, norms, dropouts): its names with their arguments "
                        "and defaults; or one name, e.g. adam")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser(
        "study", help="run a study that reproduces a claim of the notes (--list shows them)",
        description="Run a study: train what it describes, check its assertions and write a run folder "
                    "with figures and report.html stating PASS/FAIL with the numbers. Exit status 0 when "
                    "every assertion passes, 1 when one fails.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  trainlab study --list\n  trainlab study init-symmetry --quick\n"
               "  trainlab study mnist-99-cnn --out runs/cnn99")
    p.add_argument("name", nargs="?", help="study name (see --list) or a path to a study YAML file")
    p.add_argument("--list", action="store_true", help="list the studies and their titles")
    p.add_argument("--quick", action="store_true", help="the quick version: small data, few epochs")
    p.add_argument("--out", metavar="DIR", help="run folder (default: runs/study-<name>-<timestamp>)")
    p.add_argument("--dir", metavar="DIR", help="directory of study files (default: the repository's studies/)")
    p.set_defaults(func=cmd_study)
    _add_results_commands(sub)
    _add_trajectories_command(sub)
    return parser


def _add_trajectories_command(sub) -> None:
    """``trajectories``: optimizers on 2-D test functions (paths, steps to tolerance, the notes' claims)."""
    p = sub.add_parser(
        "trajectories", help="run optimizers on 2-D test functions, plot their paths, tabulate steps to tolerance",
        description="Run optimizers from one start on Rosenbrock, Beale, a saddle or an ill-conditioned "
                    "quadratic; draw their paths on the contour plot (PNG) and print a table: final value, "
                    "steps to tolerance (to escape, for the saddle), direction reversals, overshoot, late/early "
                    "step length. --claims checks the notes' claims about them.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  trainlab trajectories\n  trainlab trajectories -f saddle -o gd -o rmsprop -o adam\n"
               "  trainlab trajectories -f rosenbrock -o adam:lr=0.1 -o lbfgs:line_search_fn=strong_wolfe\n"
               "  trainlab trajectories --claims")
    p.add_argument("-f", "--function", action="append", metavar="NAME",
                   help="rosenbrock, beale, saddle, quadratic (repeatable; default: all four)")
    p.add_argument("-o", "--optimizer", action="append", metavar="SPEC",
                   help="a preset (gd, momentum, nesterov, adagrad, rmsprop, adam) or an optimizer name from "
                        "'trainlab list optimizers', with arguments as name:key=value,key=value; a preset's "
                        "lr can be changed the same way, e.g. adam:lr=0.1 (repeatable; default: the presets)")
    p.add_argument("--steps", type=int, help="steps per optimizer (default: the function's)")
    p.add_argument("--start", metavar="X,Y", help="starting point (default: the function's)")
    p.add_argument("--tol", type=float, default=1e-6, help="tolerance on f − f* (default 1e-6)")
    p.add_argument("--out", metavar="DIR", default="trajectories", help="folder for the PNGs (default: trajectories)")
    p.add_argument("--no-plot", action="store_true", help="print the tables only")
    p.add_argument("--claims", action="store_true", help="check the notes' claims (momentum, NAG, Adagrad, saddle)")
    p.set_defaults(func=cmd_trajectories)


def cmd_trajectories(args) -> int:
    from trainlab.experiments.trajectories import cli_trajectories
    return cli_trajectories(args)


def _add_results_commands(sub) -> None:
    """``sweep``, ``runs`` and ``compare``: many runs, the results store, runs side by side."""
    store_help = "results store (default: $TRAINLAB_STORE or runs/trainlab.sqlite)"
    p = sub.add_parser(
        "sweep", help="run a sweep: a config whose fields hold lists or distributions (grid/random search)",
        description="Expand a sweep file (a config in which fields hold several values, plus a 'sweep:' "
                    "section) into runs, train them (runs that share an architecture and data as one "
                    "batched model, the rest in worker processes), record them in the results store and "
                    "write an HTML report. Interrupt with Ctrl-C and run the same command again to resume: "
                    "runs already in the store are not rerun.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  trainlab sweep lr.yaml --dry-run\n"
               "  trainlab sweep lr.yaml --set 'optimizer.lr=[0.001,0.01,0.1]' --set train.epochs=10\n"
               "  trainlab sweep search.yaml --workers 2 --store results.sqlite")
    p.add_argument("config", help="YAML sweep file")
    p.add_argument("--set", action="append", metavar="PATH=VALUE",
                   help="override a field by dotted path before expansion; a list value sweeps it, e.g. "
                        "'optimizer.lr=[0.01,0.1]' (repeatable; values parse as YAML)")
    p.add_argument("--store", metavar="FILE", help=store_help)
    p.add_argument("--out", metavar="DIR", help="sweep folder: report and figures (default: <store folder>/sweeps/<id>)")
    p.add_argument("--workers", type=int, metavar="N", help="worker processes (0: all in this process; default: "
                                                             "sweep.workers, else one per CPU core)")
    p.add_argument("--threads", type=int, metavar="N", help="torch threads per training process (default: the "
                                                             "cores shared among the workers; 1 on a busy machine)")
    p.add_argument("--no-batch", action="store_true", help="train every run alone (no batched models)")
    p.add_argument("--dry-run", action="store_true", help="print the runs the sweep expands to and stop")
    p.add_argument("--rerun", action="store_true", help="train every run again, even those already in the store")
    p.add_argument("--retry-failed", action="store_true", help="train again the runs that failed before")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress; print the report path only")
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser("runs", help="list the runs in the results store (filter by status, sweep, name, field)",
                       description="List runs recorded in the results store, newest first.",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       epilog="examples:\n  trainlab runs\n  trainlab runs --sweep lr-batch --status finished\n"
                              "  trainlab runs --where optimizer.name=sgd --sort val_accuracy\n  trainlab runs --sweeps")
    p.add_argument("--store", metavar="FILE", help=store_help)
    p.add_argument("--status", action="append", choices=["queued", "running", "finished", "failed", "interrupted"],
                   help="only runs with this status (repeatable)")
    p.add_argument("--sweep", metavar="ID", help="only the runs of this sweep (id or unique prefix)")
    p.add_argument("--name", metavar="GLOB", help="only runs whose name or id matches, e.g. 'lr-*'")
    p.add_argument("--where", action="append", metavar="PATH=VALUE",
                   help="only runs whose config field equals VALUE, e.g. optimizer.lr=0.01 (repeatable)")
    p.add_argument("--metrics", metavar="A,B", help="final numbers to show (default: val_loss,val_accuracy)")
    p.add_argument("--sort", metavar="METRIC", help="sort by this final number, best first")
    p.add_argument("--limit", type=int, metavar="N", help="show at most N runs")
    p.add_argument("--sweeps", action="store_true", help="list the sweeps instead of the runs")
    p.add_argument("--format", choices=["text", "markdown", "csv"], default="text")
    p.set_defaults(func=cmd_runs)

    p = sub.add_parser("compare", help="put runs side by side: final and best metrics, epoch of best, time",
                       description="Tabulate runs side by side: status, epochs, wall time, the config fields "
                                   "that differ, and for every metric its last value, best value and the "
                                   "epoch of the best (1-based); '*' marks the best run of a row.")
    p.add_argument("runs", nargs="+", metavar="RUN", help="run ids (or unique prefixes; see 'trainlab runs')")
    p.add_argument("--store", metavar="FILE", help=store_help)
    p.add_argument("--format", choices=["text", "markdown", "csv"], default="text")
    p.set_defaults(func=cmd_compare)


def cmd_sweep(args) -> int:
    from trainlab.experiments.sweep import cli_sweep
    return cli_sweep(args)


def cmd_runs(args) -> int:
    from trainlab.experiments.store import cli_runs
    return cli_runs(args)


def cmd_compare(args) -> int:
    from trainlab.experiments.store import cli_compare
    return cli_compare(args)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
