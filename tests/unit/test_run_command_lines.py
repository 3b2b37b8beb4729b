"""The `mgrb run`/`resume` command lines (issue 29): every caller builds them through
mgrb.pipeline.command, and each still produces the lines it produced before that."""

import subprocess
import sys
from pathlib import Path

import docker
import pytest

from artifact.core.docker_runner import DockerRunner
from artifact.core.experiments import load_experiments
from artifact.core.launcher import LocalLauncher
from artifact_helpers import write_experiments
from fake_docker_engine import FakeEngine
from mgrb import cli
from mgrb.pipeline.command import RunLine, run_words, without_nproc
from mgrb.pipeline.isolated import run_command
from mgrb.pipeline.workers import without_nproc as workers_without_nproc

PY = sys.executable


@pytest.fixture(autouse=True)
def _plain_process(monkeypatch):
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):  # --nproc as given
        monkeypatch.delenv(name, raising=False)


def test_every_option_in_its_place():
    line = RunLine("x.yaml", program=("python", "-m", "mgrb.cli"), experiments_dir=Path("exp"),
                   sets=("a=1", "b=2"), out=Path("o"), device="cuda", seed=0, nproc=2, restart=True,
                   quiet=True, extra=("--later",))
    assert run_words(line) == ["python", "-m", "mgrb.cli", "--experiments-dir", "exp", "run", "x.yaml",
                               "--set", "a=1", "--set", "b=2", "--out", "o", "--device", "cuda",
                               "--seed", "0", "--nproc", "2", "--restart", "--quiet", "--later"]
    assert run_words(RunLine("runs/x")) == ["mgrb", "run", "runs/x"]


@pytest.mark.parametrize("options, expected", [
    (dict(seed=None, device="auto", quiet=False),
     ["--device", "auto"]),
    (dict(seed=0, device="cpu", quiet=True),
     ["--device", "cpu", "--seed", "0", "--quiet"]),
    (dict(seed=3, device="cuda", quiet=False, nproc=4),
     ["--device", "cuda", "--seed", "3", "--nproc", "4"]),
    (dict(seed=None, device="cuda:1", quiet=True, nproc=1),
     ["--device", "cuda:1", "--quiet"]),
])
def test_reproduce_runs_each_experiment_as_before(options, expected):
    command = run_command(Path("/e/x y.yaml"), Path("/r/x"), experiments_dir=Path("/e"), **options)
    assert command == [PY, "-m", "mgrb.cli", "--experiments-dir", "/e", "run", "/e/x y.yaml",
                       "--out", "/r/x", *expected]


@pytest.mark.parametrize("argv, expected", [
    (["run", "digits_5_1"], "mgrb run digits_5_1"),
    (["run", "digits_5_1", "--device", "auto"], "mgrb run digits_5_1"),
    (["run", "experiments/x.yaml", "--set", "train.log_every=1", "--set", "train.lr=0.1 ",
      "--out", "runs/a b", "--device", "cpu", "--nproc", "2", "--quiet", "--restart"],
     "mgrb run experiments/x.yaml --set train.log_every=1 --set 'train.lr=0.1 ' "
     "--out 'runs/a b' --device cpu --nproc 2"),
    (["run", "c100", "--seed", "7"], "mgrb run c100 --seed 7"),
    # the two changes from the hand-built hint: --device now precedes --seed, as it does in
    # the commands that run, and an experiment path is quoted like every other word
    (["run", "c100", "--seed", "7", "--device", "cuda:0"], "mgrb run c100 --device cuda:0 --seed 7"),
    (["run", "my exps/x.yaml"], "mgrb run 'my exps/x.yaml'"),
])
def test_the_hint_after_a_stop_of_mgrb_run(argv, expected, monkeypatch):
    monkeypatch.setattr(cli, "_program", lambda: ("mgrb",))
    assert cli._again(cli.build_parser().parse_args(argv)) == expected


@pytest.mark.parametrize("argv, expected", [
    (["resume", "runs/x"], "mgrb resume runs/x"),
    (["resume", "runs/it's", "--device", "cuda", "--nproc", "3", "--quiet"],
     "mgrb resume 'runs/it'\"'\"'s' --device cuda --nproc 3"),
])
def test_the_hint_after_a_stop_of_mgrb_resume(argv, expected, monkeypatch):
    monkeypatch.setattr(cli, "_program", lambda: ("mgrb",))
    assert cli._resume_again(cli.build_parser().parse_args(argv)) == expected


