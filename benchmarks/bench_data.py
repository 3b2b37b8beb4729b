"""`make bench`, second part: the rates of ImageNet-100's data path on this machine.

Measured, in one run of this script:
  1. the prepare rate: `mgrb data prepare imagenet100` (mgrb.data.prepare.prepare_cache) on a
     generated tree in ImageNet-100's layout, the 100 real class folders holding JPEGs of
     500x375 (ILSVRC's most common size, about its mean file size): images/s of the whole
     call, images per core-second (CPU time of this process and its decoding processes: the
     figure that carries to another machine's core count, and that a CPU shared with another
     job leaves nearly intact), and the decoding rate after the first chunk (the processes
     started). The files are fresh in the page cache: a cold disk can only be slower;
  2. the cache loader on the CPU: TensorBatches over a random uint8 (N, 3, 256, 256) tensor,
     out_size 224, with ImageNet-100's augmentation (random resized crop, flip, rotation as
     torchvision composes them, mgrb.data.augment), one epoch of batches of 128 after one
     warm-up batch: images held where they are used (resident) and not (host-gathered; on a
     CPU both take the same path);
  3. on a GPU, the same loader there: images on the GPU, and images in pinned host memory,
     each batch gathered there and copied while the next is gathered.
No training step runs here: bench_step.py measures the ImageNet-shaped step, loader included.
Results go to <runs>/.bench/data-<device>.json, beside bench_step.py's <device>.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from benchmarks.bench_step import IMAGENET_EXPERIMENT, device_name, synchronize
from mgrb.cli import positive_int
from mgrb.config import load_config
from mgrb.data.augment import Augment
from mgrb.data.batches import TensorBatches
from mgrb.data.registry import dataset
from mgrb.data.folder import IMAGENET_MEAN, IMAGENET_STD, imagenet100_wnids
from mgrb.data.prepare import prepare_cache
from mgrb.data.shards import CHUNK_IMAGES, available_cores
from mgrb.errors import MGRBError
from mgrb.perf.throughput import bench_dir, record_data

ROOT = Path(__file__).resolve().parents[1]

SOURCE_SIZE = (500, 375)   # width, height: ILSVRC-2012's most common image size
DISTINCT_JPEGS = 16        # written over and over: decoding cost depends on content, not identity
CLASSES = 100
MIN_IMAGES = 2 * CLASSES   # every class folder needs a training and a validation image
DEFAULT_IMAGES = 400
CHUNKS_PER_WORKER = 3      # the default tree's least: processes' start-up a small share
# ImageNet-100's images, for a projection of a full prepare: about 1,300 training images a
# class and ILSVRC's 50 validation ones.
IMAGENET100 = dataset("imagenet100")
FULL_IMAGES = CLASSES * (IMAGENET100.full_train_per_class + 50)
SIDE, OUT_SIZE = IMAGENET100.cache_side, IMAGENET100.side


class BenchError(Exception):
    pass


# -- 1. the prepare rate ---------------------------------------------------------------------
def photo_like_jpegs(count: int, seed: int = 0) -> list[bytes]:
    """`count` distinct JPEGs of 500x375 that cost about what a photograph costs to decode:
    smooth colour fields with grain, near 100 KB at quality 90, about ILSVRC's mean file. (Pure
    noise makes files three times larger and slower to decode; a flat colour, far faster.)"""
    rng = np.random.default_rng(seed)
    width, height = SOURCE_SIZE
    blobs = []
    for _ in range(count):
        coarse = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
        pixels = np.asarray(Image.fromarray(coarse).resize((width, height), Image.BICUBIC),
                            dtype=np.float32)
        pixels += rng.normal(0, 22, pixels.shape).astype(np.float32)
        buffer = io.BytesIO()
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(buffer, "JPEG", quality=90)
        blobs.append(buffer.getvalue())
    return blobs


def write_tree(data_root: Path, images: int) -> dict:
    """`images` JPEGs in ImageNet-100's layout under data_root/imagenet100: the 100 class
    folders of mgrb/resources/imagenet100_wnids.txt in train/ and val/, one validation image a
    class and the rest training images, spread as evenly as they go."""
    if images < MIN_IMAGES:
        raise BenchError(f"--images {images}: at least {MIN_IMAGES} are needed, a training and "
                         f"a validation image for each of the {CLASSES} classes")
    blobs = photo_like_jpegs(DISTINCT_JPEGS)
    train, extra = divmod(images - CLASSES, CLASSES)
    written, total_bytes = 0, 0
    for class_id, wnid in enumerate(imagenet100_wnids()):
        for split, count in (("train", train + (class_id < extra)), ("val", 1)):
            folder = data_root / "imagenet100" / split / wnid
            folder.mkdir(parents=True)
            for index in range(count):
                blob = blobs[written % len(blobs)]
                (folder / f"{wnid}_{index}.JPEG").write_bytes(blob)
                written, total_bytes = written + 1, total_bytes + len(blob)
    return {"images": written, "train_images": written - CLASSES, "val_images": CLASSES,
            "mean_file_bytes": round(total_bytes / written)}


def cpu_seconds() -> float:
    """User and system CPU time of this process (all its threads) and of its children that have
    ended: prepare_cache joins its decoding processes before it returns."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def time_prepare(data_root: Path, out: Path, workers: int) -> dict:
    """prepare_cache timed in this process: the wall clock and the CPU time of the whole call
    (listing, starting the decoding processes, decoding, hashing, the manifest), and the
    decoding rate between the first and the last chunk done, once the processes run (None for
    a tree of fewer than CHUNKS_PER_WORKER chunks a process)."""
    progress = []  # (time, images done) at each chunk decoded

    def report(done: int, total: int, kept: int) -> None:
        progress.append((time.perf_counter(), done))

    cpu, start = cpu_seconds(), time.perf_counter()
    prepared = prepare_cache("imagenet100", data_root, out, workers=workers, report=report)
    seconds, cpu = time.perf_counter() - start, cpu_seconds() - cpu
    decoding = None  # fewer chunks than a few a process: they all end together, no rate to see
    if len(progress) > CHUNKS_PER_WORKER * prepared.workers and progress[-1][0] > progress[0][0]:
        (first_at, first), (last_at, last) = progress[0], progress[-1]
        decoding = (last - first) / (last_at - first_at)
    return {"decoded": prepared.decoded, "workers": prepared.workers, "seconds": seconds,
            "cpu_seconds": cpu, "decoding_images_per_s": decoding, "cache_bytes": prepared.bytes}


