"""The ``trainlab`` command line.

Each subcommand is a function ``cmd_<name>(args) -> int`` registered in :func:`build_parser`;
adding one is a parser block there and its function here. :func:`main` runs it through
:func:`run_command`, the one place where expected failures (a full disk, a corrupt store, a
missing optional package, a closed pipe, Ctrl-C) become one line on stderr and an exit status.
Nothing at module level imports torch: ``trainlab --help`` must start as fast as Python does.
"""
from __future__ import annotations

import argparse
import errno
import os
import shlex
import sys
from pathlib import Path

# exit statuses (docs/troubleshooting.md): 1 a failure while running, 2 a bad config or bad
# arguments (argparse uses 2 as well), 130 Ctrl-C and 141 a closed output pipe, as a shell
# reports a process ended by SIGINT or SIGPIPE
EXIT_FAILURE, EXIT_USAGE, EXIT_INTERRUPTED, EXIT_BROKEN_PIPE = 1, 2, 130, 141

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


def _quickstart_name(data: dict) -> dict:
    """The quickstart's name follows its data (``--dataset line`` runs ``quickstart-line``)."""
    section = data.get("data")
    dataset = section.get("name") if isinstance(section, dict) else None
    if data.get("name") == QUICKSTART["name"] and isinstance(dataset, str):
        data = {**data, "name": f"quickstart-{dataset}"}
    return data


def report_dropped(command: str, dropped: list[str]) -> None:
    """Say on stderr which arguments a technique switch dropped (nothing is dropped silently)."""
    for line in dropped:
        print(f"trainlab {command}: note: {line}", file=sys.stderr)


def cmd_run(args) -> int:
    from trainlab.experiments.config import ConfigError, apply_overrides, load_yaml, on_this_machine, parse_config
    from trainlab.experiments.runner import ResumeError, RunDirError, resume_run, run_experiment

    launched = _run_on_many_processes(args)
    if launched is not None:
        return launched
    overrides = _shortcut_overrides(args) + list(args.set or [])
    if getattr(args, "overwrite", False) and not args.out:
        print("trainlab run: --overwrite applies to the folder --out names; give --out DIR as well", file=sys.stderr)
        return 2
    if getattr(args, "resume", None):
        # the run's own config; a CONFIG or overrides given as well must not change it
        try:
            cfg = None
            if args.config or overrides:
                base = (load_yaml(args.config) if args.config
                        else on_this_machine(load_yaml(Path(args.resume) / "config.yaml"))[0])
                dropped: list[str] = []
                cfg = parse_config(apply_overrides(base, overrides, dropped=dropped))
                report_dropped("run", dropped)
            set_threads(args.threads, cfg or _saved_config(args.resume))
            result = resume_run(args.resume, cfg, verbose=not args.quiet,
                                store=False if args.no_store else (args.store or True))
        except (ConfigError, ResumeError) as err:
            return _run_failed(err, 2)
        except (ValueError, FloatingPointError) as err:
            return _run_failed(err, 1)
        except KeyboardInterrupt:
            raise run_interrupted(args, args.resume) from None
        if not _rank_zero():
            return 0
        print(result.run_dir if args.quiet else
              "final: " + "  ".join(f"{k} {v:.4f}" for k, v in result.final.items()))
        return 0
    try:
        data = load_yaml(args.config) if args.config else dict(QUICKSTART)
        dropped = []
        data = apply_overrides(data, overrides, dropped=dropped)
        report_dropped("run", dropped)
        if not args.config:
            data = _quickstart_name(data)
        cfg = parse_config(data)
    except ConfigError as err:
        return _run_failed(err, 2)
    if not args.config and not args.quiet and _rank_zero():
        print("trainlab quickstart: an MLP on the two-moons data set (embedded, no download)")
    set_threads(args.threads, cfg)
    try:
        if cfg.ensemble is not None:
            from trainlab.experiments.ensemble import run_ensemble
            ens = run_ensemble(cfg, run_dir=args.out, verbose=not args.quiet)
            print(ens.run_dir if args.quiet else
                  "ensemble: " + "  ".join(f"{k} {v:.4f}" for k, v in ens.ensemble.items()))
            return 0
        # the run also goes into the results store ('trainlab runs', 'trainlab compare')
        result = run_experiment(cfg, run_dir=args.out, verbose=not args.quiet,
                                store=False if args.no_store else (args.store or True),
                                overwrite=bool(args.overwrite) if args.out else None)
    except (ConfigError, RunDirError) as err:
        return _run_failed(err, 2)
    except (ValueError, FloatingPointError) as err:
        return _run_failed(err, 1)
    except KeyboardInterrupt as err:  # the runner's RunInterrupted knows the folder it had reserved
        raise run_interrupted(args, getattr(err, "run_dir", None)) from None
    if not _rank_zero():  # the other ranks of a launch stay quiet
        return 0
    if args.quiet:
        print(result.run_dir)
    else:
        print("final: " + "  ".join(f"{k} {v:.4f}" for k, v in result.final.items()))
    return 0


