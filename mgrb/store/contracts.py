"""The run folder's JSON files as contracts: what each may hold, checked where it is written and
wherever it is read (`mgrb check`, `mgrb report`, the launcher).

Run folders travel: reviewers download ones that others made. So a reader never trusts a
field's type or range, and a bad file becomes one `RunFileError` naming the file and the field,
never a crash deep in a table or a plot. Imports nothing heavy: the launcher starts from here.
"""

from __future__ import annotations

import errno
import json
import math
import os
import re
import stat
from pathlib import Path
from typing import Any
from collections.abc import Callable

from mgrb.errors import MGRBError

# An experiment's name becomes a folder and a file name: no separators, no leading dot.
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
MAX_JSON_BYTES = 32 * 1024 * 1024   # a results.json of 100 phases is well under 1 MB
MAX_EVENT_BYTES = 64 * 1024
# The kinds the trainer writes; a reader folds these and passes over others (a newer writer's).
EVENT_KINDS = ("started", "resumed", "compile", "hierarchy", "epoch", "iteration", "checkpoint",
               "eval", "finished")
EVENT_KIND = re.compile(r"^[a-z][a-z_]{0,31}$")

Check = Callable[[Any], "str | None"]  # None when the value is acceptable, else what is wrong


class RunFileError(MGRBError):
    def __init__(self, path, reason: str):
        self.path, self.reason = path, reason
        super().__init__(f"{path}: {reason}")


# -- checks -------------------------------------------------------------------------------
def number(low: float = -math.inf, high: float = math.inf, *, nullable: bool = False) -> Check:
    def check(value):
        if value is None and nullable:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"must be a number, got {_shown(value)}"
        if not math.isfinite(value) or not low <= value <= high:
            return f"must be a finite number in [{low:g}, {high:g}], got {_shown(value)}"
        return None
    return check


def integer(low: int = 0, high: int = 2**63 - 1, *, nullable: bool = False) -> Check:
    def check(value):
        if value is None and nullable:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            return f"must be an integer, got {_shown(value)}"
        if not low <= value <= high:
            return f"must be an integer in [{low}, {high}], got {_shown(value)}"
        return None
    return check


def text(*, pattern: re.Pattern | None = None, longest: int = 4096, nullable: bool = False,
         what: str = "a valid name (letters, digits, _ . -)") -> Check:
    def check(value):
        if value is None and nullable:
            return None
        if not isinstance(value, str):
            return f"must be a string, got {_shown(value)}"
        if len(value) > longest:
            return f"must be at most {longest} characters long"
        if pattern is not None and not pattern.fullmatch(value):  # match: "x\n" passes $
            return f"{_shown(value)} is not {what}"
        return None
    return check


def one_of(*choices) -> Check:
    def check(value):
        return None if value in choices and not isinstance(value, bool) else \
            f"must be one of {', '.join(map(str, choices))}, got {_shown(value)}"
    return check


def list_of(item: Check, *, longest: int = 100_000, shortest: int = 0) -> Check:
    def check(value):
        if not isinstance(value, list):
            return f"must be a list, got {_shown(value)}"
        if not shortest <= len(value) <= longest:
            return f"must hold {shortest} to {longest} items, holds {len(value)}"
        for index, element in enumerate(value):
            problem = item(element)
            if problem:
                return f"[{index}] {problem}"
        return None
    return check


def mapping(fields: dict[str, tuple[Check, bool]] | None = None, *, values: Check | None = None,
            nullable: bool = False) -> Check:
    """fields: name -> (check, required); other keys are allowed and left unchecked, so that
    a newer writer's extra fields do not break an older reader. values: a check for every
    value (a mapping of names to numbers)."""
    def check(value):
        if value is None and nullable:
            return None
        if not isinstance(value, dict):
            return f"must be a mapping, got {_shown(value)}"
        for name, (field, required) in (fields or {}).items():
            if name not in value:
                if required:
                    return f"{name}: missing"
                continue
            problem = field(value[name])
            if problem:
                return f"{name}: {problem}"
        if values is not None:
            for name, element in value.items():
                problem = values(element)
                if problem:
                    return f"{name}: {problem}"
        return None
    return check


def boolean() -> Check:
    def check(value):
        return None if isinstance(value, bool) else f"must be true or false, got {_shown(value)}"
    return check


def _shown(value) -> str:
    shown = repr(value)
    return shown if len(shown) <= 40 else shown[:37] + "..."


def format_version(newest: int) -> Check:
    """A file's format number: a file without one is of format 1, the first; a newer one than
    this code knows is refused rather than half-understood."""
    def check(value):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            return f"must be a format number (1, 2, ...), got {_shown(value)}"
        if value > newest:
            return (f"is format {value}, newer than this version of the project reads (up to "
                    f"{newest}); update the project to read it")
        return None
    return check


