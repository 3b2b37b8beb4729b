"""A projection of an experiment's GPU time from its configuration, not a measurement.

The count is exact arithmetic on the protocol (how many images each phase trains on, for how
many epochs) times the backbone's forward FLOPs, counted by PyTorch on the project's own
model. Only the last step, FLOPs -> hours, rests on an assumed sustained rate; until the
benchmark measures the real rate on the real trainer, every number here is labelled a
projection.

    python -m mgrb.perf.estimate            table of PFLOP and projected GPU hours per experiment
    python -m mgrb.perf.estimate --write    also rewrite the `estimate:` block of the paper files
"""

from __future__ import annotations

import argparse
import functools
import re
import sys
from pathlib import Path

from mgrb.config import Experiment, load_config
from mgrb.data.protocol import PhasePlan, memory_sizes
from mgrb.data.registry import DATASETS, dataset
from mgrb.perf.throughput import CIFAR_SHAPE, IMAGENET_SHAPE

# ASSUMPTION, not a measurement: 50 TFLOP/s sustained. The trainer runs in fp32 by default
# (convolutions and matmuls in TF32, about 495 TFLOP/s dense peak on an H100) on 32x32 images at batch
# 128, where plain PyTorch training reaches roughly a tenth of peak; well-tuned bf16 ResNet
# training reaches 15-25% of the bf16 peak (989 TFLOP/s). `make bench` is to measure the real
# rate and replace this figure.
ASSUMED_SUSTAINED_TFLOPS = 50.0

# The data sets of the paper; the digits demo is not one, so --write leaves its files alone.
PAPER_DATASETS = tuple(name for name, record in DATASETS.items() if record.in_paper)

# The step shape `make bench` measures for a data set's experiments (mgrb.perf.throughput),
# by the registry's bench_shape; the others are projected from the CIFAR-shaped rate.
MEASURED_SHAPE = {"imagenet": IMAGENET_SHAPE}
# What a basis says when the data set's own shape was not measured and the CIFAR one stood in.
MISSING_SHAPE = {IMAGENET_SHAPE: "no ImageNet-shaped measurement"}


