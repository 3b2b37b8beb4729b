"""The experiment files as rows for the picker: what each is, whether its data is there."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from mgrb.config import Experiment as ExperimentConfig
from mgrb.config import load_config
from mgrb.data import data_present, dataset_folder, default_root, images_present
from mgrb.data.registry import DATASETS, PICKLES
from mgrb.errors import ConfigError
from mgrb.perf.estimate import projected_hours
from mgrb.pipeline.catalogue import load_catalogue
from mgrb.pipeline.reproduce import planned_runs
from mgrb.perf.throughput import bench_dir, latest_gpu_measurement

from .explain import explain

DATASET_TITLES = {name: record.title for name, record in DATASETS.items()}


@dataclass(frozen=True)
class ExperimentRow:
    name: str
    path: Path
    dataset: str
    protocol: str                 # "initial/increment"
    hierarchy: str
    reported: dict | None         # {avg_top1, last_top1, tolerance} or None
    gpu_hours: float | None
    hours_basis: str              # a measured rate (`make bench`) or the file's assumption
    data_present: bool
    data_help: str | None         # why the data is missing and how to get it
    base_folder: Path             # runs/<name>: the launcher's records live here
    run_folders: tuple[Path, ...]  # one per seed
    description: str = ""


@dataclass(frozen=True)
class BrokenExperiment:
    path: Path
    error: str


def data_help(dataset: str, root, image_size: int | None = None) -> str:
    where = default_root(root).resolve()
    record = DATASETS[dataset]
    if record.cache_only and images_present(dataset, root):
        from mgrb.data.cache import cache_side, prepare_command

        command = prepare_command(dataset, root, cache_side(dataset, image_size))
        folder = dataset_folder(default_root(root), dataset).resolve()
        return (f"{DATASET_TITLES[dataset]}'s images are in {folder}, but runs read only "
                f"its prepared cache, not made yet: `{command}` decodes them once.")
    if record.storage == PICKLES:
        return (f"{DATASET_TITLES[dataset]} is not in {where}. `make data` downloads it where "
                "the network allows; or copy torchvision's folder there, or set MGRB_DATA.")
    return (f"{DATASET_TITLES[dataset]} is not in {where / dataset}: it cannot be downloaded "
            "automatically. `mgrb data` prints the folder layout to put there; or set MGRB_DATA. "
            f"Then `mgrb data prepare {dataset}` decodes it once "
            + ("into the cache that runs read." if record.cache_only else "for fast runs."))


MAX_EXPERIMENT_BYTES = 1024 * 1024  # the largest of the project's files is a few kB


def load_experiments(experiments_dir: Path, runs_dir: Path) -> list[ExperimentRow | BrokenExperiment]:
    """One row per *.yaml file. A file that cannot be used is a BrokenExperiment with the
    reason, whatever is wrong with it: experiment folders come from elsewhere too."""
    runs_dir = Path(runs_dir)
    measurement = _measurement(runs_dir)
    entries = load_catalogue(experiments_dir, lambda path: _load(path, runs_dir, measurement))
    return [entry.loaded if entry.problem is None else BrokenExperiment(entry.path, entry.problem)
            for entry in entries]


def _load(path: Path, runs_dir: Path, measurement) -> ExperimentRow:
    """The file's row; ConfigError says why it has none."""
    problem = _unreadable(path)
    if problem:
        raise ConfigError(problem)
    try:
        return _experiment(path, load_config(path), runs_dir, measurement)
    except ConfigError:
        raise
    except Exception as error:  # noqa: BLE001 - one bad file must not stop the launcher
        raise ConfigError(f"cannot be loaded ({explain(error)})") from error


def _unreadable(path: Path) -> str | None:
    """Why the file is not one to read at all: a FIFO would block the launcher's start."""
    try:
        info = os.stat(path)
    except OSError as error:
        return f"cannot be read ({error.strerror or error})"
    if not stat.S_ISREG(info.st_mode):
        return "is not a regular file (a FIFO, device or folder)"
    if info.st_size > MAX_EXPERIMENT_BYTES:
        return f"is larger than {MAX_EXPERIMENT_BYTES >> 20} MB; not an experiment file"
    return None


def _measurement(runs_dir: Path):
    """`make bench`'s newest GPU measurement: only a convenience for the hours column, so
    any trouble reading it (files planted in <runs>/.bench) means none."""
    folder = bench_dir(runs_dir)
    try:
        if any(not path.is_file() for path in folder.glob("*.json")):
            return None  # a FIFO there would block the reader
        return latest_gpu_measurement(runs_dir)
    except Exception:  # noqa: BLE001
        return None


def _experiment(path: Path, config: ExperimentConfig, runs_dir: Path, measurement) -> ExperimentRow:
    dataset, root = config.dataset.name, config.dataset.root
    present = data_present(dataset, root, config.dataset.image_size)
    runs = planned_runs(config, runs_dir)
    hours, basis = projected_hours(config, measurement)
    return ExperimentRow(
        name=config.name, path=path, dataset=dataset,
        protocol=f"{config.protocol.initial}/{config.protocol.increment}",
        hierarchy=config.hierarchy.kind, reported=config.reported.figures(),
        gpu_hours=hours, hours_basis=basis, data_present=present,
        data_help=None if present else data_help(dataset, root, config.dataset.image_size),
        base_folder=runs_dir / config.name, run_folders=tuple(run.folder for run in runs),
        description=config.description)
