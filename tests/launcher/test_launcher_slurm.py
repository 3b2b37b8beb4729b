"""Run folders of a Slurm job (slurm.json, from `mgrb reproduce --executor slurm`): the launcher
shows the job's state, asks squeue once for all of them at most every ten seconds, and never
starts such a run here while its job may be at work. squeue is a fake on PATH that answers in
the format mgrb.pipeline.slurm_jobs asks for (--format=%i|%T|%u|%r|%j)."""

import json
import os
import shutil
import time

import pytest

from artifact.core.gpu import GpuMonitor
from artifact.core.runs import (CANCELLED, INTERRUPTED, NOT_RUN, RUNNING, SLURM_PENDING,
                                SLURM_RUNNING, SLURM_UNKNOWN)
from artifact.core.service import Answer, Service
from artifact_helpers import ReplayedNvml, nvml_reading, write_experiments
from mgrb.pipeline.slurm_claims import this_user, write_claim
from mgrb.pipeline.slurm_jobs import JobRecord, write_record

JOB_NAME = "mgrb-tiny-7f3a"
ME = sorted(this_user())[-1]  # the login name where there is one


def _row(state: str, reason: str = "None", name: str = JOB_NAME, user: str = ME) -> str:
    """One line of squeue's answer about job 12."""
    return f"12|{state}|{user}|{reason}|{name}\n"


class _RecordingLauncher:
    """Stands in for LocalLauncher: what matters is whether a run is started at all."""

    def __init__(self):
        self.started = []

    def start(self, experiment, gpu, gpu_uuid=None, extra_args=(), gpu_share=1):
        self.started.append(experiment.name)

    def reap(self):
        pass


@pytest.fixture
def slurm(tmp_path, monkeypatch):
    """A bin folder that is all of PATH (no real Slurm client can answer instead), and
    `answer(stdout, code=0, stderr="")` that (re)writes its squeue; every call's arguments are
    appended to `calls`."""
    bin_dir, calls = tmp_path / "bin", tmp_path / "squeue.calls"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", str(bin_dir))

    def answer(stdout: str, code: int = 0, stderr: str = ""):
        script = bin_dir / "squeue"  # shell built-ins only: PATH holds nothing else
        script.write_text(f"#!/bin/sh\necho \"$*\" >> '{calls}'\nprintf '%s' '{stdout}'\n"
                          f"printf '%s' '{stderr}' >&2\nexit {code}\n")
        script.chmod(0o755)

    answer.calls = lambda: calls.read_text().splitlines() if calls.exists() else []
    return answer


class _Clock:
    """time.monotonic for the Slurm cache, moved by the test."""

    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _service(tmp_path) -> Service:
    """The tiny experiment's service; a clock the test moves for its Slurm cache."""
    write_experiments(tmp_path / "experiments")
    service = Service(experiments_dir=tmp_path / "experiments", runs_dir=tmp_path / "runs",
                      gpu_monitor=GpuMonitor(nvml=ReplayedNvml(nvml_reading())),
                      environ={"CUDA_VISIBLE_DEVICES": ""})
    service.local = _RecordingLauncher()
    service.slurm.clock = _Clock()
    return service


def _submit(service, tmp_path) -> None:
    """What `mgrb reproduce --executor slurm` leaves in the run folder: job 12's slurm.json."""
    (folder,) = service.experiment("tiny").run_folders
    folder.mkdir(parents=True, exist_ok=True)
    (tmp_path / "submitit").mkdir(exist_ok=True)
    write_claim(tmp_path / "submitit", "12", JOB_NAME, {"12": folder})
    write_record(folder, JobRecord("12", JOB_NAME, "lab", time.time(), str(tmp_path / "submitit"),
                                   str(tmp_path / "submitit" / "12_log.out")))


@pytest.fixture
def service(tmp_path):
    """The tiny experiment, its run folder submitted as Slurm job 12."""
    service = _service(tmp_path)
    _submit(service, tmp_path)
    return service