# -- the files ----------------------------------------------------------------------------
# The format of results.json and events.jsonl; raise it when a field changes meaning, and
# teach the readers the older formats they still accept.
RUN_FILES_FORMAT = 1
PERCENT = number(0, 100)
OPTIONAL_PERCENT = number(0, 100, nullable=True)
PHASE = mapping({"phase": (integer(0, 10_000), True), "seen_classes": (integer(1, 1_000_000), True),
                 "top1": (PERCENT, True), "top5": (OPTIONAL_PERCENT, False),
                 "old_top1": (OPTIONAL_PERCENT, False), "new_top1": (OPTIONAL_PERCENT, False)})
REPORTED = mapping({"avg_top1": (OPTIONAL_PERCENT, False), "last_top1": (OPTIONAL_PERCENT, False),
                    "tolerance": (number(0, 100), False)}, nullable=True)

# What produced the results (mgrb.version.describe); results written before 0.1.0 lack it.
ARTIFACT = mapping({
    "version": (text(longest=64), True),
    "commit": (text(pattern=re.compile(r"^[0-9a-f]{40}(-dirty)?$"), nullable=True,
                    what="a git commit (40 hex digits, -dirty when the tree had changes)"), False),
    "image": (text(pattern=re.compile(r"^sha256:[0-9a-f]{64}$"), nullable=True,
                   what="a Docker image id (sha256:...)"), False),
    "container": (boolean(), False),
})

RESULTS_CONTRACT = mapping({
    "format": (format_version(RUN_FILES_FORMAT), False),
    "experiment": (text(pattern=NAME_PATTERN), True),
    "avg_top1": (PERCENT, True),
    "last_top1": (PERCENT, True),
    "phases": (list_of(PHASE, shortest=1, longest=10_000), True),
    "dataset": (text(longest=64), False),
    "protocol": (text(longest=64), False),
    "class_order_name": (text(longest=256), False),
    "wall_time_s": (number(0), False),
    "device": (text(longest=256), False),
    "cpu_kernels": (text(longest=256, nullable=True), False),
    "git_commit": (text(longest=64, nullable=True), False),
    "artifact": (ARTIFACT, False),
    "seed": (integer(0, 2**64 - 1), False),
    "versions": (mapping(values=text(longest=128, nullable=True)), False),
    "reported": (REPORTED, False),
    "config": (mapping(), False),
})

EVENT_CONTRACT = mapping({
    "event": (text(pattern=EVENT_KIND, what="an event kind (lower-case letters and _)"), True),
    "format": (format_version(RUN_FILES_FORMAT), False),  # in "started": the log's format
    "time": (number(0, 1e11), False),  # seconds since 1970, until about the year 5000
    "phase": (integer(0, 10_000), False),
    "phases": (integer(1, 10_000), False),
    "stage": (text(longest=32), False),
    "epoch": (integer(0, 1_000_000), False),
    "epochs": (integer(1, 1_000_000), False),
    "iteration": (integer(0, 10**9), False),
    "iterations": (integer(1, 10**9), False),
    "images_per_s": (number(0), False),
    "lr": (number(0), False),
    "losses": (mapping(values=number(-1e30, 1e30)), False),  # far beyond any sane loss
    "top1": (PERCENT, False), "top5": (OPTIONAL_PERCENT, False),
    "old_top1": (OPTIONAL_PERCENT, False), "new_top1": (OPTIONAL_PERCENT, False),
    "avg_top1": (PERCENT, False), "last_top1": (PERCENT, False),
    "seen_classes": (integer(1, 1_000_000), False),
    "wall_time_s": (number(0), False),
    "experiment": (text(pattern=NAME_PATTERN), False),
    "device": (text(longest=256), False),
})

PID = integer(2, 2**22)  # never 0 or 1: signalling those reaches every process one may
PROCESS = mapping({"pid": (PID, True), "start": (integer(0), True), "boot": (text(longest=64), True)},
                  nullable=True)

LOCK_CONTRACT = mapping({"pid": (PID, True), "host": (text(longest=256), True), "since": (number(0), False),
                "process": (PROCESS, False)})

LAUNCH_CONTRACT = mapping({
    "mode": (one_of("local", "docker"), True),
    "pid": (integer(2, 2**22, nullable=True), False),
    "process": (PROCESS, False),
    "command": (list_of(text(), longest=256), False),
    "gpu": (integer(0, 1024, nullable=True), False),
    "gpu_uuid": (text(longest=128, nullable=True), False),
    "device": (one_of("cpu", "cuda"), False),
    "container": (text(pattern=re.compile(r"^[0-9a-f]{64}$"), what="a full Docker container id"),
                  False),
    "name": (text(longest=256), False),
    "launched": (number(0), False),
})

