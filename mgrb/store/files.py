"""Files of a run folder: written whole or not at all, and read in place only.

Run folders travel, so a write never follows a link planted at its name, and a read refuses
a link, a FIFO or a device (`latest.pt -> /dev/zero` would never end)."""

from __future__ import annotations

import contextlib
import errno
import os
from pathlib import Path

from mgrb.errors import RunFolderError
from mgrb.store.contracts import RunFileError, open_regular


def atomic_write(path: Path, data: bytes) -> None:
    """Write to a temporary file beside `path`, flush it to disk, then rename over `path`.

    A full disk or an unwritable folder leaves `path` as it was and raises RunFolderError.
    """
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with os.fdopen(_create_exclusive(temporary), "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)  # a symlink at `path` is replaced, never followed
    except OSError as error:
        with contextlib.suppress(OSError):  # a folder gone or replaced: nothing to tidy
            temporary.unlink()
        raise RunFolderError(write_failure(path, error)) from None


def _create_exclusive(path: Path) -> int:
    """A new file at `path`. Whatever is there already (a temporary of a dead process with this
    pid, or a symlink planted to redirect the write) is removed, not written through."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    try:
        return os.open(path, flags, 0o644)
    except FileExistsError:
        path.unlink()
        return os.open(path, flags, 0o644)


def write_failure(path: Path, error: OSError) -> str:
    if error.errno == errno.ENOSPC:
        return (f"{path}: the disk is full. Nothing already saved was lost: the previous "
                f"version of this file is intact. Free some space on {path.parent} (old "
                "checkpoints of finished runs can go) and run the same command again to resume.")
    if error.errno == errno.ELOOP:
        return (f"{path}: is a symbolic link. A run folder's files are written in place only, "
                "never through a link (a folder from elsewhere may point them anywhere); "
                "remove the link, or choose another folder with --out.")
    if error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return (f"{path}: cannot write here ({error.strerror}). Make the run folder writable, "
                "or choose another one with --out.")
    return f"{path}: cannot be written ({error.strerror or error})"


def read_regular(path: Path, limit: int | None = None) -> bytes | None:
    """The bytes of a regular file, None when absent; opened as every file from outside is
    (mgrb.store.contracts.open_regular: in place, non-blocking, no link followed), so a link,
    a device, a FIFO or a folder in a run folder is refused: `latest.pt -> /dev/zero` would
    never end. RunFolderError names the file and what it is."""
    try:
        handle = open_regular(path)
    except RunFileError as error:
        raise RunFolderError(str(error)) from None
    if handle is None:
        return None
    with handle:
        try:
            data = handle.read() if limit is None else handle.read(limit + 1)
        except OSError as error:
            raise RunFolderError(f"{path}: cannot be read ({error.strerror})") from None
    if limit is not None and len(data) > limit:
        raise RunFolderError(f"{path}: larger than {limit} bytes; not a file this project writes")
    return data


def fsync_directory(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    except OSError as error:
        if error.errno != errno.EINVAL:  # a file system that cannot sync a directory
            raise
    finally:
        os.close(descriptor)
