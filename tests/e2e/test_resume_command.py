"""`mgrb resume RUN_DIR` continues a run from the folder's own config.yaml, overrides included."""

import json
import signal
import subprocess
import sys
import time

TINY = """\
name: tiny
dataset: {name: digits}
protocol: {initial: 8, increment: 1, memory_total: 200}
train: {epochs: 2, milestones: [1], stage2_epochs: 2, batch_size: 64, checkpoint_every: 1}
method: {losses: ce+distill}
hierarchy: {kind: none}
"""


def _mgrb(*args, **kwargs):
    return subprocess.run([sys.executable, "-m", "mgrb", *args], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=600, **kwargs)


def test_a_run_stopped_with_overrides_resumes_without_retyping_them(tmp_path):
    experiment = tmp_path / "tiny.yaml"
    experiment.write_text(TINY)
    out = tmp_path / "run"
    process = subprocess.Popen(
        [sys.executable, "-m", "mgrb", "run", str(experiment), "--out", str(out),
         "--set", "train.epochs=3", "--set", "train.log_every=1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    events = out / "events.jsonl"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and not (events.exists() and '"epoch"' in events.read_text()):
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err

    # Without the overrides, the experiment file is another configuration: refused, and the
    # message names the command that continues this folder.
    refused = _mgrb("run", str(experiment), "--out", str(out))
    assert refused.returncode == 2 and f"mgrb resume {out}" in refused.stderr

    resumed = _mgrb("resume", str(out))
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming in phase 1," in resumed.stderr
    results = json.loads((out / "results.json").read_text())
    assert results["config"]["train"]["epochs"] == 3 and results["config"]["train"]["log_every"] == 1
    kinds = [json.loads(line)["event"] for line in events.read_text().splitlines()]
    assert kinds.count("started") == 1 and kinds.count("resumed") == 1


def test_resume_of_a_folder_that_is_not_a_run_says_so(tmp_path):
    result = _mgrb("resume", str(tmp_path))
    assert result.returncode == 2
    assert "not a run folder" in result.stderr and "Traceback" not in result.stderr


def test_resume_refuses_a_config_yaml_that_is_not_a_valid_experiment(tmp_path):
    (tmp_path / "config.yaml").write_text("name: x\ndataset: {name: digits}\nprotocol: {initial: 5, "
                                          "increment: 1}\ntrain: {epochs: -4}\n")
    result = _mgrb("resume", str(tmp_path))
    assert result.returncode == 2
    assert "config.yaml: train.epochs: must be at least 1" in result.stderr
