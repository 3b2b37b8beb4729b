"""Which process a recorded pid is: liveness, and identity that survives pid reuse.

A pid alone names whatever process holds that number now: after a reboot, or once the
recorded process is long gone, it is somebody else's. So a record keeps the process's start
time (clock ticks since boot, from /proc/PID/stat) and the kernel's boot id beside the pid,
and only a process that matches all three is taken to be the one recorded.
"""

from __future__ import annotations

import os
from pathlib import Path


def pid_alive(pid) -> bool:
    """True for a process that exists and has not exited (a zombie has exited)."""
    if isinstance(pid, bool) or not isinstance(pid, int) or pid < 2:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OverflowError:
        return False
    stat = _stat_fields(pid)
    return stat is None or stat[0] != "Z"


def _stat_fields(pid: int) -> list[str] | None:
    """/proc/PID/stat after the command name (which may hold spaces and parentheses)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def boot_id() -> str | None:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None


def identity(pid: int | None = None) -> dict | None:
    """{"pid", "start", "boot"} of a live process (this one by default); None where /proc
    cannot tell (not Linux, or the process is gone)."""
    pid = os.getpid() if pid is None else pid
    stat, boot = _stat_fields(pid), boot_id()
    if stat is None or boot is None or len(stat) < 20:
        return None
    return {"pid": pid, "start": int(stat[19]), "boot": boot}  # field 22 of stat: starttime


def is_recorded_process(record: dict | None) -> bool:
    """True only when the live process at record["pid"] is the one the record was made for."""
    if not isinstance(record, dict) or not pid_alive(record.get("pid")):
        return False
    now = identity(record["pid"])
    return now is not None and now["start"] == record.get("start") and \
        now["boot"] == record.get("boot")


def process_group(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except (ProcessLookupError, PermissionError, OverflowError):
        return None


def command_line(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return [part.decode("utf-8", "replace") for part in raw.split(b"\0") if part]


def holds_open(pid: int, path: Path) -> bool | None:
    """Whether process `pid` has the very file at `path` open (its device and inode, read
    through /proc/PID/fd): what a trainer holding a run folder's lock has, and a copy of
    that folder (a new inode) cannot borrow. None where it cannot be told (another user's
    process, or no /proc)."""
    try:
        wanted = os.stat(path, follow_symlinks=False)
    except OSError:
        return False
    descriptors = Path(f"/proc/{pid}/fd")
    try:
        names = os.listdir(descriptors)
    except PermissionError:
        return None
    except OSError:
        return False if Path("/proc/self/fd").is_dir() else None
    for name in names:
        try:
            found = os.stat(descriptors / name)  # the open file itself, not the link
        except OSError:
            continue  # closed meanwhile
        if (found.st_dev, found.st_ino) == (wanted.st_dev, wanted.st_ino):
            return True
    return False
