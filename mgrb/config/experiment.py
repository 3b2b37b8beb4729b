"""Experiment files: schema, defaults and validation with messages that name file, key and line."""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import yaml

from mgrb.config import yamlsafe
from mgrb.config.defaults import DATASET_DEFAULTS
from mgrb.errors import ConfigError
from mgrb.store.contracts import NAME_PATTERN

# The original code's -setloss values: which of L_cls, L_KD and L_MG a phase trains with.
LOSS_SETS = ("ce", "ce+distill", "ce+hierloss", "distill+hierloss", "ce+distill+hierloss")

NUM_CLASSES = {"cifar10": 10, "cifar100": 100, "miniimagenet": 100, "imagenet100": 100,
               "digits": 10}


@dataclass(frozen=True)
class Field:
    kind: type | tuple  # expected Python type(s); float accepts int
    default: Any = None
    choices: tuple | None = None
    minimum: float | None = None
    maximum: float | None = None
    below: float | None = None  # a strict upper bound, for fractions
    nullable: bool = False
    items: Field | None = None  # each element of a list
    longest: int | None = None  # most elements of a list
    required: bool = False
    help: str = ""


# Upper bounds: generous for any real experiment, tight enough that no value overflows a
# consumer (torch, numpy, the run files) or makes training diverge by itself.
# numpy's RandomState (the class order) takes seeds 0 .. 2**32-1, torch.Generator.manual_seed
# 0 .. 2**64-1 (negatives wrap), random.seed anything: one range that all accept, for every
# seed, so that a seed may move between roles (seeds -> train.seed, order_seed).
MAX_SEED = 2**32 - 1
SEED_HELP = "0 .. 2**32-1 (4294967295), what numpy and torch both accept"
MAX_EPOCHS = 10_000  # 40 times the paper's longest schedule (250 epochs)
MAX_CLASSES = 1_000  # ten times the largest data set here (100 classes)
MAX_BATCH = 65_536
MAX_LIST = 100  # seeds (one run each) and milestones
MAX_LOSS_WEIGHT = 1_000.0  # 20 times the paper's largest (beta 50; dscale, scale 0.1 .. 1)

