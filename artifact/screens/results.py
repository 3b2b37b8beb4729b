"""A run's results: top-1/top-5/old/new per phase, and the `mgrb check` verdict per metric."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Static

from artifact.core.runs import FINISHED
from artifact.core.service import Snapshot
from artifact.messages import SnapshotReady
from artifact.widgets.styles import cells, line, number, plain, status_text, verdict_text

from .keys import FIRST_KEYS


class ResultsScreen(Screen):
    BINDINGS = [
        *FIRST_KEYS,
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
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.query_one("#verdicts").border_title = "check against the paper"
        self.query_one("#phases").border_title = "per phase"
        self.query_one("#verdicts", DataTable).add_columns(
            "metric", "reported", "tolerance", "reproduced", "runs", "verdict")
        self.query_one("#phases", DataTable).add_columns(
            "seed", "phase", "classes", "top-1", "top-5", "old top-1", "new top-1")
        self._shown = None
        if self.app.snapshot is not None:  # shown until the next poll's arrives
            self._show_snapshot(self.app.snapshot)

    def on_snapshot_ready(self, message: SnapshotReady) -> None:
        self._show_snapshot(message.snapshot)

    def _show_snapshot(self, snapshot: Snapshot) -> None:
        state = snapshot.states.get(self.experiment_name)
        if state is None:
            return
        key = (state.status, len(state.results), tuple(state.progress.top1))
        if key == self._shown:
            return
        self._shown = key
        title = line(plain(self.experiment_name, "bold"), status_text(state.status, state.verdict))
        if state.status != FINISHED:
            title = line(title, "the verdict comes when every run of this experiment has finished",
                         sep="\n")
        self.query_one("#results-title", Static).update(title)
        verdicts = self.query_one("#verdicts", DataTable)
        verdicts.clear()
        for row in state.verdicts:
            value = number(row["reproduced"]) + (f" ± {row['std']:.2f}" if row["std"] else "")
            verdicts.add_row(*cells(row["metric"], number(row["reported"]),
                                    f"±{row['tolerance']:.1f}", value, row["runs"],
                                    verdict_text(row["verdict"])))
        phases = self.query_one("#phases", DataTable)
        phases.clear()
        for results in state.results:
            seed = results.get("seed", "-")
            for phase in results["phases"]:  # top5, old and new top-1 are optional
                phases.add_row(*cells(seed, phase["phase"] + 1, phase["seen_classes"],
                                      number(phase["top1"]), number(phase.get("top5")),
                                      number(phase.get("old_top1")),
                                      number(phase.get("new_top1"))))
        if not state.results:  # not finished: what the evaluations so far gave
            for index, top1 in enumerate(state.progress.top1):
                phases.add_row(*cells("-", index + 1, "-", number(top1), "-", "-", "-"))

    def action_report(self) -> None:
        self.app.write_report([self.experiment_name])
