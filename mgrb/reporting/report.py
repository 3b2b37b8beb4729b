"""The reproduction report: reproduction.md, results.csv and figures, from finished runs.

Every piece of text that comes from a run folder or an error message is escaped: run folders
travel, and a message with a pipe or a line break must not break the table it sits in."""

from __future__ import annotations

import contextlib
import csv
import io
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

from mgrb.errors import MGRBError
from mgrb.reporting.check import group_rows, seed_note
from mgrb.reporting.plots import plot_experiment, plot_summary
from mgrb.reporting.runs import RunGroup, find_folders, group_runs
from mgrb.store.runstate import FAILED, FINISHED, NOT_FINISHED, Folder
from mgrb.text import one_line
from mgrb.store.contracts import NAME_PATTERN
from mgrb.store.files import atomic_write
from mgrb.version import one_line as artifact_line

MARKERS = {"reproduced": "✅ reproduced", "above": "⬆️ above", "below": "❌ below",
           "no reference": "— no reference"}
CSV_COLUMNS = ["experiment", "variant", "dataset", "protocol", "hierarchy", "metric", "reported",
               "tolerance", "reproduced_mean", "reproduced_std", "runs", "repeated_seeds",
               "verdict", "wall_time_s", "device", "git_commit", "artifact_version", "image"]
SUMMARY = "figures/summary.png"
_ESCAPES = {"\\": "\\\\", "|": "\\|", "`": "\\`", "*": "\\*", "[": "\\[", "]": "\\]", "~": "\\~",
            "#": "\\#", "&": "&amp;", "<": "&lt;", ">": "&gt;"}


def escape(text) -> str:
    """`text` as literal Markdown on one line: a table cell or a list item stays one.

    An underscore between two letters or digits is left alone, as Markdown never reads one as
    emphasis (so `digits_5_1` stays searchable in the file); any other is escaped."""
    flat = one_line(text)
    out = []
    for index, char in enumerate(flat):
        if char == "_":
            inside = 0 < index < len(flat) - 1 and flat[index - 1].isalnum() \
                and flat[index + 1].isalnum()
            out.append("_" if inside else "\\_")
        else:
            out.append(_ESCAPES.get(char, char))
    return "".join(out)


def _hierarchy(runs: list[dict]) -> str:
    config = runs[0].get("config") or {}
    hierarchy = config.get("hierarchy") if isinstance(config.get("hierarchy"), dict) else {}
    return str(hierarchy.get("kind", "?"))


def _claims(groups: list[RunGroup], tolerance) -> list[dict]:
    rows = []
    for group in groups:
        runs = group.runs
        for row in group_rows(group, tolerance):
            row.update(dataset=runs[0].get("dataset", "?"), protocol=runs[0].get("protocol", "?"),
                       hierarchy=_hierarchy(runs),
                       wall_time_s=round(sum(r.get("wall_time_s", 0) for r in runs), 1),
                       device="; ".join(sorted({r.get("device", "?") for r in runs})),
                       git_commit="; ".join(sorted({str(r.get("git_commit")) for r in runs})),
                       artifact_version="; ".join(sorted({str(_artifact(r).get("version")) for r in runs})),
                       image="; ".join(sorted({str(_artifact(r).get("image")) for r in runs})))
            rows.append(row)
    return rows


def _artifact(run: dict) -> dict:
    """The run's artifact block; empty for results written before it existed."""
    return run.get("artifact") if isinstance(run.get("artifact"), dict) else {}


def _artifacts(all_runs) -> list[str]:
    """Which version, commit and image produced the runs, one line per combination."""
    counts: dict[str, int] = {}
    for run in all_runs:
        block = _artifact(run)
        line = artifact_line(block) if block else \
            f"not recorded (results written before version 0.1.0), commit {run.get('git_commit')}"
        counts[line] = counts.get(line, 0) + 1
    return ["## Artifact", "", *[f"- {escape(line)} ({n} run{'s' * (n != 1)})"
                                 for line, n in sorted(counts.items())], ""]


def _number(value, digits=2) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def used_cuda(run: dict) -> bool:
    """Whether the run trained on a CUDA device: a GPU's UUID is recorded only then (results
    older than that field name a GPU as the device, a CPU as "CPU (...)")."""
    if "device_uuid" in run:
        return isinstance(run["device_uuid"], str) and bool(run["device_uuid"])
    device = run.get("device")
    return isinstance(device, str) and bool(device) and not device.startswith("CPU")


