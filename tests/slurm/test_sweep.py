"""`mgrb reproduce --executor slurm` against the real local cluster (scripts/local-slurm.sh):
a digits sweep whose long run is preempted mid-run (SIGUSR2, as Slurm signals a preemption or
a coming time limit), checkpoints, requeues itself and resumes to the very numbers of an
uninterrupted run; a run cancelled before it started is reported as cancelled; a second sweep
submits nothing that is still pending or running; the report is written at the end.

The local cluster has no slurmdbd (no sacct): every state comes from squeue. Every wait polls
against a deadline."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from mgrb.cli import main
from mgrb.pipeline.slurm import DEFAULT_CONFIGS
from mgrb.pipeline.slurm_claims import write_claim
from mgrb.pipeline.slurm_jobs import ACTIVE, LOST, JobRecord, read_record, run_states, write_record
from slurm_cluster import wait_for

ROOT = Path(__file__).resolve().parents[2]
METRICS = ("top1", "top5", "old_top1", "new_top1", "per_class_top1")
QUICK = """\
name: {name}
dataset: {{name: digits}}
protocol: {{initial: 8, increment: 1, memory_total: 200}}
train: {{epochs: 1, milestones: [], stage2_epochs: 1, batch_size: 64, checkpoint_every: 1,
         log_every: 2}}
