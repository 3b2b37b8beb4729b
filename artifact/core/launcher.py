"""Starting and stopping runs as local processes, and the queue that waits for a free slot.

A run is `mgrb run EXPERIMENT` under `supervise.py`, in a session of its own: closing the
launcher never stops training, and the run folder records how the process ended. A stop
signals only a process proven to be the run's (owners.py), whatever its files say.

Every way of starting runs is a launcher with the same four methods (`start`, `stop`,
`probe`, `reap`): `LocalLauncher` here, `DockerLauncher` (docker_launcher.py) for containers.
The service picks one by the settings' mode to start a run and by launch.json's to follow or
stop it; a third way is one more such class.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from mgrb.devices import GPU_SHARE_VARIABLE
from mgrb.pipeline.command import RunLine, run_words
from mgrb.store import contracts
from mgrb.store.processes import identity
from mgrb.store.contracts import RunFileError

from .experiments import ExperimentRow
from .owners import SUPERVISOR, Ended, NotOurs, supervisor_pid, trainer_pid
from .records import (LAUNCH, check_launch, clear_for_launch, open_log_for_append,
                      read_launch, read_lock, record_launch, write_json)
from .settings import LOCAL

CPU = "cpu"
FULL = "full"
QUEUE = contracts.mapping({"queued": (contracts.list_of(contracts.text(
    pattern=contracts.NAME_PATTERN), longest=10_000), True)})


class Queue:
    """Experiment names waiting for a slot, in <runs>/.launcher/queue.json so that a
    reopened launcher still knows them."""

    def __init__(self, runs_dir: Path):
        self.path = Path(runs_dir) / ".launcher" / "queue.json"
        self.damage: str | None = None  # why the stored queue was not used, while it lasts

    def names(self) -> list[str]:
        """A damaged queue file counts as an empty queue (and says so in `damage`); the next
        change to the queue writes a good one."""
        try:
            stored = contracts.read(QUEUE, self.path)
        except RunFileError as error:
            self.damage = f"{error}; the launch queue starts empty"
            return []
        self.damage = None
        return list(stored["queued"]) if stored else []

    def _store(self, names: list[str]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_json(self.path, {"queued": names})

    def add(self, names: list[str]) -> list[str]:
        current = self.names()
        added = [n for n in names if n not in current]
        self._store(current + added)
        return added

    def remove(self, name: str) -> None:
        self._store([n for n in self.names() if n != name])


def choose_slot(running_on: list[int | None], gpus: list[int], runs_per_gpu: int):
    """The GPU index for the next run (the least used one with room), CPU when there are no
    GPUs and room on the CPU, or FULL."""
    counts = Counter(running_on)
    if not gpus:
        return CPU if sum(counts.values()) < runs_per_gpu else FULL
    free = [g for g in gpus if counts[g] < runs_per_gpu]
    return min(free, key=lambda g: (counts[g], g)) if free else FULL


def device_for(gpu: int | None, uuid: str | None) -> tuple[str, str]:
    """`--device` and CUDA_VISIBLE_DEVICES for a slot: the GPU's UUID, because CUDA's indices
    follow CUDA_DEVICE_ORDER and an inherited CUDA_VISIBLE_DEVICES while NVML's do not; on the
    CPU, an empty value, so that `--device cpu` is not the only thing keeping a GPU away."""
    if gpu is None:
        return "cpu", ""
    if not uuid or not uuid.startswith("GPU-"):
        raise ValueError(f"GPU {gpu} has no known UUID ({uuid or 'none read'}), and an index "
                         "could name another GPU to CUDA; not started")
    return "cuda", uuid


@dataclass(frozen=True)
class Probe:
    """What a launcher knows of a run it started: alive (None: cannot tell), the process to
    name, how it ended, and its log lines where the run folder's log is not where they are."""
    alive: bool | None
    pid: int | None = None
    exit_code: int | None = None
    log: list[str] | None = None


def probe_local(experiment: ExperimentRow, launch: dict) -> Probe:
    """A local run is alive while the supervisor its launch record names is proven its own."""
    try:
        return Probe(True, pid=supervisor_pid(launch, experiment.base_folder))
    except NotOurs:
        return Probe(False)


