"""`mgrb reproduce --executor slurm`: each run (experiment and seed) a task of one Slurm array,
submitted through submitit, running on its run folder the very `mgrb run` that `mgrb
reproduce` runs locally (isolated.py).

A job that is preempted or reaches its time limit is signalled (SIGUSR2; SIGNAL_DELAY_S before
the limit). submitit then calls SlurmRun.checkpoint, which stops the trainer with SIGTERM: it
saves a checkpoint at its current batch and exits 130, as `mgrb run` does anywhere. submitit
requeues the job; started again, the job runs the same command, which resumes from that
checkpoint, so the results equal an uninterrupted run's.
"""

from __future__ import annotations

import contextlib
import io
import os
import secrets
import shutil
import signal
import subprocess
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import submitit
from submitit.core.utils import FailedJobError, FailedSubmissionError

from mgrb.errors import MGRBError
from mgrb.pipeline.isolated import INTERRUPTED, error_of
from mgrb.pipeline.slurm_claims import write_claim
from mgrb.pipeline.slurm_jobs import (ACTIVE, FINISHED, KINDS, LOST, RESUME_HINT, UNKNOWN,
                                      JobRecord, client, last_line, run_states, write_record)
from mgrb.store.runfolder import RunFolder

# submitit takes every signal for a time-out when the limit is 10 minutes or less (it deems
# 80% of the limit, but at most the limit less 10 minutes, guaranteed), so a preemption would
# use up the time-out requeues.
MIN_TIME_MIN = 11
DEFAULT_TIME_MIN = 240
SIGNAL_DELAY_S = 90       # the warning signal comes this long before the time limit
CHECKPOINT_GRACE_S = 60   # the trainer's time to checkpoint after SIGTERM: inside that warning
TIME_LIMIT_REQUEUES = 20  # a run needing more time limits than this one is not requeued again
CLIENTS = ("sbatch", "srun", "squeue", "sinfo", "scontrol")
DEFAULT_CONFIGS = ("/etc/slurm/slurm.conf", "/etc/slurm-llnl/slurm.conf",
                   "/usr/local/etc/slurm.conf", "/run/slurm/conf/slurm.conf")
POLL_VARIABLE, DEFAULT_POLL_S = "MGRB_SLURM_POLL_S", 10.0
REMINDER_S = 300          # the progress line is repeated this often when nothing changes
JOBS_FOLDER = ".slurm"    # in the runs folder: submitit's pickles and the jobs' logs


@dataclass(frozen=True)
class SlurmOptions:
    partition: str | None = None
    account: str | None = None
    time_min: int = DEFAULT_TIME_MIN
    gpus_per_run: int = 1
    parallel: int | None = None   # array tasks running at once; None: as many as Slurm allows
    wait: bool = False


class SlurmRun(submitit.helpers.Checkpointable):
    """What one job runs: `mgrb run` on one run folder, in a child process."""

    def __init__(self, command: list[str], folder: str):
        self.command, self.folder = command, folder
        self._child: subprocess.Popen | None = None

    def __call__(self) -> str:
        self._child = _start_deaf_to(_preemption_signal(), self.command)
        code = self._child.wait()
        if code == 0:
            return f"{self.folder}: finished"
        if code == INTERRUPTED:
            raise RuntimeError(f"{self.folder}: the run was stopped by a SIGTERM from outside "
                               f"the job (a cancel, or a preemption); {RESUME_HINT}")
        message = error_of(code, f"its log: {submitit.JobEnvironment().paths.stdout}")
        folder = RunFolder(self.folder)
        with contextlib.suppress(MGRBError):  # the run's own record, where it left one, says more
            if folder.failure() is None:
                folder.record_failure(message, "SlurmJob")
        raise RuntimeError(f"{self.folder}: {message}")

    def checkpoint(self) -> submitit.helpers.DelayedSubmission:
        """submitit's preemption and time-limit hook: the trainer checkpoints and exits, then
        submitit requeues the job with what this returns: the same command, which resumes."""
        if self._child is not None:
            _stop_for_checkpoint(self._child)
        return submitit.helpers.DelayedSubmission(SlurmRun(self.command, self.folder))


def _preemption_signal() -> signal.Signals:
    return getattr(signal, "SIG" + submitit.JobEnvironment.USR_SIG)


def _start_deaf_to(ignored: signal.Signals, command: list[str]) -> subprocess.Popen:
    """Slurm signals every process of the job; the trainer must stop through checkpoint()
    (SIGTERM, which it answers with a checkpoint) rather than die of the preemption signal.
    An ignored signal stays ignored across exec."""
    previous = signal.signal(ignored, signal.SIG_IGN)
    try:
        return subprocess.Popen(command, stdin=subprocess.DEVNULL)
    finally:
        signal.signal(ignored, previous)


