"""`mgrb data prepare`: decode an image-folder data set once into the uint8 cache that
mgrb/data/cache.py reads.

Each shard written (mgrb/data/shards.py) is recorded in progress.json with its sha256 and
the digest of the files it was made from, so a prepare stopped in any way, SIGKILL
included, resumes when run again: recorded shards made from the same files whose bytes
still hash as recorded are kept, the rest redone. The manifest is written last.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import io
import json
import os
import shutil
import stat
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mgrb.data import dataset_folder, default_root
from mgrb.data.cache import (CHANNELS, FORMAT, FORMAT_VERSION, MANIFEST, SHARD_FILE,
                             SPLITS, cache_folder, labels_file, read_cache_file, sha256_files)
from mgrb.data.folder import FILE_LISTS, Sources, _opencv
from mgrb.data.registry import CACHED, MINI, dataset
from mgrb.data.shards import Shard, available_cores, write_shards
from mgrb.errors import DataError
from mgrb.store.contracts import RunFileError, parse_json
from mgrb.store.files import atomic_write, fsync_directory

PROGRESS = "progress.json"
PROGRESS_LIMIT = 16 << 20  # a record per shard: ImageNet-100 has about 70
LOCK = ".prepare.lock"
SHARD_IMAGES = 2048  # 400 MB at 256x256: a lost shard costs seconds, and the folder stays short


@dataclass(frozen=True)
class Prepared:
    dataset: str
    folder: Path
    images: int
    decoded: int  # by this call; the rest were kept from an interrupted one
    seconds: float
    workers: int
    bytes: int

    def summary(self) -> str:
        rate = self.decoded / self.seconds if self.seconds > 0 else 0.0
        return (f"{self.dataset}: {self.images:,} images ({self.decoded:,} decoded now) in "
                f"{self.seconds:.1f} s, {rate:,.0f} images/s with {self.workers} "
                f"process{'es' if self.workers > 1 else ''}; "
                f"cache of {self.bytes / 1e9:.2f} GB in {self.folder}")


def prepare_cache(name: str, root: str | Path | None = None, out: str | Path | None = None, *,
                  workers: int | None = None, shard_images: int = SHARD_IMAGES,
                  image_size: int | None = None, verify_classes: bool = True,
                  report=None) -> Prepared:
    """Decode data set NAME under the data root into the cache folder `out` (default
    <root>/NAME-cache-SIZE). `report(done, total, kept)` is called as images are done."""
    if name not in CACHED:
        raise ValueError(f"no image cache for data set {name!r}")
    _opencv()  # missing, it is said now, not by every decoding process
    started = time.monotonic()
    size = image_size or dataset(name).cache_side
    folder = Path(out) if out else cache_folder(name, root, size)
    source_root = dataset_folder(default_root(root), name)
    layout = dataset(name).layout
    sources = (FILE_LISTS[layout](source_root, verify_classes) if layout == MINI
               else FILE_LISTS[layout](source_root))
    workers = max(1, workers or available_cores())
    shards = _plan(sources, size, shard_images)
    with _claimed(folder):
        (folder / MANIFEST).unlink(missing_ok=True)  # unfinished from here on
        for stale in folder.glob(".*.tmp"):
            stale.unlink()
        done = _kept_shards(folder, name, size, shards)  # writes progress.json: a cache from here
        label_digests = {split: _write_labels(folder, split, labels) for split, labels in
                         (("train", sources.train_labels), ("test", sources.test_labels))}
        pending = [shard for shard in shards if shard.file not in done]
        _check_space(folder, sum(len(shard.paths) for shard in pending) * 3 * size * size)
        total, kept = len(sources.train_paths) + len(sources.test_paths), sum(
            len(shard.paths) for shard in shards if shard.file in done)
        if report and kept:
            report(kept, total, kept)

        def finished(shard: Shard, digest: str) -> None:
            done[shard.file] = {"sources": shard.sources, "sha256": digest}
            _save_progress(folder, name, size, done)

        write_shards(pending, folder, size, workers, finished,
                     report and (lambda decoded: report(kept + decoded, total, kept)))
        planned = {shard.file for shard in shards}
        for old in folder.glob("*.npy"):  # shards of an earlier plan (another shard size)
            if SHARD_FILE.fullmatch(old.name) and old.name not in planned:
                old.unlink()
        _write_manifest(folder, sources, size, shards, done, label_digests)
    return Prepared(name, folder, total, total - kept, time.monotonic() - started, workers,
                    sum(path.stat().st_size for path in folder.iterdir() if path.is_file()))


def _plan(sources: Sources, size: int, shard_images: int) -> list[Shard]:
    shards = []
    for split, paths, labels in (("train", sources.train_paths, sources.train_labels),
                                 ("test", sources.test_paths, sources.test_labels)):
        for index, first in enumerate(range(0, len(paths), shard_images)):
            chunk = paths[first:first + shard_images]
            # class folder and file name: the identity of an image that survives a moved root
            identity = [size, first, [f"{p.parent.name}/{p.name}" for p in chunk],
                        labels[first:first + shard_images]]
            digest = hashlib.sha256(json.dumps(identity).encode()).hexdigest()
            shards.append(Shard(split, index, first, chunk, digest))
    return shards


@contextlib.contextmanager
def _claimed(folder: Path):
    """The folder, made if needed and held against a second prepare; a folder that holds
    anything but a cache is refused, as the prepare deletes files in it."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        # O_NOFOLLOW: a link planted as the lock would have a file made at its target
        descriptor = os.open(folder / LOCK, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK
                             | getattr(os, "O_CLOEXEC", 0), 0o644)
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise DataError(f"{folder / LOCK}: is a symbolic link; delete it and run again") from None
        raise DataError(f"{folder}: cannot be written ({error.strerror}); choose another folder "
                        "with --out") from None
    if not stat.S_ISREG(os.fstat(descriptor).st_mode):
        os.close(descriptor)
        raise DataError(f"{folder / LOCK}: is not a regular file; delete it and run again")
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(descriptor)
        raise DataError(f"{folder}: another `mgrb data prepare` is writing this cache; wait for "
                        "it to finish") from None
    try:
        foreign = sorted(path.name for path in folder.iterdir() if not _ours(path.name))
        if foreign and not (folder / PROGRESS).exists() and not (folder / MANIFEST).exists():
            raise DataError(f"{folder}: holds other files ({', '.join(foreign[:3])}), not "
                            "an image cache; choose a new or empty folder with --out")
        yield
    finally:
        os.close(descriptor)