hierarchy: {{kind: vis, clusters: 2}}
"""


def _experiments(root: Path, *, demo: bool, quick: tuple[str, ...]) -> Path:
    folder = root / "experiments"
    folder.mkdir(parents=True)
    if demo:
        shutil.copy(ROOT / "experiments" / "digits_5_1.yaml", folder)
    for name in quick:
        (folder / f"{name}.yaml").write_text(QUICK.format(name=name))
    return folder


def _sweep_command(experiments: Path, root: Path, *options: str) -> list[str]:
    return [sys.executable, "-m", "mgrb.cli", "--experiments-dir", str(experiments), "reproduce",
            "--executor", "slurm", "--runs-dir", str(root / "runs"), "--reports-dir",
            str(root / "reports"), "--device", "cpu", *options]


def _training_in_phase(events: Path, phase: int) -> bool:
    if not events.exists():
        return False
    for line in events.read_text().splitlines():
        try:
            event = json.loads(line)
        except ValueError:  # the line being written
            continue
        if event.get("event") in ("epoch", "iteration") and event.get("phase", -1) >= phase:
            return True
    return False


def test_a_sweep_preempted_mid_run_resumes_exactly_and_reports_a_cancelled_run(local_slurm, tmp_path,
                                                                              monkeypatch, capsys):
    experiments = _experiments(tmp_path, demo=True, quick=("digits_cancelled", "digits_quick"))
    runs = tmp_path / "runs"
    env = local_slurm.env | {"MGRB_SLURM_POLL_S": "0.5"}
    # one job at a time (--parallel 1, and the node's one fake GPU): the cancelled run is
    # still pending when it is cancelled, and the demo's run keeps two cores to itself
    command = _sweep_command(experiments, tmp_path, "--gpus-per-run", "1", "--parallel", "1",
                             "--time-min", "60")
    sweep = subprocess.Popen([*command, "--wait"], env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        names = ("digits_5_1", "digits_cancelled", "digits_quick")
        records = wait_for(lambda: all((runs / n / "slurm.json").exists() for n in names)
                           and {n: read_record(runs / n) for n in names}, 60, "three slurm.json")
        assert len({record.array_job_id for record in records.values()}) == 1, records

        # a second sweep meanwhile: every run is pending or running, so nothing is submitted
        again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
        assert again.returncode == 0, again.stderr
        assert again.stderr.count("; not submitted again") == 3, again.stderr
        assert "submitted" not in again.stderr.replace("not submitted again", ""), again.stderr
        arrays = local_slurm.run("squeue", "--noheader", "--format=%F").stdout.split()
        assert set(arrays) == {records["digits_5_1"].array_job_id}, arrays

        # a copy of a run folder (cp -a) does not take over its job: it counts as not submitted
        copy = tmp_path / "copied" / "digits_cancelled"
        shutil.copytree(runs / "digits_cancelled", copy, symlinks=True)
        monkeypatch.setenv("SLURM_CONF", local_slurm.env["SLURM_CONF"])
        states, notes = run_states([runs / "digits_cancelled", copy])
        assert states[runs / "digits_cancelled"].kind in ACTIVE, states
        assert states[copy].kind == LOST and "did not submit for this folder" in notes[0], notes

        local_slurm.run_when_accepted("scancel", records["digits_cancelled"].job_id)

        # preempted in its second phase: Slurm's warning signal reaches the job's processes
        demo_job = records["digits_5_1"].job_id
        wait_for(lambda: _training_in_phase(runs / "digits_5_1" / "events.jsonl", 1), 120,
                 "digits_5_1 training in phase 2")
        preempt(local_slurm, demo_job)

        # it requeued itself: pending, held back about 120 s; started sooner as
        # scripts/local-slurm.sh explains (once the hold shows, and a second after the requeue)
        hurry_requeued(local_slurm, demo_job)

        out, err = sweep.communicate(timeout=300)
    finally:
        if sweep.poll() is None:
            sweep.kill()
            sweep.communicate()
    assert sweep.returncode == 1, err  # a run was cancelled
    assert "Traceback" not in err, err

    # resumed from the checkpoint of the preemption, to the numbers of an uninterrupted run
    demo = runs / "digits_5_1"
    kinds = [json.loads(line)["event"] for line in (demo / "events.jsonl").read_text().splitlines()]
    assert kinds.count("resumed") == 1 and kinds[-1] == "finished", kinds
    fresh = json.loads((demo / "results.json").read_text())
    # the same CPU kernels and thread count as the job had (docs/method.md section 10)
    threads = fresh["cpu_kernels"].rsplit("; ", 1)[1].split()[0]
    whole = subprocess.run([sys.executable, "-m", "mgrb", "run", "digits_5_1", "--device", "cpu",
                            "--out", str(tmp_path / "uninterrupted"), "--quiet"], cwd=ROOT,
                           env={**os.environ, "OMP_NUM_THREADS": threads},
                           capture_output=True, text=True, timeout=600)
    assert whole.returncode == 0, whole.stderr
    uninterrupted = json.loads((tmp_path / "uninterrupted" / "results.json").read_text())
    assert (fresh["config"], fresh["cpu_kernels"]) == \
        (uninterrupted["config"], uninterrupted["cpu_kernels"])
    assert [[p[m] for m in METRICS] for p in fresh["phases"]] == \
        [[p[m] for m in METRICS] for p in uninterrupted["phases"]]
    assert (fresh["avg_top1"], fresh["last_top1"]) == \
        (uninterrupted["avg_top1"], uninterrupted["last_top1"])
    log = Path(records["digits_5_1"].log).read_text()
    assert "this job is preempted" in log and "Requeued job" in log, log[-3000:]

    # followed to the end, then the report
    assert "digits_cancelled: cancelled (Slurm job" in err, err
    assert "slurm: 0 pending, 0 running, 2 finished, 0 failed, 1 cancelled" in err, err
    assert (runs / "digits_quick" / "results.json").exists()
    assert not (runs / "digits_cancelled" / "results.json").exists()
    report = (tmp_path / "reports" / "reproduction.md").read_text()
    assert "| digits_5_1 | digits |" in report and "| digits_quick | digits |" in report
    assert "**digits_cancelled** not finished: cancelled (Slurm job" in report, report
    assert "report:" in out

    # later, from the folders alone: the same states
    monkeypatch.setenv("SLURM_CONF", local_slurm.env["SLURM_CONF"])
    assert main(["report", str(runs), "--out", str(tmp_path / "later")]) == 0
    later = (tmp_path / "later" / "reproduction.md").read_text()
    assert "not finished: cancelled (Slurm job" in later, later

    # the finished runs are not submitted again
    capsys.readouterr()
    assert main([*command[3:], "--wait", "digits_5_1", "digits_quick"]) == 0
    err = capsys.readouterr().err
    assert err.count(": finished earlier, skipped") == 2 and "submitted" not in err, err


def test_runs_that_fail_in_their_jobs_are_reported_with_their_message(local_slurm, tmp_path):
    """One run ends in an error the trainer records (out of memory), the other's process dies
    of a signal, which the job records for it."""
    experiments = _experiments(tmp_path, demo=False, quick=("a_oom", "b_crash"))
    faults = str(Path(__file__).parents[1] / "faults")
    env = local_slurm.env | {"MGRB_SLURM_POLL_S": "0.5", "MGRB_TEST_FAULTS": "a_oom=oom,b_crash=crash",
                             "PYTHONPATH": os.pathsep.join([faults, os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run([*_sweep_command(experiments, tmp_path, "--gpus-per-run", "0"), "--wait"],
                            env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 1, result.stderr
    assert "slurm: 0 pending, 0 running, 0 finished, 2 failed, 0 cancelled" in result.stderr
    report = (tmp_path / "reports" / "reproduction.md").read_text()
    assert "**a_oom** failed: the device ran out of memory" in report, report
    assert "**b_crash** failed: the run's process was killed by SIGABRT" in report, report
    job = read_record(tmp_path / "runs" / "b_crash").job_id
    assert f"(Slurm job {job} ended FAILED)" in report


def test_a_record_is_not_taken_for_another_job_of_the_same_id(local_slurm, tmp_path, monkeypatch):
    """Job ids start again after a cluster's state is wiped: a job id alone proves nothing."""
    job = local_slurm.sbatch("-J", "someone-else", "-o", "/dev/null", "--wrap", "true")
    local_slurm.wait_state(job, "COMPLETED")
    folder = _claimed_record(tmp_path, job, "mgrb-000000")
    monkeypatch.setenv("SLURM_CONF", local_slurm.env["SLURM_CONF"])
    states, notes = run_states([folder])
    assert notes == [] and states[folder].kind == LOST, states
    assert f"Slurm no longer knows its job {job}" in states[folder].message


