"""What a run folder says about its run: status, progress, curves, verdicts.

Everything here reads files (events.jsonl as it grows, results.json, the launcher's records,
the trainer's lock) and never blocks on a process; the UI calls it from a worker thread. Run
folders may come from elsewhere: a file that breaks its contract makes the run "broken", with
the file and the field in its detail, and never stops the launcher.
"""

from __future__ import annotations

import math
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

from mgrb.store import contracts
from mgrb.reporting.check import VERDICTS, check_group
from mgrb.store.contracts import RunFileError, open_regular
from mgrb.store.runfolder import EVENTS, RESULTS
from mgrb.store.runstate import FAILED as FOLDER_FAILED, FINISHED as FOLDER_FINISHED, read_folder

from .experiments import ExperimentRow
from .owners import NotOurs, trainer_pid
from .records import LOG, log_tail, read_exit, read_launch, read_lock
from .launcher import probe_local
from .settings import LOCAL

# status words, in the order a run passes through them; broken: a file of its run folder
# breaks its contract (made elsewhere, or damaged), so the launcher cannot tell
NOT_RUN, QUEUED, RUNNING, STALLED, FINISHED, FAILED, INTERRUPTED, KILLED, UNKNOWN, BROKEN = (
    "not run", "queued", "running", "stalled", "finished", "failed", "interrupted", "killed",
    "unknown", "broken")
# a run folder with slurm.json (`mgrb reproduce --executor slurm`): what Slurm says of its
# job (slurm.py); unknown: squeue could not be asked
SLURM_PENDING, SLURM_RUNNING, SLURM_UNKNOWN, CANCELLED = (
    "slurm: pending", "slurm: running", "slurm: unknown", "cancelled")
STATUSES = (NOT_RUN, QUEUED, RUNNING, STALLED, FINISHED, FAILED, INTERRUPTED, KILLED, UNKNOWN,
            BROKEN, SLURM_PENDING, SLURM_RUNNING, SLURM_UNKNOWN, CANCELLED)
ACTIVE = (RUNNING, STALLED, UNKNOWN)  # a process or container may be at work: not started again
# its Slurm job may be at work, on another node: not started here (a second trainer on its folder)
SLURM_ACTIVE = (SLURM_PENDING, SLURM_RUNNING, SLURM_UNKNOWN)
# `mgrb check`'s verdicts on a finished run (in its order), and the stages a phase goes through
REPRODUCED, ABOVE, BELOW, NO_REFERENCE = VERDICTS
STAGE1, STAGE2, EVALUATED = "stage1", "stage2", "evaluated"
LOSSES_KEPT = 2_000  # points of the loss curve: a long run must not grow without end


class EventTail:
    """Reads the new complete lines of an events.jsonl on each call; a line still being
    written is left for the next call, a line that breaks the event contract is skipped and
    counted in `skipped`. A file that is deleted or replaced is read afresh: `restarts` counts
    those, so that what was folded from the old file can be dropped."""

    CHUNK = 8 * 1024 * 1024  # per call: a huge file is read over several polls, never at once

    def __init__(self, path: Path):
        self.path, self.offset, self._partial = Path(path), 0, b""
        self.skipped, self.restarts = 0, 0
        self._overlong = False  # inside a line longer than any event: skipped to its end
        self._file: tuple[int, int] | None = None  # (device, inode) of the file being read

    def read_new(self) -> list[dict]:
        """RunFileError for a file that is not a regular one (a link, a FIFO)."""
        handle = open_regular(self.path)
        if handle is None:
            if self._file is not None:  # deleted (with its run folder, often) since the last call
                self._start_over(None)
            return []
        with handle:
            info = os.fstat(handle.fileno())
            if (info.st_dev, info.st_ino) != self._file or info.st_size < self.offset:
                self._start_over((info.st_dev, info.st_ino))
            handle.seek(self.offset)
            chunk = handle.read(self.CHUNK)
        self.offset += len(chunk)
        lines = (self._partial + chunk).split(b"\n")
        self._partial = lines.pop()
        events = [event for event in map(self._parse, lines) if event is not None]
        if len(self._partial) > contracts.MAX_EVENT_BYTES:
            self._partial, self._overlong = b"", True
        return events

    def _start_over(self, file: tuple[int, int] | None) -> None:
        if self._file is not None:
            self.restarts += 1
        self._file, self.offset, self._partial, self._overlong, self.skipped = file, 0, b"", False, 0

    def _parse(self, line: bytes) -> dict | None:
        if self._overlong:  # the end of a line already too long to be an event
            self._overlong = False
            self.skipped += 1
            return None
        if not line.strip():
            return None
        event = contracts.parse_event(line)
        if event is None:
            self.skipped += 1
        return event


