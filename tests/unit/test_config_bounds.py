"""Experiment files from elsewhere cannot harm the user: every value is bounded, every YAML
trick is refused by parse_config with a message naming the file, the key and the line."""

import math

import numpy as np
import pytest
import torch
import yaml

from mgrb.store import yamlsafe
from mgrb.config.experiment import load_config, parse_config
from mgrb.config.schema import MAX_SEED, all_settings
from mgrb.data.registry import DATASETS
from mgrb.errors import ConfigError
from test_config import GOOD


BILLION_LAUGHS = """\
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
"""


NUMERIC = {key: field for key, field in all_settings() if field.kind in (int, float)}
LISTS_OF_NUMBERS = {key: field for key, field in all_settings() if field.items is not None}


def _refused(text: str, expected: str, overrides=()):
    with pytest.raises(ConfigError, match=expected):
        parse_config(text, "exp.yaml", list(overrides))


# The values that once reached training and ended in an internal error, or worse.
@pytest.mark.parametrize("override,expected", [
    ("protocol.memory_total=5", r"exp.yaml:4: protocol: keeps 0 images per old class "
                                r"\(memory_total 5 over 10 classes\).*raise memory_total to "
                                r"at least 10"),
    ("protocol.holdout_fraction=100", r"protocol.holdout_fraction: must be below 1, got 100"),
    ("protocol.holdout_fraction=1", r"protocol.holdout_fraction: must be below 1, got 1"),
    ("train.seed=18446744073709551616", r"train.seed: must be at most 4294967295, got "
                                        r"18446744073709551616"),
    ("train.seed=-1", r"train.seed: must be at least 0"),
    ("seeds=[1, 4294967296]", r"seeds\[1\]: must be at most 4294967295"),
    ("protocol.order_seed=-1", r"protocol.order_seed: must be at least 0, got -1"),
    ("method.beta=1e300", r"method.beta: must be at most 1000, got 1e\+300"),
    ("train.lr=1e30", r"train.lr: must be at most 1, got 1e\+30"),
    ("method.temperature=0", r"method.temperature: must be at least 0.01"),
    ("train.augment.rotation=720", r"train.augment.rotation: must be at most 180"),
    ("train.milestones=[8, 100000]", r"train.milestones\[1\]: must be at most 10000"),
    ("seeds=[3, 4, 3]", r"seeds: lists 3 twice"),
])
def test_values_found_harmful_are_refused_before_any_run(override, expected):
    _refused(GOOD, expected, [override])


def test_a_memory_without_exemplars_is_refused_even_without_stage_2_or_rebalancing():
    # Without stage 2 the balanced-set check does not apply; an empty memory still breaks the
    # class-balanced weights (a division by zero) and leaves old classes nothing to replay.
    for extra in ([], ["train.stage2_epochs=0"], ["train.stage2_epochs=0", "method.cbloss=false"]):
        _refused(GOOD, r"protocol: keeps 0 images", ["protocol.memory_total=9", *extra])
    _refused(GOOD, r"keeps 1 images per old class.*holds out 1 of them for stage 2.*lower "
                   r"holdout_fraction", ["protocol.memory_per_class=1",
                                         "protocol.holdout_fraction=0.9999999999"])
    parse_config(GOOD, "exp.yaml", ["protocol.memory_total=20", "train.stage2_epochs=0"])


def test_every_numeric_field_has_an_upper_bound_and_a_default_within_its_bounds():
    for key, field in {**NUMERIC, **{k: f.items for k, f in LISTS_OF_NUMBERS.items()}}.items():
        assert field.maximum is not None or field.below is not None, key
        assert field.minimum is not None, key
    for key, field in NUMERIC.items():
        if field.default is not None:
            assert field.minimum <= field.default <= (field.maximum or field.below), key
    for key, field in LISTS_OF_NUMBERS.items():
        assert field.longest is not None, key


@pytest.mark.parametrize("key", sorted(NUMERIC))
def test_each_bound_is_enforced_and_named(key):
    field = NUMERIC[key]
    if field.below is not None:
        _refused(GOOD, rf"{key}: must be below {field.below:g}", [f"{key}={field.below}"])
        return
    too_big = field.maximum * 2 + 1
    shown = str(field.maximum) if isinstance(field.maximum, int) else f"{field.maximum:g}"
    _refused(GOOD, rf"{key}: must be at most {shown}, got",
             [f"{key}={int(too_big) if field.kind is int else too_big}"])


