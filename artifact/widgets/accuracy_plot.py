"""Top-1 after each phase against the phase number, with the paper's reported average and last
top-1 as horizontal lines named in the legend."""

from __future__ import annotations

from textual.content import Content

from .chart import LINE, POINT, Chart, legend, tick_labels, ticks

# RGB: the legend (Textual) and the chart (plotext) show the very same colour; mid tones read
# on dark and light themes alike
TOP1, AVERAGE, LAST = (230, 140, 20), (0, 165, 200), (200, 70, 200)


class AccuracyPlot(Chart):
    def show(self, top1: list[float], phases: int | None, reported: dict | None) -> None:
        reported = reported or {}
        super().show(tuple(top1), phases, reported.get("avg_top1"), reported.get("last_top1"))

    def draw(self, plt, width: int, height: int) -> Content:
        top1, phases, average, last = self.shown
        phases = max(phases or 0, len(top1), 1)
        left, right = 0.8, phases + 0.2
        entries = [(POINT, TOP1, "top-1" if top1 else "top-1: no phase evaluated yet")]
        lines = [(average, AVERAGE, "avg"), (last, LAST, "last")]
        if average is not None and average == last:  # one line, or the second hides the first
            lines = [(average, AVERAGE, "avg & last")]
        for value, rgb, what in lines:
            if value is not None:
                entries.append(("─", rgb, f"reported {what} {value:.2f}"))
                plt.plot([left, right], [value, value], marker=LINE, color=rgb)
        if top1:
            phase = list(range(1, len(top1) + 1))
            plt.plot(phase, list(top1), marker=LINE, color=TOP1)
            plt.scatter(phase, list(top1), marker=POINT, color=TOP1)
        values = [*top1, *(v for v in (average, last) if v is not None)]
        low = max(0.0, min(min(values, default=0.0), 100.0) - 5.0)
        plt.ylim(low, 100.0)
        plt.xlim(left, right)
        x_ticks = ticks(1, phases, max(width // 5, 2), whole=True)
        y_ticks = ticks(low, 100.0, max(height // 2, 2))
        plt.xticks(x_ticks, tick_labels(x_ticks))
        plt.yticks(y_ticks, tick_labels(y_ticks))
        return legend(*entries)
