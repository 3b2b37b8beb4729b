"""Checkpoints off the critical path: a host copy now, the writing in a background thread.

Training goes on while a checkpoint is serialised, hashed and written (RunFolder.save_checkpoint:
fsync, atomic rename, previous kept). A kill at any moment leaves a loadable latest.pt.new,
latest.pt or previous.pt, and a checkpoint's event is appended only once the checkpoint is on
disk, so a reader that sees the event may kill the trainer and resume from it.
"""

from __future__ import annotations

import copy
import threading

import torch

from mgrb.store.runfolder import RunFolder

_IMMUTABLE = (type(None), bool, int, float, complex, str, bytes, torch.dtype, torch.device)


def host_copy(obj):
    """A copy of a checkpoint state that shares no memory with it, every tensor on the CPU.

    The training loop mutates parameters, optimiser moments and generator states in place, so
    each tensor needs a storage of its own: `.to("cpu")` returns a CPU tensor itself. A tensor
    that appears twice stays one tensor in the copy, as torch.save would have written it.
    CUDA tensors go to pinned memory without blocking, with one synchronisation at the end.
    """
    devices: set[torch.device] = set()
    copied = _copy(obj, {}, devices)
    for device in devices:
        torch.cuda.synchronize(device)
    return copied


def _copy(obj, memo: dict, devices: set):
    if isinstance(obj, torch.Tensor):
        if id(obj) not in memo:
            memo[id(obj)] = _tensor_copy(obj.detach(), devices)
        return memo[id(obj)]
    if isinstance(obj, _IMMUTABLE):
        return obj
    if isinstance(obj, dict):
        # copy.copy keeps the mapping's type and attributes: a state_dict is an OrderedDict
        # whose _metadata load_state_dict needs.
        copied = copy.copy(obj)
        for key, value in obj.items():
            copied[key] = _copy(value, memo, devices)
        for name, value in getattr(obj, "__dict__", {}).items():
            setattr(copied, name, _copy(value, memo, devices))
        return copied
    if isinstance(obj, list):
        copied = copy.copy(obj)
        copied[:] = [_copy(value, memo, devices) for value in obj]
        return copied
    if isinstance(obj, tuple):
        values = [_copy(value, memo, devices) for value in obj]
        return type(obj)(*values) if hasattr(obj, "_fields") else type(obj)(values)
    return copy.deepcopy(obj)  # anything else (numpy arrays, sets, objects): nothing shared


def _tensor_copy(tensor: torch.Tensor, devices: set) -> torch.Tensor:
    if tensor.is_cuda and tensor.layout == torch.strided:
        # Pinned memory lets the copy run asynchronously; the one synchronisation in host_copy
        # then waits for all of them together rather than for each tensor in turn.
        host = torch.empty_like(tensor, device="cpu", pin_memory=True)
        host.copy_(tensor, non_blocking=True)
        devices.add(tensor.device)
        return host
    return tensor.to("cpu", copy=True)


class CheckpointWriter:
    """Writes checkpoints in one background thread, at most one at a time, in order.

    `submit` returns once the state has been copied to host memory; the caller may then change
    its tensors. A failed write (a full disk, an unwritable folder, a state that cannot be
    pickled) is raised in the caller's thread by the next submit, flush or close.
    """

    def __init__(self, run: RunFolder):
        self.run = run
        self._condition = threading.Condition()
        self._job: tuple[dict, dict | None] | None = None  # waiting or being written
        self._error: BaseException | None = None
        self._closed = False
        self._thread = threading.Thread(target=self._work, name="checkpoint-writer", daemon=True)
        self._thread.start()

    def submit(self, state: dict, event: dict | None = None) -> None:
        """Write `state` as the latest checkpoint, then append `event` to the event log.

        Waits first for the write before it: checkpoints reach the disk in order, and no more
        than one host copy is held besides the one being written.
        """
        with self._condition:
            if self._closed:
                raise RuntimeError("this CheckpointWriter is closed")
            self._wait_until_idle()
            self._job = (host_copy(state), event)
            self._condition.notify_all()

    def flush(self) -> None:
        """Wait until every submitted checkpoint is on disk (and its event appended)."""
        with self._condition:
            self._wait_until_idle()

    def close(self) -> None:
        """Flush and stop the thread; a second close does nothing."""
        with self._condition:
            if self._closed:
                return
            self._closed = True  # the thread still finishes a write in hand before it stops
            self._condition.notify_all()
        self._thread.join()
        with self._condition:
            self._wait_until_idle()

    def __enter__(self) -> CheckpointWriter:
        return self

    def __exit__(self, kind, error, traceback) -> None:
        if error is None:
            self.close()
            return
        # The body's own exception goes on (an Interrupted after the stop checkpoint, say),
        # but not before that checkpoint is on disk, and a write failure is not dropped.
        try:
            self.close()
        except Exception as failure:
            error.add_note(f"Also, a checkpoint could not be written: {failure}")

    def _wait_until_idle(self) -> None:
        while self._job is not None:
            self._condition.wait()
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def _work(self) -> None:
        while True:
            with self._condition:
                while self._job is None and not self._closed:
                    self._condition.wait()
                if self._job is None:
                    return
                state, event = self._job
            failure = None
            try:
                self.run.save_checkpoint(state)
                if event is not None:
                    self.run.append_event(event)
            except BaseException as error:  # whatever it is, the caller's thread must see it
                failure = error
            del state  # the host copy's memory goes before the next submit makes another
            with self._condition:
                self._job, self._error = None, failure
                self._condition.notify_all()
