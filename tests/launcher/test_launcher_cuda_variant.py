"""The image's CUDA variant in the launcher's Docker settings, chosen as the Makefile's CUDA=
chooses it: "13" starts containers from mgrb-artifact:<version> (`make image`), "12" from
mgrb-artifact:<version>-cu12 (`make image CUDA=12`); an image typed in the settings wins. A run
on a GPU with the CUDA 13 image on a driver older than R580 is refused in one line that says
what to choose. The containers go to the project's fake Engine API, through the real SDK."""

import asyncio
import json
import tomllib
from dataclasses import asdict
from pathlib import Path

import docker
import pynvml
import pytest
from textual.widgets import Input, Select

from artifact.core import docker_launcher
from artifact.core.docker_launcher import DockerLauncher
from artifact.core.gpu import nvidia_driver_version
from artifact.core.docker_runner import DockerRunner
from artifact.core.gpu import GpuMonitor
from artifact.core.runs import RUNNING
from artifact.core.service import Service
from artifact.core.settings import DOCKER, Settings, default_image, settings_path
from artifact.screens.settings import SettingsScreen
from artifact_helpers import ReplayedNvml, nvml_reading, write_experiments
from fake_docker_engine import FakeEngine
from launcher_pilot import make_app, status, told, until

VERSION = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())["project"]["version"]
CU13, CU12 = f"mgrb-artifact:{VERSION}", f"mgrb-artifact:{VERSION}-cu12"
OLD_DRIVER, NEW_DRIVER = "535.104.05", "580.65.06"
TOO_OLD = (f"Docker image: the CUDA 13 image needs NVIDIA driver R580 or newer; this machine has "
           f"{OLD_DRIVER}: choose CUDA 12 in the settings (make image CUDA=12)")
SIZE = (120, 40)


@pytest.fixture
def engine():
    fake = FakeEngine(images=(CU13, CU12))
    yield fake
    fake.close()


@pytest.fixture
def driver(monkeypatch):
    """driver(version): the NVIDIA driver version the Docker launcher reads (None: none)."""
    def use(version):
        monkeypatch.setattr(docker_launcher, "nvidia_driver_version", lambda: version)
    return use


def _write_settings(runs: Path, stored) -> None:
    settings_path(runs).parent.mkdir(parents=True, exist_ok=True)
    settings_path(runs).write_text(json.dumps(stored))


def _created(engine) -> list[dict]:
    return [r.body for r in engine.called("POST", "/containers/create")]


# -- the image of each variant -------------------------------------------------------------
def test_the_default_image_is_the_one_make_image_builds_for_the_variant():
    assert Settings().cuda == "13" and Settings().image == ""
    assert Settings().image_reference() == CU13 == default_image("13")
    assert Settings(cuda="12").image_reference() == CU12 == default_image("12")


@pytest.mark.parametrize("cuda", ["13", "12"])
def test_an_image_typed_in_the_settings_wins_over_the_variant(cuda):
    typed = "registry.example.org:5000/lab/mgrb-artifact:v1"
    assert Settings(image=typed, cuda=cuda).image_reference() == typed
    assert Settings(image=typed, cuda=cuda).problems() == []


def test_a_settings_json_without_cuda_loads_as_the_cuda_13_variant(tmp_path):
    # what the launcher saved before the variants: every field, the image's old default with them
    old = {"mode": "docker", "gpus": [0], "runs_per_gpu": 2, "stall_after_s": 900.0,
           "image": "mgrb-artifact:0.1.0", "data_dir": str(tmp_path), "shm_size": "8g"}
    _write_settings(tmp_path / "runs", old)
    settings, damage = Settings.read(tmp_path / "runs")
    assert damage is None
    assert (settings.cuda, settings.mode, settings.gpus, settings.runs_per_gpu) == ("13", "docker", [0], 2)
    assert settings.image == ""  # the old default means the image `make image` builds
    assert settings.image_reference() == CU13
    assert settings.problems() == []
    assert Settings(**{**old, "image": ""}, cuda="12").image_reference() == CU12  # the variant now counts
    other = {**old, "image": "lab/mgrb-artifact:mine"}  # an image of the user's own stays
    _write_settings(tmp_path / "runs", other)
    assert Settings.load(tmp_path / "runs").image_reference() == "lab/mgrb-artifact:mine"


