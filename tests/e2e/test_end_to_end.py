"""The real entry point on the offline digits data: train, resume, refuse bad input."""

import json
import math
import os
import signal
import subprocess
import sys
import time

import pytest

from mgrb.cli import main

ROOT = __import__("pathlib").Path(__file__).resolve().parents[2]

TINY = """\
name: tiny
dataset: {name: digits}
protocol: {initial: 8, increment: 1, memory_total: 200}
train:
  epochs: 2
  milestones: [1]
  stage2_epochs: 2
  batch_size: 64
  checkpoint_every: 1
  log_every: 5
method: {losses: ce+distill+hierloss, beta: 20, scale: 0.5}
hierarchy: {kind: vis, clusters: 2}
"""


@pytest.fixture
def experiment(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY)
    return path


def _run(args, capsys):
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


def test_run_writes_a_complete_run_folder(experiment, tmp_path, capsys):
    out_dir = tmp_path / "run"
    code, out, _ = _run(["run", str(experiment), "--out", str(out_dir), "--device", "cpu"], capsys)
    assert code == 0
    results = json.loads((out_dir / "results.json").read_text())
    assert results["experiment"] == "tiny"
    assert [p["seen_classes"] for p in results["phases"]] == [8, 9, 10]
    for phase in results["phases"]:
        assert 0 <= phase["top1"] <= phase["top5"] <= 100
        assert len(phase["per_class_top1"]) == phase["seen_classes"]
    top1 = [p["top1"] for p in results["phases"]]
    assert results["avg_top1"] == pytest.approx(sum(top1) / 3, abs=1e-3)
    assert results["last_top1"] == top1[-1]
    assert results["phases"][0]["old_top1"] is None and results["phases"][1]["old_top1"] is not None
    assert results["phases"][0]["hierarchy"] == {"kind": "none"}
    assert results["phases"][1]["hierarchy"]["kind"] == "vis"
    assert results["phases"][2]["hierarchy"]["clusters"] == 2
    assert results["seed"] == 1993 and results["wall_time_s"] > 0
    assert results["class_order"] == [4, 2, 7, 6, 0, 3, 5, 8, 9, 1]
    assert {"torch", "numpy", "scikit-learn", "nltk"} <= set(results["versions"])
    assert "git_commit" in results and results["device"].startswith("CPU")
    events = [json.loads(line) for line in (out_dir / "events.jsonl").read_text().splitlines()]
    kinds = {e["event"] for e in events}
    assert {"started", "epoch", "iteration", "eval", "checkpoint", "finished"} <= kinds
    stage2 = [e for e in events if e["event"] == "epoch" and e["stage"] == "stage2"]
    assert {e["phase"] for e in stage2} == {1, 2}  # stage 2 runs in every phase after the first
    epoch = next(e for e in events if e["event"] == "epoch")
    assert {"phase", "stage", "epoch", "iteration", "losses", "lr", "images_per_s"} <= set(epoch)
    assert "average incremental top-1" in out
    assert not (out_dir / "run.lock").exists()


def test_the_bf16_fast_mode_and_channels_last_train_on_the_cpu_too(experiment, tmp_path,
                                                                   capsys):
    """No GPU here: the bf16 fast mode and the channels-last layout a GPU run takes, forced on
    the CPU, through the whole protocol; the run records what it used."""
    out_dir = tmp_path / "run"
    code, _, err = _run(["run", str(experiment), "--out", str(out_dir), "--device", "cpu",
                         "--set", "train.precision=bf16", "--set", "train.channels_last=true"],
                        capsys)
    assert code == 0, err
    results = json.loads((out_dir / "results.json").read_text())
    assert results["numerics"] == {
        "precision": "bf16", "precision_choice": "set: bf16", "autocast": "bfloat16, backbone only",
        "logits_and_losses": "float32", "tf32": False, "channels_last": True, "compile": False,
        "compile_choice": "auto: off on the CPU", "deterministic": False,
        "cudnn_benchmark": False, "optimizer": "AdamW"}
    assert results["compile"] == {"enabled": False} and results["device_uuid"] is None
    events = [json.loads(line) for line in (out_dir / "events.jsonl").read_text().splitlines()]
    assert events[0]["numerics"]["precision"] == "bf16"
    losses = [v for e in events if e["event"] == "epoch" for v in e["losses"].values()]
    assert losses and all(math.isfinite(v) for v in losses)
    assert results["phases"][0]["top1"] > 30  # 8 classes: chance is 12.5; fp32 reaches 45


