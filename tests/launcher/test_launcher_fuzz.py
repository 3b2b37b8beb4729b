"""Property-based: whatever a run folder holds (results.json, events.jsonl, launch.json,
exit.json, run.lock), reading it never raises, the status is one the launcher knows, and a
stop signals nothing; RunProgress.fold takes any object; results that meet their contract always
get a verdict (mgrb.reporting.check.check_group is safe on them)."""

import dataclasses
import json
import os
import shutil
import socket
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from artifact.core.launcher import LocalLauncher
from artifact.core.runs import FINISHED, STATUSES, RunProgress, RunWatcher
from mgrb.reporting.check import VERDICTS
from mgrb.store.processes import identity
from mgrb.store.contracts import EVENT_KINDS
from artifact_helpers import tiny_experiment

FUZZ = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.text(max_size=12)
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=3),
    max_leaves=8)
# the numbers a planted record would try: every process, init, this process, past the limit
pids = st.sampled_from([0, 1, -1, 2, os.getpid(), 2**22, 2**22 + 1, 2**63]) | json_values
processes = (st.just(identity(os.getpid())) | st.none() | json_values
             | st.fixed_dictionaries({"pid": pids, "start": st.integers(-1, 2**40),
                                      "boot": st.text(max_size=40)}))
percent = st.floats(0, 100) | st.integers(0, 100)


def _absent_or(content):
    """A file that is missing, holds JSON, holds a JSON-ish text (NaN, 1e999), or any bytes."""
    return st.none() | content.map(json.dumps) | st.sampled_from(["NaN", "1e999", "[" * 5000, ""]) \
        | st.binary(max_size=64)


def _record(required: dict, optional: dict):
    return st.fixed_dictionaries(required, optional=optional) | json_values


launch_files = _absent_or(_record(
    {"mode": st.sampled_from(["local", "docker", "remote"]) | json_values},
    {"pid": pids, "process": processes, "container": st.text(max_size=70) | json_values,
     "launched": st.floats(allow_nan=False) | json_values}))
lock_files = _absent_or(_record(
    {"pid": pids, "host": st.just(socket.gethostname()) | st.text(max_size=20)},
    {"process": processes, "since": json_values}))
exit_files = _absent_or(_record({"code": st.integers(-300, 300) | json_values}, {}))

phases = st.fixed_dictionaries(
    {"phase": st.integers(0, 10_000), "seen_classes": st.integers(1, 1_000_000), "top1": percent},
    optional={"top5": percent | st.none(), "old_top1": percent | st.none(),
              "new_top1": percent | st.none()})
valid_results = st.fixed_dictionaries(
    {"experiment": st.just("tiny"), "avg_top1": percent, "last_top1": percent,
     "phases": st.lists(phases, min_size=1, max_size=4)},
    optional={"reported": st.none() | st.fixed_dictionaries({}, optional={
        "avg_top1": percent | st.none(), "last_top1": percent | st.none(),
        "tolerance": st.floats(0, 100)}), "seed": st.integers(0, 2**64 - 1),
        "config": st.dictionaries(st.text(max_size=5), json_values, max_size=2)})
results_files = st.none() | valid_results.map(json.dumps) | _absent_or(
    st.tuples(valid_results, st.dictionaries(st.sampled_from(
        ["experiment", "avg_top1", "last_top1", "phases", "reported", "seed"]), json_values,
        min_size=1, max_size=2)).map(lambda pair: {**pair[0], **pair[1]}))

event_fields = {key: json_values | st.integers(-5, 20) | st.floats(allow_nan=False)
                for key in ("time", "phase", "phases", "stage", "epoch", "epochs", "iteration",
                            "iterations", "images_per_s", "losses", "top1")}
events = st.fixed_dictionaries(
    {"event": st.sampled_from(EVENT_KINDS + ("bogus", "")) | json_values}, optional=event_fields)
event_lines = st.lists(events.map(lambda e: json.dumps(e).encode()) | st.binary(max_size=80),
                       max_size=12).map(lambda lines: b"\n".join(lines) + b"\n")


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    return tiny_experiment(tmp_path_factory.mktemp("fuzz"))



def _write(folder: Path, name: str, content) -> None:
    if content is not None:
        (folder / name).write_bytes(content if isinstance(content, bytes) else content.encode())


@FUZZ
@given(results=results_files, lines=event_lines, launch=launch_files, exit_record=exit_files,
       lock=lock_files)
def test_any_run_folder_gives_a_known_status_and_no_signal(template, signals, results, lines,
                                                           launch, exit_record, lock):
    folder = Path(tempfile.mkdtemp(prefix="run-", dir=template.base_folder.parent))
    try:
        for name, content in (("results.json", results), ("events.jsonl", lines),
                              ("launch.json", launch), ("exit.json", exit_record),
                              ("run.lock", lock)):
            _write(folder, name, content)
        experiment = dataclasses.replace(template, base_folder=folder, run_folders=(folder,))
        state = RunWatcher(experiment).refresh(stall_after_s=600)
        assert state.status in STATUSES
        event(state.status)  # --hypothesis-show-statistics: which statuses the fuzz reached
        assert 0.0 <= state.progress.fraction <= 1.0
        for force in (False, True):
            assert isinstance(LocalLauncher(folder.parent).stop(experiment, force=force), str)
        assert signals == []
    finally:
        shutil.rmtree(folder)


@settings(max_examples=300, deadline=None)
@given(st.lists(events | json_values | st.builds(object), max_size=20),
       st.floats(allow_nan=True, allow_infinity=True))
def test_fold_takes_anything(events_seen, now):
    progress = RunProgress()
    for seen in events_seen:
        progress.fold(seen)
    assert 0.0 <= progress.fraction <= 1.0 and 0.0 <= progress.phase_fraction <= 1.0
    eta = progress.eta(now)
    assert eta is None or eta >= 0


@FUZZ
@given(results=valid_results)
def test_results_that_meet_their_contract_always_get_a_verdict(template, results):
    folder = Path(tempfile.mkdtemp(prefix="run-", dir=template.base_folder.parent))
    try:
        _write(folder, "results.json", json.dumps(results))
        experiment = dataclasses.replace(template, base_folder=folder, run_folders=(folder,))
        state = RunWatcher(experiment).refresh(stall_after_s=600)
        assert state.status == FINISHED, state.detail
        assert state.verdict in VERDICTS
    finally:
        shutil.rmtree(folder)