def test_the_variant_round_trips_through_settings_json(tmp_path):
    Settings(mode="docker", cuda="12").save(tmp_path)
    assert json.loads(settings_path(tmp_path).read_text())["cuda"] == "12"
    assert Settings.load(tmp_path) == Settings(mode="docker", cuda="12")
    assert Settings.load(tmp_path).image_reference() == CU12


@pytest.mark.parametrize("cuda", ["11", 12, "", None, "cu12"])
def test_a_bad_variant_in_settings_json_falls_back_to_the_defaults_and_says_why(tmp_path, cuda):
    write_experiments(tmp_path / "experiments")
    _write_settings(tmp_path / "runs", {"mode": "docker", "cuda": cuda})
    settings, damage = Settings.read(tmp_path / "runs")
    assert settings == Settings()
    assert "cuda: must be one of 13, 12" in damage and "uses its default settings" in damage
    service = Service(experiments_dir=tmp_path / "experiments", runs_dir=tmp_path / "runs",
                      gpu_monitor=GpuMonitor(nvml=ReplayedNvml({"devices": []})))
    (message,) = service.poll().messages
    assert "cuda: must be one of 13, 12" in message and "settings.json" in message


def test_a_bad_variant_in_memory_is_a_problem():
    assert Settings(cuda="11").problems() == [
        "CUDA variant: '11' is neither 13 (NVIDIA driver R580 or newer) nor 12 (driver R525 or newer)"]


def test_the_docker_launcher_starts_the_variants_image(tmp_path, engine, driver):
    driver(None)
    client = docker.DockerClient(base_url=engine.base_url, version="1.43")
    try:
        write_experiments(tmp_path / "experiments")
        (tmp_path / "data").mkdir()
        given = []

        def factory(settings):
            given.append(settings.image)
            return DockerRunner(image=settings.image, data_dir=tmp_path / "data",
                                runs_dir=tmp_path / "runs", client=client)

        service = Service(experiments_dir=tmp_path / "experiments", runs_dir=tmp_path / "runs",
                          gpu_monitor=GpuMonitor(nvml=ReplayedNvml({"devices": []})),
                          docker_runner_factory=factory)
        assert service.save_settings(Settings(mode=DOCKER, cuda="12", data_dir=str(tmp_path / "data"))) == []
        service.launch(["tiny"])
        assert service.poll().states["tiny"].status == RUNNING
        (body,) = _created(engine)
        assert body["Image"] == CU12 and given[-1] == CU12
        # a typed image wins
        assert service.save_settings(Settings(mode=DOCKER, cuda="12", image=CU13,
                                              data_dir=str(tmp_path / "data"))) == []
        assert service.docker.runner().image == CU13
    finally:
        client.close()


# -- the driver the CUDA 13 image needs ------------------------------------------------------
def test_the_cuda_13_image_on_an_older_driver_is_one_plain_problem(tmp_path):
    docker_mode = Settings(mode=DOCKER, data_dir=str(tmp_path))
    assert docker_mode.problems(driver=OLD_DRIVER) == [TOO_OLD]
    assert docker_mode.problems(driver=NEW_DRIVER) == []
    assert docker_mode.problems(driver=None) == [] == docker_mode.problems(driver="unknown")
    assert Settings(mode=DOCKER, cuda="12", data_dir=str(tmp_path)).problems(driver=OLD_DRIVER) == []
    assert Settings(mode=DOCKER, data_dir=str(tmp_path), image=CU12).problems(driver=OLD_DRIVER) == []
    assert Settings(data_dir=str(tmp_path)).problems(driver=OLD_DRIVER) == []  # local processes
    assert Settings(mode=DOCKER, cuda="12", data_dir=str(tmp_path)).problems(driver="470.57.02") == [
        "Docker image: the CUDA 12 image needs NVIDIA driver R525 or newer; this machine has "
        "470.57.02: update the driver to R525 or newer"]


