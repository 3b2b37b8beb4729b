"""`mgrb run --nproc N`'s process handling (mgrb/pipeline/workers.py), with plain Python
processes standing in for the run's: a failure takes the others down, a stop reaches each
once, exit statuses are kept."""

import signal
import subprocess
import sys
import time

import pytest

from mgrb.cli import main
from mgrb.pipeline import workers


def test_without_nproc_drops_both_spellings():
    argv = ["--debug", "run", "x.yaml", "--nproc", "2", "--out", "o", "--nproc=3", "--quiet"]
    assert workers.without_nproc(argv) == ["--debug", "run", "x.yaml", "--out", "o", "--quiet"]


def _python(code: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", code])


def test_a_failed_process_stops_the_others_and_its_status_is_returned():
    waiting = _python("import time; time.sleep(120)")
    failing = _python("import sys; sys.exit(3)")
    started = time.monotonic()
    assert workers._wait([waiting, failing]) == 3
    assert waiting.poll() == -signal.SIGTERM
    assert time.monotonic() - started < 60


def test_a_process_killed_by_a_signal_counts_as_a_failure():
    killed = _python("import os, signal; os.kill(os.getpid(), signal.SIGKILL)")
    assert workers._wait([killed]) == 1


def test_all_stopped_gives_130_and_all_finished_gives_0():
    assert workers._wait([_python("import sys; sys.exit(130)") for _ in range(2)]) == 130
    assert workers._wait([_python("pass") for _ in range(2)]) == 0


def test_nproc_must_be_a_positive_count(capsys):
    with pytest.raises(SystemExit) as stopped:
        main(["run", "digits_5_1", "--nproc", "0"])
    assert stopped.value.code == 2
    assert "--nproc" in capsys.readouterr().err


def test_one_named_gpu_with_several_processes_is_refused_before_any_starts(capsys):
    code = main(["run", "digits_5_1", "--nproc", "2", "--device", "cuda:1"])
    err = capsys.readouterr().err
    assert code == 2 and "--device cuda:1 names one GPU, and --nproc 2" in err
    assert "Traceback" not in err