SCHEMA: dict[str, Any] = {
    "name": Field(str, required=True, help="experiment name: letters, digits, _ . -"),
    "description": Field(str, ""),
    "provenance": Field(str, "", help="the original command line, or what was inferred"),
    "reported": {  # top-1 accuracy in percent, and its tolerance in percentage points
        "avg_top1": Field(float, None, nullable=True, minimum=0, maximum=100),
        "last_top1": Field(float, None, nullable=True, minimum=0, maximum=100),
        "tolerance": Field(float, 2.0, minimum=0, maximum=100),
        "source": Field(str, ""),
    },
    "seeds": Field(list, None, nullable=True, longest=MAX_LIST,
                   items=Field(int, minimum=0, maximum=MAX_SEED),
                   help="train once per seed (each " + SEED_HELP + "); the report shows mean "
                   "and standard deviation"),
    "estimate": {
        "gpu_hours": Field(float, None, nullable=True, minimum=0, maximum=100_000,
                           help="at most 100000 (11 GPU-years)"),
        "basis": Field(str, "", help="how the estimate was obtained"),
    },
    "dataset": {
        "name": Field(str, required=True, choices=tuple(NUM_CLASSES)),
        "root": Field(str, None, nullable=True, help="data folder; default $MGRB_DATA or ./data"),
        "download": Field(bool, True, help="let torchvision download CIFAR if absent"),
    },
    "protocol": {
        "initial": Field(int, required=True, minimum=1, maximum=MAX_CLASSES),
        "increment": Field(int, required=True, minimum=0, maximum=MAX_CLASSES),
        "order_seed": Field(int, 1993, minimum=0, maximum=MAX_SEED,
                            help="seed of the class order, " + SEED_HELP),
        # More than ImageNet-1k's 1.28 million training images: a memory can hold no more.
        "memory_total": Field(int, 2000, minimum=1, maximum=10_000_000),
        "memory_per_class": Field(int, None, nullable=True, minimum=1, maximum=100_000),
        "holdout_fraction": Field(float, 0.1, minimum=0, below=1,
                                  help="the part of each old class's memory held out for "
                                  "stage 2; the rest are the exemplars"),
        "selection": Field(str, "first", choices=("first", "random")),
    },
    "model": {
        "backbone": Field(str, "resnet34", choices=("resnet18", "resnet34", "resnet_small")),
        "stem": Field(str, "cifar", choices=("cifar", "imagenet")),
    },
    "train": {
        "seed": Field(int, 1993, minimum=0, maximum=MAX_SEED, help="training seed, " + SEED_HELP),
        "batch_size": Field(int, 128, minimum=1, maximum=MAX_BATCH),
        "eval_batch_size": Field(int, 256, minimum=1, maximum=MAX_BATCH),
        # AdamW: lr and weight_decay at most 1 keep the decoupled decay factor 1 - lr * wd in
        # [0, 1] (never flipping or growing the weights); the paper uses 1e-3 and 0.05.
        "lr": Field(float, 1e-3, minimum=0, maximum=1),
        "weight_decay": Field(float, 0.05, minimum=0, maximum=1),
        "lr_decay": Field(float, 0.1, minimum=0, maximum=1,
                          help="factor at each milestone; above 1 the rate would grow"),
        "warmup_epochs": Field(int, 1, minimum=0, maximum=MAX_EPOCHS),
        "epochs": Field(int, 250, minimum=1, maximum=MAX_EPOCHS),
        "milestones": Field(list, [70, 140, 210], longest=MAX_LIST,
                            items=Field(int, minimum=0, maximum=MAX_EPOCHS)),
        "stage2_epochs": Field(int, 40, minimum=0, maximum=MAX_EPOCHS),
        "stage2_milestones": Field(list, [15], longest=MAX_LIST,
                                   items=Field(int, minimum=0, maximum=MAX_EPOCHS)),
        "augment": {
            # Just above the largest image side (224): more only adds empty crops.
            "crop_padding": Field(int, 0, minimum=0, maximum=256),
            "flip": Field(bool, False),
            "rotation": Field(float, 0.0, minimum=0, maximum=180,
                              help="degrees; each image turns by up to this either way"),
            "random_resized_crop": Field(bool, False),
        },
        "precision": Field(str, "auto", choices=("auto", "fp32", "bf16"),
                           help="auto: bf16 autocast on a GPU, fp32 on the CPU"),
        "channels_last": Field((bool, str), "auto", choices=("auto", True, False),
                               help="auto: true on a GPU"),
        "compile": Field(bool, False, help="torch.compile the network (GPU)"),
        "deterministic": Field(bool, False, help="deterministic GPU kernels (slower): a "
                               "resumed run then equals an uninterrupted one on a GPU too"),
        "num_workers": Field(int, 8, minimum=0, maximum=256,
                             help="DataLoader workers (file data sets)"),
        "checkpoint_every": Field(int, 10, minimum=1, maximum=MAX_EPOCHS,
                                  help="epochs between checkpoints"),
        "checkpoint_minutes": Field(float, 10.0, minimum=0, maximum=10_080,
                                    help="minutes of training between checkpoints within an "
                                    "epoch as well (0: only by epoch; at most a week)"),
        "log_every": Field(int, 50, minimum=1, maximum=1_000_000,
                           help="iterations between events"),
    },
    "method": {
        "losses": Field(str, "ce+distill+hierloss", choices=LOSS_SETS),
        "cbloss": Field(bool, True, help="class-balanced re-weighting of L_cls"),
        # The distillation divides logits by the temperature: 0 would divide by zero.
        "temperature": Field(float, 2.0, minimum=0.01, maximum=100),
        "dscale": Field(float, 1.0, minimum=0, maximum=MAX_LOSS_WEIGHT),
        "scale": Field(float, 1.0, minimum=0, maximum=MAX_LOSS_WEIGHT,
                       help="lambda, the weight of L_MG"),
        "beta": Field(float, 20.0, minimum=0, maximum=MAX_LOSS_WEIGHT),
        "decouple": Field(bool, True, help="stage 2 balanced classifier re-training (no_dcp = false)"),
    },
    "hierarchy": {
        "kind": Field(str, "ont", choices=("ont", "vis", "sem", "none")),
        "clusters": Field(int, 5, minimum=1, maximum=MAX_CLASSES),
    },
    "quirks": {
        "cb_reduction": Field(str, "sum", choices=("sum", "mean")),
        "cb_new_class_count": Field(str, "full_dataset", choices=("full_dataset", "phase")),
        # WordNet's deepest noun paths are about 20 levels.
        "tree_depth_stage1": Field(int, 2, nullable=True, minimum=2, maximum=100),
        "tree_depth_stage2": Field(int, 18, nullable=True, minimum=2, maximum=100),
        "cifar10_vis_clusters": Field(int, 2, nullable=True, minimum=1, maximum=MAX_CLASSES),
        "fresh_classifier": Field(bool, True),
    },
}


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
        raise source.error(key, f"unknown key; expected one of: {', '.join(schema)}")
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
    for part in parts:
        if not isinstance(schema, dict) or part not in schema:
            raise ConfigError(f"--set {key}: unknown key")
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


