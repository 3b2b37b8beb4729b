"""Through Textual's pilot on the real app: a run folder deleted while the launcher is open
leaves the list of runs, a switch to Docker mode is saved only when a daemon answers through
the Docker SDK (the project's fake Engine API stands in for one), and what the launcher tells
about a failure is its cause in words, never an exception's repr."""

import asyncio
import json
import shutil

import pytest
from textual.widgets import Select

from artifact.core.explain import looks_raw
from artifact.core.runs import INTERRUPTED, NOT_RUN
from artifact.core.settings import settings_path
from artifact.screens.monitor import MonitorScreen
from artifact.screens.settings import SettingsScreen
from artifact.widgets.accuracy_plot import AccuracyPlot
from artifact.widgets.loss_plot import LossPlot
from artifact_helpers import write_experiments
from fake_docker_engine import FakeEngine
from launcher_pilot import make_app, recorded_copy, status, told, until

SIZE = (120, 40)


@pytest.fixture
def engine():
    fake = FakeEngine()
    yield fake
    fake.close()


def test_a_run_folder_deleted_while_the_launcher_is_open_leaves_the_list(tmp_path):
    root = recorded_copy(tmp_path)

    async def scenario():
        app = make_app(root)
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: status(app, "tiny_stopped") == INTERRUPTED,
                        "the stopped run shown")
            await pilot.press("t", "i", "n", "y", "_", "s", "enter", "enter")
            await until(pilot, lambda: isinstance(app.screen, MonitorScreen), "the monitor open")
            await until(pilot, lambda: (app.screen.query_one(LossPlot).shown or [()])[0],
                        "its losses drawn, before the deletion")
            shutil.rmtree(root / "runs" / "tiny_stopped")
            await until(pilot, lambda: status(app, "tiny_stopped") == NOT_RUN,
                        "the deleted run gone from the list")
            state = app.snapshot.states["tiny_stopped"]
            assert state.detail == "" and not state.progress.losses
            await until(pilot, lambda: not app.screen.query_one(LossPlot).shown[0],
                        "the monitor's loss curve emptied")
            assert "no stage-1 loss logged yet" in str(
                app.screen.query_one(LossPlot).query_one(".legend").render())
            assert "not run" in str(app.screen.query_one("#run-title").render())

    asyncio.run(scenario())


async def _choose_docker_and_save(pilot, app):
    await pilot.press("ctrl+o")
    await until(pilot, lambda: isinstance(app.screen, SettingsScreen), "the settings open")
    app.screen.query_one("#mode", Select).value = "docker"
    await pilot.click("#save")


def test_docker_mode_is_saved_when_a_daemon_answers(tmp_path, monkeypatch, engine):
    monkeypatch.setenv("DOCKER_HOST", engine.base_url)  # the real SDK's from_env finds it
    monkeypatch.setenv("MGRB_DATA", str(tmp_path))  # Docker mode needs a data folder that exists
    write_experiments(tmp_path / "experiments")

    async def scenario():
        app = make_app(tmp_path)
        async with app.run_test(size=SIZE, notifications=True) as pilot:
            await until(pilot, lambda: status(app, "tiny"), "the first poll shown")
            await _choose_docker_and_save(pilot, app)
            await until(pilot, lambda: not isinstance(app.screen, SettingsScreen),
                        "the settings saved and closed")
            assert "settings saved" in told(app)
            assert app.service.settings.mode == "docker"
            assert engine.called("GET", "/_ping")

    asyncio.run(scenario())
    assert json.loads(settings_path(tmp_path / "runs").read_text())["mode"] == "docker"


def test_docker_mode_without_a_daemon_says_why_in_one_line_and_keeps_the_mode(tmp_path, monkeypatch):
    socket = tmp_path / "no-daemon.sock"
    monkeypatch.setenv("DOCKER_HOST", f"unix://{socket}")
    monkeypatch.setenv("MGRB_DATA", str(tmp_path))
    write_experiments(tmp_path / "experiments")

    async def scenario():
        app = make_app(tmp_path)
        async with app.run_test(size=SIZE, notifications=True) as pilot:
            await until(pilot, lambda: status(app, "tiny"), "the first poll shown")
            await _choose_docker_and_save(pilot, app)
            errors = app.screen.query_one("#settings-errors")
            await until(pilot, lambda: str(errors.render()), "the refusal shown")
            shown = str(errors.render())
            assert shown == (f"Docker mode not saved (there is no Docker socket at unix://{socket}); "
                             "the launcher stays in local-process mode.")
            assert isinstance(app.screen, SettingsScreen)  # left open, with the mode put back
            assert app.screen.query_one("#mode", Select).value == "local"
            assert app.service.settings.mode == "local"
            await pilot.press("escape")

    asyncio.run(scenario())
    assert not settings_path(tmp_path / "runs").exists()


def test_a_launch_without_a_daemon_is_told_by_its_cause_not_a_repr(tmp_path, monkeypatch, engine):
    monkeypatch.setenv("DOCKER_HOST", engine.base_url)
    monkeypatch.setenv("MGRB_DATA", str(tmp_path))
    write_experiments(tmp_path / "experiments")

    async def scenario():
        app = make_app(tmp_path)
        async with app.run_test(size=SIZE, notifications=True) as pilot:
            await until(pilot, lambda: status(app, "tiny"), "the first poll shown")
            await _choose_docker_and_save(pilot, app)
            await until(pilot, lambda: app.service.settings.mode == "docker", "Docker mode saved")
            engine.close()  # the daemon goes away after the switch
            await pilot.press("ctrl+l")
            await until(pilot, lambda: any("could not start" in m for m in told(app)),
                        "the failed start told")
            (message,) = [m for m in told(app) if "could not start" in m]
            assert message.startswith("tiny: could not start: No Docker daemon answers: there is "
                                      f"no Docker socket at {engine.base_url}. ")
            for text in (*told(app), str(app.screen.query_one("#detail").render())):
                assert not looks_raw(text) and "Errno" not in text, text

    asyncio.run(scenario())


def test_the_accuracy_chart_waits_for_a_first_phase(tmp_path):
    write_experiments(tmp_path / "experiments")

    async def scenario():
        app = make_app(tmp_path)
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: status(app, "tiny") == NOT_RUN, "the first poll shown")
            await pilot.press("enter")
            await until(pilot, lambda: isinstance(app.screen, MonitorScreen), "the monitor open")
            chart = app.screen.query_one(AccuracyPlot)
            await until(pilot, lambda: chart.shown is not None, "the chart drawn")
            legend = str(chart.query_one(".legend").render())
            assert legend == "● top-1: no phase evaluated yet  ─ reported avg & last 50.00"

    asyncio.run(scenario())
