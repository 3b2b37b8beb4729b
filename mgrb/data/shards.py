"""Shards of the uint8 cache written in parallel, for `mgrb data prepare` (mgrb/data/prepare.py).

Images are decoded (mgrb.data.folder.decode_image: OpenCV, as the authors' code) in chunks
by a pool of processes that never import torch, each writing straight into its shard's
memory-mapped temporary file, so no pixel crosses a pipe. A shard whose chunks are all
written is synced, hashed and renamed into place by a thread of the parent while the pool goes
on decoding the next one.
"""

from __future__ import annotations

import errno
import multiprocessing
import os
import signal
import threading
from collections import deque
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, ThreadPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mgrb.data.cache import sha256_files, shard_file
from mgrb.data.folder import decode_image
from mgrb.errors import DataError, MGRBError
from mgrb.store.files import fsync_directory

CHUNK_IMAGES = 32  # one task of a decoding process: small enough to keep every core busy


@dataclass(frozen=True)
class Shard:
    split: str
    index: int
    first: int  # index in its split of its first image
    paths: list[Path]
    sources: str  # sha256 of what the shard is made from: its files, their class ids, the size

    @property
    def file(self) -> str:
        return shard_file(self.split, self.index)


def available_cores() -> int:
    """The cores this process may run on, which a container or taskset may limit below
    os.cpu_count()."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def write_shards(shards: list[Shard], folder: Path, size: int, workers: int, finished,
                 report=None) -> None:
    """Decode the shards into `folder`, in order, with `workers` processes (1: in this one).
    `finished(shard, sha256)` is called as each lands under its name; `report(images)` as
    chunks are decoded. The pool is fed only a few chunks ahead, so that at most a shard or
    two are half written when the prepare stops."""
    chunks = deque((shard, first) for shard in shards for first in range(0, len(shard.paths), CHUNK_IMAGES))
    if not chunks:
        return
    left = {shard.file: -(-len(shard.paths) // CHUNK_IMAGES) for shard in shards}
    temporaries: dict[str, Path] = {}
    decoding: dict[Future, tuple[Shard, int]] = {}
    finishing: dict[Future, Shard] = {}
    decoded = 0
    pool = _Inline() if workers == 1 else ProcessPoolExecutor(
        min(workers, len(chunks)), mp_context=multiprocessing.get_context("spawn"),
        initializer=_worker_start)
    finisher = ThreadPoolExecutor(max_workers=1)
    try:
        while chunks or decoding or finishing:
            while chunks and len(decoding) < 4 * workers:
                shard, first = chunks.popleft()
                if shard.file not in temporaries:
                    temporaries[shard.file] = _create(folder, shard, size)
                paths = shard.paths[first:first + CHUNK_IMAGES]
                future = pool.submit(_fill, temporaries[shard.file], first, paths, size)
                decoding[future] = (shard, len(paths))
            for future in wait([*decoding, *finishing], return_when=FIRST_COMPLETED).done:
                if future in finishing:
                    finished(finishing.pop(future), future.result())
                    continue
                shard, count = decoding.pop(future)
                future.result()
                decoded, left[shard.file] = decoded + count, left[shard.file] - 1
                if not left[shard.file]:
                    finishing[finisher.submit(_finish, temporaries.pop(shard.file),
                                              folder / shard.file)] = shard
                if report:
                    report(decoded)
    except DataError as error:
        raise DataError(f"{error}. The shards finished so far are kept: run the same command "
                        "again afterwards to go on") from None
    except BrokenProcessPool:
        raise MGRBError("a decoding process died (out of memory, or killed?); run the same "
                        "command again: the shards finished so far are kept") from None
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        finisher.shutdown(wait=True)
        for temporary in temporaries.values():
            temporary.unlink(missing_ok=True)
    fsync_directory(folder)


def _create(folder: Path, shard: Shard, size: int) -> Path:
    """The shard's temporary file at full size, its blocks allocated now: a disk that fills
    up fails here, with a message, not as a SIGBUS in a process writing through the map."""
    temporary = folder / f".{shard.file}.{os.getpid()}.tmp"
    shape = (len(shard.paths), 3, size, size)
    try:
        with open(temporary, "wb") as handle:
            np.lib.format.write_array_header_1_0(
                handle, {"descr": "|u1", "fortran_order": False, "shape": shape})
            handle.flush()
            _allocate(handle, handle.tell() + int(np.prod(shape)))
    except OSError as error:
        temporary.unlink(missing_ok=True)
        raise DataError(f"{temporary}: cannot be written ({error.strerror}); free some space or "
                        "choose another folder with --out") from None
    return temporary


def _allocate(handle, size: int) -> None:
    try:
        os.posix_fallocate(handle.fileno(), 0, size)
    except (AttributeError, OSError) as error:  # macOS has none; some file systems refuse it
        if isinstance(error, OSError) and error.errno not in (errno.EOPNOTSUPP, errno.EINVAL):
            raise
        handle.truncate(size)


def _fill(temporary: Path, first: int, paths: list[Path], size: int) -> None:
    """Decode images into rows first.. of a shard (in a decoding process)."""
    shard = np.load(temporary, mmap_mode="r+")
    for row, path in enumerate(paths, start=first):
        shard[row] = decode_image(path, size).transpose(2, 0, 1)
    del shard  # unmapped: the pages are the file's, and the parent's fsync writes them out


def _finish(temporary: Path, path: Path) -> str:
    try:
        with open(temporary, "rb") as handle:
            os.fsync(handle.fileno())
        digest = sha256_files([temporary], workers=1)[0]
        if digest is None:
            raise DataError(f"{temporary}: cannot be read back")
        os.replace(temporary, path)
    except OSError as error:
        raise DataError(f"{path}: cannot be written ({error.strerror})") from None
    return digest


class _Inline:
    """The executor of one worker: decodes in this process, without starting another."""

    def submit(self, function, *args) -> Future:
        future = Future()
        try:
            future.set_result(function(*args))
        except Exception as error:
            future.set_exception(error)
        return future

    def shutdown(self, wait: bool = True, cancel_futures: bool = False) -> None:
        pass


def _worker_start() -> None:
    """A decoding process leaves Ctrl-C to its parent, and ends when the parent does, however
    it ends: one whose parent was killed with SIGKILL must not wait for work forever."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    parent = multiprocessing.parent_process()
    if parent is not None:
        threading.Thread(target=_exit_with, args=(parent,), daemon=True).start()


def _exit_with(parent) -> None:
    parent.join()
    os._exit(1)