def _started_elsewhere(service) -> None:
    """Events from a trainer on another node: by its files alone the run looks interrupted."""
    (folder,) = service.experiment("tiny").run_folders
    (folder / "events.jsonl").write_text(json.dumps(
        {"time": time.time(), "event": "started", "phases": 3}) + "\n")


def test_a_pending_job_is_shown_and_not_launched_here(service, slurm):
    slurm(_row("PENDING", "Priority"))
    snapshot = service.poll()
    state = snapshot.states["tiny"]
    assert (state.status, state.detail) == (SLURM_PENDING, "pending in Slurm job 12 (Priority)")
    assert snapshot.messages == []
    assert slurm.calls() == ["--noheader --array --states=all --jobs=12 --format=%i|%T|%u|%r|%j"]

    launched = service.launch(["tiny"])
    assert launched.queued == [] and service.queue.names() == []
    (refusal,) = launched.refused
    assert refusal.startswith("tiny: not launched: pending in Slurm job 12 (Priority). ")
    assert "two trainers" in refusal and "scancel" in refusal
    assert service.request_stop("tiny") == Answer(
        "tiny is Slurm's to stop (pending in Slurm job 12 (Priority)): scancel its job",
        done=False)
    service.poll()
    assert service.local.started == []


def test_a_running_job_is_asked_about_at_most_every_ten_seconds(service, slurm):
    _started_elsewhere(service)
    slurm(_row("RUNNING"))
    service.launch(["tiny"])  # before any poll: queued, then dropped by the poll that sees it
    snapshot = service.poll()
    state = snapshot.states["tiny"]
    assert (state.status, state.detail) == (SLURM_RUNNING, "running in Slurm job 12")
    assert snapshot.messages == [
        "tiny: not launched: running in Slurm job 12. Started here as well, two trainers would "
        "write its run folder; cancel the Slurm job first (scancel) to run it here."]
    assert service.queue.names() == [] and service.local.started == []

    service.slurm.clock.now += 9
    assert service.poll().states["tiny"].status == SLURM_RUNNING  # from the cache
    assert len(slurm.calls()) == 1
    slurm(_row("COMPLETED"))
    service.slurm.clock.now += 1
    state = service.poll().states["tiny"]  # ended without results: the files' status again
    assert len(slurm.calls()) == 2
    assert state.status == INTERRUPTED and "resume" in state.detail


def test_a_cancelled_job_says_so_and_may_be_launched_here(service, slurm):
    _started_elsewhere(service)
    slurm(_row("CANCELLED"))
    state = service.poll().states["tiny"]
    assert state.status == CANCELLED
    assert state.detail.startswith("cancelled (Slurm job 12); ")
    assert service.launch(["tiny"]).refused == []
    assert service.poll().states["tiny"].status == RUNNING
    assert service.local.started == ["tiny"]


def test_a_job_of_another_name_is_not_this_runs(service, slurm):
    """Job ids start again from 1 when a cluster's state is wiped: job 12 is now another's."""
    slurm(_row("RUNNING", name="someone-else"))
    state = service.poll().states["tiny"]
    assert state.status == NOT_RUN and "Slurm no longer knows its job 12" in state.detail
    service.launch(["tiny"])
    assert service.poll().states["tiny"].status == RUNNING



def test_a_job_of_another_user_is_not_this_runs(service, slurm):
    """A slurm.json naming a job of someone else's that squeue shows: its id and name match,
    its user does not. The run may be launched here, and nobody is told to scancel it."""
    slurm(_row("RUNNING", user="someone-else"))
    state = service.poll().states["tiny"]
    assert state.status == NOT_RUN and "Slurm no longer knows its job 12" in state.detail
    assert "scancel" not in state.detail
    service.launch(["tiny"])
    assert service.poll().states["tiny"].status == RUNNING


