"""One colour per status and verdict, and the one way text from files reaches the screen.

Colours are plain ANSI colour names: the terminal's own palette maps them, so they read in
dark and light themes alike.

Names, descriptions, errors and log lines come from files that may have been made elsewhere.
Shown through `plain` (or `plain_text`, or `tell` for notifications) they are only ever text:
console markup is not interpreted (`[@click=app.quit]` would be a button), and control
characters are shown, not sent (an escape sequence would reach the terminal: retitle it,
rewrite the screen).
"""

from __future__ import annotations

from rich.text import Text
from textual.content import Content

from mgrb.text import printable
from artifact.core.runs import (ABOVE, BELOW, BROKEN, CANCELLED, FAILED, FINISHED, INTERRUPTED,
                                KILLED, NO_REFERENCE, NOT_RUN, QUEUED, REPRODUCED, RUNNING,
                                SLURM_PENDING, SLURM_RUNNING, SLURM_UNKNOWN, STALLED, UNKNOWN)

STATUS_STYLE = {
    NOT_RUN: "bright_black", QUEUED: "blue", RUNNING: "yellow", STALLED: "magenta",
    FINISHED: "green", FAILED: "bold red", INTERRUPTED: "dark_orange", KILLED: "bold red",
    UNKNOWN: "magenta", BROKEN: "bold red", SLURM_PENDING: "blue", SLURM_RUNNING: "yellow",
    SLURM_UNKNOWN: "magenta", CANCELLED: "dark_orange",
}
VERDICT_STYLE = {REPRODUCED: "bold green", ABOVE: "bold cyan", BELOW: "bold red",
                 NO_REFERENCE: "bright_black"}


# Control characters in text from files are written out by mgrb.text.printable (one home).


def plain(value, style: str = "") -> Content:
    """Text from a file as Textual Content: no markup, control characters written out."""
    return Content.styled(printable(value), style) if style else Content(printable(value))


def plain_text(value, style: str = "") -> Text:
    """The same as a Rich Text, for tables and logs that take Rich renderables."""
    return Text(printable(value), style=style, end="")


def cells(*values) -> list[Text]:
    """A row for a DataTable: a str cell would be read as markup, so every value goes in as
    plain text (Rich Text, the launcher's own, as it is)."""
    return [value if isinstance(value, Text) else plain_text(value) for value in values]


def tell(widget, message: str | list[str], *, title: str = "", **options) -> None:
    """A notification whose message (or lines) and title are shown as they are: markup off,
    control characters written out."""
    lines = message if isinstance(message, list) else [message]
    widget.notify("\n".join(map(printable, lines)), title=printable(title), markup=False,
                  **options)


def status_text(status: str, verdict: str | None = None) -> Text:
    """A status as every screen shows it; a finished run's with its verdict."""
    if status == FINISHED and verdict:
        return Text(f"{FINISHED}: {verdict}", style=VERDICT_STYLE.get(verdict, "green"))
    return Text(status, style=STATUS_STYLE.get(status, ""))


def verdict_text(verdict: str) -> Text:
    return Text(verdict, style=VERDICT_STYLE.get(verdict, ""))


def number(value: float | None, spec: str = ".2f", unit: str = "") -> str:
    """A number for a cell or a line in `spec` format, followed by `unit`; "-" for none."""
    return "-" if value is None else f"{value:{spec}}{unit}"


def duration(seconds: float | None) -> str:
    if seconds is None or not 0 <= seconds < 10**9:  # no estimate rather than a wild one
        return "-"
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


def line(*parts, sep: str = "  ") -> Content:
    """Parts joined by `sep` as Textual Content, which keeps the spaces between differently
    styled parts (a converted Rich Text drops them). A str part is text from a file, shown
    through `plain`; Rich Text and Content parts are the launcher's own."""
    pieces = []
    for index, part in enumerate(parts):
        if index:
            pieces.append(sep)
        if isinstance(part, Text):
            pieces.append(Content.from_rich_text(part))
        elif isinstance(part, Content):
            pieces.append(part)
        else:
            pieces.append(plain(part))
    return Content.assemble(*pieces)
