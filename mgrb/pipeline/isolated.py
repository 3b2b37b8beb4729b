"""One run in a process of its own, through `mgrb run`: what `mgrb reproduce` does per run.

A process per run is the only sure way to keep one run from reaching the next: CUDA memory
after an out-of-memory error, a crashed CUDA context, torch.compile caches and counters,
cuBLAS's workspace (fixed at the first CUDA call), deterministic mode and TF32 flags are all
process-wide. The child is the very `mgrb run` a user would type, so there is one code path.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from mgrb.pipeline.command import RunLine, run_words

INTERRUPTED = 130


@dataclass(frozen=True)
class Outcome:
    code: int            # the child's exit status; negative: killed by that signal
    error: str | None    # its last error line, or how it died; None when it finished

    @property
    def finished(self) -> bool:
        return self.code == 0

    @property
    def interrupted(self) -> bool:
        return self.code == INTERRUPTED


def run_command(experiment: Path, out: Path, *, seed: int | None, device: str, quiet: bool,
                experiments_dir: Path, nproc: int = 1) -> list[str]:
    """`nproc`: processes (one per GPU) the run trains with; the option only where above 1."""
    return run_words(RunLine(str(experiment), program=(sys.executable, "-m", "mgrb.cli"),
                             experiments_dir=experiments_dir, out=out, device=device, seed=seed,
                             nproc=nproc, quiet=quiet))


def run_isolated(command: list[str], *, stderr=None) -> Outcome:
    """Run `command`, passing its error output through as it comes (progress bars included)
    while keeping the end of it for the report.

    The child gets a process group of its own, so a Ctrl-C at the terminal reaches this
    process only, which passes it on once: the child then checkpoints and exits 130, exactly
    as `mgrb run` does when it alone gets the Ctrl-C. SIGTERM is passed on the same way.
    """
    stderr = stderr or sys.stderr
    child = subprocess.Popen(command, stdin=subprocess.DEVNULL, stderr=subprocess.PIPE,
                             process_group=0)

    def pass_on(signum, frame):
        if child.poll() is None:
            child.send_signal(signum)

    previous = {sig: signal.signal(sig, pass_on) for sig in (signal.SIGINT, signal.SIGTERM)}
    tail = b""
    try:
        while chunk := os.read(child.stderr.fileno(), 65536):
            stderr.write(chunk.decode("utf-8", "replace"))
            stderr.flush()
            tail = (tail + chunk)[-16384:]
        code = child.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if child.poll() is None:  # this process is being torn down: do not orphan the run
            child.send_signal(signal.SIGTERM)
            child.wait()
        child.stderr.close()
    return Outcome(code, None if code == 0 else error_of(code, tail.decode("utf-8", "replace")))


def error_of(code: int, output: str) -> str:
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"the run's process was killed by {name} (its last checkpoint remains; " \
               "run the same command again to resume)"
    lines = [line.strip() for line in output.replace("\r", "\n").splitlines() if line.strip()]
    for line in reversed(lines):
        if line.startswith("mgrb: "):
            return line.removeprefix("mgrb: ").removeprefix("error: ")
    last = lines[-1] if lines else "no error output"
    return f"exit status {code}: {last[:300]}"
