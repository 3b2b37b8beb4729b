"""Runs as containers of the project's image, through the Docker SDK for Python.

Every Docker or connection error leaves this module as `DockerUnavailable` with one plain
paragraph for the UI. The image is looked up before a container is created: the SDK's `run`
would otherwise pull it silently from a registry.
"""

from __future__ import annotations

import os
import re
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

from mgrb.devices import GPU_SHARE_VARIABLE
from mgrb.pipeline.command import RunLine, run_words

from .explain import looks_raw, os_cause, os_reason
from .owners import CONTAINER_ID, NotOurs, container_problem

LABEL = "org.mgrb.experiment"
RUN_LABEL = "org.mgrb.run"
LAUNCHER_LABEL = "org.mgrb.launcher"
RUNS_LABEL = "org.mgrb.runs"  # the runs folder on the host: two launchers' runs stay apart
LAUNCHER = "mgrb-tui"
DEFAULT_HOST = "unix:///var/run/docker.sock"  # where the SDK looks without DOCKER_HOST
IMAGE_USER = "1000:1000"  # the image's own user, for a launcher that runs as root
EXPERIMENTS_MOUNT = "/opt/mgrb/experiments"  # where the image's `mgrb` looks for experiments
PIDS_LIMIT = 4096  # data loader workers and compile threads fit many times over
NO_DAEMON = ("No Docker daemon answers: {cause}. Is Docker running, and is DOCKER_HOST right? "
             "Local-process mode (settings) works without Docker.")
NO_GPU_RUNTIME = ("Docker cannot give containers a GPU: the NVIDIA Container Toolkit is missing, or "
                  "Docker was not restarted after installing it. Install the NVIDIA Container Toolkit "
                  "and restart Docker, or choose no GPUs in the settings.")


class DockerUnavailable(Exception):
    """One plain message for the UI: no SDK, no daemon, no image, no GPU runtime. `cause`
    is the reason alone, for a message that says the rest itself."""

    def __init__(self, message: str, cause: str | None = None):
        super().__init__(message)
        self.cause = cause or message


@dataclass(frozen=True)
class ContainerRun:
    container_id: str
    name: str
    experiment: str
    run: str  # run folder relative to the runs dir
    status: str  # docker's state: created / running / exited / dead / ...
    exit_code: int | None
    host_pid: int | None  # NVML reports host pids: this lets the GPU panel match the run
    labels: dict[str, str] = field(default_factory=dict, compare=False)

    @property
    def alive(self) -> bool:
        """Docker's states of a container that has not ended (or not yet started)."""
        return self.status in ("created", "running", "restarting")


def _sdk():
    # Imported lazily: the launcher's local-process mode must work without the `tui` extra.
    try:
        import docker
        import requests
    except ImportError as error:
        raise DockerUnavailable(f"The Docker SDK for Python is not installed ({error}); "
                                "`pip install .[tui]` (or `make setup`) installs it.",
                                "the Docker SDK for Python is not installed") from None
    return docker, requests


def _device_requests(docker, gpus: list[str] | None) -> list:
    if gpus is None:
        return [docker.types.DeviceRequest(count=-1, capabilities=[["gpu"]])]
    if gpus:
        return [docker.types.DeviceRequest(device_ids=list(gpus), capabilities=[["gpu"]])]
    return []


def _device_settings(gpus: list[str] | None) -> tuple[str, dict]:
    """`--device` for the command and the CUDA environment of the container. CUDA images set
    NVIDIA_VISIBLE_DEVICES=all, which exposes every GPU where nvidia is Docker's default
    runtime, whatever was requested: CUDA_VISIBLE_DEVICES keeps the run to what it asked for."""
    if gpus is None:
        return "cuda", {}
    bad = [g for g in gpus if not (isinstance(g, str) and g.startswith("GPU-"))]
    if bad:
        raise ValueError(f"GPUs are asked for by UUID (GPU-...), not {bad}: an index can name "
                         "another GPU")
    return "cuda" if gpus else "cpu", {"CUDA_VISIBLE_DEVICES": ",".join(gpus)}


def _container_name(run: str) -> str:
    # Docker names allow [a-zA-Z0-9_.-]; the millisecond suffix keeps re-runs of a folder apart.
    stamp = int(time.time() * 1000)
    return "mgrb-" + re.sub(r"[^A-Za-z0-9_.-]", "-", run) + "-" + _base36(stamp)


def _base36(number: int) -> str:
    digits = ""
    while number:
        number, digit = divmod(number, 36)
        digits = "0123456789abcdefghijklmnopqrstuvwxyz"[digit] + digits
    return digits or "0"


def container_user(uid: int, gid: int) -> str:
    """The invoking user, so that run folders on the host stay theirs; never root, which
    would own them and could act on the mounted host folders with root's rights."""
    return IMAGE_USER if uid == 0 else f"{uid}:{gid}"


