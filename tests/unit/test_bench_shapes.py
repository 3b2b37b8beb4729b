"""The step shapes of `make bench` (benchmarks/bench_step.py): which are measured where, at what
sizes, and that the ImageNet-shaped step trains on what the ImageNet-100 trainer sees. Nothing
is timed here; the real runs are in tests/e2e/test_bench.py."""

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from benchmarks import bench_step
from benchmarks.bench_step import (COUNTS, IMAGENET_GPU_STEPS, IMAGENET_WINDOW, SHAPES, FastStep,
                                   class_counts, mid_epoch_windows, plan_shapes)
from mgrb.config import load_config
from mgrb.data.augment import Augment
from mgrb.data.folder import IMAGENET_MEAN, IMAGENET_STD
from mgrb.perf.throughput import CIFAR_SHAPE, IMAGENET_SHAPE, Measurement


def _args(shapes=("cifar", "imagenet"), batch=128, steps=None, imagenet_batch=None,
          imagenet_steps=None):
    return SimpleNamespace(shapes=shapes, batch=batch, steps=steps, imagenet_batch=imagenet_batch,
                           imagenet_steps=imagenet_steps)


def test_the_cpu_measures_the_cifar_shape_alone_unless_asked():
    assert bench_step.parse(["--device", "cpu"]).shapes == ("cifar",)
    asked = bench_step.parse(["--device", "cpu", "--shapes", "cifar,imagenet"])
    assert asked.shapes == ("cifar", "imagenet")
    assert bench_step.parse(["--device", "cpu", "--shapes", "imagenet,cifar,imagenet"]).shapes == (
        "imagenet", "cifar")


@pytest.mark.parametrize("argv, message", [
    (["--shapes", "imagenet"], "the CIFAR shape is always measured"),
    (["--shapes", "cifar,mnist"], "expected cifar or cifar,imagenet"),
    (["--shapes", ""], "expected cifar or cifar,imagenet"),
    (["--imagenet-batch", "0"], "--imagenet-batch and --imagenet-steps must be positive"),
    (["--imagenet-steps", "-1"], "--imagenet-batch and --imagenet-steps must be positive"),
])
def test_bad_shape_arguments_exit_2_with_a_message(argv, message, capsys):
    with pytest.raises(SystemExit) as stopped:
        bench_step.parse(["--device", "cpu", *argv])
    assert stopped.value.code == 2 and message in capsys.readouterr().err


def test_the_gpu_plan_times_two_windows_of_the_imagenet_shape_at_the_papers_batch():
    plans = plan_shapes(_args(), on_gpu=True)
    cifar, imagenet = plans["cifar"], plans["imagenet"]
    assert (cifar.batch, cifar.steps, cifar.images) == (128, 200, bench_step.GPU_IMAGES)
    assert (imagenet.batch, imagenet.steps) == (128, IMAGENET_GPU_STEPS)
    # 25 full batches and a half one: 640 MB of 256x256 images, a warm-up epoch of seconds
    assert imagenet.images == 128 * (IMAGENET_WINDOW + 1) + 64 == 3264
    assert imagenet.windows == [range(1, 1 + IMAGENET_WINDOW)] * 2
    assert imagenet.shape is SHAPES["imagenet"] and imagenet.shape.key == IMAGENET_SHAPE


def test_the_cpu_plan_of_the_imagenet_shape_is_a_few_images():
    imagenet = plan_shapes(_args(), on_gpu=False)["imagenet"]
    assert (imagenet.batch, imagenet.steps, imagenet.images) == (2, 1, 5)
    assert imagenet.windows == [range(1, 2)]
    one = plan_shapes(_args(imagenet_batch=1, imagenet_steps=2), on_gpu=False)["imagenet"]
    assert (one.images, one.windows) == (4, [range(1, 3)])


