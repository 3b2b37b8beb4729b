"""The picker's keys and the layout at 80x24, through Textual's pilot on the real app and
copies of the recorded run folders: down or enter from the filter box reach the table, the
columns that matter and the footer's quit and help keys fit 80 columns, the line under the table
says there why an experiment's data is missing and how to get it, the filter box's hint reads
whole, the monitor keeps its log in sight, and its charts show phases, epochs and a legend in
the colours of the points."""

import asyncio

import pytest
from rich.cells import cell_len
from textual.widgets import Footer, Input, Markdown, RichLog
from textual.widgets._footer import FooterKey  # not exported; the footer's keys are these
from textual_plotext import PlotextPlot

from artifact.core.gpu import GpuMonitor
from artifact.screens.help import HelpScreen
from artifact.screens.monitor import MonitorScreen
from artifact.widgets.accuracy_plot import AVERAGE, TOP1, AccuracyPlot
from artifact.widgets.chart import hex_color
from artifact.widgets.experiment_table import ExperimentTable
from artifact.widgets.loss_plot import EPOCH, LossPlot
from artifact_helpers import replayed_nvml, write_experiments
from launcher_pilot import make_app, recorded_copy, status, table, until

SMALL, WIDE = (80, 24), (150, 42)


def test_down_or_enter_from_the_filter_reaches_the_table_and_enter_then_opens(tmp_path):
    root = recorded_copy(tmp_path)

    async def scenario():
        app = make_app(root)
        async with app.run_test(size=WIDE) as pilot:
            await until(pilot, lambda: status(app, "tiny_finished"), "the first poll shown")
            filter_box = app.screen.query_one("#filter", Input)
            await pilot.press("t", "i", "n", "y", "_", "f")
            assert app.focused is filter_box and filter_box.value == "tiny_f"
            await pilot.press("down")
            assert isinstance(app.focused, ExperimentTable) and filter_box.value == "tiny_f"
            assert [e.name for e in table(app).visible()] == ["tiny_finished"]
            await pilot.press("enter")
            await until(pilot, lambda: isinstance(app.screen, MonitorScreen), "the monitor open")
            assert app.screen.experiment_name == "tiny_finished"

            await pilot.press("escape", "slash")  # "/" goes to the filter box, not into it
            assert app.focused is filter_box and filter_box.value == "tiny_f"
            await pilot.press("backspace", "s")
            await pilot.press("enter")  # the same enter must not open the monitor as well
            assert isinstance(app.focused, ExperimentTable) and not isinstance(app.screen, MonitorScreen)
            assert [e.name for e in table(app).visible()] == ["tiny_stopped"]
            await pilot.press("enter")
            await until(pilot, lambda: isinstance(app.screen, MonitorScreen), "the monitor open")
            assert app.screen.experiment_name == "tiny_stopped"

            await pilot.press("f1")
            assert isinstance(app.screen, HelpScreen)
            help_text = app.screen.query_one(Markdown).source
            assert "| `↓` or `enter` | filter box | back to the table" in help_text
            assert "| type letters, or `/` | experiments |" in help_text

    asyncio.run(scenario())


def _right_edge_of(table: ExperimentTable, key: str) -> int:
    """Where column `key` ends, in cells from the table's left edge (padding included)."""
    edge = 0
    for column_key, column in table.columns.items():
        edge += column.get_render_width(table)
        if column_key.value == key:
            return edge
    raise KeyError(key)


def _footer_keys_in_sight(screen) -> bool:
    shown = {key.description: key.region for key in screen.query(FooterKey)}
    return all(d in shown and shown[d].width and shown[d].right <= SMALL[0] for d in ("Quit", "Help"))


def _log_text(screen) -> str:
    return "\n".join(strip.text for strip in screen.query_one(RichLog).lines)


