"""One run as it trains: progress of the phases and the current epoch, ETA, images/s, the
loss and top-1 per phase against the paper's numbers, and the log's tail."""

from __future__ import annotations

import time

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.screen import Screen
from textual.widgets import Footer, Header, Label, ProgressBar, RichLog, Static

from artifact.core.runs import STAGE1, RunState
from artifact.core.service import Snapshot
from artifact.messages import SnapshotReady
from artifact.widgets.accuracy_plot import AccuracyPlot
from artifact.widgets.loss_plot import LossPlot
from artifact.widgets.styles import duration, line, number, plain, plain_text, status_text, tell

from .keys import FIRST_KEYS


class MonitorScreen(Screen):
    BINDINGS = [
        *FIRST_KEYS,
        Binding("escape", "app.pop_screen", "Back"),
        Binding("ctrl+r", "results", "Results"),
        Binding("ctrl+l", "launch", "Launch/resume"),
        Binding("ctrl+t", "stop", "Stop"),
        Binding("ctrl+k", "kill", "Kill", show=False),
    ]

    def __init__(self, name: str):
        super().__init__()
        self.experiment_name = name
        self._log_lines: list[str] = []

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(id="run-title")
        with Horizontal(classes="bar-row"):
            yield Label("all phases ", classes="bar-label")
            yield ProgressBar(total=100, show_eta=False, id="overall")
        with Horizontal(classes="bar-row"):
            yield Label("this phase ", classes="bar-label", id="phase-label")
            yield ProgressBar(total=100, show_eta=False, id="phase")
        yield Static(id="run-stats")
        with Horizontal(id="charts"):
            yield AccuracyPlot(id="accuracy")
            yield LossPlot(id="loss")
        # min_width below the default 78: lines wrap to an 80-column terminal instead of scrolling
        yield RichLog(id="log", max_lines=400, wrap=True, min_width=20)
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.query_one("#accuracy").border_title = "top-1 (%) after each phase"
        self.query_one("#loss").border_title = "loss (stage 1) by epoch"
        self.query_one("#log").border_title = "log"
        if self.app.snapshot is not None:  # shown until the next poll's arrives
            self._show_snapshot(self.app.snapshot)

    def on_snapshot_ready(self, message: SnapshotReady) -> None:
        self._show_snapshot(message.snapshot)

    def _show_snapshot(self, snapshot: Snapshot) -> None:
        state: RunState | None = snapshot.states.get(self.experiment_name)
        if state is None:
            return
        experiment = self.app.service.experiment(self.experiment_name)
        progress = state.progress
        title = line(plain(self.experiment_name, "bold"), status_text(state.status, state.verdict))
        if state.detail:
            title = line(title, state.detail, sep="\n")
        self.query_one("#run-title", Static).update(title)
        self.query_one("#overall", ProgressBar).update(progress=100 * progress.fraction)
        self.query_one("#phase", ProgressBar).update(progress=100 * progress.phase_fraction)
        phases = progress.phases or "?"
        stage = progress.stage or "-"
        epoch = f", epoch {min(progress.epoch + 1, progress.epochs or 0)}/{progress.epochs}" \
            if progress.epochs and stage == STAGE1 else ""
        self.query_one("#phase-label", Label).update(
            f"phase {min(progress.phase + 1, phases if isinstance(phases, int) else 999)}/{phases} ")
        rate = number(progress.images_per_s, ",.0f")
        eta = state.eta(time.time())
        gpus = snapshot.gpu_users.get(self.experiment_name)
        on_cpu = (state.launch or {}).get("device") == "cpu" or not snapshot.gpu.gpus
        where = f"GPU {', '.join(map(str, gpus))}" if gpus else ("CPU" if on_cpu else "-")
        self.query_one("#run-stats", Static).update(plain(
            f"{stage}{epoch}   ETA {duration(eta)}   images/s {rate}   on {where}   "
            f"folder {self._folder_label(state.folder)}"))
        self.query_one(AccuracyPlot).show(progress.top1, progress.phases, experiment.reported)
        self.query_one(LossPlot).show(progress.losses, progress.epoch_losses,
                                      progress.phase_starts)
        self._show_log(state.log)

    def _folder_label(self, folder) -> str:
        runs_dir = self.app.service.runs_dir
        if folder is None:  # a run folder the launcher could not read at all
            return "-"
        try:
            return f"{runs_dir.name}/{folder.relative_to(runs_dir)}"
        except ValueError:
            return str(folder)

    def _show_log(self, lines: list[str]) -> None:
        if not lines:  # a run started with `mgrb run` elsewhere: its output went there
            lines = ["(no launcher log: this run was not started from the launcher; its "
                     "progress above comes from events.jsonl)"]
        if lines == self._log_lines:
            return
        log = self.query_one(RichLog)
        overlap = 0  # the new tail usually extends the old one: write only what is new
        for size in range(min(len(lines), len(self._log_lines)), 0, -1):
            if self._log_lines[-size:] == lines[:size]:
                overlap = size
                break
        if not overlap:
            log.clear()
        for entry in lines[overlap:]:
            log.write(plain_text(entry))
        self._log_lines = list(lines)

    def action_results(self) -> None:
        from .results import ResultsScreen

        self.app.push_screen(ResultsScreen(self.experiment_name))

    def action_launch(self) -> None:
        for problem in self.app.service.launch([self.experiment_name]).refused:
            tell(self, problem, severity="warning", timeout=12)
        self.app.request_poll()

    def action_stop(self) -> None:
        self.app.stop_run(self.experiment_name)

    def action_kill(self) -> None:
        self.app.stop_run(self.experiment_name, force=True)