@pytest.mark.parametrize("key", sorted(LISTS_OF_NUMBERS))
def test_list_items_and_lengths_are_bounded(key):
    field = LISTS_OF_NUMBERS[key]
    _refused(GOOD, rf"{key}\[0\]: must be at most", [f"{key}=[{field.items.maximum + 1}]"])
    _refused(GOOD, rf"{key}\[1\]: must be at least 0", [f"{key}=[1, -1]"])
    _refused(GOOD, rf"{key}: may hold at most {field.longest} items",
             [f"{key}=[{', '.join(['1'] * (field.longest + 1))}]"])


def test_the_seed_range_is_what_numpy_and_torch_both_accept():
    parse_config(GOOD, "exp.yaml", [f"train.seed={MAX_SEED}", f"protocol.order_seed={MAX_SEED}",
                                    f"seeds=[0, {MAX_SEED}]"])
    np.random.RandomState(MAX_SEED)
    torch.Generator().manual_seed(MAX_SEED)
    with pytest.raises(ValueError):
        np.random.RandomState(MAX_SEED + 1)  # why the range stops there


@pytest.mark.parametrize("dataset,initial,increment",
                         [("digits", 5, 1), ("cifar10", 5, 1), ("cifar100", 50, 10),
                          ("miniimagenet", 50, 10), ("imagenet100", 50, 10)])
def test_the_dataset_defaults_are_within_the_bounds(dataset, initial, increment):
    assert DATASETS[dataset].defaults
    text = (f"name: x\ndataset: {{name: {dataset}}}\nprotocol: {{initial: {initial}, "
            f"increment: {increment}}}\nhierarchy: {{kind: vis}}\n")
    parse_config(text, "x.yaml")


def test_an_item_error_names_the_line_of_the_item():
    text = GOOD + "seeds:\n  - 1\n  - 2\n  - 99999999999\n"
    _refused(text, r"exp.yaml:12: seeds\[2\]: must be at most 4294967295, got 99999999999")


def test_a_long_unknown_key_is_shown_briefly_at_its_line():
    with pytest.raises(ConfigError) as error:
        parse_config(GOOD + "x" * 500 + ": 1\n", "exp.yaml")
    assert str(error.value).startswith("exp.yaml:9: " + "x" * 80 + "...: unknown key")


def test_a_huge_number_is_shown_briefly():
    with pytest.raises(ConfigError) as error:
        parse_config(GOOD + "train:\n  epochs: " + "9" * 4000 + "\n", "exp.yaml")
    assert "exp.yaml:10: train.epochs: must be at most 10000" in str(error.value)
    assert len(str(error.value)) < 200


# Duplicate keys: PyYAML silently keeps the last one.
@pytest.mark.parametrize("text,expected", [
    (GOOD + "train:\n  epochs: 3\nmethod:\n  beta: 5\ntrain:\n  lr: 0.1\n",
     r"^exp.yaml:13: train: given twice \(first on line 9\)$"),
    (GOOD + "train:\n  lr: 0.1\n  epochs: 3\n  lr: 0.2\n",
     r"^exp.yaml:12: train.lr: given twice \(first on line 10\)$"),
    (GOOD + "train: {augment: {flip: true, flip: false}}\n",
     r"^exp.yaml:9: train.augment.flip: given twice \(first on line 9\)$"),
    (GOOD.replace("kind: vis", "kind: vis\n  'kind': ont"),
     r"^exp.yaml:9: hierarchy.kind: given twice \(first on line 8\)$"),
])
def test_a_key_given_twice_is_refused_with_both_lines(text, expected):
    _refused(text, expected)


# YAML 1.2 floats: YAML 1.1 (PyYAML) reads 1e-4 as a string.
@pytest.mark.parametrize("written,value", [
    ("1e-4", 1e-4), ("1E-3", 1e-3), ("5e-2", 0.05), ("1.5e-3", 1.5e-3), ("+2e-1", 0.2),
    ("1.0e-05", 1e-5), ("0.001", 1e-3), (".5e-1", 0.05),
])
def test_exponent_floats_are_numbers_in_files_and_overrides(written, value):
    config = parse_config(GOOD + f"train:\n  lr: {written}\n", "exp.yaml")
    assert config.train.lr == pytest.approx(value)
    config = parse_config(GOOD, "exp.yaml", [f"train.lr={written}"])
    assert config.train.lr == pytest.approx(value)


def test_the_loader_reads_what_yaml_1_2_reads():
    loaded = yamlsafe.load("a: -2.5e+3\nb: 1E5\nc: 12\nd: 1e\ne: 2024-01-01\nf: e5\ng: 1_0e1\n")
    assert loaded == {"a": -2500.0, "b": 1e5, "c": 12, "d": "1e", "e": "2024-01-01",
                      "f": "e5", "g": 100.0}
    assert yaml.safe_load("a: 1e-4") == {"a": "1e-4"}  # PyYAML itself is left as it was


