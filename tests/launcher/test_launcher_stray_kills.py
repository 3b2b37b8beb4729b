"""The launcher signals only processes it can prove are the run's: a pid planted in
launch.json or run.lock (a run folder from elsewhere, or one whose pid was reused) reaches
nothing. Real processes throughout: an unrelated `sleep` in a session of its own stands for
whatever process holds the planted pid, and must survive every stop."""

import json
import os
import signal
import subprocess
import sys

import pytest

from artifact.core.launcher import LocalLauncher
from artifact.core.records import read_exit, record_launch
from artifact.core.runs import BROKEN, KILLED, NOT_RUN, RUNNING, RunWatcher
from artifact_helpers import (start_fake_trainer, still_alive, stop_process,
                              tiny_experiment, wait_for, write_experiments, write_lock)
from mgrb.store.processes import identity, pid_alive
from mgrb.store.contracts import RunFileError


@pytest.fixture
def experiment(tmp_path):
    return tiny_experiment(tmp_path)




def _plant_launch(experiment, **record):
    (experiment.base_folder / "launch.json").write_text(json.dumps({"mode": "local", **record}))


def _stop_both_ways(experiment) -> list[str]:
    launcher = LocalLauncher(experiment.base_folder.parent)
    return [launcher.stop(experiment), launcher.stop(experiment, force=True)]


def _other_identity(pid: int) -> dict:
    """The identity a process at `pid` had before the pid was reused."""
    now = identity(pid)
    return {**now, "start": now["start"] + 1}


# -- launch.json ----------------------------------------------------------------------------
@pytest.mark.parametrize("planted, reason", [
    (lambda pid: {"pid": pid}, "without its identity"),
    (lambda pid: {"pid": pid, "process": _other_identity(pid)}, "which this launcher did not start"),
    (lambda pid: {"pid": pid, "process": identity(os.getpid())}, "with the identity of process"),
    # the true identity, but the process is no supervisor of this run
    (lambda pid: {"pid": pid, "process": identity(pid)}, "is not the supervisor of tiny"),
], ids=["no identity", "reused pid", "another process's identity", "not a supervisor"])
def test_a_pid_planted_in_launch_json_is_never_signalled(experiment, sleeper, planted, reason):
    _plant_launch(experiment, **planted(sleeper.pid))
    for message in _stop_both_ways(experiment):
        assert message.startswith("cannot be stopped from here: ") and reason in message
    assert still_alive(sleeper)
    state = RunWatcher(experiment).refresh(stall_after_s=600)
    assert state.status == KILLED and state.pid is None  # recorded, but not running


@pytest.mark.parametrize("pid", [1, 0, -1, "1", True, 2**31])
def test_pids_0_and_1_and_other_impossible_ones_are_refused_by_the_contract(experiment, signals,
                                                                             pid):
    _plant_launch(experiment, pid=pid)
    for message in _stop_both_ways(experiment):
        assert message.startswith("cannot be stopped from here: launch.json: pid: must be")
    state = RunWatcher(experiment).refresh(stall_after_s=600)
    assert state.status == BROKEN and "launch.json: pid: must be" in state.detail
    assert signals == []


def test_a_session_leader_that_is_not_this_runs_supervisor_is_refused(experiment, tmp_path):
    """A real supervisor of another run folder, named with its true identity in this run's
    launch.json (copied between folders): its command line names the other folder."""
    other = tmp_path / "runs" / "other"
    other.mkdir(parents=True)
    supervisor = _start_supervisor(other)
    try:
        _plant_launch(experiment, pid=supervisor.pid, process=identity(supervisor.pid))
        for message in _stop_both_ways(experiment):
            assert "is not the supervisor of tiny" in message
        assert still_alive(supervisor)
    finally:
        stop_process(supervisor)


