"""The digits ablation (`make demo-ablation`): each setting's mean and spread over its seeds,
as a table, a figure and a record file that docs/results.md's numbers are generated from.

    python -m mgrb.reporting.ablation --runs-dir runs/demo --out reports/demo \
        [--record docs/results/digits-ablation.json] NAME [NAME ...]

Rows keep the order of the names given. Every run of a setting must be finished and must
differ from the others only in its seed; anything else is refused, never averaged.
"""

from __future__ import annotations

import argparse
import io
import json
import platform
import statistics
import sys
import time
from pathlib import Path

from mgrb.errors import MGRBError
from mgrb.store.files import atomic_write
from mgrb.store.runfolder import RunFolder

RECORD_FORMAT = 1


def _method(config: dict) -> dict:
    losses = config["method"]["losses"].split("+")
    return {"distill": "distill" in losses, "regularizer": "hierloss" in losses,
            "rebalance": bool(config["method"]["cbloss"]),
            "stage2": bool(config["method"]["decouple"] and config["train"]["stage2_epochs"]),
            "fresh_classifier": bool(config["quirks"]["fresh_classifier"]),
            "hierarchy": config["hierarchy"]["kind"]}


def _without_seed(config: dict) -> dict:
    return {**config, "train": {**config["train"], "seed": None}}


def read_setting(runs_dir: Path, name: str) -> dict:
    """One row: the finished runs of experiment `name` under runs_dir (seed-* folders)."""
    folders = sorted((runs_dir / name).glob("seed-*")) or [runs_dir / name]
    runs = []
    for folder in folders:
        results = RunFolder(folder).finished_results()
        if results is None:
            raise MGRBError(f"{folder}: not finished (or not a run); `make demo-ablation` "
                            "resumes it")
        runs.append(results)
    configs = {json.dumps(_without_seed(run["config"]), sort_keys=True) for run in runs}
    if len(configs) > 1:
        raise MGRBError(f"{runs_dir / name}: its runs differ in more than the seed; they are not "
                        "seeds of one setting and are not averaged")
    avg = [float(run["avg_top1"]) for run in runs]
    last = [float(run["last_top1"]) for run in runs]
    return {"experiment": name, "description": runs[0]["config"]["description"],
            **_method(runs[0]["config"]), "seeds": [run["seed"] for run in runs],
            "avg_top1": avg, "last_top1": last,
            "avg_mean": round(statistics.fmean(avg), 2), "last_mean": round(statistics.fmean(last), 2),
            "avg_std": round(statistics.stdev(avg), 2) if len(avg) > 1 else None,
            "last_std": round(statistics.stdev(last), 2) if len(last) > 1 else None,
            "devices": sorted({run["device"] for run in runs}),
            "git_commits": sorted({str(run.get("git_commit")) for run in runs}),
            "wall_time_s": round(sum(run["wall_time_s"] for run in runs), 1)}


def _spread(mean: float, std: float | None) -> str:
    return f"{mean:.2f}" if std is None else f"{mean:.2f} ± {std:.2f}"


def markdown_table(rows: list[dict]) -> str:
    """The table docs/results.md shows: what each setting trains with, and its top-1 over seeds."""
    def mark(flag: bool) -> str:
        return "yes" if flag else "-"

    lines = ["| setting | KD | L_MG | re-balancing | stage 2 | classifier | average top-1 | "
             "last top-1 | seeds |", "|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        classifier = "fresh" if row["fresh_classifier"] else "kept"
        lines.append(f"| `{row['experiment']}` | {mark(row['distill'])} | "
                     f"{mark(row['regularizer'])} | {mark(row['rebalance'])} | "
                     f"{mark(row['stage2'])} | {classifier} | "
                     f"{_spread(row['avg_mean'], row['avg_std'])} | "
                     f"{_spread(row['last_mean'], row['last_std'])} | {len(row['seeds'])} |")
    return "\n".join(lines)


def plot(rows: list[dict], path: Path) -> None:
    from mgrb.reporting.plots import _save as save_figure  # INTEGRATE: make it public
    from mgrb.reporting.plots import plt

    figure, axes = plt.subplots(figsize=(7.5, 0.45 * len(rows) + 1.4))
    positions = list(range(len(rows)))[::-1]
    axes.barh(positions, [row["avg_mean"] for row in rows],
              xerr=[row["avg_std"] or 0 for row in rows], color="#90a4ae", capsize=3,
              label="average incremental top-1 (mean ± std over seeds)")
    axes.errorbar([row["last_mean"] for row in rows], positions,
                  xerr=[row["last_std"] or 0 for row in rows], fmt="D", color="#37474f",
                  capsize=3, label="last top-1 (mean ± std)")
    axes.set_yticks(positions, [row["experiment"] for row in rows], fontsize=8)
    axes.set_xlim(0, 100)
    axes.set_xlabel("top-1 accuracy (%)")
    axes.grid(axis="x", alpha=0.3)
    axes.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=2)
    axes.set_title("digits 5/1 ablation")
    save_figure(figure, path)


def record(rows: list[dict], command: str) -> dict:
    return {"format": RECORD_FORMAT, "what": "digits 5/1 ablation (make demo-ablation)",
            "command": command, "machine": f"{platform.machine()}, {platform.system()}",
            "generated": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "rows": rows}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mgrb.reporting.ablation",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="+", metavar="NAME")
    parser.add_argument("--runs-dir", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True, help="folder for ablation.md/.png")
    parser.add_argument("--record", type=Path, help="also write the rows as JSON here")
    args = parser.parse_args(argv)
    try:
        rows = [read_setting(args.runs_dir, name) for name in args.names]
    except MGRBError as error:
        print(f"ablation: error: {error}", file=sys.stderr)
        return 2
    table = markdown_table(rows)
    print(table)
    args.out.mkdir(parents=True, exist_ok=True)
    plot(rows, args.out / "ablation.png")
    atomic_write(args.out / "ablation.md", (f"# Digits ablation\n\n{table}\n\n"
                                            "![ablation](ablation.png)\n").encode())
    if args.record:
        buffer = io.StringIO()
        json.dump(record(rows, "make demo-ablation"), buffer, indent=1)
        atomic_write(args.record, (buffer.getvalue() + "\n").encode())
    print(f"written: {args.out / 'ablation.md'}, {args.out / 'ablation.png'}"
          + (f", {args.record}" if args.record else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
