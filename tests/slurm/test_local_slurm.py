"""scripts/local-slurm.sh on a real cluster: batch jobs, the fake GPU, array jobs, cancel,
requeue, and two clusters side by side, the second stopped with nothing left behind.

Job states come from scontrol (there is no sacct without slurmdbd); MinJobAge keeps finished
jobs visible to it. Every wait polls against a deadline."""

from __future__ import annotations

import subprocess
import time
from datetime import datetime, timedelta

from slurm_cluster import (DAEMONS, SCRIPT, alive, marked_processes, script, start_cluster, stop_cluster,
                           wait_for)


def test_batch_job_output_and_fake_gpu(local_slurm, tmp_path):
    out = tmp_path / "job-%j.out"
    job = local_slurm.sbatch("--gres=gpu:1", "-o", str(out),
                             "--wrap", "echo CUDA_VISIBLE_DEVICES=$CUDA_VISIBLE_DEVICES; echo done")
    info = local_slurm.wait_state(job, ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL"))
    assert info["JobState"] == "COMPLETED" and info["ExitCode"] == "0:0", info
    assert (tmp_path / f"job-{job}.out").read_text().splitlines() == ["CUDA_VISIBLE_DEVICES=0", "done"]


def test_array_job_of_three_tasks(local_slurm, tmp_path):
    job = local_slurm.sbatch("--array=0-2", "-o", str(tmp_path / "array-%A_%a.out"),
                             "--wrap", "echo task=$SLURM_ARRAY_TASK_ID of=$SLURM_ARRAY_JOB_ID")

    def all_done():
        tasks = local_slurm.jobs(job)
        return tasks if len(tasks) == 3 and all(t["JobState"] == "COMPLETED" for t in tasks) else None
    tasks = wait_for(all_done, 30, f"array job {job}: 3 tasks COMPLETED")
    assert sorted(t["ArrayTaskId"] for t in tasks) == ["0", "1", "2"]
    for task in range(3):
        assert (tmp_path / f"array-{job}_{task}.out").read_text() == f"task={task} of={job}\n"


def test_scancel_of_a_running_job(local_slurm, tmp_path):
    pidfile = tmp_path / "sleep.pid"
    job = local_slurm.sbatch("-o", "/dev/null", "--wrap", f"sleep 300 & echo $! > {pidfile}; wait")
    local_slurm.wait_state(job, "RUNNING")
    sleeper = int(wait_for(lambda: pidfile.exists() and pidfile.read_text().strip(), 10, "the job's sleep pid"))
    assert alive(sleeper)
    local_slurm.run("scancel", job)
    ended = local_slurm.wait_state(job, ("CANCELLED", "COMPLETED", "FAILED"), timeout=15)
    assert ended["JobState"] == "CANCELLED", ended
    # KillWait=2: the job's processes are gone within seconds
    wait_for(lambda: not alive(sleeper), 10, f"the cancelled job's sleep (pid {sleeper}) gone")


def test_requeue_then_start_time_now_runs_again(local_slurm, tmp_path):
    out = tmp_path / "requeue.out"
    job = local_slurm.sbatch("-o", str(out), "--open-mode=append",
                             "--wrap", "echo start restarts=${SLURM_RESTART_COUNT:-0}; sleep 300")
    local_slurm.wait_state(job, "RUNNING")
    wait_for(lambda: out.exists() and "restarts=0" in out.read_text(), 10, "the first run's output")
    try:
        requeued_at = time.time()
        local_slurm.run("scontrol", "requeue", job)

        # Pending again (COMPLETING first) and held back about 120 s by its begin time. The
        # hold is set when the controller has finished the requeue, which can come after the
        # job shows PENDING: an update before it is overwritten (and the job waits 120 s).
        def held():
            info = local_slurm.jobs(job)[0]
            return (info["JobState"] == "PENDING"
                    and datetime.fromisoformat(info["EligibleTime"]) - datetime.now() > timedelta(seconds=60)
                    and info)
        pending = wait_for(held, 15, f"requeued job {job} pending, held back")
        assert pending["Restarts"] == "1", pending

        # slurmd revoked the first run's credential to the second: a start in the second of
        # the requeue fails ("Job credential revoked"), so the update comes a second later
        wait_for(lambda: time.time() >= int(requeued_at) + 2, 3, "the second after the requeue", 0.05)
        local_slurm.run("scontrol", "update", f"JobId={job}", "StartTime=now")
        local_slurm.wait_state(job, "RUNNING", timeout=10)
        wait_for(lambda: "restarts=1" in out.read_text(), 10, "the second run's output")
        assert out.read_text().count("start restarts=") == 2
    finally:
        local_slurm.run("scancel", job, check=False)
    local_slurm.wait_state(job, "CANCELLED", timeout=15)


def test_start_on_a_running_cluster_says_so(local_slurm):
    result = script("start", local_slurm.folder)
    assert result.returncode == 0, result.stderr
    assert "already running" in result.stderr
    assert result.stdout.strip() == f"export SLURM_CONF={local_slurm.conf}"
    assert {name: alive(pid) for name, pid in local_slurm.pids.items()} == dict.fromkeys(local_slurm.pids, True)
    status = script("status", local_slurm.folder)
    assert status.returncode == 0 and "debug*" in status.stdout and "JOBID" in status.stdout, status.stdout


def test_bad_usage_is_one_line_and_exit_2(tmp_path):
    for args in ([], ["start"], ["restart", str(tmp_path)], ["stop", str(tmp_path), "extra"]):
        result = subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=10)
        assert result.returncode == 2, (args, result)
        assert result.stderr.startswith("usage:") and len(result.stderr.splitlines()) == 1, (args, result)
        assert result.stdout == ""