class LocalLauncher:
    def __init__(self, runs_dir: Path, python: str = sys.executable, environ=None):
        self.runs_dir, self.python = Path(runs_dir).resolve(), python
        self.environ = os.environ if environ is None else environ
        self._children: list[subprocess.Popen] = []

    def start(self, experiment: ExperimentRow, gpu: int | None, gpu_uuid: str | None = None,
              extra_args: tuple[str, ...] = (), gpu_share: int = 1) -> dict:
        """On a GPU the run gets `--device cuda`, so that a GPU CUDA cannot use fails the run
        with the trainer's error instead of training on the CPU. `gpu_share`: how many runs
        may share that GPU (runs_per_gpu); the run keeps its images on the GPU only if they fit
        its share (mgrb.devices.resident_budget)."""
        device, visible = device_for(gpu, gpu_uuid)
        base = experiment.base_folder
        command = run_words(RunLine(str(Path(experiment.path).resolve()),
                                    program=(self.python, "-m", "mgrb.cli"), device=device,
                                    extra=tuple(extra_args)))
        record = {"mode": LOCAL, "command": command, "gpu": gpu, "gpu_uuid": gpu_uuid,
                  "device": device}
        check_launch(base, record)  # before the process starts: no run without its record
        base.mkdir(parents=True, exist_ok=True)
        clear_for_launch(base)
        env = {**self.environ, "MGRB_RUNS": str(self.runs_dir), "PYTHONUNBUFFERED": "1",
               "CUDA_VISIBLE_DEVICES": visible, GPU_SHARE_VARIABLE: str(gpu_share)}
        log = open_log_for_append(base)
        try:
            # Popen returns once the child has exec'd: its command line is the supervisor's,
            # which is what stop() checks (with the resolved folder) before signalling it.
            child = subprocess.Popen(
                [self.python, "-m", SUPERVISOR, str(base.resolve()), "--", *command],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
                start_new_session=True)
        finally:
            os.close(log)
        self._children.append(child)
        record.update(pid=child.pid, process=identity(child.pid))
        record_launch(base, record)
        return record

    probe = staticmethod(probe_local)

    def reap(self) -> None:
        """Collect children that have ended, so that they do not linger as zombies."""
        self._children = [child for child in self._children if child.poll() is None]

    def stop(self, experiment: ExperimentRow, force: bool = False) -> str:
        """SIGTERM: the trainer saves a checkpoint at the current batch and exits; force:
        SIGKILL to the supervisor's whole session (the last periodic checkpoint remains), or
        to the trainer alone when only its run.lock is known. Only a process proven to be
        the run's is signalled; otherwise the answer says why not."""
        try:
            pid, whole_session = self._target(experiment)
        except Ended:
            return "the run's process has already ended"
        except NotOurs as why:
            return f"cannot be stopped from here: {why}"
        return _signal(pid, whole_session=whole_session, force=force)

    @staticmethod
    def _target(experiment: ExperimentRow) -> tuple[int, bool]:
        """(pid, whether it leads the run's session): the supervisor the launch record names,
        else a trainer holding a run.lock; NotOurs with every reason when neither is proven."""
        base = experiment.base_folder
        reasons: list = []  # texts, and NotOurs (Ended: that process is gone) to tell apart
        try:
            launch = read_launch(base)
        except RunFileError as error:
            launch, reasons = None, [f"{LAUNCH}: {error.reason}"]
        if launch is not None and launch["mode"] == LOCAL:
            try:
                return supervisor_pid(launch, base), True
            except NotOurs as why:
                reasons.append(why)
        for folder in experiment.run_folders:
            try:
                lock = read_lock(folder)
                if lock is not None:
                    return trainer_pid(lock, folder), False
            except RunFileError as error:
                reasons.append(f"run.lock: {error.reason}")
            except NotOurs as why:
                reasons.append(why)
        if not reasons:
            raise NotOurs("no process is recorded for this run")
        if all(isinstance(reason, Ended) for reason in reasons):
            raise Ended(reasons[0])
        raise NotOurs("; ".join(str(r) for r in reasons if not isinstance(r, Ended)))


def _signal(pid: int, *, whole_session: bool, force: bool) -> str:
    if pid < 2:  # not reached (the contracts refuse 0 and 1): kill(0)/kill(-1) hit everything
        return f"cannot be stopped from here: refusing to signal process {pid}"
    try:
        if force and whole_session:
            os.killpg(pid, signal.SIGKILL)
        else:
            os.kill(pid, signal.SIGKILL if force else signal.SIGTERM)
    except ProcessLookupError:
        return "the run's process has already ended"
    except PermissionError:
        return f"not allowed to signal process {pid} (another user's run?)"
    return "killed" if force else "asked to stop; it saves a checkpoint first"
