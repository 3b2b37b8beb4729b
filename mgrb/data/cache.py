"""The uint8 cache of an image-folder data set: written once by `mgrb data prepare`
(mgrb/data/prepare.py), read back as one tensor per split.

A cache folder holds shards `train-00000.npy`, `test-00000.npy`, ... of shape (n, 3, S, S),
uint8, RGB and channel-first (the layout training indexes; the manifest records the order as
`"channels": "RGB"`), decoded as the authors' code did (cv2.imread, cv2.resize:
mgrb.data.folder.decode_image), the class ids of each split as int64 (`train-labels.npy`), and
`manifest.json`, written last: a folder without it is unfinished. The manifest holds each
file's sha256, and a load checks every byte against it: a cache is read whole at each run
start anyway, so the check costs little more than the read.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from mgrb.data import default_root
from mgrb.data.base import ClassIncrementalData
from mgrb.data.registry import CACHED, dataset
from mgrb.errors import DataError
from mgrb.store.contracts import RunFileError, open_regular, parse_json

# Version 2: decoded by OpenCV as the original; version 1 was decoded by PIL (other pixels).
FORMAT, FORMAT_VERSION = "mgrb-image-cache", 2
CHANNELS = "RGB"  # the channel order of the shards, recorded in the manifest
MANIFEST = "manifest.json"
SPLITS = ("train", "test")


# A manifest lists a few hundred shards: a megabyte is far more than one ever needs.
MANIFEST_LIMIT = 1 << 20
# Bounds a manifest must keep before anything is allocated from it: the classes of each data
# set, a side (ImageNet-100 is cached at 256), and images per split (ImageNet-100 has 126,689)
MAX_SIDE, MAX_IMAGES = 1024, 2_000_000


def open_cache_file(path: Path):
    """A cache file open for reading, None when absent: regular files only, read in place
    (a FIFO would block for ever, a link to /dev/zero never end); DataError otherwise."""
    try:
        return open_regular(path)
    except RunFileError as error:
        raise DataError(f"{path}: {error.reason}; a cache holds regular files only: "
                        "prepare the cache again") from None


def read_cache_file(path: Path, limit: int) -> bytes:
    """The bytes of a small cache file (FileNotFoundError when absent), at most `limit`."""
    handle = open_cache_file(path)
    if handle is None:
        raise FileNotFoundError(path)
    with handle:
        try:
            data = handle.read(limit + 1)
        except OSError as error:
            raise DataError(f"{path}: cannot be read ({error.strerror})") from None
    if len(data) > limit:
        raise DataError(f"{path}: larger than {limit:,} bytes, so not a file `mgrb data "
                        "prepare` wrote; prepare the cache again")
    return data


def cache_side(name: str, network_side: int | None = None) -> int:
    """The cache's image side for a network side: ImageNet-100's 224 crops come from 256x256
    images (the same 8:7 for a reduced side); miniImageNet is seen whole."""
    record = dataset(name)
    if network_side is None:
        return record.cache_side
    return round(network_side * record.cache_side / record.side)
SHARD_FILE = re.compile(r"(train|test)-\d{5}\.npy")
_BLOCK = 16 << 20


def cache_folder(name: str, root: str | Path | None = None, image_size: int | None = None) -> Path:
    """Where `mgrb data prepare NAME` writes unless told otherwise: <data root>/NAME-cache-SIZE."""
    return default_root(root) / f"{name}-cache-{image_size or dataset(name).cache_side}"


def shard_file(split: str, index: int) -> str:
    return f"{split}-{index:05d}.npy"


def labels_file(split: str) -> str:
    return f"{split}-labels.npy"


def sha256_files(paths: list[Path], workers: int | None = None) -> list[str | None]:
    """The files' sha256, None for a file that cannot be read; hashed in threads, as hashlib
    releases the GIL."""
    def one(path: Path) -> str | None:
        digest = hashlib.sha256()
        try:
            handle = open_regular(path)  # a FIFO or a link to /dev/zero: no digest, never a wait
            if handle is None:
                return None
            with handle:
                while block := handle.read(_BLOCK):
                    digest.update(block)
        except (OSError, RunFileError):
            return None
        return digest.hexdigest()

    with ThreadPoolExecutor(max_workers=workers or min(8, os.cpu_count() or 1)) as pool:
        return list(pool.map(one, paths))


def prepare_command(name: str, root: str | Path | None = None, image_size: int | None = None,
                    out: str | Path | None = None) -> str:
    """The `mgrb data prepare` command that makes NAME's cache: --root unless the data root is
    the default ./data, --size for a reduced cache side, --out for a folder elsewhere."""
    import shlex

    words = ["mgrb", "data", "prepare", name]
    base = default_root(root)
    if base != Path("data"):
        words += ["--root", str(base.resolve())]
    record = dataset(name)
    side = image_size or record.cache_side
    if side != record.cache_side:
        words += ["--size", str(round(side * record.side / record.cache_side))]
    if out is not None and Path(out) != cache_folder(name, root, side):
        words += ["--out", str(Path(out).resolve())]
    return shlex.join(words)


def _remake(folder: Path, manifest: dict | None = None) -> str:
    """How to make the cache in `folder` again, as a command when the manifest tells the data
    set, its image folder and the side."""
    try:
        name, root, side = manifest["dataset"], manifest["source_root"], manifest["image_size"]
        if name not in CACHED or not isinstance(root, str) or not isinstance(side, int):
            raise TypeError
    except (TypeError, KeyError):
        return "make it again with `mgrb data prepare`"
    return f"make it again with `{prepare_command(name, root, side, out=folder)}`"


def read_manifest(folder: str | Path) -> dict:
    """The manifest, its structure checked: file names, and shards that tile each split."""
    folder = Path(folder)
    path = folder / MANIFEST
    if not folder.is_dir():
        raise DataError(f"{folder}: no such cache folder; `mgrb data prepare` makes one")
    try:
        data = read_cache_file(path, MANIFEST_LIMIT)
    except FileNotFoundError:
        data = None
    if data is None:
        raise DataError(f"{folder}: holds no {MANIFEST}, so it is an unfinished cache (or not a "
                        "cache); run `mgrb data prepare` for it again: an interrupted prepare "
                        "resumes where it stopped")
    try:
        manifest = parse_json(data, path)
    except RunFileError as error:
        raise DataError(f"{path}: {error.reason}; prepare the cache again") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise DataError(f"{path}: not the manifest of an mgrb image cache")
    if manifest.get("format_version") != FORMAT_VERSION:
        older = (" (decoded by PIL, not by OpenCV as the authors' code)"
                 if manifest.get("format_version") == 1 else "")
        raise DataError(f"{path}: a cache of format version {manifest.get('format_version')!r}"
                        f"{older}; this mgrb reads version {FORMAT_VERSION}: "
                        f"{_remake(folder, manifest)}")
    if manifest.get("channels") != CHANNELS:
        raise DataError(f"{path}: records channel order {manifest.get('channels')!r}, not "
                        f"{CHANNELS!r}; {_remake(folder, manifest)}")
    problem = _structure_problem(manifest)
    if problem:
        raise DataError(f"{path}: damaged ({problem}); prepare the cache again")
    return manifest


def _structure_problem(manifest: dict) -> str | None:
    def integer(value) -> bool:
        return isinstance(value, int) and not isinstance(value, bool) and value >= 0

    def digest(value) -> bool:
        return isinstance(value, str) and re.fullmatch(r"[0-9a-f]{64}", value) is not None

    wnids, counts, labels = manifest.get("wnids"), manifest.get("counts"), manifest.get("labels")
    for key in ("dataset", "source_root", "split"):
        if not isinstance(manifest.get(key), str):
            return key
    if manifest["dataset"] not in CACHED:
        return f"dataset {manifest['dataset']!r} (a cache holds {' or '.join(CACHED)})"
    if not integer(manifest.get("image_size")) or not 1 <= manifest["image_size"] <= MAX_SIDE:
        return f"image_size {manifest.get('image_size')!r} (1 to {MAX_SIDE})"
    if not isinstance(wnids, list) or not wnids or not all(isinstance(w, str) for w in wnids):
        return "wnids"
    record = dataset(manifest["dataset"])
    classes = record.classes
    if len(wnids) > classes or (record.every_class_cached and len(wnids) != classes):
        return f"wnids: {len(wnids)} classes, where {manifest['dataset']} has {classes}"
    if not isinstance(counts, dict) or not all(integer(counts.get(split)) for split in SPLITS):
        return "counts"
    for split in SPLITS:  # every class has images in both splits; no data set has millions
        if not len(wnids) <= counts[split] <= MAX_IMAGES:
            return (f"counts: {counts[split]} {split} images for {len(wnids)} classes (at least "
                    f"one a class, at most {MAX_IMAGES:,})")
    if not isinstance(labels, dict) or any(
            not isinstance(labels.get(split), dict) or labels[split].get("file") != labels_file(split)
            or not digest(labels[split].get("sha256")) for split in SPLITS):
        return "labels"
    shards = manifest.get("shards")
    if not isinstance(shards, list):
        return "shards"
    ends = dict.fromkeys(SPLITS, 0)
    for shard in shards:
        if (not isinstance(shard, dict) or not isinstance(shard.get("file"), str)
                or not SHARD_FILE.fullmatch(shard["file"]) or shard.get("split") not in SPLITS
                or not shard["file"].startswith(shard["split"]) or not integer(shard.get("first"))
                or not integer(shard.get("count")) or not shard["count"]
                or not digest(shard.get("sha256"))):
            return f"shard entry {shard!r}"
        if shard["first"] != ends[shard["split"]]:
            return f"{shard['file']} starts at image {shard['first']}, not {ends[shard['split']]}"
        ends[shard["split"]] += shard["count"]
    if ends != {split: counts[split] for split in SPLITS}:
        return f"the shards hold {ends} images, the counts say {counts}"
    return None


def _open_array(path: Path, shape: tuple[int, ...], dtype: str):
    """The file open at its first data byte, with the header bytes read, after checking that
    it is an .npy array of exactly this shape and type and nothing more."""
    import numpy as np

    handle = open_cache_file(path)
    if handle is None:
        raise DataError(f"{path}: missing from the cache; prepare the cache again")
    try:
        version = np.lib.format.read_magic(handle)
        if version not in ((1, 0), (2, 0)):
            raise ValueError(f"format version {version}")
        read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                       else np.lib.format.read_array_header_2_0)
        found_shape, fortran, found_dtype = read_header(handle)
        header_length = handle.tell()
    except (ValueError, OSError, SyntaxError) as error:
        handle.close()
        raise DataError(f"{path}: not an .npy array ({error}); prepare the cache again") from None
    expected_size = header_length + int(np.prod(shape)) * np.dtype(dtype).itemsize
    size = os.fstat(handle.fileno()).st_size
    if found_shape != shape or fortran or found_dtype != np.dtype(dtype) or size != expected_size:
        handle.close()
        raise DataError(f"{path}: holds {found_dtype} {found_shape} in {size} bytes, not {dtype} "
                        f"{shape} in {expected_size}; prepare the cache again")
    handle.seek(0)
    header = handle.read(header_length)
    return handle, header


def _read_into(path: Path, out, expected_sha256: str) -> None:
    """Fill `out` (a numpy view of the tensor being built) from the file and hash the same
    bytes on the way: each byte is read once."""
    handle, header = _open_array(path, out.shape, out.dtype.str)
    digest = hashlib.sha256(header)
    view, done = memoryview(out).cast("B"), 0
    with handle:
        while done < len(view):
            read = handle.readinto(view[done:done + _BLOCK])
            if not read:
                raise DataError(f"{path}: shorter than its header says; prepare the cache again")
            digest.update(view[done:done + read])
            done += read
    if digest.hexdigest() != expected_sha256:
        raise DataError(f"{path}: its sha256 differs from the one in {MANIFEST}: the file was "
                        "changed or damaged since the cache was prepared. Run `mgrb data prepare` "
                        "for it again: it redoes the shards that differ")


def load_cache(folder: str | Path, workers: int | None = None) -> ClassIncrementalData:
    """The cached data set, train and test images as uint8 tensors (N, 3, S, S), every file
    checked against the manifest first."""
    import torch

    from mgrb.data.folder import IMAGENET_MEAN, IMAGENET_STD

    folder = Path(folder)
    manifest = read_manifest(folder)
    size, counts, wnids = manifest["image_size"], manifest["counts"], manifest["wnids"]
    _check_room(folder, manifest)
    images = {split: torch.empty((counts[split], 3, size, size), dtype=torch.uint8) for split in SPLITS}
    labels = {split: torch.empty(counts[split], dtype=torch.int64) for split in SPLITS}
    jobs = [(folder / entry["file"], labels[split].numpy(), entry["sha256"])
            for split, entry in manifest["labels"].items()]
    jobs += [(folder / shard["file"],
              images[shard["split"]][shard["first"]:shard["first"] + shard["count"]].numpy(),
              shard["sha256"]) for shard in manifest["shards"]]
    failed = threading.Event()

    def read(job) -> None:
        if not failed.is_set():  # one bad file is enough: the others need not be read
            try:
                _read_into(*job)
            except DataError:
                failed.set()
                raise

    with ThreadPoolExecutor(max_workers=workers or min(8, os.cpu_count() or 1)) as pool:
        list(pool.map(read, jobs))  # raises the first failure in file order
    for split in SPLITS:
        if counts[split] and not 0 <= int(labels[split].min()) <= int(labels[split].max()) < len(wnids):
            raise DataError(f"{folder / labels_file(split)}: class ids outside 0..{len(wnids) - 1}")
    return ClassIncrementalData(
        name=manifest["dataset"], num_classes=len(wnids), train_images=images["train"],
        train_labels=labels["train"], test_images=images["test"], test_labels=labels["test"],
        class_names=list(wnids), mean=IMAGENET_MEAN, std=IMAGENET_STD, image_size=size,
        wnids=list(wnids), source=f"{manifest['source_root']}; split: {manifest['split']}; "
                                  f"decoded to {size}x{size} in {folder.resolve()}",
        extra={"cache": str(folder.resolve())})


def _check_room(folder: Path, manifest: dict) -> None:
    """Before the tensors are allocated: each shard's file holds the bytes its entry declares
    (a manifest that declares a terabyte is refused here, not by the allocator), and the
    whole cache fits the machine's memory."""
    side = manifest["image_size"]
    for shard in manifest["shards"]:
        needed = shard["count"] * 3 * side * side
        try:
            found = os.stat(folder / shard["file"], follow_symlinks=False).st_size
        except OSError:
            raise DataError(f"{folder / shard['file']}: missing from the cache; prepare the "
                            "cache again") from None
        if not needed < found <= needed + 4096:  # the .npy header is a few hundred bytes
            raise DataError(f"{folder / shard['file']}: {found:,} bytes, where its manifest entry "
                            f"declares {shard['count']} images of {side}x{side} ({needed:,} bytes "
                            "and a header); prepare the cache again")
    total = sum(manifest["counts"].values()) * 3 * side * side
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") if hasattr(os, "sysconf") else 0
    if memory and total > memory:
        raise DataError(f"{folder}: {total / 1e9:.1f} GB of images, more than this machine's "
                        f"{memory / 1e9:.1f} GB of memory; a run holds the whole cache in memory")


def cache_problem(name: str, root: str | Path | None = None,
                  image_size: int | None = None) -> str | None:
    """Why the default cache of NAME under the data root cannot be used (missing, unfinished,
    of an older format, damaged, another data set's), or None when it is finished and whole as
    far as its manifest and the files' sizes tell: cheap enough for a listing (nothing is
    hashed; `load_cache` hashes)."""
    folder = cache_folder(name, root, image_size)
    if not folder.is_dir():
        return f"{folder}: no such cache folder"
    try:
        manifest = read_manifest(folder)
        size = manifest["image_size"]
        files = [(labels_file(split), (manifest["counts"][split],), "<i8") for split in SPLITS]
        files += [(shard["file"], (shard["count"], 3, size, size), "|u1") for shard in manifest["shards"]]
        for file, shape, dtype in files:
            _open_array(folder / file, shape, dtype)[0].close()
    except DataError as error:
        return str(error)
    if manifest.get("dataset") != name:
        return f"{folder}: a cache of {manifest.get('dataset')!r}, not of {name}"
    return None


def cache_present(name: str, root: str | Path | None = None, image_size: int | None = None) -> bool:
    """Whether the default cache of NAME is finished and whole (`cache_problem`)."""
    return cache_problem(name, root, image_size) is None
