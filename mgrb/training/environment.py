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


# The CPU features that choose which kernels oneDNN, MKL and ATen run: two machines that differ
# here sum floats in other orders, so a CPU run's numbers match to the digit only where this
# signature does (docs/method.md section 10: the digits demo's average moves by up to 0.6
# points between them).
_KERNEL_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_tile",
                 "asimd", "sve")


def cpu_kernels(device: torch.device) -> str | None:
    """Which CPU kernels a run's numbers came from: vendor, ATen's vector level, the features
    oneDNN and MKL dispatch on, and the thread count; None on a GPU."""
    if device.type != "cpu":
        return None
    vendor, flags = platform.machine(), set()
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as info:
            for line in info:
                key, _, value = line.partition(":")
                key = key.strip()
                if key in ("vendor_id", "CPU implementer") and vendor == platform.machine():
                    vendor = f"{platform.machine()} {value.strip()}"
                elif key in ("flags", "Features"):
                    flags = set(value.split())
                    break
    except OSError:  # not Linux: the vendor and ATen's level still say much
        pass
    features = " ".join(flag for flag in _KERNEL_FLAGS if flag in flags) or "-"
    return (f"{vendor}; ATen {torch.backends.cpu.get_cpu_capability()}; {features}; "
            f"{torch.get_num_threads()} threads")


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
