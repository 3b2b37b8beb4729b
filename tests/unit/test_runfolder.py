"""Run-folder writes are atomic, checkpoints are checked, failures say what to do."""

import errno
import hashlib
import io
import os

import pytest
import torch

from mgrb.errors import RunFolderError
from mgrb.store.files import atomic_write
from mgrb.store.runfolder import RunFolder


def _folder(tmp_path):
    run = RunFolder(tmp_path / "run")
    run.prepare({"name": "x"})
    return run


def test_checkpoints_round_trip_and_keep_the_previous(tmp_path):
    run = _folder(tmp_path)
    run.save_checkpoint({"epoch": 1, "weights": torch.arange(3)})
    run.save_checkpoint({"epoch": 2, "weights": torch.arange(3)})
    assert run.load_checkpoint(print)["epoch"] == 2
    assert (run.checkpoints / "previous.pt").exists()


def test_a_checkpoint_is_its_digest_then_what_torch_save_writes(tmp_path):
    # the format recorded runs and older versions of this artifact read
    state = {"epoch": 1, "weights": torch.arange(5.0), "generator": torch.Generator().get_state()}
    run = _folder(tmp_path)
    run.save_checkpoint(state)
    expected = io.BytesIO()
    torch.save(state, expected)
    payload = expected.getvalue()
    data = (run.checkpoints / "latest.pt").read_bytes()
    assert data == hashlib.sha256(payload).hexdigest().encode() + b"\n" + payload


def test_what_a_killed_write_left_goes_with_the_next_checkpoint(tmp_path):
    run = _folder(tmp_path)
    partial = run.checkpoints / ".latest.pt.new.99999.tmp"  # atomic_write's, of a dead process
    partial.write_bytes(b"partial")
    run.save_checkpoint({"epoch": 1})
    assert sorted(p.name for p in run.checkpoints.iterdir()) == ["latest.pt"]


def test_a_damaged_checkpoint_falls_back_with_a_warning(tmp_path):
    run = _folder(tmp_path)
    run.save_checkpoint({"epoch": 1})
    run.save_checkpoint({"epoch": 2})
    latest = run.checkpoints / "latest.pt"
    latest.write_bytes(latest.read_bytes()[:-10])  # truncated
    warnings = []
    assert run.load_checkpoint(warnings.append)["epoch"] == 1
    assert "latest.pt is damaged (checksum mismatch" in warnings[0]


def test_a_kill_between_the_renames_keeps_the_newest(tmp_path):
    run = _folder(tmp_path)
    run.save_checkpoint({"epoch": 1})
    run.save_checkpoint({"epoch": 2})
    os.replace(run.checkpoints / "latest.pt", run.checkpoints / "latest.pt.new")
    assert run.load_checkpoint(print)["epoch"] == 2


def test_a_full_disk_loses_nothing_and_says_so(tmp_path, monkeypatch):
    target = tmp_path / "results.json"
    target.write_text("old")

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(RunFolderError, match="the disk is full. Nothing already saved was lost"):
        atomic_write(target, b"new")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]  # no temporary left


def test_an_unwritable_folder_is_named(tmp_path, monkeypatch):
    def denied(*args, **kwargs):  # what a read-only folder gives a non-root user
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(os, "replace", denied)
    with pytest.raises(RunFolderError, match="f: cannot write here .Permission denied"):
        atomic_write(tmp_path / "f", b"x")


def test_a_folder_replaced_by_a_file_gives_the_plain_message(tmp_path):
    from mgrb.errors import RunFolderError
    from mgrb.store.files import atomic_write

    blocked = tmp_path / "folder"
    blocked.write_text("a file where the folder was")
    with pytest.raises(RunFolderError, match="cannot be written"):
        atomic_write(blocked / "results.json", b"{}")


def test_an_event_after_a_half_written_line_starts_a_line_of_its_own(tmp_path):
    """A disk that filled mid-append left half a line; the next event is not glued to it (and
    lost with it): readers skip the damaged line and keep the new one."""
    import json

    from mgrb.store.runfolder import RunFolder

    run = RunFolder(tmp_path / "run")
    run.path.mkdir()
    run.append_event({"event": "started", "phases": 2})
    with open(run.events_path, "a") as handle:
        handle.write('{"event": "epoch", "pha')  # cut short
    run.append_event({"event": "finished"})
    lines = run.events_path.read_text().splitlines()
    assert lines[1] == '{"event": "epoch", "pha'
    assert json.loads(lines[2])["event"] == "finished"
    assert [event["event"] for event in run.recorded_events()] == ["started", "finished"]
