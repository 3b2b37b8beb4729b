"""`make gpu-check` through its real entry point in its CPU mode, as CI runs it so that the
script cannot rot; and its judgements on outcomes it must call failures."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from artifact.core.gpu import GpuMonitor
from artifact_helpers import ReplayedNvml, nvml_reading

from benchmarks import gpu_check

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = [sys.executable, "-m", "benchmarks.gpu_check"]


def test_the_cpu_mode_runs_every_step_and_says_no_gpu_was_measured(tmp_path):
    done = subprocess.run([*SCRIPT, "--device", "cpu", "--out", str(tmp_path),
                           "--nvml-out", str(tmp_path / "nvml")], capture_output=True, text=True,
                          timeout=1200, cwd=ROOT)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (path,) = tmp_path.glob("gpu-check-CPU*.json")
    report = json.loads(path.read_text())
    names = [c["check"] for c in report["checks"]]
    assert names == ["a. tf32-compile-off", "a. bf16-compile-off", "a. tf32-compile-on",
                     "a. bf16-compile-on", "a. tf32 and bf16 agree", "b. deterministic twice",
                     "c. SIGKILL mid-run, then resume", "d. bench", "e. NVML reading",
                     "g. tf32, --nproc 2"]
    assert [c["status"] for c in report["checks"]] == ["pass"] * 8 + ["skip", "pass"]
    (agree,) = [c for c in report["checks"] if c["check"] == "a. tf32 and bf16 agree"]
    assert 0 <= agree["max_gap"] <= gpu_check.AGREEMENT_POINTS
    assert report["complete"] and set(report["unit_seconds"]) == {"a", "g", "bc", "df", "e"}
    assert report["gpu_measured"] is False and report["device_type"] == "cpu"
    (two,) = [c for c in report["checks"] if c["check"].startswith("g.")]
    assert two["processes"] == 2  # gloo on the CPU: the code path a GPU pair takes with NCCL
    compiled = [c for c in report["checks"] if c["check"].endswith("compile-on")]
    assert all(c["compile"]["graphs"] >= 1 for c in compiled)
    assert report["bench"]["fast_images_per_s"] > 0
    summary = next(tmp_path.glob("gpu-check-*.md")).read_text()
    assert "**No GPU was measured**" in summary and "| b. deterministic twice | pass |" in summary
    assert "No GPU was measured." in done.stdout
    assert "estimated" in done.stdout and "[a: " in done.stdout  # the plan, and each unit's time
    assert not (tmp_path / "nvml").exists()  # nothing recorded without a GPU


def _outcome(**changes):
    results = {"phases": [{"top1": 30.0}, {"top1": 20.0}, {"top1": 15.0}], "wall_time_s": 12.0,
               "numerics": {"precision": "bf16"}, "device": "NVIDIA H100 80GB HBM3",
               "device_uuid": "GPU-6a1c9f3e", "compile": {"enabled": True, "graphs": 3,
                                                          "fallbacks_to_eager": 0, "graph_breaks": 0}}
    for key, value in changes.items():
        results[key] = value
    return {"label": "x", "code": 0, "results": results, "output_tail": []}


@pytest.mark.parametrize("changes, words", [
    ({}, None),
    ({"numerics": {"precision": "fp32"}}, "ran in fp32"),
    ({"compile": {"enabled": True, "graphs": 8, "fallbacks_to_eager": 2, "graph_breaks": 0}},
     "fell back to eager 2 times"),
    ({"device_uuid": None, "device": "CPU (x86_64)"}, "trained on CPU (x86_64), not a GPU"),
    ({"phases": [{"top1": 1.5}, {"top1": 1.0}, {"top1": 1.0}]}, "did not learn"),
    ({"phases": [{"top1": 30.0}]}, "1 phases, not 3"),
])
def test_a_matrix_run_is_failed_for_what_a_gpu_run_must_not_do(changes, words):
    judged = gpu_check.judge_run("a. bf16-compile-on", _outcome(**changes), precision="bf16",
                                 compiled=True, on_gpu=True, learned=3.0)
    assert judged["ok"] == (words is None)
    if words:
        assert words in judged["detail"]


def test_a_run_that_did_not_finish_is_a_failure_with_its_last_words():
    outcome = {"label": "x", "code": 2, "results": None,
               "output_tail": ["mgrb: error: the device ran out of memory"]}
    judged = gpu_check.judge_run("a. x", outcome, precision="fp32", compiled=False, on_gpu=True,
                                 learned=3.0)
    assert not judged["ok"] and "exit 2: mgrb: error: the device ran out of memory" in judged["detail"]


class RecordableNvml(ReplayedNvml):
    def nvmlSystemGetDriverVersion(self):
        return b"580.65.06"


def test_an_nvml_reading_is_recorded_in_the_shapes_the_launcher_tests_replay():
    reading = nvml_reading({"mig_mode": [0, 0]})
    recorded = gpu_check.nvml_reading(RecordableNvml(reading))
    assert "driver 580.65.06" in recorded["_note"]
    assert recorded["devices"][0]["mig_mode"] == [0, 0] and "mig_mode" not in recorded["devices"][1]
    replayed = GpuMonitor(nvml=ReplayedNvml(recorded)).read()
    original = GpuMonitor(nvml=ReplayedNvml(reading)).read()
    assert replayed == original


@pytest.mark.parametrize("args, words", [
    (["--keep", "{used}"], "the folder is not empty"),
    (["--out", "{file}/results"], "gpu-check: error:"),
])
def test_bad_arguments_get_one_line_and_exit_2(tmp_path, args, words):
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "runs").mkdir()
    (tmp_path / "file").write_text("not a folder")
    args = [a.format(used=tmp_path / "used", file=tmp_path / "file") for a in args]
    done = subprocess.run([*SCRIPT, "--device", "cpu", *args], capture_output=True, text=True,
                          timeout=120, cwd=ROOT)
    assert done.returncode == 2 and words in done.stderr and "Traceback" not in done.stderr


def test_without_torchvision_and_pillow_and_past_its_budget_it_keeps_what_finished(tmp_path):
    """As on a lent GPU machine: a plain checkout on PYTHONPATH, no torchvision, Pillow or nltk
    (hidden by tests/without_modules/sitecustomize.py, in the child processes too), and a
    --budget-s too small for the whole check. What fits runs; the bench's reference style,
    which needs the hidden modules, says why it was not measured; what does not fit is listed
    as not started; the results file is whole after every check."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "tests" / "without_modules"),
                                                        str(ROOT)]),
           "MGRB_TEST_HIDE": "torchvision,PIL,nltk"}
    done = subprocess.run([*SCRIPT, "--device", "cpu", "--only", "a,d,e", "--budget-s", "120",
                           "--out", str(tmp_path)], capture_output=True, text=True, timeout=600,
                          cwd=ROOT, env=env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads(next(tmp_path.glob("gpu-check-CPU*.json")).read_text())
    statuses = {c["check"]: (c["status"], c["detail"]) for c in report["checks"]}
    assert statuses["a."][0] == "skip" and statuses["a."][1].startswith("not started: estimated")
    assert statuses["d. bench"][0] == "pass"
    assert "reference style not measured (needs torchvision and Pillow" in statuses["d. bench"][1]
    assert statuses["e. NVML reading"] == ("skip", "no GPU")
    assert report["complete"] is False and set(report["unit_seconds"]) == {"a", "df", "e"}
    assert "not complete" in next(tmp_path.glob("gpu-check-*.md")).read_text()


def test_a_run_past_its_time_is_killed_and_fails_its_check(tmp_path):
    runs = gpu_check.Runs(tmp_path, "cpu", timeout=600, deadline=time.monotonic() + 1)
    log = open(tmp_path / "slow.log", "ab")  # noqa: SIM115 - closed by finish
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], stdout=log)
    process.log = log
    outcome = runs.finish(process, "slow")
    assert outcome["timed_out"] and outcome["results"] is None and process.returncode is not None
    judged = gpu_check.judge_run("a. x", outcome, precision="fp32", compiled=False, on_gpu=False,
                                 learned=2.0)
    assert not judged["ok"] and "killed: still running after 1 s (its time limit)" in judged["detail"]