def _claimed_record(root: Path, job: str, name: str) -> Path:
    """A run folder whose slurm.json and claim (written by this user) name this job."""
    folder = root / "run"
    folder.mkdir()
    write_claim(root, job, name, {job: folder})
    write_record(folder, JobRecord(job, name, "localslurm", time.time(), str(root), "-"))
    return folder


@contextlib.contextmanager
def _passable_to_all(folder: Path):
    """The cluster's folder and those above it in /tmp, made passable (not readable) by every
    user for a while, so that another user's Slurm client can reach slurm.conf and munge's
    socket."""
    above = [path for path in (folder, *folder.parents) if Path("/tmp") in path.parents]
    modes = {path: path.stat().st_mode & 0o7777 for path in above}
    try:
        for path, mode in modes.items():
            path.chmod(mode | 0o111)
        yield
    finally:
        for path, mode in modes.items():
            path.chmod(mode)


def test_a_job_of_another_user_with_the_records_id_and_name_is_not_followed(local_slurm, tmp_path,
                                                                           monkeypatch):
    """squeue shows every user's jobs: a slurm.json may name one of someone else's, with its
    name. Slurm's word on its user (squeue's %u) keeps the sweep from taking it for the run's,
    so the run counts as not submitted and would be submitted again."""
    if os.getuid() != 0 or shutil.which("runuser") is None:
        pytest.skip("submitting as another user needs root and runuser")
    with _passable_to_all(local_slurm.folder):
        submitted = subprocess.run(
            ["runuser", "-u", "nobody", "--", "env", f"SLURM_CONF={local_slurm.conf}", "sbatch",
             "--parsable", "-J", "mgrb-0th3r5", "-o", "/dev/null", "--wrap", "sleep 300"],
            capture_output=True, text=True, timeout=60, cwd="/")
    assert submitted.returncode == 0, submitted.stderr
    job = submitted.stdout.strip().split(";")[0]
    try:
        local_slurm.wait_state(job, ("PENDING", "RUNNING"))
        assert local_slurm.run("squeue", "--noheader", "--jobs", job, "--format=%u").stdout.strip() \
            == "nobody"
        folder = _claimed_record(tmp_path, job, "mgrb-0th3r5")
        monkeypatch.setenv("SLURM_CONF", local_slurm.env["SLURM_CONF"])
        states, notes = run_states([folder])
        assert notes == [] and states[folder].kind == LOST, states
        assert f"Slurm no longer knows its job {job}" in states[folder].message
    finally:
        local_slurm.run("scancel", job)


def _reproduce(tmp_path, capsys, *options: str) -> tuple[int, str]:
    experiments = _experiments(tmp_path, demo=False, quick=("digits_quick",))
    code = main(_sweep_command(experiments, tmp_path, *options)[3:])
    return code, capsys.readouterr().err


