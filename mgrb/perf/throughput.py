"""Measured training throughput: what `make bench` found on this machine's GPU, so that
`mgrb list` and the launcher project experiment times from a measured rate instead of the
assumed one in the experiment files.

`make bench` writes one JSON file per device into <runs>/.bench/ (the runs folder, because it
is the folder a container keeps). Readers take the newest file measured on a GPU: the table's
column is GPU hours, and a CPU measurement says nothing about a GPU's time. A file that cannot
be read is passed over, never fatal: a projection is a convenience.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from mgrb.store.contracts import RunFileError, parse_json, read_bounded
from mgrb.store.files import atomic_write

BENCH_DIR = ".bench"


@dataclass(frozen=True)
class Measurement:
    device: str
    model_tflops: float     # model FLOP/s of the fast-path stage-1 step, in TFLOP/s
    measured_at: str
    path: Path

    def describe(self) -> str:
        return (f"{self.model_tflops:.3g} TFLOP/s measured on {self.device} by `make bench` "
                f"({self.measured_at[:10]})")


def bench_dir(runs_dir: Path) -> Path:
    return Path(runs_dir) / BENCH_DIR


def file_name(device: str) -> str:
    return re.sub(r"[^A-Za-z0-9.-]+", "_", device).strip("_") + ".json"


def record(runs_dir: Path, results: dict) -> Path:
    """Write one benchmark's results (the dict `benchmarks/bench_step.py` builds)."""
    path = bench_dir(runs_dir) / file_name(results["device"])
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, (json.dumps(results, indent=2) + "\n").encode())
    return path


def _read(path: Path) -> Measurement | None:
    try:
        results = parse_json(read_bounded(path, 1024 * 1024), path)
        if results.get("device_type") != "cuda":
            return None
        tflops = float(results["model_tflops"])
        if not tflops > 0:
            return None
        return Measurement(str(results["device"]), tflops, str(results["measured_at"]), path)
    except (OSError, RunFileError, ValueError, TypeError, KeyError, AttributeError):
        return None  # not a measurement of make bench: the projection falls back to its assumption


def latest_gpu_measurement(runs_dir: Path) -> Measurement | None:
    """The newest GPU measurement in <runs>/.bench/, or None."""
    folder = bench_dir(runs_dir)
    if not folder.is_dir():
        return None
    found = [m for m in map(_read, sorted(folder.glob("*.json"))) if m is not None]
    return max(found, key=lambda m: m.measured_at, default=None)
