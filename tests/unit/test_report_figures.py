"""The report's figures, read back from the matplotlib figures that are saved: the legend names
only what is plotted, and reproduced and reported differ in line style, not only colour."""

import matplotlib.pyplot as plt
import pytest

from mgrb.reporting.plots import experiment_figure, summary_figure


def _row(verdict, reported=61.0, label="a"):
    return {"experiment": label, "label": label, "metric": "avg_top1", "reproduced": 60.0,
            "std": 1.0, "runs": 2, "reported": reported, "tolerance": 2.0, "verdict": verdict}


def _legend(figure) -> list[str]:
    return [text.get_text() for text in figure.axes[0].get_legend().get_texts()]


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def test_the_summary_legend_names_only_the_verdicts_plotted():
    figure = summary_figure([_row("reproduced"), _row("no reference", reported=None, label="b")])
    assert _legend(figure) == ["reproduced: reproduced", "reproduced: no reference",
                               "reported ± tolerance"]
    figure = summary_figure([_row("no reference", reported=None)])
    assert _legend(figure) == ["reproduced: no reference"]
    figure = summary_figure([_row("below"), _row("above", label="b")])
    assert _legend(figure) == ["reproduced: above", "reproduced: below", "reported ± tolerance"]


def test_summary_bars_of_reported_are_dashed_and_of_reproduced_solid():
    axes = summary_figure([_row("reproduced")]).axes[0]
    reported, reproduced = (container[2][0] for container in axes.containers)
    assert reported.get_linestyle()[0][1] is not None      # a dash pattern
    assert reproduced.get_linestyle()[0][1] is None        # solid
    handles = axes.get_legend().legend_handles
    assert handles[0].get_linestyle() == "-" and handles[-1].get_linestyle() == "--"


def test_reproduced_and_reported_averages_differ_in_style_and_are_labelled():
    runs = [{"avg_top1": avg, "dataset": "digits", "protocol": "5/1",
             "phases": [{"phase": 0, "seen_classes": 5, "top1": avg},
                        {"phase": 1, "seen_classes": 6, "top1": avg - 5}]}
            for avg in (60.0, 62.0)]
    axes = experiment_figure("a", runs, {"avg_top1": 70.0, "last_top1": 50.0,
                                         "tolerance": 2.0}).axes[0]
    lines = {line.get_label(): line for line in axes.get_lines()}
    reproduced = lines["reproduced average 61.00"]
    reported = lines["reported average 70.00 (band: ± 2)"]
    assert reproduced.get_linestyle() == "-" and reported.get_linestyle() == "--"
    assert reproduced.get_color() != reported.get_color()
    labels = _legend(axes.figure)
    assert "reproduced average 61.00" in labels and "reported average 70.00 (band: ± 2)" in labels
    assert "reported last 50.00 ± 2" in labels
