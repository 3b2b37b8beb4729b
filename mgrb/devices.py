"""The device a run computes on, and how much of it the run's images may take.

One place turns a device choice into the device a run uses: always indexed (`cuda:0`, never a
bare `cuda`). A CUDA tensor's `.device` carries its index, so a bare `cuda` compares unequal
to every tensor on it, and code that asks "is this tensor already on the run's device?" takes
the wrong branch.
"""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING

from mgrb.errors import MGRBError

if TYPE_CHECKING:
    import torch

# torch is imported where it is used: the launcher's core reads the names below without it.

DEVICE_CHOICE = re.compile(r"auto|cpu|cuda(:\d{1,3})?")
# How many runs share this process's GPU, set by whoever packs them (the launcher, from its
# runs_per_gpu setting); a run's images may take only its share of the GPU.
GPU_SHARE_VARIABLE = "MGRB_GPU_SHARE"
MAX_GPU_SHARE = 64
RESIDENT_SHARE = 0.5  # of a run's part of the GPU its images may take: the rest is training's


def resolve_device(choice: str) -> torch.device:
    """`--device` (auto, cpu, cuda, cuda:N) as the indexed device this process trains on."""
    import torch

    if not DEVICE_CHOICE.fullmatch(choice):
        raise MGRBError(f"--device {choice!r}: expected auto, cpu, cuda or cuda:N")
    if choice == "auto":
        choice = "cuda" if torch.cuda.is_available() else "cpu"
    if choice.startswith("cuda") and not torch.cuda.is_available():
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        raise MGRBError(
            f"--device {choice}: no CUDA device is visible to PyTorch (torch {torch.__version__}, "
            f"built for CUDA {torch.version.cuda}; CUDA_VISIBLE_DEVICES="
            f"{'unset' if visible is None else repr(visible)}). Usual causes: no NVIDIA driver, "
            f"or one too old for CUDA {torch.version.cuda}; a CUDA_VISIBLE_DEVICES that names "
            "no GPU; a GPU in MIG mode without a MIG device named. This run does not fall back "
            "to the CPU: ask for that with --device cpu.")
    device = indexed(torch.device(choice))
    if device.type == "cuda" and device.index >= torch.cuda.device_count():
        raise MGRBError(f"--device {choice}: PyTorch sees {torch.cuda.device_count()} CUDA "
                        f"device(s), numbered from 0")
    return device


def indexed(device: torch.device | str) -> torch.device:
    """`device` with its index: a bare `cuda` is the current CUDA device."""
    import torch

    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        return torch.device("cuda", torch.cuda.current_device())
    return device


def gpu_share() -> int:
    """How many runs share this GPU ($MGRB_GPU_SHARE, default 1)."""
    text = os.environ.get(GPU_SHARE_VARIABLE, "").strip()
    if not text:
        return 1
    if not text.isdigit() or not 1 <= int(text) <= MAX_GPU_SHARE:
        raise MGRBError(f"{GPU_SHARE_VARIABLE}={text!r}: expected how many runs share the GPU, "
                        f"a whole number from 1 to {MAX_GPU_SHARE}")
    return int(text)


def resident_budget(device: torch.device) -> int | None:
    """Bytes of images a run may keep on `device`: half of the smaller of the GPU's free
    memory and this run's share of the whole GPU (runs packed on one GPU each see it nearly
    all free when they start together). None on the CPU: no limit."""
    if device.type != "cuda":
        return None
    import torch

    free, total = torch.cuda.mem_get_info(device)
    return int(RESIDENT_SHARE * min(free, total / gpu_share()))
