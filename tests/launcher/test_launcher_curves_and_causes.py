"""The launcher's core on real files and real failures: the loss curve against epochs, a run
folder that is deleted or replaced under the launcher, and errors told as their cause (never
as a library's repr), settings that cannot be written included."""

import json
import shutil
import socket
from pathlib import Path

import pytest

from artifact.core.docker_runner import DockerRunner, DockerUnavailable
from artifact.core.explain import explain, looks_raw
from artifact.core.experiments import load_experiments
from artifact.core.gpu import GpuMonitor
from artifact.core.runs import INTERRUPTED, NOT_RUN, EventTail, RunProgress, RunWatcher
from artifact.core.service import Service
from artifact.core.settings import Settings
from artifact_helpers import write_experiments

RECORDED = Path(__file__).parents[1] / "data" / "recorded"


def _events(name: str) -> list[dict]:
    lines = (RECORDED / "runs" / name / "events.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def _stage1(phase, epoch, iteration=None, iterations=10, loss=1.0):
    event = {"event": "epoch" if iteration is None else "iteration", "phase": phase,
             "stage": "stage1", "epoch": epoch, "epochs": 4, "losses": {"total": loss}}
    if iteration is not None:
        event.update(iteration=iteration, iterations=iterations)
    return event


def test_the_loss_curve_counts_epochs_over_all_phases():
    progress = RunProgress()
    for event in _events("tiny_finished"):
        progress.fold(event)
    # the recorded run: 3 phases of 12 stage-1 epochs
    assert progress.phase_starts == {0: 0.0, 1: 12.0, 2: 24.0}
    assert [at for at, _ in progress.epoch_losses] == [float(e) for e in range(1, 37)]
    first = [e for e in _events("tiny_finished") if e["event"] == "iteration"][0]
    assert progress.losses[0] == (first["iteration"] / first["iterations"], first["losses"]["total"])
    assert progress.losses[-1] == progress.epoch_losses[-1]
    assert all(a[0] < b[0] for a, b in zip(progress.losses, progress.losses[1:]))


def test_epochs_trained_again_after_a_resume_replace_the_first_try():
    progress = RunProgress()
    for epoch in (1, 2, 3):
        progress.fold(_stage1(0, epoch, iteration=5, loss=3.0))
        progress.fold(_stage1(0, epoch, loss=2.0))
    progress.fold({"event": "resumed", "phase": 0})  # from the checkpoint after epoch 1
    progress.fold(_stage1(0, 2, iteration=5, loss=1.5))
    assert progress.losses == [(0.5, 3.0), (1.0, 2.0), (1.5, 1.5)]
    assert progress.epoch_losses == [(1.0, 2.0)]
    progress.fold(_stage1(1, 1, loss=0.5))  # phase 1 follows the 4 epochs of phase 0
    assert progress.epoch_losses[-1] == (5.0, 0.5) and progress.phase_starts[1] == 4.0


def test_a_deleted_events_file_is_forgotten_and_a_replaced_one_read_afresh(tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_text(json.dumps(_stage1(0, 1)) + "\n")
    tail = EventTail(path)
    assert len(tail.read_new()) == 1 and tail.restarts == 0
    path.unlink()
    assert tail.read_new() == [] and tail.restarts == 1 and tail.offset == 0
    path.write_text(json.dumps(_stage1(0, 1)) + "\n" + json.dumps(_stage1(0, 2)) + "\n")
    assert len(tail.read_new()) == 2 and tail.restarts == 1  # a new file: read from its start
    replacement = tmp_path / "new.jsonl"
    replacement.write_text((json.dumps(_stage1(0, 1)) + "\n") * 3)  # longer, another inode
    replacement.replace(path)
    assert len(tail.read_new()) == 3 and tail.restarts == 2


def test_a_run_folder_deleted_under_the_watcher_is_no_longer_a_run(tmp_path):
    shutil.copytree(RECORDED / "experiments", tmp_path / "experiments")
    shutil.copytree(RECORDED / "runs" / "tiny_stopped", tmp_path / "runs" / "tiny_stopped")
    experiment = {e.name: e for e in load_experiments(tmp_path / "experiments", tmp_path / "runs")
                  if hasattr(e, "name")}["tiny_stopped"]
    watcher = RunWatcher(experiment)
    state = watcher.refresh(stall_after_s=600)
    assert state.status == INTERRUPTED and state.progress.losses
    shutil.rmtree(tmp_path / "runs" / "tiny_stopped")
    state = watcher.refresh(stall_after_s=600)
    assert state.status == NOT_RUN and state.detail == ""
    assert not state.progress.losses and state.progress.last_event is None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.parametrize("host, cause", [
    ("unix:///nonexistent/docker.sock", "there is no Docker socket at unix:///nonexistent/docker.sock"),
    ("tcp://127.0.0.1:{port}", "tcp://127.0.0.1:{port} refused the connection")])
def test_an_unreachable_daemon_is_told_by_its_cause(tmp_path, monkeypatch, host, cause):
    port = _free_port()  # closed again: nothing listens there
    monkeypatch.setenv("DOCKER_HOST", host.format(port=port))
    runner = DockerRunner(image="mgrb-artifact:0.1.0", data_dir=tmp_path, runs_dir=tmp_path)
    with pytest.raises(DockerUnavailable) as error:
        runner.reachable()
    assert error.value.cause == cause.format(port=port)
    assert str(error.value).startswith(f"No Docker daemon answers: {cause.format(port=port)}. ")
    assert not looks_raw(str(error.value)) and "Errno" not in str(error.value)


def test_explain_tells_the_cause_not_the_repr(tmp_path):
    with pytest.raises(OSError) as missing:
        (tmp_path / "absent" / "x").read_text()
    assert explain(missing.value) == f"No such file or directory: {tmp_path / 'absent' / 'x'}"
    wrapped = RuntimeError("Error while fetching server API version: ('Connection aborted.', "
                           "FileNotFoundError(2, 'No such file or directory'))")
    assert explain(wrapped) == "RuntimeError (no further detail)"
    assert explain(RecursionError("deep")) == "RecursionError: deep"
    assert explain(DockerUnavailable("No Docker daemon answers: x.")) == "No Docker daemon answers: x."


def test_settings_that_cannot_be_written_are_told_and_not_put_in_force(tmp_path):
    write_experiments(tmp_path / "experiments")
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / ".launcher").write_text("a file where the launcher's folder goes")
    service = Service(experiments_dir=tmp_path / "experiments", runs_dir=tmp_path / "runs",
                      gpu_monitor=GpuMonitor(smi_command="no-nvidia-smi-here"))
    problems = service.save_settings(Settings(runs_per_gpu=3))
    assert problems == [f"Settings not saved: File exists: {tmp_path / 'runs' / '.launcher'}"]
    assert service.settings.runs_per_gpu == 1


def test_the_eta_is_timed_from_the_first_trained_batch_not_the_start():
    """Loading the data and building the model take a while before the first batch: timed
    from the start, the first estimates were several times too long."""
    progress = RunProgress()
    progress.fold({"event": "started", "time": 0.0, "phases": 1})
    assert progress.eta(now=5.0) is None
    iteration = {"event": "iteration", "phase": 0, "stage": "stage1", "epoch": 1, "epochs": 10,
                 "iterations": 10, "losses": {"total": 1.0}}
    progress.fold({**iteration, "time": 10.0, "iteration": 1})  # 10 s of loading before it
    assert progress.eta(now=10.0) is None  # one point: no pace yet
    progress.fold({**iteration, "time": 11.0, "iteration": 2})  # then 1 s per batch of 100
    assert progress.eta(now=11.0) == pytest.approx(98.0)  # 98 batches left, not 10 times that
    progress.fold({"event": "resumed", "time": 50.0, "phase": 0})  # a new process: timed anew
    assert progress.eta(now=60.0) is None