EXIT_CONTRACT = mapping({"code": (integer(-255, 255), True), "time": (number(0), False)})

MAX_FAILURE_CHARS = 4000
# failed.json: why the last attempt at an unfinished run ended in an error (gone once it is tried again)
FAILED_CONTRACT = mapping({"message": (text(longest=MAX_FAILURE_CHARS), True),
                           "kind": (text(longest=128), False), "time": (number(0, 1e11), False)})

SLURM_JOB_ID = re.compile(r"^(\d+)(?:_(\d+))?$")  # a job, or one task of an array: 12 or 12_3
# slurm.json: the Slurm job that runs the folder (mgrb/pipeline/slurm_jobs.py)
SLURM_CONTRACT = mapping({
    "job_id": (text(pattern=SLURM_JOB_ID, longest=40, what="a Slurm job id (12 or 12_3)"), True),
    "job_name": (text(longest=256), True), "cluster": (text(longest=256), True),
    "submitted": (number(0, 1e11), True), "submitit_folder": (text(), True),
    "log": (text(), True)})

CONTRACTS = {"results": RESULTS_CONTRACT, "event": EVENT_CONTRACT, "lock": LOCK_CONTRACT,
             "launch": LAUNCH_CONTRACT, "exit": EXIT_CONTRACT, "failed": FAILED_CONTRACT,
             "slurm": SLURM_CONTRACT}


def check(kind: str, value, path) -> dict:
    """`value` if it meets the contract of `kind`, else RunFileError naming path and field."""
    problem = CONTRACTS[kind](value)
    if problem:
        raise RunFileError(path, problem)
    return value


def parse_json(data: bytes | str, path) -> Any:
    """Strict JSON: NaN and Infinity are not numbers here, and nesting deep enough to exhaust
    the parser is a damaged file rather than a crash."""
    def refuse(constant):
        raise ValueError(f"{constant} is not a number")

    try:
        return json.loads(data, parse_constant=refuse)
    except (ValueError, RecursionError, UnicodeDecodeError) as error:
        raise RunFileError(path, f"not valid JSON ({str(error)[:80]})") from None


def read(contract: str | Check, path: str | Path, *, empty_is_missing: bool = False):
    """The file's content checked against its contract (a kind of CONTRACTS, or a check);
    None when the file does not exist (or is empty, with empty_is_missing)."""
    path = Path(path)
    handle = open_regular(path)
    if handle is None:
        return None
    with handle:
        data = handle.read(MAX_JSON_BYTES + 1)
    if len(data) > MAX_JSON_BYTES:
        raise RunFileError(path, f"larger than {MAX_JSON_BYTES >> 20} MB; not a file this "
                                 "project writes")
    if not data.strip():
        if empty_is_missing:
            return None
        raise RunFileError(path, "is empty (a write was cut short, or it is not this "
                                 "project's file)")
    value = parse_json(data, path)
    problem = (CONTRACTS[contract] if isinstance(contract, str) else contract)(value)
    if problem:
        raise RunFileError(path, problem)
    return value


_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)


def open_regular(path: Path):
    """A binary file object for a regular file, None when there is none. A run folder's
    files are read in place only: a link may point anywhere (/dev/zero never ends), and a FIFO
    would block its reader for ever, so both are refused without waiting."""
    try:
        descriptor = os.open(path, _READ_FLAGS)
    except FileNotFoundError:
        return None
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise RunFileError(path, "is a symbolic link; a run folder's files are read in "
                                     "place only (a link may point anywhere)") from None
        raise RunFileError(path, f"cannot be read ({error.strerror or error})") from None
    if not stat.S_ISREG(os.fstat(descriptor).st_mode):
        os.close(descriptor)
        raise RunFileError(path, "is not a regular file (a FIFO, device or folder)")
    return os.fdopen(descriptor, "rb")


def read_bounded(path: Path, limit: int) -> bytes:
    """Up to `limit` bytes of a regular file read in place; OSError or RunFileError if not."""
    handle = open_regular(path)
    if handle is None:
        raise FileNotFoundError(errno.ENOENT, "no such file", str(path))
    with handle:
        return handle.read(limit)


def parse_event(line: bytes) -> dict | None:
    """One line of events.jsonl, or None for a line that breaks the contract."""
    if len(line) > MAX_EVENT_BYTES:
        return None
    try:
        return check("event", parse_json(line, "events.jsonl"), "events.jsonl")
    except RunFileError:
        return None


def dumps(kind: str, value, path) -> bytes:
    """The writer's side: a value that breaks its own contract is a bug, caught before it
    reaches the disk."""
    check(kind, value, path)
    return (json.dumps(value, indent=2, allow_nan=False) + "\n").encode()
