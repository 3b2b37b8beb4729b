"""benchmarks/peer_replay.py, the parts that are ours: what it hands the peer library, the
result files, and its refusals. Avalanche itself is not needed (CI does not have it)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from benchmarks import peer_replay
from benchmarks.peer_replay import PeerBenchError
from mgrb.config.experiment import load_config
from mgrb.data.digits import load_digits_data
from mgrb.data.protocol import (EXEMPLAR, HOLDOUT, PhasePlan, class_order, memory_roles,
                                memory_sizes, phase_split)

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def config():
    return load_config(peer_replay.EXPERIMENT)


@pytest.fixture(scope="module")
def handed(config):
    return peer_replay.peer_inputs(config)


def test_the_peer_gets_our_loaders_tensors_less_the_holdout_in_data_set_order(config, handed):
    data = load_digits_data()
    assert handed["order"] == class_order(10, 1993) == [4, 2, 7, 6, 0, 3, 5, 8, 9, 1]
    assert torch.equal(handed["test_images"], data.test_images)
    assert torch.equal(handed["test_classes"], data.test_labels)
    # Each class loses its first training image (the balanced hold-out), nothing else moves.
    dropped = torch.stack([(data.train_labels == c).nonzero().flatten()[0] for c in range(10)])
    kept = torch.ones(len(data.train_labels), dtype=torch.bool)
    kept[dropped] = False
    assert torch.equal(handed["train_images"], data.train_images[kept])
    assert torch.equal(handed["train_classes"], data.train_labels[kept])
    assert (handed["mean"], handed["std"]) == (list(data.mean), list(data.std))


def test_the_first_six_of_each_class_handed_are_our_exemplars(handed):
    """What the peer's buffer picks (the first images of a class in the order handed) must be
    exactly the images our protocol marks as exemplars."""
    classes, exemplar = handed["train_classes"], handed["exemplar"]
    for c in range(10):
        positions = (classes == c).nonzero().flatten()
        assert exemplar[positions[:6]].all() and not exemplar[positions[6:]].any()
    assert int(exemplar.sum()) == 60


def test_every_experience_trains_on_our_phase_images(config, handed):
    """Experience p of the peer: the handed images of the phase's classes, plus the exemplars of
    the classes before; as indices into our training set, exactly our phase_split's."""
    data = load_digits_data()
    order = handed["order"]
    label_of = torch.empty(10, dtype=torch.long)
    label_of[torch.tensor(order)] = torch.arange(10)
    labels = label_of[data.train_labels]
    per_class, holdout = memory_sizes(10, config.protocol.memory_total, None,
                                      config.protocol.holdout_fraction)
    roles = memory_roles(labels, per_class, holdout, "first")
    original = (roles != HOLDOUT).nonzero().flatten()  # handed position -> our index
    handed_labels = label_of[handed["train_classes"]]
    protocol = PhasePlan(10, 5, 1)
    assert handed["settings"]["classes_per_phase"] == [5, 1, 1, 1, 1, 1]
    for phase in range(protocol.num_phases):
        old, seen = protocol.old(phase), protocol.seen(phase)
        new = (handed_labels >= old) & (handed_labels < seen)
        memory = handed["exemplar"] & (handed_labels < old)
        peer = set(original[new | memory].tolist())
        ours = phase_split(protocol, phase, labels, roles, label_of[data.test_labels]).train
        assert peer == set(ours.tolist())
        assert int(((roles == EXEMPLAR) & (labels < old))[sorted(peer)].sum()) == 6 * old


def test_the_settings_are_the_files(config, handed):
    settings = handed["settings"]
    assert settings["exemplars_per_class"] + settings["holdout_per_class"] == 7
    assert (settings["exemplars_per_class"], settings["holdout_per_class"]) == (6, 1)
    train = config.train
    assert (settings["lr"], settings["weight_decay"], settings["batch_size"], settings["epochs"],
            settings["milestones"], settings["lr_decay"], settings["warmup_epochs"]) == (
        train.lr, train.weight_decay, train.batch_size, train.epochs, list(train.milestones),
        train.lr_decay, train.warmup_epochs)
    assert settings["augment"] == {"crop_padding": 1, "flip": False, "rotation": 10}
    assert settings["backbone"] == "resnet_small"


