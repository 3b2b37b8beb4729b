"""Measured training throughput: what `make bench` found on this machine's GPU, so that
`mgrb list` and the launcher project experiment times from a measured rate instead of the
assumed one in the experiment files.

`make bench` writes one JSON file per device into <runs>/.bench/ (the runs folder, because it
is the folder a container keeps). Readers take the newest file measured on a GPU: the table's
column is GPU hours, and a CPU measurement says nothing about a GPU's time. A file that cannot
be read is passed over, never fatal: a projection is a convenience.

A step file holds the model FLOP/s of one or more training-step shapes. `model_tflops` is
always the CIFAR-shaped step's (the only one files had before `shapes`, and the one every
reader understands); `shapes` holds every measured shape by key, each with its own
`model_tflops`. ImageNet-100's 224x224 ResNet-18 step runs at another rate than CIFAR's 32x32
ResNet-34 one, so its experiments are projected from it where it was measured.

The data benchmark (benchmarks/bench_data.py) writes data-<device>.json beside them: the
prepare rate of the ImageNet-100 cache and the cache loader's images/s.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from mgrb.store.contracts import RunFileError, parse_json, read_bounded
from mgrb.store.files import atomic_write

BENCH_DIR = ".bench"
DATA_PREFIX = "data-"  # the data benchmark's files; never a step measurement
MAX_BYTES = 1024 * 1024

# The training-step shapes `make bench` measures, by the key its files use, and the words a
# projection's basis names them by.
CIFAR_SHAPE, IMAGENET_SHAPE = "cifar32_resnet34", "imagenet224_resnet18"
SHAPE_LABELS = {CIFAR_SHAPE: "32x32 ResNet-34 step", IMAGENET_SHAPE: "224x224 ResNet-18 step"}


@dataclass(frozen=True)
class Measurement:
    device: str
    model_tflops: float     # model FLOP/s of the CIFAR-shaped fast-path stage-1 step, in TFLOP/s
    measured_at: str
    path: Path
    # TFLOP/s of the other measured shapes by key (IMAGENET_SHAPE); empty in older files
    shapes: dict[str, float] = field(default_factory=dict, hash=False)

    def tflops(self, shape: str) -> float | None:
        """The measured rate of `shape`, None when this file has none."""
        return self.model_tflops if shape == CIFAR_SHAPE else self.shapes.get(shape)

    def describe(self, shape: str | None = None, note: str = "") -> str:
        """The rate a projection used, and the step shape it was measured on. Without a
        shape: the CIFAR-shaped rate, with the other shapes' rates after it."""
        rate = self.tflops(shape or CIFAR_SHAPE)
        detail = [SHAPE_LABELS.get(shape or CIFAR_SHAPE, shape)]
        if shape is None:
            detail += [f"{tflops:.3g} TFLOP/s on the {SHAPE_LABELS.get(key, key)}"
                       for key, tflops in sorted(self.shapes.items()) if key != CIFAR_SHAPE]
        detail += [note] if note else []
        # a GPU's bench times the bf16 fast mode, a CPU's fp32 (benchmarks/bench_step.py,
        # bench_precision); on a GPU the default numerics, fp32 with TF32, are slower
        mode = "fp32" if self.device.startswith("CPU") else "the bf16 fast mode"
        return (f"{rate:.3g} TFLOP/s measured on {self.device} by `make bench` in {mode} "
                f"({self.measured_at[:10]}, {'; '.join(detail)})")

    @classmethod
    def from_results(cls, results: dict, path: Path) -> Measurement:
        """The measurement in a step file's results; ValueError (or KeyError, TypeError) when
        they hold no usable CIFAR-shaped rate. A damaged `shapes` entry is passed over alone:
        the file's other rates still stand."""
        tflops = float(results["model_tflops"])
        if not (tflops > 0 and math.isfinite(tflops)):
            raise ValueError(f"model_tflops {tflops} is not a rate")
        shapes = {}
        found = results.get("shapes")
        for key, entry in (found.items() if isinstance(found, dict) else ()):
            try:
                rate = float(entry["model_tflops"])
            except (ValueError, TypeError, KeyError, IndexError):
                continue  # a shape that failed (out of memory) records an error, not a rate
            if key != CIFAR_SHAPE and rate > 0 and math.isfinite(rate):
                shapes[str(key)] = rate
        return cls(str(results["device"]), tflops, str(results["measured_at"]), path, shapes)


def bench_dir(runs_dir: Path) -> Path:
    return Path(runs_dir) / BENCH_DIR


def file_name(device: str) -> str:
    return re.sub(r"[^A-Za-z0-9.-]+", "_", device).strip("_") + ".json"


def data_file_name(device: str) -> str:
    return DATA_PREFIX + file_name(device)


def _write(path: Path, results: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, (json.dumps(results, indent=2) + "\n").encode())
    return path


def record(runs_dir: Path, results: dict) -> Path:
    """Write one benchmark's results (the dict `benchmarks/bench_step.py` builds)."""
    return _write(bench_dir(runs_dir) / file_name(results["device"]), results)


def record_data(runs_dir: Path, results: dict) -> Path:
    """Write the data benchmark's results (the dict `benchmarks/bench_data.py` builds)."""
    return _write(bench_dir(runs_dir) / data_file_name(results["device"]), results)


def _results(path: Path) -> dict | None:
    """A bench file's JSON object, or None when it cannot be read (half written, a FIFO, a
    link, not an object)."""
    try:
        results = parse_json(read_bounded(path, MAX_BYTES), path)
    except (OSError, RunFileError, ValueError):
        return None
    return results if isinstance(results, dict) else None


def _read(path: Path) -> Measurement | None:
    results = _results(path)
    if results is None or results.get("device_type") != "cuda":
        return None
    try:
        return Measurement.from_results(results, path)
    except (ValueError, TypeError, KeyError, AttributeError):
        return None  # not a measurement of make bench: the projection falls back to its assumption


def _bench_files(runs_dir: Path, data: bool) -> list[Path]:
    folder = bench_dir(runs_dir)
    if not folder.is_dir():
        return []
    return [path for path in sorted(folder.glob("*.json")) if path.name.startswith(DATA_PREFIX) == data]


def latest_gpu_measurement(runs_dir: Path) -> Measurement | None:
    """The newest GPU measurement in <runs>/.bench/, or None."""
    found = [m for m in map(_read, _bench_files(runs_dir, data=False)) if m is not None]
    return max(found, key=lambda m: m.measured_at, default=None)


def latest_data_measurement(runs_dir: Path, device_type: str | None = None) -> dict | None:
    """The newest data-benchmark results in <runs>/.bench/ (of a device type: "cuda", "cpu"),
    as written, or None. Files without a device and a time of measurement are passed over."""
    found = []
    for path in _bench_files(runs_dir, data=True):
        results = _results(path)
        if (results is not None and isinstance(results.get("device"), str)
                and isinstance(results.get("measured_at"), str)
                and device_type in (None, results.get("device_type"))):
            found.append(results)
    return max(found, key=lambda results: results["measured_at"], default=None)