def test_a_finished_run_is_not_run_again(experiment, tmp_path, capsys):
    out_dir = tmp_path / "run"
    assert _run(["run", str(experiment), "--out", str(out_dir), "--quiet"], capsys)[0] == 0
    before = (out_dir / "results.json").stat().st_mtime_ns
    code, out, _ = _run(["run", str(experiment), "--out", str(out_dir)], capsys)
    assert code == 0 and "already holds a finished run" in out
    assert (out_dir / "results.json").stat().st_mtime_ns == before


def test_a_killed_run_resumes_and_matches_an_uninterrupted_one(experiment, tmp_path, capsys):
    reference = tmp_path / "reference"
    assert _run(["run", str(experiment), "--out", str(reference), "--quiet"], capsys)[0] == 0
    killed = tmp_path / "killed"
    command = [sys.executable, "-m", "mgrb.cli", "run", str(experiment), "--out", str(killed),
               "--quiet"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    events = killed / "events.jsonl"
    deadline = time.monotonic() + 120
    try:  # kill it once phase 2 has checkpointed its first epoch
        while time.monotonic() < deadline and process.poll() is None:
            if events.exists() and '"phase": 1, "stage": "stage1", "epoch": 1' in events.read_text():
                break
            time.sleep(0.05)
        assert process.poll() is None, "the run ended before it could be killed"
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    assert not (killed / "results.json").exists()
    code, _, err = _run(["run", str(experiment), "--out", str(killed)], capsys)
    assert code == 0
    assert "resuming in phase 2," in err or "resuming at the start of phase 2" in err
    resumed = json.loads((killed / "results.json").read_text())
    expected = json.loads((reference / "results.json").read_text())
    assert [p["top1"] for p in resumed["phases"]] == [p["top1"] for p in expected["phases"]]


def test_a_live_lock_refuses_a_second_trainer(experiment, tmp_path, capsys):
    out_dir = tmp_path / "run"
    out_dir.mkdir()
    (out_dir / "run.lock").write_text(json.dumps({"pid": os.getpid(), "host": os.uname().nodename}))
    code, _, err = _run(["run", str(experiment), "--out", str(out_dir)], capsys)
    assert code == 2 and f"in use by process {os.getpid()}" in err


def test_a_stale_lock_is_taken_over(experiment, tmp_path, capsys):
    out_dir = tmp_path / "run"
    out_dir.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (out_dir / "run.lock").write_text(json.dumps({"pid": dead.pid, "host": os.uname().nodename}))
    assert _run(["run", str(experiment), "--out", str(out_dir), "--quiet"], capsys)[0] == 0


def test_a_changed_experiment_does_not_resume_into_an_old_folder(experiment, tmp_path, capsys):
    out_dir = tmp_path / "run"
    assert _run(["run", str(experiment), "--out", str(out_dir), "--quiet"], capsys)[0] == 0
    code, _, err = _run(["run", str(experiment), "--out", str(out_dir), "--set",
                         "method.beta=50"], capsys)
    assert code == 2 and "different configuration (differs in: method.beta)" in err


@pytest.mark.parametrize("text,message", [
    ("name: x\n  bad: [", "not valid YAML"),
    (TINY.replace("increment: 1", "increment: 3"), "protocol: impossible for digits"),
    (TINY + "colour: red\n", "colour: unknown key"),
])
def test_bad_experiment_files_exit_2_without_traceback(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    result = subprocess.run([sys.executable, "-m", "mgrb.cli", "run", str(path), "--out",
                             str(tmp_path / "r")], capture_output=True, text=True)
    assert result.returncode == 2
    assert message in result.stderr and str(path) in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "r" / "results.json").exists()


def test_missing_data_set_names_the_layout(tmp_path, capsys):
    (tmp_path / "nodata").mkdir()  # the folder is there, the data set is not
    path = tmp_path / "c10.yaml"
    path.write_text(f"name: c10\ndataset: {{name: cifar10, root: {tmp_path / 'nodata'}, "
                    "download: false}\nprotocol: {initial: 5, increment: 1}\n"
                    "hierarchy: {kind: vis}\n")
    code, _, err = _run(["run", str(path), "--out", str(tmp_path / "r"), "--device", "cpu"],
                        capsys)
    assert code == 2 and "cifar-10-batches-py" in err
    assert not (tmp_path / "r" / "results.json").exists()


def test_list_json_describes_the_experiments(tmp_path, experiment, capsys):
    code, out, _ = _run(["--experiments-dir", str(tmp_path), "list", "--json"], capsys)
    assert code == 0
    (row,) = json.loads(out)
    assert row["name"] == "tiny" and row["dataset"] == "digits" and row["data_present"] is True
    assert (row["initial"], row["increment"], row["hierarchy"]) == (8, 1, "vis")


def test_run_by_name_from_the_experiments_folder(tmp_path, experiment, capsys):
    code, _, _ = _run(["--experiments-dir", str(tmp_path), "run", "tiny", "--out",
                       str(tmp_path / "r"), "--quiet"], capsys)
    assert code == 0 and (tmp_path / "r" / "results.json").exists()


def test_out_of_memory_is_one_clear_message(experiment, tmp_path, capsys, monkeypatch):
    import torch

    from mgrb.training.trainer import Trainer

    def exhausted(self):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(Trainer, "train", exhausted)
    code, _, err = _run(["run", str(experiment), "--out", str(tmp_path / "r")], capsys)
    assert code == 2 and "ran out of memory" in err and "train.batch_size" in err
    assert not (tmp_path / "r" / "run.lock").exists()


def test_sigterm_stops_cleanly_and_says_how_to_resume(experiment, tmp_path):
    out_dir = tmp_path / "run"
    command = [sys.executable, "-m", "mgrb.cli", "run", str(experiment), "--out", str(out_dir),
               "--set", "train.log_every=1"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    events = out_dir / "events.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (events.exists() and '"epoch"' in events.read_text()):
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130
    assert "interrupted" in err and "run the same command again to resume" in err.lower()
    # the hint is the command as typed, --set included, so that it resumes this same run; it
    # starts as this one did (python -m mgrb), so that pasted it runs
    assert f"{sys.executable} -m mgrb run {experiment} --set train.log_every=1 --out {out_dir}" in err
    assert "Traceback" not in err
    assert not (out_dir / "run.lock").exists() and not (out_dir / "results.json").exists()


def test_deterministic_mode_is_recorded_and_torch_settings_are_put_back(experiment, tmp_path,
                                                                        capsys):
    import torch

    out_dir = tmp_path / "run"
    args = ["run", str(experiment), "--out", str(out_dir), "--set", "train.deterministic=true"]
    assert _run(args, capsys)[0] == 0
    assert "deterministic: true" in (out_dir / "config.yaml").read_text()
    assert not torch.are_deterministic_algorithms_enabled()


@pytest.mark.parametrize("how", ["MGRB_DATA", "dataset.root", "mgrb data"])
def test_a_data_folder_that_does_not_exist_is_refused_not_created(tmp_path, how):
    """A mistyped data folder is said to be one (exit 2) before any run folder exists, and is
    never created and filled by a download."""
    missing = tmp_path / "typo" / "cifar"
    env = {**os.environ, "MGRB_DATA": str(missing) if how != "dataset.root" else str(tmp_path)}
    if how == "mgrb data":
        command = ["data", "--no-download"]
    else:
        command = ["run", "c10_vis_5_1", "--device", "cpu", "--out", str(tmp_path / "run")]
        if how == "dataset.root":
            command += ["--set", f"dataset.root={missing}"]
    done = subprocess.run([sys.executable, "-m", "mgrb", *command], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert f"data folder {missing}" in done.stderr and "does not exist" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "typo").exists() and not (tmp_path / "run").exists()
