"""A run's results: top-1/top-5/old/new per phase, and the `mgrb check` verdict per metric."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Static

from artifact.widgets.styles import line, plain, plain_text, status_text, verdict_text


def _number(value) -> str:
    return "-" if value is None else f"{value:.2f}"


def _row(*cells) -> list:
    """A str cell of a DataTable is read as markup: every cell goes in as plain text."""
    return [cell if isinstance(cell, Text) else plain_text(cell) for cell in cells]


class ResultsScreen(Screen):
    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("ctrl+e", "report", "Write report"),
    ]

    def __init__(self, name: str):
        super().__init__()
        self.experiment_name = name

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(id="results-title")
        yield DataTable(id="verdicts", cursor_type="none")
        yield DataTable(id="phases", cursor_type="row", zebra_stripes=True)
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#verdicts").border_title = "check against the paper"
        self.query_one("#phases").border_title = "per phase"
        self.query_one("#verdicts", DataTable).add_columns(
            "metric", "reported", "tolerance", "reproduced", "runs", "verdict")
        self.query_one("#phases", DataTable).add_columns(
            "seed", "phase", "classes", "top-1", "top-5", "old top-1", "new top-1")
        self._shown = None
        if self.app.snapshot is not None:
            self.show_snapshot(self.app.snapshot)

    def show_snapshot(self, snapshot) -> None:
        state = snapshot.states.get(self.experiment_name)
        if state is None:
            return
        key = (state.status, len(state.results), tuple(state.progress.top1))
        if key == self._shown:
            return
        self._shown = key
        title = line(plain(self.experiment_name, "bold"), status_text(state.status, state.verdict))
        if state.status != "finished":
            title = line(title, "the verdict comes when every run of this experiment has finished",
                         sep="\n")
        self.query_one("#results-title", Static).update(title)
        verdicts = self.query_one("#verdicts", DataTable)
        verdicts.clear()
        for row in state.verdicts:
            value = _number(row["reproduced"]) + (f" ± {row['std']:.2f}" if row["std"] else "")
            verdicts.add_row(*_row(row["metric"], _number(row["reported"]),
                                   f"±{row['tolerance']:.1f}", value, row["runs"],
                                   verdict_text(row["verdict"])))
        phases = self.query_one("#phases", DataTable)
        phases.clear()
        for results in state.results:
            seed = results.get("seed", "-")
            for phase in results["phases"]:  # top5, old and new top-1 are optional
                phases.add_row(*_row(seed, phase["phase"] + 1, phase["seen_classes"],
                                     _number(phase["top1"]), _number(phase.get("top5")),
                                     _number(phase.get("old_top1")),
                                     _number(phase.get("new_top1"))))
        if not state.results:  # not finished: what the evaluations so far gave
            for index, top1 in enumerate(state.progress.top1):
                phases.add_row(*_row("-", index + 1, "-", _number(top1), "-", "-", "-"))

    def action_report(self) -> None:
        self.app.write_report([self.experiment_name])
