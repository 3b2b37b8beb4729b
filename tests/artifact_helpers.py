"""Shared by the launcher tests: tiny experiment files and waiting for run folders."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pynvml

from mgrb.store.processes import identity, pid_alive

NVML_READING = Path(__file__).parent / "data" / "nvml_reading.json"
# A "mig_devices" entry for a GPU of the reading: three slots, the middle one empty.
MIG_SLICES = [{"uuid": "MIG-1f0c3a52-77d1-5b0e-9c1d-2a4b6c8d0e11", "name": "NVIDIA H100 80GB HBM3 MIG 3g.40gb"},
              None,
              {"uuid": "MIG-9e8d7c6b-5a49-5382-a1b0-c9d8e7f6a5b4", "name": "NVIDIA H100 80GB HBM3 MIG 2g.20gb"}]

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


def tiny_experiment(tmp_path: Path):
    """The tiny experiment, loaded as the launcher loads it, with its run folder made."""
    from artifact.core.experiments import load_experiments

    folder = write_experiments(tmp_path / "experiments")
    (experiment,) = load_experiments(folder, tmp_path / "runs")
    experiment.base_folder.mkdir(parents=True)
    return experiment


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


# -- processes that are not the run's, and one that passes for its trainer ---------------------
def start_sleeper() -> subprocess.Popen:
    """An unrelated process in a session of its own, as a supervisor would be: a stop that
    signals it has been fooled by a planted pid."""
    return subprocess.Popen(["sleep", "600"], start_new_session=True)


FAKE_TRAINER = """\
import os
import subprocess
import sys
import time

held = None
if os.environ.get("FAKE_TRAINER_HOLDS"):  # the run folder's lock, open as a trainer holds it
    path = os.environ["FAKE_TRAINER_HOLDS"]
    os.makedirs(os.path.dirname(path), exist_ok=True)
    held = open(path, "a")
if len(sys.argv) > 2:  # a child in the trainer's process group, as its data workers are
    child = subprocess.Popen(["sleep", "600"])
    with open(sys.argv[2] + ".tmp", "w") as handle:
        handle.write(str(child.pid))
    os.replace(sys.argv[2] + ".tmp", sys.argv[2])
time.sleep(600)
"""


def start_fake_trainer(folder: Path, child_pid_file: Path | None = None, *,
                       holds: Path | None = None) -> subprocess.Popen:
    """A process whose command line is the `mgrb` console script's, as a trainer started
    with `mgrb run` in another terminal: the lock may name it. With child_pid_file, it
    starts a child in its process group and writes the child's pid there. With `holds` (a
    run folder's run.lock), it keeps that file open, as a trainer holding the lock does: the
    launcher signals only such a process."""
    from mgrb.store.processes import holds_open

    script = Path(folder) / "mgrb"
    script.write_text(FAKE_TRAINER)
    extra = [str(child_pid_file)] if child_pid_file else []
    env = {**os.environ, **({"FAKE_TRAINER_HOLDS": str(holds)} if holds else {})}
    process = subprocess.Popen([sys.executable, str(script), "run", *extra], start_new_session=True,
                               env=env)
    # Until the child has exec'd, /proc shows pytest's command line, and the launcher rightly
    # refuses to signal it: on a busy machine that window made the lock tests flaky.
    cmdline, deadline = Path(f"/proc/{process.pid}/cmdline"), time.monotonic() + 60
    while str(script).encode() not in cmdline.read_bytes() or (
            holds and not holds_open(process.pid, holds)):
        if time.monotonic() > deadline or process.poll() is not None:
            raise AssertionError(f"the fake trainer {script} did not start")
        time.sleep(0.01)
    return process


def write_lock(folder: Path, pid: int, *, process="same", host: str | None = None) -> None:
    """The trainer's run.lock for `pid`; process: "same" for its true identity, None for a
    lock without one (an older trainer), or any record to plant."""
    folder.mkdir(parents=True, exist_ok=True)
    record = {"pid": pid, "host": host or socket.gethostname(), "since": time.time()}
    if process is not None:
        record["process"] = identity(pid) if process == "same" else process
    (folder / "run.lock").write_text(json.dumps(record))


def stop_process(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.kill()
    process.wait(timeout=10)


def still_alive(process: subprocess.Popen) -> bool:
    """Alive and never signalled: a sleep that got SIGTERM or SIGKILL would have ended."""
    return process.poll() is None and pid_alive(process.pid)


class ReplayedNvml:
    """pynvml's functions over a stored reading; the real exception classes and constants.

    A device's optional "mig_mode" ([current, pending]; absent: a GPU without MIG, which
    raises NotSupported) and "mig_devices" (a list of {"uuid", "name"}, null for an empty
    slot) stand for MIG; a MIG device's handle is (GPU index, slot)."""
    NVMLError = pynvml.NVMLError
    NVML_TEMPERATURE_GPU = pynvml.NVML_TEMPERATURE_GPU
    NVML_DEVICE_MIG_ENABLE = pynvml.NVML_DEVICE_MIG_ENABLE
    MAX_MIG_DEVICES = 7  # an H100's

    def __init__(self, reading):
        self.devices, self.calls = reading["devices"], []

    def _value(self, handle, key):
        if isinstance(handle, tuple):
            gpu, slot = handle
            value = self.devices[gpu]["mig_devices"][slot][key]
        else:
            value = self.devices[handle][key]
        if value is None:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
        return value

    def _mig_capable(self, handle):
        if "mig_mode" not in self.devices[handle]:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)

    def nvmlDeviceGetMigMode(self, handle):
        self._mig_capable(handle)
        return list(self.devices[handle]["mig_mode"])

    def nvmlDeviceGetMaxMigDeviceCount(self, handle):
        self._mig_capable(handle)
        return self.MAX_MIG_DEVICES

    def nvmlDeviceGetMigDeviceHandleByIndex(self, handle, slot):
        self._mig_capable(handle)
        slots = self.devices[handle].get("mig_devices") or []
        if slot >= len(slots) or slots[slot] is None:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_FOUND)
        return handle, slot

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


def nvml_reading(*changes: dict) -> dict:
    """The stored reading with each device's entries updated by the matching dict (MIG, other
    models); `{}` leaves a device as it is."""
    devices = json.loads(NVML_READING.read_text())["devices"]
    return {"devices": [{**device, **change} for device, change in zip(devices, changes)]
            + devices[len(changes):]}
