"""`mgrb check`: does each reproduced accuracy land inside the range the paper reported?"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path

from mgrb.reporting.runs import RunGroup, find_folders, group_runs
from mgrb.store.runstate import DAMAGED, FINISHED, NOT_A_RUN, Folder
from mgrb.text import one_line

METRICS = ("avg_top1", "last_top1")
VERDICTS = ("reproduced", "above", "below", "no reference")
# `mgrb check` exit statuses: 0 nothing below; 1 a verdict is below; 2 a path is not a run
# folder or its results are damaged; 3 no verdict at all, as nothing given has finished.
BELOW, BAD_INPUT, NOTHING_FINISHED = 1, 2, 3


def verdict(value: float, reported: float | None, tolerance: float) -> str:
    """reproduced: |value - reported| <= tolerance; above / below: outside on either side."""
    if reported is None:
        return "no reference"
    if value > reported + tolerance:
        return "above"
    if value < reported - tolerance:
        return "below"
    return "reproduced"


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


def group_rows(group: RunGroup, tolerance: float | None = None) -> list[dict]:
    """check_group's rows for one configuration of one experiment, named by its label; `runs`
    counts distinct seeds and `repeated_seeds` names seeds found in several folders."""
    rows = check_group(group.experiment, group.runs, tolerance)
    for row in rows:
        row.update(label=group.label, variant=group.variant,
                   repeated_seeds={str(seed): count for seed, count in group.repeated.items()})
    return rows


@dataclass
class Checked:
    rows: list[dict]        # verdict rows of the finished runs
    unfinished: list[dict]  # {"folder", "status", "message"}: failed or not finished
    bad: list[Folder]       # not run folders, or damaged results

    @property
    def exit_code(self) -> int:
        if self.bad:
            return BAD_INPUT
        if any(row["verdict"] == "below" for row in self.rows):
            return BELOW
        return NOTHING_FINISHED if not self.rows else 0


def check_runs(run_dirs: list[str | Path], tolerance: float | None = None) -> Checked:
    """Verdicts for every run found at or below the folders given, one configuration of one
    experiment per row; unfinished and failed runs, and what is not a run, set apart."""
    folders = find_folders(run_dirs)
    groups = group_runs([f.results for f in folders if f.status == FINISHED])
    return Checked(rows=[row for group in groups for row in group_rows(group, tolerance)],
                   unfinished=[{"folder": str(f.path), "status": f.status, "message": f.message}
                               for f in folders if f.status not in (FINISHED, NOT_A_RUN, DAMAGED)],
                   bad=[f for f in folders if f.status in (NOT_A_RUN, DAMAGED)])


def format_table(rows: list[dict], unfinished: list[dict] = ()) -> str:
    width = max([26] + [len(one_line(row.get("label", row["experiment"]))) for row in rows])
    lines = [f"{'experiment':<{width}} {'metric':<10} {'reported':>9} {'reproduced':>14} "
             f"{'tol':>5}  verdict"]
    for row in rows:
        reported = "-" if row["reported"] is None else f"{row['reported']:.2f}"
        value = f"{row['reproduced']:.2f}"
        if row["std"] is not None:
            value += f"±{row['std']:.2f}"
        lines.append(f"{one_line(row.get('label', row['experiment'])):<{width}} {row['metric']:<10} "
                     f"{reported:>9} {value:>14} {row['tolerance']:>5.1f}  {row['verdict']}"
                     f"{seed_note(row)}")
    for entry in unfinished:
        note = f"{entry['status']}: {one_line(entry['message'])}"
        lines.append(f"{one_line(entry['folder']):<{width}} {'-':<10} {'-':>9} {'-':>14} {'-':>5}  "
                     f"{note}")
    return "\n".join(lines)


def seed_note(row: dict) -> str:
    """How many distinct seeds, and which were found twice (each counted once)."""
    repeated = row.get("repeated_seeds") or {}
    if not repeated:
        return ""
    found = ", ".join(f"seed {seed} in {count} folders" for seed, count in repeated.items())
    return f"  (n={row['runs']}; {found}, counted once)"
