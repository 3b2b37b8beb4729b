"""Run folders, experiment files and the launcher's own state from elsewhere, damaged or made
to harm: each bad file makes its run "broken" (or its experiment a broken one) with the file
and the field named, and nothing raises, blocks or grows without end."""

import json
import os
import socket
import threading

import pytest

from artifact.core.experiments import BrokenExperiment, ExperimentRow, load_experiments
from artifact.core.gpu import GpuMonitor
from artifact.core.launcher import Queue
from artifact.core.runs import BROKEN, FINISHED, INTERRUPTED, NOT_RUN, EventTail, RunProgress, RunWatcher
from artifact.core.service import Service
from artifact.core.settings import Settings
from artifact.widgets.styles import duration
from artifact_helpers import tiny_experiment, write_experiments

RESULTS = {"experiment": "tiny", "avg_top1": 60.0, "last_top1": 50.0,
           "phases": [{"phase": 0, "seen_classes": 8, "top1": 60.0}],
           "reported": {"avg_top1": 60.0, "last_top1": 50.0, "tolerance": 1.0}}
STARTED = {"event": "started", "time": 1_700_000_000.0, "phases": 3}


@pytest.fixture
def experiment(tmp_path):
    return tiny_experiment(tmp_path)


def _refresh(experiment, watcher=None):
    return (watcher or RunWatcher(experiment)).refresh(stall_after_s=600)


def _write(path, content) -> None:
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content if isinstance(content, str) else json.dumps(content))


def returns_within(call, seconds: float = 10.0):
    """call()'s value; fails when it blocks (a FIFO opened for reading waits for a writer)."""
    outcome = {}
    thread = threading.Thread(target=lambda: outcome.update(value=call()), daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), "blocked"
    return outcome["value"]


# -- results.json ---------------------------------------------------------------------------
@pytest.mark.parametrize("content, reason", [
    ({**RESULTS, "avg_top1": "60.0"}, "results.json: avg_top1: must be a number, got '60.0'"),
    ({k: v for k, v in RESULTS.items() if k != "phases"}, "results.json: phases: missing"),
    ({**RESULTS, "phases": [{"phase": 0, "seen_classes": 8, "top1": None}]},
     "results.json: phases: [0] top1: must be a number"),
    ({**RESULTS, "reported": {"tolerance": "wide"}}, "results.json: reported: tolerance:"),
    ({**RESULTS, "experiment": "other"}, "results.json: experiment: 'other' is not this experiment"),
    ({**RESULTS, "last_top1": 1e400}, "results.json: not valid JSON"),  # written as Infinity
    pytest.param("[" * 100_000, "results.json: not valid JSON", id="nested too deep"),
    ("", "results.json: is empty"),
    ([RESULTS], "results.json: must be a mapping"),
])
def test_a_bad_results_json_is_a_broken_run_with_the_reason(experiment, content, reason):
    if isinstance(content, dict) and content.get("last_top1") == 1e400:
        content = json.dumps(content)  # json writes the float('inf') as Infinity
    _write(experiment.base_folder / "results.json", content)
    state = _refresh(experiment)
    assert state.status == BROKEN and reason in state.detail, state.detail
    assert state.verdicts == [] and state.results == []


def test_good_results_give_a_verdict(experiment):
    _write(experiment.base_folder / "results.json", RESULTS)
    state = _refresh(experiment)
    assert state.status == FINISHED and state.verdict == "reproduced"


