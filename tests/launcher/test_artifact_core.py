"""The launcher's core without the UI: run-folder reading, launching real runs, the queue."""

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from artifact.core.experiments import ExperimentRow, load_experiments
from artifact.core.launcher import CPU, FULL, LocalLauncher, Queue, choose_slot
from artifact.core.records import read_exit, read_launch
from artifact.core.runs import (FAILED, FINISHED, INTERRUPTED, KILLED, NOT_RUN, QUEUED, RUNNING,
                                STALLED, EventTail, RunWatcher)
from artifact.core.settings import Settings, parse_gpus
from artifact_helpers import (MIG_SLICES, ReplayedNvml, nvml_reading, start_fake_trainer,
                              stop_process, wait_for, write_broken_cifar, write_experiments,
                              write_lock)

FAKE_UUID = "GPU-00000000-1111-2222-3333-444444444444"

pytestmark = pytest.mark.usefixtures("single_threaded_runs")  # real runs: see conftest.py


def _experiment(tmp_path, name="tiny", **kwargs) -> ExperimentRow:
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
    assert record["command"][-2:] == ["--device", "cpu"] and record["device"] == "cpu"
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
    assert [r["device"][:4] for r in state.results] == ["CPU "]


def test_a_run_on_a_gpu_cuda_cannot_use_fails_instead_of_training_on_the_cpu(tmp_path):
    """This machine's CUDA sees no GPU by that UUID (or none at all): the run must end with
    the trainer's error, not quietly train on the CPU while the panel shows it on a GPU."""
    experiment = _experiment(tmp_path)
    record = LocalLauncher(tmp_path / "runs").start(experiment, gpu=0, gpu_uuid=FAKE_UUID)
    assert record["command"][-2:] == ["--device", "cuda"]
    assert (record["gpu"], record["gpu_uuid"], record["device"]) == (0, FAKE_UUID, "cuda")
    wait_for(lambda: read_exit(experiment.base_folder))
    state = RunWatcher(experiment).refresh(stall_after_s=600)
    assert state.status == FAILED
    assert "mgrb: error: --device cuda: no CUDA device is visible" in state.detail
    assert state.results == [] and not state.progress.losses


class _Started(Exception):
    pass


def _launched_with(monkeypatch, tmp_path, gpu, uuid, environ, **options):
    """The supervisor's command line and environment, caught before any process starts."""
    seen = {}

    def popen(command, **kwargs):
        seen.update(command=command, env=kwargs["env"])
        raise _Started

    monkeypatch.setattr(subprocess, "Popen", popen)
    with pytest.raises(_Started):
        LocalLauncher(tmp_path / "runs", environ=environ).start(_experiment(tmp_path), gpu, uuid,
                                                                **options)
    return seen["command"], seen["env"]


@pytest.mark.parametrize("gpu, uuid, device, visible", [
    (1, FAKE_UUID, "cuda", FAKE_UUID), (None, None, "cpu", "")])
def test_a_slot_becomes_device_and_cuda_visible_devices(monkeypatch, tmp_path, gpu, uuid, device, visible):
    inherited = {"CUDA_VISIBLE_DEVICES": "1,0", "CUDA_DEVICE_ORDER": "PCI_BUS_ID", "HOME": "/h"}
    command, env = _launched_with(monkeypatch, tmp_path, gpu, uuid, inherited)
    path = str((tmp_path / "experiments" / "tiny.yaml").resolve())
    assert command[-4:] == ["run", path, "--device", device]
    assert env["CUDA_VISIBLE_DEVICES"] == visible  # never an index, never the inherited list
    assert env["HOME"] == "/h" and env["MGRB_RUNS"] == str((tmp_path / "runs").resolve())


@pytest.mark.parametrize("share", [1, 2, 4])
def test_a_run_is_told_how_many_runs_share_its_gpu(monkeypatch, tmp_path, share):
    """So that two packed ImageNet-100 runs do not each take the GPU for their images
    (tests/simcuda/test_devices.py follows the variable into the batch maker)."""
    _, env = _launched_with(monkeypatch, tmp_path, 1, FAKE_UUID, {"MGRB_GPU_SHARE": "9"},
                            gpu_share=share)
    assert env["MGRB_GPU_SHARE"] == str(share)  # the setting, not an inherited value


