"""What every key does and what the statuses mean."""
# ruff: noqa: E501 (a Markdown table)

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Markdown

from artifact.core.runs import (ABOVE, BELOW, BROKEN, CANCELLED, FAILED, FINISHED, INTERRUPTED,
                                KILLED, NO_REFERENCE, NOT_RUN, QUEUED, REPRODUCED, RUNNING,
                                SLURM_PENDING, SLURM_RUNNING, SLURM_UNKNOWN, STALLED)

HELP = f"""\
# MGRB artifact launcher

Pick experiments, launch them, watch them train, and see whether each final accuracy lands
inside the range the paper reports.

| key | where | does |
|---|---|---|
| type letters, or `/` | experiments | filter the table (name, data set, protocol, hierarchy) |
| `↓` or `enter` | filter box | back to the table, filtered (then `enter` opens the monitor) |
| `escape` | filter box | clear the filter |
| `space` | experiments | select / unselect the experiment under the cursor |
| `enter` | experiments | open the run monitor |
| `ctrl+l` | experiments, monitor | launch the selected (or the highlighted) experiments; a stopped run resumes |
| `ctrl+t` | experiments, monitor | stop: the run saves a checkpoint at the current batch and exits |
| `ctrl+k` | monitor | kill at once (the last periodic checkpoint remains) |
| `ctrl+r` | experiments, monitor | results: per phase, and the verdict against the paper |
| `ctrl+e` | experiments, results | write the reproduction report for the chosen finished runs |
| `ctrl+o` | experiments | settings: local or Docker (checked: a Docker daemon must answer), GPUs, runs per GPU, stall time |
| `ctrl+d` | anywhere | dark / light colours |
| `?` or `f1` | anywhere | this help |
| `escape` | anywhere | back |
| `ctrl+q` | anywhere | quit: runs keep training, and reopening shows them again |

The mouse works too: click rows, and the keys in the footer.

**Statuses.** *{NOT_RUN}*; *{QUEUED}* (waiting for a free GPU slot); *{RUNNING}*; *{STALLED}* (no
training events for the time set in settings); *{FINISHED}* with the verdict of `mgrb check`:
*{REPRODUCED}* (inside reported ± tolerance), *{ABOVE}*, *{BELOW}* or *{NO_REFERENCE}*; *{FAILED}*
(the trainer's error is shown); *{INTERRUPTED}* (stopped with a checkpoint: launch to resume);
*{KILLED}* (ended from outside: launch to resume from the last checkpoint); *{BROKEN}* (a file of
the run folder is damaged or was made elsewhere: the detail names the file and the field).
A run submitted with `mgrb reproduce --executor slurm` shows its Slurm job's state: *{SLURM_PENDING}*,
*{SLURM_RUNNING}* (perhaps on another node), *{SLURM_UNKNOWN}* (squeue could not be asked) and
*{CANCELLED}*; the first three are not launched here.

The launcher stops only a process it can prove is the run's (the one it started, or the
trainer holding the run's lock on this machine); otherwise it says why it cannot.

Runs are separate processes (`mgrb run`), writing to `runs/<experiment>/`; the launcher only
reads those folders, so it can be closed and reopened at any time.
"""


class HelpScreen(ModalScreen):
    BINDINGS = [Binding("escape", "app.pop_screen", "Close"),
                Binding("question_mark", "app.pop_screen", "Close", show=False)]

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help-box"):
            yield Markdown(HELP)