def _run_on_many_processes(args) -> int | None:
    """``trainlab run`` on many processes: the status, or None to run here as one process.

    On a rank of a launch (``torchrun ... -m trainlab run`` or a worker of ``--nproc``) the run
    goes through :func:`trainlab.experiments.launch.run_rank`, which records a failure for the
    launcher; with ``--nproc N`` > 1 this process becomes the launcher of N workers.
    """
    from trainlab.experiments.launch import rank_env, run_rank

    if rank_env() is not None and not getattr(args, "in_rank", False):
        args.in_rank = True
        return run_rank(cmd_run, args, lambda err: describe_failure(err, args))
    if rank_env() is None and (getattr(args, "nproc", None) or 1) > 1:
        return launch_nproc(args)
    return None


def _run_failed(err: BaseException, status: int) -> int:
    """Print the one line of a failed ``trainlab run``; on a rank of a launch, hand it to the launcher."""
    if _rank_env_set():
        from trainlab.experiments.launch import RankFailure, _kind
        raise RankFailure(str(err), status, _kind(err))
    print(f"trainlab run: {err}", file=sys.stderr)
    return status


def _rank_env_set() -> bool:
    from trainlab.experiments.launch import rank_env
    return rank_env() is not None


def _rank_zero() -> bool:
    """True in one process and on rank 0 of a launch: the process that prints."""
    from trainlab.experiments.launch import rank_env
    env = rank_env()
    return env is None or env[0] == 0


def launch_nproc(args) -> int:
    """``trainlab run ... --nproc N``: check the config here, reserve the run folder, start N ranks.

    The config is parsed (a bad one fails here with its one line, before any process starts),
    and the folder of a new run is created here and given to the workers with ``--out``, so
    that a failure, whichever rank it hits, can remove it.
    """
    from trainlab.experiments.config import ConfigError, apply_overrides, load_yaml, parse_config
    from trainlab.experiments.runner import RunDirError, check_out_dir, default_run_dir
    if getattr(args, "overwrite", False) and not args.out:
        print("trainlab run: --overwrite applies to the folder --out names; give --out DIR as well", file=sys.stderr)
        return 2
    if not os.environ.get("OMP_NUM_THREADS") and args.threads is None:
        os.environ["OMP_NUM_THREADS"] = "1"  # what torchrun does: N processes must not each take every core
    if args.resume:
        if not (Path(args.resume) / "config.yaml").is_file():
            print(f"trainlab run: {args.resume} is not a run folder (no config.yaml)", file=sys.stderr)
            return 2
        return _launch_or_interrupted(args, args.resume, give_out=False, fresh=False)
    try:
        data = load_yaml(args.config) if args.config else dict(QUICKSTART)
        data = apply_overrides(data, _shortcut_overrides(args) + list(args.set or []))
        if not args.config:
            data = _quickstart_name(data)
        cfg = parse_config(data)
        if cfg.ensemble is not None:
            raise ConfigError("ensemble: --nproc trains one model on many processes, an ensemble trains many "
                              "models; drop --nproc (the ensemble's members train as one batched model)")
        if args.out:
            check_out_dir(args.out, bool(args.overwrite))
        _check_gpus(cfg, args.nproc)
    except (ConfigError, RunDirError) as err:
        print(f"trainlab run: {err}", file=sys.stderr)
        return 2
    if args.out:
        return _launch_or_interrupted(args, args.out, give_out=False, fresh=not Path(args.out).exists())
    return _launch_or_interrupted(args, str(default_run_dir(cfg)), give_out=True, fresh=True)


