"""The `mgrb run` and `mgrb resume` command lines: the one place that spells their options, so
that an option added here reaches every caller (the resume hint, `mgrb reproduce`'s children,
the workers of `--nproc`, the launcher's local and Docker runs)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

NPROC = "--nproc"


@dataclass(frozen=True)
class RunLine:
    """What an `mgrb run`/`resume` command says; None or the default leaves an option out."""

    target: str                      # experiment name or file; for resume, the run folder
    program: tuple[str, ...] = ("mgrb",)  # or (python, "-m", "mgrb.cli")
    verb: str = "run"
    experiments_dir: Path | str | None = None
    sets: tuple[str, ...] = ()       # --set KEY=VALUE items
    out: Path | str | None = None
    device: str | None = None
    seed: int | None = None
    nproc: int = 1                   # one process: no option
    restart: bool = False
    quiet: bool = False
    extra: tuple[str, ...] = ()      # passed through last, as given


def run_words(line: RunLine) -> list[str]:
    """The argument list of `line`, program first."""
    # --experiments-dir is an option of `mgrb` itself, so it precedes the verb
    words = [*line.program]
    words += ["--experiments-dir", str(line.experiments_dir)] if line.experiments_dir is not None else []
    words += [line.verb, str(line.target)]
    for item in line.sets:
        words += ["--set", item]
    words += ["--out", str(line.out)] if line.out is not None else []
    words += ["--device", line.device] if line.device is not None else []
    words += ["--seed", str(line.seed)] if line.seed is not None else []
    words += [NPROC, str(line.nproc)] if line.nproc > 1 else []
    words += ["--restart"] if line.restart else []
    words += ["--quiet"] if line.quiet else []
    return words + list(line.extra)


def without_nproc(argv: list[str]) -> list[str]:
    """`argv` less its --nproc option (both `--nproc N` and `--nproc=N`)."""
    kept, skip = [], False
    for word in argv:
        if skip:
            skip = False
        elif word == NPROC:
            skip = True
        elif not word.startswith(f"{NPROC}="):
            kept.append(word)
    return kept