def test_the_launchers_own_supervisor_is_proven_and_stopped(experiment):
    """The same supervisor, recorded in its own folder as LocalLauncher.start records it: the
    stop reaches it, it passes SIGTERM on to its child and records how the child ended."""
    supervisor = _start_supervisor(experiment.base_folder)
    record_launch(experiment.base_folder, {"mode": "local", "pid": supervisor.pid,
                                           "process": identity(supervisor.pid)})
    watcher = RunWatcher(experiment)
    state = watcher.refresh(stall_after_s=600)
    assert (state.status, state.pid) == (RUNNING, supervisor.pid)
    wait_for(lambda: _catches(supervisor.pid, signal.SIGTERM), timeout=30)
    launcher = LocalLauncher(experiment.base_folder.parent)
    assert launcher.stop(experiment) == "asked to stop; it saves a checkpoint first"
    supervisor.wait(timeout=10)  # once its child has ended, with the child's status recorded
    assert read_exit(experiment.base_folder)["code"] == -signal.SIGTERM
    assert launcher.stop(experiment) == "the run's process has already ended"


def _catches(pid: int, signum: int) -> bool:
    """The process has its own handler for the signal (SigCgt in /proc/PID/status)."""
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) >> (signum - 1) & 1)
    return False


def _start_supervisor(folder) -> subprocess.Popen:
    """The launcher's supervisor, as LocalLauncher.start runs it, over a `sleep` in place of
    the trainer (nothing to train: the test is about who may be signalled)."""
    return subprocess.Popen([sys.executable, "-m", "artifact.core.supervise",
                             str(folder.resolve()), "--", "sleep", "600"],
                            start_new_session=True, stdin=subprocess.DEVNULL)


# -- run.lock -------------------------------------------------------------------------------
@pytest.mark.parametrize("planted, reason", [
    (lambda pid: {"process": None}, "without its identity"),
    (lambda pid: {"process": _other_identity(pid)}, "which is not the trainer that wrote it"),
    (lambda pid: {}, "is not an mgrb trainer"),  # its true identity: but a sleep
    (lambda pid: {"host": "elsewhere.example"}, "on host elsewhere.example, not on this machine"),
], ids=["no identity", "reused pid", "not a trainer", "another host"])
def test_a_pid_planted_in_run_lock_is_never_signalled(experiment, sleeper, planted, reason):
    write_lock(experiment.base_folder, sleeper.pid, **planted(sleeper.pid))
    for message in _stop_both_ways(experiment):
        assert message.startswith("cannot be stopped from here: ") and reason in message
    assert still_alive(sleeper)
    assert RunWatcher(experiment).refresh(stall_after_s=600).status == NOT_RUN


def test_a_lock_naming_pid_1_is_a_broken_run(experiment, signals):
    (experiment.base_folder / "run.lock").write_text(json.dumps({"pid": 1, "host": os.uname()[1]}))
    for message in _stop_both_ways(experiment):
        assert message.startswith("cannot be stopped from here: run.lock: pid: must be")
    assert RunWatcher(experiment).refresh(stall_after_s=600).status == BROKEN
    assert signals == []


def test_a_trainer_proven_by_its_lock_is_signalled_alone_never_its_group(experiment, tmp_path):
    """Started outside the launcher (`mgrb run` in a terminal): only the trainer's pid gets
    the signal; a process sharing its group (here a child of its own) is left alone."""
    pid_file = tmp_path / "child.pid"
    trainer = start_fake_trainer(tmp_path, child_pid_file=pid_file,
                                 holds=experiment.base_folder / "run.lock")
    child = int(wait_for(lambda: pid_file.exists() and pid_file.read_text(), timeout=30))
    try:
        assert os.getpgid(child) == trainer.pid
        write_lock(experiment.base_folder, trainer.pid)
        state = RunWatcher(experiment).refresh(stall_after_s=600)
        assert (state.status, state.pid) == (RUNNING, trainer.pid)
        assert LocalLauncher(tmp_path / "runs").stop(experiment, force=True) == "killed"
        assert trainer.wait(timeout=10) == -signal.SIGKILL
        assert pid_alive(child)
    finally:
        stop_process(trainer)
        if pid_alive(child):
            os.kill(child, signal.SIGKILL)


