"""`mgrb run --nproc N`: the same `mgrb run` in N processes on this machine, one per GPU (or
sharing the CPU), each with the environment torchrun gives its workers (RANK, LOCAL_RANK,
WORLD_SIZE, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT). A run started by a user's own
`torchrun --nproc-per-node N -m mgrb run ...` takes exactly the same path from there.

Unlike torchrun, this keeps `mgrb run`'s exit statuses (0 finished, 130 stopped with a
checkpoint, 2 a user error): a stop is passed to every process once, and a process that
fails takes the others down instead of leaving them waiting for it. Rank 0 speaks for the
run; the others' error output is shown only when one of them failed on its own (not merely
because rank 0 went away).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

from mgrb.errors import MGRBError, PeerLost
from mgrb.pipeline.command import without_nproc

INTERRUPTED = 130
PEER_LOST = PeerLost.exit_code  # stopped because another process of the run ended
GRACE_S = 30  # how long the others get to stop after one failed (they may wait in a collective)


def free_port() -> int:
    """A port free now (for tests that start processes by hand; run_workers hosts its store)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def host_store(nproc: int):
    """The rendezvous store the workers meet at, served by this process on a port the kernel
    picks as it binds (torchrun's agent does the same): a port chosen free and bound later by
    rank 0 could be taken in between (EADDRINUSE). The workers connect to it as clients
    (TORCHELASTIC_USE_AGENT_STORE)."""
    from datetime import timedelta

    import torch.distributed as dist

    return dist.TCPStore("127.0.0.1", 0, nproc, is_master=True, wait_for_workers=False,
                         timeout=timedelta(minutes=30))


def check_gpus(nproc: int, device_choice: str) -> None:
    """One process per GPU, or per core on the CPU: refused here, once, rather than by every
    process."""
    import torch

    if device_choice.startswith("cuda:"):  # process k takes GPU k: one GPU named is not that
        raise MGRBError(f"--device {device_choice} names one GPU, and --nproc {nproc} gives each "
                        f"process a GPU of its own (0 to {nproc - 1}): use --device cuda, and "
                        "CUDA_VISIBLE_DEVICES to choose which GPUs")
    if device_choice == "cpu" or not torch.cuda.is_available():
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        if nproc > (cores or 1):
            raise MGRBError(f"--nproc {nproc}: this process may use {cores} CPU core"
                            f"{'s' if cores != 1 else ''}, and more processes than cores only "
                            f"wait on each other; ask for at most {cores}")
        return
    count = torch.cuda.device_count()
    if nproc > count:
        raise MGRBError(f"--nproc {nproc}: {count} GPU{'s are' if count > 1 else ' is'} visible, "
                        "and each process trains on a GPU of its own; ask for at most "
                        f"{count}, or use --device cpu")


def run_workers(argv: list[str], nproc: int, device_choice: str = "auto") -> int:
    """Run `python -m mgrb <argv>` as `nproc` processes of one run; their exit status."""
    check_gpus(nproc, device_choice)
    store = host_store(nproc)  # held until the workers have ended
    port = store.port
    # the user's own words rather than a RunLine: every option, global ones such as --debug
    # included, reaches the workers as typed
    command = [sys.executable, "-m", "mgrb", *without_nproc(argv)]
    workers, errors, group = [], [], 0
    for rank in range(nproc):
        environment = {**os.environ, "RANK": str(rank), "LOCAL_RANK": str(rank),
                       "WORLD_SIZE": str(nproc), "LOCAL_WORLD_SIZE": str(nproc),
                       "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
                       "TORCHELASTIC_USE_AGENT_STORE": "True"}
        # one process group of their own: a Ctrl-C at the terminal reaches this process,
        # which passes it on once, as `mgrb reproduce` does for its runs
        errors.append(None if rank == 0 else tempfile.TemporaryFile())
        workers.append(subprocess.Popen(command, env=environment, stdin=subprocess.DEVNULL,
                                        stderr=errors[-1], process_group=group))
        group = group or workers[0].pid

    def pass_on(signum, frame):
        for worker in workers:
            if worker.poll() is None:
                worker.send_signal(signum)

    previous = {sig: signal.signal(sig, pass_on) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        code = _wait(workers)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        _stop(workers, signal.SIGKILL, 0)
    cause = _cause(workers)
    if cause:
        errors[cause].seek(0)
        sys.stderr.write(f"process {cause} of {nproc}: "
                         + errors[cause].read().decode("utf-8", "replace"))
    for file in errors[1:]:
        file.close()
    if cause is not None:
        return workers[cause].returncode if workers[cause].returncode > 0 else 1
    return code


def _failed_itself(code: int | None) -> bool:
    """Ended in an error of its own: not finished, stopped, stopped by us, or stopped because
    another process ended."""
    return code not in (None, 0, INTERRUPTED, PEER_LOST, -signal.SIGTERM, -signal.SIGKILL)


def _cause(workers: list[subprocess.Popen]) -> int | None:
    """The rank whose own failure ended the run, rank 0 first (it has said why already);
    None when none failed by itself."""
    return next((rank for rank, worker in enumerate(workers)
                 if _failed_itself(worker.returncode)), None)


def _wait(workers: list[subprocess.Popen]) -> int:
    """Rank 0's status once all have ended; the first failure's, when one fails (the others
    are stopped then: they would wait for it until the process group's timeout)."""
    while True:
        codes = [worker.poll() for worker in workers]
        failed = [code for code in codes if code not in (None, 0, INTERRUPTED)]  # PEER_LOST too
        if failed:
            _stop(workers, signal.SIGTERM, GRACE_S)
            return failed[0] if failed[0] > 0 else 1
        if None not in codes:
            return codes[0]
        try:
            workers[codes.index(None)].wait(timeout=0.5)
        except subprocess.TimeoutExpired:
            pass


def _stop(workers: list[subprocess.Popen], sig: int, grace_s: float) -> None:
    for worker in workers:
        if worker.poll() is None:
            worker.send_signal(sig)
    deadline = time.monotonic() + grace_s
    for worker in workers:
        try:
            worker.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
