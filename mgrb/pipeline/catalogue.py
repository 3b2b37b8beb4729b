"""The experiment catalogue: the *.yaml files of an experiments folder, as `mgrb list`,
`mgrb reproduce` and the launcher all read it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mgrb.config import load_config
from mgrb.errors import ConfigError


@dataclass(frozen=True)
class Entry:
    """One file: what `load` made of it, or why it cannot run."""

    path: Path
    loaded: Any = None           # None when the file cannot run
    problem: str | None = None   # the file's own error, or the name it shares
    duplicate: bool = False      # the problem is only that an earlier file has its name


def load_catalogue(experiments_dir: Path, load: Callable[[Path], Any] = load_config) -> list[Entry]:
    """Every *.yaml file in name order. `load` returns something with a `.name`, or raises
    ConfigError saying why the file cannot run."""
    entries, first_with = [], {}  # name -> the file that has it
    for path in sorted(Path(experiments_dir).glob("*.yaml")):
        try:
            loaded = load(path)
        except ConfigError as error:
            entries.append(Entry(path, problem=str(error)))
            continue
        if loaded.name in first_with:  # both would write runs/<name>: one run folder
            entries.append(Entry(path, problem=f"names itself {loaded.name}, as "
                                               f"{first_with[loaded.name]} does", duplicate=True))
            continue
        first_with[loaded.name] = path
        entries.append(Entry(path, loaded))
    return entries
