"""The run folder: resolved config, event log, checkpoints, results; all writes atomic.

A reader (the terminal launcher, `mgrb check`) needs nothing but this folder: results.json
exists only once a run has finished, and every file appears whole or not at all.
"""

from __future__ import annotations

import copy

import contextlib
import hashlib
import io
import json
import os
import re
import threading
import time
from pathlib import Path

import yaml

from mgrb.store import contracts, yamlsafe
from mgrb.store.files import atomic_write, fsync_directory, read_regular, write_failure
from mgrb.store.lock import RunLock
from mgrb.errors import RunFolderError
from mgrb.store.processes import pid_alive

CONFIG, EVENTS, RESULTS = "config.yaml", "events.jsonl", "results.json"
FAILED = "failed.json"  # the last attempt ended in an error; removed when the run is tried again
CHECKPOINTS = "checkpoints"
DIGEST_LINE = 65  # a checkpoint starts with the hex SHA-256 of the rest and a newline
CHECKPOINT_NAMES = ("latest.pt.new", "latest.pt", "previous.pt")  # newest first
MAX_EVENTS_BYTES = 512 << 20  # a long run logs a few MB

# The background checkpoint writer appends events while the training thread does; one lock for
# the process, so that two RunFolder objects on one folder cannot interleave either.
_EVENTS_LOCK = threading.Lock()


class DamagedCheckpoints(RunFolderError):
    """Every checkpoint of an unfinished run is unusable: starting over needs consent."""


