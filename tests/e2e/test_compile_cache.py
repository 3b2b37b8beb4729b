"""torch.compile's caches in the runs folder: a second run of the same shapes, in a new
process, takes every compiled graph from the first run's cache (real `mgrb run` processes,
compiled on the CPU, where `train.compile: auto` would not compile: `true` asks for it)."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _run(runs: Path, name: str) -> dict:
    env = {key: value for key, value in os.environ.items()
           if key not in ("TORCHINDUCTOR_CACHE_DIR", "TRITON_CACHE_DIR")}
    done = subprocess.run(
        [sys.executable, "-m", "mgrb", "run", str(ROOT / "experiments" / "digits_5_1.yaml"),
         "--out", str(runs / name), "--quiet", "--device", "cpu", "--set", "train.compile=true",
         "--set", "train.epochs=1", "--set", "train.stage2_epochs=1"],
        capture_output=True, text=True, timeout=900, cwd=ROOT,
        env={**env, "MGRB_RUNS": str(runs), "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads((runs / name / "results.json").read_text())


def test_a_second_run_takes_its_compiled_graphs_from_the_first_runs_cache(tmp_path):
    runs = tmp_path / "runs"
    first, second = _run(runs, "first"), _run(runs, "second")
    cache = str(runs / ".cache" / "inductor")
    assert first["compile"]["cache"] == second["compile"]["cache"] == cache
    assert first["compile"]["cache_misses"] > 0 and first["compile"]["graphs"] > 0
    assert second["compile"]["cache_misses"] == 0
    assert second["compile"]["cache_hits"] >= first["compile"]["cache_misses"]
    assert second["numerics"]["compile_choice"] == "set: true"
    assert any((runs / ".cache" / "inductor").iterdir())