def test_at_80x24_the_columns_that_matter_the_footer_keys_and_the_log_are_in_sight(tmp_path):
    root = recorded_copy(tmp_path)
    # as long as the project's longest name (ablation_c100_50_10_regularizer), and more rows
    # than fit: the table's scrollbar takes its share of the width
    write_experiments(root / "experiments", names=[f"a_long_experiment_name_of_31_{i:02d}"
                                                   for i in range(20)])

    async def scenario():
        app = make_app(root, gpu_monitor=GpuMonitor(nvml=replayed_nvml()))
        async with app.run_test(size=SMALL) as pilot:
            await until(pilot, lambda: status(app, "tiny_finished"), "the first poll shown")
            picker = table(app)
            keys = [key.value for key in picker.columns]
            assert keys[:5] == ["mark", "name", "status", "data", "hours"]
            # the scrollbar comes with a layout pass after the rows: waited for, not assumed
            await until(pilot, lambda: picker.show_vertical_scrollbar, "the table's scrollbar")
            assert _right_edge_of(picker, "hours") <= picker.scrollable_content_region.width
            assert picker.region.bottom <= SMALL[1] - 1 and picker.size.height >= 5

            await until(pilot, lambda: _footer_keys_in_sight(app.screen), "quit and help in sight")
            assert app.screen.query_one(Footer).region.bottom == SMALL[1]

            await pilot.press("down", "enter")
            await until(pilot, lambda: isinstance(app.screen, MonitorScreen), "the monitor open")
            await until(pilot, lambda: "no launcher log" in _log_text(app.screen), "the log written")
            log = app.screen.query_one(RichLog)
            assert log.region.bottom <= SMALL[1] - 1 and log.content_region.height >= 2
            await until(pilot, lambda: _footer_keys_in_sight(app.screen), "quit and help in sight")
            for chart in (AccuracyPlot, LossPlot):
                assert app.screen.query_one(chart).query_one(PlotextPlot).size.height >= 4

    asyncio.run(scenario())


# As the project's CIFAR-100 files are: a description and an estimate long enough to wrap at
# 80 columns, and data that is not there (the root names a folder that does not exist).
MISSING_DATA = """\
name: c100_missing
description: "CIFAR-100 50/10 ablation: baseline ce+distill (no re-balancing, no regulariser)"
estimate:
  gpu_hours: 0.642
  basis: "projection: 116 PFLOP of training at an assumed 50 TFLOP/s sustained (not measured)"
dataset: {{name: cifar100, root: {root}}}
protocol: {{initial: 50, increment: 10}}
hierarchy: {{kind: ont}}
"""


def _drawn(widget) -> list[str]:
    """The lines the widget draws at its size: what of its content is in sight."""
    return [widget.render_line(y).text for y in range(widget.size.height)]


def test_at_80x24_the_detail_under_the_table_says_why_the_data_is_missing(tmp_path):
    root = recorded_copy(tmp_path)
    (root / "experiments" / "c100_missing.yaml").write_text(MISSING_DATA.format(root=tmp_path / "none"))
    write_experiments(root / "experiments", names=[f"a_long_experiment_name_of_31_{i:02d}"
                                                   for i in range(12)])

    async def scenario():
        app = make_app(root, gpu_monitor=GpuMonitor(nvml=replayed_nvml()))
        async with app.run_test(size=SMALL) as pilot:
            await until(pilot, lambda: status(app, "tiny_finished"), "the first poll shown")
            screen, picker = app.screen, table(app)
            assert screen.has_class("-short", "-narrow")
            picker.move_cursor(row=picker.get_row_index("c100_missing"))
            detail = screen.query_one("#detail")
            await until(pilot, lambda: "c100_missing" in str(detail.render()), "c100's detail")
            await pilot.pause()  # the detail's new height laid out
            region, footer = detail.region, screen.query_one(Footer).region
            assert region.height >= 2 and region.y >= picker.region.bottom
            assert region.bottom <= SMALL[1] - 1 and region.bottom <= footer.y
            assert all(screen.get_widget_at(region.x, y)[0] is detail
                       for y in range(region.y, region.bottom))  # nothing drawn over it
            shown = " ".join(" ".join(_drawn(detail)).split())
            assert "CIFAR-100 is not in" in shown and "`make data` downloads it" in shown, shown
            assert picker.size.height >= 13  # as many lines as the table had before

    asyncio.run(scenario())


