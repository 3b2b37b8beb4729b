"""Shared by the launcher's pilot tests: the real app on given folders, and waiting for what
it shows (never for a fixed time)."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from artifact.app import ArtifactApp
from artifact.core.gpu import GpuMonitor
from artifact.core.service import Service
from artifact.screens.main import MainScreen
from artifact.widgets.experiment_table import NO_STATUS_YET, ExperimentTable

RECORDED = Path(__file__).parents[1] / "data" / "recorded"


def recorded_copy(tmp_path: Path) -> Path:
    """The recorded experiments and run folders, copied where a test may change them."""
    shutil.copytree(RECORDED, tmp_path, dirs_exist_ok=True)
    return tmp_path


def make_app(root: Path, gpu_monitor: GpuMonitor | None = None, **service_options) -> ArtifactApp:
    service = Service(experiments_dir=root / "experiments", runs_dir=root / "runs",
                      gpu_monitor=gpu_monitor or GpuMonitor(smi_command="no-nvidia-smi-here"),
                      **service_options)
    return ArtifactApp(service, poll_interval=0.2, reports_dir=root / "reports")


async def until(pilot, condition, what: str, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        await pilot.pause(0.05)
    raise AssertionError(f"the launcher did not get there in {timeout:.0f} s: {what}")


def table(app) -> ExperimentTable:
    main = [screen for screen in app.screen_stack if isinstance(screen, MainScreen)]
    return main[0].query_one(ExperimentTable)


def status(app, name: str) -> str | None:
    """The status cell of `name` in the picker; None before the first poll is shown."""
    if app.snapshot is None or not any(isinstance(s, MainScreen) for s in app.screen_stack):
        return None
    shown = str(table(app).get_cell(name, "status"))
    return None if shown == NO_STATUS_YET else shown


def told(app) -> list[str]:
    return [notification.message for notification in app._notifications]
