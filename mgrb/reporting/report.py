"""The reproduction report: reproduction.md, results.csv and figures, from finished runs."""

from __future__ import annotations

import csv
import io
import statistics
import time
from pathlib import Path

from mgrb.reporting.check import check_group, read_results
from mgrb.reporting.plots import plot_experiment, plot_summary
from mgrb.errors import MGRBError
from mgrb.store.contracts import NAME_PATTERN
from mgrb.store.files import atomic_write

MARKERS = {"reproduced": "✅ reproduced", "above": "⬆️ above", "below": "❌ below",
           "no reference": "— no reference"}
CSV_COLUMNS = ["experiment", "dataset", "protocol", "hierarchy", "metric", "reported",
               "tolerance", "reproduced_mean", "reproduced_std", "runs", "verdict",
               "wall_time_s", "device", "git_commit"]


def collect(run_dirs) -> dict[str, list[dict]]:
    """results.json of every run folder, grouped by experiment (seeds together)."""
    groups: dict[str, list[dict]] = {}
    for run_dir in run_dirs:
        results = read_results(run_dir)
        groups.setdefault(results["experiment"], []).append(results)
    return groups


def _hierarchy(runs: list[dict]) -> str:
    return runs[0].get("config", {}).get("hierarchy", {}).get("kind", "?")


def _claims(groups, tolerance) -> list[dict]:
    rows = []
    for name, runs in groups.items():
        for row in check_group(name, runs, tolerance):
            row.update(dataset=runs[0].get("dataset", "?"), protocol=runs[0].get("protocol", "?"),
                       hierarchy=_hierarchy(runs),
                       wall_time_s=round(sum(r.get("wall_time_s", 0) for r in runs), 1),
                       device="; ".join(sorted({r.get("device", "?") for r in runs})),
                       git_commit="; ".join(sorted({str(r.get("git_commit")) for r in runs})))
            rows.append(row)
    return rows


def _number(value, digits=2) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _one_line(text: str) -> str:
    """An error message as one list item: its line breaks would end the list."""
    return " ".join(str(text).split())


def _markdown(groups, rows, figures, failed, not_run) -> str:
    now = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    counts = {v: sum(r["verdict"] == v for r in rows) for v in MARKERS}
    lines = ["# MGRB reproduction report", "", f"Generated {now} by `mgrb report`.", "",
             "Verdicts: **reproduced** = inside reported ± tolerance; **above** / **below** = "
             "outside it; **no reference** = the paper reports no number for this experiment.",
             "", "## Claims", "",
             "| experiment | data set | protocol | hierarchy | metric | reported | reproduced | verdict |",
             "|---|---|---|---|---|---|---|---|"]
    for row in rows:
        reported = ("—" if row["reported"] is None
                    else f"{row['reported']:.2f} ± {row['tolerance']:g}")
        value = _number(row["reproduced"])
        if row["std"] is not None:
            value += f" ± {row['std']:.2f} (n={row['runs']})"
        lines.append(f"| {row['experiment']} | {row['dataset']} | {row['protocol']} | "
                     f"{row['hierarchy']} | {row['metric']} | {reported} | {value} | "
                     f"{MARKERS[row['verdict']]} |")
    lines += ["", ", ".join(f"{n} {v}" for v, n in counts.items()) + ".", "",
              "![summary](figures/summary.png)", ""]
    if failed or not_run:
        lines += ["## Not reproduced here", ""]
        lines += [f"- **{name}** failed: {_one_line(message)}" for name, message in failed.items()]
        lines += [f"- **{name}** not run: {_one_line(reason)}" for name, reason in not_run.items()]
        lines.append("")
    lines += ["## Per experiment", ""]
    for name, runs in groups.items():
        lines += [f"### {name}", "", f"![{name}]({figures[name]})", "",
                  "| phase | classes | top-1 | top-5 | old | new |", "|---|---|---|---|---|---|"]
        for index, phase in enumerate(runs[0]["phases"]):
            top1 = [run["phases"][index]["top1"] for run in runs]
            mean = statistics.fmean(top1)
            lines.append(f"| {phase['phase'] + 1} | {phase['seen_classes']} | {mean:.2f} | "
                         f"{_number(phase['top5'])} | {_number(phase['old_top1'])} | "
                         f"{_number(phase['new_top1'])} |")
        if len(runs) > 1:
            lines.append(f"\ntop-1 is the mean of {len(runs)} seeds; the other columns are the "
                         f"first seed's.")
        lines.append("")
    all_runs = [run for runs in groups.values() for run in runs]
    lines += ["## Hardware", ""]
    lines += [f"- {device}" for device in sorted({r.get("device", "?") for r in all_runs})]
    total = sum(r.get("wall_time_s", 0) for r in all_runs)
    lines += ["", "## Wall time", "", "| experiment | runs | wall time (h) |", "|---|---|---|"]
    for name, runs in groups.items():
        hours = sum(r.get("wall_time_s", 0) for r in runs) / 3600
        lines.append(f"| {name} | {len(runs)} | {hours:.3f} |")
    lines += [f"| **total** | {len(all_runs)} | {total / 3600:.3f} |", "", "## Versions", ""]
    versions: dict[str, set] = {}
    for run in all_runs:
        for package, version in (run.get("versions") or {}).items():
            versions.setdefault(package, set()).add(str(version))
    for package, found in sorted(versions.items()):
        note = "" if len(found) == 1 else " (runs differ)"
        lines.append(f"- {package}: {', '.join(sorted(found))}{note}")
    commits = sorted({str(r.get("git_commit")) for r in all_runs})
    orders = sorted({r.get("class_order_name", "?") for r in all_runs})
    lines += ["", "## Commit", "", *[f"- `{c}`" for c in commits], "", "## Class order", "",
              *[f"- {o}" for o in orders], ""]
    return "\n".join(lines)


def _csv(rows) -> bytes:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({**row, "reproduced_mean": row["reproduced"],
                         "reproduced_std": row["std"]})
    return buffer.getvalue().encode()


def write_report(groups: dict[str, list[dict]], out_dir: str | Path, *,
                 tolerance: float | None = None, failed: dict[str, str] | None = None,
                 not_run: dict[str, str] | None = None) -> Path:
    """Write reproduction.md, results.csv and figures/ into out_dir; return the .md path."""
    out_dir = Path(out_dir)
    for name in groups:  # each becomes a file name under out_dir/figures
        if not NAME_PATTERN.match(name):
            raise MGRBError(f"{name!r}: not an experiment name (letters, digits, _ . -); its "
                            "results were not written by this project")
    (out_dir / "figures").mkdir(parents=True, exist_ok=True)
    rows = _claims(groups, tolerance)
    figures = {}
    for name, runs in groups.items():
        figures[name] = f"figures/{name}.png"
        reported = dict(runs[0].get("reported") or {})
        if tolerance is not None:
            reported["tolerance"] = tolerance
        plot_experiment(name, runs, reported, out_dir / figures[name])
    if rows:
        plot_summary(rows, out_dir / "figures" / "summary.png")
    atomic_write(out_dir / "results.csv", _csv(rows))
    report = out_dir / "reproduction.md"
    atomic_write(report, _markdown(groups, rows, figures, failed or {}, not_run or {}).encode())
    return report
