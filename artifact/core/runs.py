"""What a run folder says about its run: status, progress, curves, verdicts.

Everything here reads files (events.jsonl as it grows, results.json, the launcher's records,
the trainer's lock) and never blocks on a process; the UI calls it from a worker thread.
"""

from __future__ import annotations

import json
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

from mgrb.check import check_group
from mgrb.runfolder import EVENTS, LOCK, RESULTS

from .experiments import Experiment
from .records import LOG, log_tail, pid_alive, read_exit, read_json, read_launch

# status words, in the order a run passes through them
NOT_RUN, QUEUED, RUNNING, STALLED, FINISHED, FAILED, INTERRUPTED, KILLED, UNKNOWN = (
    "not run", "queued", "running", "stalled", "finished", "failed", "interrupted", "killed",
    "unknown")


class EventTail:
    """Reads the new complete lines of an events.jsonl on each call; a line still being
    written is left for the next call, a damaged line is skipped."""

    def __init__(self, path: Path):
        self.path, self.offset, self._partial = Path(path), 0, b""

    def read_new(self) -> list[dict]:
        try:
            with open(self.path, "rb") as handle:
                size = handle.seek(0, 2)
                if size < self.offset:  # the file was replaced: start over
                    self.offset, self._partial = 0, b""
                handle.seek(self.offset)
                chunk = handle.read()
        except OSError:
            return []
        self.offset += len(chunk)
        lines = (self._partial + chunk).split(b"\n")
        self._partial = lines.pop()
        events = []
        for line in lines:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if isinstance(event, dict):
                events.append(event)
        return events


@dataclass
class Progress:
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
    losses: list[tuple[float, float]] = field(default_factory=list)  # (progress in phases, loss)
    top1: list[float] = field(default_factory=list)
    last_event: float | None = None
    session_start: tuple[float, float] | None = None  # (time, fraction) when this process began
    finished: bool = False

    def fold(self, event: dict) -> None:
        kind, now = event.get("event"), event.get("time")
        self.last_event = now if isinstance(now, (int, float)) else self.last_event
        if kind in ("started", "resumed"):
            self.phases = event.get("phases", self.phases)
            self.phase = event.get("phase", self.phase) or 0
            self.session_start = (now, self.fraction) if now else None
        elif kind in ("iteration", "epoch"):
            self.phase, self.stage = event.get("phase", self.phase), event.get("stage", self.stage)
            self.epochs = event.get("epochs", self.epochs)
            if kind == "epoch":
                self.epoch, self.iteration = event.get("epoch", 0), 0
            else:
                self.epoch = event.get("epoch", 1) - 1
                self.iteration = event.get("iteration", 0)
                self.iterations = event.get("iterations", self.iterations)
            if event.get("images_per_s") is not None:
                self.images_per_s = event["images_per_s"]
            loss = (event.get("losses") or {}).get("total")
            if loss is not None and self.stage == "stage1":
                self.losses.append((self.phase + self.phase_fraction, float(loss)))
        elif kind == "eval":
            phase = event.get("phase", len(self.top1))
            self.top1 = self.top1[:phase] + [float(event.get("top1", 0.0))]
            self.phase, self.stage, self.epoch = phase, "evaluated", 0
        elif kind == "finished":
            self.finished = True

    @property
    def phase_fraction(self) -> float:
        if self.stage in ("stage2", "evaluated"):
            return 1.0
        if not self.epochs:
            return 0.0
        within = self.iteration / self.iterations if self.iterations else 0.0
        return min((self.epoch + within) / self.epochs, 1.0)

    @property
    def fraction(self) -> float:
        if self.finished:
            return 1.0
        if not self.phases:
            return 0.0
        done = len(self.top1) if self.stage == "evaluated" else self.phase + self.phase_fraction
        return min(done / self.phases, 1.0)

    def eta(self, now: float) -> float | None:
        """Seconds left at the pace of the current process (resumed runs start afresh)."""
        if not self.session_start or not self.session_start[0]:
            return None
        start_time, start_fraction = self.session_start
        gained = self.fraction - start_fraction
        if gained <= 0.005:
            return None
        return (now - start_time) / gained * (1.0 - self.fraction)


