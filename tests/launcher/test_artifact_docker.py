"""The Docker runner through the real Docker SDK, against a fake Engine API on a Unix socket."""

import os
import sys
import tempfile
from pathlib import Path

import docker
import pytest

from artifact.core.docker_runner import DockerRunner, DockerUnavailable
from fake_docker_engine import FakeEngine

IMAGE = "mgrb-artifact:0.1.0"
GPU_A = "GPU-6a1c9f3e-0d2b-4c41-9a77-1f0e8b2c5d10"
GPU_B = "GPU-0b7e2d44-8c15-4f0a-b2d6-77c1e9a3f021"
OURS = {"org.mgrb.experiment": "digits_5_1", "org.mgrb.run": "digits_5_1", "org.mgrb.launcher": "mgrb-tui"}


@pytest.fixture
def engine():
    fake = FakeEngine()
    yield fake
    fake.close()


@pytest.fixture
def make_runner(engine, tmp_path):
    clients = []

    def make(image=IMAGE, base_url=None):
        client = docker.DockerClient(base_url=base_url or engine.base_url, version="1.43")
        clients.append(client)
        return DockerRunner(image=image, data_dir=tmp_path / "data", runs_dir=tmp_path / "runs",
                            client=client)

    yield make
    for client in clients:
        client.close()


def _created(engine):
    return [r.body for r in engine.called("POST", "/containers/create")]


def _pulled(engine):
    return engine.called("POST", "/images/create")


def test_start_sends_command_gpus_mounts_shm_labels_and_user(engine, make_runner, tmp_path):
    run = make_runner().start(experiment="c100_ont_10_10", run="c100_ont_10_10/seed-1",
                              gpus=[GPU_A, GPU_B], gpu_share=2)
    (body,) = _created(engine)
    assert body["Image"] == IMAGE
    assert body["Cmd"] == ["mgrb", "run", "c100_ont_10_10", "--out", "/runs/c100_ont_10_10/seed-1",
                           "--device", "cuda"]
    assert body["Labels"] == {"org.mgrb.experiment": "c100_ont_10_10",
                              "org.mgrb.run": "c100_ont_10_10/seed-1", "org.mgrb.launcher": "mgrb-tui",
                              "org.mgrb.runs": str(tmp_path / "runs")}
    # MGRB_GPU_SHARE: runs packed two to a GPU keep their images there only if they fit half
    assert sorted(body["Env"]) == [f"CUDA_VISIBLE_DEVICES={GPU_A},{GPU_B}", "MGRB_DATA=/data",
                                   "MGRB_GPU_SHARE=2", "MGRB_IMAGE_ID=sha256:" + "ab" * 32,
                                   "MGRB_RUNS=/runs"]
    assert body["User"] == ("1000:1000" if os.getuid() == 0 else f"{os.getuid()}:{os.getgid()}")
    host = body["HostConfig"]
    assert host["ShmSize"] == 16 * 1024 ** 3
    assert sorted(host["Binds"]) == sorted([f"{tmp_path / 'data'}:/data:ro", f"{tmp_path / 'runs'}:/runs:rw"])
    assert host["DeviceRequests"] == [{"Driver": "", "Count": 0, "DeviceIDs": [GPU_A, GPU_B],
                                       "Capabilities": [["gpu"]], "Options": {}}]
    (create,) = engine.called("POST", "/containers/create")
    assert create.query["name"][0].startswith("mgrb-c100_ont_10_10-seed-1-")
    assert (run.status, run.host_pid, run.exit_code) == ("running", 4242, None)
    assert run.run == "c100_ont_10_10/seed-1"
    assert _pulled(engine) == []


@pytest.mark.parametrize("gpus, expected, device, env", [
    (None, [{"Driver": "", "Count": -1, "DeviceIDs": [], "Capabilities": [["gpu"]], "Options": {}}],
     "cuda", []),
    # CUDA images set NVIDIA_VISIBLE_DEVICES=all: an empty CUDA_VISIBLE_DEVICES keeps a CPU run
    # off the GPUs where nvidia is the default runtime
    ([], None, "cpu", ["CUDA_VISIBLE_DEVICES="])])
def test_all_gpus_or_none(engine, make_runner, gpus, expected, device, env):
    make_runner().start(experiment="digits_5_1", run="digits_5_1", gpus=gpus)
    (body,) = _created(engine)
    assert body["HostConfig"].get("DeviceRequests") == expected
    assert body["Cmd"][-2:] == ["--device", device]
    assert [e for e in body["Env"] if e.startswith("CUDA_")] == env


@pytest.mark.parametrize("gpus", [[0], ["0"], [GPU_A, ""]])
def test_gpus_by_index_are_refused(engine, make_runner, gpus):
    with pytest.raises(ValueError, match=r"by UUID \(GPU-\.\.\.\), not"):
        make_runner().start(experiment="digits_5_1", run="digits_5_1", gpus=gpus)
    assert _created(engine) == []


def test_extra_args_follow_the_command(engine, make_runner):
    make_runner().start(experiment="digits_5_1", run="digits_5_1", gpus=[], extra_args=["--epochs", "1"])
    assert _created(engine)[0]["Cmd"][-2:] == ["--epochs", "1"]


def test_a_missing_image_is_reported_and_never_pulled(engine, make_runner):
    runner = make_runner(image="mgrb-artifact:9.9")
    with pytest.raises(DockerUnavailable, match="make image"):
        runner.start(experiment="digits_5_1", run="digits_5_1", gpus=[])
    with pytest.raises(DockerUnavailable, match="mgrb-artifact:9.9 is not present"):
        runner.check()
    assert _created(engine) == []
    assert _pulled(engine) == []