def test_a_billion_laughs_is_refused_at_the_first_anchor(tmp_path, monkeypatch):
    composed = []
    compose_node = yaml.composer.Composer.compose_node

    def counting(self, parent, index):
        composed.append(index)
        return compose_node(self, parent, index)

    monkeypatch.setattr(yaml.composer.Composer, "compose_node", counting)
    path = tmp_path / "bomb.yaml"
    path.write_text(BILLION_LAUGHS)
    with pytest.raises(ConfigError, match=r"bomb.yaml:1: anchors and aliases \(&name, \*name\) "
                                          r"are not accepted"):
        load_config(path)
    assert len(composed) < 5  # the root and the key `a`: nothing was expanded


@pytest.mark.parametrize("text,expected", [
    (GOOD + "train: &t {epochs: 3}\n", r"exp.yaml:9: anchors and aliases"),
    (GOOD + "train: {epochs: *e}\n", r"exp.yaml:9: anchors and aliases"),
    # a merge key slips a second value past the repeated-key check (issue 28)
    (GOOD + "method: {<<: {beta: 5}, beta: 6}\n", r"exp.yaml:9: method: merge keys \(<<\) are not "
                                                  r"accepted"),
])
def test_anchors_and_aliases_are_refused(text, expected):
    if expected is None:
        assert parse_config(text, "exp.yaml").method.beta == 6.0
    else:
        _refused(text, expected)


def test_an_override_reads_values_with_the_same_loader():
    _refused(GOOD, r"--set train.milestones: cannot read value '&a \[1\]': anchors",
             ["train.milestones=&a [1]"])
    _refused(GOOD, r"--set train.milestones: cannot read value .*nested deeper",
             ["train.milestones=" + "[" * 50 + "]" * 50])


def test_a_file_too_large_is_refused_without_reading_it_all(tmp_path):
    path = tmp_path / "big.yaml"
    path.write_text(GOOD + "description: " + "x" * 5_000_000 + "\n")
    with pytest.raises(ConfigError, match=r"big.yaml: larger than 100,000 bytes"):
        load_config(path)
    _refused(GOOD + "#" * yamlsafe.MAX_CHARS, r"^exp.yaml: is 100,096 characters long; an "
                                              r"experiment file may hold at most 100,000$")


def test_a_folder_is_not_an_experiment_file(tmp_path):
    with pytest.raises(ConfigError, match="not a regular file"):
        load_config(tmp_path)


@pytest.mark.parametrize("text,expected", [
    ("a: " + "[" * 10_000 + "]" * 10_000, r"exp.yaml:1: nested deeper than 20 levels"),
    ("a:\n" + "".join("  " * depth + f"k{depth}:\n" for depth in range(1, 40)),
     r"exp.yaml:\d+: nested deeper than 20 levels"),
    (GOOD + "train:\n  epochs: !!int many\n", r"exp.yaml:10: cannot read many: invalid literal"),
    (GOOD + "train:\n  lr: !!float fast\n", r"exp.yaml:10: cannot read fast"),
    (GOOD + "description: !!timestamp soon\n", r"exp.yaml:9: cannot read soon"),
    (GOOD + "train:\n  epochs: " + "9" * 5000 + "\n", r"exp.yaml:10: cannot read 9999.*limit"),
    (GOOD + "description: !!python/object/apply:os.system [echo]\n",
     r"exp.yaml:9: not valid YAML: could not determine a constructor"),
    (GOOD + "? [a]\n: 1\n", r"exp.yaml:9: not valid YAML"),
    (GOOD + "---\nname: other\n", r"exp.yaml:9: not valid YAML"),
])
def test_yaml_that_pyyaml_chokes_on_is_a_config_error(text, expected):
    _refused(text, expected)


def test_a_date_is_text_as_in_yaml_1_2():
    config = parse_config(GOOD + "description: 2001-13-45\nprovenance: 2024-05-01\n", "exp.yaml")
    assert (config.description, config.provenance) == ("2001-13-45", "2024-05-01")


def test_non_finite_numbers_are_refused():
    for value in (".nan", ".inf", "-.inf", "1e400"):
        _refused(GOOD + f"train:\n  lr: {value}\n", r"exp.yaml:10: train.lr: must be a finite")
    assert math.isinf(yamlsafe.load("1e400"))


def test_a_bad_set_value_is_blamed_on_set_not_on_a_line_of_the_file(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(GOOD + "train:\n  lr: 0.001\n")
    with pytest.raises(ConfigError) as raised:
        load_config(path, ["train.lr=1e30"])
    assert str(raised.value) == f"--set train.lr: must be at most 1, got 1e+30 (in {path})"
