"""results.json of a finished run: what it reached, on what, with what (the contract is
mgrb.store.contracts.RESULTS_CONTRACT)."""

from __future__ import annotations

import dataclasses

import torch

from mgrb.config.schema import Experiment
from mgrb.data.protocol import ORDER_NAME
from mgrb.store.contracts import RUN_FILES_FORMAT
from mgrb.training import evaluation
from mgrb.training.environment import cpu_kernels, device_name, device_uuid, library_versions
from mgrb.training.stream import IncrementalStream
from mgrb.version import describe


def build_results(config: Experiment, stream: IncrementalStream, phase_results: list[dict], *,
                  wall_time_s: float, device: torch.device, numerics: dict,
                  compile_report: dict) -> dict:
    artifact = describe()  # version, commit (from git, or the image's record of it), image id
    return {
        "format": RUN_FILES_FORMAT,
        "experiment": config.name,
        "dataset": config.dataset.name,
        "data_source": stream.data.source,
        "protocol": f"{config.protocol.initial}/{config.protocol.increment}",
        "class_order_name": ORDER_NAME,
        "class_order": stream.order,
        "memory": {"per_class": stream.per_class, "holdout": stream.holdout,
                   "exemplars": stream.per_class - stream.holdout},
        "phases": phase_results,
        **evaluation.summarise(phase_results),
        "wall_time_s": round(wall_time_s, 2),
        "device": device_name(device),
        "device_uuid": device_uuid(device),
        "cpu_kernels": cpu_kernels(device),
        "numerics": numerics,
        "compile": compile_report,
        "versions": library_versions(),
        "git_commit": artifact["commit"],
        "artifact": artifact,
        "seed": config.train.seed,
        "reported": dataclasses.asdict(config.reported),
        "config": config.to_dict(),
    }
