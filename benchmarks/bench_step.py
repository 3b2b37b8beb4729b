"""`make bench`: images/s of a stage-1 incremental-phase step, mgrb's fast path against a
pipeline written to mirror the original code, on whatever device this machine has.

Measured, in one run of this script on one machine:
  1. the multi-granularity regulariser for a batch of 128 x 100 classes: a per-sample Python
     loop that builds soft labels with .item() calls (the original) against mgrb's one
     indexed tensor operation;
  2. a CIFAR-100-shaped stage-1 step of the last 10/10 phase (ResNet-34, frozen teacher,
     class-balanced loss, regulariser; 90 old + 10 new classes): (a) mgrb's fast path, the
     trainer's own PhaseLosses on uint8 data held on the device with batch augmentation,
     bf16 autocast and channels-last on a GPU; (b) the reference style of
     benchmarks/reference_pipeline.py. The fast path first runs one whole epoch untimed, then
     is timed over mid-epoch windows only (see mid_epoch_windows), counting the images its
     batches really held;
  3. the achieved model FLOP/s and, for a known GPU, the fraction of its dense bf16 peak (a
     MIG slice's share of it by its streaming multiprocessors);
  4. the projected stage-1 time of every paper experiment at the measured rate of its step
     shape (mgrb.perf.estimate.projection_shape);
  5. on a GPU, the total images/s of 1, 2 and 4 concurrent runs (processes) on the device,
     measured over the same wall-clock window;
  6. on a GPU (on a CPU only when --shapes asks, at a batch of 2: an image costs about 220
     GFLOP, seconds there), the fast-path step of an ImageNet-100 phase: the CIFAR-stem
     ResNet-18 and its teacher at 224x224, batches of 128 cropped from 256x256 uint8 images by
     TensorBatches with ImageNet-100's augmentation (random resized crop, flip, rotation), as the
     trainer runs from `mgrb data prepare`'s cache. Its model FLOP/s is not the CIFAR step's:
     ImageNet-100 experiments are projected from it.
Results go to <runs>/.bench/<device>.json, where `mgrb list` and the launcher read a GPU's
measured rate for their projected hours: `model_tflops` is the CIFAR-shaped step's, as in
files from before item 6; `shapes` holds every measured shape's record by key
(mgrb.perf.throughput.CIFAR_SHAPE, IMAGENET_SHAPE).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import NamedTuple

import torch

from benchmarks.reference_pipeline import (CIFAR100_MEAN, CIFAR100_STD,
                                           ReferenceStep, loop_regularizer)
from mgrb.config import Experiment, load_config
from mgrb.config.schema import Method
from mgrb.data.registry import dataset
from mgrb.data.augment import Augment
from mgrb.data.batches import TensorBatches
from mgrb.data.folder import IMAGENET_MEAN, IMAGENET_STD
from mgrb.data.protocol import memory_sizes
from mgrb.perf.estimate import PAPER_DATASETS, forward_flops, projected_hours, projection_shape
from mgrb.method.soft_targets import soft_targets
from mgrb.method.phase import PhaseLosses, stage_inputs
from mgrb.method.terms import Batch, Reduce, class_balanced_weights, multi_granularity
from mgrb.training.models import IncrementalNet, build_backbone
from mgrb.training.control import stage1_step
from mgrb.training.numerics import Compiler, Numerics, applied
from mgrb.devices import resolve_device
from mgrb.errors import MGRBError
from mgrb.perf.throughput import (CIFAR_SHAPE, IMAGENET_SHAPE, SHAPE_LABELS, Measurement, bench_dir,
                                  record)

ROOT = Path(__file__).resolve().parents[1]

EXPERIMENT = ROOT / "experiments" / "c100_ont_10_10.yaml"
N_OLD, N_SEEN = 90, 100
GROUPS = [c % 20 for c in range(N_SEEN)]          # 20 coarse groups, as CIFAR-100's
COUNTS = [18] * N_OLD + [500] * (N_SEEN - N_OLD)  # e - v exemplars; full count for new classes
IMAGENET_EXPERIMENT = ROOT / "experiments" / "i100_ont_50_10.yaml"

# Dense bf16 tensor-core peaks from the vendors' data sheets (no sparsity: half the sheets'
# "with sparsity" figure), FLOP/s, and the whole chip's streaming multiprocessors, which a MIG
# slice's share is measured against (None: no MIG on that card). The first name contained in
# the device's name wins, so the more specific names come first.
PEAK_BF16 = (("H100 PCIe", 756e12, 114), ("H100 NVL", 835e12, 132), ("H100", 989e12, 132),
             ("H200 NVL", 835e12, 132), ("H200", 989e12, 132), ("A100", 312e12, 108),
             ("L40S", 362e12, None), ("RTX 4090", 165e12, None))
GPU_IMAGES = 20000  # about a CIFAR-100 phase's training set: new classes plus exemplars
# Timed batches an epoch of the ImageNet-shaped set on a GPU: 3,264 images (640 MB) at batch
# 128, so that its whole warm-up epoch takes seconds at 224x224; gathering a batch from the
# set costs the same whatever the set's size.
IMAGENET_WINDOW = 24
IMAGENET_GPU_STEPS = 2 * IMAGENET_WINDOW


@dataclasses.dataclass(frozen=True)
class StepShape:
    """A training step the bench measures: the experiment whose settings it takes (backbone,
    stem, numerics, augmentation, loss settings) and the synthetic images it trains on. Every
    shape runs the last phase of a 100-class protocol: 90 old classes and 10 new."""

    key: str                # its key in the results' `shapes` (mgrb.perf.throughput)
    title: str              # for the printed table
    experiment: Path
    side: int               # of the uint8 images batches are taken from
    out_size: int | None    # of the crops the network sees; None: the images' own side
    mean: tuple[float, ...]
    std: tuple[float, ...]


SHAPES = {
    "cifar": StepShape(CIFAR_SHAPE, "ResNet-34 + teacher, CIFAR-100 shapes", EXPERIMENT, 32, None,
                       CIFAR100_MEAN, CIFAR100_STD),
    "imagenet": StepShape(IMAGENET_SHAPE, "CIFAR-stem ResNet-18 + teacher, ImageNet-100 shapes "
                          "(224x224 crops of 256x256 uint8 images)", IMAGENET_EXPERIMENT, 256, 224,
                          IMAGENET_MEAN, IMAGENET_STD),
}


class BenchError(Exception):
    pass


class Peak(NamedTuple):
    flops: float | None      # dense bf16 FLOP/s of the device this process sees; None: unknown
    mig_share: float | None  # slice SMs / chip SMs when the chip's peak was scaled for MIG


def device_peak(name: str, sm_count: int | None, override_tflops: float | None) -> Peak:
    """The bf16 peak of the device called `name` with `sm_count` multiprocessors.

    A MIG slice (its name carries the word MIG, as "NVIDIA H100 80GB HBM3 MIG 3g.40gb") gets
    the chip's peak times its share of the chip's multiprocessors: the tensor cores sit in the
    SMs, and a slice has only its own. An override is the device's own peak as given, never
    scaled: whoever passes it for a slice gives the slice's figure.
    """
    if override_tflops:
        return Peak(override_tflops * 1e12, None)
    found = next(((peak, chip_sms) for key, peak, chip_sms in PEAK_BF16 if key in name), None)
    if found is None:
        return Peak(None, None)
    peak, chip_sms = found
    if not re.search(r"\bMIG\b", name):
        return Peak(peak, None)
    if not chip_sms or not sm_count or sm_count > chip_sms:
        return Peak(None, None)  # a whole chip's peak would understate a slice's fraction
    share = sm_count / chip_sms
    return Peak(peak * share, share)


def mid_epoch_windows(dataset_size: int, batch: int, steps: int) -> list[range]:
    """The batches to time, one window per epoch, in the epochs after the warm-up one: each
    range holds batch indices within its epoch, and together they hold `steps` batches (the
    last window may stop short of its epoch's end).

    An epoch's first batch is never timed: it carries the shuffle and the copy of the whole
    epoch's augmentation draws to the device. A partial last batch is never timed either (its
    own shapes, its own cuDNN algorithms or compiled graph). A full last batch, when the set is
    a multiple of the batch, is timed: it is the same work as any mid-epoch batch, and the next
    epoch's start only runs when the following batch is asked for.
    """
    if dataset_size < 1 or batch < 1 or steps < 1:
        raise ValueError("dataset_size, batch and steps must be positive")
    per_epoch = -(-dataset_size // batch)
    exact = dataset_size % batch == 0
    stop = per_epoch if exact else per_epoch - 1
    if stop <= 1:
        needed = 2 if exact else 3
        raise BenchError(
            f"the synthetic set of {dataset_size} images gives only {per_epoch} "
            f"batch{'es' if per_epoch > 1 else ''} an epoch at batch {batch}, none of them "
            f"timeable (an epoch's first and a partial last one are not); at least {needed} "
            "are needed: give a smaller --batch")
    windows = []
    while steps > 0:
        taken = min(steps, stop - 1)
        windows.append(range(1, 1 + taken))
        steps -= taken
    return windows


def synthetic_size(on_gpu: bool, batch: int, steps: int) -> int:
    """Images in the synthetic set. On a CPU a step takes about 0.1 s an image, and the warm-up
    is a whole epoch, so the set is one window of `steps` batches plus the first and a
    half-size last batch (both batch shapes warm up, as on a GPU)."""
    if on_gpu:
        return GPU_IMAGES
    return batch * (steps + 1) + max(1, batch // 2)


def imagenet_size(on_gpu: bool, batch: int, steps: int) -> int:
    """Images in the ImageNet-shaped synthetic set: on a CPU as `synthetic_size`; on a GPU a
    window of IMAGENET_WINDOW batches an epoch (more steps take more epochs), the first batch
    and a half-size last one."""
    return synthetic_size(False, batch, min(steps, IMAGENET_WINDOW) if on_gpu else steps)


def device_name(device: torch.device) -> str:
    if device.type != "cuda":
        return f"CPU {platform.processor() or platform.machine()}"
    return torch.cuda.get_device_name(device)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed_rate(step, device, count: int, batch: int) -> float:
    """images/s over `count` steps, after two warm-up steps (DataLoader workers, cuDNN, the
    allocator). For the reference step: its DataLoader drops the last partial batch, so every
    batch holds `batch` images."""
    step.run(2)
    synchronize(device)
    start = time.perf_counter()
    step.run(count)
    synchronize(device)
    return count * batch / (time.perf_counter() - start)


def regularizer(targets):
    """L_MG of (logits, labels) as the trainer computes it: its per-class entropy is made
    once per phase, here."""
    inputs = stage_inputs(Method(), N_SEEN - 1, N_SEEN, teacher=None, class_weights=None,
                          targets=targets)
    return lambda logits, labels: multi_granularity(inputs, Batch(logits, labels, None), Reduce())


# -- 1. the regulariser --------------------------------------------------------------------
def bench_regularizer(device, repeats: int, beta: float) -> dict:
    logits = torch.randn(128, N_SEEN, device=device)
    labels = torch.randint(0, N_SEEN, (128,), device=device)
    targets = soft_targets(beta=beta, coarse=GROUPS).to(device)
    mg = regularizer(targets)
    if not torch.allclose(loop_regularizer(logits, labels, GROUPS, beta),
                          mg(logits, labels), atol=1e-5):
        raise BenchError("the vectorised regulariser and the per-sample loop disagree")

    def seconds_per_call(fn, n):
        fn()
        synchronize(device)
        start = time.perf_counter()
        for _ in range(n):
            fn()
        synchronize(device)
        return (time.perf_counter() - start) / n

    loop_s = seconds_per_call(lambda: loop_regularizer(logits, labels, GROUPS, beta),
                              max(2, repeats // 50))
    fast_s = seconds_per_call(lambda: mg(logits, labels), repeats)
    return {"loop_ms": loop_s * 1e3, "vectorised_ms": fast_s * 1e3, "speedup": loop_s / fast_s}


# -- 2. the stage-1 step -------------------------------------------------------------------
def make_networks(device, channels_last: bool, backbone: str = "resnet34", stem: str = "cifar"):
    torch.manual_seed(0)
    layout = torch.channels_last if channels_last else torch.preserve_format
    model = IncrementalNet(build_backbone(backbone, 3, stem), N_SEEN).to(device, memory_format=layout)
    teacher = IncrementalNet(build_backbone(backbone, 3, stem), N_OLD).to(
        device, memory_format=layout).eval()
    for parameter in teacher.parameters():
        parameter.requires_grad_(False)
    return model, teacher


def synthetic_images(n: int, side: int):
    """n random uint8 images (n, 3, side, side) and their labels among the seen classes."""
    generator = torch.Generator().manual_seed(1)
    images = torch.randint(0, 256, (n, 3, side, side), dtype=torch.uint8, generator=generator)
    labels = torch.randint(0, N_SEEN, (n,), generator=generator)
    return images, labels


def synthetic_cifar(n: int):
    return synthetic_images(n, 32)


def class_counts(config: Experiment) -> list[int]:
    """Training images of each seen class in the measured phase, for the class-balanced loss:
    e - v exemplars of an old class, a new class's full count (COUNTS for CIFAR-100)."""
    proto = config.protocol
    per_class, holdout = memory_sizes(config.num_classes, proto.memory_total,
                                      proto.memory_per_class, proto.holdout_fraction)
    new = dataset(config.dataset.name).full_train_per_class
    return [per_class - holdout] * N_OLD + [new] * (N_SEEN - N_OLD)


