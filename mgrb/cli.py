"""The `mgrb` command line: run, list, check and reproduce experiments."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import sys
from pathlib import Path

from mgrb.data.registry import CACHED, dataset
from mgrb.errors import ConfigError, MGRBError
from mgrb.pipeline.command import RunLine, run_words
from mgrb.text import terminal_safe

EXPERIMENTS_DIR = Path("experiments")


def _default_dir(variable: str, fallback: str) -> Path:
    """Folders the container moves to its mounts (MGRB_RUNS=/runs) and ./<name> otherwise."""
    return Path(os.environ.get(variable) or fallback)


def _experiment_path(argument: str, directory: Path) -> Path:
    """A path as given, or an experiment name looked up in the experiments folder."""
    path = Path(argument)
    if path.suffix in (".yaml", ".yml") or path.exists():
        return path
    candidate = directory / f"{argument}.yaml"
    if candidate.exists():
        return candidate
    from mgrb.config.experiment import did_you_mean

    names = [file.stem for file in directory.glob("*.y*ml")] if directory.is_dir() else []
    raise ConfigError(f"{argument}: no such experiment file, and no {candidate}"
                      f"{did_you_mean(argument, names)}; `mgrb list` shows the experiments")


def _install_stop_handlers() -> None:
    """SIGTERM and a first Ctrl-C ask the trainer to checkpoint and stop after the current
    batch; a second Ctrl-C stops at once (the last checkpoint remains)."""
    from mgrb.training.trainer import STOP_REQUESTED

    STOP_REQUESTED.clear()

    def request(signum, frame):
        if signum == signal.SIGINT and STOP_REQUESTED.is_set():
            raise KeyboardInterrupt
        if not STOP_REQUESTED.is_set():
            print("\nstopping after this batch to save a checkpoint (Ctrl-C again: stop at once)",
                  file=sys.stderr)
        STOP_REQUESTED.set()

    signal.signal(signal.SIGTERM, request)
    signal.signal(signal.SIGINT, request)


def command_run(args) -> int:
    from mgrb.config.experiment import load_config
    from mgrb.pipeline.reproduce import planned_runs

    path = _experiment_path(args.experiment, args.experiments_dir)
    config = load_config(path, args.set or [])
    runs = planned_runs(config, _default_dir("MGRB_RUNS", "runs"), args.out, args.seed)
    # a run folder chosen through MGRB_RUNS (the launcher's way) is named in the hint, which
    # pasted elsewhere would otherwise resume into ./runs
    chosen = None if args.out or not os.environ.get("MGRB_RUNS") else \
        _default_dir("MGRB_RUNS", "runs") / config.name
    return _train(config, runs, path, args, again=_again(args, chosen))


def command_resume(args) -> int:
    """Continue a run folder from its own config.yaml: the overrides it was started with are
    in that file, so nothing needs retyping."""
    from mgrb.config.experiment import config_from_data
    from mgrb.pipeline.reproduce import PlannedRun
    from mgrb.store.runfolder import CONFIG, RunFolder

    folder = RunFolder(args.folder)
    stored = folder.stored_config()
    if stored is None:
        raise MGRBError(f"{args.folder}: holds no {CONFIG}, so it is not a run folder; "
                        "`mgrb run EXPERIMENT --out FOLDER` starts one")
    config = config_from_data(stored, str(folder.path / CONFIG))
    run = PlannedRun(config.name, config.train.seed, config, folder.path)
    return _train(config, [run], folder.path / CONFIG, args, again=_resume_again(args))


def _train(config, runs, path: Path, args, *, again: str) -> int:
    from mgrb.pipeline.run import run_experiment
    from mgrb.training.distributed import environment_world, join, leave
    from mgrb.devices import resolve_device
    from mgrb.training.numerics import prepare_process
    from mgrb.training.progress import Progress
    from mgrb.data import check_before_run

    # before any run folder is made: a data folder that does not exist, or a run of
    # ImageNet-100 without its cache, is refused (exit 2)
    check_before_run(config.dataset.name, config.dataset.root, config.dataset.image_size)
    if args.nproc > 1 and environment_world()[2] == 1:  # not yet one of the N processes
        from mgrb.pipeline.workers import run_workers

        return run_workers(args.argv, args.nproc, args.device)
    prepare_process(config.train.deterministic)  # before anything starts CUDA
    group, device_choice = join(args.device)
    device = resolve_device(device_choice)
    progress = Progress(quiet=args.quiet or not group.leader)
    if device.type == "cpu" and dataset(config.dataset.name).in_paper:
        progress.message("note: no GPU in use; training on the CPU works but is very slow for "
                         "this data set (the digits experiments are the CPU-sized ones)")
    _install_stop_handlers()
    try:
        for run in runs:
            code = run_experiment(run, path, device, progress, restart=args.restart,
                                  again=again, group=group)
            if code:
                return code
    finally:
        leave(group)
    return 0


def _nproc(args) -> int:
    """The processes of the run: as given, or as torchrun started this process."""
    from mgrb.training.distributed import environment_world

    return max(args.nproc, environment_world()[2])


def _typed_device(args) -> str | None:
    return None if args.device == "auto" else args.device  # auto is what an omitted --device means


def _again(args, out: Path | None = None) -> str:
    """The command that resumes this run, as the user typed it (--set included; --restart not,
    as it would throw away the checkpoint being resumed); `out`: the run folder, where the
    environment rather than --out chose it."""
    return shlex.join(run_words(RunLine(
        args.experiment, program=_program(), experiments_dir=_typed_experiments_dir(args),
        sets=tuple(args.set or ()), out=args.out or out, device=_typed_device(args),
        seed=args.seed, nproc=_nproc(args))))


def _resume_again(args) -> str:
    """The command that resumes this run folder."""
    return shlex.join(run_words(RunLine(str(args.folder), program=_program(), verb="resume",
                                        device=_typed_device(args), nproc=_nproc(args))))


def _program(argv0: str | None = None) -> tuple[str, ...]:
    """How this command was started, so that a printed hint can be pasted: `mgrb` where that
    name on PATH is this very program, the path as typed (`.venv/bin/mgrb`) otherwise, and
    this interpreter's `-m mgrb` for `python -m mgrb`."""
    import shutil

    argv0 = argv0 if argv0 is not None else sys.argv[0]
    if Path(argv0).name in ("__main__.py", "cli.py") or not argv0:
        return (sys.executable, "-m", "mgrb")
    on_path = shutil.which(Path(argv0).name)
    if on_path and Path(on_path).resolve() == Path(argv0).resolve():
        return (Path(argv0).name,)
    return (argv0,)


