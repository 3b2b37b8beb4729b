"""Figures of the reproduction report: top-1 per phase per experiment, and one summary.

Reproduced and reported differ in line style and marker as well as colour, so that the
figures read the same in grey print and to colour-blind readers: reproduced is solid (and
round markers), reported is dashed (and bars)."""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: servers and containers have no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from mgrb.store.files import atomic_write  # noqa: E402

VERDICT_COLOURS = {"reproduced": "#2e7d32", "above": "#1565c0", "below": "#c62828",
                   "no reference": "#9e9e9e"}
REPRODUCED, REPORTED = "#37474f", "#ef6c00"
REPRODUCED_STYLE, REPORTED_STYLE = "-", "--"


def _save(figure, path: Path) -> None:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=120, bbox_inches="tight")
    plt.close(figure)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, buffer.getvalue())


def plot_experiment(name: str, runs: list[dict], reported: dict | None, path: Path) -> None:
    _save(experiment_figure(name, runs, reported), path)


def plot_summary(rows: list[dict], path: Path) -> None:
    _save(summary_figure(rows), path)


def experiment_figure(name: str, runs: list[dict], reported: dict | None):
    """Top-1 after each phase (x: classes seen), the reproduced average as a solid line and
    the reported average as a dashed one within its tolerance band, the reported last
    top-1 as a bar at the last phase."""
    figure, axes = plt.subplots(figsize=(6.4, 4.2))
    length = min(len(run["phases"]) for run in runs)  # equal within one configuration
    seen = [phase["seen_classes"] for phase in runs[0]["phases"][:length]]
    curves = np.array([[phase["top1"] for phase in run["phases"][:length]] for run in runs])
    mean = curves.mean(axis=0)
    label = "reproduced top-1" if len(runs) == 1 else f"reproduced top-1 (mean of {len(runs)})"
    axes.plot(seen, mean, marker="o", color=REPRODUCED, linestyle=REPRODUCED_STYLE, linewidth=1,
              label=label)
    if len(runs) > 1:
        std = curves.std(axis=0, ddof=1)
        axes.fill_between(seen, mean - std, mean + std, color="#90a4ae", alpha=0.4, label="± 1 std")
    average = float(np.mean([run["avg_top1"] for run in runs]))
    axes.axhline(average, color=REPRODUCED, linestyle=REPRODUCED_STYLE, linewidth=2.2, alpha=0.6,
                 label=f"reproduced average {average:.2f}")
    reported = reported or {}
    tolerance = reported.get("tolerance") or 0.0
    if reported.get("avg_top1") is not None:
        value = reported["avg_top1"]
        axes.axhline(value, color=REPORTED, linestyle=REPORTED_STYLE, linewidth=2.2,
                     label=f"reported average {value:.2f} (band: ± {tolerance:g})")
        axes.axhspan(value - tolerance, value + tolerance, color=REPORTED, alpha=0.12)
    if reported.get("last_top1") is not None:
        bars = axes.errorbar([seen[-1]], [reported["last_top1"]], yerr=[[tolerance], [tolerance]],
                             fmt="D", color=REPORTED, capsize=4,
                             label=f"reported last {reported['last_top1']:.2f} ± {tolerance:g}")
        bars[2][0].set_linestyle(REPORTED_STYLE)
    if reported.get("avg_top1") is None and reported.get("last_top1") is None:
        axes.text(0.98, 0.04, "no reported number for this experiment", transform=axes.transAxes,
                  color="#757575", fontsize=9, ha="right")
    axes.set_ylim(0, 100)
    axes.set_xlabel("classes seen")
    axes.set_ylabel("top-1 accuracy (%)")
    axes.set_title(f"{name} ({runs[0].get('dataset', '')} {runs[0].get('protocol', '')})")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8, loc="best")
    return figure


def summary_figure(rows: list[dict]):
    """One row per experiment and metric: reproduced (a dot, ± std as a solid bar) against
    reported (± tolerance as a dashed bar). The legend names only what is plotted."""
    height = max(2.5, 0.32 * len(rows) + 1.2)
    figure, axes = plt.subplots(figsize=(7.5, height))
    for index, row in enumerate(reversed(rows)):
        colour = VERDICT_COLOURS[row["verdict"]]
        if row["reported"] is not None:
            bars = axes.errorbar([row["reported"]], [index],
                                 xerr=[[row["tolerance"]], [row["tolerance"]]],
                                 fmt="|", color=REPORTED, capsize=5, markersize=12)
            bars[2][0].set_linestyle(REPORTED_STYLE)
        axes.errorbar([row["reproduced"]], [index], xerr=[[row["std"] or 0], [row["std"] or 0]],
                      fmt="o", color=colour, markerfacecolor=colour if row["reported"] is not None
                      else "white")
    labels = [f"{row.get('label', row['experiment'])} {row['metric'].replace('_top1', '')}"
              for row in reversed(rows)]
    axes.set_yticks(range(len(rows)), labels, fontsize=8)
    axes.set_xlabel("top-1 accuracy (%)")
    axes.set_xlim(0, 100)
    axes.grid(axis="x", alpha=0.3)
    plotted = {row["verdict"] for row in rows}
    handles = [plt.Line2D([], [], marker="o", linestyle=REPRODUCED_STYLE, color=colour,
                          markerfacecolor=colour if verdict != "no reference" else "white",
                          label=f"reproduced: {verdict}")
               for verdict, colour in VERDICT_COLOURS.items() if verdict in plotted]
    if any(row["reported"] is not None for row in rows):
        handles.append(plt.Line2D([], [], marker="|", linestyle=REPORTED_STYLE, color=REPORTED,
                                  markersize=12, label="reported ± tolerance"))
    axes.legend(handles=handles, fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    axes.set_title("reproduced against reported top-1")
    return figure
