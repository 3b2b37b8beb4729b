"""Checkpoints written in the background: independent host copies, order, errors, SIGKILL."""

import hashlib
import io
import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from collections import OrderedDict

import numpy as np
import pytest
import torch

from mgrb.training.checkpoints import CheckpointWriter, host_copy
from mgrb.errors import RunFolderError
from mgrb.store.runfolder import RunFolder


def _folder(tmp_path):
    run = RunFolder(tmp_path / "run")
    run.prepare({"name": "x"})
    return run


def _block_writes(run):
    """A directory where the staged checkpoint goes: the write fails, even for root (whom a
    read-only folder would not stop), and the failure names the path."""
    (run.checkpoints / "latest.pt.new").mkdir()
    return re.escape(str(run.checkpoints / "latest.pt.new"))


def _checkpoint_events(run):
    lines = run.events_path.read_text().splitlines() if run.events_path.exists() else []
    return [event for event in map(json.loads, lines) if event["event"] == "checkpoint"]


# -- host_copy -----------------------------------------------------------------------------
def test_a_host_copy_shares_nothing_that_training_goes_on_changing():
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(model.parameters())
    model(torch.ones(1, 3)).sum().backward()
    optimizer.step()
    generator = torch.Generator().manual_seed(5)
    shared = torch.arange(4.0)
    state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
             "generator": generator.get_state(), "same": [shared, shared],
             "plain": (1, 2.5, "s", None, True), "array": np.arange(3),
             "nested": {"list": [[torch.ones(2)]]}}
    copied = host_copy(state)
    before = {name: value.clone() for name, value in model.state_dict().items()}
    moments = [value.clone() for value in optimizer.state_dict()["state"][0].values()]

    # what the training loop does to the originals next
    model(torch.ones(1, 3)).sum().backward()
    optimizer.step()
    expected_draws = torch.rand(5, generator=generator)
    shared.add_(100)
    state["nested"]["list"][0][0].fill_(9)
    state["nested"]["list"].append("later")
    state["array"][0] = 7

    assert all(torch.equal(copied["model"][name], before[name]) for name in before)
    assert all(torch.equal(a, b) for a, b in zip(copied["optimizer"]["state"][0].values(), moments))
    assert copied["optimizer"]["param_groups"] == optimizer.state_dict()["param_groups"]
    replay = torch.Generator()
    replay.set_state(copied["generator"])
    assert torch.equal(torch.rand(5, generator=replay), expected_draws)
    assert copied["same"][0] is copied["same"][1]  # one tensor in, one tensor out
    assert torch.equal(copied["same"][0], torch.arange(4.0))
    assert copied["plain"] == (1, 2.5, "s", None, True)
    assert copied["array"].tolist() == [0, 1, 2]
    assert len(copied["nested"]["list"]) == 1 and torch.equal(copied["nested"]["list"][0][0], torch.ones(2))


def test_every_tensor_of_a_host_copy_has_storage_of_its_own():
    state = {"weights": torch.randn(10, requires_grad=True), "step": torch.tensor(3.0),
             "list": [torch.zeros(2, 2)], "channels_last": torch.randn(2, 3, 4, 4).to(
                 memory_format=torch.channels_last)}
    copied = host_copy(state)
    originals = [state["weights"], state["step"], state["list"][0], state["channels_last"]]
    copies = [copied["weights"], copied["step"], copied["list"][0], copied["channels_last"]]
    for original, copy in zip(originals, copies):
        assert copy.device.type == "cpu" and not copy.requires_grad
        assert copy.untyped_storage().data_ptr() != original.untyped_storage().data_ptr()
        assert torch.equal(copy, original.detach())
    assert copied["list"] is not state["list"] and copied is not state


def test_a_host_copy_of_a_state_dict_keeps_what_load_state_dict_needs():
    network = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2))
    copied = host_copy(network.state_dict())
    assert type(copied) is OrderedDict
    assert copied._metadata == network.state_dict()._metadata
    torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2)).load_state_dict(copied)


# -- the writer ----------------------------------------------------------------------------
def test_checkpoints_and_their_events_arrive_in_order(tmp_path):
    run = _folder(tmp_path)
    with CheckpointWriter(run) as writer:
        for epoch in range(1, 7):
            writer.submit({"epoch": epoch, "weights": torch.full((1000,), epoch)},
                          {"event": "checkpoint", "epoch": epoch})
        writer.flush()
        assert [event["epoch"] for event in _checkpoint_events(run)] == [1, 2, 3, 4, 5, 6]
        assert run.load_checkpoint(print)["epoch"] == 6
    previous = RunFolder(run.path)
    (run.checkpoints / "latest.pt").unlink()
    assert previous.load_checkpoint(print)["epoch"] == 5


