"""GPU readings for the panel: NVML (nvidia-ml-py), `nvidia-smi` when NVML cannot load, and a
plain sentence when neither sees a GPU. `read()` never raises: a missing GPU is a state."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

MIB = 1024 ** 2
SMI_GPUS = ("index,uuid,name,utilization.gpu,memory.used,memory.total,temperature.gpu,"
            "power.draw,power.limit")


def nvidia_driver_version() -> str | None:
    """This machine's NVIDIA driver version ('580.65.06') through NVML; None without one."""
    try:
        import pynvml

        pynvml.nvmlInit()  # counted: the GPU panel's own NVML session stays open
        try:
            driver = pynvml.nvmlSystemGetDriverVersion()
        finally:
            pynvml.nvmlShutdown()
    except Exception:  # noqa: BLE001 - no nvidia-ml-py, no driver: nothing to check against
        return None
    return driver.decode() if isinstance(driver, bytes) else str(driver)


@dataclass(frozen=True)
class MigDevice:
    uuid: str  # "MIG-...": what CUDA_VISIBLE_DEVICES takes to run on this slice
    name: str


@dataclass(frozen=True)
class GpuReading:
    index: int
    uuid: str
    name: str
    utilisation: float | None   # percent
    memory_used: int            # bytes
    memory_total: int           # bytes
    temperature: float | None   # Celsius
    power: float | None         # watts
    power_limit: float | None   # watts
    pids: tuple[int, ...]       # compute processes; host pids when read inside a container
    mig_enabled: bool = False   # MIG mode is on: CUDA cannot use the GPU whole
    mig_devices: tuple[MigDevice, ...] = ()


@dataclass(frozen=True)
class GpuSnapshot:
    gpus: tuple[GpuReading, ...]
    source: str                 # "nvml", "nvidia-smi" or "none"
    message: str | None = None  # why no GPU can be read


