"""Property tests: random and mutated experiment files never raise anything but ConfigError,
and whatever loads lies within every bound of the schema."""

import math
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mgrb.config.experiment import parse_config
from mgrb.config.schema import SCHEMA, Experiment, Field, all_settings
from mgrb.errors import ConfigError

BASE = yaml.safe_load((Path(__file__).parents[2] / "experiments" / "digits_5_1.yaml").read_text())

# Integers around every bound that matters: 32 and 64 bits, float overflow, and far beyond.
huge_integers = st.one_of(st.integers(-(2**200), 2**200),
                          st.sampled_from([2**32 - 1, 2**32, 2**63, 2**64, -1, 10**309, -(10**400)]))
scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), huge_integers,
                    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=20))
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=12)

# Scalars as YAML text that PyYAML reads in surprising ways, or not at all.
TRICKY_SCALARS = [
    "1e-4", "1E5", "-2.5e+3", "1e400", "-1e400", ".nan", ".inf", "-.inf", "0x1F", "0o17",
    "0b101", "1:30", "1_000", "~", "null", "yes", "off", "2001-13-45", "2024-05-01",
    "2001-12-14t21:59:43.10-05:00", "!!int x", "!!float y", "!!timestamp z", "!!binary AAA",
    "!!binary !!", "!!str 5", "!!set {a}", "!!omap [a]", "!!python/name:os.system",
    "!!python/object/apply:os.system [echo]", "!custom 1", "9" * 5000, "-" + "9" * 400,
    "'quoted'", '"\\u0041\\x00"', "<<", "? [a]", "=",
    "18446744073709551616", "4294967296", "-1", "0", "1",
]
KEY_NAMES = sorted(set("name dataset protocol train method hierarchy seeds augment epochs lr "
                       "beta seed initial memory_total holdout_fraction milestones kind".split())
                   | {"a", "<<", "1", "null", "'train'", "[x]"})


def _scalar_text(value) -> str:
    return yaml.safe_dump([value], default_flow_style=True, width=10**6).strip()[1:-1]


# Plausible values too, so that many files load and their bounds get checked.
plausible = st.one_of(st.integers(0, 300), st.floats(0, 2), st.sampled_from(["1e-4", "5E-2"]))
scalar_texts = st.one_of(st.sampled_from(TRICKY_SCALARS), scalars.map(_scalar_text),
                         plausible.map(str))


def _flow(scalar_texts, *extra):
    """YAML flow collections of `scalar_texts`, nested, single-line."""
    return st.recursive(scalar_texts, lambda inner: st.one_of(
        st.lists(inner, max_size=4).map(lambda items: "[" + ", ".join(items) + "]"),
        st.lists(st.tuples(st.sampled_from(KEY_NAMES), inner), max_size=4).map(
            lambda pairs: "{" + ", ".join(f"{key}: {value}" for key, value in pairs) + "}"),
        *(make(inner) for make in extra)), max_leaves=10)


flow_texts = _flow(scalar_texts)
# Anchors, aliases to them (defined or not, recursive or not), nested in each other.
anchored_texts = _flow(st.one_of(scalar_texts, st.sampled_from(["*a", "*b", "&a 1", "&b [1, *b]"])),
                       lambda inner: st.tuples(st.sampled_from(["&a ", "&b ", "&c "]),
                                               inner).map("".join))


FIELDS = dict(all_settings())
KEYS = sorted(FIELDS)


def _within(value, field: Field, key: str) -> None:
    if value is None:
        assert field.nullable, key
        return
    if field.kind in (int, float):
        assert isinstance(value, field.kind) and not isinstance(value, bool), key
        assert math.isfinite(value), key
        assert field.minimum is None or value >= field.minimum, key
        assert field.maximum is None or value <= field.maximum, key
        assert field.below is None or value < field.below, key
    if field.items is not None:
        assert field.longest is None or len(value) <= field.longest, key
        for item in value:
            _within(item, field.items, key)


def _assert_within_bounds(config: Experiment) -> None:
    for key, field in FIELDS.items():
        value = config
        for part in key.split("."):
            value = getattr(value, part)
        _within(value, field, key)


def _parse(text: str, overrides=()) -> None:
    try:
        config = parse_config(text, "fuzz.yaml", list(overrides))
    except ConfigError as error:
        assert str(error).startswith(("fuzz.yaml", "--set"))
    else:
        _assert_within_bounds(config)


def _with_field(key: str, value) -> dict:
    document = yaml.safe_load(yaml.safe_dump(BASE))
    node = document
    *parents, last = key.split(".")
    for part in parents:
        if not isinstance(node.get(part), dict):
            node[part] = {}
        node = node[part]
    node[last] = value
    return document


def test_the_base_file_loads_and_is_within_bounds():
    _assert_within_bounds(parse_config(yaml.safe_dump(BASE), "fuzz.yaml"))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=200))
def test_arbitrary_text(text):
    _parse(text)


@settings(max_examples=200, deadline=None)
@given(values)
def test_arbitrary_yaml_documents(document):
    _parse(yaml.safe_dump(document))


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(KEYS), values)
def test_one_field_of_a_good_file_mutated(key, value):
    _parse(yaml.safe_dump(_with_field(key, value)))


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(KEYS), st.one_of(plausible.map(str), scalar_texts, flow_texts))
def test_one_field_of_a_good_file_written_as_tricky_yaml(key, text):
    placeholder = "PLACEHOLDER_VALUE"
    _parse(yaml.safe_dump(_with_field(key, placeholder)).replace(placeholder, text))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(sorted(SCHEMA) + ["x", "<<"]), anchored_texts),
                max_size=8))
def test_random_yaml_structures_with_anchors_and_repeated_keys(entries):
    _parse("".join(f"{key}: {value}\n" for key, value in entries))


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(KEYS), st.one_of(st.text(max_size=12), flow_texts))
def test_command_line_overrides(key, text):
    _parse(yaml.safe_dump(BASE), [f"{key}={text}"])
