"""The real launcher driven through Textual's pilot: pick, filter, launch real digits runs,
re-attach after closing, show a failed run's error, refuse an experiment without data."""

import asyncio
import time

from artifact.app import ArtifactApp
from artifact.core.gpu import GpuMonitor
from artifact.core.service import Service
from artifact.screens.monitor import MonitorScreen
from artifact.screens.results import ResultsScreen
from artifact.widgets.experiment_table import ExperimentTable
from artifact_helpers import write_broken_cifar, write_experiments

SIZE = (150, 45)


def _app(tmp_path, **kwargs) -> ArtifactApp:
    service = Service(experiments_dir=tmp_path / "experiments", runs_dir=tmp_path / "runs",
                      gpu_monitor=GpuMonitor(smi_command="no-nvidia-smi-here"))
    return ArtifactApp(service, poll_interval=0.2, reports_dir=tmp_path / "reports", **kwargs)


async def _until(pilot, condition, timeout: float = 150.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        await pilot.pause(0.2)
    raise AssertionError("the launcher did not get there in time")


def _status(app, name: str) -> str:
    return str(app.screen_stack[1].query_one(ExperimentTable).get_cell(name, "status"))


def test_pick_filter_launch_and_read_the_verdict(tmp_path):
    write_experiments(tmp_path / "experiments", names=("tiny", "other"))

    async def scenario():
        app = _app(tmp_path)
        async with app.run_test(size=SIZE) as pilot:
            table = app.screen.query_one(ExperimentTable)
            assert {e.name for e in table.visible()} == {"tiny", "other"}
            await pilot.press("t", "i", "n", "enter")  # typing on the table filters it
            assert app.screen.query_one("#filter").value == "tin"
            assert [e.name for e in table.visible()] == ["tiny"]
            await pilot.press("space", "ctrl+l")
            await _until(pilot, lambda: _status(app, "tiny").startswith("finished"))
            assert _status(app, "tiny") == "finished: reproduced"
            await pilot.press("enter")
            assert isinstance(app.screen, MonitorScreen)
            await pilot.pause(0.5)
            title = str(app.screen.query_one("#run-title").render())
            assert "finished: reproduced" in title
            await pilot.press("ctrl+r")
            assert isinstance(app.screen, ResultsScreen)
            await pilot.pause(0.5)
            verdicts = app.screen.query_one("#verdicts")
            assert verdicts.row_count == 2
            assert [str(verdicts.get_row_at(i)[-1]) for i in range(2)] == ["reproduced"] * 2
            assert app.screen.query_one("#phases").row_count == 3
            await pilot.press("ctrl+e")
            await _until(pilot, lambda: (tmp_path / "reports" / "reproduction.md").exists(), 60)
            await pilot.press("escape", "escape", "f1")
            assert type(app.screen).__name__ == "HelpScreen"
            await pilot.press("escape", "ctrl+q")

    asyncio.run(scenario())


def test_closing_the_launcher_leaves_the_run_training_and_reopening_reattaches(tmp_path):
    write_experiments(tmp_path / "experiments", epochs=30)

    async def first_session():
        app = _app(tmp_path)
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press("ctrl+l")
            await _until(pilot, lambda: _status(app, "tiny") == "running")
            await _until(pilot, lambda: app.snapshot.states["tiny"].progress.losses)
            await pilot.press("ctrl+q")

    async def second_session():
        app = _app(tmp_path)
        async with app.run_test(size=SIZE) as pilot:
            await _until(pilot, lambda: app.snapshot is not None)
            assert _status(app, "tiny") == "running"  # the same process, found again
            await pilot.press("enter")
            await pilot.pause(0.5)
            assert "running" in str(app.screen.query_one("#run-title").render())
            await _until(pilot, lambda: app.snapshot.states["tiny"].status == "finished")

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
            await pilot.press("b", "r", "o", "k", "enter", "ctrl+l")
            await _until(pilot, lambda: _status(app, "broken_cifar") == "failed")
            detail = str(app.screen.query_one("#detail").render())
            assert "mgrb: error" in detail
            await pilot.press("escape", "c", "1", "0", "0", "enter", "ctrl+l")
            await pilot.pause(0.5)
            assert _status(app, "c100") == "not run"
            assert any("make data" in n.message for n in app._notifications)

    asyncio.run(scenario())
