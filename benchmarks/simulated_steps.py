"""The training step on the simulated CUDA device (simulated_cuda.py): ATen operations, host
reads and blocking copies of one mid-epoch step, on a machine without a GPU.

    python -m benchmarks.simulated_steps [--out FOLDER]

Each path is bench_step's FastStep (the trainer's numerics, PhaseLosses, TensorBatches
with the experiment's augmentation) on `--device cuda` as mgrb.devices resolves it:
  cifar     ResNet-34 and its teacher, CIFAR-100's 32x32 images (c100_ont_10_10)
  imagenet  the CIFAR-stem ResNet-18 and its teacher, 224x224 random resized crops of the
            256x256 images of `mgrb data prepare`'s cache (i100_ont_50_10)
each with the images on the GPU (resident) and in pinned host memory (gathered per batch).
After a warm-up epoch, one step that is neither an epoch's first nor its last is recorded.
A step's work does not depend on the batch size, so a small batch stands for the paper's.

The ATen operation count is a proxy for kernel launches (one operation may launch several
kernels, or none): the batch's gathering and augmentation, the forward passes of student and
teacher, the losses. Backward is not followed (autograd's engine needs a real CUDA context),
so the optimizer has no gradients to apply and its update is not counted either (one fused
AdamW launch on a GPU; tests/simcuda/test_training.py runs it with gradients of its own).
`make bench` prints these and records them in its results file; tests/simcuda asserts on them.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from benchmarks.simulated_cuda import SimulatedCuda

ROOT = Path(__file__).resolve().parents[1]
PATHS = {"cifar, resident": ("cifar", True), "cifar, pinned host": ("cifar", False),
         "imagenet, resident": ("imagenet", True), "imagenet, pinned host": ("imagenet", False)}
BATCH = 4
BATCHES_PER_EPOCH = 6  # a mid-epoch step needs at least 5 (bench_step.host_syncs)


def record_step(shape_key: str, resident: bool, *, device_choice: str = "cuda") -> dict:
    """One mid-epoch step of a path on the simulated device, as a summary (Record.summary)."""
    from benchmarks.bench_step import SHAPES, FastStep, synthetic_images, warm_up
    from mgrb.config import load_config
    from mgrb.devices import resolve_device
    from mgrb.training.numerics import applied

    shape = SHAPES[shape_key]
    config = load_config(shape.experiment)
    images, labels = synthetic_images(BATCH * BATCHES_PER_EPOCH, shape.side)
    with SimulatedCuda() as sim:
        device = resolve_device(device_choice)
        step = FastStep(config, device, images, labels, batch=BATCH, compile=False, shape=shape,
                        resident=resident)
        with applied(step.numerics):
            warm_up(step)
            while not step.mid_epoch():
                step.run(1)
            with sim.window() as record:
                step.run(1)
    return {"device": str(device), "images_resident": step.data.resident,
            "numerics": step.numerics.describe(), **record.summary(),
            "host_reads_at": record.reads, "blocking_copies_at": [c.where for c in record.blocking_copies],
            "top_ops": dict(record.ops.most_common(8))}


def record_all() -> dict:
    return {"device": "simulated CUDA (FakeTensorMode), no GPU", "torch": torch.__version__,
            "batch": BATCH, "measured_at": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
            "note": "ATen operations of one mid-epoch stage-1 step (batch, forward passes, "
                    "losses; backward and the optimizer's update not followed): a proxy for "
                    "kernel launches, not a speed",
            "paths": {name: record_step(*path) for name, path in PATHS.items()}}


def print_table(results: dict) -> None:
    print("one mid-epoch stage-1 step on the simulated CUDA device (batch, forward passes, "
          "losses; backward and the optimizer's update not followed):")
    for name, row in results["paths"].items():
        print(f"  {name:<22} {row['aten_ops']:5d} ATen ops, {row['host_reads']} host reads, "
              f"{row['blocking_copies']} blocking copies ({row['copies']} copies in all)")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, help="write simulated-cuda-steps.json here")
    args = parser.parse_args(argv)
    results = record_all()
    print_table(results)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        path = args.out / "simulated-cuda-steps.json"
        path.write_text(json.dumps(results, indent=2) + "\n")
        print(f"written: {path}")
    clean = all(row["host_reads"] == 0 and row["blocking_copies"] == 0
                for row in results["paths"].values())
    return 0 if clean else 1


if __name__ == "__main__":
    sys.exit(main())
