"""The launcher's Docker mode against a real Docker daemon and the project's built image.

`make image-test` (scripts/image_test.sh) builds the image, starts the daemon, sets
MGRB_IMAGE_TEST_IMAGE and DOCKER_HOST, and runs this folder; the plain suite does not collect
it (pyproject.toml: norecursedirs), since it needs both. The experiment files are written
here, so the runs also show that containers see the launcher's own experiments folder.
"""

from __future__ import annotations

import json
import os
import time

import pytest

from artifact.core.gpu import GpuMonitor
from artifact.core.records import read_launch
from artifact.core.runs import BROKEN, FAILED, FINISHED, INTERRUPTED, KILLED, RUNNING
from artifact.core.service import Service
from artifact.core.settings import Settings
from artifact_helpers import write_experiments

IMAGE = os.environ.get("MGRB_IMAGE_TEST_IMAGE")
pytestmark = pytest.mark.skipif(not IMAGE, reason="needs MGRB_IMAGE_TEST_IMAGE: run `make image-test`")


@pytest.fixture
def service(tmp_path):
    (tmp_path / "data").mkdir()
    runs = tmp_path / "runs"
    runs.mkdir()
    service = Service(experiments_dir=tmp_path / "experiments", runs_dir=runs,
                      gpu_monitor=GpuMonitor(smi_command="no-nvidia-smi-here"))
    yield service
    # containers this test left behind (a failed assertion mid-run)
    import docker

    client = docker.from_env()
    for container in client.containers.list(all=True, filters={"label": f"org.mgrb.runs={runs}"}):
        container.remove(force=True)
    client.close()


def _use_docker(service, tmp_path):
    settings = Settings(mode="docker", image=IMAGE, data_dir=str(tmp_path / "data"), shm_size="1g")
    assert service.save_settings(settings) == []
    service.reload()


def _poll_until(service, name, wanted, timeout_s=600):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        state = service.poll().states[name]
        if wanted(state):
            return state
        if state.status in (FAILED, BROKEN, KILLED):
            raise AssertionError(f"{name}: {state.status} ({state.detail}); log: {state.log[-5:]}")
        time.sleep(0.5)
    raise AssertionError(f"{name}: still {state.status} ({state.detail}) after {timeout_s} s; "
                         f"log: {state.log[-5:]}")


def _container(service, name):
    import docker

    client = docker.from_env()
    try:
        return client.containers.get(read_launch(service.runs_dir / name)["container"]).attrs
    finally:
        client.close()


def test_a_digits_run_in_a_container_is_watched_to_its_verdict(service, tmp_path):
    write_experiments(tmp_path / "experiments", epochs=2, names=("digits_in_container",))
    _use_docker(service, tmp_path)
    assert service.launch(["digits_in_container"]).refused == []
    seen_running = _poll_until(service, "digits_in_container", lambda s: s.status in (RUNNING, FINISHED))
    final = _poll_until(service, "digits_in_container", lambda s: s.status == FINISHED)
    assert final.verdict == "reproduced", final.detail  # the file's reference is 50 +- 50
    assert final.progress.phases == 3 and len(final.progress.top1) == 3
    assert final.progress.finished and seen_running.status in (RUNNING, FINISHED)
    results = json.loads((service.runs_dir / "digits_in_container" / "results.json").read_text())
    assert results["experiment"] == "digits_in_container"
    attrs = _container(service, "digits_in_container")
    assert attrs["State"]["ExitCode"] == 0
    assert attrs["Config"]["User"] != "0:0" and attrs["HostConfig"]["CapDrop"] == ["ALL"]
    assert attrs["HostConfig"]["NetworkMode"] == "none"
    assert not attrs["HostConfig"].get("DeviceRequests")  # no GPU asked for on a machine without


def test_a_container_stopped_mid_run_resumes_to_the_end(service, tmp_path):
    write_experiments(tmp_path / "experiments", epochs=40, names=("digits_stopped",))
    _use_docker(service, tmp_path)
    folder = service.runs_dir / "digits_stopped"
    assert service.launch(["digits_stopped"]).refused == []
    # a checkpoint on disk (checkpoint_every: 1), and the run not yet at its end
    _poll_until(service, "digits_stopped", lambda s: s.status == RUNNING and any(
        (folder / "checkpoints").glob("*")) and s.progress.phase <= 2)
    assert "asked the container to stop" in service.stop("digits_stopped")
    stopped = _poll_until(service, "digits_stopped", lambda s: s.status == INTERRUPTED, timeout_s=120)
    assert "launch again to resume" in stopped.detail
    assert _container(service, "digits_stopped")["State"]["ExitCode"] == 130
    assert not (folder / "results.json").exists()

    assert service.launch(["digits_stopped"]).refused == []
    final = _poll_until(service, "digits_stopped", lambda s: s.status == FINISHED)
    assert final.verdict == "reproduced"
    kinds = [json.loads(line)["event"] for line in (folder / "events.jsonl").read_text().splitlines()]
    assert kinds.count("started") == 1 and kinds.count("resumed") == 1
    assert _container(service, "digits_stopped")["State"]["ExitCode"] == 0
