"""The launcher's own files in an experiment's run folder (runs/<name>/).

launch.json  how the run was started: mode (local or docker), pid or container, command, GPUs
exit.json    written by the supervisor when the trainer process ends: its exit status
launcher.log the trainer's terminal output (local mode)

They are plain files so that a closed and reopened launcher, or a user with `cat`, can tell
what happened; the trainer's own files (events.jsonl, results.json) stay the source of truth.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from mgrb.runfolder import atomic_write

LAUNCH, EXIT, LOG = "launch.json", "exit.json", "launcher.log"


def read_json(path: Path) -> dict | None:
    """None for a missing or unreadable file: a half-written record is as good as none."""
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def write_json(path: Path, value: dict) -> None:
    atomic_write(path, (json.dumps(value, indent=2) + "\n").encode())


def read_launch(folder: Path) -> dict | None:
    return read_json(folder / LAUNCH)


def read_exit(folder: Path) -> dict | None:
    return read_json(folder / EXIT)


def clear_for_launch(folder: Path) -> None:
    """Before a new launch: the old exit status and log become history, so that what the
    new process writes cannot be mistaken for the old one's (or the other way round)."""
    (folder / EXIT).unlink(missing_ok=True)
    if (folder / LOG).exists():
        os.replace(folder / LOG, folder / "launcher.previous.log")


def record_launch(folder: Path, record: dict) -> None:
    write_json(folder / LAUNCH, {"launched": round(time.time(), 3), **record})


def record_exit(folder: Path, code: int) -> None:
    write_json(folder / EXIT, {"code": code, "time": round(time.time(), 3)})


def pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (exited, not yet reaped by its parent) still answers kill(0).
    try:
        state = Path(f"/proc/{int(pid)}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state != "Z"


def log_tail(path: Path, lines: int = 20, max_bytes: int = 64_000) -> list[str]:
    """The last lines of a log, reading only its end; progress-bar redraws become lines."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - max_bytes))
            text = handle.read().decode("utf-8", "replace")
    except OSError:
        return []
    text = text.replace("\r", "\n")
    return [line.rstrip() for line in text.splitlines() if line.strip()][-lines:]
