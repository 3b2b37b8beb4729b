"""The validated configuration is a tree of frozen dataclasses, and the validator's schema is
derived from them: one home for every setting's type, default and bounds."""

import dataclasses
from pathlib import Path

import pytest
import yaml

from mgrb.config import Experiment, load_config, parse_config
from mgrb.config.schema import ABSENT_MEANS, SCHEMA, Method, Train, all_settings, build, schema_of
from mgrb.store.runfolder import with_absent

EXPERIMENTS = Path(__file__).parents[2] / "experiments"
DIGITS = EXPERIMENTS / "digits_5_1.yaml"


def test_a_validated_experiment_is_frozen_all_the_way_down():
    config = load_config(DIGITS)
    assert isinstance(config, Experiment)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.train.lr = 1.0
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.train = None
    assert isinstance(config.train.milestones, tuple)  # no list to mutate in place
    hash(config)  # every value is immutable, so the whole tree hashes


def test_types_and_nullability_come_from_the_annotations():
    fields = dict(all_settings())
    assert fields["train.lr"].kind is float and not fields["train.lr"].nullable
    assert fields["quirks.tree_depth_stage1"].kind is int and fields["quirks.tree_depth_stage1"].nullable
    assert fields["seeds"].kind is list and fields["seeds"].nullable
    assert fields["seeds"].items.kind is int and fields["seeds"].items.maximum == 2**32 - 1
    assert fields["train.channels_last"].kind == (bool, str)
    assert fields["name"].required and fields["dataset.name"].required
    assert not fields["train.epochs"].required and fields["train.epochs"].default == 250
    assert fields["train.milestones"].default == [70, 140, 210]  # as a file would write it


def test_every_setting_of_the_schema_is_a_field_of_the_classes_and_back():
    config = load_config(DIGITS)
    plain = config.to_dict()
    assert [key for key, _ in all_settings()] == list(_flat(plain))
    assert schema_of(Experiment) == SCHEMA


def _flat(data, prefix=""):
    for key, value in data.items():
        if isinstance(value, dict):
            yield from _flat(value, f"{prefix}{key}.")
        else:
            yield prefix + key


def test_plain_data_round_trips_through_yaml_and_back_to_the_same_experiment():
    config = load_config(DIGITS)
    text = yaml.safe_dump(config.to_dict(), sort_keys=False)
    assert parse_config(text, "round.yaml") == config
    assert build(Experiment, config.to_dict()) == config
    assert isinstance(config.to_dict()["train"]["milestones"], list)


def test_with_seed_changes_only_the_training_seed():
    config = load_config(DIGITS)
    seeded = config.with_seed(7)
    assert seeded.train.seed == 7 and config.train.seed == 1993
    assert dataclasses.replace(seeded.train, seed=config.train.seed) == config.train
    assert seeded.method is config.method


def test_sections_have_usable_defaults_for_code_that_builds_them_directly():
    assert Train().lr == 1e-3 and Train().augment.crop_padding == 0
    assert Method(losses="ce+distill").uses_hierarchy is False
    assert Method().uses_hierarchy is True


def test_reported_figures_are_none_without_a_paper_number():
    assert load_config(DIGITS).reported.figures() is None
    paper = load_config(EXPERIMENTS / "c100_ont_10_10.yaml").reported.figures()
    assert paper == {"avg_top1": 61.02, "last_top1": 45.81, "tolerance": 2.0}


def test_config_yaml_is_byte_for_byte_what_the_dict_based_code_wrote():
    # Written by the code before the typed configuration (commit ce6e72d): a run folder it
    # made must resume, so `RunFolder.prepare` must see the same configuration.
    # Settings added since (schema.ABSENT_MEANS) are absent from it, and taken to have the
    # value that reproduces the older code.
    before = (Path(__file__).parents[1] / "data" / "config_yaml_before_typed_config.yaml").read_text()
    now = load_config(EXPERIMENTS / "c100_ont_10_10.yaml").to_dict()
    added = {dotted.split(".")[-1] for dotted in ABSENT_MEANS}
    shown_before = [line for line in yaml.safe_dump(now, sort_keys=False).splitlines()
                    if line.strip().split(":")[0] not in added]
    # train.compile's default went from false to auto; it may change on resume (it changes
    # kernels, not the method), so an older folder still resumes (the next test)
    assert "\n".join(shown_before).replace("compile: auto", "compile: false") + "\n" == before
    old = with_absent(yaml.safe_load(before), ABSENT_MEANS)
    assert old["train"].pop("compile") is False and now["train"].pop("compile") == "auto"
    # the original's schedule became the default later (docs/method.md section 3): an older
    # folder holds the schedule it ran, which differs
    for quirk in ("late_decay", "warmup_backbone_only"):
        assert old["quirks"].pop(quirk) is False and now["quirks"].pop(quirk) is True
    assert old == now


def test_a_run_folder_from_before_the_added_settings_resumes_only_where_they_change_nothing(tmp_path):
    from mgrb.errors import RunFolderError
    from mgrb.store.runfolder import RunFolder

    before = yaml.safe_load((Path(__file__).parents[1] / "data" / "config_yaml_before_typed_config.yaml")
                            .read_text())
    folder = RunFolder(tmp_path / "old")
    folder.path.mkdir()
    (folder.path / "config.yaml").write_text(yaml.safe_dump(before, sort_keys=False))
    current = load_config(EXPERIMENTS / "c100_ont_10_10.yaml").to_dict()
    with pytest.raises(RunFolderError, match=r"differs in: quirks\.late_decay, quirks\.warmup_backbone_only"):
        folder.prepare(current, absent_means=ABSENT_MEANS)  # today's default schedule is another
    old_schedule = dict(current["quirks"], late_decay=False, warmup_backbone_only=False)
    folder.prepare(dict(current, quirks=old_schedule), absent_means=ABSENT_MEANS)
    mini = dict(before, dataset={"name": "miniimagenet"})
    (folder.path / "config.yaml").write_text(yaml.safe_dump(mini, sort_keys=False))
    changed = load_config(EXPERIMENTS / "c100_ont_10_10.yaml").to_dict()
    changed.update(dataset=mini["dataset"], train=dict(changed["train"], stage2_augment=True),
                   quirks=dict(old_schedule, opencv_bgr=True))
    with pytest.raises(RunFolderError, match=r"differs in: quirks\.opencv_bgr, train\.stage2_augment"):
        folder.prepare(changed, absent_means=ABSENT_MEANS)
