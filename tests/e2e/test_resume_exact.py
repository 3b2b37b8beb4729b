"""Kill a real run at several points; the resumed run's results equal an uninterrupted run's."""

import json
import random
import signal
import subprocess
import sys
import time

import pytest

from mgrb.cli import main
from mgrb.store.runfolder import RunFolder

EXPERIMENT = """\
name: exact
dataset: {name: digits}
protocol: {initial: 8, increment: 1, memory_total: 200}
train:
  epochs: 2
  milestones: [1]
  stage2_epochs: 3
  batch_size: 16
  checkpoint_every: 1
  deterministic: true
  log_every: 3
  augment: {crop_padding: 1, flip: false, rotation: 10}
method: {losses: ce+distill+hierloss, beta: 20, scale: 0.5}
hierarchy: {kind: vis, clusters: 2}
"""


def _results(folder):
    results = json.loads((folder / "results.json").read_text())
    return [(p["top1"], p["top5"], p["per_class_top1"]) for p in results["phases"]]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("exact")
    path = root / "exact.yaml"
    path.write_text(EXPERIMENT)
    # A subprocess, like the killed runs: deterministic mode is process-wide in torch.
    subprocess.run([sys.executable, "-m", "mgrb.cli", "run", str(path), "--out",
                    str(root / "reference"), "--quiet"], check=True, capture_output=True)
    return path, _results(root / "reference")


def _start_and_stop(path, out, marker: str, sig) -> subprocess.Popen:
    process = subprocess.Popen([sys.executable, "-m", "mgrb.cli", "run", str(path), "--out",
                                str(out), "--quiet"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    events = out / "events.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if events.exists() and marker in events.read_text():
            break
        time.sleep(0.02)
    assert process.poll() is None, "the run ended before it could be stopped"
    process.send_signal(sig)
    process.communicate(timeout=120)
    return process


def test_sigterm_mid_epoch_saves_a_checkpoint_there_and_resumes_exactly(setup, tmp_path):
    path, reference = setup
    out = tmp_path / "run"
    process = _start_and_stop(path, out, '"event": "iteration", "phase": 1', signal.SIGTERM)
    assert process.returncode == 130
    state = RunFolder(out).load_checkpoint(print)
    assert state["stage"] == "stage1" and state["iteration"] > 0  # saved mid-epoch
    assert main(["run", str(path), "--out", str(out), "--quiet"]) == 0
    assert _results(out) == reference


def test_sigkill_during_stage_2_resumes_exactly(setup, tmp_path):
    path, reference = setup
    out = tmp_path / "run"
    marker = '"phase": 1, "stage": "stage2", "epoch": 1'
    assert _start_and_stop(path, out, marker, signal.SIGKILL).returncode == -signal.SIGKILL
    assert not (out / "results.json").exists()
    assert main(["run", str(path), "--out", str(out), "--quiet"]) == 0
    assert _results(out) == reference


def test_a_checkpoint_write_cut_short_is_ignored(setup, tmp_path, capsys):
    path, reference = setup
    out = tmp_path / "run"
    _start_and_stop(path, out, '"phase": 1, "stage": "stage1", "epoch": 1', signal.SIGKILL)
    # what a kill in the middle of writing leaves: a partial temporary and a damaged file
    (out / "checkpoints" / ".latest.pt.new.12345.tmp").write_bytes(b"partial")
    (out / "checkpoints" / "latest.pt.new").write_bytes(b"0" * 64 + b"\ntruncated")
    assert main(["run", str(path), "--out", str(out)]) == 0
    assert "latest.pt.new is damaged (checksum mismatch" in capsys.readouterr().err
    assert _results(out) == reference


def test_sigkill_at_random_moments_with_checkpoints_every_few_batches_resumes_exactly(setup,
                                                                                    tmp_path):
    """train.checkpoint_minutes makes the background writer save mid-epoch every few batches;
    killed with SIGKILL at random moments (seeded), again and again, the run resumes from
    whatever the kill left and ends with the uninterrupted run's results."""
    path, reference = setup
    out = tmp_path / "run"
    command = [sys.executable, "-m", "mgrb.cli", "run", str(path), "--out", str(out), "--quiet",
               "--set", "train.checkpoint_minutes=0.0005"]  # every 30 ms: most batches
    chooser = random.Random(7)
    kills = 0
    for _ in range(8):
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        events = out / "events.jsonl"
        before = events.read_text().count("\n") if events.exists() else 0
        deadline = time.monotonic() + 120  # until this attempt has trained a little and
        while process.poll() is None and time.monotonic() < deadline and not (  # a checkpoint
                events.exists() and events.read_text().count("\n") > before + 1  # exists
                and '"checkpoint"' in events.read_text()):
            time.sleep(0.01)
        time.sleep(chooser.uniform(0, 0.5))
        if process.poll() is not None:
            break
        process.kill()
        process.wait()
        kills += 1
        assert RunFolder(out).load_checkpoint(print) is not None
    assert kills >= 3
    assert main(["run", str(path), "--out", str(out), "--quiet"]) == 0
    assert _results(out) == reference
    text = (out / "events.jsonl").read_text()
    assert text.count('"resumed"') >= kills
    mid_epoch = [json.loads(line) for line in text.splitlines() if '"checkpoint"' in line]
    assert any(e["stage"] == "stage1" and e["iteration"] > 0 for e in mid_epoch)