def test_a_cluster_that_refuses_is_one_message_and_exit_2(local_slurm, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SLURM_CONF", local_slurm.env["SLURM_CONF"])
    code, err = _reproduce(tmp_path, capsys, "--partition", "debgu")
    assert code == 2 and err.strip().splitlines() == [
        "mgrb: error: --partition debgu: no such partition on this cluster (did you mean debug?); "
        "it has debug"], err
    # sbatch's own refusal: more GPUs than the node has
    code, err = _reproduce(tmp_path / "more", capsys, "--gpus-per-run", "2")
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert err.startswith("mgrb: error: sbatch did not take the jobs: sbatch: error: Batch job "
                          "submission failed: Requested node configuration is not available"), err
    assert not list((tmp_path / "more" / "runs").glob("*/slurm.json"))


def test_no_slurm_commands_or_no_configuration_is_one_message_and_exit_2(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    code, err = _reproduce(tmp_path, capsys)
    assert code == 2 and err.startswith("mgrb: error: --executor slurm: sbatch, srun, squeue, sinfo, "
                                        "scontrol not found on PATH"), err
    assert len(err.strip().splitlines()) == 1
    monkeypatch.undo()
    if shutil.which("sinfo") is None or any(map(os.path.exists, DEFAULT_CONFIGS)):
        return  # the configuration case needs the commands, and no system-wide slurm.conf
    monkeypatch.delenv("SLURM_CONF", raising=False)
    code, err = _reproduce(tmp_path / "unset", capsys)
    assert code == 2 and err.startswith("mgrb: error: --executor slurm: SLURM_CONF is not set"), err
    assert len(err.strip().splitlines()) == 1


def test_slurm_options_need_the_slurm_executor_and_time_above_10_minutes(tmp_path, monkeypatch, capsys):
    experiments = _experiments(tmp_path, demo=False, quick=("digits_quick",))
    local = _sweep_command(experiments, tmp_path)[3:]
    local[local.index("slurm")] = "local"
    assert main([*local, "--partition", "gpu", "--wait"]) == 2
    assert capsys.readouterr().err == "mgrb: error: --partition, --wait: only with --executor slurm\n"
    assert main([*_sweep_command(experiments, tmp_path)[3:], "--time-min", "10"]) == 2
    assert capsys.readouterr().err.startswith("mgrb: error: --time-min 10: give at least 11 minutes")
    assert not (tmp_path / "runs").exists()


def preempt(local_slurm, job: str) -> None:
    """Slurm's warning signal to a running job, as a preempting site sends it. scancel may
    answer "try again later" (seen on a loaded machine) even when the job got the signal, and
    requeued itself already: that counts as delivered; otherwise it is sent again."""
    def delivered():
        result = local_slurm.run("scancel", "--signal=USR2", job, check=False)
        info = (local_slurm.jobs(job) or [{}])[0]
        if result.returncode == 0 or info.get("Restarts", "0") != "0":
            return True
        assert "try again later" in result.stderr, result.stderr
        delivered.last = f"{result.stderr.strip()}; job {info.get('JobState')}"
        return False

    delivered.last = None
    wait_for(delivered, 60, f"USR2 delivered to job {job}", interval=1)


def hurry_requeued(local_slurm, job: str) -> None:
    """Wait until the job has requeued itself, then spare the test Slurm's 120 s hold on it.
    The hold may only be lifted once it shows and a second has passed since the requeue
    (sooner: "Job credential revoked"); where the job runs again already, or the hold does not
    show in time (a loaded machine), it is left alone: the job then starts after the hold,
    within the sweep's wait."""
    def requeued():
        info = (local_slurm.jobs(job) or [{}])[0]
        return info if info.get("Restarts", "0") != "0" else None

    info = wait_for(requeued, 120, f"job {job} requeued")

    def held():
        now = (local_slurm.jobs(job) or [{}])[0]
        if now.get("JobState") != "PENDING":
            return "not pending"
        when = now.get("EligibleTime", "Unknown")
        eligible = datetime.fromisoformat(when) if when[:1].isdigit() else None
        return "held" if eligible and eligible - datetime.now() > timedelta(seconds=60) else None

    try:
        state = wait_for(held, 30, f"job {job} held after its requeue ({info.get('JobState')})")
    except AssertionError:
        return
    if state == "held":
        seen = time.time()
        wait_for(lambda: time.time() >= int(seen) + 2, 3, "a second after the requeue", 0.05)
        local_slurm.run("scontrol", "update", f"JobId={job}", "StartTime=now", check=False)

