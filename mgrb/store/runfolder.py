"""The run folder: resolved config, event log, checkpoints, results; all writes atomic.

A reader (the terminal launcher, `mgrb check`) needs nothing but this folder: results.json
exists only once a run has finished, and every file appears whole or not at all.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import io
import json
import os
import re
import socket
import stat
import threading
import time
from pathlib import Path

import yaml

from mgrb.store import contracts as runfiles
from mgrb.errors import RunFolderError
from mgrb.store.processes import identity, is_recorded_process, pid_alive

CONFIG, EVENTS, RESULTS, LOCK = "config.yaml", "events.jsonl", "results.json", "run.lock"
CHECKPOINTS = "checkpoints"
DIGEST_LINE = 65  # a checkpoint starts with the hex SHA-256 of the rest and a newline
CHECKPOINT_NAMES = ("latest.pt.new", "latest.pt", "previous.pt")  # newest first
MAX_CONFIG_BYTES = 1024 * 1024

# The background checkpoint writer appends events while the training thread does; one lock for
# the process, so that two RunFolder objects on one folder cannot interleave either.
_EVENTS_LOCK = threading.Lock()


def atomic_write(path: Path, data: bytes) -> None:
    """Write to a temporary file beside `path`, flush it to disk, then rename over `path`.

    A full disk or an unwritable folder leaves `path` as it was and raises RunFolderError.
    """
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with os.fdopen(_create_exclusive(temporary), "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)  # a symlink at `path` is replaced, never followed
    except OSError as error:
        with contextlib.suppress(OSError):  # a folder gone or replaced: nothing to tidy
            temporary.unlink()
        raise RunFolderError(_write_failure(path, error)) from None


def _create_exclusive(path: Path) -> int:
    """A new file at `path`. Whatever is there already (a temporary of a dead process with this
    pid, or a symlink planted to redirect the write) is removed, not written through."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    try:
        return os.open(path, flags, 0o644)
    except FileExistsError:
        path.unlink()
        return os.open(path, flags, 0o644)


def _write_failure(path: Path, error: OSError) -> str:
    if error.errno == errno.ENOSPC:
        return (f"{path}: the disk is full. Nothing already saved was lost: the previous "
                f"version of this file is intact. Free some space on {path.parent} (old "
                "checkpoints of finished runs can go) and run the same command again to resume.")
    if error.errno == errno.ELOOP:
        return (f"{path}: is a symbolic link. A run folder's files are written in place only, "
                "never through a link (a folder from elsewhere may point them anywhere); "
                "remove the link, or choose another folder with --out.")
    if error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return (f"{path}: cannot write here ({error.strerror}). Make the run folder writable, "
                "or choose another one with --out.")
    return f"{path}: cannot be written ({error.strerror or error})"


def read_regular(path: Path, limit: int | None = None) -> bytes | None:
    """The bytes of a regular file, None when absent. A link, a device or a FIFO in a run
    folder is refused: `latest.pt -> /dev/zero` would never end."""
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK
                             | getattr(os, "O_CLOEXEC", 0))  # a FIFO must not block the open
    except FileNotFoundError:
        return None
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise RunFolderError(f"{path}: is a symbolic link; a run folder's files are read "
                                 "in place only. Replace it with the file itself.") from None
        raise RunFolderError(f"{path}: cannot be read ({error.strerror})") from None
    with os.fdopen(descriptor, "rb") as handle:
        if not stat.S_ISREG(os.fstat(descriptor).st_mode):
            raise RunFolderError(f"{path}: is not a regular file")
        data = handle.read() if limit is None else handle.read(limit + 1)
    if limit is not None and len(data) > limit:
        raise RunFolderError(f"{path}: larger than {limit} bytes; not a file this project writes")
    return data


class DamagedCheckpoints(RunFolderError):
    """Every checkpoint of an unfinished run is unusable: starting over needs consent."""


