"""How long each check of `gpu_check` takes: an estimate, not a measurement.

The work is counted exactly: images through the network (mgrb.perf.estimate's protocol
arithmetic at the check's synthetic set size) times the backbone's FLOPs (counted by PyTorch
on the project's model), checkpoints times their bytes (parameters of the student, the
teacher and AdamW's two moments, in fp32). Only the rates below turn that into seconds, and
they are assumptions, stated so that a measured gpu-check can correct them:

- on one H100, small batches of 32x32 images keep the GPU far from its peak: 15 TFLOP/s in
  fp32 (TF32 off; 67 TFLOP/s is the fp32 peak), 25 in fp32 with TF32 (the default,
  `precision: auto`) and 60 in bf16;
  deterministic kernels at half that; the 224x224 ImageNet-shaped step, large enough to fill
  the tensor cores, 250 TFLOP/s in bf16;
- a cold torch.compile of a ResNet's forward and backward, 150 s (both precisions compile
  at once, in two processes);
- a Python process that imports torch and starts CUDA, 15 s; a checkpoint, its host copy,
  hash and write at 0.5 GB/s;
- the reference-style step of `make bench` decodes images on the CPU: 2,000 images/s.
The CPU rates are those of this project's two-core CI machine, loosely: the CPU profile's
estimate only decides what a --budget-s leaves out there.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Rates:
    where: str
    process_start_s: float
    tflops: dict            # sustained model TFLOP/s by kind of run
    compile_s: float
    checkpoint_gb_per_s: float
    reference_images_per_s: float


H100 = Rates("one H100", process_start_s=15,
             tflops={"fp32": 15, "tf32": 25, "bf16": 60, "deterministic": 7.5, "imagenet": 250},
             compile_s=150, checkpoint_gb_per_s=0.5, reference_images_per_s=2000)
TWO_CORE_CPU = Rates("a two-core CPU", process_start_s=6,
                     tflops={"fp32": 0.1, "tf32": 0.1, "bf16": 0.05, "deterministic": 0.1, "imagenet": 0.1},
                     compile_s=45, checkpoint_gb_per_s=0.3, reference_images_per_s=30)
TARGET_S = 480  # the GPU profile must fit one 10-minute call with room to spare


def _config(experiment: dict):
    from mgrb.config.experiment import config_from_data

    return config_from_data(experiment, "gpu-check")


def run_work(experiment: dict, train_per_class: int, test_per_class: int) -> dict:
    """FLOPs and checkpoint bytes of one `mgrb run` of a gpu-check experiment."""
    from mgrb.perf.estimate import forward_flops, training_image_steps

    config = _config(experiment)
    steps = training_image_steps(config, train_per_class=train_per_class)
    forward = forward_flops(config)
    phases = len(steps["per_phase"])
    # stage 2 (features of the balanced set, each epoch) and evaluation: forward passes
    tested = test_per_class * config.num_classes * phases
    flops = (steps["stage1"] * 3 + steps["teacher"]) * forward + tested * forward
    checkpoints = phases * (config.train.epochs // config.train.checkpoint_every + 1)
    return {"flops": flops, "checkpoints": checkpoints,
            "checkpoint_bytes": checkpoint_bytes(config.model.backbone, config.num_classes)}


def checkpoint_bytes(backbone: str, classes: int) -> int:
    """fp32 student, teacher and AdamW's two moments of each parameter."""
    import torch

    from mgrb.training.models import IncrementalNet, build_backbone

    with torch.device("meta"):
        model = IncrementalNet(build_backbone(backbone, 3), classes)
    return 4 * 4 * sum(parameter.numel() for parameter in model.parameters())


def run_seconds(work: dict, rates: Rates, kind: str, *, compiled: bool = False,
                extra_checkpoints: int = 0) -> float:
    checkpoints = work["checkpoints"] + extra_checkpoints
    return (rates.process_start_s + (rates.compile_s if compiled else 0)
            + work["flops"] / (rates.tflops[kind] * 1e12)
            + checkpoints * work["checkpoint_bytes"] / (rates.checkpoint_gb_per_s * 1e9))


def bench_seconds(rates: Rates, *, fast_images: int, reference_images: int,
                  imagenet_images: int, pack_runs: tuple[int, ...], pack_seconds: float,
                  pack_warm_images: int) -> float:
    """bench_step.py: the CIFAR-shaped fast path (warm-up epoch and timed steps), the
    reference style, the ImageNet-shaped step, and each packed measurement (its processes
    start and warm up together, then share the timed window)."""
    from benchmarks.bench_step import EXPERIMENT, IMAGENET_EXPERIMENT, flops_per_training_image
    from mgrb.config import load_config

    cifar = flops_per_training_image(load_config(EXPERIMENT))
    imagenet = flops_per_training_image(load_config(IMAGENET_EXPERIMENT))
    seconds = rates.process_start_s + fast_images * cifar / (rates.tflops["bf16"] * 1e12)
    seconds += reference_images / rates.reference_images_per_s
    seconds += imagenet_images * imagenet / (rates.tflops["imagenet"] * 1e12)
    for count in pack_runs:
        warm = pack_warm_images * count * cifar / (rates.tflops["bf16"] * 1e12)
        seconds += rates.process_start_s + warm + pack_seconds
    return seconds
