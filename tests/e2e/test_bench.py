"""`make bench`'s scripts through their real entry points on this machine's CPU, with the
smallest sizes: the step bench measures every part, packing and the ImageNet-shaped step
included, the data bench the prepare and the loader, and both write where the readers look.
No figure is asserted (speed lives in the benchmark, not in tests); the shapes are."""

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from mgrb.perf.throughput import (CIFAR_SHAPE, IMAGENET_SHAPE, Measurement, latest_data_measurement,
                                  latest_gpu_measurement)

from benchmarks import bench_step
from benchmarks.bench_step import BenchError, device_peak, mid_epoch_windows

ROOT = Path(__file__).resolve().parents[2]


def _bench(*args, runs, script="bench_step"):
    return subprocess.run([sys.executable, "-m", f"benchmarks.{script}", "--runs-dir", str(runs),
                           *args], capture_output=True, text=True, timeout=600, cwd=ROOT)


def test_bench_on_the_cpu_measures_every_part_and_records_it(tmp_path):
    # the ImageNet-shaped step only when asked on a CPU, at batch 1: about 220 GFLOP an image
    done = _bench("--device", "cpu", "--batch", "2", "--steps", "1", "--pack", "yes",
                  "--pack-runs", "1,2", "--pack-seconds", "0.1", "--shapes", "cifar,imagenet",
                  "--imagenet-batch", "1", runs=tmp_path)
    assert done.returncode == 0, done.stderr
    for part in ("regulariser, 128 x 100", "fast path", "reference style", "ratio",
                 "model FLOP/s", "c100_ont_10_10", "2 run(s) at once", "written:",
                 "2 images in 1 timed mid-epoch window", "ImageNet-100 shapes (224x224 crops",
                 "1 images in 1 timed mid-epoch window, ", "i100_ont_50_10",
                 "(224x224 ResNet-18 step)", "(32x32 ResNet-34 step)"):
        assert part in done.stdout
    [path] = (tmp_path / ".bench").glob("*.json")
    results = json.loads(path.read_text())
    assert results["device_type"] == "cpu" and results["device"].startswith("CPU")
    assert results["fast_images_per_s"] > 0 and results["reference_images_per_s"] > 0
    # 5 images at batch 2 are batches of 2, 2, 1: only the middle one is timed
    assert results["synthetic_images"] == 5 and results["batches_per_epoch"] == 3
    assert (results["timed_windows"], results["timed_images"]) == (1, 2)
    assert results["sm_count"] is None and results["peak_scaled_for_mig"] is False
    # a speed, so not compared: on a loaded CPU the loop can come out ahead
    assert results["regularizer"]["speedup"] > 0
    assert set(results["packed_images_per_s"]) == {"1", "2"}
    assert all(rate > 0 for rate in results["packed_images_per_s"].values())
    projected = {row["experiment"]: row["projected_hours"] for row in results["projections"]}
    assert projected["i100_ont_50_10"] > projected["c100_ont_10_10"] > 0
    assert "digits_5_1" not in projected
    shapes = {row["experiment"]: row["shape"] for row in results["projections"]}
    assert (shapes["i100_ont_50_5"], shapes["c100_ont_10_10"], shapes["mini_ont_10_10"]) == (
        IMAGENET_SHAPE, CIFAR_SHAPE, CIFAR_SHAPE)
    # per-shape records; the top-level rate stays the CIFAR step's, for every older reader
    cifar, imagenet = results["shapes"][CIFAR_SHAPE], results["shapes"][IMAGENET_SHAPE]
    assert cifar["model_tflops"] == results["model_tflops"] and cifar["input_side"] == 32
    assert (imagenet["experiment"], imagenet["backbone"], imagenet["stem"]) == (
        "i100_ont_50_10", "resnet18", "cifar")
    assert (imagenet["image_side"], imagenet["input_side"], imagenet["batch"]) == (256, 224, 1)
    assert imagenet["augment"]["random_resized_crop"] and imagenet["timed_images"] == 1
    assert imagenet["flops_per_image"] > 20 * cifar["flops_per_image"]
    assert imagenet["model_tflops"] > 0 and imagenet["synthetic_images"] == 3
    assert Measurement.from_results(results, path).tflops(IMAGENET_SHAPE) == imagenet["model_tflops"]
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


def test_a_windows_batches_lie_strictly_inside_an_epoch_and_never_the_partial_one():
    # 7 images at batch 2: batches 0..3, the last one partial
    assert mid_epoch_windows(7, 2, 2) == [range(1, 3)]
    assert mid_epoch_windows(7, 2, 1) == [range(1, 2)]
    # 8 at batch 2: the last batch is full, the same work as any other, and timed
    assert mid_epoch_windows(8, 2, 3) == [range(1, 4)]
    assert mid_epoch_windows(4, 2, 1) == [range(1, 2)]
    # the GPU default: 156 full batches and a partial one; 155 timed per epoch
    assert mid_epoch_windows(20000, 128, 200) == [range(1, 156), range(1, 46)]


