"""What `mgrb check` and the report read: run folders (finished, failed, not finished, or not
runs at all) and the groups that may be averaged together.

Runs are averaged only when they are one experiment in one configuration: the seed and the
settings that may change on resume aside, every setting must match. A seed found in two
folders counts once."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from mgrb.store.runfolder import RunFolder, may_change_on_resume
from mgrb.store.runstate import NOT_A_RUN, Folder, read_folder
from mgrb.text import one_line

SEARCH_DEPTH = 2  # runs/<experiment>/seed-<s>: `mgrb check runs` finds every run below it
SHOWN_KEYS = 4    # differing settings named in a row's label; more become "+N more"
_ABSENT = "(unset)"  # a setting one configuration has and another lacks


@dataclass
class RunGroup:
    """Runs of one experiment in one configuration, one per seed."""
    experiment: str
    settings: dict               # comparable_settings of its runs; {} when not recorded
    runs: list[dict] = field(default_factory=list)
    repeated: dict = field(default_factory=dict)  # seed -> how many folders hold it (> 1)
    variant: str = ""            # the settings that set this group apart from its siblings

    @property
    def label(self) -> str:
        return f"{self.experiment} [{self.variant}]" if self.variant else self.experiment

    @property
    def slug(self) -> str:
        """A file name for its figure, distinct between groups of one experiment."""
        if not self.variant:
            return self.experiment
        digest = hashlib.sha256(_settings_key(self.settings).encode()).hexdigest()[:8]
        return f"{self.experiment}-{digest}"


def find_folders(paths) -> list[Folder]:
    """Every run folder at or below each path (a folder of seeds, or a whole runs folder);
    a path that holds no run at all is a Folder of status NOT_A_RUN saying so."""
    found: list[Folder] = []
    seen: set[Path] = set()
    for path in map(Path, paths):
        if not path.is_dir():
            reason = "exists but is not a folder" if path.exists() else \
                f"no such folder{_closest_sibling(path)}"
            found.append(Folder(path, NOT_A_RUN, message=f"{path}: {reason}; not a run folder"))
            continue
        below = [p for p in _runs_below(path, SEARCH_DEPTH) if p.resolve() not in seen]
        if not below and path.resolve() not in seen:
            found.append(Folder(path, NOT_A_RUN, message=(
                f"{path}: not a run folder (no config.yaml or results.json in it or in the "
                f"folders below it); `mgrb run` makes run folders")))
        for run in below:
            seen.add(run.resolve())
            found.append(read_folder(run))
    return found


def _closest_sibling(path: Path) -> str:
    """' (did you mean runs/x?)' for a mistyped run folder whose neighbour is close."""
    from mgrb.config.experiment import did_you_mean

    try:
        names = [p.name for p in path.parent.iterdir() if p.is_dir()] if path.parent.is_dir() else []
    except OSError:
        return ""
    close = did_you_mean(path.name, names)
    return close.replace(" (did you mean ", f" (did you mean {path.parent}/") if close else ""


def _runs_below(path: Path, depth: int) -> list[Path]:
    runs = [path] if RunFolder(path).holds_run() else []
    try:
        children = sorted(path.iterdir()) if depth > 0 else []
    except OSError:  # unreadable: it holds no run this reader can use
        children = []
    for child in children:
        if child.is_dir() and not child.is_symlink() and not child.name.startswith("."):
            runs += _runs_below(child, depth - 1)
    return runs


def group_runs(results: list[dict]) -> list[RunGroup]:
    """Results grouped by experiment and configuration (seed aside), each seed once; groups
    sorted by experiment, then by the settings that tell them apart."""
    groups: dict[tuple[str, str], RunGroup] = {}
    seeds: dict[tuple[str, str], set] = {}
    for run in results:
        settings = comparable_settings(run.get("config"))
        key = (run["experiment"], _settings_key(settings))
        group = groups.setdefault(key, RunGroup(run["experiment"], settings))
        seed = run.get("seed")
        seen = seeds.setdefault(key, set())
        if seed is None:  # a run that did not record its seed counts on its own
            group.runs.append(run)
        elif seed in seen:
            group.repeated[seed] = group.repeated.get(seed, 1) + 1
        else:
            seen.add(seed)
            group.runs.append(run)
    by_experiment: dict[str, list[RunGroup]] = {}
    for group in groups.values():
        by_experiment.setdefault(group.experiment, []).append(group)
    for siblings in by_experiment.values():
        _name_variants(siblings)
    return sorted(groups.values(), key=lambda g: (g.experiment, g.variant))


def comparable_settings(config) -> dict:
    """The run's configuration as dotted keys, without what may differ between the seeds of
    one experiment or between a run and its resumption."""
    if not isinstance(config, dict):
        return {}
    flat: dict = {}
    _flatten(config, "", flat)
    return {key: value for key, value in flat.items()
            if key != "train.seed" and not may_change_on_resume(key)}


def _flatten(value, prefix: str, into: dict) -> None:
    if isinstance(value, dict) and value:
        for key, inner in value.items():
            _flatten(inner, f"{prefix}{key}.", into)
    else:
        into[prefix.rstrip(".")] = value


def _settings_key(settings: dict) -> str:
    return json.dumps(settings, sort_keys=True, default=str)


def _name_variants(siblings: list[RunGroup]) -> None:
    if len(siblings) < 2:
        return
    keys = sorted({key for group in siblings for key in group.settings})
    differing = [key for key in keys
                 if len({_settings_key({"v": g.settings.get(key, _ABSENT)}) for g in siblings}) > 1]
    for group in siblings:
        if not group.settings:
            group.variant = "configuration not recorded"
            continue
        shown = [f"{key}={_shown(group.settings.get(key, _ABSENT))}" for key in differing[:SHOWN_KEYS]]
        more = len(differing) - SHOWN_KEYS
        group.variant = ", ".join(shown + ([f"+{more} more"] if more > 0 else []))
    if len({group.variant for group in siblings}) < len(siblings):  # they differ beyond those shown
        for group in siblings:
            group.variant += f", config {group.slug.rsplit('-', 1)[-1]}"


def _shown(value) -> str:
    text = one_line(value if isinstance(value, str) else json.dumps(value, default=str))
    return text if len(text) <= 40 else text[:37] + "..."


