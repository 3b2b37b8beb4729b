"""Which process or container is provably a run's own: the launcher signals nothing else, and
shows nothing else as running.

A run folder may come from elsewhere (a colleague's archive, a reviewer's download), so a pid
in its launch.json or run.lock proves nothing by itself: after a reboot, or once the run has
ended, the number belongs to some other process, and a planted 1 would reach every process
the user has. A process is taken to be the run's only when the kernel's own account of it
(start time and boot, see mgrb.store.processes) matches what was recorded when the run started,
and its command line is the one the run was started with.
"""

from __future__ import annotations

import re
import socket
from pathlib import Path

from mgrb.store.lock import LOCK
from mgrb.store.processes import (command_line, holds_open, is_recorded_process, pid_alive,
                                  process_group)

SUPERVISOR = "artifact.core.supervise"
# What Docker itself returns for a container; a name or a short prefix would let a planted
# launch.json reach any container of the user's ("postgres").
CONTAINER_ID = re.compile(r"^[0-9a-f]{64}$")


class NotOurs(Exception):
    """Why a recorded process or container cannot be shown to be the run's (for the user)."""


class Ended(NotOurs):
    """The recorded process has exited: nothing to prove, nothing to signal."""


def supervisor_pid(launch: dict, base: Path) -> int:
    """The pid of the supervisor that LocalLauncher.start started for the run in `base`, from
    a launch record that meets the launch contract; NotOurs says why not."""
    pid = launch.get("pid")
    if pid is None:
        raise NotOurs("launch.json names no process")
    _same_process(pid, launch.get("process"), "launch.json", "which this launcher did not start")
    if process_group(pid) != pid:
        raise NotOurs(f"launch.json names process {pid}, which does not lead a session of its "
                      "own as every supervisor this launcher starts does")
    argv = command_line(pid) or []
    if not _supervises(argv, base):
        raise NotOurs(f"launch.json names process {pid}, which is not the supervisor of "
                      f"{base.name} (its command is {_shown(argv)})")
    return pid


def trainer_pid(lock: dict, folder: Path) -> int:
    """The pid of the trainer holding `folder`'s run.lock, whose record `lock` meets the lock
    contract (a run started outside the launcher: `mgrb run`, make reproduce); NotOurs says
    why not. The process must have this very lock file open: a folder copied while its run
    trained holds a copy of the record, naming the other folder's trainer."""
    pid, host = lock["pid"], lock["host"]
    if host != socket.gethostname():
        raise NotOurs(f"run.lock names process {pid} on host {host}, not on this machine")
    _same_process(pid, lock.get("process"), "run.lock", "which is not the trainer that wrote it")
    argv = command_line(pid) or []
    if not _is_trainer(argv):
        raise NotOurs(f"run.lock names process {pid}, which is not an mgrb trainer (its "
                      f"command is {_shown(argv)})")
    holding = holds_open(pid, folder / LOCK)
    if holding is None:
        raise NotOurs(f"run.lock names process {pid}, whose open files cannot be read here "
                      "(another user's process?), so it cannot be shown to hold this folder")
    if not holding:
        raise NotOurs(f"not running here: run.lock names process {pid}, an mgrb trainer that "
                      f"does not hold this folder's lock (a copy of another run's folder?)")
    return pid


def container_problem(labels: dict[str, str], expected: dict[str, str]) -> str | None:
    """Why a container's labels are not those this launcher gave the run's container."""
    wrong = sorted(key for key, value in expected.items() if labels.get(key) != value)
    if wrong:
        return f"its labels differ from this run's in {', '.join(wrong)}"
    return None


def _same_process(pid: int, recorded, source: str, otherwise: str) -> None:
    if not isinstance(recorded, dict):
        raise NotOurs(f"{source} names process {pid} without its identity (start time and "
                      "boot), so the run's process cannot be told from one that reused the pid")
    if recorded.get("pid") != pid:
        raise NotOurs(f"{source} names process {pid} with the identity of process "
                      f"{recorded.get('pid')}")
    if is_recorded_process(recorded):
        return
    if pid_alive(pid):
        raise NotOurs(f"{source} names process {pid}, {otherwise} (another process has "
                      "that pid now)")
    raise Ended(f"process {pid} of {source} has ended")


def _supervises(argv: list[str], base: Path) -> bool:
    # The launcher starts `python -m artifact.core.supervise BASE -- ...` with BASE resolved.
    for index, part in enumerate(argv[:-1]):
        if part == SUPERVISOR and argv[index + 1] == str(base.resolve()):
            return True
    return False


def _is_trainer(argv: list[str]) -> bool:
    # `python -m mgrb.cli ...` (the launcher, make reproduce) or the `mgrb` console script.
    return any(part == "mgrb.cli" or Path(part).name == "mgrb" for part in argv[:3])


def _shown(argv: list[str]) -> str:
    text = " ".join(argv) or "unreadable"
    return repr(text if len(text) <= 80 else text[:77] + "...")
