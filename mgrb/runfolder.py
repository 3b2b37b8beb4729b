"""The run folder: resolved config, event log, checkpoints, results; all writes atomic.

A reader (the terminal launcher, `mgrb check`) needs nothing but this folder: results.json
exists only once a run has finished, and every file appears whole or not at all.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import json
import os
import socket
import threading
import time
from pathlib import Path

import yaml

from .errors import RunFolderError

CONFIG, EVENTS, RESULTS, LOCK = "config.yaml", "events.jsonl", "results.json", "run.lock"
CHECKPOINTS = "checkpoints"
DIGEST_LINE = 65  # a checkpoint starts with the hex SHA-256 of the rest and a newline

# The background checkpoint writer appends events while the training thread does; one lock for
# the process, so that two RunFolder objects on one folder cannot interleave either.
_EVENTS_LOCK = threading.Lock()


def atomic_write(path: Path, data: bytes) -> None:
    """Write to a temporary file beside `path`, flush it to disk, then rename over `path`.

    A full disk or an unwritable folder leaves `path` as it was and raises RunFolderError.
    """
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(temporary, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except OSError as error:
        with contextlib.suppress(OSError):  # a folder gone or replaced: nothing to tidy
            temporary.unlink()
        raise RunFolderError(_write_failure(path, error)) from None


def _write_failure(path: Path, error: OSError) -> str:
    if error.errno == errno.ENOSPC:
        return (f"{path}: the disk is full. Nothing already saved was lost: the previous "
                f"version of this file is intact. Free some space on {path.parent} (old "
                "checkpoints of finished runs can go) and run the same command again to resume.")
    if error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return (f"{path}: cannot write here ({error.strerror}). Make the run folder writable, "
                "or choose another one with --out.")
    return f"{path}: cannot be written ({error.strerror or error})"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class RunFolder:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.checkpoints = self.path / CHECKPOINTS
        self._lock_held = False

    # -- state seen by readers ---------------------------------------------------------
    @property
    def results_path(self) -> Path:
        return self.path / RESULTS

    @property
    def events_path(self) -> Path:
        return self.path / EVENTS

    def is_finished(self) -> bool:
        return self.results_path.exists()

    def stored_config(self) -> dict | None:
        path = self.path / CONFIG
        return yaml.safe_load(path.read_text()) if path.exists() else None

    # -- set-up --------------------------------------------------------------------------
    def prepare(self, config: dict) -> None:
        """Create the folder, or check that an existing one holds this same experiment."""
        try:
            self.checkpoints.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise RunFolderError(f"{self.path}: cannot create the run folder: {error.strerror}. "
                                 "Choose another place with --out.") from None
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

    def acquire_lock(self) -> None:
        """One process per run folder; a lock left by a dead process is taken over."""
        lock = self.path / LOCK
        record = json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                             "since": time.time()}).encode()
        for _ in range(2):
            try:
                fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                try:
                    owner = json.loads(lock.read_text() or "{}")
                except (OSError, ValueError):
                    owner = {}
                same_host = owner.get("host") == socket.gethostname()
                if same_host and owner.get("pid") and _pid_alive(int(owner["pid"])):
                    raise RunFolderError(
                        f"{self.path} is in use by process {owner['pid']}; wait for it to "
                        "finish or stop it first (two trainers on one folder would corrupt "
                        "it).") from None
                if not same_host and owner.get("host"):
                    raise RunFolderError(
                        f"{self.path} is locked by a process on host {owner['host']}. If "
                        f"that run is dead, delete {lock} and try again.") from None
                lock.unlink(missing_ok=True)  # stale: its process is gone
                continue
            with os.fdopen(fd, "wb") as handle:
                handle.write(record)
            self._lock_held = True
            return
        raise RunFolderError(f"{lock}: could not take the lock")

    def release_lock(self) -> None:
        if self._lock_held:
            (self.path / LOCK).unlink(missing_ok=True)
            self._lock_held = False

    # -- writing -------------------------------------------------------------------------
    def append_event(self, event: dict) -> None:
        """One JSON object per line, flushed at once so a tailing reader sees it."""
        line = json.dumps({"time": round(time.time(), 3), **event}, allow_nan=False,
                          default=float) + "\n"
        try:
            with _EVENTS_LOCK, open(self.events_path, "a", encoding="utf-8") as handle:
                handle.write(line)
                handle.flush()
        except OSError as error:
            raise RunFolderError(_write_failure(self.events_path, error)) from None

    def write_results(self, results: dict) -> None:
        atomic_write(self.results_path, (json.dumps(results, indent=2) + "\n").encode())

    def save_checkpoint(self, state: dict) -> None:
        """latest.pt replaced atomically; the one before it kept as previous.pt.

        The file starts with the SHA-256 of the rest, so a truncated or damaged checkpoint is
        recognised on loading rather than half-read. Once this returns, the checkpoint survives
        a kill and a power cut. Also the body of mgrb.checkpoints.CheckpointWriter's writes.
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
        """The newest intact checkpoint, or None; a damaged latest.pt falls back with a warning."""
        import torch

        # A complete latest.pt.new is newer than latest.pt: a kill struck between the renames.
        for name in ("latest.pt.new", "latest.pt", "previous.pt"):
            path = self.checkpoints / name
            if not path.exists():
                continue
            data = path.read_bytes()
            digest, _, payload = data.partition(b"\n")
            if hashlib.sha256(payload).hexdigest().encode() != digest:
                warn(f"warning: {path} is damaged (checksum mismatch, {len(data)} bytes); "
                     "using the checkpoint before it")
                continue
            return torch.load(io.BytesIO(payload), map_location="cpu", weights_only=False)
        return None


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