def _check_gpus(cfg, nproc: int) -> None:
    """Refuse more ranks than GPUs for a CUDA run (each rank takes ``cuda:LOCAL_RANK``; NCCL needs distinct GPUs)."""
    import torch

    from trainlab.experiments.config import ConfigError

    device = cfg.train.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if torch.device(device).type == "cuda" and torch.cuda.device_count() < nproc:
        raise ConfigError(f"train.device: {device} with --nproc {nproc}, but this machine has "
                          f"{torch.cuda.device_count()} GPU(s): one process per GPU, so give --nproc "
                          f"{max(torch.cuda.device_count(), 1)} or fewer, or train on the CPU (--device cpu)")


def _launch_or_interrupted(args, folder: str, *, give_out: bool, fresh: bool) -> int:
    """:func:`~trainlab.experiments.launch.launch_run`; Ctrl-C says how to resume on as many processes."""
    import shutil

    from trainlab.experiments.launch import launch_run

    try:
        return launch_run(args, args.nproc, folder, give_out=give_out, fresh=fresh)
    except KeyboardInterrupt:
        err = run_interrupted(args, folder)
        if "--resume" in str(err):
            raise CommandInterrupted(f"{err} --nproc {args.nproc}") from None
        if fresh:  # nothing to resume from: the folder was this launch's alone
            shutil.rmtree(folder, ignore_errors=True)
        raise CommandInterrupted(str(err).replace(" --overwrite", "") if fresh else str(err)) from None


class CommandInterrupted(KeyboardInterrupt):
    """Ctrl-C during ``trainlab run``; the message says how to resume the run, or why it cannot be."""


def run_interrupted(args, run_dir) -> CommandInterrupted:
    """The :class:`CommandInterrupted` for a run stopped in ``run_dir`` (None: before it had a folder).

    A run can be resumed once its first epoch has written the last-epoch checkpoint; before that
    the only way on is to start it again, with the command line the user typed.
    """
    from trainlab.experiments.runner import last_checkpoint_path

    if run_dir is not None:
        cfg = _saved_config(run_dir)
        if cfg is not None and last_checkpoint_path(cfg, run_dir).is_file():
            return CommandInterrupted(f"interrupted; resume with: trainlab run --resume {shlex.quote(str(run_dir))}")
    again = ["trainlab", *args.argv]
    if getattr(args, "out", None) and hasattr(args, "overwrite") and not args.overwrite:
        again.append("--overwrite")  # the folder of the interrupted run exists now
    if run_dir is None:  # before the folder was chosen, or an ensemble (which is not resumable)
        return CommandInterrupted(f"interrupted; start again with: {shlex.join(again)}")
    return CommandInterrupted("interrupted before the first checkpoint was written, so there is no checkpoint to "
                          f"resume from; start again with: {shlex.join(again)}")


def _saved_config(run_dir):
    """The resolved config a run folder holds, or None when it has none (or an unreadable one)."""
    from trainlab.experiments.config import ConfigError, load_yaml, on_this_machine, parse_config

    path = Path(run_dir) / "config.yaml"
    try:
        return parse_config(on_this_machine(load_yaml(path))[0]) if path.is_file() else None
    except (ConfigError, OSError, ValueError):
        return None


def default_threads(cfg) -> int | None:
    """The torch CPU threads for training ``cfg`` when ``--threads`` is not given (None: torch's own).

    The embedded toy sets (``trainlab.data.toy``: a few thousand 2-D points) make matrix products
    too small for a second thread to pay for its synchronisation, and on a busy machine each extra
    thread waits for a core: one thread is faster there (docs/training.md has the measurements).
    Image data and user data keep torch's default of one thread per core, which halves the time of
    a CNN on MNIST. ``OMP_NUM_THREADS`` set by the user is respected.
    """
    if cfg is None or os.environ.get("OMP_NUM_THREADS"):
        return None
    from trainlab.experiments import catalog

    loader = catalog.DATASETS.get(cfg.data.name)
    return 1 if getattr(loader, "__module__", "") == "trainlab.data.toy" else None


