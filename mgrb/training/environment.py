"""Facts about where a run ran: device, library versions, the project's git commit."""

from __future__ import annotations

import platform
import sys
from importlib import metadata

import torch


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def device_uuid(device: torch.device) -> str | None:
    """The GPU's UUID as NVML and CUDA_VISIBLE_DEVICES write it, so a reader can tell which GPU
    of a machine a run used; None on the CPU."""
    if device.type != "cuda":
        return None
    properties = torch.cuda.get_device_properties(device)
    uuid = str(properties.uuid)
    if uuid.startswith(("GPU-", "MIG-")):
        return uuid
    return ("MIG-" if "MIG" in properties.name else "GPU-") + uuid


def library_versions() -> dict:
    versions = {"python": sys.version.split()[0]}
    for package in ("mgrb", "torch", "torchvision", "numpy", "scikit-learn", "nltk", "PyYAML"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    versions["cuda"] = torch.version.cuda
    return versions


def git_commit() -> str | None:
    """The project's commit, with '-dirty' when the work tree has changes (mgrb/version.py has
    the one implementation: git, else the image's or the release archive's record)."""
    from mgrb.version import source_commit

    return source_commit()
