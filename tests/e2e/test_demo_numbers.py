"""A fresh CPU run of `make demo` gives the numbers README shows (generated from
docs/results/digits_5_1.json): to the digit on a CPU whose kernels match the record's
`cpu_kernels`, within a point or two elsewhere (docs/method.md section 10 says why)."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[2]
METRICS = ("top1", "top5", "old_top1", "new_top1")
# Measured spread of the demo across CPU kernel choices and thread counts (docs/method.md
# section 10): 0.57 points on the average, 1.00 on the last phase.
AVERAGE_SPREAD, LAST_SPREAD = 1.0, 2.0


def test_a_fresh_cpu_run_of_the_demo_gives_the_committed_numbers(tmp_path):
    committed = json.loads((ROOT / "docs" / "results" / "digits_5_1.json").read_text())
    result = subprocess.run([sys.executable, "-m", "mgrb", "run", "digits_5_1", "--device", "cpu",
                             "--out", str(tmp_path / "demo"), "--quiet"], cwd=ROOT,
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr
    fresh = json.loads((tmp_path / "demo" / "results.json").read_text())
    assert fresh["config"] == committed["config"], "experiments/digits_5_1.yaml changed: make demo-record"
    where = f"fresh run on {fresh['cpu_kernels']}, committed from {committed.get('cpu_kernels')}"
    if fresh["cpu_kernels"] == committed.get("cpu_kernels"):
        assert [[p[m] for m in METRICS] for p in fresh["phases"]] == \
            [[p[m] for m in METRICS] for p in committed["phases"]], where
        assert (fresh["avg_top1"], fresh["last_top1"]) == \
            (committed["avg_top1"], committed["last_top1"]), where
    else:
        print(f"other CPU kernels than the record's, so compared within "
              f"{AVERAGE_SPREAD}/{LAST_SPREAD} points: {where}")
        assert abs(fresh["avg_top1"] - committed["avg_top1"]) <= AVERAGE_SPREAD, where
        assert abs(fresh["last_top1"] - committed["last_top1"]) <= LAST_SPREAD, where
