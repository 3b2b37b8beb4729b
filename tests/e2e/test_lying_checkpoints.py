"""Checkpoints that load safely but lie (issue 28): each is treated as damaged, with a warning
naming what is wrong, and the run resumes from the intact checkpoint before it, to the very
results of the run that made them; a run folder whose checkpoints are gone is not started
over silently. Through the real `mgrb resume` entry point on a short digits run."""

import copy
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mgrb.store.runfolder import RunFolder

ROOT = Path(__file__).parents[2]
SHORT = ["--set", "train.epochs=1", "--set", "train.stage2_epochs=1",
         "--set", "train.checkpoint_every=1"]


def _mgrb(*words) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mgrb", *words], cwd=ROOT, capture_output=True,
                          text=True, timeout=600)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished short run; its results.json aside, as if it were killed just before writing
    them: its last checkpoint holds every phase's evaluation."""
    out = tmp_path_factory.mktemp("lying") / "run"
    done = _mgrb("run", "digits_5_1", "--device", "cpu", "--out", str(out), "--quiet", *SHORT)
    assert done.returncode == 0, done.stderr
    results = json.loads((out / "results.json").read_text())
    (out / "results.json").unlink()
    return out, results


def _copy(finished, tmp_path) -> Path:
    folder = tmp_path / "run"
    shutil.copytree(finished[0], folder)
    return folder


def _latest(folder: Path) -> dict:
    return RunFolder(folder).load_checkpoint(warn=lambda message: None)


def _lie(state: dict, how: str) -> dict:
    state = copy.deepcopy(state)
    if how == "phase_not_a_number":
        state["phase"] = "x"
    elif how == "no_generator":
        del state["generator"]
    elif how == "wrong_shape":
        name = next(key for key in state["model"] if key.endswith("conv1.weight"))
        state["model"][name] = torch.zeros(3, 3)
    elif how == "stride_0_rng":
        state["torch_rng"] = torch.zeros(1, dtype=torch.uint8).expand(state["torch_rng"].numel())
    elif how == "made_up_results":
        for entry in state["phase_results"]:
            entry.update(top1=99.9, top5=99.9)
    return state


@pytest.mark.parametrize("how, named", [
    ("phase_not_a_number", "phase 'x'"), ("no_generator", "generator is not"),
    ("wrong_shape", "conv1.weight is (3, 3)"), ("stride_0_rng", "torch_rng is not"),
    ("made_up_results", "resuming would report numbers nothing here trained"),
])
def test_a_lying_latest_checkpoint_falls_back_to_the_one_before(finished, tmp_path, how, named):
    folder = _copy(finished, tmp_path)
    RunFolder(folder).save_checkpoint(_lie(_latest(folder), how))  # the intact one -> previous.pt
    done = _mgrb("resume", str(folder), "--quiet")
    assert done.returncode == 0, done.stderr
    assert "latest.pt cannot be resumed from" in done.stderr and named in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    results = json.loads((folder / "results.json").read_text())
    assert (results["avg_top1"], results["last_top1"]) == \
        (finished[1]["avg_top1"], finished[1]["last_top1"])


def test_a_latest_checkpoint_that_is_a_folder_falls_back_too(finished, tmp_path):
    folder = _copy(finished, tmp_path)
    checkpoints = folder / "checkpoints"
    (checkpoints / "latest.pt").replace(checkpoints / "previous.pt")
    (checkpoints / "latest.pt").mkdir()
    done = _mgrb("resume", str(folder), "--quiet")
    assert done.returncode == 0, done.stderr
    assert "latest.pt: is not a regular file" in done.stderr and "internal error" not in done.stderr
    assert json.loads((folder / "results.json").read_text())["avg_top1"] == finished[1]["avg_top1"]


def test_checkpoints_gone_is_not_a_silent_start_from_phase_1(finished, tmp_path):
    folder = _copy(finished, tmp_path)
    shutil.rmtree(folder / "checkpoints")
    events = (folder / "events.jsonl").read_text()
    done = _mgrb("resume", str(folder), "--quiet")
    assert done.returncode == 2, done.stderr
    assert "holds no checkpoint (deleted or moved?)" in done.stderr and "--restart" in done.stderr
    assert (folder / "events.jsonl").read_text() == events  # nothing changed
    assert not (folder / "results.json").exists()


@pytest.mark.parametrize("name, kind, said", [
    ("failed.json", "folder", "failed.json: cannot be removed (Is a directory)"),
    ("config.yaml", "folder", "config.yaml: is not a regular file"),
    ("config.yaml", "fifo", "config.yaml: is not a regular file"),
    ("run.lock", "folder", "run.lock: cannot be written (Is a directory)"),
    ("run.lock", "fifo", "run.lock: is not a regular file (a FIFO or device)"),
])
def test_a_run_file_that_is_a_folder_or_a_fifo_gets_one_message(finished, tmp_path, name, kind,
                                                                  said):
    """Within seconds, exit 2 and one line naming the file: not an internal error, not a hang."""
    import os

    folder = _copy(finished, tmp_path)
    target = folder / name
    if target.exists():
        target.unlink()
    target.mkdir() if kind == "folder" else os.mkfifo(target)
    done = subprocess.run([sys.executable, "-m", "mgrb", "resume", str(folder), "--quiet"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and said in done.stderr, done.stderr
    assert "internal error" not in done.stderr and not (folder / "results.json").exists()