def test_steps_beyond_one_window_take_one_window_an_epoch():
    windows = mid_epoch_windows(9, 2, 7)  # batches 0..4, the last partial: room for 3
    assert windows == [range(1, 4), range(1, 4), range(1, 2)]
    assert sum(map(len, mid_epoch_windows(20000, 128, 1000))) == 1000
    assert all(window.start == 1 for window in mid_epoch_windows(100, 10, 50))


@pytest.mark.parametrize("size, batch, batches, needed", [
    (5, 4, 2, 3),    # a full batch and a partial one
    (3, 4, 1, 3),    # the set smaller than one batch
    (4, 4, 1, 2),    # one full batch: the epoch's first, never timed
    (20000, 20000, 1, 2),
])
def test_an_epoch_with_no_timeable_batch_is_refused_with_its_sizes(size, batch, batches, needed):
    with pytest.raises(BenchError) as error:
        mid_epoch_windows(size, batch, 1)
    message = str(error.value)
    assert f"the synthetic set of {size} images gives only {batches} batch" in message
    assert f"at batch {batch}" in message and f"at least {needed} are needed" in message


def test_window_arguments_must_be_positive():
    for arguments in ((0, 2, 1), (4, 0, 1), (4, 2, 0)):
        with pytest.raises(ValueError):
            mid_epoch_windows(*arguments)


