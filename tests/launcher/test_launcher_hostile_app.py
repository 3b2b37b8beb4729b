"""The launcher through Textual's pilot on an experiments folder and a runs folder full of
broken and hostile files: it starts, shows each broken run with its reason, shows names,
descriptions and logs as text (no markup, no escape sequences), signals nothing on a kill,
and exits cleanly."""

import asyncio
import json
import os
import time


from artifact.app import ArtifactApp
from artifact.core.gpu import GpuMonitor
from artifact.core.service import Service
from artifact.screens.monitor import MonitorScreen
from artifact.screens.results import ResultsScreen
from artifact.widgets.experiment_table import NO_STATUS_YET, ExperimentTable
from artifact_helpers import still_alive, write_experiments, write_lock
from mgrb.store.processes import identity

SIZE = (150, 45)
HOSTILE = "[/bold] [@click=app.quit]quit[/] \x1b]0;pwned\x07\x1b[2J\x9b31m"
ESCAPES = ("\x1b", "\x07", "\x9b")




def _workspace(tmp_path, sleeper) -> None:
    experiments = write_experiments(tmp_path / "experiments",
                                    names=("tiny", "hostile", "planted", "linked"))
    hostile = experiments / "hostile.yaml"
    hostile.write_text(hostile.read_text().replace(
        "description: a tiny digits run for the launcher tests",
        "description: " + json.dumps(HOSTILE)))  # JSON's escapes are YAML's
    (experiments / "tiny_copy.yaml").write_text((experiments / "tiny.yaml").read_text())
    (experiments / "badname.yaml").write_text((experiments / "tiny.yaml").read_text().replace(
        "name: tiny", 'name: "[@click=app.quit]x"', 1))
    os.mkfifo(experiments / "fifo.yaml")

    runs = tmp_path / "runs"
    for name in ("tiny", "hostile", "planted", "linked"):
        (runs / name).mkdir(parents=True)
    (runs / "tiny" / "launch.json").write_text(json.dumps({"mode": "local", "pid": 1}))
    (runs / "hostile" / "results.json").write_text(json.dumps({
        "experiment": "hostile", "avg_top1": "high", "last_top1": 1.0, "phases": []}))
    (runs / "hostile" / "events.jsonl").write_bytes(b"\n".join([
        json.dumps({"event": "started", "time": time.time(), "phases": 3}).encode(),
        os.urandom(200).replace(b"\n", b""),
        json.dumps({"event": "iteration", "phase": "0", "epoch": 1}).encode(),
        *[json.dumps({"event": "iteration", "phase": 0, "stage": "stage1", "epoch": 1,
                      "epochs": 2, "iteration": 1, "iterations": 2,
                      "losses": {"total": loss}}).encode() for loss in (1e308, -1e308)]]) + b"\n")
    (runs / "hostile" / "launcher.log").write_text(f"loading {HOSTILE}\nmgrb: error: {HOSTILE}\n")
    # a real, unrelated process named with its true identity in both records
    (runs / "planted" / "launch.json").write_text(json.dumps(
        {"mode": "local", "pid": sleeper.pid, "process": identity(sleeper.pid)}))
    write_lock(runs / "planted", sleeper.pid)
    (runs / "planted" / "results.json").write_text(json.dumps({"experiment": "planted"}))
    (runs / "linked" / "events.jsonl").symlink_to("/dev/zero")
    (runs / ".launcher").mkdir()
    (runs / ".launcher" / "queue.json").write_text('{"queued": "[b]everything[/b]"}')
    (runs / ".launcher" / "settings.json").write_text('{"mode": "cloud"}')


def _app(tmp_path) -> ArtifactApp:
    service = Service(experiments_dir=tmp_path / "experiments", runs_dir=tmp_path / "runs",
                      gpu_monitor=GpuMonitor(smi_command="no-nvidia-smi-here"))
    return ArtifactApp(service, poll_interval=0.2, reports_dir=tmp_path / "reports")