class RunFolder:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.checkpoints = self.path / CHECKPOINTS
        self.restart_if_damaged = False  # set by `mgrb run --restart` or the user's answer
        self._lock_descriptor: int | None = None

    # -- state seen by readers ---------------------------------------------------------
    @property
    def results_path(self) -> Path:
        return self.path / RESULTS

    @property
    def events_path(self) -> Path:
        return self.path / EVENTS

    def is_finished(self) -> bool:
        return self.results_path.exists()

    def finished_results(self) -> dict | None:
        """results.json checked against its contract; None while the run is unfinished."""
        try:
            return runfiles.read("results", self.results_path)
        except runfiles.RunFileError as error:
            raise RunFolderError(
                f"{error}. results.json is written last and whole, so this one was damaged "
                "or made elsewhere. Move it aside (e.g. rename it to results.json.damaged) and "
                "run the same command again: the run resumes from its last checkpoint and "
                "writes it anew.") from None

    def stored_config(self) -> dict | None:
        path = self.path / CONFIG
        data = read_regular(path, MAX_CONFIG_BYTES)
        if data is None:
            return None
        try:
            # the aliases a safe_load would expand are refused: this file may come from elsewhere
            # YAML 1.1 as safe_dump wrote it (mgrb.config.yamlsafe reads 1e-4 as a number, which
            # safe_dump leaves unquoted as a string); SafeLoader lets a malformed scalar
            # escape as ValueError and deep nesting as RecursionError.
            stored = yaml.load(data, Loader=_NoAliasLoader)  # noqa: S506 - a SafeLoader
        except (yaml.YAMLError, ValueError, TypeError, AttributeError, RecursionError) as error:
            raise RunFolderError(f"{path}: damaged ({str(error).splitlines()[0]}); it is not "
                                 "the file this project wrote. Choose another folder with "
                                 "--out, or delete this one to start over.") from None
        if not isinstance(stored, dict):
            raise RunFolderError(f"{path}: not a run's configuration; choose another folder "
                                 "with --out, or delete this one to start over.")
        return stored

    # -- set-up --------------------------------------------------------------------------
    def prepare(self, config: dict) -> None:
        """Create the folder, or check that an existing one holds this same experiment."""
        self._refuse_foreign()
        try:
            self.checkpoints.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise RunFolderError(f"{self.path}: cannot create the run folder: {error.strerror}. "
                                 "Choose another place with --out.") from None
        if self.checkpoints.is_symlink():
            raise RunFolderError(f"{self.checkpoints}: is a symbolic link; checkpoints are "
                                 "written in the run folder only. Remove the link.")
        stored = self.stored_config()
        changed = sorted(d for d in _differences(stored, config) if not _may_change(d)) \
            if stored is not None else []
        if changed:
            raise RunFolderError(
                f"{self.path} holds a run of a different configuration (differs in: "
                f"{', '.join(changed[:6])}). Resuming would mix two experiments: give another "
                "folder with --out, or delete this one to start over.")
        if stored != config:  # new, or only settings that do not change results differ
            atomic_write(self.path / CONFIG, yaml.safe_dump(config, sort_keys=False).encode())

    def _refuse_foreign(self) -> None:
        """Nothing is written into a folder that holds what this project did not put there."""
        if self.path.exists() and not self.path.is_dir():
            raise RunFolderError(f"{self.path}: exists and is not a folder; choose another "
                                 "place with --out.")
        if self.results_path.exists() and not (self.path / CONFIG).exists():
            raise RunFolderError(f"{self.path}: holds a results.json but no config.yaml, so it "
                                 "is not a run folder of this project (or a damaged one); "
                                 "nothing was written. Choose another folder with --out.")

    def acquire_lock(self) -> None:
        """One process per run folder, decided by the kernel: flock is released however its
        holder dies, so a stale lock goes to exactly one of the processes that try to take
        it over. The record inside (pid, host, start time) is for people and the launcher."""
        path = self.path / LOCK
        for _ in range(10):
            descriptor = _open_lock(path)
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                owner = _lock_record(descriptor)
                os.close(descriptor)
                raise RunFolderError(_in_use(self.path, owner)) from None
            if not _is_current(descriptor, path):  # unlinked by its holder as we opened it
                os.close(descriptor)
                continue
            problem = _live_holder(self.path, _lock_record(descriptor))
            if problem:
                os.close(descriptor)
                raise RunFolderError(problem)
            _write_lock_record(descriptor)
            self._lock_descriptor = descriptor
            self._remove_dead_writers_files()
            return
        raise RunFolderError(f"{path}: could not take the lock (it keeps being replaced)")

    def release_lock(self) -> None:
        if self._lock_descriptor is not None:
            # unlinked while still held: a process that opened it meanwhile sees it is stale
            with contextlib.suppress(OSError):
                (self.path / LOCK).unlink()
            os.close(self._lock_descriptor)
            self._lock_descriptor = None

    def _remove_dead_writers_files(self) -> None:
        """Temporaries of atomic_write whose process is gone (killed mid-write): each may be
        as large as a checkpoint, and nothing else would ever remove it."""
        for folder in (self.path, self.checkpoints):
            for leftover in folder.glob(".*.tmp"):
                match = _TEMPORARY.match(leftover.name)
                if match and (int(match["pid"]) == os.getpid() or not pid_alive(int(match["pid"]))):
                    with contextlib.suppress(OSError):
                        leftover.unlink()

    # -- writing -------------------------------------------------------------------------
    def append_event(self, event: dict) -> None:
        """One JSON object per line, flushed at once so a tailing reader sees it."""
        event = runfiles.check("event", {"time": round(time.time(), 3), **event},
                               self.events_path)
        line = json.dumps(event, allow_nan=False, default=float) + "\n"
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
        try:
            with _EVENTS_LOCK, os.fdopen(os.open(self.events_path, flags, 0o644), "a",
                                         encoding="utf-8") as handle:
                handle.write(line)
                handle.flush()
        except OSError as error:
            raise RunFolderError(_write_failure(self.events_path, error)) from None

    def write_results(self, results: dict) -> None:
        atomic_write(self.results_path, runfiles.dumps("results", results, self.results_path))

    def save_checkpoint(self, state: dict) -> None:
        """latest.pt replaced atomically; the one before it kept as previous.pt.

        The file starts with the SHA-256 of the rest, so a truncated or damaged checkpoint is
        recognised on loading rather than half-read. Once this returns, the checkpoint survives
        a kill and a power cut. Also the body of mgrb.training.checkpoints.CheckpointWriter's writes.
        """
        import torch

        # The digest's line is reserved in front of the serialised state so that the file is
        # hashed and written from this one buffer: a GPU run's state is hundreds of MB, and
        # every further copy of it is host memory the background writer holds.
        buffer = io.BytesIO()
        buffer.write(bytes(DIGEST_LINE))
        torch.save(state, buffer)
        with buffer.getbuffer() as data:
            data[:DIGEST_LINE] = hashlib.sha256(data[DIGEST_LINE:]).hexdigest().encode() + b"\n"
            latest = self.checkpoints / "latest.pt"
            staged = self.checkpoints / "latest.pt.new"
            _remove_partial_writes(staged)
            atomic_write(staged, data)
        try:
            if latest.exists():
                os.replace(latest, self.checkpoints / "previous.pt")
            os.replace(staged, latest)
            _fsync_directory(self.checkpoints)  # the renames themselves survive a power cut
        except OSError as error:
            raise RunFolderError(_write_failure(latest, error)) from None

    def load_checkpoint(self, warn) -> dict | None:
        """The newest intact checkpoint, or None when there is none yet.

        A damaged or unsafe one falls back to the one before it, with a warning. Loading never
        runs code from the file (weights_only: tensors and plain containers only); a file that
        needs more is refused, whoever computed its checksum. When every checkpoint is
        unusable, DamagedCheckpoints, unless restart_if_damaged says to start over.
        """
        unusable = []
        for name in CHECKPOINT_NAMES:
            path = self.checkpoints / name
            try:
                data = read_regular(path)
            except RunFolderError as error:
                unusable.append(path)
                warn(f"warning: {error}; using the checkpoint before it")
                continue
            if data is None:
                continue
            digest, _, payload = data.partition(b"\n")
            if hashlib.sha256(payload).hexdigest().encode() != digest:
                unusable.append(path)
                warn(f"warning: {path} is damaged (checksum mismatch, {len(data)} bytes); "
                     "using the checkpoint before it")
                continue
            state = _load_state(payload, path, warn)
            if state is not None:
                return state
            unusable.append(path)
        if unusable:
            self._start_over_or_stop(unusable, warn)
        return None

    def _start_over_or_stop(self, unusable: list[Path], warn) -> None:
        names = ", ".join(path.name for path in unusable)
        if not self.restart_if_damaged:
            raise DamagedCheckpoints(
                f"{self.checkpoints}: no usable checkpoint ({names}: damaged or unsafe, see "
                "the warnings above). Nothing was changed. To train this run again from the "
                "beginning, run the same command with --restart (the damaged files are kept "
                "as *.damaged).")
        for path in unusable:
            with contextlib.suppress(OSError):
                os.replace(path, path.with_name(path.name + ".damaged"))
        warn(f"warning: starting {self.path} over from the beginning; the unusable "
             f"checkpoints ({names}) are kept as *.damaged")