def set_threads(requested: int | None, cfg=None) -> None:
    """Set torch's CPU threads to ``requested``, else to :func:`default_threads` of ``cfg``."""
    n = requested if requested is not None else default_threads(cfg)
    if n is not None:
        import torch

        torch.set_num_threads(n)


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
            studies = [load_study(path) for path in found.values()]
            rows = [(s.name, s.runtime.get("quick", "?"), s.runtime.get("full", "?"), s.title) for s in studies]
            widths = [max(len(r[i]) for r in [("study", "quick", "full", ""), *rows]) for i in range(3)]
            print(f"{'study':<{widths[0]}}  {'quick':>{widths[1]}}  {'full':>{widths[2]}}  title")
            for name, quick, full, title in rows:
                print(f"{name:<{widths[0]}}  {quick:>{widths[1]}}  {full:>{widths[2]}}  {title}")
            print("(quick and full: the runtimes the study files state; see docs/studies.md)")
            return 0
        result = run_study(args.name, quick=args.quick, out=args.out, directory=args.dir, verbose=True,
                           threads=args.threads)
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
    parser.add_argument("--debug", action="store_true", help=DEBUG_HELP)
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
    p.add_argument("--out", metavar="DIR", help="run folder (default: a new runs/<name>-<timestamp>); an existing "
                                                 "non-empty folder is refused unless --overwrite")
    p.add_argument("--overwrite", action="store_true",
                   help="with --out: replace the run folder already there (its old files are removed first)")
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
    p.add_argument("--threads", type=_positive_int, metavar="N",
                   help="torch CPU threads (default: 1 for the toy data sets, where more threads only wait "
                        "for each other; one per core for images and your own data; $OMP_NUM_THREADS if set)")
    p.add_argument("--resume", metavar="RUN_DIR",
                   help="continue the interrupted run in RUN_DIR from its last checkpoint (same config: a "
                        "CONFIG or --set that changes it is refused with the differences)")
    p.add_argument("--nproc", type=_positive_int, metavar="N",
                   help="train the run on N local processes (data parallel, PyTorch's elastic launcher: gloo on "
                        "the CPU, NCCL on GPUs); train.batch_size is the global batch (docs/training.md)")
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
    p.add_argument("--list", action="store_true", help="list the studies, their runtimes (quick and full) and titles")
    p.add_argument("--quick", action="store_true", help="the quick version: small data, few epochs")
    p.add_argument("--out", metavar="DIR", help="run folder (default: runs/study-<name>-<timestamp>)")
    p.add_argument("--dir", metavar="DIR", help="directory of study files (default: the repository's studies/)")
    p.add_argument("--threads", type=_positive_int, metavar="N",
                   help="torch CPU threads while the study runs (default: the study file's threads)")
    p.set_defaults(func=cmd_study)
    _add_results_commands(sub)
    _add_trajectories_command(sub)
    _add_playground_command(sub)
    _add_export_command(sub)
    _add_diagnose_command(sub)
    for command in sub.choices.values():  # `trainlab run ... --debug` works as well as `trainlab --debug run`
        # SUPPRESS: a subcommand without the flag leaves the top level's value alone
        command.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=DEBUG_HELP)
    return parser


def _add_export_command(sub) -> None:
    """``export``: a run's trained model as a deployable TorchScript or ONNX file."""
    p = sub.add_parser(
        "export", help="write a run's trained model as a deployable file (TorchScript or ONNX)",
        description="Rebuild the trained model of a run folder (config.yaml + weights.safetensors) and "
                    "write it as a file that runs without trainlab: TorchScript (torch.jit.load) or ONNX "
                    "(any ONNX runtime; needs 'pip install onnx'). The model outputs what it did in "
                    "training: logits for classification, values for regression; any batch size.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  trainlab export runs/quickstart-moons-20260101-120000\n"
               "  trainlab export RUN_DIR --format onnx --out model.onnx")
    p.add_argument("run_dir", metavar="RUN_DIR", help="a finished run folder")
    p.add_argument("--format", choices=["torchscript", "onnx"], default="torchscript",
                   help="torchscript (default; RUN_DIR/model.pt) or onnx (RUN_DIR/model.onnx)")
    p.add_argument("--out", metavar="FILE", help="where to write the file (default: in RUN_DIR)")
    p.set_defaults(func=cmd_export)