def _claims_table(rows) -> list[str]:
    if not rows:
        return ["No finished run yet: nothing to compare with the paper.", ""]
    counts = {v: sum(r["verdict"] == v for r in rows) for v in MARKERS}
    lines = ["| experiment | data set | protocol | hierarchy | metric | reported | reproduced | verdict |",
             "|---|---|---|---|---|---|---|---|"]
    for row in rows:
        reported = ("—" if row["reported"] is None
                    else f"{row['reported']:.2f} ± {row['tolerance']:g}")
        value = _number(row["reproduced"])
        if row["std"] is not None:
            value += f" ± {row['std']:.2f} (n={row['runs']})"
        note = seed_note(row)
        value += f" {escape(note)}" if note else ""
        lines.append(f"| {escape(row['label'])} | {escape(row['dataset'])} | "
                     f"{escape(row['protocol'])} | {escape(row['hierarchy'])} | {row['metric']} | "
                     f"{reported} | {value} | {MARKERS[row['verdict']]} |")
    return lines + ["", ", ".join(f"{n} {v}" for v, n in counts.items()) + ".", ""]


def _problems(failed, unfinished, not_run) -> list[str]:
    if not (failed or unfinished or not_run):
        return []
    lines = ["## Not reproduced here", ""]
    for entries, what in ((failed, "failed"), (unfinished, "not finished"), (not_run, "not run")):
        lines += [f"- **{escape(label)}** {what}: {escape(message)}"
                  for label, message in entries.items()]
    return lines + [""]


def _per_group(groups: list[RunGroup], figures: dict[str, str]) -> list[str]:
    lines = ["## Per experiment", ""]
    for group in groups:
        runs = group.runs
        lines += [f"### {escape(group.label)}", "", f"![{escape(group.label)}]({figures[group.slug]})",
                  "", "| phase | classes | top-1 | top-5 | old | new |", "|---|---|---|---|---|---|"]
        length = min(len(run["phases"]) for run in runs)
        for index, phase in enumerate(runs[0]["phases"][:length]):
            mean = statistics.fmean(run["phases"][index]["top1"] for run in runs)
            lines.append(f"| {phase['phase'] + 1} | {phase['seen_classes']} | {mean:.2f} | "
                         f"{_number(phase.get('top5'))} | {_number(phase.get('old_top1'))} | "
                         f"{_number(phase.get('new_top1'))} |")
        if len(runs) > 1:
            lines.append(f"\ntop-1 is the mean of {len(runs)} seeds; the other columns are the "
                         f"first seed's.")
        lines.append("")
    return lines


def _versions(all_runs) -> list[str]:
    versions: dict[str, set] = {}
    on_cpu = 0  # runs whose torch names a CUDA version (its build's) although they used the CPU
    for run in all_runs:
        for package, version in (run.get("versions") or {}).items():
            if package == "cuda" and not used_cuda(run):
                on_cpu += 1
                continue
            versions.setdefault(package, set()).add("not installed" if version is None else str(version))
    notes = {}
    if on_cpu and "cuda" in versions:
        notes["cuda"] = f" (the runs on a GPU; {on_cpu} trained on the CPU)"
    elif on_cpu:
        versions["cuda"] = {"not used (the runs trained on the CPU)"}
    lines = ["## Versions", ""]
    for package, found in sorted(versions.items()):
        note = ("" if len(found) == 1 else " (runs differ)") + notes.get(package, "")
        lines.append(f"- {escape(package)}: {escape(', '.join(sorted(found)))}{note}")
    return lines + [""]