def test_a_bench_past_its_time_is_a_failed_check_not_a_traceback(tmp_path):
    checks, table = gpu_check.bench(tmp_path, "cpu", gpu_check.PROFILES["cpu"], time_left=0.5)
    assert table is None and [c["status"] for c in checks] == ["FAIL"]
    assert "still running after 0 s (its time limit); killed" in checks[0]["detail"]


def test_a_split_check_keeps_the_other_calls_results(tmp_path):
    """--only d after a call that ran a: the file holds both, each with its own date."""
    report = {"device": "NVIDIA H100 80GB HBM3", "device_type": "cuda", "gpu_measured": True,
              "torch": "2.11.0", "cuda": "13.0", "measured_at": "2026-12-01 10:00:00 UTC",
              "command": "gpu_check.py --only a", "complete": True, "seconds": 200,
              "checks": [gpu_check.check("a. fp32-compile-off", True, "top-1 ..."),
                         gpu_check.check("d. bench", False, "old bench")]}
    gpu_check.write_report(report, [], tmp_path)
    earlier = gpu_check.earlier_checks(tmp_path, report["device"], "df")
    assert [c["check"] for c in earlier] == ["a. fp32-compile-off"]
    later = {**report, "measured_at": "2026-12-02 09:00:00 UTC", "command": "gpu_check.py --only d",
             "checks": [gpu_check.check("d. bench", True, "new bench")]}
    gpu_check.write_report(later, earlier, tmp_path)
    merged = json.loads((tmp_path / "gpu-check-NVIDIA_H100_80GB_HBM3.json").read_text())
    assert [(c["check"], c["detail"]) for c in merged["checks"]] == [
        ("a. fp32-compile-off", "top-1 ..."), ("d. bench", "new bench")]
    assert merged["checks"][0]["measured_at"] == "2026-12-01 10:00:00 UTC"
    assert "(earlier: 2026-12-01 10:00:00 UTC)" in (tmp_path / "gpu-check-NVIDIA_H100_80GB_HBM3.md").read_text()


@pytest.mark.parametrize("gpus", [1, 2])
def test_the_gpu_profile_fits_a_ten_minute_call_by_its_estimate(gpus):
    """The estimate (benchmarks/gpu_check_time.py: FLOPs, checkpoint bytes, stated rates),
    not a measurement: under 8 minutes on one H100, with two GPUs' check g too."""
    planned = gpu_check.estimates(gpu_check.PROFILES["cuda"], True, gpus, gpu_check.LETTERS)
    assert sum(planned.values()) < 480, planned
    assert planned["g"] == (0 if gpus == 1 else planned["g"]) and planned["bc"] < planned["a"]


@pytest.mark.parametrize("text", ["x", "a,z", ""])
def test_only_names_known_checks(text):
    done = subprocess.run([*SCRIPT, "--device", "cpu", "--only", text], capture_output=True,
                          text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 2 and "expected check letters among" in done.stderr
