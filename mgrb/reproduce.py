"""`mgrb reproduce`: run a chosen set of experiments, skip finished runs, resume interrupted
ones, then write the reproduction report."""

from __future__ import annotations

import copy
import fnmatch
import gc
from dataclasses import dataclass
from pathlib import Path

from .config import load_config
from .errors import ConfigError, MGRBError


@dataclass(frozen=True)
class PlannedRun:
    experiment: str
    seed: int
    config: dict
    folder: Path


def planned_runs(config: dict, runs_dir: Path, out: Path | None = None,
                 only_seed: int | None = None) -> list[PlannedRun]:
    """One run per seed: a single run lives in runs/<name>, several in runs/<name>/seed-<s>."""
    seeds = config["seeds"] or [config["train"]["seed"]]
    if only_seed is not None:
        if only_seed not in seeds:
            raise ConfigError(f"--seed {only_seed}: {config['name']} lists seeds {seeds}")
        seeds = [only_seed]
    base = out or runs_dir / config["name"]
    if not config["seeds"]:
        return [PlannedRun(config["name"], seeds[0], config, base)]
    runs = []
    for seed in seeds:
        seeded = copy.deepcopy(config)
        seeded["train"]["seed"] = seed
        runs.append(PlannedRun(config["name"], seed, seeded, base / f"seed-{seed}"))
    return runs


def select_experiments(experiments_dir: Path, patterns: list[str]) -> list[tuple[Path, dict]]:
    """Experiments whose name matches a pattern (a name or a glob); all when none given."""
    chosen = []
    available = {}
    for path in sorted(experiments_dir.glob("*.yaml")):
        config = load_config(path)
        available[config["name"]] = (path, config)
    if not patterns:
        return list(available.values())
    for pattern in patterns:
        matches = [name for name in available if fnmatch.fnmatch(name, pattern)]
        if not matches:
            raise MGRBError(f"EXPERIMENTS={pattern}: matches no experiment in {experiments_dir}/ "
                            f"(`mgrb list` shows the names)")
        chosen += [available[name] for name in matches if available[name] not in chosen]
    return chosen


def reproduce(*, experiments_dir: Path, patterns: list[str], runs_dir: Path, reports_dir: Path,
              device, tolerance: float | None, progress) -> int:
    from .data import data_present
    from .report import write_report
    from .check import check_group, format_table, read_results
    from .runfolder import RunFolder
    from .trainer import Trainer

    selected = select_experiments(experiments_dir, patterns)
    groups: dict[str, list[dict]] = {}
    failed: dict[str, str] = {}
    not_run: dict[str, str] = {}
    for _path, config in selected:
        name, dataset = config["name"], config["dataset"]["name"]
        # Named explicitly, CIFAR may still be downloaded; the default set takes what is there.
        may_download = bool(patterns) and dataset in ("cifar10", "cifar100") \
            and config["dataset"]["download"]
        if not data_present(dataset, config["dataset"]["root"]) and not may_download:
            not_run[name] = f"{dataset} data not present (`make data` says how to get it)"
            progress.message(f"skipping {name}: {not_run[name]}")
            continue
        for run in planned_runs(config, runs_dir):
            folder = RunFolder(run.folder)
            try:
                folder.prepare(run.config)
                if not folder.is_finished():
                    progress.message(f"== {name} (seed {run.seed}) -> {run.folder}")
                    folder.acquire_lock()
                    try:
                        Trainer(run.config, folder, device, progress).train()
                    finally:
                        folder.release_lock()
                else:
                    progress.message(f"== {name} (seed {run.seed}): finished earlier, skipped")
                groups.setdefault(name, []).append(read_results(run.folder))
            except MGRBError as error:
                failed[name] = str(error)
                progress.message(f"{name} failed: {error}")
            finally:
                _release_device_memory()
    report = write_report(groups, reports_dir, tolerance=tolerance, failed=failed,
                          not_run=not_run)
    rows = [row for name, runs in groups.items() for row in check_group(name, runs, tolerance)]
    if rows:
        print(format_table(rows))
    for name, message in failed.items():
        print(f"{name}: FAILED: {message}")
    print(f"report: {report}")
    return 1 if failed else 0


def _release_device_memory() -> None:
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
