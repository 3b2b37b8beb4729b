"""Every fact about a data set, one record each: the one place that names them.

Code elsewhere asks the record (`dataset("cifar100").classes`) and never branches on a data
set's name; `tests/unit/test_layers.py` checks that no name is spelled outside this file (its
tests and experiments/ aside). A new data set is a record here and, where its files are laid
out in a new way, a loader (docs/architecture.md, "How to add a data set").

Imports nothing heavy: the validator, `mgrb list` and the launcher read it without torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Storage kinds: how a data set's files are found and read (mgrb/data/__init__.py)
BUNDLED = "bundled"   # scikit-learn ships it
PICKLES = "pickles"   # torchvision's CIFAR pickles, downloadable
IMAGES = "images"     # class folders of image files, decoded once into a cache (mgrb data prepare)
# Layouts of IMAGES data sets (mgrb/data/folder.py): ILSVRC-2012's train/ and val/ class
# folders, or miniImageNet's (one folder of class folders, or train/ and test/ ones)
ILSVRC, MINI = "ilsvrc", "mini"

# The original's CIFAR-10 labels in order, as WordNet synsets; each sense checked against its
# definition: an aircraft with fixed wings; (automobile) a motor vehicle with four wheels;
# warm-blooded egg-laying vertebrates with feathers; feline mammal; distinguished from
# Bovidae by solid deciduous antlers; a member of the genus Canis; tailless stout-bodied
# amphibians; solid-hoofed herbivorous quadruped; a vessel that carries passengers or
# freight; an automotive vehicle for hauling.
_CIFAR10_SYNSETS = ("airplane.n.01", "car.n.01", "bird.n.01", "cat.n.01", "deer.n.01",
                    "dog.n.01", "frog.n.01", "horse.n.01", "ship.n.01", "truck.n.01")

_CIFAR_TRAIN = {"epochs": 200, "milestones": [70, 140, 210], "stage2_epochs": 40,
                "augment": {"crop_padding": 4, "flip": True, "rotation": 15}}


@dataclass(frozen=True)
class DataSet:
    name: str
    title: str                 # as the paper and the launcher's table write it
    classes: int
    storage: str               # BUNDLED, PICKLES or IMAGES
    side: int                  # the images' side as the backbone sees them
    channels: int
    # settings of docs/method.md (sections 1-4) an experiment file may leave out
    defaults: dict = field(default_factory=dict)
    # training images of a class in the full data set: the n_c the original gives a new class
    # in the class-balanced loss (section 3); None: the loaded count
    full_train_per_class: int | None = None
    # training images of the smallest class, as validation counts them (a memory that would
    # leave a class nothing to train on is refused), and how a message says it
    train_per_class: int = 0
    train_per_class_shown: str = ""
    # hierarchy kinds beside vis (every data set has class means): ont needs an ontology,
    # sem WordNet synsets that tell the classes apart
    hierarchies: tuple[str, ...] = ("vis",)
    synsets: tuple[str, ...] | None = None  # curated synsets, where the data has no wnids
    in_paper: bool = True      # a data set of the paper's tables (digits is the CPU demo)
    expected_counts: tuple[int, int] | None = None  # (train, test) images, checked by mgrb data
    present_markers: tuple[str, ...] = ()  # PICKLES: any of these files means it is there
    layout: str | None = None  # IMAGES: ILSVRC (train/ and val/ class folders) or MINI
    cache_side: int | None = None  # IMAGES: the side the authors' code decoded to
    cache_only: bool = False   # runs read only the prepared cache, never the image files
    every_class_cached: bool = False  # a cache must hold all classes (no subset)
    opencv_loaded: bool = False  # the original decoded it with OpenCV (quirks.opencv_bgr)
    vis_clusters_fixed: bool = False  # the original ignores -cluster here (quirks.cifar10_vis_clusters)
    bench_shape: str = "cifar"  # the step shape `make bench` measures for its experiments
    # projected training images per class (mgrb.perf.estimate): the typical, not the smallest
    projected_per_class: int | None = None

    def hierarchies_besides(self, kind: str) -> str:
        """The kinds offered other than `kind` ('vis or ont'): what a refusal of it advises."""
        return " or ".join(other for other in self.hierarchies if other != kind)

    @property
    def per_class_for_projection(self) -> int:
        return self.projected_per_class or self.full_train_per_class or self.train_per_class


DATASETS: dict[str, DataSet] = {record.name: record for record in (
    DataSet(
        name="cifar10", title="CIFAR-10", classes=10, storage=PICKLES, side=32, channels=3,
        defaults={"protocol": {"memory_total": 2000}, "model": {"backbone": "resnet34"},
                  "train": _CIFAR_TRAIN},
        full_train_per_class=5000, train_per_class=5000, hierarchies=("vis", "sem"),
        synsets=_CIFAR10_SYNSETS, expected_counts=(50000, 10000),
        present_markers=("cifar-10-batches-py/test_batch", "test_batch"),
        vis_clusters_fixed=True),
    DataSet(
        name="cifar100", title="CIFAR-100", classes=100, storage=PICKLES, side=32, channels=3,
        defaults={"protocol": {"memory_total": 2000}, "model": {"backbone": "resnet34"},
                  "train": {**_CIFAR_TRAIN, "epochs": 250}},
        # CIFAR-100's names have no curated synsets: no sem
        full_train_per_class=500, train_per_class=500, hierarchies=("vis", "ont"),
        expected_counts=(50000, 10000), present_markers=("cifar-100-python/test", "meta")),
    DataSet(
        name="miniimagenet", title="miniImageNet", classes=100, storage=IMAGES, side=84,
        channels=3,
        defaults={"protocol": {"memory_total": 2000}, "model": {"backbone": "resnet18"},
                  "train": {"epochs": 160, "milestones": [100, 120], "stage2_epochs": 30,
                            "augment": {"crop_padding": 0, "flip": True, "rotation": 15},
                            "stage2_augment": True},
                  "quirks": {"opencv_bgr": True}},  # docs/method.md section 8
        full_train_per_class=500, train_per_class=500, hierarchies=("vis", "ont", "sem"),
        layout=MINI, cache_side=84, opencv_loaded=True),
    DataSet(
        name="imagenet100", title="ImageNet-100", classes=100, storage=IMAGES, side=224,
        channels=3,
        defaults={"protocol": {"memory_total": 2000}, "model": {"backbone": "resnet18"},
                  "train": {"epochs": 120, "milestones": [30, 60, 90], "stage2_epochs": 30,
                            "augment": {"random_resized_crop": True, "flip": True,
                                        "rotation": 15},
                            "stage2_augment": True},
                  "quirks": {"opencv_bgr": True}},  # cv2.imread there too (section 8)
        # a few ILSVRC classes have fewer than the usual 1300
        full_train_per_class=1300, train_per_class=1300, train_per_class_shown="about 1300",
        hierarchies=("vis", "ont", "sem"), layout=ILSVRC, cache_side=256, cache_only=True,
        every_class_cached=True, opencv_loaded=True, bench_shape="imagenet"),
    DataSet(
        # scikit-learn's 1797 8x8 images; its smallest class keeps 144 for training after its
        # 30 test images (mgrb/data/digits.py), about 150 on average. The digits are all
        # siblings under digit.n.01: every pair is equally similar, so no sem, and no ont.
        name="digits", title="digits", classes=10, storage=BUNDLED, side=8, channels=1,
        defaults={
            # 7 images per old class (1 held out, 6 replayed) against about 150 of a new
            # class: the paper's 20 : 500 imbalance, which the re-balancing exists for
            "protocol": {"memory_total": 70, "holdout_fraction": 0.15},
            "model": {"backbone": "resnet_small"},
            "train": {"epochs": 12, "milestones": [8], "stage2_epochs": 10, "batch_size": 64,
                      "augment": {"crop_padding": 1, "flip": False, "rotation": 10}}},
        train_per_class=144, train_per_class_shown="144 to 153", projected_per_class=150,
        in_paper=False),
)}

NAMES = tuple(DATASETS)
CACHED = tuple(name for name, record in DATASETS.items() if record.cache_side)


def dataset(name: str) -> DataSet:
    """The record of a data set by name; KeyError names the known ones."""
    try:
        return DATASETS[name]
    except KeyError:
        raise KeyError(f"unknown data set {name!r}; known: {', '.join(NAMES)}") from None