def test_a_torchrun_worker_names_its_world_in_the_hint(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", "29500")
    monkeypatch.setattr(cli, "_program", lambda: ("mgrb",))
    assert cli._again(cli.build_parser().parse_args(["run", "x"])) == "mgrb run x --nproc 2"


def test_the_hint_starts_as_the_command_was_started(tmp_path, monkeypatch):
    """Pasted, the hint runs: `.venv/bin/mgrb` stays that path, `python -m mgrb` this very
    interpreter, and plain `mgrb` where that is what PATH finds."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "mgrb").write_text("#!/bin/sh\n")
    (bin_dir / "mgrb").chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))
    assert cli._program(str(bin_dir / "mgrb")) == ("mgrb",)
    assert cli._program(".venv/bin/mgrb") == (".venv/bin/mgrb",)
    assert cli._program(str(Path(cli.__file__).parent / "__main__.py")) == (sys.executable, "-m", "mgrb")
    args = cli.build_parser().parse_args(["--experiments-dir", "elsewhere", "run", "x"])
    monkeypatch.setattr(cli, "_program", lambda: (".venv/bin/mgrb",))
    assert cli._again(args) == ".venv/bin/mgrb --experiments-dir elsewhere run x"
    # the launcher chooses the run folder through MGRB_RUNS: the hint names it
    assert cli._again(args, Path("/data/runs/x")) == \
        ".venv/bin/mgrb --experiments-dir elsewhere run x --out /data/runs/x"


def test_the_workers_rerun_the_users_words_less_nproc():
    argv = ["--debug", "run", "x.yaml", "--nproc", "2", "--out", "o", "--nproc=3", "--quiet"]
    assert workers_without_nproc is without_nproc
    assert without_nproc(argv) == ["--debug", "run", "x.yaml", "--out", "o", "--quiet"]


class _Started(Exception):
    pass


@pytest.mark.parametrize("gpu, uuid, extra, expected", [
    (None, None, (), ["--device", "cpu"]),
    (0, "GPU-00000000-1111-2222-3333-444444444444", (), ["--device", "cuda"]),
    (1, "GPU-00000000-1111-2222-3333-444444444445", ("--set", "train.epochs=1"),
     ["--device", "cuda", "--set", "train.epochs=1"]),
])
def test_the_launchers_local_runs_as_before(monkeypatch, tmp_path, gpu, uuid, extra, expected):
    folder = write_experiments(tmp_path / "experiments")
    (experiment,) = load_experiments(folder, tmp_path / "runs")
    seen = {}

    def popen(command, **kwargs):
        seen["command"] = command
        raise _Started

    monkeypatch.setattr(subprocess, "Popen", popen)
    with pytest.raises(_Started):
        LocalLauncher(tmp_path / "runs", environ={}).start(experiment, gpu, uuid, extra_args=extra)
    trainer = seen["command"][seen["command"].index("--") + 1:]
    assert trainer == [PY, "-m", "mgrb.cli", "run", str((folder / "tiny.yaml").resolve()), *expected]


@pytest.mark.parametrize("gpus, extra, expected", [
    (None, [], ["--device", "cuda"]),
    ([], ["--epochs", "1"], ["--device", "cpu", "--epochs", "1"]),
    (["GPU-6a1c9f3e-0d2b-4c41-9a77-1f0e8b2c5d10"], (), ["--device", "cuda"]),
])
def test_the_launchers_docker_runs_as_before(tmp_path, gpus, extra, expected):
    engine = FakeEngine()
    client = docker.DockerClient(base_url=engine.base_url, version="1.43")
    try:
        DockerRunner(image="mgrb-artifact:0.1.0", data_dir=tmp_path / "data",
                     runs_dir=tmp_path / "runs", client=client).start(
            experiment="c100_ont_10_10", run="c100_ont_10_10/seed-1", gpus=gpus, extra_args=extra)
        (body,) = [r.body for r in engine.called("POST", "/containers/create")]
    finally:
        client.close()
        engine.close()
    assert body["Cmd"] == ["mgrb", "run", "c100_ont_10_10", "--out", "/runs/c100_ont_10_10/seed-1",
                           *expected]
