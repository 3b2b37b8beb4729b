"""`make gpu-check` through its real entry point in its CPU mode, as CI runs it so that the
script cannot rot; and its judgements on outcomes it must call failures."""

import json
import subprocess
import sys
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
    assert names == ["a. fp32-compile-off", "a. bf16-compile-off", "a. fp32-compile-on",
                     "a. bf16-compile-on", "g. fp32, --nproc 2", "b. deterministic twice",
                     "c. SIGKILL mid-run, then resume", "d. bench"]
    assert all(c["ok"] for c in report["checks"])
    assert report["gpu_measured"] is False and report["device_type"] == "cpu"
    (two,) = [c for c in report["checks"] if c["check"].startswith("g.")]
    assert two["processes"] == 2  # gloo on the CPU: the code path a GPU pair takes with NCCL
    compiled = [c for c in report["checks"] if c["check"].endswith("compile-on")]
    assert all(c["compile"]["graphs"] >= 1 for c in compiled)
    assert report["bench"]["fast_images_per_s"] > 0
    summary = next(tmp_path.glob("gpu-check-*.md")).read_text()
    assert "**No GPU was measured**" in summary and "| b. deterministic twice | pass |" in summary
    assert "No GPU was measured." in done.stdout
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