def _ours(name: str) -> bool:
    return (name in (LOCK, PROGRESS, MANIFEST, *map(labels_file, SPLITS)) or bool(SHARD_FILE.fullmatch(name))
            or (name.startswith(".") and name.endswith(".tmp")))


def _write_labels(folder: Path, split: str, labels: list[int]) -> str:
    buffer = io.BytesIO()
    np.save(buffer, np.asarray(labels, dtype=np.int64))
    atomic_write(folder / labels_file(split), buffer.getvalue())
    return hashlib.sha256(buffer.getvalue()).hexdigest()


def _progress_record(folder: Path, name: str, size: int) -> dict:
    """Finished shards by file name, {"sources": ..., "sha256": ...}; nothing when the record
    is damaged or belongs to another data set, size or cache format (shards of an older
    format hold other pixels: they are decoded again)."""
    try:
        # bounded and in place: a FIFO or a link to /dev/zero here is a damaged record
        record = parse_json(read_cache_file(folder / PROGRESS, PROGRESS_LIMIT), folder / PROGRESS)
        if (record["dataset"] == name and record["image_size"] == size
                and record.get("format_version") == FORMAT_VERSION and record.get("channels") == CHANNELS):
            return {file: entry for file, entry in record["shards"].items() if isinstance(entry, dict)}
    except (OSError, ValueError, KeyError, TypeError, AttributeError, DataError, RunFileError):
        pass
    return {}


def _kept_shards(folder: Path, name: str, size: int, shards: list[Shard]) -> dict[str, dict]:
    """The recorded shards that need no decoding: made from the same files, and whole."""
    record = _progress_record(folder, name, size)
    candidates = [shard for shard in shards if record.get(shard.file, {}).get("sources") == shard.sources]
    digests = sha256_files([folder / shard.file for shard in candidates])
    kept = {shard.file: record[shard.file] for shard, digest in zip(candidates, digests)
            if digest == record[shard.file].get("sha256")}
    _save_progress(folder, name, size, kept)
    return kept


def _save_progress(folder: Path, name: str, size: int, done: dict[str, dict]) -> None:
    record = {"dataset": name, "image_size": size, "format_version": FORMAT_VERSION,
              "channels": CHANNELS, "shards": done}
    atomic_write(folder / PROGRESS, json.dumps(record, indent=1).encode())


def _check_space(folder: Path, needed: int) -> None:
    free = shutil.disk_usage(folder).free
    if needed > free:
        raise DataError(f"{folder}: the cache needs {needed / 1e9:.1f} GB more, and only "
                        f"{free / 1e9:.1f} GB are free there; free some space or choose another "
                        "folder with --out")


def _write_manifest(folder: Path, sources: Sources, size: int, shards: list[Shard],
                    done: dict[str, dict], label_digests: dict[str, str]) -> None:
    manifest = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "dataset": sources.name,
        "image_size": size, "channels": CHANNELS,
        "pixels": f"uint8 {CHANNELS}, channel-first (n, 3, {size}, {size}); every image read by "
                  f"cv2.imread (IMREAD_COLOR, EXIF orientation applied) and, unless it is "
                  f"{size}x{size} already, resized to {size}x{size} by cv2.resize (INTER_LINEAR), "
                  f"aspect ratio not kept, as the authors' code; OpenCV's BGR stored as {CHANNELS}",
        "source_root": str(sources.root), "split": sources.split, "wnids": list(sources.wnids),
        "counts": {"train": len(sources.train_paths), "test": len(sources.test_paths)},
        "labels": {split: {"file": labels_file(split), "sha256": label_digests[split]} for split in SPLITS},
        "shards": [{"file": shard.file, "split": shard.split, "first": shard.first,
                    "count": len(shard.paths), "sha256": done[shard.file]["sha256"]} for shard in shards],
    }
    atomic_write(folder / MANIFEST, json.dumps(manifest, indent=1).encode())
    fsync_directory(folder)
