"""The experiment files as rows for the picker: what each is, whether its data is there."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mgrb.config import load_config
from mgrb.data import data_present, default_root
from mgrb.errors import ConfigError
from mgrb.estimate import projected_hours
from mgrb.reproduce import planned_runs
from mgrb.throughput import latest_gpu_measurement

DATASET_TITLES = {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100", "miniimagenet": "miniImageNet",
                  "imagenet100": "ImageNet-100", "digits": "digits"}


@dataclass(frozen=True)
class Experiment:
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


def data_help(dataset: str, root) -> str:
    where = default_root(root).resolve()
    if dataset in ("cifar10", "cifar100"):
        return (f"{DATASET_TITLES[dataset]} is not in {where}. `make data` downloads it where "
                "the network allows; or copy torchvision's folder there, or set MGRB_DATA.")
    return (f"{DATASET_TITLES[dataset]} is not in {where / dataset}: it cannot be downloaded "
            "automatically. `mgrb data` prints the folder layout to put there; or set MGRB_DATA.")


def load_experiments(experiments_dir: Path, runs_dir: Path) -> list[Experiment | BrokenExperiment]:
    rows: list[Experiment | BrokenExperiment] = []
    measurement = latest_gpu_measurement(runs_dir)
    for path in sorted(Path(experiments_dir).glob("*.yaml")):
        try:
            config = load_config(path)
        except ConfigError as error:
            rows.append(BrokenExperiment(path, str(error)))
            continue
        rows.append(_experiment(path, config, Path(runs_dir), measurement))
    return rows


def _experiment(path: Path, config: dict, runs_dir: Path, measurement) -> Experiment:
    dataset, root = config["dataset"]["name"], config["dataset"]["root"]
    present = data_present(dataset, root)
    reported = config["reported"]
    numbers = None
    if reported and (reported.get("avg_top1") is not None or reported.get("last_top1") is not None):
        numbers = {key: reported.get(key) for key in ("avg_top1", "last_top1", "tolerance")}
    runs = planned_runs(config, runs_dir)
    hours, basis = projected_hours(config, measurement)
    return Experiment(
        name=config["name"], path=path, dataset=dataset,
        protocol=f"{config['protocol']['initial']}/{config['protocol']['increment']}",
        hierarchy=config["hierarchy"]["kind"], reported=numbers,
        gpu_hours=hours, hours_basis=basis, data_present=present,
        data_help=None if present else data_help(dataset, root),
        base_folder=runs_dir / config["name"], run_folders=tuple(run.folder for run in runs),
        description=config["description"] or "")