def _typed_experiments_dir(args) -> Path | None:
    """--experiments-dir where the user gave one (an experiment named, not a file, needs it)."""
    return None if args.experiments_dir == EXPERIMENTS_DIR else args.experiments_dir


def command_reproduce(args) -> int:
    from mgrb.training.progress import Progress
    from mgrb.pipeline.reproduce import Choice, reproduce

    patterns = tuple(p for item in args.experiments for p in item.replace(",", " ").split())
    code = reproduce(experiments_dir=args.experiments_dir, chosen=Choice(patterns, args.seeds),
                     runs_dir=args.runs_dir, reports_dir=args.reports_dir, device=args.device,
                     tolerance=args.tolerance, progress=Progress(quiet=args.quiet),
                     slurm=_slurm_options(args))
    if code == 130 and args.executor == "local":
        print("\ninterrupted. Run the same command again: finished runs are skipped and the "
              "interrupted one resumes from its last checkpoint", file=sys.stderr)
    return code


def _slurm_options(args):
    """SlurmOptions for --executor slurm; None for local runs, which take no Slurm option."""
    given = [f"--{name.replace('_', '-')}" for name in SLURM_OPTIONS
             if getattr(args, name) is not None and getattr(args, name) is not False]
    if args.executor == "local":
        if given:
            raise MGRBError(f"{', '.join(given)}: only with --executor slurm")
        return None
    from mgrb.pipeline.slurm import MIN_TIME_MIN, SlurmOptions

    if args.time_min is not None and args.time_min < MIN_TIME_MIN:
        raise MGRBError(f"--time-min {args.time_min}: give at least {MIN_TIME_MIN} minutes; submitit "
                        "takes every preemption of a job of 10 minutes or less for a time-out")
    chosen = {name: getattr(args, name) for name in SLURM_OPTIONS if getattr(args, name) is not None}
    return SlurmOptions(**chosen)