@pytest.mark.parametrize("uuid", [None, "", "1"])
def test_a_gpu_slot_without_a_uuid_is_not_started(tmp_path, uuid):
    experiment = _experiment(tmp_path)
    with pytest.raises(ValueError, match="GPU 1 has no known UUID .*not started"):
        LocalLauncher(tmp_path / "runs").start(experiment, gpu=1, gpu_uuid=uuid)
    assert not experiment.base_folder.exists()


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

    launcher.start(experiment, gpu=None)  # resumes; then a stop from the launcher
    wait_for(lambda: events.read_text().count('"resumed"') == 1)
    assert "asked to stop" in launcher.stop(experiment)
    wait_for(lambda: read_exit(experiment.base_folder))
    state = RunWatcher(experiment).refresh(stall_after_s=600)
    assert state.status == INTERRUPTED and "resume" in state.detail
    assert read_exit(experiment.base_folder)["code"] == 130


def test_a_supervisor_gone_without_a_record_counts_as_killed(tmp_path):
    experiment = _experiment(tmp_path, epochs=40)
    launcher = LocalLauncher(tmp_path / "runs")
    launcher.start(experiment, gpu=None)
    events = experiment.base_folder / "events.jsonl"
    wait_for(lambda: events.exists() and '"iteration"' in events.read_text())
    launcher.stop(experiment, force=True)  # SIGKILL to the whole session
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
    trainer = start_fake_trainer(tmp_path, holds=folder / "run.lock")
    write_lock(folder, trainer.pid)
    (folder / "events.jsonl").write_text(json.dumps({"time": time.time() - 3600,
                                                     "event": "started", "phases": 3}) + "\n")
    watcher = RunWatcher(experiment)
    state = watcher.refresh(stall_after_s=60)
    assert state.status == STALLED and "no events for 60 min" in state.detail
    assert watcher.refresh(stall_after_s=7200).status == RUNNING
    stop_process(trainer)
    assert watcher.refresh(stall_after_s=60).status == INTERRUPTED  # its lock stays behind


def test_a_run_that_failed_elsewhere_shows_its_message(tmp_path):
    from mgrb.store.runfolder import RunFolder

    experiment = _experiment(tmp_path)
    run = RunFolder(experiment.base_folder)
    run.prepare({"name": experiment.name})
    run.record_failure("cifar100: not found under /data\n(run `mgrb data`)", "DataError")
    state = RunWatcher(experiment).refresh(stall_after_s=60)
    assert state.status == FAILED and state.detail == "cifar100: not found under /data (run `mgrb data`)"
    run.clear_failure()  # the next attempt is under way: no longer failed
    assert RunWatcher(experiment).refresh(stall_after_s=60).status == NOT_RUN


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
                experiments_dir=tmp_path / "experiments", client=client))
        (tmp_path / "data").mkdir()
        assert service.save_settings(Settings(mode="docker", data_dir=str(tmp_path / "data"))) == []
        assert service.launch(["tiny"]).refused == []
        state = service.poll().states["tiny"]
        launch = read_launch(tmp_path / "runs" / "tiny")
        assert launch["mode"] == "docker" and launch["container"]
        (body,) = [r.body for r in engine.called("POST", "/containers/create")]
        assert body["Cmd"] == ["mgrb", "run", "tiny", "--out", "/runs/tiny", "--device", "cpu"]
        assert "DeviceRequests" not in body["HostConfig"] or not body["HostConfig"]["DeviceRequests"]
        assert "CUDA_VISIBLE_DEVICES=" in body["Env"] and launch["device"] == "cpu"
        host = body["HostConfig"]
        assert host["CapDrop"] == ["ALL"] and host["SecurityOpt"] == ["no-new-privileges"]
        assert host["PidsLimit"] == 4096 and host["NetworkMode"] == "none"
        assert body["User"] != "0:0" and not body["User"].startswith("0:")
        assert sorted(host["Binds"]) == sorted([
            f"{tmp_path / 'data'}:/data:ro", f"{tmp_path / 'runs'}:/runs:rw",
            f"{(tmp_path / 'experiments').resolve()}:/opt/mgrb/experiments:ro"])
        state = service.poll().states["tiny"]
        assert state.status == RUNNING
        assert "asked the container to stop" in service.stop("tiny")
        state = service.poll().states["tiny"]
        assert state.status == INTERRUPTED
    finally:
        client.close()
        engine.close()


