"""The launcher's core without the UI: run-folder reading, launching real runs, the queue."""

import json
import os
import signal
import time

import pytest

from artifact.core.experiments import Experiment, load_experiments
from artifact.core.launcher import CPU, FULL, LocalLauncher, Queue, choose_slot
from artifact.core.records import read_exit, read_launch
from artifact.core.runs import (FAILED, FINISHED, INTERRUPTED, KILLED, NOT_RUN, RUNNING, STALLED,
                                EventTail, RunWatcher)
from artifact.core.settings import Settings, parse_gpus
from artifact_helpers import wait_for, write_broken_cifar, write_experiments


def _experiment(tmp_path, name="tiny", **kwargs) -> Experiment:
    experiments = write_experiments(tmp_path / "experiments", names=(name,), **kwargs)
    return {e.name: e for e in load_experiments(experiments, tmp_path / "runs")}[name]


def test_event_tail_reads_only_complete_lines(tmp_path):
    path = tmp_path / "events.jsonl"
    tail = EventTail(path)
    assert tail.read_new() == []
    path.write_text('{"event": "started", "phases": 3}\n{"event": "ite')
    assert tail.read_new() == [{"event": "started", "phases": 3}]
    with open(path, "a") as handle:
        handle.write('ration", "phase": 0}\nnot json\n')
    assert tail.read_new() == [{"event": "iteration", "phase": 0}]


def test_experiment_rows_say_what_is_missing_and_how_to_get_it(tmp_path):
    folder = write_experiments(tmp_path / "experiments")
    write_broken_cifar(folder, tmp_path / "data")
    (folder / "cifar100.yaml").write_text(
        "name: c100\ndataset: {name: cifar100, root: %s}\nprotocol: {initial: 50, increment: 10}\n"
        "hierarchy: {kind: ont}\n" % (tmp_path / "nowhere"))
    (folder / "bad.yaml").write_text("name: bad\ndataset: {name: cifar7}\n")
    rows = {getattr(r, "name", "broken"): r for r in load_experiments(folder, tmp_path / "runs")}
    assert rows["tiny"].data_present and rows["tiny"].data_help is None
    assert rows["tiny"].reported == {"avg_top1": 50.0, "last_top1": 50.0, "tolerance": 50.0}
    assert not rows["c100"].data_present and "make data" in rows["c100"].data_help
    assert "dataset.name" in rows["broken"].error


def test_a_launched_run_finishes_with_a_verdict(tmp_path):
    experiment = _experiment(tmp_path)
    launcher = LocalLauncher(tmp_path / "runs")
    record = launcher.start(experiment, gpu=None)
    watcher = RunWatcher(experiment)
    assert watcher.refresh(stall_after_s=600).status in (RUNNING, FINISHED)
    wait_for(lambda: read_exit(experiment.base_folder))
    launcher.reap()
    state = watcher.refresh(stall_after_s=600)
    assert state.status == FINISHED, state.detail
    assert state.verdict == "reproduced"  # 50 ± 50: every accuracy is inside
    assert [row["metric"] for row in state.verdicts] == ["avg_top1", "last_top1"]
    assert len(state.progress.top1) == 3 and state.progress.fraction == 1.0
    assert state.progress.losses and state.progress.phases == 3
    assert read_launch(experiment.base_folder)["pid"] == record["pid"]
    assert any("average incremental top-1" in line for line in state.log)


def test_a_failed_run_shows_the_trainers_error(tmp_path):
    folder = write_experiments(tmp_path / "experiments")
    write_broken_cifar(folder, tmp_path / "data")
    experiment = {e.name: e for e in load_experiments(folder, tmp_path / "runs")}["broken_cifar"]
    assert experiment.data_present
    LocalLauncher(tmp_path / "runs").start(experiment, gpu=None)
    wait_for(lambda: read_exit(experiment.base_folder))
    state = RunWatcher(experiment).refresh(stall_after_s=600)
    assert state.status == FAILED
    assert "exit status 2: mgrb: error:" in state.detail and "cifar" in state.detail.lower()


def _trainer_pid(supervisor: int) -> int:
    children = f"/proc/{supervisor}/task/{supervisor}/children"
    return int(wait_for(lambda: open(children).read().split() or None)[0])


def test_a_run_killed_from_outside_says_so_and_stop_checkpoints(tmp_path):
    experiment = _experiment(tmp_path, epochs=40)
    launcher = LocalLauncher(tmp_path / "runs")
    record = launcher.start(experiment, gpu=None)
    events = experiment.base_folder / "events.jsonl"
    wait_for(lambda: events.exists() and '"checkpoint"' in events.read_text())
    os.kill(_trainer_pid(record["pid"]), signal.SIGKILL)
    wait_for(lambda: read_exit(experiment.base_folder))
    state = RunWatcher(experiment).refresh(stall_after_s=600)
    assert state.status == KILLED and "SIGKILL" in state.detail

    record = launcher.start(experiment, gpu=None)  # resumes; then a stop from the launcher
    wait_for(lambda: events.read_text().count('"resumed"') == 1)
    assert "asked to stop" in launcher.stop(record)
    wait_for(lambda: read_exit(experiment.base_folder))
    state = RunWatcher(experiment).refresh(stall_after_s=600)
    assert state.status == INTERRUPTED and "resume" in state.detail
    assert read_exit(experiment.base_folder)["code"] == 130