def _check_consistency(config: dict, source: _Source) -> None:
    from mgrb.data.protocol import Protocol, memory_sizes

    dataset = config["dataset"]["name"]
    proto = config["protocol"]
    try:
        Protocol(NUM_CLASSES[dataset], proto["initial"], proto["increment"])
    except ValueError as error:
        raise source.error("protocol", f"impossible for {dataset} "
                           f"({NUM_CLASSES[dataset]} classes): {error}") from None
    per_class, holdout = memory_sizes(NUM_CLASSES[dataset], proto["memory_total"],
                                      proto["memory_per_class"], proto["holdout_fraction"])
    if per_class - holdout < 1:
        # Old classes would have no exemplar to replay, and the class-balanced weights
        # (1 - eta) / (1 - eta ** n) divide by zero at n = 0: the loss becomes inf.
        fix = (f"raise memory_total to at least {NUM_CLASSES[dataset]}" if per_class == 0
               else "lower holdout_fraction")
        raise source.error("protocol", f"keeps {per_class} images per old class "
                           f"(memory_total {proto['memory_total']} over {NUM_CLASSES[dataset]} "
                           f"classes) and holds out {holdout} of them for stage 2: no exemplar "
                           f"is left to replay; {fix}")
    if holdout == 0 and config["method"]["decouple"] and config["train"]["stage2_epochs"]:
        raise source.error("protocol", f"keeps {per_class} images per old class, and "
                           f"holdout_fraction {proto['holdout_fraction']:g} of them is none: "
                           "stage 2 (method.decouple) would have no balanced set to train on; "
                           "raise memory_total or holdout_fraction, or set train.stage2_epochs: 0")
    seeds = config["seeds"] or []
    repeated = next((seed for index, seed in enumerate(seeds) if seed in seeds[:index]), None)
    if repeated is not None:  # each seed is one run folder, seed-<s>: two runs would share it
        raise source.error("seeds", f"lists {repeated} twice")
    kind = config["hierarchy"]["kind"]
    uses_hierarchy = "hierloss" in config["method"]["losses"]
    if uses_hierarchy and kind == "none":
        raise source.error("hierarchy.kind", "is none but method.losses uses hierloss; "
                           "choose ont, vis or sem, or drop hierloss")
    if kind == "sem" and dataset not in ("cifar10", "miniimagenet", "imagenet100"):
        # CIFAR-100's names have no curated synsets; the digits are all siblings under
        # digit.n.01, so every pair is equally similar and a grouping would be arbitrary.
        raise source.error("hierarchy.kind", f"sem needs WordNet synsets that tell the classes "
                           f"apart; {dataset} has none (use vis, or ont where it exists)")
    if kind == "ont" and dataset in ("cifar10", "digits") and uses_hierarchy:
        raise source.error("hierarchy.kind", f"ont needs a class ontology; {dataset} has none "
                           "(use vis or sem)")


def to_namespace(value):
    if isinstance(value, dict):
        return SimpleNamespace(**{key: to_namespace(item) for key, item in value.items()})
    return value


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


def parse_config(text: str, path: str = "<string>", overrides: list[str] = ()) -> dict:
    """Validate experiment YAML text; return the resolved configuration as a plain dict."""
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
    dataset = data.get("dataset")
    if isinstance(dataset, dict) and isinstance(dataset.get("name"), str) \
            and dataset["name"] in DATASET_DEFAULTS:
        data = _merge(DATASET_DEFAULTS[dataset["name"]], data)
    config = _validate(data, SCHEMA, "", source)
    if not NAME_PATTERN.match(config["name"]):
        raise source.error("name", f"{_shown(config['name'])} may hold only letters, digits, "
                           "_ . - (it names the run folder)")
    _check_consistency(config, source)
    return config


def load_config(path: str | Path, overrides: list[str] = ()) -> dict:
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