@dataclass
class RunState:
    status: str
    detail: str = ""
    progress: Progress = field(default_factory=Progress)
    results: list[dict] = field(default_factory=list)     # results.json of each finished seed
    verdicts: list[dict] = field(default_factory=list)    # mgrb check rows when all finished
    log: list[str] = field(default_factory=list)
    pid: int | None = None
    launch: dict | None = None
    folder: Path | None = None                            # the run folder being shown

    @property
    def verdict(self) -> str | None:
        words = [row["verdict"] for row in self.verdicts]
        for word in ("below", "above", "reproduced"):
            if word in words:
                return word
        return "no reference" if words else None


class RunWatcher:
    """Keeps one experiment's event tails open so each refresh reads only what is new."""

    def __init__(self, experiment: Experiment):
        self.experiment = experiment
        self._tails = {folder: EventTail(folder / EVENTS) for folder in experiment.run_folders}
        self._progress = {folder: Progress() for folder in experiment.run_folders}

    def refresh(self, *, stall_after_s: float, probe=None, now: float | None = None) -> RunState:
        """probe(launch record) -> (alive, exit code or None, log lines) for runs the local
        process table cannot see (containers); alive None: cannot tell (no daemon)."""
        now = time.time() if now is None else now
        for folder, tail in self._tails.items():
            for event in tail.read_new():
                self._progress[folder].fold(event)
        base = self.experiment.base_folder
        launch, exit_record = read_launch(base), read_exit(base)
        log = log_tail(base / LOG)
        alive, pid = False, None
        if launch and launch.get("mode") == "docker" and probe is not None:
            alive, code, log = probe(launch)
            if code is not None and exit_record is None:
                exit_record = {"code": code}
        elif launch:
            pid = launch.get("pid")
            alive = pid_alive(pid)
        lock_pid = self._trainer_lock_pid()
        if not alive and lock_pid:  # started outside the launcher: `mgrb run`, make reproduce
            alive, pid = True, lock_pid
        return self._state(now, stall_after_s, alive, pid, launch, exit_record, log)

    def _trainer_lock_pid(self) -> int | None:
        for folder in self.experiment.run_folders:
            owner = read_json(folder / LOCK) or {}
            if owner.get("pid") and pid_alive(owner["pid"]):
                return int(owner["pid"])
        return None

    def _current(self) -> tuple[Path, Progress]:
        """The seed being trained: the first unfinished folder with events, else the last."""
        folders = self.experiment.run_folders
        for folder in folders:
            if not (folder / RESULTS).exists() and self._progress[folder].last_event:
                return folder, self._progress[folder]
        return folders[-1], self._progress[folders[-1]]

    def _state(self, now, stall_after_s, alive, pid, launch, exit_record, log) -> RunState:
        folder, progress = self._current()
        results = [r for r in (read_json(f / RESULTS) for f in self.experiment.run_folders) if r]
        state = RunState(NOT_RUN, progress=progress, results=results, log=log, pid=pid,
                         launch=launch, folder=folder)
        if len(results) == len(self.experiment.run_folders):
            state.status = FINISHED
            state.verdicts = check_group(self.experiment.name, results)
            state.detail = ", ".join(f"{row['metric']} {row['reproduced']:.2f}: {row['verdict']}"
                                     for row in state.verdicts)
        elif exit_record is not None:  # written as the supervisor ends: final even if the
            state.status, state.detail = _ended(exit_record.get("code"), log)  # pid lingers
        elif alive is None:
            state.status, state.detail = UNKNOWN, " ".join(log[-1:]) or "cannot tell"
        elif alive:
            quiet = now - (progress.last_event or (launch or {}).get("launched") or now)
            state.status = STALLED if quiet > stall_after_s else RUNNING
            if state.status == STALLED:
                state.detail = f"no events for {quiet / 60:.0f} min (stalled?)"
        elif launch:
            state.status = KILLED
            state.detail = ("its process is gone without an exit record (killed from outside, "
                            "or the machine restarted); launch again to resume")
        elif progress.last_event:
            state.status = INTERRUPTED
            state.detail = "stopped before the end; launch again to resume from its checkpoint"
        return state


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
