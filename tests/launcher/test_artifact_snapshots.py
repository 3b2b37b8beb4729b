"""Snapshots (pytest-textual-snapshot) of the launcher's screens on recorded run folders: a
finished run, one stopped with a checkpoint, a failed launch; the GPU panel shows the
NVML reading of tests/data (hand-written in NVML's shapes); the picker and the monitor at a
wide size and at 80x24. Update after an intended change
with `pytest tests/launcher/test_artifact_snapshots.py --snapshot-update` and look at the SVGs."""

from pathlib import Path

from artifact.app import ArtifactApp
from artifact.core.gpu import GpuMonitor
from artifact.core.service import Service
from artifact_helpers import replayed_nvml

RECORDED = Path(__file__).parents[1] / "data" / "recorded"
SIZE = (150, 42)
SMALL = (80, 24)  # the smallest terminal the launcher is laid out for


def _app() -> ArtifactApp:
    service = Service(experiments_dir=RECORDED / "experiments", runs_dir=RECORDED / "runs",
                      gpu_monitor=GpuMonitor(nvml=replayed_nvml()))
    return ArtifactApp(service, poll_interval=3600)  # one poll at start: a still picture


def _then(*keys):
    async def run_before(pilot):
        while pilot.app.snapshot is None:
            await pilot.pause(0.05)
        await pilot.press(*keys)
        await pilot.pause(0.3)
    return run_before


def test_experiment_picker(snap_compare):
    assert snap_compare(_app(), terminal_size=SIZE, run_before=_then())


def test_experiment_picker_at_80x24(snap_compare):
    assert snap_compare(_app(), terminal_size=SMALL, run_before=_then())


def test_failed_run_detail(snap_compare):
    assert snap_compare(_app(), terminal_size=SIZE, run_before=_then("b", "r", "o", "enter"))


def test_run_monitor_of_a_finished_run(snap_compare):
    assert snap_compare(_app(), terminal_size=SIZE, run_before=_then("down", "enter"))


def test_run_monitor_at_80x24(snap_compare):
    assert snap_compare(_app(), terminal_size=SMALL, run_before=_then("down", "enter"))


def test_results_with_verdicts(snap_compare):
    assert snap_compare(_app(), terminal_size=SIZE, run_before=_then("down", "ctrl+r"))


def test_help(snap_compare):
    assert snap_compare(_app(), terminal_size=SIZE, run_before=_then("f1"))
