"""Progress for `make setup`'s long pip install: reads pip's output on stdin and prints one
numbered line per package, then, while pip unpacks several GB without a word, the size of
the environment every 20 s. Errors and anything unexpected are passed through unchanged.

    pip install ... 2>&1 | python3 scripts/install_progress.py --total N --watch .venv
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from pathlib import Path

QUIET_PREFIXES = ("Downloading ", "Using cached ", "Looking in indexes", "Looking in links",
                  "WARNING: Location ", "Requirement already satisfied")


def folder_megabytes(folder: Path) -> int:
    total = 0
    for directory, _, files in os.walk(folder):
        for name in files:
            try:
                total += os.lstat(os.path.join(directory, name)).st_size
            except OSError:  # pip replaces files while we walk
                pass
    return total // 2**20


def tick(folder: Path, every: float, stop: threading.Event, out) -> None:
    started = time.monotonic()
    while not stop.wait(every):
        print(f"  ... {folder_megabytes(folder):,} MB in {folder} after "
              f"{time.monotonic() - started:.0f} s", file=out, flush=True)


def package(requirement: str) -> str:
    """name==version, also for a wheel pip found as a file: /x/y/name-1.0-py3-none-any.whl."""
    if "/" not in requirement:
        return requirement
    name, version = Path(requirement).name.split("-")[:2]
    return f"{name}=={version}"


def follow(lines, total: int, out) -> int:
    """Numbered package lines for pip's own; returns how many packages it named."""
    count = 0
    for raw in lines:
        line = raw.rstrip("\n")
        stripped = line.strip()
        if stripped.startswith(("Collecting ", "Processing ")):
            count += 1
            print(f"  [{count}/{total}] {package(stripped.split()[1])}", file=out, flush=True)
        elif stripped.startswith("Installing collected packages"):
            print(f"  unpacking {count} packages (torch and the CUDA wheels take minutes) ...",
                  file=out, flush=True)
        elif stripped.startswith("Successfully installed"):
            print(f"  installed {len(stripped.split()) - 2} packages", file=out, flush=True)
        elif stripped and not stripped.startswith(QUIET_PREFIXES) and not stripped.startswith("━"):
            print(line, file=out, flush=True)
    return count


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--total", type=int, required=True, help="packages in the lock file")
    parser.add_argument("--watch", type=Path, required=True, help="the environment being filled")
    parser.add_argument("--every", type=float, default=20.0, help="seconds between size lines")
    args = parser.parse_args(argv)
    stop = threading.Event()
    ticker = threading.Thread(target=tick, args=(args.watch, args.every, stop, sys.stdout),
                              daemon=True)
    ticker.start()
    try:
        follow(sys.stdin, args.total, sys.stdout)
    finally:
        stop.set()
    return 0


if __name__ == "__main__":
    sys.exit(main())