def test_a_trainer_proven_by_its_lock_is_asked_to_stop(experiment, tmp_path):
    trainer = start_fake_trainer(tmp_path, holds=experiment.base_folder / "run.lock")
    try:
        write_lock(experiment.base_folder, trainer.pid)
        message = LocalLauncher(tmp_path / "runs").stop(experiment)
        assert message == "asked to stop; it saves a checkpoint first"
        assert trainer.wait(timeout=10) == -signal.SIGTERM
    finally:
        stop_process(trainer)


def test_nothing_recorded_nothing_signalled(experiment, signals):
    assert LocalLauncher(experiment.base_folder.parent).stop(experiment) == (
        "cannot be stopped from here: no process is recorded for this run")
    assert signals == []


def test_launch_records_the_supervisors_identity(experiment, monkeypatch):
    """What stop() and the table rely on is written at the start; a record that would break
    the launch contract is refused before any process starts."""
    started = []

    class Child:
        pid = os.getpid()

    def popen(command, **kwargs):
        started.append(command)
        return Child()

    monkeypatch.setattr(subprocess, "Popen", popen)
    record = LocalLauncher(experiment.base_folder.parent).start(experiment, gpu=None)
    assert record["process"] == identity(os.getpid())
    launch = json.loads((experiment.base_folder / "launch.json").read_text())
    assert launch["process"] == record["process"] and launch["pid"] == os.getpid()
    assert started[0][2:4] == ["artifact.core.supervise", str(experiment.base_folder.resolve())]
    with pytest.raises(RunFileError, match="gpu_uuid: must be at most 128 characters"):
        LocalLauncher(experiment.base_folder.parent).start(experiment, gpu=0,
                                                           gpu_uuid="GPU-" + "0" * 200)
    assert len(started) == 1


# -- containers -----------------------------------------------------------------------------
@pytest.fixture
def docker_service(tmp_path):
    """The service in Docker mode against the fake Engine API, with one run of its own."""
    import docker

    from artifact.core.docker_runner import DockerRunner
    from artifact.core.gpu import GpuMonitor
    from artifact.core.service import Service
    from artifact.core.settings import Settings
    from fake_docker_engine import FakeEngine

    engine = FakeEngine()
    client = docker.DockerClient(base_url=engine.base_url, version="1.43")
    write_experiments(tmp_path / "experiments")
    (tmp_path / "data").mkdir()
    Settings(mode="docker", data_dir=str(tmp_path / "data")).save(tmp_path / "runs")
    service = Service(experiments_dir=tmp_path / "experiments", runs_dir=tmp_path / "runs",
                      gpu_monitor=GpuMonitor(smi_command="no-nvidia-smi-here"),
                      docker_runner_factory=lambda settings: DockerRunner(
                          image=settings.image, data_dir=tmp_path / "data",
                          runs_dir=tmp_path / "runs", client=client))
    yield service, engine
    client.close()
    engine.close()


OURS = {"org.mgrb.experiment": "tiny", "org.mgrb.run": "tiny", "org.mgrb.launcher": "mgrb-tui"}


@pytest.mark.parametrize("container, labels, reason", [
    ("f" * 64, {"com.example.app": "postgres"}, "which this launcher did not start for this run"),
    ("e" * 64, {**OURS, "org.mgrb.run": "other"}, "labels differ from this run's in org.mgrb.run"),
    ("d" * 64, OURS, "labels differ from this run's in org.mgrb.runs"),  # another runs folder
    ("postgres", None, "is not a full Docker container id"),
    ("../../images/x", None, "is not a full Docker container id"),
], ids=["someone else's", "another run's", "another launcher's", "a name", "a path"])
def test_a_container_planted_in_launch_json_is_never_stopped(docker_service, container, labels,
                                                             reason):
    service, engine = docker_service
    if labels is not None:
        engine.add_container(container, name="theirs", labels=labels)
    folder = service.runs_dir / "tiny"
    folder.mkdir(parents=True)
    (folder / "launch.json").write_text(json.dumps({"mode": "docker", "container": container}))
    state = service.poll().states["tiny"]
    assert state.status == BROKEN and reason in state.detail
    message = service.stop("tiny")
    assert message.startswith("cannot be stopped from here: ") and reason in message
    assert [r for r in engine.requests if r.method == "POST"] == []
    if labels is None:  # not even looked up: a name or a path never reaches the API
        assert not any(container in r.path for r in engine.requests)


