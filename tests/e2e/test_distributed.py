"""One run over several processes (docs/method.md section 11), on the CPU with gloo: the same
steps as one process, the whole digits run under `mgrb run --nproc 2`, torchrun's way of
starting it, and a stop and resume under another number of processes."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from mgrb.pipeline.workers import free_port
from mgrb.store.runfolder import RunFolder

pytestmark = pytest.mark.slow

STEPS = Path(__file__).with_name("distributed_steps.py")
DIGITS = Path(__file__).resolve().parents[2] / "experiments" / "digits_5_1.yaml"


def _steps(out: Path, world: int) -> dict:
    port = str(free_port())
    processes = []
    for rank in range(world):
        environment = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port}
        if world > 1:
            environment.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world))
        processes.append(subprocess.Popen([sys.executable, str(STEPS), str(out)],
                                          env=environment, stderr=subprocess.PIPE, text=True))
    for process in processes:
        _, errors = process.communicate(timeout=300)
        assert process.returncode == 0, errors
    return torch.load(out)


def test_two_processes_take_the_same_steps_as_one(tmp_path):
    """Every loss term, the gradients and the weights, an uneven batch and an empty part
    included (distributed_steps.py)."""
    one, two = _steps(tmp_path / "one.pt", 1), _steps(tmp_path / "two.pt", 2)
    for single, shared in zip(one["steps"], two["steps"]):
        assert single.keys() == shared.keys() == {"cls", "kd", "mg", "total"}
        for name in single:
            assert shared[name] == pytest.approx(single[name], rel=1e-5)
    for name, gradient in one["gradients"].items():
        torch.testing.assert_close(two["gradients"][name], gradient, rtol=1e-4, atol=1e-6)
    # weights after the three SGD steps, and the running statistics of the synchronised
    # batch norm
    for name, value in one["state"].items():
        torch.testing.assert_close(two["state"][name], value, rtol=1e-4, atol=1e-5)
    assert any("running_var" in name for name in one["state"])


def _mgrb(*words, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mgrb", *words], capture_output=True,
                          text=True, timeout=600, **kwargs)


def _results(folder: Path) -> dict:
    return json.loads((folder / "results.json").read_text())


def _phases(results: dict) -> list:
    return [(p["top1"], p["top5"], p["per_class_top1"]) for p in results["phases"]]


@pytest.fixture(scope="module")
def two_process_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("nproc") / "run"
    done = _mgrb("run", str(DIGITS), "--device", "cpu", "--nproc", "2", "--out", str(out))
    assert done.returncode == 0, done.stderr
    return out, done


def test_a_digits_run_under_nproc_2_writes_once_and_lands_near_one_process(two_process_run):
    out, done = two_process_run
    results = _results(out)
    assert results["numerics"]["processes"] == 2
    recorded = json.loads((DIGITS.parents[1] / "docs" / "results" / "digits_5_1.json").read_text())
    # the recorded single-process run (make demo-record); the same draws, other float sums
    assert abs(results["avg_top1"] - recorded["avg_top1"]) < 1.5
    assert abs(results["last_top1"] - recorded["last_top1"]) < 3
    events = [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()]
    kinds = [event["event"] for event in events]
    assert kinds.count("started") == 1 and kinds.count("finished") == 1
    assert kinds.count("eval") == len(results["phases"]) == 6  # rank 0 alone writes
    assert done.stdout.count("average incremental top-1") == 1
    assert "in 2 processes" in done.stderr
    assert not list(out.glob("*.tmp*")) and not (out / "run.lock").exists()


def test_torchrun_starts_the_same_run(two_process_run, tmp_path):
    out = tmp_path / "torchrun"
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
         "-m", "mgrb", "run", str(DIGITS), "--device", "cpu", "--out", str(out), "--quiet"],
        capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert _phases(_results(out)) == _phases(_results(two_process_run[0]))


def _stop_when(process, events: Path, marker: str) -> None:
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None:
        if events.exists() and marker in events.read_text():
            break
        time.sleep(0.05)
    assert process.poll() is None, "the run ended before it could be stopped"
    process.send_signal(signal.SIGINT)


def test_a_stopped_two_process_run_resumes_exactly_and_under_one_process(two_process_run,
                                                                         tmp_path):
    reference = _phases(_results(two_process_run[0]))
    out = tmp_path / "run"
    command = [sys.executable, "-m", "mgrb", "run", str(DIGITS), "--device", "cpu", "--out",
               str(out), "--quiet"]
    process = subprocess.Popen([*command, "--nproc", "2"], stderr=subprocess.PIPE, text=True)
    # the processes agree on a stop at the batches they read together (the 10th of phase 1's
    # 12: log_every 10) and at each epoch's end, and save there
    _stop_when(process, out / "events.jsonl",
               '"event": "epoch", "phase": 0, "stage": "stage1", "epoch": 3,')
    _, errors = process.communicate(timeout=300)
    assert process.returncode == 130, errors
    assert errors.count("Run the same command again to resume") == 1
    assert "--nproc 2" in errors
    state = RunFolder(out).load_checkpoint(print)
    assert state["phase"] == 0 and state["stage"] == "stage1" and state["iteration"] in (0, 10)
    assert state["epoch"] >= 3
    # the same two processes go on exactly where they stopped
    copy = tmp_path / "copy"
    subprocess.run(["cp", "-a", str(out), str(copy)], check=True)
    assert _mgrb(*command[3:], "--nproc", "2").returncode == 0
    assert _phases(_results(out)) == reference
    # one process resumes it as well: the same draws, its own float sums
    resumed = _mgrb("resume", str(copy), "--device", "cpu", "--quiet")
    assert resumed.returncode == 0, resumed.stderr
    results = _results(copy)
    assert "processes" not in results["numerics"]
    assert abs(results["avg_top1"] - _results(out)["avg_top1"]) < 1.5


def test_one_process_failing_stops_the_run_with_its_error_once(tmp_path):
    """Rank 1 runs out of memory in phase 2: its error is shown, rank 0 stops (it would wait
    for rank 1 forever) and says so, the exit status is rank 1's, the checkpoint remains."""
    out = tmp_path / "run"
    faults = Path(__file__).resolve().parents[1] / "faults"
    environment = {**os.environ, "MGRB_TEST_FAULTS": "digits_5_1=oom_rank1",
                   "PYTHONPATH": os.pathsep.join([str(faults), os.environ.get("PYTHONPATH", "")])}
    done = _mgrb("run", str(DIGITS), "--device", "cpu", "--nproc", "2", "--out", str(out),
                 "--quiet", env=environment)
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("process 1 of 2: mgrb: error: the device ran out of memory") == 1
    assert "another process of this run ended" in done.stderr
    assert "internal error" not in done.stderr
    assert RunFolder(out).load_checkpoint(print)["phase"] == 1
    assert not (out / "results.json").exists()