@pytest.mark.parametrize("answer, expected", [("535.104.05", OLD_DRIVER), (b"580.65.06", NEW_DRIVER)])
def test_the_driver_version_is_read_through_nvml(monkeypatch, answer, expected):
    calls = []
    monkeypatch.setattr(pynvml, "nvmlInit", lambda: calls.append("init"))
    monkeypatch.setattr(pynvml, "nvmlSystemGetDriverVersion", lambda: answer)
    monkeypatch.setattr(pynvml, "nvmlShutdown", lambda: calls.append("shutdown"))
    assert nvidia_driver_version() == expected and calls == ["init", "shutdown"]


def test_no_nvml_no_driver_version(monkeypatch):
    def fails():
        raise pynvml.NVMLError(pynvml.NVML_ERROR_LIBRARY_NOT_FOUND)
    monkeypatch.setattr(pynvml, "nvmlInit", fails)
    assert nvidia_driver_version() is None


def test_the_driver_is_read_once(tmp_path):
    reads = []
    launcher = DockerLauncher(runs_dir=tmp_path, experiments_dir=tmp_path, settings=Settings(),
                              driver_version=lambda: reads.append(1) or OLD_DRIVER)
    assert launcher.driver() == launcher.driver() == OLD_DRIVER and reads == [1]


def test_a_gpu_run_of_the_cuda_13_image_on_an_old_driver_is_refused_in_one_line(tmp_path, engine, driver):
    driver(OLD_DRIVER)
    client = docker.DockerClient(base_url=engine.base_url, version="1.43")
    reading = nvml_reading()
    first = reading["devices"][0]["uuid"]
    try:
        write_experiments(tmp_path / "experiments")
        (tmp_path / "data").mkdir()
        service = Service(experiments_dir=tmp_path / "experiments", runs_dir=tmp_path / "runs",
                          gpu_monitor=GpuMonitor(nvml=ReplayedNvml(reading)), environ={},
                          docker_runner_factory=lambda settings: DockerRunner(
                              image=settings.image, data_dir=tmp_path / "data",
                              runs_dir=tmp_path / "runs", client=client))
        assert service.save_settings(Settings(mode=DOCKER, data_dir=str(tmp_path / "data"))) == []
        service.launch(["tiny"])
        snapshot = service.poll()
        assert f"tiny: could not start: the settings are not usable: {TOO_OLD}" in snapshot.messages
        assert _created(engine) == []
        # as the line says: the CUDA 12 variant starts on the same driver
        assert service.save_settings(Settings(mode=DOCKER, cuda="12", data_dir=str(tmp_path / "data"))) == []
        service.launch(["tiny"])
        assert service.poll().states["tiny"].status == RUNNING
        (body,) = _created(engine)
        assert body["Image"] == CU12 and f"CUDA_VISIBLE_DEVICES={first}" in body["Env"]
    finally:
        client.close()


def test_a_cpu_run_needs_no_driver(tmp_path, engine, driver):
    driver(OLD_DRIVER)
    client = docker.DockerClient(base_url=engine.base_url, version="1.43")
    try:
        write_experiments(tmp_path / "experiments")
        (tmp_path / "data").mkdir()
        service = Service(experiments_dir=tmp_path / "experiments", runs_dir=tmp_path / "runs",
                          gpu_monitor=GpuMonitor(nvml=ReplayedNvml({"devices": []})), environ={},
                          docker_runner_factory=lambda settings: DockerRunner(
                              image=settings.image, data_dir=tmp_path / "data",
                              runs_dir=tmp_path / "runs", client=client))
        assert service.save_settings(Settings(mode=DOCKER, data_dir=str(tmp_path / "data"))) == []
        service.launch(["tiny"])
        assert service.poll().states["tiny"].status == RUNNING
        (body,) = _created(engine)
        assert body["Image"] == CU13 and body["Cmd"][-2:] == ["--device", "cpu"]
    finally:
        client.close()


# -- the settings screen ---------------------------------------------------------------------
async def _open_settings(pilot, app) -> SettingsScreen:
    await pilot.press("ctrl+o")
    await until(pilot, lambda: isinstance(app.screen, SettingsScreen), "the settings open")
    return app.screen


