"""The real launcher driven through Textual's pilot: pick, filter, launch real digits runs,
re-attach after closing, show a failed run's error, refuse an experiment without data.

Every wait is for something the launcher shows, with a deadline far beyond its usual time:
the runs are real trainings, and a loaded machine (a CI runner, other jobs) slows them many
times over."""

import asyncio
import time

import pytest

from artifact.app import ArtifactApp
from artifact.core.gpu import GpuMonitor
from artifact.core.runs import FAILED, FINISHED, NOT_RUN, RUNNING
from artifact.core.service import Service
from artifact.screens.main import MainScreen
from artifact.screens.monitor import MonitorScreen
from artifact.screens.results import ResultsScreen
from artifact.widgets.experiment_table import NO_STATUS_YET, ExperimentTable
from artifact_helpers import write_broken_cifar, write_experiments

SIZE = (150, 45)
DEADLINE = 600.0  # s; the 30-epoch run below takes about 20 s on an idle machine

pytestmark = pytest.mark.usefixtures("single_threaded_runs")


def _app(tmp_path, **kwargs) -> ArtifactApp:
    service = Service(experiments_dir=tmp_path / "experiments", runs_dir=tmp_path / "runs",
                      gpu_monitor=GpuMonitor(smi_command="no-nvidia-smi-here"))
    return ArtifactApp(service, poll_interval=0.2, reports_dir=tmp_path / "reports", **kwargs)


async def _until(pilot, condition, what: str, timeout: float = DEADLINE):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        await pilot.pause(0.2)
    raise AssertionError(f"the launcher did not get there in time ({timeout:.0f} s): {what}")


def _status(app, name: str) -> str | None:
    """The status cell of the experiment picker; None before the picker is up."""
    main = [screen for screen in app.screen_stack if isinstance(screen, MainScreen)]
    if not main or name not in {e.name for e in main[0].query_one(ExperimentTable).visible()}:
        return None
    return str(main[0].query_one(ExperimentTable).get_cell(name, "status"))


def _shown(app, name: str) -> bool:
    """The picker shows a status for `name` read from its run folder."""
    return _status(app, name) not in (None, NO_STATUS_YET)


def _title(app, screen_type, widget: str) -> str:
    """The text of `widget` on the top screen once it is a `screen_type`; "" before."""
    if not isinstance(app.screen, screen_type) or not app.screen.is_mounted:
        return ""
    return str(app.screen.query_one(widget).render())


def test_pick_filter_launch_and_read_the_verdict(tmp_path):
    write_experiments(tmp_path / "experiments", names=("tiny", "other"))

    async def scenario():
        app = _app(tmp_path)
        async with app.run_test(size=SIZE) as pilot:
            await _until(pilot, lambda: _shown(app, "tiny"), "the first poll shown")
            table = app.screen.query_one(ExperimentTable)
            assert {e.name for e in table.visible()} == {"tiny", "other"}
            await pilot.press("t", "i", "n", "enter")  # typing on the table filters it
            assert app.screen.query_one("#filter").value == "tin"
            assert [e.name for e in table.visible()] == ["tiny"]
            await pilot.press("space", "ctrl+l")
            await _until(pilot, lambda: (_status(app, "tiny") or "").startswith(FINISHED),
                         "tiny finished")
            assert _status(app, "tiny") == "finished: reproduced"
            await pilot.press("enter")
            await _until(pilot, lambda: _title(app, MonitorScreen, "#run-title"),
                         "the monitor drawn")
            assert "finished: reproduced" in _title(app, MonitorScreen, "#run-title")
            await pilot.press("ctrl+r")
            await _until(pilot, lambda: _title(app, ResultsScreen, "#results-title"),
                         "the results drawn")
            verdicts = app.screen.query_one("#verdicts")
            assert verdicts.row_count == 2
            assert [str(verdicts.get_row_at(i)[-1]) for i in range(2)] == ["reproduced"] * 2
            assert app.screen.query_one("#phases").row_count == 3
            await pilot.press("ctrl+e")
            await _until(pilot, lambda: (tmp_path / "reports" / "reproduction.md").exists(),
                         "the report written")
            await pilot.press("escape", "escape", "f1")
            assert type(app.screen).__name__ == "HelpScreen"
            await pilot.press("escape", "ctrl+q")

    asyncio.run(scenario())


def test_closing_the_launcher_leaves_the_run_training_and_reopening_reattaches(tmp_path):
    write_experiments(tmp_path / "experiments", epochs=30)

    async def first_session():
        app = _app(tmp_path)
        async with app.run_test(size=SIZE) as pilot:
            await _until(pilot, lambda: _status(app, "tiny") == NOT_RUN, "the first poll shown")
            await pilot.press("ctrl+l")
            await _until(pilot, lambda: _status(app, "tiny") == RUNNING, "tiny running")
            await _until(pilot, lambda: app.snapshot.states["tiny"].progress.losses,
                         "tiny's first losses")
            await pilot.press("ctrl+q")

    async def second_session():
        app = _app(tmp_path)
        async with app.run_test(size=SIZE) as pilot:
            await _until(pilot, lambda: _shown(app, "tiny"), "the first poll shown")
            assert _status(app, "tiny") == RUNNING  # the same process, found again
            await pilot.press("enter")
            await _until(pilot, lambda: _title(app, MonitorScreen, "#run-title"),
                         "the monitor drawn")
            assert RUNNING in _title(app, MonitorScreen, "#run-title")
            await _until(pilot, lambda: app.snapshot.states["tiny"].status == FINISHED,
                         "tiny finished")

    asyncio.run(first_session())
    asyncio.run(second_session())


def test_a_failed_run_shows_its_error_and_missing_data_is_explained(tmp_path):
    folder = write_experiments(tmp_path / "experiments")
    write_broken_cifar(folder, tmp_path / "data")
    (folder / "c100.yaml").write_text(
        f"name: c100\ndataset: {{name: cifar100, root: {tmp_path / 'none'}}}\n"
        "protocol: {initial: 50, increment: 10}\nhierarchy: {kind: ont}\n")

    async def scenario():
        app = _app(tmp_path)
        async with app.run_test(size=SIZE, notifications=True) as pilot:
            await _until(pilot, lambda: _shown(app, "c100"), "the first poll shown")
            await pilot.press("b", "r", "o", "k", "enter", "ctrl+l")
            await _until(pilot, lambda: _status(app, "broken_cifar") == FAILED,
                         "broken_cifar failed")
            detail = str(app.screen.query_one("#detail").render())
            assert "mgrb: error" in detail
            await pilot.press("escape", "c", "1", "0", "0", "enter", "ctrl+l")
            await _until(pilot, lambda: any("make data" in n.message for n in app._notifications),
                         "c100's missing data explained")
            assert _status(app, "c100") == NOT_RUN

    asyncio.run(scenario())
