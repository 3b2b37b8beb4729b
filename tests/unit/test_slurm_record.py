"""slurm.json, the record of the Slurm job that runs a folder: written atomically, read back,
and refused by file and field when it is not one this project wrote."""

import json

import pytest

from mgrb.errors import RunFolderError
from mgrb.pipeline.slurm_jobs import JobRecord, read_record, write_record

RECORD = JobRecord("12_3", "mgrb-a1b2c3", "local", 1796000000.5, "/runs/.slurm", "/runs/.slurm/12_3_0_log.out")


def test_a_record_reads_back_with_its_array_fields(tmp_path):
    write_record(tmp_path, RECORD)
    assert read_record(tmp_path) == RECORD
    stored = json.loads((tmp_path / "slurm.json").read_text())
    assert stored["array_job_id"] == "12" and stored["array_index"] == 3
    assert read_record(tmp_path / "elsewhere") is None


@pytest.mark.parametrize("change, field", [
    ({"job_id": "12;rm -rf"}, "job_id"), ({"job_id": "12\n"}, "job_id"),
    ({"submitted": "yesterday"}, "submitted"),
    ({"job_name": None}, "job_name"), ({"log": 3}, "log")])
def test_a_record_that_breaks_the_contract_is_refused_by_field(tmp_path, change, field):
    write_record(tmp_path, RECORD)
    path = tmp_path / "slurm.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **change}))
    with pytest.raises(RunFolderError, match=rf"slurm\.json.*{field}"):
        read_record(tmp_path)


def test_a_record_that_is_not_json_is_refused(tmp_path):
    (tmp_path / "slurm.json").write_text("{not json")
    with pytest.raises(RunFolderError, match="slurm.json"):
        read_record(tmp_path)


def test_a_log_path_with_escapes_is_written_out_in_the_state_shown(tmp_path):
    """slurm.json's log is printed by `reproduce --executor slurm --wait`: an escape sequence
    or a newline in it must not reach the terminal as such."""
    from mgrb.pipeline.slurm_jobs import SlurmState, run_state

    record = JobRecord("12_3", "mgrb-abc123", "local", 1.0, str(tmp_path / "jobs"),
                       "/tmp/log\x1b[2J\nmgrb: all runs finished")
    write_record(tmp_path, record)
    state = run_state(tmp_path, read_record(tmp_path), SlurmState("FAILED", ""))
    assert "\x1b" not in state.message and "\n" not in state.message
    assert "/tmp/log\\x1b[2J\\nmgrb: all runs finished" in state.message