def test_the_cpu_set_holds_one_window_of_the_asked_steps_and_a_partial_batch():
    for batch, steps in ((2, 1), (128, 3), (1, 1), (7, 10)):
        size = bench_step.synthetic_size(False, batch, steps)
        assert mid_epoch_windows(size, batch, steps) == [range(1, 1 + steps)]
        assert size % batch == (batch // 2 if batch > 1 else 0)
    assert bench_step.synthetic_size(True, 128, 3) == bench_step.GPU_IMAGES


@pytest.mark.parametrize("name, sm_count, tflops, share", [
    ("NVIDIA H200 NVL", 132, 835, None),
    ("NVIDIA H200", 132, 989, None),
    ("NVIDIA H100 80GB HBM3", 132, 989, None),
    ("NVIDIA H100 PCIe", 114, 756, None),
    ("NVIDIA H100 NVL", 132, 835, None),
    ("NVIDIA A100-SXM4-80GB", 108, 312, None),
    ("NVIDIA H100 80GB HBM3 MIG 3g.40gb", 60, 989 * 60 / 132, 60 / 132),
    ("NVIDIA H100 80GB HBM3 MIG 7g.80gb", 132, 989, 1.0),
    ("NVIDIA H100 PCIe MIG 1g.10gb", 14, 756 * 14 / 114, 14 / 114),
    ("NVIDIA H200 NVL MIG 3g.71gb", 60, 835 * 60 / 132, 60 / 132),
    ("NVIDIA A100-SXM4-40GB MIG 3g.20gb", 42, 312 * 42 / 108, 42 / 108),
])
def test_device_peak_of_known_gpus_and_mig_slices(name, sm_count, tflops, share):
    peak = device_peak(name, sm_count, None)
    assert peak.flops == pytest.approx(tflops * 1e12)
    assert peak.mig_share == (pytest.approx(share) if share else None)


def test_device_peak_unknown_gpus_slices_it_cannot_scale_and_the_override():
    assert device_peak("NVIDIA GeForce GTX 1080", 20, None) == (None, None)
    assert device_peak("CPU x86_64", None, None) == (None, None)
    # a slice's SM count unknown, or of a card with no MIG entry: no whole-chip peak for it
    assert device_peak("NVIDIA H100 80GB HBM3 MIG 3g.40gb", None, None) == (None, None)
    assert device_peak("NVIDIA L40S MIG 2g", 70, None) == (None, None)
    # "MIG" only as a word: a name merely containing the letters is a whole chip
    assert device_peak("NVIDIA H100 MIGHTY", 132, None) == (989e12, None)
    # the override is the device's own peak, slice or not
    assert device_peak("NVIDIA H100 80GB HBM3 MIG 3g.40gb", 60, 450.0) == (450e12, None)
    assert device_peak("NVIDIA GeForce GTX 1080", 20, 8.9) == (pytest.approx(8.9e12), None)


@pytest.mark.parametrize("size, steps, sizes_timed", [
    (5, 2, [[2], [2]]),       # batches 2, 2, 1: one timed an epoch, in two epochs
    (4, 2, [[2], [2]]),       # batches 2, 2: the full last one is timed
    (7, 3, [[2, 2], [2]]),    # batches 2, 2, 2, 1: a whole window, then part of one
])
def test_timed_windows_take_only_mid_epoch_batches_after_a_whole_warm_up_epoch(size, steps,
                                                                               sizes_timed):
    images, labels = bench_step.synthetic_cifar(size)
    step = bench_step.FastStep(bench_step.load_config(bench_step.EXPERIMENT),
                               torch.device("cpu"), images, labels, batch=2, compile=False)
    # which batches are taken is the point here, not the losses: a ResNet-34 step costs
    # seconds on a loaded CPU, a linear one nothing
    tiny = torch.nn.Linear(3 * 32 * 32, bench_step.N_SEEN)
    step.forward = lambda x: tiny(x.flatten(1))
    step.method = SimpleNamespace(stage1_loss=lambda logits, y, x, count=None: {"total": logits.sum()})
    calls = []
    taken = []
    original_next = step._next_batch

    def recording_next():
        x, y = original_next()
        taken.append((step.batch_in_epoch, y.shape[0]))
        return x, y

    original_run = step.run

    def recording_run(count):
        start = len(taken)
        counted = original_run(count)
        calls.append((taken[start:], counted))
        return counted

    step._next_batch = recording_next
    step.run = recording_run
    bench_step.warm_up(step)
    [(warm, warm_images)] = calls
    assert [index for index, _ in warm] == list(range(step.batches_per_epoch))
    assert warm_images == size
    windows = mid_epoch_windows(size, 2, steps)
    counted, seconds = bench_step.timed_windows(step, windows)
    untimed, timed = calls[1::2], calls[2::2]
    assert len(timed) == len(windows) and seconds > 0
    for (before, _), (inside, images_in), window in zip(untimed, timed, windows):
        assert before[-1][0] == window.start - 1 == 0  # the epoch's first, untimed
        assert [index for index, _ in inside] == list(window)
        assert images_in == sum(batch for _, batch in inside)
    assert [[batch for _, batch in inside] for inside, _ in timed] == sizes_timed
    assert counted == sum(map(sum, sizes_timed))


def test_the_data_bench_on_the_cpu_measures_the_prepare_and_the_loader(tmp_path):
    scratch = tmp_path / "scratch"
    done = _bench("--images", "200", "--workers", "2", "--loader-images", "16", "--batch", "8",
                  "--out", str(scratch), runs=tmp_path / "runs", script="bench_data")
    assert done.returncode == 0, done.stderr
    for part in ("prepare (mgrb data prepare imagenet100): 200 JPEGs of 500x375", "2 processes",
                 "images per core-second", "after the first chunk", "cache loader (TensorBatches)",
                 "cpu   resident", "cpu   host-gathered", "written:"):
        assert part in done.stdout
    assert list(scratch.iterdir()) == []  # the tree and the cache are removed
    [path] = (tmp_path / "runs" / ".bench").glob("*.json")
    assert path.name.startswith("data-CPU")
    results = json.loads(path.read_text())
    assert results == latest_data_measurement(tmp_path / "runs", "cpu")
    prepare = results["prepare"]
    assert (prepare["images"], prepare["train_images"], prepare["val_images"]) == (200, 100, 100)
    assert prepare["workers"] == 2 and prepare["source_size"] == [500, 375]
    assert prepare["image_size"] == 256 and prepare["cache_bytes"] > 200 * 3 * 256 * 256
    assert prepare["seconds"] > 0 and prepare["cpu_seconds"] > 0
    assert prepare["images_per_s"] > 0 and prepare["images_per_core_s"] > 0
    loader = results["loader"]
    assert (loader["images"], loader["image_side"], loader["out_size"], loader["batch"]) == (16, 256, 224, 8)
    assert set(loader["rates"]) == {"cpu"} | ({"cuda"} if torch.cuda.is_available() else set())
    rows = loader["rates"]["cpu"]
    assert (rows["resident"]["resident"], rows["host_gathered"]["resident"]) == (True, False)
    assert all(row["images"] == 16 and row["images_per_s"] > 0 for row in rows.values())
    # beside the step files, never read as one
    assert latest_gpu_measurement(tmp_path / "runs") is None


def test_the_data_bench_refuses_bad_arguments_and_unwritable_folders(tmp_path):
    done = _bench("--images", "20", runs=tmp_path, script="bench_data")
    assert done.returncode == 2 and "at least 200 are needed" in done.stderr
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    done = _bench("--device", "cpu", runs=blocked, script="bench_data")
    assert done.returncode == 1 and "cannot create the results folder" in done.stderr
    assert "Traceback" not in done.stderr and "prepare" not in done.stdout