def cmd_export(args) -> int:
    from trainlab.experiments.export import ExportError, export_run
    from trainlab.experiments.load import RunLoadError

    try:
        path = export_run(args.run_dir, args.format, args.out)
    except RunLoadError as err:
        print(f"trainlab export: {err}", file=sys.stderr)
        return 2
    except ExportError as err:
        print(f"trainlab export: {err}", file=sys.stderr)
        return 1
    print(path)
    return 0


def _add_diagnose_command(sub) -> None:
    """``diagnose``: a run folder's verdicts recomputed, or the diagnosis suite with known answers."""
    p = sub.add_parser(
        "diagnose", help="recompute and print a run folder's verdicts, or run the diagnosis suite (--suite)",
        description="Recompute the verdicts of a run folder from its metrics.json (the primary verdict, the one "
                    "to act on first, comes first) and print them, or as JSON with --json (the verdicts.json "
                    "contract). With --suite, run the diagnosis suite: scenarios with a known problem and "
                    "healthy controls over several seeds, then a confusion table, precision/recall per kind "
                    "and the false-alarm rate; exit status 1 when the goal (>= 95 % right per scenario, "
                    "<= 2 % false alarms) is missed.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  trainlab diagnose runs/quickstart-moons-20261201-120000\n"
               "  trainlab diagnose runs/my-run --json\n  trainlab diagnose --suite --quick\n"
               "  trainlab diagnose --suite --scenario lr-too-low-sgd --seeds 3")
    p.add_argument("run_dir", nargs="?", metavar="RUN_DIR", help="a run folder (with metrics.json)")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.add_argument("--suite", action="store_true", help="run the diagnosis suite instead of reading a run folder")
    p.add_argument("--quick", action="store_true", help="with --suite: one seed per scenario")
    p.add_argument("--seeds", type=int, metavar="N", help="with --suite: seeds per scenario (default: each "
                                                            "scenario's own, 5; 10 for the healthy controls)")
    p.add_argument("--scenario", action="append", metavar="NAME",
                   help="with --suite: run only this scenario (repeatable; --list-scenarios shows them)")
    p.add_argument("--first-seed", type=int, default=0, metavar="N",
                   help="with --suite: the first seed (default 0; seeds far from 0 were not used to choose thresholds)")
    p.add_argument("--list-scenarios", action="store_true", help="list the suite's scenarios and stop")
    p.add_argument("-v", "--verbose", action="store_true", help="with --suite: one line per run")
    p.set_defaults(func=cmd_diagnose)


def cmd_diagnose(args) -> int:
    import json

    if args.list_scenarios:
        from trainlab.diagnostics.suite import scenarios
        for sc in scenarios():
            print(f"{sc.name:32s} {sc.expected:20s} {sc.about}")
        return 0
    if args.suite:
        from trainlab.diagnostics.suite import run_suite
        if args.run_dir:
            print("trainlab diagnose: give either RUN_DIR or --suite, not both", file=sys.stderr)
            return 2
        if args.seeds is not None and args.seeds < 1:
            print(f"trainlab diagnose: --seeds must be >= 1, got {args.seeds}", file=sys.stderr)
            return 2
        try:
            result = run_suite(seeds=1 if args.quick and args.seeds is None else args.seeds, names=args.scenario,
                               verbose=args.verbose and not args.json, first_seed=args.first_seed)
        except ValueError as err:
            print(f"trainlab diagnose: {err}", file=sys.stderr)
            return 2
        print(json.dumps(result.to_dict(), indent=1) if args.json else result.text())
        return 0 if result.passed() else 1
    if not args.run_dir:
        print("trainlab diagnose: give a run folder (RUN_DIR) or --suite", file=sys.stderr)
        return 2
    from trainlab.diagnostics.verdicts import diagnose
    try:
        diagnosis = diagnose(Path(args.run_dir))
    except FileNotFoundError as err:
        print(f"trainlab diagnose: {err}", file=sys.stderr)
        return 2
    except (ValueError, KeyError, TypeError) as err:
        print(f"trainlab diagnose: cannot read the run folder {args.run_dir}: {err}", file=sys.stderr)
        return 2
    print(json.dumps(diagnosis.to_dict(), indent=1) if args.json else diagnosis.text())
    return 0


