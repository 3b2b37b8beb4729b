"""Property tests: random and mutated experiment files never raise anything but ConfigError."""

from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mgrb.config import SCHEMA, Field, parse_config
from mgrb.errors import ConfigError

BASE = yaml.safe_load((Path(__file__).parents[1] / "experiments" / "digits_5_1.yaml").read_text())

scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6),
                    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=20))
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=12)


def _keys(schema, prefix=""):
    for key, spec in schema.items():
        if isinstance(spec, Field):
            yield prefix + key
        else:
            yield from _keys(spec, f"{prefix}{key}.")


KEYS = sorted(_keys(SCHEMA))


def _parse(text: str) -> None:
    try:
        parse_config(text, "fuzz.yaml")
    except ConfigError as error:
        assert str(error).startswith("fuzz.yaml")


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=200))
def test_arbitrary_text(text):
    _parse(text)


@settings(max_examples=200, deadline=None)
@given(values)
def test_arbitrary_yaml_documents(document):
    _parse(yaml.safe_dump(document))


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(KEYS), values)
def test_one_field_of_a_good_file_mutated(key, value):
    document = yaml.safe_load(yaml.safe_dump(BASE))
    node = document
    *parents, last = key.split(".")
    for part in parents:
        if not isinstance(node.get(part), dict):
            node[part] = {}
        node = node[part]
    node[last] = value
    _parse(yaml.safe_dump(document))


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(KEYS), st.text(max_size=12))
def test_command_line_overrides(key, text):
    try:
        parse_config(yaml.safe_dump(BASE), "fuzz.yaml", overrides=[f"{key}={text}"])
    except ConfigError:
        pass
