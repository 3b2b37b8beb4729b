"""Starting, following and stopping runs in containers: the launcher's Docker mode, with the
same four methods as LocalLauncher (launcher.py). The container work itself goes through the
Docker SDK in docker_runner.py, imported only when Docker mode is used.

A container counts as a run's only when this launcher started it for that run (its labels,
checked by DockerRunner.owned): launch.json alone proves nothing.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

from .experiments import ExperimentRow
from .gpu import nvidia_driver_version
from .launcher import Probe, device_for
from .owners import NotOurs
from .records import clear_for_launch, read_launch, record_launch
from .settings import DOCKER, Settings


_UNREAD = object()


class SettingsNotUsable(ValueError):
    """The settings in force cannot start a container; its message says why, plainly."""


class DockerLauncher:
    def __init__(self, *, runs_dir: Path, experiments_dir: Path, settings: Settings,
                 runner_factory=None, driver_version=None):
        """`runner_factory(settings)`: the DockerRunner to use (tests give one on a fake
        engine), given the settings with their image resolved (Settings.image_reference);
        by default one for the settings' image and data folder. `driver_version()`: the
        NVIDIA driver version the CUDA variant is checked against, None where unknown; by
        default NVML's, read once."""
        self.runs_dir, self.experiments_dir = Path(runs_dir), Path(experiments_dir)
        self.settings, self._factory = settings, runner_factory
        self._runner = None
        self._read_driver, self._driver = driver_version, _UNREAD

    def driver(self) -> str | None:
        """The NVIDIA driver version, read once (it changes only with a reboot or a reload of
        the kernel module)."""
        if self._driver is _UNREAD:
            self._driver = (self._read_driver or nvidia_driver_version)()
        return self._driver

    def use(self, settings: Settings) -> None:
        """New settings: the image or the data folder may have changed."""
        self.settings, self._runner = settings, None

    def runner(self, settings: Settings | None = None):
        """The Docker runner of the settings in force, or a fresh one for `settings`."""
        if settings is not None:
            return self._make(settings)
        if self._runner is None:
            self._runner = self._make(self.settings)
        return self._runner

    def _make(self, settings: Settings):
        settings = replace(settings, image=settings.image_reference())
        if self._factory is not None:
            return self._factory(settings)
        from .docker_runner import DockerRunner

        return DockerRunner(image=settings.image,
                            data_dir=Path(settings.data_dir).expanduser().resolve(),
                            runs_dir=self.runs_dir.resolve(), experiments_dir=self.experiments_dir,
                            shm_size=settings.shm_size)

    def start(self, experiment: ExperimentRow, gpu: int | None, gpu_uuid: str | None = None,
              gpu_share: int = 1) -> dict:
        # settings.json may have been edited by hand; a run on a GPU needs a driver that
        # the image's CUDA supports (on the CPU, any image runs)
        problems = self.settings.problems(driver=None if gpu is None else self.driver())
        if problems:
            raise SettingsNotUsable("the settings are not usable: " + "; ".join(problems))
        device, _ = device_for(gpu, gpu_uuid)
        experiment.base_folder.mkdir(parents=True, exist_ok=True)
        clear_for_launch(experiment.base_folder)
        from .docker_runner import hand_over

        hand_over(experiment.base_folder, os.getuid())
        run = self.runner().start(experiment=experiment.name, run=experiment.base_folder.name,
                                  gpus=[] if gpu is None else [gpu_uuid], gpu_share=gpu_share)
        record = {"mode": DOCKER, "container": run.container_id, "name": run.name, "gpu": gpu,
                  "gpu_uuid": gpu_uuid, "device": device}
        record_launch(experiment.base_folder, record)
        return record

    def stop(self, experiment: ExperimentRow, force: bool = False) -> str:
        """Asks the run's container to stop (the trainer checkpoints first); `force` changes
        nothing here: Docker kills a container that outlives its stop timeout."""
        from .docker_runner import DockerUnavailable

        try:
            run = self._owned(experiment, read_launch(experiment.base_folder) or {})
            if run is None:
                return "the run's container is gone"
            self.runner().stop(run.container_id)
        except NotOurs as why:
            return f"cannot be stopped from here: {why}"
        except DockerUnavailable as error:
            return str(error)
        return "asked the container to stop; it saves a checkpoint first"

    def probe(self, experiment: ExperimentRow, launch: dict) -> Probe:
        """NotOurs (for the run's detail) when launch.json names a container that this
        launcher did not start for the run."""
        from .docker_runner import DockerUnavailable

        try:
            run = self._owned(experiment, launch)
            if run is None:
                return Probe(False, log=["the container is gone"])
            launch["host_pid"] = run.host_pid
            return Probe(run.alive, exit_code=None if run.alive else run.exit_code,
                         log=self.runner().logs_tail(run.container_id).splitlines())
        except DockerUnavailable as error:
            return Probe(None, log=[str(error)])

    def reap(self) -> None:
        """Nothing to collect: containers are the daemon's children, not ours."""

    def _owned(self, experiment: ExperimentRow, launch: dict):
        """The container launch.json names, if this launcher started it for the run; None when
        it is gone; NotOurs when it is not the run's."""
        return self.runner().owned(launch.get("container"), experiment=experiment.name,
                                   run=experiment.base_folder.name)