class GpuMonitor:
    def __init__(self, nvml=None, smi_command: str = "nvidia-smi", run=subprocess.run):
        self._nvml, self._smi, self._run = nvml, smi_command, run
        self._nvml_ready = False
        self._nvml_failure: str | None = None
        self._smi_missing = False

    # -- NVML ---------------------------------------------------------------------------
    def _start_nvml(self) -> bool:
        if self._nvml_ready:
            return True
        if self._nvml_failure is not None:  # definitive: not retried every second
            return False
        try:
            if self._nvml is None:
                import pynvml

                self._nvml = pynvml
            self._nvml.nvmlInit()
        except ImportError:
            self._nvml_failure = "the nvidia-ml-py package is not installed"
        except Exception as error:  # noqa: BLE001 - pynvml.NVMLError and its subclasses
            self._nvml_failure = f"NVML says '{error}'"
        else:
            self._nvml_ready = True
        return self._nvml_ready

    def _metric(self, read, convert=float):
        try:
            return convert(read())
        except self._nvml.NVMLError:
            return None

    def _read_device(self, index: int) -> GpuReading:
        nvml = self._nvml
        handle = nvml.nvmlDeviceGetHandleByIndex(index)
        memory = nvml.nvmlDeviceGetMemoryInfo(handle)
        processes = self._metric(lambda: nvml.nvmlDeviceGetComputeRunningProcesses(handle),
                                 convert=list) or []
        return GpuReading(
            index=index, uuid=_text(nvml.nvmlDeviceGetUUID(handle)),
            name=_text(nvml.nvmlDeviceGetName(handle)),
            utilisation=self._metric(lambda: nvml.nvmlDeviceGetUtilizationRates(handle).gpu),
            memory_used=int(memory.used), memory_total=int(memory.total),
            temperature=self._metric(
                lambda: nvml.nvmlDeviceGetTemperature(handle, nvml.NVML_TEMPERATURE_GPU)),
            power=self._metric(lambda: nvml.nvmlDeviceGetPowerUsage(handle) / 1000),  # mW
            power_limit=self._metric(lambda: nvml.nvmlDeviceGetEnforcedPowerLimit(handle) / 1000),
            pids=tuple(int(p.pid) for p in processes), **self._read_mig(handle))

    def _read_mig(self, handle) -> dict:
        nvml = self._nvml
        try:
            current, _pending = nvml.nvmlDeviceGetMigMode(handle)
        except nvml.NVMLError:  # NotSupported: a GPU without MIG
            return {}
        if current != nvml.NVML_DEVICE_MIG_ENABLE:
            return {}
        devices = []
        for slot in range(self._metric(lambda: nvml.nvmlDeviceGetMaxMigDeviceCount(handle), int) or 0):
            try:
                mig = nvml.nvmlDeviceGetMigDeviceHandleByIndex(handle, slot)
                devices.append(MigDevice(_text(nvml.nvmlDeviceGetUUID(mig)),
                                         _text(nvml.nvmlDeviceGetName(mig))))
            except nvml.NVMLError:  # NotFound: a slot with no MIG device in it
                continue
        return {"mig_enabled": True, "mig_devices": tuple(devices)}

    def _read_nvml(self) -> GpuSnapshot:
        gpus = tuple(self._read_device(i) for i in range(self._nvml.nvmlDeviceGetCount()))
        message = None if gpus else "NVML found no GPU on this machine; runs train on the CPU."
        return GpuSnapshot(gpus, "nvml", message)

    # -- nvidia-smi -------------------------------------------------------------------------
    def _smi_query(self, query: str) -> list[list[str]]:
        result = self._run([self._smi, query, "--format=csv,noheader,nounits"],
                           capture_output=True, text=True, timeout=5)
        if result.returncode != 0:
            raise RuntimeError((result.stderr or result.stdout).strip() or
                               f"exit status {result.returncode}")
        return [[cell.strip() for cell in line.split(",")]
                for line in result.stdout.splitlines() if line.strip()]

    def _read_smi(self) -> GpuSnapshot:
        rows = self._smi_query(f"--query-gpu={SMI_GPUS}")
        pids: dict[str, list[int]] = {}
        for uuid, pid in self._smi_query("--query-compute-apps=gpu_uuid,pid"):
            if pid.isdigit():
                pids.setdefault(uuid, []).append(int(pid))
        gpus = tuple(GpuReading(
            index=int(row[0]), uuid=row[1], name=row[2], utilisation=_number(row[3]),
            memory_used=int((_number(row[4]) or 0) * MIB),
            memory_total=int((_number(row[5]) or 0) * MIB), temperature=_number(row[6]),
            power=_number(row[7]), power_limit=_number(row[8]),
            pids=tuple(pids.get(row[1], ()))) for row in rows)
        return GpuSnapshot(gpus, "nvidia-smi",
                           None if gpus else "nvidia-smi lists no GPU; runs train on the CPU.")

    # -- the reading ---------------------------------------------------------------------
    def read(self) -> GpuSnapshot:
        if self._start_nvml():
            try:
                return self._read_nvml()
            except Exception as error:  # noqa: BLE001 - a driver gone away mid-session
                self._nvml_failure, self._nvml_ready = f"NVML says '{error}'", False
        if self._smi_missing:
            return self._none("nvidia-smi is not installed")
        try:
            return self._read_smi()
        except FileNotFoundError:
            self._smi_missing = True
            return self._none("nvidia-smi is not installed")
        except subprocess.TimeoutExpired:
            return self._none("nvidia-smi did not answer within 5 s")
        except (RuntimeError, OSError, ValueError, IndexError) as error:
            return self._none(f"nvidia-smi failed ({str(error)[:120]})")

    def _none(self, smi_problem: str) -> GpuSnapshot:
        return GpuSnapshot((), "none", f"No GPU visible: {self._nvml_failure} and {smi_problem}. "
                                       "Runs train on the CPU (slowly, except the digits ones).")

    def close(self) -> None:
        if self._nvml_ready:
            self._nvml_ready = False
            try:
                self._nvml.nvmlShutdown()
            except Exception:  # noqa: BLE001 - shutting down: nothing left to do about it
                pass


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _number(cell: str) -> float | None:
    try:
        return float(cell)
    except ValueError:  # "[N/A]", "[Not Supported]"
        return None


def in_container() -> bool:
    if Path("/.dockerenv").exists() or os.environ.get("MGRB_IN_CONTAINER"):
        return True
    try:
        cgroup = Path("/proc/1/cgroup").read_text()
    except OSError:
        return False
    return any(word in cgroup for word in ("docker", "containerd", "kubepods"))


def runs_on_gpus(snapshot: GpuSnapshot, runs, *, container: bool) -> dict[str, list[int]]:
    """Which GPUs each run uses. `runs`: (label, pid or None, assigned GPU uuid or None).

    Outside a container NVML's process ids are ours, so a run is found by its pid. Inside
    one, NVML reports the host's pids, which never equal ours: there, and for any run whose
    pid is on no GPU, the GPU the launcher assigned (by uuid) is the answer.
    """
    by_uuid = {gpu.uuid: gpu.index for gpu in snapshot.gpus}
    found: dict[str, list[int]] = {}
    for label, pid, uuid in runs:
        indices = [] if container or pid is None else \
            [gpu.index for gpu in snapshot.gpus if pid in gpu.pids]
        if not indices and uuid in by_uuid:
            indices = [by_uuid[uuid]]
        if indices:
            found[label] = indices
    return found
