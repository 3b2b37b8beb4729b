"""`make bench`'s script through its real entry point on this machine's CPU, with the
smallest sizes: it measures every part, packing included, and writes where the readers look.
No figure is asserted (speed lives in the benchmark, not in tests); the shapes are."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mgrb.throughput import latest_gpu_measurement

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_step.py"


def _bench(*args, runs):
    return subprocess.run([sys.executable, str(SCRIPT), "--runs-dir", str(runs), *args],
                          capture_output=True, text=True, timeout=600)


def test_bench_on_the_cpu_measures_every_part_and_records_it(tmp_path):
    done = _bench("--device", "cpu", "--batch", "2", "--steps", "1", "--pack", "yes",
                  "--pack-runs", "1,2", "--pack-seconds", "0.1", runs=tmp_path)
    assert done.returncode == 0, done.stderr
    for part in ("regulariser, 128 x 100", "fast path", "reference style", "ratio",
                 "model FLOP/s", "c100_ont_10_10", "2 run(s) at once", "written:"):
        assert part in done.stdout
    [path] = (tmp_path / ".bench").glob("*.json")
    results = json.loads(path.read_text())
    assert results["device_type"] == "cpu" and results["device"].startswith("CPU")
    assert results["fast_images_per_s"] > 0 and results["reference_images_per_s"] > 0
    assert results["regularizer"]["speedup"] > 1
    assert set(results["packed_images_per_s"]) == {"1", "2"}
    assert all(rate > 0 for rate in results["packed_images_per_s"].values())
    projected = {row["experiment"]: row["projected_hours"] for row in results["projections"]}
    assert projected["i100_ont_50_10"] > projected["c100_ont_10_10"] > 0
    assert "digits_5_1" not in projected
    # a CPU rate is kept on record but never used for the GPU hours of the table
    assert latest_gpu_measurement(tmp_path) is None


def test_bad_arguments_get_one_message_and_exit_2(tmp_path):
    done = _bench("--pack-runs", "0,2", runs=tmp_path)
    assert done.returncode == 2 and "expected positive counts" in done.stderr
    assert "Traceback" not in done.stderr


def test_an_unwritable_results_folder_is_refused_before_measuring(tmp_path):
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    done = _bench("--device", "cpu", runs=blocked)
    assert done.returncode == 1 and "cannot create the results folder" in done.stderr
    assert "Traceback" not in done.stderr and "fast path" not in done.stdout


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA device")
def test_asking_for_cuda_without_one_is_refused(tmp_path):
    done = _bench("--device", "cuda", runs=tmp_path)
    assert done.returncode == 2 and "no CUDA device" in done.stderr
    assert "Traceback" not in done.stderr


def test_the_gpu_sync_check_times_its_steps_inside_an_epoch():
    """host_syncs on the CPU with CUDA's debug-mode switch replaced by a recorder: the checked
    steps are neither an epoch's first (shuffle and draws go to the device) nor its last."""
    sys.path.insert(0, str(SCRIPT.parents[1]))
    from benchmarks import bench_step

    images, labels = bench_step.synthetic_cifar(40)
    step = bench_step.FastStep(bench_step.load_config(bench_step.EXPERIMENT),
                               torch.device("cpu"), images, labels, batch=8, compile=False)
    assert step.batches_per_epoch == 5
    step.run(5)  # a whole epoch: the next step starts another
    assert not step.mid_epoch()
    switched = []
    taken = []
    original_run = step.run

    def recording_run(count):
        original_run(count)
        taken.append((switched[-1] if switched else None, step.batch_in_epoch))

    step.run = recording_run
    assert bench_step.host_syncs(step, set_mode=switched.append) == "none"
    assert switched == ["error", "default"]
    checked = [index for mode, index in taken if mode == "error"]
    assert checked and all(0 < index < step.batches_per_epoch - 1 for index in checked)
