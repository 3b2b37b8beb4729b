"""`mgrb reproduce`: run a chosen set of experiments, skip finished runs, resume interrupted
ones, then write the reproduction report."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from pathlib import Path

from mgrb.config import Experiment, load_config
from mgrb.errors import ConfigError, MGRBError
from mgrb.pipeline.isolated import INTERRUPTED


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
    chosen, available, unusable = [], {}, {}
    for path in sorted(experiments_dir.glob("*.yaml")):
        try:
            config = load_config(path)
        except ConfigError as error:
            unusable[str(path)] = f"invalid experiment file: {error}"
            continue
        if config.name in available:
            unusable[str(path)] = (f"names itself {config.name}, as "
                                   f"{available[config.name][0]} does; not run")
            continue
        available[config.name] = (path, config)
    if not patterns:
        return list(available.values()), unusable
    for pattern in patterns:
        matches = [name for name in available if fnmatch.fnmatch(name, pattern)]
        if not matches:
            raise MGRBError(f"EXPERIMENTS={pattern}: matches no experiment in {experiments_dir}/ "
                            f"(`mgrb list` shows the names)")
        chosen += [available[name] for name in matches if available[name] not in chosen]
    return chosen, unusable


def reproduce(*, experiments_dir: Path, patterns: list[str], runs_dir: Path, reports_dir: Path,
              device: str, tolerance: float | None, progress) -> int:
    """Every run in its own `mgrb run` process (isolated.py): a run that fails, crashes or runs
    out of memory is listed in the report with its message, and the batch goes on. Returns
    0, 1 when a run failed, or 130 when stopped (the stopped run resumes next time)."""
    from mgrb.data import data_present
    from mgrb.reporting.report import write_report
    from mgrb.reporting.check import check_group, format_table, read_results
    from mgrb.pipeline.isolated import run_command, run_isolated
    from mgrb.store.runfolder import RunFolder

    selected, unusable = select_experiments(experiments_dir, patterns)
    groups: dict[str, list[dict]] = {}
    failed: dict[str, str] = {}
    not_run: dict[str, str] = dict(unusable)
    for file, reason in unusable.items():
        progress.warn(f"skipping {file}: {reason}")
    for path, config in selected:
        name, dataset = config.name, config.dataset.name
        # Named explicitly, CIFAR may still be downloaded; the default set takes what is there.
        may_download = bool(patterns) and dataset in ("cifar10", "cifar100") \
            and config.dataset.download
        if not data_present(dataset, config.dataset.root) and not may_download:
            not_run[name] = f"{dataset} data not present (`make data` says how to get it)"
            progress.message(f"skipping {name}: {not_run[name]}")
            continue
        for run in planned_runs(config, runs_dir):
            label = f"{name} (seed {run.seed})" if config.seeds else name
            if RunFolder(run.folder).is_finished():
                progress.message(f"== {label}: finished earlier, skipped")
            else:
                progress.message(f"== {label} -> {run.folder}")
                outcome = run_isolated(run_command(
                    path, runs_dir / name, seed=run.seed if config.seeds else None,
                    device=device, quiet=progress.quiet, experiments_dir=experiments_dir))
                if outcome.interrupted:
                    progress.message(f"{label} stopped; its checkpoint is saved")
                    return INTERRUPTED
                if not outcome.finished:
                    failed[label] = outcome.error
                    progress.warn(f"{label} failed: {outcome.error}; going on with the next")
                    continue
            try:
                groups.setdefault(name, []).append(read_results(run.folder))
            except MGRBError as error:  # a results.json damaged or from elsewhere
                failed[label] = str(error)
                progress.warn(f"{label}: {error}")
    report = write_report(groups, reports_dir, tolerance=tolerance, failed=failed,
                          not_run=not_run)
    rows = [row for name, runs in groups.items() for row in check_group(name, runs, tolerance)]
    if rows:
        print(format_table(rows))
    for label, message in failed.items():
        print(f"{label}: FAILED: {message}")
    print(f"report: {report}")
    return 1 if failed else 0
