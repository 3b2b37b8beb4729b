"""Runs the trainer as a child and records how it ended: `python -m artifact.core.supervise
FOLDER -- mgrb run ...`.

The launcher starts this in a session of its own, so closing the launcher never stops
training, and the exit status outlives the launcher in FOLDER/exit.json. A kill from outside
shows there as a negative status (the signal), a stop from the launcher as 130 (the trainer
saved a checkpoint).
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from .records import record_exit


def supervise(folder: Path, command: list[str]) -> int:
    child = subprocess.Popen(command)

    # The launcher asks a run to stop with SIGTERM to this process: the trainer checkpoints
    # and exits; this process must outlive it to write the record, so it only passes signals
    # on. (A forced stop kills the whole session, and the record stays unwritten.)
    def pass_on(signum, frame):
        if child.poll() is None:
            child.send_signal(signum)

    signal.signal(signal.SIGTERM, pass_on)
    signal.signal(signal.SIGINT, pass_on)
    signal.signal(signal.SIGHUP, pass_on)
    code = child.wait()
    record_exit(folder, code)
    return code


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) < 3 or args[1] != "--":
        print("usage: python -m artifact.core.supervise FOLDER -- COMMAND ...", file=sys.stderr)
        return 2
    return supervise(Path(args[0]), args[2:])


if __name__ == "__main__":
    sys.exit(main())
