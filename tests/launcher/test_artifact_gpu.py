"""The GPU panel's reader: the real NVML library on a machine without a GPU, a reading in
NVML's shapes replayed at the pynvml boundary, the nvidia-smi fallback, run matching."""

import json
import subprocess
from pathlib import Path
import pynvml
import pytest

from artifact.core.gpu import GpuMonitor, GpuReading, GpuSnapshot, MigDevice, runs_on_gpus
from artifact.core.visibility import Plan, Visible, plan_slots, resolve_visible, settings_problems
from artifact_helpers import MIG_SLICES, ReplayedNvml, nvml_reading

READING = json.loads((Path(__file__).parents[1] / "data" / "nvml_reading.json").read_text())


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


def test_mig_mode_and_its_devices_are_read():
    reading = nvml_reading({"mig_mode": [1, 1], "mig_devices": MIG_SLICES}, {"mig_mode": [0, 1]})
    # a GPU without MIG (no "mig_mode": NotSupported)
    reading["devices"].append({**READING["devices"][1], "uuid": "GPU-ffff"})
    migged, pending, plain = GpuMonitor(nvml=ReplayedNvml(reading)).read().gpus
    assert migged.mig_enabled and migged.mig_devices == (
        MigDevice(MIG_SLICES[0]["uuid"], MIG_SLICES[0]["name"]),
        MigDevice(MIG_SLICES[2]["uuid"], MIG_SLICES[2]["name"]))
    assert migged.memory_total == READING["devices"][0]["memory_total"]  # the rest is read as before
    assert (pending.mig_enabled, pending.mig_devices) == (False, ())  # on only after a reset
    assert (plain.mig_enabled, plain.mig_devices) == (False, ())


# -- which GPUs the launcher may use --------------------------------------------------------
A = "GPU-6a1c9f3e-0d2b-4c41-9a77-1f0e8b2c5d10"
B = "GPU-6a2e2d44-8c15-4f0a-b2d6-77c1e9a3f021"  # shares "GPU-6a" with A


def _gpus(*names, mig=None):
    uuids = (A, B, "GPU-c3d4e5f6-0000-4000-8000-000000000002")
    return tuple(GpuReading(i, uuids[i], name, 0.0, 0, 1, None, None, None, (),
                            mig_enabled=mig is not None and i in mig,
                            mig_devices=tuple(MigDevice(d["uuid"], d["name"]) for d in MIG_SLICES if d)
                            if mig is not None and i in mig else ())
                 for i, name in enumerate(names))


SAME = _gpus("NVIDIA H100 80GB HBM3", "NVIDIA H100 80GB HBM3")
MIXED = _gpus("NVIDIA H100 80GB HBM3", "NVIDIA A100-SXM4-40GB")


@pytest.mark.parametrize("value, gpus, order, indices", [
    (None, SAME, None, None),                 # not set: every GPU
    ("", SAME, None, ()),                     # set and empty: no GPU
    ("-1", SAME, None, ()),                   # the usual way to hide them all
    ("1,-1,0", SAME, None, (1,)),             # CUDA stops at the first invalid index
    (A, MIXED, None, (0,)),
    (f" {B} , {A}", MIXED, None, (1, 0)),
    ("GPU-6a2", MIXED, None, (1,)),           # a unique prefix, as CUDA accepts
    ("1,0,1", SAME, None, (1, 0)),            # same model: CUDA's order is the PCI order
    ("1", MIXED, "PCI_BUS_ID", (1,)),
    ("1", _gpus("NVIDIA H100 80GB HBM3"), None, None),  # one GPU: index 1 does not exist
])
def test_an_inherited_cuda_visible_devices_is_read_as_cuda_reads_it(value, gpus, order, indices):
    visible = resolve_visible(value, gpus, order)
    if indices is None and value is not None:
        assert visible.indices == () and "there is no GPU 1 (the GPUs seen here: 0 GPU-6a1c" in visible.problem
    else:
        assert (visible.indices, visible.problem) == (indices, None)


@pytest.mark.parametrize("value, words", [
    ("GPU-6a", "GPU-6a matches GPUs 0, 1; give enough of the UUID to name one"),
    ("GPU-0b7e", "GPU-0b7e is none of the GPUs seen here (0 GPU-6a1c"),
    ("0", "CUDA_DEVICE_ORDER=PCI_BUS_ID or name the GPUs by UUID"),
    ("cuda:0", "'cuda:0' is neither a GPU index nor a GPU-/MIG- UUID"),
])
def test_what_cuda_visible_devices_cannot_name_safely_is_refused(value, words):
    visible = resolve_visible(value, MIXED, None)
    assert visible.indices == () and visible.problem.startswith(f"CUDA_VISIBLE_DEVICES={value}: ")
    assert words in visible.problem


def test_indices_on_mixed_gpus_need_the_pci_order():
    mixed = resolve_visible("0", MIXED, "FASTEST_FIRST").problem
    assert "fastest first" in mixed and "(NVIDIA A100-SXM4-40GB; NVIDIA H100 80GB HBM3)" in mixed
    assert resolve_visible("0", MIXED, "PCI_BUS_ID") == resolve_visible("0", SAME) == Visible((0,))


def test_mig_entries_are_seen_and_not_scheduled():
    visible = resolve_visible(f"{MIG_SLICES[0]['uuid']},{B}", MIXED)
    assert (visible.indices, visible.mig) == ((1,), (MIG_SLICES[0]["uuid"],))
    plan = plan_slots(MIXED, None, {"CUDA_VISIBLE_DEVICES": MIG_SLICES[0]["uuid"]})
    assert plan.gpus == () and not plan.cpu and plan.blocked
    assert plan.problems == (f"CUDA_VISIBLE_DEVICES names MIG device {MIG_SLICES[0]['uuid']}: the "
                             "launcher does not schedule on MIG slices; run `mgrb run EXPERIMENT "
                             "--device cuda` by hand in this environment instead",)