DEBUG_HELP = "on an error, show the full traceback as well as the one-line message"


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


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


def _add_playground_command(sub) -> None:
    """``playground``: the local web page that trains trainlab models live."""
    p = sub.add_parser(
        "playground", help="a local web page that trains real trainlab models live and shows why they learn or fail",
        description="Start the playground: a local web server (127.0.0.1 by default) whose page trains trainlab "
                    "models live (decision boundary, hidden units, weights, gradient norms, verdicts), with every "
                    "setting in the URL, 'copy as config' for 'trainlab run' and 'save run' for a run folder. "
                    "Needs the extra: pip install 'trainlab[playground]'.")
    p.add_argument("--port", type=_positive_int, default=8765, help="port (default 8765)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--no-browser", action="store_true", help="do not open the page in a browser")
    p.add_argument("--runs", default="runs", metavar="DIR", help="where 'save run' writes run folders (default: runs)")
    p.set_defaults(func=cmd_playground)


def cmd_playground(args) -> int:
    try:
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
        import websockets  # noqa: F401  (uvicorn's WebSocket protocol)
    except ModuleNotFoundError as err:
        # a plain ImportError: describe_failure prints its message as it is, one line
        raise ImportError(f"the playground needs {err.name}: pip install 'trainlab[playground]'") from None
    from trainlab.playground.server import serve
    serve(args.host, args.port, open_browser=not args.no_browser, runs_root=args.runs)
    return 0


def _add_results_commands(sub) -> None:
    """``sweep``, ``runs`` and ``compare``: many runs, the results store, runs side by side."""
    store_help = "results store (default: $TRAINLAB_STORE or runs/trainlab.sqlite)"
    p = sub.add_parser(
        "sweep", help="run a sweep: a config whose fields hold lists or distributions (grid/random/optuna search)",
        description="Expand a sweep file (a config in which fields hold several values, plus a 'sweep:' "
                    "section) into runs, train them (runs that share an architecture and data as one "
                    "batched model, the rest in worker processes), record them in the results store and "
                    "write an HTML report. Interrupt with Ctrl-C and run the same command again to resume: "
                    "runs already in the store are not rerun.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  trainlab sweep lr.yaml --dry-run\n"
               "  trainlab sweep lr.yaml --set 'optimizer.lr=[0.001,0.01,0.1]' --set train.epochs=10\n"
               "  trainlab sweep search.yaml --workers 2 --store results.sqlite\n"
               "  trainlab sweep search.yaml --executor ray --address auto")
    p.add_argument("config", help="YAML sweep file")
    p.add_argument("--set", action="append", metavar="PATH=VALUE",
                   help="override a field by dotted path before expansion; a list value sweeps it, e.g. "
                        "'optimizer.lr=[0.01,0.1]' (repeatable; values parse as YAML)")
    p.add_argument("--store", metavar="FILE", help=store_help)
    p.add_argument("--out", metavar="DIR", help="sweep folder: report and figures (default: <store folder>/sweeps/<id>)")
    p.add_argument("--workers", type=int, metavar="N", help="worker processes (0: all in this process; default: "
                                                             "sweep.workers, else one per CPU core; an optuna "
                                                             "search keeps N trials in flight, default 1)")
    p.add_argument("--threads", type=_positive_int, metavar="N", help="torch threads per training process (default: the "
                                                             "cores shared among the workers; 1 on a busy machine)")
    p.add_argument("--no-batch", action="store_true", help="train every run alone (no batched models)")
    p.add_argument("--executor", choices=("local", "ray"),
                   help="where the runs train: local worker processes, or one Ray task per run or batched "
                        "group (default: sweep.executor, else local)")
    p.add_argument("--address", metavar="auto|HOST:PORT",
                   help="with --executor ray: the Ray cluster to run on ('auto': the one this machine belongs "
                        "to); without it a local Ray instance is started (default: sweep.address)")
    p.add_argument("--gpus", type=float, metavar="N",
                   help="with --executor ray: GPUs each task asks for (default: sweep.gpus, else 1 when "
                        "train.device names cuda, 0 otherwise)")
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
    p.add_argument("--status", action="append", choices=["queued", "running", "finished", "failed", "interrupted", "pruned"],
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
                                   "epoch of the best (1-based); '*' marks the best run of a row. Also writes "
                                   "a figure overlaying the runs' validation loss and accuracy per epoch "
                                   "(a red cross marks where a diverged run ended).")
    p.add_argument("runs", nargs="+", metavar="RUN", help="run ids (or unique prefixes; see 'trainlab runs')")
    p.add_argument("--store", metavar="FILE", help=store_help)
    p.add_argument("--format", choices=["text", "markdown", "csv"], default="text")
    p.add_argument("--figure", metavar="FILE", help="where to write the figure overlaying the runs' curves "
                                                    "(default: <store folder>/compare/<ids>.png)")
    p.add_argument("--no-figure", action="store_true", help="print the table only")
    p.set_defaults(func=cmd_compare)