def test_docker_mode_asks_for_the_gpu_by_uuid(tmp_path):
    import docker

    from artifact.core.docker_runner import DockerRunner
    from artifact.core.gpu import GpuMonitor
    from artifact.core.service import Service
    from fake_docker_engine import FakeEngine

    engine = FakeEngine()
    client = docker.DockerClient(base_url=engine.base_url, version="1.43")
    reading = nvml_reading()
    first = reading["devices"][0]["uuid"]
    try:
        write_experiments(tmp_path / "experiments")
        (tmp_path / "data").mkdir()
        Settings(mode="docker", data_dir=str(tmp_path / "data")).save(tmp_path / "runs")
        service = Service(
            experiments_dir=tmp_path / "experiments", runs_dir=tmp_path / "runs",
            gpu_monitor=GpuMonitor(nvml=ReplayedNvml(reading)), environ={},
            docker_runner_factory=lambda settings: DockerRunner(
                image=settings.image, data_dir=tmp_path / "data", runs_dir=tmp_path / "runs",
                client=client))
        service.launch(["tiny"])
        service.poll()
        (body,) = [r.body for r in engine.called("POST", "/containers/create")]
        assert body["Cmd"][-2:] == ["--device", "cuda"]
        assert body["HostConfig"]["DeviceRequests"][0]["DeviceIDs"] == [first]
        assert f"CUDA_VISIBLE_DEVICES={first}" in body["Env"]
        launch = read_launch(tmp_path / "runs" / "tiny")
        assert (launch["gpu"], launch["gpu_uuid"], launch["device"]) == (0, first, "cuda")
    finally:
        client.close()
        engine.close()


# -- the service's GPU choice, at the pynvml boundary ----------------------------------------
class _RecordingLauncher:
    """Stands in for LocalLauncher where only the slot matters (its command and environment
    are tested above with the real class)."""

    def __init__(self):
        self.started, self.stopped, self.shares = [], [], []

    def start(self, experiment, gpu, gpu_uuid=None, extra_args=(), gpu_share=1):
        self.started.append((experiment.name, gpu, gpu_uuid))
        self.shares.append(gpu_share)

    def stop(self, experiment, force=False):
        self.stopped.append((experiment.name, force))
        return "killed" if force else "asked to stop; it saves a checkpoint first"

    def reap(self):
        pass


def _service(tmp_path, reading, environ, settings=None, names=("tiny",)):
    from artifact.core.gpu import GpuMonitor
    from artifact.core.service import Service

    write_experiments(tmp_path / "experiments", names=names)
    if settings is not None:  # as stored by an earlier session: not checked on the way in
        settings.save(tmp_path / "runs")
    service = Service(experiments_dir=tmp_path / "experiments", runs_dir=tmp_path / "runs",
                      gpu_monitor=GpuMonitor(nvml=ReplayedNvml(reading)), environ=environ)
    service.local = _RecordingLauncher()
    return service


def test_an_inherited_cuda_visible_devices_narrows_the_gpus(tmp_path):
    reading = nvml_reading()
    second = reading["devices"][1]["uuid"]
    service = _service(tmp_path, reading, {"CUDA_VISIBLE_DEVICES": second[:12]},
                       names=("tiny", "other"))
    service.launch(["tiny", "other"])
    snapshot = service.poll()
    assert service.local.started == [("tiny", 1, second)]  # one run per GPU: other waits
    assert snapshot.messages == [] and snapshot.states["other"].status == "queued"