class RunFolder:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.checkpoints = self.path / CHECKPOINTS
        self.restart_if_damaged = False  # set by `mgrb run --restart` or the user's answer
        self._lock = RunLock(self.path)

    # -- state seen by readers ---------------------------------------------------------
    @property
    def results_path(self) -> Path:
        return self.path / RESULTS

    @property
    def events_path(self) -> Path:
        return self.path / EVENTS

    def is_finished(self) -> bool:
        return self.results_path.exists()

    def holds_run(self) -> bool:
        """Whether this is a run's folder: `mgrb run` writes config.yaml before anything else;
        results.json or failed.json alone is a run copied without it."""
        return any((self.path / name).exists() for name in (CONFIG, RESULTS, FAILED))

    def failure(self) -> dict | None:
        """failed.json checked against its contract; None when the last attempt did not fail."""
        return contracts.read("failed", self.path / FAILED)

    def finished_results(self) -> dict | None:
        """results.json checked against its contract; None while the run is unfinished."""
        try:
            return contracts.read("results", self.results_path)
        except contracts.RunFileError as error:
            raise RunFolderError(
                f"{error}. results.json is written last and whole, so this one was damaged "
                "or made elsewhere. Move it aside (e.g. rename it to results.json.damaged) and "
                "run the same command again: the run resumes from its last checkpoint and "
                "writes it anew.") from None

    def stored_config(self) -> dict | None:
        # The experiment files' loader (yamlsafe): this file may come from elsewhere, so no
        # aliases, merge keys, repeated keys or 010-style integers, YAML 1.2 floats (1e-4),
        # and the size checked before the parser sees a character.
        path = self.path / CONFIG
        data = read_regular(path, yamlsafe.MAX_STORED_CHARS)
        if data is None:
            return None
        try:
            stored = yamlsafe.load_stored(data.decode("utf-8"))
        except (yaml.YAMLError, UnicodeDecodeError) as error:
            mark = getattr(error, "problem_mark", None)
            where = f"{path}:{mark.line + 1}" if mark else str(path)
            problem = getattr(error, "problem", None) or str(error).splitlines()[0]
            if not isinstance(error, yamlsafe.YAMLRefused):
                problem = f"damaged ({problem})"
            raise RunFolderError(f"{where}: {problem}; it is not the file this project wrote. "
                                 "Choose another folder with --out, or delete this one to "
                                 "start over.") from None
        if not isinstance(stored, dict):
            raise RunFolderError(f"{path}: not a run's configuration; choose another folder "
                                 "with --out, or delete this one to start over.")
        return stored

    # -- set-up --------------------------------------------------------------------------
    def prepare(self, config: dict, *, absent_means: dict[str, object] | None = None) -> None:
        """Create the folder, or check that an existing one holds this same experiment.
        `absent_means`: dotted settings added after a folder may have been made, each with the
        value that reproduces what the code did before it existed (absent from an older
        config.yaml, it is taken to have that value)."""
        self._refuse_foreign()
        try:
            self.checkpoints.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise RunFolderError(f"{self.path}: cannot create the run folder: {error.strerror}. "
                                 "Choose another place with --out.") from None
        if self.checkpoints.is_symlink():
            raise RunFolderError(f"{self.checkpoints}: is a symbolic link; checkpoints are "
                                 "written in the run folder only. Remove the link.")
        stored = with_absent(self.stored_config(), absent_means or {})
        changed = sorted(d for d in _differences(stored, config) if not may_change_on_resume(d)) \
            if stored is not None else []
        if changed:
            raise RunFolderError(
                f"{self.path} holds a run of a different configuration (differs in: "
                f"{', '.join(changed[:6])}). Resuming would mix two experiments: give another "
                "folder with --out, or delete this one to start over; `mgrb resume "
                f"{self.path}` continues the run it holds, with its own settings.")
        if stored != config:  # new, or only settings that do not change results differ
            # safe_dump's YAML, with strings that YAML 1.2 would read as floats quoted
            atomic_write(self.path / CONFIG, yamlsafe.dump(config).encode())

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
        """One trainer per run folder (store/lock.py); then what killed writers left is
        removed, as no live process of this run can be writing it."""
        self._lock.acquire()
        self._remove_dead_writers_files()

    def release_lock(self) -> None:
        self._lock.release()

    def _remove_dead_writers_files(self) -> None:
        """Temporaries of atomic_write whose process is gone (killed mid-write): each may be
        as large as a checkpoint, and nothing else would ever remove it."""
        for folder in (self.path, self.checkpoints):
            for leftover in folder.glob(".*.tmp"):
                match = _TEMPORARY.match(leftover.name)
                if match and (int(match["pid"]) == os.getpid() or not pid_alive(int(match["pid"]))):
                    with contextlib.suppress(OSError):
                        leftover.unlink()

    def recorded_events(self) -> list[dict]:
        """The events this folder's log holds that parse as objects (damaged lines skipped),
        read in place and bounded; [] without a log."""
        data = read_regular(self.events_path, MAX_EVENTS_BYTES) or b""
        events = []
        for line in data.splitlines():
            try:
                event = contracts.parse_json(line, self.events_path)
            except contracts.RunFileError:
                continue
            if isinstance(event, dict):
                events.append(event)
        return events

    # -- writing -------------------------------------------------------------------------
    def append_event(self, event: dict) -> None:
        """One JSON object per line, flushed at once so a tailing reader sees it."""
        event = contracts.check("event", {"time": round(time.time(), 3), **event},
                               self.events_path)
        line = json.dumps(event, allow_nan=False, default=float) + "\n"
        flags = os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
        try:
            with _EVENTS_LOCK, os.fdopen(os.open(self.events_path, flags, 0o644), "r+",
                                         encoding="utf-8") as handle:
                size = os.fstat(handle.fileno()).st_size
                # a write cut short (a full disk) left half a line: start a fresh one, so the
                # next event is not glued to it and lost with it
                if size and os.pread(handle.fileno(), 1, size - 1) != b"\n":
                    line = "\n" + line
                handle.write(line)
                handle.flush()
        except OSError as error:
            raise RunFolderError(write_failure(self.events_path, error)) from None

    def write_results(self, results: dict) -> None:
        atomic_write(self.results_path, contracts.dumps("results", results, self.results_path))

    def record_failure(self, message: str, kind: str) -> None:
        """failed.json, so that readers (`mgrb check`, reports) tell a run that stopped on an
        error from one still running or merely stopped."""
        path = self.path / FAILED
        record = {"message": str(message)[:contracts.MAX_FAILURE_CHARS], "kind": kind[:128],
                  "time": round(time.time(), 3)}
        atomic_write(path, contracts.dumps("failed", record, path))

    def clear_failure(self) -> None:
        """A new attempt is under way: the folder is unfinished again, no longer failed."""
        try:
            (self.path / FAILED).unlink()
        except FileNotFoundError:
            pass
        except OSError as error:  # a folder in its place (a FIFO or a link unlinks fine)
            raise RunFolderError(f"{self.path / FAILED}: cannot be removed ({error.strerror}); "
                                 "it is not a file this project writes: move it aside") from None

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
            fsync_directory(self.checkpoints)  # the renames themselves survive a power cut
        except OSError as error:
            raise RunFolderError(write_failure(latest, error)) from None

    def load_checkpoint(self, warn, check=None) -> dict | None:
        """The newest intact checkpoint, or None when there is none yet.

        A damaged or unsafe one falls back to the one before it, with a warning. Loading never
        runs code from the file (weights_only: tensors and plain containers only); a file that
        needs more is refused, whoever computed its checksum. `check(state)` says why a state
        that loaded safely still cannot be resumed from (mgrb.training.checkpoint_check): such
        a file counts as damaged too. When every checkpoint is unusable, DamagedCheckpoints,
        unless restart_if_damaged says to start over.
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
            wrong = check(state) if state is not None and check is not None else None
            if wrong:
                warn(f"warning: {path} cannot be resumed from: {wrong}; using the checkpoint "
                     "before it")
            elif state is not None:
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


# Settings that change how a run is carried out or described, never its method (torch.compile
# changes kernels, at most the last bits of a sum, as eval_batch_size does; a run started
# before compiling became the GPU default resumes compiled).
MAY_CHANGE_ON_RESUME = ("description", "provenance", "reported", "estimate", "seeds",
                        "dataset.root", "dataset.download", "train.checkpoint_every",
                        "train.checkpoint_minutes", "train.log_every", "train.num_workers",
                        "train.eval_batch_size", "train.compile")


def with_absent(config: dict | None, absent_means: dict[str, object]) -> dict | None:
    """A copy of `config` with each dotted setting it lacks set to the given value."""
    if config is None:
        return None
    config = copy.deepcopy(config)
    for dotted, value in absent_means.items():
        *sections, key = dotted.split(".")
        place = config
        for section in sections:
            place = place.get(section) if isinstance(place, dict) else None
        if isinstance(place, dict) and key not in place:
            place[key] = value
    return config


def may_change_on_resume(key: str) -> bool:
    return any(key == k or key.startswith(k + ".") for k in MAY_CHANGE_ON_RESUME)


def _differences(a, b, prefix: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        keys = set(a) | set(b)
        return [d for key in keys for d in _differences(a.get(key), b.get(key), f"{prefix}{key}.")]
    return [] if a == b else [prefix.rstrip(".")]