def command_report(args) -> int:
    from mgrb.pipeline.slurm_jobs import with_slurm_states
    from mgrb.reporting.check import BAD_INPUT, NOTHING_FINISHED
    from mgrb.reporting.report import collect, write_report

    found = collect(args.runs)
    # a run of a Slurm job is pending, running, cancelled or failed as Slurm says
    found.failed, found.unfinished = with_slurm_states(found.failed, found.unfinished)
    for folder in found.bad:
        print(f"mgrb: error: {folder.message}", file=sys.stderr)
    if found.bad:  # a report that silently left out a folder it was given would mislead
        print(f"mgrb: nothing written; {args.out} is as it was", file=sys.stderr)
        return BAD_INPUT
    if not found.groups:
        print(f"mgrb: none of the folders given holds a finished run ({len(found.failed)} failed, "
              f"{len(found.unfinished)} not finished); {args.out} is as it was", file=sys.stderr)
        return NOTHING_FINISHED
    path = write_report(found.groups, args.out, tolerance=args.tolerance, failed=found.failed,
                        unfinished=found.unfinished)
    print(f"report: {path}")
    return 0


def command_list(args) -> int:
    from mgrb.data import data_present
    from mgrb.perf.estimate import ASSUMED_SUSTAINED_TFLOPS, projected_hours
    from mgrb.perf.throughput import latest_gpu_measurement
    from mgrb.pipeline.catalogue import load_catalogue

    measurement = latest_gpu_measurement(args.runs_dir)
    rows = []
    for entry in load_catalogue(args.experiments_dir):
        path, config = entry.path, entry.loaded
        if entry.problem is not None:
            rows.append({"file": str(path), "error": entry.problem})
            continue
        dataset = config.dataset.name
        hours, basis = projected_hours(config, measurement)
        rows.append({
            "name": config.name, "file": str(path), "dataset": dataset,
            "initial": config.protocol.initial, "increment": config.protocol.increment,
            "hierarchy": config.hierarchy.kind, "losses": config.method.losses,
            "reported": config.reported.figures(),
            "estimated_gpu_hours": hours, "estimate_basis": basis,
            "seeds": list(config.run_seeds),
            "data_present": data_present(dataset, config.dataset.root, config.dataset.image_size),
            "description": config.description,
        })
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print(f"no experiment files in {args.experiments_dir}/")
        return 0
    print(f"{'name':<32} {'dataset':<13} {'protocol':>8} {'hier':<5} {'reported':>13} "
          f"{'GPU h':>6} data")
    for row in rows:
        if "error" in row:
            print(f"{row['file']}: INVALID: {row['error']}")
            continue
        protocol = f"{row['initial']}/{row['increment']}"
        reported = row["reported"]
        numbers = "-" if reported is None else "/".join(
            "-" if reported[k] is None else f"{reported[k]:.2f}" for k in ("avg_top1", "last_top1"))
        hours = "-" if row["estimated_gpu_hours"] is None else f"{row['estimated_gpu_hours']:.2f}"
        data = "present" if row["data_present"] else "missing"
        print(f"{row['name']:<32} {row['dataset']:<13} {protocol:>8} {row['hierarchy']:<5} "
              f"{numbers:>13} {hours:>6} {data}")
    print("reported: the paper's average / last top-1 (%)")
    print("GPU h: projected stage-1 training time on one GPU, "
          + (f"from {measurement.describe()}" if measurement else
             f"at an assumed {ASSUMED_SUSTAINED_TFLOPS:g} TFLOP/s (`make bench` on a GPU "
             "measures the rate)"))
    return 0


def command_check(args) -> int:
    from mgrb.reporting.check import NOTHING_FINISHED, check_runs, format_table

    checked = check_runs(args.runs, args.tolerance)
    if args.json:
        unfinished = [{"experiment": None, "metric": None, "verdict": entry["status"], **entry}
                      for entry in checked.unfinished]
        print(json.dumps(checked.rows + unfinished, indent=2))
    elif checked.rows or checked.unfinished:
        print(format_table(checked.rows, checked.unfinished))
    for folder in checked.bad:
        print(f"mgrb: error: {folder.message}", file=sys.stderr)
    if checked.exit_code == NOTHING_FINISHED:
        print("mgrb: no verdict: none of the runs given has finished", file=sys.stderr)
    return checked.exit_code


def command_quickstart(args) -> int:
    from importlib import resources

    print(resources.files("mgrb").joinpath("resources/quickstart.txt").read_text(), end="")
    return 0