def _stop_for_checkpoint(child: subprocess.Popen) -> None:
    """SIGTERM, then the child's exit (130 once its checkpoint is on disk). This runs in a
    signal handler, perhaps while Popen.wait holds its lock, so the child is reaped here
    directly; past CHECKPOINT_GRACE_S it is killed (its last periodic checkpoint remains)."""
    if child.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(child.pid, signal.SIGTERM)
    deadline = time.monotonic() + CHECKPOINT_GRACE_S
    while True:
        try:
            pid, _ = os.waitpid(child.pid, 0 if time.monotonic() > deadline else os.WNOHANG)
        except ChildProcessError:  # reaped already
            return
        if pid:
            return
        if time.monotonic() > deadline:
            os.kill(child.pid, signal.SIGKILL)
        else:
            time.sleep(0.1)


def check_cluster(partition: str | None) -> str:
    """The cluster's name, once its commands are found and its controller answers; an
    MGRBError saying what is missing otherwise."""
    from mgrb.config.experiment import did_you_mean

    missing = [name for name in CLIENTS if shutil.which(name) is None]
    if missing:
        raise MGRBError(f"--executor slurm: {', '.join(missing)} not found on PATH. Run this on "
                        "a machine of the cluster (a login node), where Slurm's client commands "
                        "are installed (Debian: slurm-client).")
    listing = client("sinfo", "--all", "--noheader", "--format=%R")
    if listing.returncode != 0:
        if not os.environ.get("SLURM_CONF") and not any(map(os.path.exists, DEFAULT_CONFIGS)):
            raise MGRBError("--executor slurm: SLURM_CONF is not set and there is no "
                            f"{DEFAULT_CONFIGS[0]}, so the Slurm commands cannot find the "
                            "cluster. Set SLURM_CONF to its slurm.conf (for a cluster of "
                            "scripts/local-slurm.sh: eval \"$(scripts/local-slurm.sh start DIR)\").")
        raise MGRBError(f"--executor slurm: the cluster does not answer; sinfo says: "
                        f"{last_line(listing.stderr) or f'exit {listing.returncode}'}")
    partitions = sorted({line.strip() for line in listing.stdout.splitlines() if line.strip()})
    if partition is not None and partition not in partitions:
        raise MGRBError(f"--partition {partition}: no such partition on this cluster"
                        f"{did_you_mean(partition, partitions)}; it has {', '.join(partitions)}")
    config = client("scontrol", "show", "config").stdout
    named = [line.split("=", 1)[1].strip() for line in config.splitlines()
             if line.split("=", 1)[0].strip() == "ClusterName"]
    return named[0] if named else "?"


def submit(todo: list[tuple[Path, list[str]]], options: SlurmOptions, runs_dir: Path,
           cluster: str) -> list[JobRecord]:
    """One array job, a task per (run folder, `mgrb run` command); each folder gets its
    slurm.json. Returns the records, in the order given."""
    jobs_folder = (runs_dir / JOBS_FOLDER).resolve()
    name = f"mgrb-{secrets.token_hex(3)}"  # tells this submission's jobs from others' and older
    executor = submitit.SlurmExecutor(folder=jobs_folder, max_num_timeout=TIME_LIMIT_REQUEUES)
    executor.update_parameters(**_sbatch_parameters(options, name))
    said = io.StringIO()
    try:
        with contextlib.redirect_stderr(said), contextlib.redirect_stdout(said):
            jobs = executor.submit_array([SlurmRun(command, str(folder.resolve()))
                                          for folder, command in todo])
    except (FailedJobError, FailedSubmissionError, OSError) as error:
        why = last_line(str(error)) or last_line(said.getvalue()) or type(error).__name__
        raise MGRBError(f"sbatch did not take the jobs: {why} (asked for: "
                        f"{_described(options)})") from None
    submitted = time.time()
    records = [JobRecord(job.job_id, name, cluster, submitted, str(jobs_folder),
                         str(job.paths.stdout)) for job in jobs]
    for array_job_id in {record.array_job_id for record in records}:  # one, from one array
        write_claim(jobs_folder, array_job_id, name,
                    {record.job_id: folder for (folder, _), record in zip(todo, records)
                     if record.array_job_id == array_job_id})
    for (folder, _), record in zip(todo, records):
        write_record(folder, record)
    return records


def _sbatch_parameters(options: SlurmOptions, name: str) -> dict:
    # --requeue: where a site makes jobs not requeueable by default (JobRequeue=0), the job
    # could not requeue itself after its checkpoint; it also requeues a job whose node fails
    parameters = {"job_name": name, "time": options.time_min, "signal_delay_s": SIGNAL_DELAY_S,
                  "stderr_to_stdout": True, "additional_parameters": {"requeue": True}}
    optional = {"partition": options.partition, "account": options.account,
                "gpus_per_node": options.gpus_per_run or None,
                "array_parallelism": options.parallel}
    return parameters | {key: value for key, value in optional.items() if value is not None}


