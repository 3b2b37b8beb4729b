"""`mgrb reproduce` runs every experiment in a process of its own: a run that runs out of
memory or crashes is reported with its message and the next one still runs; a stop reaches
the running child, which checkpoints, and ends the batch."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from artifact_helpers import wait_for
from mgrb.cli import main
from mgrb.store import contracts
from mgrb.store.runfolder import RunFolder

FAULTS = Path(__file__).parents[1] / "faults"
TINY = """\
name: {name}
dataset: {{name: digits}}
protocol: {{initial: 8, increment: 1, memory_total: 200}}
train: {{epochs: {epochs}, milestones: [], stage2_epochs: 1, batch_size: 64, checkpoint_every: 1,
         log_every: 2}}
hierarchy: {{kind: vis, clusters: 2}}
"""


def _experiments(root: Path, names, epochs=1) -> Path:
    folder = root / "experiments"
    folder.mkdir()
    for name in names:
        (folder / f"{name}.yaml").write_text(TINY.format(name=name, epochs=epochs))
    return folder


def test_an_oom_and_a_crash_do_not_stop_the_next_run(tmp_path, monkeypatch, capsys):
    experiments = _experiments(tmp_path, ("a_oom", "b_crash", "c_fine"))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(FAULTS), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv("MGRB_TEST_FAULTS", "a_oom=oom,b_crash=crash")
    code = main(["--experiments-dir", str(experiments), "reproduce", "--runs-dir",
                 str(tmp_path / "runs"), "--reports-dir", str(tmp_path / "reports"),
                 "--device", "cpu", "--quiet"])
    out, err = capsys.readouterr()
    assert code == 1
    assert (tmp_path / "runs" / "c_fine" / "results.json").exists()
    for name in ("a_oom", "b_crash"):
        assert not (tmp_path / "runs" / name / "results.json").exists()
    # an error leaves through the trainer, which waits for the checkpoint in writing; an abort
    # may strike while phase 1's is still being written, leaving phase 0's end
    assert RunFolder(tmp_path / "runs" / "a_oom").load_checkpoint(print)["phase"] == 1
    assert RunFolder(tmp_path / "runs" / "b_crash").load_checkpoint(print)["phase"] in (0, 1)
    report = (tmp_path / "reports" / "reproduction.md").read_text()
    assert "**a_oom** failed: the device ran out of memory (CUDA out of memory." in report
    assert "**b_crash** failed: the run's process was killed by SIGABRT" in report
    assert "| c_fine | digits |" in report
    assert "a_oom: FAILED: the device ran out of memory" in out
    assert "Traceback" not in err

    # The OOM left its message in the folder; the crash could not, and is "not finished"
    record = contracts.read("failed", tmp_path / "runs" / "a_oom" / "failed.json")
    assert record["message"].startswith("the device ran out of memory")
    assert not (tmp_path / "runs" / "b_crash" / "failed.json").exists()
    runs = sorted(str(path) for path in (tmp_path / "runs").iterdir())
    assert main(["check", *runs]) == 0  # unfinished runs are rows, not the end of the command
    lines = capsys.readouterr().out.splitlines()
    assert any(line.startswith(runs[0]) and "failed: the device ran out of memory" in line
               for line in lines)
    assert any(line.startswith(runs[1]) and "not finished" in line for line in lines)
    assert any(line.startswith("c_fine ") and "no reference" in line for line in lines)

    # Once the cause is gone, the same command resumes both, and the record goes with success
    monkeypatch.delenv("MGRB_TEST_FAULTS")
    assert main(["--experiments-dir", str(experiments), "reproduce", "--runs-dir",
                 str(tmp_path / "runs"), "--reports-dir", str(tmp_path / "reports"),
                 "--device", "cpu", "--quiet"]) == 0
    assert not (tmp_path / "runs" / "a_oom" / "failed.json").exists()
    report = (tmp_path / "reports" / "reproduction.md").read_text()
    assert all(f"| {name} | digits |" in report for name in ("a_oom", "b_crash", "c_fine"))
    assert "## Not reproduced here" not in report


def test_a_stop_reaches_the_running_child_which_checkpoints(tmp_path):
    experiments = _experiments(tmp_path, ("first", "second"), epochs=200)
    parent = subprocess.Popen(
        [sys.executable, "-m", "mgrb.cli", "--experiments-dir", str(experiments), "reproduce",
         "--runs-dir", str(tmp_path / "runs"), "--reports-dir", str(tmp_path / "reports"),
         "--device", "cpu"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    events = tmp_path / "runs" / "first" / "events.jsonl"
    wait_for(lambda: events.exists() and '"iteration"' in events.read_text())
    # the parent alone: the child has a process group of its own and hears it from the parent
    parent.send_signal(signal.SIGINT)
    _, err = parent.communicate(timeout=120)
    assert parent.returncode == 130, err
    assert "finished runs are skipped and the interrupted one resumes" in err
    state = RunFolder(tmp_path / "runs" / "first").load_checkpoint(print)
    assert state["stage"] == "stage1" and state["iteration"] > 0  # saved at the batch it was on
    last = json.loads(events.read_text().splitlines()[-1])
    assert last["event"] == "checkpoint"
    assert not (tmp_path / "runs" / "second").exists()
