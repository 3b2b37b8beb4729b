"""scikit-learn's bundled digits: the offline data set that needs no download."""

from __future__ import annotations

import numpy as np
import torch

from mgrb.data.base import ClassIncrementalData

TEST_PER_CLASS = 30
NAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


def load_digits_data() -> ClassIncrementalData:
    """8x8 grey images scaled from 0..16 to 0..255.

    Split rule: within each class, in the data set's order, the last 30 images are the test
    set and the rest (144 to 153 per class) the training set.
    """
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = torch.from_numpy(np.round(bunch.images * 255 / 16).astype(np.uint8))[:, None]
    labels = torch.from_numpy(bunch.target.astype(np.int64))
    test = torch.zeros(len(labels), dtype=torch.bool)
    for label in range(10):
        test[(labels == label).nonzero().flatten()[-TEST_PER_CLASS:]] = True
    train_images = images[~test]
    pixels = train_images.float() / 255
    return ClassIncrementalData(
        name="digits", num_classes=10,
        train_images=train_images, train_labels=labels[~test],
        test_images=images[test], test_labels=labels[test],
        class_names=list(NAMES), mean=(round(pixels.mean().item(), 4),),
        std=(round(pixels.std().item(), 4),), image_size=8,
        source="sklearn.datasets.load_digits")