@dataclass
class RunProgress:
    """Folded from the events of one run folder; `fraction` counts stage-1 epochs, which hold
    nearly all the work (stage 2 trains a linear layer on cached features)."""
    phases: int | None = None
    phase: int = 0
    stage: str = ""
    epoch: int = 0
    epochs: int | None = None
    iteration: int = 0
    iterations: int | None = None
    images_per_s: float | None = None
    # stage-1 losses against epochs counted over all phases (phase 2's first epoch follows
    # phase 1's last): every logged value (the epoch's running mean), and each epoch's mean
    losses: list[tuple[float, float]] = field(default_factory=list)
    epoch_losses: list[tuple[float, float]] = field(default_factory=list)
    phase_starts: dict[int, float] = field(default_factory=dict)  # phase -> epochs before it
    _phase_epochs: dict[int, int] = field(default_factory=dict, repr=False)
    top1: list[float] = field(default_factory=list)
    last_event: float | None = None
    # (time, fraction) at this process's first trained batch: the pace is timed from there,
    # since loading the data and building the model before it would make the first estimates
    # several times too long
    session_start: tuple[float, float] | None = None
    _timing: bool = field(default=False, repr=False)  # a process began; its first batch awaited
    finished: bool = False

    def fold(self, event) -> None:
        """Never raises: anything but an event that meets the contract is passed over (the
        tail checks what it reads; other callers may not)."""
        if not isinstance(event, dict) or contracts.CONTRACTS["event"](event):
            return
        kind, now = event["event"], event.get("time")
        self.last_event = now if now is not None else self.last_event
        if kind in ("started", "resumed"):
            self.phases = event.get("phases", self.phases)
            self.phase = event.get("phase", self.phase)
            self.session_start, self._timing = None, True
        elif kind in ("iteration", "epoch"):
            self._fold_training(kind, event)
            if self._timing and now:
                self.session_start, self._timing = (now, self.fraction), False
        elif kind == "eval":
            phase = event.get("phase", len(self.top1))
            self.top1 = self.top1[:phase] + [float(event.get("top1", 0.0))]
            self.phase, self.stage, self.epoch = phase, EVALUATED, 0
        elif kind == "finished":
            self.finished = True

    def _fold_training(self, kind: str, event: dict) -> None:
        self.phase, self.stage = event.get("phase", self.phase), event.get("stage", self.stage)
        self.epochs = event.get("epochs", self.epochs)
        if kind == "epoch":
            self.epoch, self.iteration = event.get("epoch", 0), 0
        else:
            self.epoch = max(event.get("epoch", 1) - 1, 0)
            self.iteration = event.get("iteration", 0)
            self.iterations = event.get("iterations", self.iterations)
        if event.get("images_per_s") is not None:
            self.images_per_s = event["images_per_s"]
        loss = (event.get("losses") or {}).get("total")
        if loss is not None and self.stage == STAGE1:
            self._fold_loss(float(loss), epoch_end=kind == "epoch")

    def _fold_loss(self, loss: float, *, epoch_end: bool) -> None:
        if self.epochs:
            self._phase_epochs[self.phase] = self.epochs
        if self.phase not in self.phase_starts:
            # the phases before it, each with the epochs its events gave (or this one's)
            known = [e for p, e in self._phase_epochs.items() if p < self.phase]
            self.phase_starts[self.phase] = float(
                sum(known) + (self.phase - len(known)) * (self.epochs or 0))
        within = self.iteration / self.iterations if self.iterations and not epoch_end else 0.0
        at = self.phase_starts[self.phase] + self.epoch + within
        _extend(self.losses, at, loss)
        _extend(self.epoch_losses, at, loss if epoch_end else None)

    @property
    def phase_fraction(self) -> float:
        if self.stage in (STAGE2, EVALUATED):
            return 1.0
        if not self.epochs:
            return 0.0
        within = self.iteration / self.iterations if self.iterations else 0.0
        return _share(self.epoch + within, self.epochs)

    @property
    def fraction(self) -> float:
        if self.finished:
            return 1.0
        if not self.phases:
            return 0.0
        done = len(self.top1) if self.stage == EVALUATED else self.phase + self.phase_fraction
        return _share(done, self.phases)

    def eta(self, now: float) -> float | None:
        """Seconds left at the pace of the current process since its first trained batch
        (resumed runs start afresh)."""
        if not self.session_start or not self.session_start[0]:
            return None
        start_time, start_fraction = self.session_start
        gained = self.fraction - start_fraction
        if gained <= 0.005:
            return None
        seconds = (now - start_time) / gained * (1.0 - self.fraction)
        # a clock in the events that is off (or made up) gives no estimate rather than a wild one
        return seconds if math.isfinite(seconds) and seconds >= 0 else None


