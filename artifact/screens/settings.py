"""Launcher settings: local processes or containers, GPUs, runs per GPU, stall time."""

from __future__ import annotations

from dataclasses import replace

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Select, Static

from artifact.core.settings import CUDA_VARIANTS, DOCKER, LOCAL, default_image, parse_gpus
from artifact.widgets.styles import line, tell


# what each variant of the image needs of the machine (the Makefile's CUDA=)
CUDA_CHOICES = [("CUDA 13 (driver R580+)", "13"), ("CUDA 12 (driver R525+)", "12")]


class SettingsScreen(ModalScreen):
    BINDINGS = [Binding("escape", "app.pop_screen", "Cancel")]
    DEFAULT_CSS = """
    #image-row { height: auto; }
    #cuda { width: 30; }
    #image { width: 1fr; }
    """

    def compose(self) -> ComposeResult:
        settings = self.app.service.settings
        gpus = "" if settings.gpus is None else ",".join(map(str, settings.gpus))
        with Vertical(id="settings-box"):
            yield Label("Run experiments as")
            yield Select([("local processes", LOCAL), ("Docker containers", DOCKER)],
                         value=settings.mode, allow_blank=False, id="mode")
            yield Label("GPUs to use (indices such as 0,1; empty: all)")
            yield Input(gpus, id="gpus")
            yield Label("Runs per GPU (several small runs can share one GPU)")
            yield Input(str(settings.runs_per_gpu), id="runs-per-gpu", type="integer")
            yield Label("Shown as stalled after this many seconds without events")
            yield Input(f"{settings.stall_after_s:g}", id="stall", type="number")
            yield Label("Docker image (Docker mode): CUDA variant, or an image name")
            cuda = settings.cuda if settings.cuda in CUDA_VARIANTS else CUDA_VARIANTS[0]
            with Horizontal(id="image-row"):
                yield Select(CUDA_CHOICES, value=cuda, allow_blank=False, id="cuda")
                # empty: the image `make image` builds for the variant, shown as the placeholder
                yield Input(settings.image, placeholder=default_image(cuda), id="image")
            yield Label("Data folder mounted at /data (Docker mode)")
            yield Input(settings.data_dir, id="data-dir")
            yield Static(id="settings-errors")
            yield Static(id="settings-note")
            with Horizontal(id="settings-buttons"):
                yield Button("Save", variant="primary", id="save")
                yield Button("Cancel", id="cancel")

    def on_select_changed(self, event: Select.Changed) -> None:
        if event.select.id == "cuda" and event.value in CUDA_VARIANTS:
            self.query_one("#image", Input).placeholder = default_image(event.value)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "cancel":
            self.app.pop_screen()
            return
        value = {widget.id: widget.value for widget in self.query(Input)}
        errors = []
        try:
            gpus = parse_gpus(value["gpus"])
        except ValueError as error:
            gpus, errors = None, [f"GPUs: {error}"]
        try:
            runs_per_gpu, stall = int(value["runs-per-gpu"]), float(value["stall"])
        except ValueError:
            runs_per_gpu, stall = 0, 0.0
        settings = replace(self.app.service.settings, mode=self.query_one("#mode", Select).value,
                           gpus=gpus, runs_per_gpu=runs_per_gpu, stall_after_s=stall,
                           image=value["image"].strip(), cuda=self.query_one("#cuda", Select).value,
                           data_dir=value["data-dir"].strip())
        if errors:
            self._show_errors(errors)
            return
        self.query_one("#save", Button).disabled = True
        if settings.mode == DOCKER and self.app.service.settings.mode != DOCKER:
            self._show_errors([])
            self.query_one("#settings-note", Static).update("asking the Docker daemon…")
        self._save(settings)

    @work(thread=True, exclusive=True, group="settings", exit_on_error=False)
    def _save(self, settings) -> None:
        # a daemon that does not answer can take the SDK's whole timeout: not on the UI's thread
        service = self.app.service
        refusal = service.mode_refusal(settings)
        problems = [refusal] if refusal else service.save_settings(settings)
        # saved, but the runs on GPUs will not start: the variant needs a newer driver
        warning = None if problems or settings.mode != DOCKER else \
            settings.driver_problem(service.docker.driver())
        self.app.call_from_thread(self._saved, problems, bool(refusal), warning)

    def _saved(self, problems: list[str], mode_refused: bool, warning: str | None = None) -> None:
        if warning:
            tell(self.app, warning, severity="warning")
        if not self.is_mounted:  # closed while the daemon was asked: say what became of it
            tell(self.app, problems or ["settings saved"],
                 severity="warning" if problems else "information")
            return
        self.query_one("#save", Button).disabled = False
        self.query_one("#settings-note", Static).update("")
        if mode_refused:  # the choice goes back to the mode in force, as the message says
            self.query_one("#mode", Select).value = self.app.service.settings.mode
        if problems:
            self._show_errors(problems)
            return
        tell(self.app, "settings saved")
        self.app.pop_screen()

    def _show_errors(self, errors: list[str]) -> None:
        self.query_one("#settings-errors", Static).update(line(*errors, sep="\n"))