# On a GPU the bench times the fast mode (train.precision: bf16): the default numerics, the
# original's fp32 with TF32 (`auto`), are slower, and `make gpu-check` runs both and compares
# their accuracies. On a CPU it times what a CPU run does, fp32.
def bench_precision(device) -> str:
    return "bf16" if torch.device(device).type == "cuda" else "fp32"


class FastStep:
    """The trainer's stage-1 step: its numerics (mgrb.training.numerics: by default the bf16
    fast mode on a GPU and fp32 on a CPU, fp32 classifier, compiled backbones when asked) and
    PhaseLosses, on batches from TensorBatches, with the backbone and augmentation of
    `config` (the shape's experiment)."""

    def __init__(self, config: Experiment, device, images, labels, *, batch: int,
                 compile: bool, shape: StepShape = SHAPES["cifar"], resident: bool | None = None,
                 precision: str | None = None):
        self.device, self.batch = device, batch
        self.numerics = Numerics.resolve(device, precision=precision or bench_precision(device),
                                         channels_last=config.train.channels_last,
                                         compile=compile)
        model, teacher = make_networks(device, self.numerics.channels_last, config.model.backbone,
                                       config.model.stem)
        self.model = model
        self.compiler = Compiler(compile, device.type)
        student, teacher_backbone = (self.compiler.wrap(model.backbone),
                                     self.compiler.wrap(teacher.backbone))
        self.logits = lambda x: self.numerics.logits(student, model.classifier, x)
        teacher_logits = lambda x: self.numerics.logits(teacher_backbone,  # noqa: E731
                                                        teacher.classifier, x)
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.05,
                                           fused=self.numerics.fused_optimizer or None)
        self.data = TensorBatches(images, labels, shape.mean, shape.std, device,
                                  out_size=shape.out_size, resident=resident)
        targets = soft_targets(beta=config.method.beta, coarse=GROUPS).to(device)
        inputs = stage_inputs(config.method, N_OLD, N_SEEN, teacher=teacher_logits,
                              class_weights=class_balanced_weights(class_counts(config),
                                                                   N_SEEN).to(device),
                              targets=targets)
        self.method = PhaseLosses.of(inputs, phase=1, cb_reduction=config.quirks.cb_reduction,
                                     stage2_targets=None)
        self.augment = Augment(**dataclasses.asdict(config.train.augment))  # as the trainer's
        self.generator = torch.Generator().manual_seed(0)
        self.loss_sum = torch.zeros((), device=device)  # summed on the device, as the trainer
        self.batches_per_epoch = -(-len(self.data) // batch)
        self._epoch, self.batch_in_epoch = None, -1  # index of the batch last taken

    @property
    def next_index(self) -> int:
        """Index within its epoch of the batch the next step takes."""
        return (self.batch_in_epoch + 1) % self.batches_per_epoch

    def _next_batch(self):
        """The next batch, a new shuffled epoch when one runs out (as the trainer's loop)."""
        try:
            if self._epoch is None:
                raise StopIteration
            batch = next(self._epoch)
            self.batch_in_epoch += 1
        except StopIteration:
            self._epoch = self.data.batches(torch.arange(len(self.data)), self.batch,
                                            shuffle=True, augment=self.augment,
                                            generator=self.generator)
            batch, self.batch_in_epoch = next(self._epoch), 0
        return batch

    def mid_epoch(self) -> bool:
        """Whether the next step is neither an epoch's first (its shuffle and draws go to the
        device) nor its last (a smaller batch)."""
        return 0 <= self.batch_in_epoch < self.batches_per_epoch - 2

    def run(self, count: int) -> int:
        """Take `count` steps; the images their batches held (a partial batch counts what it
        holds; the shape is host-side metadata, read without waiting for the device)."""
        images = 0
        for _ in range(count):
            x, y = self._next_batch()
            images += y.shape[0]
            if self.numerics.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            terms = stage1_step(self.method, self.logits, self.optimizer, x, y)
            self.loss_sum += terms["total"].detach()
        return images


def warm_up(step: FastStep) -> None:
    """Finish the current epoch, if one is under way, then run a whole one: its first batch
    (shuffle, the draws' copy), every full batch and the partial last, so cuDNN's autotuning
    for both batch shapes and any torch.compile graphs happen before a clock starts."""
    step.run((step.batches_per_epoch - step.next_index) % step.batches_per_epoch
             + step.batches_per_epoch)
    synchronize(step.device)


def timed_windows(step: FastStep, windows: list[range]) -> tuple[int, float]:
    """(images, seconds) summed over the windows, one window per epoch: the steps up to each
    window's first batch run untimed, the clock stops around every epoch boundary, and each
    window is bracketed by synchronizations so that it owns exactly its own device work."""
    images, seconds = 0, 0.0
    for window in windows:
        per_epoch = step.batches_per_epoch
        step.run((per_epoch - step.next_index) % per_epoch + window.start)
        synchronize(step.device)
        start = time.perf_counter()
        images += step.run(len(window))
        synchronize(step.device)
        seconds += time.perf_counter() - start
    return images, seconds


def host_syncs(step: FastStep, set_mode=None) -> str:
    """Run three mid-epoch steps with CUDA's sync debug mode set to raise on any operation
    that makes the host wait for the GPU: "none", or the first offending operation."""
    if step.batches_per_epoch < 5:
        return "not checked (fewer than 5 batches an epoch)"
    while not step.mid_epoch():
        step.run(1)
    set_mode = set_mode or torch.cuda.set_sync_debug_mode
    synchronize(step.device)
    set_mode("error")
    try:
        for _ in range(3):
            if not step.mid_epoch():
                break
            step.run(1)
        return "none"
    except RuntimeError as error:
        return str(error).strip().splitlines()[0]
    finally:
        set_mode("default")


def importable(module: str) -> bool:
    """Whether `module` imports here (also gpu_check's test for what a check needs)."""
    import importlib

    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True


def reference_needs() -> str:
    """What the reference style (PIL decoding, torchvision's transforms) lacks here: on a lent
    GPU machine without a registry these may be absent, and the fast path is still measured."""
    return " and ".join(name for name, module in (("torchvision", "torchvision"), ("Pillow", "PIL"))
                        if not importable(module))


def reference_step(config: Experiment, device, images, labels, batch: int) -> ReferenceStep:
    model, teacher = make_networks(device, channels_last=False)
    method = config.method
    return ReferenceStep(model, teacher, images, labels, batch=batch, n_old=N_OLD,
                         beta=method.beta, temperature=method.temperature,
                         dscale=method.dscale, groups=GROUPS, counts=COUNTS)


# -- 3-5 -----------------------------------------------------------------------------------
def flops_per_training_image(config: Experiment) -> float:
    """Model FLOPs of one image in an incremental phase: forward, backward (2x forward) and
    the teacher's forward, as mgrb.perf.estimate counts them."""
    return 4 * forward_flops(config)


def projections(measurement: Measurement) -> list[dict]:
    rows = []
    for path in sorted((ROOT / "experiments").glob("*.yaml")):
        config = load_config(path)
        if config.dataset.name in PAPER_DATASETS:
            hours, _ = projected_hours(config, measurement)
            rows.append({"experiment": config.name, "projected_hours": round(hours, 3),
                         "shape": projection_shape(config, measurement)[0]})
    return rows


def packed(args, seconds: float, images: int) -> dict[int, float]:
    """Total images/s of 1, 2 and 4 runs sharing the device, each its own process on a set of
    `images`. Every run warms up through a whole epoch, then all start timing together and stop
    after `seconds` of wall-clock time. The shared window cannot dodge epoch boundaries, so it
    includes them, as sustained training does."""
    totals = {}
    command = [sys.executable, "-m", "benchmarks.bench_step", "--worker", "--device", args.device,
               "--batch", str(args.batch), "--pack-seconds", str(seconds),
               "--images", str(images)]
    command += ["--compile"] if args.compile else []
    for count in args.pack_runs:
        workers = [subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                    text=True, cwd=ROOT) for _ in range(count)]
        try:
            for worker in workers:
                if worker.stdout.readline().strip() != "ready":
                    raise BenchError(f"a packed run ({count} at once) failed before timing, "
                                     f"exit code {worker.wait()}; its error is printed above")
            for worker in workers:
                worker.stdin.write("go\n")
                worker.stdin.flush()
            rates = []
            for worker in workers:
                out, _ = worker.communicate()
                if worker.returncode != 0 or not out.strip():
                    raise BenchError(f"a packed run ({count} at once) failed while timing, "
                                     f"exit code {worker.returncode}; its error is printed above")
                rates.append(float(out.split()[-1]))
        finally:
            for worker in workers:
                if worker.poll() is None:
                    worker.kill()
                    worker.wait()
        totals[count] = round(sum(rates), 1)
        print(f"  {count} run(s) at once: {totals[count]:10.1f} images/s in total", flush=True)
    return totals


