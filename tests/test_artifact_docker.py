"""The Docker runner through the real Docker SDK, against a fake Engine API on a Unix socket."""

import docker
import pytest

from artifact.core.docker_runner import DockerRunner, DockerUnavailable
from fake_docker_engine import FakeEngine

IMAGE = "mgrb-artifact:0.1.0"


@pytest.fixture
def engine():
    fake = FakeEngine()
    yield fake
    fake.close()


def _runner(engine, tmp_path, image=IMAGE):
    client = docker.DockerClient(base_url="unix://" + engine.socket, version="1.43")
    return DockerRunner(image=image, data_dir=tmp_path / "data", runs_dir=tmp_path / "runs",
                        client=client)


def _created(engine):
    return [body for method, path, body in engine.requests if path.endswith("/containers/create")]


def test_start_sends_gpus_mounts_shm_and_labels(engine, tmp_path):
    run = _runner(engine, tmp_path).start(experiment="c100_ont_10_10", run="c100_ont_10_10",
                                          gpus=[0, 2])
    (body,) = _created(engine)
    assert body["Image"] == IMAGE
    assert body["Cmd"] == ["mgrb", "run", "c100_ont_10_10", "--out", "/runs/c100_ont_10_10"]
    assert body["Labels"] == {"org.mgrb.experiment": "c100_ont_10_10",
                              "org.mgrb.run": "c100_ont_10_10", "org.mgrb.launcher": "mgrb-tui"}
    host = body["HostConfig"]
    assert host["ShmSize"] == 16 * 1024 ** 3
    assert sorted(host["Binds"]) == sorted([f"{tmp_path / 'data'}:/data:ro",
                                            f"{tmp_path / 'runs'}:/runs:rw"])
    assert host["DeviceRequests"] == [{"Driver": "", "Count": 0, "DeviceIDs": ["0", "2"],
                                       "Capabilities": [["gpu"]], "Options": {}}]
    assert body["User"].count(":") == 1
    assert run.status == "running" and run.host_pid == 4242 and run.exit_code is None
    assert not any(path.endswith("/images/create") for _, path, _ in engine.requests)


@pytest.mark.parametrize("gpus, expected", [(None, [{"Driver": "", "Count": -1, "DeviceIDs": [],
                                                     "Capabilities": [["gpu"]], "Options": {}}]),
                                            ([], None)])
def test_all_gpus_or_none(engine, tmp_path, gpus, expected):
    _runner(engine, tmp_path).start(experiment="digits_5_1", run="digits_5_1", gpus=gpus)
    assert _created(engine)[0]["HostConfig"].get("DeviceRequests") == expected


def test_a_missing_image_is_reported_and_never_pulled(engine, tmp_path):
    runner = _runner(engine, tmp_path, image="mgrb-artifact:9.9")
    with pytest.raises(DockerUnavailable, match="make image"):
        runner.start(experiment="digits_5_1", run="digits_5_1", gpus=[])
    with pytest.raises(DockerUnavailable, match="not present"):
        runner.check()
    assert _created(engine) == []
    assert not any(path.endswith("/images/create") for _, path, _ in engine.requests)


def test_no_daemon(tmp_path, monkeypatch):
    client = docker.DockerClient(base_url="unix:///tmp/no-such-docker.sock", version="1.43")
    runner = DockerRunner(image=IMAGE, data_dir=tmp_path, runs_dir=tmp_path, client=client)
    with pytest.raises(DockerUnavailable, match="No Docker daemon answers"):
        runner.check()
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    runner = DockerRunner(image=IMAGE, data_dir=tmp_path, runs_dir=tmp_path)  # docker.from_env
    with pytest.raises(DockerUnavailable, match="No Docker daemon answers"):
        runner.check()
    with pytest.raises(DockerUnavailable, match="No Docker daemon answers"):
        runner.list_runs()


def test_no_gpu_runtime(engine, tmp_path):
    engine.gpu_runtime = False
    with pytest.raises(DockerUnavailable, match="NVIDIA Container Toolkit"):
        _runner(engine, tmp_path).start(experiment="digits_5_1", run="digits_5_1", gpus=[0])


def test_state_list_stop_and_logs(engine, tmp_path):
    runner = _runner(engine, tmp_path)
    run = runner.start(experiment="digits_5_1", run="digits_5_1", gpus=[])
    engine.containers["f" * 64] = {"body": {"Image": "other", "Labels": {"x": "y"}},
                                   "name": "other", "status": "running", "exit": 0, "pid": 7}
    assert [r.experiment for r in runner.list_runs()] == ["digits_5_1"]
    assert runner.state(run.container_id).status == "running"
    runner.stop(run.container_id, timeout=30)
    assert engine.containers[run.container_id]["stopped_with"]["t"] == ["30"]
    stopped = runner.state(run.container_id)
    assert (stopped.status, stopped.exit_code, stopped.host_pid) == ("exited", 130, None)
    assert runner.state("0" * 64) is None
    assert runner.logs_tail(run.container_id) == "loading digits ...\nmgrb: error: something\n"