def prepare_child(argv: list[str]) -> int:
    """`time_prepare` in a process of its own, its record printed as JSON: see measure_prepare."""
    data_root, out, workers = argv
    print(json.dumps(time_prepare(Path(data_root), Path(out), int(workers))))
    return 0


def measure_prepare(work: Path, images: int, workers: int) -> dict:
    """The tree written, then prepare_cache timed on it in a fresh interpreter started with -c.
    The decoding processes are spawned, and a spawned process first imports its parent's main
    module: run from here, that would be this script, torch and all, a second or more of CPU
    for each; `mgrb data prepare`'s processes import only mgrb's command line."""
    tree = write_tree(work / "data", images)
    command = [sys.executable, "-c", "import sys; from benchmarks.bench_data import prepare_child; "
               "sys.exit(prepare_child(sys.argv[1:]))", str(work / "data"), str(work / "cache"),
               str(workers)]
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    if done.returncode != 0 or not done.stdout.strip():
        last = (done.stderr.strip().splitlines() or ["no message"])[-1]
        raise BenchError(f"the timed prepare failed (exit {done.returncode}): {last}")
    timed = json.loads(done.stdout.strip().splitlines()[-1])
    decoded, seconds, cpu, workers = (timed[key] for key in ("decoded", "seconds", "cpu_seconds",
                                                              "workers"))
    per_core = decoded / cpu if cpu > 0 else None
    return {**tree, "source_size": list(SOURCE_SIZE), "image_size": SIDE, "workers": workers,
            "seconds": seconds, "cpu_seconds": cpu, "images_per_s": decoded / seconds,
            "images_per_core_s": per_core, "decoding_images_per_s": timed["decoding_images_per_s"],
            "cache_bytes": timed["cache_bytes"], "full_dataset_images": FULL_IMAGES,
            "projected_full_minutes": FULL_IMAGES / (per_core * workers) / 60 if per_core else None}


