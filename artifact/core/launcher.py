"""Starting and stopping runs as local processes, and the queue that waits for a free slot.

A run is `mgrb run EXPERIMENT` under `supervise.py`, in a session of its own: closing the
launcher never stops training, and the run folder records how the process ended.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

from .experiments import Experiment
from .records import LOG, clear_for_launch, read_json, record_launch, write_json

CPU = "cpu"
FULL = "full"


class Queue:
    """Experiment names waiting for a slot, in <runs>/.launcher/queue.json so that a
    reopened launcher still knows them."""

    def __init__(self, runs_dir: Path):
        self.path = Path(runs_dir) / ".launcher" / "queue.json"

    def names(self) -> list[str]:
        stored = read_json(self.path) or {}
        names = stored.get("queued", [])
        return [n for n in names if isinstance(n, str)] if isinstance(names, list) else []

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


class LocalLauncher:
    def __init__(self, runs_dir: Path, python: str = sys.executable, environ=None):
        self.runs_dir, self.python = Path(runs_dir).resolve(), python
        self.environ = os.environ if environ is None else environ
        self._children: list[subprocess.Popen] = []

    def start(self, experiment: Experiment, gpu: int | None, gpu_uuid: str | None = None,
              extra_args: tuple[str, ...] = ()) -> dict:
        """On a GPU the run gets `--device cuda`, so that a GPU CUDA cannot use fails the run
        with the trainer's error instead of training on the CPU."""
        device, visible = device_for(gpu, gpu_uuid)
        base = experiment.base_folder
        base.mkdir(parents=True, exist_ok=True)
        clear_for_launch(base)
        command = [self.python, "-m", "mgrb.cli", "run", str(Path(experiment.path).resolve()),
                   "--device", device, *extra_args]
        env = {**self.environ, "MGRB_RUNS": str(self.runs_dir), "PYTHONUNBUFFERED": "1",
               "CUDA_VISIBLE_DEVICES": visible}
        with open(base / LOG, "ab") as log:
            child = subprocess.Popen(
                [self.python, "-m", "artifact.core.supervise", str(base), "--", *command],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
                start_new_session=True)
        self._children.append(child)
        record = {"mode": "local", "pid": child.pid, "command": command, "gpu": gpu,
                  "gpu_uuid": gpu_uuid, "device": device}
        record_launch(base, record)
        return record

    def reap(self) -> None:
        """Collect children that have ended, so that they do not linger as zombies."""
        self._children = [child for child in self._children if child.poll() is None]

    @staticmethod
    def stop(record: dict, force: bool = False) -> str:
        """SIGTERM: the trainer saves a checkpoint at the current batch and exits; force:
        SIGKILL to the whole session (the last periodic checkpoint remains)."""
        pid = record.get("pid")
        if not pid:
            return "no process recorded for this run"
        try:
            if force:
                os.killpg(int(pid), signal.SIGKILL)
            else:
                os.kill(int(pid), signal.SIGTERM)
        except ProcessLookupError:
            return "the run's process has already ended"
        except PermissionError:
            return f"not allowed to signal process {pid} (another user's run?)"
        return "killed" if force else "asked to stop; it saves a checkpoint first"
