"""The experiment picker's table: one row per experiment file, filtered by typed text,
several rows selectable with space; status cells follow the run folders."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import DataTable

from artifact.core.experiments import DATASET_TITLES, ExperimentRow
from artifact.core.runs import RunState

from .styles import cells, number, status_text

# (key, label, width), what matters first: an 80-column terminal shows the name, status, data
# and GPU hours, the rest is a scroll away (the description is in the line under the table).
# Fixed widths, so that a status that grows later still fits ("finished: no reference").
COLUMNS = (("mark", " ", 1), ("name", "experiment", None), ("status", "status", 22),
           ("data", "data", 7), ("hours", "GPU h", 5), ("dataset", "data set", 12),
           ("protocol", "protocol", 8), ("hierarchy", "hier.", 5),
           ("reported", "reported avg/last", 17))
NAME_WIDTHS = (10, 40)  # the name column fits the longest name, within these
NO_STATUS_YET = "…"  # the status cell until the first poll has read the run folders


def reported_text(experiment: ExperimentRow) -> str:
    if not experiment.reported:
        return "-"
    return "/".join(number(experiment.reported.get(k)) for k in ("avg_top1", "last_top1"))


class ExperimentTable(DataTable):
    def __init__(self, **kwargs):
        super().__init__(cursor_type="row", zebra_stripes=True, **kwargs)
        self.experiments: list[ExperimentRow] = []
        self.selected: set[str] = set()
        self.filter_text = ""
        self._states: dict[str, RunState] = {}

    def set_experiments(self, experiments: list[ExperimentRow]) -> None:
        self.experiments = experiments
        longest = max((len(e.name) for e in experiments), default=0)
        name_width = min(max(longest, NAME_WIDTHS[0]), NAME_WIDTHS[1])
        self.clear(columns=True)
        for key, label, width in COLUMNS:
            self.add_column(label, key=key, width=width or name_width)
        self._rebuild()

    def set_filter(self, text: str) -> None:
        self.filter_text = text.strip().lower()
        self._rebuild()

    def visible(self) -> list[ExperimentRow]:
        words = self.filter_text.split()
        return [e for e in self.experiments
                if all(w in f"{e.name} {e.dataset} {DATASET_TITLES[e.dataset]} {e.protocol} "
                             f"{e.hierarchy}".lower() for w in words)]

    def _rebuild(self) -> None:
        current = self.current_name()
        self.clear()
        for experiment in self.visible():
            self.add_row(*self._cells(experiment), key=experiment.name)
        if current in {e.name for e in self.visible()}:
            self.move_cursor(row=self.get_row_index(current))

    def _cells(self, experiment: ExperimentRow) -> list:
        state = self._states.get(experiment.name)
        status = status_text(state.status, state.verdict) if state else Text(NO_STATUS_YET)
        data = Text("present", style="green") if experiment.data_present else \
            Text("missing", style="dark_orange")
        # a str cell would be read as markup: every value from a file goes in as plain text
        return [self._mark(experiment.name),
                *cells(experiment.name, status, data, number(experiment.gpu_hours),
                       DATASET_TITLES[experiment.dataset], experiment.protocol,
                       experiment.hierarchy, reported_text(experiment))]

    def show_states(self, states: dict[str, RunState]) -> None:
        self._states = states
        for experiment in self.visible():
            state = states.get(experiment.name)
            if state is not None:
                self.update_cell(experiment.name, "status", status_text(state.status, state.verdict))

    def current_name(self) -> str | None:
        if not self.row_count:
            return None
        key = self.coordinate_to_cell_key(self.cursor_coordinate).row_key
        return key.value

    def toggle_current(self) -> None:
        name = self.current_name()
        if name is None:
            return
        self.selected ^= {name}
        self.update_cell(name, "mark", self._mark(name))

    def _mark(self, name: str) -> str:
        return "✓" if name in self.selected else " "

    def chosen(self) -> list[str]:
        """The selected experiments, or the one under the cursor when none is selected."""
        if self.selected:
            return [e.name for e in self.experiments if e.name in self.selected]
        current = self.current_name()
        return [current] if current else []
