"""The experiment picker: filter, select, launch; run status and the GPU panel below."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Input, Static

from artifact.messages import SnapshotReady
from artifact.widgets.experiment_table import ExperimentTable
from artifact.widgets.gpu_panel import GpuPanel
from artifact.widgets.styles import line, plain, tell

from .keys import FIRST_KEYS

NOT_FOR_FILTER = " ?/"  # keys of their own on the table: select, help, to the filter
TO_TABLE = ("down", "enter")  # from the filter box: to the table, whose enter opens the monitor


class MainScreen(Screen):
    BINDINGS = [
        *FIRST_KEYS,
        Binding("space", "toggle_select", "Select", show=True),
        Binding("enter", "monitor", "Monitor"),
        Binding("ctrl+l", "launch", "Launch"),
        Binding("ctrl+t", "stop", "Stop"),
        Binding("ctrl+r", "results", "Results"),
        Binding("ctrl+e", "report", "Report"),
        Binding("ctrl+o", "settings", "Settings"),
        Binding("slash", "focus_filter", "Filter", show=False),
        Binding("escape", "clear_filter", "Clear filter", show=False),
    ]

    def compose(self) -> ComposeResult:
        yield Header()
        # select_on_focus off: the first typed letter moves focus here and must stay
        # short enough to read whole at 80 columns, the box's border and padding taken off
        yield Input(placeholder="filter: name, data set, protocol, hierarchy; ↓ or enter: "
                                "to the table", id="filter", select_on_focus=False)
        yield ExperimentTable(id="experiments")
        yield Static(id="detail")
        with Vertical(id="gpu-box"):
            yield GpuPanel("reading GPUs…", id="gpus")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.query_one("#gpu-box").border_title = "GPUs"
        table = self.table
        table.set_experiments(self.app.service.experiments)
        table.focus()
        broken = self.app.service.broken
        if broken:
            tell(self, [f"{b.path}: {b.error}" for b in broken],
                 title="experiment files with errors", severity="error", timeout=15)

    @property
    def table(self) -> ExperimentTable:
        return self.query_one(ExperimentTable)

    # -- data ----------------------------------------------------------------------------
    def on_snapshot_ready(self, message: SnapshotReady) -> None:
        snapshot = message.snapshot
        self.table.show_states(snapshot.states)
        self.query_one(GpuPanel).show(snapshot.gpu, snapshot.gpu_users)
        self._show_detail()

    def _show_detail(self) -> None:
        name = self.table.current_name()
        detail = self.query_one("#detail", Static)
        if name is None:
            detail.update("no experiment matches the filter")
            return
        experiment = self.app.service.experiment(name)
        state = (self.app.snapshot.states.get(name) if self.app.snapshot else None)
        # what stops a run first, the estimate's basis after: on a short screen the lines past
        # the detail's max-height are cut
        lines = [line(plain(name, "bold"), experiment.description)]
        if experiment.data_help:
            lines.append(plain(experiment.data_help, "dark_orange"))
        if state is not None and state.detail:
            lines.append(f"{state.status}: {state.detail}")
        if experiment.gpu_hours is not None:
            lines.append(plain(f"GPU h {experiment.gpu_hours:.2f}: {experiment.hours_basis}",
                               "dim"))
        selected = len(self.table.selected)
        if selected:
            lines.append(f"{selected} selected (space toggles; ctrl+l launches them)")
        detail.update(line(*lines, sep="\n"))

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._show_detail()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        self.action_monitor()

    # -- filter ----------------------------------------------------------------------------
    def on_input_changed(self, event: Input.Changed) -> None:
        self.table.set_filter(event.value)
        self._show_detail()

    def on_key(self, event) -> None:
        """Typing on the table starts filtering: the character goes to the filter box; down or
        enter in the filter box goes back to the table (the filter stays)."""
        filter_box = self.query_one("#filter", Input)
        if self.focused is filter_box and event.key in TO_TABLE:
            self.table.focus()
            event.prevent_default()  # enter would also submit the filter: nothing more to do
            event.stop()
        elif self.focused is self.table and event.is_printable and event.character \
                and event.character not in NOT_FOR_FILTER:
            filter_box.focus()
            filter_box.insert_text_at_cursor(event.character)
            event.stop()

    def action_focus_filter(self) -> None:
        self.query_one("#filter", Input).focus()

    def action_clear_filter(self) -> None:
        self.query_one("#filter", Input).value = ""
        self.table.focus()

    # -- actions ---------------------------------------------------------------------------
    def action_toggle_select(self) -> None:
        self.table.toggle_current()
        self._show_detail()

    def action_launch(self) -> None:
        names = self.table.chosen()
        if not names:
            return
        launched = self.app.service.launch(names)
        for problem in launched.refused:
            tell(self, problem, title="not launched", severity="warning", timeout=12)
        if launched.queued:
            tell(self, ", ".join(launched.queued), title="queued for launch")
        self.table.selected.clear()
        self.table.set_filter(self.table.filter_text)
        self.app.request_poll()

    def action_stop(self) -> None:
        name = self.table.current_name()
        if name:
            self.app.stop_run(name)

    def action_monitor(self) -> None:
        name = self.table.current_name()
        if name:
            from .monitor import MonitorScreen

            self.app.push_screen(MonitorScreen(name))

    def action_results(self) -> None:
        name = self.table.current_name()
        if name:
            from .results import ResultsScreen

            self.app.push_screen(ResultsScreen(name))

    def action_report(self) -> None:
        self.app.write_report(self.table.chosen())

    def action_settings(self) -> None:
        from .settings import SettingsScreen

        self.app.push_screen(SettingsScreen())