def training_image_steps(config: Experiment, train_per_class: int | None = None) -> dict:
    """Images through the network in stage 1, per phase and in total.

    Phase 0 trains on `initial` classes minus their hold-out images; phase t > 0 on the new
    classes minus their hold-out plus the e - v exemplars of every old class (docs/method.md
    section 1), each for `train.epochs` epochs. From phase 1 on, every stage-1 image also
    goes through the frozen teacher (forward only) for the distillation term.

    Left out as negligible: stage 2 (v images per seen class, backbone frozen: for CIFAR-100
    at most 2 x 100 x 40 = 8,000 forward passes a phase against about 1.4 million stage-1
    images), the class means of the visual hierarchy (one pass over the balanced set a
    phase) and the evaluation after each phase (one pass over the seen test images).
    """
    proto, num_classes = config.protocol, config.num_classes
    protocol = PhasePlan(num_classes, proto.initial, proto.increment)
    per_class, holdout = memory_sizes(num_classes, proto.memory_total, proto.memory_per_class,
                                      proto.holdout_fraction)
    # training images of a new class; `train_per_class` for a smaller, synthetic set
    fresh = (train_per_class or dataset(config.dataset.name).per_class_for_projection) - holdout
    exemplars = per_class - holdout  # training images of an old class
    epochs = config.train.epochs

    per_phase = []
    for phase in range(protocol.num_phases):
        new = protocol.seen(phase) - protocol.old(phase)
        images = new * fresh + protocol.old(phase) * exemplars
        per_phase.append(images * epochs)
    teacher = [0] + per_phase[1:]  # phase 0 has no teacher
    return {"per_phase": per_phase, "stage1": sum(per_phase),
            "teacher_per_phase": teacher, "teacher": sum(teacher),
            "images_per_epoch": [steps // epochs for steps in per_phase]}


@functools.cache
def _backbone_flops(backbone: str, stem: str, size: int, channels: int) -> float:
    """FLOPs of one forward pass of one image, counted as 2 x multiply-accumulates.

    The model is built on the meta device: FlopCounterMode needs only shapes, so even the
    224x224 CIFAR-stem ResNet-18 costs no real arithmetic and the count is instant. The
    Linear classifier (512 x classes) adds about 0.1 MFLOP and is left out.
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from mgrb.training.models import build_backbone

    with torch.device("meta"):
        model = build_backbone(backbone, channels, stem).eval()
        image = torch.empty(1, channels, size, size)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(image)
    return float(counter.get_total_flops())


def forward_flops(config: Experiment) -> float:
    """Forward FLOPs per image of the configured backbone at the data set's input size."""
    record = dataset(config.dataset.name)
    size, channels = record.side, record.channels
    return _backbone_flops(config.model.backbone, config.model.stem, size, channels)


def training_flops(config: Experiment) -> float:
    """Stage-1 FLOPs: a training step costs about 3 forwards (the backward pass is about
    twice the forward); the teacher adds one forward per image from phase 1 on."""
    steps = training_image_steps(config)
    forward = forward_flops(config)
    return steps["stage1"] * 3 * forward + steps["teacher"] * forward


def gpu_hours(config: Experiment, sustained_tflops: float = ASSUMED_SUSTAINED_TFLOPS) -> float:
    """Projected hours on one GPU at `sustained_tflops`; only as good as that rate."""
    return training_flops(config) / (sustained_tflops * 1e12) / 3600


def projection_shape(config: Experiment, measurement) -> tuple[str, str]:
    """(the measured step shape whose rate projects this experiment, a note for its basis).

    ImageNet-100 is projected from the 224x224 ResNet-18 step where the measurement has one;
    every other data set, and ImageNet-100 without it, from the 32x32 ResNet-34 step that every
    measurement holds (miniImageNet's 84x84 step has no measurement of its own). Model FLOP/s
    differ between those shapes, so a basis that had to fall back says so."""
    shape = MEASURED_SHAPE.get(dataset(config.dataset.name).bench_shape, CIFAR_SHAPE)
    if measurement.tflops(shape) is None:
        return CIFAR_SHAPE, MISSING_SHAPE.get(shape, f"no {shape} measurement")
    return shape, ""


def projected_hours(config: Experiment, measurement=None) -> tuple[float | None, str]:
    """(GPU hours, how they were obtained): from a measured rate when `make bench` has run on
    a GPU here (a `mgrb.perf.throughput.Measurement`), else the experiment file's `estimate:`.
    The basis names the step shape the rate was measured on (`projection_shape`)."""
    if measurement is None or config.dataset.name not in PAPER_DATASETS:
        return config.estimate.gpu_hours, config.estimate.basis or "no estimate"
    flops = training_flops(config)
    shape, note = projection_shape(config, measurement)
    return (flops / (measurement.tflops(shape) * 1e12) / 3600,
            f"projection: {_plain(flops / 1e15)} PFLOP of training at "
            f"{measurement.describe(shape, note)}")


def _three_digits(value: float) -> float:
    return float(f"{value:.3g}")


def _plain(value: float) -> str:
    """Three significant digits without an exponent: 92.5, 131, 3,130."""
    rounded = _three_digits(value)
    return f"{rounded:,.0f}" if rounded >= 100 else f"{rounded:g}"


def estimate_block(config: Experiment, sustained_tflops: float = ASSUMED_SUSTAINED_TFLOPS) -> str:
    """The `estimate:` block written into an experiment file."""
    pflop = training_flops(config) / 1e15
    hours = _three_digits(gpu_hours(config, sustained_tflops))
    basis = (f"projection: {_plain(pflop)} PFLOP of training at an assumed {sustained_tflops:g} "
             "TFLOP/s sustained (not measured; `make bench` will replace it)")
    return f'estimate:\n  gpu_hours: {hours}\n  basis: "{basis}"\n'


# The block as --write writes it: the key line and its indented lines, nothing after.
_BLOCK = re.compile(r"^estimate:[^\n]*\n(?:[ \t]+[^\n]*\n|[ \t]*\n(?=[ \t]))*", re.MULTILINE)


def write_estimate(path: Path, block: str) -> bool:
    """Replace the file's `estimate:` block (or add one before `dataset:`), keeping the
    rest of the text, comments included, byte for byte. Returns whether the file changed."""
    text = path.read_text(encoding="utf-8")
    if _BLOCK.search(text):
        updated = _BLOCK.sub(lambda _: block, text, count=1)
    elif re.search(r"^dataset:", text, re.MULTILINE):
        updated = re.sub(r"^dataset:", lambda _: block + "dataset:", text, count=1,
                         flags=re.MULTILINE)
    else:
        updated = text + ("" if text.endswith("\n") else "\n") + block
    if updated != text:
        path.write_text(updated, encoding="utf-8")
    return updated != text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mgrb.perf.estimate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--write", action="store_true",
                        help="rewrite the estimate: block of every paper experiment file")
    parser.add_argument("--experiments", type=Path, default=Path("experiments"))
    parser.add_argument("--tflops", type=float, default=ASSUMED_SUSTAINED_TFLOPS,
                        help="sustained TFLOP/s to assume (default %(default)g, not measured)")
    args = parser.parse_args(argv)

    paths = sorted(args.experiments.glob("*.yaml"))
    if not paths:
        print(f"no experiment files in {args.experiments}/", file=sys.stderr)
        return 1
    print(f"projection at an assumed {args.tflops:g} TFLOP/s sustained (not measured)")
    print(f"{'experiment':<34} {'GFLOP/img':>9} {'PFLOP':>9} {'GPU hours':>9}")
    for path in paths:
        config = load_config(path)
        pflop = training_flops(config) / 1e15
        hours = gpu_hours(config, args.tflops)
        note = ""
        if config.dataset.name not in PAPER_DATASETS:
            note = "  (not a paper experiment: file left alone)"
        elif args.write and write_estimate(path, estimate_block(config, args.tflops)):
            note = "  (written)"
        print(f"{config.name:<34} {forward_flops(config) / 1e9:>9.3g} {pflop:>9.4g} "
              f"{hours:>9.3g}{note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