# -- 2 and 3. the cache loader ---------------------------------------------------------------
def imagenet_augment() -> Augment:
    """ImageNet-100's training augmentation, as its experiment files and the trainer have it."""
    return Augment(**dataclasses.asdict(load_config(IMAGENET_EXPERIMENT).train.augment))


def loader_rate(images: torch.Tensor, labels: torch.Tensor, device: torch.device, *,
                resident: bool, batch: int, augment: Augment) -> dict:
    """images/s of one shuffled epoch of TensorBatches, after one warm-up batch (kernels, the
    allocator, the pinned staging buffers), the epoch's shuffle and augmentation draws included:
    the loader's whole cost per epoch, with no training step to hide it behind."""
    data = TensorBatches(images, labels, IMAGENET_MEAN, IMAGENET_STD, device, out_size=OUT_SIZE,
                         resident=resident)
    generator = torch.Generator().manual_seed(0)

    def epoch(limit: int | None = None) -> int:
        count = 0
        for number, (_, y) in enumerate(data.batches(torch.arange(len(data)), batch, shuffle=True,
                                                     augment=augment, generator=generator)):
            count += y.shape[0]
            if limit is not None and number + 1 >= limit:
                break
        synchronize(device)
        return count

    epoch(limit=1)
    start = time.perf_counter()
    count = epoch()
    seconds = time.perf_counter() - start
    return {"resident": data.resident, "images": count, "seconds": seconds,
            "images_per_s": count / seconds}


def measure_loader(images: int, batch: int, devices: list[torch.device]) -> dict:
    """The loader on each device, images resident and host-gathered, over one random set."""
    generator = torch.Generator().manual_seed(1)
    pixels = torch.randint(0, 256, (images, 3, SIDE, SIDE), dtype=torch.uint8, generator=generator)
    labels = torch.randint(0, CLASSES, (images,), generator=generator)
    augment = imagenet_augment()
    rates = {}
    for device in devices:
        rates[device.type] = {
            "resident": loader_rate(pixels, labels, device, resident=True, batch=batch,
                                    augment=augment),
            "host_gathered": loader_rate(pixels, labels, device, resident=False, batch=batch,
                                         augment=augment)}
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return {"images": images, "image_side": SIDE, "out_size": OUT_SIZE, "batch": batch,
            "augment": dataclasses.asdict(augment), "rates": rates}


# -- the table and the record ----------------------------------------------------------------
def print_results(results: dict) -> None:
    print(f"ImageNet-100 data path on {results['device']} ({results['cpu_cores']} cores for this "
          f"process, torch {results['torch']} with {results['torch_threads']} threads):")
    prepare = results["prepare"]
    print(f"  prepare (mgrb data prepare imagenet100): {prepare['images']} JPEGs of "
          f"{prepare['source_size'][0]}x{prepare['source_size'][1]} (mean "
          f"{prepare['mean_file_bytes'] / 1e3:.0f} kB), {prepare['workers']} "
          f"process{'es' if prepare['workers'] > 1 else ''}")
    decoding = prepare["decoding_images_per_s"]
    print(f"    {prepare['seconds']:.2f} s: {prepare['images_per_s']:8.1f} images/s, "
          f"{prepare['images_per_core_s']:.1f} images per core-second ({prepare['cpu_seconds']:.2f} s "
          "of CPU, starting the processes included)"
          + (f"; decoding {decoding:.1f} images/s after the first chunk" if decoding else ""))
    if prepare["projected_full_minutes"]:
        print(f"    projected for ImageNet-100's ~{prepare['full_dataset_images']:,} images at "
              f"{prepare['workers']} busy cores: {prepare['projected_full_minutes']:.0f} min")
    loader = results["loader"]
    print(f"  cache loader (TensorBatches): {loader['images']:,} uint8 images of {loader['image_side']}x"
          f"{loader['image_side']} to {loader['out_size']}x{loader['out_size']} crops (random resized "
          f"crop, flip, rotation), batches of {loader['batch']}, one epoch:")
    names = {"resident": "resident", "host_gathered": "host-gathered"}
    for device_type, rows in loader["rates"].items():
        for key, row in rows.items():
            note = ""
            if device_type == "cpu" and key == "host_gathered":
                note = "  (on a CPU the same path as resident)"
            elif device_type == "cuda":
                note = "  (images on the GPU)" if key == "resident" else "  (pinned host memory, copied)"
            print(f"    {device_type:<5} {names[key]:<14} {row['images_per_s']:10.1f} images/s{note}")