def _markdown(groups: list[RunGroup], rows, figures, summary: bool, failed, unfinished,
              not_run, source: str) -> str:
    now = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    lines = ["# MGRB reproduction report", "",
             f"Generated {now} from {escape(source)} by {escape(artifact_line())}.",
             "", "Verdicts: **reproduced** = inside reported ± tolerance; **above** / **below** = "
             "outside it; **no reference** = the paper reports no number for this experiment. "
             "Runs count together only when they share one configuration (the seed aside); "
             "settings in brackets tell apart configurations of one experiment.", "",
             "## Claims", "", *_claims_table(rows)]
    if summary:
        lines += [f"![summary]({SUMMARY})", ""]
    lines += _problems(failed, unfinished, not_run)
    if not groups:
        return "\n".join(lines)
    lines += _per_group(groups, figures)
    all_runs = [run for group in groups for run in group.runs]
    lines += ["## Hardware", ""]
    lines += [f"- {escape(device)}" for device in sorted({str(r.get("device", "?")) for r in all_runs})]
    total = sum(r.get("wall_time_s", 0) for r in all_runs)
    lines += ["", "## Wall time", "", "| experiment | runs | wall time (h) |", "|---|---|---|"]
    for group in groups:
        hours = sum(r.get("wall_time_s", 0) for r in group.runs) / 3600
        lines.append(f"| {escape(group.label)} | {len(group.runs)} | {hours:.3f} |")
    lines += [f"| **total** | {len(all_runs)} | {total / 3600:.3f} |", ""]
    lines += _versions(all_runs)
    lines += _artifacts(all_runs)
    commits = sorted({str(r.get("git_commit")) for r in all_runs})
    orders = sorted({str(r.get("class_order_name", "?")) for r in all_runs})
    lines += ["## Commit", "", *[f"- {escape(c)}" for c in commits], "", "## Class order", "",
              *[f"- {escape(o)}" for o in orders], ""]
    return "\n".join(lines)


def _csv(rows) -> bytes:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        repeated = "; ".join(f"{seed} x{count}" for seed, count in row["repeated_seeds"].items())
        writer.writerow({**row, "reproduced_mean": row["reproduced"],
                         "reproduced_std": row["std"], "repeated_seeds": repeated})
    return buffer.getvalue().encode()


@dataclass
class Collected:
    groups: dict[str, list[dict]]   # finished runs' results by experiment
    failed: dict[str, str]          # folder -> its failure message
    unfinished: dict[str, str]      # folder -> what to do
    bad: list[Folder]               # not run folders, or damaged results


def collect(run_dirs) -> Collected:
    """Every run at or below the folders given, sorted by what the report does with it."""
    collected = Collected({}, {}, {}, [])
    for folder in find_folders(run_dirs):
        if folder.status == FINISHED:
            collected.groups.setdefault(folder.results["experiment"], []).append(folder.results)
        elif folder.status == FAILED:
            collected.failed[str(folder.path)] = folder.message
        elif folder.status == NOT_FINISHED:
            collected.unfinished[str(folder.path)] = folder.message
        else:
            collected.bad.append(folder)
    return collected


def write_report(groups: dict[str, list[dict]], out_dir: str | Path, *,
                 tolerance: float | None = None, failed: dict[str, str] | None = None,
                 not_run: dict[str, str] | None = None,
                 unfinished: dict[str, str] | None = None,
                 source: str = "the run folders given to mgrb report") -> Path:
    """Write reproduction.md, results.csv and figures/ into out_dir; return the .md path.

    groups: finished runs' results by experiment; they are regrouped by configuration. failed,
    unfinished, not_run: label -> message, listed with the reason."""
    out_dir = Path(out_dir)
    for name in groups:  # each becomes a file name under out_dir/figures
        if not NAME_PATTERN.fullmatch(name):
            raise MGRBError(f"{name!r}: not an experiment name (letters, digits, _ . -); its "
                            "results were not written by this project")
    configured = group_runs([run for runs in groups.values() for run in runs])
    (out_dir / "figures").mkdir(parents=True, exist_ok=True)
    figures_folder = out_dir / "figures"
    if figures_folder.is_symlink() or not figures_folder.is_dir():
        # the report makes this folder and writes into it: a link planted in its place would
        # carry the writes anywhere the user may write (the reports folder itself is the
        # user's choice, a link or not)
        raise MGRBError(f"{figures_folder}: is a symbolic link or not a folder; the report "
                        "writes its figures into a folder of its own. Remove it, or choose "
                        "another reports folder.")
    rows = _claims(configured, tolerance)
    figures = {}
    for group in configured:
        figures[group.slug] = f"figures/{group.slug}.png"
        reported = dict(group.runs[0].get("reported") or {})
        if tolerance is not None:
            reported["tolerance"] = tolerance
        plot_experiment(group.label, group.runs, reported, out_dir / figures[group.slug])
    if rows:
        plot_summary(rows, out_dir / SUMMARY)
    else:  # an older report's summary must not pass for this one's
        with contextlib.suppress(FileNotFoundError):
            (out_dir / SUMMARY).unlink()
    atomic_write(out_dir / "results.csv", _csv(rows))
    report = out_dir / "reproduction.md"
    atomic_write(report, _markdown(configured, rows, figures, bool(rows), failed or {},
                                   unfinished or {}, not_run or {}, source).encode())
    return report
