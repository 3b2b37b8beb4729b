"""`make bench`: images/s of a stage-1 incremental-phase step, fast path against a pipeline
written to mirror the original code, on whatever device this machine has.

Measured, per run of this script on one machine:
  1. the multi-granularity regulariser for a batch of 128 x 100 classes: a per-sample Python
     loop that builds soft labels with .item() calls (the original) against mgrb's one
     indexed tensor operation;
  2. a CIFAR-100-shaped stage-1 step (ResNet-34, frozen teacher, class-balanced loss,
     regulariser, last phase: 90 old + 10 new classes): (a) mgrb's fast path, uint8 data on the
     device, batch augmentation, bf16 autocast and channels-last on a GPU; (b) the reference
     style: PIL transforms through torchvision, a DataLoader with 2 workers, per-sample soft
     labels, float32;
  3. achieved model FLOP/s and the fraction of the device's dense bf16 peak (GPU only);
  4. projected wall time of every experiment file from the measured rate;
  5. on a GPU, total images/s of 1, 2 and 4 concurrent runs (processes) on the device.
Results go to benchmarks/results/<device>.json.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mgrb.config import load_config  # noqa: E402
from mgrb.data.batches import Augment, TensorBatches  # noqa: E402
from mgrb.estimate import forward_flops, training_flops  # noqa: E402
from mgrb.hierarchy import soft_targets  # noqa: E402
from mgrb.losses import (class_balanced_weights, mg_regularizer,  # noqa: E402
                         negative_entropy, phase_loss)
from mgrb.models import IncrementalNet, build_backbone  # noqa: E402

# Dense bf16 tensor-core peaks from the vendors' data sheets (no sparsity), FLOP/s.
PEAK_BF16 = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L40S": 362e12, "RTX 4090": 165e12}
N_OLD, N_SEEN, BETA, T = 90, 100, 20.0, 2.0
MEAN, STD = (0.5071, 0.4866, 0.4409), (0.2673, 0.2564, 0.2762)


def device_peak(device: torch.device) -> tuple[str, float | None]:
    if device.type != "cuda":
        return f"CPU {platform.processor() or platform.machine()}", None
    name = torch.cuda.get_device_name(device)
    return name, next((peak for key, peak in PEAK_BF16.items() if key in name), None)


def synchronize(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# -- 1. the regulariser --------------------------------------------------------------------
def loop_regularizer(logits, labels, groups, beta):
    """The original's way: per sample, per class, a soft label built in Python."""
    total = 0.0
    for i in range(logits.shape[0]):
        y = labels[i].item()
        raw = [0.0 if j == y else (-beta / 2 if groups[j] == groups[y] else -beta)
               for j in range(logits.shape[1])]
        norm = sum(math.exp(v) for v in raw)
        soft = torch.tensor([math.exp(v) / norm for v in raw], device=logits.device)
        log_p = F.log_softmax(logits[i], dim=0)
        total = total + (torch.xlogy(soft, soft) - soft * log_p).sum()
    return total / logits.shape[0]