def test_the_settings_screen_chooses_the_variant_and_the_launch_uses_its_image(
        tmp_path, monkeypatch, engine, driver):
    """A machine with the R535 driver: Docker mode with the CUDA 13 image is saved with a
    warning that says what to choose; CUDA 12 chosen in the screen is saved, the image field
    shows its image, and the run's container is started from mgrb-artifact:<version>-cu12."""
    monkeypatch.setenv("DOCKER_HOST", engine.base_url)  # the real SDK's from_env finds it
    monkeypatch.setenv("MGRB_DATA", str(tmp_path))  # Docker mode needs a data folder that exists
    driver(OLD_DRIVER)
    write_experiments(tmp_path / "experiments")
    reading = nvml_reading()

    async def scenario():
        app = make_app(tmp_path, gpu_monitor=GpuMonitor(nvml=ReplayedNvml(reading)), environ={})
        async with app.run_test(size=SIZE, notifications=True) as pilot:
            await until(pilot, lambda: status(app, "tiny"), "the first poll shown")
            screen = await _open_settings(pilot, app)
            image = screen.query_one("#image", Input)
            assert screen.query_one("#cuda", Select).value == "13"
            assert (image.value, image.placeholder) == ("", CU13)
            screen.query_one("#mode", Select).value = "docker"
            await pilot.click("#save")
            await until(pilot, lambda: not isinstance(app.screen, SettingsScreen), "saved and closed")
            assert TOO_OLD in told(app) and "settings saved" in told(app)

            screen = await _open_settings(pilot, app)
            image = screen.query_one("#image", Input)
            screen.query_one("#cuda", Select).value = "12"
            await until(pilot, lambda: image.placeholder == CU12, "the image of CUDA 12 shown")
            assert image.value == ""
            await pilot.click("#save")
            await until(pilot, lambda: not isinstance(app.screen, SettingsScreen), "saved and closed")
            assert app.service.settings.cuda == "12"
            assert app.service.settings.image_reference() == CU12

            await pilot.press("ctrl+l")
            await until(pilot, lambda: _created(engine), "the container created")
            await until(pilot, lambda: status(app, "tiny") == RUNNING, "the run shown running")
            (body,) = _created(engine)
            assert body["Image"] == CU12
            assert body["HostConfig"]["DeviceRequests"][0]["DeviceIDs"] == [reading["devices"][0]["uuid"]]
            assert not any("could not start" in m for m in told(app))

    asyncio.run(scenario())
    stored = json.loads(settings_path(tmp_path / "runs").read_text())
    assert (stored["mode"], stored["cuda"], stored["image"]) == ("docker", "12", "")
    assert set(stored) == set(asdict(Settings()))


def test_an_image_typed_in_the_screen_is_saved_and_wins(tmp_path, monkeypatch, engine, driver):
    monkeypatch.setenv("DOCKER_HOST", engine.base_url)
    monkeypatch.setenv("MGRB_DATA", str(tmp_path))
    driver(None)
    write_experiments(tmp_path / "experiments")

    async def scenario():
        app = make_app(tmp_path, gpu_monitor=GpuMonitor(nvml=ReplayedNvml({"devices": []})), environ={})
        async with app.run_test(size=SIZE, notifications=True) as pilot:
            await until(pilot, lambda: status(app, "tiny"), "the first poll shown")
            screen = await _open_settings(pilot, app)
            screen.query_one("#mode", Select).value = "docker"
            screen.query_one("#cuda", Select).value = "12"
            screen.query_one("#image", Input).value = f"  {CU13} "
            await pilot.click("#save")
            await until(pilot, lambda: not isinstance(app.screen, SettingsScreen), "saved and closed")
            await pilot.press("ctrl+l")
            await until(pilot, lambda: _created(engine), "the container created")
            assert _created(engine)[0]["Image"] == CU13

    asyncio.run(scenario())
    stored = json.loads(settings_path(tmp_path / "runs").read_text())
    assert (stored["cuda"], stored["image"]) == ("12", CU13)
