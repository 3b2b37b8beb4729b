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
  error at its line, not the ValueError or AttributeError that SafeLoader lets escape.
"""

from __future__ import annotations

import re

import yaml
from yaml.events import AliasEvent, CollectionStartEvent, ScalarEvent
from yaml.nodes import MappingNode, ScalarNode

MAX_CHARS = 100_000
MAX_DEPTH = 20

FLOAT_TAG = "tag:yaml.org,2002:float"
TIMESTAMP_TAG = "tag:yaml.org,2002:timestamp"
# Floats with an exponent and no dot, or a dot and an unsigned exponent: the YAML 1.2 forms
# that YAML 1.1's float pattern misses. Integers and dotted floats keep PyYAML's resolvers.
EXPONENT_FLOAT = re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$")


class YAMLRefused(yaml.MarkedYAMLError):
    """Valid YAML that an experiment file may not hold; `problem` says why."""

    def __init__(self, problem: str, mark=None):
        super().__init__(problem=problem, problem_mark=mark)


class ExperimentLoader(yaml.SafeLoader):
    """SafeLoader without anchors, deep nesting or repeated keys, and with YAML 1.2 floats."""

    def __init__(self, stream: str):
        if len(stream) > MAX_CHARS:
            raise YAMLRefused(f"is {len(stream):,} characters long; an experiment file may "
                              f"hold at most {MAX_CHARS:,}")
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
        finally:
            self.key_path.pop()
        if composing_a_key:
            self._refuse_repeated_key(parent, node)
        return node

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


def _shown(text: str, longest: int = 60) -> str:
    text = str(text)
    return text if len(text) <= longest else text[:longest] + "..."


def read(text: str) -> tuple[yaml.Node | None, object]:
    """(node tree, Python data) of a single-document text, (None, None) when it is empty.

    The node tree keeps each key's line for messages. Raises yaml.YAMLError.
    """
    loader = ExperimentLoader(text)
    try:
        node = loader.get_single_node()
        return node, (None if node is None else loader.construct_document(node))
    finally:
        loader.dispose()


def load(text: str):
    """Python data of a single-document text; raises yaml.YAMLError."""
    return read(text)[1]