def _extend(points: list[tuple[float, float]], at: float, value: float | None) -> None:
    """A point at `at` (None: none), replacing those at or after it: a run resumed from an
    earlier checkpoint trains those epochs again, and the curve shows the training that counts."""
    while points and points[-1][0] >= at:
        points.pop()
    if value is not None:
        points.append((at, value))
    if len(points) > 2 * LOSSES_KEPT:
        del points[:-LOSSES_KEPT]


def _share(done: float, total: float) -> float:
    return min(max(done / total, 0.0), 1.0)


@dataclass
class RunState:
    status: str
    detail: str = ""
    progress: RunProgress = field(default_factory=RunProgress)
    results: list[dict] = field(default_factory=list)     # results.json of each finished seed
    verdicts: list[dict] = field(default_factory=list)    # mgrb check rows when all finished
    log: list[str] = field(default_factory=list)
    pid: int | None = None                                # proven to be the run's, else None
    launch: dict | None = None
    folder: Path | None = None                            # the run folder being shown
    skipped_events: int = 0                               # damaged lines of events.jsonl

    @property
    def verdict(self) -> str | None:
        """below, above or reproduced: the first of them that a metric has; no reference when
        none has a reference; None before `mgrb check` has rows (not finished)."""
        words = [row["verdict"] for row in self.verdicts]
        for word in (BELOW, ABOVE, REPRODUCED):
            if word in words:
                return word
        return NO_REFERENCE if words else None

    def eta(self, now: float) -> float | None:
        """Seconds left, while the run is running (see RunProgress.eta); None otherwise."""
        return self.progress.eta(now) if self.status == RUNNING else None


@dataclass
class _Reading:
    """What one refresh read from the run folders, and what was wrong with them."""
    launch: dict | None = None
    exit_record: dict | None = None
    log: list[str] = field(default_factory=list)
    results: list[dict] = field(default_factory=list)
    locks: list[tuple[Path, dict]] = field(default_factory=list)  # (folder, its run.lock record)
    failure: dict | None = None  # failed.json: the last attempt (`mgrb run`) ended in an error
    alive: bool | None = False
    pid: int | None = None
    problems: list[str] = field(default_factory=list)