def command_tui(args) -> int:
    try:
        from artifact.app import run_app
    except ImportError as error:
        raise MGRBError(f"the launcher needs the tui extra ({error}); `make setup` installs it, "
                        "or `pip install -e .[tui]`") from None
    if not args.experiments_dir.is_dir():
        raise MGRBError(f"{args.experiments_dir}: no experiments folder here; run `mgrb tui` in "
                        "the project folder or give --experiments-dir")
    return run_app(experiments_dir=args.experiments_dir, runs_dir=args.runs_dir)


def command_data(args) -> int:
    from mgrb.data.check import check_data

    return check_data(args.root, download=not args.no_download)


def command_data_prepare(args) -> int:
    import time

    from mgrb.data.cache import cache_side
    from mgrb.data.prepare import prepare_cache
    from mgrb.training.progress import Progress

    progress, started = Progress(quiet=args.quiet), time.monotonic()

    def report(done: int, total: int, kept: int) -> None:
        progress.count(f"{args.dataset}:", done, total, started=started, first=kept)

    try:
        prepared = prepare_cache(args.dataset, args.root, args.out, workers=args.workers,
                                 shard_images=args.shard_images, report=report,
                                 image_size=cache_side(args.dataset, args.size))
    except KeyboardInterrupt:
        print("\ninterrupted. Run the same command again: the shards finished so far are kept",
              file=sys.stderr)
        return 130
    print(prepared.summary())
    return 0


def device_choice(text: str) -> str:
    """argparse type of --device: auto, cpu, cuda or cuda:N (mgrb.devices turns it into the
    device a run uses)."""
    from mgrb.devices import DEVICE_CHOICE

    if not DEVICE_CHOICE.fullmatch(text):
        raise argparse.ArgumentTypeError(f"{text!r}: expected auto, cpu, cuda or cuda:N")
    return text


