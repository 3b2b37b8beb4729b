"""Top-1 after each phase as a text chart, with the paper's reported average and last
accuracy drawn as horizontal lines."""

from __future__ import annotations

from rich.text import Text
from textual.widget import Widget


class AccuracyPlot(Widget):
    DEFAULT_CSS = "AccuracyPlot { height: 12; }"

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.top1: list[float] = []
        self.phases: int | None = None
        self.reported: dict | None = None

    def show(self, top1: list[float], phases: int | None, reported: dict | None) -> None:
        self.top1, self.phases, self.reported = list(top1), phases, reported
        self.refresh()

    def render(self) -> Text:
        width, height = max(self.size.width - 7, 10), max(self.size.height - 2, 3)
        phases = max(self.phases or len(self.top1), len(self.top1), 1)
        reported = self.reported or {}
        marks = {k: reported.get(k) for k in ("avg_top1", "last_top1") if reported.get(k)}
        values = self.top1 + list(marks.values())
        low = min(values, default=0.0)
        low, high = max(0.0, min(low, 100.0) - 5.0), 100.0

        def row_of(value: float) -> int:
            return round((high - value) / (high - low) * (height - 1))

        grid = [[(" ", "")] * width for _ in range(height)]
        for key, style, char in (("avg_top1", "cyan", "─"), ("last_top1", "magenta", "┄")):
            if key in marks:
                grid[row_of(marks[key])] = [(char, style)] * width
        for phase, value in enumerate(self.top1):
            column = round(phase / max(phases - 1, 1) * (width - 1))
            grid[row_of(value)][column] = ("●", "bold yellow")
        text = Text()
        for index, cells in enumerate(grid):
            label = high - index * (high - low) / max(height - 1, 1)
            text.append(f"{label:5.1f} │" if index % 3 == 0 or index == height - 1 else "      │",
                        style="bright_black")
            for char, style in cells:
                text.append(char, style=style)
            text.append("\n")
        text.append("       phase 1 … " + str(phases), style="bright_black")
        legend = "   ● top-1"
        if "avg_top1" in marks:
            legend += f"   ─ reported avg {marks['avg_top1']:.2f}"
        if "last_top1" in marks:
            legend += f"   ┄ reported last {marks['last_top1']:.2f}"
        text.append(legend + "\n")
        return text