def cmd_sweep(args) -> int:
    from trainlab.experiments.sweep import cli_sweep
    return cli_sweep(args)


def cmd_runs(args) -> int:
    from trainlab.experiments.store import cli_runs
    return cli_runs(args)


def cmd_compare(args) -> int:
    from trainlab.experiments.store import cli_compare

    status = cli_compare(args)
    if status != 0 or args.no_figure:
        return status
    path = _compare_figure(args)
    if path is not None:  # on stderr when stdout is a table meant for another program
        print(f"figure: {path}", file=sys.stdout if args.format == "text" else sys.stderr)
    return 0


def _compare_figure(args) -> Path | None:
    """The runs' validation (else training) loss and accuracy per epoch, overlaid, one colour per run."""
    from trainlab.experiments import plots
    from trainlab.experiments.store import Store, default_store_path

    store_path = Path(args.store) if args.store else default_store_path()
    with Store(store_path) as store:
        records = store.get_runs(args.runs)
        runs = [(r.id, i, store.history(r.id), r.status == "failed" and "NonFinite" in (r.error or ""))
                for i, r in enumerate(records)]
    present = {k for _, _, h, _ in runs for rec in h for k in rec}
    keys = [next((k for k in (f"val_{m}", m) if k in present), None) for m in ("loss", "accuracy")]
    keys = [k for k in keys if k is not None]
    if not keys:
        return None
    if args.figure:
        path = Path(args.figure)
    else:
        ids = [r.id for r in records]
        stem = "-".join(ids[:4]) + (f"-and-{len(ids) - 4}-more" if len(ids) > 4 else "")
        path = store_path.parent / "compare" / f"{stem[:120]}.png"
    return plots.plot_overlaid_curves(runs, keys, path, title="trainlab compare")


def main(argv: list[str] | None = None) -> int:
    from_shell = argv is None
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = argv  # the command line as typed: the hint after an early Ctrl-C repeats it
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    status = run_command(args)
    if from_shell and status == EXIT_INTERRUPTED:
        # the process is about to exit after a Ctrl-C: another press during the interpreter's own
        # clean-up (finalizers of worker pools, atexit hooks) must end it quietly, not print a traceback
        import signal

        sys.stdout.flush()
        sys.stderr.flush()
        signal.signal(signal.SIGINT, lambda signum, frame: os._exit(EXIT_INTERRUPTED))
    return status


def run_command(args) -> int:
    """Run ``args.func(args)``; an expected failure becomes one line on stderr and its exit status.

    With ``--debug`` the traceback is printed before the line. Anything :func:`describe_failure`
    does not know is a bug and keeps its traceback.
    """
    from trainlab import _startup

    _startup.install()  # torch's compiler is imported only if something compiles (~1.3 s saved)
    try:
        status = args.func(args)
        sys.stdout.flush()  # a closed pipe fails here, inside the handler, not at interpreter exit
        return status
    except Exception as err:  # noqa: BLE001 (sorted out by describe_failure)
        caught, failure = err, describe_failure(err, args)
        if failure is None and _raised_by_ctrl_c(err):
            resume = getattr(args, "resume", None)  # a resume stopped while starting: its folder is as it was
            failure = (f"interrupted; resume with: trainlab run --resume {shlex.quote(str(resume))}" if resume
                       else "interrupted", EXIT_INTERRUPTED)
        if failure is None:
            raise
    except KeyboardInterrupt as err:
        caught, failure = err, (str(err) or "interrupted", EXIT_INTERRUPTED)
    message, status = failure
    if getattr(args, "debug", False):
        import traceback

        traceback.print_exception(caught)
    if status == EXIT_BROKEN_PIPE:
        # the reader has gone (`trainlab ... | head`): nothing to say, and nothing more may be written
        # to stdout, including the flush at exit
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    if message:
        print(f"trainlab {args.command}: {message}", file=sys.stderr)
    return status