def bench_regularizer(device, repeats: int) -> dict:
    groups = [c % 20 for c in range(N_SEEN)]
    logits = torch.randn(128, N_SEEN, device=device)
    labels = torch.randint(0, N_SEEN, (128,), device=device)
    targets = soft_targets(beta=BETA, coarse=groups).to(device)
    assert torch.allclose(loop_regularizer(logits, labels, groups, BETA),
                          mg_regularizer(logits, labels, targets), atol=1e-5)

    def timed(fn, n):
        fn()
        synchronize(device)
        start = time.perf_counter()
        for _ in range(n):
            fn()
        synchronize(device)
        return (time.perf_counter() - start) / n

    loop_s = timed(lambda: loop_regularizer(logits, labels, groups, BETA), max(2, repeats // 50))
    entropy = negative_entropy(targets)  # once per phase in training
    fast_s = timed(lambda: mg_regularizer(logits, labels, targets, entropy), repeats)
    return {"loop_ms": loop_s * 1e3, "vectorised_ms": fast_s * 1e3, "speedup": loop_s / fast_s}


# -- 2. the stage-1 step -------------------------------------------------------------------
def make_networks(device, channels_last: bool):
    torch.manual_seed(0)
    model = IncrementalNet(build_backbone("resnet34"), N_SEEN).to(device)
    teacher = IncrementalNet(build_backbone("resnet34"), N_OLD).to(device).eval()
    for parameter in teacher.parameters():
        parameter.requires_grad_(False)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        teacher = teacher.to(memory_format=torch.channels_last)
    return model, teacher


def synthetic_cifar(n: int):
    generator = torch.Generator().manual_seed(1)
    images = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=generator)
    labels = torch.randint(0, N_SEEN, (n,), generator=generator)
    return images, labels


def fast_path(device, steps: int, batch: int, images, labels) -> float:
    on_gpu = device.type == "cuda"
    model, teacher = make_networks(device, channels_last=on_gpu)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.05)
    data = TensorBatches(images, labels, MEAN, STD, device)
    weights = class_balanced_weights([18] * N_OLD + [500] * (N_SEEN - N_OLD), 100).to(device)
    targets = soft_targets(beta=BETA, coarse=[c % 20 for c in range(N_SEEN)]).to(device)
    entropy = negative_entropy(targets)
    augment = Augment(crop_padding=4, flip=True, rotation=15)
    generator = torch.Generator().manual_seed(0)

    def run(count):
        done = 0
        while done < count:
            for x, y in data.batches(torch.arange(len(labels)), batch, shuffle=True,
                                     augment=augment, generator=generator):
                if on_gpu:
                    x = x.contiguous(memory_format=torch.channels_last)
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=on_gpu):
                    logits = model(x)
                    with torch.no_grad():
                        teacher_logits = teacher(x)
                    loss = phase_loss(logits, y, loss_set="ce+distill+hierloss", n_old=N_OLD,
                                      teacher_logits=teacher_logits, class_weights=weights,
                                      targets=targets, temperature=T, dscale=0.1, scale=1.0,
                                      cb_reduction="sum", target_neg_entropy=entropy)["total"]
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                done += 1
                if done == count:
                    return

    run(2)  # warm-up: cuDNN autotuning, allocator
    synchronize(device)
    start = time.perf_counter()
    run(steps)
    synchronize(device)
    return steps * batch / (time.perf_counter() - start)


class _PILCifar(torch.utils.data.Dataset):
    def __init__(self, images, labels):
        from torchvision import transforms as T_

        self.images = images.permute(0, 2, 3, 1).numpy()
        self.labels = labels
        self.transform = T_.Compose([
            T_.RandomCrop(32, padding=4), T_.RandomHorizontalFlip(), T_.RandomRotation(15),
            T_.ToTensor(), T_.Normalize(MEAN, STD)])

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, index):
        from PIL import Image

        return self.transform(Image.fromarray(self.images[index])), int(self.labels[index])


def reference_path(device, steps: int, batch: int, images, labels) -> float:
    model, teacher = make_networks(device, channels_last=False)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.05)
    groups = [c % 20 for c in range(N_SEEN)]
    counts = [18] * N_OLD + [500] * (N_SEEN - N_OLD)
    eta = (100 - 1) / 100
    loader = torch.utils.data.DataLoader(_PILCifar(images, labels), batch_size=batch,
                                         shuffle=True, num_workers=2, drop_last=True,
                                         persistent_workers=True)

    def run(count):
        done = 0
        while done < count:
            for x, y in loader:
                x, y = x.to(device), y.to(device)
                logits = model(x)
                with torch.no_grad():
                    teacher_logits = teacher(x)
                # per-sample class weights and soft labels, as the original built them
                weight = torch.tensor([(1 - eta) / (1 - eta ** counts[y[i].item()])
                                       for i in range(len(y))], device=device)
                cls = (F.cross_entropy(logits, y, reduction="none") * weight).sum()
                mg = loop_regularizer(logits, y, groups, BETA)
                p = F.softmax(teacher_logits / T, dim=1)
                kd = -(p * F.log_softmax(logits[:, :N_OLD] / T, dim=1)).sum(1).mean() * T * T
                alpha = N_OLD / N_SEEN
                loss = 0.1 * alpha * kd + (1 - alpha) * cls + mg
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                done += 1
                if done == count:
                    return

    run(1)
    synchronize(device)
    start = time.perf_counter()
    run(steps)
    synchronize(device)
    return steps * batch / (time.perf_counter() - start)


