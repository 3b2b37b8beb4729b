"""`mgrb check`: does each reproduced accuracy land inside the range the paper reported?"""

from __future__ import annotations

import statistics
from pathlib import Path

from mgrb.store import contracts
from mgrb.errors import MGRBError
from mgrb.store.runfolder import RESULTS

METRICS = ("avg_top1", "last_top1")
VERDICTS = ("reproduced", "above", "below", "no reference")


def verdict(value: float, reported: float | None, tolerance: float) -> str:
    """reproduced: |value - reported| <= tolerance; above / below: outside on either side."""
    if reported is None:
        return "no reference"
    if value > reported + tolerance:
        return "above"
    if value < reported - tolerance:
        return "below"
    return "reproduced"


def read_results(run_dir: str | Path) -> dict:
    """A finished run's results.json, checked against its contract (contracts.RESULTS_CONTRACT)."""
    path = Path(run_dir) / RESULTS
    if not Path(run_dir).is_dir():
        raise MGRBError(f"{run_dir}: no such run folder")
    try:
        results = contracts.read("results", path)
    except contracts.RunFileError as error:
        raise MGRBError(f"{error}; not a results file this project wrote (damaged, or made "
                        "elsewhere). Re-run the experiment to regenerate it.") from None
    if results is None:
        raise MGRBError(f"{path}: missing; the run has not finished (results.json is written "
                        "only at the end). Resume it with `mgrb run` first.")
    return results


def check_group(name: str, runs: list[dict], tolerance: float | None = None) -> list[dict]:
    """One row per metric for the runs of one experiment (several seeds: their mean)."""
    reported = runs[0].get("reported") or {}
    tol = tolerance if tolerance is not None else reported.get("tolerance", 2.0)
    rows = []
    for metric in METRICS:
        values = [float(run[metric]) for run in runs]
        mean = statistics.fmean(values)
        rows.append({
            "experiment": name, "metric": metric, "reproduced": round(mean, 2),
            "std": round(statistics.stdev(values), 2) if len(values) > 1 else None,
            "runs": len(values), "reported": reported.get(metric), "tolerance": tol,
            "verdict": verdict(mean, reported.get(metric), tol),
        })
    return rows


def check_runs(run_dirs: list[str | Path], tolerance: float | None = None) -> list[dict]:
    """Rows for every run folder given; folders of one experiment (seeds) count together."""
    groups: dict[str, list[dict]] = {}
    for run_dir in run_dirs:
        results = read_results(run_dir)
        groups.setdefault(results["experiment"], []).append(results)
    return [row for name, runs in groups.items() for row in check_group(name, runs, tolerance)]


def format_table(rows: list[dict]) -> str:
    lines = [f"{'experiment':<26} {'metric':<10} {'reported':>9} {'reproduced':>14} "
             f"{'tol':>5}  verdict"]
    for row in rows:
        reported = "-" if row["reported"] is None else f"{row['reported']:.2f}"
        value = f"{row['reproduced']:.2f}"
        if row["std"] is not None:
            value += f"±{row['std']:.2f}"
        lines.append(f"{row['experiment']:<26} {row['metric']:<10} {reported:>9} {value:>14} "
                     f"{row['tolerance']:>5.1f}  {row['verdict']}")
    return "\n".join(lines)
