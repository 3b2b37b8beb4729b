"""The experiment file's schema as frozen dataclasses: one class per section, each setting's
default, bounds and help beside its field. This is the one home of the general defaults
(the per-data-set ones are in defaults.py); `SCHEMA` is derived from it for the validator.

A validated experiment is an `Experiment`; code reads `config.train.lr`, and a function takes
the section it needs (`Train`, `Method`, ...) or explicit keyword arguments.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass
from typing import Any

from mgrb.data.registry import NAMES, dataset

# The original code's -setloss values: which of L_cls, L_KD and L_MG a phase trains with.
LOSS_SETS = ("ce", "ce+distill", "ce+hierloss", "distill+hierloss", "ce+distill+hierloss")


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

REQUIRED = dataclasses.MISSING


@dataclass(frozen=True)
class Field:
    """What the validator checks of one setting (derived from a dataclass field)."""
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


def setting(default=REQUIRED, *, items: dict | None = None, **spec):
    """A dataclass field with the validator's spec (bounds, choices, help) as metadata."""
    metadata = {"spec": spec, "items": items}
    if default is REQUIRED:
        return dataclasses.field(metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def section(cls, *, required: bool = False):
    """A nested section; optional ones default to all their defaults."""
    if required:
        return dataclasses.field(metadata={"section": cls})
    return dataclasses.field(default_factory=cls, metadata={"section": cls})


@dataclass(frozen=True, kw_only=True)
class Reported:
    """Top-1 accuracy in percent as the paper reports it, and its tolerance in points."""
    avg_top1: float | None = setting(None, minimum=0, maximum=100)
    last_top1: float | None = setting(None, minimum=0, maximum=100)
    tolerance: float = setting(2.0, minimum=0, maximum=100)
    source: str = setting("")

    def figures(self) -> dict | None:
        """The paper's numbers and tolerance, or None when it reports none for the experiment."""
        if self.avg_top1 is None and self.last_top1 is None:
            return None
        return {"avg_top1": self.avg_top1, "last_top1": self.last_top1,
                "tolerance": self.tolerance}


@dataclass(frozen=True, kw_only=True)
class Estimate:
    gpu_hours: float | None = setting(None, minimum=0, maximum=100_000,
                                      help="at most 100000 (11 GPU-years)")
    basis: str = setting("", help="how the estimate was obtained")


@dataclass(frozen=True, kw_only=True)
class Dataset:
    name: str = setting(choices=NAMES)
    root: str | None = setting(None, help="data folder; default $MGRB_DATA or ./data")
    download: bool = setting(True, help="let torchvision download CIFAR if absent")
    image_size: int | None = setting(None, minimum=8, maximum=512, help="side of the images the "
                                     "network sees (miniImageNet, ImageNet-100; default 84 and "
                                     "224): a smaller side trains at reduced resolution from a "
                                     "cache prepared for it (mgrb data prepare --size)")


@dataclass(frozen=True, kw_only=True)
class Protocol:
    initial: int = setting(minimum=1, maximum=MAX_CLASSES)
    increment: int = setting(minimum=0, maximum=MAX_CLASSES)
    order_seed: int = setting(1993, minimum=0, maximum=MAX_SEED,
                              help="seed of the class order, " + SEED_HELP)
    # More than ImageNet-1k's 1.28 million training images: a memory can hold no more.
    memory_total: int = setting(2000, minimum=1, maximum=10_000_000)
    memory_per_class: int | None = setting(None, minimum=1, maximum=100_000)
    holdout_fraction: float = setting(0.1, minimum=0, below=1,
                                      help="the part of each old class's memory held out for "
                                      "stage 2; the rest are the exemplars")
    selection: str = setting("first", choices=("first", "random"))


@dataclass(frozen=True, kw_only=True)
class Model:
    backbone: str = setting("resnet34", choices=("resnet18", "resnet34", "resnet_small"))
    stem: str = setting("cifar", choices=("cifar", "imagenet"))


@dataclass(frozen=True, kw_only=True)
class Augmentation:
    # Just above the largest image side (224): more only adds empty crops.
    crop_padding: int = setting(0, minimum=0, maximum=256)
    flip: bool = setting(False)
    rotation: float = setting(0.0, minimum=0, maximum=180,
                              help="degrees; each image turns by up to this either way")
    random_resized_crop: bool = setting(False)


EPOCH_LIST = {"minimum": 0, "maximum": MAX_EPOCHS}


@dataclass(frozen=True, kw_only=True)
class Train:
    seed: int = setting(1993, minimum=0, maximum=MAX_SEED, help="training seed, " + SEED_HELP)
    batch_size: int = setting(128, minimum=1, maximum=MAX_BATCH)
    eval_batch_size: int = setting(256, minimum=1, maximum=MAX_BATCH)
    # AdamW: lr and weight_decay at most 1 keep the decoupled decay factor 1 - lr * wd in
    # [0, 1] (never flipping or growing the weights); the paper uses 1e-3 and 0.05.
    lr: float = setting(1e-3, minimum=0, maximum=1)
    weight_decay: float = setting(0.05, minimum=0, maximum=1)
    lr_decay: float = setting(0.1, minimum=0, maximum=1,
                              help="factor at each milestone; above 1 the rate would grow")
    warmup_epochs: int = setting(1, minimum=0, maximum=MAX_EPOCHS)
    epochs: int = setting(250, minimum=1, maximum=MAX_EPOCHS)
    milestones: tuple[int, ...] = setting((70, 140, 210), longest=MAX_LIST, items=EPOCH_LIST)
    stage2_epochs: int = setting(40, minimum=0, maximum=MAX_EPOCHS)
    stage2_milestones: tuple[int, ...] = setting((15,), longest=MAX_LIST, items=EPOCH_LIST)
    stage2_augment: bool = setting(False, help="augment the balanced set in stage 2 as in stage 1, "
                                   "its features recomputed every epoch (the original does on "
                                   "miniImageNet and ImageNet-100)")
    augment: Augmentation = section(Augmentation)
    precision: str = setting("auto", choices=("auto", "fp32", "tf32", "bf16"),
                             help="auto: the original's numerics (tf32 on a GPU, fp32 with "
                             "deterministic: true and on the CPU); bf16: the fast mode")
    channels_last: bool | str = setting("auto", choices=("auto", True, False),
                                        help="auto: true on a GPU")
    compile: bool | str = setting("auto", choices=("auto", True, False),
                                  help="torch.compile the backbones; auto: on a GPU with a C "
                                  "compiler on PATH, off on the CPU")
    deterministic: bool = setting(False, help="deterministic GPU kernels (slower): a resumed "
                                  "run then equals an uninterrupted one on a GPU too")
    num_workers: int = setting(8, minimum=0, maximum=256,
                               help="not used: every data set now trains from memory or its "
                               "prepared cache; kept so that files setting it still load")
    checkpoint_every: int = setting(10, minimum=1, maximum=MAX_EPOCHS,
                                    help="epochs between checkpoints")
    checkpoint_minutes: float = setting(10.0, minimum=0, maximum=10_080,
                                        help="minutes of training between checkpoints within an "
                                        "epoch as well (0: only by epoch; at most a week)")
    log_every: int = setting(50, minimum=1, maximum=1_000_000, help="iterations between events")


@dataclass(frozen=True, kw_only=True)
class Method:
    losses: str = setting("ce+distill+hierloss", choices=LOSS_SETS)
    cbloss: bool = setting(True, help="class-balanced re-weighting of L_cls")
    # The distillation divides logits by the temperature: 0 would divide by zero.
    temperature: float = setting(2.0, minimum=0.01, maximum=100)
    dscale: float = setting(1.0, minimum=0, maximum=MAX_LOSS_WEIGHT)
    scale: float = setting(1.0, minimum=0, maximum=MAX_LOSS_WEIGHT, help="lambda, the weight of L_MG")
    beta: float = setting(20.0, minimum=0, maximum=MAX_LOSS_WEIGHT)
    decouple: bool = setting(True, help="stage 2 balanced classifier re-training (no_dcp = false)")

    @property
    def uses_hierarchy(self) -> bool:
        return "hierloss" in self.losses


@dataclass(frozen=True, kw_only=True)
class Hierarchy:
    kind: str = setting("ont", choices=("ont", "vis", "sem", "none"))
    clusters: int = setting(5, minimum=1, maximum=MAX_CLASSES)


@dataclass(frozen=True, kw_only=True)
class Quirks:
    """Where the original code is odd; each is described in docs/method.md section 8."""
    cb_reduction: str = setting("sum", choices=("sum", "mean"))
    cb_new_class_count: str = setting("full_dataset", choices=("full_dataset", "phase"))
    # WordNet's deepest noun paths are about 20 levels.
    tree_depth_stage1: int | None = setting(2, minimum=2, maximum=100)
    tree_depth_stage2: int | None = setting(18, minimum=2, maximum=100)
    cifar10_vis_clusters: int | None = setting(2, minimum=1, maximum=MAX_CLASSES)
    fresh_classifier: bool = setting(True)
    opencv_bgr: bool = setting(False, help="miniImageNet's and ImageNet-100's channels in BGR "
                               "order, normalised with RGB statistics, as the original's "
                               "OpenCV loading gives them")
    late_decay: bool = setting(True, help="each learning-rate decay starts the epoch after its "
                               "milestone, as the original's scheduler.step(epoch) at each epoch's end")
    warmup_backbone_only: bool = setting(True, help="the first epoch's warm-up on the backbone's "
                                         "rate only; the classifier starts at the full rate")


@dataclass(frozen=True, kw_only=True)
class Experiment:
    name: str = setting(help="experiment name: letters, digits, _ . -")
    description: str = setting("")
    provenance: str = setting("", help="the original command line, or what was inferred")
    reported: Reported = section(Reported)
    seeds: tuple[int, ...] | None = setting(
        None, longest=MAX_LIST, items={"minimum": 0, "maximum": MAX_SEED},
        help="train once per seed (each " + SEED_HELP + "); the report shows mean and "
        "standard deviation")
    estimate: Estimate = section(Estimate)
    dataset: Dataset = section(Dataset, required=True)
    protocol: Protocol = section(Protocol, required=True)
    model: Model = section(Model)
    train: Train = section(Train)
    method: Method = section(Method)
    hierarchy: Hierarchy = section(Hierarchy)
    quirks: Quirks = section(Quirks)

    @property
    def num_classes(self) -> int:
        return dataset(self.dataset.name).classes

    @property
    def run_seeds(self) -> tuple[int, ...]:
        """One run per listed seed; without a list, one run at train.seed."""
        return self.seeds or (self.train.seed,)

    def with_seed(self, seed: int) -> Experiment:
        return dataclasses.replace(self, train=dataclasses.replace(self.train, seed=seed))

    def to_dict(self) -> dict:
        """Plain data (lists for tuples) as config.yaml and results.json hold it."""
        return _plain(dataclasses.asdict(self))


# -- the validator's view of the classes ---------------------------------------------------
def _plain(value):
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (tuple, list)):
        return [_plain(item) for item in value]
    return value