async def _until(pilot, condition, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        await pilot.pause(0.05)
    raise AssertionError("the launcher did not get there in time")


def _table(app) -> ExperimentTable:
    return app.screen_stack[1].query_one(ExperimentTable)


def _status(app, name: str) -> str:
    return str(_table(app).get_cell(name, "status"))


async def _open_monitor(pilot, app, name: str) -> MonitorScreen:
    table = _table(app)
    table.move_cursor(row=table.get_row_index(name))
    await pilot.press("enter")
    await _until(pilot, lambda: isinstance(app.screen, MonitorScreen))
    await pilot.pause(0.3)
    return app.screen


def _messages(app) -> list:
    return list(app._notifications)


def test_hostile_files_are_shown_as_broken_text_and_signal_nothing(tmp_path, sleeper, signals):
    _workspace(tmp_path, sleeper)

    async def scenario():
        app = _app(tmp_path)
        async with app.run_test(size=SIZE, notifications=True) as pilot:
            await _until(pilot, lambda: app.snapshot is not None
                         and _status(app, "linked") != NO_STATUS_YET)  # the first poll shown
            for name in ("tiny", "hostile", "planted", "linked"):
                assert _status(app, name) == "broken", name
            details = {n: s.detail for n, s in app.snapshot.states.items()}
            assert "launch.json: pid: must be an integer in [2," in details["tiny"]
            assert "results.json: avg_top1: must be a number, got 'high'" in details["hostile"]
            assert "4 damaged line(s) of events.jsonl skipped" in details["hostile"]
            assert "events.jsonl: is a symbolic link" in details["linked"]
            assert "results.json: avg_top1: missing" in details["planted"]

            # experiment files: each problem told, as text
            told = "\n".join(n.message for n in _messages(app))
            assert f"names itself tiny, as {tmp_path / 'experiments' / 'tiny.yaml'} does" in told
            assert "fifo.yaml: is not a regular file" in told
            assert "[@click=app.quit]x" in told  # the bad name, quoted in its error
            assert "settings.json: mode: must be one of local, docker" in told
            assert "queue.json: queued: must be a list" in told
            assert all(not n.markup for n in _messages(app))
            assert not any(c in told for c in ESCAPES)

            # the description: shown with its markup and escapes as text
            table = _table(app)
            table.move_cursor(row=table.get_row_index("hostile"))
            await pilot.pause(0.3)
            detail = str(app.screen.query_one("#detail").render())
            assert "[/bold] [@click=app.quit]quit[/] \\x1b]0;pwned\\x07\\x1b[2J\\x9b31m" in detail
            assert "results.json: avg_top1" in detail

            monitor = await _open_monitor(pilot, app, "hostile")
            logged = "\n".join(strip.text for strip in monitor.query_one("#log").lines)
            assert "mgrb: error: [/bold] [@click=app.quit]quit[/] \\x1b]0;pwned" in logged
            assert not any(c in logged for c in ESCAPES)
            await pilot.press("ctrl+k")  # broken: the service looks, and signals nothing
            await pilot.press("ctrl+r")
            assert isinstance(app.screen, ResultsScreen)
            await pilot.press("escape", "escape")

            for name in ("planted", "tiny"):
                await _open_monitor(pilot, app, name)
                await pilot.press("ctrl+k", "ctrl+t", "escape")
            await pilot.pause(0.3)
            refusals = [n.message for n in _messages(app) if "cannot be stopped from here" in n.message]
            assert any(m.startswith("planted: cannot be stopped from here: launch.json names "
                                    f"process {sleeper.pid}") and "is not the supervisor" in m
                       and "is not an mgrb trainer" in m for m in refusals)
            assert any(m.startswith("tiny: cannot be stopped from here: launch.json: pid:")
                       for m in refusals)
            assert signals == [] and still_alive(sleeper)

            # every screen drawn so far is text without escapes, and the app still runs
            assert not any(c in app.export_screenshot() for c in ESCAPES)
            await pilot.press("ctrl+q")
        assert app.return_code == 0

    asyncio.run(scenario())
