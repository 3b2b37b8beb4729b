"""The class-incremental stream a run trains on: the data set, its class order and phases,
incremental labels, the memory's roles, and batch makers for training and test images."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from mgrb.config.schema import Experiment
from mgrb.data import ClassIncrementalData, load_dataset
from mgrb.data.augment import Augment
from mgrb.data.batches import make_batches
from mgrb.data.registry import dataset
from mgrb.data.protocol import PhasePlan, class_order, memory_roles, memory_sizes
from mgrb.training.progress import Progress


@dataclass
class IncrementalStream:
    data: ClassIncrementalData
    num_classes: int
    protocol: PhasePlan
    order: list[int]                 # data set class id of each incremental label
    train_labels: torch.Tensor       # incremental labels of the training images
    test_labels: torch.Tensor
    per_class: int                   # e: images kept per old class
    holdout: int                     # v of them: the balanced hold-out for stage 2
    roles: torch.Tensor              # HOLDOUT / EXEMPLAR / REST of every training image
    train_set: object                # batch makers (mgrb.data.batches)
    test_set: object
    augment: Augment
    data_counts: torch.Tensor        # training images per incremental label


def open_stream(config: Experiment, device: torch.device, progress: Progress) -> IncrementalStream:
    proto, train, source = config.protocol, config.train, config.dataset
    progress.message(f"loading {source.name} ...")
    data = load_dataset(source.name, source.root, download=source.download,
                        image_size=source.image_size)
    if dataset(source.name).opencv_loaded and config.quirks.opencv_bgr:
        data = opencv_channel_order(data)
    num_classes = config.num_classes
    order = class_order(num_classes, proto.order_seed)
    label_of_class = torch.empty(num_classes, dtype=torch.long)
    label_of_class[torch.tensor(order)] = torch.arange(num_classes)
    train_labels = label_of_class[data.train_labels]
    test_labels = label_of_class[data.test_labels]
    per_class, holdout = memory_sizes(num_classes, proto.memory_total, proto.memory_per_class,
                                      proto.holdout_fraction)
    workers = train.num_workers
    return IncrementalStream(
        data=data, num_classes=num_classes,
        protocol=PhasePlan(num_classes, proto.initial, proto.increment), order=order,
        train_labels=train_labels, test_labels=test_labels, per_class=per_class,
        holdout=holdout,
        roles=memory_roles(train_labels, per_class, holdout, proto.selection, proto.order_seed),
        train_set=make_batches(data.train_images, train_labels, data.mean, data.std, device,
                               data.image_size, workers),
        test_set=make_batches(data.test_images, test_labels, data.mean, data.std, device,
                              data.image_size, workers),
        augment=Augment(**dataclasses.asdict(train.augment)),
        data_counts=torch.bincount(train_labels, minlength=num_classes))


def opencv_channel_order(data: ClassIncrementalData) -> ClassIncrementalData:
    """The original reads miniImageNet and ImageNet-100 with OpenCV (cv2.imread in
    code/LoadMiniImagenet.py and code/LoadImagenet100.py): channels in BGR order, normalised
    with the RGB statistics all the same (quirks.opencv_bgr, docs/method.md section 8).

    Swapped in place, a block of images at a time: ImageNet-100's cache is 26 GB, and a
    flipped copy would need as much again."""
    for images in (data.train_images, data.test_images):
        for start in range(0, images.shape[0], 4096):
            block = images[start:start + 4096]
            red = block[:, 0].clone()
            block[:, 0] = block[:, 2]
            block[:, 2] = red
    return dataclasses.replace(data, source=f"{data.source}; channels in BGR order "
                               "(quirks.opencv_bgr)")
