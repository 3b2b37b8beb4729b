"""A YAML loader for experiment files that may come from elsewhere.

`mgrb list`, the launcher and reproduce read every experiment file they find, so reading one
must be cheap and must fail only with a YAML error, whatever the text holds:

- at most MAX_CHARS characters: 60 times the largest shipped file (1.6 kB), yet PyYAML's
  pure-Python parser (needed for the checks below) reads 100 kB of dense flow lists in about a
  second, so a hostile file costs about a second, where 1 MB would cost ten;
- no anchors or aliases: a few hundred bytes of nested aliases ("billion laughs") expand to
  gigabytes wherever the document is walked or copied. Experiment files never need them: the
  schema is two levels deep, and the data set defaults already share what files have in
  common. Refusing them outright, where the parser meets the first one, costs nothing and
  leaves no expansion bound to tune;
- at most MAX_DEPTH levels of nesting, so that composing and constructing (both recursive)
  never reach Python's recursion limit;
- a key given twice in one mapping is refused (PyYAML keeps the last one silently);
- YAML 1.2 floats: `1e-4`, `1E5`, `-2.5e+3` are numbers (YAML 1.1 wants a dot and a signed
  exponent, so PyYAML reads them as strings), and dates stay strings as in YAML 1.2;
- a scalar PyYAML cannot construct (`!!int x`, `2001-13-45`, a 5000-digit integer) is a YAML
  error at its line, not the ValueError or AttributeError that SafeLoader lets escape;
- no merge keys (`<<: {epochs: 9999}`): PyYAML merges them after the repeated-key check, so a
  second value of a key would slip past it;
- no YAML 1.1 integers that read as another number than they show: `010` (octal, 8) and
  `1:30` (base 60, 90) are refused, naming the key; YAML 1.2 reads `010` as 10, so either
  reading would surprise someone. `0x1F`, `0b101` and `1_000` say what they mean and stay.

A run folder's config.yaml is read with the same loader (`load_stored`), and written with
`dump`, which quotes every string this loader would read as something else (`'1e-4'`).
"""

from __future__ import annotations

import re

import yaml
from yaml.events import AliasEvent, CollectionStartEvent, ScalarEvent
from yaml.nodes import MappingNode, ScalarNode

MAX_CHARS = 100_000
# config.yaml is what yaml.safe_dump makes of a configuration read from at most MAX_CHARS:
# its escapes (a 4-byte character becomes \U0001F600), folding and the defaults it adds make
# it up to 2.64 times as long (a description of emoji; plain text 1.04 times), so MAX_CHARS
# itself would refuse to resume runs it started. No file this project wrote is longer.
MAX_STORED_CHARS = 3 * MAX_CHARS
MAX_DEPTH = 20

FLOAT_TAG = "tag:yaml.org,2002:float"
INT_TAG = "tag:yaml.org,2002:int"
MERGE_TAG = "tag:yaml.org,2002:merge"
TIMESTAMP_TAG = "tag:yaml.org,2002:timestamp"
# Floats with an exponent and no dot, or a dot and an unsigned exponent: the YAML 1.2 forms
# that YAML 1.1's float pattern misses. Integers and dotted floats keep PyYAML's resolvers.
EXPONENT_FLOAT = re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$")
# YAML 1.1 numbers that read as another value than they show: a leading zero (octal) and
# base 60 (sexagesimal, integers and floats).
LEADING_ZERO = re.compile(r"[-+]?0[0-9_]+")
SEXAGESIMAL = re.compile(r"[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?")


class YAMLRefused(yaml.MarkedYAMLError):
    """Valid YAML that an experiment file may not hold; `problem` says why."""

    def __init__(self, problem: str, mark=None):
        super().__init__(problem=problem, problem_mark=mark)


