"""One run of one experiment, start to finish: what `mgrb run` does for each seed, and what
`mgrb reproduce` runs in a process of its own for each (pipeline/isolated.py)."""

from __future__ import annotations

import sys
from pathlib import Path

from mgrb.config.schema import ABSENT_MEANS
from mgrb.errors import MGRBError, PeerLost
from mgrb.store.runfolder import DamagedCheckpoints, RunFolder


def format_phase_table(results: dict) -> str:
    lines = [f"{'phase':>5} {'classes':>7} {'top-1':>7} {'top-5':>7} {'old':>7} {'new':>7}"]
    for phase in results["phases"]:
        old = "-" if phase.get("old_top1") is None else f"{phase['old_top1']:.2f}"
        top5 = "-" if phase.get("top5") is None else f"{phase['top5']:.2f}"
        new = "-" if phase.get("new_top1") is None else f"{phase['new_top1']:.2f}"
        lines.append(f"{phase['phase'] + 1:>5} {phase['seen_classes']:>7} {phase['top1']:>7.2f} "
                     f"{top5:>7} {old:>7} {new:>7}")
    lines.append(f"average incremental top-1 {results['avg_top1']:.2f}   "
                 f"last top-1 {results['last_top1']:.2f}   "
                 f"({results.get('wall_time_s', 0):.0f} s on {results.get('device', '?')})")
    return "\n".join(lines)


def run_experiment(run, path: Path, device, progress, *, restart: bool, again: str,
                   group=None) -> int:
    """Train `run` (a PlannedRun) into its folder, or show its results when it has finished.

    0 when finished, 130 when stopped with a checkpoint (`again` is the command that resumes
    it); MGRBError for what the user can fix. Nothing already saved is lost on any path.
    `group` (training/distributed.py): in a run over several processes, rank 0 does all of
    this; the others train beside it and write nothing."""
    if group is not None and not group.leader:
        return _follow(run, device, group)
    folder = RunFolder(run.folder)
    folder.prepare(run.config.to_dict(), absent_means=ABSENT_MEANS)
    results = folder.finished_results()
    if group is not None:
        group.broadcast(results is not None)  # the others train only when this one does
    if results is not None:
        print(f"{folder.path} already holds a finished run; nothing to do.\n"
              f"{format_phase_table(results)}")
        return 0
    folder.restart_if_damaged = restart
    folder.acquire_lock()  # before anything below: a folder in use by another trainer is not ours
    try:
        folder.clear_failure()
        processes = f" in {group.world} processes" if group is not None and group.several else ""
        progress.message(f"experiment {run.experiment} ({path}), seed {run.seed}, on {device}"
                         f"{processes}, run folder {folder.path}")
        results = _train_recording_failure(run, folder, device, progress, again, group)
    finally:
        folder.release_lock()
    if results is None:
        return 130
    print(format_phase_table(results))
    print(f"results: {folder.results_path}")
    return 0


def _follow(run, device, group) -> int:
    """Rank 1 and above: train beside rank 0 on what it decides (finished already, the
    checkpoint to resume from), writing nothing."""
    from mgrb.training.distributed import SilentRun

    if group.broadcast(None):
        return 0
    results = _train(run, SilentRun(run.folder), device, progress=None, again="", group=group)
    return 130 if results is None else 0


def _train_recording_failure(run, folder: RunFolder, device, progress, again: str,
                             group=None) -> dict | None:
    """_train, leaving failed.json with the message when the run ends in an error, so that a
    reader does not take the folder for a run still under way or merely stopped."""
    try:
        try:
            return _train(run, folder, device, progress, again, group)
        except DamagedCheckpoints as error:
            if (group is not None and group.several) or not _agreed_to_start_over(error):
                raise
            folder.restart_if_damaged = True
            return _train(run, folder, device, progress, again, group)
    except MGRBError as error:
        _record(folder, str(error), type(error).__name__)
        raise
    except Exception as error:  # an unexpected fault: cli.main reports it as an internal error
        _record(folder, f"internal error: {type(error).__name__}: {error}", type(error).__name__)
        raise


def _record(folder: RunFolder, message: str, kind: str) -> None:
    try:
        folder.record_failure(message, kind)
    except MGRBError:  # the disk that failed the run may fail this too; the error in hand matters more
        pass


def _train(run, folder: RunFolder, device, progress, again: str, group=None) -> dict | None:
    """The run's results, or None when it was stopped (a checkpoint is saved)."""
    import torch

    from mgrb.training.trainer import Interrupted, Trainer

    try:
        return Trainer(run.config, folder, device, progress, group).train()
    except torch.OutOfMemoryError as error:
        raise MGRBError(
            f"the device ran out of memory ({str(error).splitlines()[0][:120]}). Lower the "
            "batch size (--set train.batch_size=64; this changes the experiment, so use a new "
            "--out), or run fewer runs on this GPU at once. The run folder keeps its last "
            "checkpoint: once memory is free, the same command resumes it.") from None
    except RuntimeError as error:
        from mgrb.training.distributed import peer_lost

        if group is not None and group.several and peer_lost(error):
            raise PeerLost("another process of this run ended, so this one stopped too (the "
                           "other's error says why); the last checkpoint remains") from None
        raise
    except (Interrupted, KeyboardInterrupt) as stop:
        where = str(stop) or "stopped at once; the last periodic checkpoint remains"
        if not again:  # a process beside rank 0, which says this once
            return None
        print(f"\ninterrupted: {where}. Run the same command again to resume:\n  {again}",
              file=sys.stderr)
        return None


def _agreed_to_start_over(error) -> bool:
    """Asked only at a terminal; a launcher or a batch job gets the error and its advice."""
    if not (sys.stdin.isatty() and sys.stderr.isatty()):
        return False
    print(f"mgrb: {error}", file=sys.stderr)
    try:
        answer = input("Start this run over from the beginning now? [y/N] ")
    except EOFError:
        return False
    return answer.strip().lower() in ("y", "yes")