@pytest.mark.parametrize("size", [SMALL, (80, 32)], ids=["80x24", "80x32"])  # short, and not
def test_at_80_columns_the_filter_hint_reads_whole(tmp_path, size):
    root = recorded_copy(tmp_path)

    async def scenario():
        app = make_app(root)
        async with app.run_test(size=size) as pilot:
            await until(pilot, lambda: status(app, "tiny_finished"), "the first poll shown")
            filter_box = app.screen.query_one("#filter", Input)
            hint = filter_box.placeholder
            assert filter_box.value == "" and filter_box.region.right <= size[0]
            # what it says: what the filter matches, and how to get back to the table
            assert all(word in hint for word in ("filter", "name", "data set", "protocol",
                                                 "hierarchy", "↓", "table")), hint
            assert cell_len(hint) <= filter_box.content_region.width
            assert hint in _drawn(filter_box)[0]

    asyncio.run(scenario())


def _colors_of(text, symbol: str) -> set[str]:
    """The foreground colours the symbol is drawn in, as #rrggbb."""
    found = set()
    for span in text.spans:
        if symbol in text.plain[span.start:span.end] and span.style and span.style.color:
            found.add(span.style.color.triplet.hex)
    return found


def test_the_monitor_charts_phases_epochs_and_a_legend_in_the_points_colours(tmp_path):
    root = recorded_copy(tmp_path)

    async def scenario():
        app = make_app(root)
        async with app.run_test(size=WIDE) as pilot:
            await until(pilot, lambda: status(app, "tiny_finished"), "the first poll shown")
            await pilot.press("down", "enter")
            await until(pilot, lambda: isinstance(app.screen, MonitorScreen), "the monitor open")
            await until(pilot, lambda: all(app.screen.query_one(chart).shown and str(
                app.screen.query_one(chart).query_one(".legend").render())
                for chart in (AccuracyPlot, LossPlot)), "both charts drawn")
            accuracy = app.screen.query_one(AccuracyPlot)
            drawn = accuracy.query_one(PlotextPlot).render()
            legend = str(accuracy.query_one(".legend").render())
            assert "top-1" in legend and "reported avg & last 50.00" in legend
            # three phases evaluated: three points, in the legend's colour for top-1
            assert drawn.plain.count("●") == 3
            assert _colors_of(drawn, "●") == {hex_color(TOP1)}
            symbols = accuracy.query_one(".legend").render()  # Content: (symbol, style) spans
            assert {(symbols.plain[span.start:span.end], str(span.style)) for span in symbols.spans} \
                == {("●", f"bold {hex_color(TOP1)}"), ("─", f"bold {hex_color(AVERAGE)}")}
            axis = drawn.plain.splitlines()[-1]
            assert axis.split() == ["1", "2", "3"]  # the phases under the x axis
            assert _colors_of(drawn, "⠤") | _colors_of(drawn, "⠒") >= {hex_color(AVERAGE)}

            loss = app.screen.query_one(LossPlot)
            drawn = loss.query_one(PlotextPlot).render()
            assert drawn.plain.splitlines()[-1].split() == ["0", "5", "10", "15", "20", "25",
                                                            "30", "35"]  # epochs, all phases
            assert _colors_of(drawn, "●") == {hex_color(EPOCH)}
            assert "epoch mean" in str(loss.query_one(".legend").render())
            assert loss.border_subtitle.startswith("last 9.91  min 0.703  max 12.1")

    asyncio.run(scenario())