def test_all_gpus_by_uuid_by_default():
    assert plan_slots(SAME, None, {}) == Plan(gpus=(0, 1), uuids={0: A, 1: B})
    assert plan_slots(SAME, None, {"CUDA_VISIBLE_DEVICES": B}) == Plan(gpus=(1,), uuids={1: B})


@pytest.mark.parametrize("gpus, configured, environ", [
    ((), None, {}),                                 # a machine without GPU
    (SAME, None, {"CUDA_VISIBLE_DEVICES": ""}),     # hidden on purpose (Slurm without --gres)
    (SAME, [], {}),                                 # no GPU chosen in the settings
])
def test_cpu_slots_only_when_no_gpu_is_meant(gpus, configured, environ):
    assert plan_slots(gpus, configured, environ) == Plan(cpu=True)


def test_configured_gpus_that_are_absent_or_hidden_are_named():
    plan = plan_slots(SAME, [0, 3], {})
    assert (plan.gpus, plan.blocked) == ((0,), None)
    assert plan.problems == ("GPU 3 in the settings does not exist: the GPUs seen here are 0, 1",)
    plan = plan_slots(SAME, [0], {"CUDA_VISIBLE_DEVICES": "GPU-6a2"})
    assert (plan.gpus, plan.cpu) == ((), False)
    assert plan.problems == ("GPU 0 in the settings is hidden by the launcher's "
                             "CUDA_VISIBLE_DEVICES=GPU-6a2",)
    assert "runs do not fall back to the CPU" in plan.blocked and plan.problems[0] in plan.blocked
    plan = plan_slots((), [0], {})  # no driver, or NVML failed: never a quiet CPU run
    assert plan.blocked and plan.problems == ("GPU 0 in the settings does not exist: no GPU is visible",)
    assert settings_problems(SAME, [0, 3], {}) == [plan_slots(SAME, [0, 3], {}).problems[0]]
    assert settings_problems((), None, {}) == settings_problems(SAME, [1], {}) == []


def test_an_unreadable_inherited_value_stops_everything():
    plan = plan_slots(MIXED, None, {"CUDA_VISIBLE_DEVICES": "0,1"})
    assert (plan.gpus, plan.cpu) == ((), False) and plan.blocked == plan.problems[0]
    assert "CUDA_DEVICE_ORDER=PCI_BUS_ID" in plan.blocked
    ordered = plan_slots(MIXED, None, {"CUDA_VISIBLE_DEVICES": "1", "CUDA_DEVICE_ORDER": "PCI_BUS_ID"})
    assert ordered == Plan(gpus=(1,), uuids={1: B})
    assert settings_problems(MIXED, [0], {"CUDA_VISIBLE_DEVICES": "0"}) == [plan.problems[0]
                                                                           .replace("0,1", "0")]


MIG_MESSAGE = (f"GPU 0 (NVIDIA H100 80GB HBM3) is in MIG mode with 2 MIG devices ({MIG_SLICES[0]['uuid']}, "
               f"{MIG_SLICES[2]['uuid']}): the launcher does not schedule on MIG slices; run one by hand "
               f"with CUDA_VISIBLE_DEVICES={MIG_SLICES[0]['uuid']} mgrb run EXPERIMENT --device cuda, "
               "or disable MIG (`nvidia-smi -i 0 -mig 0`)")


def test_mig_gpus_are_refused_with_their_devices_listed():
    gpus = _gpus("NVIDIA H100 80GB HBM3", "NVIDIA H100 80GB HBM3", mig={0})
    assert plan_slots(gpus, None, {}) == Plan(gpus=(1,), uuids={1: B}, problems=(MIG_MESSAGE,))
    only = plan_slots(gpus[:1], None, {})
    assert only.gpus == () and not only.cpu and only.blocked.endswith(MIG_MESSAGE)
    assert settings_problems(gpus, [0, 1], {}) == [MIG_MESSAGE]
    empty = _gpus("NVIDIA A100-SXM4-40GB")
    empty = (GpuReading(**{**empty[0].__dict__, "mig_enabled": True}),)
    assert "with no MIG device created" in plan_slots(empty, None, {}).blocked


RECORDED = Path(__file__).parents[1] / "data" / "nvml_recorded.json"


@pytest.mark.skipif(not RECORDED.exists(), reason="no NVML reading recorded on a GPU yet: "
                    "`python -m benchmarks.gpu_check` on a GPU machine writes tests/data/nvml_recorded.json")
def test_a_reading_recorded_on_a_real_gpu_replays():
    """What `make gpu-check` recorded from a real driver reads back whole: every GPU with a
    UUID, a name and memory that add up, in NVML's units."""
    reading = json.loads(RECORDED.read_text())
    snapshot = GpuMonitor(nvml=ReplayedNvml(reading)).read()
    assert snapshot.source == "nvml" and len(snapshot.gpus) == len(reading["devices"]) >= 1
    for gpu, device in zip(snapshot.gpus, reading["devices"]):
        assert gpu.uuid.startswith("GPU-") and gpu.name == device["name"]
        assert 0 <= gpu.memory_used <= gpu.memory_total == device["memory_total"]
        if device["power_mw"] is not None:
            assert gpu.power == device["power_mw"] / 1000