def test_an_empty_inherited_value_sends_runs_to_the_cpu(tmp_path):
    service = _service(tmp_path, nvml_reading(), {"CUDA_VISIBLE_DEVICES": ""})
    service.launch(["tiny"])
    assert service.poll().messages == []
    assert service.local.started == [("tiny", None, None)]


def test_packed_runs_are_told_their_share_of_the_gpu(tmp_path):
    reading = nvml_reading()
    first = reading["devices"][0]["uuid"]
    service = _service(tmp_path, reading, {"CUDA_VISIBLE_DEVICES": first},
                       Settings(runs_per_gpu=2), names=("tiny", "other"))
    service.launch(["tiny", "other"])
    service.poll()
    assert service.local.started == [("tiny", 0, first), ("other", 0, first)]
    assert service.local.shares == [2, 2]


def test_a_configured_gpu_nvml_does_not_report_is_said_once(tmp_path):
    reading = nvml_reading()
    service = _service(tmp_path, reading, {}, Settings(gpus=[3, 0]))
    assert service.poll().messages == ["GPU 3 in the settings does not exist: the GPUs seen here are 0, 1"]
    assert service.poll().messages == []
    service.launch(["tiny"])
    assert service.poll().messages == []
    assert service.local.started == [("tiny", 0, reading["devices"][0]["uuid"])]
    problems = service.save_settings(Settings(gpus=[1, 5]))
    assert problems == ["GPUs: GPU 5 in the settings does not exist: the GPUs seen here are 0, 1"]
    assert service.settings.gpus == [3, 0]  # not saved
    assert service.save_settings(Settings(gpus=[1])) == []


def test_mig_gpus_are_refused_and_runs_wait_rather_than_train_on_the_cpu(tmp_path):
    reading = nvml_reading({"mig_mode": [1, 1], "mig_devices": MIG_SLICES})
    first, second = (device["uuid"] for device in reading["devices"][:2])
    service = _service(tmp_path, reading, {"CUDA_VISIBLE_DEVICES": first})
    service.launch(["tiny"])
    snapshot = service.poll()
    (message,) = snapshot.messages
    assert message.startswith("GPU 0 (") and "is in MIG mode with 2 MIG devices" in message
    assert f"CUDA_VISIBLE_DEVICES={MIG_SLICES[0]['uuid']} mgrb run" in message
    state = snapshot.states["tiny"]
    assert state.status == "queued" and "do not fall back to the CPU" in state.detail
    assert service.poll().messages == [] and service.local.started == []
    assert service.queue.names() == ["tiny"]
    service.environ = {"CUDA_VISIBLE_DEVICES": f"{first},{second}"}
    assert service.poll().messages == []  # the same problem: not told twice
    assert service.local.started == [("tiny", 1, second)]


# -- the service's policy: what launch, stop and report mean for a run in each status ----------
RECORDED = Path(__file__).parents[1] / "data" / "recorded"


def test_a_launch_queues_what_can_run_and_says_why_not_for_the_rest(tmp_path):
    (tmp_path / "experiments").mkdir()
    (tmp_path / "experiments" / "c100.yaml").write_text(
        f"name: c100\ndataset: {{name: cifar100, root: {tmp_path / 'none'}}}\n"
        "protocol: {initial: 50, increment: 10}\nhierarchy: {kind: ont}\n")
    service = _service(tmp_path, nvml_reading(), {}, names=("tiny", "other"))
    launched = service.launch(["tiny", "c100", "nothing", "other"])
    assert launched.queued == ["tiny", "other"]
    missing, unknown = launched.refused
    assert missing.startswith("c100: not launched. ") and "make data" in missing
    assert unknown == "nothing: no such experiment"
    assert service.queue.names() == ["tiny", "other"]