def _kind(hint) -> tuple[Any, bool]:
    """(expected type(s), nullable) of an annotation: int, int | None, tuple[int, ...], ..."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        args = typing.get_args(hint)
        kinds = tuple(_kind(arg)[0] for arg in args if arg is not type(None))
        return (kinds[0] if len(kinds) == 1 else kinds), type(None) in args
    if typing.get_origin(hint) is tuple:
        return list, False
    return hint, False


def _item_kind(hint):
    for arg in typing.get_args(hint):
        if typing.get_origin(arg) is tuple:
            return typing.get_args(arg)[0]
    return typing.get_args(hint)[0]


def schema_of(cls) -> dict[str, Any]:
    """{key: Field or nested dict} in the file's order, from a section class."""
    hints = typing.get_type_hints(cls)
    schema: dict[str, Any] = {}
    for field in dataclasses.fields(cls):
        if "section" in field.metadata:
            schema[field.name] = schema_of(field.metadata["section"])
            continue
        kind, nullable = _kind(hints[field.name])
        required = field.default is dataclasses.MISSING
        items = field.metadata.get("items")
        schema[field.name] = Field(
            kind, default=None if required else _plain(field.default), nullable=nullable,
            required=required, items=None if items is None else Field(_item_kind(hints[field.name]), **items),
            **field.metadata["spec"])
    return schema


def all_settings(schema: dict | None = None, prefix: str = ""):
    """(dotted key, Field) of every setting, in the file's order: train.lr, train.augment.flip."""
    for key, spec in (SCHEMA if schema is None else schema).items():
        if isinstance(spec, Field):
            yield prefix + key, spec
        else:
            yield from all_settings(spec, f"{prefix}{key}.")


def build(cls, data: dict):
    """The section `cls` from validated plain data (lists become tuples)."""
    values = {}
    for field in dataclasses.fields(cls):
        value = data[field.name]
        if "section" in field.metadata:
            value = build(field.metadata["section"], value)
        elif isinstance(value, list):
            value = tuple(value)
        values[field.name] = value
    return cls(**values)


SCHEMA = schema_of(Experiment)


# Settings added after run folders were first written, each with the value that reproduces
# what the code did before it existed: absent from a stored config.yaml, a setting has it.
ABSENT_MEANS = {"train.stage2_augment": False, "quirks.opencv_bgr": False, "dataset.image_size": None,
                "quirks.late_decay": False, "quirks.warmup_backbone_only": False}
