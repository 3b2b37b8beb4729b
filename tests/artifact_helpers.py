"""Shared by the launcher tests: tiny experiment files and waiting for run folders."""

from __future__ import annotations

import json
import time
from pathlib import Path
from types import SimpleNamespace

import pynvml

NVML_READING = Path(__file__).parent / "data" / "nvml_reading.json"

TINY = """\
name: {name}
description: a tiny digits run for the launcher tests
dataset: {{name: digits}}
protocol: {{initial: 8, increment: 1, memory_total: 200}}
train:
  epochs: {epochs}
  milestones: [1]
  stage2_epochs: 2
  batch_size: 64
  checkpoint_every: 1
  log_every: 2
method: {{losses: ce+distill+hierloss, beta: 20, scale: 0.5}}
hierarchy: {{kind: vis, clusters: 2}}
# 50 ± 50: any accuracy is inside; the tests check the plumbing, not the number
reported: {{avg_top1: 50.0, last_top1: 50.0, tolerance: 50.0}}
"""

BROKEN_CIFAR = """\
name: broken_cifar
dataset: {{name: cifar10, root: {root}}}
protocol: {{initial: 6, increment: 2}}
hierarchy: {{kind: sem, clusters: 2}}
"""


def write_experiments(folder: Path, *, epochs: int = 2, names=("tiny",)) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / f"{name}.yaml").write_text(TINY.format(name=name, epochs=epochs))
    return folder


def write_broken_cifar(folder: Path, data_root: Path) -> None:
    """CIFAR-10 that looks present but is not readable: the run starts, then fails."""
    batches = data_root / "cifar-10-batches-py"
    batches.mkdir(parents=True, exist_ok=True)
    for name in ("data_batch_1", "test_batch", "batches.meta"):
        (batches / name).write_bytes(b"not a pickle")
    (folder / "broken_cifar.yaml").write_text(BROKEN_CIFAR.format(root=data_root))


def wait_for(condition, timeout: float = 120.0, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"not reached within {timeout} s")


class ReplayedNvml:
    """pynvml's functions over a stored reading; the real exception classes and constants."""
    NVMLError = pynvml.NVMLError
    NVML_TEMPERATURE_GPU = pynvml.NVML_TEMPERATURE_GPU

    def __init__(self, reading):
        self.devices, self.calls = reading["devices"], []

    def _value(self, handle, key):
        value = self.devices[handle][key]
        if value is None:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
        return value

    def nvmlInit(self):
        self.calls.append("init")

    def nvmlShutdown(self):
        self.calls.append("shutdown")

    def nvmlDeviceGetCount(self):
        return len(self.devices)

    def nvmlDeviceGetHandleByIndex(self, index):
        return index

    def nvmlDeviceGetUUID(self, handle):
        return self._value(handle, "uuid")

    def nvmlDeviceGetName(self, handle):
        return self._value(handle, "name").encode()  # older bindings return bytes

    def nvmlDeviceGetUtilizationRates(self, handle):
        return SimpleNamespace(gpu=self._value(handle, "utilization_gpu"), memory=0)

    def nvmlDeviceGetMemoryInfo(self, handle):
        return SimpleNamespace(used=self._value(handle, "memory_used"),
                               total=self._value(handle, "memory_total"))

    def nvmlDeviceGetTemperature(self, handle, sensor):
        assert sensor == pynvml.NVML_TEMPERATURE_GPU
        return self._value(handle, "temperature")

    def nvmlDeviceGetPowerUsage(self, handle):
        return self._value(handle, "power_mw")

    def nvmlDeviceGetEnforcedPowerLimit(self, handle):
        return self._value(handle, "power_limit_mw")

    def nvmlDeviceGetComputeRunningProcesses(self, handle):
        return [SimpleNamespace(pid=p, usedGpuMemory=1) for p in self._value(handle, "pids")]


def replayed_nvml():
    return ReplayedNvml(json.loads(NVML_READING.read_text()))
