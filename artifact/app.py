"""`mgrb tui`: the terminal launcher. The app polls `artifact.core.Service` in a worker
thread about once a second and posts each snapshot to the screens as a `SnapshotReady`
message; it never waits on a run. What an action may do is the service's to decide: the app
and its screens call it and show its answer."""

from __future__ import annotations

import os
from pathlib import Path

from textual import work
from textual.app import App
from textual.binding import Binding

from artifact.core.explain import explain
from artifact.core.service import Service, Snapshot
from artifact.messages import SnapshotReady
from artifact.screens.main import MainScreen
from artifact.widgets.styles import tell


class ArtifactApp(App):
    CSS_PATH = "app.tcss"
    TITLE = "MGRB artifact"
    SUB_TITLE = "class-incremental learning, TKDE 2022"
    BINDINGS = [
        Binding("f1", "help", "Help"),
        Binding("question_mark", "help", "Help", show=False),
        Binding("ctrl+d", "toggle_dark", "Dark/light", show=False),
        Binding("ctrl+q", "quit", "Quit"),
    ]
    # classes of every screen by the terminal's size: app.tcss says what a small one drops
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (100, "-wide")]
    VERTICAL_BREAKPOINTS = [(0, "-short"), (32, "-tall")]

    def __init__(self, service: Service, *, poll_interval: float = 1.0,
                 reports_dir: Path | None = None):
        super().__init__()
        self.service, self.poll_interval = service, poll_interval
        self.reports_dir = Path(reports_dir or os.environ.get("MGRB_REPORTS") or "reports")
        self.snapshot: Snapshot | None = None  # the latest poll's, as the screens show it

    def on_mount(self) -> None:
        self.push_screen(MainScreen())
        self.request_poll()
        self.set_interval(self.poll_interval, self.request_poll)

    # -- polling -----------------------------------------------------------------------
    def request_poll(self) -> None:
        self._poll()

    @work(thread=True, exclusive=True, group="poll", exit_on_error=False)
    def _poll(self) -> None:
        snapshot = self.service.poll()
        self.call_from_thread(self._show, snapshot)

    def _show(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot
        for message in snapshot.messages:
            tell(self, message, severity="error", timeout=15)
        for screen in self.screen_stack:  # a screen without on_snapshot_ready ignores it
            screen.post_message(SnapshotReady(snapshot))

    # -- actions shared by the screens -------------------------------------------------
    def stop_run(self, name: str, force: bool = False) -> None:
        """ctrl+t (force: ctrl+k) on a run: the service decides what that means for it."""
        answer = self.service.request_stop(name, force=force)
        if not answer.done:
            tell(self, answer.text, severity="warning")
            return
        tell(self, answer.text)
        self.request_poll()

    def write_report(self, names: list[str]) -> None:
        finished = self.service.reportable(names)
        if not finished:
            tell(self, "no finished run among the chosen experiments", severity="warning")
            return
        self._write_report(finished)

    @work(thread=True, group="report", exit_on_error=False)
    def _write_report(self, names: list[str]) -> None:
        try:
            path = self.service.write_report(names, self.reports_dir)
        except (OSError, ValueError) as error:
            self.call_from_thread(tell, self, f"report not written: {explain(error)}",
                                  severity="error")
            return
        self.call_from_thread(tell, self, f"{path} ({len(names)} experiment{'' if len(names) == 1 else 's'})",
                              title="report written", timeout=10)

    def action_help(self) -> None:
        from artifact.screens.help import HelpScreen

        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    def action_toggle_dark(self) -> None:
        self.theme = "textual-light" if self.theme == "textual-dark" else "textual-dark"

    def on_unmount(self) -> None:
        self.service.gpu_monitor.close()


def run_app(*, experiments_dir: Path, runs_dir: Path) -> int:
    service = Service(experiments_dir=experiments_dir, runs_dir=runs_dir)
    ArtifactApp(service).run()
    return 0