_TEMPORARY = re.compile(r"^\..+\.(?P<pid>[0-9]{1,10})\.tmp$")


class _NoAliasLoader(yaml.SafeLoader):
    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            raise yaml.YAMLError("holds a YAML alias, which this project never writes")
        return super().compose_node(parent, index)


def _load_state(payload: bytes, path: Path, warn) -> dict | None:
    import pickle

    import torch

    try:
        state = torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, ValueError, EOFError) as error:
        reason = str(error).strip().splitlines()[0][:160] if str(error).strip() else type(error).__name__
        warn(f"warning: {path} is refused without being loaded: it holds more than tensors "
             f"and plain values, which this project's checkpoints never do ({reason}). It may "
             "come from elsewhere; using the checkpoint before it")
        return None
    if not isinstance(state, dict):
        warn(f"warning: {path} is not a checkpoint of this project; using the one before it")
        return None
    return state


def _open_lock(path: Path) -> int:
    flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    try:
        return os.open(path, flags, 0o644)
    except OSError as error:
        raise RunFolderError(_write_failure(path, error)) from None


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
        return runfiles.check("lock", runfiles.parse_json(data, LOCK), LOCK)
    except (OSError, runfiles.RunFileError):
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
    data = runfiles.dumps("lock", record, LOCK)
    os.ftruncate(descriptor, 0)
    os.pwrite(descriptor, data, 0)
    os.fsync(descriptor)


