"""Experiment files read and validated against the schema (schema.py), with messages that
name the file, the key and the line; the result is a frozen `Experiment`."""

from __future__ import annotations

import copy
import difflib
import math
from pathlib import Path

import yaml

from mgrb.store import yamlsafe
from mgrb.config.schema import ABSENT_MEANS, SCHEMA, Experiment, Field, build
from mgrb.data.registry import DATASETS
from mgrb.errors import ConfigError
from mgrb.store.contracts import NAME_PATTERN
from mgrb.store.runfolder import with_absent

def did_you_mean(word: str, choices) -> str:
    """' (did you mean X?)' for the closest choice, or nothing when none is close."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]}?)" if close else ""


def _type_name(kind) -> str:
    names = {str: "a string", int: "an integer", float: "a number", bool: "true or false",
             list: "a list", dict: "a mapping"}
    if isinstance(kind, tuple):
        return " or ".join(names.get(k, str(k)) for k in kind)
    return names.get(kind, str(kind))


def _shown(value, longest: int = 80) -> str:
    """repr of a value, cut short: a message must stay readable whatever the file holds."""
    text = repr(value) if not isinstance(value, int) or value.bit_length() < 1000 \
        else f"an integer of {value.bit_length()} bits"
    return text if len(text) <= longest else text[:longest] + "..."


def _bound(number) -> str:
    return str(number) if isinstance(number, int) else f"{number:g}"


class _Source:
    """Where each dotted key (and list item, key[i]) sits in the YAML text, for messages."""

    def __init__(self, path: str, node: yaml.Node | None = None):
        self.path, self.lines = path, {}
        self.overridden: set[str] = set()  # keys given with --set: blamed on --set, not a line
        if node is not None:
            self._walk(node, "")

    def _walk(self, node, key: str):
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                if isinstance(key_node, yaml.ScalarNode):
                    dotted = f"{key}.{key_node.value}" if key else key_node.value
                    self.lines[dotted] = key_node.start_mark.line + 1
                    self._walk(value_node, dotted)
        elif isinstance(node, yaml.SequenceNode) and key:
            for index, item in enumerate(node.value):
                self.lines[f"{key}[{index}]"] = item.start_mark.line + 1
                self._walk(item, f"{key}[{index}]")

    def _line(self, key: str) -> int | None:
        """The line of `key`, else of the nearest enclosing key the file holds."""
        while key:
            if key in self.lines:
                return self.lines[key]
            key = key.rsplit("[", 1)[0] if key.endswith("]") else key.rpartition(".")[0]
        return None

    def error(self, key: str, message: str) -> ConfigError:
        if key in self.overridden:
            return ConfigError(f"--set {key}: {message} (in {self.path})")
        line = self._line(key)
        where = f"{self.path}:{line}" if line else self.path
        key = key if len(key) <= 80 else key[:80] + "..."  # an unknown key may be any text
        return ConfigError(f"{where}: {key}: {message}" if key else f"{where}: {message}")


def _check_value(value, field: Field, key: str, source: _Source):
    if value is None:
        if field.nullable:
            return None
        raise source.error(key, f"must be {_type_name(field.kind)}, not empty")
    kind = field.kind
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind is int:
        ok = is_number and isinstance(value, int)
    elif kind is float:
        ok = is_number
    else:
        ok = isinstance(value, kind)
    if not ok:
        raise source.error(key, f"must be {_type_name(kind)}, got {_shown(value)}")
    if isinstance(value, float) and not math.isfinite(value):
        raise source.error(key, f"must be a finite number, got {value!r}")
    if field.choices and value not in field.choices:
        raise source.error(key, f"must be one of {', '.join(map(str, field.choices))}; "
                           f"got {_shown(value)}")
    if is_number:
        _check_bounds(value, field, key, source)
    if kind is float:
        return float(value)  # within the bounds, so no OverflowError for a huge integer
    if isinstance(value, list):
        return _check_list(value, field, key, source)
    return value


def _check_bounds(value, field: Field, key: str, source: _Source) -> None:
    if field.minimum is not None and value < field.minimum:
        raise source.error(key, f"must be at least {_bound(field.minimum)}, got {_shown(value)}")
    if field.maximum is not None and value > field.maximum:
        raise source.error(key, f"must be at most {_bound(field.maximum)}, got {_shown(value)}")
    if field.below is not None and value >= field.below:
        raise source.error(key, f"must be below {_bound(field.below)}, got {_shown(value)}")


def _check_list(value: list, field: Field, key: str, source: _Source) -> list:
    if field.longest is not None and len(value) > field.longest:
        raise source.error(key, f"may hold at most {field.longest} items, got {len(value)}")
    if field.items is None:
        return value
    return [_check_value(item, field.items, f"{key}[{index}]", source)
            for index, item in enumerate(value)]


def _validate(data, schema: dict, prefix: str, source: _Source) -> dict:
    if not isinstance(data, dict):
        raise source.error(prefix.rstrip("."), f"must be a mapping of keys, got {_shown(data)}")
    unknown = [key for key in data if key not in schema]
    if unknown:
        key = f"{prefix}{unknown[0]}"
        raise source.error(key, f"unknown key{did_you_mean(str(unknown[0]), schema)}; "
                           f"expected one of: {', '.join(schema)}")
    result = {}
    for key, spec in schema.items():
        dotted = f"{prefix}{key}"
        if isinstance(spec, dict):
            value = data.get(key)
            result[key] = _validate({} if value is None else value, spec, dotted + ".", source)
        elif key in data:
            result[key] = _check_value(data[key], spec, dotted, source)
        elif spec.required:
            raise source.error(dotted, "is required" + (f" ({spec.help})" if spec.help else ""))
        else:
            result[key] = copy.deepcopy(spec.default)
    return result


def _merge(base: dict, extra: dict) -> dict:
    merged = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:  # validation reports a value of the wrong shape, naming its key
            merged[key] = value
    return merged


def _apply_override(data: dict, assignment: str) -> None:
    if "=" not in assignment:
        raise ConfigError(f"--set {assignment}: expected KEY=VALUE, e.g. train.epochs=3")
    key, text = assignment.split("=", 1)
    parts, schema = key.strip().split("."), SCHEMA
    for depth, part in enumerate(parts):
        if not isinstance(schema, dict) or part not in schema:
            known = [".".join([*parts[:depth], name]) for name in schema] \
                if isinstance(schema, dict) else []
            dotted = ".".join(parts[:depth + 1])
            raise ConfigError(f"--set {key}: unknown key{did_you_mean(dotted, known)}")
        schema = schema[part]
    node = data
    for part in parts[:-1]:
        if not isinstance(node.get(part), dict):
            node[part] = {}
        node = node[part]
    if isinstance(schema, dict):
        raise ConfigError(f"--set {key}: is a section; set one of its keys, e.g. {key}.{next(iter(schema))}")
    try:  # the experiment files' loader, so that a value reads as it would in a file
        node[parts[-1]] = yamlsafe.load(text)
    except yaml.YAMLError as error:
        problem = getattr(error, "problem", None) or error
        raise ConfigError(f"--set {key}: cannot read value {_shown(text)}: {problem}") from None


def _check_consistency(config: Experiment, source: _Source) -> None:
    from mgrb.data.protocol import PhasePlan, memory_sizes

    dataset, classes, proto = config.dataset.name, config.num_classes, config.protocol
    try:
        PhasePlan(classes, proto.initial, proto.increment)
    except ValueError as error:
        raise source.error("protocol", f"impossible for {dataset} "
                           f"({classes} classes): {error}") from None
    per_class, holdout = memory_sizes(classes, proto.memory_total, proto.memory_per_class,
                                      proto.holdout_fraction)
    if per_class - holdout < 1:
        # Old classes would have no exemplar to replay, and the class-balanced weights
        # (1 - eta) / (1 - eta ** n) divide by zero at n = 0: the loss becomes inf.
        fix = (f"raise memory_total to at least {classes}" if per_class == 0
               else "lower holdout_fraction")
        raise source.error("protocol", f"keeps {per_class} images per old class "
                           f"(memory_total {proto.memory_total} over {classes} "
                           f"classes) and holds out {holdout} of them for stage 2: no exemplar "
                           f"is left to replay; {fix}")
    _check_memory_fits(config, per_class, holdout, source)
    if holdout == 0 and config.method.decouple and config.train.stage2_epochs:
        raise source.error("protocol", f"keeps {per_class} images per old class, and "
                           f"holdout_fraction {proto.holdout_fraction:g} of them is none: "
                           "stage 2 (method.decouple) would have no balanced set to train on; "
                           "raise memory_total or holdout_fraction, or set train.stage2_epochs: 0")
    seeds = config.seeds or ()
    repeated = next((seed for index, seed in enumerate(seeds) if seed in seeds[:index]), None)
    if repeated is not None:  # each seed is one run folder, seed-<s>: two runs would share it
        raise source.error("seeds", f"lists {repeated} twice")
    _check_hierarchy(config, source)


def _check_memory_fits(config: Experiment, per_class: int, holdout: int, source: _Source) -> None:
    """A memory larger than the data set's classes is refused here, with the numbers: at
    run time it would leave a phase no image to train on (an error deep inside torch)."""
    from mgrb.data.protocol import memory_shortfall

    dataset, classes, proto = config.dataset.name, config.num_classes, config.protocol
    record = DATASETS[dataset]
    train_per_class = record.train_per_class
    shortfall = memory_shortfall(train_per_class, per_class, holdout)
    if shortfall is None:
        return
    if proto.memory_per_class is not None:
        key, asks = "protocol.memory_per_class", f"memory_per_class {proto.memory_per_class}"
        fix = f"set memory_per_class to at most {train_per_class}"
    else:
        key, asks = "protocol.memory_total", (f"memory_total {proto.memory_total} over "
                                              f"{classes} classes")
        fix = f"lower memory_total to at most {train_per_class * classes}"
    shown = record.train_per_class_shown or str(train_per_class)
    raise source.error(key, f"{asks} keeps {per_class} images per old class and holds out "
                       f"{holdout} of them for stage 2, but {dataset} has {shown} training "
                       f"images per class: {shortfall}; {fix}")


def _check_hierarchy(config: Experiment, source: _Source) -> None:
    kind, dataset = config.hierarchy.kind, config.dataset.name
    uses_hierarchy = config.method.uses_hierarchy
    if uses_hierarchy and kind == "none":
        raise source.error("hierarchy.kind", "is none but method.losses uses hierloss; "
                           "choose ont, vis or sem, or drop hierloss")
    supported = DATASETS[dataset].hierarchies
    other = DATASETS[dataset].hierarchies_besides(kind)
    if kind == "sem" and kind not in supported:
        raise source.error("hierarchy.kind", f"sem needs WordNet synsets that tell the classes "
                           f"apart; {dataset} has none (use {other})")
    if kind == "ont" and kind not in supported and uses_hierarchy:
        raise source.error("hierarchy.kind", f"ont needs a class ontology; {dataset} has none "
                           f"(use {other})")


def _read_yaml(text: str, path: str):
    """(node tree, data) of the text, or a ConfigError naming the file and line."""
    try:
        return yamlsafe.read(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else path
        problem = getattr(error, "problem", None) or str(error)
        if isinstance(error, yamlsafe.YAMLRefused):
            raise ConfigError(f"{where}: {problem}") from None
        raise ConfigError(f"{where}: not valid YAML: {problem}") from None


def parse_config(text: str, path: str = "<string>", overrides: list[str] = ()) -> Experiment:
    """Validate experiment YAML text; the resolved configuration, defaults filled in."""
    node, data = _read_yaml(text, path)
    source = _Source(path, node)
    if data is None:
        raise ConfigError(f"{path}: the file is empty; an experiment needs at least name, "
                          "dataset.name and protocol.initial/increment")
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: must be a mapping of keys (name:, dataset:, ...)")
    for assignment in overrides:
        _apply_override(data, assignment)
        source.overridden.add(assignment.split("=", 1)[0].strip())
    return _resolve(data, source)


def config_from_data(data, path: str) -> Experiment:
    """A configuration read as plain data elsewhere (a run folder's config.yaml), validated
    as strictly as an experiment file: the folder may come from anywhere."""
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: must be a mapping of keys (name:, dataset:, ...)")
    return _resolve(with_absent(data, ABSENT_MEANS), _Source(path))


def _resolve(data: dict, source: _Source) -> Experiment:
    dataset = data.get("dataset")
    if isinstance(dataset, dict) and isinstance(dataset.get("name"), str) \
            and dataset["name"] in DATASETS:
        data = _merge(DATASETS[dataset["name"]].defaults, data)
    config = build(Experiment, _validate(data, SCHEMA, "", source))
    if not NAME_PATTERN.fullmatch(config.name):  # match() would pass "x\n" ($ before a \n)
        raise source.error("name", f"{_shown(config.name)} may hold only letters, digits, "
                           "_ . - (it names the run folder)")
    _check_consistency(config, source)
    return config


def load_config(path: str | Path, overrides: list[str] = ()) -> Experiment:
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: no such experiment file")
    if not path.is_file():  # a FIFO or device would block or never end
        raise ConfigError(f"{path}: not a regular file")
    try:
        with path.open("rb") as file:
            raw = file.read(yamlsafe.MAX_CHARS + 1)  # never more, whatever the file's size
        if len(raw) > yamlsafe.MAX_CHARS:
            raise ConfigError(f"{path}: larger than {yamlsafe.MAX_CHARS:,} bytes; an "
                              "experiment file is a few kB")
        text = raw.decode("utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path}: cannot read: {error}") from None
    return parse_config(text, str(path), overrides)
