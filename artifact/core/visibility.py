"""Which GPUs the launcher may place runs on: NVML's GPUs, narrowed by an inherited
CUDA_VISIBLE_DEVICES (Slurm sets one) and by the GPUs chosen in the settings, less the GPUs in
MIG mode. Pure functions over GPU readings and an environment, so every case is testable
without a GPU.

The rule throughout: a GPU that was asked for and cannot be had stops the queue with a
message; runs go to CPU slots only when no GPU was meant (none on the machine, an empty
CUDA_VISIBLE_DEVICES, no GPU in the settings), never as a quiet fallback.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from .gpu import GpuReading

ORDER_HELP = ("set CUDA_DEVICE_ORDER=PCI_BUS_ID or name the GPUs by UUID "
              "(`nvidia-smi -L` lists them)")


@dataclass(frozen=True)
class Visible:
    """What an inherited CUDA_VISIBLE_DEVICES leaves visible, in NVML's indices."""
    indices: tuple[int, ...] | None  # None: not set, every GPU
    mig: tuple[str, ...] = ()        # MIG device entries: visible to CUDA, not schedulable here
    problem: str | None = None       # the value cannot be read safely: nothing may start


@dataclass(frozen=True)
class Plan:
    gpus: tuple[int, ...] = ()                        # NVML indices that may take runs
    uuids: dict[int, str] = field(default_factory=dict)
    cpu: bool = False                                 # no GPU is meant: runs take CPU slots
    problems: tuple[str, ...] = ()                    # for the user, once each
    blocked: str | None = None                        # why no run may start at all


def resolve_visible(value: str | None, gpus: Sequence[GpuReading],
                    device_order: str | None = None) -> Visible:
    """Read CUDA_VISIBLE_DEVICES as CUDA does, against NVML's GPUs.

    Entries are GPU UUIDs or unique prefixes of them, MIG UUIDs, or indices in CUDA's
    enumeration order. CUDA stops at the first entry it cannot use; a negative index is the
    usual way to hide the rest ("-1": no GPU), so it is honoured, while an entry that names
    nothing (or more than one GPU) is taken for a mistake and refused.
    """
    if value is None:
        return Visible(None)
    indices: list[int] = []
    mig: list[str] = []
    for entry in (part.strip() for part in value.split(",")):
        if not entry:
            continue
        if re.fullmatch(r"-\d+", entry):
            break
        if entry.startswith("MIG-"):
            mig.append(entry)
            continue
        index, problem = _one_entry(entry, gpus, device_order)
        if problem:
            return Visible((), problem=f"CUDA_VISIBLE_DEVICES={value}: {problem}")
        if index not in indices:
            indices.append(index)
    return Visible(tuple(indices), tuple(mig))


def _one_entry(entry: str, gpus: Sequence[GpuReading], device_order: str | None):
    seen = ", ".join(f"{g.index} {g.uuid}" for g in gpus) or "none"
    if entry.startswith("GPU-"):
        matches = [g.index for g in gpus if g.uuid.startswith(entry)]
        if not matches:
            return None, f"{entry} is none of the GPUs seen here ({seen})"
        if len(matches) > 1:
            return None, (f"{entry} matches GPUs {', '.join(map(str, matches))}; "
                          "give enough of the UUID to name one")
        return matches[0], None
    if entry.isdigit():
        index = int(entry)
        names = sorted({g.name for g in gpus})
        if device_order != "PCI_BUS_ID" and len(names) > 1:
            # CUDA numbers the fastest GPU first, NVML by PCI bus: with mixed models the same
            # number can mean two different GPUs.
            return None, (f"index {index} is in CUDA's order (fastest first), which can differ "
                          f"from NVML's on mixed GPUs ({'; '.join(names)}): {ORDER_HELP}")
        if not any(g.index == index for g in gpus):
            return None, f"there is no GPU {index} (the GPUs seen here: {seen})"
        return index, None
    return None, f"{entry!r} is neither a GPU index nor a GPU-/MIG- UUID"


