"""Which run folders a Slurm job was submitted for, as the submitting user wrote it down.

slurm.json alone proves nothing: a copied run folder (`cp -a runs/a runs/b`) carries its job
id and name along, and anyone can write one naming a job of another user that squeue shows
them. Followed on its word, the sweep would never submit that run, `--wait` would follow the
other job, and the launcher would advise `scancel` of it.

So at submission `mgrb reproduce --executor slurm` also writes a claim beside submitit's files:
`<jobs folder>/<array job id>.mgrb-claim.json`, the job's name and the resolved path of the run
folder of each task. A slurm.json is followed only where

- that claim is a regular file owned by the user asking (another user cannot make one),
- it names the same job name and this very folder (a copy resolves to another path), and
- Slurm says the job is this user's (slurm_jobs asks squeue and sacct for the user too).
"""

from __future__ import annotations

import json
import os
import pwd
from pathlib import Path

from mgrb.store import contracts
from mgrb.store.files import atomic_write

SUFFIX = ".mgrb-claim.json"
_CLAIM = contracts.mapping({
    "job_name": (contracts.text(longest=256), True),
    "tasks": (contracts.mapping(values=contracts.text()), True)})


def claim_path(jobs_folder: str | Path, array_job_id: str) -> Path:
    return Path(jobs_folder) / f"{array_job_id}{SUFFIX}"


def write_claim(jobs_folder: Path, array_job_id: str, job_name: str,
                tasks: dict[str, Path]) -> None:
    """Written before any slurm.json of the job, so no record ever lacks its claim."""
    data = {"job_name": job_name,
            "tasks": {job_id: str(Path(folder).resolve()) for job_id, folder in tasks.items()}}
    atomic_write(claim_path(jobs_folder, array_job_id), (json.dumps(data, indent=2) + "\n").encode())


def distrust(folder: Path, job_id: str, array_job_id: str, job_name: str,
             jobs_folder: str) -> str | None:
    """Why this folder's slurm.json is not to be followed; None when its claim holds."""
    path = claim_path(jobs_folder, array_job_id)
    try:
        handle = contracts.open_regular(path)
    except contracts.RunFileError as error:
        return str(error)
    if handle is None:
        return f"no claim of its submission at {path}"
    with handle:
        owner = os.fstat(handle.fileno()).st_uid
        if owner != os.getuid():
            return f"{path} belongs to another user (uid {owner})"
        data = handle.read(contracts.MAX_JSON_BYTES + 1)
    try:
        value = contracts.parse_json(data, path)
        problem = _CLAIM(value)
        if problem:
            raise contracts.RunFileError(path, problem)
    except contracts.RunFileError as error:
        return str(error)
    if value["job_name"] != job_name:
        return f"{path} is the claim of job {value['job_name']!r}, not {job_name!r}"
    if value["tasks"].get(job_id) != str(Path(folder).resolve()):
        return f"{path} does not give job {job_id} to this folder (a copy of another run folder?)"
    return None


def this_user() -> set[str]:
    """How squeue and sacct may name the user asking: the login name, or the uid where the
    name cannot be looked up."""
    uid = os.getuid()
    try:
        return {pwd.getpwuid(uid).pw_name, str(uid)}
    except KeyError:
        return {str(uid)}
