"""`mgrb reproduce`: run a chosen set of experiments, skip finished runs, resume interrupted
ones, then write the reproduction report."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from pathlib import Path

from mgrb.config import Experiment
from mgrb.errors import ConfigError, MGRBError
from mgrb.pipeline.catalogue import load_catalogue
from mgrb.pipeline.isolated import INTERRUPTED


@dataclass(frozen=True)
class Choice:
    """What `mgrb reproduce` is asked to run: experiment names or globs (none: every one whose
    data is present) and, of an experiment that lists seeds, only these seeds (None: all)."""
    patterns: tuple[str, ...] = ()
    seeds: tuple[int, ...] | None = None


@dataclass(frozen=True)
class PlannedRun:
    experiment: str
    seed: int
    config: Experiment
    folder: Path


def planned_runs(config: Experiment, runs_dir: Path, out: Path | None = None,
                 only_seed: int | None = None) -> list[PlannedRun]:
    """One run per seed: a single run lives in runs/<name>, several in runs/<name>/seed-<s>."""
    seeds = list(config.run_seeds)
    if only_seed is not None:
        if only_seed not in seeds:
            raise ConfigError(f"--seed {only_seed}: {config.name} lists seeds {seeds}")
        seeds = [only_seed]
    base = out or runs_dir / config.name
    if not config.seeds:
        return [PlannedRun(config.name, seeds[0], config, base)]
    return [PlannedRun(config.name, seed, config.with_seed(seed), base / f"seed-{seed}")
            for seed in seeds]


def select_experiments(experiments_dir: Path, patterns: list[str]
                       ) -> tuple[list[tuple[Path, Experiment]], dict[str, str]]:
    """Experiments whose name matches a pattern (a name or a glob); all when none given.

    Also returns the files that cannot run, file -> why (invalid, or a name that an earlier
    file already has): one bad file among many is reported, and the rest still run."""
    available, unusable = _available(experiments_dir)
    return _choose(available, patterns, experiments_dir), unusable


def _available(experiments_dir: Path) -> tuple[dict[str, tuple[Path, Experiment]], dict[str, str]]:
    available, unusable = {}, {}
    for entry in load_catalogue(experiments_dir):
        if entry.problem is None:
            available[entry.loaded.name] = (entry.path, entry.loaded)
        else:
            unusable[str(entry.path)] = (entry.problem if entry.duplicate
                                         else f"invalid experiment file: {entry.problem}")
    return available, unusable


def _choose(available: dict, patterns: list[str], experiments_dir: Path) -> list:
    if not patterns:
        return list(available.values())
    chosen = []
    for pattern in patterns:
        matches = [name for name in available if fnmatch.fnmatch(name, pattern)]
        if not matches:
            from mgrb.config.experiment import did_you_mean

            # a file name (x.yaml, x.yml) stands for the experiment it names
            stem = Path(pattern).stem if Path(pattern).suffix in (".yaml", ".yml") else pattern
            if stem in available:
                chosen += [available[stem]] if available[stem] not in chosen else []
                continue
            raise MGRBError(f"{pattern}: matches no experiment in {experiments_dir}/"
                            f"{did_you_mean(stem, available)}; `mgrb list` shows the names")
        chosen += [available[name] for name in matches if available[name] not in chosen]
    return chosen


def reproduce(*, experiments_dir: Path, chosen: Choice, runs_dir: Path, reports_dir: Path,
              device: str, tolerance: float | None, progress, slurm=None) -> int:
    """Every run in its own `mgrb run` process (isolated.py): a run that fails, crashes or runs
    out of memory is listed in the report with its message, and the batch goes on. The report
    covers every finished run in runs_dir of every experiment file, not only this call's, so
    that an experiment that fails now or cannot run never takes earlier results with it.
    With `slurm` (SlurmOptions), each run is a Slurm job instead (slurm.py, sweep).

    Returns 0; 1 when a run failed; 3 when no chosen experiment has a finished run and none
    failed (nothing to judge: e.g. its data is missing); 130 when stopped (the stopped run
    resumes next time)."""
    from mgrb.data import data_present, default_root
    from mgrb.pipeline.isolated import run_command, run_isolated
    from mgrb.reporting.check import NOTHING_FINISHED
    from mgrb.store.runfolder import RunFolder

    available, unusable = _available(experiments_dir)
    selected = _choose(available, list(chosen.patterns), experiments_dir)
    failed: dict[Path, tuple[str, str]] = {}  # run folder -> (label, message)
    not_run: dict[str, str] = dict(unusable)
    on_slurm = []  # (label, PlannedRun, its `mgrb run` command) for the Slurm jobs
    here = []      # the same, for the runs this process starts one after the other
    for file, reason in unusable.items():
        progress.warn(f"skipping {file}: {reason}")
    for path, config in selected:
        name, dataset = config.name, config.dataset.name
        # named or not, a data set is never fetched here: `mgrb data` does that, where the
        # network allows, into a folder that exists
        if not data_present(dataset, config.dataset.root, config.dataset.image_size):
            not_run[name] = (f"{dataset} data not present in {default_root(config.dataset.root)}"
                             " (`mgrb data` downloads CIFAR and says how to get the others)")
            progress.message(f"skipping {name}: {not_run[name]}")
            continue
        runs = planned_runs(config, runs_dir)
        if chosen.seeds is not None and config.seeds:  # a one-seed pass, say
            runs = [run for run in runs if run.seed in chosen.seeds]
            if not runs:
                not_run[name] = (f"lists seeds {list(config.seeds)}, none of --seeds "
                                 f"{','.join(map(str, chosen.seeds))}")
                progress.message(f"skipping {name}: {not_run[name]}")
                continue
        for run in runs:
            label = f"{name} (seed {run.seed})" if config.seeds else name
            if RunFolder(run.folder).is_finished():
                progress.message(f"== {label}: finished earlier, skipped")
                continue
            if slurm is not None:  # absolute paths: a job may start in another folder
                on_slurm.append((label, run, run_command(
                    path.resolve(), (runs_dir / name).resolve(),
                    seed=run.seed if config.seeds else None, device=device, quiet=False,
                    experiments_dir=experiments_dir.resolve(), nproc=slurm.gpus_per_run)))
                continue
            here.append((label, run, run_command(
                path, runs_dir / name, seed=run.seed if config.seeds else None,
                device=device, quiet=progress.quiet, experiments_dir=experiments_dir)))
    for count, (label, run, command) in enumerate(here, start=1):
        progress.message(f"== run {count} of {len(here)}: {label} -> {run.folder}")
        outcome = run_isolated(command)
        if outcome.interrupted:
            progress.message(f"{label} stopped; its checkpoint is saved")
            return INTERRUPTED
        if not outcome.finished:
            failed[run.folder] = (label, outcome.error)
            progress.warn(f"{label} failed: {outcome.error}; going on with the next")
    source = f"every finished run in {runs_dir} of the experiments in {experiments_dir}"
    if slurm is not None:
        from mgrb.pipeline.slurm import sweep

        def report_after_jobs(failures):  # the jobs' end: the experiments with finished runs
            return _report(sorted(available), runs_dir, reports_dir, tolerance, failures, not_run,
                           source=source)[1]
        return sweep(slurm, planned=on_slurm, chosen={config.name for _, config in selected},
                     runs_dir=runs_dir, progress=progress, report=report_after_jobs)
    report, found = _report(sorted(available), runs_dir, reports_dir, tolerance, failed, not_run,
                            source=source)
    if failed:
        return 1
    return 0 if {config.name for _, config in selected} & set(found) else NOTHING_FINISHED


def _report(names: list[str], runs_dir: Path, reports_dir: Path, tolerance,
            failed: dict[Path, tuple[str, str]], not_run: dict[str, str], source: str):
    """Write the report of every run folder in runs_dir/<name>, finished or not, with this
    call's failures (a run killed now has no failed.json), and print the verdict table.
    Returns the report's path and the experiments that have finished runs."""
    from mgrb.reporting.check import format_table, group_rows
    from mgrb.reporting.report import collect, write_report
    from mgrb.pipeline.slurm_jobs import with_slurm_states
    from mgrb.reporting.runs import group_runs
    from mgrb.store.runstate import DAMAGED
    from mgrb.text import one_line

    found = collect([runs_dir / name for name in names if (runs_dir / name).is_dir()])
    found.failed, found.unfinished = with_slurm_states(found.failed, found.unfinished)
    groups = {name: runs for name, runs in found.groups.items() if name in names}
    now = {str(folder): entry for folder, entry in failed.items()}
    failures, unfinished = {}, {}
    for folder, message in [*found.failed.items(), *found.unfinished.items()]:
        label = _label(runs_dir, folder)
        if folder in now:
            failures[label] = now.pop(folder)[1]
        else:
            (failures if folder in found.failed else unfinished)[label] = message
    failures.update({_label(runs_dir, f.path): f.message for f in found.bad if f.status == DAMAGED})
    failures.update(dict(now.values()))  # failed before it made a run folder
    report = write_report(groups, reports_dir, tolerance=tolerance, failed=failures,
                          unfinished=unfinished, not_run=not_run, source=source)
    rows = [row for group in group_runs([r for runs in groups.values() for r in runs])
            for row in group_rows(group, tolerance)]
    if rows:
        print(format_table(rows))
    for label, message in failures.items():
        print(f"{one_line(label)}: FAILED: {one_line(message)}")
    print(f"report: {report}")
    return report, groups


def _label(runs_dir: Path, folder) -> str:
    """A run folder as the report names it: its place in runs_dir (`name` or `name/seed-1`)."""
    try:
        return Path(folder).relative_to(runs_dir).as_posix()
    except ValueError:
        return str(folder)