class RunWatcher:
    """Keeps one experiment's event tails open so each refresh reads only what is new."""

    def __init__(self, experiment: ExperimentRow):
        self.experiment = experiment
        self._tails = {folder: EventTail(folder / EVENTS) for folder in experiment.run_folders}
        self._progress = {folder: RunProgress() for folder in experiment.run_folders}

    def refresh(self, *, stall_after_s: float, probe=None, now: float | None = None) -> RunState:
        """probe(experiment, launch record) -> launcher.Probe: the word of the launcher that
        started the run (the service passes its launchers'; without one, local runs are
        probed here); alive None: cannot tell (no Docker daemon); NotOurs: launch.json names
        a process or container that is not this run's."""
        now = time.time() if now is None else now
        reading = _Reading()
        self._read_events(reading)
        self._read_records(reading)
        self._find_process(reading, probe)
        state = self._state(now, stall_after_s, reading)
        state.skipped_events = sum(tail.skipped for tail in self._tails.values())
        if reading.problems:
            state.status, state.detail = BROKEN, "; ".join(reading.problems)
        if state.skipped_events:
            state.detail = "; ".join(filter(None, [
                state.detail, f"{state.skipped_events} damaged line(s) of events.jsonl skipped"]))
        return state

    # -- reading -------------------------------------------------------------------------
    def _problem(self, reading: _Reading, error: RunFileError) -> None:
        reading.problems.append(f"{self._where(error.path)}: {error.reason}")

    def _where(self, path) -> str:
        """A file as the user finds it: relative to the experiment's folder."""
        try:
            return str(Path(path).relative_to(self.experiment.base_folder))
        except ValueError:
            return str(path)

    def _read_events(self, reading: _Reading) -> None:
        for folder, tail in self._tails.items():
            restarts = tail.restarts
            try:
                events = tail.read_new()
            except RunFileError as error:
                self._problem(reading, error)
                continue
            if tail.restarts != restarts:  # deleted or replaced: its old events no longer count
                self._progress[folder] = RunProgress()
            for event in events:
                self._progress[folder].fold(event)

    def _read_records(self, reading: _Reading) -> None:
        base = self.experiment.base_folder
        reading.launch = self._read(reading, read_launch, base)
        reading.exit_record = self._read(reading, read_exit, base)
        reading.log = self._read(reading, log_tail, base / LOG) or []
        for folder in self.experiment.run_folders:
            # what the files say, as the report and the Slurm executor read it (store layer)
            found = read_folder(folder)
            if found.error is not None:
                self._problem(reading, found.error)
            elif found.status == FOLDER_FAILED and reading.failure is None:
                reading.failure = {"message": found.message}
            elif found.status == FOLDER_FINISHED and found.results["experiment"] != self.experiment.name:
                reading.problems.append(
                    f"{self._where(folder / RESULTS)}: experiment: "
                    f"{found.results['experiment']!r} is not this experiment "
                    f"({self.experiment.name})")
            elif found.status == FOLDER_FINISHED:
                reading.results.append(found.results)
            lock = self._read(reading, read_lock, folder)
            reading.locks += [(folder, lock)] if lock else []

    def _read(self, reading: _Reading, read, path):
        try:
            return read(path)
        except RunFileError as error:
            self._problem(reading, error)
            return None

    def _find_process(self, reading: _Reading, probe) -> None:
        """Alive only when a process or container is proven to be the run's (owners.py)."""
        launch = reading.launch
        ask = probe or (probe_local if launch and launch["mode"] == LOCAL else None)
        if launch and ask is not None:
            self._ask(reading, ask)
        if not reading.alive:  # started outside the launcher: `mgrb run`, make reproduce
            reading.pid = _proven_trainer(reading.locks, reading.problems)
            reading.alive = True if reading.pid else reading.alive

    def _ask(self, reading: _Reading, probe) -> None:
        try:
            found = probe(self.experiment, reading.launch)
        except NotOurs as why:
            reading.problems.append(str(why))
            return
        reading.alive, reading.pid = found.alive, found.pid
        if found.log is not None:  # a container's output is the daemon's, not launcher.log
            reading.log = found.log
        if found.exit_code is not None and reading.exit_record is None:
            reading.exit_record = {"code": found.exit_code}

    def _current(self) -> tuple[Path, RunProgress]:
        """The seed being trained: the first unfinished folder with events, else the last."""
        folders = self.experiment.run_folders
        for folder in folders:
            if not (folder / RESULTS).exists() and self._progress[folder].last_event:
                return folder, self._progress[folder]
        return folders[-1], self._progress[folders[-1]]

    # -- the status ----------------------------------------------------------------------
    def _state(self, now: float, stall_after_s: float, reading: _Reading) -> RunState:
        folder, progress = self._current()
        launch, log = reading.launch, reading.log
        state = RunState(NOT_RUN, progress=progress, results=reading.results, log=log,
                         pid=reading.pid, launch=launch, folder=folder)
        if len(reading.results) == len(self.experiment.run_folders):
            state.status = FINISHED
            state.verdicts = check_group(self.experiment.name, reading.results)
            state.detail = ", ".join(f"{row['metric']} {row['reproduced']:.2f}: {row['verdict']}"
                                     for row in state.verdicts)
        elif reading.exit_record is not None:  # written as the supervisor ends: final even if
            state.status, state.detail = _ended(reading.exit_record["code"], log)  # pid lingers
        elif reading.alive is None:
            state.status, state.detail = UNKNOWN, " ".join(log[-1:]) or "cannot tell"
        elif reading.alive:
            quiet = now - (progress.last_event or (launch or {}).get("launched") or now)
            state.status = STALLED if quiet > stall_after_s else RUNNING
            if state.status == STALLED:
                state.detail = f"no events for {quiet / 60:.0f} min (stalled?)"
        elif reading.failure is not None:  # started elsewhere and ended in an error
            message = " ".join(reading.failure["message"].split())
            state.status = FAILED
            state.detail = (message[:300] + "...") if len(message) > 300 else message
        elif launch:
            state.status = KILLED
            state.detail = ("its process is gone without an exit record (killed from outside, "
                            "or the machine restarted); launch again to resume")
        elif progress.last_event:
            state.status = INTERRUPTED
            state.detail = "stopped before the end; launch again to resume from its checkpoint"
        return state


def _proven_trainer(locks: list[tuple[Path, dict]], problems: list[str]) -> int | None:
    """The first trainer proven to hold one of the run's folders; a live trainer named by a
    lock it does not hold (a folder copied while its run trained) is a problem to show."""
    for folder, lock in locks:
        try:
            return trainer_pid(lock, folder)
        except NotOurs as why:
            if str(why).startswith("not running here"):
                problems.append(f"{folder.name}/run.lock: {why}")
    return None


def _ended(code, log: list[str]) -> tuple[str, str]:
    if code == 130:
        return INTERRUPTED, "stopped with a checkpoint; launch again to resume"
    if isinstance(code, int) and (code < 0 or code in (137, 143)):
        number = -code if code < 0 else code - 128
        try:
            name = signal.Signals(number).name
        except ValueError:
            name = f"signal {number}"
        return KILLED, f"killed from outside ({name}); launch again to resume"
    starts = [i for i, line in enumerate(log) if line.startswith("mgrb: error")]
    reason = " ".join(log[starts[-1]:starts[-1] + 4]) if starts else (log[-1] if log else
                                                                     "no output")
    return FAILED, f"exit status {code}: {reason}"
