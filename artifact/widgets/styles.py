"""One colour per status and verdict. Plain ANSI colour names: the terminal's own palette
maps them, so they read in dark and light themes alike."""

from __future__ import annotations

from rich.text import Text
from textual.content import Content

STATUS_STYLE = {
    "not run": "bright_black", "queued": "blue", "running": "yellow", "stalled": "magenta",
    "finished": "green", "failed": "bold red", "interrupted": "dark_orange", "killed": "bold red",
    "unknown": "magenta",
}
VERDICT_STYLE = {"reproduced": "bold green", "above": "bold cyan", "below": "bold red",
                 "no reference": "bright_black"}


def status_text(status: str, verdict: str | None = None) -> Text:
    if status == "finished" and verdict:
        return Text(f"finished: {verdict}", style=VERDICT_STYLE.get(verdict, "green"))
    return Text(status, style=STATUS_STYLE.get(status, ""))


def verdict_text(verdict: str) -> Text:
    return Text(verdict, style=VERDICT_STYLE.get(verdict, ""))


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"



def line(*parts, sep: str = "  ") -> Content:
    """Parts (str, Rich Text or Content) joined by `sep` as Textual Content, which keeps the
    spaces between differently styled parts (a converted Rich Text drops them)."""
    pieces = []
    for index, part in enumerate(parts):
        if index:
            pieces.append(sep)
        pieces.append(Content.from_rich_text(part) if isinstance(part, Text) else part)
    return Content.assemble(*pieces)