class ExperimentLoader(yaml.SafeLoader):
    """SafeLoader without anchors, deep nesting, repeated or merge keys, or 010 and 1:30
    integers, and with YAML 1.2 floats."""

    def __init__(self, stream: str, longest: int = MAX_CHARS, what: str = "an experiment file"):
        if len(stream) > longest:
            raise YAMLRefused(f"is {len(stream):,} characters long; {what} may hold at most "
                              f"{longest:,}")
        super().__init__(stream)
        self.key_path: list[str] = []  # keys from the document root to the node being composed
        self.key_lines: dict[MappingNode, dict[str, int]] = {}  # per mapping: key -> first line

    def compose_node(self, parent, index):
        event = self.peek_event()
        if isinstance(event, AliasEvent) or (isinstance(event, (ScalarEvent, CollectionStartEvent))
                                             and event.anchor is not None):
            raise YAMLRefused("anchors and aliases (&name, *name) are not accepted in experiment "
                              "files; write the value out", event.start_mark)
        if len(self.key_path) >= MAX_DEPTH:
            raise YAMLRefused(f"nested deeper than {MAX_DEPTH} levels", event.start_mark)
        composing_a_key = isinstance(parent, MappingNode) and index is None
        self.key_path.append(_key_text(index) if not composing_a_key else "?")
        try:
            node = super().compose_node(parent, index)
            if isinstance(node, ScalarNode):
                self._refuse_misleading_number(node)
        finally:
            self.key_path.pop()
        if composing_a_key:
            if node.tag == MERGE_TAG:
                raise YAMLRefused(f"{_where(self.key_path[1:])}merge keys (<<) are not accepted: "
                                  "write the keys out, each once", node.start_mark)
            self._refuse_repeated_key(parent, node)
        return node

    def _refuse_misleading_number(self, node: ScalarNode) -> None:
        text = node.value
        if node.tag == INT_TAG and LEADING_ZERO.fullmatch(text):
            problem = (f"has a leading zero: YAML 1.1 reads it as an octal number"
                       f"{_yaml11_value(text, octal=True)} and YAML 1.2 as a decimal one; write "
                       "it without the zero")
        elif node.tag in (INT_TAG, FLOAT_TAG) and SEXAGESIMAL.fullmatch(text):
            problem = (f"is a base-60 number in YAML 1.1{_yaml11_value(text, octal=False)} and "
                       "a string in YAML 1.2; write the number itself")
        else:
            return
        where = _where(self.key_path[1:]) if self.key_path[-1:] != ["?"] else ""
        raise YAMLRefused(f"{where}{_shown(text)} {problem}, or quote it for a string",
                          node.start_mark)

    def _refuse_repeated_key(self, mapping: MappingNode, key: yaml.Node) -> None:
        if not isinstance(key, ScalarNode):
            return
        first_lines = self.key_lines.setdefault(mapping, {})
        if key.value in first_lines:
            dotted = _dotted(self.key_path[1:] + [key.value])
            raise YAMLRefused(f"{_shown(dotted)}: given twice (first on line "
                              f"{first_lines[key.value]})", key.start_mark)
        first_lines[key.value] = key.start_mark.line + 1

    def construct_object(self, node, deep=False):
        try:
            return super().construct_object(node, deep)
        except yaml.YAMLError:
            raise
        except Exception as error:  # noqa: BLE001 - see below
            # SafeConstructor lets int(), float() and datetime() errors of malformed scalars
            # escape as ValueError, AttributeError, ...; the text alone caused them.
            raise YAMLRefused(f"cannot read {_shown(getattr(node, 'value', ''))}: "
                              f"{_shown(str(error))}", node.start_mark) from None


ExperimentLoader.add_implicit_resolver(FLOAT_TAG, EXPONENT_FLOAT, list("-+0123456789."))
ExperimentLoader.yaml_implicit_resolvers = {
    first: [(tag, pattern) for tag, pattern in resolvers if tag != TIMESTAMP_TAG]
    for first, resolvers in ExperimentLoader.yaml_implicit_resolvers.items()
}


def _key_text(index) -> str:
    if isinstance(index, ScalarNode):
        return index.value
    return f"[{index}]" if isinstance(index, int) else "?"


def _dotted(parts: list[str]) -> str:
    """train.milestones[2] from ["train", "milestones", "[2]"]."""
    return "".join(part if part.startswith("[") or not i else "." + part
                   for i, part in enumerate(parts))


def _yaml11_value(text: str, *, octal: bool) -> str:
    """' (8)': what YAML 1.1 makes of `010` or `1:30`, for a message; nothing when long."""
    digits = text.replace("_", "").lstrip("+-")
    if len(digits) > 30:
        return ""
    sign = -1 if text.startswith("-") else 1
    if octal:
        value = int(digits, 8)
    else:
        value = 0
        for part in digits.split(":"):
            value = value * 60 + (float(part) if "." in part else int(part))
    return f" ({sign * value:g})" if isinstance(value, float) else f" ({sign * value})"


def _where(path: list[str]) -> str:
    """'train.epochs: ' for a key path, nothing for the document itself."""
    return f"{_shown(_dotted(path))}: " if path else ""


def _shown(text: str, longest: int = 60) -> str:
    text = str(text)
    return text if len(text) <= longest else text[:longest] + "..."


def read(text: str, longest: int = MAX_CHARS,
         what: str = "an experiment file") -> tuple[yaml.Node | None, object]:
    """(node tree, Python data) of a single-document text, (None, None) when it is empty.

    The node tree keeps each key's line for messages. Raises yaml.YAMLError.
    """
    loader = ExperimentLoader(text, longest, what)
    try:
        node = loader.get_single_node()
        return node, (None if node is None else loader.construct_document(node))
    finally:
        loader.dispose()


def load(text: str):
    """Python data of a single-document text; raises yaml.YAMLError."""
    return read(text)[1]


def load_stored(text: str):
    """Python data of a run folder's config.yaml, read as an experiment file is (the folder
    may come from anywhere), up to MAX_STORED_CHARS; raises yaml.YAMLError."""
    return read(text, MAX_STORED_CHARS, "a run's config.yaml")[1]


class StoredDumper(yaml.SafeDumper):
    """safe_dump's YAML, with every string that ExperimentLoader would read as a number
    quoted: safe_dump knows YAML 1.1 only, so it writes the string 1e-4 plain."""


StoredDumper.add_implicit_resolver(FLOAT_TAG, EXPONENT_FLOAT, list("-+0123456789."))


def dump(data) -> str:
    """config.yaml's text: safe_dump's, keys in their order, read back by `load_stored` as
    the same data."""
    return yaml.dump(data, Dumper=StoredDumper, sort_keys=False)