def test_the_caller_may_change_its_tensors_as_soon_as_submit_returns(tmp_path):
    run = _folder(tmp_path)
    weights = torch.zeros(2_000_000)
    with CheckpointWriter(run) as writer:
        writer.submit({"weights": weights})
        weights.fill_(7)  # the next optimiser step, while the write is still going on
    assert run.load_checkpoint(print)["weights"].count_nonzero() == 0


def test_the_file_is_the_one_save_checkpoint_writes(tmp_path):
    state = {"epoch": 3, "weights": torch.arange(100.0), "generator": torch.Generator().get_state()}
    run = _folder(tmp_path)
    run.save_checkpoint(state)
    synchronous = (run.checkpoints / "latest.pt").read_bytes()
    with CheckpointWriter(run) as writer:
        writer.submit(state)
    assert (run.checkpoints / "latest.pt").read_bytes() == synchronous
    assert (run.checkpoints / "previous.pt").read_bytes() == synchronous


def test_a_failed_write_is_raised_by_the_next_flush_and_its_event_never_appended(tmp_path):
    run = _folder(tmp_path)
    writer = CheckpointWriter(run)
    staged = _block_writes(run)
    writer.submit({"epoch": 1}, {"event": "checkpoint", "epoch": 1})
    with pytest.raises(RunFolderError, match=f"{staged}: cannot be written"):
        writer.flush()
    assert _checkpoint_events(run) == []
    writer.flush()  # raised once, not again

    (run.checkpoints / "latest.pt.new").rmdir()
    writer.submit({"epoch": 2}, {"event": "checkpoint", "epoch": 2})
    writer.close()
    assert run.load_checkpoint(print)["epoch"] == 2
    assert [event["epoch"] for event in _checkpoint_events(run)] == [2]


def test_a_failed_write_is_raised_by_the_next_submit(tmp_path):
    run = _folder(tmp_path)
    with CheckpointWriter(run) as writer:
        staged = _block_writes(run)
        writer.submit({"epoch": 1})
        with pytest.raises(RunFolderError, match=staged):
            writer.submit({"epoch": 2})


def test_any_other_failure_in_the_thread_reaches_the_caller(tmp_path):
    run = _folder(tmp_path)
    with CheckpointWriter(run) as writer:
        writer.submit({"unpicklable": lambda: None})
        with pytest.raises(Exception, match="pickle"):
            writer.flush()
        writer.submit({"epoch": 2})  # the writer goes on working
    assert run.load_checkpoint(print) == {"epoch": 2}


def test_close_flushes_stops_the_thread_and_may_be_repeated(tmp_path):
    run = _folder(tmp_path)
    writer = CheckpointWriter(run)
    writer.submit({"epoch": 1}, {"event": "checkpoint", "epoch": 1})
    writer.close()
    assert not writer._thread.is_alive()
    assert len(_checkpoint_events(run)) == 1
    writer.close()
    with pytest.raises(RuntimeError, match="closed"):
        writer.submit({"epoch": 2})


def test_a_stop_inside_the_block_still_writes_the_checkpoint_before_it(tmp_path):
    run = _folder(tmp_path)
    with pytest.raises(KeyboardInterrupt):
        with CheckpointWriter(run) as writer:
            writer.submit({"epoch": 4}, {"event": "checkpoint", "epoch": 4})
            raise KeyboardInterrupt
    assert run.load_checkpoint(print) == {"epoch": 4}
    assert len(_checkpoint_events(run)) == 1


def test_a_failed_write_is_not_hidden_by_an_error_in_the_block(tmp_path):
    run = _folder(tmp_path)
    with pytest.raises(ValueError) as raised:
        with CheckpointWriter(run) as writer:
            _block_writes(run)
            writer.submit({"epoch": 1})
            raise ValueError("the training step failed")
    assert "Also, a checkpoint could not be written" in "\n".join(raised.value.__notes__)