@pytest.mark.parametrize("batch, steps", [(1, 1), (2, 1), (3, 7), (128, 48), (128, 100), (512, 5)])
def test_every_imagenet_plan_has_its_timed_windows(batch, steps):
    for on_gpu in (False, True):
        plan = plan_shapes(_args(shapes=("cifar", "imagenet"), batch=2, imagenet_batch=batch,
                                 imagenet_steps=steps), on_gpu)["imagenet"]
        assert sum(map(len, plan.windows)) == steps
        assert plan.windows == mid_epoch_windows(plan.images, batch, steps)


def test_class_counts_derive_the_cifar_constants_and_imagenets_own():
    assert class_counts(load_config(bench_step.EXPERIMENT)) == COUNTS
    assert class_counts(load_config(bench_step.IMAGENET_EXPERIMENT)) == [18] * 90 + [1300] * 10


def test_the_imagenet_step_trains_a_cifar_stem_resnet18_on_224_crops_of_256_images():
    shape = SHAPES["imagenet"]
    config = load_config(shape.experiment)
    images, labels = bench_step.synthetic_images(6, shape.side)
    assert images.shape == (6, 3, 256, 256) and images.dtype == torch.uint8
    step = FastStep(config, torch.device("cpu"), images, labels, batch=4, compile=False, shape=shape)
    assert step.augment == Augment(flip=True, rotation=15, random_resized_crop=True)
    stem = step.model.backbone.stem[0]
    assert (stem.kernel_size, stem.stride) == ((3, 3), (1, 1))  # the CIFAR stem, as the paper's
    assert step.model.classifier.out_features == bench_step.N_SEEN
    assert step.data.out_size == 224 and step.data.resident
    x, y = step._next_batch()
    assert x.shape == (4, 3, 224, 224) and x.dtype == torch.float32 and y.shape == (4,)
    # normalised with ImageNet's statistics, as the trainer normalises ImageNet-100's cache
    assert step.data.mean.flatten().tolist() == pytest.approx(IMAGENET_MEAN)
    assert step.data.std.flatten().tolist() == pytest.approx(IMAGENET_STD)
    lowest = min((0 - m) / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD))
    highest = max((1 - m) / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD))
    assert lowest - 1e-5 <= float(x.min()) and float(x.max()) <= highest + 1e-5
    assert bench_step.flops_per_training_image(config) > 20 * bench_step.flops_per_training_image(
        load_config(bench_step.EXPERIMENT))


def test_the_cifar_step_is_unchanged_by_the_shapes():
    step = FastStep(load_config(bench_step.EXPERIMENT), torch.device("cpu"),
                    *bench_step.synthetic_cifar(8), batch=4, compile=False)
    assert step.augment == Augment(crop_padding=4, flip=True, rotation=15)
    assert step.data.out_size is None
    x, _ = step._next_batch()
    assert x.shape == (4, 3, 32, 32)


def test_out_of_gpu_memory_records_why_and_the_cifar_rate_stands(monkeypatch):
    def exhausted(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    monkeypatch.setattr(bench_step, "fast_path", exhausted)
    plan = plan_shapes(_args(), on_gpu=False)["imagenet"]
    entry = bench_step.measure_imagenet(SimpleNamespace(compile=False), torch.device("cpu"), plan, None)
    assert entry == {"label": "224x224 ResNet-18 step", "experiment": "i100_ont_50_10", "batch": 2,
                     "error": "out of GPU memory at batch 2; a smaller --imagenet-batch measures a "
                              "rate, not the paper's batch"}
    results = {"device": "GPU", "model_tflops": 90.0, "measured_at": "2026-11-25",
               "shapes": {CIFAR_SHAPE: {"model_tflops": 90.0}, IMAGENET_SHAPE: entry}}
    measurement = Measurement.from_results(results, Path())
    assert measurement.tflops(CIFAR_SHAPE) == 90.0 and measurement.tflops(IMAGENET_SHAPE) is None
    bench_step.print_shape(plan.shape, entry, None, on_gpu=True)  # prints, does not fail
