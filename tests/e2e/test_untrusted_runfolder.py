"""Run folders from elsewhere: a checkpoint never runs code, links are not followed, the lock
has one owner, damaged files stop with one clear message and nothing is lost."""

import hashlib
import io
import json
import multiprocessing
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mgrb.cli import main
from mgrb.errors import MGRBError, RunFolderError
from mgrb.store.processes import boot_id, identity
from mgrb.reporting.report import write_report
from mgrb.store.files import atomic_write
from mgrb.store.runfolder import DamagedCheckpoints, RunFolder
from mgrb.training.trainer import require_finite

FAULTS = Path(__file__).parents[1] / "faults"

TINY = """\
name: tiny
dataset: {name: digits}
protocol: {initial: 8, increment: 2, memory_total: 200}
train: {epochs: 1, milestones: [], stage2_epochs: 1, batch_size: 64, log_every: 2}
method: {losses: ce+distill}
hierarchy: {kind: none}
"""


class Planted:
    """Unpickling this creates `marker`: what an attacker's checkpoint would do."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _with_digest(payload: bytes) -> bytes:
    return hashlib.sha256(payload).hexdigest().encode() + b"\n" + payload


def _pickled(state) -> bytes:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def _folder(tmp_path, name="run"):
    run = RunFolder(tmp_path / name)
    run.prepare({"name": "x"})
    return run


# -- checkpoints ------------------------------------------------------------------------
def test_a_malicious_checkpoint_with_a_valid_digest_is_never_executed(tmp_path):
    run = _folder(tmp_path)
    marker = tmp_path / "executed"
    (run.checkpoints / "latest.pt").write_bytes(
        _with_digest(_pickled({"epoch": 9, "payload": Planted(marker)})))
    warnings = []
    with pytest.raises(DamagedCheckpoints, match="--restart"):
        run.load_checkpoint(warnings.append)
    assert not marker.exists()
    assert "refused without being loaded" in warnings[0]


def test_an_unsafe_latest_falls_back_to_the_previous_checkpoint(tmp_path):
    run = _folder(tmp_path)
    run.save_checkpoint({"epoch": 1, "weights": torch.ones(2)})
    run.save_checkpoint({"epoch": 2, "weights": torch.ones(2)})
    marker = tmp_path / "executed"
    (run.checkpoints / "latest.pt").write_bytes(_with_digest(_pickled(Planted(marker))))
    warnings = []
    assert run.load_checkpoint(warnings.append)["epoch"] == 1
    assert not marker.exists() and len(warnings) == 1


def test_everything_the_trainer_saves_loads_with_weights_only(tmp_path, monkeypatch):
    # every state of a real run: optimizer moments, generators, hierarchy, per-phase results
    states = []
    save = RunFolder.save_checkpoint

    def save_and_reload(self, state):
        states.append(torch.load(io.BytesIO(_pickled(state)), weights_only=True))
        save(self, state)

    monkeypatch.setattr(RunFolder, "save_checkpoint", save_and_reload)
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY.replace("{epochs: 1,", "{epochs: 2, checkpoint_every: 1,"))
    assert main(["run", str(path), "--out", str(tmp_path / "out"), "--quiet"]) == 0
    assert any(state["optimizer"] for state in states)
    assert any(state["teacher"] for state in states) and states[-1]["phase_results"]


def test_a_link_or_device_in_place_of_a_checkpoint_is_not_read(tmp_path):
    run = _folder(tmp_path)
    run.save_checkpoint({"epoch": 1})
    run.save_checkpoint({"epoch": 2})
    (run.checkpoints / "latest.pt").unlink()
    (run.checkpoints / "latest.pt").symlink_to("/dev/zero")
    warnings = []
    assert run.load_checkpoint(warnings.append) == {"epoch": 1}
    assert "symbolic link" in warnings[0]


def test_all_checkpoints_damaged_stops_unless_restart_and_keeps_them(tmp_path):
    run = _folder(tmp_path)
    for name in ("latest.pt", "previous.pt"):
        (run.checkpoints / name).write_bytes(b"0" * 64 + b"\nnot a checkpoint")
    warnings = []
    with pytest.raises(DamagedCheckpoints):
        run.load_checkpoint(warnings.append)
    assert len(warnings) == 2 and (run.checkpoints / "latest.pt").exists()
    run.restart_if_damaged = True
    assert run.load_checkpoint(warnings.append) is None
    assert sorted(p.name for p in run.checkpoints.iterdir()) == ["latest.pt.damaged",
                                                                "previous.pt.damaged"]


def test_mgrb_run_on_damaged_checkpoints_asks_for_restart_and_quiet_keeps_warnings(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY)
    out = tmp_path / "out"
    run = RunFolder(out)
    from mgrb.config.experiment import load_config
    run.prepare(load_config(path).to_dict())
    (run.checkpoints / "latest.pt").write_bytes(b"damaged")
    command = [sys.executable, "-m", "mgrb.cli", "run", str(path), "--out", str(out), "--quiet"]
    first = subprocess.run(command, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    assert first.returncode == 2, first.stderr
    assert "is damaged" in first.stderr and "--restart" in first.stderr
    assert "internal error" not in first.stderr and not (out / "results.json").exists()
    again = subprocess.run([*command, "--restart"], capture_output=True, text=True,
                           stdin=subprocess.DEVNULL)
    assert again.returncode == 0, again.stderr
    assert "starting" in again.stderr and "over from the beginning" in again.stderr
    assert (out / "checkpoints" / "latest.pt.damaged").read_bytes() == b"damaged"


# -- the lock ---------------------------------------------------------------------------
def _contender(folder, start, attempted, results):
    run = RunFolder(folder)
    start.wait()
    try:
        run.acquire_lock()
        results.put("won")
    except RunFolderError:
        results.put("refused")
    attempted.wait()  # hold the lock until every contender has tried
    run.release_lock()


@pytest.mark.parametrize("stale", ["dead pid", "empty file"])
def test_a_stale_lock_goes_to_exactly_one_of_many_contenders(tmp_path, stale):
    context = multiprocessing.get_context("fork")
    dead = subprocess.Popen(["true"])
    dead.wait()
    for trial in range(40):
        folder = tmp_path / f"trial{trial}"
        folder.mkdir()
        record = b"" if stale == "empty file" else json.dumps(
            {"pid": dead.pid, "host": socket.gethostname()}).encode()
        (folder / "run.lock").write_bytes(record)
        contenders = 4
        start, attempted = context.Barrier(contenders), context.Barrier(contenders)
        results = context.Queue()
        processes = [context.Process(target=_contender, args=(folder, start, attempted, results))
                     for _ in range(contenders)]
        for process in processes:
            process.start()
        outcomes = sorted(results.get(timeout=60) for _ in processes)
        for process in processes:
            process.join(timeout=60)
        assert outcomes == ["refused"] * (contenders - 1) + ["won"], f"trial {trial}"


def test_a_live_holder_keeps_the_lock_even_with_an_empty_record(tmp_path):
    holder = _folder(tmp_path)
    holder.acquire_lock()
    (holder.path / "run.lock").write_bytes(b"")  # the record is for people; flock decides
    with pytest.raises(RunFolderError, match="in use"):
        RunFolder(holder.path).acquire_lock()
    holder.release_lock()
    other = RunFolder(holder.path)
    other.acquire_lock()
    other.release_lock()


def test_a_reused_pid_does_not_hold_a_lock(tmp_path):
    run = _folder(tmp_path)
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        impostor = {**identity(sleeper.pid), "start": identity(sleeper.pid)["start"] + 1}
        (run.path / "run.lock").write_text(json.dumps(
            {"pid": sleeper.pid, "host": socket.gethostname(), "process": impostor}))
        run.acquire_lock()  # the live pid is another process than the one recorded
        record = json.loads((run.path / "run.lock").read_text())
        assert record["process"] == {"pid": os.getpid(), "start": identity()["start"],
                                     "boot": boot_id()}
        run.release_lock()
    finally:
        sleeper.kill()
        sleeper.wait()


def test_a_lock_of_another_host_is_not_taken_over(tmp_path):
    run = _folder(tmp_path)
    (run.path / "run.lock").write_text(json.dumps({"pid": 4242, "host": "elsewhere"}))
    with pytest.raises(RunFolderError, match="host elsewhere"):
        run.acquire_lock()


# -- links and leftovers ----------------------------------------------------------------
def test_a_linked_events_file_is_not_followed(tmp_path):
    run = _folder(tmp_path)
    target = tmp_path / "victim.txt"
    target.write_text("untouched\n")
    run.events_path.symlink_to(target)
    with pytest.raises(RunFolderError, match="symbolic link"):
        run.append_event({"event": "started", "phases": 2})
    assert target.read_text() == "untouched\n"


def test_a_link_planted_at_a_temporary_name_is_replaced_not_written_through(tmp_path):
    target = tmp_path / "victim.txt"
    target.write_text("untouched\n")
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / f".results.json.{os.getpid()}.tmp").symlink_to(target)
    atomic_write(folder / "results.json", b"{}")
    assert target.read_text() == "untouched\n"
    assert (folder / "results.json").read_bytes() == b"{}"


def test_temporaries_of_dead_writers_are_removed_when_the_next_run_starts(tmp_path):
    run = _folder(tmp_path)
    dead = subprocess.Popen(["true"])
    dead.wait()
    live = subprocess.Popen(["sleep", "60"])
    try:
        stale = [run.path / f".config.yaml.{dead.pid}.tmp",
                 run.checkpoints / f".latest.pt.new.{dead.pid}.tmp"]
        kept = run.path / f".launch.json.{live.pid}.tmp"  # a live launcher's write
        for path in [*stale, kept]:
            path.write_bytes(b"x" * 1000)
        run.acquire_lock()
        run.release_lock()
        assert not any(path.exists() for path in stale) and kept.exists()
    finally:
        live.kill()
        live.wait()


# -- unfinished and foreign folders -----------------------------------------------------
def test_a_foreign_results_file_gets_nothing_written_beside_it(tmp_path, capsys):
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY)
    out = tmp_path / "someone-elses"
    out.mkdir()
    (out / "results.json").write_text("{}")
    assert main(["run", str(path), "--out", str(out)]) == 2
    assert "not a run folder of this project" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["results.json"]


def test_a_truncated_results_file_is_one_clear_message(tmp_path, capsys):
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY)
    out = tmp_path / "out"
    assert main(["run", str(path), "--out", str(out), "--quiet"]) == 0
    results = out / "results.json"
    results.write_bytes(results.read_bytes()[:100])
    capsys.readouterr()
    assert main(["run", str(path), "--out", str(out)]) == 2
    error = capsys.readouterr().err
    assert "results.json: not valid JSON" in error and "Move it aside" in error
    assert "internal error" not in error


def test_report_names_must_stay_inside_out(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "results.json").write_text(json.dumps({
        "experiment": "../../escaped", "avg_top1": 50.0, "last_top1": 40.0,
        "phases": [{"phase": 0, "seen_classes": 5, "top1": 50.0}]}))
    assert main(["report", str(run), "--out", str(tmp_path / "reports" / "here")]) == 2
    assert not (tmp_path / "escaped.png").exists() and not (tmp_path / "reports").exists()
    with pytest.raises(MGRBError, match="not an experiment name"):
        write_report({"../x": []}, tmp_path / "reports")


# -- divergence -------------------------------------------------------------------------
def test_require_finite_names_phase_stage_and_epoch():
    require_finite({"total": 1.0}, phase=0, stage="stage 1", epoch=0, lr=0.1)
    with pytest.raises(MGRBError, match=r"diverged in phase 2, stage 1, epoch 4 \(total = nan"):
        require_finite({"total": torch.tensor(float("nan")), "cls": 1.0}, phase=1,
                       stage="stage 1", epoch=3, lr=0.1)


def test_a_diverging_run_stops_with_a_message_and_no_nan_on_disk(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY)
    out = tmp_path / "out"
    env = {**os.environ, "MGRB_TEST_FAULTS": "tiny=nan",
           "PYTHONPATH": os.pathsep.join([str(FAULTS), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-m", "mgrb.cli", "run", str(path), "--out", str(out),
                           "--quiet"], capture_output=True, text=True, env=env)
    assert done.returncode == 2, done.stderr
    assert "training diverged in phase 2, stage 1, epoch 1" in done.stderr
    assert "NaN" not in (out / "events.jsonl").read_text()
    assert not (out / "results.json").exists()
    state = RunFolder(out).load_checkpoint(print)
    assert state["phase"] == 0 or (state["phase"] == 1 and state["epoch"] == 0)


# -- experiment folders -----------------------------------------------------------------
def test_reproduce_reports_broken_and_duplicate_files_and_runs_the_rest(tmp_path, capsys):
    experiments = tmp_path / "experiments"
    experiments.mkdir()
    (experiments / "a_tiny.yaml").write_text(TINY)
    (experiments / "b_same_name.yaml").write_text(TINY)
    (experiments / "c_broken.yaml").write_text("name: [unclosed\n")
    code = main(["--experiments-dir", str(experiments), "reproduce", "--runs-dir",
                 str(tmp_path / "runs"), "--reports-dir", str(tmp_path / "reports"), "--quiet"])
    assert code == 0
    error = capsys.readouterr().err
    assert "b_same_name.yaml: names itself tiny, as" in error and "c_broken.yaml" in error
    report = (tmp_path / "reports" / "reproduction.md").read_text()
    assert "| tiny |" in report and "b_same_name.yaml** not run" in report
    assert (tmp_path / "runs" / "tiny" / "results.json").exists()


def test_list_marks_a_second_file_of_the_same_name(tmp_path, capsys):
    for name in ("a.yaml", "b.yaml"):
        (tmp_path / name).write_text(TINY)
    assert main(["--experiments-dir", str(tmp_path), "list"]) == 0
    out = capsys.readouterr().out
    assert f"{tmp_path / 'b.yaml'}: INVALID: names itself tiny, as {tmp_path / 'a.yaml'}" in out


def test_a_fifo_in_place_of_results_is_refused_without_waiting(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    os.mkfifo(run / "results.json")  # opening it to read would wait for a writer forever
    assert main(["check", str(run)]) == 2
    assert "results.json: is not a regular file (a FIFO, device or folder)" in capsys.readouterr().err


def test_a_linked_results_file_is_not_read(tmp_path, capsys):
    elsewhere = tmp_path / "elsewhere.json"
    elsewhere.write_text("{}")
    run = tmp_path / "run"
    run.mkdir()
    (run / "results.json").symlink_to(elsewhere)
    assert main(["check", str(run)]) == 2
    assert "results.json: is a symbolic link" in capsys.readouterr().err


def test_results_of_a_newer_format_are_refused_and_those_without_one_read(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    results = {"experiment": "x", "avg_top1": 50.0, "last_top1": 40.0,
               "phases": [{"phase": 0, "seen_classes": 5, "top1": 50.0}]}
    (run / "results.json").write_text(json.dumps(results))  # older folders carry no format
    assert main(["check", str(run)]) == 0
    (run / "results.json").write_text(json.dumps({**results, "format": 99}))
    assert main(["check", str(run)]) == 2
    assert "format: is format 99, newer than this version" in capsys.readouterr().err