def test_a_copied_run_folder_does_not_take_the_job_of_its_original(tmp_path, slurm):
    """`cp -a` of a run folder whose job runs: the claim gives job 12 to the original folder,
    so the copy is not Slurm's; squeue is not even asked about it."""
    service = _service(tmp_path)
    (folder,) = service.experiment("tiny").run_folders
    original = tmp_path / "elsewhere" / "tiny"
    original.mkdir(parents=True)
    (tmp_path / "submitit").mkdir()
    write_claim(tmp_path / "submitit", "12", JOB_NAME, {"12": original})
    record = JobRecord("12", JOB_NAME, "lab", time.time(), str(tmp_path / "submitit"), "-")
    write_record(original, record)
    shutil.copytree(original, folder)
    slurm(_row("RUNNING"))
    snapshot = service.poll()
    state = snapshot.states["tiny"]
    assert state.status == NOT_RUN, state
    assert "which this user did not submit for this folder" in state.detail
    assert "a copy of another run folder?" in state.detail and "scancel" not in state.detail
    assert slurm.calls() == [] and len(snapshot.messages) == 1
    service.launch(["tiny"])
    assert service.poll().states["tiny"].status == RUNNING


@pytest.mark.parametrize("damage, why", [
    ("absent", "no claim of its submission at "),
    ("other owner", "belongs to another user (uid 4242)"),
    ("link", "is a symbolic link"), ("fifo", "is not a regular file"),
    ("other name", "is the claim of job 'mgrb-other', not 'mgrb-tiny-7f3a'")])
def test_a_record_without_this_users_claim_is_not_followed(service, slurm, tmp_path, damage, why):
    claim = tmp_path / "submitit" / "12.mgrb-claim.json"
    if damage == "absent":
        claim.unlink()
    elif damage == "other owner":
        if os.getuid() != 0:
            pytest.skip("giving a file to another user needs root")
        os.chown(claim, 4242, 4242)
    elif damage == "fifo":  # answered at once: a FIFO is never opened blocking
        claim.unlink()
        os.mkfifo(claim)
    elif damage == "link":
        claim.rename(claim.with_suffix(".real"))
        claim.symlink_to(claim.with_suffix(".real"))
    else:
        (folder,) = service.experiment("tiny").run_folders
        write_claim(tmp_path / "submitit", "12", "mgrb-other", {"12": folder})
    slurm(_row("RUNNING"))
    snapshot = service.poll()
    assert snapshot.states["tiny"].status == NOT_RUN
    (message,) = snapshot.messages
    assert why in message and "the job is not followed" in message, message

@pytest.mark.parametrize("broken, notice", [
    (None, "squeue: not found on PATH, so Slurm could not be asked"),
    ("exit", "squeue: slurm_load_jobs error: Unable to contact slurm controller")])
def test_slurm_that_cannot_be_asked_shows_unknown_and_is_told_once(service, slurm, broken,
                                                                   notice):
    if broken:
        slurm("", code=1, stderr="slurm_load_jobs error: Unable to contact slurm controller")
    snapshot = service.poll()
    state = snapshot.states["tiny"]
    assert state.status == SLURM_UNKNOWN and "could not be asked about its job 12" in state.detail
    assert snapshot.messages == [notice]
    for _ in range(3):  # asked again each time: the notice stands, and is not told again
        service.slurm.clock.now += 10
        snapshot = service.poll()
        assert snapshot.messages == [] and snapshot.states["tiny"].status == SLURM_UNKNOWN
    assert len(slurm.calls()) == (4 if broken else 0)
    (refusal,) = service.launch(["tiny"]).refused
    assert "could not be asked about its job 12" in refusal and service.queue.names() == []


def test_without_slurm_json_squeue_is_never_asked_and_a_new_one_is_followed(tmp_path, slurm):
    """Runs launched here cost no process start per poll. A slurm.json that appears between
    two questions to Slurm counts as a job that may be at work until Slurm has answered."""
    service = _service(tmp_path)
    assert service.poll().states["tiny"].status == NOT_RUN
    _submit(service, tmp_path)
    slurm(_row("PENDING", "Priority"))
    state = service.poll().states["tiny"]
    assert state.status == SLURM_UNKNOWN and "not been asked about yet" in state.detail
    assert service.launch(["tiny"]).queued == [] and slurm.calls() == []
    service.slurm.clock.now += 10
    assert service.poll().states["tiny"].status == SLURM_PENDING
    assert len(slurm.calls()) == 1 and service.local.started == []