def _remove_partial_writes(path: Path) -> None:
    """Delete what killed processes left of writing `path` (atomic_write's temporaries).

    Each is as large as a checkpoint and named after its dead process, so nothing else would
    ever replace it; the run lock ensures that no live process is writing one.
    """
    for leftover in path.parent.glob(f".{path.name}.*.tmp"):
        try:
            leftover.unlink()
        except OSError:
            pass  # a failure to tidy up must not cost the checkpoint


def _fsync_directory(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    except OSError as error:
        if error.errno != errno.EINVAL:  # a file system that cannot sync a directory
            raise
    finally:
        os.close(descriptor)


# Settings that change how a run is carried out or described, never its results.
MAY_CHANGE_ON_RESUME = ("description", "provenance", "reported", "estimate", "seeds",
                        "dataset.root", "dataset.download", "train.checkpoint_every",
                        "train.checkpoint_minutes", "train.log_every", "train.num_workers",
                        "train.eval_batch_size")


def _may_change(key: str) -> bool:
    return any(key == k or key.startswith(k + ".") for k in MAY_CHANGE_ON_RESUME)


def _differences(a, b, prefix: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        keys = set(a) | set(b)
        return [d for key in keys for d in _differences(a.get(key), b.get(key), f"{prefix}{key}.")]
    return [] if a == b else [prefix.rstrip(".")]
