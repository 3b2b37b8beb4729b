"""Experiment files: schema, defaults and validation with messages that name file, key and line."""

from __future__ import annotations

import copy
import math
import re
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import yaml

from .defaults import DATASET_DEFAULTS
from .errors import ConfigError
from .losses import LOSS_SETS

NUM_CLASSES = {"cifar10": 10, "cifar100": 100, "miniimagenet": 100, "imagenet100": 100,
               "digits": 10}


@dataclass(frozen=True)
class Field:
    kind: type | tuple  # expected Python type(s); float accepts int
    default: Any = None
    choices: tuple | None = None
    minimum: float | None = None
    nullable: bool = False
    items: type | None = None  # element type of a list
    required: bool = False
    help: str = ""


NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")

SCHEMA: dict[str, Any] = {
    "name": Field(str, required=True, help="experiment name: letters, digits, _ . -"),
    "description": Field(str, ""),
    "provenance": Field(str, "", help="the original command line, or what was inferred"),
    "reported": {
        "avg_top1": Field(float, None, nullable=True, minimum=0),
        "last_top1": Field(float, None, nullable=True, minimum=0),
        "tolerance": Field(float, 2.0, minimum=0),
        "source": Field(str, ""),
    },
    "seeds": Field(list, None, nullable=True, items=int,
                   help="train once per seed; the report shows mean and standard deviation"),
    "estimate": {
        "gpu_hours": Field(float, None, nullable=True, minimum=0),
        "basis": Field(str, "", help="how the estimate was obtained"),
    },
    "dataset": {
        "name": Field(str, required=True, choices=tuple(NUM_CLASSES)),
        "root": Field(str, None, nullable=True, help="data folder; default $MGRB_DATA or ./data"),
        "download": Field(bool, True, help="let torchvision download CIFAR if absent"),
    },
    "protocol": {
        "initial": Field(int, required=True, minimum=1),
        "increment": Field(int, required=True, minimum=0),
        "order_seed": Field(int, 1993),
        "memory_total": Field(int, 2000, minimum=1),
        "memory_per_class": Field(int, None, nullable=True, minimum=1),
        "holdout_fraction": Field(float, 0.1, minimum=0),
        "selection": Field(str, "first", choices=("first", "random")),
    },
    "model": {
        "backbone": Field(str, "resnet34", choices=("resnet18", "resnet34", "resnet_small")),
        "stem": Field(str, "cifar", choices=("cifar", "imagenet")),
    },
    "train": {
        "seed": Field(int, 1993),
        "batch_size": Field(int, 128, minimum=1),
        "eval_batch_size": Field(int, 256, minimum=1),
        "lr": Field(float, 1e-3, minimum=0),
        "weight_decay": Field(float, 0.05, minimum=0),
        "lr_decay": Field(float, 0.1, minimum=0),
        "warmup_epochs": Field(int, 1, minimum=0),
        "epochs": Field(int, 250, minimum=1),
        "milestones": Field(list, [70, 140, 210], items=int),
        "stage2_epochs": Field(int, 40, minimum=0),
        "stage2_milestones": Field(list, [15], items=int),
        "augment": {
            "crop_padding": Field(int, 0, minimum=0),
            "flip": Field(bool, False),
            "rotation": Field(float, 0.0, minimum=0),
            "random_resized_crop": Field(bool, False),
        },
        "precision": Field(str, "auto", choices=("auto", "fp32", "bf16"),
                           help="auto: bf16 autocast on a GPU, fp32 on the CPU"),
        "channels_last": Field((bool, str), "auto", choices=("auto", True, False),
                               help="auto: true on a GPU"),
        "compile": Field(bool, False, help="torch.compile the network (GPU)"),
        "deterministic": Field(bool, False, help="deterministic GPU kernels (slower): a "
                               "resumed run then equals an uninterrupted one on a GPU too"),
        "num_workers": Field(int, 8, minimum=0, help="DataLoader workers (file data sets)"),
        "checkpoint_every": Field(int, 10, minimum=1, help="epochs between checkpoints"),
        "checkpoint_minutes": Field(float, 10.0, minimum=0, help="minutes of training between "
                                    "checkpoints within an epoch as well (0: only by epoch)"),
        "log_every": Field(int, 50, minimum=1, help="iterations between events"),
    },
    "method": {
        "losses": Field(str, "ce+distill+hierloss", choices=LOSS_SETS),
        "cbloss": Field(bool, True, help="class-balanced re-weighting of L_cls"),
        "temperature": Field(float, 2.0, minimum=0),
        "dscale": Field(float, 1.0, minimum=0),
        "scale": Field(float, 1.0, minimum=0, help="lambda, the weight of L_MG"),
        "beta": Field(float, 20.0, minimum=0),
        "decouple": Field(bool, True, help="stage 2 balanced classifier re-training (no_dcp = false)"),
    },
    "hierarchy": {
        "kind": Field(str, "ont", choices=("ont", "vis", "sem", "none")),
        "clusters": Field(int, 5, minimum=1),
    },
    "quirks": {
        "cb_reduction": Field(str, "sum", choices=("sum", "mean")),
        "cb_new_class_count": Field(str, "full_dataset", choices=("full_dataset", "phase")),
        "tree_depth_stage1": Field(int, 2, nullable=True, minimum=2),
        "tree_depth_stage2": Field(int, 18, nullable=True, minimum=2),
        "cifar10_vis_clusters": Field(int, 2, nullable=True, minimum=1),
        "fresh_classifier": Field(bool, True),
    },
}