def test_a_stop_means_what_the_runs_status_allows(tmp_path):
    from artifact.core.service import Answer

    reading = nvml_reading()
    first = reading["devices"][0]["uuid"]
    service = _service(tmp_path, reading, {"CUDA_VISIBLE_DEVICES": first},
                       names=("tiny", "other", "idle"))
    assert service.request_stop("tiny") == Answer("tiny is not running", done=False)  # no poll yet
    service.launch(["tiny", "other"])
    states = service.poll().states
    assert [states[n].status for n in ("tiny", "other", "idle")] == [RUNNING, QUEUED, NOT_RUN]
    assert service.request_stop("idle") == Answer("idle is not running", done=False)
    assert service.request_stop("other") == Answer("other: taken out of the queue")
    assert service.queue.names() == [] and service.local.stopped == []
    assert service.request_stop("tiny", force=True) == Answer("tiny: killed")
    assert service.request_stop("tiny") == Answer(
        "tiny: asked to stop; it saves a checkpoint first")
    assert service.local.stopped == [("tiny", True), ("tiny", False)]


def test_a_report_covers_the_finished_runs_and_ended_runs_are_not_stopped(tmp_path):
    from artifact.core.gpu import GpuMonitor
    from artifact.core.service import Answer, Service

    service = Service(experiments_dir=RECORDED / "experiments", runs_dir=RECORDED / "runs",
                      gpu_monitor=GpuMonitor(smi_command="no-nvidia-smi-here"))
    names = ["broken", "tiny_finished", "tiny_stopped"]
    assert service.reportable(names) == []  # nothing polled yet
    states = service.poll().states
    assert [states[n].status for n in names] == [FAILED, FINISHED, INTERRUPTED]
    assert service.reportable(names) == ["tiny_finished"]
    for name in names:
        assert service.request_stop(name, force=True) == Answer(f"{name} is not running",
                                                                done=False)
    assert service.write_report(names, tmp_path / "reports").exists()
    with pytest.raises(ValueError, match="none of the chosen experiments has finished"):
        service.write_report(["broken", "tiny_stopped"], tmp_path / "reports")


@pytest.mark.parametrize("image, ok", [
    ("mgrb-artifact:0.1.0", True), ("registry.example.org:5000/lab/mgrb-artifact:v1", True),
    ("mgrb-artifact@sha256:" + "a" * 64, True), ("MGRB", False), ("mgrb artifact", False),
    ("mgrb-artifact:", False), ("", True), (" ", False), ("-rm", False)])  # "": the variant's image
def test_the_docker_image_setting_must_be_an_image_name(image, ok):
    problems = Settings(image=image).problems()
    assert (problems == []) == ok, problems
    if not ok:
        assert problems[0].startswith("Docker image: ") and "such as mgrb-artifact:0.1.0" in problems[0]


@pytest.mark.parametrize("size, ok", [("16g", True), ("512m", True), ("1073741824", False),
                                      ("67108864b", False), ("0", False), ("16 g", False),
                                      ("-1g", False), ("16gb", False)])
def test_the_shared_memory_setting_must_be_a_docker_size(size, ok):
    problems = Settings(shm_size=size).problems()
    assert (problems == []) == ok, problems


def test_docker_mode_needs_an_existing_data_folder(tmp_path):
    missing = tmp_path / "nowhere"
    assert Settings(mode="docker", data_dir=str(missing)).problems() == [
        f"data folder: {missing} does not exist (Docker mode mounts it read-only)"]
    (tmp_path / "file").write_text("")
    assert Settings(mode="docker", data_dir=str(tmp_path / "file")).problems() == [
        f"data folder: {tmp_path / 'file'} is not a folder (Docker mode mounts it read-only)"]
    assert Settings(mode="docker", data_dir=str(tmp_path)).problems() == []
    assert Settings(mode="local", data_dir=str(missing)).problems() == []  # not mounted there


def test_containers_never_run_as_root():
    from artifact.core.docker_runner import container_user

    assert container_user(0, 0) == "1000:1000"
    assert container_user(1234, 99) == "1234:99"