# -- 3-5 -----------------------------------------------------------------------------------
def step_flops_per_image() -> float:
    """Model FLOPs of one training image: forward + backward (2x forward) + teacher forward."""
    config = load_config(ROOT / "experiments" / "c100_ont_10_10.yaml")
    return 4 * forward_flops(config)


def projections(rate_images_per_s: float) -> list[dict]:
    """Wall time of each experiment from the measured CIFAR rate, scaled by FLOPs."""
    per_image = step_flops_per_image()
    flops_per_s = rate_images_per_s * per_image
    rows = []
    for path in sorted((ROOT / "experiments").glob("*.yaml")):
        config = load_config(path)
        if config["dataset"]["name"] == "digits":
            continue
        hours = training_flops(config) / flops_per_s / 3600
        rows.append({"experiment": config["name"], "projected_hours": round(hours, 3)})
    return rows


def packed(device, batch: int, seconds: float) -> dict:
    """Total images/s of 1, 2 and 4 runs sharing the GPU, each a separate process."""
    totals = {}
    for count in (1, 2, 4):
        command = [sys.executable, __file__, "--worker", str(seconds), "--batch", str(batch)]
        processes = [subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
                     for _ in range(count)]
        rates = [float(p.communicate()[0].strip().splitlines()[-1]) for p in processes]
        totals[count] = round(sum(rates), 1)
    return totals


def worker(seconds: float, batch: int) -> None:
    device = torch.device("cuda")
    images, labels = synthetic_cifar(20000)
    steps = 10
    rate = fast_path(device, steps, batch, images, labels)
    steps = max(10, int(rate * seconds / batch))
    print(fast_path(device, steps, batch, images, labels))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, help="measured steps (default: 3 on CPU, 200 on GPU)")
    parser.add_argument("--pack-seconds", type=float, default=30.0)
    parser.add_argument("--worker", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker is not None:
        worker(args.worker, args.batch)
        return 0
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(args.device)
    on_gpu = device.type == "cuda"
    if on_gpu:
        torch.backends.cudnn.benchmark = True
    steps = args.steps or (200 if on_gpu else 3)
    name, peak = device_peak(device)
    print(f"device: {name}; torch {torch.__version__}; batch {args.batch}; {steps} steps")

    reg = bench_regularizer(device, 200 if on_gpu else 100)
    print(f"regulariser, 128 x {N_SEEN}: per-sample loop {reg['loop_ms']:.2f} ms, "
          f"vectorised {reg['vectorised_ms']:.3f} ms, {reg['speedup']:.0f}x")

    images, labels = synthetic_cifar(20000 if on_gpu else 2048)
    fast = fast_path(device, steps, args.batch, images, labels)
    reference = reference_path(device, max(2, steps // 4), args.batch, images, labels)
    per_image = step_flops_per_image()
    achieved = fast * per_image
    print("stage-1 step, ResNet-34 + teacher, CIFAR-100 shapes:")
    print(f"  fast path       {fast:10.1f} images/s")
    print(f"  reference style {reference:10.1f} images/s")
    print(f"  ratio           {fast / reference:10.1f}x")
    print(f"  model FLOP/s    {achieved / 1e12:10.2f} TFLOP/s "
          f"({per_image / 1e9:.2f} GFLOP per training image)"
          + (f", {100 * achieved / peak:.1f}% of the {peak / 1e12:.0f} TFLOP/s bf16 peak"
             if peak else ", no peak known for this device"))
    results = {"device": name, "torch": torch.__version__, "batch": args.batch, "steps": steps,
               "regularizer": reg, "fast_images_per_s": fast, "reference_images_per_s": reference,
               "ratio": fast / reference, "model_tflops": achieved / 1e12,
               "peak_fraction": achieved / peak if peak else None,
               "measured_at": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())}
    results["projections"] = projections(fast)
    print("projected wall time of stage-1 training per experiment (from the fast-path rate):")
    for row in results["projections"]:
        print(f"  {row['experiment']:<34} {row['projected_hours']:8.2f} h")
    if on_gpu:
        results["packed_images_per_s"] = packed(device, args.batch, args.pack_seconds)
        print("runs packed on one GPU, total images/s:", results["packed_images_per_s"])
    out = ROOT / "benchmarks" / "results"
    out.mkdir(exist_ok=True)
    path = out / f"{name.replace(' ', '_').replace('/', '_')}.json"
    path.write_text(json.dumps(results, indent=2) + "\n")
    print(f"written: {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