def worker(args) -> None:
    device = resolve_device(args.device)
    size = args.images or synthetic_size(device.type == "cuda", args.batch, 3)
    step = FastStep(load_config(EXPERIMENT), device, *synthetic_cifar(size), batch=args.batch,
                    compile=args.compile)
    with applied(step.numerics):  # the trainer's settings: TF32 off, cuDNN autotuning on a GPU
        warm_up(step)
        print("ready", flush=True)
        sys.stdin.readline()
        start, images = time.perf_counter(), 0
        while True:
            images += step.run(5)
            synchronize(device)
            elapsed = time.perf_counter() - start
            if elapsed >= args.pack_seconds:
                break
    print(images / elapsed, flush=True)


def _counts(text: str) -> tuple[int, ...]:
    try:
        counts = tuple(int(part) for part in text.split(","))
    except ValueError:
        counts = ()
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected positive counts such as 1,2,4")
    return counts


def _shapes(text: str) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(part.strip() for part in text.split(",")))
    if not names or not set(names) <= set(SHAPES) or "cifar" not in names:
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected cifar or cifar,imagenet (the CIFAR shape is always measured: "
            "its rate is what every reader of the results uses)")
    return names


def parse(argv):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, help="measured fast-path steps (default: 200 on a "
                        "GPU, 3 on a CPU); the reference style runs a quarter as many")
    parser.add_argument("--compile", action="store_true", help="torch.compile the fast path")
    parser.add_argument("--shapes", type=_shapes, metavar="cifar[,imagenet]",
                        help="the step shapes to measure (default: cifar,imagenet on a GPU, cifar "
                        "on a CPU, where an ImageNet-shaped image costs seconds); cifar is always "
                        "among them: its rate is the file's model_tflops, which every reader uses")
    parser.add_argument("--imagenet-batch", type=int, help="batch of the ImageNet-shaped step "
                        "(default: 128 on a GPU, 2 on a CPU)")
    parser.add_argument("--imagenet-steps", type=int, help="its measured steps (default: "
                        f"{IMAGENET_GPU_STEPS} on a GPU, 1 on a CPU)")
    parser.add_argument("--pack", choices=("auto", "yes", "no"), default="auto",
                        help="measure 1, 2 and 4 concurrent runs (auto: on a GPU)")
    parser.add_argument("--pack-runs", type=_counts, default=(1, 2, 4), metavar="N,N,...",
                        help="how many concurrent runs to measure (default: 1,2,4)")
    parser.add_argument("--pack-seconds", type=float, default=30.0,
                        help="timed window of each packed measurement")
    parser.add_argument("--peak-tflops", type=float,
                        help="the device's dense bf16 peak, for a GPU this script does not know "
                        "(for a MIG slice, the slice's own peak: it is not scaled)")
    parser.add_argument("--runs-dir", type=Path,
                        default=Path(os.environ.get("MGRB_RUNS") or ROOT / "runs"),
                        help="results go to RUNS_DIR/.bench/ (default: $MGRB_RUNS or runs/)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--images", type=int, help=argparse.SUPPRESS)  # a worker's set size
    args = parser.parse_args(argv)
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: PyTorch sees no CUDA device here")
    if args.batch < 1 or (args.steps is not None and args.steps < 1) or args.pack_seconds <= 0:
        parser.error("--batch, --steps and --pack-seconds must be positive")
    if any(value is not None and value < 1 for value in (args.imagenet_batch, args.imagenet_steps)):
        parser.error("--imagenet-batch and --imagenet-steps must be positive")
    if args.shapes is None:
        args.shapes = ("cifar", "imagenet") if args.device == "cuda" else ("cifar",)
    return args