def hand_over(folder: Path, uid: int) -> None:
    """A launcher running as root gives the run folder to the image's user, who writes it in
    the container (a folder made by a local root run before included); others keep theirs."""
    if uid != 0:
        return
    user, group = (int(part) for part in IMAGE_USER.split(":"))
    os.chown(folder, user, group, follow_symlinks=False)
    for parent, folders, files in os.walk(folder):  # symlinks are changed, never followed
        for name in folders + files:
            os.chown(os.path.join(parent, name), user, group, follow_symlinks=False)


class DockerRunner:
    def __init__(self, *, image: str, data_dir: Path, runs_dir: Path, experiments_dir: Path | None = None,
                 shm_size: str = "16g", client=None, client_factory=None):
        self.image, self.shm_size = image, shm_size
        # Bind mounts need absolute host paths.
        self.data_dir, self.runs_dir = Path(data_dir).resolve(), Path(runs_dir).resolve()
        # None: the copy baked into the image (only for callers without an experiments folder)
        self.experiments_dir = None if experiments_dir is None else Path(experiments_dir).resolve()
        self._given, self._client, self._factory = client, client, client_factory

    # -- the connection --------------------------------------------------------------------
    def _call(self, action):
        """Run `action(client)`, turning whatever the SDK raises into DockerUnavailable."""
        docker, requests = _sdk()
        try:
            if self._client is None:
                self._client = (self._factory or docker.from_env)()
            return action(self._client)
        except DockerUnavailable:
            raise
        except docker.errors.ImageNotFound:
            raise DockerUnavailable(
                f"The image {self.image} is not present on this Docker host; build it with "
                "`make image` (or set another image in the settings).") from None
        except docker.errors.APIError as error:
            reason = error.explanation or getattr(error.response, "reason", None)
            explanation = " ".join(str(reason or "no reason given").split())[:300]
            if "could not select device driver" in explanation:
                raise DockerUnavailable(NO_GPU_RUNTIME) from None
            raise DockerUnavailable(f"Docker refused: {explanation}",
                                    f"the Docker daemon refused: {explanation}") from None
        except (docker.errors.DockerException, requests.exceptions.RequestException, OSError) as error:
            if isinstance(error, docker.errors.DockerException) and any(
                    sign in str(error) for sign in ("Failed to parse", "string value for")):
                # the SDK refuses a setting (shm size) before asking any daemon
                said = " ".join(str(error).split())[:300]
                raise DockerUnavailable(f"A Docker setting was refused: {said}. Fix it in the "
                                        "settings.", f"a setting was refused: {said}") from None
            self._client = self._given  # a client we made is made afresh: the daemon may come back
            cause = self._unreachable(error)
            raise DockerUnavailable(NO_DAEMON.format(cause=cause), cause) from None

    def _unreachable(self, error: BaseException) -> str:
        """Why no daemon answered, in words: the operating system's error under the SDK's
        wrappers, with the address it concerns."""
        where = "the Docker host" if self._factory or self._given else \
            os.environ.get("DOCKER_HOST") or DEFAULT_HOST
        failure = os_cause(error)
        if isinstance(failure, FileNotFoundError):
            return f"there is no Docker socket at {where}"
        if isinstance(failure, ConnectionRefusedError):
            return f"{where} refused the connection"
        if isinstance(failure, PermissionError):
            return f"permission denied on {where} (is your user in the docker group?)"
        if isinstance(failure, socket.gaierror):
            return f"the host name in {where} does not resolve"
        if isinstance(failure, TimeoutError):
            return f"{where} did not answer in time"
        if failure is not None:
            return f"{where}: {os_reason(failure)}"
        text = " ".join(str(error).split())
        # the SDK's own refusals (a malformed DOCKER_HOST) are sentences; wrappers quote reprs
        return text[:200] if text and not looks_raw(text) else f"the Docker SDK cannot reach {where}"

    def reachable(self) -> None:
        """DockerUnavailable unless a daemon answers through the SDK."""
        self._call(lambda client: client.ping())

    def check(self) -> None:
        def check(client):
            client.ping()
            client.images.get(self.image)

        self._call(check)

    # -- runs ------------------------------------------------------------------------------
    def start(self, *, experiment: str, run: str, gpus: list[str] | None,
              extra_args: list[str] | tuple[str, ...] = (), gpu_share: int = 1) -> ContainerRun:
        """Start `mgrb run` in a container; gpus: NVML UUIDs, None for all GPUs, [] for none
        (CPU). A GPU run gets `--device cuda`: without the GPU it fails instead of training
        on the CPU. `gpu_share`: how many runs may share the GPU (LocalLauncher.start)."""
        device, cuda_env = _device_settings(gpus)
        self.check()  # `containers.run` would pull a missing image from a registry
        docker, requests = _sdk()
        device_requests = _device_requests(docker, gpus)

        def start(client):
            # The image cannot know its own id; results.json records what it is told here.
            image_id = client.images.get(self.image).id
            # create + start rather than `run`: `run` pulls when create finds no image, and a
            # container that fails to start is ours to remove.
            container = client.containers.create(
                self.image, command=run_words(RunLine(experiment, out=f"/runs/{run}", device=device,
                                                      extra=tuple(extra_args))),
                name=_container_name(run), detach=True, shm_size=self.shm_size,
                labels=self.labels(experiment, run), volumes=self.volumes(),
                user=container_user(os.getuid(), os.getgid()),
                # a training run needs no network, no privilege and no capability
                network_mode="none", cap_drop=["ALL"], security_opt=["no-new-privileges"],
                pids_limit=PIDS_LIMIT,
                environment={"MGRB_RUNS": "/runs", "MGRB_DATA": "/data", "MGRB_IMAGE_ID": image_id,
                             GPU_SHARE_VARIABLE: str(gpu_share), **cuda_env},
                device_requests=device_requests or None)
            try:
                container.start()  # the daemon resolves GPU requests here, not at create
            except docker.errors.APIError:
                _discard(docker, requests, container)
                raise
            container.reload()
            return _describe(container)

        return self._call(start)

    def volumes(self) -> dict[str, dict[str, str]]:
        """The data read-only, the run folders writable, and the launcher's own experiment
        files read-only over the image's copy, so edited and new files are the ones run."""
        volumes = {str(self.data_dir): {"bind": "/data", "mode": "ro"},
                   str(self.runs_dir): {"bind": "/runs", "mode": "rw"}}
        if self.experiments_dir is not None:
            volumes[str(self.experiments_dir)] = {"bind": EXPERIMENTS_MOUNT, "mode": "ro"}
        return volumes

    def labels(self, experiment: str, run: str) -> dict[str, str]:
        """What marks a container as the one this launcher started for a run."""
        return {LABEL: experiment, RUN_LABEL: run, LAUNCHER_LABEL: LAUNCHER,
                RUNS_LABEL: str(self.runs_dir)}

    def owned(self, container_id, *, experiment: str, run: str) -> ContainerRun | None:
        """The container a launch.json names, only if this launcher started it for that run
        (a launch.json from elsewhere may name any container of the user's); None when it is
        gone; NotOurs says why it is not the run's."""
        if not isinstance(container_id, str) or not CONTAINER_ID.fullmatch(container_id):
            raise NotOurs(f"launch.json names container {str(container_id)[:70]!r}, which is "
                          "not a container id this launcher records")
        found = self.state(container_id)
        if found is None:
            return None
        problem = container_problem(found.labels, self.labels(experiment, run))
        if problem:
            raise NotOurs(f"launch.json names container {container_id[:12]}, which this "
                          f"launcher did not start for this run ({problem})")
        return found

    def list_runs(self) -> list[ContainerRun]:
        return self._call(lambda client: [_describe(c) for c in client.containers.list(
            all=True, filters={"label": f"{LAUNCHER_LABEL}={LAUNCHER}"})])

    def state(self, container_id: str) -> ContainerRun | None:
        """None when the container is gone."""
        docker, _ = _sdk()

        def state(client):
            try:
                return _describe(client.containers.get(container_id))
            except docker.errors.NotFound:
                return None

        return self._call(state)

    def stop(self, container_id: str, timeout: int = 60) -> None:
        """`docker stop` sends SIGTERM: mgrb saves a checkpoint and exits with 130."""
        self._call(lambda client: client.containers.get(container_id).stop(timeout=timeout))

    def logs_tail(self, container_id: str, lines: int = 20) -> str:
        return self._call(lambda client: client.containers.get(container_id).logs(
            tail=lines).decode("utf-8", "replace"))


def _discard(docker, requests, container) -> None:
    # A container that never started would linger in list_runs as "created"; the start error
    # is the one worth reporting, so a failed removal is not.
    try:
        container.remove(force=True)
    except (docker.errors.DockerException, requests.exceptions.RequestException, OSError):
        pass


def _describe(container) -> ContainerRun:
    attrs = container.attrs
    state = attrs.get("State") or {}
    labels = (attrs.get("Config") or {}).get("Labels") or {}
    status = state.get("Status", "unknown")
    running = bool(state.get("Running"))
    ended = not running and status != "created"  # a created container has ExitCode 0 but no exit
    return ContainerRun(
        container_id=container.id, name=container.name, experiment=labels.get(LABEL, ""),
        run=labels.get(RUN_LABEL, ""), status=status,
        exit_code=state.get("ExitCode") if ended else None,
        host_pid=(state.get("Pid") or None) if running else None,
        labels={str(k): str(v) for k, v in labels.items()})