def _type_name(kind) -> str:
    names = {str: "a string", int: "an integer", float: "a number", bool: "true or false",
             list: "a list", dict: "a mapping"}
    if isinstance(kind, tuple):
        return " or ".join(names.get(k, str(k)) for k in kind)
    return names.get(kind, str(kind))


class _Source:
    """Where each dotted key sits in the YAML text, for messages."""

    def __init__(self, path: str, text: str | None):
        self.path, self.lines = path, {}
        if text is not None:
            try:
                self._walk(yaml.compose(text, Loader=yaml.SafeLoader), "")
            except yaml.YAMLError:
                pass

    def _walk(self, node, prefix: str):
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                key = f"{prefix}{key_node.value}"
                self.lines[key] = key_node.start_mark.line + 1
                self._walk(value_node, key + ".")

    def error(self, key: str, message: str) -> ConfigError:
        line = self.lines.get(key) or self.lines.get(key.rsplit(".", 1)[0])
        where = f"{self.path}:{line}" if line else self.path
        return ConfigError(f"{where}: {key}: {message}" if key else f"{where}: {message}")


def _check_value(value, field: Field, key: str, source: _Source):
    if value is None:
        if field.nullable:
            return None
        raise source.error(key, f"must be {_type_name(field.kind)}, not empty")
    kind = field.kind
    ok = isinstance(value, kind) and not (kind in (int, float) and isinstance(value, bool))
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value, ok = float(value), True
    if not ok:
        raise source.error(key, f"must be {_type_name(kind)}, got {value!r}")
    if kind is float and not math.isfinite(value):
        raise source.error(key, f"must be a finite number, got {value!r}")
    if field.choices and value not in field.choices:
        raise source.error(key, f"must be one of {', '.join(map(str, field.choices))}; got {value!r}")
    if field.minimum is not None and value < field.minimum:
        raise source.error(key, f"must be at least {field.minimum:g}, got {value!r}")
    if field.items is not None:
        for item in value:
            if not isinstance(item, field.items) or isinstance(item, bool):
                raise source.error(key, f"must be a list of {_type_name(field.items)}s, got {value!r}")
    return value


def _validate(data, schema: dict, prefix: str, source: _Source) -> dict:
    if not isinstance(data, dict):
        raise source.error(prefix.rstrip("."), f"must be a mapping of keys, got {data!r}")
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
    try:
        node[parts[-1]] = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ConfigError(f"--set {key}: cannot read value {text!r}: {error}") from None


def _check_consistency(config: dict, source: _Source) -> None:
    from .protocol import Protocol, memory_sizes

    dataset = config["dataset"]["name"]
    proto = config["protocol"]
    try:
        Protocol(NUM_CLASSES[dataset], proto["initial"], proto["increment"])
    except ValueError as error:
        raise source.error("protocol", f"impossible for {dataset} "
                           f"({NUM_CLASSES[dataset]} classes): {error}") from None
    per_class, holdout = memory_sizes(NUM_CLASSES[dataset], proto["memory_total"],
                                      proto["memory_per_class"], proto["holdout_fraction"])
    if holdout == 0 and config["method"]["decouple"] and config["train"]["stage2_epochs"]:
        raise source.error("protocol", f"keeps {per_class} images per old class, and "
                           f"holdout_fraction {proto['holdout_fraction']:g} of them is none: "
                           "stage 2 (method.decouple) would have no balanced set to train on; "
                           "raise memory_total or holdout_fraction, or set train.stage2_epochs: 0")
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


def parse_config(text: str, path: str = "<string>", overrides: list[str] = ()) -> dict:
    """Validate experiment YAML text; return the resolved configuration as a plain dict."""
    source = _Source(path, text)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else path
        problem = getattr(error, "problem", None) or str(error)
        raise ConfigError(f"{where}: not valid YAML: {problem}") from None
    if data is None:
        raise ConfigError(f"{path}: the file is empty; an experiment needs at least name, "
                          "dataset.name and protocol.initial/increment")
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: must be a mapping of keys (name:, dataset:, ...)")
    for assignment in overrides:
        _apply_override(data, assignment)
    dataset = data.get("dataset")
    if isinstance(dataset, dict) and isinstance(dataset.get("name"), str) \
            and dataset["name"] in DATASET_DEFAULTS:
        data = _merge(DATASET_DEFAULTS[dataset["name"]], data)
    config = _validate(data, SCHEMA, "", source)
    if not NAME_PATTERN.match(config["name"]):
        raise source.error("name", f"{config['name']!r} may hold only letters, digits, _ . - "
                           "(it names the run folder)")
    _check_consistency(config, source)
    return config


def load_config(path: str | Path, overrides: list[str] = ()) -> dict:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such experiment file") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path}: cannot read: {error}") from None
    return parse_config(text, str(path), overrides)