def main(argv=None) -> int:
    args = parse(argv)
    if args.worker:
        worker(args)
        return 0
    try:
        return bench(args)
    except (BenchError, MGRBError) as error:
        print(f"bench: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("bench: interrupted; what was measured before packing is saved", file=sys.stderr)
        return 130


def writable_results_folder(runs_dir: Path) -> Path:
    """Checked before minutes of measuring, not after."""
    folder = bench_dir(runs_dir)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise BenchError(f"{folder}: cannot create the results folder ({error.strerror}); "
                         "give a writable --runs-dir") from None
    if not os.access(folder, os.W_OK):
        raise BenchError(f"{folder}: cannot write here; give a writable --runs-dir")
    return folder


class Plan(NamedTuple):
    """One shape's sizes, settled before anything is measured."""
    shape: StepShape
    batch: int
    steps: int
    images: int             # in the synthetic set
    windows: list[range]    # the timed batches (mid_epoch_windows)


def plan_shapes(args, on_gpu: bool) -> dict[str, Plan]:
    """The asked shapes' plans, refused now, not after minutes of measuring. The CIFAR shape
    takes --batch and --steps; the ImageNet one its own, far smaller on a CPU by default."""
    plans = {}
    for name in args.shapes:
        if name == "cifar":
            batch, steps = args.batch, args.steps or (200 if on_gpu else 3)
            images = synthetic_size(on_gpu, batch, steps)
        else:
            batch = args.imagenet_batch or (128 if on_gpu else 2)
            steps = args.imagenet_steps or (IMAGENET_GPU_STEPS if on_gpu else 1)
            images = imagenet_size(on_gpu, batch, steps)
        plans[name] = Plan(SHAPES[name], batch, steps, images, mid_epoch_windows(images, batch, steps))
    return plans


def fast_path(plan: Plan, config: Experiment, device: torch.device, images, labels, *,
              compile: bool, peak: float | None) -> dict:
    """The fast-path step of one shape, timed over mid-epoch windows after a whole warm-up
    epoch: its record in the results' `shapes`."""
    step = FastStep(config, device, images, labels, batch=plan.batch, compile=compile,
                    shape=plan.shape)
    with applied(step.numerics):  # the trainer's settings: TF32 off, cuDNN autotuning on a GPU
        warm_up(step)
        timed_images, timed_seconds = timed_windows(step, plan.windows)
        syncs = host_syncs(step) if device.type == "cuda" else "not checked (CPU)"
    rate = timed_images / timed_seconds
    per_image = flops_per_training_image(config)
    achieved = rate * per_image
    return {"label": SHAPE_LABELS[plan.shape.key], "experiment": config.name,
            "backbone": config.model.backbone, "stem": config.model.stem,
            "image_side": plan.shape.side, "input_side": plan.shape.out_size or plan.shape.side,
            "augment": dataclasses.asdict(step.augment), "batch": plan.batch, "steps": plan.steps,
            "synthetic_images": plan.images, "batches_per_epoch": step.batches_per_epoch,
            "images_resident": step.data.resident, "timed_windows": len(plan.windows),
            "timed_images": timed_images, "timed_seconds": timed_seconds,
            "numerics": step.numerics.describe(), "compile_report": step.compiler.report(),
            "host_syncs_in_step": syncs, "images_per_s": rate, "flops_per_image": per_image,
            "model_tflops": achieved / 1e12, "peak_fraction": achieved / peak if peak else None}


def measure(args, config, device: torch.device, plan: Plan) -> dict:
    """The regulariser and the CIFAR-shaped stage-1 step (fast path and reference style), as a
    record."""
    on_gpu = device.type == "cuda"
    steps, n_images, windows = plan.steps, plan.images, plan.windows
    name = device_name(device)
    sm_count = torch.cuda.get_device_properties(device).multi_processor_count if on_gpu else None
    peak, mig_share = device_peak(name, sm_count, args.peak_tflops)
    print(f"device: {name}; torch {torch.__version__}; batch {args.batch}; {steps} timed steps; "
          f"synthetic set of {n_images} images"
          + ("; torch.compile" if args.compile else ""), flush=True)
    reg = bench_regularizer(device, 200 if on_gpu else 100, config.method.beta)
    print(f"regulariser, 128 x {N_SEEN}: per-sample loop {reg['loop_ms']:.2f} ms, "
          f"vectorised {reg['vectorised_ms']:.3f} ms, {reg['speedup']:.0f}x", flush=True)

    images, labels = synthetic_cifar(n_images)
    shape = fast_path(plan, config, device, images, labels, compile=args.compile, peak=peak)
    fast = shape["images_per_s"]
    torch.backends.cudnn.benchmark = on_gpu  # the reference gets cuDNN's fastest kernels too
    missing = reference_needs()
    reference = None if missing else timed_rate(
        reference_step(config, device, images, labels, args.batch), device, max(2, steps // 4),
        args.batch)
    return {"device": name, "device_type": device.type, "torch": torch.__version__,
            "batch": args.batch, "steps": steps, "compile": args.compile,
            "synthetic_images": n_images, "batches_per_epoch": shape["batches_per_epoch"],
            "timed_windows": len(windows), "timed_images": shape["timed_images"],
            "timed_seconds": shape["timed_seconds"], "numerics": shape["numerics"],
            "compile_report": shape["compile_report"],
            "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
            "regularizer": reg, "fast_images_per_s": fast, "reference_images_per_s": reference,
            "ratio": fast / reference if reference else None,
            "reference_skipped": f"needs {missing}, not installed here" if missing else None,
            "host_syncs_in_step": shape["host_syncs_in_step"],
            "flops_per_image": shape["flops_per_image"], "model_tflops": shape["model_tflops"],
            "peak_tflops": peak / 1e12 if peak else None, "sm_count": sm_count,
            "peak_scaled_for_mig": mig_share is not None, "peak_mig_share": mig_share,
            "peak_fraction": shape["peak_fraction"], "shapes": {CIFAR_SHAPE: shape},
            "measured_at": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())}


def measure_imagenet(args, device: torch.device, plan: Plan, peak: float | None) -> dict:
    """The ImageNet-shaped fast-path step's record; out of GPU memory (a small MIG slice), a
    record that says so, and the CIFAR measurement stands."""
    config = load_config(plan.shape.experiment)
    print(f"ImageNet-100 step: batch {plan.batch}; {plan.steps} timed steps; synthetic set of "
          f"{plan.images} images of {plan.shape.side}x{plan.shape.side}", flush=True)
    images, labels = synthetic_images(plan.images, plan.shape.side)
    try:
        return fast_path(plan, config, device, images, labels, compile=args.compile, peak=peak)
    except torch.cuda.OutOfMemoryError:
        error = (f"out of GPU memory at batch {plan.batch}; a smaller --imagenet-batch measures "
                 "a rate, not the paper's batch")
    finally:
        del images, labels
    if device.type == "cuda":
        torch.cuda.empty_cache()  # what the failed step held, before packing starts its runs
    return {"label": SHAPE_LABELS[plan.shape.key], "experiment": config.name, "batch": plan.batch,
            "error": error}


def print_step(results: dict) -> None:
    fast, compiled, windows = results["fast_images_per_s"], results["compile_report"], results["timed_windows"]
    peak = results["peak_tflops"] and results["peak_tflops"] * 1e12
    print("stage-1 step, ResNet-34 + teacher, CIFAR-100 shapes:")
    print(f"  fast path       {fast:10.1f} images/s ({results['timed_images']} images in {windows} "
          f"timed mid-epoch window{'s' if windows > 1 else ''}, {results['timed_seconds']:.3g} s, "
          "after a whole warm-up epoch)")
    if results["reference_images_per_s"] is None:
        print(f"  reference style not measured: {results['reference_skipped']}")
    else:
        print(f"  reference style {results['reference_images_per_s']:10.1f} images/s")
        print(f"  ratio           {results['ratio']:10.1f}x")
    print(f"  host syncs inside a fast-path step: {results['host_syncs_in_step']}")
    if compiled["enabled"]:
        print(f"  torch.compile: {compiled['graphs']} graphs, {compiled['fallbacks_to_eager']} "
              "fallbacks to eager")
    achieved, mig_share = results["model_tflops"] * 1e12, results["peak_mig_share"]
    print(f"  model FLOP/s    {achieved / 1e12:10.3g} TFLOP/s "
          f"({results['flops_per_image'] / 1e9:.2f} GFLOP per training image)"
          + (f", {100 * achieved / peak:.1f}% of the {peak / 1e12:.0f} TFLOP/s bf16 peak"
             if peak else ", no peak known for this device (--peak-tflops)")
          + (f" (the MIG slice's {results['sm_count']} SMs, {100 * mig_share:.0f}% of the chip's)"
             if mig_share else ""), flush=True)


def print_shape(shape: StepShape, entry: dict, peak_tflops: float | None, on_gpu: bool) -> None:
    """A shape's fast-path rate, after the CIFAR table (print_step)."""
    print(f"stage-1 step, {shape.title}:")
    if "error" in entry:
        print(f"  not measured: {entry['error']}", flush=True)
        return
    windows = entry["timed_windows"]
    print(f"  fast path       {entry['images_per_s']:10.1f} images/s ({entry['timed_images']} images "
          f"in {windows} timed mid-epoch window{'s' if windows > 1 else ''}, "
          f"{entry['timed_seconds']:.3g} s, batch {entry['batch']})")
    if on_gpu:  # on a CPU the images are where the step runs either way
        print("  images          " + ("on the GPU" if entry["images_resident"] else
                                      "in pinned host memory, gathered batch by batch"))
        print(f"  host syncs inside a fast-path step: {entry['host_syncs_in_step']}")
    achieved = entry["model_tflops"]
    print(f"  model FLOP/s    {achieved:10.3g} TFLOP/s ({entry['flops_per_image'] / 1e9:.1f} GFLOP per "
          "training image)"
          + (f", {100 * achieved / peak_tflops:.1f}% of the bf16 peak" if peak_tflops else ""), flush=True)


def bench(args) -> int:
    writable_results_folder(args.runs_dir)
    device = resolve_device(args.device)
    plans = plan_shapes(args, device.type == "cuda")
    results = measure(args, load_config(EXPERIMENT), device, plans["cifar"])
    print_step(results)
    path = record(args.runs_dir, results)  # saved now: what follows may fail or be stopped
    if "imagenet" in plans:
        peak = results["peak_tflops"] and results["peak_tflops"] * 1e12
        entry = measure_imagenet(args, device, plans["imagenet"], peak)
        results["shapes"][IMAGENET_SHAPE] = entry
        print_shape(plans["imagenet"].shape, entry, results["peak_tflops"], device.type == "cuda")
        record(args.runs_dir, results)
    if device.type == "cpu":  # no GPU here: what a GPU step would launch, on a simulated one
        from benchmarks.simulated_steps import print_table, record_all

        simulated = record_all()
        print_table(simulated)
        results["simulated_cuda_steps"] = {
            name: {key: row[key] for key in ("aten_ops", "host_reads", "blocking_copies", "copies")}
            for name, row in simulated["paths"].items()}
        record(args.runs_dir, results)
    measurement = Measurement.from_results(results, Path())
    results["projections"] = projections(measurement)
    print("projected stage-1 time per paper experiment at the measured rates:")
    for row in results["projections"]:
        print(f"  {row['experiment']:<34} {row['projected_hours']:8.2f} h  "
              f"({SHAPE_LABELS[row['shape']]})")
    record(args.runs_dir, results)
    if args.pack == "yes" or (args.pack == "auto" and device.type == "cuda"):
        print(f"runs packed on one device, {args.pack_seconds:g} s timed together:", flush=True)
        results["packed_images_per_s"] = packed(args, args.pack_seconds, results["synthetic_images"])
        best, peak = max(results["packed_images_per_s"].values()), results["peak_tflops"]
        per_image = results["flops_per_image"]
        results["packed_best_peak_fraction"] = best * per_image / (peak * 1e12) if peak else None
        if peak:
            print(f"  best total: {100 * best * per_image / (peak * 1e12):.1f}% of the bf16 peak")
        record(args.runs_dir, results)
    print(f"written: {path}")
    return 0

if __name__ == "__main__":
    sys.exit(main())
