"""Which Slurm job runs a run folder, and what Slurm says of it.

`mgrb reproduce --executor slurm` leaves `slurm.json` in each run folder it submits: the job's
id, its name (unique to that submission), the cluster, when, and where submitit keeps its
files and the job's log. A run's state then comes from Slurm itself: squeue first (with
`--states=all` it also lists jobs that ended less than MinJobAge ago), sacct for jobs squeue no
longer knows (many small clusters run without slurmdbd, hence without sacct), and the run
folder's own files last (results.json: finished; failed.json: failed).

Job ids start again from 1 when a cluster's state is wiped: a job is taken for the record's
only when Slurm gives it the record's name and this user as well as its id. A slurm.json is
followed at all only where the submitting user's claim says the job is this folder's
(slurm_claims.py); else the run counts as not submitted.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

from mgrb.errors import MGRBError, RunFolderError
from mgrb.store.runstate import DAMAGED, FAILED as FOLDER_FAILED, FINISHED as FOLDER_FINISHED
from mgrb.store.runstate import read_folder
from mgrb.store import contracts
from mgrb.store.files import atomic_write
from mgrb.text import printable
from mgrb.store.runfolder import CHECKPOINT_NAMES, CHECKPOINTS

from .slurm_claims import distrust, this_user

RECORD = "slurm.json"
JOB_ID = contracts.SLURM_JOB_ID
CLIENT_TIMEOUT_S = 60

# What a run is, as the progress line and the report count it.
PENDING, RUNNING, FINISHED, FAILED, CANCELLED, LOST, UNKNOWN = (
    "pending", "running", "finished", "failed", "cancelled", "not finished", "unknown")
KINDS = (PENDING, RUNNING, FINISHED, FAILED, CANCELLED, LOST, UNKNOWN)
ACTIVE = (PENDING, RUNNING)  # UNKNOWN: Slurm could not be asked, so it may be either

_WAITING = {"PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESV_DEL_HOLD"}
_AT_WORK = {"RUNNING", "CONFIGURING", "COMPLETING", "SIGNALING", "STAGE_OUT", "RESIZING",
            "SUSPENDED", "STOPPED"}
_ENDED_BADLY = {"FAILED", "NODE_FAIL", "BOOT_FAIL", "OUT_OF_MEMORY", "TIMEOUT", "DEADLINE",
                "PREEMPTED", "SPECIAL_EXIT"}
RESUME_HINT = "its last checkpoint remains; `mgrb reproduce --executor slurm` again resumes it"
SUBMIT_HINT = "`mgrb reproduce --executor slurm` again submits it"
_WHY_PENDING = {"BeginTime": "requeued; Slurm holds a requeued job back a while",
                "JobArrayTaskLimit": "waiting for a slot under --parallel"}


@dataclass(frozen=True)
class JobRecord:
    job_id: str          # 12, or 12_3 for task 3 of array job 12
    job_name: str        # unique to the submission
    cluster: str
    submitted: float     # seconds since the epoch
    submitit_folder: str
    log: str             # the job's output: the trainer's progress and errors

    @property
    def array_job_id(self) -> str:
        return JOB_ID.fullmatch(self.job_id).group(1)


def write_record(folder: Path, record: JobRecord) -> None:
    path = Path(folder) / RECORD
    index = JOB_ID.fullmatch(record.job_id).group(2)
    data = {**asdict(record), "array_job_id": record.array_job_id,
            "array_index": None if index is None else int(index)}
    atomic_write(path, (json.dumps(data, indent=2) + "\n").encode())


def read_record(folder: Path) -> JobRecord | None:
    """The folder's slurm.json; None when it has none. RunFolderError names the file and the
    field when it is not one this project wrote (contracts.SLURM_CONTRACT)."""
    try:
        fields = contracts.read("slurm", Path(folder) / RECORD)
    except contracts.RunFileError as error:
        raise RunFolderError(str(error)) from None
    if fields is None:
        return None
    return JobRecord(fields["job_id"], fields["job_name"], fields["cluster"],
                     float(fields["submitted"]), fields["submitit_folder"], fields["log"])


@dataclass(frozen=True)
class SlurmState:
    state: str    # Slurm's word: PENDING, RUNNING, CANCELLED, ...
    reason: str   # why it waits (squeue's reason), or how the state was found


def query_states(records: list[JobRecord]) -> tuple[dict[str, SlurmState], str | None]:
    """job id -> what Slurm says of each record's job, for the jobs it knows; and why Slurm
    could not be asked (squeue missing or failing), None when it answered."""
    names, users = {record.job_id: record.job_name for record in records}, this_user()
    try:
        listed = _squeue(sorted({record.array_job_id for record in records}))
    except SlurmClientError as error:
        return {}, str(error)
    # another user's job, or one that merely shares an id, is not the record's
    listed = {job: (state, name, reason) for job, (state, user, name, reason) in listed.items()
              if user in users}
    states = {job: SlurmState(state, reason) for job, (state, name, reason) in listed.items()
              if names.get(job) == name}
    unknown = [record for record in records if record.job_id not in states]
    if unknown:
        accounted = _sacct([record.job_id for record in unknown])
        states.update({job: SlurmState(state, "sacct")
                       for job, (state, user, name) in accounted.items()
                       if names.get(job) == name and user in users})
    # Slurm keeps no record of an array task cancelled before it started: it only leaves the
    # array's pending set. A task missing while its array is still listed went that way.
    arrays = {(JOB_ID.fullmatch(job).group(1), name) for job, (_, name, _) in listed.items()
              if JOB_ID.fullmatch(job)}
    for record in records:
        if record.job_id not in states and "_" in record.job_id \
                and (record.array_job_id, record.job_name) in arrays:
            states[record.job_id] = SlurmState("CANCELLED", "left its array before it started")
    return states, None


class SlurmClientError(MGRBError):
    """A Slurm command that is missing or does not answer."""


def client(*args: str) -> subprocess.CompletedProcess:
    """A Slurm client command's result (it needs SLURM_CONF, or the default slurm.conf)."""
    if shutil.which(args[0]) is None:
        raise SlurmClientError(f"{args[0]}: not found on PATH, so Slurm could not be asked")
    try:
        return subprocess.run(args, capture_output=True, text=True, timeout=CLIENT_TIMEOUT_S,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise SlurmClientError(f"{args[0]}: no answer within {CLIENT_TIMEOUT_S} s") from None
    except OSError as error:
        raise SlurmClientError(f"{args[0]}: cannot be run ({error.strerror})") from None


def _squeue(array_ids: list[str]) -> dict[str, tuple[str, str, str, str]]:
    """job id -> (state, user, name, reason) of every task of these jobs that the controller
    holds."""
    if not array_ids:
        return {}
    result = client("squeue", "--noheader", "--array", "--states=all",
                     "--jobs=" + ",".join(array_ids), "--format=%i|%T|%u|%r|%j")
    if result.returncode != 0:
        if "Invalid job id" in result.stderr:  # none of them is known any more
            return {}
        raise SlurmClientError(f"squeue: {last_line(result.stderr) or f'exit {result.returncode}'}")
    listed = {}
    for line in result.stdout.splitlines():
        job, state, user, reason, name = (line.split("|", 4) + ["", "", "", ""])[:5]
        listed[job.strip()] = (state.strip(), user.strip(), name.strip(), reason.strip())
    return listed


def _sacct(job_ids: list[str]) -> dict[str, tuple[str, str, str]]:
    """job id -> (state, user, name) from the accounting database; {} where there is none."""
    try:
        result = client("sacct", "--noheader", "--parsable2", "--allocations",
                         "--jobs=" + ",".join(job_ids), "--format=JobID,State,User,JobName")
    except SlurmClientError:
        return {}
    if result.returncode != 0:  # e.g. "Slurm accounting storage is disabled"
        return {}
    found = {}
    for line in result.stdout.splitlines():
        job, state, user, name = (line.split("|", 3) + ["", "", ""])[:4]
        if JOB_ID.fullmatch(job):
            found[job] = (state.split(" ")[0], user, name)  # "CANCELLED by 1000"
    return found


def last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


@dataclass(frozen=True)
class JobRunState:
    kind: str      # one of KINDS
    message: str   # for the progress lines and the report


def run_state(folder: Path, record: JobRecord | None, slurm: SlurmState | None,
              unasked: str | None = None) -> JobRunState:
    """A run folder's state: finished when its results are there; else Slurm's word on its job;
    else what its folder says. `unasked`: why Slurm could not be asked, if it could not."""
    read = read_folder(Path(folder))
    if read.status == FOLDER_FINISHED:
        return JobRunState(FINISHED, "finished")
    # text from files and from Slurm, shown on the terminal: control characters written out
    failure = printable(read.message) if read.status in (FOLDER_FAILED, DAMAGED) else None
    if record is None:
        return JobRunState(FAILED, failure) if failure else JobRunState(LOST, read.message)
    job = f"Slurm job {record.job_id}"
    if slurm is not None:
        if slurm.state in _WAITING:
            why = "" if slurm.reason in ("", "None") else \
                f" ({_WHY_PENDING.get(slurm.reason, printable(slurm.reason))})"
            return JobRunState(PENDING, f"pending in {job}{why}")
        if slurm.state in _AT_WORK:
            return JobRunState(RUNNING, f"{slurm.state.lower()} in {job}")
        if slurm.state == "CANCELLED":
            how = f", {slurm.reason}" if slurm.reason == "left its array before it started" else ""
            return JobRunState(CANCELLED, f"cancelled ({job}{how}); {_again(folder)}")
        ended = f"{job} ended {slurm.state}"
        if slurm.state in _ENDED_BADLY or failure:
            return JobRunState(FAILED, f"{failure} ({ended})" if failure else
                            f"{ended}; {_again(folder)}; its log: {printable(record.log)}")
        return JobRunState(FAILED, f"{ended} but the run did not finish; its log: {printable(record.log)}")
    if failure:
        return JobRunState(FAILED, failure)
    if unasked:
        return JobRunState(UNKNOWN, f"not finished; Slurm could not be asked about its job "
                                 f"{record.job_id} ({unasked})")
    return JobRunState(LOST, f"not finished, and Slurm no longer knows its job {record.job_id} (it "
                          f"ended long ago, or on another cluster); {_again(folder)}; its log: "
                          f"{printable(record.log)}")


def _again(folder: Path) -> str:
    started = any((Path(folder) / CHECKPOINTS / name).exists() for name in CHECKPOINT_NAMES)
    return RESUME_HINT if started else SUBMIT_HINT


def run_states(folders) -> tuple[dict[Path, JobRunState], list[str]]:
    """The state of each run folder, asking Slurm once for all of them; and notes to show: why
    Slurm could not be asked, a slurm.json that cannot be read."""
    records, notes, distrusted = {}, [], {}
    for folder in map(Path, folders):
        try:
            record = read_record(folder)
        except RunFolderError as error:
            notes.append(f"{error}; its Slurm job is not followed")
            record = None
        why = record and distrust(folder, record.job_id, record.array_job_id, record.job_name,
                                  record.submitit_folder)
        if why:
            distrusted[folder] = (
                f"{folder / RECORD} names Slurm job {record.job_id}, which this user did not "
                f"submit for this folder ({printable(why)}); the job is not followed")
            notes.append(distrusted[folder])
            record = None
        records[folder] = record
    known = [record for record in records.values() if record is not None]
    states, unasked = query_states(known) if known else ({}, None)
    found = {folder: run_state(folder, record, record and states.get(record.job_id), unasked)
             for folder, record in records.items()}
    for folder, why in distrusted.items():
        if found[folder].kind == LOST:  # not submitted, as far as this user can tell
            found[folder] = JobRunState(LOST, f"{why}; {_again(folder)}")
    return found, notes + ([unasked] if unasked else [])


def with_slurm_states(failed: dict[str, str], unfinished: dict[str, str]
                      ) -> tuple[dict[str, str], dict[str, str]]:
    """The report's failed and unfinished runs (folder -> message), each run of a Slurm job
    described by what Slurm says: pending, running, cancelled, failed. A folder without
    slurm.json stays as it is."""
    folders = [folder for folder in [*failed, *unfinished] if (Path(folder) / RECORD).exists()]
    if not folders:
        return failed, unfinished
    states, _ = run_states(folders)
    failed, unfinished = dict(failed), dict(unfinished)
    for folder, state in states.items():
        failed.pop(str(folder), None)
        unfinished.pop(str(folder), None)
        (failed if state.kind == FAILED else unfinished)[str(folder)] = state.message
    return failed, unfinished