def test_second_cluster_beside_the_first_stops_leaving_nothing(local_slurm, tmp_path):
    second = start_cluster(tmp_path / "second")
    try:
        ports = {(c.setting("SlurmctldPort"), c.setting("SlurmdPort")) for c in (local_slurm, second)}
        assert len(ports) == 2 and len({p for pair in ports for p in pair}) == 4, ports
        assert second.setting("AuthInfo") != local_slurm.setting("AuthInfo")
        assert not set(second.pids.values()) & set(local_slurm.pids.values())

        # a job there is not seen here
        done = second.sbatch("-J", "only-in-second", "-o", str(tmp_path / "second.out"), "--wrap", "true")
        assert second.wait_state(done, ("COMPLETED", "FAILED"))["JobState"] == "COMPLETED"
        assert "only-in-second" not in local_slurm.run("scontrol", "show", "job", "-o").stdout
        assert "only-in-second" not in local_slurm.run("squeue", "-h", "-o", "%j").stdout

        # a job still running when the cluster stops: stop ends it too
        pidfile = tmp_path / "second-sleep.pid"
        running = second.sbatch("-o", "/dev/null", "--wrap", f"sleep 300 & echo $! > {pidfile}; wait")
        second.wait_state(running, "RUNNING")
        sleeper = int(wait_for(lambda: pidfile.exists() and pidfile.read_text().strip(), 10, "the sleep pid"))
        # what stop must end: the daemons, the job's slurmstepd, its shell and the sleep
        processes = marked_processes(second.folder)
        assert set(second.pids.values()) < set(processes) and sleeper in processes, processes
    finally:
        seconds = stop_cluster(second)   # asserts that none of its processes is left
    assert not any(alive(pid) for pid in processes)
    assert seconds < 15

    # the first cluster did not notice
    assert all(alive(pid) for pid in local_slurm.pids.values())
    wait_for(lambda: " State=IDLE " in local_slurm.run("scontrol", "show", "node", "-o").stdout, 10,
             "the first cluster's node idle")
    local_slurm.run("srun", "-N1", "-n1", "-t", "1", "true", timeout=30)

    # stop again, status: nothing runs
    again = script("stop", second.folder)
    assert again.returncode == 0 and "not running" in again.stderr, again
    status = script("status", second.folder)
    assert status.returncode == 3 and status.stdout.strip() == "not running", status


def test_failed_start_shows_the_logs_and_stops_what_it_started(local_slurm, tmp_path):
    """No time at all to become ready: the start fails after starting the daemons. (local_slurm:
    skipped where the packages are missing, like the others.)"""
    folder = tmp_path / "failing"
    result = script("start", folder, LOCAL_SLURM_TIMEOUT="0")
    assert result.returncode == 1, result
    assert result.stdout == ""
    assert "start failed" in result.stderr and f"---- tail of {folder}/log/munged.log" in result.stderr, \
        result.stderr
    assert not marked_processes(folder), "processes of the failed cluster left running"
    assert not any((folder / "pids" / name).exists() for name in DAEMONS)
    assert script("status", folder).returncode == 3
