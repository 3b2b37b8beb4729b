"""What a run folder's files say of its run, in one vocabulary for every reader: the report and
`mgrb check`, the Slurm executor (which adds what Slurm says of the job), and the launcher
(which adds what it knows of the process).

Finished when results.json meets its contract; failed when failed.json says so; damaged when
either breaks its contract; not finished otherwise (running, or stopped: the command that
started it resumes it).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mgrb.store import contracts
from mgrb.store.runfolder import RunFolder

FINISHED, FAILED, NOT_FINISHED, NOT_A_RUN, DAMAGED = (
    "finished", "failed", "not finished", "not a run folder", "damaged")


@dataclass(frozen=True)
class Folder:
    path: Path
    status: str                  # one of FINISHED, FAILED, NOT_FINISHED, NOT_A_RUN, DAMAGED
    results: dict | None = None  # a finished run's results.json, checked against its contract
    message: str = ""            # why it failed, or why it cannot be read
    # the file that broke its contract (DAMAGED, or an unreadable failure record), for readers
    # that name it their own way
    error: contracts.RunFileError | None = None


def read_folder(path: Path) -> Folder:
    """The state of one run folder: finished (with its results), failed, or not finished."""
    folder = RunFolder(path)
    try:
        results = contracts.read("results", folder.results_path)
    except contracts.RunFileError as error:
        return Folder(path, DAMAGED, error=error, message=(
            f"{error}; not a results file this project wrote (damaged, or made elsewhere). "
            "Move it aside and resume the run to write it anew."))
    if results is not None:
        return Folder(path, FINISHED, results=results)
    try:
        failure = folder.failure()
    except contracts.RunFileError as error:
        return Folder(path, FAILED, error=error,
                      message=f"its failure record is unreadable ({error})")
    if failure is not None:
        return Folder(path, FAILED, message=failure["message"])
    return Folder(path, NOT_FINISHED, message="running, or stopped: the command that started "
                                              "it resumes it from its last checkpoint")
