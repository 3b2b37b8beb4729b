"""`mgrb run --nproc` and torchrun environments that cannot make a run (issue 28): a port taken
between choosing and binding it, a partial torchrun environment, more processes than cores."""

import errno
import socket

import pytest

from mgrb.errors import MGRBError
from mgrb.pipeline.workers import check_gpus, host_store
from mgrb.training.distributed import environment_world


def test_the_rendezvous_port_is_bound_before_any_worker_starts():
    """The parent serves the store on a port the kernel picked as it bound it: nothing can
    take that port before rank 0 binds it, as a port chosen free and bound later could be."""
    store = host_store(2)
    with socket.socket() as other, pytest.raises(OSError) as refused:
        other.bind(("127.0.0.1", store.port))
    assert refused.value.errno == errno.EADDRINUSE
    store.set("a", "b")
    assert store.get("a") == b"b"


@pytest.mark.parametrize("environment, missing", [
    ({"WORLD_SIZE": "2", "RANK": "0"}, "MASTER_ADDR and MASTER_PORT are not"),
    ({"WORLD_SIZE": "2", "RANK": "1", "MASTER_ADDR": "127.0.0.1"}, "MASTER_PORT is not"),
])
def test_a_partial_torchrun_environment_is_refused_with_a_message(monkeypatch, environment, missing):
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(MGRBError, match=missing):
        environment_world()


def test_a_plain_process_needs_no_rendezvous(monkeypatch):
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    assert environment_world() == (0, 0, 1)


def test_more_cpu_processes_than_cores_are_refused():
    import os

    cores = len(os.sched_getaffinity(0))
    check_gpus(cores, "cpu")  # as many as the cores: fine
    with pytest.raises(MGRBError, match=f"--nproc {cores + 1}: this process may use {cores}"):
        check_gpus(cores + 1, "cpu")
