"""The run folder's lock: one trainer per folder, decided by the kernel.

flock is released however its holder dies, so a stale lock goes to exactly one of the
processes that try to take it over. The record inside (pid, host, the process's start time
and boot) is for people and for the launcher, which must tell a live trainer from a reused
pid."""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import stat
import time
from pathlib import Path

from mgrb.errors import RunFolderError
from mgrb.store import contracts
from mgrb.store.files import write_failure
from mgrb.store.processes import identity, is_recorded_process, pid_alive

LOCK = "run.lock"


class RunLock:
    def __init__(self, folder: Path):
        self.folder, self.path = folder, folder / LOCK
        self._descriptor: int | None = None

    def acquire(self) -> None:
        for _ in range(10):
            descriptor = _open_lock(self.path)
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                owner = _lock_record(descriptor)
                os.close(descriptor)
                raise RunFolderError(_in_use(self.folder, owner)) from None
            if not _is_current(descriptor, self.path):  # unlinked by its holder meanwhile
                os.close(descriptor)
                continue
            problem = _live_holder(self.folder, _lock_record(descriptor))
            if problem:
                os.close(descriptor)
                raise RunFolderError(problem)
            _write_lock_record(descriptor)
            self._descriptor = descriptor
            return
        raise RunFolderError(f"{self.path}: could not take the lock (it keeps being replaced)")

    def release(self) -> None:
        if self._descriptor is not None:
            # unlinked while still held: a process that opened it meanwhile sees it is stale
            with contextlib.suppress(OSError):
                self.path.unlink()
            os.close(self._descriptor)
            self._descriptor = None


def _open_lock(path: Path) -> int:
    # O_NONBLOCK: a FIFO planted as the lock must not hold the open (nor its writes) for ever
    flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    try:
        descriptor = os.open(path, flags, 0o644)
    except OSError as error:
        raise RunFolderError(write_failure(path, error)) from None
    if not stat.S_ISREG(os.fstat(descriptor).st_mode):
        os.close(descriptor)
        raise RunFolderError(f"{path}: is not a regular file (a FIFO or device), so not a lock "
                             "this project wrote; delete it and try again")
    return descriptor


def _is_current(descriptor: int, path: Path) -> bool:
    try:
        now = os.lstat(path)
    except FileNotFoundError:
        return False
    held = os.fstat(descriptor)
    return (now.st_dev, now.st_ino) == (held.st_dev, held.st_ino)


def _lock_record(descriptor: int) -> dict | None:
    try:
        data = os.pread(descriptor, 64 * 1024, 0)
        return contracts.check("lock", contracts.parse_json(data, LOCK), LOCK)
    except (OSError, contracts.RunFileError):
        return None  # empty or damaged: only the flock says whether someone holds it


def _in_use(folder: Path, owner: dict | None) -> str:
    who = (f"process {owner['pid']} on {owner['host']}" if owner else "another process")
    return (f"{folder} is in use by {who}; wait for it to finish or stop it first (two "
            "trainers on one folder would corrupt it).")


def _live_holder(folder: Path, owner: dict | None) -> str | None:
    """Why the lock may not be taken over although its flock was free, or None.

    A free flock means its holder is gone, except where flock does not reach: a holder on
    another host whose shared file system does not pass locks on, or a trainer of an older
    version that wrote the record without holding a flock."""
    if owner is None:
        return None
    if owner["host"] != socket.gethostname():
        return (f"{folder} is locked by a process on host {owner['host']}. If that run is "
                f"dead, delete {folder / LOCK} and try again.")
    process = owner.get("process")
    holder_alive = is_recorded_process(process) if process else pid_alive(owner["pid"])
    if holder_alive:
        return _in_use(folder, owner)
    return None


def _write_lock_record(descriptor: int) -> None:
    record = {"pid": os.getpid(), "host": socket.gethostname(), "since": round(time.time(), 3),
              "process": identity()}
    data = contracts.dumps("lock", record, LOCK)
    os.ftruncate(descriptor, 0)
    os.pwrite(descriptor, data, 0)
    os.fsync(descriptor)
