"""Shared by every kind of test: unit/ (modules on hand-made inputs), e2e/ (the real entry
points on real runs, marked slow), launcher/ (its core on real processes, the app through
Textual's pilot, snapshots). Fixtures for the launcher's tests of hostile run folders and
the runs they launch."""

import os
import re
from pathlib import Path

import pytest

from artifact_helpers import start_sleeper, stop_process

E2E = Path(__file__).parent / "e2e"


def _forget_the_enclosing_make() -> None:
    """Tests that run `make -n TARGET` describe what a user's `make TARGET` does. Started by
    make (`make test-variant VENV=.venv-cu12`), pytest inherits the caller's command-line
    variables, both as environment variables and through MAKEFLAGS, and every make a test
    starts would see them (CUDA 12's image tag): those makes start from a plain shell's slate."""
    flags = os.environ.get("MAKEFLAGS", "")
    _, _, overrides = f" {flags}".partition(" -- ")
    for word in re.split(r"(?<!\\)\s+", overrides.strip()):  # make writes a space in a value as "\ "
        os.environ.pop(word.split("=", 1)[0], None)
    for name in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES"):
        os.environ.pop(name, None)


_forget_the_enclosing_make()


def pytest_collection_modifyitems(items):
    for item in items:
        if E2E in Path(item.fspath).parents:
            item.add_marker(pytest.mark.slow)


@pytest.fixture(autouse=True)
def compile_cache_environment():
    """`mgrb run` in a test's own process points torch.compile's caches into its runs folder
    through os.environ (numerics.share_compile_cache): put back after every test. Not with
    monkeypatch: an autouse fixture that asks for it would set it up first and so undo it
    last, after fixtures (a sleeper's) that must clean up without the test's patches."""
    names = ("TORCHINDUCTOR_CACHE_DIR", "TRITON_CACHE_DIR")
    saved = {name: os.environ.get(name) for name in names}
    yield
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture
def sleeper():
    """A real process that no run owns: what a planted pid would name."""
    process = start_sleeper()
    yield process
    stop_process(process)


@pytest.fixture
def signals(monkeypatch):
    """Every signal the launcher sends (other than 0, the liveness probe), caught instead of
    sent: a planted pid 1 must not reach anything even if a check were missed."""
    sent, kill = [], os.kill

    def record_kill(pid, signum):
        if signum == 0:
            return kill(pid, 0)
        sent.append(("kill", pid, signum))

    monkeypatch.setattr(os, "kill", record_kill)
    monkeypatch.setattr(os, "killpg", lambda group, signum: sent.append(("killpg", group, signum)))
    return sent


@pytest.fixture
def single_threaded_runs(monkeypatch):
    """The runs a test launches train with one thread. With torch's default (a thread per
    core), a tiny run's threads wait on one another whenever the launcher or another job holds
    a core: on a busy two-core machine the 30-epoch run of test_artifact_app took 164 s, and
    19 s with one thread."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