def test_the_runs_own_container_is_stopped(docker_service):
    service, engine = docker_service
    assert service.launch(["tiny"]).refused == []
    assert service.poll().states["tiny"].status == RUNNING
    (create,) = engine.called("POST", "/containers/create")
    assert create.body["Labels"]["org.mgrb.runs"] == str(service.runs_dir.resolve())
    assert service.stop("tiny") == "asked the container to stop; it saves a checkpoint first"
    assert len([r for r in engine.requests if r.path.endswith("/stop")]) == 1


@pytest.mark.parametrize("pid", [1, 0, -1])
def test_the_last_guard_never_signals_init_or_everything(signals, pid):
    from artifact.core.launcher import _signal

    for force in (False, True):
        message = _signal(pid, whole_session=True, force=force)
        assert message == f"cannot be stopped from here: refusing to signal process {pid}"
    assert signals == []


# -- a run folder copied while its run trains ------------------------------------------------
def test_a_folder_copied_while_its_run_trains_cannot_stop_that_run(tmp_path):
    """Two real trainers (`mgrb run`, as in two terminals), alpha and gamma; while alpha
    trains, `cp -a runs/alpha runs/beta`. beta's run.lock names alpha's trainer with its true
    identity, but that trainer holds alpha's lock file, not beta's copy: beta shows as not
    running here, with the reason, and stopping beta (politely or by force) reaches nobody.
    alpha is then stopped through its own folder, and gamma is left alone."""
    import shutil

    from artifact.core.experiments import load_experiments

    experiments = write_experiments(tmp_path / "experiments", epochs=400,
                                    names=("alpha", "beta", "gamma"))
    runs = tmp_path / "runs"
    by_name = {e.name: e for e in load_experiments(experiments, runs)}
    trainers = {name: subprocess.Popen(
        [sys.executable, "-m", "mgrb.cli", "run", str(experiments / f"{name}.yaml"),
         "--out", str(runs / name), "--device", "cpu", "--quiet"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        for name in ("alpha", "gamma")}
    try:
        for name in trainers:
            wait_for(lambda name=name: (runs / name / "events.jsonl").exists()
                     and '"epoch"' in (runs / name / "events.jsonl").read_text(), timeout=180)
        alpha_state = RunWatcher(by_name["alpha"]).refresh(stall_after_s=600)
        assert (alpha_state.status, alpha_state.pid) == (RUNNING, trainers["alpha"].pid)

        shutil.copytree(runs / "alpha", runs / "beta", symlinks=True)
        beta = by_name["beta"]
        state = RunWatcher(beta).refresh(stall_after_s=600)
        assert state.status == BROKEN and state.pid is None, (state.status, state.detail)
        assert "not running here" in state.detail and "does not hold this folder's lock" in state.detail
        for force in (False, True):
            message = LocalLauncher(runs).stop(beta, force=force)
            assert message.startswith("cannot be stopped from here: ") and "not running here" in message
        assert all(trainer.poll() is None for trainer in trainers.values())

        assert LocalLauncher(runs).stop(by_name["alpha"]) == \
            "asked to stop; it saves a checkpoint first"
        assert trainers["alpha"].wait(timeout=120) == 130  # interrupted with a checkpoint
        assert trainers["gamma"].poll() is None
    finally:
        for trainer in trainers.values():
            stop_process(trainer)
