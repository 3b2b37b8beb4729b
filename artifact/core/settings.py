"""Launcher settings, kept in <runs>/.launcher/settings.json so a reopened launcher keeps them."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from .records import read_json, write_json

MODES = ("local", "docker")


@dataclass
class Settings:
    mode: str = "local"                 # local processes, or containers through the Docker SDK
    gpus: list[int] | None = None       # GPU indices to use; None: every GPU the panel sees
    runs_per_gpu: int = 1               # runs packed on one GPU (or at once on the CPU)
    stall_after_s: float = 600.0        # no events for this long: shown as stalled
    image: str = "mgrb-artifact:0.1.0"  # docker mode
    data_dir: str = field(default_factory=lambda: os.environ.get("MGRB_DATA") or "data")
    shm_size: str = "16g"

    @classmethod
    def load(cls, runs_dir: Path) -> Settings:
        stored = read_json(settings_path(runs_dir)) or {}
        known = {f.name for f in fields(cls)}
        settings = cls(**{k: v for k, v in stored.items() if k in known})
        return settings if settings.problems() == [] else cls()

    def save(self, runs_dir: Path) -> None:
        settings_path(runs_dir).parent.mkdir(parents=True, exist_ok=True)
        write_json(settings_path(runs_dir), asdict(self))

    def problems(self) -> list[str]:
        found = []
        if self.mode not in MODES:
            found.append(f"mode: one of {', '.join(MODES)}")
        if self.gpus is not None and not (isinstance(self.gpus, list) and all(
                isinstance(g, int) and g >= 0 for g in self.gpus)):
            found.append("gpus: GPU indices such as 0,1 (empty: all)")
        if not isinstance(self.runs_per_gpu, int) or not 1 <= self.runs_per_gpu <= 16:
            found.append("runs per GPU: a whole number from 1 to 16")
        if not isinstance(self.stall_after_s, (int, float)) or self.stall_after_s < 10:
            found.append("stalled after: at least 10 seconds")
        return found


def settings_path(runs_dir: Path) -> Path:
    return Path(runs_dir) / ".launcher" / "settings.json"


def parse_gpus(text: str) -> list[int] | None:
    """'' or 'all' -> None (all); '0,2' -> [0, 2]; raises ValueError naming the bad part."""
    text = text.strip().lower()
    if text in ("", "all"):
        return None
    indices = []
    for part in text.replace(" ", ",").split(","):
        if part:
            if not part.isdigit():
                raise ValueError(f"{part!r} is not a GPU index")
            indices.append(int(part))
    return indices