def mig_message(gpu: GpuReading) -> str:
    where = f"GPU {gpu.index} ({gpu.name})"
    if not gpu.mig_devices:
        return (f"{where} is in MIG mode with no MIG device created: the launcher does not "
                f"schedule on MIG slices; disable MIG (`nvidia-smi -i {gpu.index} -mig 0`) "
                "to use it")
    uuids = [device.uuid for device in gpu.mig_devices]
    count = f"{len(uuids)} MIG device{'s' if len(uuids) > 1 else ''}"
    return (f"{where} is in MIG mode with {count} ({', '.join(uuids)}): the launcher does not "
            f"schedule on MIG slices; run one by hand with CUDA_VISIBLE_DEVICES={uuids[0]} "
            "mgrb run EXPERIMENT --device cuda, or disable MIG "
            f"(`nvidia-smi -i {gpu.index} -mig 0`)")


def _mig_entries_message(entries: Sequence[str]) -> str:
    return (f"CUDA_VISIBLE_DEVICES names MIG device{'s' if len(entries) > 1 else ''} "
            f"{', '.join(entries)}: the launcher does not schedule on MIG slices; run "
            f"`mgrb run EXPERIMENT --device cuda` by hand in this environment instead")


def plan_slots(gpus: Sequence[GpuReading], configured: list[int] | None,
               environ: Mapping[str, str]) -> Plan:
    """The GPUs runs may go to. `configured`: NVML indices from the settings, None for all."""
    visible = _visible(gpus, environ)
    if visible.problem:
        return Plan(problems=(visible.problem,), blocked=visible.problem)
    allowed = {g.index for g in gpus} if visible.indices is None else set(visible.indices)
    problems = [_mig_entries_message(visible.mig)] if visible.mig else []
    wanted = sorted(allowed) if configured is None else list(dict.fromkeys(configured))
    usable = []
    for index in wanted:
        problem = _unusable(index, gpus, visible, environ)
        if problem:
            problems.append(problem)
        else:
            usable.append(index)
    if usable:
        uuids = {g.index: g.uuid for g in gpus if g.index in usable}
        return Plan(tuple(usable), uuids, problems=tuple(problems))
    if configured == [] or (configured is None and not allowed and not visible.mig):
        return Plan(cpu=True, problems=tuple(problems))
    return Plan(problems=tuple(problems),
                blocked="waiting: no GPU can take a run, and runs do not fall back to the CPU. "
                        + " ".join(problems))


def settings_problems(gpus: Sequence[GpuReading], configured: list[int] | None,
                      environ: Mapping[str, str]) -> list[str]:
    """Why GPUs chosen in the settings cannot take runs; [] for all of them or none chosen."""
    if not configured:
        return []
    visible = _visible(gpus, environ)
    if visible.problem:
        return [visible.problem]
    return [p for p in (_unusable(i, gpus, visible, environ) for i in configured) if p]


def _visible(gpus: Sequence[GpuReading], environ: Mapping[str, str]) -> Visible:
    return resolve_visible(environ.get("CUDA_VISIBLE_DEVICES"), gpus, environ.get("CUDA_DEVICE_ORDER"))


def _unusable(index: int, gpus: Sequence[GpuReading], visible: Visible,
              environ: Mapping[str, str]) -> str | None:
    gpu = next((g for g in gpus if g.index == index), None)
    if gpu is None:
        return (f"GPU {index} in the settings does not exist: " +
                (f"the GPUs seen here are {', '.join(str(g.index) for g in gpus)}" if gpus
                 else "no GPU is visible"))
    if visible.indices is not None and index not in visible.indices:
        return (f"GPU {index} in the settings is hidden by the launcher's "
                f"CUDA_VISIBLE_DEVICES={environ.get('CUDA_VISIBLE_DEVICES')}")
    if gpu.mig_enabled:
        return mig_message(gpu)
    return None
