"""Facts about where a run ran: device, library versions, the project's git commit."""

from __future__ import annotations

import os
import platform
import sys
from importlib import metadata

import torch


def resolve_device(choice: str) -> torch.device:
    if choice == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if choice == "cuda" and not torch.cuda.is_available():
        from mgrb.errors import MGRBError

        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        raise MGRBError(
            f"--device cuda: no CUDA device is visible to PyTorch (torch {torch.__version__}, "
            f"built for CUDA {torch.version.cuda}; CUDA_VISIBLE_DEVICES="
            f"{'unset' if visible is None else repr(visible)}). Usual causes: no NVIDIA driver, "
            f"or one too old for CUDA {torch.version.cuda}; a CUDA_VISIBLE_DEVICES that names "
            "no GPU; a GPU in MIG mode without a MIG device named. This run does not fall back "
            "to the CPU: ask for that with --device cpu.")
    return torch.device(choice)


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