def test_events_from_two_threads_never_interleave(tmp_path):
    run = _folder(tmp_path)
    payload = "x" * 20_000  # beyond one buffered write

    def append(thread):
        for index in range(200):
            run.append_event({"event": "test", "thread": thread, "index": index, "payload": payload})

    threads = [threading.Thread(target=append, args=(name,)) for name in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    events = [json.loads(line) for line in run.events_path.read_text().splitlines()]
    for name in ("a", "b"):
        assert [e["index"] for e in events if e["thread"] == name] == list(range(200))


# -- SIGKILL at random moments -----------------------------------------------------------------
# A trainer stand-in, forked from one process that has imported torch already (an import takes
# seconds; a fork, milliseconds). It resumes from the folder's checkpoint and then checkpoints
# as fast as it can, changing its tensors in place right after each submit, as training does.
TRAINER = """
import io, os, random, sys, time
import torch
from mgrb.training.checkpoints import CheckpointWriter
from mgrb.store.runfolder import RunFolder

def train(folder, trial, seed):
    run = RunFolder(folder)
    state = run.load_checkpoint(lambda message: print(message, file=sys.stderr))
    counter = state["counter"] if state is not None else 0
    pause = random.Random(seed)
    weights = {"a": torch.zeros(300_000), "b": torch.zeros(100_000, dtype=torch.float64)}
    moments = [torch.zeros(100_000), torch.zeros(1, dtype=torch.int64)]
    with CheckpointWriter(run) as writer:
        while True:
            counter += 1
            for tensor in [*weights.values(), *moments]:
                tensor.fill_(counter)
            state = {"counter": counter, "weights": weights, "moments": (moments, counter),
                     "generator": torch.Generator().manual_seed(counter).get_state()}
            writer.submit(state, {"event": "checkpoint", "trial": trial, "counter": counter})
            if pause.random() < 0.5:
                time.sleep(pause.uniform(0, 0.004))

# torch loads parts of itself on first use: once here, not in every child. Tensors this small
# start no thread pool before the fork, and the children need none: with few cores, spreading a
# fill of a few MB over threads costs more than it saves.
torch.set_num_threads(1)
warm = io.BytesIO()
torch.save({"warm": torch.zeros(4)}, warm)
torch.load(io.BytesIO(warm.getvalue()), weights_only=False)

for line in sys.stdin:
    folder, trial, seed = line.split()
    pid = os.fork()
    if pid == 0:
        try:
            train(folder, int(trial), int(seed))
        finally:
            os._exit(1)
    print(pid, flush=True)
    print(os.waitpid(pid, 0)[1], flush=True)
"""


def _consistent(state) -> int:
    """The state's counter, once every part of it is checked to come from that same step."""
    counter = state["counter"]
    moments, also = state["moments"]
    assert also == counter
    for tensor in [*state["weights"].values(), *moments]:  # numpy: torch's == is slow here
        assert (tensor.numpy() == counter).all(), f"a mix: a tensor of checkpoint {counter} differs"
    assert torch.equal(state["generator"], torch.Generator().manual_seed(counter).get_state())
    return counter


def _wait_for(condition, what: str, log) -> None:
    deadline = time.monotonic() + 30
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}: {log.read_text()}"
        time.sleep(0.005)


def test_a_checkpoint_written_in_the_background_survives_sigkill_at_random_moments(tmp_path):
    run = _folder(tmp_path)
    log = tmp_path / "trainer.log"
    with open(log, "w") as errors:
        trainer = subprocess.Popen([sys.executable, "-c", TRAINER], stdin=subprocess.PIPE,
                                   stdout=subprocess.PIPE, stderr=errors, text=True)
    delays = random.Random(20240611)
    loaded, mid_write = 0, 0
    try:
        for trial in range(40):
            trainer.stdin.write(f"{run.path} {trial} {trial}\n")
            trainer.stdin.flush()
            pid = int(trainer.stdout.readline())

            def started(trial=trial):
                return f'"trial": {trial},' in (run.events_path.read_text() if
                                                run.events_path.exists() else "")

            _wait_for(started, f"trial {trial}'s first checkpoint", log)
            time.sleep(delays.uniform(0, 0.12))
            os.kill(pid, signal.SIGKILL)
            status = int(trainer.stdout.readline())  # reaped: nothing of it runs any more
            assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, log.read_text()

            # every line whole, the events in order, each one's checkpoint on disk
            counters = [event["counter"] for event in _checkpoint_events(run)]
            assert counters == sorted(set(counters))
            on_disk = []
            for name in ("latest.pt.new", "latest.pt", "previous.pt"):
                path = run.checkpoints / name
                if path.exists():  # whatever is there under these names is whole
                    data = path.read_bytes()
                    assert data[:64] == hashlib.sha256(data[65:]).hexdigest().encode(), name
                    on_disk.append(_consistent(torch.load(io.BytesIO(data[65:]), weights_only=False)))
            warnings = []
            state = run.load_checkpoint(warnings.append)
            assert warnings == []
            counter = _consistent(state)
            assert counter == max(on_disk) >= counters[-1] >= loaded
            loaded = counter
            partial = list(run.checkpoints.glob(".latest.pt.new.*.tmp"))
            assert len(partial) <= 1  # a dead trainer's partial write goes with the next write
            mid_write += bool(partial) or (run.checkpoints / "latest.pt.new").exists()
    finally:
        trainer.stdin.close()
        trainer.wait(timeout=30)
    assert loaded > 40
    assert mid_write > 0, "no kill struck during a write: the test proved little"
