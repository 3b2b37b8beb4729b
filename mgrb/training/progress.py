"""Progress on the terminal: a redrawn bar on a TTY, plain lines otherwise."""

from __future__ import annotations

import sys
import time


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


def stage_label(phase: int, phases: int, stage: str) -> str:
    """How the progress lines name a stage: phase 2/6 stage 1 (phases count from 1 here)."""
    return f"phase {phase + 1}/{phases} {stage}"


class Progress:
    def __init__(self, stream=None, quiet: bool = False):
        self.stream = stream or sys.stderr
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.quiet = quiet
        self._open_bar = False
        self._last_plain = 0.0
        self._last_count = 0.0

    def _write(self, text: str) -> None:
        if self._open_bar:
            self.stream.write("\n")
            self._open_bar = False
        self.stream.write(text + "\n")
        self.stream.flush()

    def message(self, text: str) -> None:
        if not self.quiet:
            self._write(text)

    def warn(self, text: str) -> None:
        """Shown with --quiet too: --quiet silences progress, never what went wrong."""
        self._write(text)

    def epoch(self, label: str, *, epoch: int, epochs: int, loss: float, images_per_s: float,
              started: float, first: int = 1) -> None:
        """Called after each epoch of the stage `label` (stage_label); `epoch` counts from 1
        and goes on after a resume, which started this process at epoch `first` (the ETA is
        timed from there)."""
        if self.quiet:
            return
        elapsed = time.monotonic() - started
        eta = elapsed / (epoch - first + 1) * (epochs - epoch)
        if self.tty:
            width = 24
            filled = int(width * epoch / epochs)
            bar = "#" * filled + "-" * (width - filled)
            self.stream.write(f"\r{label} [{bar}] epoch {epoch}/{epochs} loss {loss:.4f} "
                              f"{images_per_s:,.0f} img/s ETA {_duration(eta)}  ")
            self.stream.flush()
            self._open_bar = True
            if epoch == epochs:
                self._write("")
        elif epoch == epochs or time.monotonic() - self._last_plain >= 30:
            self._last_plain = time.monotonic()
            self._write(f"{label} epoch {epoch}/{epochs} loss {loss:.4f} "
                        f"{images_per_s:,.0f} img/s elapsed {_duration(elapsed)}")

    def count(self, label: str, done: int, total: int, *, started: float, first: int = 0,
              unit: str = "images") -> None:
        """Called as items are done, as often as that may be: the line is redrawn at most four
        times a second on a TTY, printed every 30 s otherwise. `first` items were done before
        `started` (kept from an interrupted run): the rate and the ETA leave them out."""
        if self.quiet:
            return
        now, last = time.monotonic(), done >= total
        if not last and now - self._last_count < (0.25 if self.tty else 30):
            return
        self._last_count = now
        rate = (done - first) / (now - started) if now > started else 0.0
        eta = _duration((total - done) / rate) if rate > 0 else "-:--"
        text = f"{label} {done:,}/{total:,} {unit} {rate:,.0f} {unit}/s ETA {eta}"
        if not self.tty:
            self._write(text)
            return
        self.stream.write(f"\r{text}" + ("\n" if last else "  "))
        self.stream.flush()
        self._open_bar = not last