def test_a_supervisor_gone_without_a_record_counts_as_killed(tmp_path):
    experiment = _experiment(tmp_path, epochs=40)
    launcher = LocalLauncher(tmp_path / "runs")
    record = launcher.start(experiment, gpu=None)
    events = experiment.base_folder / "events.jsonl"
    wait_for(lambda: events.exists() and '"iteration"' in events.read_text())
    launcher.stop(record, force=True)  # SIGKILL to the whole session
    launcher.reap()
    state = wait_for(lambda: (s := RunWatcher(experiment).refresh(stall_after_s=600)).status
                     == KILLED and s)
    assert "without an exit record" in state.detail


def test_stalled_and_started_elsewhere(tmp_path):
    experiment = _experiment(tmp_path)
    folder = experiment.base_folder
    folder.mkdir(parents=True)
    assert RunWatcher(experiment).refresh(stall_after_s=60).status == NOT_RUN
    # a trainer started with `mgrb run` in another terminal holds the lock
    (folder / "run.lock").write_text(json.dumps({"pid": os.getpid(), "host": os.uname().nodename}))
    (folder / "events.jsonl").write_text(json.dumps({"time": time.time() - 3600,
                                                     "event": "started", "phases": 3}) + "\n")
    watcher = RunWatcher(experiment)
    state = watcher.refresh(stall_after_s=60)
    assert state.status == STALLED and "no events for 60 min" in state.detail
    assert watcher.refresh(stall_after_s=7200).status == RUNNING
    (folder / "run.lock").unlink()
    assert watcher.refresh(stall_after_s=60).status == INTERRUPTED


@pytest.mark.parametrize("running, gpus, per_gpu, expected", [
    ([], [], 1, CPU), ([None], [], 1, FULL), ([None], [], 2, CPU),
    ([], [0, 1], 1, 0), ([0], [0, 1], 1, 1), ([0, 1], [0, 1], 1, FULL),
    ([0, 1, 0], [0, 1], 2, 1), ([3], [2, 3], 4, 2),
])
def test_choose_slot_packs_the_least_used_gpu(running, gpus, per_gpu, expected):
    assert choose_slot(running, gpus, per_gpu) == expected


def test_queue_survives_a_restart(tmp_path):
    Queue(tmp_path).add(["a", "b"])
    assert Queue(tmp_path).add(["b", "c"]) == ["c"]
    Queue(tmp_path).remove("a")
    assert Queue(tmp_path).names() == ["b", "c"]


def test_settings_round_trip_and_problems(tmp_path):
    settings = Settings(mode="docker", gpus=[0, 2], runs_per_gpu=2)
    settings.save(tmp_path)
    assert Settings.load(tmp_path) == settings
    assert Settings(mode="cloud", runs_per_gpu=0).problems() == [
        "mode: one of local, docker", "runs per GPU: a whole number from 1 to 16"]
    assert parse_gpus("") is None and parse_gpus("0, 2") == [0, 2]
    with pytest.raises(ValueError, match="'x' is not a GPU index"):
        parse_gpus("0,x")
    (tmp_path / ".launcher" / "settings.json").write_text('{"mode": "cloud"}')
    assert Settings.load(tmp_path) == Settings()  # a damaged file falls back to the defaults


def test_docker_mode_through_the_service(tmp_path):
    """The service's Docker path end to end against the fake engine: queue, start a container
    with a launch record, follow it, stop it (the container exits 130: interrupted)."""
    import docker

    from artifact.core.docker_runner import DockerRunner
    from artifact.core.gpu import GpuMonitor
    from artifact.core.service import Service
    from fake_docker_engine import FakeEngine

    engine = FakeEngine()
    client = docker.DockerClient(base_url=engine.base_url, version="1.43")
    try:
        write_experiments(tmp_path / "experiments")
        service = Service(
            experiments_dir=tmp_path / "experiments", runs_dir=tmp_path / "runs",
            gpu_monitor=GpuMonitor(smi_command="no-nvidia-smi-here"),
            docker_runner_factory=lambda settings: DockerRunner(
                image=settings.image, data_dir=tmp_path / "data", runs_dir=tmp_path / "runs",
                client=client))
        assert service.save_settings(Settings(mode="docker")) == []
        assert service.launch(["tiny"]) == []
        state = service.poll().states["tiny"]
        launch = read_launch(tmp_path / "runs" / "tiny")
        assert launch["mode"] == "docker" and launch["container"]
        (body,) = [r.body for r in engine.called("POST", "/containers/create")]
        assert body["Cmd"] == ["mgrb", "run", "tiny", "--out", "/runs/tiny"]
        assert "DeviceRequests" not in body["HostConfig"] or not body["HostConfig"]["DeviceRequests"]
        state = service.poll().states["tiny"]
        assert state.status == RUNNING
        assert "asked the container to stop" in service.stop("tiny", state)
        state = service.poll().states["tiny"]
        assert state.status == INTERRUPTED
    finally:
        client.close()
        engine.close()