def test_the_starting_weights_digest_follows_the_seed(handed):
    settings = handed["settings"]
    first = peer_replay.initial_weights_digest(settings, 1993)
    assert peer_replay.initial_weights_digest(settings, 1993) == first
    assert peer_replay.initial_weights_digest(settings, 1994) != first


@pytest.mark.parametrize("override,named", [
    ("method.losses=ce+distill", "method.losses"),
    ("quirks.fresh_classifier=true", "fresh_classifier"),
    ("method.decouple=true", "decouple"),
])
def test_anything_but_plain_replay_is_refused(override, named):
    config = load_config(peer_replay.EXPERIMENT, [override])
    with pytest.raises(PeerBenchError, match=named):
        peer_replay.check_plain_replay(config)


def test_the_plain_replay_file_is_accepted(config):
    peer_replay.check_plain_replay(config)


def test_our_side_is_a_command_mgrb_run_accepts():
    from mgrb.cli import build_parser

    command = peer_replay.ours_command(peer_replay.EXPERIMENT, 1994, Path("out"))
    assert command[1:4] == ["-m", "mgrb", "run"]
    args = build_parser().parse_args(command[3:])
    assert (args.seed, args.out, args.device, args.quiet) == (1994, Path("out"), "cpu", True)


def report() -> dict:
    runs = {"1993": {"top1": [98.0, 90.0], "avg_top1": 94.0, "last_top1": 90.0},
            "1994": {"top1": [96.0, 92.0], "avg_top1": 94.0, "last_top1": 92.0},
            "1995": {"top1": [97.0, 94.0], "avg_top1": 95.5, "last_top1": 94.0}}
    row = {"label": "mgrb run", "seeds": runs, **peer_replay.summarise_row(runs)}
    return {"format": 1, "benchmark": "peer-replay", "measured_at": "2026-01-01 00:00:00 UTC",
            "seconds": 12.0, "command": "python -m benchmarks.peer_replay",
            "experiment": "experiments/demo/digits_replay_keep.yaml",
            "machine": {"cpu": "test CPU", "cores": 2, "torch_threads": 2},
            "protocol": {"classes_per_phase": [5, 5]},
            "versions": {"ours": {"torch": "2.14.1"}, "peer": {"avalanche-lib": "0.6.0"}},
            "rows": {"ours": row, "avalanche-concat": row}, "differences": ["a difference"],
            "checks": ["a check"]}


def test_mean_and_sample_std_over_seeds():
    row = report()["rows"]["ours"]
    assert row["last_top1"] == {"mean": 92.0, "std": 2.0}
    assert row["avg_top1"]["mean"] == 94.5


def test_the_result_files_round_trip(tmp_path):
    written = report()
    paths = peer_replay.write_results(written, tmp_path)
    assert [p.name for p in paths] == ["peer-replay-cpu.json", "peer-replay-cpu.md"]
    assert peer_replay.read_results(paths[0]) == written
    text = paths[1].read_text()
    assert "| ours: mgrb run | 94.00 / 90.00 | 94.00 / 92.00 | 95.50 / 94.00 | 94.50 ± 0.87 | " \
           "92.00 ± 2.00 |" in text
    assert "- a difference" in text and "- a check" in text
    assert not list(tmp_path.glob(".*.tmp"))  # the atomic writes left no temporary behind
    table = "\n".join(peer_replay.table_lines(written))
    assert "94.50 ± 0.87" in table and "avalanche-concat" in table


@pytest.mark.parametrize("content,message", [
    (None, "no such file"),
    ("{not json", "not JSON"),
    (json.dumps({"format": 99}), "format 1"),
    (json.dumps({"format": 1, "rows": {}}), "lacks"),
])
def test_damaged_result_files_are_refused_with_a_message(tmp_path, content, message):
    path = tmp_path / "peer-replay-cpu.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(PeerBenchError, match=message):
        peer_replay.read_results(path)