def positive_int(text: str) -> int:
    """argparse type of a count (also the benchmarks'): a whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive whole number")
    return value


def seed_list(text: str) -> tuple[int, ...]:
    """argparse type of --seeds: whole numbers, comma-separated."""
    try:
        seeds = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a list of seeds such as 1993 or 1993,1994") from None
    return seeds


def build_parser() -> argparse.ArgumentParser:
    from mgrb.version import ShowVersion

    parser = argparse.ArgumentParser(prog="mgrb", description=__doc__)
    parser.add_argument("--version", action=ShowVersion)
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    parser.add_argument("--experiments-dir", type=Path, default=EXPERIMENTS_DIR,
                        help="folder of experiment files (default: experiments)")
    commands = parser.add_subparsers(dest="command", required=True)
    _add_training_commands(commands)
    _add_reading_commands(commands)
    return parser


NPROC_HELP = ("train this one run in N processes, one per GPU (CPU: sharing its cores), with "
              "DistributedDataParallel; the experiment's batch size stays the global batch. A "
              "run may resume under another N (default: 1)")


def _add_training_commands(commands) -> None:
    """The commands that train: run, reproduce."""
    run = commands.add_parser("run", help="train an experiment through all its phases")
    run.add_argument("experiment", help="experiment file, or a name from `mgrb list`")
    run.add_argument("--set", action="append", metavar="KEY=VALUE",
                     help="override a setting, e.g. --set train.epochs=3 (repeatable)")
    run.add_argument("--device", type=device_choice, default="auto",
                     help="auto (a GPU when there is one), cpu, cuda or cuda:N")
    run.add_argument("--out", type=Path,
                     help="run folder (default: $MGRB_RUNS/<name>, else runs/<name>)")
    run.add_argument("--seed", type=int, help="only this seed of an experiment that lists seeds")
    run.add_argument("--quiet", action="store_true",
                     help="no progress output (warnings and errors are still shown)")
    run.add_argument("--restart", action="store_true",
                     help="when every checkpoint of the run folder is damaged, start over "
                          "instead of stopping (the damaged files are kept as *.damaged)")
    run.add_argument("--nproc", type=positive_int, default=1, metavar="N",
                     help=NPROC_HELP)
    run.set_defaults(handler=command_run)

    resume = commands.add_parser(
        "resume", help="continue a run folder from its saved configuration (--set included)")
    resume.add_argument("folder", type=Path, metavar="RUN_DIR")
    resume.add_argument("--device", type=device_choice, default="auto",
                        help="auto (a GPU when there is one), cpu, cuda or cuda:N")
    resume.add_argument("--quiet", action="store_true",
                        help="no progress output (warnings and errors are still shown)")
    resume.add_argument("--restart", action="store_true",
                        help="when every checkpoint is damaged, start over (see `mgrb run`)")
    resume.add_argument("--nproc", type=positive_int, default=1, metavar="N",
                        help=NPROC_HELP)
    resume.set_defaults(handler=command_resume)

    repro = commands.add_parser(
        "reproduce", help="run experiments (skipping finished ones) and write the report")
    repro.add_argument("experiments", nargs="*", metavar="NAME_OR_GLOB",
                       help="experiment names or globs (default: every experiment whose data "
                            "is present)")
    repro.add_argument("--runs-dir", type=Path, default=_default_dir("MGRB_RUNS", "runs"),
                       help="run folders (default: $MGRB_RUNS or ./runs)")
    repro.add_argument("--reports-dir", type=Path,
                       default=_default_dir("MGRB_REPORTS", "reports"),
                       help="report folder (default: $MGRB_REPORTS or ./reports)")
    repro.add_argument("--device", type=device_choice, default="auto",
                       help="auto (a GPU when there is one), cpu, cuda or cuda:N")
    repro.add_argument("--tolerance", type=float, help="override every file's tolerance (points)")
    repro.add_argument("--seeds", type=seed_list, metavar="S[,S...]",
                       help="of an experiment that lists seeds, run only these (e.g. 1993 for "
                            "one pass); the report still covers every finished run")
    repro.add_argument("--quiet", action="store_true", help="no progress output")
    _add_slurm_options(repro)
    repro.set_defaults(handler=command_reproduce)


SLURM_OPTIONS = ("partition", "account", "time_min", "gpus_per_run", "parallel", "wait")


def _add_slurm_options(repro) -> None:
    slurm = repro.add_argument_group(
        "cluster sweeps", "--executor slurm: each run (experiment and seed) a Slurm job of one "
        "array, submitted through submitit; a preempted or timed-out job checkpoints, requeues "
        "itself and resumes. Needs Slurm's commands and SLURM_CONF (or the default slurm.conf).")
    slurm.add_argument("--executor", choices=("local", "slurm"), default="local",
                       help="local: one run after another on this machine (default); slurm: "
                            "submit every run as a job")
    slurm.add_argument("--partition", help="Slurm partition (default: the cluster's)")
    slurm.add_argument("--account", help="Slurm account to charge (default: yours)")
    slurm.add_argument("--time-min", type=positive_int, metavar="MINUTES",
                       help="time limit of each job, at least 11 (default 240); a run that needs "
                            "longer checkpoints and requeues itself at the limit")
    slurm.add_argument("--gpus-per-run", type=_count, metavar="N",
                       help="GPUs of each job (default 1; 0: none); above 1, the run trains with "
                            "one process per GPU (mgrb run --nproc N)")
    slurm.add_argument("--parallel", type=positive_int, metavar="K",
                       help="at most K jobs of the sweep running at once (default: no limit)")
    slurm.add_argument("--wait", action="store_true",
                       help="follow the jobs until all have ended, then write the report (without "
                            "it, `mgrb report RUNS_DIR` writes it later)")


def _count(text: str) -> int:
    """argparse type of a count that may be 0."""
    return 0 if text.strip() == "0" else positive_int(text)


def _add_reading_commands(commands) -> None:
    """The commands that read experiments, run folders and data: report, list, check, data,
    tui, quickstart."""
    report = commands.add_parser(
        "report", help="write the reproduction report for run folders",
        description="reproduction.md, results.csv and figures/ from every finished run at or "
                    "below the folders given; failed and unfinished runs are listed. Nothing is "
                    "written, and the old report stays, when a path is not a run folder or its "
                    "results are damaged (exit 2) or when none of the runs has finished (exit 3).")
    report.add_argument("runs", nargs="+", type=Path, metavar="RUN_DIR")
    report.add_argument("--out", type=Path, default=_default_dir("MGRB_REPORTS", "reports"))
    report.add_argument("--tolerance", type=float, help="override every file's tolerance (points)")
    report.set_defaults(handler=command_report)

    listing = commands.add_parser("list", help="list the experiment files")
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    listing.add_argument("--runs-dir", type=Path, default=_default_dir("MGRB_RUNS", "runs"),
                         help="where `make bench` left its measurements (default: $MGRB_RUNS "
                              "or ./runs)")
    listing.set_defaults(handler=command_list)
    check = commands.add_parser(
        "check", help="compare finished runs with the paper's reported accuracy",
        description="Verdict per experiment and metric: reproduced (inside reported +- "
                    "tolerance), above, below, or no reference. Run folders of one experiment "
                    "in one configuration (several seeds) are judged by their mean, each seed "
                    "once; other configurations get rows of their own. A folder of runs (such "
                    "as runs/NAME or runs) stands for every run below it; unfinished and failed "
                    "runs are listed as such. Exit 0 when nothing is below, 1 when something "
                    "is, 2 when a path is not a run folder or its results are damaged, 3 when "
                    "none of the runs has finished.")
    check.add_argument("runs", nargs="+", type=Path, metavar="RUN_DIR")
    check.add_argument("--tolerance", type=float, help="override every file's tolerance (points)")
    check.add_argument("--json", action="store_true", help="machine-readable output")
    check.set_defaults(handler=command_check)
    data = commands.add_parser("data", help="fetch CIFAR where possible; check every data set")
    data.add_argument("--root", type=Path, help="data folder (default: $MGRB_DATA or ./data)")
    data.add_argument("--no-download", action="store_true", help="only check, never download")
    data.set_defaults(handler=command_data)
    _add_prepare_command(data.add_subparsers(dest="data_command", metavar="{prepare}"))

    tui = commands.add_parser("tui", help="the terminal launcher: pick, launch, watch, check")
    tui.add_argument("--runs-dir", type=Path, default=_default_dir("MGRB_RUNS", "runs"),
                     help="run folders (default: $MGRB_RUNS or ./runs)")
    tui.set_defaults(handler=command_tui)

    quick = commands.add_parser("quickstart", help="print the quick instructions")
    quick.set_defaults(handler=command_quickstart)


def _add_prepare_command(commands) -> None:
    prepare = commands.add_parser(
        "prepare", help="decode miniImageNet or ImageNet-100 once into a uint8 cache",
        description="Decode every image of the data set once as the authors' code did "
                    "(cv2.imread, then cv2.resize, bilinear, to 256x256 for ImageNet-100, 84x84 "
                    "for miniImageNet; stored RGB) into shards of a cache folder with a manifest "
                    "of their sha256. ImageNet-100 runs read only this cache. Interrupted, it "
                    "resumes when run again: finished shards are kept.")
    prepare.add_argument("dataset", choices=sorted(CACHED))
    # SUPPRESS: `mgrb data --root X prepare ...` keeps its X when the option is not repeated here
    prepare.add_argument("--root", type=Path, default=argparse.SUPPRESS,
                         help="data folder (default: $MGRB_DATA or ./data)")
    prepare.add_argument("--out", type=Path,
                         help="cache folder (default: <data folder>/<dataset>-cache-<size>)")
    prepare.add_argument("--workers", type=positive_int,
                         help="decoding processes (default: one per available core)")
    prepare.add_argument("--size", type=positive_int, default=None,
                         help="the network's image side, for a reduced-resolution try: the cache "
                              "holds 8:7 of it for ImageNet-100 (default 224 from 256x256)")
    prepare.add_argument("--shard-images", type=positive_int, default=2048,
                         help="images per shard file (default: 2048)")
    prepare.add_argument("--quiet", action="store_true", help="no progress line")
    prepare.set_defaults(handler=command_data_prepare)


def _refuse_process_1(args) -> None:
    """A run records its pid in run.lock, and every reader refuses pid 1 (a signal to it reaches
    a whole container): as process 1, a run could be neither watched nor stopped."""
    if os.getpid() == 1 and args.handler in (command_run, command_resume, command_reproduce):
        raise MGRBError("mgrb runs as process 1, as in a container started without an init "
                        "process: its run folder would name pid 1, which no reader trusts. Start "
                        "the container with `docker run --init`, or use the project's image, whose "
                        "entry point (tini) does this.")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # what --nproc's processes rerun
    try:
        _refuse_process_1(args)
        return args.handler(args)
    except BrokenPipeError:  # output piped into `head` and the like
        sys.stderr.close()
        return 0
    except MGRBError as error:
        if args.debug:
            raise
        print(f"mgrb: error: {terminal_safe(error)}", file=sys.stderr)
        return error.exit_code
    except Exception as error:  # an unexpected fault: one line, the traceback on request
        if args.debug:
            raise
        print(f"mgrb: internal error: {type(error).__name__}: {terminal_safe(error)}\n"
              "Run again with --debug for the traceback.", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
