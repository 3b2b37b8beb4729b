"""What the monitor's charts share: a plotext chart (through textual-plotext) with a legend
line of text under it, whose symbols take the colours of the chart's series.

The legend sits under the chart rather than in it: plotext draws its own legend over the top
left corner of the plot, where the first phase's top-1 (often the highest point) lands."""

from __future__ import annotations

import math

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.content import Content
from textual.widgets import Static
from textual_plotext import PlotextPlot

from .styles import line, plain

RGB = tuple[int, int, int]
POINT, LINE = "●", "braille"  # plotext markers: a dot per value, thin lines between


def hex_color(rgb: RGB) -> str:
    return "#{:02x}{:02x}{:02x}".format(*rgb)


def legend(*entries: tuple[str, RGB | None, str]) -> Content:
    """`symbol label` per entry, each symbol in its series' colour (None: the text's own)."""
    return line(*(line(plain(symbol, f"bold {hex_color(rgb)}" if rgb else "bold"), label, sep=" ")
                  for symbol, rgb, label in entries), sep="  ")


def ticks(low: float, high: float, most: int, *, whole: bool = False) -> list[float]:
    """At most `most` round values (1, 2, 2.5 or 5 times a power of ten) from low to high;
    whole numbers only with `whole` (phases, epochs)."""
    span = high - low
    if not (math.isfinite(span) and span > 0):
        return [low] if math.isfinite(low) else []
    rough = span / max(most - 1, 1)
    power = 10.0 ** math.floor(math.log10(rough))
    step = next(power * f for f in (1, 2, 2.5, 5, 10) if power * f >= rough)
    step = max(step, 1.0) if whole else step
    if whole and step != int(step):
        step = float(math.ceil(step))
    first = math.ceil(low / step) * step
    count = int((high - first) / step + 1e-9) + 1
    return [round(first + i * step, 10) for i in range(max(count, 0))]


def tick_labels(values: list[float]) -> list[str]:
    return [f"{value:g}" for value in values]


class Chart(Vertical):
    """Subclasses draw in `draw(plt, width, height)` and return the legend; `show(*data)`
    redraws only when the data changed, and a resize redraws (the ticks follow the size)."""

    DEFAULT_CSS = """
    Chart { height: 1fr; }
    Chart > PlotextPlot { height: 1fr; }
    Chart > .legend { height: auto; }
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.shown: tuple | None = None

    def compose(self) -> ComposeResult:
        yield PlotextPlot()
        yield Static(classes="legend")

    def show(self, *data) -> None:
        if data == self.shown:
            return  # a poll that brought nothing new
        self.shown = data
        self._redraw()

    def on_resize(self) -> None:
        self._redraw()

    def _redraw(self) -> None:
        if self.shown is None or not self.is_mounted:
            return
        chart = self.query_one(PlotextPlot)
        plt = chart.plt
        plt.clear_data()
        plt.xaxes(True, False)  # the lower and the left axis: the upper and right take space
        plt.yaxes(True, False)
        size = chart.size
        self.query_one(".legend", Static).update(self.draw(plt, size.width or 40, size.height or 8))
        chart.refresh()

    def draw(self, plt, width: int, height: int) -> Content:
        raise NotImplementedError