def test_a_row_without_numbers_is_refused(tmp_path):
    broken = report()
    del broken["rows"]["ours"]["seeds"]["1994"]["last_top1"]
    path = tmp_path / "peer-replay-cpu.json"
    path.write_text(json.dumps(broken))
    with pytest.raises(PeerBenchError, match="row 'ours', seed 1994"):
        peer_replay.read_results(path)


def run_bench(*args, tmp_path):
    return subprocess.run([sys.executable, "-m", "benchmarks.peer_replay", "--out", str(tmp_path),
                           *args], cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_a_python_without_avalanche_is_refused_before_any_training(tmp_path):
    done = run_bench("--peer-python", sys.executable, tmp_path=tmp_path)
    assert done.returncode == 2
    assert "cannot import Avalanche" in done.stderr and "make peer-bench" in done.stderr
    assert "Traceback" not in done.stderr
    assert not list(tmp_path.iterdir())


def test_a_missing_peer_environment_says_how_to_make_it(tmp_path):
    done = run_bench("--peer-python", str(tmp_path / "none" / "python"), tmp_path=tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "make peer-bench" in done.stderr


def test_a_seed_the_file_does_not_list_is_refused(tmp_path, capsys):
    assert peer_replay.main(["--seeds", "7", "--out", str(tmp_path)]) == 2
    assert "--seeds [7]" in capsys.readouterr().err


@pytest.mark.parametrize("args", [["--seeds", "x"], ["--variants", "herding"],
                                  ["--experiment", "no-such.yaml"]])
def test_bad_arguments_exit_with_usage(args):
    with pytest.raises(SystemExit) as exit:
        peer_replay.parse(args)
    assert exit.value.code == 2


def test_a_non_empty_keep_folder_is_refused(tmp_path):
    (tmp_path / "old-run").mkdir()
    with pytest.raises(SystemExit):
        peer_replay.parse(["--keep", str(tmp_path)])


def test_the_replay_rows_difference_is_computed_from_the_phases_images(handed):
    """Avalanche's ReplayPlugin replays min(memory, 64) exemplars with every step of up to 64
    new images: phase 2 has 152 new images (3 steps) and 30 exemplars, 90 replayed an epoch,
    37% of 242; phase 6 151 new and 54 exemplars, 162 of 313, 52%. Ours: 30 of 182, 54 of 205."""
    images = [741, 182, 187, 185, 197, 205]
    found = peer_replay.differences(handed["settings"], images, ["replay", "concat"])
    replay = [text for text in found if text.startswith("replay row")]
    assert len(replay) == 1
    assert "37-52% of an epoch's images instead of 16-26% in ours" in replay[0]
    assert "(3 steps)" in replay[0] and "3 to 4 batches of 64" in replay[0]
    without = peer_replay.differences(handed["settings"], images, ["concat"])
    assert not [text for text in without if text.startswith("replay row")]
    assert len(without) == len(found) - 1


def test_the_peer_environment_is_pinned_and_keeps_our_torch():
    """Every peer package is pinned; torch and torchvision come only from the variant's pins
    (requirements/pins.txt or pins-cu12.txt, given as a constraint), and the peer's install
    goes into .venv-peer, never .venv."""
    lines = [line for line in (ROOT / "requirements" / "peer.txt").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    names = {line.split("==")[0].lower() for line in lines}
    assert all("==" in line for line in lines) and "avalanche-lib" in names
    assert not names & {"torch", "torchvision"}
    makefile = (ROOT / "Makefile").read_text()
    recipe = makefile[makefile.index("\n$(PEER_VENV)/.installed:"):]
    assert ("$(PEER_VENV)/bin/python -m pip install --quiet --constraint $(PINS) "
            "-r requirements/peer.txt") in recipe
    assert "PINS := requirements/pins$(if $(filter 12,$(CUDA)),-cu12).txt" in makefile
    assert "PEER_VENV := .venv-peer" in makefile and "peer-bench" in makefile.split("\nhelp:")[0]