def measure(args, work: Path) -> dict:
    on_gpu = args.device == "cuda"
    name = device_name(torch.device(args.device))
    print(f"device: {name}; prepare: {args.images} images, {args.workers} "
          f"process{'es' if args.workers > 1 else ''}; loader: {args.loader_images:,} images, "
          f"batch {args.batch}", flush=True)
    prepare = measure_prepare(work, args.images, args.workers)
    shutil.rmtree(work)  # the tree and the cache: no longer needed, and the loader wants memory
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if on_gpu else [])
    loader = measure_loader(args.loader_images, args.batch, devices)
    return {"device": name, "device_type": args.device,
            "cpu": platform.processor() or platform.machine(), "cpu_cores": available_cores(),
            "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
            "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
            "prepare": prepare, "loader": loader,
            "measured_at": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())}


def bench(args) -> int:
    folder = bench_dir(args.runs_dir)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise BenchError(f"{folder}: cannot create the results folder ({error.strerror}); give "
                         "a writable --runs-dir") from None
    if not os.access(folder, os.W_OK):
        raise BenchError(f"{folder}: cannot write here; give a writable --runs-dir")
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="mgrb-bench-data-", dir=args.out))
    try:
        results = measure(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print_results(results)
    print(f"written: {record_data(args.runs_dir, results)}")
    return 0


def parse(argv):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_data", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=positive_int,
                        help=f"JPEGs in the generated tree (default: {DEFAULT_IMAGES}, or "
                        f"{CHUNKS_PER_WORKER} chunks of {CHUNK_IMAGES} for each decoding process "
                        f"where that is more; at least {MIN_IMAGES})")
    parser.add_argument("--workers", type=positive_int,
                        help="decoding processes of the prepare (default: the cores this process may use)")
    parser.add_argument("--loader-images", type=positive_int,
                        help="images in the loader's uint8 set (default: 1024 without a GPU, 8192 with one)")
    parser.add_argument("--batch", type=positive_int, default=128, help="the loader's batch")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                        help="cuda: also measure the loader on the GPU (auto: when there is one)")
    parser.add_argument("--out", type=Path,
                        help="where the generated tree and cache are written, then removed (default: "
                        "the system's temporary folder); its disk is the one measured")
    parser.add_argument("--runs-dir", type=Path,
                        default=Path(os.environ.get("MGRB_RUNS") or ROOT / "runs"),
                        help="results go to RUNS_DIR/.bench/ (default: $MGRB_RUNS or runs/)")
    args = parser.parse_args(argv)
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: PyTorch sees no CUDA device here")
    args.workers = args.workers or available_cores()
    if args.images is None:
        args.images = max(DEFAULT_IMAGES, CHUNKS_PER_WORKER * CHUNK_IMAGES * args.workers)
    if args.images < MIN_IMAGES:
        parser.error(f"--images: at least {MIN_IMAGES} are needed, a training and a validation "
                     f"image for each of the {CLASSES} classes")
    args.loader_images = args.loader_images or (8192 if args.device == "cuda" else 1024)
    return args


def main(argv=None) -> int:
    args = parse(argv)
    try:
        return bench(args)
    except (BenchError, MGRBError) as error:
        print(f"bench_data: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("bench_data: interrupted; nothing written", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
