"""The launcher's own files in an experiment's run folder (runs/<name>/), and the one way the
launcher reads any file of a run folder.

launch.json  how the run was started: mode (local or docker), pid and its identity or the
             container, command, GPUs
exit.json    written by the supervisor when the trainer process ends: its exit status
launcher.log the trainer's terminal output (local mode)

They are plain files so that a closed and reopened launcher, or a user with `cat`, can tell
what happened; the trainer's own files (events.jsonl, results.json) stay the source of truth.

Run folders travel (archives, downloads, shared disks), so nothing read here is trusted: each
JSON file is checked against its contract in mgrb.store.contracts, and a file that is a link, a FIFO
or a device is refused before it is read (a FIFO would block the reader for ever, a link to
/dev/zero would never end).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from mgrb.store import contracts
from mgrb.store.contracts import open_regular
from mgrb.store.files import atomic_write
from mgrb.store.lock import LOCK

LAUNCH, EXIT, LOG = "launch.json", "exit.json", "launcher.log"


def read_record(kind: str, path: Path):
    """A run folder's JSON file of a kind that mgrb.store.contracts has a contract for: its
    content, None when missing, else RunFileError naming the file and the field."""
    return contracts.read(contracts.CONTRACTS[kind], path)


def read_launch(folder: Path) -> dict | None:
    return read_record("launch", folder / LAUNCH)


def read_exit(folder: Path) -> dict | None:
    return read_record("exit", folder / EXIT)


def read_lock(folder: Path) -> dict | None:
    # The trainer creates the lock file, then writes its record: empty is "being written".
    return contracts.read(contracts.CONTRACTS["lock"], folder / LOCK, empty_is_missing=True)


def write_json(path: Path, value: dict) -> None:
    """The launcher's own state (queue, settings): checked by its reader, like any file."""
    atomic_write(path, (json.dumps(value, indent=2, allow_nan=False) + "\n").encode())


def clear_for_launch(folder: Path) -> None:
    """Before a new launch: the old exit status and log become history, so that what the
    new process writes cannot be mistaken for the old one's (or the other way round)."""
    (folder / EXIT).unlink(missing_ok=True)
    if os.path.lexists(folder / LOG):  # a link too, dangling or not: never written through
        os.replace(folder / LOG, folder / "launcher.previous.log")


def open_log_for_append(folder: Path) -> int:
    """The descriptor of launcher.log, created afresh; never through a link."""
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    return os.open(folder / LOG, flags, 0o644)


def check_launch(folder: Path, record: dict) -> dict:
    """The record as record_launch will write it; RunFileError where it breaks the contract."""
    return contracts.check("launch", {"launched": round(time.time(), 3), **record},
                          folder / LAUNCH)


def record_launch(folder: Path, record: dict) -> None:
    atomic_write(folder / LAUNCH, contracts.dumps("launch", check_launch(folder, record),
                                                 folder / LAUNCH))


def record_exit(folder: Path, code: int) -> None:
    record = {"code": code, "time": round(time.time(), 3)}
    atomic_write(folder / EXIT, contracts.dumps("exit", record, folder / EXIT))


def log_tail(path: Path, lines: int = 20, max_bytes: int = 64_000) -> list[str]:
    """The last lines of a log, reading only its end; progress-bar redraws become lines."""
    handle = open_regular(path)
    if handle is None:
        return []
    with handle:
        size = handle.seek(0, os.SEEK_END)
        handle.seek(max(0, size - max_bytes))
        text = handle.read(max_bytes).decode("utf-8", "replace")
    text = text.replace("\r", "\n")
    return [line.rstrip() for line in text.splitlines() if line.strip()][-lines:]