def _described(options: SlurmOptions) -> str:
    return ", ".join([f"partition {options.partition or '(default)'}",
                      f"account {options.account or '(default)'}",
                      f"{options.time_min} min", f"{options.gpus_per_run} GPU(s) per run"])


def follow(labels: dict[Path, str], progress, poll_s: float) -> dict:
    """Wait until none of these runs is pending or running, telling each change of a run and
    the count of each state; returns their last states."""
    started, shown, told = time.monotonic(), {}, set()
    line, line_at = "", 0.0
    while True:
        states, notes = run_states(labels)
        for note in notes:
            if note not in told:
                progress.warn(note)
                told.add(note)
        for folder, state in states.items():
            if shown.get(folder) != state.kind:
                progress.message(f"{labels[folder]}: {state.message}")
                shown[folder] = state.kind
        counts = Counter(state.kind for state in states.values())
        now_line = ", ".join(f"{counts[kind]} {kind}" for kind in KINDS
                             if counts[kind] or kind not in (LOST, UNKNOWN))
        if now_line != line or time.monotonic() - line_at >= REMINDER_S:
            minutes, seconds = divmod(int(time.monotonic() - started), 60)
            progress.message(f"slurm: {now_line} ({minutes}:{seconds:02d})")
            line, line_at = now_line, time.monotonic()
        if not any(state.kind in (*ACTIVE, UNKNOWN) for state in states.values()):
            return states
        time.sleep(poll_s)


def poll_seconds() -> float:
    text = os.environ.get(POLL_VARIABLE, str(DEFAULT_POLL_S))
    try:
        seconds = float(text)
    except ValueError:
        seconds = 0.0
    if not 0.1 <= seconds <= 3600:
        raise MGRBError(f"{POLL_VARIABLE}={text}: seconds between two looks at Slurm, from 0.1 "
                        "to 3600")
    return seconds


def sweep(options: SlurmOptions, *, planned: list, chosen: set[str], runs_dir: Path, progress,
          report) -> int:
    """Submit the planned runs (label, PlannedRun, its `mgrb run` command), unfinished ones of
    the chosen experiments, except those already pending or running in a job; with
    options.wait, follow them, then call report(failed) (this call's failures: folder ->
    (label, message)), which returns the experiments with finished runs.

    Returns 0; 1 when a run failed, was cancelled or could not be submitted; 3 (with --wait)
    when none has finished; 130 when the following was stopped (the jobs go on)."""
    from mgrb.config.schema import ABSENT_MEANS
    from mgrb.reporting.check import NOTHING_FINISHED

    poll_s = poll_seconds()
    cluster = check_cluster(options.partition)
    states, notes = run_states([run.folder for _, run, _ in planned])
    for note in notes:
        progress.warn(note)
    labels, todo, failed = {}, [], {}
    for label, run, command in planned:
        state = states[run.folder]
        labels[run.folder] = label
        if state.kind in (*ACTIVE, UNKNOWN):  # unknown: its job may still run; never twice
            progress.message(f"== {label}: {state.message}; not submitted again")
            continue
        try:
            RunFolder(run.folder).prepare(run.config.to_dict(), absent_means=ABSENT_MEANS)
        except MGRBError as error:
            failed[run.folder] = (label, str(error))
            progress.warn(f"{label}: not submitted: {error}")
            labels.pop(run.folder)
            continue
        todo.append((run.folder, command))
    if todo:
        records = submit(todo, options, runs_dir, cluster)
        progress.message(f"submitted {len(todo)} run(s) to Slurm ({cluster}) as array job "
                         f"{records[0].array_job_id} ({records[0].job_name}, "
                         f"{_described(options)}); logs in {records[0].submitit_folder}")
        for (folder, _), record in zip(todo, records):
            progress.message(f"== {labels[folder]} -> {folder}: Slurm job {record.job_id}")
    if not options.wait:
        if labels:
            progress.message(f"the jobs run on without this command: `squeue --me` shows them, "
                             f"`mgrb report {runs_dir}` writes the report once they have ended")
        return 1 if failed else 0
    try:
        final = follow(labels, progress, poll_s) if labels else {}
    except KeyboardInterrupt:
        progress.warn(f"\nstopped following; the jobs go on in Slurm. `mgrb report {runs_dir}` "
                      "writes the report once they have ended")
        return INTERRUPTED
    finished_experiments = report(failed)
    if failed or any(state.kind != FINISHED for state in final.values()):
        return 1
    return 0 if chosen & set(finished_experiments) else NOTHING_FINISHED
