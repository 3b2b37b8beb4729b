"""The GPU panel's reader: the real NVML library on a machine without a GPU, a reading in
NVML's shapes replayed at the pynvml boundary, the nvidia-smi fallback, run matching."""

import json
import subprocess
from pathlib import Path
import pynvml
import pytest

from artifact.core.gpu import GpuMonitor, GpuReading, GpuSnapshot, runs_on_gpus
from artifact_helpers import ReplayedNvml

READING = json.loads((Path(__file__).parent / "data" / "nvml_reading.json").read_text())


def test_no_gpu_the_real_nvml_error_is_said_plainly():
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as error:
        expected = str(error)
    else:
        pynvml.nvmlShutdown()
        pytest.skip("this machine has an NVIDIA driver")
    monitor = GpuMonitor(smi_command="no-such-nvidia-smi")
    snapshot = monitor.read()
    assert (snapshot.gpus, snapshot.source) == ((), "none")
    assert f"NVML says '{expected}'" in snapshot.message
    assert "nvidia-smi is not installed" in snapshot.message and "CPU" in snapshot.message
    assert monitor.read() == snapshot  # no retry storm, same answer
    monitor.close()
    monitor.close()


def test_a_reading_in_nvmls_shapes():
    nvml = ReplayedNvml(READING)
    monitor = GpuMonitor(nvml=nvml)
    first, second = monitor.read().gpus
    assert first == GpuReading(index=0, uuid="GPU-6a1c9f3e-0d2b-4c41-9a77-1f0e8b2c5d10",
                               name="NVIDIA H100 80GB HBM3", utilisation=97.0,
                               memory_used=41875931136, memory_total=85520809984,
                               temperature=71.0, power=612.345, power_limit=700.0,
                               pids=(31337, 31338))
    assert second.power is None and second.power_limit == 700.0 and second.pids == ()
    monitor.read()
    monitor.close()
    monitor.close()
    assert nvml.calls == ["init", "shutdown"]


def _smi(outputs):
    def run(command, **kwargs):
        query = command[1]
        code, text = outputs[query.split("=")[0]]
        return subprocess.CompletedProcess(command, code, stdout=text, stderr="driver gone")
    return run


class BrokenNvml(ReplayedNvml):
    def nvmlInit(self):
        raise pynvml.NVMLError(pynvml.NVML_ERROR_DRIVER_NOT_LOADED)


def test_the_nvidia_smi_fallback():
    outputs = {"--query-gpu": (0, "0, GPU-a, NVIDIA A100-SXM4-40GB, 55, 20480, 40960, 61, "
                                  "[N/A], 400.00\n1, GPU-b, NVIDIA A100-SXM4-40GB, [N/A], 0, "
                                  "40960, 30, 50.5, 400.00\n"),
               "--query-compute-apps": (0, "GPU-a, 123\nGPU-a, 456\n")}
    snapshot = GpuMonitor(nvml=BrokenNvml(READING), run=_smi(outputs)).read()
    assert snapshot.source == "nvidia-smi" and len(snapshot.gpus) == 2
    first, second = snapshot.gpus
    assert (first.utilisation, first.memory_used, first.power, first.pids) == \
        (55.0, 20480 * 1024 ** 2, None, (123, 456))
    assert (second.utilisation, second.power, second.pids) == (None, 50.5, ())


@pytest.mark.parametrize("problem, words", [
    ("exit", "nvidia-smi failed (driver gone)"), ("missing", "nvidia-smi is not installed"),
    ("timeout", "did not answer")])
def test_nvidia_smi_failures_are_a_state_not_an_exception(problem, words):
    def run(command, **kwargs):
        if problem == "missing":
            raise FileNotFoundError(command[0])
        if problem == "timeout":
            raise subprocess.TimeoutExpired(command, 5)
        return subprocess.CompletedProcess(command, 9, stdout="", stderr="driver gone")

    snapshot = GpuMonitor(nvml=BrokenNvml(READING), run=run).read()
    assert snapshot.source == "none" and words in snapshot.message
    assert "Driver Not Loaded" in snapshot.message


def test_runs_are_matched_by_pid_outside_a_container_and_by_assignment_inside():
    gpus = (GpuReading(0, "GPU-a", "x", 1, 1, 2, 1, 1, 1, (100,)),
            GpuReading(1, "GPU-b", "x", 1, 1, 2, 1, 1, 1, (999,)))
    snapshot = GpuSnapshot(gpus, "nvml")
    runs = [("mine", 100, "GPU-b"), ("elsewhere", 5, "GPU-b"), ("unknown", 6, None)]
    assert runs_on_gpus(snapshot, runs, container=False) == {"mine": [0], "elsewhere": [1]}
    assert runs_on_gpus(snapshot, runs, container=True) == {"mine": [1], "elsewhere": [1]}