def _raised_by_ctrl_c(err: BaseException) -> bool:
    """Whether ``err`` was raised while a KeyboardInterrupt was being handled.

    Ctrl-C inside an import (torch's take a second or two) leaves a half-imported module behind,
    and the next import of it fails (``AttributeError: partially initialized module``): the
    user's interrupt, not a bug, so it must not end in that traceback.
    """
    seen: set[int] = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, KeyboardInterrupt):
            return True
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return False


def describe_failure(err: BaseException, args) -> tuple[str, int] | None:
    """``(one-line message with the fix, exit status)`` for an expected failure, None for a bug."""
    import sqlite3

    usage = tuple(cls for cls in _imported("trainlab.experiments.config", "ConfigError")
                  + _imported("trainlab.experiments.runner", "ResumeError"))
    if usage and isinstance(err, usage):
        return str(err), EXIT_USAGE
    if isinstance(err, BrokenPipeError):
        return "", EXIT_BROKEN_PIPE
    if isinstance(err, OSError):
        return _describe_os_error(err, args), EXIT_FAILURE
    if isinstance(err, sqlite3.Error):
        return _describe_store_error(err, args), EXIT_FAILURE
    if isinstance(err, ImportError):
        if (err.name or "").split(".")[0] == "trainlab":
            return None  # trainlab's own module or name: a broken install or a bug
        if isinstance(err, ModuleNotFoundError) and err.name:
            top = err.name.split(".")[0]
            return f"{err}: install the package that provides it (pip install {top})", EXIT_FAILURE
        return str(err), EXIT_FAILURE
    checkpoint = _imported("trainlab.train.checkpoint", "CheckpointError")
    if checkpoint and isinstance(err, checkpoint):
        return str(err), EXIT_FAILURE
    return None


def _imported(module: str, name: str) -> tuple:
    """``(module.name,)`` when the module is already imported, else ``()``.

    An exception of a class can only have been raised once its module is imported, so this
    avoids importing torch (or pydantic) merely to rule a class out.
    """
    mod = sys.modules.get(module)
    cls = getattr(mod, name, None)
    return (cls,) if cls is not None else ()


def _describe_os_error(err: OSError, args) -> str:
    where = f" {err.filename}" if err.filename else ""
    elsewhere = " or write elsewhere with --out DIR" if hasattr(args, "out") else ""
    if err.errno == errno.ENOSPC:
        return f"no space left on the disk (writing{where or ' its output'}): free some space{elsewhere}"
    if err.errno == errno.EDQUOT:
        return f"disk quota exceeded (writing{where or ' its output'}): free some space{elsewhere}"
    if err.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        reason = "the file system is read-only" if err.errno == errno.EROFS else "permission denied"
        fix = "change its permissions" if err.errno != errno.EROFS else "remount it read-write"
        return f"cannot write{where}: {reason}; {fix}{elsewhere}"
    if err.errno == errno.ENOTDIR:
        return f"cannot create{where}: a part of that path is a file, not a folder; choose another path{elsewhere}"
    detail = err.strerror or str(err)
    return f"{err.filename}: {detail}" if err.filename else detail


def _describe_store_error(err, args) -> str:
    from trainlab.experiments.store import default_store_path

    path = getattr(args, "store", None) or default_store_path()
    text = str(err)
    if "locked" in text or "busy" in text:
        return (f"the results store {path} is locked ({text}): another trainlab process is writing it; "
                "wait for it and run the command again")
    return (f"the results store {path} cannot be read ({text}): move the file aside (a new store is then "
            "created) or choose another with --store FILE or TRAINLAB_STORE")


if __name__ == "__main__":
    sys.exit(main())
