"""Experiment files: every mistake gets one message naming the file, the key and the line."""

from pathlib import Path

import pytest

from mgrb.config.experiment import load_config, parse_config
from mgrb.config.schema import Augmentation, Quirks
from mgrb.errors import ConfigError

EXPERIMENTS = sorted(Path(__file__).parents[2].glob("experiments/*.yaml"))

GOOD = """\
name: tiny
dataset:
  name: digits
protocol:
  initial: 5
  increment: 1
hierarchy:
  kind: vis
"""


@pytest.mark.parametrize("path", EXPERIMENTS, ids=[p.stem for p in EXPERIMENTS])
def test_every_experiment_file_validates(path):
    config = load_config(path)
    assert config.name == path.stem


def test_dataset_defaults_fill_what_the_file_leaves_out():
    config = parse_config(GOOD.replace("digits", "cifar100").replace("initial: 5", "initial: 10")
                          .replace("increment: 1", "increment: 10"))
    assert config.train.epochs == 250
    assert config.train.milestones == (70, 140, 210)
    assert config.model.backbone == "resnet34"
    assert config.train.augment == Augmentation(crop_padding=4, flip=True, rotation=15.0,
                                                random_resized_crop=False)


def test_quirk_defaults_reproduce_the_original_code():
    quirks = parse_config(GOOD).quirks
    assert quirks == Quirks(cb_reduction="sum", cb_new_class_count="full_dataset",
                            tree_depth_stage1=2, tree_depth_stage2=18, cifar10_vis_clusters=2,
                            fresh_classifier=True)


def test_overrides_apply_before_validation():
    config = parse_config(GOOD, overrides=["train.epochs=3", "method.beta=50"])
    assert config.train.epochs == 3 and config.method.beta == 50.0
    with pytest.raises(ConfigError, match="--set train.epox: unknown key"):
        parse_config(GOOD, overrides=["train.epox=3"])
    with pytest.raises(ConfigError, match="train.epochs: must be an integer"):
        parse_config(GOOD, overrides=["train.epochs=many"])


@pytest.mark.parametrize("text,expected", [
    (GOOD + "colour: red\n", r"exp.yaml:9: colour: unknown key"),
    (GOOD.replace("  increment: 1", "  increment: 1\n  incremnt: 2"),
     r"exp.yaml:7: protocol.incremnt: unknown key \(did you mean increment\?\); "
     r"expected one of: initial, increment"),
    (GOOD + "train:\n  lr: fast\n", r"exp.yaml:10: train.lr: must be a number, got 'fast'"),
    (GOOD + "method:\n  cbloss: 1\n", r"exp.yaml:10: method.cbloss: must be true or false"),
    (GOOD.replace("increment: 1", "increment: 2"),
     r"exp.yaml:4: protocol: impossible for digits \(10 classes\)"),
    (GOOD.replace("digits", "svhn"), r"exp.yaml:3: dataset.name: must be one of cifar10"),
    (GOOD.replace("  name: digits\n", ""), r"exp.yaml:2: dataset.name: is required"),
    (GOOD + "  bad: [\n", r"exp.yaml:10: not valid YAML"),
    (GOOD.replace("kind: vis", "kind: ont"), r"hierarchy.kind: ont needs a class ontology"),
    (GOOD.replace("kind: vis", "kind: none"), r"hierarchy.kind: is none but method.losses"),
    (GOOD.replace("kind: vis", "kind: sem"), r"hierarchy.kind: sem needs WordNet synsets"),
    (GOOD.replace("name: tiny", "name: ../evil"), r"name: '../evil' may hold only"),
    ("", r"exp.yaml: the file is empty"),
    ("- a\n- b\n", r"exp.yaml: must be a mapping"),
    (GOOD + "train: 5\n", r"train: must be a mapping of keys"),
    (GOOD + "train:\n  lr: 0.1\ntrain:\n  epochs: 3\n",
     r"exp.yaml:11: train: given twice \(first on line 9\)"),
    (GOOD + "train:\n  lr: 1e30\n", r"exp.yaml:10: train.lr: must be at most 1, got 1e\+30"),
    (GOOD + "a: &a [1]\nb: *a\n", r"exp.yaml:9: anchors and aliases"),
])
def test_bad_files_get_one_clear_message(text, expected):
    with pytest.raises(ConfigError, match=expected):
        parse_config(text, "exp.yaml")


def test_exponent_floats_without_a_dot_are_numbers():
    assert parse_config(GOOD + "train:\n  lr: 1e-4\n").train.lr == 1e-4
    assert parse_config(GOOD, overrides=["train.weight_decay=5E-2"]).train.weight_decay == 0.05


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="no such experiment file"):
        load_config(tmp_path / "nope.yaml")


def test_a_memory_too_small_for_a_balanced_set_is_refused_when_stage_2_needs_one():
    text = ("name: x\ndataset: {name: cifar100}\nprotocol: {initial: 50, increment: 10, "
            "memory_total: 500}\nhierarchy: {kind: ont}\n")
    with pytest.raises(ConfigError, match="keeps 5 images per old class.*no balanced set"):
        parse_config(text, "x.yaml")
    parse_config(text, "x.yaml", ["train.stage2_epochs=0"])  # no stage 2: nothing to refuse


@pytest.mark.parametrize("text,overrides,expected", [
    (GOOD + "train:\n  epohcs: 3\n", [], r"train.epohcs: unknown key \(did you mean epochs\?\)"),
    (GOOD, ["train.epoch=3"], r"--set train.epoch: unknown key \(did you mean train.epochs\?\)"),
    (GOOD, ["mehtod.beta=3"], r"--set mehtod.beta: unknown key \(did you mean method\?\)"),
    (GOOD + "hierarchi:\n  kind: vis\n", [], r"hierarchi: unknown key \(did you mean hierarchy\?\)"),
])
def test_a_misspelt_key_gets_the_closest_real_one(text, overrides, expected):
    with pytest.raises(ConfigError, match=expected):
        parse_config(text, "exp.yaml", overrides)


def test_a_key_like_no_other_gets_no_suggestion():
    with pytest.raises(ConfigError) as error:
        parse_config(GOOD + "zzzz: 1\n", "exp.yaml")
    assert "did you mean" not in str(error.value)


def test_a_misspelt_experiment_name_gets_the_closest_file(tmp_path, capsys):
    from mgrb.cli import main

    (tmp_path / "digits_5_1.yaml").write_text(GOOD)
    code = main(["--experiments-dir", str(tmp_path), "run", "digts_5_1"])
    assert code == 2
    assert "(did you mean digits_5_1?)" in capsys.readouterr().err