def test_check_passes_with_the_image_present(make_runner):
    make_runner().check()


def test_no_daemon_behind_the_socket(make_runner):
    nothing = Path(tempfile.mkdtemp(dir="/tmp", prefix="nod")) / "d.sock"
    runner = make_runner(base_url="unix://" + str(nothing))
    for call in (runner.check, runner.list_runs, lambda: runner.state("abc"), lambda: runner.stop("abc"),
                 lambda: runner.logs_tail("abc")):
        with pytest.raises(DockerUnavailable, match="No Docker daemon answers"):
            call()
    nothing.parent.rmdir()


def test_no_daemon_through_docker_from_env(tmp_path, monkeypatch):
    # The real from_env: it fails itself (API version negotiation) or leaves the failure to the
    # first call; either way the runner reports one message.
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    runner = DockerRunner(image=IMAGE, data_dir=tmp_path, runs_dir=tmp_path)
    with pytest.raises(DockerUnavailable, match="No Docker daemon answers.*DOCKER_HOST"):
        runner.check()
    with pytest.raises(DockerUnavailable, match="No Docker daemon answers"):
        runner.list_runs()


def test_a_client_factory_that_raises(tmp_path):
    def factory():
        raise docker.errors.DockerException("Error while fetching server API version")

    runner = DockerRunner(image=IMAGE, data_dir=tmp_path, runs_dir=tmp_path, client_factory=factory)
    with pytest.raises(DockerUnavailable, match="No Docker daemon answers"):
        runner.check()


def test_no_sdk(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "docker", None)  # `import docker` now raises ImportError
    runner = DockerRunner(image=IMAGE, data_dir=tmp_path, runs_dir=tmp_path)
    with pytest.raises(DockerUnavailable, match=r"pip install \.\[tui\]"):
        runner.check()


def test_the_daemon_going_away_mid_session(engine, make_runner):
    runner = make_runner()
    run = runner.start(experiment="digits_5_1", run="digits_5_1", gpus=[])
    engine.close()
    for call in (runner.list_runs, lambda: runner.state(run.container_id),
                 lambda: runner.stop(run.container_id), lambda: runner.logs_tail(run.container_id)):
        with pytest.raises(DockerUnavailable, match="No Docker daemon answers"):
            call()


def test_no_gpu_runtime_names_the_toolkit_and_leaves_no_container(engine, make_runner):
    engine.gpu_runtime = False
    runner = make_runner()
    with pytest.raises(DockerUnavailable, match="NVIDIA Container Toolkit") as error:
        runner.start(experiment="digits_5_1", run="digits_5_1", gpus=[GPU_A])
    assert "choose no GPUs" in str(error.value)
    assert len(_created(engine)) == 1 and engine.containers == {}
    assert runner.list_runs() == []


def test_other_refusals_carry_the_daemons_explanation(engine, make_runner):
    with pytest.raises(DockerUnavailable, match="No such container"):
        make_runner().stop("0" * 64)


def test_state_follows_the_container(engine, make_runner):
    runner = make_runner()
    run = runner.start(experiment="digits_5_1", run="digits_5_1", gpus=[])
    running = runner.state(run.container_id)
    assert (running.status, running.host_pid, running.exit_code) == ("running", 4242, None)
    assert (running.experiment, running.run, running.name) == ("digits_5_1", "digits_5_1", run.name)
    engine.mark_exited(run.container_id, 130)
    exited = runner.state(run.container_id)
    assert (exited.status, exited.exit_code, exited.host_pid) == ("exited", 130, None)
    assert runner.state("0" * 64) is None


def test_list_runs_keeps_to_our_label(engine, make_runner):
    runner = make_runner()
    ours = runner.start(experiment="digits_5_1", run="digits_5_1", gpus=[])
    engine.add_container("f" * 64, name="someone-else", labels={"x": "y"})
    engine.add_container("e" * 64, name="other-launcher", labels={**OURS, "org.mgrb.launcher": "other"})
    assert [r.container_id for r in runner.list_runs()] == [ours.container_id]
    (listing,) = engine.called("GET", "/containers/json")
    assert listing.query["all"] == ["1"]


def test_stop_and_logs(engine, make_runner):
    runner = make_runner()
    run = runner.start(experiment="digits_5_1", run="digits_5_1", gpus=[])
    runner.stop(run.container_id, timeout=30)
    (stop,) = engine.called("POST", f"/containers/{run.container_id}/stop")
    assert stop.query["t"] == ["30"]
    assert runner.state(run.container_id).exit_code == 130
    assert runner.logs_tail(run.container_id) == "loading digits ...\nmgrb: error: something\n"
    assert runner.logs_tail(run.container_id, lines=1) == "mgrb: error: something\n"
    assert engine.called("GET", f"/containers/{run.container_id}/logs")[-1].query["tail"] == ["1"]


def test_a_shm_size_the_sdk_refuses_is_named_as_a_setting_not_a_missing_daemon(engine, make_runner):
    runner = make_runner()
    runner.shm_size = "16gg"  # past the settings' validator, as an older settings file may hold
    with pytest.raises(DockerUnavailable) as refused:
        runner.start(experiment="c100_ont_10_10", run="c100_ont_10_10/seed-1", gpus=[])
    assert "A Docker setting was refused" in str(refused.value)
    assert "No Docker daemon answers" not in str(refused.value)
    assert engine.called("POST", "/containers/create") == []
