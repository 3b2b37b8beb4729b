"""Run folders that belong to a Slurm job: `mgrb reproduce --executor slurm` leaves slurm.json
in each. Their status comes from Slurm (pending, running on another node, cancelled), since
their files alone look like a run not started or interrupted, which the launcher would start
again: two trainers on one folder.

Slurm is asked about all of them in one squeue call, at most every ASK_EVERY_S seconds: the
launcher polls about once a second, and a process start per poll would cost more than the poll.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

from mgrb.pipeline import slurm_jobs

from .explain import explain
from .runs import (ACTIVE, BROKEN, CANCELLED, FINISHED, SLURM_PENDING, SLURM_RUNNING,
                   SLURM_UNKNOWN, RunState)

ASK_EVERY_S = 10.0
# slurm_jobs' kind of a run -> the launcher's status; the most at work among an experiment's
# folders (one per seed, each its own job) decides
STATUS_OF_KIND = {slurm_jobs.RUNNING: SLURM_RUNNING, slurm_jobs.PENDING: SLURM_PENDING,
                  slurm_jobs.UNKNOWN: SLURM_UNKNOWN, slurm_jobs.CANCELLED: CANCELLED}


class SlurmWatch:
    def __init__(self, *, ask_every_s: float = ASK_EVERY_S, clock=time.monotonic):
        self.ask_every_s, self.clock = ask_every_s, clock
        self.states: dict[Path, slurm_jobs.JobRunState] = {}  # Slurm's last answer, per folder
        self.notes: list[str] = []  # why Slurm could not be asked; a slurm.json not readable
        self._asked_at: float | None = None
        self._asking = threading.Lock()

    def refresh(self, folders) -> None:
        """Asks Slurm about those of `folders` that hold slurm.json, unless it was asked less
        than ask_every_s ago or another poll is asking now: then the last answer stands. It
        waits for squeue (up to slurm_jobs.CLIENT_TIMEOUT_S): the service calls it from the
        poll's worker thread, outside its lock, so that no action waits for Slurm."""
        if not self._asking.acquire(blocking=False):
            return
        try:
            now = self.clock()
            if self._asked_at is not None and now - self._asked_at < self.ask_every_s:
                return
            self._asked_at = now
            followed = []
            try:
                followed = [Path(f) for f in folders if (Path(f) / slurm_jobs.RECORD).exists()]
                states, notes = slurm_jobs.run_states(followed) if followed else ({}, [])
            except Exception as error:  # noqa: BLE001 - a hostile run folder must not stop polls
                why = f"the Slurm jobs of the runs cannot be followed: {explain(error)}"
                states = {f: slurm_jobs.JobRunState(slurm_jobs.UNKNOWN, why) for f in followed}
                notes = [why]
            self.states, self.notes = states, notes
        finally:
            self._asking.release()

    def apply(self, state: RunState, folders) -> None:
        """An experiment's `state`, read from its files, as Slurm has it where the job of one
        of its `folders` is pending, running, cancelled, or cannot be asked about. A run with
        a process proven to be its own here, a finished run and a broken one keep theirs."""
        if state.status in (*ACTIVE, FINISHED, BROKEN):
            return
        found = []
        for folder in folders:
            if folder in self.states:
                found.append(self.states[folder])
            elif (folder / slurm_jobs.RECORD).exists():  # submitted since Slurm was last asked,
                found.append(slurm_jobs.JobRunState(  # or the first answer is still awaited
                    slurm_jobs.UNKNOWN, f"{folder / slurm_jobs.RECORD}: its Slurm job has not "
                                        "been asked about yet"))
        for kind, status in STATUS_OF_KIND.items():
            messages = [run.message for run in found if run.kind == kind]
            if messages:
                state.status, state.detail = status, "; ".join(messages)
                return
        # the job ended: the files' status stands; where they say nothing, Slurm's word (how
        # it ended, where its log is) does
        state.detail = state.detail or "; ".join(
            run.message for run in found if run.kind != slurm_jobs.FINISHED)