# -- events.jsonl ---------------------------------------------------------------------------
def test_damaged_event_lines_are_skipped_and_counted(experiment):
    lines = [json.dumps(STARTED).encode(), os.urandom(64).replace(b"\n", b""),
             json.dumps({"event": "eval", "phase": "0", "top1": 50.0}).encode(),
             json.dumps({"event": "epoch", "epoch": 1, "epochs": "12"}).encode(),
             b"", json.dumps({"event": "eval", "phase": 0, "top1": 70.0}).encode()]
    (experiment.base_folder / "events.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    watcher = RunWatcher(experiment)
    state = _refresh(experiment, watcher)
    assert state.status == INTERRUPTED and state.progress.top1 == [70.0]
    assert state.skipped_events == 3 and "3 damaged line(s) of events.jsonl skipped" in state.detail


def test_a_line_longer_than_any_event_is_skipped_without_being_kept(experiment):
    events = experiment.base_folder / "events.jsonl"
    tail = EventTail(events)
    events.write_bytes(b"x" * 300_000)  # no end of line yet
    assert tail.read_new() == [] and len(tail._partial) == 0
    with open(events, "ab") as handle:
        handle.write(b"y" * 1000 + b"\n" + json.dumps(STARTED).encode() + b"\n")
    assert tail.read_new() == [STARTED] and tail.skipped == 1


def test_a_huge_events_file_is_read_over_several_polls(experiment, monkeypatch):
    monkeypatch.setattr(EventTail, "CHUNK", 4096)
    line = json.dumps({"event": "iteration", "phase": 0, "stage": "stage1", "epoch": 1,
                       "epochs": 2, "iteration": 1, "iterations": 9, "losses": {"total": 1.0}})
    (experiment.base_folder / "events.jsonl").write_text((line + "\n") * 1000)
    tail = EventTail(experiment.base_folder / "events.jsonl")
    reads = [len(tail.read_new()) for _ in range(100)]
    assert 0 < reads[0] < 1000 and sum(reads) == 1000 and tail.skipped == 0


@pytest.mark.parametrize("name", ["events.jsonl", "results.json", "launch.json", "exit.json",
                                  "run.lock", "launcher.log"])
@pytest.mark.parametrize("kind", ["symlink to /dev/zero", "fifo", "symlink to a file"])
def test_a_link_fifo_or_device_in_a_run_folder_is_refused_without_blocking(experiment, tmp_path,
                                                                            name, kind):
    path = experiment.base_folder / name
    if kind == "fifo":
        os.mkfifo(path)
        reason = "is not a regular file"
    else:
        target = "/dev/zero" if kind == "symlink to /dev/zero" else tmp_path / "elsewhere"
        (tmp_path / "elsewhere").write_text(json.dumps(RESULTS))
        path.symlink_to(target)
        reason = "is a symbolic link"
    state = returns_within(lambda: _refresh(experiment))
    assert state.status == BROKEN and f"{name}: {reason}" in state.detail


@pytest.mark.parametrize("name, content, reason", [
    ("exit.json", {"code": "1"}, "exit.json: code: must be an integer"),
    ("exit.json", {"code": 99999}, "exit.json: code: must be an integer in [-255, 255]"),
    ("launch.json", {"mode": "local", "pid": 1}, "launch.json: pid: must be an integer in [2,"),
    ("launch.json", {"pid": 4242}, "launch.json: mode: missing"),
    ("launch.json", {"mode": "local", "process": {"pid": 4242}}, "launch.json: process: start"),
    ("run.lock", {"pid": 4242}, "run.lock: host: missing"),
    ("run.lock", b"\x00\xff garbage", "run.lock: not valid JSON"),
])
def test_bad_launcher_and_trainer_records_are_a_broken_run(experiment, name, content, reason):
    _write(experiment.base_folder / name, content)
    state = _refresh(experiment)
    assert state.status == BROKEN and reason in state.detail, state.detail
    assert state.pid is None


def test_an_empty_run_lock_is_one_being_written(experiment):
    (experiment.base_folder / "run.lock").write_bytes(b"")
    assert _refresh(experiment).status == NOT_RUN


def test_an_unreadable_run_folder_is_one_broken_run_not_a_blank_table(tmp_path, monkeypatch):
    write_experiments(tmp_path / "experiments", names=("tiny", "other"))
    service = Service(experiments_dir=tmp_path / "experiments", runs_dir=tmp_path / "runs",
                      gpu_monitor=GpuMonitor(smi_command="no-nvidia-smi-here"))
    original = RunWatcher.refresh

    def refresh(watcher, **kwargs):
        if watcher.experiment.name == "tiny":
            raise RecursionError("a bug the contracts did not foresee")
        return original(watcher, **kwargs)

    monkeypatch.setattr(RunWatcher, "refresh", refresh)
    states = service.poll().states
    assert states["tiny"].status == BROKEN and "RecursionError" in states["tiny"].detail
    assert states["other"].status == NOT_RUN


# -- the launcher's own state ---------------------------------------------------------------
@pytest.mark.parametrize("content", ['{"queued": "tiny"}', '{"queued": ["../../etc"]}',
                                     "[", '{"queued": [1]}', "\x00"])
def test_a_damaged_queue_is_an_empty_one_and_said_once(tmp_path, content):
    write_experiments(tmp_path / "experiments")
    (tmp_path / "runs" / ".launcher").mkdir(parents=True)
    (tmp_path / "runs" / ".launcher" / "queue.json").write_text(content)
    assert Queue(tmp_path / "runs").names() == []
    service = Service(experiments_dir=tmp_path / "experiments", runs_dir=tmp_path / "runs",
                      gpu_monitor=GpuMonitor(smi_command="no-nvidia-smi-here"))
    (message,) = service.poll().messages
    assert "queue.json" in message and message.endswith("the launch queue starts empty")
    assert service.poll().messages == []
    service.queue.add(["tiny"])  # written afresh
    assert service.queue.names() == ["tiny"] and service.queue.damage is None


@pytest.mark.parametrize("stored, reason", [
    ({"runs_per_gpu": "4"}, "runs_per_gpu: must be an integer"),
    ({"stall_after_s": 1e999}, "not valid JSON"),
    ({"data_dir": {"path": "/"}}, "data_dir: must be a string"),
    ({"mode": "cloud"}, "mode: must be one of local, docker"),
    ({"gpus": [0, -1]}, "gpus: [1] must be an integer in [0, 1023]"),
])
def test_damaged_settings_fall_back_to_the_defaults_and_say_why(tmp_path, stored, reason):
    write_experiments(tmp_path / "experiments")
    (tmp_path / "runs" / ".launcher").mkdir(parents=True)
    (tmp_path / "runs" / ".launcher" / "settings.json").write_text(json.dumps(stored))
    assert Settings.read(tmp_path / "runs")[0] == Settings()
    service = Service(experiments_dir=tmp_path / "experiments", runs_dir=tmp_path / "runs",
                      gpu_monitor=GpuMonitor(smi_command="no-nvidia-smi-here"))
    (message,) = service.poll().messages
    assert reason in message and "settings.json" in message
    assert service.poll().messages == []


def test_a_stall_time_that_is_not_finite_is_refused():
    assert Settings(stall_after_s=float("nan")).problems() != []
    assert Settings(stall_after_s=float("inf")).problems() != []


# -- experiment files -----------------------------------------------------------------------
def test_a_second_file_with_the_same_name_is_a_broken_experiment(tmp_path):
    folder = write_experiments(tmp_path / "experiments", names=("tiny",))
    (folder / "tiny_copy.yaml").write_text((folder / "tiny.yaml").read_text())
    rows = load_experiments(folder, tmp_path / "runs")
    assert [type(row) for row in rows] == [ExperimentRow, BrokenExperiment]
    assert rows[1].error == f"names itself tiny, as {folder / 'tiny.yaml'} does"


def test_markup_and_escapes_in_a_description_load_as_text(tmp_path):
    folder = write_experiments(tmp_path / "experiments")
    text = (folder / "tiny.yaml").read_text()
    (folder / "tiny.yaml").write_text(text.replace(
        "description: a tiny digits run for the launcher tests",
        'description: "[/bold] [@click=app.quit]quit[/] \\e]0;pwned\\a"'))
    (row,) = load_experiments(folder, tmp_path / "runs")
    assert row.description == "[/bold] [@click=app.quit]quit[/] \x1b]0;pwned\x07"


def test_an_experiment_file_that_blocks_or_raises_is_a_broken_one(tmp_path, monkeypatch):
    folder = write_experiments(tmp_path / "experiments")
    os.mkfifo(folder / "fifo.yaml")
    (folder / "zero.yaml").symlink_to("/dev/zero")
    (folder / "odd.yaml").write_text("name: odd\n")
    (tmp_path / "runs" / ".bench").mkdir(parents=True)
    os.mkfifo(tmp_path / "runs" / ".bench" / "gpu.json")  # `make bench`'s folder
    import artifact.core.experiments as experiments

    real = experiments.load_config
    monkeypatch.setattr(experiments, "load_config", lambda path: (
        (_ for _ in ()).throw(RecursionError("deep")) if path.name == "odd.yaml" else real(path)))
    rows = {row.path.name: row for row in returns_within(
        lambda: load_experiments(folder, tmp_path / "runs"))}
    assert rows["fifo.yaml"].error == "is not a regular file (a FIFO, device or folder)"
    assert rows["zero.yaml"].error == "is not a regular file (a FIFO, device or folder)"
    assert rows["odd.yaml"].error == "cannot be loaded (RecursionError: deep)"
    assert isinstance(rows["tiny.yaml"], ExperimentRow)


# -- numbers from events that no clock or display can take ----------------------------------
def test_times_from_elsewhere_give_no_estimate_rather_than_a_crash():
    progress = RunProgress()
    progress.fold({"event": "started", "time": 1e300, "phases": 2})
    progress.fold({"event": "eval", "time": 1e300, "phase": 0, "top1": 50.0})
    assert progress.eta(now=1.0) is None
    assert [duration(s) for s in (float("inf"), float("nan"), -5.0, 1e300, 61.0)] == \
        ["-", "-", "-", "-", "1:01"]


def test_a_lock_from_another_host_is_not_a_run_here(experiment):
    lock = {"pid": os.getpid(), "host": socket.gethostname() + ".elsewhere"}
    (experiment.base_folder / "run.lock").write_text(json.dumps(lock))
    assert _refresh(experiment).status == NOT_RUN
